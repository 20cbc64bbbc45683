"""The solver contract as runnable checks (in the spirit of cvxpy's solver test helpers).

Every solver slate ships passes :func:`check_solver`; a third-party :class:`~slate.solvers.Solver`
can be checked the same way::

    from slate.testing import check_solver
    check_solver(lambda: MySolver(seed=0), exact=False)

Each check takes a factory returning a fresh solver and the solver's traits (``exact``: it proves
optimality; ``supports``: which problems it accepts, e.g. only chain layouts), and raises
:class:`AssertionError` naming what broke. The checks, in :data:`SOLVER_CHECKS`:

- the solver follows the :class:`~slate.solvers.Solver` protocol, and a registered name is its
  canonical registry name;
- on small random pages (grid, chain and dense layouts; locks, change budgets, quotas, titles with
  different numbers of candidates) it returns a valid page: one candidate image per title, locks
  kept, budget and quotas met unless the status is ``infeasible``; its ``objective`` is
  :meth:`PageProblem.evaluate <slate.page.PageProblem.evaluate>`'s, ``n_changes`` is true, a
  ``bound`` is no smaller than the objective;
- no solver beats brute force on tiny pages, a bound is never below the optimum, and an exact
  solver reaches the optimum with status ``optimal``;
- the same problem solved twice by two fresh solvers gives the same page (determinism under a seed);
- bad input raises :class:`~slate.errors.InvalidProblemError` naming the parameter: something
  that is not a :class:`~slate.page.PageProblem`, a NaN or negative ``time_limit_ms``.

:func:`check_instances` adds the certified instances (``slate.page-problem/1`` files with an
``optimum``): no solver beats a certified optimum and an exact solver reaches it.

Examples
--------
>>> from slate.solvers import IndependentSolver
>>> check_solver(IndependentSolver)
['solver_follows_the_protocol', 'returns_a_valid_page_with_a_true_objective', 'never_beats_brute_force', 'is_deterministic', 'refuses_bad_input']
"""

from __future__ import annotations

import functools
import itertools
import json
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from slate.errors import InvalidProblemError
from slate.page.io import read_problem
from slate.page.problem import PageProblem
from slate.page.random import random_problem
from slate.solvers.base import SOLVERS, Solver
from slate.solvers.result import SolveResult, Status

__all__ = ["SOLVER_CHECKS", "SolverTraits", "check_instances", "check_solver", "small_problems"]

SolverFactory = Callable[[], Any]

_TOL = 1e-9


@dataclass(frozen=True)
class SolverTraits:
    """What a solver promises beyond the contract.

    Attributes
    ----------
    exact : bool
        It proves optimality: it must reach the brute-force optimum with status ``optimal``.
    supports : callable(PageProblem) -> bool, optional
        The problems it accepts (default: every problem), e.g. the chain solver's chain layouts
        without quotas. Problems it does not support are left out of the checks.
    time_limit_ms : float, optional
        Passed to every solve (None: no limit).
    """

    exact: bool = False
    supports: Callable[[PageProblem], bool] | None = None
    time_limit_ms: float | None = None

    def accepts(self, problem: PageProblem) -> bool:
        return self.supports is None or bool(self.supports(problem))


def small_problems(seed: int = 0, n: int = 12) -> Iterator[PageProblem]:
    """``n`` seeded small page problems covering the layouts and constraints: grid, chain and
    dense layouts, locks, change budgets (none, 0, some), quotas and titles with different
    numbers of candidates. Infeasible quota draws are skipped (they are refused at construction)."""
    rng = np.random.default_rng(seed)
    made = 0
    for k in itertools.count():
        if made == n:
            return
        layout: Literal["local", "chain", "dense"] = ("local", "chain", "dense")[k % 3]
        budget = (None, 0, 1, 3)[int(rng.integers(4))]
        quotas = {"style0": 2} if k % 4 == 3 else None
        try:
            problem = random_problem(
                int(rng.integers(2, 9)), int(rng.integers(1, 5)), layout, seed=int(rng.integers(10_000)),
                max_changes=budget, variable_images=bool(k % 2), quotas=quotas,
            )
        except InvalidProblemError:
            continue
        made += 1
        yield problem


def _brute_force(problem: PageProblem) -> float:
    """Best feasible objective by enumerating every page (tiny pages only); -inf if none."""
    choices = [np.flatnonzero(problem.allowed[t]).tolist() for t in range(problem.n_titles)]
    best = -math.inf
    for combo in itertools.product(*choices):
        a = np.array(combo, dtype=np.int64)
        if not problem.violations(a):
            best = max(best, problem.evaluate(a).objective)
    return best


@functools.cache
def _brute_force_cases(seed: int, n: int) -> tuple[tuple[PageProblem, float], ...]:
    """Small problems with their brute-force optimum, computed once per process."""
    return tuple((problem, _brute_force(problem)) for problem in small_problems(seed=seed, n=n))


def _solve(factory: SolverFactory, problem: PageProblem, traits: SolverTraits) -> SolveResult:
    return factory().solve(problem, time_limit_ms=traits.time_limit_ms)


def _assert_valid(problem: PageProblem, result: SolveResult, who: str) -> None:
    a = np.asarray(result.assignment)
    assert isinstance(result, SolveResult), f"{who}: solve returned {type(result).__name__}, not a SolveResult"
    assert a.shape == (problem.n_titles,), f"{who}: assignment of shape {a.shape} for {problem.n_titles} titles"
    assert result.status in tuple(Status), f"{who}: status {result.status!r} is not a Status"
    assert problem.candidates[np.arange(problem.n_titles), a].all(), f"{who}: a title shows a non-candidate image"
    if result.status != Status.INFEASIBLE:
        assert problem.violations(a) == [], f"{who}: {problem.violations(a)}"
        locked = problem.locked
        assert (a[locked] == problem.previous[locked]).all(), f"{who}: a locked title changed image"
    parts = problem.evaluate(a)
    assert abs(result.objective - parts.objective) <= _TOL * max(1.0, abs(parts.objective)), (
        f"{who}: reported objective {result.objective} but the page's is {parts.objective}"
    )
    assert result.n_changes == parts.n_changes, f"{who}: n_changes {result.n_changes}, page has {parts.n_changes}"
    if result.bound is not None:
        assert result.bound >= result.objective - _TOL, f"{who}: bound {result.bound} < objective {result.objective}"


def check_solver_follows_the_protocol(factory: SolverFactory, traits: SolverTraits) -> None:
    """The solver is a :class:`~slate.solvers.Solver`; a registered name is canonical."""
    solver = factory()
    assert isinstance(solver, Solver), f"{type(solver).__name__} lacks name/solve"
    assert isinstance(solver.name, str) and solver.name, f"the solver's name is {solver.name!r}"
    if solver.name in SOLVERS:
        assert SOLVERS.canonical(solver.name) == solver.name, f"{solver.name!r} is an alias, not the registry name"


def check_returns_a_valid_page_with_a_true_objective(factory: SolverFactory, traits: SolverTraits) -> None:
    """A valid page (candidates, locks, budget, quotas) whose objective is the page's objective."""
    for problem in small_problems(seed=1):
        if traits.accepts(problem):
            _assert_valid(problem, _solve(factory, problem, traits), problem.name)


def check_never_beats_brute_force(factory: SolverFactory, traits: SolverTraits) -> None:
    """No page better than brute force's; bounds at least the optimum; exact solvers reach it."""
    for problem, best in _brute_force_cases(2, 9):
        if not traits.accepts(problem):
            continue
        result = _solve(factory, problem, traits)
        who = problem.name
        if best == -math.inf:  # no page meets the constraints
            assert result.status == Status.INFEASIBLE, f"{who}: no feasible page, status {result.status}"
            continue
        assert result.objective <= best + _TOL, f"{who}: objective {result.objective} beats brute force {best}"
        if result.bound is not None:
            assert result.bound >= best - _TOL, f"{who}: bound {result.bound} below the optimum {best}"
        if traits.exact:
            assert abs(result.objective - best) <= _TOL, f"{who}: exact solver found {result.objective}, optimum {best}"
            assert result.status == Status.OPTIMAL, f"{who}: exact solver's status {result.status} at the optimum"


def check_is_deterministic(factory: SolverFactory, traits: SolverTraits) -> None:
    """Two fresh solvers give the same page and objective on the same problem."""
    for problem in itertools.islice(small_problems(seed=3), 6):
        if not traits.accepts(problem):
            continue
        first, second = _solve(factory, problem, traits), _solve(factory, problem, traits)
        assert np.array_equal(first.assignment, second.assignment), f"{problem.name}: two solves gave two pages"
        assert first.objective == second.objective and first.status == second.status, problem.name


def check_refuses_bad_input(factory: SolverFactory, traits: SolverTraits) -> None:
    """Not a PageProblem, or a NaN / negative time limit: InvalidProblemError naming the parameter."""
    problem = next(p for p in small_problems(seed=4, n=40) if traits.accepts(p))
    cases: list[tuple[Any, Any, str]] = [
        ("page.json", None, "problem"),
        (None, None, "problem"),
        (problem, float("nan"), "time_limit_ms"),
        (problem, -1.0, "time_limit_ms"),
    ]
    for bad_problem, limit, field in cases:
        try:
            factory().solve(bad_problem, time_limit_ms=limit)
        except InvalidProblemError as err:
            assert f"'{field}'" in str(err), f"the error for a bad {field} does not name it: {err}"
        except Exception as err:  # the wrong type of error is a failure of the check
            raise AssertionError(
                f"a bad {field} raised {type(err).__name__} ({err}), not InvalidProblemError"
            ) from err
        else:
            raise AssertionError(f"a bad {field} ({bad_problem!r:.30}, time_limit_ms={limit}) was accepted")


SOLVER_CHECKS: tuple[Callable[[SolverFactory, SolverTraits], None], ...] = (
    check_solver_follows_the_protocol,
    check_returns_a_valid_page_with_a_true_objective,
    check_never_beats_brute_force,
    check_is_deterministic,
    check_refuses_bad_input,
)
"""Every check of the solver contract, in order."""


def check_solver(
    factory: SolverFactory,
    *,
    exact: bool = False,
    supports: Callable[[PageProblem], bool] | None = None,
    time_limit_ms: float | None = None,
) -> list[str]:
    """Run every check of :data:`SOLVER_CHECKS` on solvers made by ``factory``; return their names.

    Parameters
    ----------
    factory : callable() -> Solver
        Returns a fresh solver (with a fixed seed, if it has one).
    exact, supports, time_limit_ms
        The solver's traits (see :class:`SolverTraits`).

    Raises
    ------
    AssertionError
        The first check that fails, naming the problem and what broke.
    """
    traits = SolverTraits(exact=exact, supports=supports, time_limit_ms=time_limit_ms)
    for check in SOLVER_CHECKS:
        check(factory, traits)
    return [check.__name__.removeprefix("check_") for check in SOLVER_CHECKS]


def check_instances(
    factory: SolverFactory,
    paths: Iterable[str | Path],
    *,
    exact: bool = False,
    supports: Callable[[PageProblem], bool] | None = None,
    time_limit_ms: float | None = None,
) -> int:
    """Certified instances: a valid page, never better than the certified optimum (by more than
    1e-6), a bound no lower, and an exact solver reaching it. Returns how many were solved.

    ``paths`` are ``slate.page-problem/1`` files with an ``optimum`` (like ``shared/instances``).
    """
    traits = SolverTraits(exact=exact, supports=supports, time_limit_ms=time_limit_ms)
    n = 0
    for path in paths:
        problem = read_problem(path)
        if not traits.accepts(problem):
            continue
        certified = float(json.loads(Path(path).read_text())["optimum"]["objective"])
        result = _solve(factory, problem, traits)
        _assert_valid(problem, result, Path(path).name)
        assert result.objective <= certified + 1e-6, f"{path}: {result.objective} beats the certified {certified}"
        if result.bound is not None:
            assert result.bound >= certified - 1e-6, f"{path}: bound {result.bound} below the certified {certified}"
        if exact:
            assert abs(result.objective - certified) <= 1e-6 * max(1.0, abs(certified)), (
                f"{path}: exact solver found {result.objective}, certified optimum {certified}"
            )
        n += 1
    return n
