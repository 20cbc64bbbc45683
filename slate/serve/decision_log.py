"""Decision logging: :class:`PageDecision` rows appended to Parquet in batches, crash-safe.

Each row is one (page, title) in the ``slate.impressions/1`` schema (:mod:`slate.logs.schema`),
the schema replay reads: who, which page, where the title was, the candidates, the image shown,
its propensity, whether it was explored, the previous image. (The optional ``propensities``
column is not written: under sticky exploration most rows show a held draw whose full
distribution is not kept, and the reader rejects a null distribution.) ``reward`` is null until the outcome is known, unless the caller passes it (a simulator
knows it at once); attach the plays with :func:`slate.logs.join_outcomes` (``slate join``).
Each row also carries :data:`slate.logs.schema.DECISION_COLUMNS` (locks, the exploration draw,
the compose config, the request context), which rebuild and replay the page.

**Batches and rotation.** Decisions are buffered in memory; every ``batch_pages`` pages (or when
the oldest buffered page is ``flush_seconds`` old, checked at each append, or on
:meth:`DecisionLogger.flush`/:meth:`~DecisionLogger.close`) the batch is handed to the logger's
writer thread, which writes it as one immutable Parquet file under a partition folder per day
(or hour) of the decisions' time,
``<dir>/date=2024-05-01/decisions-20240501T200000-<pid>-000001-<random token>.parquet``.

**Cost on the request path.** :meth:`DecisionLogger.append` encodes the page's rows at once
(its strings laid out as Arrow buffers, a few tens of microseconds for 40 titles) and never
writes a file: a full batch is handed to the writer thread (a join of buffers and a Parquet
write, with no per-row Python work); a buffered page keeps a handful of arrays rather than its
:class:`PageDecision`.

**Files, concurrency and crash safety** (see docs/reliability.md). File names carry a random
token, so loggers in several threads or processes (even two containers that are both PID 1)
can share a folder. A batch is written to a unique hidden temporary name in the same folder,
flushed to disk (``fsync``), then linked to its final name with ``os.link``, which never
replaces an existing file; the temporary name is removed. A file with a final name is always
complete, and ``pages_written_`` counts only pages in published files. A crash loses at most the
pages not yet published (the batch being filled and the ones queued for the writer) and never
touches an earlier file; a leftover temporary file starts with ``.`` (skipped by readers) and is
deleted by the next logger once it is ``orphan_seconds`` old. With ``durable=True`` each page is
also appended to a write-ahead journal and flushed to disk before :meth:`~DecisionLogger.append`
returns; a new logger replays the journals of crashed ones, so no acknowledged page is lost.
"""

from __future__ import annotations

import atexit
import concurrent.futures.thread  # noqa: F401  (see _finish_handed_over_batches)
import contextlib
import json
import math
import os
import threading
import time
import warnings
import weakref
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from datetime import datetime, timezone
from itertools import chain
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from slate._internal.threads import lower_thread_priority
from slate.errors import InvalidProblemError
from slate.serve import _logfiles
from slate.serve.decision import PageDecision

__all__ = ["DecisionLogOptions", "DecisionLogger", "decisions_table"]



class _Strings(NamedTuple):
    """Strings laid out as Arrow string buffers: UTF-8 bytes, byte lengths, nulls (or None)."""

    data: bytes
    lengths: NDArray[np.int64]
    nulls: NDArray[np.bool_] | None


def _strings(values: Sequence[str | None]) -> _Strings:
    nulls = None
    texts: Sequence[str]
    if None in values:
        nulls = np.fromiter((v is None for v in values), dtype=bool, count=len(values))
        texts = ["" if v is None else v for v in values]
    else:
        texts = values  # type: ignore[assignment]  # no None in it
    joined = "".join(texts)
    if joined.isascii():  # one byte per character: the byte lengths are the string lengths
        return _Strings(joined.encode("ascii"), np.fromiter(map(len, texts), np.int64, len(texts)), nulls)
    encoded = [v.encode() for v in texts]
    return _Strings(b"".join(encoded), np.fromiter(map(len, encoded), np.int64, len(encoded)), nulls)


class _PageRows(NamedTuple):
    """One page's log rows, encoded when the page is appended (see :class:`DecisionLogger`)."""

    timestamp: float
    n_titles: int
    faults: tuple[str, ...]
    ids: tuple[int, int, int, int]  # member, session, page, timestamp in microseconds
    rows: NDArray[np.int64]
    cols: NDArray[np.int64]
    propensity: NDArray[np.float64]
    explored: NDArray[np.bool_]
    reward: NDArray[np.float64] | None
    engagement: NDArray[np.float64] | None
    title_id: _Strings
    image_id: _Strings
    previous_image_id: _Strings
    candidate_ids: _Strings
    n_candidates: NDArray[np.int64]
    locked: NDArray[np.bool_]
    explore_eligible: NDArray[np.bool_]
    explore_held: NDArray[np.bool_]
    exploration: tuple[float, int, float] | None  # rate, cap (-1: none), probability
    config_json: str
    context_json: str


_Entry = tuple[str, _PageRows]  # (partition folder, rows)


def _optional(values: ArrayLike | None, name: str, n: int) -> NDArray[np.float64] | None:
    if values is None:
        return None
    try:
        out = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        out = np.asarray([])
    if out.shape != (n,):
        raise InvalidProblemError(
            f"The '{name}' of a logged page must be {n} numbers (one per title); got "
            f"{np.asarray(values, dtype=object).shape} instead."
        )
    return out


def _page_rows(decision: PageDecision, rewards: ArrayLike | None, engagement: ArrayLike | None) -> _PageRows:
    n = decision.n_titles
    candidates = decision.candidate_ids
    return _PageRows(
        timestamp=decision.timestamp,
        n_titles=n,
        faults=tuple(f.value for f in decision.faults),
        ids=(decision.member_id, decision.session_id, decision.page_id, round(decision.timestamp * 1e6)),
        rows=decision.rows,
        cols=decision.cols,
        propensity=decision.propensity,
        explored=decision.explored,
        reward=_optional(rewards, "rewards", n),
        engagement=_optional(engagement, "engagement", n),
        title_id=_strings(decision.title_ids),
        image_id=_strings(decision.image_ids),
        previous_image_id=_strings(decision.previous_image_ids),
        candidate_ids=_strings(list(chain.from_iterable(candidates))),
        n_candidates=np.fromiter(map(len, candidates), np.int64, len(candidates)),
        **_replay_fields(decision),
    )


def _replay_fields(decision: PageDecision) -> dict[str, Any]:
    """What rebuilds and replays the page: locks, the exploration draw, the config, the context."""
    n = decision.n_titles
    params = decision.exploration
    return {
        "locked": np.zeros(n, bool) if decision.locked is None else decision.locked,
        "explore_eligible": np.zeros(n, bool) if decision.explore_eligible is None else decision.explore_eligible,
        "explore_held": np.zeros(n, bool) if decision.explore_held is None else decision.explore_held,
        "exploration": None if params is None else (
            params.rate, -1 if params.cap is None else params.cap, params.probability),
        "config_json": decision.config_json,
        "context_json": decision.context_json,
    }


def _replay_columns(pages: Sequence[_PageRows], table: Any) -> Any:
    """Append the columns of :data:`slate.logs.schema.DECISION_COLUMNS` to a batch's table."""
    import pyarrow as pa

    n_titles = np.fromiter((p.n_titles for p in pages), dtype=np.int64, count=len(pages))
    page_of_row = pa.array(np.repeat(np.arange(len(pages)), n_titles))

    def flags(name: str) -> Any:
        if not pages:
            return pa.array([], pa.bool_())
        return pa.array(np.concatenate([getattr(p, name) for p in pages]).astype(bool))

    params = [p.exploration for p in pages]
    rate = pa.array([None if x is None else x[0] for x in params], pa.float64())
    cap = pa.array([None if x is None or x[1] < 0 else x[1] for x in params], pa.int32())
    prob = pa.array([None if x is None else x[2] for x in params], pa.float64())
    config = pa.array([p.config_json or None for p in pages], pa.string())
    context = pa.array([p.context_json or None for p in pages], pa.string())
    columns = {
        "locked": flags("locked"),
        "explore_eligible": flags("explore_eligible"),
        "explore_held": flags("explore_held"),
        "explore_rate": rate.take(page_of_row),
        "explore_cap": cap.take(page_of_row),
        "explore_probability": prob.take(page_of_row),
        "compose_config": config.dictionary_encode().take(page_of_row),
        "context": context.dictionary_encode().take(page_of_row),
    }
    for name, values in columns.items():
        table = table.append_column(name, values)
    return table


def _string_column(parts: Sequence[_Strings]) -> Any:
    """One Arrow string array from encoded parts: a join of the bytes, no per-string work."""
    import pyarrow as pa

    lengths = np.concatenate([p.lengths for p in parts])
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    validity = None
    null_count = 0
    if any(p.nulls is not None for p in parts):
        nulls = np.concatenate([np.zeros(len(p.lengths), bool) if p.nulls is None else p.nulls for p in parts])
        null_count = int(nulls.sum())
        validity = pa.py_buffer(np.packbits(~nulls, bitorder="little"))
    data = pa.py_buffer(b"".join(p.data for p in parts))
    return pa.Array.from_buffers(
        pa.string(), len(lengths), [validity, pa.py_buffer(offsets), data], null_count=null_count
    )


def _rows_table(pages: Sequence[_PageRows]) -> Any:
    """The ``slate.impressions/1`` table of encoded pages (vectorised over the whole batch)."""
    import pyarrow as pa

    from slate.logs.parquet import impressions_table

    n_titles = np.fromiter((p.n_titles for p in pages), dtype=np.int64, count=len(pages))
    n = int(n_titles.sum())
    ids = np.repeat(np.array([p.ids for p in pages], dtype=np.int64).reshape(-1, 4), n_titles, axis=0)
    counts = np.concatenate([p.n_candidates for p in pages]) if pages else np.zeros(0, np.int64)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])

    def column(name: str) -> Any:
        return np.concatenate([getattr(p, name) for p in pages]) if pages else np.zeros(0)

    def optional(name: str, typ: Any) -> Any:
        """A nullable column: the given values where known, null where None or NaN."""
        if all(getattr(p, name) is None for p in pages):
            return None
        flat = np.concatenate(
            [np.full(p.n_titles, np.nan) if getattr(p, name) is None else getattr(p, name) for p in pages]
        )
        return pa.array(flat, type=pa.float64(), from_pandas=True).cast(typ, safe=False)

    def strings(name: str) -> Any:
        return _string_column([getattr(p, name) for p in pages]) if pages else pa.array([], pa.string())

    reward = optional("reward", pa.int8())
    engaged = optional("engagement", pa.float64())
    table = impressions_table(
        member_id=ids[:, 0],
        session_id=ids[:, 1],
        page_id=ids[:, 2],
        timestamp=ids[:, 3],
        title_id=strings("title_id"),
        row=column("rows").astype(np.int32),
        col=column("cols").astype(np.int32),
        image_id=strings("image_id"),
        candidate_ids=pa.ListArray.from_arrays(pa.array(offsets), strings("candidate_ids")),
        propensity=column("propensity").astype(np.float64),
        explored=column("explored").astype(bool),
        reward=np.zeros(n, dtype=np.int8),
        engagement=None if engaged is None else np.zeros(n),
        previous_image_id=strings("previous_image_id"),
    )
    for name, values in (("reward", reward if reward is not None else pa.nulls(n, pa.int8())), ("engagement", engaged)):
        if values is not None:
            i = table.schema.get_field_index(name)
            table = table.set_column(i, table.schema.field(name), values)
    return _replay_columns(pages, table)


def decisions_table(
    decisions: Sequence[PageDecision],
    rewards: Sequence[ArrayLike | None] | None = None,
    engagement: Sequence[ArrayLike | None] | None = None,
) -> Any:
    """The ``slate.impressions/1`` rows of some decisions, as a pyarrow Table.

    Parameters
    ----------
    decisions : sequence of PageDecision
    rewards : sequence of (array (n_titles,) or None), optional
        Per decision, the rewards (0/1) if known; None leaves them null.
    engagement : sequence of (array (n_titles,) or None), optional

    Raises
    ------
    InvalidProblemError
        A decision's rewards or engagement do not hold one number per title.

    Examples
    --------
    >>> import numpy as np
    >>> from slate.serve import compose, ComposeConfig
    >>> d = compose({"member_id": 1, "session_id": 1,
    ...              "titles": [{"title_id": "T", "image_ids": ["a", "b"], "row": 0, "col": 0}]},
    ...             lambda r: np.array([[0.1, 0.2]]), None, config=ComposeConfig(solver="independent"))
    >>> table = decisions_table([d], rewards=[np.array([1])])
    >>> table.column("image_id").to_pylist(), table.column("reward").to_pylist()
    (['b'], [1])
    """
    r = [None] * len(decisions) if rewards is None else list(rewards)
    e = [None] * len(decisions) if engagement is None else list(engagement)
    return _rows_table([_page_rows(d, *x) for d, x in zip(decisions, zip(r, e, strict=True), strict=True)])


@dataclass(frozen=True)
class DecisionLogOptions:
    """How a :class:`DecisionLogger` writes: every setting but its folder, in one value.

    Give it as ``DecisionLogger(directory, options)``; ``batch_pages``, ``partition``,
    ``background`` and ``durable`` may also be given as keywords of :class:`DecisionLogger`
    (they replace the options' values). Checked when the logger is made.

    Attributes
    ----------
    batch_pages : int, default 512
        Pages per file.
    flush_seconds : float, default 60
        Also write the batch when its oldest page is this old (checked at each append).
    partition : {"day", "hour", None}, default "day"
        Folder per UTC day (``date=YYYY-MM-DD``) or hour (``date=.../hour=HH``) of the decisions.
    prefix : str, default "decisions"
    compression : str, default "snappy"
    fsync : bool, default True
        Flush each file (and the folder entry naming it) to disk before counting it written.
    max_buffer_pages : int, default 100000
        If writing keeps failing, the oldest buffered pages beyond this are dropped (and
        counted in ``dropped_pages_``).
    background : bool, default False
        Run the writer thread at a lower CPU priority (Linux, ``nice`` +10), so on a busy core
        it does not delay request threads. Either way a full batch is handed to the writer
        thread: :meth:`DecisionLogger.append` never writes a Parquet file on the caller's thread.
    durable : bool, default False
        Write-ahead journal: :meth:`DecisionLogger.append` writes the page's rows to a journal
        segment and flushes it to disk (``fdatasync``) before returning, so an acknowledged page
        survives a crash (``kill -9``, power loss with ``fsync``). A segment is deleted once its
        batch is published; a new logger on the folder replays the segments of crashed loggers
        into Parquet files (``recovered_pages_``). Costs one small synchronous write per page.
    orphan_seconds : float, default 3600
        At start-up, hidden temporary files of this prefix older than this (left by a crashed
        writer) are deleted and listed in ``orphans_removed_``.

    Examples
    --------
    >>> import tempfile
    >>> opts = DecisionLogOptions(batch_pages=64, fsync=False, partition="hour")
    >>> with DecisionLogger(tempfile.mkdtemp(), opts, durable=True) as logger:
    ...     logger.batch_pages, logger.partition, logger.durable, logger.options.fsync
    (64, 'hour', True, False)
    """

    batch_pages: int = 512
    flush_seconds: float = 60.0
    partition: Literal["day", "hour"] | None = "day"
    prefix: str = "decisions"
    compression: str = "snappy"
    fsync: bool = True
    max_buffer_pages: int = 100_000
    background: bool = False
    durable: bool = False
    orphan_seconds: float = 3600.0


class _Unset:
    """A :class:`DecisionLogger` keyword not given: the value in its options."""

    def __repr__(self) -> str:
        return "<from options>"


_UNSET: Any = _Unset()


def _logger_options(options: DecisionLogOptions | None, given: dict[str, Any], deprecated: dict[str, Any]) -> DecisionLogOptions:
    """The options of a :class:`DecisionLogger`: ``options`` (or the defaults), the essential
    keywords given, then the deprecated keywords (each with a warning), checked."""
    if options is not None and not isinstance(options, DecisionLogOptions):
        raise InvalidProblemError(
            f"The 'options' parameter of DecisionLogger must be a DecisionLogOptions; got {type(options).__name__} instead."
        )
    known = [f.name for f in fields(DecisionLogOptions)]
    for name in deprecated:
        if name not in known:
            raise TypeError(f"DecisionLogger() got an unexpected keyword argument '{name}'")
    if deprecated:
        names = ", ".join(f"{name}=..." for name in deprecated)
        warnings.warn(
            f"DecisionLogger({names}) is deprecated; pass DecisionLogger(directory, DecisionLogOptions({names})) instead.",
            DeprecationWarning,
            stacklevel=3,
        )
    overrides = {k: v for k, v in given.items() if v is not _UNSET} | deprecated
    opts = replace(options or DecisionLogOptions(), **overrides)
    _check_logger_options(opts)
    return opts


def _check_logger_options(o: DecisionLogOptions) -> None:
    def fail(name: str, must: str, got: object) -> InvalidProblemError:
        return InvalidProblemError(f"The '{name}' parameter of DecisionLogger must be {must}; got {got!r} instead.")

    if isinstance(o.batch_pages, bool) or not isinstance(o.batch_pages, int) or o.batch_pages < 1:
        raise fail("batch_pages", "an integer >= 1", o.batch_pages)
    if not isinstance(o.flush_seconds, (int, float)) or not o.flush_seconds > 0:
        raise fail("flush_seconds", "a number > 0", o.flush_seconds)
    if o.partition not in ("day", "hour", None):
        raise fail("partition", "'day', 'hour' or None", o.partition)
    if not o.prefix or "/" in o.prefix or o.prefix.startswith("."):
        raise fail("prefix", "a file-name prefix not starting with '.'", o.prefix)
    m = o.max_buffer_pages
    if isinstance(m, bool) or not isinstance(m, int) or m < o.batch_pages:
        raise fail("max_buffer_pages", f"an integer >= batch_pages ({o.batch_pages})", m)
    if not isinstance(o.orphan_seconds, (int, float)) or not o.orphan_seconds >= 0:
        raise fail("orphan_seconds", "a number >= 0", o.orphan_seconds)


class DecisionLogger:
    """Append decisions to Parquet files in batches (see the module docstring).

    Parameters
    ----------
    directory : str or path-like
        Root folder of the log (created if missing); read it back with
        :func:`slate.logs.read_impressions`. Several loggers (threads or processes) may share it.
    options : DecisionLogOptions, optional
        How to write (batch size, flush age, partitioning, file names, compression, fsync,
        buffer bound, writer priority, journal, orphan clean-up); default
        ``DecisionLogOptions()``.
    batch_pages, partition, background, durable : optional
        The options most often changed, as keywords; each replaces the value in ``options``
        (see :class:`DecisionLogOptions`).
    **deprecated
        The other fields of :class:`DecisionLogOptions` as keywords (``flush_seconds=``,
        ``prefix=``, ``compression=``, ``fsync=``, ``max_buffer_pages=``, ``orphan_seconds=``)
        still work but raise a ``DeprecationWarning``: put them in ``options``.

    Attributes
    ----------
    files_ : list of pathlib.Path
        Files written, in order.
    pages_written_, rows_written_ : int
        Pages and rows in files published (durably on disk when ``fsync``).
    dropped_pages_, failed_flushes_ : int
    recovered_pages_ : int
        Pages replayed at start-up from the journals of crashed loggers.
    orphans_removed_ : list of pathlib.Path

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from slate.serve import compose, ComposeConfig, DecisionLogger
    >>> from slate.logs import read_impressions
    >>> folder = tempfile.mkdtemp()
    >>> with DecisionLogger(folder, batch_pages=2) as logger:
    ...     for session in range(3):
    ...         _ = compose({"member_id": 1, "session_id": session,
    ...                      "timestamp": "2024-05-01T20:00:00Z",
    ...                      "titles": [{"title_id": "T", "image_ids": ["a", "b"], "row": 0, "col": 0}]},
    ...                     lambda r: np.array([[0.1, 0.2]]), None, logger=logger,
    ...                     config=ComposeConfig(solver="independent"))
    >>> len(logger.files_), logger.rows_written_
    (2, 3)
    >>> logger.files_[0].parent.name
    'date=2024-05-01'
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        options: DecisionLogOptions | None = None,
        *,
        batch_pages: int = _UNSET,
        partition: Literal["day", "hour"] | None = _UNSET,
        background: bool = _UNSET,
        durable: bool = _UNSET,
        **deprecated: Any,
    ) -> None:
        given = {"batch_pages": batch_pages, "partition": partition, "background": background, "durable": durable}
        o = self.options = _logger_options(options, given, deprecated)
        import pyarrow  # noqa: F401  (fail now, not at the first flush, when pyarrow is missing)

        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.batch_pages = o.batch_pages
        self.flush_seconds = float(o.flush_seconds)
        self.partition = o.partition
        self.prefix = o.prefix
        self.compression = o.compression
        self.fsync = o.fsync
        self.max_buffer_pages = o.max_buffer_pages
        self.background = bool(o.background)
        self.durable = bool(o.durable)
        self._buffer: list[_Entry] = []
        self._queue: deque[tuple[list[_Entry], list[_logfiles.Journal]]] = deque()
        self._writing: list[_Entry] = []
        self._partitions: dict[int, str] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._stop = False
        self._error: BaseException | None = None
        self._failing: BaseException | None = None  # the last write failed; cleared by a success
        self._oldest = 0.0
        self._seq = 0
        self._journal: _logfiles.Journal | None = None
        self._retained: list[_logfiles.Journal] = []  # segments of pages kept after a failed write
        self.files_: list[Path] = []
        self.pages_written_ = 0
        self.rows_written_ = 0
        self.dropped_pages_ = 0
        self.failed_flushes_ = 0
        self.recovered_pages_ = 0
        self.orphans_removed_ = _logfiles.remove_orphans(self.directory, o.prefix, float(o.orphan_seconds))
        self._recover()

    def __len__(self) -> int:
        """Pages buffered, not yet written (including batches handed to the writer)."""
        with self._lock:
            return len(self._buffer) + sum(len(b) for b, _ in self._queue) + len(self._writing)

    def append(
        self, decision: PageDecision, rewards: ArrayLike | None = None, engagement: ArrayLike | None = None
    ) -> None:
        """Buffer one decision (with its rewards if already known); hand the batch to the
        writer thread when full. A durable logger has the page on disk when this returns.

        Raises the error of a failed write (the decision itself is kept in the buffer).
        """
        entry = (self._partition_of(decision.timestamp), _page_rows(decision, rewards, engagement))
        with self._lock:
            if self.durable:
                self._journal_locked(entry)
            if not self._buffer:
                self._oldest = time.monotonic()
            self._buffer.append(entry)
            if len(self._buffer) >= self.batch_pages or time.monotonic() - self._oldest >= self.flush_seconds:
                self._seal_locked()
            error, self._error = self._error, None
            if error is None:
                error = self._failing  # every page reports the fault until a write succeeds
        if error is not None:
            raise error

    def warm_up(self, decisions: Sequence[PageDecision]) -> None:
        """Run the writer's whole path once on these pages, into a throw-away file outside the log.

        The first batch otherwise pays for importing and first calls of the Parquet and Arrow
        compute code (about 0.4 s of CPU) on the writer thread, holding the interpreter lock while
        the first served pages wait. Nothing is logged or counted. :meth:`Composer.warm_up
        <slate.serve.Composer.warm_up>` calls it with its warm-up pages.
        """
        import tempfile

        from slate.logs.parquet import write_impressions

        if not decisions:
            return
        table = _rows_table([_page_rows(d, None, None) for d in decisions])
        if self.durable:
            pa_ipc_bytes(table)
        with tempfile.TemporaryDirectory(prefix="slate-warm-") as tmp:
            write_impressions(Path(tmp) / "warm.parquet", table, compression=self.compression,
                              metadata={"slate.writer": "slate.serve.DecisionLogger"})

    def _journal_locked(self, entry: _Entry) -> None:
        if self._journal is None:
            self._journal = _logfiles.Journal(self.directory, self.prefix, fsync=self.fsync)
        page = entry[1]
        sink = pa_ipc_bytes(_rows_table([page]))
        self._journal.append({"folder": entry[0], "faults": list(page.faults), "timestamp": page.timestamp}, sink)

    def _seal_locked(self) -> None:
        """Hand the buffer (and its journal segment) to the writer thread."""
        if not self._buffer:
            return
        journals = self._retained + ([self._journal] if self._journal is not None else [])
        self._queue.append((self._buffer, journals))
        self._buffer, self._journal, self._retained = [], None, []
        if self._thread is None or not self._thread.is_alive():
            self._stop = False
            self._thread = threading.Thread(target=self._run_writer, name="slate-decision-log", daemon=True)
            self._thread.start()
            _LIVE.add(self)
        self._changed.notify_all()

    def _run_writer(self) -> None:
        if self.background:
            lower_thread_priority()
        while True:
            with self._lock:
                while not self._queue and not self._stop:
                    self._changed.wait()
                if not self._queue:
                    return
                batch, journals = self._queue.popleft()
                self._writing = batch
            try:
                self._write_batch(batch, journals[0].token if journals else None)
                for journal in journals:
                    journal.discard()
                with self._lock:
                    self._failing = None
            except BaseException as err:  # reported at the next append or flush
                with self._lock:
                    self._retained = journals + self._retained  # still locked: the pages are buffered
                    self._error = self._failing = err
            finally:
                with self._lock:
                    self._writing = []
                    self._changed.notify_all()

    def wait(self) -> None:
        """Wait until the writer thread has written every batch handed to it (not the buffer)."""
        with self._lock:
            while self._queue or self._writing:
                self._changed.wait()

    def flush(self) -> list[Path]:
        """Write everything buffered now (one file per partition); return the files written.

        On failure the decisions stay buffered (up to ``max_buffer_pages``) and the error is raised.
        """
        with self._lock:
            before = len(self.files_)
            self._seal_locked()
            while self._queue or self._writing:
                self._changed.wait()
            error, self._error = self._error, None
            written = self.files_[before:]
        if error is not None:
            raise error
        return written

    def _write_batch(self, batch: list[_Entry], token: str | None = None) -> list[Path]:
        groups: dict[str, list[_Entry]] = {}
        for entry in batch:
            groups.setdefault(entry[0], []).append(entry)
        written: list[Path] = []
        pending = list(groups.items())
        try:
            while pending:
                folder, entries = pending[0]
                pages = [e[1] for e in entries]
                faults = Counter(f for page in pages for f in page.faults)
                written.append(self._publish(folder, _rows_table(pages), len(pages), faults,
                                             pages[0].timestamp, token))
                pending.pop(0)
        except BaseException:
            with self._lock:
                self.failed_flushes_ += 1
                keep = [e for _, entries in pending for e in entries] + self._buffer
                excess = len(keep) - self.max_buffer_pages
                if excess > 0:
                    self.dropped_pages_ += excess
                    keep = keep[excess:]
                self._buffer = keep
                self._oldest = time.monotonic()
            raise
        return written

    def _partition_of(self, timestamp: float) -> str:
        if self.partition is None:
            return ""
        hour = math.floor(timestamp / 3600.0)
        folder = self._partitions.get(hour)
        if folder is None:
            folder = self._folder(timestamp)
            if len(self._partitions) > 1000:
                self._partitions.clear()
            self._partitions[hour] = folder
        return folder

    def _folder(self, timestamp: float) -> str:
        when = datetime.fromtimestamp(timestamp, tz=timezone.utc)
        if self.partition == "day":
            return f"date={when:%Y-%m-%d}"
        return f"date={when:%Y-%m-%d}/hour={when:%H}"

    def _publish(
        self, folder: str, table: Any, n_pages: int, faults: Counter[str], first_ts: float,
        token: str | None = None, count: bool = True,
    ) -> Path:
        """Publish one file of pages (unique name, never replacing a file) and count it."""
        from slate.logs.parquet import write_impressions

        with self._lock:
            self._seq += 1
            seq = self._seq
        first = datetime.fromtimestamp(first_ts, tz=timezone.utc)
        stem = f"{self.prefix}-{first:%Y%m%dT%H%M%S}-{os.getpid()}-{seq:06d}"
        metadata = {
            "slate.writer": "slate.serve.DecisionLogger",
            "slate.pages": str(n_pages),
            "slate.faults": json.dumps(dict(faults), sort_keys=True),
        }
        final = _logfiles.publish(
            self.directory / folder if folder else self.directory,
            lambda path: write_impressions(path, table, compression=self.compression, metadata=metadata),
            lambda: f"{stem}-{token or _logfiles.new_token()}.parquet",
            hidden_prefix=self.prefix,
            fsync=self.fsync,
        )
        if count:
            with self._lock:
                self.files_.append(final)
                self.pages_written_ += n_pages
                self.rows_written_ += table.num_rows
        return final

    def _recover(self) -> None:
        """Publish the pages of crashed loggers' journal segments, then delete the segments."""
        for path in _logfiles.orphan_journals(self.directory, self.prefix):
            records, _torn = _logfiles.read_journal(path)
            token = path.name.rsplit(".", 1)[0].rsplit("-", 1)[-1]
            groups: dict[str, list[tuple[dict[str, Any], bytes]]] = {}
            for header, payload in records:
                groups.setdefault(str(header.get("folder", "")), []).append((header, payload))
            for folder, items in groups.items():
                target = self.directory / folder if folder else self.directory
                if next(target.glob(f"{self.prefix}-*-{token}.parquet"), None) is not None:
                    continue  # published before the crash, not yet deleted
                faults = Counter(f for header, _ in items for f in header.get("faults", ()))
                first_ts = float(items[0][0].get("timestamp", 0.0))
                table = _ipc_tables([payload for _, payload in items])
                self._publish(folder, table, len(items), faults, first_ts, token, count=False)
                self.recovered_pages_ += len(items)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def close(self) -> None:
        """Write what is buffered and stop the writer thread."""
        try:
            self.flush()
        finally:
            with self._lock:
                self._stop = True
                self._changed.notify_all()
                thread = self._thread
            if thread is not None and thread is not threading.current_thread():
                thread.join()

    def __enter__(self) -> DecisionLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_LIVE: weakref.WeakSet[DecisionLogger] = weakref.WeakSet()


@atexit.register
def _finish_handed_over_batches() -> None:
    """At interpreter exit, let writer threads finish the batches already handed to them (as a
    synchronous write would have); the batch still being filled needs close().

    A write at exit must not be the first to import ``concurrent.futures.thread`` (pyarrow may
    import pandas lazily, which imports it): it registers its own exit hook, which Python refuses
    once shutdown has begun, and the batch was lost. It is imported with this module instead."""
    for logger in list(_LIVE):
        logger.wait()


def pa_ipc_bytes(table: Any) -> bytes:
    """A table as Arrow IPC stream bytes (the journal's record payload; no pickle)."""
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue())


def _ipc_tables(payloads: Sequence[bytes]) -> Any:
    import pyarrow as pa

    tables = [pa.ipc.open_stream(pa.py_buffer(p)).read_all() for p in payloads]
    return pa.concat_tables(tables)
