"""Attach outcomes (play events) to a decision log: :func:`join_outcomes`, ``slate join``.

A decision log written by :class:`slate.serve.DecisionLogger` has ``reward`` null: the outcome
of a page is known later, from the client's play events. An *outcome table* is a Parquet file
(or folder, or pyarrow Table) with one row per event:

=====================  ===========================  ========  =================================
name                   Arrow type                   required  meaning
=====================  ===========================  ========  =================================
member_id              integer                      yes       who played
title_id               string                       yes       what was played
timestamp              timestamp (any unit / zone)  yes       when the play started
reward                 integer or bool (0/1)        one of    quality play already labelled
engagement             float                        one of    e.g. minutes played
page_id                integer (nullable)           no        the page the play came from
=====================  ===========================  ========  =================================

**Attribution.** An event is attributed to the *latest* impression of its title to its member
at or before the event's time, if that impression is at most ``window`` old (default 24 h). An
event with a non-null ``page_id`` (a client that propagates it) is attributed to that page's
row of the title instead, if the page showed the title. A row's reward is 1 when at least one
attributed event is a quality play (``reward == 1``, or ``engagement >= quality_threshold``
when the table has no ``reward``); every other row shown gets 0 (shown and not played). A
row's ``engagement`` is the sum over its attributed events (0 when none), when the events
carry engagement. Rewards already in the decision log are replaced.

**Nothing is dropped silently.** Events that match no impression are counted by reason in the
returned :class:`JoinReport`: ``no_impression`` (the member was never shown the title before
the event), ``outside_window`` (the latest such impression is older than ``window``),
``unknown_page`` (the ``page_id`` names no page showing the title) and ``bad_event`` (a null
id or time, a reward outside {0, 1}, a negative or non-finite engagement).

**Bounded memory.** The match reads only the key columns (``member_id``, ``title_id``,
``timestamp``, ``page_id``) of the decisions, one row group at a time, and keeps only the rows
whose (member, title) occurs among the events; the events are split into ``partitions`` buckets
by a hash of the member id, one pass each, when they (or those rows) do not fit the memory
wanted. The output is then written file by file, one row group at a time, with the reward and
engagement columns replaced, so memory stays that of a row group plus the matched row numbers,
whatever the size of the log. With ``engine="dask"`` the buckets are matched, and the output
files written, as dask tasks (partitioned logs: one output file per input file).

Examples
--------
>>> import pyarrow as pa, numpy as np
>>> from datetime import datetime, timezone
>>> from slate.logs.parquet import example_table
>>> from slate.logs import read_impressions
>>> decisions = example_table().drop_columns(["reward"]).append_column(
...     "reward", pa.nulls(4, pa.int8()))
>>> decisions.column("member_id").to_pylist(), decisions.column("title_id").to_pylist()
([1, 1, 2, 2], ['T1', 'T2', 'T1', 'T2'])
>>> shown = decisions.column("timestamp").to_pylist()
>>> events = pa.table({"member_id": [1, 2, 9, 1], "title_id": ["T2", "T1", "T1", "T1"],
...                    "timestamp": pa.array([shown[1], shown[2], shown[2], shown[2]],
...                                          pa.timestamp("us", tz="UTC")),
...                    "reward": [1, 1, 1, 1]})
>>> joined, report = join_outcomes(decisions, events, window="12h")
>>> joined.column("reward").to_pylist()
[0, 1, 1, 0]
>>> report.n_matched, report.unmatched
(2, {'no_impression': 1, 'outside_window': 1})
>>> read_impressions(joined)[1].n_rejected
0
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from numpy.typing import NDArray

from slate.logs.parquet import InvalidLogError, PathLike

__all__ = ["UNMATCHED_REASONS", "JoinReport", "join_outcomes", "parse_window"]

UNMATCHED_REASONS: tuple[str, ...] = ("bad_event", "unknown_page", "no_impression", "outside_window")
"""Why an event was not attributed, in the order checked."""

_ROWS_PER_BUCKET = 8_000_000  # "auto" partitions: about 1 GB of match arrays per bucket at most
_THREADS = True  # pyarrow decodes a row group on its threads (measured: same CPU time as one thread)
_PROBE_ROWS = 4_000_000  # impression rows probed against the events' keys at once
_KEYS = ("member_id", "title_id", "timestamp", "page_id")
_MIX = np.uint64(0x9E3779B97F4A7C15)


def parse_window(window: str | float | int) -> float:
    """Seconds in a window given as a number of seconds or a text such as ``"24h"``, ``"90m"``.

    Examples
    --------
    >>> parse_window("24h"), parse_window("90m"), parse_window("2d"), parse_window(30)
    (86400.0, 5400.0, 172800.0, 30.0)
    """
    if isinstance(window, (int, float)) and not isinstance(window, bool):
        seconds = float(window)
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([smhd]?)\s*", str(window))
        if match is None:
            raise InvalidLogError(
                f"The 'window' of join_outcomes must be seconds or a number with a unit s, m, h "
                f"or d (e.g. '24h'); got {window!r} instead."
            )
        seconds = float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    if not math.isfinite(seconds) or seconds <= 0:
        raise InvalidLogError(f"The 'window' of join_outcomes must be > 0 seconds; got {window!r} instead.")
    return seconds


@dataclass(frozen=True)
class JoinReport:
    """What :func:`join_outcomes` did: rows, events, matches, and the unmatched events by reason.

    Attributes
    ----------
    n_impressions : int
        Rows of the decision log.
    n_events : int
        Rows of the outcome table.
    n_matched : int
        Events attributed to a row.
    n_rewarded : int
        Rows with reward 1 in the output.
    unmatched : dict of str -> int
        Events not attributed, by reason (:data:`UNMATCHED_REASONS`; reasons with 0 left out).
    outputs : list of str
        Files written (empty when a table was returned).
    """

    n_impressions: int
    n_events: int
    n_matched: int
    n_rewarded: int
    unmatched: dict[str, int] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)

    @property
    def n_unmatched(self) -> int:
        """Events not attributed to any row."""
        return sum(self.unmatched.values())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {
            "n_impressions": self.n_impressions,
            "n_events": self.n_events,
            "n_matched": self.n_matched,
            "n_unmatched": self.n_unmatched,
            "unmatched_by_reason": dict(self.unmatched),
            "n_rewarded": self.n_rewarded,
            "outputs": list(self.outputs),
        }

    def __str__(self) -> str:
        lines = [
            f"{self.n_impressions} impressions, {self.n_events} events: {self.n_matched} matched, "
            f"{self.n_unmatched} unmatched; {self.n_rewarded} rows rewarded"
        ]
        lines += [f"  {k:<26} {v}" for k, v in self.unmatched.items()]
        return "\n".join(lines)


# ---------------------------------------------------------------------------- events


@dataclass(frozen=True, eq=False)
class _Events:
    """The valid events as arrays; titles coded into ``titles``."""

    member: NDArray[np.int64]
    title: NDArray[np.int64]
    time: NDArray[np.int64]  # microseconds
    page: NDArray[np.int64]  # -1: none
    quality: NDArray[np.bool_]
    engagement: NDArray[np.float64] | None
    titles: pa.Array
    n_events: int
    n_bad: int


def _column_kind(table: pa.Table, name: str, kinds: tuple[str, ...], source: str) -> None:
    typ = table.schema.field(name).type
    if pa.types.is_dictionary(typ):
        typ = typ.value_type
    ok = {
        "integer": pa.types.is_integer(typ),
        "string": pa.types.is_string(typ) or pa.types.is_large_string(typ),
        "timestamp": pa.types.is_timestamp(typ),
        "float": pa.types.is_floating(typ) or pa.types.is_integer(typ),
        "bool": pa.types.is_boolean(typ),
    }
    if not pa.types.is_null(typ) and not any(ok[k] for k in kinds):  # null: an empty or all-null column
        raise InvalidLogError(
            f"The outcome column '{name}' of {source} must be {' or '.join(kinds)}; got {typ} instead."
        )


def _micros(column: Any) -> pa.ChunkedArray | pa.Array:
    typ = column.type
    return pc.cast(pc.cast(column, pa.timestamp("us", tz=typ.tz)), pa.int64())


def _read_events(outcomes: PathLike | pa.Table, quality_threshold: float | None) -> _Events:
    source = "<table>"
    if not isinstance(outcomes, pa.Table):
        path = Path(outcomes)
        if not path.exists():
            raise InvalidLogError(f"The outcomes must be an existing Parquet file or folder; got '{path}'.")
        source = str(path)
        outcomes = pq.read_table(path, partitioning="hive" if path.is_dir() else None)
    table = outcomes
    names = set(table.column_names)
    missing = [c for c in ("member_id", "title_id", "timestamp") if c not in names]
    if missing:
        raise InvalidLogError(
            f"The outcomes {source} must have the column(s) {missing}; got {table.column_names}."
        )
    if "reward" not in names and "engagement" not in names:
        raise InvalidLogError(f"The outcomes {source} must have a 'reward' or an 'engagement' column.")
    if "reward" not in names and quality_threshold is None:
        raise InvalidLogError(
            f"The outcomes {source} have 'engagement' but no 'reward': give a quality threshold "
            "(--quality-threshold) to say which plays are quality plays."
        )
    for name, kinds in (("member_id", ("integer",)), ("title_id", ("string",)),
                        ("timestamp", ("timestamp",)), ("page_id", ("integer",)),
                        ("reward", ("integer", "bool")), ("engagement", ("float",))):
        if name in names:
            _column_kind(table, name, kinds, source)
    n = table.num_rows
    member_col = table.column("member_id")
    time_col = _micros(table.column("timestamp"))
    title_col = pc.cast(table.column("title_id"), pa.string())
    bad = (_nulls(member_col) | _nulls(time_col) | _nulls(title_col))
    engagement = None
    if "engagement" in names:
        engagement = _floats(table.column("engagement"))
        bad |= ~np.isfinite(engagement) | (engagement < 0)
    if "reward" in names:
        reward = _floats(pc.cast(table.column("reward"), pa.int64()))
        bad |= ~np.isin(reward, (0.0, 1.0))
        quality = reward == 1.0
    else:
        assert engagement is not None and quality_threshold is not None
        quality = engagement >= float(quality_threshold)
    page = np.full(n, -1, dtype=np.int64)
    if "page_id" in names:
        pages = table.column("page_id")
        page = np.where(_nulls(pages), -1, _ints(pages))
    good = ~bad
    titles = pc.unique(title_col.filter(pa.array(good))) if n else pa.array([], pa.string())
    if isinstance(titles, pa.ChunkedArray):
        titles = titles.combine_chunks()
    code = _ints(pc.index_in(title_col, value_set=titles))
    keep = np.flatnonzero(good)
    return _Events(
        member=_ints(member_col)[keep],
        title=code[keep],
        time=_ints(time_col)[keep],
        page=page[keep],
        quality=quality[keep],
        engagement=None if engagement is None else engagement[keep],
        titles=titles,
        n_events=n,
        n_bad=int(bad.sum()),
    )


def _nulls(column: Any) -> NDArray[np.bool_]:
    return np.asarray(pc.is_null(column).to_numpy(zero_copy_only=False), dtype=bool)


def _ints(column: Any) -> NDArray[np.int64]:
    """int64 values, -1 for null (no copy for an int64 column without nulls)."""
    if column.null_count == 0 and (pa.types.is_integer(column.type) or pa.types.is_timestamp(column.type)):
        return np.asarray(column.to_numpy(), dtype=np.int64)
    return np.asarray(pc.fill_null(pc.cast(column, pa.int64()), -1).to_numpy(zero_copy_only=False), dtype=np.int64)


def _floats(column: Any) -> NDArray[np.float64]:
    return np.asarray(
        pc.fill_null(pc.cast(column, pa.float64()), np.nan).to_numpy(zero_copy_only=False), dtype=np.float64
    )


def _key(member: NDArray[np.int64], code: NDArray[np.int64]) -> NDArray[np.uint64]:
    """A 64-bit key per (member, title code); collisions are checked after the match."""
    with np.errstate(over="ignore"):
        return member.view(np.uint64) * _MIX + code.astype(np.uint64)


_BITMAP_SLOTS = 1 << 25  # 32 MB of flags: few false positives for millions of event keys


def _slot(key: NDArray[np.uint64]) -> NDArray[np.int64]:
    """A slot of the key's Bloom filter (the key's top bits after one more multiply)."""
    with np.errstate(over="ignore"):
        return ((key * np.uint64(0xD6E8FEB86659FD93)) >> np.uint64(64 - 25)).astype(np.int64)


def _bucket(member: NDArray[np.int64], partitions: int) -> NDArray[np.int64]:
    if partitions == 1:
        return np.zeros(len(member), dtype=np.int64)
    with np.errstate(over="ignore"):
        h = member.view(np.uint64) * np.uint64(0xBF58476D1CE4E5B9)
    return ((h >> np.uint64(33)) % np.uint64(partitions)).astype(np.int64)


# ---------------------------------------------------------------------------- decisions


def _decision_files(decisions: PathLike) -> list[Path]:
    from slate.logs.stream import list_log_files

    path = Path(decisions)
    if not path.exists():
        raise InvalidLogError(f"The decision log must be an existing Parquet file or folder; got '{path}'.")
    return list_log_files(path)


def _key_batches(source: pq.ParquetFile | pa.Table) -> Iterator[pa.RecordBatch | pa.Table]:
    if isinstance(source, pa.Table):
        yield source.select([c for c in _KEYS if c in source.column_names])
        return
    names = source.schema_arrow.names
    missing = [c for c in _KEYS[:3] if c not in names]
    if missing:
        raise InvalidLogError(f"The decision log must have the column(s) {missing}; got {names}.")
    columns = [c for c in _KEYS if c in names]
    for i in range(source.num_row_groups):
        yield source.read_row_group(i, columns=columns, use_threads=_THREADS)


@dataclass
class _Matches:
    """Per event (in the events' order): the global row matched (-1: none), and the reason."""

    row: NDArray[np.int64]
    reason: NDArray[np.int8]  # index into UNMATCHED_REASONS; -1 matched


def _match_bucket(
    sources: Sequence[pq.ParquetFile | pa.Table],
    offsets: Sequence[int],
    events: _Events,
    selected: NDArray[np.int64],
    bucket: int,
    partitions: int,
    window_us: int,
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int8]]:
    """Match the events ``selected`` (of one member bucket); returns (events, rows, reasons)."""
    ev_member = events.member[selected]
    ev_title = events.title[selected]
    ev_key = _key(ev_member, ev_title)
    by_page = events.page[selected] >= 0
    value_set = pa.array(ev_key[~by_page])  # repeated keys are fine: index_in gives the first
    page_set = pa.array(np.unique(_key(events.page[selected][by_page], ev_title[by_page])))
    g_parts: list[NDArray[np.int64]] = []
    t_parts: list[NDArray[np.int64]] = []
    r_parts: list[NDArray[np.int64]] = []
    p_rows: list[NDArray[np.int64]] = []
    p_keys: list[NDArray[np.uint64]] = []
    pending: list[tuple[NDArray[np.uint64], NDArray[np.int64], NDArray[np.int64]]] = []
    n_pending = 0
    bitmap = np.zeros(_BITMAP_SLOTS, dtype=bool)  # a one-hash Bloom filter of the events' keys
    bitmap[_slot(ev_key[~by_page])] = True

    def flush() -> None:
        """Probe the pending rows' keys in one hash lookup (one build of the events' key set)."""
        nonlocal n_pending
        if not pending:
            return
        keys = np.concatenate([k for k, _, _ in pending])
        maybe = np.flatnonzero(bitmap[_slot(keys)])  # most rows have no event: skip the hash probe
        g = _ints(pc.index_in(pa.array(keys[maybe]), value_set=value_set))
        hit = g >= 0
        g_parts.append(g[hit])
        t_parts.append(np.concatenate([t for _, t, _ in pending])[maybe[hit]])
        r_parts.append(np.concatenate([r for _, _, r in pending])[maybe[hit]])
        pending.clear()
        n_pending = 0

    for source, offset in zip(sources, offsets, strict=True):
        start = int(offset)
        for batch in _key_batches(source):
            n = batch.num_rows
            title = batch.column("title_id")
            if isinstance(title, pa.ChunkedArray):
                title = title.combine_chunks()
            if pa.types.is_dictionary(title.type):
                code = _ints(pc.index_in(title.dictionary, value_set=events.titles))[
                    _ints(title.indices)]
            else:
                code = _ints(pc.index_in(title, value_set=events.titles))
            member = _ints(batch.column("member_id"))
            live = code >= 0
            if len(page_set) and "page_id" in batch.column_names:  # pages of any member bucket
                both = np.flatnonzero(live)
                pk = _key(_ints(batch.column("page_id"))[both], code[both])
                on_page = _ints(pc.index_in(pa.array(pk), value_set=page_set)) >= 0
                p_rows.append(both[on_page] + start)
                p_keys.append(pk[on_page])
            if partitions > 1:
                live &= _bucket(member, partitions) == bucket
            idx = np.flatnonzero(live)
            if len(idx) and len(value_set):
                pending.append((_key(member[idx], code[idx]),
                                _ints(_micros(batch.column("timestamp").take(pa.array(idx)))), idx + start))
                n_pending += len(idx)
                if n_pending >= _PROBE_ROWS:
                    flush()
            start += n
    flush()
    reasons = np.full(len(selected), -1, dtype=np.int8)
    rows = np.full(len(selected), -1, dtype=np.int64)
    # ---- events naming their page: exact (page, title)
    if by_page.any():
        pk_all = np.concatenate(p_keys) if p_keys else np.zeros(0, np.uint64)
        pr_all = np.concatenate(p_rows) if p_rows else np.zeros(0, np.int64)
        order = np.argsort(pk_all, kind="stable")
        pk_sorted = pk_all[order]
        want = _key(events.page[selected][by_page], ev_title[by_page])
        pos = np.searchsorted(pk_sorted, want)
        found = (pos < len(pk_sorted)) & (pk_sorted[np.minimum(pos, len(pk_sorted) - 1)] == want) \
            if len(pk_sorted) else np.zeros(len(want), bool)
        where = np.flatnonzero(by_page)
        rows[where[found]] = pr_all[order[pos[found]]]
        reasons[where[~found]] = UNMATCHED_REASONS.index("unknown_page")
    # ---- other events: latest impression of (member, title) at or before the event
    free = np.flatnonzero(~by_page)
    if len(free):
        imp_g = np.concatenate(g_parts) if g_parts else np.zeros(0, np.int64)
        imp_t = np.concatenate(t_parts) if t_parts else np.zeros(0, np.int64)
        imp_r = np.concatenate(r_parts) if r_parts else np.zeros(0, np.int64)
        ev_g = _ints(pc.index_in(pa.array(ev_key[free]), value_set=value_set))
        ev_t = events.time[selected][free]
        n_imp = len(imp_g)
        g_all = np.concatenate([imp_g, ev_g])
        t_all = np.concatenate([imp_t, ev_t])
        order = _merge_order(g_all, t_all, n_imp)
        is_imp = order < n_imp
        last = np.where(is_imp, np.arange(len(order)), -1)
        np.maximum.accumulate(last, out=last)
        ev_pos = np.flatnonzero(~is_imp)
        j = last[ev_pos]
        e = order[ev_pos] - n_imp
        ok = j >= 0
        same = np.zeros(len(ev_pos), dtype=bool)
        same[ok] = g_all[order[j[ok]]] == g_all[order[ev_pos[ok]]]
        age = np.where(same, t_all[order[ev_pos]] - np.where(same, t_all[order[np.maximum(j, 0)]], 0), 0)
        inside = same & (age <= window_us)
        target = free[e]
        rows[target[inside]] = imp_r[order[j[inside]]]
        reasons[target[~same]] = UNMATCHED_REASONS.index("no_impression")
        reasons[target[same & ~inside]] = UNMATCHED_REASONS.index("outside_window")
    return selected, rows, reasons


def _merge_order(g: NDArray[np.int64], t: NDArray[np.int64], n_imp: int) -> NDArray[np.int64]:
    """Order of the impressions (the first ``n_imp``) and events by (group, time), impressions
    first at equal times, ties in input order: one stable sort of a packed 64-bit key when the
    groups and the time span fit, else a three-key lexsort.

    Examples
    --------
    >>> _merge_order(np.array([1, 0, 1, 0]), np.array([5, 9, 5, 8]), 2).tolist()
    [3, 1, 0, 2]
    """
    kind = np.zeros(len(g), dtype=np.int64)
    kind[n_imp:] = 1
    if len(g) == 0:
        return np.zeros(0, dtype=np.int64)
    t0 = int(t.min())
    span = int(t.max()) - t0
    n_groups = int(g.max()) + 1
    bits_t = (2 * span + 1).bit_length()
    if bits_t + max(n_groups - 1, 1).bit_length() <= 63:
        packed = (g << bits_t) | (((t - t0) << 1) | kind)
        return np.argsort(packed, kind="stable")
    return np.lexsort((kind, t, g))


def _match(
    sources: Sequence[pq.ParquetFile | pa.Table],
    offsets: Sequence[int],
    events: _Events,
    window_us: int,
    partitions: int,
    engine: str,
    scheduler: Any,
    files: Sequence[Path] = (),
) -> _Matches:
    n = len(events.member)
    buckets = _bucket(events.member, partitions)
    order = np.argsort(buckets, kind="stable")
    bounds = np.searchsorted(buckets[order], np.arange(partitions + 1))
    jobs = [(order[bounds[b]:bounds[b + 1]], b) for b in range(partitions) if bounds[b + 1] > bounds[b]]
    if engine == "dask":
        import dask

        paths = [str(s) for s in files]
        tasks = [dask.delayed(_match_bucket_files)(paths, offsets, events, sel, b, partitions, window_us)
                 for sel, b in jobs]
        results = dask.compute(*tasks, scheduler=scheduler)
    else:
        results = tuple(_match_bucket(sources, offsets, events, sel, b, partitions, window_us)
                        for sel, b in jobs)
    rows = np.full(n, -1, dtype=np.int64)
    reasons = np.full(n, -1, dtype=np.int8)
    for sel, r, why in results:
        rows[sel] = r
        reasons[sel] = why
    return _Matches(rows, reasons)


def _match_bucket_files(
    paths: Sequence[str], offsets: Sequence[int], events: _Events, selected: NDArray[np.int64],
    bucket: int, partitions: int, window_us: int,
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int8]]:
    """:func:`_match_bucket` on files opened in the worker."""
    sources = [pq.ParquetFile(p) for p in paths]
    return _match_bucket(sources, offsets, events, selected, bucket, partitions, window_us)


# ---------------------------------------------------------------------------- output


@dataclass(frozen=True, eq=False)
class _Outcome:
    """Per matched row (sorted): the reward and the engagement."""

    rows: NDArray[np.int64]
    reward: NDArray[np.int8]
    engagement: NDArray[np.float64] | None


def _outcome(events: _Events, matches: _Matches) -> _Outcome:
    hit = np.flatnonzero(matches.row >= 0)
    rows, inverse = np.unique(matches.row[hit], return_inverse=True)
    reward = np.zeros(len(rows), dtype=np.int8)
    np.maximum.at(reward, inverse, events.quality[hit].astype(np.int8))
    engagement: NDArray[np.float64] | None = None
    if events.engagement is not None:
        engagement = np.bincount(inverse, weights=events.engagement[hit], minlength=len(rows)).astype(np.float64)
    return _Outcome(rows, reward, engagement)


def _with_outcome(batch: pa.Table, start: int, outcome: _Outcome) -> pa.Table:
    n = batch.num_rows
    lo, hi = np.searchsorted(outcome.rows, [start, start + n])
    local = outcome.rows[lo:hi] - start
    reward = np.zeros(n, dtype=np.int8)
    reward[local] = outcome.reward[lo:hi]
    batch = _set(batch, "reward", pa.array(reward, pa.int8()))
    if outcome.engagement is not None:
        engagement = np.zeros(n, dtype=np.float64)
        engagement[local] = outcome.engagement[lo:hi]
        batch = _set(batch, "engagement", pa.array(engagement, pa.float64()))
    return batch


def _set(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    i = table.schema.get_field_index(name)
    fld = pa.field(name, values.type, nullable=True,
                   metadata=table.schema.field(name).metadata if i >= 0 else None)
    if i >= 0:
        return table.set_column(i, fld, values)
    return table.append_column(fld, values)


def _stat_columns(schema: pa.Schema) -> list[str]:
    """Columns whose min/max statistics are kept (numbers and times: ``page_id`` orders a stream;
    the statistics of string and list columns cost more to write than the rest of the file)."""
    return [f.name for f in schema
            if pa.types.is_integer(f.type) or pa.types.is_floating(f.type) or pa.types.is_timestamp(f.type)
            or pa.types.is_boolean(f.type)]


def _write_file(
    source: str, target: str, start: int, outcome: _Outcome, compression: str
) -> tuple[str, int]:
    """Copy one decision file to ``target`` with the outcomes; returns (target, rows rewarded)."""
    from slate.logs.parquet import _read_plan

    pf = pq.ParquetFile(source)
    _, _, dictionary = _read_plan(pf.schema_arrow)
    pf = pq.ParquetFile(source, read_dictionary=dictionary)
    out = Path(target)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    writer = None
    rewarded = 0
    metadata = dict(pf.schema_arrow.metadata or {})
    metadata[b"slate.join"] = b"slate.logs.join_outcomes"
    try:
        for i in range(pf.num_row_groups):
            group = _with_outcome(pf.read_row_group(i, use_threads=_THREADS), start, outcome)
            start += group.num_rows
            rewarded += int(pc.sum(group.column("reward")).as_py() or 0)
            group = group.replace_schema_metadata(metadata)
            if writer is None:
                writer = pq.ParquetWriter(tmp, group.schema, compression=compression,
                                          write_statistics=_stat_columns(group.schema))
            writer.write_table(group, row_group_size=max(group.num_rows, 1))
        if writer is None:  # an empty file: keep its schema
            empty = pf.schema_arrow.empty_table()
            empty = _set(_set(empty, "reward", pa.array([], pa.int8())), "engagement", pa.array([], pa.float64())) \
                if outcome.engagement is not None else _set(empty, "reward", pa.array([], pa.int8()))
            writer = pq.ParquetWriter(tmp, empty.replace_schema_metadata(metadata).schema,
                                      compression=compression)
    finally:
        if writer is not None:
            writer.close()
    os.replace(tmp, out)
    return str(out), rewarded


def _targets(files: Sequence[Path], decisions: Path, output: Path) -> list[Path]:
    if decisions.is_file():
        return [output]
    return [output / f.relative_to(decisions) for f in files]


# ---------------------------------------------------------------------------- API


def join_outcomes(
    decisions: PathLike | pa.Table,
    outcomes: PathLike | pa.Table,
    output: PathLike | None = None,
    *,
    window: str | float = "24h",
    quality_threshold: float | None = None,
    partitions: int | Literal["auto"] = "auto",
    engine: Literal["local", "dask"] = "local",
    scheduler: Any = None,
    compression: str = "snappy",
) -> tuple[pa.Table | None, JoinReport]:
    """Attribute outcome events to the impressions of a decision log (see the module docstring).

    Parameters
    ----------
    decisions : path or pyarrow.Table
        A ``slate.impressions`` log (file, or folder of files, e.g. a :class:`DecisionLogger`'s).
    outcomes : path or pyarrow.Table
        The events (``member_id``, ``title_id``, ``timestamp``, ``reward`` or ``engagement``,
        optional ``page_id``).
    output : path, optional
        Where to write the joined log: a file when ``decisions`` is a file or a table, a folder
        (same relative file names) when it is a folder. None (tables only): return the table.
    window : str or float, default "24h"
        Longest time from an impression to an event attributed to it (seconds, or "30m", "2d").
    quality_threshold : float, optional
        With ``engagement`` and no ``reward``: an event is a quality play when its engagement
        is at least this.
    partitions : int or "auto", default "auto"
        Member-hash buckets matched one at a time (memory ~ 1/partitions); "auto" picks one
        bucket per 8 million impression rows (or 2 million events), so the match stays near
        1 GB whatever the log's size; each bucket reads the key columns once more.
    engine : {"local", "dask"}, default "local"
        "dask": match the buckets and write the files as dask tasks.
    scheduler : optional
        Passed to ``dask.compute`` (e.g. "threads", "processes", a distributed Client).
    compression : str, default "snappy"

    Returns
    -------
    table : pyarrow.Table or None
        The joined log when ``output`` is None, else None.
    report : JoinReport

    Raises
    ------
    InvalidLogError
        A missing file or column, a column of the wrong type, a bad window, or an engagement
        table without a quality threshold.
    """
    window_us = round(parse_window(window) * 1e6)
    if engine not in ("local", "dask"):
        raise InvalidLogError(f"The 'engine' of join_outcomes must be 'local' or 'dask'; got {engine!r}.")
    events = _read_events(outcomes, quality_threshold)
    table: pa.Table | None = None
    if isinstance(decisions, pa.Table):
        table = decisions
        for c in _KEYS[:3]:
            if c not in table.column_names:
                raise InvalidLogError(f"The decision log must have the column '{c}'; got {table.column_names}.")
        sources: list[Any] = [table]
        files: list[Path] = []
        offsets = [0]
        n_rows = table.num_rows
        engine = "local"
    else:
        files = _decision_files(decisions)
        sources = [pq.ParquetFile(f) for f in files]
        sizes = [s.metadata.num_rows for s in sources]
        offsets = np.r_[0, np.cumsum(sizes)[:-1]].astype(np.int64).tolist() if sizes else []
        n_rows = int(sum(sizes))
    if partitions == "auto":
        partitions = max(1, math.ceil(max(n_rows, 4 * len(events.member)) / _ROWS_PER_BUCKET))
    if isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1:
        raise InvalidLogError(f"The 'partitions' of join_outcomes must be 'auto' or an integer >= 1; got {partitions!r}.")
    matches = _match(sources, offsets, events, window_us, partitions, engine, scheduler, files)
    outcome = _outcome(events, matches)
    counts = np.bincount(matches.reason[matches.reason >= 0], minlength=len(UNMATCHED_REASONS))
    unmatched = {r: int(c) for r, c in zip(UNMATCHED_REASONS, counts, strict=True) if c}
    if events.n_bad:
        unmatched["bad_event"] = events.n_bad
    unmatched = {r: unmatched[r] for r in UNMATCHED_REASONS if r in unmatched}
    n_matched = int((matches.row >= 0).sum())
    outputs: list[str] = []
    if table is not None:
        joined = _with_outcome(table, 0, outcome)
        if output is not None:
            from slate.logs.parquet import write_impressions

            outputs.append(str(write_impressions(output, joined, compression=compression,
                                                 metadata={"slate.join": "slate.logs.join_outcomes"})))
            joined = None
        report = JoinReport(n_rows, events.n_events, n_matched, int((outcome.reward == 1).sum()),
                            unmatched, outputs)
        return joined, report
    if output is None:
        raise InvalidLogError("join_outcomes of a log on disk needs an 'output' path.")
    targets = _targets(files, Path(decisions), Path(output))
    jobs = [(str(f), str(t), int(o)) for f, t, o in zip(files, targets, offsets, strict=True)]
    if engine == "dask":
        import dask

        done = dask.compute(*[dask.delayed(_write_file)(f, t, o, outcome, compression) for f, t, o in jobs],
                            scheduler=scheduler)
    else:
        done = tuple(_write_file(f, t, o, outcome, compression) for f, t, o in jobs)
    outputs = [d[0] for d in done]
    report = JoinReport(n_rows, events.n_events, n_matched, int(sum(d[1] for d in done)), unmatched, outputs)
    return None, report

