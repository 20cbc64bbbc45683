"""Policies from summed sufficient statistics, and their greedy linear weights.

A log trainer (:mod:`slate.train`) sums each policy's sufficient statistics over a log itself
(in a fixed order, so that every engine gets the same floats) and hands the sums here;
:func:`policy_from_statistics` then finishes the fit exactly as the policy's own ``fit`` would
after its accumulation step (inverses, coefficients, the shared block of the hybrid model).

========================================  ==================================================
policies                                  statistics (arrays over arms ``0..n_arms-1``)
========================================  ==================================================
``linucb``, ``linear_ts``,                ``A`` (n_arms, d, d) ``sum w x x^T``, ``b`` (n_arms, d)
``epsilon_greedy``                        ``sum w r x``, ``n`` ``sum w``, ``events`` (count)
``hybrid_linucb``                         as above over the arm columns, plus ``B`` (n_arms, d_arm,
                                          d_shared) ``sum w x z^T``, ``Z`` ``sum w z z^T``, ``c``
                                          ``sum w r z``
``take_rate``                             ``successes`` ``sum w r``, ``failures`` ``sum w (1-r)``,
                                          ``events``
``uniform``                               ``reward_sum`` ``sum w r``, ``weight_sum`` ``sum w``
``logistic_ts``                           none: Newton's method needs every row (not a sum)
========================================  ==================================================
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from slate.bandit.base import ScoringPolicy
from slate.bandit.hybrid import HybridLinUCB
from slate.bandit.linear import _DisjointRidge
from slate.bandit.logistic import LogisticThompson
from slate.bandit.simple import TakeRateBandit, UniformRandom
from slate.errors import InvalidProblemError

__all__ = ["linear_weights", "policy_from_statistics", "statistics_kind"]


def statistics_kind(policy: ScoringPolicy) -> str:
    """Which statistics a policy is fitted from: ``"ridge"``, ``"hybrid"``, ``"counts"``,
    ``"total"``, or ``"rows"`` (no sufficient statistics: fit on the rows themselves).

    Raises
    ------
    InvalidProblemError
        A policy with forgetting (its statistics are discounted in log order, not summed), or a
        policy class this module does not know.

    Examples
    --------
    >>> from slate.bandit import make_policy
    >>> statistics_kind(make_policy("linucb")), statistics_kind(make_policy("logistic_ts"))
    ('ridge', 'rows')
    """
    if getattr(policy, "forgetting", 1.0) != 1.0:
        raise InvalidProblemError(
            f"The 'forgetting' parameter of {type(policy).__name__} must be 1 to train from a log "
            f"(a discounted fit depends on the order of the rows); got {policy.forgetting} instead."  # type: ignore[attr-defined]
        )
    if isinstance(policy, HybridLinUCB):
        return "hybrid"
    if isinstance(policy, _DisjointRidge):
        return "ridge"
    if isinstance(policy, TakeRateBandit):
        return "counts"
    if isinstance(policy, UniformRandom):
        return "total"
    if isinstance(policy, LogisticThompson):
        return "rows"
    raise InvalidProblemError(f"Cannot train a {type(policy).__name__} from summed statistics.")


def _arrays(stats: dict[str, Any], names: tuple[str, ...]) -> list[NDArray[Any]]:
    missing = [k for k in names if k not in stats]
    if missing:
        raise InvalidProblemError(f"The statistics must hold {list(names)}; missing {missing}.")
    return [np.asarray(stats[k]) for k in names]


def policy_from_statistics(policy: ScoringPolicy, stats: dict[str, Any]) -> ScoringPolicy:
    """Finish ``policy``'s fit from summed statistics (see the module table); returns it.

    ``stats["n_features"]`` is the feature count (ridge and hybrid policies); the arrays are
    float64 with one entry per arm.

    Examples
    --------
    >>> import numpy as np
    >>> from slate.bandit import LinUCB
    >>> x = np.array([[1.0, 0.0], [1.0, 1.0], [1.0, 2.0]]); arms = np.array([0, 0, 1]); r = np.array([1.0, 0.0, 1.0])
    >>> A = np.zeros((2, 2, 2)); b = np.zeros((2, 2))
    >>> for xi, a, ri in zip(x, arms, r):
    ...     A[a] += np.outer(xi, xi); b[a] += ri * xi
    >>> stats = {"n_features": 2, "A": A, "b": b, "n": np.array([2.0, 1.0]), "events": np.array([2, 1])}
    >>> fitted = policy_from_statistics(LinUCB(), stats)
    >>> bool(np.allclose(fitted.theta_[:2], LinUCB().fit(x, arms, r).theta_[:2]))
    True
    """
    kind = statistics_kind(policy)
    if kind == "total":
        assert isinstance(policy, UniformRandom)
        policy.reward_sum_ = float(stats["reward_sum"])
        policy.weight_sum_ = float(stats["weight_sum"])
        return policy
    if kind == "counts":
        assert isinstance(policy, TakeRateBandit)
        s, f, ev = _arrays(stats, ("successes", "failures", "events"))
        policy.successes_ = s.astype(np.float64).copy()
        policy.failures_ = f.astype(np.float64).copy()
        policy.events_ = ev.astype(np.int64).copy()
        return policy
    if kind == "rows":
        raise InvalidProblemError(
            f"{type(policy).__name__} has no sufficient statistics (Newton's method needs every "
            "row); fit it on the rows instead."
        )
    d = int(stats["n_features"])
    if kind == "ridge":
        assert isinstance(policy, _DisjointRidge)
        A, b, n, ev = _arrays(stats, ("A", "b", "n", "events"))
        k = len(n)
        policy._reset(d)
        policy._ensure_arms(k)
        policy.A_[:k], policy.b_[:k], policy.n_[:k] = A, b, n
        policy.events_[:k] = ev.astype(np.int64)
        policy._refresh_all()
        return policy
    assert isinstance(policy, HybridLinUCB)
    A, B, b, n, ev, Z, c = _arrays(stats, ("A", "B", "b", "n", "events", "Z", "c"))
    k = len(n)
    policy._init_features(d)
    policy._ensure_arms(k)
    if policy.A_.shape[1:] != A.shape[1:] or policy.Z_.shape != Z.shape:
        raise InvalidProblemError(
            f"The hybrid statistics have arm/shared blocks {A.shape[1:]}/{Z.shape}; the policy's "
            f"columns need {policy.A_.shape[1:]}/{policy.Z_.shape}."
        )
    policy.A_[:k], policy.B_[:k], policy.b_[:k], policy.n_[:k] = A, B, b, n
    policy.events_[:k] = ev.astype(np.int64)
    policy.Z_[...] = Z
    policy.c_[...] = c
    da = policy.A_.shape[1]
    policy.Ainv_ = np.linalg.inv(policy.A_ + policy.ridge * np.eye(da)[None])
    policy._refresh_arms(None)
    policy._refresh_shared()
    return policy


def linear_weights(policy: ScoringPolicy, n_arms: int, n_features: int) -> NDArray[np.float64]:
    """``(n_arms, n_features)`` weights ``w_a`` with the policy's greedy score ``x . w_a``.

    For the linear policies the posterior mean coefficients (the hybrid model's shared and
    per-image parts added up), for logistic Thompson sampling the posterior-mode logit weights,
    for the take-rate bandit the posterior mean take rate in a constant feature (column 0, which
    must be a bias column), zeros for the uniform policy.

    Examples
    --------
    >>> import numpy as np
    >>> from slate.bandit import TakeRateBandit
    >>> linear_weights(TakeRateBandit().fit(None, [0, 0, 1], [1, 1, 0]), 2, 2).tolist()
    [[0.75, 0.0], [0.3333333333333333, 0.0]]
    """
    out = np.zeros((n_arms, n_features))
    kind = statistics_kind(policy)
    if kind == "total":
        return out
    if kind == "counts":
        assert isinstance(policy, TakeRateBandit)
        policy._ensure_arms(n_arms)
        a, b = policy.prior_alpha, policy.prior_beta
        s, f = policy.successes_[:n_arms], policy.failures_[:n_arms]
        out[:, 0] = (a + s) / (a + b + s + f)
        return out
    if kind == "hybrid":
        assert isinstance(policy, HybridLinUCB)
        policy._ensure_arms(n_arms)
        policy._refresh_shared()
        out[:, policy._zc] += policy.beta_[None, :]
        out[:, policy._xc] += policy.theta_[:n_arms]
        return out
    core: Any = policy
    if core.n_features_ is None:
        return out
    core._ensure_arms(n_arms)
    out[:] = core.theta_[:n_arms]
    return out
