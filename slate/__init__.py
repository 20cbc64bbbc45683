"""slate: joint, personalized artwork selection for whole homepages.

The flow: member context -> bandit scores -> :class:`PageProblem` -> :func:`solve` ->
:class:`SolveResult` (one image per title) -> decision log -> offline replay.
"""

from slate.errors import InfeasibleProblemError, InvalidProblemError, SlateError, UnknownSolverError
from slate.page import DenseLayout, GridLayout, PageProblem, read_problem, write_problem
from slate.solvers import SolveResult, Status, available_solvers, get_solver, solve

__version__ = "0.1.0"

__all__ = [
    "DenseLayout",
    "GridLayout",
    "InfeasibleProblemError",
    "InvalidProblemError",
    "PageProblem",
    "SlateError",
    "SolveResult",
    "Status",
    "UnknownSolverError",
    "__version__",
    "available_solvers",
    "get_solver",
    "read_problem",
    "solve",
    "write_problem",
]
