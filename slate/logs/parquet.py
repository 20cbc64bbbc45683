"""Writing and reading ``slate.impressions/1`` Parquet files.

Writing casts record batches to the schema (see :mod:`slate.logs.schema`) and stores the schema
version in the file's key-value metadata. Reading validates every row, vectorised (pyarrow
compute and numpy, no Python loop per row), and returns an :class:`~slate.logs.ImpressionLog`
with a :class:`~slate.logs.RejectionReport` counting every rejected row by reason.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from numpy.typing import ArrayLike, NDArray

from slate.errors import InvalidLogError
from slate.logs._kernels import (
    candidate_checks,
    duplicates_in_pages,
    expand_sets,
    finite_rows,
    interleave_finite,
    remap,
)
from slate.logs.log import ImpressionLog, RejectionReport
from slate.logs.schema import (
    CANDIDATE_SEPARATOR,
    DECISION_COLUMNS,
    FEATURE_PREFIX,
    LABEL_SET,
    REQUIRED_COLUMNS,
    REQUIRED_COLUMNS_V2,
    SCHEMA,
    SCHEMA_KEY,
    SCHEMA_NAME,
    SCHEMA_VERSION,
    SCHEMA_VERSIONS,
    RejectionReason,
    decision_field,
    impressions_schema,
)

__all__ = [
    "DEFAULT_ROW_GROUP_SIZE",
    "ImpressionArrays",
    "ImpressionWriter",
    "InvalidLogError",
    "impressions_table",
    "read_impressions",
    "to_version2",
    "validate_impressions",
    "write_impressions",
]

DEFAULT_ROW_GROUP_SIZE = 131_072
"""Rows per Parquet row group written by default (~128k, as the issue asks)."""

PROPENSITY_TOLERANCE = 1e-6
MIN_PROPENSITY = 1e-12
"""Smallest accepted ``propensity``: below it the importance weight ``1 / propensity`` is beyond
any estimate's precision (``5e-324`` overflows to inf); such rows are counted as
``propensity_out_of_range``."""
MAX_POSITION = 2**31 - 1
"""Largest ``row``/``col`` (they are int32 in the log); larger values are ``bad_position``."""
"""Absolute tolerance for ``sum(propensities) == 1`` and ``propensities[shown] == propensity``."""

_STRING_COLUMNS = ("title_id", "image_id", "previous_image_id", "features_ref")
_REASON_CODE = {reason: i for i, reason in enumerate(RejectionReason)}
PathLike = str | os.PathLike[str]


# ====================================================================== writing
def _is_feature_column(name: str) -> bool:
    return name.startswith(FEATURE_PREFIX) and name[len(FEATURE_PREFIX):].isdigit()


def _layout_names(version: int) -> tuple[str, ...]:
    """Column names of a version, ``"features"`` standing for the v2 feature columns."""
    if version == 1:
        return (*SCHEMA.names, *DECISION_COLUMNS)
    return (*("candidate_set" if c == "candidate_ids" else c for c in SCHEMA.names), *DECISION_COLUMNS)


def _conform(
    data: pa.Table | pa.RecordBatch, schema: pa.Schema, where: str, version: int = 1
) -> pa.Table:
    table = pa.Table.from_batches([data]) if isinstance(data, pa.RecordBatch) else data
    if not isinstance(table, pa.Table):
        raise InvalidLogError(
            f"The 'data' parameter of {where} must be a pyarrow Table or RecordBatch (or an "
            f"iterable of them); got {type(data).__name__} instead."
        )
    known = set(_layout_names(version))
    unknown = [
        c for c in table.column_names
        if c not in known and not (version == 2 and _is_feature_column(c))
    ]
    if unknown:
        raise InvalidLogError(
            f"The columns of the data given to {where} must belong to {SCHEMA_NAME}/"
            f"{version}; got unknown column(s) {unknown} instead."
        )
    required = REQUIRED_COLUMNS if version == 1 else REQUIRED_COLUMNS_V2
    missing = [c for c in required if c not in table.column_names]
    if missing:
        raise InvalidLogError(
            f"The data given to {where} must have the required column(s) {missing}; "
            f"got columns {table.column_names} instead."
        )
    arrays = []
    for f in schema:
        if f.name in table.column_names:
            column = table.column(f.name)
            try:
                arrays.append(column.cast(f.type) if column.type != f.type else column)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise InvalidLogError(
                    f"The '{f.name}' column must be castable to {f.type}; got {column.type} "
                    f"instead ({exc})."
                ) from None
            if not f.nullable and arrays[-1].null_count:
                arrays[-1] = pc.fill_null(arrays[-1], pa.scalar(float("nan"), f.type))
        elif not f.nullable:
            raise InvalidLogError(
                f"The data given to {where} must have the feature column '{f.name}' (the file "
                f"has {schema.names.count(f.name)} such column); got columns "
                f"{table.column_names} instead."
            )
        else:
            arrays.append(pa.nulls(table.num_rows, f.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _join_candidates(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """``list<string>`` candidate lists -> ids joined by the separator (null list -> null;
    a null id -> an empty id, which the reader rejects as malformed, as version 1 does)."""
    chunks = []
    for chunk in column.chunks:
        if pa.types.is_null(chunk.type):
            chunks.append(pa.nulls(len(chunk), pa.string()))
            continue
        if not (pa.types.is_list(chunk.type) or pa.types.is_large_list(chunk.type)
                or pa.types.is_fixed_size_list(chunk.type)):
            raise InvalidLogError(
                f"The 'candidate_ids' column must be a list of strings; got {chunk.type} instead."
            )
        if pa.types.is_fixed_size_list(chunk.type):
            chunk = chunk.cast(pa.list_(chunk.type.value_type))
        values = chunk.values
        if pa.types.is_dictionary(values.type):
            values = values.cast(values.type.value_type)
        if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
            values = values.cast(pa.string())
        if len(values) and pc.any(pc.match_substring(values, CANDIDATE_SEPARATOR)).as_py():
            raise InvalidLogError(
                "The 'candidate_ids' of a slate.impressions/2 log must not contain the separator "
                "U+001F; got an id containing it."
            )
        values = pc.fill_null(values, "")
        rebuilt = pa.ListArray.from_arrays(
            chunk.offsets, values, mask=chunk.is_null() if chunk.null_count else None
        )
        chunks.append(pc.binary_join(rebuilt, CANDIDATE_SEPARATOR))
    return pa.chunked_array(chunks, type=pa.string())


def _feature_matrix(column: pa.ChunkedArray, n_features: int) -> NDArray[np.float32]:
    """``list<float32>`` features -> an ``(n, d)`` matrix, NaN rows where null or of another
    length (the reader rejects those as ``bad_features``, as version 1 does)."""
    n = len(column)
    out = np.full((n, n_features), np.nan, dtype=np.float32)
    start = 0
    for lengths, values in _list_parts(column, "features"):
        m = len(lengths)
        flat = _numeric(pa.chunked_array([values], type=pa.float32()), "features", np.float32,
                        np.nan) if len(values) else np.zeros(0, np.float32)
        if m and int(lengths.min()) == n_features == int(lengths.max()):
            out[start : start + m] = flat.reshape(m, n_features)
        else:
            good = lengths == n_features
            sel = np.repeat(good, lengths)
            out[start : start + m][good] = flat[sel].reshape(-1, n_features)
        start += m
    if column.null_count:
        out[_null_mask(column)] = np.nan
    return out


def _features_dim(column: pa.ChunkedArray) -> int:
    lengths = np.concatenate([lengths for lengths, _ in _list_parts(column, "features")] or
                             [np.zeros(0, np.int64)])
    valid = lengths[~_null_mask(column)] if column.null_count else lengths
    return int(np.bincount(valid).argmax()) if len(valid) else 0


def to_version2(
    data: pa.Table | pa.RecordBatch, *, n_features: int | None = None
) -> pa.Table:
    """Convert a version-1 table (``candidate_ids`` and ``features`` lists) to the version-2
    layout (``candidate_set`` and ``feature_j`` columns). Version-2 tables pass through.

    Parameters
    ----------
    data : pyarrow.Table or RecordBatch
    n_features : int, optional
        Length of the feature vectors (default: the most common length). Rows with null
        features or another length get NaN features (rejected by the reader as ``bad_features``).

    Examples
    --------
    >>> table = to_version2(example_table())
    >>> table.column("candidate_set")[0].as_py().split("\\x1f")
    ['T1-a', 'T1-b']
    """
    table = pa.Table.from_batches([data]) if isinstance(data, pa.RecordBatch) else data
    if not isinstance(table, pa.Table):
        raise InvalidLogError(
            f"The 'data' parameter of to_version2 must be a pyarrow Table or RecordBatch; got "
            f"{type(data).__name__} instead."
        )
    names = table.column_names
    if "candidate_ids" in names and "candidate_set" in names:
        raise InvalidLogError(
            "A table must have 'candidate_ids' (version 1) or 'candidate_set' (version 2); got both."
        )
    if "features" in names and any(_is_feature_column(c) for c in names):
        raise InvalidLogError(
            "A table must have 'features' (version 1) or 'feature_j' columns (version 2); got both."
        )
    if "candidate_ids" in names:
        i = names.index("candidate_ids")
        table = table.set_column(i, "candidate_set", _join_candidates(table.column(i)))
    if "features" in table.column_names:
        i = table.column_names.index("features")
        column = table.column(i)
        d = _features_dim(column) if n_features is None else int(n_features)
        matrix = _feature_matrix(column, d) if d else np.zeros((table.num_rows, 0), np.float32)
        table = table.remove_column(i)
        for j in range(d):
            table = table.add_column(
                i + j, pa.field(f"{FEATURE_PREFIX}{j}", pa.float32(), nullable=False),
                pa.array(matrix[:, j]),
            )
    meta = dict(table.schema.metadata or {})
    meta[SCHEMA_KEY] = f"{SCHEMA_NAME}/2".encode()
    return table.replace_schema_metadata(meta)


class ImpressionWriter:
    """Stream record batches into one ``slate.impressions`` Parquet file.

    Batches are buffered into row groups of ``row_group_size`` rows. Use as a context manager.

    Parameters
    ----------
    path : str or path-like
    columns : sequence of str, optional
        Columns to store, in schema order (default: every column; optional ones missing from a
        batch are written as nulls). Required columns are always stored. Version-1 names
        (``candidate_ids``, ``features``) are accepted for version 2.
    row_group_size : int, default 131072
    compression : str, default "snappy"
        Any codec pyarrow supports (``"zstd"`` is smaller, ``"snappy"``/``"lz4"`` faster to read).
    metadata : mapping of str to str, optional
        Extra key-value metadata stored in the file (e.g. the logging policy's name).
    version : 1 or 2, default 1
        Schema version of the file. Version 2 (see :mod:`slate.logs.schema`) decodes several
        times faster; batches may be given in either layout (version-1 batches are converted).
    n_features : int, optional
        Version 2: number of feature columns (default: from the first batch).
    page_checksums : bool, default True
        Store a CRC-32 checksum with every data page, which the readers verify: a damaged page
        is reported (its row group counted as ``corrupt_row_group``) instead of read wrong.

    Examples
    --------
    >>> import tempfile, os
    >>> from slate.logs import ImpressionWriter, read_impressions
    >>> from slate.logs.parquet import example_table
    >>> path = os.path.join(tempfile.mkdtemp(), "log.parquet")
    >>> with ImpressionWriter(path) as writer:
    ...     writer.write(example_table())
    >>> log, report = read_impressions(path)
    >>> log.n_rows, report.n_rejected
    (4, 0)
    >>> with ImpressionWriter(path, version=2) as writer:
    ...     writer.write(example_table())
    >>> read_impressions(path)[0].schema
    'slate.impressions/2'
    """

    def __init__(
        self,
        path: PathLike,
        columns: Sequence[str] | None = None,
        *,
        row_group_size: int = DEFAULT_ROW_GROUP_SIZE,
        compression: str = "snappy",
        metadata: Mapping[str, str] | None = None,
        version: int = SCHEMA_VERSION,
        n_features: int | None = None,
        page_checksums: bool = True,
    ) -> None:
        if not isinstance(row_group_size, (int, np.integer)) or row_group_size < 1:
            raise InvalidLogError(
                f"The 'row_group_size' parameter of ImpressionWriter must be an integer >= 1; "
                f"got {row_group_size!r} instead."
            )
        if version not in SCHEMA_VERSIONS:
            raise InvalidLogError(
                f"The 'version' parameter of ImpressionWriter must be one of {SCHEMA_VERSIONS}; "
                f"got {version!r} instead."
            )
        if n_features is not None and (not isinstance(n_features, (int, np.integer))
                                       or n_features < 0):
            raise InvalidLogError(
                f"The 'n_features' parameter of ImpressionWriter must be an integer >= 0; "
                f"got {n_features!r} instead."
            )
        self.version = int(version)
        if columns is None:
            names = list(SCHEMA.names)
        else:
            v1 = [
                "candidate_ids" if c == "candidate_set" else "features" if _is_feature_column(c)
                else c for c in columns
            ] if self.version == 2 else list(columns)
            bad = [c for c in v1 if c not in SCHEMA.names and c not in DECISION_COLUMNS]
            if bad:
                raise InvalidLogError(
                    f"The 'columns' parameter of ImpressionWriter must name columns of "
                    f"{SCHEMA_NAME}/{self.version}; got unknown column(s) {bad} instead."
                )
            names = [c for c in SCHEMA.names if c in set(v1) | set(REQUIRED_COLUMNS)]
            names += [c for c in DECISION_COLUMNS if c in set(v1)]
        self._names = names
        meta = dict(SCHEMA.metadata or {})
        for key, value in (metadata or {}).items():
            meta[str(key).encode()] = str(value).encode()
        meta[SCHEMA_KEY] = f"{SCHEMA_NAME}/{self.version}".encode()
        self._meta = meta
        self.path = Path(path)
        self.row_group_size = int(row_group_size)
        self.compression = compression
        self.n_features = None if n_features is None else int(n_features)
        self.page_checksums = bool(page_checksums)
        self._writer: pq.ParquetWriter | None = None
        self.schema: pa.Schema | None = None
        if self.version == 1 or "features" not in names or self.n_features is not None:
            self._open(self.n_features or 0)
        self._pending: list[pa.Table] = []
        self._n_pending = 0
        self.n_rows = 0

    def _open(self, n_features: int) -> None:
        extra = [decision_field(c) for c in self._names if c in DECISION_COLUMNS]
        names = [c for c in self._names if c not in DECISION_COLUMNS]
        if self.version == 1:
            schema = pa.schema([SCHEMA.field(c) for c in names], metadata=self._meta)
            dictionary = [c for c in _STRING_COLUMNS if c in names] + ["candidate_ids.list.element"]
        else:
            self.n_features = n_features
            v2 = tuple("candidate_set" if c == "candidate_ids" else c for c in names)
            schema = impressions_schema(v2, version=2, n_features=n_features)
            schema = schema.with_metadata(self._meta)
            # dictionary pages decode faster than plain ones for every column but the features
            # (their values are mostly distinct): measured 2-4x on ids, times and rewards
            dictionary = [c for c in schema.names if not _is_feature_column(c)]
        for f in extra:
            schema = schema.append(f)
        dictionary += [f.name for f in extra]
        self.schema = schema
        self._writer = pq.ParquetWriter(
            self.path, schema, compression=self.compression, use_dictionary=dictionary,
            write_page_checksum=self.page_checksums,
        )

    def write(self, data: pa.Table | pa.RecordBatch) -> None:
        """Append rows (cast to the schema; unknown columns are an error)."""
        if self.version == 2:
            if isinstance(data, (pa.Table, pa.RecordBatch)):
                data = to_version2(data, n_features=self.n_features)
            if self._writer is None:
                table = data if isinstance(data, pa.Table) else pa.Table.from_batches([data])
                self._open(sum(1 for c in table.column_names if _is_feature_column(c)))
        assert self.schema is not None
        table = _conform(data, self.schema, "ImpressionWriter.write", self.version)
        self._pending.append(table)
        self._n_pending += table.num_rows
        self.n_rows += table.num_rows
        if self._n_pending >= self.row_group_size:
            self._flush(final=False)

    def _flush(self, final: bool) -> None:
        if not self._pending:
            return
        assert self._writer is not None
        table = pa.concat_tables(self._pending)
        n_full = (table.num_rows // self.row_group_size) * self.row_group_size
        cut = table.num_rows if final else n_full
        if cut:
            self._writer.write_table(table.slice(0, cut), row_group_size=self.row_group_size)
        rest = table.slice(cut)
        self._pending = [rest] if rest.num_rows else []
        self._n_pending = rest.num_rows

    def close(self) -> None:
        """Write what is buffered and close the file."""
        if self._writer is None:
            self._open(0)
        self._flush(final=True)
        assert self._writer is not None
        self._writer.close()

    def __enter__(self) -> ImpressionWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_impressions(
    path: PathLike,
    data: pa.Table | pa.RecordBatch | Iterable[pa.Table | pa.RecordBatch],
    *,
    columns: Sequence[str] | None = None,
    row_group_size: int = DEFAULT_ROW_GROUP_SIZE,
    compression: str = "snappy",
    metadata: Mapping[str, str] | None = None,
    version: int = SCHEMA_VERSION,
    n_features: int | None = None,
    page_checksums: bool = True,
) -> Path:
    """Write impression rows (a table, a batch, or an iterable of them) to a Parquet file.

    Rows are not validated here (the reader does that, and counts what it rejects); columns are
    cast to the schema, and unknown or missing required columns raise :class:`InvalidLogError`.
    See :class:`ImpressionWriter` for the parameters.

    Returns
    -------
    pathlib.Path
        The file written.

    Examples
    --------
    >>> import tempfile, os
    >>> from slate.logs import write_impressions, read_impressions
    >>> from slate.logs.parquet import example_table
    >>> path = write_impressions(os.path.join(tempfile.mkdtemp(), "log.parquet"), example_table())
    >>> log, report = read_impressions(path)
    >>> log.title_ids, log.shown.tolist()
    (('T1', 'T2'), [0, 1, 1, 0])
    >>> path = write_impressions(path, example_table(), version=2)  # the fast layout
    >>> read_impressions(path)[0].shown.tolist()
    [0, 1, 1, 0]
    """
    if columns is None and isinstance(data, (pa.Table, pa.RecordBatch)):
        columns = data.schema.names
    with ImpressionWriter(
        path, columns, row_group_size=row_group_size, compression=compression, metadata=metadata,
        version=version, n_features=n_features, page_checksums=page_checksums,
    ) as writer:
        if isinstance(data, (pa.Table, pa.RecordBatch)):
            writer.write(data)
        else:
            for part in data:
                writer.write(part)
    return Path(path)


def _string_array(values: Any, name: str, n: int | None = None) -> pa.Array:
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        arr = values
    else:
        raw = np.asarray(values)
        arr = pa.array(raw.astype(object) if raw.dtype.kind == "U" else raw, type=pa.string())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if n is not None and len(arr) != n:
        raise InvalidLogError(f"The '{name}' column must have {n} entries; got {len(arr)} instead.")
    return arr


def _list_array(values: Any, name: str, n: int, value_type: pa.DataType) -> pa.Array:
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        arr = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    elif isinstance(values, np.ndarray) and values.ndim == 2:
        flat = values.reshape(-1)
        if pa.types.is_string(value_type):
            flat_arr = _string_array(flat, name)
        else:
            flat_arr = pa.array(flat.astype(value_type.to_pandas_dtype()), type=value_type)
        offsets = pa.array(np.arange(0, flat.size + 1, max(values.shape[1], 1), dtype=np.int32))
        if values.shape[1] == 0:
            offsets = pa.array(np.zeros(values.shape[0] + 1, dtype=np.int32))
        arr = pa.ListArray.from_arrays(offsets, flat_arr)
    else:
        arr = pa.array(list(values), type=pa.list_(value_type))
    if len(arr) != n:
        raise InvalidLogError(f"The '{name}' column must have {n} entries; got {len(arr)} instead.")
    return arr


@dataclass(frozen=True)
class ImpressionArrays:
    """The columns of an impressions table as arrays, for :func:`impressions_table`.

    Attributes
    ----------
    member_id, session_id, page_id : array_like (n,) of int
    timestamp : array_like (n,)
        ``datetime64`` values, or integers (microseconds since the epoch, UTC).
    title_id : array_like (n,) of str
    row, col : array_like (n,) of int
    image_id : array_like (n,) of str
    candidate_ids : ndarray (n, k) of str, or a sequence of n sequences of str (ragged)
    propensity : array_like (n,) of float
    explored : array_like (n,) of bool
    reward : array_like (n,) of int
    propensities : ndarray (n, k) of float or a sequence of sequences, optional
    engagement : array_like (n,) of float, optional
    previous_image_id : array_like (n,) of str or None, optional
    features : ndarray (n, n_features), optional
    features_ref : array_like (n,) of str, optional
    """

    member_id: ArrayLike
    session_id: ArrayLike
    page_id: ArrayLike
    timestamp: ArrayLike
    title_id: ArrayLike
    row: ArrayLike
    col: ArrayLike
    image_id: ArrayLike
    candidate_ids: Any
    propensity: ArrayLike
    explored: ArrayLike
    reward: ArrayLike
    propensities: Any = None
    engagement: ArrayLike | None = None
    previous_image_id: ArrayLike | None = None
    features: ArrayLike | None = None
    features_ref: ArrayLike | None = None


def impressions_table(arrays: ImpressionArrays | None = None, /, **columns: Any) -> pa.Table:
    """Build a ``slate.impressions/1`` table from numpy arrays (what a simulator would write).

    Parameters
    ----------
    arrays : ImpressionArrays, optional
        The columns; or give them as keywords instead (the fields of :class:`ImpressionArrays`).
    **columns
        ``member_id=..., session_id=..., ...`` when ``arrays`` is not given.

    Returns
    -------
    pyarrow.Table
        With the schema's types and its version in the metadata. Rows are not validated.

    Raises
    ------
    TypeError
        Both ``arrays`` and keywords, a keyword that is not a column, or a required column missing.

    Examples
    --------
    >>> import numpy as np
    >>> table = impressions_table(
    ...     member_id=[1], session_id=[1], page_id=[7], timestamp=[0], title_id=["T1"],
    ...     row=[0], col=[0], image_id=["T1-a"], candidate_ids=np.array([["T1-a", "T1-b"]]),
    ...     propensity=[0.5], explored=[True], reward=[1])
    >>> table.num_rows, table.schema.field("candidate_ids").type
    (1, ListType(list<item: string>))
    """
    if arrays is None:
        try:
            arrays = ImpressionArrays(**columns)
        except TypeError as err:
            raise TypeError(f"impressions_table: {err}".replace("ImpressionArrays.__init__() ", "")) from None
    elif columns:
        raise TypeError("impressions_table takes an ImpressionArrays or keyword columns, not both.")
    return _impressions_table(arrays)


def _impressions_table(a: ImpressionArrays) -> pa.Table:
    """The table of :func:`impressions_table`."""
    n = len(np.asarray(a.page_id))
    cols: dict[str, pa.Array] = {}

    def ints(name: str, values: ArrayLike, typ: pa.DataType) -> None:
        raw = np.asarray(values)
        if raw.shape != (n,):
            raise InvalidLogError(
                f"The '{name}' column must have shape ({n},); got {raw.shape} instead."
            )
        cols[name] = pa.array(raw, type=typ) if raw.dtype != object else pa.array(list(raw), typ)

    ints("member_id", a.member_id, pa.int64())
    ints("session_id", a.session_id, pa.int64())
    ints("page_id", a.page_id, pa.int64())
    ts = np.asarray(a.timestamp)
    if ts.dtype.kind == "M":
        ts = ts.astype("datetime64[us]").astype(np.int64)
    ints("timestamp", ts, pa.int64())
    cols["timestamp"] = cols["timestamp"].cast(pa.timestamp("us", tz="UTC"))
    cols["title_id"] = _string_array(a.title_id, "title_id", n)
    ints("row", a.row, pa.int32())
    ints("col", a.col, pa.int32())
    cols["image_id"] = _string_array(a.image_id, "image_id", n)
    cols["candidate_ids"] = _list_array(a.candidate_ids, "candidate_ids", n, pa.string())
    ints("propensity", a.propensity, pa.float64())
    if a.propensities is not None:
        cols["propensities"] = _list_array(a.propensities, "propensities", n, pa.float64())
    ints("explored", a.explored, pa.bool_())
    ints("reward", a.reward, pa.int8())
    if a.engagement is not None:
        ints("engagement", a.engagement, pa.float64())
    if a.previous_image_id is not None:
        cols["previous_image_id"] = _string_array(a.previous_image_id, "previous_image_id", n)
    if a.features is not None:
        cols["features"] = _list_array(np.asarray(a.features), "features", n, pa.float32())
    if a.features_ref is not None:
        cols["features_ref"] = _string_array(a.features_ref, "features_ref", n)
    names = [c for c in SCHEMA.names if c in cols]
    schema = pa.schema([SCHEMA.field(c) for c in names], metadata=SCHEMA.metadata)
    return pa.Table.from_arrays([cols[c] for c in names], schema=schema)


def example_table() -> pa.Table:
    """A tiny valid log (2 pages x 2 titles) used in docstring examples."""
    return impressions_table(
        member_id=[1, 1, 2, 2],
        session_id=[10, 10, 20, 20],
        page_id=[100, 100, 200, 200],
        timestamp=np.array(["2024-01-01T10:00", "2024-01-01T10:00", "2024-01-02T09:30",
                            "2024-01-02T09:30"], dtype="datetime64[us]"),
        title_id=["T1", "T2", "T1", "T2"],
        row=[0, 0, 0, 0],
        col=[0, 1, 0, 1],
        image_id=["T1-a", "T2-b", "T1-b", "T2-a"],
        candidate_ids=np.array([["T1-a", "T1-b"], ["T2-a", "T2-b"]] * 2),
        propensity=[0.5, 0.5, 0.5, 0.5],
        explored=[True, True, True, True],
        reward=[1, 0, 0, 1],
    )


# ====================================================================== reading
def _null_mask(column: pa.ChunkedArray | pa.Array) -> NDArray[np.bool_]:
    if column.null_count == 0:
        return np.zeros(len(column), dtype=bool)
    mask = column.is_null()
    return np.asarray(mask.to_numpy(zero_copy_only=False), dtype=bool)


def _numeric(column: pa.ChunkedArray, name: str, dtype: Any, fill: Any) -> NDArray[Any]:
    if pa.types.is_null(column.type):  # every value null: counted by the null masks
        return np.full(len(column), fill, dtype=dtype)
    if column.null_count:
        fill = bool(fill) if pa.types.is_boolean(column.type) else fill
        column = pc.fill_null(column, pa.scalar(fill, column.type))
    try:
        values = column.to_numpy()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:  # pragma: no cover - defensive
        raise InvalidLogError(f"The '{name}' column could not be read as numbers ({exc}).") from None
    return np.asarray(values, dtype=dtype)


def _check_type(column: pa.ChunkedArray, name: str, kinds: tuple[str, ...]) -> None:
    typ = column.type
    checks = {
        "integer": pa.types.is_integer,
        "float": pa.types.is_floating,
        "bool": pa.types.is_boolean,
        "timestamp": pa.types.is_timestamp,
        "string": lambda t: pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or (pa.types.is_dictionary(t) and pa.types.is_string(t.value_type)),
        "null": pa.types.is_null,
    }
    if not any(checks[k](typ) for k in (*kinds, "null")):
        raise InvalidLogError(
            f"The '{name}' column of a {SCHEMA_NAME} log must be of type {' or '.join(kinds)}; "
            f"got {typ} instead."
        )


def _list_parts(column: pa.ChunkedArray, name: str) -> list[tuple[NDArray[np.int64], pa.Array]]:
    """Per chunk: (lengths with nulls as 0, flattened values)."""
    if not (pa.types.is_list(column.type) or pa.types.is_large_list(column.type)
            or pa.types.is_fixed_size_list(column.type) or pa.types.is_null(column.type)):
        raise InvalidLogError(
            f"The '{name}' column of a {SCHEMA_NAME} log must be a list; got {column.type} instead."
        )
    value_type = getattr(column.type, "value_type", None)
    if value_type is not None and name == "candidate_ids" and not (
        pa.types.is_string(value_type) or pa.types.is_large_string(value_type) or pa.types.is_null(value_type)
        or (pa.types.is_dictionary(value_type) and pa.types.is_string(value_type.value_type))
    ):
        raise InvalidLogError(
            f"The '{name}' column of a {SCHEMA_NAME} log must be a list of strings; got {column.type} instead."
        )
    parts = []
    for chunk in column.chunks:
        if pa.types.is_null(chunk.type):
            parts.append((np.zeros(len(chunk), np.int64), pa.array([], pa.string())))
            continue
        lengths = pc.fill_null(pc.list_value_length(chunk), 0).to_numpy().astype(np.int64)
        parts.append((lengths, chunk.flatten()))
    return parts


def _dict_parts(array: pa.Array) -> tuple[NDArray[np.int32], pa.Array]:
    """(indices with -1 for null, dictionary) of a string or dictionary array."""
    if pa.types.is_null(array.type):
        return np.full(len(array), -1, np.int32), pa.array([], pa.string())
    if not pa.types.is_dictionary(array.type):
        array = pc.dictionary_encode(array)
    dictionary = array.dictionary
    if pa.types.is_large_string(dictionary.type):
        dictionary = dictionary.cast(pa.string())
    indices = array.indices
    if indices.null_count:
        indices = pc.fill_null(indices, -1)
    idx = np.asarray(indices.to_numpy(), dtype=np.int32)
    return idx, dictionary


class _VocabularyCache:
    """The last few vocabularies built, reused when a chunk brings the same dictionaries (as the
    chunks of one file usually do): sorting the ids and turning them into Python strings is the
    largest fixed cost of validating a chunk. Entries are compared by content (``equals``)."""

    SIZE = 8

    def __init__(self) -> None:
        self.vocabularies: list[tuple[pa.Array, pa.Array, tuple[str, ...]]] = []
        self.mappings: list[tuple[pa.Array, pa.Array, NDArray[np.int32]]] = []
        self.lock = threading.Lock()

    def vocabulary(self, union: pa.Array) -> tuple[pa.Array, tuple[str, ...]]:
        with self.lock:
            for key, values, ids in self.vocabularies:
                if len(key) == len(union) and key.equals(union):
                    return values, ids
        values = pc.unique(union)
        values = values.take(pc.sort_indices(values))
        ids = tuple(values.to_pylist())
        with self.lock:
            self.vocabularies = [(union, values, ids), *self.vocabularies[: self.SIZE - 1]]
        return values, ids

    def mapping(self, dictionary: pa.Array, values: pa.Array) -> NDArray[np.int32]:
        with self.lock:
            for key, vals, mapping in self.mappings:
                if vals is values and len(key) == len(dictionary) and key.equals(dictionary):
                    return mapping
        mapping = pc.index_in(dictionary, value_set=values).to_numpy().astype(np.int32)
        with self.lock:
            self.mappings = [(dictionary, values, mapping), *self.mappings[: 4 * self.SIZE - 1]]
        return mapping


_CACHE = _VocabularyCache()


class _Vocabulary:
    """Collects per-chunk dictionaries, then maps chunk indices to codes in one sorted vocabulary."""

    def __init__(self) -> None:
        self.parts: list[tuple[NDArray[np.int32], pa.Array]] = []

    def add(self, array: pa.Array) -> int:
        self.parts.append(_dict_parts(array))
        return len(self.parts) - 1

    def finish(self) -> tuple[str, ...]:
        dictionaries = [d for _, d in self.parts if len(d)]
        if dictionaries:
            union = dictionaries[0] if len(dictionaries) == 1 else pa.concat_arrays(dictionaries)
            self.values, self.ids = _CACHE.vocabulary(union)
        else:
            self.values = pa.array([], pa.string())
            self.ids = ()
        return self.ids

    def codes(self, part: int) -> NDArray[np.int32]:
        idx, dictionary = self.parts[part]
        if len(dictionary) == 0:
            return np.full(len(idx), -1, dtype=np.int32)
        return remap(idx, _CACHE.mapping(dictionary, self.values))


def _string_codes(
    column: pa.ChunkedArray, vocab: _Vocabulary
) -> list[int]:
    return [vocab.add(chunk) for chunk in column.chunks]


def _concat_codes(vocab: _Vocabulary, parts: list[int], n: int) -> NDArray[np.int32]:
    if not parts:
        return np.full(n, -1, dtype=np.int32)
    return np.concatenate([vocab.codes(p) for p in parts]).astype(np.int32, copy=False)


def _padded(
    lengths: NDArray[np.int64], values: NDArray[Any], fill: Any, dtype: Any
) -> NDArray[Any]:
    """Left-aligned (n, k_max) matrix of ragged rows, padded with ``fill``."""
    n = len(lengths)
    k_max = int(lengths.max()) if n else 0
    if n and int(lengths.min()) == k_max:
        return np.ascontiguousarray(values.reshape(n, k_max), dtype=dtype)
    out = np.full((n, k_max), fill, dtype=dtype)
    rows = np.repeat(np.arange(n), lengths)
    starts = np.cumsum(lengths) - lengths
    pos = np.arange(len(values)) - np.repeat(starts, lengths)
    out[rows, pos] = values
    return out


def _split_sets(chunk: pa.Array, images: _Vocabulary) -> tuple[NDArray[np.int32], NDArray[np.int64], int]:
    """A version-2 ``candidate_set`` chunk: (set index per row, -1 for null; length of each
    distinct set; vocabulary part of their ids, an empty id read as null)."""
    idx, dictionary = _dict_parts(chunk)
    if len(dictionary):
        split = pc.split_pattern(dictionary, CANDIDATE_SEPARATOR)
        lengths = pc.list_value_length(split).to_numpy().astype(np.int64)
        flat = split.flatten()
        empty = pc.equal(pc.binary_length(flat), 0)
        if pc.any(empty).as_py():
            flat = pc.if_else(empty, pa.scalar(None, pa.string()), flat)
    else:
        lengths = np.zeros(0, np.int64)
        flat = pa.array([], pa.string())
    return idx, lengths, images.add(flat)


def _expand_sets(
    parts: list[tuple[NDArray[np.int32], NDArray[np.int64], int]],
    images: _Vocabulary,
    image: NDArray[np.int32],
) -> tuple[NDArray[np.int32], NDArray[np.int64], NDArray[np.int32], NDArray[np.bool_],
           NDArray[np.bool_]]:
    """Per-row candidates, lengths, shown position, found and malformed flags of version-2
    sets. Each distinct set is checked once (repeated or empty ids: malformed), rows in one pass."""
    k_all = max([int(lengths.max()) for _, lengths, _ in parts if len(lengths)] + [0])
    n = len(image)
    cands = np.empty((n, k_all), np.int32)
    lengths_out = np.empty(n, np.int64)
    shown = np.empty(n, np.int32)
    found = np.empty(n, np.bool_)
    malformed = np.zeros(n, np.bool_)
    start = 0
    for idx, lengths, part in parts:
        n_sets = len(lengths)
        codes = _padded(lengths, images.codes(part), -1, np.int32)
        set_codes = np.full((n_sets, k_all), -1, np.int32)
        set_codes[:, : codes.shape[1]] = codes
        _, _, bad = candidate_checks(set_codes, lengths, np.full(n_sets, -1, np.int32))
        stop = start + len(idx)
        expand_sets(idx, set_codes, lengths, image[start:stop], cands[start:stop],
                    lengths_out[start:stop], shown[start:stop], found[start:stop])
        if bad.any():
            malformed[start:stop] = np.r_[bad, False][idx]  # -1 (null set) -> False
        start = stop
    return cands, lengths_out, shown, found, malformed


def _feature_columns(
    table: pa.Table, names: list[str], n_features: int | None, source: str
) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
    """Version-2 feature columns as a C-ordered ``(n, d)`` float32 matrix (nulls become NaN),
    and whether each row is all finite."""
    d = len(names)
    expected = [f"{FEATURE_PREFIX}{j}" for j in range(d)]
    if names != expected:
        raise InvalidLogError(
            f"The feature columns of the log {source} must be {expected[0]} to {expected[-1]} "
            f"without gaps; got {names} instead."
        )
    if n_features is not None and n_features != d:
        raise InvalidLogError(
            f"The log {source} must have {n_features} feature columns; got {d} instead."
        )
    columns = table.select(names).columns
    out = np.empty((table.num_rows, d), dtype=np.float32)
    if all(c.type == pa.float32() and c.num_chunks == 1 and c.null_count == 0 for c in columns):
        # the usual case: one compiled pass copies the columns and checks them
        arrays = tuple(c.chunk(0).to_numpy() for c in columns)
        return out, interleave_finite(arrays, out)
    for j, (name, column) in enumerate(zip(names, columns, strict=True)):
        if column.type != pa.float32():
            _check_type(column, name, ("float", "integer"))
            column = column.cast(pa.float32(), safe=False)  # large integers round, they do not fail
        start = 0
        for chunk in column.chunks:  # one strided copy per chunk, straight into place
            stop = start + len(chunk)
            if chunk.null_count:
                chunk = pc.fill_null(chunk, pa.scalar(np.nan, pa.float32()))
            out[start:stop, j] = chunk.to_numpy(zero_copy_only=False)
            start = stop
    return out, finite_rows(out)


def _page_order(page: NDArray[np.int64]) -> NDArray[np.int64]:
    """Row order visiting pages contiguously, rows of a page in input order (stable)."""
    if len(page) < 2 or bool(np.all(page[1:] >= page[:-1])):
        return np.arange(len(page), dtype=np.int64)
    return np.argsort(page, kind="stable").astype(np.int64)


def _member_differs_in_page(
    page: NDArray[np.int64], order: NDArray[np.int64], member: NDArray[np.int64],
    alive: NDArray[np.bool_],
) -> NDArray[np.bool_]:
    """Mask of alive rows whose member differs from the member of the first alive row (in input
    order) of their page: a page belongs to one member, so its id was shared by two pages."""
    out = np.zeros(len(page), dtype=bool)
    order = order[alive[order]]
    if len(order) < 2:
        return out
    p, m = page[order], member[order]
    starts = np.r_[True, p[1:] != p[:-1]]
    first_member = m[starts][np.cumsum(starts) - 1]
    out[order] = m != first_member
    return out


def _first_duplicates(
    page: NDArray[np.int64], order: NDArray[np.int64], key: NDArray[np.int64], n_keys: int,
    alive: NDArray[np.bool_],
) -> NDArray[np.bool_]:
    """Mask of alive rows whose ``(page, key)`` repeats that of an earlier alive row
    (``0 <= key < n_keys``); the first row in input order is kept."""
    if n_keys <= 50_000_000:
        return duplicates_in_pages(order, page, key, n_keys, alive)
    # a huge key space (absurd layouts): a stable sort of (page, key) instead of a lookup table
    idx = order[alive[order]]
    o2 = np.lexsort((np.arange(len(idx)), key[idx], page[idx]))
    pk, kk = page[idx][o2], key[idx][o2]
    same = (pk[1:] == pk[:-1]) & (kk[1:] == kk[:-1])
    dup = np.zeros(len(page), dtype=bool)
    dup[idx[o2[1:][same]]] = True
    return dup


@contextlib.contextmanager
def arrow_errors(source: PathLike) -> Iterator[None]:
    """Turn what pyarrow raises on a damaged, truncated, empty or non-Parquet file into
    :class:`InvalidLogError` naming the file (pyarrow's own message kept, on one line).

    Damage that pyarrow does not detect itself surfaces as undecodable UTF-8 (names or string
    values) or as a column the schema promised and the file lacks; both are reported the same way.
    """
    try:
        yield
    except InvalidLogError:
        raise
    except (pa.ArrowException, OSError, EOFError, UnicodeDecodeError, KeyError) as err:
        detail = " ".join(str(err).split())[:300].rstrip(".") or type(err).__name__
        if isinstance(err, (UnicodeDecodeError, KeyError)):
            detail = f"damaged data ({type(err).__name__}: {detail})"
        raise InvalidLogError(f"The log '{source}' cannot be read as Parquet: {detail}.") from None


def check_regular_files(path: Path) -> None:
    """Refuse FIFOs, devices and sockets as a log (or inside a log folder) before pyarrow opens
    them: reading one blocks forever or never ends (``/dev/zero``)."""
    candidates = [path] if not path.is_dir() else [
        p for p in path.rglob("*") if not any(part.startswith((".", "_")) for part in p.relative_to(path).parts)
    ]
    for p in candidates:
        try:
            mode = p.stat().st_mode
        except OSError as err:
            raise InvalidLogError(f"The log file '{p}' cannot be read: {err.strerror or err}.") from None
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise InvalidLogError(
                f"The log file '{p}' is not a regular file (a FIFO, device or socket); give Parquet files."
            )


def _schema_of(source: PathLike) -> pa.Schema:
    path = Path(source)
    if path.is_dir():
        import pyarrow.dataset as ds

        try:
            return ds.dataset(path, format="parquet", partitioning="hive").schema
        except (OSError, pa.ArrowException):  # a damaged file: the first readable one's schema
            for f in _log_files(path):
                try:
                    return pq.read_schema(f)
                except (OSError, pa.ArrowException):
                    continue
            raise InvalidLogError(
                f"The log folder '{path}' must hold at least one readable Parquet file; got none."
            ) from None
    return pq.read_schema(path)  # the caller's arrow_errors() names the file


def _check_version(metadata: Mapping[bytes, bytes] | None, source: str, strict: bool) -> str:
    tag = (metadata or {}).get(SCHEMA_KEY)
    if tag is None:
        if strict:
            raise InvalidLogError(
                f"The log {source} must carry '{SCHEMA_KEY.decode()}' in its Parquet metadata "
                f"(write it with slate.logs.write_impressions); got none instead. Pass "
                f"strict_version=False to read it as {SCHEMA_NAME}/{SCHEMA_VERSION}."
            )
        return ""
    text = tag.decode()
    name, _, version = text.partition("/")
    if name != SCHEMA_NAME or version not in {str(v) for v in SCHEMA_VERSIONS}:
        raise InvalidLogError(
            f"The log {source} must be {SCHEMA_NAME}/{SCHEMA_VERSION} or another version in "
            f"{SCHEMA_VERSIONS}; got '{text}' instead."
        )
    return text


def _layout_version(columns: Sequence[str], tag: str, source: str) -> int:
    """The layout (1 or 2) of a table's columns, checked against its version tag ("" = none)."""
    v2 = "candidate_set" in columns or any(_is_feature_column(c) for c in columns)
    v1 = "candidate_ids" in columns or "features" in columns
    version = 2 if v2 else 1
    if v1 and v2:
        raise InvalidLogError(
            f"The log {source} must have the columns of one version of {SCHEMA_NAME}; got "
            f"version-1 and version-2 columns ({[c for c in columns if c in ('candidate_ids', 'features')]} "
            f"and candidate_set/feature_j) together instead."
        )
    if tag and int(tag.rpartition("/")[2]) != version:
        other = [c for c in columns if c in (("candidate_ids", "features") if v1 else ("candidate_set",))
                 or (not v1 and _is_feature_column(c))]
        raise InvalidLogError(
            f"The log {source} must have the columns of the version its metadata names; got "
            f"'{tag}' with column(s) {other} of version {version} instead."
        )
    return version


def read_impressions(
    source: PathLike | pa.Table,
    *,
    known_images: Iterable[str] | None = None,
    strict_version: bool = True,
    use_threads: bool = True,
    n_features: int | None = None,
) -> tuple[ImpressionLog, RejectionReport]:
    """Read and validate a ``slate.impressions`` log (a Parquet file, a folder, or a table).

    Every row is checked (vectorised); rejected rows are counted by their first
    :class:`~slate.logs.schema.RejectionReason` and listed by row number, nothing is dropped
    silently. The accepted rows are returned in input order.

    Parameters
    ----------
    source : str, path-like or pyarrow.Table
        A Parquet file, a folder of Parquet files (hive partitions allowed), or a table.
    known_images : iterable of str, optional
        The image catalog. When given, rows naming an image outside it (shown, candidate or
        previous) are rejected as ``unknown_image``.
    strict_version : bool, default True
        Require the schema tag in the file metadata (tables in memory need none).
    use_threads : bool, default True
        Let pyarrow decode columns on several threads.
    n_features : int, optional
        Expected length of the feature vectors (version 1: rows of another length are
        ``bad_features``; default: the most common length).

    Returns
    -------
    log : ImpressionLog
    report : RejectionReport
        Also available as ``log.rejections``.

    Raises
    ------
    InvalidLogError
        The log cannot be read: a required column is missing or of the wrong type, or the
        schema version is not ``slate.impressions/1`` or ``/2``.

    Examples
    --------
    >>> import pyarrow as pa
    >>> from slate.logs import read_impressions
    >>> from slate.logs.parquet import example_table
    >>> table = example_table()
    >>> bad = table.set_column(9, "propensity", pa.array([0.5, 1.5, 0.5, None]))
    >>> log, report = read_impressions(bad)
    >>> log.n_rows, report.counts["propensity_out_of_range"], report.counts["missing_propensity"]
    (2, 1, 1)
    >>> report.rows.tolist()
    [1, 3]
    """
    if isinstance(source, pa.Table):
        return validate_impressions(source, known_images=known_images, n_features=n_features)
    if isinstance(source, pa.RecordBatch):
        return validate_impressions(pa.Table.from_batches([source]), known_images=known_images,
                                    n_features=n_features)
    if not isinstance(source, (str, os.PathLike)):
        raise InvalidLogError(
            f"The 'source' parameter of read_impressions must be a path or a pyarrow Table; "
            f"got {type(source).__name__} instead."
        )
    path = Path(source)
    if not path.exists():
        raise InvalidLogError(
            f"The 'source' parameter of read_impressions must name an existing file or folder; "
            f"got '{path}' instead."
        )
    check_regular_files(path)
    with arrow_errors(path):
        schema = _schema_of(path)
        version = _check_version(schema.metadata, str(path), strict_version)
        wanted, ignored, dictionary_columns = _read_plan(schema)
    try:
        table = pq.read_table(
            path,
            columns=wanted,
            use_threads=use_threads,
            read_dictionary=dictionary_columns,
            partitioning="hive" if path.is_dir() else None,
            page_checksum_verification=True,
        )
    except (OSError, pa.ArrowException):  # a damaged page or file: read around it
        return _read_around_damage(
            path, schema, wanted, dictionary_columns, known_images=known_images, ignored=ignored,
            schema_tag=version, n_features=n_features, use_threads=use_threads,
        )
    return validate_impressions(
        table, known_images=known_images, source=str(path), ignored_columns=ignored,
        schema_tag=version, n_features=n_features,
    )


def _log_files(path: Path) -> list[Path]:
    """The files of a log folder as pyarrow's dataset discovery sees them (hidden and ``_``
    names skipped), sorted; a file stands for itself."""
    if not path.is_dir():
        return [path]
    return sorted(
        p for p in path.rglob("*")
        if p.is_file() and not any(part.startswith((".", "_")) for part in p.relative_to(path).parts)
    )


def read_row_groups(
    file: pq.ParquetFile, groups: Iterable[int], columns: Sequence[str], first_row: int,
    use_threads: bool = False, source: str = "",
) -> tuple[list[pa.Table], list[NDArray[np.int64]], list[NDArray[np.int64]], list[str]]:
    """Read row groups one by one, setting aside those that cannot be read.

    Returns the tables read, the row numbers of each (``first_row`` + offset in the file), the
    row numbers of the damaged groups, and one line per damaged group naming the file and group.
    """
    meta = file.metadata
    starts = np.r_[0, np.cumsum([meta.row_group(i).num_rows for i in range(meta.num_row_groups)])]
    names = set(file.schema_arrow.names)
    present = [c for c in columns if c in names]
    tables: list[pa.Table] = []
    rows: list[NDArray[np.int64]] = []
    bad: list[NDArray[np.int64]] = []
    notes: list[str] = []
    for g in groups:
        span = np.arange(first_row + starts[g], first_row + starts[g + 1], dtype=np.int64)
        try:
            table = file.read_row_group(g, columns=present, use_threads=use_threads)
            if table.num_rows != len(span):
                raise OSError(f"{table.num_rows} rows read, {len(span)} expected")
        except (OSError, pa.ArrowException) as err:
            bad.append(span)
            notes.append(f"{source}: row group {g} ({len(span)} rows): {_first_line(err)}")
            continue
        tables.append(table)
        rows.append(span)
    return tables, rows, bad, notes


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


def with_damage(
    log: ImpressionLog, rows: NDArray[np.int64], damaged_rows: NDArray[np.int64],
    notes: Sequence[str],
) -> ImpressionLog:
    """A log validated from some rows, renumbered (``rows[i]`` is the input row number of its
    row ``i``), with the rows of damaged row groups counted as ``corrupt_row_group``."""
    import dataclasses

    report = log.rejections
    code = np.int8(_REASON_CODE[RejectionReason.CORRUPT_ROW_GROUP])
    all_rows = np.r_[rows[report.rows], damaged_rows].astype(np.int64)
    reasons = np.r_[report.reasons, np.full(len(damaged_rows), code, np.int8)].astype(np.int8)
    order = np.argsort(all_rows, kind="stable")
    report = dataclasses.replace(
        report, n_read=report.n_read + len(damaged_rows), rows=all_rows[order],
        reasons=reasons[order], damaged=(*report.damaged, *notes),
    )
    return dataclasses.replace(log, source_row=rows[log.source_row], rejections=report, _cache={})


def _read_around_damage(
    path: Path, schema: pa.Schema, wanted: list[str], dictionary: list[str], *,
    known_images: Iterable[str] | None, ignored: tuple[str, ...], schema_tag: str,
    n_features: int | None, use_threads: bool,
) -> tuple[ImpressionLog, RejectionReport]:
    """Read a log file by file and row group by row group, setting aside what cannot be read
    (reported with its file and row group), and validate the rest."""
    tables: list[pa.Table] = []
    rows: list[NDArray[np.int64]] = []
    bad: list[NDArray[np.int64]] = []
    notes: list[str] = []
    offset = 0
    for f in _log_files(path):
        try:
            file = pq.ParquetFile(f, read_dictionary=dictionary, page_checksum_verification=True)
        except (OSError, pa.ArrowException) as err:
            notes.append(f"{f}: unreadable file: {_first_line(err)}")
            continue
        parts = read_row_groups(file, range(file.metadata.num_row_groups), wanted, offset,
                                use_threads, str(f))
        tables += parts[0]
        rows += parts[1]
        bad += parts[2]
        notes += parts[3]
        offset += file.metadata.num_rows
    if tables:
        try:
            table = pa.concat_tables(tables, promote_options="default")
        except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
            raise InvalidLogError(
                f"The files of the log {path} must have compatible columns; got {_first_line(err)}."
            ) from None
    else:
        table = schema.empty_table().select([c for c in wanted if c in schema.names])
    log, _ = validate_impressions(
        table, known_images=known_images, source=str(path), ignored_columns=ignored,
        schema_tag=schema_tag, n_features=n_features,
    )
    row_map = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    damaged = np.concatenate(bad) if bad else np.zeros(0, np.int64)
    log = with_damage(log, row_map, damaged, notes)
    return log, log.rejections


_KNOWN_COLUMNS = frozenset(SCHEMA.names) | {"candidate_set"}


def _read_plan(
    schema: pa.Schema, columns: Iterable[str] | None = None
) -> tuple[list[str], tuple[str, ...], list[str]]:
    """Columns to read (schema columns, or those of ``columns`` present), columns ignored, and
    the string columns to read as dictionaries."""
    known = [c for c in schema.names if c in _KNOWN_COLUMNS or _is_feature_column(c)]
    ignored = tuple(c for c in schema.names if c not in known and c not in DECISION_COLUMNS)
    if columns is not None:
        keep = set(columns)
        if "features" in keep:
            keep |= {c for c in known if _is_feature_column(c)}
        if "candidate_ids" in keep or "candidate_set" in keep:
            keep |= {"candidate_ids", "candidate_set"}
        known = [c for c in known if c in keep]
    dictionary = [c for c in (*_STRING_COLUMNS, "candidate_set") if c in known]
    if "candidate_ids" in known:
        dictionary.append("candidate_ids.list.element")
    return known, ignored, dictionary


class _Rows:
    """The rows of one table under validation: its columns, and each row's first rejection reason.

    Rules run in a fixed order (:func:`validate_impressions`); a row keeps the reason of the
    first rule that rejects it, so the order is part of the result.
    """

    def __init__(self, table: pa.Table, source: str, version: int) -> None:
        self.table = table
        self.source = source
        self.n = table.num_rows
        self.v2 = version == 2
        self.cand_name = "candidate_set" if self.v2 else "candidate_ids"
        self.present = set(table.column_names)
        self.first = np.full(self.n, -1, dtype=np.int8)

    def col(self, name: str) -> pa.ChunkedArray:
        return self.table.column(name)

    def has(self, name: str) -> bool:
        """The column is in the table and not entirely null."""
        return name in self.present and self.col(name).null_count < self.n

    def flag(self, mask: NDArray[np.bool_], reason: RejectionReason) -> None:
        """Reject the rows of ``mask`` not rejected already, for ``reason``."""
        self.first[(self.first < 0) & mask] = _REASON_CODE[reason]

    @property
    def alive(self) -> NDArray[np.bool_]:
        return self.first < 0


_COLUMN_KINDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("member_id", ("integer",)), ("session_id", ("integer",)), ("page_id", ("integer",)),
    ("timestamp", ("timestamp",)), ("title_id", ("string",)), ("row", ("integer",)),
    ("col", ("integer",)), ("image_id", ("string",)), ("propensity", ("float", "integer")),
    ("explored", ("bool",)), ("reward", ("integer", "float", "bool")),
    ("engagement", ("float", "integer")), ("previous_image_id", ("string",)),
    ("features_ref", ("string",)), ("candidate_set", ("string",)),
)


def _check_columns(
    table: pa.Table, source: str, schema_tag: str | None, ignored_columns: tuple[str, ...]
) -> tuple[_Rows, str, tuple[str, ...]]:
    """Table-level checks (version, required columns, column types): one error for the file."""
    if not isinstance(table, pa.Table):
        raise InvalidLogError(
            f"The 'table' parameter of validate_impressions must be a pyarrow Table; "
            f"got {type(table).__name__} instead."
        )
    if schema_tag is None:
        schema_tag = _check_version(table.schema.metadata, source, strict=False)
    names = table.column_names
    version = _layout_version(names, schema_tag, source)
    rows = _Rows(table, source, version)
    missing = [c for c in (REQUIRED_COLUMNS_V2 if rows.v2 else REQUIRED_COLUMNS) if c not in rows.present]
    if missing:
        raise InvalidLogError(
            f"The log {source} must have the required column(s) {missing}; got columns "
            f"{names} instead."
        )
    ignored = tuple(ignored_columns) + tuple(
        c for c in names
        if c not in _KNOWN_COLUMNS and not _is_feature_column(c) and c not in ignored_columns
        and c not in DECISION_COLUMNS
    )
    for name, kinds in _COLUMN_KINDS:
        if name in rows.present:
            _check_type(rows.col(name), name, kinds)
    return rows, f"{SCHEMA_NAME}/{version}", ignored


def _scalar_fields(rows: _Rows) -> dict[str, NDArray[Any]]:
    """The required scalar columns as arrays, and which rows miss one of the required fields."""
    col = rows.col
    missing_mask = np.zeros(rows.n, dtype=bool)
    for name in ("member_id", "session_id", "page_id", "timestamp", "title_id", "row", "col",
                 "image_id", rows.cand_name, "explored"):
        missing_mask |= _null_mask(col(name))
    ts_col = col("timestamp")
    if not pa.types.is_null(ts_col.type):
        ts_col = ts_col.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
    return {
        "missing": missing_mask,
        "member": _numeric(col("member_id"), "member_id", np.int64, 0),
        "session": _numeric(col("session_id"), "session_id", np.int64, 0),
        "page": _numeric(col("page_id"), "page_id", np.int64, 0),
        "timestamp": _numeric(ts_col, "timestamp", np.int64, 0),
        "row": _numeric(col("row"), "row", np.int64, 0),
        "colpos": _numeric(col("col"), "col", np.int64, 0),
        "explored": _numeric(col("explored"), "explored", np.bool_, False),
    }


def _ids_and_candidates(rows: _Rows) -> dict[str, Any]:
    """Titles, images, candidate sets and previous images as codes in sorted vocabularies, and
    the shown image's position among the candidates (``found``: it is one; ``malformed``)."""
    col, n = rows.col, rows.n
    titles = _Vocabulary()
    title_parts = _string_codes(col("title_id"), titles)
    title_ids = titles.finish()
    title = _concat_codes(titles, title_parts, n)

    images = _Vocabulary()
    image_parts = _string_codes(col("image_id"), images)
    if rows.v2:
        set_parts = [_split_sets(chunk, images) for chunk in col("candidate_set").chunks]
    else:
        cand_lists = _list_parts(col("candidate_ids"), "candidate_ids")
        cand_parts = [images.add(values) for _, values in cand_lists]
    has_previous = "previous_image_id" in rows.present
    prev_parts = _string_codes(col("previous_image_id"), images) if has_previous else []
    image_ids = images.finish()
    image = _concat_codes(images, image_parts, n)
    if rows.v2:
        candidates, cand_lengths, shown, found, malformed = _expand_sets(set_parts, images, image)
    else:
        cand_lengths = (
            np.concatenate([lengths for lengths, _ in cand_lists]) if cand_lists
            else np.zeros(0, np.int64)
        )
        cand_flat = (
            np.concatenate([images.codes(p) for p in cand_parts]) if cand_parts
            else np.zeros(0, np.int32)
        )
        candidates = _padded(cand_lengths, cand_flat, -1, np.int32)
        shown, found, malformed = candidate_checks(candidates, cand_lengths, image)
    return {
        "title": title, "title_ids": title_ids, "image": image, "image_ids": image_ids,
        "candidates": candidates, "cand_lengths": cand_lengths, "shown": shown, "found": found,
        "malformed": malformed,
        "previous": _concat_codes(images, prev_parts, n) if has_previous else None,
    }


def _rule_positions(rows: _Rows, row: NDArray[np.int64], colpos: NDArray[np.int64]) -> None:
    rows.flag((row < 0) | (colpos < 0) | (row > MAX_POSITION) | (colpos > MAX_POSITION),
              RejectionReason.BAD_POSITION)


def _rule_propensity(rows: _Rows) -> NDArray[np.float64]:
    """The logged propensity: present, finite, in [MIN_PROPENSITY, 1]."""
    propensity = _numeric(rows.col("propensity"), "propensity", np.float64, 0.0)
    rows.flag(_null_mask(rows.col("propensity")), RejectionReason.MISSING_PROPENSITY)
    with np.errstate(invalid="ignore"):
        rows.flag(~(np.isfinite(propensity) & (propensity >= MIN_PROPENSITY) & (propensity <= 1)),
                  RejectionReason.PROPENSITY_OUT_OF_RANGE)
    return propensity


def _rule_catalog(rows: _Rows, known_images: Iterable[str] | None, ids: dict[str, Any]) -> None:
    """Shown, candidate and previous images are in the catalog (when one is given)."""
    if known_images is None:
        return
    known = set(str(x) for x in known_images)
    image_ids, candidates, previous = ids["image_ids"], ids["candidates"], ids["previous"]
    ok = np.r_[np.fromiter((i in known for i in image_ids), bool, len(image_ids)), True]
    unknown = ~ok[ids["image"]]
    if candidates.shape[1]:
        unknown |= ~ok[candidates].all(axis=1)
    if previous is not None:
        unknown |= ~ok[previous]
    rows.flag(unknown, RejectionReason.UNKNOWN_IMAGE)


def _rule_propensity_vector(
    rows: _Rows, ids: dict[str, Any], propensity: NDArray[np.float64]
) -> NDArray[np.float64] | None:
    """The full logging distribution: one probability per candidate, summing to 1, agreeing
    with ``propensity`` at the shown image. None without the column."""
    if not rows.has("propensities"):
        return None
    n, col = rows.n, rows.col
    candidates, cand_lengths, shown = ids["candidates"], ids["cand_lengths"], ids["shown"]
    plists = _list_parts(col("propensities"), "propensities")
    p_lengths = np.concatenate([lengths for lengths, _ in plists])
    p_values = pa.chunked_array([v for _, v in plists], type=pa.float64()) if plists else None
    p_flat = _numeric(p_values, "propensities", np.float64, np.nan) if p_values is not None else np.zeros(0)
    bad_vec = _null_mask(col("propensities")) | (p_lengths != cand_lengths)
    same = ~bad_vec
    matrix: NDArray[np.float64] = np.zeros(candidates.shape, dtype=np.float64)
    if same.all():
        matrix = _padded(p_lengths, p_flat, 0.0, np.float64)
    else:
        sel = np.repeat(same, p_lengths)
        sub = _padded(p_lengths[same], p_flat[sel], 0.0, np.float64)
        matrix[same, : sub.shape[1]] = sub
    with np.errstate(invalid="ignore"):
        bad_vec |= ~(np.isfinite(matrix) & (matrix >= 0) & (matrix <= 1)).all(axis=1)
        bad_vec |= ~(np.abs(matrix.sum(axis=1) - 1.0) <= PROPENSITY_TOLERANCE)
        if matrix.shape[1]:
            at_shown = matrix[np.arange(n), shown]
            bad_vec |= ~(np.abs(at_shown - propensity) <= PROPENSITY_TOLERANCE)
    rows.flag(bad_vec, RejectionReason.BAD_PROPENSITY_VECTOR)
    return np.where(np.isfinite(matrix), matrix, 0.0)


def _rule_reward(rows: _Rows) -> NDArray[np.int8]:
    """The reward is present and in the label set."""
    reward_col = rows.col("reward")
    rows.flag(_null_mask(reward_col), RejectionReason.MISSING_REWARD)
    # int8 (the schema's type) is checked as it is; other types as float64
    reward_raw = _numeric(reward_col, "reward",
                          np.int8 if reward_col.type == pa.int8() else np.float64, 0)
    in_set = np.zeros(rows.n, dtype=bool)
    for label in LABEL_SET:
        in_set |= reward_raw == label
    rows.flag(~in_set, RejectionReason.REWARD_OUT_OF_LABEL_SET)
    return (reward_raw if in_set.all() else np.where(in_set, reward_raw, 0)).astype(np.int8, copy=False)


def _rule_engagement(rows: _Rows) -> NDArray[np.float64] | None:
    """Engagement, when present, is finite and non-negative (null reads as NaN)."""
    if "engagement" not in rows.present:
        return None
    e_null = _null_mask(rows.col("engagement"))
    engagement = _numeric(rows.col("engagement"), "engagement", np.float64, 0.0)
    with np.errstate(invalid="ignore"):
        rows.flag(~e_null & ~(np.isfinite(engagement) & (engagement >= 0)), RejectionReason.BAD_ENGAGEMENT)
    return np.where(e_null, np.nan, engagement)


def _rule_features(rows: _Rows, n_features: int | None) -> NDArray[np.float32] | None:
    """Feature columns (``f0, f1, ...``) or a ``features`` list: one length, finite values."""
    present, n, col = rows.present, rows.n, rows.col
    features = None
    feature_names = sorted((c for c in present if _is_feature_column(c)),
                           key=lambda c: int(c[len(FEATURE_PREFIX):]))
    if feature_names:
        features, finite = _feature_columns(rows.table, feature_names, n_features, rows.source)
        rows.flag(~finite, RejectionReason.BAD_FEATURES)
        if not finite.all():
            features = np.where(np.isfinite(features), features, 0.0).astype(np.float32)
    elif rows.has("features"):
        flists = _list_parts(col("features"), "features")
        f_lengths = np.concatenate([lengths for lengths, _ in flists])
        f_null = _null_mask(col("features"))
        counts = np.bincount(f_lengths[~f_null])
        dim = int(counts.argmax()) if n_features is None else int(n_features)
        f_values = pa.chunked_array([v for _, v in flists], type=pa.float32())
        f_flat = _numeric(f_values, "features", np.float32, np.nan)
        good = ~f_null & (f_lengths == dim)
        if good.all():
            features = f_flat.reshape(n, dim)
        else:
            features = np.zeros((n, dim), dtype=np.float32)
            sel = np.repeat(good, f_lengths)
            features[good] = f_flat[sel].reshape(-1, dim)
        finite = finite_rows(np.ascontiguousarray(features))
        rows.flag(~good | ~finite, RejectionReason.BAD_FEATURES)
        if not finite.all():
            features = np.where(np.isfinite(features), features, 0.0).astype(np.float32)
    return features


def _features_ref(rows: _Rows) -> NDArray[np.object_] | None:
    if not rows.has("features_ref"):
        return None
    # cast first: a dictionary array's to_numpy turns nulls into other rows' values
    return np.asarray(rows.col("features_ref").cast(pa.string()).to_numpy(zero_copy_only=False), dtype=object)


def _rule_duplicates(rows: _Rows, fields: dict[str, NDArray[Any]], ids: dict[str, Any]) -> None:
    """Among the rows still alive (the first in input order is kept): one row per title and per
    position in a page, and one member per page id."""
    page, title, row, colpos = fields["page"], ids["title"], fields["row"], fields["colpos"]
    alive = rows.alive
    order = _page_order(page)
    dup = _first_duplicates(page, order, title.astype(np.int64), len(ids["title_ids"]) + 1,
                            alive & (title >= 0))
    rows.flag(dup, RejectionReason.DUPLICATE_IMPRESSION)
    alive = rows.alive
    if alive.any():
        n_cols = int(colpos[alive].max()) + 1
        n_rows_layout = int(row[alive].max()) + 1
        position = np.where(alive, row * n_cols + colpos, 0)
        dup = _first_duplicates(page, order, position, n_rows_layout * n_cols, alive)
        rows.flag(dup, RejectionReason.DUPLICATE_POSITION)
    rows.flag(_member_differs_in_page(page, order, fields["member"], rows.alive), RejectionReason.PAGE_ID_SHARED)


def _assemble(rows: _Rows, values: dict[str, Any], ignored: tuple[str, ...], schema_tag: str) -> tuple[ImpressionLog, RejectionReport]:
    """The accepted rows as an :class:`ImpressionLog`, and the report of the rejected ones."""
    n = rows.n
    keep = rows.alive
    rejected = np.flatnonzero(~keep)
    report = RejectionReport(
        n_read=n,
        n_accepted=int(keep.sum()),
        rows=rejected,
        reasons=rows.first[rejected],
        ignored_columns=ignored,
        source=rows.source,
    )
    all_kept = report.n_rejected == 0

    def kept(a: NDArray[Any] | None) -> Any:
        if a is None:
            return None
        return a if all_kept else a[keep]

    kept_candidates = kept(values["candidates"])
    kept_lengths = kept(values["cand_lengths"])
    k_max = int(kept_lengths.max()) if len(kept_lengths) else 0
    if kept_candidates.shape[1] != k_max:
        kept_candidates = kept_candidates[:, :k_max]
    kept_props = kept(values["propensities"])
    if kept_props is not None and kept_props.shape[1] != k_max:
        kept_props = kept_props[:, :k_max]
    features = values["features"]
    log = ImpressionLog(
        member_id=kept(values["member"]),
        session_id=kept(values["session"]),
        page_id=kept(values["page"]),
        timestamp=kept(values["timestamp"]),
        title=kept(values["title"]),
        row=kept(values["row"]).astype(np.int32),
        col=kept(values["colpos"]).astype(np.int32),
        image=kept(values["image"]),
        candidates=np.ascontiguousarray(kept_candidates),
        n_candidates=kept_lengths.astype(np.int32),
        shown=kept(values["shown"]),
        propensity=kept(values["propensity"]),
        propensities=None if kept_props is None else np.ascontiguousarray(kept_props),
        explored=kept(values["explored"]),
        reward=kept(values["reward"]),
        engagement=kept(values["engagement"]),
        previous_image=kept(values["previous"]),
        features=None if features is None else kept(features),
        features_ref=kept(values["features_ref"]),
        title_ids=values["title_ids"],
        image_ids=values["image_ids"],
        source_row=(np.arange(n, dtype=np.int64) if all_kept
                    else np.flatnonzero(keep).astype(np.int64)),
        rejections=report,
        schema=schema_tag,
    )
    return log, report


def validate_impressions(
    table: pa.Table,
    *,
    known_images: Iterable[str] | None = None,
    source: str = "<table>",
    ignored_columns: tuple[str, ...] = (),
    schema_tag: str | None = None,
    n_features: int | None = None,
) -> tuple[ImpressionLog, RejectionReport]:
    """Validate an impressions table (either version) already in memory; see
    :func:`read_impressions`.

    Table-level problems raise :class:`~slate.errors.InvalidLogError`; row-level ones reject the
    row, which keeps the reason of the first rule that fails, in this order: missing field,
    malformed candidates, bad position, missing / out-of-range propensity, shown image not a
    candidate, unknown image, bad propensity vector, missing / out-of-set reward, bad
    engagement, bad features, duplicate title, duplicate position, page id shared by members.
    """
    rows, schema_tag, ignored = _check_columns(table, source, schema_tag, ignored_columns)
    fields = _scalar_fields(rows)
    ids = _ids_and_candidates(rows)
    rows.flag(fields["missing"], RejectionReason.MISSING_FIELD)
    rows.flag(ids["malformed"], RejectionReason.MALFORMED_CANDIDATES)
    _rule_positions(rows, fields["row"], fields["colpos"])
    propensity = _rule_propensity(rows)
    rows.flag(~ids["found"], RejectionReason.SHOWN_NOT_CANDIDATE)
    _rule_catalog(rows, known_images, ids)
    values: dict[str, Any] = {
        **fields,
        **ids,
        "propensity": propensity,
        "propensities": _rule_propensity_vector(rows, ids, propensity),
        "reward": _rule_reward(rows),
        "engagement": _rule_engagement(rows),
        "features": _rule_features(rows, n_features),
        "features_ref": _features_ref(rows),
    }
    _rule_duplicates(rows, fields, ids)
    return _assemble(rows, values, ignored, schema_tag)
