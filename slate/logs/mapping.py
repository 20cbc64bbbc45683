"""Import CSV or Parquet logs with other column names, id types and time formats.

A mapping file (TOML) says which source column holds each ``slate.impressions`` column and how
to convert it::

    [source]
    format = "csv"                  # or "parquet" (default: from the file's suffix)
    delimiter = ","                 # CSV only

    [columns]                       # slate column = source column
    member_id = "user"              # integer ids pass through; other ids are hashed to int64
    session_id = "visit"            # optional (default: the page id)
    page_id = "request"
    timestamp = "ts"
    title_id = "slot"
    image_id = "shown"
    candidate_ids = "options"       # a list column, or text split at candidate_separator
    propensity = "prob"
    reward = "clicked"              # a number: 1 when > reward_threshold; or a boolean
    row = "r"                       # optional (default 0)
    col = "c"                       # optional (default: the row's position on its page)
    explored = "was_random"         # optional (default: propensity < 1)
    engagement = "minutes"          # optional
    features = ["f1", "f2"]         # optional: numeric columns, in order

    [convert]
    candidate_separator = "|"
    timestamp = "iso"               # "iso", "unix_s", "unix_ms", "unix_us", or a strptime format
    utc_offset_minutes = 0          # zone of timestamps written without one
    reward_threshold = 0.0

The file is read in batches; a row that cannot be converted (an empty required value, a number
or timestamp that does not parse, a malformed CSV line) is counted by reason and skipped, and the
converted rows go through the validating reader (its rejections counted too). A mistake in the
mapping itself (an unknown key, a missing required column, a source column the file lacks) is an
:class:`~slate.logs.InvalidLogError` naming it.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from slate.errors import RecordRejectedError
from slate.logs.dsjson import parse_timestamp
from slate.logs.imports import ImportReport, stable_id, write_validated
from slate.logs.parquet import ImpressionWriter, InvalidLogError, impressions_table

__all__ = ["ColumnMap", "Mapping", "import_mapped", "load_mapping"]

_INT = re.compile(r"^-?\d{1,19}$")


class ColumnMap(BaseModel):
    """``[columns]``: the source column of each ``slate.impressions`` column."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    member_id: str
    page_id: str
    timestamp: str
    title_id: str
    image_id: str
    candidate_ids: str
    propensity: str
    reward: str
    session_id: str | None = None
    row: str | None = None
    col: str | None = None
    explored: str | None = None
    engagement: str | None = None
    features: tuple[str, ...] = ()


class SourceOptions(BaseModel):
    """``[source]``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal["csv", "parquet"] | None = None
    delimiter: str = Field(default=",", min_length=1, max_length=1)


class ConvertOptions(BaseModel):
    """``[convert]``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    candidate_separator: str = Field(default="|", min_length=1)
    timestamp: str = "iso"
    utc_offset_minutes: int = Field(default=0, ge=-24 * 60, le=24 * 60)
    reward_threshold: float = 0.0


class Mapping(BaseModel):
    """A validated mapping file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    columns: ColumnMap
    source: SourceOptions = SourceOptions()
    convert: ConvertOptions = ConvertOptions()

    def source_columns(self) -> list[str]:
        """Source columns the import reads (each once)."""
        out: list[str] = []
        for key, value in self.columns.model_dump().items():
            for name in (value if key == "features" else [value]):
                if name is not None and name not in out:
                    out.append(name)
        return out


def load_mapping(path: str | os.PathLike[str]) -> Mapping:
    """Read and validate a mapping file.

    Raises
    ------
    InvalidLogError
        One line naming the file, the key and what is wrong.

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "map.toml")
    >>> with open(p, "w") as fh:
    ...     _ = fh.write('[columns]\\nmember_id = "user"\\n')
    >>> load_mapping(p)
    Traceback (most recent call last):
    ...
    slate.errors.InvalidLogError: The mapping file 'map.toml' is invalid at 'columns.page_id': Field required.
    """
    p = Path(path)
    if not p.is_file():
        raise InvalidLogError(f"The mapping file must exist; got '{path}' instead.")
    try:
        import tomllib
    except ImportError:  # pragma: no cover - Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        raw = tomllib.loads(p.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InvalidLogError(f"The mapping file '{p.name}' is not valid TOML ({exc}).") from None
    try:
        return Mapping.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(x) for x in first["loc"])
        raise InvalidLogError(f"The mapping file '{p.name}' is invalid at '{where}': {first['msg']}.") from None


# ---------------------------------------------------------------------------------- converters
def _strings(column: pa.ChunkedArray | pa.Array) -> NDArray[np.object_]:
    return np.asarray(column.cast(pa.string()).to_numpy(zero_copy_only=False), dtype=object)


def _ids(column: pa.Array) -> NDArray[np.int64]:
    """Integers pass through; integer-looking text is parsed; other ids are hashed."""
    if pa.types.is_integer(column.type):
        return np.asarray(column.cast(pa.int64()).fill_null(0).to_numpy(), np.int64)
    values = _strings(column)
    uniq, inverse = np.unique(values.astype(str), return_inverse=True)
    out = np.fromiter((int(u) if _INT.match(u) and -(2**63) <= int(u) < 2**63 else stable_id(u)
                       for u in uniq), np.int64, len(uniq))
    return out[inverse.reshape(-1)]


def _numbers(column: pa.Array) -> NDArray[np.float64]:
    """float64; NaN where a value does not parse (nulls too)."""
    if pa.types.is_boolean(column.type) or pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
        return np.asarray(column.cast(pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False), np.float64)
    text = column.cast(pa.string())
    text = pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)
    try:  # the usual case: every value parses (vectorised)
        return np.asarray(text.cast(pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False), np.float64)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    values = _strings(column)
    out = np.full(len(values), np.nan)
    for i, v in enumerate(values):
        if v is not None:
            try:
                out[i] = float(v)
            except ValueError:
                pass
    return out


def _timestamps(column: pa.Array, convert: ConvertOptions) -> NDArray[np.float64]:
    """Microseconds since the epoch (UTC) as float64 (NaN where it does not parse)."""
    fmt = convert.timestamp
    offset = convert.utc_offset_minutes * 60_000_000
    if pa.types.is_timestamp(column.type):
        tz = column.type.tz
        us = column.cast(pa.timestamp("us", tz=tz)).cast(pa.int64()).to_numpy(zero_copy_only=False)
        out = np.asarray(us, np.float64)
        return out if tz else out - offset
    if fmt in ("unix_s", "unix_ms", "unix_us"):
        scale = {"unix_s": 1e6, "unix_ms": 1e3, "unix_us": 1.0}[fmt]
        return np.round(_numbers(column) * scale)
    if fmt == "iso":
        try:  # the usual case: ISO 8601 with a zone that Arrow parses (vectorised)
            us = column.cast(pa.string()).cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
            return np.asarray(us.fill_null(0).to_numpy(zero_copy_only=False), np.float64) + np.where(
                np.asarray(us.is_null().to_numpy(zero_copy_only=False), bool), np.nan, 0.0)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    values = _strings(column)
    uniq, inverse = np.unique(np.where(values == None, "", values).astype(str), return_inverse=True)  # noqa: E711
    parsed = np.full(len(uniq), np.nan)
    for i, text in enumerate(uniq):
        try:
            if fmt == "iso":
                zoned = bool(re.search(r"(Z|[+-]\d{2}:?\d{2})$", text))
                parsed[i] = parse_timestamp(text) - (0 if zoned else offset)
            else:
                t = dt.datetime.strptime(text, fmt)
                if t.tzinfo is None:
                    t = t.replace(tzinfo=dt.timezone(dt.timedelta(minutes=convert.utc_offset_minutes)))
                parsed[i] = round(t.timestamp() * 1e6)
        except (RecordRejectedError, ValueError):
            pass
    return parsed[inverse.reshape(-1)]


def _candidates(column: pa.Array, sep: str) -> pa.Array:
    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        return column.cast(pa.list_(pa.string()))
    return pc.split_pattern(column.cast(pa.string()), sep)


# ---------------------------------------------------------------------------------- batches
def _batches(path: Path, mapping: Mapping, report: ImportReport) -> Iterator[pa.RecordBatch]:
    fmt = mapping.source.format or ("parquet" if path.suffix.lower() in (".parquet", ".pq") else "csv")
    wanted = mapping.source_columns()
    if fmt == "parquet":
        try:
            file = pq.ParquetFile(path)
        except (OSError, pa.ArrowException) as exc:
            raise InvalidLogError(f"The file '{path}' cannot be read as Parquet ({exc}).") from None
        _check_columns(file.schema_arrow.names, wanted, path)
        yield from file.iter_batches(columns=wanted, batch_size=65_536)
        return
    line_counter = {"bad": 0}

    def skip(row: Any) -> str:
        line_counter["bad"] += 1
        report.reject("malformed_row", f"line {row.number}: {row.text[:60]!r} ({row.expected_columns} "
                      f"fields expected, {row.actual_columns} found)")
        return "skip"

    try:
        with open(path, "rb") as probe:
            header = probe.readline().decode("utf-8", "replace").rstrip("\r\n").split(mapping.source.delimiter)
    except OSError as exc:
        raise InvalidLogError(f"The file '{path}' cannot be read ({exc}).") from None
    _check_columns([h.strip('"') for h in header], wanted, path)
    reader = pcsv.open_csv(
        path, read_options=pcsv.ReadOptions(block_size=1 << 22),
        parse_options=pcsv.ParseOptions(delimiter=mapping.source.delimiter, invalid_row_handler=skip),
        convert_options=pcsv.ConvertOptions(include_columns=wanted,
                                            column_types={c: pa.string() for c in wanted}),
    )
    yield from reader


def _check_columns(names: list[str], wanted: list[str], path: Path) -> None:
    missing = [c for c in wanted if c not in names]
    if missing:
        raise InvalidLogError(
            f"The mapping names source column(s) {missing} that '{path.name}' does not have "
            f"(it has {names[:12]})."
        )


def _convert(batch: pa.RecordBatch, mapping: Mapping, report: ImportReport, first_row: int) -> pa.Table:
    m, conv = mapping.columns, mapping.convert
    n = batch.num_rows
    col = {name: batch.column(name) for name in batch.schema.names}
    bad = np.zeros(n, bool)

    def reject(mask: NDArray[np.bool_], reason: str, what: str) -> None:
        new = mask & ~bad
        if new.any():
            rows = np.flatnonzero(new)
            report.reject(reason, f"row {first_row + int(rows[0])}: {what}", len(rows))
            bad[new] = True

    required = {"member_id": m.member_id, "page_id": m.page_id, "timestamp": m.timestamp,
                "title_id": m.title_id, "image_id": m.image_id, "candidate_ids": m.candidate_ids,
                "propensity": m.propensity, "reward": m.reward}
    for target, source in required.items():
        nulls = np.asarray(col[source].is_null().to_numpy(zero_copy_only=False), bool)
        if pa.types.is_string(col[source].type):
            nulls |= np.asarray(pc.equal(col[source], "").fill_null(True).to_numpy(zero_copy_only=False), bool)
        reject(nulls, "missing_value", f"column '{source}' ({target}) is empty")
    ts = _timestamps(col[m.timestamp], conv)
    reject(~np.isfinite(ts), "bad_timestamp", f"column '{m.timestamp}' does not parse as {conv.timestamp!r}")
    prop = _numbers(col[m.propensity])
    reject(np.isnan(prop), "bad_number", f"column '{m.propensity}' (propensity) is not a number")
    reward_raw = _numbers(col[m.reward])
    reject(np.isnan(reward_raw), "bad_number", f"column '{m.reward}' (reward) is not a number")
    extra: dict[str, NDArray[Any]] = {}
    for target in ("row", "col", "engagement", "explored"):
        source = getattr(m, target)
        if source is not None:
            extra[target] = _numbers(col[source])
            if target != "engagement":
                reject(np.isnan(extra[target]), "bad_number", f"column '{source}' ({target}) is not a number")
    feats = np.stack([_numbers(col[f]) for f in m.features], axis=1) if m.features else None
    keep = np.flatnonzero(~bad)
    return _table(batch, keep, ts, prop, reward_raw, extra, feats, mapping)


def _table(batch: pa.RecordBatch, keep: NDArray[np.int64], ts: NDArray[np.float64], prop: NDArray[np.float64],
           reward_raw: NDArray[np.float64], extra: dict[str, NDArray[Any]], feats: NDArray[np.float64] | None,
           mapping: Mapping) -> pa.Table:
    m, conv = mapping.columns, mapping.convert
    sub = batch.take(pa.array(keep))
    page = _ids(sub.column(m.page_id))
    if "col" in extra:
        col = extra["col"][keep].astype(np.int32)
    else:  # position of the row among its page's rows in this batch
        order = np.argsort(page, kind="stable")
        starts = np.r_[True, page[order][1:] != page[order][:-1]]
        group_start = np.maximum.accumulate(np.where(starts, np.arange(len(page)), 0))
        col = np.empty(len(page), np.int32)
        col[order] = np.arange(len(page)) - group_start
    return impressions_table(
        member_id=_ids(sub.column(m.member_id)),
        session_id=_ids(sub.column(m.session_id)) if m.session_id else page, page_id=page,
        timestamp=ts[keep].astype(np.int64), title_id=_strings(sub.column(m.title_id)),
        row=extra["row"][keep].astype(np.int32) if "row" in extra else np.zeros(len(keep), np.int32),
        col=col, image_id=_strings(sub.column(m.image_id)),
        candidate_ids=_candidates(sub.column(m.candidate_ids), conv.candidate_separator),
        propensity=prop[keep],
        explored=(extra["explored"][keep] > 0) if "explored" in extra else prop[keep] < 1.0,
        reward=(reward_raw[keep] > conv.reward_threshold).astype(np.int8),
        engagement=extra["engagement"][keep] if "engagement" in extra else None,
        features=feats[keep].astype(np.float32) if feats is not None else None,
    )


def import_mapped(
    source: str | os.PathLike[str],
    mapping: Mapping | str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    version: int = 1,
) -> ImportReport:
    """Convert a CSV or Parquet log into a ``slate.impressions`` file with a mapping.

    Examples
    --------
    >>> import tempfile, os
    >>> folder = tempfile.mkdtemp()
    >>> with open(os.path.join(folder, "log.csv"), "w") as fh:
    ...     _ = fh.write("user,req,ts,slot,shown,options,prob,click\\n"
    ...                  "u1,r1,2024-01-01T10:00:00Z,T1,a,a|b,0.5,1\\n"
    ...                  "u2,r2,yesterday,T1,b,a|b,0.5,0\\n")
    >>> mapping = Mapping(columns=ColumnMap(member_id="user", page_id="req", timestamp="ts",
    ...     title_id="slot", image_id="shown", candidate_ids="options", propensity="prob", reward="click"))
    >>> report = import_mapped(os.path.join(folder, "log.csv"), mapping, os.path.join(folder, "out.parquet"))
    >>> report.n_read, report.n_written, dict(report.rejected)
    (2, 1, {'bad_timestamp': 1})
    """
    path = Path(source)
    if not path.is_file():
        raise InvalidLogError(f"The source log must be an existing file; got '{path}' instead.")
    spec = mapping if isinstance(mapping, Mapping) else load_mapping(mapping)
    report = ImportReport(source=str(path), unit="rows")
    n_features = len(spec.columns.features)
    columns = [c for c in ("engagement", "features") if (c != "features" or n_features)
               and (c != "engagement" or spec.columns.engagement)]
    with ImpressionWriter(output, columns=columns, version=version,
                          n_features=n_features if version == 2 and n_features else None) as writer:
        first = 0
        for batch in _batches(path, spec, report):
            report.n_read += batch.num_rows
            write_validated(writer, _convert(batch, spec, report, first), report)
            first += batch.num_rows
    report.n_read += report.rejected.get("malformed_row", 0)
    return report
