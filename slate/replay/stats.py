"""Statistics shared by the estimators: ratio of cluster sums, its standard error, the seeded
cluster bootstrap, and weight diagnostics.

Every estimator here is a ratio of sums over *pages* (clusters): ``value = sum_p U_p / sum_p V_p``
with per-page sums ``U_p``, ``V_p`` (for IPS ``U_p = sum w r`` and ``V_p`` the number of rows;
for SNIPS ``V_p = sum w``). Rows of one page share a member and a moment, so pages, not rows,
are the independent units: the standard error is the cluster-robust (linearised) one and the
bootstrap resamples pages.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import stats as sps

__all__ = [
    "ESS_FRACTION",
    "MIN_ESS",
    "TOP_SHARE",
    "WeightDiagnostics",
    "bootstrap_ratio",
    "poisson_binomial_at",
    "poisson_binomial_pmf",
    "ratio_se",
    "top_sum",
    "weight_diagnostics",
]

ESS_FRACTION = 0.01
"""Weights "explode" when the effective sample size is below this fraction of the rows ..."""
MIN_ESS = 10.0
"""... or below this many rows ..."""
TOP_SHARE = 0.5
"""... or when the top 1% of rows carry more than this share of the total weight."""

_BOOTSTRAP_CELLS = 4_000_000  # resampled page indices held in memory at once


def ratio_se(U: NDArray[np.float64], V: NDArray[np.float64]) -> float:
    """Cluster-robust standard error of ``sum(U) / sum(V)`` (delta method, ``P/(P-1)`` factor).

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([0.0, 1.0, 1.0, 0.0])
    >>> bool(np.isclose(ratio_se(x, np.ones(4)), x.std(ddof=1) / 2))
    True
    """
    P = len(U)
    total = float(V.sum())
    if P < 2 or total == 0.0:
        return float("nan")
    theta = float(U.sum()) / total
    resid = U - theta * V
    return float(np.sqrt(P / (P - 1) * float(resid @ resid)) / abs(total))


def bootstrap_ratio(
    U: NDArray[np.float64], V: NDArray[np.float64], n_bootstrap: int, seed: int | None
) -> NDArray[np.float64]:
    """``n_bootstrap`` replicates of ``sum(U)/sum(V)`` over pages resampled with replacement.

    Seeded: the same seed gives the same replicates. Replicates whose denominator is 0 are NaN.

    Examples
    --------
    >>> import numpy as np
    >>> reps = bootstrap_ratio(np.arange(10.0), np.ones(10), 200, seed=1)
    >>> reps.shape, bool(np.all(reps == bootstrap_ratio(np.arange(10.0), np.ones(10), 200, seed=1)))
    ((200,), True)
    """
    P = len(U)
    out = np.full(n_bootstrap, np.nan)
    if P == 0 or n_bootstrap == 0:
        return out
    rng = np.random.default_rng(seed)
    chunk = max(1, _BOOTSTRAP_CELLS // P)
    for start in range(0, n_bootstrap, chunk):
        b = min(chunk, n_bootstrap - start)
        idx = rng.integers(0, P, size=(b, P))
        num = U[idx].sum(axis=1)
        den = V[idx].sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start : start + b] = np.where(den != 0, num / np.where(den != 0, den, 1.0), np.nan)
    return out


def interval_from(
    value: float, se: float, replicates: NDArray[np.float64], level: float
) -> tuple[tuple[float, float], str]:
    """Percentile bootstrap interval, or the normal one ``value ± z se`` without replicates."""
    alpha = 1.0 - level
    good = replicates[np.isfinite(replicates)]
    if len(good) >= 2:
        lo, hi = np.quantile(good, [alpha / 2, 1 - alpha / 2])
        return (float(lo), float(hi)), "bootstrap"
    z = float(sps.norm.ppf(1 - alpha / 2))
    return (value - z * se, value + z * se), "normal"


@dataclass(frozen=True)
class WeightDiagnostics:
    """How well-behaved the importance weights are.

    Attributes
    ----------
    ess : float
        Effective sample size ``(sum w)^2 / sum w^2``.
    max_weight : float
    top1_share : float
        Share of the total weight carried by the largest 1% of the weights.
    exploded : bool
        ``ess < max(MIN_ESS, ESS_FRACTION * n)`` or ``top1_share > TOP_SHARE``.
    """

    ess: float
    max_weight: float
    top1_share: float
    exploded: bool


def top_sum(a: NDArray[np.float64], k: int) -> float:
    """Exact sum of the ``k`` largest entries of ``a``, fast with many ties (weights often take
    a few values; ``np.partition`` degrades on those).

    Only the entries above a threshold guessed from a strided sample are sorted.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.r_[np.zeros(500), np.full(300, 10.0), [50.0, 70.0]]
    >>> top_sum(a, 8), float(np.sort(a)[-8:].sum())
    (180.0, 180.0)
    """
    n = len(a)
    if k >= n:
        return float(a.sum())
    if k <= 0:
        return 0.0
    sample = a[:: max(1, n // 20_000)]
    guess = float(np.quantile(sample, max(0.0, 1.0 - 4.0 * k / n)))
    sel = a[a >= guess]
    if len(sel) < k:  # the guess was too high
        sel = a
    values, counts = np.unique(sel, return_counts=True)
    values, counts = values[::-1], counts[::-1]
    cum = np.cumsum(counts)
    j = int(np.searchsorted(cum, k))
    before = int(cum[j - 1]) if j else 0
    return float((values[:j] * counts[:j]).sum() + (k - before) * values[j])


def weight_diagnostics(w: NDArray[np.float64] | None, n_rows: int) -> WeightDiagnostics:
    """Diagnostics of the weights ``w`` (None: no weighting, e.g. the direct method).

    Examples
    --------
    >>> import numpy as np
    >>> d = weight_diagnostics(np.r_[np.zeros(990), np.full(10, 100.0)], 1000)
    >>> d.ess, d.top1_share, d.exploded
    (10.0, 1.0, True)
    """
    if w is None or len(w) == 0:
        return WeightDiagnostics(float(n_rows), 1.0 if n_rows else 0.0, 0.0, False)
    total = float(w.sum())
    sq = float(w @ w)
    ess = total * total / sq if sq > 0 else 0.0
    a = np.abs(w)  # pseudoinverse weights may be negative
    abs_total = float(a.sum())
    k = max(1, int(np.ceil(0.01 * len(a))))
    top = top_sum(a, k)
    share = top / abs_total if abs_total > 0 else 0.0
    exploded = ess < max(MIN_ESS, ESS_FRACTION * len(w)) or share > TOP_SHARE
    # an infinite or NaN weight (a propensity that underflows its inverse) makes ess and share
    # NaN, which compare False above: such weights have exploded by definition
    exploded = exploded or not (np.isfinite(a).all() and np.isfinite(ess) and np.isfinite(share))
    return WeightDiagnostics(ess, float(a.max()), share, bool(exploded))


def poisson_binomial_pmf(p: NDArray[np.float64]) -> NDArray[np.float64]:
    """``(n, M + 1)``: per row, the distribution of the sum of independent Bernoulli(``p[i, m]``)
    over ``m`` (a dynamic programme over the columns, vectorised over rows).

    Examples
    --------
    >>> import numpy as np
    >>> poisson_binomial_pmf(np.array([[0.5, 0.5]])).tolist()
    [[0.25, 0.5, 0.25]]
    """
    n, M = p.shape
    pmf = np.zeros((n, M + 1))
    pmf[:, 0] = 1.0
    for m in range(M):
        pm = p[:, m:m + 1]
        shifted = np.zeros_like(pmf)
        shifted[:, 1:] = pmf[:, :-1]
        pmf = pmf * (1.0 - pm) + shifted * pm
    return pmf


def poisson_binomial_at(p: NDArray[np.float64], s: NDArray[np.int64]) -> NDArray[np.float64]:
    """Probability that the sum of independent Bernoulli(``p[i, m]``) over ``m`` equals ``s[i]``,
    per row (:func:`poisson_binomial_pmf` read at ``s``).

    Examples
    --------
    >>> import numpy as np
    >>> poisson_binomial_at(np.array([[0.5, 0.5], [0.2, 0.0]]), np.array([1, 0])).tolist()
    [0.5, 0.8]
    """
    return poisson_binomial_pmf(p)[np.arange(p.shape[0]), s]
