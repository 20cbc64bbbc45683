"""LinUCB with a hybrid model: coefficients shared by all images plus per-image ones (Li et al. 2010)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from slate.bandit._kernels import gram_update
from slate.bandit.base import (
    check_dtype,
    check_log,
    check_merge,
    check_page,
    check_positive,
    exact_scores,
    make_rngs,
    merge_features,
    register_policy,
    rng_state,
    set_rng_state,
)
from slate.bandit.batch import PageFeatures, PageScores
from slate.bandit.linear import _groups
from slate.errors import InvalidProblemError
from slate.policy import argmax_choice, tie_propensity

__all__ = ["HybridLinUCB"]

F64 = NDArray[Any]


def _columns(value: Sequence[int] | None, d: int, field: str) -> NDArray[np.int64]:
    if value is None:
        return np.arange(d, dtype=np.int64)
    cols = np.asarray(value)
    if cols.ndim != 1 or len(cols) == 0 or cols.dtype == bool or not np.issubdtype(cols.dtype, np.integer):
        raise InvalidProblemError(f"The '{field}' parameter of HybridLinUCB must be a non-empty list of column indices; got {value!r} instead.")
    if cols.min() < 0 or cols.max() >= d or len(np.unique(cols)) != len(cols):
        raise InvalidProblemError(
            f"The '{field}' parameter of HybridLinUCB must list distinct columns in 0..{d - 1}; got {cols.tolist()} instead."
        )
    return cols.astype(np.int64)


class HybridLinUCB:
    """LinUCB with shared and per-image coefficients (Li et al. 2010, Algorithm 2).

    The score of image ``a`` is ``z . beta + x_a . theta_a``: ``z`` (the ``shared_columns`` of
    the feature vector, e.g. member-by-image interactions and image tags) has coefficients
    ``beta`` learned from every image's impressions, ``x_a`` (the ``arm_columns``, e.g. the member
    context) has per-image coefficients. This is ridge regression on the joint parameter vector
    ``(beta, theta_1, ..., theta_K)``, solved by block elimination::

        A0   = ridge I + sum z z^T - sum_a B_a^T A_a^-1 B_a,   beta    = A0^-1 (c - sum_a B_a^T A_a^-1 b_a)
        A_a  = ridge I + sum_a x x^T,  B_a = sum_a x z^T,      theta_a = A_a^-1 (b_a - B_a beta)
        s    = (z - B_a^T A_a^-1 x)^T A0^-1 (z - B_a^T A_a^-1 x) + x^T A_a^-1 x

    and chooses the largest ``mean + alpha sqrt(s)`` (ties split at random; exact propensities).
    Per impression ``A_a^-1`` gets a Sherman-Morrison update; the shared block ``A0`` (of size
    ``len(shared_columns)``) is re-solved lazily before the next scoring. There is no forgetting
    option (the shared block mixes every image's history).

    Parameters
    ----------
    alpha : float, default 1.0
    ridge : float, default 1.0
    shared_columns, arm_columns : sequence of int, optional
        Feature columns forming ``z`` and ``x`` (default: all columns for both).
    dtype : {"float64", "float32"}, default "float64"
    seed : int, optional

    References
    ----------
    L. Li, W. Chu, J. Langford, R. E. Schapire. "A contextual-bandit approach to personalized
    news article recommendation." WWW 2010.

    Examples
    --------
    >>> import numpy as np
    >>> from slate.bandit import HybridLinUCB, PageFeatures
    >>> rng = np.random.default_rng(0)
    >>> x = np.c_[np.ones(300), rng.normal(size=(300, 2))]; arms = rng.integers(0, 3, 300)
    >>> policy = HybridLinUCB(alpha=0.5, shared_columns=[1, 2], arm_columns=[0], seed=0)
    >>> policy = policy.fit(x, arms, (x[:, 1] > 0).astype(float))
    >>> policy.score(PageFeatures.from_arrays(x[:2], [[0, 1, 2], [0, 1, 2]])).propensity.sum(axis=1).tolist()
    [1.0, 1.0]
    """

    name: ClassVar[str] = "hybrid_linucb"

    def __init__(
        self,
        alpha: float = 1.0,
        *,
        ridge: float = 1.0,
        shared_columns: Sequence[int] | None = None,
        arm_columns: Sequence[int] | None = None,
        dtype: str = "float64",
        seed: int | None = None,
    ) -> None:
        self.alpha = check_positive("alpha", alpha, "HybridLinUCB", allow_zero=True)
        self.ridge = check_positive("ridge", ridge, "HybridLinUCB")
        self.shared_columns = None if shared_columns is None else [int(c) for c in shared_columns]
        self.arm_columns = None if arm_columns is None else [int(c) for c in arm_columns]
        self.dtype = dtype
        self._dt = check_dtype(dtype, "HybridLinUCB")
        self.seed = seed
        self._rng, self._mc_rng = make_rngs(seed)
        self.n_features_: int | None = None
        self.n_arms_ = 0
        self._zc = np.zeros(0, np.int64)
        self._xc = np.zeros(0, np.int64)
        self._stale = True

    def get_params(self) -> dict[str, Any]:
        """Hyperparameters."""
        return {
            "alpha": self.alpha,
            "ridge": self.ridge,
            "shared_columns": self.shared_columns,
            "arm_columns": self.arm_columns,
            "dtype": self.dtype,
            "seed": self.seed,
        }

    # --------------------------------------------------------------- storage
    def _init_features(self, d: int) -> None:
        self.n_features_ = int(d)
        self._zc = _columns(self.shared_columns, d, "shared_columns")
        self._xc = _columns(self.arm_columns, d, "arm_columns")
        k, da = len(self._zc), len(self._xc)
        self.n_arms_ = 0
        self.A_ = np.zeros((0, da, da))
        self.B_ = np.zeros((0, da, k))
        self.b_ = np.zeros((0, da))
        self.n_ = np.zeros(0)
        self.events_ = np.zeros(0, np.int64)
        self.Ainv_: F64 = np.zeros((0, da, da))
        self.theta_: F64 = np.zeros((0, da))
        self.Z_ = np.zeros((k, k))
        self.c_ = np.zeros(k)
        self._D = np.zeros((0, da, k))  # A_a^-1 B_a
        self._C = np.zeros((0, k, k))  # B_a^T A_a^-1 B_a
        self._e = np.zeros((0, k))  # B_a^T A_a^-1 b_a
        self.beta_: F64 = np.zeros(k)
        self.A0inv_: F64 = np.eye(k) / self.ridge
        self._table = np.zeros((0, da, da + k + 1), self._dt)  # [Ainv | D | theta] per arm
        self._stale = True

    def _ensure_arms(self, n_arms: int) -> None:
        old = self.A_.shape[0]
        self.n_arms_ = max(self.n_arms_, int(n_arms))
        if n_arms <= old:
            return
        new = max(int(n_arms), 2 * old, 8)
        da, k = self.B_.shape[1], self.B_.shape[2]

        def grow(arr: NDArray[Any], fill: NDArray[Any] | float = 0.0) -> NDArray[Any]:
            out = np.zeros((new, *arr.shape[1:]), arr.dtype)
            out[:old] = arr
            out[old:] = fill
            return out

        self.A_, self.B_, self.b_ = grow(self.A_), grow(self.B_), grow(self.b_)
        self.n_, self.events_ = grow(self.n_), grow(self.events_)
        self.Ainv_ = grow(self.Ainv_, np.eye(da) / self.ridge)
        self.theta_ = grow(self.theta_)
        self._D, self._C, self._e = grow(self._D), grow(self._C), grow(self._e)
        table = np.zeros((new, da, da + k + 1), self._dt)
        table[:old] = self._table
        table[old:, :, :da] = np.eye(da) / self.ridge
        self._table = table
        self._stale = True

    def _refresh_arms(self, arms: NDArray[np.int64] | None) -> None:
        sl = slice(None) if arms is None else arms
        D = self.Ainv_[sl] @ self.B_[sl]
        self._D[sl] = D
        self._C[sl] = np.swapaxes(self.B_[sl], 1, 2) @ D
        self._e[sl] = np.einsum("adk,ad->ak", D, self.b_[sl])
        da = self.Ainv_.shape[1]
        self._table[sl, :, :da] = self.Ainv_[sl]
        self._table[sl, :, da:-1] = D
        self._stale = True

    def _refresh_shared(self) -> None:
        if not self._stale:
            return
        k = len(self._zc)
        A0 = self.ridge * np.eye(k) + self.Z_ - self._C.sum(axis=0)
        b0 = self.c_ - self._e.sum(axis=0)
        self.A0inv_ = np.linalg.inv(A0)
        self.A0inv_ = 0.5 * (self.A0inv_ + self.A0inv_.T)
        self.beta_ = self.A0inv_ @ b0
        self.theta_ = np.einsum("aij,aj->ai", self.Ainv_, self.b_ - self.B_ @ self.beta_)
        self._table[:, :, -1] = self.theta_
        self._stale = False

    # --------------------------------------------------------------- learning
    def _add_shared(self, x: F64, arms: NDArray[np.int64], r: F64, w: F64) -> None:
        z = x[:, self._zc]
        xa = x[:, self._xc]
        wz = z * w[:, None]
        self.Z_ += wz.T @ z
        self.c_ += wz.T @ r
        for a, idx in _groups(arms):
            self.B_[a] += (xa[idx] * w[idx, None]).T @ z[idx]

    def fit(
        self, x: ArrayLike, arms: ArrayLike, rewards: ArrayLike, sample_weight: ArrayLike | None = None
    ) -> HybridLinUCB:
        """Fit from a log, from scratch (see :meth:`slate.bandit.LinUCB.fit`).

        Returns
        -------
        self
        """
        batch = check_log(x, arms, rewards, sample_weight)
        self._init_features(batch.x.shape[1])
        keep = batch.weights > 0
        x_, arms_, r_, w_ = batch.x[keep], batch.arms[keep], batch.rewards[keep], batch.weights[keep]
        self._ensure_arms(int(batch.arms.max()) + 1 if batch.n else 0)
        xa = x_[:, self._xc]
        for a, idx in _groups(arms_):
            wx = xa[idx] * w_[idx, None]
            self.A_[a] += wx.T @ xa[idx]
            self.b_[a] += wx.T @ r_[idx]
            self.n_[a] += w_[idx].sum()
            self.events_[a] += len(idx)
        self._add_shared(x_, arms_, r_, w_)
        da = len(self._xc)
        self.Ainv_ = np.linalg.inv(self.A_ + self.ridge * np.eye(da)[None])
        self._refresh_arms(None)
        self._refresh_shared()
        return self

    def update(
        self, x: ArrayLike, arms: ArrayLike, rewards: ArrayLike, sample_weight: ArrayLike | None = None
    ) -> HybridLinUCB:
        """Add impressions (rank-one updates of the per-image inverses; shared block lazily).

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
        xa = np.ascontiguousarray(batch.x[:, self._xc])
        gram_update(
            self.A_, self.b_, self.n_, self.events_, self.Ainv_, self.theta_,
            xa, batch.arms, batch.rewards, batch.weights,
            self.ridge, np.zeros(len(self._xc)), 1.0, False,
        )  # fmt: skip
        keep = batch.weights > 0
        self._add_shared(batch.x[keep], batch.arms[keep], batch.rewards[keep], batch.weights[keep])
        self._refresh_arms(np.unique(batch.arms))
        return self

    def merge(self, other: Any) -> HybridLinUCB:
        """Add the statistics of a model fitted on another part of the log (equals a joint fit).

        Returns
        -------
        self
        """
        check_merge(self, other, HybridLinUCB)
        if not merge_features(self, other):
            return self
        k = other.n_arms_
        for name in ("A_", "B_", "b_", "n_", "events_"):
            getattr(self, name)[:k] += getattr(other, name)[:k]
        self.Z_ += other.Z_
        self.c_ += other.c_
        self.Ainv_ = np.linalg.inv(self.A_ + self.ridge * np.eye(len(self._xc))[None])
        self._refresh_arms(None)
        self._refresh_shared()
        return self

    # --------------------------------------------------------------- scoring
    def _predict(self, page: PageFeatures) -> tuple[NDArray[Any], NDArray[Any]]:
        if self.n_features_ is None:
            self._init_features(page.n_features)
        check_page(page, self.n_features_)
        self._ensure_arms(int(page.arms.max()) + 1)
        self._refresh_shared()
        dt = self._dt
        da, k = len(self._xc), len(self._zc)
        table = self._table
        a0inv = self.A0inv_.astype(dt)
        beta = self.beta_.astype(dt)
        mu = np.zeros(page.mask.shape, dt)
        var = np.zeros(page.mask.shape, dt)
        rr, kk = np.nonzero(page.mask)
        arms = page.arms[rr, kk]
        grouped = len(np.unique(arms)) * 64 <= len(arms)  # few arms with many rows each
        step = 8192 if grouped else 1024
        for s in range(0, len(arms), step):
            e = min(len(arms), s + step)
            xs = np.asarray(page.x[rr[s:e], kk[s:e]], dtype=dt)
            z, xa = xs[:, self._zc], xs[:, self._xc]
            if grouped:
                out = np.empty((e - s, da + k + 1), dt)
                for a, idx in _groups(arms[s:e]):
                    out[idx] = xa[idx] @ table[a]
            else:
                out = np.einsum("pd,pde->pe", xa, table[arms[s:e]])
            zu = z - out[:, da : da + k]
            v = np.einsum("pd,pd->p", out[:, :da], xa) + np.einsum("pk,pk->p", zu @ a0inv, zu)
            mu[rr[s:e], kk[s:e]] = out[:, -1] + z @ beta
            var[rr[s:e], kk[s:e]] = v
        return mu, var

    def score(self, page: PageFeatures, *, propensities: bool = True) -> PageScores:
        """Mean, upper confidence bound, choice, exact propensities.

        Returns
        -------
        PageScores
        """
        mu, var = self._predict(page)
        sd = np.sqrt(np.maximum(var, 0))
        adjusted = mu + np.asarray(self.alpha, mu.dtype) * sd
        choice, is_max, count = argmax_choice(adjusted, page.mask, self._rng)
        prop = tie_propensity(is_max, count) if propensities else None
        return exact_scores(
            self.name, mean=mu, adjusted=adjusted, uncertainty=sd, choice=choice, mask=page.mask, propensity=prop
        )

    # --------------------------------------------------------------- persistence
    def _state(self) -> tuple[dict[str, NDArray[Any]], dict[str, Any]]:
        if self.n_features_ is None:
            arrays: dict[str, NDArray[Any]] = {}
        else:
            arrays = {
                "A": self.A_, "B": self.B_, "b": self.b_, "n": self.n_, "events": self.events_,
                "Ainv": self.Ainv_, "theta": self.theta_, "Z": self.Z_, "c": self.c_,
                "D": self._D, "C": self._C, "e": self._e, "beta": self.beta_, "A0inv": self.A0inv_,
            }  # fmt: skip
        meta = {
            "n_features": self.n_features_,
            "n_arms": self.n_arms_,
            "stale": self._stale,
            **rng_state(self._rng, self._mc_rng),
        }
        return arrays, meta

    def _load(self, arrays: dict[str, NDArray[Any]], meta: dict[str, Any]) -> None:
        if meta["n_features"] is not None:
            self._init_features(int(meta["n_features"]))
            self.A_, self.B_, self.b_, self.n_ = arrays["A"], arrays["B"], arrays["b"], arrays["n"]
            self.events_ = arrays["events"].astype(np.int64)
            self.Ainv_, self.theta_, self.Z_, self.c_ = arrays["Ainv"], arrays["theta"], arrays["Z"], arrays["c"]
            self._D, self._C, self._e = arrays["D"], arrays["C"], arrays["e"]
            self.beta_, self.A0inv_ = arrays["beta"], arrays["A0inv"]
            da = self.Ainv_.shape[1]
            self._table = np.concatenate([self.Ainv_, self._D, self.theta_[:, :, None]], axis=2).astype(self._dt)
            assert self._table.shape[2] == da + len(self._zc) + 1
        self.n_arms_ = int(meta["n_arms"])
        self._stale = bool(meta["stale"])
        set_rng_state(self._rng, self._mc_rng, meta)


register_policy(HybridLinUCB.name, HybridLinUCB)
