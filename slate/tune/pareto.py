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

**The paired front** (:func:`front`, the default of a sweep with paired bootstrap replicates)
removes a point only when another point is *clearly* better: ``B`` clearly dominates ``A`` when
``B`` is at least as good on all three objectives (estimates: take fraction ``>=``, diversity
``>=``, churn ``<=``) and clearly better on one of them. For the take fraction "clearly" means
the paired interval of ``take[B] - take[A]`` (the same bootstrap replicates for both, see
:mod:`slate.tune.paired`) lies wholly above 0; diversity and churn are exact, deterministic
properties of the decisions on the logged pages (no replicates are kept for them), so for them
any strict difference is clear. The user's constraints filter first: a point breaking them is
neither on the front nor removes another point from it. Every point of the plain front is on
the paired front; the paired front adds the points whose only better rivals are better in take
fraction by noise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from slate.tune.config import Constraints
from slate.tune.paired import RULES, InvalidRuleError, _interval, paired_comparison

__all__ = ["Recommendation", "feasible_mask", "front", "near_front_mask", "pareto_mask", "recommend"]

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


def feasible_mask(
    take: ArrayLike, diversity: ArrayLike, churn: ArrayLike, constraints: Constraints | None = None
) -> tuple[BoolArray, str]:
    """Which points meet ``constraints`` (point estimates), and the constraints in words.

    Examples
    --------
    >>> from slate.tune.config import Constraints
    >>> ok, where = feasible_mask([0.1, 0.2], [0.3, 0.3], [0.05, 0.2], Constraints(max_churn=0.1))
    >>> ok.tolist(), where
    ([True, False], 'churn <= 0.1')
    """
    cons = constraints or Constraints()
    t, d, c = _columns(take, diversity, churn)
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
    return ok, " and ".join(parts) if parts else "no constraints"


def front(
    take: ArrayLike,
    diversity: ArrayLike,
    churn: ArrayLike,
    *,
    replicates: ArrayLike | None = None,
    paired: bool | None = None,
    constraints: Constraints | None = None,
    level: float = 0.95,
) -> BoolArray:
    """The front over (take up, diversity up, churn down) of the points meeting ``constraints``.

    With ``paired`` (the default when ``replicates`` (n_points, B), paired bootstrap replicates
    of the take fraction, are given) a point is removed only when another point *clearly*
    dominates it (see the module docstring): at least as good on all three estimates, and
    clearly better on one -- on the take fraction, the ``level`` paired interval of the
    difference lies above 0 (replicates); on diversity or churn, any strict difference (exact,
    deterministic values). A pair in which either point has no finite replicates falls back to
    the plain comparison of estimates for the take fraction. With ``paired=False`` this is
    :func:`pareto_mask` of the feasible points. Points breaking the constraints are never on the
    front and remove no point.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> page = rng.normal(0, 1, 400)                                    # shared page effect
    >>> noise = rng.normal(0, 0.05, (4, 400))                           # what is not shared
    >>> reps = np.stack([page + 0.5, page + 0.49, page + 0.0, page + 0.5]) + noise
    >>> take, div, churn = [0.5, 0.49, 0.0, 0.5], [0.2, 0.2, 0.2, 0.2], [0.1, 0.1, 0.1, 0.3]
    >>> front(take, div, churn).tolist()                                # plain
    [True, False, False, False]
    >>> front(take, div, churn, replicates=reps).tolist()               # 1 ~ 0, 2 << 0
    [True, True, False, False]
    """
    t, d, c = _columns(take, diversity, churn)
    ok, _ = feasible_mask(t, d, c, constraints)
    R = None if replicates is None else np.asarray(replicates, dtype=np.float64).reshape(len(t), -1)
    if paired is None:
        paired = R is not None and R.shape[1] >= 2
    mask = np.zeros(len(t), dtype=bool)
    if not paired:
        if ok.any():
            mask[ok] = pareto_mask(t[ok], d[ok], c[ok])
        return mask
    if R is None or R.shape[1] < 2:
        raise ValueError("A paired front needs paired bootstrap replicates (n_points, B >= 2).")
    has: BoolArray = np.asarray(np.isfinite(R).all(axis=1), dtype=bool)
    q = (1.0 - level) / 2
    for i in np.flatnonzero(ok):
        cover = ok & (t >= t[i]) & (d >= d[i]) & (c <= c[i])
        cover[i] = False
        if (cover & ((d > d[i]) | (c < c[i]))).any():
            continue  # clearly better on an exact objective, no worse on the others
        both = has & bool(has[i])
        rival = cover & ((d == d[i]) & (c == c[i]))
        if (t[rival & ~both] > t[i]).any():
            continue
        rival &= both
        if rival.any() and (np.quantile(R[rival] - R[i][None, :], q, axis=1) > 0).any():
            continue
        mask[i] = True
    return mask


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
    rule : {"best_estimate", "lower_bound", "simplest"}
        How the point was chosen among the eligible ones.
    tied : tuple of int
        Eligible rows that cannot be told apart from the best eligible one (its paired
        interval against them includes 0), the best included; empty without replicates.
    prob_best : float
        Bootstrap probability that the chosen point is the best eligible one.
    selection_bias : float
        Bootstrap optimism of the best eligible estimate (subtract it from the chosen point's
        estimate when the chosen point is the best one, see :mod:`slate.tune.paired`).
    indistinguishable : tuple of int
        The *other* eligible rows that cannot be told apart from the chosen one: the 95% paired
        interval of their take fraction minus the chosen point's includes 0 (the chosen row
        itself is not listed); empty without replicates. Differs from ``tied`` when the rule
        chooses a point other than the best.
    """

    index: int | None
    n_feasible: int
    reason: str
    rule: str = "best_estimate"
    tied: tuple[int, ...] = ()
    prob_best: float = float("nan")
    selection_bias: float = float("nan")
    indistinguishable: tuple[int, ...] = ()


def recommend(
    columns: Mapping[str, ArrayLike],
    constraints: Constraints | None = None,
    *,
    baseline: float | None = None,
    rule: str = "best_estimate",
    replicates: ArrayLike | None = None,
) -> Recommendation:
    """The point with the best estimated take fraction among those meeting the constraints.

    Ties go to the more diverse, then the less churny point, then the first one. Constraints
    apply to point estimates: ``max_churn`` and ``min_diversity`` to the (exact) churn and
    diversity of the decisions, ``min_take_fraction`` to the estimate.

    **Honest by default.** When ``columns`` has ``weights_exploded``, a point whose importance
    weights exploded is not recommended; when it has ``take_fraction_low`` and a ``baseline``
    (the logging policy's take fraction) is given, a point whose interval does not lie above the
    baseline is not recommended: "no point beats what you run now" is then the answer. Set
    ``Constraints(allow_unproven=True)`` to recommend the best point anyway. With
    ``diff_logged_low`` (the paired lower bound of the difference to the logging policy,
    :mod:`slate.tune.paired`) that bound must be above 0 instead.

    **Rule.** ``"best_estimate"`` takes the best estimate; ``"lower_bound"`` the best paired
    lower bound against the logging policy (``diff_logged_low``, else ``take_fraction_low``);
    ``"simplest"`` the point with the fewest non-zero weights, then the smallest
    ``w_diversity + w_churn``, among those that ``replicates`` (n_points, B; paired bootstrap
    replicates) cannot tell apart from the best eligible estimate.

    Examples
    --------
    >>> from slate.tune.config import Constraints
    >>> cols = {"take_fraction": [0.12, 0.11, 0.10], "diversity": [0.2, 0.3, 0.4],
    ...         "churn": [0.30, 0.08, 0.02]}
    >>> recommend(cols, Constraints(max_churn=0.1)).index
    1
    """
    if rule not in RULES:
        raise InvalidRuleError(f"The 'rule' parameter must be one of {', '.join(RULES)}; got {rule!r}.")
    cons = constraints or Constraints()
    t, d, c = _columns(columns["take_fraction"], columns["diversity"], columns["churn"])
    ok, where = feasible_mask(t, d, c, cons)
    n_ok = int(ok.sum())
    if n_ok == 0:
        return Recommendation(None, 0, f"no point meets {where}", rule=rule)
    if not cons.allow_unproven:
        proven = ok.copy()
        dropped = []
        if "weights_exploded" in columns:
            exploded = np.asarray(columns["weights_exploded"], dtype=bool)
            if (ok & exploded).any():
                dropped.append(f"{int((ok & exploded).sum())} with exploded weights")
            proven &= ~exploded
        paired_low = _paired_low(columns)
        if paired_low is not None:
            unproven = proven & ~(paired_low > 0)
            if unproven.any():
                dropped.append(f"{int(unproven.sum())} whose paired interval against the logging "
                               "policy does not lie above 0")
            proven &= paired_low > 0
        elif baseline is not None and "take_fraction_low" in columns:
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
                f"{'; '.join(dropped)} (allow_unproven to recommend one anyway)", rule=rule)
        ok = proven
        n_ok = int(ok.sum())
        if dropped:
            where += f", beating the logging policy with trustworthy weights ({'; '.join(dropped)} left out)"
    idx = np.flatnonzero(ok)
    order = np.lexsort((idx, c[idx], -d[idx], -t[idx]))
    best = int(idx[order[0]])
    tied: tuple[int, ...] = ()
    prob = bias = float("nan")
    optimism = 0.0
    R = None if replicates is None else np.asarray(replicates, dtype=np.float64).reshape(len(t), -1)
    if R is not None and R.shape[1] and np.isfinite(R[idx]).all():
        pc = paired_comparison(t, R, 0.0, np.zeros(R.shape[1]), eligible=ok)
        tied = tuple(int(i) for i in np.flatnonzero(pc.columns["tied_best"]))
        prob_col, bias, optimism = pc.columns["prob_best"], pc.selection_bias, pc.optimism
    else:
        prob_col = None
    chosen, how = _apply_rule(rule, columns, best, idx, t, tied)
    same: tuple[int, ...] = ()
    if prob_col is not None and R is not None:
        prob = float(prob_col[chosen])
        same = _indistinguishable(R, ok, chosen, shift=optimism if chosen == best else 0.0)
    ties = (f"; {len(tied)} of them cannot be told apart from the best on paired differences"
            if tied else "")
    return Recommendation(
        chosen, n_ok, f"{how} among the {n_ok} points meeting {where}{ties}",
        rule=rule, tied=tied, prob_best=prob, selection_bias=bias, indistinguishable=same,
    )


def _indistinguishable(R: NDArray[np.float64], eligible: BoolArray, chosen: int, level: float = 0.95,
                       shift: float = 0.0) -> tuple[int, ...]:
    """Eligible rows other than ``chosen`` whose paired interval against it includes 0 (the
    interval shifted up by ``shift``: the optimism of the chosen estimate when it is the best)."""
    others = eligible & np.isfinite(R).all(axis=1)
    others[chosen] = False
    idx = np.flatnonzero(others)
    if not len(idx):
        return ()
    lo, hi = _interval(R[idx] - R[chosen][None, :], level)
    lo, hi = lo + shift, hi + shift
    return tuple(int(j) for j in idx[(lo <= 0) & (hi >= 0)])


def _paired_low(columns: Mapping[str, ArrayLike]) -> NDArray[np.float64] | None:
    if "diff_logged_low" not in columns:
        return None
    low = np.asarray(columns["diff_logged_low"], dtype=np.float64)
    return low if np.isfinite(low).all() else None


def _apply_rule(rule: str, columns: Mapping[str, ArrayLike], best: int, idx: NDArray[np.int64],
                t: NDArray[np.float64], tied: tuple[int, ...]) -> tuple[int, str]:
    """The chosen row and a phrase saying how."""
    if rule == "lower_bound":
        low = _paired_low(columns)
        name = "paired lower bound against the logging policy"
        if low is None and "take_fraction_low" in columns:
            low, name = np.asarray(columns["take_fraction_low"], dtype=np.float64), "lower bound"
        if low is None:
            return best, "best estimated take fraction (no lower bounds)"
        return int(idx[np.lexsort((idx, -t[idx], -low[idx]))[0]]), f"rule lower_bound: best {name}"
    if rule == "simplest":
        if not tied or "w_diversity" not in columns or "w_churn" not in columns:
            return best, "best estimated take fraction (no paired replicates to find ties)"
        cand = np.asarray(tied, dtype=np.int64)
        wd = np.asarray(columns["w_diversity"], dtype=np.float64)[cand]
        wc = np.asarray(columns["w_churn"], dtype=np.float64)[cand]
        nonzero = (wd != 0).astype(int) + (wc != 0).astype(int)
        pick = int(cand[np.lexsort((cand, -t[cand], wd + wc, nonzero))[0]])
        return pick, "rule simplest: smallest weights among the points tied with the best"
    return best, "best estimated take fraction"
