"""The ``fast`` solver: validity, local optimality, bound validity, quality against certified optima."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from slate.errors import InfeasibleProblemError, InvalidProblemError
from slate.page import PageProblem, random_problem, read_problem
from slate.solvers import Status, get_solver
from slate.solvers.bounds import trivial_upper_bound
from slate.solvers.fast import FastSolver, lagrangian_bound, local_search
from tests.pages import assert_valid_result, brute_force, certified_objective, instance_paths

PATHS = instance_paths()


def assert_no_improving_move(problem: PageProblem, assignment: np.ndarray, tol: float = 1e-9) -> None:
    """No single-title move that keeps the page valid improves the objective."""
    a = np.asarray(assignment, dtype=np.int64)
    value = problem.evaluate(a).objective
    for t in range(problem.n_titles):
        for k in np.flatnonzero(problem.allowed[t]):
            if k == a[t]:
                continue
            b = a.copy()
            b[t] = k
            if problem.violations(b):
                continue
            moved = problem.evaluate(b).objective
            assert moved <= value + tol * max(1.0, abs(value)), (
                f"moving title {t} from image {a[t]} to {k} gains {moved - value:.3g}"
            )


def assert_no_improving_swap(problem: PageProblem, assignment: np.ndarray, tol: float = 1e-9) -> None:
    """At the budget, reverting one changed title while changing a kept one does not improve."""
    a = np.asarray(assignment, dtype=np.int64)
    if problem.max_changes is None or problem.evaluate(a).n_changes < problem.max_changes:
        return
    value = problem.evaluate(a).objective
    t_all = np.arange(problem.n_titles)
    changed = np.flatnonzero(problem.changes[t_all, a])
    kept = np.flatnonzero((problem.previous >= 0) & ~problem.locked & ~problem.changes[t_all, a])
    for s in changed:
        for t in kept:
            for k in np.flatnonzero(problem.allowed[t] & problem.changes[t]):
                b = a.copy()
                b[s] = problem.previous[s]
                b[t] = k
                if problem.violations(b):
                    continue
                assert problem.evaluate(b).objective <= value + tol * max(1.0, abs(value))


# ----------------------------------------------------------------------------- validity
@st.composite
def pages(draw: st.DrawFn) -> PageProblem:
    n_titles = draw(st.integers(1, 24))
    n_images = draw(st.integers(1, 6))
    layout = draw(st.sampled_from(["local", "chain", "dense"]))
    budget = draw(st.one_of(st.none(), st.integers(0, 8)))
    quotas = draw(st.one_of(st.none(), st.just({"style0": 2}), st.just({"style0": 3, "style1": 1})))
    try:
        return random_problem(
            n_titles,
            n_images,
            layout,
            seed=draw(st.integers(0, 10_000)),
            dim=8,
            max_changes=budget,
            locked_share=draw(st.sampled_from([0.0, 0.1, 0.5])),
            previous_share=draw(st.sampled_from([0.0, 0.5, 1.0])),
            variable_images=draw(st.booleans()),
            quotas=quotas,
            churn=draw(st.sampled_from([0.0, 0.005, 0.05])),
        )
    except InfeasibleProblemError:
        assume(False)
        raise


@given(problem=pages(), seed=st.integers(0, 3), start=st.sampled_from(["greedy", "argmax"]))
def test_valid_and_locally_optimal(problem: PageProblem, seed: int, start: str) -> None:
    result = FastSolver(seed=seed, max_rounds=20, start=start).solve(problem)
    assert_valid_result(problem, result)
    assert result.bound is not None and result.bound >= result.objective - 1e-9
    if problem.has_quotas and result.status is Status.INFEASIBLE:
        assert result.info["quota_repair"] is False  # only a failed repair may leave a quota broken
        return
    assert result.status in (Status.FEASIBLE, Status.OPTIMAL)
    assert_no_improving_move(problem, result.assignment)
    if not problem.has_quotas:
        assert_no_improving_swap(problem, result.assignment)


def test_budget_zero_keeps_every_previous_image() -> None:
    problem = random_problem(30, 6, "local", seed=3, max_changes=0, previous_share=0.7)
    result = FastSolver().solve(problem)
    assert_valid_result(problem, result)
    assert result.n_changes == 0
    has_prev = problem.previous >= 0
    assert (result.assignment[has_prev] == problem.previous[has_prev]).all()


def test_quotas_are_kept() -> None:
    problem = random_problem(40, 10, "local", seed=11, quotas={"style0": 3, "style2": 4})
    result = FastSolver().solve(problem)
    assert_valid_result(problem, result)
    assert result.status in (Status.FEASIBLE, Status.OPTIMAL)
    shown = problem.image_tags[:, np.arange(problem.n_titles), result.assignment].sum(axis=1)
    assert (shown <= problem.tag_max).all()


# ----------------------------------------------------------------------------- exactness on tiny pages
TINY = [(layout, seed) for layout in ("local", "chain", "dense") for seed in range(4)]


@pytest.mark.parametrize(("layout", "seed"), TINY)
def test_tiny_pages_against_brute_force(layout: str, seed: int) -> None:
    problem = random_problem(8, 3, layout, seed=seed, dim=8, max_changes=2, variable_images=seed % 2 == 1)
    best, _ = brute_force(problem)
    result = FastSolver(seed=seed).solve(problem)
    assert_valid_result(problem, result)
    assert result.objective <= best + 1e-9  # never above the optimum
    assert result.objective >= best - 0.01 * abs(best)  # stated gap: within 1% of the optimum
    assert result.bound is not None and result.bound >= best - 1e-9


def test_tiny_pages_mean_gap() -> None:
    gaps = []
    for layout, seed in TINY:
        problem = random_problem(8, 3, layout, seed=100 + seed, dim=8, max_changes=3)
        best, _ = brute_force(problem)
        gaps.append((best - FastSolver().solve(problem).objective) / abs(best))
    assert np.mean(gaps) <= 1e-3, gaps


# ----------------------------------------------------------------------------- shared instances
@pytest.fixture(scope="module")
def shared_results() -> list[tuple[str, PageProblem, float, object]]:
    out = []
    for path in PATHS:
        problem = read_problem(path)
        out.append((path.name, problem, certified_objective(path), FastSolver().solve(problem)))
    return out


def test_shared_instances_exist() -> None:
    assert len(PATHS) >= 20


def test_gap_on_shared_instances(shared_results: list) -> None:
    gaps = []
    for name, problem, optimum, result in shared_results:
        assert_valid_result(problem, result)
        assert result.objective <= optimum + 1e-6 * abs(optimum), name
        gaps.append((optimum - result.objective) / abs(optimum))
    assert np.mean(gaps) <= 1e-3, f"mean gap {np.mean(gaps):.4%}"
    assert np.max(gaps) <= 1e-2, f"worst gap {np.max(gaps):.4%}"


def test_bound_is_valid_on_shared_instances(shared_results: list) -> None:
    for name, problem, optimum, result in shared_results:
        assert result.bound >= optimum - 1e-9, name
        assert result.bound <= trivial_upper_bound(problem) + 1e-9, name
        if result.status is Status.OPTIMAL:
            assert result.objective >= optimum - 1e-6 * abs(optimum), name


@pytest.mark.parametrize("sweeps", [0, 3, 40])
def test_lagrangian_bound_valid_for_any_sweeps(sweeps: int) -> None:
    for path in PATHS[::3]:
        problem = read_problem(path)
        bound, done = lagrangian_bound(problem, sweeps)
        assert done == sweeps or problem.n_pairs == 0
        assert bound >= certified_objective(path) - 1e-9, path.name
    if sweeps == 0:  # no messages: exactly the trivial bound
        problem = read_problem(PATHS[0])
        assert lagrangian_bound(problem, 0)[0] == pytest.approx(trivial_upper_bound(problem), abs=1e-12)


def test_bound_proves_optimality_on_a_chain() -> None:
    path = next(p for p in PATHS if p.name == "chain-20x5-s2.json")
    result = FastSolver(bound_sweeps=50).solve(read_problem(path))
    assert result.status is Status.OPTIMAL
    assert result.objective == pytest.approx(certified_objective(path), rel=1e-6)


# ----------------------------------------------------------------------------- determinism, limits, api
def test_same_seed_same_page() -> None:
    problem = random_problem(60, 10, "local", seed=9)
    first = FastSolver(seed=5).solve(problem)
    again = FastSolver(seed=5).solve(random_problem(60, 10, "local", seed=9))
    assert first.assignment.tolist() == again.assignment.tolist()
    assert first.info["rounds"] == again.info["rounds"]
    assert first.bound == again.bound


def test_a_generous_time_limit_changes_nothing() -> None:
    # with a limit the rounds run in chunks between looks at the clock: same trajectory
    problem = random_problem(40, 10, "local", seed=8)
    free = FastSolver(seed=2).solve(problem)
    timed = FastSolver(seed=2).solve(problem, time_limit_ms=60_000)
    assert timed.status is free.status
    assert timed.assignment.tolist() == free.assignment.tolist()
    assert timed.info["rounds"] == free.info["rounds"]


def test_time_limit_returns_a_valid_page() -> None:
    problem = random_problem(80, 10, "local", seed=2)
    result = FastSolver(max_rounds=10**6, patience=10**6).solve(problem, time_limit_ms=5)
    assert_valid_result(problem, result)
    assert result.status is Status.TIME_LIMIT
    assert result.info["rounds"] < 10**6
    zero = FastSolver().solve(problem, time_limit_ms=0)
    assert_valid_result(problem, zero)
    assert zero.status is Status.TIME_LIMIT
    assert zero.info["rounds"] == 0


def test_bound_can_be_skipped() -> None:
    result = FastSolver(compute_bound=False).solve(random_problem(20, 5, "local", seed=1))
    assert result.bound is None and "bound_ms" not in result.info


def test_registered() -> None:
    solver = get_solver("fast", seed=3)
    assert isinstance(solver, FastSolver) and solver.seed == 3 and solver.name == "fast"


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"strength": 0}, "'strength' parameter of FastSolver must be an integer >= 1; got 0"),
        ({"start": "random"}, "'start' parameter of FastSolver must be 'greedy' or 'argmax'; got 'random'"),
        ({"max_rounds": -1}, "'max_rounds' parameter of FastSolver must be None or an integer >= 0; got -1"),
        ({"patience": 1.5}, "'patience' parameter of FastSolver must be None or an integer >= 0; got 1.5"),
        (
            {"bound_sweeps": -2},
            "'bound_sweeps' parameter of FastSolver must be None or an integer >= 0; got -2",
        ),
    ],
)
def test_bad_options(options: dict, match: str) -> None:
    with pytest.raises(InvalidProblemError, match=match):
        FastSolver(**options)


def test_bad_time_limit() -> None:
    with pytest.raises(InvalidProblemError, match="'time_limit_ms' parameter must be None or a number >= 0"):
        FastSolver().solve(random_problem(5, 2, seed=0), time_limit_ms=-1)


# ----------------------------------------------------------------------------- local_search
def test_local_search_improves_any_valid_page() -> None:
    problem = random_problem(40, 10, "local", seed=4)
    start = np.where(problem.previous >= 0, problem.previous, 0)  # keep everything: valid, poor
    assert problem.is_feasible(start)
    better = local_search(problem, start)
    assert problem.is_feasible(better)
    assert problem.evaluate(better).objective > problem.evaluate(start).objective
    assert_no_improving_move(problem, better)
    assert_no_improving_swap(problem, better)
    polished = local_search(problem, better, rounds=50, seed=1)
    assert problem.evaluate(polished).objective >= problem.evaluate(better).objective - 1e-12


@pytest.mark.parametrize(
    ("assignment", "match"),
    [
        (np.zeros(3, dtype=np.int64), "must be 40 integer image indices; got int64 of shape \\(3,\\)"),
        (np.zeros(40), "must be 40 integer image indices; got float64"),
        (np.full(40, 10), "must name an allowed image of every title; got index 10"),
        ("changes", "must keep the budget of 10 changes; got"),
        ("locks", "must name an allowed image of every title"),
    ],
)
def test_local_search_rejects_invalid_pages(assignment: object, match: str) -> None:
    problem = random_problem(40, 10, "local", seed=4, previous_share=1.0, locked_share=0.2)
    keep = problem.previous.copy()
    if isinstance(assignment, str) and assignment == "changes":
        assignment = (keep + 1) % problem.n_images
        assignment[problem.locked] = keep[problem.locked]
    elif isinstance(assignment, str):
        assignment = keep.copy()
        t = int(np.flatnonzero(problem.locked)[0])
        assignment[t] = (keep[t] + 1) % problem.n_images
    with pytest.raises(InvalidProblemError, match=match):
        local_search(problem, assignment)
