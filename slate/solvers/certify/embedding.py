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
from slate.page.problem import ObjectiveParts, PageProblem
from slate.page.similarity import unit_vectors
from slate.solvers import _fast_kernels as fk
from slate.solvers.certify import _kernels as ck
from slate.solvers.certify.certificate import OPTIMAL_RTOL, Certificate, meets

__all__ = [
    "embedding_bound",
    "embedding_certificate",
    "has_non_negative_cosines",
    "layout_factor",
    "page_parts",
]

_TEMPERATURES = (1e-3, 3e-4, 1e-4)  # times the score scale
_ITERATIONS = 25  # L-BFGS iterations per temperature
_SCALED_FIRST_STEP = True
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
    stop: Callable[[bool], bool],
    first: NDArray[np.float64] | None = None,
    memory: int = 8,
) -> NDArray[np.float64]:
    """Minimise a smooth convex ``fun`` (value and gradient) by L-BFGS with backtracking, keeping
    the last coordinate (the budget price) >= 0 by projection. ``stop(in_line_search)`` is asked
    after every evaluation (and before the first); when it says so the last accepted iterate is
    returned. ``first`` scales the first step per coordinate (an inverse curvature); without it
    the first step is the gradient over its largest entry."""
    value, grad = fun(x)
    s_list: list[NDArray[np.float64]] = []
    y_list: list[NDArray[np.float64]] = []
    for _ in range(iterations):
        if stop(False):
            break
        q = grad.copy()  # two-loop recursion
        alphas = []
        for s_k, y_k in zip(reversed(s_list), reversed(y_list), strict=True):
            a_k = float(s_k @ q) / float(y_k @ s_k)
            alphas.append(a_k)
            q -= a_k * y_k
        if s_list:
            q *= float(s_list[-1] @ y_list[-1]) / float(y_list[-1] @ y_list[-1])
        elif first is not None:
            q *= first
        else:
            q /= max(1.0, float(np.abs(grad).max()))
        for (s_k, y_k), a_k in zip(zip(s_list, y_list, strict=True), reversed(alphas), strict=True):
            q += (a_k - float(y_k @ q) / float(y_k @ s_k)) * s_k
        step = 1.0
        first = True
        while True:
            if not first and stop(True):
                return x  # mid line search: keep the last accepted iterate
            first = False
            trial = x - step * q
            trial[-1] = max(0.0, trial[-1])
            t_value, t_grad = fun(trial)
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
    return x


class _Dual:
    """The bound's arrays for one problem and its exact and smoothed evaluations."""

    def __init__(self, problem: PageProblem, max_rank: int, slope: float = 1.0) -> None:
        assert problem.embeddings is not None
        self.d = float(problem.diversity) * slope  # the minorant slope * c <= max(0, c)
        self.factor, sigma = layout_factor(problem, max_rank)
        # unit vectors as the problem's similarity computes them (its cosines, to the last bit)
        self.emb = np.ascontiguousarray(unit_vectors(problem.embeddings) * problem.candidates[:, :, None])
        self.ut = problem.unary + 0.5 * self.d * sigma * (self.emb**2).sum(axis=2)
        self.change = np.ascontiguousarray(problem.changes, dtype=np.uint8)
        self.budget = -1 if problem.max_changes is None else int(problem.max_changes)
        self.rank = self.factor.shape[1]
        self.dim = self.emb.shape[2]
        self.search_seconds: float | None = None  # the local search's measured cost on this page
        self.non_negative = bool((self.emb >= 0.0).all())  # then every cosine is >= 0
        finite = problem.scores[problem.candidates]
        self.scale = float(np.abs(finite).max()) if finite.size else 1.0
        self.unary = problem.unary
        self.pairs = np.ascontiguousarray(problem.pairs, dtype=np.int64)
        self.weights = problem.diversity * np.asarray(problem.pair_weights, dtype=np.float64)
        self.last_penalty: tuple[bytes, float] | None = None

    def exact(self, y: NDArray[np.float64]) -> float:
        """``g(Y)``: the bound for multipliers ``y`` (rank, dim), evaluated exactly."""
        theta = ck.embedding_theta(self.ut, self.emb, self.factor @ y)
        budget = self.budget if self.budget >= 0 else 1 << 40
        return float(fk.budgeted_max(theta, self.change, budget)) + float((y * y).sum()) / (2.0 * self.d)

    def penalty(self, a: NDArray[np.int64]) -> float:
        """Page ``a``'s diversity penalty from the embeddings (the last page's is remembered:
        the result of a solve re-reads the page the certificate just scored)."""
        a = np.ascontiguousarray(a, dtype=np.int64)
        key = a.tobytes()
        last = self.last_penalty
        if last is not None and last[0] == key:
            return last[1]
        value = float(ck.embedding_penalty(self.emb, self.pairs, self.weights, a))
        self.last_penalty = (key, value)
        return value

    def page_value(self, a: NDArray[np.int64]) -> float:
        """The objective of page ``a`` from the embeddings (``problem.evaluate`` up to rounding)."""
        return float(self.unary[np.arange(len(a)), a].sum()) - self.penalty(a)


class _Run:
    """One minimisation of the bound: its scratch arrays, the best exact bound so far with its
    multipliers, and (``track``) the best page the multipliers have pointed at."""

    def __init__(self, dual: _Dual, track: bool, objective: float | None, rtol: float) -> None:
        self.dual = dual
        self.theta = np.empty(dual.ut.shape)
        self.grad_m = np.empty((dual.ut.shape[0], dual.dim))
        self.budget = dual.budget if dual.budget >= 0 else 1 << 40
        self.best = np.inf
        self.best_x: NDArray[np.float64] | None = None
        self.track = track
        self.page: NDArray[np.int64] | None = None
        self.objective = -np.inf if objective is None else float(objective)
        self.rtol = rtol
        self.evaluations = 0
        self.pages = 0

    def __call__(self, x: NDArray[np.float64], tau: float) -> tuple[float, NDArray[np.float64]]:
        """Smoothed ``g`` (budget priced by ``x[-1]``) and its gradient; records the exact ``g``."""
        dual = self.dual
        y = x[:-1].reshape(dual.rank, dual.dim)
        mu = float(x[-1]) if dual.budget >= 0 else 0.0
        value, dmu, top = ck.embedding_dual_step(
            dual.ut, dual.emb, dual.factor @ y, dual.change, mu, tau, self.budget, self.grad_m, self.theta
        )
        self.evaluations += 1
        norm = float((y * y).sum()) / (2.0 * dual.d)
        exact = float(top) + norm
        if exact < self.best:
            self.best, self.best_x = exact, x.copy()
            if self.track and not self.met():
                self._page()
        grad = np.empty_like(x)
        grad[:-1] = (dual.factor.T @ self.grad_m + y / dual.d).ravel()
        grad[-1] = dmu + dual.budget if dual.budget >= 0 else 0.0
        return value + norm + (mu * dual.budget if dual.budget >= 0 else 0.0), grad

    def _page(self) -> None:
        """The page the current multipliers point at (``theta`` holds their Lagrangian)."""
        page = ck.budgeted_argmax(self.theta, self.dual.change, self.budget)
        self.pages += 1
        value = self.dual.page_value(page)
        if value > self.objective:
            self.page, self.objective = page, value

    def met(self) -> bool:
        """The best bound meets the best page within ``rtol`` (relative to the bound)."""
        if self.objective == -np.inf:
            return False
        slack = self.best - self.objective
        return slack <= self.rtol * max(abs(self.best), 1e-9) or meets(self.best, self.objective)


def embedding_bound(
    problem: PageProblem,
    assignment: NDArray[np.int64] | None = None,
    *,
    deadline: float | None = None,
    warm_start: NDArray[np.float64] | None = None,
    max_rank: int = 8,
    slope: float = 1.0,
    objective: float | None = None,
    rtol: float = OPTIMAL_RTOL,
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

    The exact bound is evaluated at every point the minimisation visits (it costs one pass over
    the page beside the smoothed one), so it stops as soon as the bound meets ``objective`` (a
    known page's value) within ``rtol`` relative to the bound, or at ``deadline``.

    Raises
    ------
    InvalidProblemError
        ``slope`` is not in (0, 1].
    """
    if not 0.0 < slope <= 1.0:
        raise InvalidProblemError(
            f"The 'slope' parameter of embedding_bound must be in (0, 1]; got {slope!r} instead."
        )
    if problem.embeddings is None or problem.diversity <= 0 or problem.n_pairs == 0:
        return None
    dual = _dual(problem, max_rank, slope)
    run = _Run(dual, track=False, objective=objective, rtol=rtol)
    x0, info = _start(problem, dual, assignment, warm_start)
    _minimise(run, x0, deadline, clock)
    info["evaluations"] = run.evaluations
    assert run.best_x is not None
    return run.best, run.best_x, info


def _start(
    problem: PageProblem,
    dual: _Dual,
    assignment: NDArray[np.int64] | None,
    warm_start: NDArray[np.float64] | None,
) -> tuple[NDArray[np.float64], dict[str, Any]]:
    """The starting multipliers: the warm start when it has the right shape, else ``d L^T z(page)``."""
    n_vars = dual.rank * dual.dim + 1
    info: dict[str, Any] = {"rank": dual.rank}
    x0 = np.zeros(n_vars)
    if warm_start is not None and np.shape(warm_start) == (n_vars,) and np.isfinite(warm_start).all():
        x0 = np.array(warm_start, dtype=np.float64)
        x0[-1] = max(0.0, x0[-1])
        info["warm_start"] = "used"
    else:
        if warm_start is not None:
            info["warm_start"] = f"ignored: {n_vars} multipliers expected, got shape {np.shape(warm_start)}"
        if assignment is not None:
            picked = dual.emb[np.arange(problem.n_titles), np.asarray(assignment)]
            x0[:-1] = (dual.d * dual.factor.T @ picked).ravel()
    return x0, info


def _minimise(run: _Run, x0: NDArray[np.float64], deadline: float | None, clock: Callable[[], float]) -> None:
    """L-BFGS on the smoothed bound, temperature lowered in steps, until the bound meets the
    best page within the run's tolerance, the deadline passes or the last step converges."""

    def stop(in_line_search: bool) -> bool:
        return run.met() or (deadline is not None and clock() >= deadline)

    x = x0
    for i, factor in enumerate(_TEMPERATURES):
        tau = factor * run.dual.scale

        def smoothed(v: NDArray[np.float64], tau: float = tau) -> tuple[float, NDArray[np.float64]]:
            return run(v, tau)

        if i and stop(False):
            break
        first = None
        if _SCALED_FIRST_STEP:
            # the multipliers' quadratic term has curvature 1 / d; the budget price's is at most
            # (titles with a change) / (4 tau)
            first = np.full(x.shape, run.dual.d)
            first[-1] = 4.0 * tau / max(1.0, float(run.dual.change.any(axis=1).sum()))
        x = _lbfgs(smoothed, x, _ITERATIONS, stop, first)


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


def page_parts(problem: PageProblem, assignment: NDArray[np.int64]) -> ObjectiveParts:
    """A page's objective and its parts computed from its unit embeddings:
    ``problem.evaluate(a)`` up to rounding (1e-13 on 150x20), without reading the pair costs
    (on a dense 150x20 page they are 36 MB, and gathering one entry per pair costs 0.2-1.3 ms).

    Raises
    ------
    InvalidProblemError
        The problem has no embeddings.

    Examples
    --------
    >>> from slate.page import random_problem
    >>> problem = random_problem(12, 3, "dense", seed=0)
    >>> a = problem.previous.clip(0)
    >>> bool(abs(page_parts(problem, a).objective - problem.evaluate(a).objective) < 1e-12)
    True
    """
    if problem.embeddings is None:
        raise InvalidProblemError(
            "The 'embeddings' field of the page problem must be given to page_parts; got None instead."
        )
    a = np.asarray(assignment, dtype=np.int64)
    t = np.arange(problem.n_titles)
    relevance = float(problem.scores[t, a].sum())
    penalty = _dual(problem, 8).penalty(a) if problem.n_pairs else 0.0
    n_changes = int(problem.changes[t, a].sum())
    churn = problem.churn * n_changes
    return ObjectiveParts(relevance - penalty - churn, relevance, penalty, churn, n_changes)


def _local_search(
    problem: PageProblem,
    page: NDArray[np.int64],
    deadline: float | None,
    clock: Callable[[], float],
) -> NDArray[np.int64]:
    """``page`` improved by local search when its measured cost fits the time left (always
    without a deadline; under a deadline only once a run without one has measured it)."""
    from slate.solvers.fast import local_search

    dual = _dual(problem, 8)
    expected = dual.search_seconds
    if deadline is None or (expected is not None and clock() + expected < deadline):
        t0 = clock()
        page = local_search(problem, page)
        took = clock() - t0  # the fastest run so far (a run the machine interrupted is not typical)
        dual.search_seconds = took if expected is None else min(expected, took)
    return page


def embedding_certificate(
    problem: PageProblem,
    assignment: NDArray[np.int64],
    *,
    deadline: float | None = None,
    warm_start: NDArray[np.float64] | None = None,
    objective: float | None = None,
    rtol: float = OPTIMAL_RTOL,
    clock: Callable[[], float] = time.perf_counter,
) -> Certificate | None:
    """:func:`embedding_bound` as a :class:`Certificate` of ``assignment`` (None when it does not apply).

    ``objective``, when given, is ``assignment``'s objective (the caller has it: saves an
    evaluation). While the bound is minimised, every time it improves the page its multipliers
    point at (each title's best image of the Lagrangian, the budget kept) is scored, and the
    best such page that beats ``assignment`` and keeps every constraint is certified instead
    (``Certificate.assignment``): by Shapley-Folkman only about ``D + 1`` titles of it can
    disagree with a relaxed optimum, so it is close to the bound. The minimisation stops once
    the bound is within ``rtol`` of the best page (relative to the bound; the default asks for
    a proof) or at ``deadline``; then the best page is improved by local search when its
    measured cost fits the time left.

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
    dual = _dual(problem, 8)
    if objective is None:
        objective = dual.page_value(a)
    x0, info = _start(problem, dual, a, warm_start)
    # quotas are not in the Lagrangian: its pages are only scored when there are none
    run = _Run(dual, track=not problem.has_quotas, objective=objective, rtol=rtol)
    stop = None if deadline is None else t0 + _BOUND_SHARE * (deadline - t0)
    _minimise(run, x0, stop, clock)
    assert run.best_x is not None
    info["evaluations"] = run.evaluations
    info["pages"] = run.pages
    page, value = (a, objective) if run.page is None else (run.page, run.objective)
    if not run.met():
        searched = _local_search(problem, page, deadline, clock)
        if not np.array_equal(searched, page):
            page, value = searched, dual.page_value(searched)
    better = None
    if value > objective and not problem.violations(page):
        better, objective = page, value
        info["improved"] = 1
    info["ms"] = (clock() - t0) * 1000.0
    return Certificate(
        bound=run.best,
        objective=objective,
        method="embedding",
        duals=run.best_x,
        info=info,
        assignment=better,
    )
