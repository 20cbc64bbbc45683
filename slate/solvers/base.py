"""The solver interface and the name registry (in the spirit of cvxpy's solver registry)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from slate.errors import UnknownSolverError
from slate.page.problem import PageProblem
from slate.registry import Registry
from slate.solvers.result import SolveResult

__all__ = ["Solver", "available_solvers", "get_solver", "register_solver", "solve"]


@runtime_checkable
class Solver(Protocol):
    """Anything with a ``name`` and ``solve(problem, time_limit_ms=None) -> SolveResult``.

    A solver never raises on a valid problem: running out of time is status ``time_limit``
    with the best valid page found so far.
    """

    @property
    def name(self) -> str:
        """The registry name of the solver."""
        ...

    def solve(self, problem: PageProblem, time_limit_ms: float | None = None) -> SolveResult:
        """Solve ``problem`` within ``time_limit_ms`` milliseconds (None: no limit)."""
        ...


SOLVERS: Registry[Solver] = Registry("solver", UnknownSolverError)
"""The solver registry (see :mod:`slate.registry`): ``SOLVERS.parameters("fast")`` lists options."""


def register_solver(name: str, factory: Callable[..., Solver]) -> None:
    """Register a solver factory under ``name`` (``factory(**options)`` returns a :class:`Solver`)."""
    SOLVERS.register(name, factory)


def available_solvers() -> list[str]:
    """Names accepted by :func:`solve` and :func:`get_solver`.

    Examples
    --------
    >>> from slate.solvers import available_solvers
    >>> sorted(available_solvers())
    ['auto', 'chain', 'exact', 'fast', 'independent']
    """
    return SOLVERS.names()


def get_solver(name: str, **options: Any) -> Solver:
    """Instantiate the solver registered as ``name`` with its options (an option it does not
    take raises :class:`~slate.errors.UnknownOptionError` naming it)."""
    return SOLVERS.create(name, **options)


def solve(
    problem: PageProblem,
    solver: str | Solver = "auto",
    time_limit_ms: float | None = None,
    **options: Any,
) -> SolveResult:
    """Choose one image per title for the whole page.

    Parameters
    ----------
    problem : PageProblem
    solver : str or Solver, default "auto"
        A registered name (see :func:`available_solvers`) or a solver instance.
    time_limit_ms : float, optional
        Wall-time budget in milliseconds. On expiry the best valid page found is returned with
        status ``time_limit``.
    **options
        Passed to the solver's constructor when ``solver`` is a name.

    Examples
    --------
    >>> import numpy as np
    >>> from slate.page import PageProblem, GridLayout
    >>> from slate.solvers import solve
    >>> rng = np.random.default_rng(1)
    >>> problem = PageProblem.from_arrays(rng.uniform(0, 0.1, (8, 4)), rng.normal(size=(8, 4, 6)),
    ...                                   layout=GridLayout(rows=2, cols=4), diversity=0.05)
    >>> result = solve(problem, solver="exact")
    >>> result.status.value, problem.is_feasible(result.assignment)
    ('optimal', True)
    """
    instance = get_solver(solver, **options) if isinstance(solver, str) else solver
    return instance.solve(problem, time_limit_ms=time_limit_ms)
