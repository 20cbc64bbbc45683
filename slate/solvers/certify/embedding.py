"""The Lagrangian embedding-sum bound for pages whose similarity is ``max(0, cosine)``.

With unit embeddings ``e`` and layout weights ``W`` (zero diagonal), the diversity penalty of a
page is at least its linear part, because ``max(0, c) >= c``::

    d * sum_{i<j} W_ij max(0, e_i . e_j)  >=  d/2 * sum_{i != j} W_ij e_i . e_j
        = d/2 * ( sum_r ||z_r||^2 - sigma * sum_i ||e_i||^2 ),    z_r = sum_i L_ir e_i

where ``W + sigma I = L L^T`` is shifted to be positive semi-definite (``sigma = -lambda_min(W)``;
dropping the smallest non-negative eigen-components keeps the inequality, so ``L`` may be
truncated to a few columns). For a dense layout ``W = 11^T - I``: ``sigma = 1`` and ``L = 1``,
the identity ``sum_{i != j} e_i . e_j = ||sum_i e_i||^2 - N``. Dualising each ``z_r`` with a
multiplier ``y_r`` in the embedding dimension::

    -d/2 ||z||^2 = min_y ( ||y||^2 / (2d) - y . z )

gives, for every ``Y``, a bound that is separable by title, with the change budget kept exactly::

    g(Y) = max over pages within the budget of sum_t [ u_t(a_t) + d sigma/2 ||e||^2 - (L_t Y) . e_{t, a_t} ]
           + ||Y||^2 / (2d)

``g`` is convex; it is minimised with L-BFGS on an entropy-smoothed version (temperature lowered
in steps), and ``g`` itself is evaluated exactly at every iterate, so the reported bound is valid
however early the minimisation stops. Its duality gap is bounded by the non-convexity of about
``D + 1`` titles, independent of the number of titles (Shapley-Folkman; Udell & Boyd 2016), but
``max(0, c) >= c`` loses every negative cosine on the page: the bound is tight when the page's
cosines are non-negative and loose when many are negative.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from slate.errors import InvalidProblemError
from slate.page.problem import PageProblem
from slate.solvers import _fast_kernels as fk
from slate.solvers.certify import _kernels as ck
from slate.solvers.certify.certificate import Certificate

__all__ = ["embedding_bound", "embedding_certificate", "has_non_negative_cosines", "layout_factor"]

_TEMPERATURES = (1e-2, 3e-3, 1e-3, 3e-4, 1e-4)  # times the score scale
_ITERATIONS = 25  # L-BFGS iterations per temperature
_BOUND_SHARE = 0.85  # of the time, for the multipliers (the rest: the Lagrangian page)
_FACTORS: OrderedDict[tuple[int, bytes, bytes, int], tuple[NDArray[np.float64], float]] = OrderedDict()
_FACTORS_LOCK = threading.Lock()


def layout_factor(problem: PageProblem, max_rank: int = 8) -> tuple[NDArray[np.float64], float]:
    """``(L, sigma)`` with ``W + sigma I >= L L^T >= 0`` (``L``: the top ``max_rank`` eigen-components).

    Cached by layout (a serving layout repeats on every request).

    Examples
    --------
    >>> from slate.page import random_problem
    >>> factor, sigma = layout_factor(random_problem(6, 2, "dense", seed=0))
    >>> factor.shape, round(sigma, 6), bool(abs(abs(factor).ravel() - 1).max() < 1e-9)
    ((6, 1), 1.0, True)
    """
    key = (problem.n_titles, problem.pairs.tobytes(), problem.pair_weights.tobytes(), max_rank)
    with _FACTORS_LOCK:
        hit = _FACTORS.get(key)
        if hit is not None:
            return hit
    n = problem.n_titles
    w = np.zeros((n, n))
    w[problem.pairs[:, 0], problem.pairs[:, 1]] = problem.pair_weights
    w += w.T
    values, vectors = np.linalg.eigh(w)
    sigma = max(0.0, -float(values[0]))
    shifted = values + sigma
    keep = np.argsort(-shifted)[:max_rank]
    keep = keep[shifted[keep] > 1e-9 * max(1.0, float(shifted.max(initial=0.0)))]
    factor = np.ascontiguousarray(vectors[:, keep] * np.sqrt(shifted[keep]))
    factor.flags.writeable = False
    with _FACTORS_LOCK:
        _FACTORS[key] = (factor, sigma)
        if len(_FACTORS) > 64:
            _FACTORS.popitem(last=False)
    return factor, sigma


def _lbfgs(
    fun: Callable[[NDArray[np.float64]], tuple[float, NDArray[np.float64]]],
    x: NDArray[np.float64],
    iterations: int,
    deadline: float | None,
    clock: Callable[[], float],
    memory: int = 8,
) -> tuple[NDArray[np.float64], int]:
    """Minimise a smooth convex ``fun`` (value and gradient) by L-BFGS with backtracking, keeping
    the last coordinate (the budget price) >= 0 by projection. Returns ``(x, evaluations)``."""
    value, grad = fun(x)
    n_eval = 1
    s_list: list[NDArray[np.float64]] = []
    y_list: list[NDArray[np.float64]] = []
    for _ in range(iterations):
        if deadline is not None and clock() >= deadline:
            break
        q = grad.copy()  # two-loop recursion
        alphas = []
        for s_k, y_k in zip(reversed(s_list), reversed(y_list), strict=True):
            a_k = float(s_k @ q) / float(y_k @ s_k)
            alphas.append(a_k)
            q -= a_k * y_k
        if s_list:
            q *= float(s_list[-1] @ y_list[-1]) / float(y_list[-1] @ y_list[-1])
        else:
            q /= max(1.0, float(np.abs(grad).max()))
        for (s_k, y_k), a_k in zip(zip(s_list, y_list, strict=True), reversed(alphas), strict=True):
            q += (a_k - float(y_k @ q) / float(y_k @ s_k)) * s_k
        step = 1.0
        while True:
            if deadline is not None and n_eval > 1 and clock() >= deadline:
                return x, n_eval  # mid line search: keep the last accepted iterate
            trial = x - step * q
            trial[-1] = max(0.0, trial[-1])
            t_value, t_grad = fun(trial)
            n_eval += 1
            if t_value <= value - 1e-4 * float(grad @ (x - trial)) or step < 1e-8:
                break
            step *= 0.5
        if t_value >= value:
            break
        s_k, y_k = trial - x, t_grad - grad
        if float(y_k @ s_k) > 1e-12:
            s_list.append(s_k)
            y_list.append(y_k)
            if len(s_list) > memory:
                s_list.pop(0)
                y_list.pop(0)
        x, value, grad = trial, t_value, t_grad
    return x, n_eval


class _Dual:
    """The bound's arrays for one problem and its exact and smoothed evaluations."""

    def __init__(self, problem: PageProblem, max_rank: int, slope: float = 1.0) -> None:
        assert problem.embeddings is not None
        self.d = float(problem.diversity) * slope  # the minorant slope * c <= max(0, c)
        self.factor, sigma = layout_factor(problem, max_rank)
        norms = np.linalg.norm(problem.embeddings, axis=2, keepdims=True)
        unit = np.divide(problem.embeddings, norms, out=np.zeros_like(problem.embeddings), where=norms > 0)
        self.emb = np.ascontiguousarray(unit * problem.candidates[:, :, None])
        self.ut = problem.unary + 0.5 * self.d * sigma * (self.emb**2).sum(axis=2)
        self.ut_floor = np.where(np.isfinite(self.ut), self.ut, -1e300)
        self.change = np.ascontiguousarray(problem.changes, dtype=np.uint8)
        self.budget = -1 if problem.max_changes is None else int(problem.max_changes)
        self.rank = self.factor.shape[1]
        self.dim = self.emb.shape[2]
        self.search_seconds: float | None = None  # the local search's measured cost on this page
        self.non_negative = bool((self.emb >= 0.0).all())  # then every cosine is >= 0

    def exact(self, y: NDArray[np.float64]) -> float:
        """``g(Y)``: the bound for multipliers ``y`` (rank, dim), evaluated exactly."""
        theta = ck.embedding_theta(self.ut, self.emb, self.factor @ y)
        budget = self.budget if self.budget >= 0 else 1 << 40
        return float(fk.budgeted_max(theta, self.change, budget)) + float((y * y).sum()) / (2.0 * self.d)

    def smoothed(self, x: NDArray[np.float64], tau: float) -> tuple[float, NDArray[np.float64]]:
        """Smoothed ``g`` with the budget priced by ``x[-1]`` and its gradient."""
        y = x[:-1].reshape(self.rank, self.dim)
        mu = float(x[-1]) if self.budget >= 0 else 0.0
        grad_m = np.empty((self.emb.shape[0], self.dim))
        value, dmu = ck.smoothed_embedding_dual(
            self.ut_floor, self.emb, self.factor @ y, self.change, mu, tau, grad_m
        )
        grad = np.empty_like(x)
        grad[:-1] = (self.factor.T @ grad_m + y / self.d).ravel()
        grad[-1] = dmu + self.budget if self.budget >= 0 else 0.0
        value += float((y * y).sum()) / (2.0 * self.d) + (mu * self.budget if self.budget >= 0 else 0.0)
        return value, grad


_DUALS: weakref.WeakKeyDictionary[PageProblem, dict[tuple[int, float], _Dual]] = weakref.WeakKeyDictionary()


def _dual(problem: PageProblem, max_rank: int, slope: float = 1.0) -> _Dual:
    """The bound's arrays for ``problem``, derived once per problem (cached weakly)."""
    per_rank = _DUALS.setdefault(problem, {})
    hit = per_rank.get((max_rank, slope))
    if hit is None:
        hit = per_rank[(max_rank, slope)] = _Dual(problem, max_rank, slope)
    return hit


def has_non_negative_cosines(problem: PageProblem) -> bool:
    """Every candidate embedding is coordinate-wise non-negative, so every cosine is >= 0.

    Then ``max(0, c) = c`` on the page and the embedding bound gives nothing away but its
    Lagrangian duality gap (tight in practice); with signed embeddings it is loose on pages
    with many negative cosines. A sufficient condition, checked once per problem (cached).

    Examples
    --------
    >>> from slate.page import random_problem
    >>> has_non_negative_cosines(random_problem(8, 3, "dense", seed=0))
    False
    """
    if problem.embeddings is None or problem.diversity <= 0 or problem.n_pairs == 0:
        return False
    return _dual(problem, 8).non_negative


def embedding_bound(
    problem: PageProblem,
    assignment: NDArray[np.int64] | None = None,
    *,
    deadline: float | None = None,
    warm_start: NDArray[np.float64] | None = None,
    max_rank: int = 8,
    slope: float = 1.0,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[float, NDArray[np.float64], dict[str, Any]] | None:
    """The Lagrangian embedding-sum bound (module docstring), or None when it does not apply.

    It applies when the page's similarity comes from embeddings and the diversity weight is
    positive. Returns ``(bound, duals, info)``; ``duals`` (``rank * dim + 1`` numbers: the
    multipliers and the budget price) warm-start the next call for the same member's page.
    ``assignment`` (a page) gives the starting multipliers ``d * L^T z(page)`` when there is no
    warm start. ``slope`` in (0, 1] uses the minorant ``slope * c <= max(0, c)`` in place of
    ``c`` (any such slope gives a valid bound; smaller slopes give away less on negative
    cosines and more on positive ones; measured in docs/solvers.md: 1 is the tightest on the
    benchmark pages).

    Raises
    ------
    InvalidProblemError
        ``slope`` is not in (0, 1].
    """
    if not 0.0 < slope <= 1.0:
        raise InvalidProblemError(f"The 'slope' parameter of embedding_bound must be in (0, 1]; got {slope!r} instead.")
    if problem.embeddings is None or problem.diversity <= 0 or problem.n_pairs == 0:
        return None
    dual = _dual(problem, max_rank, slope)
    n_vars = dual.rank * dual.dim + 1
    info: dict[str, Any] = {"rank": dual.rank}
    x0 = np.zeros(n_vars)
    if warm_start is not None and np.shape(warm_start) == (n_vars,) and np.isfinite(warm_start).all():
        x0 = np.array(warm_start, dtype=np.float64)
        info["warm_start"] = "used"
    else:
        if warm_start is not None:
            info["warm_start"] = f"ignored: {n_vars} multipliers expected, got shape {np.shape(warm_start)}"
        if assignment is not None:
            picked = dual.emb[np.arange(problem.n_titles), np.asarray(assignment)]
            x0[:-1] = (dual.d * dual.factor.T @ picked).ravel()
    best_x = x0.copy()
    best = dual.exact(x0[:-1].reshape(dual.rank, dual.dim))
    finite = problem.scores[problem.candidates]
    scale = float(np.abs(finite).max()) if finite.size else 1.0
    x = x0
    evaluations = 0
    for factor in _TEMPERATURES:
        if deadline is not None and clock() >= deadline:
            break
        tau = factor * scale

        def smoothed(v: NDArray[np.float64], tau: float = tau) -> tuple[float, NDArray[np.float64]]:
            return dual.smoothed(v, tau)

        x, n = _lbfgs(smoothed, x, _ITERATIONS, deadline, clock)
        evaluations += n
        value = dual.exact(x[:-1].reshape(dual.rank, dual.dim))
        if value < best:
            best, best_x = value, x.copy()
    info["evaluations"] = evaluations
    return best, best_x, info


def _lagrangian_page(
    problem: PageProblem,
    duals: NDArray[np.float64],
    objective: float,
    deadline: float | None,
    clock: Callable[[], float],
) -> tuple[NDArray[np.int64], float] | None:
    """The page the multipliers point at (each title's best image of the Lagrangian, the budget
    kept), improved by local search when its measured cost fits the time left (always without a
    deadline; under a deadline only once a run without one has measured it); returned when it beats ``objective``
    and keeps every constraint. By Shapley-Folkman only about ``D + 1`` titles of it can
    disagree with a relaxed optimum, so it is often close to the bound."""
    from slate.solvers.bounds import budgeted_unary_optimum
    from slate.solvers.fast import local_search

    dual = _dual(problem, 8)
    y = duals[:-1].reshape(dual.rank, dual.dim)
    theta = ck.embedding_theta(dual.ut, dual.emb, dual.factor @ y)
    page, _ = budgeted_unary_optimum(problem, theta)
    expected = dual.search_seconds
    if deadline is None or (expected is not None and clock() + expected < deadline):
        t0 = clock()
        page = local_search(problem, page)
        took = clock() - t0  # the fastest run so far (a run the machine interrupted is not typical)
        dual.search_seconds = took if expected is None else min(expected, took)
    if problem.violations(page):
        return None
    value = problem.evaluate(page).objective
    return (page, value) if value > objective else None


def embedding_certificate(
    problem: PageProblem,
    assignment: NDArray[np.int64],
    *,
    deadline: float | None = None,
    warm_start: NDArray[np.float64] | None = None,
    objective: float | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> Certificate | None:
    """:func:`embedding_bound` as a :class:`Certificate` of ``assignment`` (None when it does not apply).

    ``objective``, when given, is ``assignment``'s objective (the caller has it: saves an evaluation).

    Examples
    --------
    >>> import numpy as np
    >>> from slate.page import random_problem
    >>> from slate.solvers import FastSolver
    >>> problem = random_problem(30, 6, "dense", seed=1)
    >>> page = FastSolver(compute_bound=False).solve(problem).assignment
    >>> cert = embedding_certificate(problem, page)
    >>> cert.method, bool(cert.bound >= cert.objective)
    ('embedding', True)
    """
    t0 = clock()
    a = np.asarray(assignment, dtype=np.int64)
    if problem.embeddings is None or problem.diversity <= 0 or problem.n_pairs == 0:
        return None
    stop = None if deadline is None else t0 + _BOUND_SHARE * (deadline - t0)
    out = embedding_bound(problem, a, deadline=stop, warm_start=warm_start, clock=clock)
    if out is None:
        return None
    bound, duals, info = out
    if objective is None:
        objective = problem.evaluate(a).objective
    better = _lagrangian_page(problem, duals, objective, deadline, clock)
    if better is not None:
        a, objective = better
        info["improved"] = 1
    info["ms"] = (clock() - t0) * 1000.0
    return Certificate(
        bound=bound,
        objective=objective,
        method="embedding",
        duals=duals,
        info=info,
        assignment=a if better is not None else None,
    )
