"""What every solver returns: a frozen :class:`SolveResult` with a :class:`Status`."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from slate.errors import InvalidProblemError
from slate.page.problem import ObjectiveParts, PageProblem

__all__ = ["SolveResult", "Status", "check_problem", "make_result", "normalize_time_limit"]


class Status(str, Enum):
    """How a solve ended. Compares equal to its string value (``Status.OPTIMAL == "optimal"``)."""

    OPTIMAL = "optimal"
    """Proven optimal (within the solver's tolerance; ``bound`` equals ``objective``)."""
    FEASIBLE = "feasible"
    """A valid page without a proof of optimality (heuristics)."""
    TIME_LIMIT = "time_limit"
    """The time limit stopped the search; the page is the best valid one found."""
    INFEASIBLE = "infeasible"
    """No page satisfies every constraint; the assignment breaks the quotas it names in ``info``."""

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, eq=False)
class SolveResult:
    """The outcome of solving a :class:`~slate.page.PageProblem`.

    Attributes
    ----------
    assignment : ndarray (n_titles,), int, read-only
        Padded column index of the chosen image per title.
    objective, relevance, diversity_penalty, churn_penalty : float
        Recomputed from ``assignment`` by :meth:`PageProblem.evaluate`, never trusted from a backend.
    n_changes : int
    status : Status
    bound : float or None
        A proven upper bound on the optimal objective, when the solver has one.
    solver : str
    wall_ms : float
        Wall time inside the solver, milliseconds.
    info : dict
        Solver-specific details (iterations, backend status, fallbacks taken).
    """

    assignment: NDArray[np.int64]
    objective: float
    relevance: float
    diversity_penalty: float
    churn_penalty: float
    n_changes: int
    status: Status
    bound: float | None
    solver: str
    wall_ms: float
    info: dict[str, Any] = field(default_factory=dict)
    problem: PageProblem | None = field(default=None, repr=False)

    @property
    def gap(self) -> float | None:
        """Relative gap ``(bound - objective) / max(|bound|, 1e-9)``, or None without a bound."""
        if self.bound is None:
            return None
        return max(0.0, self.bound - self.objective) / max(abs(self.bound), 1e-9)

    @cached_property
    def images(self) -> dict[str, str]:
        """``{title id: image id}``."""
        if self.problem is None:
            raise ValueError("This result was built without its problem; map ids with the problem.")
        return self.problem.assignment_to_ids(self.assignment)

    def to_json_dict(self) -> dict[str, Any]:
        """The object ``slate solve`` prints."""
        return {
            "assignment": self.images,
            "objective": _finite(self.objective),
            "relevance": _finite(self.relevance),
            "diversity_penalty": _finite(self.diversity_penalty),
            "churn_penalty": _finite(self.churn_penalty),
            "n_changes": self.n_changes,
            "status": self.status.value,
            "bound": _finite(self.bound),
            "gap": _finite(self.gap),
            "solver": self.solver,
            "wall_ms": self.wall_ms,
            "fallback": self.info.get("fallback"),
            "note": self.info.get("note"),
        }


def _finite(value: float | None) -> float | None:
    """JSON has no Infinity or NaN: a non-finite number is written as null."""
    return None if value is None or not math.isfinite(value) else float(value)


def normalize_time_limit(time_limit_ms: Any) -> float | None:
    """A solver's ``time_limit_ms`` checked once: None or ``inf`` mean no limit; NaN, negative
    or non-numeric values are refused (they used to send ``auto`` to its page-blind fallback).

    Examples
    --------
    >>> normalize_time_limit(float("inf")) is None, normalize_time_limit(5)
    (True, 5.0)
    >>> normalize_time_limit(float("nan"))
    Traceback (most recent call last):
    ...
    slate.errors.InvalidProblemError: The 'time_limit_ms' parameter must be None or a number >= 0 (inf: no limit); got nan instead.
    """
    if time_limit_ms is None:
        return None
    ok = isinstance(time_limit_ms, (int, float, np.integer, np.floating)) and not isinstance(time_limit_ms, bool)
    value = float(time_limit_ms) if ok else math.nan
    if not value >= 0:
        raise InvalidProblemError(
            "The 'time_limit_ms' parameter must be None or a number >= 0 (inf: no limit); "
            f"got {time_limit_ms!r} instead."
        )
    return None if math.isinf(value) else value


def check_problem(problem: Any, solver: str) -> None:
    """Refuse anything but a :class:`~slate.page.PageProblem` with one clear line (instead of an
    ``AttributeError`` from deep inside a solver).

    Examples
    --------
    >>> check_problem("page.json", "fast")
    Traceback (most recent call last):
    ...
    slate.errors.InvalidProblemError: The 'problem' parameter of solver 'fast' must be a PageProblem; got str instead.
    """
    from slate.page.problem import PageProblem

    if not isinstance(problem, PageProblem):
        raise InvalidProblemError(
            f"The 'problem' parameter of solver '{solver}' must be a PageProblem; got {type(problem).__name__} instead."
        )


def make_result(
    problem: PageProblem,
    assignment: ArrayLike,
    *,
    status: Status | str,
    solver: str,
    started: float,
    bound: float | None = None,
    info: dict[str, Any] | None = None,
    evaluate: Callable[[PageProblem, NDArray[np.int64]], ObjectiveParts] | None = None,
) -> SolveResult:
    """Build a :class:`SolveResult`, recomputing the objective from the assignment.

    ``started`` is a :func:`time.perf_counter` reading taken when the solve began. A status of
    ``optimal`` or ``time_limit``/``feasible`` on an assignment that breaks a constraint is
    downgraded to ``infeasible`` (a solver can never report an invalid page as valid).
    ``evaluate`` computes the objective's parts in place of ``problem.evaluate`` (the same
    value up to rounding, e.g. from the embeddings without reading the pair costs).
    """
    a = np.array(assignment, dtype=np.int64)
    a.flags.writeable = False
    parts = problem.evaluate(a) if evaluate is None else evaluate(problem, a)
    st = Status(status)
    details = dict(info or {})
    if st is not Status.INFEASIBLE:
        broken = problem.violations(a)
        if broken:
            st = Status.INFEASIBLE
            details["violations"] = broken
    if bound is not None:
        bound = float(bound)
        # a backend's rounding may put its bound a hair below the value it found: clamp only that
        if parts.objective - 1e-7 * max(1.0, abs(parts.objective)) <= bound < parts.objective:
            bound = parts.objective
    return SolveResult(
        assignment=a,
        objective=parts.objective,
        relevance=parts.relevance,
        diversity_penalty=parts.diversity_penalty,
        churn_penalty=parts.churn_penalty,
        n_changes=parts.n_changes,
        status=st,
        bound=bound,
        solver=solver,
        wall_ms=(time.perf_counter() - started) * 1000.0,
        info=details,
        problem=problem,
    )
