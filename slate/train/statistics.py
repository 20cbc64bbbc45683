"""Sufficient statistics of a log, folded row by row in a fixed order, and merged in file order.

:class:`LogStatistics` holds, per image (keyed by image id), everything the registered policies
are fitted from (see :mod:`slate.bandit.statistics`) plus the counts the diagnostics print.
The order of every floating-point sum is fixed by the log itself, not by the engine:

* within a file, rows are added in file row order (:class:`FileFold` holds back rows that
  arrive early, e.g. a page carried over a chunk boundary, until every earlier row was seen);
* files are merged in sorted path order (:meth:`LogStatistics.combine`).

So reading a file whole (``memory``), in chunks (``stream``) or on a dask worker gives
bit-identical arrays.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from slate.logs.log import ImpressionLog, RejectionReport
from slate.logs.parquet import InvalidLogError
from slate.train._kernels import fold_rows
from slate.train.features import FeatureStore

__all__ = ["COUNT_COLUMNS", "FileFold", "Layout", "LogStatistics"]

COUNT_COLUMNS = ("weight", "weighted_plays", "weighted_non_plays", "weight_squared", "explored", "plays")
"""Columns of :attr:`LogStatistics.counts`."""


@dataclass(frozen=True)
class Layout:
    """Which statistics to fold: the policy's kind, the feature columns and the weighting.

    Attributes
    ----------
    kind : {"ridge", "hybrid", "counts", "total", "rows"}
    n_log_features : int
        Features per row in the log.
    bias : bool
        Prepend a constant 1 (column 0 of the policy's features).
    arm_columns, shared_columns : tuple of int
        Columns of the policy's features with per-image / shared statistics.
    ips : bool
        Weight each row by ``1 / propensity``.
    feature_store : bool
        The features come from a feature store through ``features_ref``.
    """

    kind: str
    n_log_features: int
    bias: bool = True
    arm_columns: tuple[int, ...] = ()
    shared_columns: tuple[int, ...] = ()
    ips: bool = False
    feature_store: bool = False

    @property
    def n_features(self) -> int:
        """Features per row as the policy sees them."""
        return self.n_log_features + int(self.bias)

    @property
    def uses_features(self) -> bool:
        """The fit reads the features (not the take-rate and uniform policies)."""
        return self.kind in ("ridge", "hybrid", "rows")


@dataclass(eq=False)
class LogStatistics:
    """Per-image statistics of (part of) a log; see the module docstring.

    Attributes
    ----------
    image_ids : list of str
        Image of each slot (first-seen order within a file, sorted after :meth:`combine`).
    offered : ndarray (n_slots,)
        Rows on which the image was a candidate.
    counts : ndarray (n_slots, 6)
        See :data:`COUNT_COLUMNS`.
    events : ndarray (n_slots,), int64
        Rows on which the image was shown (used for the fit).
    A, b, B : ndarray
        Per-image sums over the arm columns (``A`` upper triangle until :meth:`statistics`).
    Z, c : ndarray
        Shared sums over the shared columns.
    totals : ndarray (3,)
        ``sum w``, ``sum w r``, ``sum w^2`` over all rows.
    rows : list
        For the ``rows`` kind (no sufficient statistics): ``(x, slots, reward, weight)`` blocks.
    reports : list of RejectionReport
    left_out : Counter
        Accepted rows the fit could not use, by reason (``missing_features_ref``,
        ``unknown_features_ref``).
    """

    layout: Layout
    image_ids: list[str] = field(default_factory=list)
    offered: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    counts: NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, len(COUNT_COLUMNS))))
    events: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    A: NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 0, 0)))
    b: NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 0)))
    B: NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 0, 0)))
    Z: NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 0)))
    c: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    totals: NDArray[np.float64] = field(default_factory=lambda: np.zeros(3))
    rows: list[tuple[NDArray[Any], ...]] = field(default_factory=list)
    reports: list[RejectionReport] = field(default_factory=list)
    left_out: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._slot: dict[str, int] = {image: i for i, image in enumerate(self.image_ids)}
        da, k = len(self.layout.arm_columns), len(self.layout.shared_columns)
        n = len(self.image_ids)
        if self.A.shape != (n, da, da):
            self.A = np.zeros((n, da, da))
            self.b = np.zeros((n, da))
            self.B = np.zeros((n, da, k))
        if self.Z.shape != (k, k):
            self.Z = np.zeros((k, k))
            self.c = np.zeros(k)

    @property
    def n_images(self) -> int:
        """Images (slots) with statistics."""
        return len(self.image_ids)

    # ------------------------------------------------------------------ slots
    def _grow(self, n: int) -> None:
        old = len(self.offered)
        if n <= old:
            return
        new = max(n, 2 * old, 64)

        def grow(arr: NDArray[Any]) -> NDArray[Any]:
            out = np.zeros((new, *arr.shape[1:]), arr.dtype)
            out[:old] = arr[:old]
            return out

        self.offered, self.counts, self.events = grow(self.offered), grow(self.counts), grow(self.events)
        self.A, self.b, self.B = grow(self.A), grow(self.b), grow(self.B)

    def slots_of(self, ids: Sequence[str]) -> NDArray[np.int64]:
        """Slot of each image id, adding new images at the end."""
        out = np.empty(len(ids), np.int64)
        for i, image in enumerate(ids):
            s = self._slot.get(image)
            if s is None:
                s = self._slot[image] = len(self.image_ids)
                self.image_ids.append(image)
            out[i] = s
        self._grow(len(self.image_ids))
        return out

    def trim(self) -> LogStatistics:
        """Drop the spare capacity (arrays of exactly ``n_images`` rows); returns self."""
        n = self.n_images
        self._grow(n)
        self.offered, self.counts, self.events = self.offered[:n], self.counts[:n], self.events[:n]
        self.A, self.b, self.B = self.A[:n], self.b[:n], self.B[:n]
        return self

    # ------------------------------------------------------------------ folding
    def add_offers(self, log: ImpressionLog, slot_of_code: NDArray[np.int64]) -> None:
        """Count each candidate image of the chunk's rows (order-free: integer counts)."""
        cand = log.candidates[log.candidates >= 0]
        per_code = np.bincount(cand, minlength=len(slot_of_code)).astype(np.float64)
        used = np.flatnonzero(per_code)
        self.offered[slot_of_code[used]] += per_code[used]

    def fold(self, slots: NDArray[np.int64], x: NDArray[np.float32], reward: NDArray[np.float64],
             weight: NDArray[np.float64], explored: NDArray[np.bool_]) -> None:
        """Add rows in the order given (see :func:`slate.train._kernels.fold_rows`)."""
        lay = self.layout
        summed = lay.kind in ("ridge", "hybrid")  # the kinds with feature statistics
        if lay.kind == "rows":
            self.rows.append((x, slots, reward, weight))
        if not summed:  # counts only: no feature columns reach the kernel
            x = np.zeros((len(slots), 0), np.float32)
        if summed and x.shape[1] != lay.n_log_features:
            raise ValueError(f"expected {lay.n_log_features} features per row; got {x.shape[1]}")
        fold_rows(slots, np.ascontiguousarray(x, dtype=np.float32), reward, weight, explored,
                  lay.bias,
                  np.asarray(lay.arm_columns if summed else (), np.int64),
                  np.asarray(lay.shared_columns if summed else (), np.int64),
                  self.counts, self.events, self.A, self.b, self.B, self.Z, self.c, self.totals)

    # ------------------------------------------------------------------ merging
    @classmethod
    def combine(cls, parts: Sequence[LogStatistics], layout: Layout,
                catalog: Sequence[str] = ()) -> LogStatistics:
        """Merge per-file statistics in the order given (sorted path order), onto the sorted
        union of their image ids and the ``catalog`` (images without data: prior only)."""
        ids = sorted(set(catalog).union(*(p.image_ids for p in parts)))
        out = cls(layout, image_ids=list(ids))
        out._grow(len(ids))
        out.trim()
        position = {image: i for i, image in enumerate(ids)}
        for p in parts:
            p.trim()
            idx = np.fromiter((position[i] for i in p.image_ids), np.int64, p.n_images)
            for name in ("offered", "counts", "events", "A", "b", "B"):
                getattr(out, name)[idx] += getattr(p, name)
            out.Z += p.Z
            out.c += p.c
            out.totals += p.totals
            out.rows += [(x, idx[s], r, w) for x, s, r, w in p.rows]
            out.reports += p.reports
            out.left_out.update(p.left_out)
        return out

    def statistics(self) -> dict[str, Any]:
        """The sums :func:`slate.bandit.statistics.policy_from_statistics` takes (symmetric)."""
        self.trim()

        def sym(m: NDArray[np.float64]) -> NDArray[np.float64]:
            upper = np.triu(m)
            return upper + np.swapaxes(np.triu(m, 1), -1, -2)

        return {
            "n_features": self.layout.n_features,
            "A": sym(self.A), "b": self.b.copy(), "B": self.B.copy(),
            "Z": sym(self.Z), "c": self.c.copy(),
            "n": self.counts[:, 0].copy(), "events": self.events.copy(),
            "successes": self.counts[:, 1].copy(), "failures": self.counts[:, 2].copy(),
            "reward_sum": float(self.totals[1]), "weight_sum": float(self.totals[0]),
        }


class FileFold:
    """Folds the chunks of one file into :class:`LogStatistics` in file row order.

    Chunks may arrive with rows out of order (a page carried into the next chunk); rows are held
    back until every earlier row of the file was seen (accepted or rejected).
    """

    def __init__(self, stats: LogStatistics, n_rows: int, store: FeatureStore | None = None) -> None:
        self.stats = stats
        self.store = store
        self.seen = np.zeros(n_rows + 1, bool)
        self.seen[n_rows] = False  # sentinel: the frontier never runs past the file
        self.frontier = 0
        self.pending: list[tuple[NDArray[Any], ...]] = []

    def feed(self, log: ImpressionLog) -> None:
        """Add one validated chunk (its ``source_row`` and rejected rows number file rows)."""
        st = self.stats
        lay = st.layout
        self.seen[log.source_row] = True
        self.seen[log.rejections.rows] = True
        st.reports.append(log.rejections)
        if log.n_rows and lay.feature_store:
            self._pend(log, *self._from_store(log))
        elif log.n_rows and lay.uses_features and lay.n_log_features and log.features is None:
            raise InvalidLogError(
                f"The log file '{log.rejections.source}' has no inline features; the policy is "
                f"trained on the {lay.n_log_features} features of the log's first file."
            )
        elif log.n_rows:
            x = log.features if (lay.uses_features and log.features is not None) else np.zeros((log.n_rows, 0), np.float32)
            self._pend(log, x, None)
        rest = self.seen[self.frontier:]
        self.frontier += int(np.argmin(rest))  # first row not yet seen
        self._flush(self.frontier)

    def _from_store(self, log: ImpressionLog) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
        """Features looked up by ``features_ref``; rows without them are counted, not used."""
        assert self.store is not None
        x, present, found = self.store.lookup(log.features_ref, log.n_rows)
        self.stats.left_out["missing_features_ref"] += int((~present).sum())
        self.stats.left_out["unknown_features_ref"] += int((present & ~found).sum())
        return x, found

    def _pend(self, log: ImpressionLog, x: NDArray[np.float32], keep: NDArray[np.bool_] | None) -> None:
        st = self.stats
        slot_of_code = st.slots_of(log.image_ids)
        st.add_offers(log, slot_of_code)
        w = 1.0 / log.propensity if st.layout.ips else np.ones(log.n_rows)
        cols: tuple[NDArray[Any], ...] = (log.source_row, slot_of_code[log.image], x,
                                          log.reward.astype(np.float64), w, log.explored)
        if keep is not None and not keep.all():
            cols = tuple(c[keep] for c in cols)
        self.pending.append(cols)

    def close(self) -> LogStatistics:
        """Fold what is left; returns the file's statistics."""
        self._flush(len(self.seen))
        return self.stats.trim()

    def _flush(self, upto: int) -> None:
        if not self.pending:
            return
        parts = self.pending
        cols = list(parts[0]) if len(parts) == 1 else [
            np.concatenate([p[j] for p in parts]) for j in range(len(parts[0]))
        ]
        src = cols[0]
        ready = src < upto
        if not ready.any():
            self.pending = [tuple(cols)]
            return
        if ready.all() and (len(src) < 2 or bool(np.all(src[1:] > src[:-1]))):
            _, slots, x, r, w, ex = cols  # the usual case: a whole chunk, in file order
            self.stats.fold(slots, x, r, w, ex)
            self.pending = []
            return
        order = np.flatnonzero(ready)
        order = order[np.argsort(src[order], kind="stable")]
        _, slots, x, r, w, ex = (c[order] for c in cols)
        self.stats.fold(slots, x, r, w, ex)
        keep = np.flatnonzero(~ready)
        self.pending = [tuple(c[keep] for c in cols)] if len(keep) else []
