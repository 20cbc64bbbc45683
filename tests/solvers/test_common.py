"""Invariants every registered solver keeps (the conformance kit over the registry), and the
shared certified instances."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from slate.errors import UnknownSolverError
from slate.page import random_problem, read_problem
from slate.solvers import SOLVERS, AutoSolver, Status, available_solvers, get_solver, solve
from slate.solvers.chain import supports as chain_supports
from slate.testing import SOLVER_CHECKS, SolverTraits, check_instances, check_solver
from tests.pages import assert_valid_result, brute_force, certified_objective, instance_paths

# What each built-in promises beyond the contract (see slate.testing.SolverTraits); a solver
# registered without an entry here is checked with the defaults (heuristic, every problem).
TRAITS = {
    "exact": SolverTraits(exact=True),
    "chain": SolverTraits(exact=True, supports=chain_supports),
    "auto": SolverTraits(exact=True),  # small pages route to an exact solver
}
NAMES = SOLVERS.names()
EXACT = tuple(name for name in NAMES if TRAITS.get(name, SolverTraits()).exact)


def _traits(name: str) -> SolverTraits:
    return TRAITS.get(name, SolverTraits())


def _supports(name: str, problem) -> bool:
    return _traits(name).accepts(problem)


@pytest.mark.parametrize("check", SOLVER_CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
@pytest.mark.parametrize("name", NAMES)
def test_every_registered_solver_passes_the_conformance_kit(name, check):
    check(lambda: get_solver(name), _traits(name))


def test_the_kit_catches_a_solver_that_misreports_its_objective_or_breaks_a_lock():
    class Lying:
        name = "lying"

        def solve(self, problem, time_limit_ms=None):
            result = get_solver("independent").solve(problem, time_limit_ms)
            from dataclasses import replace

            return replace(result, objective=result.objective + 0.5)

    class Unlocking:
        name = "unlocking"

        def solve(self, problem, time_limit_ms=None):
            result = get_solver("independent").solve(problem, time_limit_ms)
            from dataclasses import replace

            a = result.assignment.copy()
            a[problem.locked] = (problem.previous[problem.locked] + 1) % problem.candidates.sum(axis=1)[problem.locked]
            return replace(result, assignment=a)

    with pytest.raises(AssertionError, match="reported objective"):
        check_solver(Lying)
    with pytest.raises(AssertionError, match=r"lock"):
        check_solver(Unlocking)


def test_the_kit_catches_an_exact_claim_a_heuristic_cannot_keep_and_a_bad_error():
    with pytest.raises(AssertionError, match="exact solver"):
        check_solver(lambda: get_solver("independent"), exact=True)

    class Careless:
        name = "careless"

        def solve(self, problem, time_limit_ms=None):
            return get_solver("independent").solve(problem) if hasattr(problem, "unary") else problem.unary

    with pytest.raises(AssertionError, match="raised AttributeError"):
        check_solver(Careless)


def test_registry_lists_every_solver_and_rejects_unknown_names():
    assert {"independent", "fast", "chain", "exact", "auto"} <= set(available_solvers())
    with pytest.raises(UnknownSolverError, match=r"Unknown solver 'simplex'; available solvers are auto, chain"):
        get_solver("simplex")


@given(
    seed=st.integers(0, 10_000),
    layout=st.sampled_from(["local", "chain", "dense"]),
    n_titles=st.integers(1, 9),
    n_images=st.integers(1, 4),
    budget=st.sampled_from([None, 0, 1, 3]),
    variable=st.booleans(),
    quotas=st.sampled_from([None, {"style0": 2}]),
)
def test_every_solver_returns_a_valid_page_with_a_true_objective(seed, layout, n_titles, n_images, budget, variable, quotas):
    try:
        problem = random_problem(
            n_titles, n_images, layout, seed=seed, max_changes=budget, variable_images=variable, quotas=quotas
        )
    except ValueError:
        return  # an infeasible quota is rejected at construction (tested in test_page_problem)
    for name in NAMES:
        if not _supports(name, problem):
            continue
        result = solve(problem, solver=name)
        assert result.solver == name
        if result.status != Status.INFEASIBLE:
            assert problem.violations(result.assignment) == []
        assert_valid_result(problem, result)


@given(seed=st.integers(0, 10_000), layout=st.sampled_from(["local", "chain", "dense"]), budget=st.sampled_from([None, 0, 2]))
def test_exact_solvers_match_brute_force_and_no_solver_beats_it(seed, layout, budget):
    problem = random_problem(6, 3, layout, seed=seed, max_changes=budget, variable_images=True)
    best, _ = brute_force(problem)
    for name in NAMES:
        if not _supports(name, problem):
            continue
        result = solve(problem, solver=name)
        assert result.objective <= best + 1e-9, name
        if name in EXACT:
            assert result.objective == pytest.approx(best, abs=1e-9), name
            assert result.status == Status.OPTIMAL
        if result.bound is not None:
            assert result.bound >= best - 1e-9, name


@pytest.mark.parametrize("path", instance_paths(), ids=lambda p: p.stem)
def test_no_solver_beats_a_certified_optimum(path):
    problem = read_problem(path)
    certified = certified_objective(path)
    for name in NAMES:
        if name == "exact" or not _supports(name, problem):
            continue  # exact is held to the certified optimum on the small instances below
        result = solve(problem, solver=name, time_limit_ms=None if name != "auto" else 50)
        assert_valid_result(problem, result)
        assert result.objective <= certified + 1e-6, name
        if result.bound is not None:
            assert result.bound >= certified - 1e-6, name


def test_exact_solvers_reach_the_certified_optimum_of_the_small_instances():
    small = [p for p in instance_paths() if p.name.endswith("-20x5-s0.json")]  # one per layout
    assert small, "no small certified instances found"
    assert check_instances(lambda: get_solver("exact"), small, exact=True) == len(small)
    chain = _traits("chain")
    assert check_instances(lambda: get_solver("chain"), small, exact=True, supports=chain.supports) > 0


def test_auto_routes_by_structure_and_budget():
    auto = AutoSolver()
    assert auto.route(random_problem(40, 10, "chain", seed=0), None) == "chain"
    assert auto.route(random_problem(40, 10, "local", seed=0), None) == "exact"
    assert auto.route(random_problem(40, 10, "local", seed=0), 5) == "fast"
    assert auto.route(random_problem(150, 20, "local", seed=0), None) == "fast"
    assert auto.route(random_problem(30, 5, "dense", seed=0), None) == "fast"
    assert auto.route(random_problem(20, 5, "chain", seed=0, quotas={"style0": 12}), None) == "exact"


def test_auto_with_a_tight_limit_returns_a_valid_page_with_status_and_bound():
    problem = random_problem(150, 20, "dense", seed=3)
    result = solve(problem, solver="auto", time_limit_ms=5)
    assert problem.is_feasible(result.assignment)
    assert result.status in (Status.TIME_LIMIT, Status.FEASIBLE, Status.OPTIMAL)
    assert result.bound is not None and result.bound >= result.objective
    assert result.info["route"] == "fast"


class _Broken:
    name = "broken"

    def solve(self, problem, time_limit_ms=None):
        raise RuntimeError("backend crashed")


def test_auto_falls_back_to_a_valid_page_when_the_routed_solver_fails(monkeypatch):
    import slate.solvers.auto as auto_module

    monkeypatch.setattr(auto_module, "FastSolver", lambda seed=0: _Broken())
    problem = random_problem(40, 10, "local", seed=1)
    result = solve(problem, solver="auto", time_limit_ms=5)
    assert "fallback" in result.info and "backend crashed" in result.info["fallback"]
    assert problem.is_feasible(result.assignment)
    assert result.info["inner_solver"] == "independent"


def test_independent_keeps_the_budget_with_the_largest_gains():
    problem = random_problem(30, 6, "local", seed=4, max_changes=3, locked_share=0.0)
    result = solve(problem, solver="independent")
    assert result.n_changes <= 3
    unconstrained = np.argmax(problem.unary, axis=1)
    kept = result.assignment != problem.previous
    assert (result.assignment[kept] == unconstrained[kept]).all()
