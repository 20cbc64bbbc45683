"""``certify``: the tightest proven bound on a page's optimum that fits a time budget."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from slate.errors import InvalidProblemError
from slate.page.problem import PageProblem
from slate.solvers.bounds import budgeted_unary_optimum
from slate.solvers.certify.certificate import OPTIMAL_RTOL, Certificate
from slate.solvers.certify.embedding import embedding_certificate, page_parts
from slate.solvers.certify.polytope import polytope_certificate

__all__ = ["certify", "is_dense", "warm_up"]

_SCAN_NS = 2.0  # nanoseconds per pair-cost entry of one sweep (measured, see fast._scan_ms)
_RESERVE = 0.85  # share of the budget the methods may use before their last evaluation
_EMBEDDING_TAIL_MS = 0.1  # the embedding route's work after its deadline (measured on 150x20)


def is_dense(problem: PageProblem) -> bool:
    """More than half of all title pairs interact (the local polytope is weak there).

    Examples
    --------
    >>> from slate.page import random_problem
    >>> is_dense(random_problem(40, 3, "dense", seed=0)), is_dense(random_problem(40, 3, "local", seed=0))
    (True, False)
    """
    return problem.n_pairs > 0.5 * problem.n_titles * (problem.n_titles - 1) / 2


def _embedding_min_ms(problem: PageProblem) -> float:
    """Rough milliseconds of the embedding certificate's least work (three evaluations of the
    bound, two page scorings; about 0.25 ns per embedding entry, 0.12 ns per pair dimension,
    measured on 150x20: 0.3 ms): below it the certificate is not started."""
    assert problem.embeddings is not None
    dim = problem.embeddings.shape[2]
    return 1e-6 * (0.75 * problem.n_titles * problem.n_images * dim + 0.24 * problem.n_pairs * dim)


def _check(problem: PageProblem, assignment: ArrayLike) -> NDArray[np.int64]:
    a = np.asarray(assignment)
    if a.shape != (problem.n_titles,) or not np.issubdtype(a.dtype, np.integer):
        raise InvalidProblemError(
            f"The 'assignment' parameter of certify must be {problem.n_titles} integer image indices; "
            f"got {a.dtype} of shape {a.shape} instead."
        )
    if problem.violations(a):
        raise InvalidProblemError(
            f"The 'assignment' parameter of certify must be a valid page; it breaks: {problem.violations(a)[0]}."
        )
    return a.astype(np.int64)


def certify(
    problem: PageProblem,
    assignment: ArrayLike,
    *,
    time_limit_ms: float | None = None,
    warm_start: Certificate | NDArray[np.float64] | None = None,
    objective: float | None = None,
    rtol: float = OPTIMAL_RTOL,
    clock: Callable[[], float] = time.perf_counter,
) -> Certificate:
    """Certify a page: the tightest proven upper bound on the optimum within ``time_limit_ms``.

    The page-blind bound (every penalty is >= 0) always holds. Pages whose layout is dense and
    whose similarity comes from embeddings get the Lagrangian embedding-sum bound
    (:mod:`~slate.solvers.certify.embedding`) when its least work (a few evaluations) fits the
    budget; other pages the local-polytope dual with exact
    completion (:mod:`~slate.solvers.certify.polytope`) when one sweep over the pair costs fits
    the budget. The smallest bound is returned; ``info["bounds"]`` lists every bound computed.

    Parameters
    ----------
    problem : PageProblem
    assignment : array_like (n_titles,), int
        A valid page (e.g. ``fast``'s); only this page can be proven optimal.
    time_limit_ms : float, optional
        Budget for the certification (None: the methods' own stopping rules).
    warm_start : Certificate or ndarray, optional
        The certificate (or its ``duals``) of the previous session's page of the same member;
        used by the method whose duals have that shape, ignored (and said so in
        ``info["warm_start"]``) otherwise.
    objective : float, optional
        ``assignment``'s objective when the caller has it (saves an evaluation).
    rtol : float, default OPTIMAL_RTOL
        The embedding bound stops once it is within ``rtol`` of the best page it knows,
        relative to the bound (the default asks for a proof; e.g. 0.005 stops at a 0.5% gap and
        returns early); the other methods stop at a proof.
    clock : callable, default time.perf_counter

    Returns
    -------
    Certificate

    Raises
    ------
    InvalidProblemError
        ``assignment`` is malformed or not a valid page.

    Examples
    --------
    >>> from slate.page import random_problem
    >>> from slate.solvers import FastSolver
    >>> problem = random_problem(20, 5, "local", seed=3)
    >>> page = FastSolver(compute_bound=False).solve(problem).assignment
    >>> cert = certify(problem, page, time_limit_ms=50)
    >>> cert.method in ("mplp", "mplp+completion"), cert.bound >= cert.objective
    (True, True)
    """
    t0 = clock()
    a = _check(problem, assignment)
    embedding = is_dense(problem) and problem.embeddings is not None and problem.diversity > 0
    # stop the methods early enough for the final exact evaluation and the result to fit (the
    # embedding certificate's last steps are small and fixed: its own tail, not a share)
    deadline = None
    if time_limit_ms is not None:
        limit = float(time_limit_ms)
        deadline = (
            t0 + (limit - min(_EMBEDDING_TAIL_MS, 0.5 * limit) if embedding else _RESERVE * limit) / 1000.0
        )
    duals = warm_start.duals if isinstance(warm_start, Certificate) else warm_start
    if objective is None:  # from the embeddings on the embedding route: no pass over the pair costs
        objective = page_parts(problem, a).objective if embedding else problem.evaluate(a).objective
    found = [Certificate(budgeted_unary_optimum(problem)[1], objective, "page-blind")]
    # (a certificate may carry a better page it found; the bound holds for every page)
    if embedding and (time_limit_ms is None or _embedding_min_ms(problem) <= float(time_limit_ms)):
        cert = embedding_certificate(
            problem, a, deadline=deadline, warm_start=duals, objective=objective, rtol=rtol, clock=clock
        )
        if cert is not None:
            found.append(cert)
    elif problem.n_pairs:
        scan_ms = _SCAN_NS * 1e-6 * problem.n_pairs * problem.n_images**2
        if time_limit_ms is None or scan_ms < 0.4 * float(time_limit_ms):
            found.append(polytope_certificate(problem, a, deadline=deadline, warm_start=duals, clock=clock))
    best = min(found, key=lambda c: c.bound)
    info: dict[str, Any] = dict(best.info)
    info["bounds"] = {c.method: c.bound for c in found}
    info["certify_ms"] = (clock() - t0) * 1000.0
    return Certificate(best.bound, best.objective, best.method, best.duals, info, best.assignment)


def warm_up() -> float:
    """Compile (or load from the on-disk cache) the certification kernels; returns the seconds.

    Call it at start-up beside :func:`slate.solvers.fast.warm_up`: the first certification in a
    fresh environment otherwise pays the one-off compile.

    Examples
    --------
    >>> warm_up() >= 0
    True
    """
    from slate.page.random import random_problem
    from slate.solvers.fast import FastSolver

    t0 = time.perf_counter()
    for layout in ("local", "dense"):
        problem = random_problem(12, 4, layout, seed=0)
        page = FastSolver(max_rounds=4, compute_bound=False).solve(problem).assignment
        certify(problem, page)
        polytope_certificate(problem, page)
    return time.perf_counter() - t0
