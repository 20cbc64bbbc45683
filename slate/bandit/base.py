"""The scoring-policy interface, the name registry, and helpers shared by the policies."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike, NDArray

from slate.bandit.batch import PageFeatures, PageScores
from slate.errors import InvalidProblemError, UnknownPolicyError
from slate.policy import argmax_choice as argmax_choice  # moved to slate.policy; kept here
from slate.policy import tie_propensity as tie_propensity
from slate.registry import Registry

__all__ = [
    "LoggedBatch",
    "ScoringPolicy",
    "UnknownPolicyError",
    "available_policies",
    "check_log",
    "make_policy",
    "register_policy",
]


@runtime_checkable
class ScoringPolicy(Protocol):
    """A :class:`slate.policy.Scorer` that learns: scores pages, learns from logged impressions.

    In the one vocabulary (:mod:`slate.policy`) it is a scorer with a method: ``score(page)``
    gives the scores (and, for the built-in learners, the choice and propensities of its own
    argmax or sampling rule); :func:`slate.policy.as_scorer` turns it into ``page -> mean scores``
    and :func:`slate.policy.greedy` into a policy.

    Every policy in :func:`available_policies` implements this. Learners follow scikit-learn:
    hyperparameters in ``__init__``, learned state with a trailing underscore, ``fit``/``update``
    return ``self``, randomness from a ``seed``.
    """

    @property
    def name(self) -> str:
        """Registry name of the policy."""
        ...

    def score(self, page: PageFeatures, *, propensities: bool = True) -> PageScores:
        """Mean, exploration-adjusted score, one sampled choice and (optionally) propensities."""
        ...

    def fit(
        self, x: ArrayLike, arms: ArrayLike, rewards: ArrayLike, sample_weight: ArrayLike | None = None
    ) -> ScoringPolicy:
        """Learn from a log from scratch: features of the shown image, its arm, the reward."""
        ...

    def update(
        self, x: ArrayLike, arms: ArrayLike, rewards: ArrayLike, sample_weight: ArrayLike | None = None
    ) -> ScoringPolicy:
        """Add impressions (one or a mini-batch) to what the policy already learned."""
        ...

    def merge(self, other: Any) -> ScoringPolicy:
        """Add another policy's statistics (fitted on another partition of the log)."""
        ...

    def get_params(self) -> dict[str, Any]:
        """Hyperparameters (JSON-serialisable), as passed to ``__init__``."""
        ...


POLICIES: Registry[ScoringPolicy] = Registry("policy", UnknownPolicyError)
"""The policy registry (see :mod:`slate.registry`): ``POLICIES.parameters("linucb")`` lists options."""


def register_policy(name: str, factory: Callable[..., ScoringPolicy]) -> None:
    """Register a policy factory under ``name`` (``factory(**params)`` returns a policy)."""
    POLICIES.register(name, factory)


def available_policies() -> list[str]:
    """Names accepted by :func:`make_policy`.

    Examples
    --------
    >>> from slate.bandit import available_policies
    >>> available_policies()
    ['epsilon_greedy', 'hybrid_linucb', 'linear_ts', 'linucb', 'logistic_ts', 'take_rate', 'uniform']
    """
    return POLICIES.names()


def make_policy(name: str, **params: Any) -> ScoringPolicy:
    """Instantiate the policy registered as ``name`` with its hyperparameters.

    Examples
    --------
    >>> from slate.bandit import make_policy
    >>> make_policy("linucb", alpha=0.5).alpha
    0.5
    """
    return POLICIES.create(name, **params)


# ---------------------------------------------------------------------------- log validation
class LoggedBatch(NamedTuple):
    """Validated learning input: features of the shown images, arms, rewards, weights."""

    x: NDArray[np.float64]
    arms: NDArray[np.int64]
    rewards: NDArray[np.float64]
    weights: NDArray[np.float64]

    @property
    def n(self) -> int:
        """Number of impressions."""
        return int(self.arms.shape[0])


def check_log(
    x: ArrayLike | None,
    arms: ArrayLike,
    rewards: ArrayLike,
    sample_weight: ArrayLike | None = None,
    *,
    n_features: int | None = None,
    needs_features: bool = True,
) -> LoggedBatch:
    """Validate impressions for ``fit``/``update``; a single impression may be given unbatched.

    Parameters
    ----------
    x : array_like (n, n_features) or (n_features,)
        Features of the image that was shown.
    arms : array_like (n,) of int, or an int
    rewards : array_like (n,) in [0, 1], or a float
        The quality-play label (see :class:`slate.bandit.QualityPlayLabel`).
    sample_weight : array_like (n,), optional
        Non-negative weights (default 1).
    n_features : int, optional
        Required feature count (the model's, once it has one).

    Raises
    ------
    InvalidProblemError
        Naming the field and the first bad value.

    Examples
    --------
    >>> batch = check_log([0.5, 1.0], 3, 1.0)
    >>> batch.x.shape, batch.arms.tolist(), batch.rewards.tolist()
    ((1, 2), [3], [1.0])
    """
    if (
        sample_weight is None
        and isinstance(arms, (int, np.integer))
        and not isinstance(arms, (bool, np.bool_))
        and isinstance(rewards, (int, float, np.integer, np.floating))
        and x is not None
    ):  # fast path for one impression (online updates)
        arm = int(arms)
        rv = float(rewards)
        xa = np.asarray(x, dtype=np.float64)
        if arm >= 0 and 0.0 <= rv <= 1.0 and xa.ndim == 1 and xa.shape[0] > 0:
            total = float(xa.sum())  # a quick screen; the general path checks exactly
            if (n_features is None or xa.shape[0] == n_features) and total - total == 0.0:
                return LoggedBatch(xa.reshape(1, -1), np.array([arm], np.int64), np.array([rv]), np.array([1.0]))
        # otherwise fall through to the general checks, which name the problem
    a = np.asarray(arms)
    if a.ndim == 0:
        a = a.reshape(1)
    if a.ndim != 1 or a.dtype.kind not in "iu":
        raise InvalidProblemError(
            f"The 'arms' field of the log must be a 1-D integer array; got {a.dtype} of shape {a.shape} instead."
        )
    n = a.shape[0]
    if a.dtype != np.int64:
        a = a.astype(np.int64)
    if n and a.min() < 0:
        i = int(np.argmin(a))
        raise InvalidProblemError(f"The 'arms' field of the log must be >= 0; got {int(a[i])} at row {i} instead.")
    r = np.asarray(rewards, dtype=np.float64)
    if r.ndim == 0:
        r = r.reshape(1)
    if r.shape != (n,):
        raise InvalidProblemError(
            f"The 'rewards' field of the log must have one value per impression ({n}); got shape {r.shape} instead."
        )
    if n and not (r.min() >= 0.0 and r.max() <= 1.0):  # also false for NaN
        i = int(np.flatnonzero(~((r >= 0) & (r <= 1)))[0])
        raise InvalidProblemError(
            f"The 'rewards' field of the log must be in [0, 1] (a quality-play label); got {r[i]} at row {i} instead."
        )
    if sample_weight is None:
        w = np.ones(n)
    else:
        w = np.asarray(sample_weight, dtype=np.float64)
        if w.ndim == 0:
            w = w.reshape(1)
        if w.shape != (n,):
            raise InvalidProblemError(
                f"The 'sample_weight' field must have one value per impression ({n}); got shape {w.shape} instead."
            )
        if n and not (w.min() >= 0.0 and np.isfinite(w).all()):
            i = int(np.flatnonzero(~(np.isfinite(w) & (w >= 0)))[0])
            raise InvalidProblemError(f"The 'sample_weight' field must be finite and >= 0; got {w[i]} at row {i} instead.")
    if needs_features or x is not None:
        xa = np.asarray(x, dtype=np.float64)
        if xa.ndim == 1:
            xa = xa.reshape(1, -1)
        if xa.ndim != 2 or xa.shape[0] != n or xa.shape[1] == 0:
            raise InvalidProblemError(
                f"The 'x' field of the log must have shape (n_impressions, n_features) = ({n}, n_features); "
                f"got shape {xa.shape} instead."
            )
        if n_features is not None and xa.shape[1] != n_features:
            raise InvalidProblemError(
                f"The 'x' field of the log must have {n_features} features (the model's); got {xa.shape[1]} instead."
            )
        if not np.isfinite(xa).all():
            i, j = map(int, np.argwhere(~np.isfinite(xa))[0])
            raise InvalidProblemError(f"The 'x' field of the log must be finite; got {xa[i, j]} at row {i} feature {j} instead.")
        if not xa.flags.c_contiguous:
            xa = np.ascontiguousarray(xa)
    else:
        xa = np.zeros((n, 0))
    return LoggedBatch(xa, a, r, w)


# ---------------------------------------------------------------------------- shared scoring helpers
def check_page(page: object, n_features: int | None) -> PageFeatures:
    """The page must be :class:`PageFeatures` with the model's feature count."""
    if not isinstance(page, PageFeatures):
        raise InvalidProblemError(
            "A policy scores a PageFeatures (build it with PageFeatures.from_arrays or "
            f"FeatureBuilder.build); got {type(page).__name__} instead."
        )
    if n_features is not None and page.n_features != n_features:
        raise InvalidProblemError(
            f"The page has {page.n_features} features but the model was fitted with {n_features}."
        )
    return page


def mc_argmax_propensity(
    draw: Callable[[np.random.Generator, slice, int], NDArray[np.float64]],
    mask: NDArray[np.bool_],
    n_draws: int,
    rng: np.random.Generator,
    chunk_elements: int = 1 << 21,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Monte Carlo propensity of "argmax of a random score" and its standard error.

    ``draw(rng, rows, n_draws)`` returns ``n_draws`` samples of the score of the rows in the
    slice, shape ``(n_draws, n_rows_in_slice, n_images)``. Padding is excluded.
    """
    n_rows, n_images = mask.shape
    counts = np.zeros((n_rows, n_images))
    step = max(1, chunk_elements // max(1, n_draws * n_images))
    for start in range(0, n_rows, step):
        rows = slice(start, min(n_rows, start + step))
        m = mask[rows]
        s = draw(rng, rows, n_draws)
        s = np.where(m[None, :, :], s, -np.inf)
        idx = np.argmax(s, axis=2)  # (n_draws, rows)
        nr = m.shape[0]
        flat = (idx + np.arange(nr)[None, :] * n_images).ravel()
        counts[rows] = np.bincount(flat, minlength=nr * n_images).reshape(nr, n_images)
    p = counts / n_draws
    se = np.sqrt(p * (1.0 - p) / n_draws)
    return p, se


def finish_scores(
    *,
    policy: str,
    mean: NDArray[np.floating[Any]],
    adjusted: NDArray[np.floating[Any]],
    uncertainty: NDArray[np.floating[Any]],
    choice: NDArray[np.int64],
    mask: NDArray[np.bool_],
    propensity: NDArray[np.float64] | None,
    propensity_se: NDArray[np.float64] | None,
    n_draws: int,
) -> PageScores:
    """Mask padding, clip the mean, mark everything read-only and wrap it up."""
    pad = ~mask
    mean = np.clip(mean, 0.0, 1.0, out=mean)
    if pad.any():
        mean[pad] = 0.0
        adjusted[pad] = -np.inf
        uncertainty[pad] = 0.0
    for arr in (mean, adjusted, uncertainty, choice, propensity, propensity_se):
        if arr is not None:
            arr.flags.writeable = False
    return PageScores(
        mean=mean,
        adjusted=adjusted,
        uncertainty=uncertainty,
        choice=choice,
        propensity=propensity,
        propensity_se=propensity_se,
        n_draws=n_draws,
        mask=mask,
        policy=policy,
    )


def make_rngs(seed: int | None) -> tuple[np.random.Generator, np.random.Generator]:
    """Two independent streams: one for decisions, one for Monte Carlo propensities.

    Estimating propensities never changes the decisions a seeded policy makes.
    """
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise InvalidProblemError(f"The 'seed' parameter must be a non-negative integer or None; got {seed!r} instead.")
    children = np.random.SeedSequence(seed).spawn(2)
    return np.random.default_rng(children[0]), np.random.default_rng(children[1])


def check_positive(name: str, value: object, owner: str, *, allow_zero: bool = False) -> float:
    """A finite positive (or non-negative) hyperparameter, with a scikit-learn-style message."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    v = float(value) if ok else float("nan")  # type: ignore[arg-type]
    if not ok or not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        must = ">= 0" if allow_zero else "> 0"
        raise InvalidProblemError(f"The '{name}' parameter of {owner} must be a finite number {must}; got {value!r} instead.")
    return v


def check_unit(name: str, value: object, owner: str, *, low_open: bool = True) -> float:
    """A number in (0, 1] (or [0, 1] when ``low_open`` is false)."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    v = float(value) if ok else float("nan")  # type: ignore[arg-type]
    bad = not ok or not np.isfinite(v) or v > 1 or (v <= 0 if low_open else v < 0)
    if bad:
        rng = "(0, 1]" if low_open else "[0, 1]"
        raise InvalidProblemError(f"The '{name}' parameter of {owner} must be in {rng}; got {value!r} instead.")
    return v


def check_dtype(value: object, owner: str) -> np.dtype[Any]:
    """``"float32"`` or ``"float64"``."""
    if value not in ("float32", "float64"):
        raise InvalidProblemError(f"The 'dtype' parameter of {owner} must be 'float32' or 'float64'; got {value!r} instead.")
    return np.dtype(str(value))


def check_draws(value: object, owner: str) -> int:
    """A positive integer number of Monte Carlo draws."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InvalidProblemError(f"The 'n_draws' parameter of {owner} must be an integer >= 1; got {value!r} instead.")
    return int(value)


# ---------------------------------------------------------------------------- shared policy pieces
def exact_scores(policy: str, *, propensity: NDArray[np.float64] | None, **arrays: NDArray[Any]) -> PageScores:
    """:func:`finish_scores` for a policy with exact propensities (zero standard error, no draws).

    ``arrays`` are ``mean``, ``adjusted``, ``uncertainty``, ``choice`` and ``mask``.
    """
    se = None if propensity is None else np.zeros_like(propensity)
    return finish_scores(policy=policy, propensity=propensity, propensity_se=se, n_draws=0, **arrays)


def sampled_scores(
    policy: str,
    *,
    draw: Callable[[np.random.Generator, slice, int], NDArray[np.float64]] | None,
    n_draws: int,
    rng: np.random.Generator,
    **arrays: NDArray[Any],
) -> PageScores:
    """:func:`finish_scores` for a sampling policy: Monte Carlo propensities from ``draw`` (none if None).

    ``arrays`` are ``mean``, ``adjusted``, ``uncertainty``, ``choice`` and ``mask``.
    """
    if draw is None:
        return finish_scores(policy=policy, propensity=None, propensity_se=None, n_draws=0, **arrays)
    prop, se = mc_argmax_propensity(draw, arrays["mask"], n_draws, rng)
    return finish_scores(policy=policy, propensity=prop, propensity_se=se, n_draws=n_draws, **arrays)


def gaussian_draw(
    mu: NDArray[np.floating[Any]], sd: NDArray[np.floating[Any]]
) -> Callable[[np.random.Generator, slice, int], NDArray[Any]]:
    """``draw`` for :func:`mc_argmax_propensity`: independent ``N(mu, sd^2)`` scores in float32."""
    mu32, sd32 = mu.astype(np.float32), sd.astype(np.float32)

    def draw(rng: np.random.Generator, rows: slice, s: int) -> NDArray[Any]:
        zz = rng.standard_normal((s, *mu32[rows].shape), dtype=np.float32)
        zz *= sd32[rows][None]
        zz += mu32[rows][None]
        return zz

    return draw


def check_merge(policy: Any, other: Any, cls: type | None = None) -> None:
    """Raise unless ``other`` can be merged into ``policy``: an instance of ``cls`` (or, without
    ``cls``, of exactly ``policy``'s class) with the same hyperparameters, the seed aside."""
    ok = isinstance(other, cls) if cls is not None else type(other) is type(policy)
    if not ok:
        target = (cls if cls is not None else type(policy)).__name__
        raise InvalidProblemError(f"Cannot merge a {type(other).__name__} into a {target}.")
    mine = {k: v for k, v in policy.get_params().items() if k != "seed"}
    theirs = {k: v for k, v in other.get_params().items() if k != "seed"}
    if mine != theirs:
        raise InvalidProblemError(f"Cannot merge policies with different hyperparameters: {mine} and {theirs}.")


def merge_features(policy: Any, other: Any) -> bool:
    """Match ``policy``'s feature count and arms to ``other``'s before merging its statistics.

    Returns False when ``other`` has seen nothing (nothing to merge).
    """
    if other.n_features_ is None:
        return False
    if policy.n_features_ is None:
        policy._init_features(other.n_features_)
    if other.n_features_ != policy.n_features_:
        raise InvalidProblemError(
            f"Cannot merge a model with {other.n_features_} features into one with {policy.n_features_}."
        )
    policy._ensure_arms(other.n_arms_)
    return True


def rng_state(rng: np.random.Generator, mc_rng: np.random.Generator) -> dict[str, Any]:
    """The two generators' states, for a policy's saved metadata."""
    return {"rng": rng.bit_generator.state, "mc_rng": mc_rng.bit_generator.state}


def set_rng_state(rng: np.random.Generator, mc_rng: np.random.Generator, meta: dict[str, Any]) -> None:
    """Restore the states written by :func:`rng_state`."""
    rng.bit_generator.state = meta["rng"]
    mc_rng.bit_generator.state = meta["mc_rng"]
