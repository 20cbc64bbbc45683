"""Off-policy estimators of a target policy's take fraction from impression logs.

All estimators share one interface (:class:`Estimator`) and one registry, with long names and
short aliases (``"InverseProbabilityWeighting"`` / ``"ips"``). Each one reduces the log to
per-page sums ``U_p``, ``V_p`` whose ratio ``sum U / sum V`` is the estimate (see
:mod:`slate.replay.stats`), so standard errors and bootstrap intervals are computed the same way
for all of them, pages being the independent units.

The value estimated is the *take fraction*: the expected reward (quality play) per
(page impression, title) under the target policy. ``Estimate.page_value`` scales it to quality
plays per page.

Assumptions, per estimator:

* ``replay``, ``ips``, ``snips``, ``dm``, ``dr`` treat each title on its own: a title's reward
  depends on its own image only (no interaction between the titles of a page). This is the
  *per-title independent* whole-page estimator.
* ``neighbourhood`` lets a title's reward depend on the images of its layout neighbours too; it
  weights each row by the product of the propensity ratios of the title and its neighbours, which
  requires the logging policy to choose images independently across titles (the per-title
  propensities then multiply), or the decision log's exploration columns, which give the exact
  joint propensity under capped exploration (:mod:`slate.replay.joint`).
* ``page-aware`` (marginalised neighbourhood, Saito & Joachims 2022) lets a title's reward depend
  on its neighbours only through how many of them show an image of its visual group (``groups``);
  it weights by the ratio of the distribution of (own image, that count), which needs full logging
  distributions and independent logging across titles, and has much smaller weights.
* ``page`` (exact whole-page match) lets a title's reward depend on the whole page.
* ``pi`` (pseudoinverse) uses only the page's total reward and assumes it is additive over titles,
  with independent logging across titles.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, cast, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import sparse
from scipy import stats as sps

from slate.errors import UnknownEstimatorError
from slate.limits import check_limit
from slate.logs.log import ImpressionLog
from slate.registry import Registry
from slate.replay._exact import seed_key
from slate.replay.clusters import DEFAULT_N_BUCKETS, check_cluster, check_n_buckets, page_buckets
from slate.replay.policy import ActionDistribution, InvalidReplayInputError
from slate.replay.reward_model import TakeRateFit
from slate.replay.stats import (
    _BOOTSTRAP_CELLS,
    bootstrap_ratio,
    interval_from,
    poisson_binomial_at,
    ratio_se,
    weight_diagnostics,
)

if TYPE_CHECKING:
    from slate.replay.joint import ExplorationColumns

__all__ = [
    "Contributions",
    "DirectMethod",
    "DoublyRobust",
    "Estimate",
    "Estimator",
    "InverseProbabilityWeighting",
    "LayoutNeighbourhood",
    "LinearModelTerms",
    "MarginalizedNeighbourhood",
    "PerTitleEstimates",
    "PseudoInverse",
    "ReplayData",
    "ReplayMethod",
    "SelfNormalizedIPS",
    "UnknownEstimatorError",
    "WholePageMatch",
    "available_estimators",
    "get_estimator",
    "no_match_checked",
    "register_estimator",
]


# ====================================================================== data
@dataclass(frozen=True, eq=False)
class ReplayData:
    """A log and a target policy on it (and, for DM/DR, a reward model), ready to estimate.

    Build it with :meth:`build`, which keeps only the rows the target decides.

    Attributes
    ----------
    log : ImpressionLog
    target : ActionDistribution
    reward_model : ndarray (n, k_max) or None
        Predicted reward of every candidate on every row.
    model_fit : TakeRateFit or None
        The fitted take-rate model behind ``reward_model`` when it can be refitted: DM's and
        DR's standard errors and intervals then include the model's estimation error.
    fit_rows : ndarray (n,) or None
        Row of ``model_fit.log`` of every row (the model is fitted on every row of the log,
        decided by the target or not).
    cluster_by : {"page", "member"}
        The independent units of the standard errors and bootstrap: pages, or members (hash
        buckets of member ids, :func:`slate.replay.clusters.member_buckets`) when one member's
        pages are correlated, e.g. under sticky exploration.
    page_cluster, fit_page_cluster : ndarray or None
        With ``cluster_by="member"``: the cluster code (``0..C-1``) of every page of ``log`` and of
        ``model_fit.log``.
    """

    log: ImpressionLog
    target: ActionDistribution
    reward_model: NDArray[np.float64] | None = None
    model_fit: TakeRateFit | None = None
    fit_rows: NDArray[np.int64] | None = None
    cluster_by: str = "page"
    n_buckets: int = DEFAULT_N_BUCKETS
    page_cluster: NDArray[np.int64] | None = None
    fit_page_cluster: NDArray[np.int64] | None = None

    @classmethod
    def build(
        cls, log: ImpressionLog, target: ActionDistribution,
        reward_model: NDArray[np.float64] | TakeRateFit | None = None,
        *, cluster: str = "page", n_buckets: int = DEFAULT_N_BUCKETS,
    ) -> ReplayData:
        """Check that the target describes the log; drop rows without a decision.

        ``reward_model`` is an ``(n, k_max)`` array of predictions (held fixed by DM and DR) or
        a :class:`~slate.replay.reward_model.TakeRateFit` of ``log`` (refitted by their
        bootstrap). ``cluster`` (``"page"`` or ``"member"``) and ``n_buckets`` choose the
        independent units of the standard errors (see the class docstring).
        """
        cluster = check_cluster(cluster, "ReplayData.build")
        n_buckets = check_n_buckets(n_buckets, "ReplayData.build")
        target.check_log(log)
        fit = None
        if isinstance(reward_model, TakeRateFit):
            fit = reward_model
            if fit.log.n_rows != log.n_rows or not np.array_equal(fit.log.page_id, log.page_id):
                raise InvalidReplayInputError(
                    "The 'reward_model' TakeRateFit must be fitted on the log being evaluated; "
                    f"got one of {fit.log.n_rows} rows for a log of {log.n_rows}."
                )
            reward_model = fit.predict()
        fit_rows = np.arange(log.n_rows, dtype=np.int64) if fit is not None else None
        if target.decided is not None and not target.decided.all():
            keep = np.flatnonzero(target.decided)
            log = log.take(keep)
            target = ActionDistribution(
                prob_logged=target.prob_logged[keep],
                probs=None if target.probs is None else target.probs[keep],
                choice=None if target.choice is None else target.choice[keep],
                name=target.name,
                k_max=target.k_max,
            )
            if reward_model is not None:
                reward_model = reward_model[keep]
            if fit_rows is not None:
                fit_rows = fit_rows[keep]
        if log.n_rows == 0:
            raise InvalidReplayInputError(
                f"The log must have at least one row the target '{target.name}' decides; got 0."
            )
        page_cluster = fit_page_cluster = None
        if cluster == "member":
            page_cluster = np.unique(page_buckets(log, n_buckets), return_inverse=True)[1].ravel()
            if fit is not None:
                fit_page_cluster = np.unique(
                    page_buckets(fit.log, n_buckets), return_inverse=True
                )[1].ravel()
        return cls(log, target, reward_model, fit, fit_rows, cluster, n_buckets,
                   page_cluster.astype(np.int64) if page_cluster is not None else None,
                   fit_page_cluster.astype(np.int64) if fit_page_cluster is not None else None)

    def cluster_sums(
        self, U: NDArray[np.float64], V: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Per-page sums ``U``, ``V`` summed into the independent clusters (unchanged for
        ``cluster="page"``)."""
        if self.page_cluster is None:
            return U, V
        C = int(self.page_cluster.max()) + 1 if len(self.page_cluster) else 0
        return (np.bincount(self.page_cluster, U, C).astype(np.float64),
                np.bincount(self.page_cluster, V, C).astype(np.float64))

    @property
    def n_rows(self) -> int:
        """Rows used."""
        return self.log.n_rows

    @cached_property
    def reward(self) -> NDArray[np.float64]:
        """Rewards as float64."""
        return self.log.reward.astype(np.float64)

    @cached_property
    def weight(self) -> NDArray[np.float64]:
        """Importance weight ``pi(logged) / mu(logged)`` per row."""
        return self.target.prob_logged / self.log.propensity

    @property
    def cluster(self) -> NDArray[np.int64]:
        """Page index per row (pages are the independent units)."""
        return self.log.page_index

    @property
    def n_clusters(self) -> int:
        """Number of pages."""
        return self.log.n_pages

    def need_probs(self, who: str) -> NDArray[np.float64]:
        """The target's full distribution, or a clear error naming the estimator."""
        probs = self.target.probabilities()
        if probs is None:
            raise InvalidReplayInputError(
                f"The {who} estimator needs the target's full distribution over the candidates; "
                f"got only the probability of the logged image for '{self.target.name}'."
            )
        return probs

    def need_reward_model(self, who: str) -> NDArray[np.float64]:
        """The reward model's predictions, or a clear error naming the estimator."""
        if self.reward_model is None:
            raise InvalidReplayInputError(
                f"The {who} estimator needs a reward model; got none (pass reward_model=...)."
            )
        return self.reward_model


@dataclass(frozen=True, eq=False)
class Contributions:
    """What an estimator reduces the log to: per-page sums (and per-row terms when it has them).

    ``value = U.sum() / V.sum()``. ``u``, ``v`` (per row, summing to ``U``, ``V`` per page)
    allow per-title estimates; ``weights`` feed the diagnostics; ``matched`` marks the rows that
    carry weight (or were accepted, for replay).
    """

    U: NDArray[np.float64]
    V: NDArray[np.float64]
    u: NDArray[np.float64] | None
    v: NDArray[np.float64] | None
    weights: NDArray[np.float64] | None
    matched: NDArray[np.bool_]

    @classmethod
    def from_rows(
        cls, data: ReplayData, u: NDArray[np.float64], v: NDArray[np.float64],
        weights: NDArray[np.float64] | None, matched: NDArray[np.bool_],
    ) -> Contributions:
        """Sum row terms per page."""
        P = data.n_clusters
        U = np.asarray(np.bincount(data.cluster, u, minlength=P), dtype=np.float64)
        V = np.asarray(np.bincount(data.cluster, v, minlength=P), dtype=np.float64)
        return cls(U, V, u, v, weights, matched)


@dataclass(frozen=True, eq=False)
class LinearModelTerms:
    """DM/DR as a function of page sums, the take-rate model's included, for refitting it.

    An estimator whose row terms are linear in the reward model,
    ``u_i = u0_i + sum_k coef[i, k] q[i, k]`` and ``v_i`` free of it, estimates
    ``(sum u0 + sum_g S_g q_g) / sum v``, where ``g`` runs over the keys (fold, candidate image,
    title) the take-rate model predicts at and ``S_g`` sums ``coef`` over the entries with key
    ``g``. Every piece is a sum over pages: ``H`` holds, per page, ``[U0, V, S_g..., the model's
    statistics...]``. A bootstrap replicate is then ``counts @ H`` for page counts ``counts``
    (the model refitted on the resampled pages, vectorised over replicates), and the
    delta-method standard error is the spread over pages of ``H @ grad``.

    Attributes
    ----------
    H : scipy.sparse.csr_array (n_clusters, 2 + G + fit.n_statistics)
        Pages of ``fit.log`` (or clusters of them), the independent units.
    fold, image, title : ndarray (G,), int64
        The keys.
    fit : TakeRateFit
    """

    H: sparse.csr_array
    fold: NDArray[np.int64]
    image: NDArray[np.int64]
    title: NDArray[np.int64]
    fit: TakeRateFit

    @classmethod
    def build(
        cls, data: ReplayData, u0: NDArray[np.float64], v: NDArray[np.float64],
        coef: NDArray[np.float64], clusters: NDArray[np.int64] | None = None,
    ) -> LinearModelTerms:
        """From the row terms of ``data`` (which must carry a ``model_fit``).

        ``clusters`` (one per page of ``model_fit.log``, codes ``0..C-1``) sums the pages into
        independent clusters (e.g. member buckets); default: each page is one.
        """
        fit, rows = data.model_fit, data.fit_rows
        if fit is None or rows is None:
            raise InvalidReplayInputError(
                "LinearModelTerms needs a ReplayData built with a TakeRateFit reward model."
            )
        flog = fit.log
        P = flog.n_pages
        page = flog.page_index[rows]
        cands = flog.candidates[rows]
        i, k = np.nonzero((coef != 0) & (cands >= 0))
        ni, nt = fit.n_images, fit.n_titles
        key = (fit.fold[rows][i] * ni + cands[i, k].astype(np.int64)) * nt + flog.title[rows][i]
        keys, g = np.unique(key, return_inverse=True)
        G = len(keys)
        M = sparse.coo_array((coef[i, k], (page[i], g.ravel())), shape=(P, G))
        UV = np.stack([np.bincount(page, u0, P), np.bincount(page, v, P)], axis=1)
        H = sparse.csr_array(sparse.hstack([sparse.coo_array(UV), M, fit.page_statistics()]))
        if clusters is not None:
            C = int(clusters.max()) + 1 if len(clusters) else 0
            to_cluster = sparse.csr_array((np.ones(P), (clusters, np.arange(P))), shape=(C, P))
            H = sparse.csr_array(to_cluster @ H)
        title = keys % nt
        image = (keys // nt) % ni
        fold = keys // (nt * ni)
        return cls(H, fold, image, title, fit)

    @property
    def n_keys(self) -> int:
        """G: keys the model predicts at."""
        return len(self.fold)

    def values(self, totals: NDArray[np.float64]) -> NDArray[np.float64]:
        """(B,) estimates from (B, n_columns) totals ``counts @ H`` (NaN where ``sum v = 0``)."""
        G = self.n_keys
        q = self.fit.predict_from(totals[:, 2 + G:], self.fold, self.image, self.title)
        U = totals[:, 0] + np.einsum("bg,bg->b", totals[:, 2:2 + G], q)
        V = totals[:, 1]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(V != 0, U / np.where(V != 0, V, 1.0), np.nan)

    def totals(self) -> NDArray[np.float64]:
        """(n_columns,) sums over the pages (every page counted once)."""
        return np.asarray(self.H.sum(axis=0), dtype=np.float64).ravel()

    def se(self) -> float:
        """Delta-method standard error over pages, the model's estimation error included."""
        P = self.H.shape[0]
        T = self.totals()
        G = self.n_keys
        if P < 2 or T[1] == 0:
            return float("nan")
        theta = float(self.values(T[None])[0])
        q = self.fit.predict_from(T[None, 2 + G:], self.fold, self.image, self.title)[0]
        grad = np.concatenate([
            [1.0 / T[1], -theta / T[1]], q / T[1],
            self.fit.gradient(T[2 + G:], self.fold, self.image, self.title, T[2:2 + G] / T[1]),
        ])
        phi = self.H @ grad
        resid = phi - phi.mean()
        return float(np.sqrt(P / (P - 1) * float(resid @ resid)))

    def bootstrap(self, n_bootstrap: int, seed: int | None) -> NDArray[np.float64]:
        """``n_bootstrap`` replicates over pages resampled with replacement, the model refitted
        on every replicate's pages (each page keeps its fold). Seeded."""
        P = self.H.shape[0]
        out = np.full(n_bootstrap, np.nan)
        if P == 0 or n_bootstrap == 0:
            return out
        rng = np.random.default_rng(seed)
        HT = sparse.csr_array(self.H.T)
        chunk = max(1, _BOOTSTRAP_CELLS // P)
        for start in range(0, n_bootstrap, chunk):
            b = min(chunk, n_bootstrap - start)
            idx = rng.integers(0, P, size=(b, P)) + (np.arange(b) * P)[:, None]
            counts = np.bincount(idx.ravel(), minlength=b * P).reshape(b, P).astype(np.float64)
            out[start:start + b] = self.values(np.asarray(HT @ counts.T).T)
        return out


# ====================================================================== results
@dataclass(frozen=True)
class Estimate:
    """One estimator's estimate of the target's take fraction, with its uncertainty.

    Attributes
    ----------
    estimator : str
        Registry alias of the estimator.
    value : float
        Estimated expected reward per (page impression, title).
    se : float
        Cluster-robust (pages) standard error; for DM and DR with a refittable take-rate model
        (``ReplayData.model_fit``), the delta-method one with the model's error included.
    interval : (float, float)
        Bootstrap percentile interval at ``level`` (normal ``value ± z se`` when
        ``n_bootstrap == 0``; see ``interval_method``).
    interval_method : str
        ``"bootstrap"`` or ``"normal"``; for DM and DR followed by ``", model refit"`` (the
        take-rate model refitted in every replicate), ``", model delta method"`` (normal
        interval, model error in ``se``) or ``", model fixed"`` (the reward model held fixed:
        the interval leaves out its error).
    level, n_bootstrap, seed
    ess : float
        Effective sample size of the weights (rows for the direct method).
    n_rows, n_pages : int
        Rows and pages used.
    n_matched : int
        Rows carrying weight: whose logged image the target could show (accepted, for replay).
    max_weight, top1_weight_share : float
        Largest weight, and share of the total weight on the largest 1% of rows.
    weights_exploded : bool
        Warning: ESS below 1% of the rows (or below 10), or the top 1% of rows carry more than
        half the weight. The estimate then rests on few rows.
    page_value : float
        Expected quality plays per page (``value`` times the mean number of titles per page).
    page_interval : (float, float)
    status : {"ok", "no_match"}
        ``"no_match"``: no logged row matches the target (or no row is left), so there is no
        estimate: ``value``, ``se``, the intervals and ``page_value`` are NaN (null in JSON)
        rather than a value of 0 (IPS) or the model's value (DR), and ``reason`` says why.
    reason : str
        Empty when ``status`` is ``"ok"``.
    assumption : str
        What the estimator assumes about the rewards and the logging policy to be unbiased
        (consistent, for the self-normalised ones).
    logged_value : float
        The logging policy's own (on-policy) value on the same rows: their mean reward.
    difference, difference_interval : float, (float, float)
        ``value - logged_value`` and its paired interval at ``level`` (the bootstrap resamples
        the same clusters for both; normal with the linearised standard error without
        replicates).
    separated : bool
        The difference interval excludes 0: the log tells the target from the logging policy.
    separation : str
        Says so in words, or that the interval is too wide to tell them apart (then the
        estimate cannot be trusted to rank the target against what is deployed).
    """

    estimator: str
    value: float
    se: float
    interval: tuple[float, float]
    level: float
    n_bootstrap: int
    seed: int | None
    interval_method: str
    ess: float
    n_rows: int
    n_pages: int
    n_matched: int
    max_weight: float
    top1_weight_share: float
    weights_exploded: bool
    page_value: float
    page_interval: tuple[float, float]
    status: str = "ok"
    reason: str = ""
    assumption: str = ""
    logged_value: float = float("nan")
    difference: float = float("nan")
    difference_interval: tuple[float, float] = (float("nan"), float("nan"))
    separated: bool = False
    separation: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


@dataclass(frozen=True, eq=False)
class PerTitleEstimates:
    """Per-title estimates (normal intervals), one entry per title of the log, as arrays.

    Attributes
    ----------
    title_ids : tuple of str
    value, se, lower, upper : ndarray (n_titles,)
        NaN for a title with no weight at all.
    n_rows, n_matched : ndarray (n_titles,), int
    ess : ndarray (n_titles,)
    """

    title_ids: tuple[str, ...]
    value: NDArray[np.float64]
    se: NDArray[np.float64]
    lower: NDArray[np.float64]
    upper: NDArray[np.float64]
    n_rows: NDArray[np.int64]
    n_matched: NDArray[np.int64]
    ess: NDArray[np.float64]

    def to_dict(self) -> dict[str, dict[str, float]]:
        """``{title: {value, se, lower, upper, n_rows, n_matched, ess}}``."""
        out = {}
        for i, t in enumerate(self.title_ids):
            out[t] = {
                "value": float(self.value[i]), "se": float(self.se[i]),
                "lower": float(self.lower[i]), "upper": float(self.upper[i]),
                "n_rows": int(self.n_rows[i]), "n_matched": int(self.n_matched[i]),
                "ess": float(self.ess[i]),
            }
        return out


# ====================================================================== interface
@runtime_checkable
class Estimator(Protocol):
    """An off-policy estimator: ``estimate(data, n_bootstrap=, seed=, level=) -> Estimate``."""

    name: str

    def estimate(
        self, data: ReplayData, *, n_bootstrap: int = 1000, seed: int | None = 0,
        level: float = 0.95,
    ) -> Estimate:
        """Estimate the target's take fraction on ``data``."""
        ...


def no_match_checked(estimate: Estimate, weighted: bool) -> Estimate:
    """``estimate`` unchanged, or marked ``status="no_match"`` with NaN values when no row is
    left or, for a weighted estimator, no logged row matches the target (then IPS would say 0
    with an interval [0, 0], and DR the model's value, neither backed by a single matched row).

    Examples
    --------
    >>> e = Estimate("ips", 0.0, 0.0, (0.0, 0.0), 0.95, 0, 0, "normal", 0.0, 10, 5, 0, 0.0, 0.0,
    ...              True, 0.0, (0.0, 0.0))
    >>> checked = no_match_checked(e, weighted=True)
    >>> checked.status, checked.value != checked.value
    ('no_match', True)
    """
    if estimate.n_rows > 0 and (estimate.n_matched > 0 or not weighted):
        return estimate
    nan = float("nan")
    reason = (
        "no rows left to estimate from" if estimate.n_rows == 0
        else f"no logged row of {estimate.n_rows} matches the target policy's choice"
    )
    return replace(estimate, value=nan, se=nan, interval=(nan, nan), page_value=nan,
                   page_interval=(nan, nan), status="no_match", reason=reason,
                   difference=nan, difference_interval=(nan, nan), separated=False,
                   separation="no estimate, so no comparison with the logging policy")


def separation_fields(
    data: ReplayData, c: Contributions, value: float, reps: NDArray[np.float64],
    boot_seed: int | None, level: float,
) -> dict[str, Any]:
    """The :class:`Estimate` fields comparing the target with the logging policy on the same
    rows: ``logged_value``, ``difference``, its paired ``difference_interval``, ``separated``
    and the ``separation`` text.

    The logging policy's replicates resample the clusters of ``reps`` (same seed, same number
    of clusters), so ``reps - logged_reps`` is a paired bootstrap of the difference.
    """
    P = data.n_clusters
    R, N = data.cluster_sums(np.bincount(data.cluster, data.reward, P).astype(np.float64),
                             np.bincount(data.cluster, minlength=P).astype(np.float64))
    U, V = data.cluster_sums(c.U, c.V)
    logged = float(R.sum() / N.sum()) if N.sum() > 0 else float("nan")
    diff = value - logged
    with np.errstate(invalid="ignore", divide="ignore"):
        phi = (U - value * V) / V.sum() - (R - logged * N) / N.sum()
    n = len(phi)
    resid = phi - phi.mean() if n else phi
    se = float(np.sqrt(n / (n - 1) * float(resid @ resid))) if n > 1 else float("nan")
    logged_reps = bootstrap_ratio(R, N, len(reps), boot_seed)
    return separation_from(logged, diff, se, reps - logged_reps, level)


def separation_from(
    logged: float, diff: float, se: float, diff_reps: NDArray[np.float64], level: float
) -> dict[str, Any]:
    """The :class:`Estimate` separation fields from the logging policy's value, the difference
    ``value - logged``, its standard error and its paired bootstrap replicates (empty or NaN:
    a normal interval).

    Examples
    --------
    >>> import numpy as np
    >>> f = separation_from(0.10, 0.02, 0.005, np.zeros(0), 0.95)
    >>> f["separated"], [round(x, 4) for x in f["difference_interval"]]
    (True, [0.0102, 0.0298])
    >>> f["separation"][:36]
    'separated: above the logging policy '
    """
    interval, _ = interval_from(diff, se, np.asarray(diff_reps, dtype=np.float64), level)
    lo, hi = interval
    pct = f"{100 * level:g}%"
    if not (np.isfinite(lo) and np.isfinite(hi)):
        separated, text = False, "no interval of the difference from the logging policy"
    elif lo > 0 or hi < 0:
        separated = True
        side = "above" if lo > 0 else "below"
        text = (f"separated: {side} the logging policy by {diff:+.4g} "
                f"({pct} paired interval [{lo:.4g}, {hi:.4g}])")
    else:
        separated = False
        text = (f"not separated: the {pct} paired interval of the difference from the logging "
                f"policy, [{lo:.4g}, {hi:.4g}], includes 0; this log cannot tell the target from "
                f"the logging policy")
    return {"logged_value": logged, "difference": diff, "difference_interval": (lo, hi),
            "separated": separated, "separation": text}


def _check_options(n_bootstrap: int, level: float) -> None:
    if not isinstance(n_bootstrap, (int, np.integer)) or n_bootstrap < 0:
        raise InvalidReplayInputError(
            f"The 'n_bootstrap' parameter must be an integer >= 0; got {n_bootstrap!r} instead."
        )
    check_limit("max_bootstrap", int(n_bootstrap), "bootstrap replicates")
    if not 0.0 < float(level) < 1.0:
        raise InvalidReplayInputError(
            f"The 'level' parameter must be in (0, 1); got {level!r} instead."
        )


class BaseEstimator:
    """Shared machinery: subclasses implement :meth:`contributions`."""

    name: ClassVar[str] = "base"
    long_name: ClassVar[str] = "BaseEstimator"
    needs_probs: ClassVar[bool] = False
    needs_reward_model: ClassVar[bool] = False
    assumption: ClassVar[str] = ""

    def contributions(self, data: ReplayData, seed: int | None) -> Contributions:
        """Reduce the log to per-page sums (and per-row terms)."""
        raise NotImplementedError

    def model_terms(
        self, data: ReplayData
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]] | None:
        """``(u0, v, coef)`` when the row terms are linear in the reward model,
        ``u = u0 + sum_k coef[:, k] q[:, k]`` (DM, DR), else None."""
        return None

    def refit_replicates(
        self, data: ReplayData, n_bootstrap: int, seed: int | None
    ) -> NDArray[np.float64] | None:
        """Bootstrap replicates with a model refitted on every replicate's clusters, resampled
        as :func:`~slate.replay.stats.bootstrap_ratio` resamples them (so paired differences
        stay paired), for estimators that fit their own model; None (default) otherwise."""
        return None

    def estimate(
        self, data: ReplayData, *, n_bootstrap: int = 1000, seed: int | None = 0,
        level: float = 0.95,
    ) -> Estimate:
        """Value, cluster-robust standard error, seeded bootstrap interval and diagnostics."""
        return self.estimate_with_replicates(
            data, n_bootstrap=n_bootstrap, seed=seed, level=level
        )[0]

    def estimate_with_replicates(
        self, data: ReplayData, *, n_bootstrap: int = 1000, seed: int | None = 0,
        level: float = 0.95,
    ) -> tuple[Estimate, NDArray[np.float64]]:
        """:meth:`estimate` and its ``(n_bootstrap,)`` bootstrap replicates.

        The resampled clusters of replicate ``b`` depend only on ``seed`` and the number of
        clusters, so two targets estimated on the same log with the same seed are resampled
        identically: the difference of their replicates is a paired bootstrap of the difference
        (:mod:`slate.tune.paired`).
        """
        _check_options(n_bootstrap, level)
        c = self.contributions(data, seed)
        total_v = float(c.V.sum())
        value = float(c.U.sum()) / total_v if total_v != 0 else float("nan")
        boot_seed = bootstrap_seed(seed)
        linear = self.model_terms(data) if data.reward_model is not None else None
        if linear is not None and data.model_fit is not None:
            terms = LinearModelTerms.build(data, *linear, clusters=data.fit_page_cluster)
            se = terms.se()
            reps = terms.bootstrap(int(n_bootstrap), boot_seed)
            interval, method = interval_from(value, se, reps, float(level))
            method += ", model refit" if method == "bootstrap" else ", model delta method"
        else:
            U, V = data.cluster_sums(c.U, c.V)
            se = ratio_se(U, V)
            refit = self.refit_replicates(data, int(n_bootstrap), boot_seed)
            reps = bootstrap_ratio(U, V, int(n_bootstrap), boot_seed) if refit is None else refit
            interval, method = interval_from(value, se, reps, float(level))
            if linear is not None:
                method += ", model fixed"
            elif refit is not None and method == "bootstrap":
                method += ", model refit"
        diag = weight_diagnostics(c.weights, data.n_rows)
        per_page = data.n_rows / max(data.n_clusters, 1)
        return no_match_checked(Estimate(
            estimator=self.name,
            value=value,
            se=se,
            interval=interval,
            level=float(level),
            n_bootstrap=int(n_bootstrap),
            seed=seed,
            interval_method=method,
            ess=diag.ess,
            n_rows=data.n_rows,
            n_pages=data.n_clusters,
            n_matched=int(c.matched.sum()),
            max_weight=diag.max_weight,
            top1_weight_share=diag.top1_share,
            weights_exploded=diag.exploded,
            page_value=value * per_page,
            page_interval=(interval[0] * per_page, interval[1] * per_page),
            assumption=self.assumption,
            **separation_fields(data, c, value, reps, boot_seed, float(level)),
        ), weighted=c.weights is not None), reps

    def per_title(
        self, data: ReplayData, *, seed: int | None = 0, level: float = 0.95
    ) -> PerTitleEstimates | None:
        """Per-title estimates (None for page-level estimators without per-row terms).

        A page holds a title at most once, so with ``cluster="page"`` the rows of a title are
        independent and the standard error is the row-level linearised one; with
        ``cluster="member"`` a title's rows are summed per member bucket first.
        """
        _check_options(0, level)
        c = self.contributions(data, seed)
        if c.u is None or c.v is None:
            return None
        log = data.log
        T = len(log.title_ids)
        t = log.title
        U = np.bincount(t, c.u, T)
        V = np.bincount(t, c.v, T)
        n = np.bincount(t, minlength=T)
        with np.errstate(invalid="ignore", divide="ignore"):
            value = np.where(V != 0, U / np.where(V != 0, V, 1.0), np.nan)
            resid = c.u - np.nan_to_num(value)[t] * c.v
            if data.page_cluster is None:
                ss = np.bincount(t, resid * resid, T)
                groups = n
            else:  # residuals summed per (title, cluster) before squaring
                C = int(data.page_cluster.max()) + 1
                key = t.astype(np.int64) * C + data.page_cluster[log.page_index]
                keys, inv = np.unique(key, return_inverse=True)
                per_group = np.bincount(inv.ravel(), resid, len(keys))
                ss = np.bincount(keys // C, per_group * per_group, T)
                groups = np.bincount(keys // C, minlength=T)
            se = np.where((groups > 1) & (V != 0),
                          np.sqrt(groups / np.maximum(groups - 1, 1) * ss) / np.abs(V), np.nan)
        z = float(sps.norm.ppf(0.5 + float(level) / 2))
        if c.weights is not None:
            sw = np.bincount(t, c.weights, T)
            sw2 = np.bincount(t, c.weights * c.weights, T)
            with np.errstate(invalid="ignore", divide="ignore"):
                ess = np.where(sw2 > 0, sw * sw / np.where(sw2 > 0, sw2, 1.0), 0.0)
        else:
            ess = n.astype(np.float64)
        return PerTitleEstimates(
            title_ids=log.title_ids,
            value=value, se=se, lower=value - z * se, upper=value + z * se,
            n_rows=n.astype(np.int64),
            n_matched=np.bincount(t, c.matched.astype(np.float64), T).astype(np.int64),
            ess=ess,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


# ====================================================================== per-title estimators
class InverseProbabilityWeighting(BaseEstimator):
    """IPS: ``mean(w r)`` with ``w = pi(a|x) / mu(a|x)`` (Horvitz & Thompson 1952).

    Unbiased when the logging propensities are right and positive wherever the target acts.

    References
    ----------
    Horvitz, D. G. & Thompson, D. J. (1952). A generalization of sampling without replacement
    from a finite universe. JASA 47(260).
    """

    name = "ips"
    assumption = "a title's reward depends on its own image only; right propensities"
    long_name = "InverseProbabilityWeighting"

    def contributions(self, data: ReplayData, seed: int | None) -> Contributions:
        w = data.weight
        return Contributions.from_rows(data, w * data.reward, np.ones(data.n_rows), w, w > 0)


class SelfNormalizedIPS(BaseEstimator):
    """SNIPS: ``sum(w r) / sum(w)``; slightly biased, much lower variance than IPS.

    References
    ----------
    Swaminathan, A. & Joachims, T. (2015). The self-normalized estimator for counterfactual
    learning. NeurIPS.
    """

    name = "snips"
    assumption = "a title's reward depends on its own image only; right propensities"
    long_name = "SelfNormalizedIPS"

    def contributions(self, data: ReplayData, seed: int | None) -> Contributions:
        w = data.weight
        return Contributions.from_rows(data, w * data.reward, w, w, w > 0)


class DirectMethod(BaseEstimator):
    """DM: ``mean_i sum_k pi(k|x_i) q(x_i, k)`` from a reward model ``q``; no weights, biased
    as much as the model is wrong.

    References
    ----------
    Dudík, M., Langford, J. & Li, L. (2011). Doubly robust policy evaluation and learning. ICML.
    """

    name = "dm"
    assumption = "the reward model is right"
    long_name = "DirectMethod"
    needs_probs = True
    needs_reward_model = True

    def contributions(self, data: ReplayData, seed: int | None) -> Contributions:
        probs = data.need_probs("direct-method")
        q = data.need_reward_model("direct-method")
        u = np.einsum("ik,ik->i", probs, q)
        return Contributions.from_rows(data, u, np.ones(data.n_rows), None,
                                       np.ones(data.n_rows, bool))

    def model_terms(
        self, data: ReplayData
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        probs = data.need_probs("direct-method")
        return np.zeros(data.n_rows), np.ones(data.n_rows), probs


class DoublyRobust(BaseEstimator):
    """DR: the direct method corrected by IPS on the model's residual at the logged image.

    ``mean_i [sum_k pi(k|x_i) q(x_i, k) + w_i (r_i - q(x_i, a_i))]``; unbiased when either the
    propensities or the reward model are right.

    References
    ----------
    Dudík, M., Langford, J. & Li, L. (2011). Doubly robust policy evaluation and learning. ICML.
    """

    name = "dr"
    assumption = (
        "the propensities or the reward model are right; a title's reward depends on its own image only"
    )
    long_name = "DoublyRobust"
    needs_probs = True
    needs_reward_model = True

    def contributions(self, data: ReplayData, seed: int | None) -> Contributions:
        probs = data.need_probs("doubly-robust")
        q = data.need_reward_model("doubly-robust")
        w = data.weight
        rows = np.arange(data.n_rows)
        u = np.einsum("ik,ik->i", probs, q) + w * (data.reward - q[rows, data.log.shown])
        return Contributions.from_rows(data, u, np.ones(data.n_rows), w, w > 0)

    def model_terms(
        self, data: ReplayData
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        probs = data.need_probs("doubly-robust")
        w = data.weight
        coef = np.array(probs, dtype=np.float64, copy=True)
        coef[np.arange(data.n_rows), data.log.shown] -= w
        return w * data.reward, np.ones(data.n_rows), coef


def bootstrap_seed(seed: int | None) -> int | None:
    """The seed of the cluster bootstrap of an estimate made with ``seed`` (None: unseeded)."""
    return None if seed is None else int(np.random.SeedSequence([seed, 1]).generate_state(1)[0])


def row_uniforms(log: ImpressionLog, seed: int | None, stream: int) -> NDArray[np.float64]:
    """One uniform number per row, a hash of ``(seed, stream, page id, row, col)``: the same
    for a row whatever chunk or partition of the log it is read in."""
    from slate.replay._exact import counter_uniform

    position = (log.row.astype(np.int64) << 32) | log.col.astype(np.int64)
    return counter_uniform(np.uint64(seed_key(seed, stream)), log.page_id, position)


class ReplayMethod(BaseEstimator):
    """Replay (Li et al. 2011): the mean reward of the logged events the target would have
    produced.

    With uniform logging and a deterministic target, an event counts when the target picks the
    logged image (Li et al.'s replay). In general (non-uniform logging, stochastic targets) an
    event is accepted with probability ``w / M``, ``M`` the largest weight (rejection sampling):
    accepted events are distributed as if the target had chosen. When the log has full logging
    distributions, ``M`` bounds the ratio over every candidate. The acceptance draws are seeded
    and counter-based (a hash of the seed, the page id and the title's position), so an event's
    draw does not depend on how the log is split.

    Parameters
    ----------
    max_weight : float, optional
        ``M``, fixed (any bound on the weights is valid; the partitioned evaluation fixes it to
        ``1 / min(propensity)`` so that every partition uses the same). Default: the largest
        weight of the log.

    References
    ----------
    Li, L., Chu, W., Langford, J. & Wang, X. (2011). Unbiased offline evaluation of
    contextual-bandit-based news article recommendation algorithms. WSDM.
    """

    name = "replay"
    assumption = "a title's reward depends on its own image only; right propensities"
    long_name = "ReplayMethod"

    def __init__(self, max_weight: float | None = None) -> None:
        if max_weight is not None and not (np.isfinite(max_weight) and max_weight > 0):
            raise InvalidReplayInputError(
                f"The 'max_weight' parameter of ReplayMethod must be a positive number; got "
                f"{max_weight!r} instead."
            )
        self.max_weight = None if max_weight is None else float(max_weight)

    def bound(self, data: ReplayData) -> float:
        """``M``: ``max_weight`` when fixed, else the largest weight (over every candidate when
        the log has full logging distributions)."""
        w = data.weight
        if self.max_weight is not None:
            if len(w) and float(w.max()) > self.max_weight * (1 + 1e-12):
                raise InvalidReplayInputError(
                    f"The 'max_weight' of ReplayMethod must bound every weight; got "
                    f"{self.max_weight!r} below the weight {float(w.max())!r}."
                )
            return self.max_weight
        M = float(w.max()) if len(w) else 0.0
        logp = data.log.propensities
        if logp is not None and data.target.choice is not None:
            # deterministic target: the largest ratio is at its choice
            rows = np.arange(data.n_rows)
            M = max(M, float((1.0 / logp[rows, data.target.choice]).max()))
        elif logp is not None and data.target.probs is not None:
            with np.errstate(invalid="ignore", divide="ignore"):
                ratio = np.where(logp > 0, data.target.probs / np.where(logp > 0, logp, 1.0), 0.0)
            M = max(M, float(ratio.max()))
        return M

    def contributions(self, data: ReplayData, seed: int | None) -> Contributions:
        w = data.weight
        M = self.bound(data)
        if M <= 0:
            accept = np.zeros(data.n_rows, bool)
        else:
            p = w / M
            if np.all((p == 0) | (p == 1)):  # uniform logging, deterministic target: no draws
                accept = p == 1
            else:
                accept = row_uniforms(data.log, seed, 2) < p
        a = accept.astype(np.float64)
        return Contributions.from_rows(data, a * data.reward, a, w, accept)

    def __repr__(self) -> str:
        return f"ReplayMethod(max_weight={self.max_weight!r})"


# ====================================================================== whole-page estimators
def neighbour_rows(log: ImpressionLog, offsets: Sequence[tuple[int, int]]) -> NDArray[np.int64]:
    """``(n, len(offsets))`` row index of the title at ``(row + dr, col + dc)`` on the same page,
    ``-1`` where there is none. Vectorised: one sort, one ``searchsorted`` per offset.

    Examples
    --------
    >>> from slate.logs import read_impressions
    >>> from slate.logs.parquet import example_table
    >>> log, _ = read_impressions(example_table())
    >>> neighbour_rows(log, [(0, -1), (0, 1)]).tolist()
    [[-1, 1], [0, -1], [-1, 3], [2, -1]]
    """
    n = log.n_rows
    if n == 0:
        return np.zeros((0, len(offsets)), np.int64)
    pad = max([abs(dr) for dr, _ in offsets] + [abs(dc) for _, dc in offsets] + [0])
    R = int(log.row.max()) + 1 + 2 * pad
    C = int(log.col.max()) + 1 + 2 * pad
    base = log.page_index * (R * C)
    key = base + (log.row.astype(np.int64) + pad) * C + (log.col.astype(np.int64) + pad)
    order = np.argsort(key, kind="stable")
    skey = key[order]
    out = np.full((n, len(offsets)), -1, dtype=np.int64)
    for j, (dr, dc) in enumerate(offsets):
        target = key + dr * C + dc
        pos = np.minimum(np.searchsorted(skey, target), n - 1)
        found = skey[pos] == target
        out[:, j] = np.where(found, order[pos], -1)
    return out


NEIGHBOURHOODS: dict[str, tuple[tuple[int, int], ...]] = {
    "row": ((0, -1), (0, 1)),
    "grid": ((0, -1), (0, 1), (-1, 0), (1, 0)),
}
"""Named neighbourhoods: left/right in the row, or also above/below."""


def optimal_baseline(
    data: ReplayData, u: NDArray[np.float64], z: NDArray[np.float64]
) -> tuple[NDArray[np.float64], float]:
    """Row terms ``u - beta z`` and ``beta``: the control variate ``z`` (per row, expectation 0
    under the logging policy, e.g. ``w - 1``) subtracted with the variance-minimising ``beta``.

    ``beta`` is the regression over the independent clusters of ``U - value n`` on ``Z``
    (page sums of ``u`` and ``z``; ``n`` rows per page), i.e. the optimal additive baseline
    ``b`` of ``mean(w (r - b)) + b`` (Vlassis et al. 2021). Estimated from the same data, it
    adds an O(1/n) bias; the standard error is that of a fixed ``beta`` (first-order exact).

    Examples
    --------
    >>> import numpy as np
    >>> from slate.logs import read_impressions
    >>> from slate.logs.parquet import example_table
    >>> from slate.replay import ActionDistribution
    >>> log, _ = read_impressions(example_table())
    >>> data = ReplayData.build(log, ActionDistribution(prob_logged=np.full(4, 0.5)))
    >>> u, beta = optimal_baseline(data, np.array([1.0, 0.0, 1.0, 2.0]), np.zeros(4))
    >>> beta, u.tolist()
    (0.0, [1.0, 0.0, 1.0, 2.0])
    """
    P = data.n_clusters
    n = np.bincount(data.cluster, minlength=P).astype(np.float64)
    U, Z = data.cluster_sums(np.bincount(data.cluster, u, P).astype(np.float64),
                             np.bincount(data.cluster, z, P).astype(np.float64))
    N = data.cluster_sums(n, n)[0]
    value = float(U.sum() / N.sum()) if N.sum() > 0 else 0.0
    y = U - value * N
    zc = Z - Z.mean()
    var = float(zc @ zc)
    beta = float((y - y.mean()) @ zc / var) if var > 0 else 0.0
    return u - beta * z, beta


class LayoutNeighbourhood(BaseEstimator):
    """Match a title *and its layout neighbours*: weight its reward by the product of the
    propensity ratios over the neighbourhood.

    Assumption: a title's reward depends on its own image and its neighbours' images only, and
    the logging policy chose each title's image independently (so per-title propensities
    multiply). Then ``mean(prod_{j in N[i]} w_j * r_i)`` is unbiased, where the per-title
    estimator is biased as soon as neighbours matter. The price is variance: the weights are
    products, watch ``weights_exploded``.

    Parameters
    ----------
    neighbours : "row", "grid" or sequence of (d_row, d_col), default "row"
        Who counts as a neighbour: left/right in the row; also above/below; or explicit offsets.
    self_normalized : bool, default False
        Divide by the sum of the weights (SNIPS form) instead of the number of rows.
    baseline : bool, default False
        Subtract the control variate ``beta (W - 1)`` (the weights' expectation under logging is
        1) with the variance-minimising ``beta`` (:func:`optimal_baseline`; Vlassis et al.
        2021); divides by the number of rows, so ``self_normalized`` is ignored.
    exploration : ExplorationColumns, optional
        The decision log's exploration columns (:class:`slate.replay.joint.ExplorationColumns`).
        Given, the logging probability of a title and its neighbours is their exact joint
        propensity under the capped exploration that logged them
        (:func:`slate.replay.joint.set_propensity`) instead of the product of their
        propensities, which the cap makes wrong; the independence assumption is then dropped.
    """

    name = "neighbourhood"
    assumption = (
        "a title's reward depends on its own and its layout neighbours' images only; logging independent across titles"
    )
    long_name = "LayoutNeighbourhood"

    def __init__(
        self, neighbours: str | Sequence[tuple[int, int]] = "row", self_normalized: bool = False,
        exploration: ExplorationColumns | None = None, baseline: bool = False,
    ) -> None:
        if isinstance(neighbours, str):
            if neighbours not in NEIGHBOURHOODS:
                raise InvalidReplayInputError(
                    f"The 'neighbours' parameter of LayoutNeighbourhood must be one of "
                    f"{sorted(NEIGHBOURHOODS)} or a sequence of (d_row, d_col); got {neighbours!r}."
                )
            offsets = NEIGHBOURHOODS[neighbours]
        else:
            offsets = tuple((int(a), int(b)) for a, b in neighbours)
            if any((a, b) == (0, 0) for a, b in offsets):
                raise InvalidReplayInputError(
                    "The 'neighbours' offsets of LayoutNeighbourhood must not include (0, 0)."
                )
        self.neighbours = neighbours
        self.offsets = offsets
        self.self_normalized = bool(self_normalized)
        self.exploration = exploration
        self.baseline = bool(baseline)

    def row_weights(self, data: ReplayData) -> NDArray[np.float64]:
        """Product of the weights of each row and its neighbours (with ``exploration``: the
        product of the target's probabilities over the exact joint logging propensity)."""
        w = data.weight
        nb = neighbour_rows(data.log, self.offsets)
        if self.exploration is not None:
            from slate.replay.joint import set_propensity

            sets = np.concatenate([np.arange(data.n_rows)[:, None], nb], axis=1)
            pext = np.r_[data.target.prob_logged, 1.0]
            num = np.prod(pext[sets], axis=1)
            den = set_propensity(data.log, self.exploration, sets)
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.where(num > 0, num / np.where(den > 0, den, 1.0), 0.0)
        wext = np.r_[w, 1.0]  # a missing neighbour contributes a factor 1
        return w * np.prod(wext[nb], axis=1)

    def contributions(self, data: ReplayData, seed: int | None) -> Contributions:
        W = self.row_weights(data)
        if self.baseline:
            u = optimal_baseline(data, W * data.reward, W - 1.0)[0]
            return Contributions.from_rows(data, u, np.ones(data.n_rows), W, W > 0)
        v = W if self.self_normalized else np.ones(data.n_rows)
        return Contributions.from_rows(data, W * data.reward, v, W, W > 0)

    def __repr__(self) -> str:
        return (f"LayoutNeighbourhood(neighbours={self.neighbours!r}, "
                f"self_normalized={self.self_normalized}, baseline={self.baseline})")


def image_groups(log: ImpressionLog, groups: ArrayLike | Mapping[str, int]) -> NDArray[np.int64]:
    """The visual group of every image code of ``log`` (``len(log.image_ids)``,), from an array
    aligned with ``log.image_ids`` or a mapping ``image_id -> group``; a clear error naming
    ``groups`` otherwise."""
    if isinstance(groups, Mapping):
        missing = [i for i in log.image_ids if i not in groups]
        if missing:
            raise InvalidReplayInputError(
                f"The 'groups' mapping of the page-aware estimator must give every image of the log "
                f"a group; got none for {len(missing)} images, e.g. {missing[0]!r}."
            )
        out = np.array([int(groups[i]) for i in log.image_ids], dtype=np.int64)
    else:
        out = np.asarray(groups)
        if out.ndim != 1 or len(out) != len(log.image_ids) or not np.issubdtype(out.dtype, np.integer):
            raise InvalidReplayInputError(
                f"The 'groups' of the page-aware estimator must be integers, one per image of the "
                f"log ({len(log.image_ids)}); got shape {out.shape} of {out.dtype}."
            )
        out = out.astype(np.int64)
    return out


class MarginalizedNeighbourhood(BaseEstimator):
    """Page-aware marginalised IPS: weight a title's reward by the ratio, target over logging, of
    the probability of its own image *and of the number of its neighbours whose image is in the
    same visual group*, instead of the product of the neighbours' exact-image ratios.

    With ``S_i`` the number of layout neighbours of title ``i`` whose shown image is in the visual
    group of ``i``'s image, the weight is

    .. math::

        w_i = \\frac{\\pi(a_i | x)\\, P_\\pi(S_i = s_i | a_i, x)}
                   {\\mu(a_i | x)\\, P_\\mu(S_i = s_i | a_i, x)},

    where ``P(S_i = s | a_i)`` is a Poisson-binomial probability: neighbour ``j`` is in ``a_i``'s
    group with probability ``sum_c p_j(c) [group(c) = group(a_i)]`` (exact when the images are
    chosen independently across titles; with capped exploration pass ``exploration`` and the
    exact joint propensity of the draw is used instead).

    Assumption (Saito & Joachims's "no direct effect" of the action given its embedding): the
    expected reward of a title depends on the page only through its own image and ``S_i``, i.e.
    its neighbours matter through whether they look like it (the visual ``groups``), not through
    which exact image they show; and the logging policy chose images independently across
    titles, with full logging distributions in the log. Under it the estimate is unbiased, and
    its weights are much smaller than the neighbourhood estimator's: ``1 / P_mu(S_i = s)`` is
    at most the product of the neighbours' inverse propensities and often far below it.

    Parameters
    ----------
    groups : array of int (one per image code of the log) or mapping image_id -> int
        Visual group of every image (e.g. clusters of the image embeddings, or a style tag).
    neighbours : "row", "grid" or sequence of (d_row, d_col), default "row"
        Who counts as a neighbour (as for :class:`LayoutNeighbourhood`).
    self_normalized : bool, default True
        Divide by the sum of the weights (SNIPS form; consistent, lower variance) instead of the
        number of rows (unbiased).
    baseline : bool, default False
        Subtract the control variate ``beta (W - 1)`` (the weights' expectation under logging is
        1) with the variance-minimising ``beta`` (:func:`optimal_baseline`; Vlassis et al.
        2021); divides by the number of rows, so ``self_normalized`` is ignored.
    exploration : ExplorationColumns, optional
        The decision log's exploration columns: the logging probability of (own image, count) is
        then exact under capped exploration (:func:`slate.replay.joint.group_count_propensity`)
        and the independent-logging assumption is dropped.

    References
    ----------
    Saito, Y. & Joachims, T. (2022). Off-policy evaluation for large action spaces via
    embeddings. ICML.
    """

    name = "page-aware"
    long_name = "MarginalizedNeighbourhood"
    needs_probs = True
    assumption = (
        "a title's reward depends on the page only through its own image and how many of its "
        "neighbours show an image of the same visual group; logging independent across titles"
    )

    def __init__(
        self, groups: ArrayLike | Mapping[str, int] | None = None,
        neighbours: str | Sequence[tuple[int, int]] = "row", self_normalized: bool = True,
        exploration: ExplorationColumns | None = None, baseline: bool = False,
    ) -> None:
        self.groups = groups
        self.baseline = bool(baseline)
        self.exploration = exploration
        self.offsets = LayoutNeighbourhood(neighbours).offsets
        self.neighbours = neighbours
        self.self_normalized = bool(self_normalized)

    def row_weights(self, data: ReplayData) -> NDArray[np.float64]:
        """The marginalised weight of every row (see the class docstring)."""
        if self.groups is None:
            raise InvalidReplayInputError(
                "The page-aware estimator needs the 'groups' option: the visual group of every "
                "image (e.g. clusters of the image embeddings)."
            )
        log = data.log
        mu = log.propensities
        if mu is None:
            raise InvalidReplayInputError(
                "The page-aware estimator needs the log's 'propensities' column (the full logging "
                "distribution of every title); the log has only the shown image's propensity."
            )
        pi = data.need_probs("page-aware")
        K = log.candidates.shape[1]
        pi = pi[:, :K] if pi.shape[1] >= K else np.pad(pi, ((0, 0), (0, K - pi.shape[1])))
        code = image_groups(log, self.groups)
        cand_group = np.where(log.candidates >= 0, code[np.maximum(log.candidates, 0)], -1)
        own = code[log.image]
        nb = neighbour_rows(log, self.offsets)
        present = nb >= 0
        j = np.where(present, nb, 0)
        same = cand_group[j] == own[:, None, None]  # (n, M, K): neighbour candidate in my group
        p_mu = np.where(present, np.einsum("nmk,nmk->nm", mu[j], same), 0.0)
        p_pi = np.where(present, np.einsum("nmk,nmk->nm", pi[j], same), 0.0)
        s = (present & (own[j] == own[:, None])).sum(axis=1)
        num = poisson_binomial_at(p_pi, s)
        if self.exploration is not None:
            from slate.replay.joint import group_count_propensity

            num = data.target.prob_logged * num
            den = group_count_propensity(log, self.exploration, nb, cand_group, own, s)
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
        den = poisson_binomial_at(p_mu, s)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
        return data.weight * ratio

    def contributions(self, data: ReplayData, seed: int | None) -> Contributions:
        W = self.row_weights(data)
        if self.baseline:
            u = optimal_baseline(data, W * data.reward, W - 1.0)[0]
            return Contributions.from_rows(data, u, np.ones(data.n_rows), W, W > 0)
        v = W if self.self_normalized else np.ones(data.n_rows)
        return Contributions.from_rows(data, W * data.reward, v, W, W > 0)

    def __repr__(self) -> str:
        return (f"MarginalizedNeighbourhood(neighbours={self.neighbours!r}, "
                f"self_normalized={self.self_normalized}, baseline={self.baseline})")


class WholePageMatch(LayoutNeighbourhood):
    """Exact whole-page match: weight every title's reward by the product of the propensity
    ratios of *all* titles on the page. Unbiased under any interaction within a page (with
    independent logging across titles); usable only for small pages, where whole pages match
    often enough.

    Parameters
    ----------
    self_normalized : bool, default False
        Divide by the sum of the page weights instead of the number of rows (the SNIPS form of
        the same weights): bounded by the largest reward, slightly biased in small logs.
    """

    name = "page"
    assumption = "logging independent across titles (any interaction within a page)"
    long_name = "WholePageMatch"

    def __init__(self, self_normalized: bool = False) -> None:
        self.neighbours = "page"
        self.offsets = ()
        self.self_normalized = bool(self_normalized)
        self.baseline = False

    def row_weights(self, data: ReplayData) -> NDArray[np.float64]:
        log = data.log
        w = data.weight[log.page_order]
        page_w = np.multiply.reduceat(w, log.page_starts[:-1]) if len(w) else w
        return page_w[log.page_index]

    def __repr__(self) -> str:
        return f"WholePageMatch(self_normalized={self.self_normalized})"


class PseudoInverse(BaseEstimator):
    """The pseudoinverse estimator for slates (Swaminathan et al. 2017), from page rewards.

    Uses only each page's total reward ``R_p`` and assumes it is additive over titles (each
    title contributes a term depending on its own image). With a logging policy that chooses
    each title's image independently, the pseudoinverse weight of a page with ``L`` titles is
    ``sum_t w_t - L + 1``; the estimate is ``sum_p weight_p R_p / sum_p L_p`` (per title, to be
    comparable with the others). No per-title estimates.

    Parameters
    ----------
    baseline : bool, default False
        Subtract the control variate ``beta (weight_p - 1)`` (the page weight's expectation under
        logging is 1) with the variance-minimising ``beta`` (:func:`optimal_baseline`;
        Vlassis et al. 2021).

    References
    ----------
    Swaminathan, A., Krishnamurthy, A., Agarwal, A., Dudík, M., Langford, J., Jose, D. &
    Zitouni, I. (2017). Off-policy evaluation for slate recommendation. NeurIPS.
    """

    name = "pi"
    assumption = "a page's reward is additive over titles; logging independent across titles"
    long_name = "PseudoInverse"

    def __init__(self, baseline: bool = False) -> None:
        self.baseline = bool(baseline)

    def contributions(self, data: ReplayData, seed: int | None) -> Contributions:
        P = data.n_clusters
        L = np.bincount(data.cluster, minlength=P).astype(np.float64)
        S = np.bincount(data.cluster, data.weight, minlength=P)
        R = np.bincount(data.cluster, data.reward, minlength=P)
        weight = S - L + 1.0
        matched = (data.weight > 0)
        U = weight * R
        if self.baseline:  # page terms: the rows of a page are one row of a page-level "log"
            U = _page_baseline(data, U, L, weight - 1.0)
        return Contributions(U, L, None, None, weight, matched)

    def __repr__(self) -> str:
        return f"PseudoInverse(baseline={self.baseline})"


def _page_baseline(
    data: ReplayData, U: NDArray[np.float64], L: NDArray[np.float64], Z: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Page sums ``U - beta Z`` with the variance-minimising ``beta`` (as
    :func:`optimal_baseline`, from page sums)."""
    Uc, Zc = data.cluster_sums(U, Z)
    Lc = data.cluster_sums(L, L)[0]
    value = float(Uc.sum() / Lc.sum()) if Lc.sum() > 0 else 0.0
    y = Uc - value * Lc
    z = Zc - Zc.mean()
    var = float(z @ z)
    beta = float((y - y.mean()) @ z / var) if var > 0 else 0.0
    return U - beta * Z


# ====================================================================== registry
ESTIMATORS: Registry[Estimator] = Registry("estimator", UnknownEstimatorError, hint="(or their long names)")
"""The estimator registry (see :mod:`slate.registry`)."""


def register_estimator(
    name: str, factory: Callable[..., Estimator], aliases: Sequence[str] = ()
) -> None:
    """Register ``factory`` (``factory(**options)`` returns an :class:`Estimator`) under a long
    name and short aliases."""
    ESTIMATORS.register(name, factory, aliases)


def available_estimators() -> list[str]:
    """Short names accepted by :func:`get_estimator` and :func:`slate.replay.evaluate`.

    Examples
    --------
    >>> available_estimators()[:6]
    ['dm', 'dr', 'ips', 'neighbourhood', 'page', 'page-aware']
    >>> available_estimators()[6:]
    ['page-aware-dr', 'pi', 'replay', 'snips', 'snips-crowding']
    """
    return ESTIMATORS.names()


def get_estimator(name: str | Estimator, **options: Any) -> Estimator:
    """An estimator by long name or alias (``"SelfNormalizedIPS"`` or ``"snips"``), or the
    instance itself.

    Examples
    --------
    >>> get_estimator("SelfNormalizedIPS").name, get_estimator("nips", neighbours="grid").name
    ('snips', 'neighbourhood')
    """
    if not isinstance(name, str):
        if isinstance(name, Estimator):
            return name
        raise InvalidReplayInputError(
            f"The 'estimator' parameter must be a name or an Estimator; got {type(name).__name__}."
        )
    return ESTIMATORS.create(name, **options)


for _cls, _aliases in (
    (ReplayMethod, ("replay",)),
    (InverseProbabilityWeighting, ("ips", "ipw")),
    (SelfNormalizedIPS, ("snips", "snipw")),
    (DirectMethod, ("dm",)),
    (DoublyRobust, ("dr",)),
    (LayoutNeighbourhood, ("neighbourhood", "nips", "neighborhood")),
    (WholePageMatch, ("page", "whole-page")),
    (PseudoInverse, ("pi", "pseudoinverse")),
    (MarginalizedNeighbourhood, ("page-aware", "mips")),
):
    register_estimator(_cls.long_name, cast(Callable[..., Estimator], _cls), _aliases)
