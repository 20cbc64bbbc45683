"""Streaming a log in chunks of whole pages, with bounded memory.

:func:`scan_impressions` reads a ``slate.impressions`` file (or every file of a folder) a few
row groups at a time, validates each chunk exactly as :func:`~slate.logs.read_impressions`
would, and yields :class:`~slate.logs.ImpressionLog` chunks that never split a page. Replay
reduces each chunk to mergeable partial sums (:mod:`slate.replay.partials`), so the memory used
is that of one chunk, whatever the size of the log.

Pages stay whole because a chunk ends at a row-group boundary and a page that straddles the
boundary (the last page of one group is the first of the next) is carried into the next chunk.
This needs the file's row groups to be ordered by ``page_id`` (each group's page ids, read from
the Parquet statistics, not below the previous group's): the writers of :mod:`slate.sim` and
:mod:`slate.serve` write pages in order. A file whose row groups are not ordered is read as one
chunk (correct, with the memory of the whole file). A page must never be split across files.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from numpy.typing import NDArray

from slate.logs.log import ImpressionLog, RejectionReport
from slate.logs.parquet import (
    InvalidLogError,
    PathLike,
    _check_version,
    _first_line,
    _read_plan,
    arrow_errors,
    check_regular_files,
    read_row_groups,
    validate_impressions,
    with_damage,
)

__all__ = [
    "DEFAULT_CHUNK_ROWS",
    "list_log_files",
    "merge_reports",
    "page_ordered_units",
    "scan_impressions",
]

DEFAULT_CHUNK_ROWS = 131_072
"""Rows per chunk to aim for: consecutive row groups are read together up to this size."""


def list_log_files(source: PathLike | Iterable[PathLike]) -> list[Path]:
    """The Parquet files of a log: the file itself, every ``*.parquet`` file under a folder
    (hive partitions included, hidden files skipped), or the given files; sorted by path.

    Examples
    --------
    >>> import tempfile, os
    >>> from slate.logs import write_impressions
    >>> from slate.logs.parquet import example_table
    >>> folder = tempfile.mkdtemp()
    >>> for day in ("2024-01-01", "2024-01-02"):
    ...     os.makedirs(os.path.join(folder, f"date={day}"))
    ...     _ = write_impressions(os.path.join(folder, f"date={day}", "part.parquet"), example_table())
    >>> [p.parent.name for p in list_log_files(folder)]
    ['date=2024-01-01', 'date=2024-01-02']
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.exists():
            check_regular_files(path)
        if path.is_dir():
            files = sorted(
                p for p in path.rglob("*.parquet")
                if not any(part.startswith((".", "_")) for part in p.relative_to(path).parts)
            )
            if not files:
                raise InvalidLogError(
                    f"The folder '{path}' must hold at least one .parquet file; got none."
                )
            return files
        if not path.exists():
            raise InvalidLogError(
                f"The log source must name an existing file or folder; got '{path}' instead."
            )
        return [path]
    files = [Path(p) for p in source]
    missing = [str(p) for p in files if not p.is_file()]
    for p in files:
        if p.exists():
            check_regular_files(p)
    if missing:
        raise InvalidLogError(f"The log files must exist; got missing file(s) {missing}.")
    return sorted(files)


def page_ordered_units(
    metadata: pq.FileMetaData, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> list[tuple[list[int], bool]] | None:
    """Group a file's row groups into chunks of about ``chunk_rows`` rows that never split a
    page, from the ``page_id`` statistics; None when the groups are not ordered by page.

    Returns a list of ``(row group indices, carry)``: ``carry`` says the chunk's last page
    continues in the next chunk (its rows are carried over).
    """
    schema = metadata.schema.to_arrow_schema()
    if "page_id" not in schema.names:
        return None
    column = schema.names.index("page_id")
    ranges: list[tuple[int, int, int]] = []  # (row group, min, max) of non-empty groups
    for i in range(metadata.num_row_groups):
        group = metadata.row_group(i)
        if group.num_rows == 0:
            continue
        stats = group.column(column).statistics
        if stats is None or not stats.has_min_max:
            if stats is not None and stats.null_count == group.num_rows:
                ranges.append((i, -(2**63), -(2**63)))  # only null ids: rejected rows
                continue
            return None
        ranges.append((i, int(stats.min), int(stats.max)))
    lo = -(2**63)
    for _, mn, mx in ranges:
        if mn < lo:
            return None
        lo = max(lo, mx)
    units: list[tuple[list[int], bool]] = []
    current: list[int] = []
    size = 0
    for j, (i, _, mx) in enumerate(ranges):
        current.append(i)
        size += metadata.row_group(i).num_rows
        last = j == len(ranges) - 1
        if size >= chunk_rows or last:
            carry = not last and ranges[j + 1][1] == mx
            units.append((current, carry))
            current, size = [], 0
    return units


def _renumber(log: ImpressionLog, rows: NDArray[np.int64]) -> ImpressionLog:
    """The chunk's rejection report and source rows, numbered as rows of the file."""
    report = log.rejections
    report = dataclasses.replace(report, rows=rows[report.rows])
    return dataclasses.replace(log, source_row=rows[log.source_row], rejections=report,
                               _cache={})


def scan_impressions(
    source: PathLike | Iterable[PathLike],
    *,
    known_images: Iterable[str] | None = None,
    n_features: int | None = None,
    columns: Iterable[str] | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    strict_version: bool = True,
    use_threads: bool = False,
) -> Iterator[ImpressionLog]:
    """Read and validate a log chunk by chunk, each chunk a whole number of pages.

    Every chunk is validated as :func:`~slate.logs.read_impressions` validates a whole log, so
    the accepted rows, and the rejected rows counted by reason, are the same (given the same
    ``n_features``: version-1 files otherwise take the feature length of their first chunk).

    Parameters
    ----------
    source : path, folder, or iterable of paths
        See :func:`list_log_files`. Files are read one after the other.
    known_images, n_features, strict_version
        As for :func:`~slate.logs.read_impressions`.
    columns : iterable of str, optional
        Read only these columns besides the required ones (e.g. ``["features"]``); the checks of
        optional columns left out (``propensities``, ``engagement``, ...) are then skipped.
        Default: every column of the file.
    chunk_rows : int, default 131072
        Consecutive row groups are read together until a chunk has at least this many rows.
    use_threads : bool, default False
        Let pyarrow decode columns on several threads (off: one core per process, as in a
        dask worker).

    Yields
    ------
    ImpressionLog
        The accepted rows of one chunk; ``log.rejections`` counts the chunk's rejected rows,
        and its ``rows`` (like ``log.source_row``) are row numbers within the file named by
        ``log.rejections.source``.

    Examples
    --------
    >>> import tempfile, os
    >>> from slate.logs import write_impressions, scan_impressions
    >>> from slate.logs.parquet import example_table
    >>> path = write_impressions(os.path.join(tempfile.mkdtemp(), "log.parquet"), example_table(),
    ...                          row_group_size=1, version=2)
    >>> [(chunk.n_pages, chunk.n_rows) for chunk in scan_impressions(path, chunk_rows=1)]
    [(1, 2), (1, 2)]
    """
    if not isinstance(chunk_rows, (int, np.integer)) or chunk_rows < 1:
        raise InvalidLogError(
            f"The 'chunk_rows' parameter of scan_impressions must be an integer >= 1; got "
            f"{chunk_rows!r} instead."
        )
    catalog = None if known_images is None else [str(x) for x in known_images]
    wanted_columns = None if columns is None else list(columns)
    for path in list_log_files(source):
        with arrow_errors(path):
            yield from _scan_file(path, catalog, n_features, wanted_columns, int(chunk_rows),
                                  strict_version, use_threads)


def _scan_file(
    path: Path,
    known_images: list[str] | None,
    n_features: int | None,
    columns: list[str] | None,
    chunk_rows: int,
    strict_version: bool,
    use_threads: bool,
) -> Iterator[ImpressionLog]:
    try:
        probe = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as err:  # a damaged footer: reported, the rest still reads
        yield _unreadable(path, err)
        return
    schema = probe.schema_arrow
    tag = _check_version(schema.metadata, str(path), strict_version)
    required = {"member_id", "session_id", "page_id", "timestamp", "title_id", "row", "col",
                "image_id", "candidate_ids", "candidate_set", "propensity", "explored", "reward"}
    wanted, ignored, dictionary = _read_plan(
        schema, None if columns is None else required | set(columns)
    )
    file = pq.ParquetFile(path, read_dictionary=dictionary, page_checksum_verification=True)
    units = page_ordered_units(file.metadata, chunk_rows)
    if units is None:  # not ordered by page: the whole file is one chunk
        units = [(list(range(file.metadata.num_row_groups)), False)]
    carry: pa.Table | None = None
    carry_rows = np.zeros(0, np.int64)
    for groups, carry_on in units:
        # one group at a time: pyarrow cannot read dictionary-encoded lists of several groups;
        # a group that cannot be read (checksum mismatch, undecodable page) is set aside
        parts, spans, bad, notes = read_row_groups(file, groups, wanted, 0, use_threads, str(path))
        if parts:
            table = parts[0] if len(parts) == 1 else pa.concat_tables(parts)
            rows = np.concatenate(spans)
        else:
            table = (carry.slice(0, 0) if carry is not None
                     else file.schema_arrow.empty_table().select(wanted))
            rows = np.zeros(0, np.int64)
        damaged = np.concatenate(bad) if bad else np.zeros(0, np.int64)
        if carry is not None:
            table = pa.concat_tables([carry, table])
            rows = np.r_[carry_rows, rows]
            carry = None
        if carry_on:
            page = table.column("page_id")
            boundary = pc.max(page).as_py()
            mask = np.asarray(pc.fill_null(pc.equal(page, boundary), False))
            first = int(np.argmax(mask))
            if mask[first:].all():  # the usual case: the boundary page ends the chunk
                carry, carry_rows = table.slice(first), rows[first:]
                table, rows = table.slice(0, first), rows[:first]
            else:
                carry, carry_rows = table.filter(mask), rows[mask]
                table, rows = table.filter(~mask), rows[~mask]
        if table.num_rows == 0 and not len(damaged):
            continue
        log, _ = validate_impressions(
            table, known_images=known_images, source=str(path), ignored_columns=ignored,
            schema_tag=tag, n_features=n_features,
        )
        if n_features is None and log.features is not None:
            n_features = log.n_features  # later chunks of a version-1 file use the same length
        yield with_damage(log, rows, damaged, notes) if len(damaged) else _renumber(log, rows)


def _unreadable(path: Path, err: BaseException) -> ImpressionLog:
    """An empty chunk whose report names a file that cannot be opened (no row count known)."""
    from slate.logs.schema import SCHEMA

    log, _ = validate_impressions(SCHEMA.empty_table(), source=str(path))
    note = f"{path}: unreadable file: {_first_line(err)}"
    return with_damage(log, np.zeros(0, np.int64), np.zeros(0, np.int64), [note])


def merge_reports(reports: Iterable[RejectionReport], source: str = "<log>") -> RejectionReport:
    """One report for several chunks of one source (row numbers kept as they are)."""
    parts = list(reports)
    if not parts:
        return RejectionReport(n_read=0, n_accepted=0, rows=np.zeros(0, np.int64),
                               reasons=np.zeros(0, np.int8), source=source)
    ignored: list[str] = []
    for p in parts:
        ignored += [c for c in p.ignored_columns if c not in ignored]
    return RejectionReport(
        n_read=sum(p.n_read for p in parts),
        n_accepted=sum(p.n_accepted for p in parts),
        rows=np.concatenate([p.rows for p in parts]),
        reasons=np.concatenate([p.reasons for p in parts]),
        ignored_columns=tuple(ignored),
        source=source,
        damaged=tuple(d for p in parts for d in p.damaged),
    )
