"""``auto``: pick a solver by the page's structure and size, under a time budget.

The rules, in order:

1. A page whose interaction graph is a forest and that has no quotas goes to ``chain``
   (exact dynamic programming, milliseconds).
2. With no time limit, or a limit large enough for the exact MILP on a page of this size
   (``exact_min_ms``), ``exact`` runs, warm-started from ``fast``, and is cut at the limit.
3. Otherwise ``fast`` runs within part of the limit (``fast_share``, 90% on dense pages, 40% on
   dense pages whose embeddings are non-negative and that have quotas; all of it when
   ``certify=False``) and :func:`~slate.solvers.certify.certify` spends the rest proving a bound
   on the page: the local-polytope dual with exact completion, or on dense pages the Lagrangian
   embedding-sum bound. On dense pages whose embeddings are non-negative and that have no
   quotas ``fast`` is skipped: the embedding certificate is tight there and the pages its
   multipliers point at beat ``fast``'s within a serving budget, so it starts from the
   page-blind page and its best Lagrangian page is returned (``info["start"] == "page-blind"``).
   A bound that meets the page's objective makes the status ``optimal``; ``certify_rtol`` lets
   the embedding certificate stop early once within that relative gap.
   ``info["certificate"]`` says which certificate was used (``method``, ``bound``, ``gap``) on
   every route (``"chain-dp"``, ``"milp"`` for ``exact``), and ``info["duals"]`` holds the duals
   to warm-start the next certification of the same member's page (``warm_start=``).
4. If the chosen solver raises or returns an invalid page, the page-blind ``independent``
   assignment is returned instead (``info["fallback"]`` says why). ``auto`` never raises on a
   valid problem and never returns a page that breaks locks or the budget.

The time limit is honoured by the solver chosen; the overhead of ``auto`` itself (routing, result
building) is measured by ``benchmarks/page_solvers.py``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, is_dataclass, replace
from typing import Any

import numpy as np

from slate.errors import InvalidProblemError
from slate.page.problem import PageProblem
from slate.solvers import chain as chain_module
from slate.solvers.base import register_solver
from slate.solvers.bounds import budgeted_unary_optimum
from slate.solvers.certify import OPTIMAL_RTOL, Certificate, certify, has_non_negative_cosines, is_dense
from slate.solvers.certify.embedding import page_parts
from slate.solvers.exact import ExactSolver
from slate.solvers.fast import FastSolver
from slate.solvers.independent import IndependentSolver
from slate.solvers.result import SolveResult, Status, check_problem, make_result, normalize_time_limit

__all__ = ["AutoSolver"]

_DENSE_FAST_SHARE = 0.9  # of the limit, for fast on dense pages (it needs most of a small one)
# On dense pages with non-negative cosines the embedding certificate is tight and its Lagrangian
# page is as good as fast's, so fast gets a smaller share. Fast's first descent cannot be
# interrupted and overshoots its share by a few tenths of a millisecond, and the certificate's
# final exact evaluations and Lagrangian page add about as much after its deadline: the
# certificate gets the rest less _TIGHT_TAIL_MS (measured on 150x20 pages, docs/solvers.md).
_TIGHT_FAST_SHARE = 0.4
_TIGHT_TAIL_MS = 0.8
# Without quotas such pages skip fast: the certificate starts from the page-blind page and its
# Lagrangian pages beat fast's within the budget; after its deadline the final page's checks
# and the result's evaluation take about this long (measured on 150x20, docs/solvers.md).
_EMBEDDING_TAIL_MS = 0.25


@dataclass(frozen=True)
class AutoSolver:
    """Route a page to ``chain``, ``exact`` or ``fast`` (see the module docstring).

    Parameters
    ----------
    exact_min_ms : float, default 2000
        Smallest time limit for which ``exact`` is tried on a page that is not a forest.
    exact_max_titles : int, default 80
        Larger pages never go to ``exact`` unless asked for by name (dense pages beyond
        ~20 titles are not provable in minutes).
    seed : int
        Passed to ``fast``.
    certify : bool, default True
        Certify ``fast``'s page with the time left (see the module docstring).
    fast_share : float, default 0.5
        Share of the time limit ``fast`` may use when ``certify`` is on.
    warm_start : Certificate or ndarray, optional
        The previous session's certificate (or ``info["duals"]``) for the same member.
    certify_rtol : float, default OPTIMAL_RTOL
        The embedding certificate stops once its bound is within this relative gap of the best
        page (the default spends the budget on a proof; 0.005 returns as soon as the page is
        certified within 0.5%).

    Examples
    --------
    >>> from slate.page import random_problem
    >>> result = AutoSolver().solve(random_problem(20, 5, "chain", seed=0))
    >>> result.info["route"], result.status.value
    ('chain', 'optimal')
    """

    name: str = "auto"
    exact_min_ms: float = 2000.0
    exact_max_titles: int = 80
    seed: int = 0
    certify: bool = True
    fast_share: float = 0.5
    warm_start: Certificate | np.ndarray | None = None
    certify_rtol: float = OPTIMAL_RTOL

    def __post_init__(self) -> None:
        rtol = self.certify_rtol
        if not isinstance(rtol, (int, float)) or not 0.0 <= rtol < 1.0 or rtol != rtol:
            raise InvalidProblemError(
                f"The 'certify_rtol' parameter of AutoSolver must be a number in [0, 1); got {rtol!r} instead."
            )

    def route(self, problem: PageProblem, time_limit_ms: float | None) -> str:
        """The solver name ``auto`` would use for this page and limit."""
        if chain_module.supports(problem):
            return "chain"
        dense = problem.n_pairs > 0.5 * problem.n_titles * (problem.n_titles - 1) / 2
        too_big = problem.n_titles > self.exact_max_titles or (dense and problem.n_titles > 20)
        if not too_big and (time_limit_ms is None or time_limit_ms >= self.exact_min_ms):
            return "exact"
        return "fast"

    def solve(self, problem: PageProblem, time_limit_ms: float | None = None) -> SolveResult:
        started = time.perf_counter()
        check_problem(problem, self.name)
        time_limit_ms = normalize_time_limit(time_limit_ms)
        route = self.route(problem, time_limit_ms)
        fast = FastSolver(seed=self.seed)
        info: dict[str, Any] = {"route": route}
        try:
            if route == "chain":
                result = chain_module.ChainSolver().solve(problem, time_limit_ms=time_limit_ms)
            elif route == "exact":
                result = ExactSolver(warm_start=lambda p: fast.solve(p).assignment).solve(
                    problem, time_limit_ms=time_limit_ms
                )
            elif self.certify:
                result = self._fast_certified(fast, problem, time_limit_ms, started, info)
            else:
                result = fast.solve(problem, time_limit_ms=time_limit_ms)
            if result.status is Status.INFEASIBLE and problem.violations(result.assignment):
                info["note"] = "the page's quotas could not be met"
        except Exception as err:  # never fail: a valid page with the reason
            info["fallback"] = f"{route} raised {type(err).__name__}: {err}"
            result = IndependentSolver().solve(problem)
        if "certificate" not in info:
            kind = {"chain": "chain-dp", "exact": "milp"}.get(route, "mplp")
            if "fallback" in info or result.bound is None:
                kind = "none"
            info["certificate"] = {"method": kind, "bound": result.bound, "gap": result.gap}
        return _rename(result, started, info)

    def _fast_certified(
        self,
        fast: Any,
        problem: PageProblem,
        time_limit_ms: float | None,
        started: float,
        info: dict[str, Any],
    ) -> SolveResult:
        """``fast`` without its own bound, then :func:`certify` with the time left; on dense
        pages with non-negative cosines and no quotas, the embedding certificate alone."""
        dense = is_dense(problem)
        tight = dense and has_non_negative_cosines(problem)
        if tight and not problem.has_quotas:
            return self._embedding_certified(problem, time_limit_ms, started, info)
        share = _TIGHT_FAST_SHARE if tight else _DENSE_FAST_SHARE if dense else self.fast_share
        fast_ms = None if time_limit_ms is None else share * time_limit_ms
        if is_dataclass(fast) and not isinstance(fast, type):
            fast = replace(fast, compute_bound=False)
        result: SolveResult = fast.solve(problem, time_limit_ms=fast_ms)
        if result.status is Status.INFEASIBLE:  # the quota repair failed: no page to certify
            info["certificate"] = {"method": "none", "bound": result.bound, "gap": result.gap}
            return result
        left = None if time_limit_ms is None else time_limit_ms - (time.perf_counter() - started) * 1000.0
        if left is not None and dense:
            left -= _TIGHT_TAIL_MS if tight else _EMBEDDING_TAIL_MS
        cert = certify(
            problem,
            result.assignment,
            time_limit_ms=None if left is None else max(0.0, left),
            warm_start=self.warm_start,
            objective=result.objective,
            rtol=self.certify_rtol,
        )
        return self._certified(problem, result, cert, started, info)

    def _embedding_certified(
        self, problem: PageProblem, time_limit_ms: float | None, started: float, info: dict[str, Any]
    ) -> SolveResult:
        """The embedding certificate from the page-blind page: the page its multipliers point at
        is the page (and ``fast``'s local search improves it when that fits the time left)."""
        start, _ = budgeted_unary_optimum(problem)  # keeps locks and the budget (no quotas here)
        left = None if time_limit_ms is None else time_limit_ms - (time.perf_counter() - started) * 1000.0
        if left is not None:
            left -= _EMBEDDING_TAIL_MS
        cert = certify(
            problem,
            start,
            time_limit_ms=None if left is None else max(0.0, left),
            warm_start=self.warm_start,
            rtol=self.certify_rtol,
        )
        page = start if cert.assignment is None else cert.assignment
        # the page's value from the embeddings: no pass over the 36 MB of pair costs of a 150x20 page
        result = make_result(
            problem, page, status=Status.FEASIBLE, solver="fast", started=started, evaluate=page_parts
        )
        info["start"] = "page-blind"  # the first page (fast's key): then the certificate's Lagrangian pages
        return self._certified(problem, result, cert, started, info)

    @staticmethod
    def _certified(
        problem: PageProblem, result: SolveResult, cert: Certificate, started: float, info: dict[str, Any]
    ) -> SolveResult:
        """``result`` with the certificate's bound (and its page when that is better)."""
        info["certificate"] = {"method": cert.method, "bound": cert.bound, "gap": cert.gap}
        info["duals"] = cert.duals
        info["certify_ms"] = cert.info.get("certify_ms")
        status = result.status
        better = cert.assignment
        if better is not None and np.array_equal(better, result.assignment):
            better = None  # the page the result already holds
        if better is not None and cert.objective > result.objective:  # the certifier found better
            info["improved_by_certificate"] = cert.objective - result.objective
            result = make_result(
                problem,
                better,
                status=status,
                solver=result.solver,
                started=started,
                info=result.info,
                evaluate=page_parts if cert.method == "embedding" else None,
            )
        if cert.optimal and status is not Status.INFEASIBLE:
            status = Status.OPTIMAL
        bound = max(cert.bound, result.objective) if cert.optimal else cert.bound
        return replace(result, bound=bound, status=status)


def _rename(result: SolveResult, started: float, info: dict[str, Any]) -> SolveResult:
    merged = {**result.info, **info, "inner_solver": result.solver, "inner_wall_ms": result.wall_ms}
    return replace(result, solver="auto", wall_ms=(time.perf_counter() - started) * 1000.0, info=merged)


register_solver("auto", AutoSolver)
