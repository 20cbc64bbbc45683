"""``auto``: pick a solver by the page's structure and size, under a time budget.

The rules, in order:

1. A page whose interaction graph is a forest and that has no quotas goes to ``chain``
   (exact dynamic programming, milliseconds).
2. With no time limit, or a limit large enough for the exact MILP on a page of this size
   (``exact_min_ms``), ``exact`` runs, warm-started from ``fast``, and is cut at the limit.
3. Otherwise ``fast`` runs within the limit.
4. If the chosen solver raises or returns an invalid page, the page-blind ``independent``
   assignment is returned instead (``info["fallback"]`` says why). ``auto`` never raises on a
   valid problem and never returns a page that breaks locks or the budget.

The time limit is honoured by the solver chosen; the overhead of ``auto`` itself (routing, result
building) is measured by ``benchmarks/page_solvers.py``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

from slate.page.problem import PageProblem
from slate.solvers import chain as chain_module
from slate.solvers.base import register_solver
from slate.solvers.exact import ExactSolver
from slate.solvers.fast import FastSolver
from slate.solvers.independent import IndependentSolver
from slate.solvers.result import SolveResult, Status, normalize_time_limit

__all__ = ["AutoSolver"]


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
            else:
                result = fast.solve(problem, time_limit_ms=time_limit_ms)
            if result.status is Status.INFEASIBLE and problem.violations(result.assignment):
                info["note"] = "the page's quotas could not be met"
        except Exception as err:  # never fail: a valid page with the reason
            info["fallback"] = f"{route} raised {type(err).__name__}: {err}"
            result = IndependentSolver().solve(problem)
        return _rename(result, started, info)


def _rename(result: SolveResult, started: float, info: dict[str, Any]) -> SolveResult:
    merged = {**result.info, **info, "inner_solver": result.solver, "inner_wall_ms": result.wall_ms}
    return replace(result, solver="auto", wall_ms=(time.perf_counter() - started) * 1000.0, info=merged)


register_solver("auto", AutoSolver)
