"""Context-free baselines: uniform random and the per-image take-rate bandit (Beta-Bernoulli)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from slate.bandit.base import (
    check_draws,
    check_log,
    check_merge,
    check_page,
    check_positive,
    check_unit,
    exact_scores,
    make_rngs,
    register_policy,
    rng_state,
    sampled_scores,
    set_rng_state,
)
from slate.bandit.batch import PageFeatures, PageScores
from slate.bandit.linear import forgetting_weights
from slate.policy import argmax_choice

__all__ = ["TakeRateBandit", "UniformRandom"]

F64 = NDArray[Any]


class UniformRandom:
    """Every candidate image equally likely: the exploration baseline (exact propensities ``1/m``).

    Its ``mean`` is the overall take rate seen in the data it was fitted on (the same for every
    image), 0 before any data.

    Parameters
    ----------
    seed : int, optional

    Examples
    --------
    >>> import numpy as np
    >>> from slate.bandit import UniformRandom, PageFeatures
    >>> page = PageFeatures.from_arrays(np.zeros((1, 1)), [[0, 1, 2, -1]])
    >>> UniformRandom(seed=0).score(page).propensity.round(3).tolist()
    [[0.333, 0.333, 0.333, 0.0]]
    """

    name: ClassVar[str] = "uniform"

    def __init__(self, *, seed: int | None = None) -> None:
        self.seed = seed
        self._rng, self._mc_rng = make_rngs(seed)
        self.reward_sum_ = 0.0
        self.weight_sum_ = 0.0

    def get_params(self) -> dict[str, Any]:
        """Hyperparameters."""
        return {"seed": self.seed}

    @property
    def take_rate_(self) -> float:
        """Overall take rate of the data seen (0 before any)."""
        return self.reward_sum_ / self.weight_sum_ if self.weight_sum_ > 0 else 0.0

    def fit(self, x: ArrayLike | None, arms: ArrayLike, rewards: ArrayLike, sample_weight: ArrayLike | None = None) -> UniformRandom:
        """Record the overall take rate of a log (from scratch). ``x`` may be None."""
        batch = check_log(x, arms, rewards, sample_weight, needs_features=False)
        self.reward_sum_ = float(batch.weights @ batch.rewards)
        self.weight_sum_ = float(batch.weights.sum())
        return self

    def update(self, x: ArrayLike | None, arms: ArrayLike, rewards: ArrayLike, sample_weight: ArrayLike | None = None) -> UniformRandom:
        """Add impressions to the overall take rate."""
        batch = check_log(x, arms, rewards, sample_weight, needs_features=False)
        self.reward_sum_ += float(batch.weights @ batch.rewards)
        self.weight_sum_ += float(batch.weights.sum())
        return self

    def merge(self, other: Any) -> UniformRandom:
        """Add another partition's totals."""
        check_merge(self, other, UniformRandom)
        self.reward_sum_ += other.reward_sum_
        self.weight_sum_ += other.weight_sum_
        return self

    def score(self, page: PageFeatures, *, propensities: bool = True) -> PageScores:
        """Uniform choice among each row's images; exact propensities."""
        check_page(page, None)
        n_valid = page.mask.sum(axis=1)
        u = self._rng.random(page.mask.shape)
        adjusted = np.where(page.mask, u, -np.inf)
        choice = np.argmax(adjusted, axis=1).astype(np.int64)
        prop = page.mask / n_valid[:, None].astype(np.float64) if propensities else None
        return exact_scores(
            self.name,
            mean=np.full(page.mask.shape, self.take_rate_),
            adjusted=adjusted,
            uncertainty=np.zeros(page.mask.shape),
            choice=choice,
            mask=page.mask,
            propensity=prop,
        )

    def _state(self) -> tuple[dict[str, NDArray[Any]], dict[str, Any]]:
        return {}, {
            "reward_sum": self.reward_sum_,
            "weight_sum": self.weight_sum_,
            **rng_state(self._rng, self._mc_rng),
        }

    def _load(self, arrays: dict[str, NDArray[Any]], meta: dict[str, Any]) -> None:
        self.reward_sum_ = float(meta["reward_sum"])
        self.weight_sum_ = float(meta["weight_sum"])
        set_rng_state(self._rng, self._mc_rng, meta)


class TakeRateBandit:
    """Non-contextual take-rate bandit: a Beta-Bernoulli posterior per image, Thompson sampling.

    The "previous work" baseline of artwork selection: one take rate (quality plays per
    impression) per image, whoever the member is. Image ``a`` has posterior
    ``Beta(prior_alpha + S_a, prior_beta + F_a)`` where ``S_a``/``F_a`` are the (weighted,
    possibly discounted) quality plays and non-plays. A decision draws a take rate per candidate
    and shows the largest; propensities are Monte Carlo estimates with ``n_draws`` draws.

    Parameters
    ----------
    prior_alpha, prior_beta : float, default 1.0
    forgetting : float in (0, 1], default 1.0
        Each new impression of an image discounts that image's older ones.
    n_draws : int, default 1000
    seed : int, optional

    References
    ----------
    W. R. Thompson. "On the likelihood that one unknown probability exceeds another in view of
    the evidence of two samples." Biometrika 1933.

    Examples
    --------
    >>> import numpy as np
    >>> from slate.bandit import TakeRateBandit, PageFeatures
    >>> bandit = TakeRateBandit(seed=0).fit(None, [0] * 50 + [1] * 50, [1] * 30 + [0] * 20 + [1] * 5 + [0] * 45)
    >>> scores = bandit.score(PageFeatures.from_arrays(np.zeros((1, 1)), [[0, 1]]))
    >>> scores.mean.round(3).tolist(), scores.propensity.tolist()
    ([[0.596, 0.115]], [[1.0, 0.0]])
    """

    name: ClassVar[str] = "take_rate"

    def __init__(
        self,
        *,
        prior_alpha: float = 1.0,
        prior_beta: float = 1.0,
        forgetting: float = 1.0,
        n_draws: int = 1000,
        seed: int | None = None,
    ) -> None:
        self.prior_alpha = check_positive("prior_alpha", prior_alpha, "TakeRateBandit")
        self.prior_beta = check_positive("prior_beta", prior_beta, "TakeRateBandit")
        self.forgetting = check_unit("forgetting", forgetting, "TakeRateBandit")
        self.n_draws = check_draws(n_draws, "TakeRateBandit")
        self.seed = seed
        self._rng, self._mc_rng = make_rngs(seed)
        self.successes_: F64 = np.zeros(0)
        self.failures_: F64 = np.zeros(0)
        self.events_: NDArray[np.int64] = np.zeros(0, np.int64)

    def get_params(self) -> dict[str, Any]:
        """Hyperparameters."""
        return {
            "prior_alpha": self.prior_alpha,
            "prior_beta": self.prior_beta,
            "forgetting": self.forgetting,
            "n_draws": self.n_draws,
            "seed": self.seed,
        }

    @property
    def n_arms_(self) -> int:
        """Arms with statistics (seen or scored)."""
        return int(self.successes_.shape[0])

    def _ensure_arms(self, n_arms: int) -> None:
        old = self.n_arms_
        if n_arms > old:
            self.successes_ = np.r_[self.successes_, np.zeros(n_arms - old)]
            self.failures_ = np.r_[self.failures_, np.zeros(n_arms - old)]
            self.events_ = np.r_[self.events_, np.zeros(n_arms - old, np.int64)]

    def _add(self, arms: NDArray[np.int64], rewards: F64, weights: F64) -> None:
        keep = weights > 0
        arms, rewards, weights = arms[keep], rewards[keep], weights[keep]
        if len(arms) == 0:
            return
        self._ensure_arms(int(arms.max()) + 1)
        disc, _ = forgetting_weights(arms, self.forgetting)
        m = np.bincount(arms, minlength=self.n_arms_)
        if self.forgetting < 1.0:
            f = self.forgetting ** m.astype(np.float64)
            self.successes_ *= f
            self.failures_ *= f
        w = weights * disc
        self.successes_ += np.bincount(arms, w * rewards, minlength=self.n_arms_)
        self.failures_ += np.bincount(arms, w * (1.0 - rewards), minlength=self.n_arms_)
        self.events_ += m

    def fit(self, x: ArrayLike | None, arms: ArrayLike, rewards: ArrayLike, sample_weight: ArrayLike | None = None) -> TakeRateBandit:
        """Count quality plays and non-plays per image from a log (from scratch). ``x`` may be None."""
        batch = check_log(x, arms, rewards, sample_weight, needs_features=False)
        self.successes_ = np.zeros(0)
        self.failures_ = np.zeros(0)
        self.events_ = np.zeros(0, np.int64)
        self._add(batch.arms, batch.rewards, batch.weights)
        return self

    def update(self, x: ArrayLike | None, arms: ArrayLike, rewards: ArrayLike, sample_weight: ArrayLike | None = None) -> TakeRateBandit:
        """Add impressions (in log order when forgetting)."""
        batch = check_log(x, arms, rewards, sample_weight, needs_features=False)
        self._add(batch.arms, batch.rewards, batch.weights)
        return self

    def merge(self, other: Any) -> TakeRateBandit:
        """Add another partition's counts (``other`` is the later part when forgetting)."""
        check_merge(self, other, TakeRateBandit)
        self._ensure_arms(other.n_arms_)
        k = other.n_arms_
        if self.forgetting < 1.0:
            f = self.forgetting ** other.events_.astype(np.float64)
            self.successes_[:k] *= f
            self.failures_[:k] *= f
        self.successes_[:k] += other.successes_
        self.failures_[:k] += other.failures_
        self.events_[:k] += other.events_
        return self

    def score(self, page: PageFeatures, *, propensities: bool = True) -> PageScores:
        """Posterior mean take rate per image, one Thompson draw, Monte Carlo propensities."""
        check_page(page, None)
        self._ensure_arms(int(page.arms.max()) + 1)
        arms = np.maximum(page.arms, 0)
        a = self.prior_alpha + self.successes_[arms]
        b = self.prior_beta + self.failures_[arms]
        mean = a / (a + b)
        sd = np.sqrt(a * b / ((a + b) ** 2 * (a + b + 1.0)))
        adjusted = self._rng.beta(a, b)
        choice, _, _ = argmax_choice(adjusted, page.mask, self._rng)
        a32, b32 = a.astype(np.float32), b.astype(np.float32)

        def draw(rng: np.random.Generator, rows: slice, s: int) -> F64:
            # Beta(a, b) = Ga / (Ga + Gb) with independent gammas
            ga = rng.standard_gamma(np.broadcast_to(a32[rows], (s, *a32[rows].shape)), dtype=np.float32)
            gb = rng.standard_gamma(np.broadcast_to(b32[rows], (s, *b32[rows].shape)), dtype=np.float32)
            ga /= ga + gb
            return ga

        return sampled_scores(
            self.name,
            mean=mean,
            adjusted=adjusted,
            uncertainty=sd,
            choice=choice,
            mask=page.mask,
            draw=draw if propensities else None,
            n_draws=self.n_draws,
            rng=self._mc_rng,
        )

    def _state(self) -> tuple[dict[str, NDArray[Any]], dict[str, Any]]:
        arrays = {"successes": self.successes_, "failures": self.failures_, "events": self.events_}
        return arrays, rng_state(self._rng, self._mc_rng)

    def _load(self, arrays: dict[str, NDArray[Any]], meta: dict[str, Any]) -> None:
        self.successes_ = arrays["successes"]
        self.failures_ = arrays["failures"]
        self.events_ = arrays["events"].astype(np.int64)
        set_rng_state(self._rng, self._mc_rng, meta)


register_policy(UniformRandom.name, UniformRandom)
register_policy(TakeRateBandit.name, TakeRateBandit)
