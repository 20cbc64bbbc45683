"""slate: joint, personalized artwork selection for whole homepages.

The flow: member context -> bandit scores -> :class:`PageProblem` -> :func:`solve` ->
:class:`SolveResult` (one image per title) -> decision log -> offline replay.

Subpackages (and the names re-exported here) are imported on first use (PEP 562), so
``import slate.page`` or a dask worker that needs only :mod:`slate.replay` does not pay for
numba, cvxpy or scipy.stats.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from slate._internal.version import VERSION
from slate.errors import InfeasibleProblemError, InvalidProblemError, SlateError, UnknownSolverError

__version__ = VERSION

_SUBPACKAGES = ("bandit", "logs", "page", "replay", "serve", "sim", "solvers", "stability", "train", "tune", "visual")

_REEXPORTS = {
    "DenseLayout": "slate.page",
    "GridLayout": "slate.page",
    "PageProblem": "slate.page",
    "read_problem": "slate.page",
    "write_problem": "slate.page",
    "PageDecision": "slate.serve",
    "compose": "slate.serve",
    "SolveResult": "slate.solvers",
    "Status": "slate.solvers",
    "available_solvers": "slate.solvers",
    "get_solver": "slate.solvers",
    "solve": "slate.solvers",
}

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from slate import bandit, logs, page, replay, serve, sim, solvers, stability, train, tune, visual
    from slate.page import DenseLayout, GridLayout, PageProblem, read_problem, write_problem
    from slate.serve import PageDecision, compose
    from slate.solvers import SolveResult, Status, available_solvers, get_solver, solve

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
    "sim",
    "solve",
    "solvers",
    "stability",
    "train",
    "tune",
    "visual",
    "write_problem",
]


def __getattr__(name: str) -> Any:
    """Import a subpackage or a re-exported name on first access.

    Examples
    --------
    >>> import slate
    >>> slate.solve is slate.solvers.solve
    True
    """
    if name in _SUBPACKAGES:
        module = importlib.import_module(f"slate.{name}")
        globals()[name] = module
        return module
    if name in _REEXPORTS:
        value = getattr(importlib.import_module(_REEXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'slate' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
