"""Logistic Thompson sampling with a Laplace approximation (Chapelle & Li 2011)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from slate.bandit._kernels import logistic_update
from slate.bandit.base import (
    check_draws,
    check_log,
    check_merge,
    check_positive,
    check_unit,
    gaussian_draw,
    merge_features,
    register_policy,
    sampled_scores,
)
from slate.bandit.batch import PageFeatures, PageScores
from slate.bandit.linear import _groups, _LinearCore, forgetting_weights
from slate.errors import InvalidProblemError
from slate.policy import argmax_choice

__all__ = ["LogisticThompson"]

F64 = NDArray[Any]


def _sigmoid(z: NDArray[Any]) -> NDArray[Any]:
    out: NDArray[Any] = 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free logistic
    return out


class LogisticThompson(_LinearCore):
    """Thompson sampling over per-image Bayesian logistic regressions (Laplace approximation).

    Image ``a`` has weights ``w_a ~ N(m_a, H_a^-1)``, the Laplace approximation of the posterior
    of a logistic regression of the quality-play label with prior ``N(0, ridge^-1 I)``
    (Chapelle & Li 2011, Algorithm 3, here with the full Hessian). ``fit`` runs Newton's method to
    the posterior mode; ``update`` takes one Newton step from the current mean per impression,
    which changes ``H_a`` by rank one (Sherman-Morrison on the covariance, no re-inversion).

    A decision samples the logit ``x . w_a`` of every candidate (independent normals, since the
    images of a row are distinct arms) and shows the largest. ``mean`` is the predictive
    probability with MacKay's probit approximation ``sigmoid(mu / sqrt(1 + pi s^2 / 8))``;
    ``adjusted`` is ``sigmoid`` of the sampled logit; propensities are Monte Carlo estimates.

    Parameters
    ----------
    ridge : float, default 1.0
        Prior precision of the weights.
    forgetting : float in (0, 1], default 1.0
        Discount of an image's data precision per new impression of it.
    max_iter : int, default 25
        Newton iterations of ``fit``.
    n_draws : int, default 1000
    dtype, seed
        As in :class:`slate.bandit.LinUCB`.

    Notes
    -----
    ``merge`` combines the two Gaussian approximations (adding the data precisions and the
    precision-weighted means); unlike the linear models this is an approximation of a joint fit,
    good when each part has plenty of data.

    References
    ----------
    O. Chapelle, L. Li. "An empirical evaluation of Thompson sampling." NeurIPS 2011.
    D. J. C. MacKay. "The evidence framework applied to classification networks." Neural
    Computation 1992.

    Examples
    --------
    >>> import numpy as np
    >>> from slate.bandit import LogisticThompson, PageFeatures
    >>> rng = np.random.default_rng(0)
    >>> arms = rng.integers(0, 2, 400)
    >>> rewards = (rng.random(400) < np.where(arms == 0, 0.7, 0.2)).astype(float)
    >>> policy = LogisticThompson(seed=0).fit(np.ones((400, 1)), arms, rewards)
    >>> policy.score(PageFeatures.from_arrays(np.ones((1, 1)), [[0, 1]])).mean.round(2).tolist()
    [[0.69, 0.18]]
    """

    name: ClassVar[str] = "logistic_ts"

    def __init__(
        self,
        *,
        ridge: float = 1.0,
        forgetting: float = 1.0,
        max_iter: int = 25,
        n_draws: int = 1000,
        dtype: str = "float64",
        seed: int | None = None,
    ) -> None:
        self.ridge = check_positive("ridge", ridge, "LogisticThompson")
        self.forgetting = check_unit("forgetting", forgetting, "LogisticThompson")
        if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
            raise InvalidProblemError(
                f"The 'max_iter' parameter of LogisticThompson must be an integer >= 1; got {max_iter!r} instead."
            )
        self.max_iter = int(max_iter)
        self.n_draws = check_draws(n_draws, "LogisticThompson")
        super().__init__(dtype=dtype, seed=seed)
        self.H_: F64 = np.zeros((0, 0, 0))
        self.n_: F64 = np.zeros(0)
        self.events_: NDArray[np.int64] = np.zeros(0, np.int64)

    def get_params(self) -> dict[str, Any]:
        """Hyperparameters."""
        return {
            "ridge": self.ridge,
            "forgetting": self.forgetting,
            "max_iter": self.max_iter,
            "n_draws": self.n_draws,
            "dtype": self.dtype,
            "seed": self.seed,
        }

    # theta_ holds the means m_a, Ainv_ the covariances H_a^-1
    def _prior_precision(self) -> float:
        return self.ridge

    def _init_features(self, d: int) -> None:
        if self.n_features_ is None:
            super()._init_features(d)
            self.H_ = np.zeros((0, d, d))
            self.n_ = np.zeros(0)
            self.events_ = np.zeros(0, np.int64)

    def _grow_stats(self, old: int, new: int) -> None:
        if new <= self.H_.shape[0]:
            return
        d = self.H_.shape[1]
        H = np.zeros((new, d, d))
        H[:old] = self.H_[:old]
        H[old:] = self.ridge * np.eye(d)
        n = np.zeros(new)
        n[:old] = self.n_[:old]
        ev = np.zeros(new, np.int64)
        ev[:old] = self.events_[:old]
        self.H_, self.n_, self.events_ = H, n, ev

    # --------------------------------------------------------------- learning
    def fit(
        self, x: ArrayLike, arms: ArrayLike, rewards: ArrayLike, sample_weight: ArrayLike | None = None
    ) -> LogisticThompson:
        """Posterior mode and Hessian per image by Newton's method, from scratch.

        With forgetting, impression ``i`` of an image is weighted by
        ``forgetting ** (later impressions of that image)``.

        Returns
        -------
        self
        """
        batch = check_log(x, arms, rewards, sample_weight)
        d = batch.x.shape[1]
        self.n_features_ = None
        self.n_arms_ = 0
        self._init_features(d)
        self._ensure_arms(int(batch.arms.max()) + 1 if batch.n else 0)
        keep = batch.weights > 0
        arms_k, xk, rk, wk = batch.arms[keep], batch.x[keep], batch.rewards[keep], batch.weights[keep]
        disc, _ = forgetting_weights(arms_k, self.forgetting)
        wk = wk * disc
        eye = self.ridge * np.eye(d)
        for a, idx in _groups(arms_k):
            xs, ys, ws = xk[idx], rk[idx], wk[idx]
            m = np.zeros(d)
            for _ in range(self.max_iter):
                p = _sigmoid(xs @ m)
                g = self.ridge * m - xs.T @ (ws * (ys - p))
                H = eye + (xs * (ws * p * (1 - p))[:, None]).T @ xs
                step = np.linalg.solve(H, g)
                m -= step
                if np.max(np.abs(step)) < 1e-10:
                    break
            p = _sigmoid(xs @ m)
            self.H_[a] = eye + (xs * (ws * p * (1 - p))[:, None]).T @ xs
            self.theta_[a] = m
            self.Ainv_[a] = np.linalg.inv(self.H_[a])
            self.n_[a] = ws.sum()
            self.events_[a] = len(idx)
        self._dirty[:] = True
        return self

    def update(
        self, x: ArrayLike, arms: ArrayLike, rewards: ArrayLike, sample_weight: ArrayLike | None = None
    ) -> LogisticThompson:
        """One Newton step per impression, in order (rank-one update of the covariance).

        Returns
        -------
        self
        """
        batch = check_log(x, arms, rewards, sample_weight, n_features=self.n_features_)
        if self.n_features_ is None:
            self._init_features(batch.x.shape[1])
        if batch.n == 0:
            return self
        self._ensure_arms(int(batch.arms.max()) + 1)
        logistic_update(
            self.H_,
            self.Ainv_,
            self.theta_,
            self.n_,
            self.events_,
            batch.x,
            batch.arms,
            batch.rewards,
            batch.weights,
            self.ridge,
            self.forgetting,
        )
        self._dirty[batch.arms] = True
        return self

    def merge(self, other: Any) -> LogisticThompson:
        """Combine with a model fitted on another part of the log (product of the Gaussians).

        Returns
        -------
        self
        """
        check_merge(self, other, LogisticThompson)
        if not merge_features(self, other):
            return self
        k = other.n_arms_
        d = self.n_features_
        assert d is not None
        eye = self.ridge * np.eye(d)
        H1 = self.H_[:k] - eye
        if self.forgetting < 1.0:
            H1 = H1 * (self.forgetting ** other.events_[:k].astype(np.float64))[:, None, None]
        H2 = other.H_[:k] - eye
        H = eye + H1 + H2
        rhs = np.einsum("aij,aj->ai", H1, self.theta_[:k]) + np.einsum("aij,aj->ai", H2, other.theta_[:k])
        self.H_[:k] = H
        self.theta_[:k] = np.linalg.solve(H, rhs[:, :, None])[:, :, 0]
        self.Ainv_[:k] = np.linalg.inv(H)
        self.n_[:k] += other.n_[:k]
        self.events_[:k] += other.events_[:k]
        self._dirty[:k] = True
        return self

    # --------------------------------------------------------------- scoring
    def score(self, page: PageFeatures, *, propensities: bool = True) -> PageScores:
        """Predictive mean, one posterior draw, its argmax and Monte Carlo propensities.

        Returns
        -------
        PageScores
        """
        mu, var, _ = self._linear_predict(page, need_var=True)
        assert var is not None
        np.maximum(var, 0, out=var)
        sd = np.sqrt(var)
        mean = _sigmoid(mu / np.sqrt(1.0 + (np.pi / 8.0) * var))
        z = self._rng.standard_normal(mu.shape, dtype=mu.dtype)
        logit = mu + sd * z
        adjusted = _sigmoid(logit)
        choice, _, _ = argmax_choice(logit, page.mask, self._rng)
        return sampled_scores(
            self.name,
            mean=mean,
            adjusted=adjusted,
            uncertainty=mean * (1.0 - mean) * sd,
            choice=choice,
            mask=page.mask,
            draw=gaussian_draw(mu, sd) if propensities else None,
            n_draws=self.n_draws,
            rng=self._mc_rng,
        )

    # --------------------------------------------------------------- persistence
    def _state(self) -> tuple[dict[str, NDArray[Any]], dict[str, Any]]:
        arrays = {"H": self.H_, "P": self.Ainv_, "m": self.theta_, "n": self.n_, "events": self.events_}
        return arrays, {"n_features": self.n_features_, "n_arms": self.n_arms_, **self._rng_state()}

    def _load(self, arrays: dict[str, NDArray[Any]], meta: dict[str, Any]) -> None:
        if meta["n_features"] is not None:
            d = int(meta["n_features"])
            self._init_features(d)
            self.H_, self.Ainv_, self.theta_, self.n_ = arrays["H"], arrays["P"], arrays["m"], arrays["n"]
            self.events_ = arrays["events"].astype(np.int64)
            cap = self.theta_.shape[0]
            self._table = np.zeros((cap, d, d + 1), self._dt)
            self._dirty = np.ones(cap, bool)
        self.n_arms_ = int(meta["n_arms"])
        self._set_rng_state(meta)


register_policy(LogisticThompson.name, LogisticThompson)
