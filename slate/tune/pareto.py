"""Pareto front over (take fraction up, diversity up, churn down) and the recommended setting.

A point *dominates* another when it is at least as good on all three objectives and strictly
better on one. The *front* is the set of points no other point dominates (duplicates of a front
point are all on the front).

Only the take fraction is estimated with an interval (diversity and churn are exact properties
of the decisions on the logged pages). A point off the front is marked **near the front** when
it is close to the front and no point beats it with confidence: every point that is at least as
diverse and at most as churny is better in estimated take fraction by at most this point's
standard error (taken from its interval, as if normal at 95%), and none has its whole
take-fraction interval above this point's interval. With wide intervals, "no point beats it with
confidence" alone holds for nearly every point; the standard-error margin keeps the mark for the
points that are off the front by noise only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from slate.tune.config import Constraints

__all__ = ["Recommendation", "near_front_mask", "pareto_mask", "recommend"]

BoolArray = NDArray[np.bool_]

_CHUNK = 2048  # points compared at once by near_front_mask (bounds its memory)


def _columns(*arrays: ArrayLike) -> list[NDArray[np.float64]]:
    cols = [np.asarray(a, dtype=np.float64).reshape(-1) for a in arrays]
    n = len(cols[0])
    if any(len(c) != n for c in cols):
        raise ValueError(f"The objectives must have one value per point; got lengths {[len(c) for c in cols]}.")
    if any(np.isnan(c).any() for c in cols):
        raise ValueError("The objectives must not be NaN (a point without an estimate cannot be ranked).")
    return cols


def pareto_mask(take: ArrayLike, diversity: ArrayLike, churn: ArrayLike) -> BoolArray:
    """Which points are on the Pareto front (take up, diversity up, churn down).

    Points are visited best take fraction first (ties: more diverse, then less churn); a point
    is dominated exactly when a front point visited before it dominates it, so each point is
    compared with the current front only.

    Examples
    --------
    >>> pareto_mask([0.10, 0.09, 0.08, 0.10], [0.2, 0.3, 0.25, 0.2], [0.5, 0.1, 0.2, 0.6]).tolist()
    [True, True, False, False]
    """
    t, d, c = _columns(take, diversity, churn)
    order = np.lexsort((c, -d, -t))
    front_t: list[float] = []
    front_d: list[float] = []
    front_c: list[float] = []
    mask = np.zeros(len(t), dtype=bool)
    for i in order:
        if front_t:
            ft, fd, fc = np.array(front_t), np.array(front_d), np.array(front_c)
            weakly = (ft >= t[i]) & (fd >= d[i]) & (fc <= c[i])
            strictly = (ft > t[i]) | (fd > d[i]) | (fc < c[i])
            if (weakly & strictly).any():
                continue
        mask[i] = True
        front_t.append(float(t[i]))
        front_d.append(float(d[i]))
        front_c.append(float(c[i]))
    return mask


def near_front_mask(
    take: ArrayLike,
    low: ArrayLike,
    high: ArrayLike,
    diversity: ArrayLike,
    churn: ArrayLike,
    front: ArrayLike | None = None,
) -> BoolArray:
    """Points off the front that no point beats with confidence (see the module docstring).

    Examples
    --------
    >>> take, low, high = [0.10, 0.095, 0.05], [0.09, 0.085, 0.04], [0.11, 0.105, 0.06]
    >>> near_front_mask(take, low, high, [0.2, 0.2, 0.2], [0.1, 0.1, 0.1]).tolist()
    [False, True, False]
    """
    t, lo, hi, d, c = _columns(take, low, high, diversity, churn)
    on_front = pareto_mask(t, d, c) if front is None else np.asarray(front, dtype=bool)
    beaten = np.zeros(len(t), dtype=bool)
    far = np.zeros(len(t), dtype=bool)
    se = (hi - lo) / (2.0 * 1.959964)
    for start in range(0, len(t), _CHUNK):
        p = slice(start, start + _CHUNK)
        # covers[q, p]: q at least as diverse and at most as churny as p
        covers = (d[:, None] >= d[None, p]) & (c[:, None] <= c[None, p])
        # beats[q, p]: and q's interval wholly above p's
        beaten[p] = (covers & (lo[:, None] > hi[None, p])).any(axis=0)
        # far: some covering point is better by more than p's standard error
        far[p] = (covers & (t[:, None] - t[None, p] > se[None, p])).any(axis=0)
    return ~on_front & ~beaten & ~far


@dataclass(frozen=True)
class Recommendation:
    """The recommended setting and why.

    Attributes
    ----------
    index : int or None
        Row of the results table (None when no point meets the constraints).
    n_feasible : int
        Points meeting the constraints.
    reason : str
    """

    index: int | None
    n_feasible: int
    reason: str


def recommend(
    columns: Mapping[str, ArrayLike],
    constraints: Constraints | None = None,
    *,
    baseline: float | None = None,
) -> Recommendation:
    """The point with the best estimated take fraction among those meeting the constraints.

    Ties go to the more diverse, then the less churny point, then the first one. Constraints
    apply to point estimates: ``max_churn`` and ``min_diversity`` to the (exact) churn and
    diversity of the decisions, ``min_take_fraction`` to the estimate.

    **Honest by default.** When ``columns`` has ``weights_exploded``, a point whose importance
    weights exploded is not recommended; when it has ``take_fraction_low`` and a ``baseline``
    (the logging policy's take fraction) is given, a point whose interval does not lie above the
    baseline is not recommended: "no point beats what you run now" is then the answer. Set
    ``Constraints(allow_unproven=True)`` to recommend the best point anyway.

    Examples
    --------
    >>> from slate.tune.config import Constraints
    >>> cols = {"take_fraction": [0.12, 0.11, 0.10], "diversity": [0.2, 0.3, 0.4],
    ...         "churn": [0.30, 0.08, 0.02]}
    >>> recommend(cols, Constraints(max_churn=0.1)).index
    1
    """
    cons = constraints or Constraints()
    t, d, c = _columns(columns["take_fraction"], columns["diversity"], columns["churn"])
    ok = np.ones(len(t), dtype=bool)
    parts = []
    if cons.max_churn is not None:
        ok &= c <= cons.max_churn
        parts.append(f"churn <= {cons.max_churn:g}")
    if cons.min_diversity is not None:
        ok &= d >= cons.min_diversity
        parts.append(f"diversity >= {cons.min_diversity:g}")
    if cons.min_take_fraction is not None:
        ok &= t >= cons.min_take_fraction
        parts.append(f"take fraction >= {cons.min_take_fraction:g}")
    where = " and ".join(parts) if parts else "no constraints"
    n_ok = int(ok.sum())
    if n_ok == 0:
        return Recommendation(None, 0, f"no point meets {where}")
    if not cons.allow_unproven:
        proven = ok.copy()
        dropped = []
        if "weights_exploded" in columns:
            exploded = np.asarray(columns["weights_exploded"], dtype=bool)
            if (ok & exploded).any():
                dropped.append(f"{int((ok & exploded).sum())} with exploded weights")
            proven &= ~exploded
        if baseline is not None and "take_fraction_low" in columns:
            low = np.asarray(columns["take_fraction_low"], dtype=np.float64)
            unproven = proven & ~(low > baseline)
            if unproven.any():
                dropped.append(f"{int(unproven.sum())} whose interval does not lie above the logging "
                               f"policy's {baseline:.4g}")
            proven &= low > baseline
        if not proven.any():
            return Recommendation(
                None, n_ok,
                f"no point beats what you run now: of the {n_ok} points meeting {where}, "
                f"{'; '.join(dropped)} (allow_unproven to recommend one anyway)")
        ok = proven
        n_ok = int(ok.sum())
        if dropped:
            where += f", beating the logging policy with trustworthy weights ({'; '.join(dropped)} left out)"
    idx = np.flatnonzero(ok)
    order = np.lexsort((idx, c[idx], -d[idx], -t[idx]))
    best = int(idx[order[0]])
    return Recommendation(
        best, n_ok, f"best estimated take fraction among the {n_ok} points meeting {where}"
    )
