"""Mergeable, exact partial sums of the estimators, so that any partitioning of a log (files,
row groups, dask workers) gives bit-identical estimates.

Every estimator reduces a chunk of whole pages to per-page sums ``U_p``, ``V_p`` (see
:mod:`slate.replay.stats`); a page's sums are computed from its rows in file order, so they do
not depend on the chunk the page is in. :class:`EstimatorSums` adds, *exactly* (see
:mod:`slate.replay._exact`), everything the estimate needs across pages:

* ``sum U``, ``sum V`` (the value ``sum U / sum V``),
* ``sum U^2``, ``sum U V``, ``sum V^2`` (the cluster-robust standard error,
  ``sum_p (U_p - theta V_p)^2`` expanded, evaluated in exact rational arithmetic),
* ``sum w``, ``sum w^2`` and a histogram of the weights (effective sample size, largest
  weight, share of the top 1% of the weights),
* for each bootstrap replicate ``b``, ``sum_p c_pb U_p`` and ``sum_p c_pb V_p`` with Poisson(1)
  counts ``c_pb`` drawn from a hash of ``(seed, page id, b)`` (the Poisson bootstrap: each page
  is resampled independently, so no global index of pages is needed; Hanley & MacGibbon 2006;
  Chamandy et al. 2012).

Integer addition is associative, so merging partials in any order gives the same integers, and
the estimate computed from them is the same float.

:class:`TitleSums` holds the same kind of sums per title, keyed by title id (partitions may see
different titles; merging aligns them by id): ``sum u``, ``sum v``, ``sum u^2``, ``sum u v``,
``sum v^2``, ``sum w``, ``sum w^2`` over the title's rows, its rows and matched rows, and, with a
bootstrap, ``sum_i c_{p(i) b} u_i`` and ``sum_i c_{p(i) b} v_i`` per title and replicate with the
*same* page counts ``c_pb`` as the overall bootstrap (one joint resample of the pages). A page
holds a title at most once, so a title's rows are its pages and the row-level standard error of
:meth:`slate.replay.estimators.BaseEstimator.per_title` is a page-level one: its sums merge.

Member clustering (``cluster="member"``, :mod:`slate.replay.clusters`): the clusters are hash
buckets of the member ids, whose pages are spread over files and chunks. :class:`BucketSums`
keeps, per bucket touched, the exact sums ``U_k = sum_{p in k} U_p`` and ``V_k`` (accumulators
of only the digits the values can reach: ``O(n_buckets)`` memory) and the pages, so the
cluster-robust standard error over buckets is evaluated exactly at the end. The bootstrap
counts are drawn from a hash of ``(seed, bucket, b)`` instead of ``(seed, page id, b)``: every
page of a bucket gets the same count, so ``sum_p c_{k(p) b} U_p = sum_k c_kb U_k`` is summed per
chunk exactly as before (per title too: per-title intervals resample buckets; the per-title
``se`` stays the row-level one).

References
----------
Hanley, J. A. & MacGibbon, B. (2006). Creating non-parametric bootstrap samples using Poisson
frequencies. Computer Methods and Programs in Biomedicine 83(1).
Chamandy, N., Muralidharan, O., Najmi, A. & Naidu, S. (2012). Estimating uncertainty for
massive data streams. Google technical report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numba
import numpy as np
from numpy.typing import NDArray

from slate.replay import _exact
from slate.replay.policy import InvalidReplayInputError
from slate.replay.stats import ESS_FRACTION, MIN_ESS, TOP_SHARE, interval_from

__all__ = ["WEIGHT_BINS_PER_OCTAVE", "BucketSums", "ChunkBootstrap", "EstimatorSums", "TitleSums", "page_ids_of"]

WEIGHT_BINS_PER_OCTAVE = 16
"""Resolution of the weight histogram (bins of ``2**(1/16)``: the top-1% share is exact when
each bin holds one distinct weight, else within about 4%)."""
_N_WEIGHT_BINS = (2100 * WEIGHT_BINS_PER_OCTAVE)
_SUMS = ("U", "V", "UU", "UV", "VV", "W", "WW", "AW")
_TITLE_SUMS = ("U", "V", "UU", "UV", "VV", "W", "WW")


@numba.njit(cache=True, nogil=True)
def _bin_weights(
    w: NDArray[np.float64], counts: NDArray[np.int64], lo: NDArray[np.float64],
    hi: NDArray[np.float64], per_octave: int,
) -> float:  # pragma: no cover - compiled
    """Histogram of ``|w|`` in log bins (0 in bin 0): counts, smallest and largest per bin;
    returns the largest ``|w|``."""
    top = 0.0
    for i in range(len(w)):
        a = abs(w[i])
        if a == 0.0:
            b = 0
        else:
            m, e = math.frexp(a)
            b = (e + 1075) * per_octave + int((m - 0.5) * 2.0 * per_octave)
        counts[b] += 1
        if counts[b] == 1 or a < lo[b]:
            lo[b] = a
        if counts[b] == 1 or a > hi[b]:
            hi[b] = a
        if a > top:
            top = a
    return top


def page_ids_of(log: Any) -> NDArray[np.int64]:
    """The page id of each page of a log, in ``log.page_index`` order."""
    return np.asarray(log.page_id[log.page_order[log.page_starts[:-1]]], dtype=np.int64)


def _exact_sum(values: NDArray[np.float64], what: str) -> NDArray[np.int64]:
    acc = _exact.new()
    if not _exact.accumulate(acc, np.ascontiguousarray(values, dtype=np.float64)):
        raise InvalidReplayInputError(
            f"The estimator's {what} must be finite to be summed; got a NaN or infinite value "
            f"(weights overflowing?)."
        )
    return acc


def _window_sums(
    buckets: NDArray[np.int64], values: NDArray[np.float64]
) -> tuple[NDArray[np.int64], NDArray[np.int64], int, NDArray[np.int64]]:
    """Sorted ids, counts, window start and windowed exact sums of ``values`` (n, C) by id."""
    ids, inverse = np.unique(buckets, return_inverse=True)
    inverse = np.ascontiguousarray(inverse.reshape(-1), dtype=np.int64)
    vals = np.ascontiguousarray(values, dtype=np.float64)
    if not np.isfinite(vals).all():
        raise InvalidReplayInputError(
            "The estimator's per-page sums must be finite to be summed per member bucket; got a "
            "NaN or infinite value (weights overflowing?)."
        )
    lo, hi = (int(x) for x in _exact.window_of(vals))
    digits = np.zeros((len(ids), vals.shape[1], hi - lo), dtype=np.int64)
    if hi > lo:
        _exact.accumulate_window(digits, np.int64(lo), inverse, vals)
    counts = np.bincount(inverse, minlength=len(ids)).astype(np.int64)
    return ids.astype(np.int64), counts, lo, digits


def _assumption_of(estimator: str) -> str:
    """The registered estimator's stated assumption ("" for one registered without it)."""
    from slate.replay.estimators import UnknownEstimatorError, get_estimator

    try:
        return str(getattr(get_estimator(estimator), "assumption", ""))
    except (UnknownEstimatorError, TypeError):
        return ""


@dataclass(eq=False)
class BucketSums:
    """Exact per-bucket sums ``U_k``, ``V_k`` of an estimator over some pages, for the
    cluster-robust standard error over member buckets; ``merge`` adds two of them.

    Only the buckets touched are stored, and each sum only over the base-``2**32`` digits the
    values can reach (a window ``[lo, lo + W)`` shared by the buckets: typically 3-6 digits
    instead of 68), so the merged sums of a log take about ``2 * 8 * W * n_buckets`` bytes
    (3-6 MB for 65,536 buckets).

    Attributes
    ----------
    n_buckets : int
    ids : ndarray (n,), int64
        Sorted buckets with at least one page here.
    n_pages : ndarray (n,), int64
    lo : int
        First digit of the window.
    digits : ndarray (n, 2, W), int64
        Normalized windowed accumulators of ``U_k`` and ``V_k``.

    Examples
    --------
    >>> import numpy as np
    >>> buckets, U, V = np.array([3, 1, 3]), np.array([1.0, 0.5, 2.0]), np.ones(3)
    >>> whole = BucketSums.from_pages(buckets, U, V, n_buckets=4)
    >>> parts = BucketSums.from_pages(buckets[:1], U[:1], V[:1], 4).merge(
    ...     BucketSums.from_pages(buckets[1:], U[1:], V[1:], 4))
    >>> parts.ids.tolist(), parts.float_sums()[1].tolist(), parts.ratio_se() == whole.ratio_se()
    ([1, 3], [[0.5, 3.0], [1.0, 2.0]], True)
    """

    n_buckets: int
    ids: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    n_pages: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    lo: int = 0
    digits: NDArray[np.int64] = field(default_factory=lambda: np.zeros((0, 2, 0), np.int64))

    @classmethod
    def from_pages(
        cls, buckets: NDArray[np.int64], U: NDArray[np.float64], V: NDArray[np.float64],
        n_buckets: int,
    ) -> BucketSums:
        """The sums of pages with buckets ``buckets`` and per-page sums ``U``, ``V``."""
        ids, counts, lo, digits = _window_sums(
            np.asarray(buckets, dtype=np.int64), np.stack(
                [np.asarray(U, dtype=np.float64), np.asarray(V, dtype=np.float64)], axis=1))
        return cls(int(n_buckets), ids, counts, lo, digits)

    @property
    def n_clusters(self) -> int:
        """Buckets with at least one page."""
        return len(self.ids)

    def merge(self, other: BucketSums) -> BucketSums:
        """The sums over the pages of both (exact: the order of merging does not matter)."""
        if other.n_buckets != self.n_buckets:
            raise InvalidReplayInputError(
                f"Only bucket sums of the same 'n_buckets' merge; got {self.n_buckets} and "
                f"{other.n_buckets} instead."
            )
        if not len(other.ids):
            return self
        if not len(self.ids):
            return other
        ids = np.union1d(self.ids, other.ids)
        W_a, W_b = self.digits.shape[-1], other.digits.shape[-1]
        if W_a == 0 or W_b == 0:
            lo = other.lo if W_a == 0 else self.lo
            hi = lo + max(W_a, W_b)
        else:
            lo = min(self.lo, other.lo)
            hi = max(self.lo + W_a, other.lo + W_b)
        digits = np.zeros((len(ids), 2, hi - lo), dtype=np.int64)
        n_pages = np.zeros(len(ids), dtype=np.int64)
        for part in (self, other):
            at = np.searchsorted(ids, part.ids)
            n_pages[at] += part.n_pages
            W = part.digits.shape[-1]
            if W:
                digits[at, :, part.lo - lo:part.lo - lo + W] += part.digits
        if hi > lo:
            _exact.normalize(digits)
        return BucketSums(self.n_buckets, ids, n_pages, lo, digits)

    def exact_sums(self) -> tuple[NDArray[np.object_], NDArray[np.object_]]:
        """``U_k`` and ``V_k`` per bucket, as Python integers in units of ``2**-SCALE_BITS``."""
        ints = _exact.window_to_ints(self.digits, self.lo)
        if ints.size == 0:
            empty = np.zeros(len(self.ids), dtype=object)
            return empty, empty
        return ints[:, 0], ints[:, 1]

    def float_sums(self) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        """``(ids, sums)``: the buckets and their sums ``U_k``, ``V_k`` (2, n) rounded to float64
        (as :func:`slate.replay.clusters.cluster_sums` returns them)."""
        U, V = self.exact_sums()
        scale = 1 << _exact.SCALE_BITS
        return self.ids, np.array([[float(x / scale) for x in U], [float(x / scale) for x in V]],
                                  dtype=np.float64).reshape(2, len(self.ids))

    def ratio_se(self) -> float:
        """Cluster-robust standard error of ``sum U / sum V`` with the buckets as clusters,
        ``sqrt(G / (G - 1) * sum_k (U_k - theta V_k)^2) / |sum V|`` over the ``G`` buckets with
        pages, evaluated exactly (rounded once); NaN for fewer than 2 buckets or ``sum V = 0``."""
        G = self.n_clusters
        if G < 2:
            return float("nan")
        Uk, Vk = self.exact_sums()
        U, V = int(Uk.sum()), int(Vk.sum())
        if V == 0:
            return float("nan")
        UU, UV, VV = int((Uk * Uk).sum()), int((Uk * Vk).sum()), int((Vk * Vk).sum())
        # (sum_k (U_k - theta V_k)^2) / V^2 = (UU V^2 - 2 U V UV + U^2 VV) / V^4: UU, UV, VV in
        # units of 2**-2S and U, V in units of 2**-S, so the scales cancel
        ratio = (UU * V * V - 2 * U * V * UV + U * U * VV) / (V**4)
        return math.sqrt(G / (G - 1) * max(ratio, 0.0))


@dataclass(frozen=True, eq=False)
class ChunkBootstrap:
    """How a chunk draws its bootstrap counts: ``n`` Poisson(1) replicates keyed by ``key``,
    one count per page id, or under member clustering per member bucket (``buckets``: the
    bucket of each page, out of ``n_buckets``; the standard error is then over buckets too).

    Attributes
    ----------
    n : int
        Bootstrap replicates (0: none).
    key : int
        The replay's bootstrap key (the same for every chunk, so a page gets the same counts
        in any chunk).
    buckets : ndarray (n_pages,) of int64, optional
    n_buckets : int
    """

    n: int = 0
    key: int = 0
    buckets: NDArray[np.int64] | None = None
    n_buckets: int = 0


@dataclass(eq=False)
class EstimatorSums:
    """One estimator's exact partial sums over some pages; ``merge`` adds two of them.

    Attributes
    ----------
    estimator : str
    n_rows, n_pages, n_matched, n_weights : int
    sums : ndarray (8, N_BINS), int64
        Accumulators of ``sum U``, ``sum V``, ``sum U^2``, ``sum U V``, ``sum V^2``,
        ``sum w``, ``sum w^2``, ``sum |w|``.
    has_weights : bool
        False for the direct method (no importance weights).
    max_weight : float
    weight_counts, weight_lo, weight_hi : ndarray
        Histogram of the absolute weights (count, smallest, largest per bin).
    boot : ndarray (2, n_bootstrap, N_BINS), int64
        Bootstrap replicates' ``sum c U`` and ``sum c V``.
    buckets : BucketSums or None
        Under member clustering, the per-bucket sums (the standard error is over buckets, and
        the bootstrap counts were drawn per bucket); None for page clustering.
    cross : ndarray (4, N_BINS) or (0, N_BINS), int64
        ``sum U R``, ``sum U N``, ``sum V R``, ``sum V N`` over pages, with ``R``, ``N`` a page's
        takes and rows (the logging policy's sums, :meth:`with_logged`): the covariance of the
        paired difference from the logging policy. Empty when not kept.
    """

    estimator: str
    n_rows: int = 0
    n_pages: int = 0
    n_matched: int = 0
    n_weights: int = 0
    sums: NDArray[np.int64] = field(default_factory=lambda: _exact.new(len(_SUMS)))
    has_weights: bool = True
    max_weight: float = 0.0
    weight_counts: NDArray[np.int64] = field(
        default_factory=lambda: np.zeros(_N_WEIGHT_BINS, np.int64))
    weight_lo: NDArray[np.float64] = field(
        default_factory=lambda: np.zeros(_N_WEIGHT_BINS, np.float64))
    weight_hi: NDArray[np.float64] = field(
        default_factory=lambda: np.zeros(_N_WEIGHT_BINS, np.float64))
    boot: NDArray[np.int64] = field(default_factory=lambda: _exact.new(2, 0))
    buckets: BucketSums | None = None
    cross: NDArray[np.int64] = field(default_factory=lambda: _exact.new(0))

    @classmethod
    def from_pages(
        cls,
        estimator: str,
        pages: NDArray[np.int64],
        U: NDArray[np.float64],
        V: NDArray[np.float64],
        weights: NDArray[np.float64] | None,
        cluster: NDArray[np.int64] | None,
        n_rows: int,
        n_matched: int,
        bootstrap: ChunkBootstrap = ChunkBootstrap(),
    ) -> EstimatorSums:
        """Partial sums of one chunk from its per-page sums ``U``, ``V`` and its importance
        weights (one per row, with ``cluster`` the page index of each row; or one per page with
        ``cluster=None``; None for no weights). Per-page sums of the weights are summed in row
        order, so a page gives the same sums in any chunk.

        With ``bootstrap.buckets`` (the member bucket of each page, out of
        ``bootstrap.n_buckets``), the clusters are the buckets: their sums are kept
        (:class:`BucketSums`) and the bootstrap count of a page is its bucket's."""
        n_bootstrap, boot_key, buckets = bootstrap.n, bootstrap.key, bootstrap.buckets
        out = cls(estimator, n_rows=int(n_rows), n_pages=len(pages), n_matched=int(n_matched),
                  boot=_exact.new(2, int(n_bootstrap)))
        if buckets is not None:
            out.buckets = BucketSums.from_pages(buckets, U, V, bootstrap.n_buckets)
        terms = {"U": U, "V": V, "UU": U * U, "UV": U * V, "VV": V * V}
        for i, name in enumerate(_SUMS[:5]):
            out.sums[i] = _exact_sum(terms[name], name)
        if weights is None:
            out.has_weights = False
        else:
            w = np.asarray(weights, dtype=np.float64)
            P = len(pages)
            if cluster is None:
                W, WW, AW = w, w * w, np.abs(w)
            else:
                W = np.asarray(np.bincount(cluster, w, P), dtype=np.float64)
                WW = np.asarray(np.bincount(cluster, w * w, P), dtype=np.float64)
                AW = np.asarray(np.bincount(cluster, np.abs(w), P), dtype=np.float64)
            out.sums[5] = _exact_sum(W, "weights")
            out.sums[6] = _exact_sum(WW, "squared weights")
            out.sums[7] = _exact_sum(AW, "absolute weights")
            out.n_weights = len(w)
            out.max_weight = _bin_weights(
                np.ascontiguousarray(weights, dtype=np.float64), out.weight_counts,
                out.weight_lo, out.weight_hi, WEIGHT_BINS_PER_OCTAVE)
        if n_bootstrap:
            _exact.poisson_bootstrap(
                np.uint64(boot_key),
                np.ascontiguousarray(pages if buckets is None else buckets, dtype=np.int64),
                np.ascontiguousarray(U, dtype=np.float64), np.ascontiguousarray(V, dtype=np.float64),
                out.boot[0], out.boot[1], _exact.POISSON1_CDF)
        return out

    def merge(self, other: EstimatorSums) -> EstimatorSums:
        """The sums over the pages of both (exact: the order of merging does not matter)."""
        if other.estimator != self.estimator or other.boot.shape != self.boot.shape:
            raise InvalidReplayInputError(
                f"Only partial sums of the same estimator and bootstrap size merge; got "
                f"'{self.estimator}' {self.boot.shape[1]} and '{other.estimator}' "
                f"{other.boot.shape[1]} instead."
            )
        if (self.buckets is None) != (other.buckets is None):
            raise InvalidReplayInputError(
                "Only partial sums of the same clustering merge; got page-clustered and "
                "member-clustered sums."
            )
        buckets = None
        if self.buckets is not None and other.buckets is not None:
            buckets = self.buckets.merge(other.buckets)
        sums = self.sums + other.sums
        boot = self.boot + other.boot
        _exact.normalize(sums)
        _exact.normalize(boot)
        cross = _exact.new(0)  # kept only when every part with pages kept it
        if len(self.cross) and len(other.cross):
            cross = self.cross + other.cross
            _exact.normalize(cross)
        elif len(self.cross) or len(other.cross):
            part, empty = (self, other) if len(self.cross) else (other, self)
            cross = part.cross.copy() if empty.n_pages == 0 else cross
        counts = self.weight_counts + other.weight_counts
        lo = np.where(self.weight_counts == 0, other.weight_lo,
                      np.where(other.weight_counts == 0, self.weight_lo,
                               np.minimum(self.weight_lo, other.weight_lo)))
        hi = np.maximum(self.weight_hi, other.weight_hi)
        return EstimatorSums(
            self.estimator,
            n_rows=self.n_rows + other.n_rows,
            n_pages=self.n_pages + other.n_pages,
            n_matched=self.n_matched + other.n_matched,
            n_weights=self.n_weights + other.n_weights,
            sums=sums,
            has_weights=self.has_weights and other.has_weights,
            max_weight=max(self.max_weight, other.max_weight),
            weight_counts=counts, weight_lo=lo, weight_hi=hi, boot=boot, buckets=buckets,
            cross=cross,
        )

    def with_logged(self, U: NDArray[np.float64], V: NDArray[np.float64],
                    R: NDArray[np.float64], N: NDArray[np.float64]) -> EstimatorSums:
        """Keep the cross sums of these pages' ``U``, ``V`` with their takes ``R`` and rows
        ``N`` (the logging policy's per-page sums), for the paired difference (in place)."""
        terms = (U * R, U * N, V * R, V * N)
        self.cross = np.stack([_exact_sum(np.asarray(t, dtype=np.float64), "cross sums") for t in terms])
        return self

    def __getstate__(self) -> dict[str, Any]:
        """Pickle the weight histogram sparsely (a dask task ships its sums back)."""
        state = dict(self.__dict__)
        nz = np.flatnonzero(self.weight_counts)
        state["weight_counts"] = (nz, self.weight_counts[nz])
        state["weight_lo"] = self.weight_lo[nz]
        state["weight_hi"] = self.weight_hi[nz]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        nz, counts = state["weight_counts"]
        for name, values, dtype in (("weight_counts", counts, np.int64),
                                    ("weight_lo", state["weight_lo"], np.float64),
                                    ("weight_hi", state["weight_hi"], np.float64)):
            dense = np.zeros(_N_WEIGHT_BINS, dtype)
            dense[nz] = values
            state[name] = dense
        self.__dict__.update(state)

    # ------------------------------------------------------------------ results
    def totals(self) -> dict[str, int]:
        """The exact sums as integers in units of ``2**-SCALE_BITS``."""
        return {name: _exact.to_int(self.sums[i]) for i, name in enumerate(_SUMS)}

    def top_share(self, total: int) -> float:
        """Share of the total absolute weight (``total``, exact) on the largest 1% of the
        weights: exact when each histogram bin it reaches holds one distinct weight, else the
        bins of several weights count at their midpoint."""
        n = self.n_weights
        if n == 0 or total <= 0:
            return 0.0
        remaining = max(1, math.ceil(0.01 * n))
        top = Fraction(0)
        for b in np.flatnonzero(self.weight_counts)[::-1]:
            take = min(int(self.weight_counts[b]), remaining)
            lo, hi = Fraction(float(self.weight_lo[b])), Fraction(float(self.weight_hi[b]))
            top += (hi if lo == hi else (lo + hi) / 2) * take
            remaining -= take
            if remaining == 0:
                break
        return float(top * 2**_exact.SCALE_BITS / total)

    def replicates(self) -> NDArray[np.float64]:
        """The Poisson bootstrap replicates ``sum c U / sum c V`` (NaN where ``sum c V = 0``)."""
        n_boot = self.boot.shape[1]
        reps = np.full(n_boot, np.nan)
        for b in range(n_boot):
            vb = _exact.to_int(self.boot[1, b])
            if vb != 0:
                reps[b] = _exact.to_int(self.boot[0, b]) / vb
        return reps

    def separation(self, logged: EstimatorSums | None, value: float, reps: NDArray[np.float64],
                   level: float) -> dict[str, Any]:
        """The :class:`~slate.replay.Estimate` fields comparing the target with the logging
        policy (``logged``: its sums over the same pages, takes as ``U`` and rows as ``V``), as
        :func:`slate.replay.estimators.separation_fields` computes them in memory: the standard
        error of the paired difference from these sums and the cross sums (exactly, over pages;
        over member buckets from the bucket sums), the interval from the difference of the
        Poisson bootstrap replicates (the same counts for both)."""
        from slate.replay.estimators import separation_from

        nan = float("nan")
        if logged is None or len(self.cross) == 0:
            return {"logged_value": nan, "difference": nan, "difference_interval": (nan, nan),
                    "separated": False, "separation": "no comparison with the logging policy: "
                    "these partial sums keep no logging-policy sums"}
        t, lt = self.totals(), logged.totals()
        scale = 1 << _exact.SCALE_BITS
        V, N = Fraction(t["V"], scale), Fraction(lt["V"], scale)
        if V == 0 or N == 0:
            return separation_from(nan, nan, nan, np.zeros(0), level)
        theta, lam = Fraction(t["U"], scale) / V, Fraction(lt["U"], scale) / N
        logged_value = float(lam)
        se = self._difference_se(logged, theta, lam, V, N)
        return separation_from(logged_value, value - logged_value, se, reps - logged.replicates(), level)

    def _difference_se(self, logged: EstimatorSums, theta: Fraction, lam: Fraction,
                       V: Fraction, N: Fraction) -> float:
        """Cluster-robust standard error of ``theta - lam`` with
        ``phi_c = (U_c - theta V_c) / V - (R_c - lam N_c) / N`` over the clusters."""
        if self.buckets is not None and logged.buckets is not None:
            ids, (Uk, Vk) = self.buckets.float_sums()
            lids, (Rk, Nk) = logged.buckets.float_sums()
            if not np.array_equal(ids, lids):
                return float("nan")
            phi = (Uk - float(theta) * Vk) / float(V) - (Rk - float(lam) * Nk) / float(N)
            G = len(phi)
            resid = phi - phi.mean()
            return math.sqrt(G / (G - 1) * float(resid @ resid)) if G > 1 else float("nan")
        G = self.n_pages
        if G < 2:
            return float("nan")
        scale = 1 << _exact.SCALE_BITS
        t, lt = self.totals(), logged.totals()
        UR, UN, VR, VN = (Fraction(_exact.to_int(row), scale) for row in self.cross)
        UU, UV, VV = (Fraction(t[k], scale) for k in ("UU", "UV", "VV"))
        RR, RN, NN = (Fraction(lt[k], scale) for k in ("UU", "UV", "VV"))
        a = UU - 2 * theta * UV + theta * theta * VV
        c = RR - 2 * lam * RN + lam * lam * NN
        b = UR - lam * UN - theta * VR + theta * lam * VN
        total = a / (V * V) - 2 * b / (V * N) + c / (N * N)
        return math.sqrt(G / (G - 1) * max(float(total), 0.0))

    def estimate(self, *, level: float, seed: int | None, logged: EstimatorSums | None = None) -> Any:
        """The :class:`~slate.replay.Estimate` of these sums; with ``logged`` (the logging
        policy's sums over the same pages, see :meth:`separation`) its separation fields."""
        from slate.replay.estimators import Estimate, no_match_checked

        t = self.totals()
        U, V = t["U"], t["V"]
        value = U / V if V != 0 else float("nan")
        P = self.n_pages
        if self.buckets is not None:
            se = self.buckets.ratio_se()
        elif P >= 2 and V != 0:
            # sum_p (U_p - theta V_p)^2 * 2**S = (UU V^2 - 2 U V UV + U^2 VV) / V^2, exactly
            num = t["UU"] * V * V - 2 * U * V * t["UV"] + U * U * t["VV"]
            ratio = (num << _exact.SCALE_BITS) / (V**4)  # (sum resid^2) / (sum V)^2
            se = math.sqrt(P / (P - 1) * max(ratio, 0.0))
        else:
            se = float("nan")
        n_boot = self.boot.shape[1]
        reps = self.replicates()
        interval, method = interval_from(value, se, reps, float(level))
        if method == "bootstrap":
            method = "poisson bootstrap"
        if self.has_weights and self.n_weights:
            sw, sww = t["W"], t["WW"]
            # (sum w)^2 / sum w^2 with both in units of 2**-S: the scale cancels once
            ess = (sw * sw) / (sww << _exact.SCALE_BITS) if sww > 0 else 0.0
            share = self.top_share(t["AW"])
            exploded = ess < max(MIN_ESS, ESS_FRACTION * self.n_weights) or share > TOP_SHARE
            max_weight = self.max_weight
        else:
            ess, share, exploded = float(self.n_rows), 0.0, False
            max_weight = 1.0 if self.n_rows else 0.0
        per_page = self.n_rows / max(P, 1)
        return no_match_checked(Estimate(
            estimator=self.estimator, value=value, se=se, interval=interval, level=float(level),
            n_bootstrap=n_boot, seed=seed, interval_method=method, ess=float(ess),
            n_rows=self.n_rows, n_pages=P, n_matched=self.n_matched, max_weight=float(max_weight),
            top1_weight_share=float(share), weights_exploded=bool(exploded),
            page_value=value * per_page,
            page_interval=(interval[0] * per_page, interval[1] * per_page),
            assumption=_assumption_of(self.estimator),
            **self.separation(logged, value, reps, float(level)),
        ), weighted=self.has_weights)


# ====================================================================== per title
@dataclass(eq=False)
class TitleSums:
    """One estimator's exact per-title partial sums over some pages; ``merge`` adds two of them,
    aligning titles by id.

    Memory: ``1088 * n_titles * (n_bootstrap + 1)`` bytes (two 68-digit accumulators per title
    and replicate), e.g. 109 MB for 500 titles and 200 replicates; the bootstrap's work is
    ``n_bootstrap x (rows + pages)`` per chunk (the overall bootstrap's is ``n_bootstrap x
    pages``).

    Attributes
    ----------
    estimator : str
    title_ids : tuple of str
        Sorted ids of the titles with at least one row here.
    n_rows, n_matched : ndarray (n_titles,), int64
    sums : ndarray (n_titles, 7, N_BINS), int64
        Accumulators of ``sum u``, ``sum v``, ``sum u^2``, ``sum u v``, ``sum v^2``,
        ``sum w``, ``sum w^2`` per title.
    has_weights : bool
        False for the direct method (then the effective sample size is the rows).
    boot : ndarray (n_bootstrap, n_titles, 2, N_BINS), int64
        Bootstrap replicates' ``sum c u`` and ``sum c v`` per title.
    """

    estimator: str
    title_ids: tuple[str, ...] = ()
    n_rows: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    n_matched: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    sums: NDArray[np.int64] = field(default_factory=lambda: _exact.new(0, len(_TITLE_SUMS)))
    has_weights: bool = True
    boot: NDArray[np.int64] = field(default_factory=lambda: _exact.new(0, 0, 2))

    @classmethod
    def empty(cls, estimator: str, n_bootstrap: int) -> TitleSums:
        """Sums over no rows."""
        return cls(estimator, boot=_exact.new(int(n_bootstrap), 0, 2))

    @classmethod
    def from_rows(
        cls,
        estimator: str,
        title_ids: tuple[str, ...],
        title: NDArray[np.integer[Any]],
        pages: NDArray[np.int64],
        cluster: NDArray[np.int64],
        u: NDArray[np.float64],
        v: NDArray[np.float64],
        weights: NDArray[np.float64] | None,
        matched: NDArray[np.bool_],
        bootstrap: ChunkBootstrap = ChunkBootstrap(),
    ) -> TitleSums:
        """Per-title sums of one chunk from its per-row terms ``u``, ``v`` (and weights),
        ``title`` the code of each row in the sorted ``title_ids``, ``cluster`` the index of its
        page in ``pages`` (the page ids). The bootstrap count of a row is its page's, or with
        ``bootstrap.buckets`` (one per page) its page's bucket's.

        Examples
        --------
        >>> import numpy as np
        >>> ids, title = ("a", "b"), np.array([0, 1, 1])
        >>> def part(rows):
        ...     return TitleSums.from_rows(
        ...         "ips", ids, title[rows], np.array([7, 8])[: len(rows) and max(rows) + 1],
        ...         np.array([0, 0, 1])[rows], np.array([1.0, 0.5, 2.0])[rows], np.ones(len(rows)),
        ...         None, np.ones(len(rows), bool))
        >>> merged = part([0, 1]).merge(part([2]))
        >>> merged.title_ids, merged.estimate(level=0.95).value.tolist()
        (('a', 'b'), [1.0, 1.25])
        """
        n_bootstrap, boot_key = bootstrap.n, bootstrap.key
        draw_ids = pages if bootstrap.buckets is None else bootstrap.buckets
        title = np.asarray(title, dtype=np.int64)
        present, group = np.unique(title, return_inverse=True)
        group = np.ascontiguousarray(group.reshape(-1), dtype=np.int64)
        G = len(present)
        u = np.asarray(u, dtype=np.float64)
        v = np.asarray(v, dtype=np.float64)
        w = np.zeros(len(u)) if weights is None else np.asarray(weights, dtype=np.float64)
        out = cls(
            estimator,
            title_ids=tuple(title_ids[int(k)] for k in present),
            n_rows=np.bincount(group, minlength=G).astype(np.int64),
            n_matched=np.bincount(group[np.asarray(matched, bool)], minlength=G).astype(np.int64),
            sums=_exact.new(G, len(_TITLE_SUMS)),
            has_weights=weights is not None,
            boot=_exact.new(int(n_bootstrap), G, 2),
        )
        if not _exact.accumulate_ratio_terms(out.sums, group, np.ascontiguousarray(u),
                                             np.ascontiguousarray(v), np.ascontiguousarray(w)):
            raise InvalidReplayInputError(
                "The estimator's per-title terms must be finite to be summed; got a NaN or "
                "infinite value (weights overflowing?)."
            )
        if n_bootstrap and G:
            _exact.poisson_bootstrap_grouped(
                np.uint64(boot_key), np.ascontiguousarray(draw_ids, dtype=np.int64),
                np.ascontiguousarray(cluster, dtype=np.int64), group,
                np.ascontiguousarray(u), np.ascontiguousarray(v), out.boot, _exact.POISSON1_CDF)
        return out

    def merge(self, other: TitleSums) -> TitleSums:
        """The sums over the rows of both, titles aligned by id (exact: the order of merging
        does not matter)."""
        if other.estimator != self.estimator or other.boot.shape[0] != self.boot.shape[0]:
            raise InvalidReplayInputError(
                f"Only per-title sums of the same estimator and bootstrap size merge; got "
                f"'{self.estimator}' {self.boot.shape[0]} and '{other.estimator}' "
                f"{other.boot.shape[0]} instead."
            )
        if self.title_ids == other.title_ids:
            ids = self.title_ids
            n_rows, n_matched = self.n_rows + other.n_rows, self.n_matched + other.n_matched
            sums, boot = self.sums + other.sums, self.boot + other.boot
        else:
            ids = tuple(sorted(set(self.title_ids) | set(other.title_ids)))
            where = {t: i for i, t in enumerate(ids)}
            G = len(ids)
            n_rows, n_matched = np.zeros(G, np.int64), np.zeros(G, np.int64)
            sums = _exact.new(G, len(_TITLE_SUMS))
            boot = _exact.new(self.boot.shape[0], G, 2)
            for part in (self, other):
                idx = np.array([where[t] for t in part.title_ids], dtype=np.int64)
                n_rows[idx] += part.n_rows
                n_matched[idx] += part.n_matched
                sums[idx] += part.sums
                boot[:, idx] += part.boot
        _exact.normalize(sums)
        _exact.normalize(boot)
        return TitleSums(self.estimator, ids, n_rows, n_matched, sums,
                         self.has_weights and other.has_weights, boot)

    def estimate(self, *, level: float, title_ids: tuple[str, ...] | None = None) -> Any:
        """The :class:`~slate.replay.estimators.PerTitleEstimates` of these sums, one entry per
        title of ``title_ids`` (default: the titles here; titles without rows get NaN values).

        ``value``, ``se``, ``ess`` and the counts are those of
        :meth:`~slate.replay.estimators.BaseEstimator.per_title` (evaluated exactly); the
        interval is the Poisson bootstrap's percentile interval with replicates, else the same
        normal interval.
        """
        from scipy import stats as sps

        from slate.replay.estimators import PerTitleEstimates

        ids = self.title_ids if title_ids is None else tuple(title_ids)
        where = {t: i for i, t in enumerate(ids)}
        missing = [t for t in self.title_ids if t not in where]
        if missing:
            raise InvalidReplayInputError(
                f"The 'title_ids' of TitleSums.estimate must include every title summed; got "
                f"none for {missing[:5]}."
            )
        T = len(ids)
        value, se = np.full(T, np.nan), np.full(T, np.nan)
        ess = np.zeros(T)
        n_rows, n_matched = np.zeros(T, np.int64), np.zeros(T, np.int64)
        idx = np.array([where[t] for t in self.title_ids], dtype=np.int64)
        n_rows[idx], n_matched[idx] = self.n_rows, self.n_matched
        for j, i in enumerate(idx):
            U, V, UU, UV, VV, W, WW = (_exact.to_int(self.sums[j, k])
                                       for k in range(len(_TITLE_SUMS)))
            n = int(self.n_rows[j])
            if V != 0:
                value[i] = U / V
                if n > 1:
                    num = UU * V * V - 2 * U * V * UV + U * U * VV
                    ratio = (num << _exact.SCALE_BITS) / (V**4)
                    se[i] = math.sqrt(n / (n - 1) * max(ratio, 0.0))
            if self.has_weights:
                ess[i] = (W * W) / (WW << _exact.SCALE_BITS) if WW > 0 else 0.0
            else:
                ess[i] = float(n)
        z = float(sps.norm.ppf(0.5 + float(level) / 2))
        lower, upper = value - z * se, value + z * se
        n_boot = self.boot.shape[0]
        if n_boot and len(idx):
            reps = _exact.ratios(
                np.ascontiguousarray(self.boot[:, :, 0]).reshape(-1, _exact.N_BINS),
                np.ascontiguousarray(self.boot[:, :, 1]).reshape(-1, _exact.N_BINS),
            ).reshape(n_boot, len(idx))
            for j, i in enumerate(idx):
                (lo, hi), method = interval_from(float(value[i]), float(se[i]), reps[:, j],
                                                 float(level))
                if method == "bootstrap":
                    lower[i], upper[i] = lo, hi
        return PerTitleEstimates(
            title_ids=ids, value=value, se=se, lower=lower, upper=upper, n_rows=n_rows,
            n_matched=n_matched, ess=ess,
        )
