"""The page-blind baseline: each title's best image on its own score (respecting locks and budget)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from slate.page.problem import PageProblem
from slate.solvers.base import register_solver
from slate.solvers.bounds import budgeted_unary_optimum, trivial_upper_bound
from slate.solvers.quotas import repair_quotas
from slate.solvers.result import SolveResult, Status, check_problem, make_result, normalize_time_limit

__all__ = ["IndependentSolver"]


@dataclass(frozen=True)
class IndependentSolver:
    """Per-title argmax of score minus churn, ignoring the page (the baseline).

    Respects locks and the change budget (keeping the changes with the largest gain) and, when
    the page has style quotas, repairs them greedily. Reports the trivial upper bound.

    Examples
    --------
    >>> import numpy as np
    >>> from slate.page import PageProblem
    >>> p = PageProblem.from_arrays(np.array([[0.1, 0.3], [0.5, 0.2]]))
    >>> IndependentSolver().solve(p).assignment.tolist()
    [1, 0]
    """

    name: str = "independent"

    def solve(self, problem: PageProblem, time_limit_ms: float | None = None) -> SolveResult:
        started = time.perf_counter()
        check_problem(problem, self.name)
        normalize_time_limit(time_limit_ms)  # refused when NaN or negative, even though unused
        assignment, _ = budgeted_unary_optimum(problem)
        info = {}
        if problem.has_quotas:
            assignment, ok = repair_quotas(problem, assignment)
            info["quota_repair"] = ok
        return make_result(
            problem,
            assignment,
            status=Status.FEASIBLE,
            solver=self.name,
            started=started,
            bound=trivial_upper_bound(problem),
            info=info,
        )


register_solver("independent", IndependentSolver)
