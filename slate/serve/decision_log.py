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
:meth:`DecisionLogger.flush`/:meth:`~DecisionLogger.close`) the batch is written as one
immutable Parquet file under a partition folder per day (or hour) of the decisions' time,
``<dir>/date=2024-05-01/decisions-20240501T200000-<pid>-000001.parquet``.

**Cost on the request path.** :meth:`DecisionLogger.append` encodes the page's rows at once
(its strings laid out as Arrow buffers, a few tens of microseconds for 40 titles), so writing a
batch is a join of buffers and a Parquet write, with no per-row Python work; a buffered page
keeps a handful of arrays rather than its :class:`PageDecision`.

**Crash safety.** A batch is written to a hidden temporary name in the same folder, flushed to
disk (``fsync``), then renamed to its final name (an atomic rename), so a file with a final
name is always complete. A crash loses at most the batch in memory and never touches an earlier
file; a leftover temporary file starts with ``.`` and is skipped by Parquet readers.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timezone
from itertools import chain
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from slate.errors import InvalidProblemError
from slate.serve.decision import PageDecision
from slate.stability.store import _lower_thread_priority

__all__ = ["DecisionLogger", "decisions_table"]



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


class DecisionLogger:
    """Append decisions to Parquet files in batches (see the module docstring).

    Parameters
    ----------
    directory : str or path-like
        Root folder of the log (created if missing); read it back with
        :func:`slate.logs.read_impressions`.
    batch_pages : int, default 512
        Pages per file.
    flush_seconds : float, default 60
        Also write the batch when its oldest page is this old (checked at each append).
    partition : {"day", "hour", None}, default "day"
        Folder per UTC day (``date=YYYY-MM-DD``) or hour (``date=.../hour=HH``) of the decisions.
    prefix : str, default "decisions"
    compression : str, default "snappy"
    fsync : bool, default True
        Flush each file to disk before renaming it into place.
    max_buffer_pages : int, default 100000
        If writing keeps failing, the oldest buffered pages beyond this are dropped (and
        counted in ``dropped_pages_``).
    background : bool, default False
        Write full batches on a writer thread, so a page that fills a batch does not wait for
        the write; a failed background write is raised by the next :meth:`append` or
        :meth:`flush`. A crash then loses at most the batch being written and the one being
        filled. The writer holds the GIL only briefly (a page's rows are encoded by
        :meth:`append`; the Parquet write and the fsync release the GIL) and lowers its own CPU
        priority (Linux, ``nice`` +10), so on a busy core it does not delay request threads.

    Attributes
    ----------
    files_ : list of pathlib.Path
        Files written, in order.
    pages_written_, rows_written_, dropped_pages_, failed_flushes_ : int

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
        *,
        batch_pages: int = 512,
        flush_seconds: float = 60.0,
        partition: Literal["day", "hour"] | None = "day",
        prefix: str = "decisions",
        compression: str = "snappy",
        fsync: bool = True,
        max_buffer_pages: int = 100_000,
        background: bool = False,
    ) -> None:
        def fail(name: str, must: str, got: object) -> InvalidProblemError:
            return InvalidProblemError(
                f"The '{name}' parameter of DecisionLogger must be {must}; got {got!r} instead."
            )

        if isinstance(batch_pages, bool) or not isinstance(batch_pages, int) or batch_pages < 1:
            raise fail("batch_pages", "an integer >= 1", batch_pages)
        if not isinstance(flush_seconds, (int, float)) or not flush_seconds > 0:
            raise fail("flush_seconds", "a number > 0", flush_seconds)
        if partition not in ("day", "hour", None):
            raise fail("partition", "'day', 'hour' or None", partition)
        if not prefix or "/" in prefix or prefix.startswith("."):
            raise fail("prefix", "a file-name prefix not starting with '.'", prefix)
        if isinstance(max_buffer_pages, bool) or not isinstance(max_buffer_pages, int) or max_buffer_pages < batch_pages:
            raise fail("max_buffer_pages", f"an integer >= batch_pages ({batch_pages})", max_buffer_pages)
        import pyarrow  # noqa: F401  (fail now, not at the first flush, when pyarrow is missing)

        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.batch_pages = batch_pages
        self.flush_seconds = float(flush_seconds)
        self.partition = partition
        self.prefix = prefix
        self.compression = compression
        self.fsync = fsync
        self.max_buffer_pages = max_buffer_pages
        self.background = bool(background)
        self._buffer: list[_Entry] = []
        self._partitions: dict[int, str] = {}
        self._inflight: list[_Entry] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._oldest = 0.0
        self._seq = 0
        self.files_: list[Path] = []
        self.pages_written_ = 0
        self.rows_written_ = 0
        self.dropped_pages_ = 0
        self.failed_flushes_ = 0

    def __len__(self) -> int:
        """Pages buffered, not yet written (including a batch being written in the background)."""
        with self._lock:
            return len(self._buffer) + len(self._inflight)

    def append(
        self, decision: PageDecision, rewards: ArrayLike | None = None, engagement: ArrayLike | None = None
    ) -> None:
        """Buffer one decision (with its rewards if already known); write the batch when full.

        Raises the error of a failed write (the decision itself is kept in the buffer).
        """
        entry = (self._partition_of(decision.timestamp), _page_rows(decision, rewards, engagement))
        with self._lock:
            if not self._buffer:
                self._oldest = time.monotonic()
            self._buffer.append(entry)
            due = len(self._buffer) >= self.batch_pages or time.monotonic() - self._oldest >= self.flush_seconds
            error, self._error = self._error, None
        if error is not None:
            raise error
        if not due:
            return
        if not self.background:
            self.flush()
            return
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return  # the writer is busy; this batch goes next
            batch, self._buffer = self._buffer, []
            self._inflight = batch
            self._thread = threading.Thread(target=self._write_in_background, args=(batch,), daemon=True)
            self._thread.start()

    def _write_in_background(self, batch: list[_Entry]) -> None:
        _lower_thread_priority()
        try:
            self._write_batch(batch)
        except BaseException as err:  # reported at the next append or flush
            with self._lock:
                self._error = err
        finally:
            with self._lock:
                self._inflight = []

    def flush(self) -> list[Path]:
        """Write everything buffered now (one file per partition); return the files written.

        On failure the decisions stay buffered (up to ``max_buffer_pages``) and the error is raised.
        """
        thread = self._thread
        if thread is not None:
            thread.join()
            self._thread = None
        with self._lock:
            batch, self._buffer = self._buffer, []
            error, self._error = self._error, None
        written = self._write_batch(batch) if batch else []
        if error is not None:
            raise error
        return written

    def _write_batch(self, batch: list[_Entry]) -> list[Path]:
        groups: dict[str, list[_Entry]] = {}
        for entry in batch:
            groups.setdefault(entry[0], []).append(entry)
        written: list[Path] = []
        pending = list(groups.items())
        try:
            while pending:
                folder, entries = pending[0]
                written.append(self._write(folder, [e[1] for e in entries]))
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

    def _write(self, folder: str, pages: list[_PageRows]) -> Path:
        from slate.logs.parquet import write_impressions

        table = _rows_table(pages)
        target_dir = self.directory / folder if folder else self.directory
        target_dir.mkdir(parents=True, exist_ok=True)
        self._seq += 1
        first = datetime.fromtimestamp(pages[0].timestamp, tz=timezone.utc)
        name = f"{self.prefix}-{first:%Y%m%dT%H%M%S}-{os.getpid()}-{self._seq:06d}.parquet"
        final = target_dir / name
        temporary = target_dir / f".{name}.tmp"
        faults = Counter(f for page in pages for f in page.faults)
        write_impressions(
            temporary,
            table,
            compression=self.compression,
            metadata={
                "slate.writer": "slate.serve.DecisionLogger",
                "slate.pages": str(len(pages)),
                "slate.faults": json.dumps(dict(faults), sort_keys=True),
            },
        )
        if self.fsync:
            fd = os.open(temporary, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(temporary, final)
        if self.fsync:
            try:
                dir_fd = os.open(target_dir, os.O_RDONLY)
            except OSError:  # pragma: no cover - platforms without directory fds
                dir_fd = -1
            if dir_fd >= 0:
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
        self.files_.append(final)
        self.pages_written_ += len(pages)
        self.rows_written_ += table.num_rows
        return final

    def close(self) -> None:
        """Write what is buffered."""
        self.flush()

    def __enter__(self) -> DecisionLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
