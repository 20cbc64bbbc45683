"""Paired bootstrap comparisons of sweep points: differences against the logging policy and
against the best point, the probability of being best, and the selection-bias correction.

Every point of a sweep is estimated on the same logged pages with the same seed, and the cluster
bootstrap of :meth:`slate.replay.BaseEstimator.estimate_with_replicates` resamples clusters with
draws that depend only on the seed and the number of clusters. Replicate ``b`` of every point
(and of the logging policy, :func:`logging_replicates`) is therefore computed on the *same*
resampled pages, so ``reps[i, b] - reps[j, b]`` is a paired bootstrap replicate of the
difference ``value[i] - value[j]``. Page effects shared by both points cancel in it, which makes
the interval of a difference far narrower than either point's own interval.

The reported value of the chosen point, and the paired intervals of every point against it, are
corrected for the optimism of choosing the largest of noisy estimates by the bootstrap estimate
of that optimism (Tibshirani & Tibshirani, "A bias
correction for the minimum error rate in cross-validation", Ann. Appl. Stat. 3(2), 2009):
``bias = mean_b (reps[j_b, b] - value[j_b])`` with ``j_b`` the point best in replicate ``b``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from slate.errors import InvalidRuleError
from slate.logs.log import ImpressionLog
from slate.replay.estimators import bootstrap_seed
from slate.replay.stats import bootstrap_ratio

__all__ = [
    "PAIRED_COLUMNS",
    "RULES",
    "InvalidRuleError",
    "PairedComparison",
    "clear_front_mask",
    "logging_replicates",
    "paired_comparison",
    "selection_bias",
]

FloatArray = NDArray[np.float64]

PAIRED_COLUMNS = (
    "diff_logged", "diff_logged_low", "diff_logged_high",
    "diff_best", "diff_best_low", "diff_best_high", "prob_best", "tied_best",
)
"""Columns :func:`paired_comparison` adds to a sweep table (see ``docs/tuning.md``)."""

RULES = ("best_estimate", "lower_bound", "simplest")
"""How a recommendation chooses among the eligible points (see :func:`slate.tune.recommend`)."""


def logging_replicates(log: ImpressionLog, n_bootstrap: int, seed: int | None) -> tuple[float, FloatArray]:
    """The logging policy's take fraction (mean reward per row) and its page-bootstrap
    replicates, resampled exactly as the sweep's estimates with the same ``seed``.

    Examples
    --------
    >>> from slate.logs.parquet import example_table
    >>> from slate.logs import read_impressions
    >>> log = read_impressions(example_table())[0]
    >>> value, reps = logging_replicates(log, 20, seed=0)
    >>> round(value, 3), reps.shape
    (0.5, (20,))
    """
    P = log.n_pages
    U = np.bincount(log.page_index, np.asarray(log.reward, np.float64), P).astype(np.float64)
    V = np.bincount(log.page_index, minlength=P).astype(np.float64)
    value = float(U.sum() / V.sum()) if V.sum() > 0 else float("nan")
    return value, bootstrap_ratio(U, V, int(n_bootstrap), bootstrap_seed(seed))


@dataclass(frozen=True, eq=False)
class PairedComparison:
    """Paired differences of every point against the logging policy and the best point.

    Attributes
    ----------
    best : int or None
        Row with the best estimate among the comparable points (None: none is).
    columns : dict of str to ndarray
        The :data:`PAIRED_COLUMNS`, one value per point (NaN where not comparable).
    selection_bias : float
        Bootstrap estimate of how much the best estimate overstates its point's value.
    optimism : float
        How far the intervals against the best were shifted up (see :func:`paired_comparison`).
    """

    best: int | None
    columns: dict[str, NDArray]
    selection_bias: float
    optimism: float = 0.0


def _interval(diff: FloatArray, level: float) -> tuple[FloatArray, FloatArray]:
    """Percentile interval of each row of ``diff`` (n, B), NaN where fewer than 2 finite."""
    alpha = 1.0 - level
    n = diff.shape[0]
    lo = np.full(n, np.nan)
    hi = np.full(n, np.nan)
    enough = np.isfinite(diff).sum(axis=1) >= 2
    if enough.any():
        q = np.nanquantile(diff[enough], [alpha / 2, 1 - alpha / 2], axis=1)
        lo[enough], hi[enough] = q[0], q[1]
    return lo, hi


def _optimism(reps: FloatArray) -> float:
    """``mean_b (reps[j_b, b] - mean(reps[j_b]))`` with ``j_b`` the largest point of replicate
    ``b``: how much the winner of a replicate overstates that point's centre (0 when not
    positive or not computable)."""
    good = np.isfinite(reps).all(axis=0)
    if not good.any() or reps.shape[0] < 2:
        return 0.0
    r = reps[:, good]
    j = np.argmax(r, axis=0)
    out = float(np.mean(r[j, np.arange(r.shape[1])] - r.mean(axis=1)[j]))
    return out if out > 0 else 0.0


def selection_bias(values: FloatArray, reps: FloatArray) -> float:
    """Bootstrap optimism of the largest of ``values`` (n,) given replicates ``reps`` (n, B).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> reps = rng.normal(0.0, 1.0, (20, 2000))          # 20 equal points, pure noise
    >>> bool(selection_bias(np.zeros(20), reps) > 1.5)   # the max of 20 normals: about 1.87
    True
    """
    good = np.isfinite(reps).all(axis=0)
    if not good.any() or len(values) == 0:
        return float("nan")
    r = reps[:, good]
    j = np.argmax(r, axis=0)
    return float(np.mean(r[j, np.arange(r.shape[1])] - values[j]))


def paired_comparison(
    values: FloatArray,
    reps: FloatArray,
    logged_value: float,
    logged_reps: FloatArray,
    level: float = 0.95,
    eligible: NDArray[np.bool_] | None = None,
) -> PairedComparison:
    """Paired intervals of ``values[i] - logged_value`` and ``values[i] - values[best]``.

    Parameters
    ----------
    values : ndarray (n,)
        Each point's estimate.
    reps : ndarray (n, B)
        Each point's bootstrap replicates, on the same resampled clusters for every point.
    logged_value, logged_reps : float, ndarray (B,)
        The logging policy's value and replicates on the same resampled clusters.
    level : float
    eligible : ndarray (n,) of bool, optional
        Points that may be "the best" (default: those with a finite estimate).

    Returns
    -------
    PairedComparison
        ``tied_best`` marks the points whose paired interval against the best includes 0
        (the best itself included); ``prob_best`` is the share of replicates in which the point
        has the largest replicate among the eligible points.

    Notes
    -----
    The best point is the one whose estimate came out largest, so its estimate is optimistic
    and every rival's gap to it looks larger than it is: percentile intervals of
    ``reps[i] - reps[best]`` cover the true gap ``value_i - value_best`` too rarely (0.84-0.88
    instead of 0.95 for 10 points of independent noise). The intervals ``diff_best_low``,
    ``diff_best_high`` are therefore shifted up by the bootstrap optimism of the winner,
    ``mean_b (reps[j_b, b] - mean(reps[j_b]))`` with ``j_b`` the best point of replicate ``b``
    (``optimism``; as :func:`selection_bias`, centred on each point's replicate mean), which
    restores 0.95-0.96 on the same worlds; ``diff_best`` is shifted with them (the gap to the
    best estimate less its optimism), and stays 0 for the best point itself.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> page = rng.normal(0, 1.0, 500)                       # a shared page effect
    >>> reps = np.stack([page + 0.0, page + 0.01, page + 1.0])
    >>> pc = paired_comparison(np.array([0.0, 0.01, 1.0]), reps, 0.0, page)
    >>> pc.best, pc.columns["tied_best"].tolist()
    (2, [False, False, True])
    """
    v = np.asarray(values, dtype=np.float64)
    R = np.asarray(reps, dtype=np.float64).reshape(len(v), -1)
    ok = np.isfinite(v) if eligible is None else np.asarray(eligible, bool) & np.isfinite(v)
    n, B = R.shape
    cols: dict[str, NDArray] = {name: np.full(n, np.nan) for name in PAIRED_COLUMNS}
    cols["tied_best"] = np.zeros(n, dtype=bool)
    cols["diff_logged"] = v - logged_value
    base = np.asarray(logged_reps, dtype=np.float64).reshape(-1)
    if B and len(base) == B:
        cols["diff_logged_low"], cols["diff_logged_high"] = _interval(R - base[None, :], level)
    if not ok.any():
        return PairedComparison(None, cols, float("nan"))
    idx = np.flatnonzero(ok)
    best = int(idx[np.argmax(v[idx])])
    cols["diff_best"] = v - v[best]
    if B == 0:
        return PairedComparison(best, cols, float("nan"))
    lo, hi = _interval(R - R[best][None, :], level)
    shift = _optimism(R[idx])
    # the best estimate is optimistic: its rivals' gaps to it are smaller than they look
    lo, hi = lo + shift, hi + shift
    cols["diff_best"] = cols["diff_best"] + shift
    cols["diff_best"][best] = lo[best] = hi[best] = 0.0
    cols["diff_best_low"], cols["diff_best_high"] = lo, hi
    cols["tied_best"] = ok & (hi >= 0)
    sub = np.where(np.isfinite(R[idx]), R[idx], -np.inf)
    winners = idx[np.argmax(sub, axis=0)]
    cols["prob_best"] = np.where(ok, np.bincount(winners, minlength=n)[:n] / B, np.nan)
    return PairedComparison(best, cols, selection_bias(v[idx], R[idx]), shift)


def clear_front_mask(
    reps: FloatArray, diversity: FloatArray, churn: FloatArray, level: float = 0.95,
    eligible: NDArray[np.bool_] | None = None,
) -> NDArray[np.bool_]:
    """Points that no other point *clearly* dominates on paired differences.

    Point ``j`` clearly dominates ``i`` when it is at least as diverse and at most as churny
    (exact properties of the decisions on the logged pages) and the paired interval of
    ``take[j] - take[i]`` lies wholly above 0 (its lower ``(1 - level) / 2`` quantile over the
    replicates ``reps`` (n, B) is positive). A take fraction that the data cannot separate never
    removes a point from the front. Points not ``eligible`` (default: finite replicates) are
    neither on the front nor dominate. Sweeps mark their paired front with
    :func:`slate.tune.front`, which also removes a point that another point beats on the exact
    diversity or churn while no worse on the take estimate.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> page = rng.normal(0, 1, 400)
    >>> reps = np.stack([page + 0.5, page + 0.49, page + 0.0])     # 0 ~ 1 >> 2
    >>> clear_front_mask(reps, np.array([0.2, 0.3, 0.1]), np.array([0.1, 0.1, 0.1])).tolist()
    [True, True, False]
    """
    R = np.asarray(reps, dtype=np.float64)
    d = np.asarray(diversity, dtype=np.float64)
    c = np.asarray(churn, dtype=np.float64)
    ok: NDArray[np.bool_] = np.asarray(np.isfinite(R).all(axis=1), dtype=bool)
    if eligible is not None:
        ok = ok & np.asarray(eligible, dtype=bool)
    mask: NDArray[np.bool_] = ok.copy()
    if R.shape[1] < 2:
        return mask
    q = (1.0 - level) / 2
    for i in np.flatnonzero(ok):
        cover = ok & (d >= d[i]) & (c <= c[i])
        cover[i] = False
        if not cover.any():
            continue
        lows = np.quantile(R[cover] - R[i][None, :], q, axis=1)
        if (lows > 0).any():
            mask[i] = False
    return mask
