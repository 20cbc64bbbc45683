"""Disjoint linear policies: LinUCB, linear Thompson sampling, epsilon-greedy ridge regression.

Each image (arm) ``a`` has a ridge regression of the quality-play label on the features ``x`` of
the (member, title, image) triple (Li et al. 2010, "disjoint" model):

``A_a = sum w x x^T`` and ``b_a = sum w r x`` are the *sufficient statistics* (they add up, so
fits on partitions of a log merge exactly), and with prior precision ``lam`` and prior mean
``mu0``::

    Ainv_a = (lam I + A_a)^-1,      theta_a = Ainv_a (lam mu0 + b_a),
    mean   = x . theta_a,           width   = sqrt(x^T Ainv_a x).

Without a prior ``lam`` is ``ridge`` and ``mu0 = 0``. With an :class:`ImageFeaturePrior`,
``mu0`` is a pooled ridge regression over every image's data: since ``x`` carries the image's
tags, embedding and member-by-image interactions, ``x . mu0`` is what similar images earned,
and a new image (or a new title) starts there, shrinking to its own data as its impressions
come in (``lam`` is then the prior's ``strength``, in impressions' worth).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from slate.bandit._kernels import gram_update, gram_update_one
from slate.bandit.base import (
    LoggedBatch,
    check_draws,
    check_dtype,
    check_log,
    check_merge,
    check_page,
    check_positive,
    check_unit,
    exact_scores,
    gaussian_draw,
    make_rngs,
    merge_features,
    register_policy,
    rng_state,
    sampled_scores,
    set_rng_state,
)
from slate.bandit.batch import PageFeatures, PageScores
from slate.errors import InvalidProblemError
from slate.policy import argmax_choice, tie_propensity

__all__ = ["EpsilonGreedy", "ImageFeaturePrior", "LinUCB", "LinearThompson"]

F64 = NDArray[Any]
_ROW_CHUNK = 512  # rows per matrix product in the shared-context path (keeps the product in L2)
_PAIR_CHUNK = 4096  # (row, image) pairs per gathered batch in the general path


@dataclass(frozen=True)
class ImageFeaturePrior:
    """Cold-start prior: a new image starts from what images with similar features earned.

    The prior mean of every image's coefficients is a pooled ridge regression over all images'
    impressions (refreshed every ``refresh_every`` updates and at each ``fit``/``merge``); the
    prior precision is ``strength`` (how many impressions the prior is worth per direction).

    Parameters
    ----------
    strength : float, default 20.0
        Prior precision of each image's coefficients around the pooled model.
    refresh_every : int, default 1000
        Online updates between refreshes of the pooled model.

    Examples
    --------
    >>> from slate.bandit import LinearThompson, ImageFeaturePrior
    >>> LinearThompson(prior=ImageFeaturePrior(strength=10.0)).prior.strength
    10.0
    """

    strength: float = 20.0
    refresh_every: int = 1000

    def __post_init__(self) -> None:
        check_positive("strength", self.strength, "ImageFeaturePrior")
        r = self.refresh_every
        if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or r < 1:
            raise InvalidProblemError(
                f"The 'refresh_every' parameter of ImageFeaturePrior must be an integer >= 1; got {r!r} instead."
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable parameters."""
        return asdict(self)


def _as_prior(prior: object, owner: str) -> ImageFeaturePrior | None:
    if prior is None or isinstance(prior, ImageFeaturePrior):
        return prior
    if isinstance(prior, dict):
        return ImageFeaturePrior(**prior)
    raise InvalidProblemError(
        f"The 'prior' parameter of {owner} must be an ImageFeaturePrior or None; got {type(prior).__name__} instead."
    )


def forgetting_weights(arms: NDArray[np.int64], gamma: float) -> tuple[F64, NDArray[np.int64]]:
    """Per-impression discount ``gamma ** (later impressions of the same arm)`` and per-row counts.

    Returns the discount of each row (log order) and, per row, how many impressions its arm has in
    the batch (so earlier state is discounted by ``gamma ** count``).
    """
    n = len(arms)
    if n == 0:
        return np.ones(0), np.zeros(0, np.int64)
    order = np.argsort(arms, kind="stable")
    sa = arms[order]
    starts = np.flatnonzero(np.r_[True, sa[1:] != sa[:-1]])
    sizes = np.diff(np.r_[starts, n])
    group = np.repeat(np.arange(len(starts)), sizes)
    pos = np.arange(n) - starts[group]
    later = sizes[group] - 1 - pos
    disc = np.empty(n)
    disc[order] = gamma ** later.astype(np.float64) if gamma < 1.0 else 1.0
    count = np.empty(n, np.int64)
    count[order] = sizes[group]
    return disc, count


def _groups(arms: NDArray[np.int64]) -> list[tuple[int, NDArray[np.int64]]]:
    """``[(arm, row indices in log order)]`` for each arm present."""
    if len(arms) == 0:
        return []
    order = np.argsort(arms, kind="stable")
    sa = arms[order]
    cuts = np.flatnonzero(sa[1:] != sa[:-1]) + 1
    return [(int(sa[idx[0]]), order[idx]) for idx in np.split(np.arange(len(arms)), cuts)]


class _LinearCore:
    """Per-arm Gaussian scores ``x . theta_a`` with covariance ``Ainv_a``, grown on demand.

    Subclasses own the statistics; this class owns the scoring tables and the scoring paths.
    """

    name: ClassVar[str] = ""

    def __init__(self, *, dtype: str, seed: int | None) -> None:
        self.dtype = dtype
        self.seed = seed
        self._dt = check_dtype(dtype, type(self).__name__)
        self._rng, self._mc_rng = make_rngs(seed)
        self.n_features_: int | None = None
        self.n_arms_: int = 0
        self.Ainv_: F64 = np.zeros((0, 0, 0))
        self.theta_: F64 = np.zeros((0, 0))
        self._table: NDArray[Any] = np.zeros((0, 0, 0), self._dt)
        self._dirty: NDArray[np.bool_] = np.zeros(0, bool)

    # --------------------------------------------------------------- hooks for subclasses
    def _prior_precision(self) -> float:
        raise NotImplementedError

    def _prior_mean(self) -> F64:
        assert self.n_features_ is not None
        return np.zeros(self.n_features_)

    def _grow_stats(self, old: int, new: int) -> None:
        """Grow the subclass's statistics arrays from ``old`` to ``new`` arms."""

    # --------------------------------------------------------------- storage
    @property
    def _capacity(self) -> int:
        return int(self.theta_.shape[0])

    def _init_features(self, d: int) -> None:
        if self.n_features_ is None:
            self.n_features_ = int(d)
            self.Ainv_ = np.zeros((0, d, d))
            self.theta_ = np.zeros((0, d))
            self._table = np.zeros((0, d, d + 1), self._dt)
            self._dirty = np.zeros(0, bool)

    def _ensure_arms(self, n_arms: int) -> None:
        """Make room for arms ``0..n_arms-1``; new arms start at the prior."""
        assert self.n_features_ is not None
        if n_arms > self.n_arms_:
            self.n_arms_ = int(n_arms)
        old = self._capacity
        if n_arms <= old:
            return
        new = max(int(n_arms), 2 * old, 8)
        d = self.n_features_
        lam = self._prior_precision()
        Ainv = np.zeros((new, d, d))
        Ainv[:old] = self.Ainv_
        Ainv[old:] = np.eye(d) / lam
        theta = np.zeros((new, d))
        theta[:old] = self.theta_
        theta[old:] = self._prior_mean()
        table = np.zeros((new, d, d + 1), self._dt)
        table[:old] = self._table
        dirty = np.ones(new, bool)
        dirty[:old] = self._dirty
        self.Ainv_, self.theta_, self._table, self._dirty = Ainv, theta, table, dirty
        self._grow_stats(old, new)

    def _scoring_table(self) -> NDArray[Any]:
        """``[Ainv_a | theta_a]`` per arm in the scoring dtype, refreshed for arms that changed."""
        idx = np.flatnonzero(self._dirty)
        if len(idx):
            d = self.Ainv_.shape[1]
            self._table[idx, :, :d] = self.Ainv_[idx]
            self._table[idx, :, d] = self.theta_[idx]
            self._dirty[idx] = False
        return self._table

    # --------------------------------------------------------------- scoring
    def _linear_predict(
        self, page: PageFeatures, need_var: bool, alpha: float | None = None
    ) -> tuple[NDArray[Any], NDArray[Any] | None, NDArray[Any] | None]:
        """``x . theta`` and (optionally) ``x^T Ainv x`` for every (row, image); 0 on padding.

        With ``alpha`` the second array holds the width ``sqrt(x^T Ainv x)`` instead and the third
        the upper confidence bound ``mean + alpha * width`` (computed chunk by chunk while the
        chunk is in cache).
        """
        mu, var, adj, done = self._predict_paths(page, need_var or alpha is not None, alpha)
        if alpha is not None and not done:
            assert var is not None
            np.sqrt(np.maximum(var, 0, out=var), out=var)
            adj = mu + np.asarray(alpha, mu.dtype) * var
        return mu, var, adj

    def _predict_paths(
        self, page: PageFeatures, need_var: bool, alpha: float | None
    ) -> tuple[NDArray[Any], NDArray[Any] | None, NDArray[Any] | None, bool]:
        if self.n_features_ is None:
            self._init_features(page.n_features)
        check_page(page, self.n_features_)
        self._ensure_arms(int(page.arms.max()) + 1)
        table = self._scoring_table()
        dt = self._dt
        n, k_img, d = page.n_rows, page.n_images, page.n_features
        mu = np.zeros((n, k_img), dt)
        var = np.zeros((n, k_img), dt) if need_var else None
        col_arms = page.arms[0]
        same_cols = n == 1 or bool((page.arms == col_arms[None, :]).all())
        if same_cols:
            cols = np.flatnonzero(col_arms >= 0)
            all_cols = len(cols) == k_img
            tab = table[col_arms[cols]]  # (kc, d, d+1)
            kc = len(cols)
            if page.context is not None:
                X = page.context if page.context.dtype == dt else page.context.astype(dt)
                # one product per row chunk: [theta_1 .. theta_K | Ainv_1 .. Ainv_K], means first
                parts = [tab[:, :, d].T]
                if need_var:
                    parts.append(tab[:, :, :d].transpose(1, 0, 2).reshape(d, kc * d))
                ww = np.ascontiguousarray(np.concatenate(parts, axis=1))
                buf = np.empty((_ROW_CHUNK, ww.shape[1]), dt)
                fuse = alpha is not None and all_cols
                adj = np.empty((n, k_img), dt) if fuse else None
                a_dt = np.asarray(alpha if alpha is not None else 0.0, dt)
                for s in range(0, n, _ROW_CHUNK):
                    e = min(n, s + _ROW_CHUNK)
                    xs = X[s:e]
                    out = np.matmul(xs, ww, out=buf[: e - s])
                    if all_cols:
                        mu[s:e] = out[:, :kc]
                    else:
                        mu[s:e, cols] = out[:, :kc]
                    if need_var:
                        quad = out[:, kc:].reshape(e - s, kc, d)
                        if all_cols:
                            v = np.einsum("nkd,nd->nk", quad, xs, out=var[s:e])  # type: ignore[index]
                            if fuse:
                                np.sqrt(np.maximum(v, 0, out=v), out=v)
                                np.multiply(v, a_dt, out=adj[s:e])  # type: ignore[index]
                                adj[s:e] += mu[s:e]  # type: ignore[index]
                        else:
                            var[s:e, cols] = np.einsum("nkd,nd->nk", quad, xs)  # type: ignore[index]
                return mu, var, adj, fuse
            else:
                for j, c in enumerate(cols):
                    w_c = tab[j] if need_var else tab[j, :, d]
                    for s in range(0, n, 4 * _ROW_CHUNK):
                        e = min(n, s + 4 * _ROW_CHUNK)
                        xs = np.ascontiguousarray(page.x[s:e, c, :], dtype=dt)
                        if need_var:
                            xa = xs @ w_c
                            mu[s:e, c] = xa[:, d]
                            var[s:e, c] = np.einsum("nd,nd->n", xa[:, :d], xs)  # type: ignore[index]
                        else:
                            mu[s:e, c] = xs @ w_c
            return mu, var, None, False
        # general path: arms differ between rows
        rr, kk = np.nonzero(page.mask)
        arms = page.arms[rr, kk]
        uniq, inverse = np.unique(arms, return_inverse=True)
        if len(uniq) * 64 <= len(arms):  # few arms with many rows each: one product per arm
            for a, idx in _groups(inverse.astype(np.int64)):
                xs = np.ascontiguousarray(page.x[rr[idx], kk[idx]], dtype=dt)
                arm = int(uniq[a])
                if need_var:
                    xa = xs @ table[arm]
                    mu[rr[idx], kk[idx]] = xa[:, d]
                    var[rr[idx], kk[idx]] = np.einsum("nd,nd->n", xa[:, :d], xs)  # type: ignore[index]
                else:
                    mu[rr[idx], kk[idx]] = xs @ table[arm, :, d]
        else:  # many arms with few rows each: gather each pair's table
            for s in range(0, len(arms), _PAIR_CHUNK):
                e = min(len(arms), s + _PAIR_CHUNK)
                xs = np.ascontiguousarray(page.x[rr[s:e], kk[s:e]], dtype=dt)
                if need_var:
                    xa = np.einsum("pd,pde->pe", xs, table[arms[s:e]])
                    mu[rr[s:e], kk[s:e]] = xa[:, d]
                    var[rr[s:e], kk[s:e]] = np.einsum("pd,pd->p", xa[:, :d], xs)  # type: ignore[index]
                else:
                    mu[rr[s:e], kk[s:e]] = np.einsum("pd,pd->p", xs, table[arms[s:e], :, d])
        return mu, var, None, False

    # --------------------------------------------------------------- persistence hooks
    def _rng_state(self) -> dict[str, Any]:
        return rng_state(self._rng, self._mc_rng)

    def _set_rng_state(self, meta: dict[str, Any]) -> None:
        set_rng_state(self._rng, self._mc_rng, meta)


class _DisjointRidge(_LinearCore):
    """Ridge statistics per arm, batch fit, rank-one online updates, merging, forgetting."""

    def __init__(
        self,
        *,
        ridge: float,
        forgetting: float,
        prior: ImageFeaturePrior | dict[str, Any] | None,
        dtype: str,
        seed: int | None,
    ) -> None:
        owner = type(self).__name__
        self.ridge = check_positive("ridge", ridge, owner)
        self.forgetting = check_unit("forgetting", forgetting, owner)
        self.prior = _as_prior(prior, owner)
        self._lam = self.prior.strength if self.prior is not None else self.ridge
        super().__init__(dtype=dtype, seed=seed)
        self.A_: F64 = np.zeros((0, 0, 0))
        self.b_: F64 = np.zeros((0, 0))
        self.n_: F64 = np.zeros(0)
        self.events_: NDArray[np.int64] = np.zeros(0, np.int64)
        self.prior_mean_: F64 = np.zeros(0)
        self._since_refresh = 0

    def get_params(self) -> dict[str, Any]:
        """Hyperparameters."""
        raise NotImplementedError

    def _common_params(self) -> dict[str, Any]:
        return {
            "ridge": self.ridge,
            "forgetting": self.forgetting,
            "prior": None if self.prior is None else self.prior.to_dict(),
            "dtype": self.dtype,
            "seed": self.seed,
        }

    # --------------------------------------------------------------- statistics
    def _prior_precision(self) -> float:
        return self._lam

    def _prior_mean(self) -> F64:
        return self.prior_mean_  # zeros without a prior

    def _init_features(self, d: int) -> None:
        if self.n_features_ is None:
            super()._init_features(d)
            self.A_ = np.zeros((0, d, d))
            self.b_ = np.zeros((0, d))
            self.n_ = np.zeros(0)
            self.events_ = np.zeros(0, np.int64)
            self.prior_mean_ = np.zeros(d)

    def _grow_stats(self, old: int, new: int) -> None:
        if new <= self.A_.shape[0]:
            return
        d = self.A_.shape[1]
        A = np.zeros((new, d, d))
        A[:old] = self.A_[:old]
        b = np.zeros((new, d))
        b[:old] = self.b_[:old]
        n = np.zeros(new)
        n[:old] = self.n_[:old]
        ev = np.zeros(new, np.int64)
        ev[:old] = self.events_[:old]
        self.A_, self.b_, self.n_, self.events_ = A, b, n, ev

    def _reset(self, d: int) -> None:
        self.n_features_ = None
        self.n_arms_ = 0
        self._init_features(d)
        self._since_refresh = 0

    def _accumulate(self, batch: LoggedBatch) -> None:
        """Add a log to the statistics (vectorised per arm), discounting with forgetting."""
        keep = batch.weights > 0
        arms, x, r, w = batch.arms[keep], batch.x[keep], batch.rewards[keep], batch.weights[keep]
        gamma = self.forgetting
        disc, _ = forgetting_weights(arms, gamma)
        wd = w * disc
        for a, idx in _groups(arms):
            m = len(idx)
            if gamma < 1.0:
                f = gamma**m
                self.A_[a] *= f
                self.b_[a] *= f
                self.n_[a] *= f
            xs = x[idx]
            wx = xs * wd[idx, None]
            self.A_[a] += wx.T @ xs
            self.b_[a] += wx.T @ r[idx]
            self.n_[a] += wd[idx].sum()
            self.events_[a] += m

    def _refresh_prior(self) -> None:
        if self.prior is None or self.n_features_ is None:
            return
        d = self.n_features_
        A = self.A_[: self.n_arms_].sum(axis=0) + self.ridge * np.eye(d)
        b = self.b_[: self.n_arms_].sum(axis=0)
        self.prior_mean_ = np.linalg.solve(A, b)
        lam = self._prior_precision()
        self.theta_ = np.einsum("aij,aj->ai", self.Ainv_, self.b_ + lam * self.prior_mean_[None, :])
        self._dirty[:] = True
        self._since_refresh = 0

    def _refresh_all(self) -> None:
        """Recompute every inverse and coefficient vector from the statistics."""
        assert self.n_features_ is not None
        d = self.n_features_
        lam = self._prior_precision()
        if self._capacity:
            self.Ainv_ = np.linalg.inv(self.A_ + lam * np.eye(d)[None])
        if self.prior is not None:
            self._refresh_prior()
        else:
            self.theta_ = np.einsum("aij,aj->ai", self.Ainv_, self.b_)
        self._dirty[:] = True

    # --------------------------------------------------------------- learning API
    def fit(
        self, x: ArrayLike, arms: ArrayLike, rewards: ArrayLike, sample_weight: ArrayLike | None = None
    ) -> Any:
        """Fit from a log, from scratch.

        Parameters
        ----------
        x : array_like (n, n_features)
            Features of the image that was shown (see :meth:`PageFeatures.chosen`).
        arms : array_like (n,) of int
            Arm (image) index that was shown.
        rewards : array_like (n,) in [0, 1]
            Quality-play label.
        sample_weight : array_like (n,), optional
            Non-negative weights (e.g. inverse propensities of the logging policy).

        Returns
        -------
        self
        """
        batch = check_log(x, arms, rewards, sample_weight)
        self._reset(batch.x.shape[1])
        self._ensure_arms(int(batch.arms.max()) + 1 if batch.n else 0)
        self._accumulate(batch)
        self._refresh_all()
        return self

    def update(
        self, x: ArrayLike, arms: ArrayLike, rewards: ArrayLike, sample_weight: ArrayLike | None = None
    ) -> Any:
        """Add impressions one by one, in order (rank-one Sherman-Morrison updates).

        A single impression may be given unbatched (``x`` of shape ``(n_features,)``, an int arm
        and a float reward). Equivalent to a ``fit`` on the whole history (up to rounding).

        Returns
        -------
        self
        """
        if (
            sample_weight is None
            and type(x) is np.ndarray
            and x.ndim == 1
            and x.dtype == np.float64
            and x.shape[0] == self.n_features_
            and isinstance(arms, (int, np.integer))
            and not isinstance(arms, (bool, np.bool_))
            and 0 <= arms < self.n_arms_
            and isinstance(rewards, (float, int, np.floating, np.integer))
            and gram_update_one(
                self.A_, self.b_, self.n_, self.events_, self.Ainv_, self.theta_, self._dirty,
                x, int(arms), float(rewards), self._lam, self.prior_mean_, self.forgetting,
            )
        ):  # fmt: skip
            # fast path: one impression of a known image, validated inside the kernel
            if self.prior is not None:
                self._since_refresh += 1
                if self._since_refresh >= self.prior.refresh_every:
                    self._refresh_prior()
            return self
        batch = check_log(x, arms, rewards, sample_weight, n_features=self.n_features_)
        if self.n_features_ is None:
            self._init_features(batch.x.shape[1])
        n = batch.arms.shape[0]
        if n == 0:
            return self
        top = (int(batch.arms[0]) if n == 1 else int(batch.arms.max())) + 1
        if top > self.n_arms_:
            self._ensure_arms(top)
        gram_update(
            self.A_,
            self.b_,
            self.n_,
            self.events_,
            self.Ainv_,
            self.theta_,
            batch.x,
            batch.arms,
            batch.rewards,
            batch.weights,
            self._lam,
            self.prior_mean_,
            self.forgetting,
            True,
        )
        if n == 1:
            self._dirty[top - 1] = True
        else:
            self._dirty[batch.arms] = True
        if self.prior is not None:
            self._since_refresh += batch.n
            if self._since_refresh >= self.prior.refresh_every:
                self._refresh_prior()
        return self

    def merge(self, other: Any) -> Any:
        """Add the statistics of ``other`` (same class and hyperparameters), fitted on another part of the log.

        Without forgetting the result equals a fit on both parts. With forgetting ``other`` is
        taken as the *later* part: this policy's statistics of each image are discounted by
        ``forgetting ** (other's impressions of that image)`` first.

        Returns
        -------
        self
        """
        check_merge(self, other)
        if not merge_features(self, other):
            return self
        k = other.n_arms_
        if self.forgetting < 1.0:
            f = self.forgetting ** other.events_[:k].astype(np.float64)
            self.A_[:k] *= f[:, None, None]
            self.b_[:k] *= f[:, None]
            self.n_[:k] *= f
        self.A_[:k] += other.A_[:k]
        self.b_[:k] += other.b_[:k]
        self.n_[:k] += other.n_[:k]
        self.events_[:k] += other.events_[:k]
        self._refresh_all()
        return self

    # --------------------------------------------------------------- persistence
    def _state(self) -> tuple[dict[str, NDArray[Any]], dict[str, Any]]:
        arrays = {
            "A": self.A_,
            "b": self.b_,
            "n": self.n_,
            "events": self.events_,
            "Ainv": self.Ainv_,
            "theta": self.theta_,
            "prior_mean": self.prior_mean_,
        }
        meta = {
            "n_features": self.n_features_,
            "n_arms": self.n_arms_,
            "since_refresh": self._since_refresh,
            **self._rng_state(),
        }
        return arrays, meta

    def _load(self, arrays: dict[str, NDArray[Any]], meta: dict[str, Any]) -> None:
        if meta["n_features"] is not None:
            self._init_features(int(meta["n_features"]))
            self.A_, self.b_, self.n_ = arrays["A"], arrays["b"], arrays["n"]
            self.events_ = arrays["events"].astype(np.int64)
            self.Ainv_, self.theta_ = arrays["Ainv"], arrays["theta"]
            self.prior_mean_ = arrays["prior_mean"]
            cap, d = self.theta_.shape
            self._table = np.zeros((cap, d, d + 1), self._dt)
            self._dirty = np.ones(cap, bool)
        self.n_arms_ = int(meta["n_arms"])
        self._since_refresh = int(meta["since_refresh"])
        self._set_rng_state(meta)


class LinUCB(_DisjointRidge):
    """LinUCB with disjoint linear models, one per image (Li et al. 2010, Algorithm 1).

    Chooses, per row, the image with the largest upper confidence bound
    ``x . theta_a + alpha * sqrt(x^T Ainv_a x)``; ties are split uniformly at random, so the
    propensities are exact (1 on the unique argmax, ``1/m`` on ``m`` tied maxima).

    Parameters
    ----------
    alpha : float, default 1.0
        Width multiplier of the confidence bound.
    ridge : float, default 1.0
        Prior precision ``lam`` of each image's coefficients (``A_a`` starts at ``lam I``).
    forgetting : float in (0, 1], default 1.0
        Each new impression of an image discounts that image's older ones by this factor.
    prior : ImageFeaturePrior, optional
        Cold-start prior from image features (see :class:`ImageFeaturePrior`).
    dtype : {"float64", "float32"}, default "float64"
        Scoring precision (statistics are always float64).
    seed : int, optional
        Seeds the tie-breaking.

    Attributes
    ----------
    A_, b_ : ndarray (capacity, d, d), (capacity, d)
        Sufficient statistics (data only) per arm.
    Ainv_, theta_ : ndarray
        ``(lam I + A_)^-1`` and the coefficient vectors.
    n_ : ndarray (capacity,)
        Weighted impressions per arm.
    n_arms_, n_features_ : int

    References
    ----------
    L. Li, W. Chu, J. Langford, R. E. Schapire. "A contextual-bandit approach to personalized
    news article recommendation." WWW 2010.

    Examples
    --------
    >>> import numpy as np
    >>> from slate.bandit import LinUCB, PageFeatures
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(500, 3)); arms = rng.integers(0, 2, 500)
    >>> rewards = (rng.random(500) < np.where(arms == 1, 0.6, 0.2)).astype(float)
    >>> policy = LinUCB(alpha=0.1, seed=0).fit(np.c_[np.ones(500), x], arms, rewards)
    >>> page = PageFeatures.from_arrays(np.c_[np.ones(1), np.zeros((1, 3))], [[0, 1]])
    >>> scores = policy.score(page)
    >>> int(scores.choice[0]), scores.propensity.tolist()
    (1, [[0.0, 1.0]])
    """

    name: ClassVar[str] = "linucb"

    def __init__(
        self,
        alpha: float = 1.0,
        *,
        ridge: float = 1.0,
        forgetting: float = 1.0,
        prior: ImageFeaturePrior | dict[str, Any] | None = None,
        dtype: str = "float64",
        seed: int | None = None,
    ) -> None:
        self.alpha = check_positive("alpha", alpha, "LinUCB", allow_zero=True)
        super().__init__(ridge=ridge, forgetting=forgetting, prior=prior, dtype=dtype, seed=seed)

    def get_params(self) -> dict[str, Any]:
        """Hyperparameters."""
        return {"alpha": self.alpha, **self._common_params()}

    def score(self, page: PageFeatures, *, propensities: bool = True) -> PageScores:
        """Score a page: mean, upper confidence bound, choice, exact propensities.

        Parameters
        ----------
        page : PageFeatures
        propensities : bool, default True

        Returns
        -------
        PageScores
        """
        mu, sd, adjusted = self._linear_predict(page, need_var=True, alpha=self.alpha)
        assert sd is not None and adjusted is not None
        choice, is_max, count = argmax_choice(adjusted, page.mask, self._rng)
        prop = tie_propensity(is_max, count) if propensities else None
        return exact_scores(
            self.name, mean=mu, adjusted=adjusted, uncertainty=sd, choice=choice, mask=page.mask, propensity=prop
        )


class LinearThompson(_DisjointRidge):
    """Linear Thompson sampling with disjoint per-image models (Agrawal & Goyal 2013).

    Each decision draws ``theta_a ~ N(theta_hat_a, noise^2 Ainv_a)`` for every candidate image
    and picks the largest ``x . theta_a``. Images of a row are distinct arms, so their sampled
    scores are independent normals ``N(x . theta_hat_a, noise^2 x^T Ainv_a x)`` and the policy is
    sampled exactly from those marginals. Propensities (the probability of being the argmax) have
    no closed form for more than two images and are estimated by Monte Carlo with ``n_draws``
    draws; ``propensity_se`` reports ``sqrt(p (1 - p) / n_draws)``.

    Parameters
    ----------
    noise : float, default 0.5
        Posterior scale ``v`` (about the standard deviation of the label).
    ridge, forgetting, prior, dtype, seed
        As in :class:`LinUCB`.
    n_draws : int, default 1000
        Monte Carlo draws for the propensities.

    References
    ----------
    S. Agrawal, N. Goyal. "Thompson sampling for contextual bandits with linear payoffs." ICML 2013.
    O. Chapelle, L. Li. "An empirical evaluation of Thompson sampling." NeurIPS 2011.

    Examples
    --------
    >>> import numpy as np
    >>> from slate.bandit import LinearThompson, PageFeatures
    >>> policy = LinearThompson(seed=1, n_draws=2000)
    >>> scores = policy.score(PageFeatures.from_arrays(np.ones((1, 2)), [[0, 1]]))
    >>> scores.n_draws, np.round(scores.propensity.sum(), 6)
    (2000, np.float64(1.0))
    """

    name: ClassVar[str] = "linear_ts"

    def __init__(
        self,
        noise: float = 0.5,
        *,
        ridge: float = 1.0,
        forgetting: float = 1.0,
        prior: ImageFeaturePrior | dict[str, Any] | None = None,
        n_draws: int = 1000,
        dtype: str = "float64",
        seed: int | None = None,
    ) -> None:
        self.noise = check_positive("noise", noise, "LinearThompson")
        self.n_draws = check_draws(n_draws, "LinearThompson")
        super().__init__(ridge=ridge, forgetting=forgetting, prior=prior, dtype=dtype, seed=seed)

    def get_params(self) -> dict[str, Any]:
        """Hyperparameters."""
        return {"noise": self.noise, "n_draws": self.n_draws, **self._common_params()}

    def score(self, page: PageFeatures, *, propensities: bool = True) -> PageScores:
        """Score a page: mean, one posterior draw, its argmax, Monte Carlo propensities.

        Returns
        -------
        PageScores
        """
        mu, var, _ = self._linear_predict(page, need_var=True)
        assert var is not None
        sd = np.sqrt(np.maximum(var, 0, out=var), out=var)
        sd *= np.asarray(self.noise, sd.dtype)
        z = self._rng.standard_normal(mu.shape, dtype=mu.dtype)
        adjusted = mu + sd * z
        choice, _, _ = argmax_choice(adjusted, page.mask, self._rng)
        return sampled_scores(
            self.name,
            mean=mu,
            adjusted=adjusted,
            uncertainty=sd,
            choice=choice,
            mask=page.mask,
            draw=gaussian_draw(mu, sd) if propensities else None,
            n_draws=self.n_draws,
            rng=self._mc_rng,
        )


class EpsilonGreedy(_DisjointRidge):
    """Epsilon-greedy over a supervised model (per-image ridge regression of the label).

    With probability ``1 - epsilon`` a row shows the image with the highest predicted
    quality-play probability (ties split uniformly), otherwise a uniformly random image, so the
    propensity is exact: ``(1 - epsilon) [k is a maximum] / #maxima + epsilon / #images``.

    Parameters
    ----------
    epsilon : float in [0, 1], default 0.05
    ridge, forgetting, prior, dtype, seed
        As in :class:`LinUCB`.

    Examples
    --------
    >>> import numpy as np
    >>> from slate.bandit import EpsilonGreedy, PageFeatures
    >>> policy = EpsilonGreedy(epsilon=0.1, seed=0).fit(np.ones((4, 1)), [0, 0, 1, 1], [1, 1, 0, 0])
    >>> policy.score(PageFeatures.from_arrays(np.ones((1, 1)), [[0, 1]])).propensity.round(3).tolist()
    [[0.95, 0.05]]
    """

    name: ClassVar[str] = "epsilon_greedy"

    def __init__(
        self,
        epsilon: float = 0.05,
        *,
        ridge: float = 1.0,
        forgetting: float = 1.0,
        prior: ImageFeaturePrior | dict[str, Any] | None = None,
        dtype: str = "float64",
        seed: int | None = None,
    ) -> None:
        self.epsilon = check_unit("epsilon", epsilon, "EpsilonGreedy", low_open=False)
        super().__init__(ridge=ridge, forgetting=forgetting, prior=prior, dtype=dtype, seed=seed)

    def get_params(self) -> dict[str, Any]:
        """Hyperparameters."""
        return {"epsilon": self.epsilon, **self._common_params()}

    def score(self, page: PageFeatures, *, propensities: bool = True) -> PageScores:
        """Score a page: predicted mean, greedy-or-random choice, exact propensities.

        Returns
        -------
        PageScores
        """
        mu, _, _ = self._linear_predict(page, need_var=False)
        choice, is_max, count = argmax_choice(mu, page.mask, self._rng)
        n_valid = page.mask.sum(axis=1)
        explore = self._rng.random(page.n_rows) < self.epsilon
        if explore.any():
            pick = (self._rng.random(int(explore.sum())) * n_valid[explore]).astype(np.int64)
            order = np.cumsum(page.mask[explore], axis=1) - 1
            choice[explore] = np.argmax(page.mask[explore] & (order == pick[:, None]), axis=1)
        prop = None
        if propensities:
            prop = (1.0 - self.epsilon) * tie_propensity(is_max, count) + self.epsilon * (
                page.mask / n_valid[:, None].astype(np.float64)
            )
        return exact_scores(
            self.name,
            mean=mu.copy(),
            adjusted=mu,
            uncertainty=np.zeros_like(mu),
            choice=choice,
            mask=page.mask,
            propensity=prop,
        )


register_policy(LinUCB.name, LinUCB)
register_policy(LinearThompson.name, LinearThompson)
register_policy(EpsilonGreedy.name, EpsilonGreedy)
