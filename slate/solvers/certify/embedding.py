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
in steps), and ``g`` itself is evaluated exactly at every point visited (one fused numba pass
gives both, :func:`~slate.solvers.certify._kernels.embedding_dual_eval`), so the reported bound
is valid however early the minimisation stops. The L-BFGS runs in numba as a resumable state
machine (:func:`~slate.solvers.certify._kernels.embedding_lbfgs`, chunks of evaluations sized
to the time left); each time the bound improves, the page the multipliers point at is scored
from the embeddings (incrementally), so the minimisation can stop as soon as the bound meets
the best page within a tolerance. Its duality gap is bounded by the non-convexity of about
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
from slate.solvers.certify.certificate import OPTIMAL_RTOL, Certificate

__all__ = [
    "embedding_bound",
    "embedding_certificate",
    "has_non_negative_cosines",
    "layout_factor",
    "page_parts",
]

_TEMPERATURES = (1e-3, 3e-4, 1e-4)  # times the score scale
_ITERATIONS = 25  # L-BFGS iterations per temperature
_SCALED_FIRST_STEP = True  # first L-BFGS step scaled by the known curvature (see _Run.temperature)
_MEMORY = 8  # L-BFGS pairs kept
_TAIL_S = 5e-5  # seconds kept after the minimisation for the page's checks (measured on 150x20)
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
        ptr, nbr, pid, _ = fk.build_adjacency(problem.n_titles, self.pairs)
        self.adjacency = (ptr, nbr, pid)

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

    def known_penalty(self, a: NDArray[np.int64]) -> float:
        """Page ``a``'s penalty when it is the remembered one, else NaN."""
        last = self.last_penalty
        key = np.ascontiguousarray(a, dtype=np.int64).tobytes()
        return last[1] if last is not None and last[0] == key else float("nan")

    def remember(self, a: NDArray[np.int64], penalty: float) -> None:
        """Remember page ``a``'s penalty (computed elsewhere, e.g. incrementally)."""
        self.last_penalty = (np.ascontiguousarray(a, dtype=np.int64).tobytes(), penalty)

    def page_value(self, a: NDArray[np.int64]) -> float:
        """The objective of page ``a`` from the embeddings (``problem.evaluate`` up to rounding)."""
        return float(self.unary[np.arange(len(a)), a].sum()) - self.penalty(a)


class _Run:
    """One minimisation of the bound: the state of the numba L-BFGS
    (:func:`~slate.solvers.certify._kernels.embedding_lbfgs`), the best exact bound so far with
    its multipliers and (``track``) the best page the multipliers have pointed at."""

    def __init__(
        self, dual: _Dual, x0: NDArray[np.float64], track: bool, objective: float | None, rtol: float
    ) -> None:
        self.dual = dual
        n = x0.shape[0]
        n_titles, n_images = dual.ut.shape
        self.data = (
            dual.ut,
            dual.emb,
            dual.factor,
            dual.change,
            dual.unary,
            dual.pairs,
            dual.weights,
            *dual.adjacency,
        )
        budget = float(dual.budget if dual.budget >= 0 else 1 << 40)
        # tau, 1 / d, budget, priced, track, rtol, proof rtol, iterations per temperature
        self.par = np.array(
            [
                0.0,
                1.0 / dual.d,
                budget,
                float(dual.budget >= 0),
                float(track),
                rtol,
                OPTIMAL_RTOL,
                _ITERATIONS,
            ]
        )
        self.fs = np.array([0.0, np.inf, -np.inf if objective is None else float(objective), 1.0, np.nan])
        self.ints = np.zeros(7, dtype=np.int64)
        self.state = (
            np.array(x0, dtype=np.float64),  # x
            np.empty(n),  # gradient at x
            np.zeros((_MEMORY, n)),  # steps
            np.zeros((_MEMORY, n)),  # gradient changes
            np.zeros(_MEMORY),  # 1 / (step . change)
            self.fs,
            self.ints,
            np.array(x0, dtype=np.float64),  # best multipliers
            np.zeros(n_titles, dtype=np.int64),  # best page
            np.empty(n),  # trial point
            np.empty(n),  # direction
            np.empty(n),  # gradient at the trial point
            np.empty((n_titles, n_images)),  # the Lagrangian
            np.empty((3, max(dual.dim, n_images))),
            np.full(n, -1.0),  # first-step scales (set per temperature)
            np.empty(_MEMORY),
            np.zeros(n_titles, dtype=np.int64),  # the last page scored
        )

    def seed(self, page: NDArray[np.int64], penalty: float) -> None:
        """The page to score the first Lagrangian page against (its penalty, or NaN)."""
        self.state[16][:] = page
        self.fs[4] = penalty

    @property
    def best(self) -> float:
        return float(self.fs[1])

    @property
    def best_x(self) -> NDArray[np.float64]:
        return self.state[7].copy()

    @property
    def objective(self) -> float:
        return float(self.fs[2])

    @property
    def page(self) -> NDArray[np.int64] | None:
        return self.state[8].copy() if self.ints[4] else None

    @property
    def evaluations(self) -> int:
        return int(self.ints[2])

    @property
    def pages(self) -> int:
        return int(self.ints[3])

    def met(self) -> bool:
        """The best bound meets the best page within ``rtol`` (relative to the bound)."""
        return bool(ck._met(self.fs, self.par))

    def temperature(self, tau: float) -> None:
        """Start the next stage at temperature ``tau`` from the current point."""
        self.par[0] = tau
        self.ints[5] = 0
        first = self.state[14]
        if _SCALED_FIRST_STEP:
            # the multipliers' quadratic term has curvature 1 / d; the budget price's is at most
            # (titles with a change) / (4 tau)
            first[:] = self.dual.d
            first[-1] = 4.0 * tau / max(1.0, float(self.dual.change.any(axis=1).sum()))

    def advance(self, max_evals: int) -> int:
        """Up to ``max_evals`` evaluations: 1 when the bound meets the page, 2 when the stage is done."""
        return int(ck.embedding_lbfgs(self.data, self.par, self.state, max_evals))


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
    x0, info = _start(problem, dual, assignment, warm_start)
    run = _Run(dual, x0, track=False, objective=objective, rtol=rtol)
    _minimise(run, deadline, clock)
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


def _minimise(run: _Run, deadline: float | None, clock: Callable[[], float]) -> None:
    """L-BFGS on the smoothed bound, temperature lowered in stages, until the bound meets the
    best page within the run's tolerance, the deadline passes or the last stage is done. At
    least one evaluation always runs; the clock is read between chunks of evaluations sized to
    about half the time left (from the measured cost of one)."""
    per_eval: float | None = None
    started = False
    for factor in _TEMPERATURES:
        run.temperature(factor * run.dual.scale)
        while True:
            chunk = 1 << 30
            if deadline is not None:
                now = clock()
                if started and now >= deadline:
                    return
                if per_eval is not None and per_eval > 0.0:
                    chunk = max(1, int(0.5 * (deadline - now) / per_eval))
                elif per_eval is None:
                    chunk = 1
            t0 = clock()
            before = run.evaluations
            code = run.advance(chunk)
            started = True
            done = run.evaluations - before
            if done and deadline is not None:
                took = (clock() - t0) / done
                per_eval = took if per_eval is None else max(0.5 * per_eval, min(2.0 * per_eval, took))
            if code == 1:
                return
            if code == 2:
                break


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
    run = _Run(dual, x0, track=not problem.has_quotas, objective=objective, rtol=rtol)
    run.seed(a, dual.known_penalty(a))
    stop = None if deadline is None else deadline - _TAIL_S
    _minimise(run, stop, clock)
    info["evaluations"] = run.evaluations
    info["pages"] = run.pages
    page, value = (a, objective) if run.page is None else (run.page, run.objective)
    if run.page is not None:  # scored incrementally (rounding: 1e-13), remembered for the result
        dual.remember(page, float(dual.unary[np.arange(len(page)), page].sum()) - value)
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
