"""slate: joint, personalized artwork selection for whole homepages.

The flow: member context -> bandit scores -> :class:`PageProblem` -> :func:`solve` ->
:class:`SolveResult` (one image per title) -> decision log -> offline replay.
"""

from slate import bandit, logs, page, replay, serve, solvers, stability
from slate.errors import InfeasibleProblemError, InvalidProblemError, SlateError, UnknownSolverError
from slate.page import DenseLayout, GridLayout, PageProblem, read_problem, write_problem
from slate.serve import PageDecision, compose
from slate.solvers import SolveResult, Status, available_solvers, get_solver, solve

__version__ = "0.1.0"

__all__ = [
    "DenseLayout",
    "GridLayout",
    "InfeasibleProblemError",
    "InvalidProblemError",
    "PageDecision",
    "PageProblem",
    "SlateError",
    "SolveResult",
    "Status",
    "UnknownSolverError",
    "__version__",
    "available_solvers",
    "bandit",
    "compose",
    "get_solver",
    "logs",
    "page",
    "read_problem",
    "replay",
    "serve",
    "solve",
    "solvers",
    "stability",
    "write_problem",
]
