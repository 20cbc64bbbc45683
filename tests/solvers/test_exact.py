"""The exact page solver: brute force on tiny pages, the shared certified instances, time limits.

Tolerances: objectives are compared at 1e-6 (the MILP's relative gap on values of order 1-15).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from slate.errors import InfeasibleProblemError, InvalidProblemError
from slate.page import PageProblem, random_problem, read_optimum, read_problem
from slate.solvers import Status, get_solver
from slate.solvers.exact import (
    ExactSolver,
    benchmark_routes,
    build_cvxpy_problem,
    solve_cvxpy,
)
from slate.solvers.independent import IndependentSolver
from slate.solvers.milp_model import build_milp, reduce_problem
from tests.pages import assert_valid_result, brute_force, certified_objective, instance_paths

TOL = 1e-6
INSTANCES = {p.stem: p for p in instance_paths()}


def _tiny(case: int) -> PageProblem:
    """Deterministic tiny pages covering layouts, budgets, locks, variable images and quotas."""
    layout = ("local", "chain", "dense")[case % 3]
    budget = (None, 1, 2, -1)[(case // 3) % 4]
    quotas = case % 4 == 1
    kwargs = {
        "seed": 100 + case,
        "max_changes": budget,
        "locked_share": 0.3 if case % 2 else 0.0,
        "variable_images": case % 5 == 2,
        "n_styles": 2,
        "diversity": (None, 0.3)[case % 2],
    }
    n_titles = 5 + case % 2
    if quotas:
        # the tightest quota on style0 that the problem's own counting check accepts
        for m in range(n_titles + 1):
            try:
                return random_problem(n_titles, 3, layout, quotas={"style0": m}, **kwargs)
            except InfeasibleProblemError:
                continue
    return random_problem(n_titles, 3, layout, **kwargs)


TINY = list(range(16))


def test_tiny_cases_cover_the_features() -> None:
    problems = [_tiny(c) for c in TINY]
    assert any(p.has_quotas and p.tag_max[0] < p.n_titles for p in problems)
    assert any(p.budget_binding_possible for p in problems)
    assert any(p.locked.any() for p in problems)
    assert any(not p.candidates.all() for p in problems)
    assert {len(p.pairs) for p in problems} >= {4, 10}  # chains and dense pages


@pytest.mark.parametrize("backend", ["highspy", "scipy", "cvxpy"])
@pytest.mark.parametrize("case", TINY)
def test_matches_brute_force(case: int, backend: str) -> None:
    problem = _tiny(case)
    best, _ = brute_force(problem)
    result = ExactSolver(backend=backend).solve(problem)
    assert_valid_result(problem, result)
    assert result.status == Status.OPTIMAL
    assert result.objective == pytest.approx(best, abs=TOL)
    assert result.bound is not None and result.bound <= best + TOL


@pytest.mark.parametrize(
    "options",
    [
        {"lp_first": False},
        {"split_components": False},
        {"formulation": "textbook"},
        {"presolve": True},
        {"backend": "scipy", "lp_first": False},
    ],
    ids=["mip", "joint", "textbook", "presolve", "scipy-mip"],
)
@pytest.mark.parametrize("case", [0, 1, 4, 5, 9, 13])
def test_variants_match_brute_force(case: int, options: dict[str, object]) -> None:
    problem = _tiny(case)
    best, _ = brute_force(problem)
    result = ExactSolver(**options).solve(problem)
    assert_valid_result(problem, result)
    assert result.status == Status.OPTIMAL
    assert result.objective == pytest.approx(best, abs=TOL)


@pytest.mark.parametrize("name", sorted(INSTANCES))
def test_shared_instances_reach_the_certified_optimum(name: str) -> None:
    # local-150x20 takes about 3 s (LP 1.7 s + two restricted MILPs); dense-20x5 3-6 s each
    path = INSTANCES[name]
    problem = read_problem(path)
    result = ExactSolver().solve(problem)
    assert_valid_result(problem, result)
    certified = certified_objective(path)
    assert result.status == Status.OPTIMAL
    assert result.objective <= certified + TOL
    assert result.objective >= certified - TOL
    assert result.bound is not None and result.bound - result.objective <= TOL * abs(certified)


@pytest.mark.parametrize("name", ["chain-20x5-s0", "local-20x5-s1", "local-40x10-s0-var"])
def test_scipy_backend_on_shared_instances(name: str) -> None:
    path = INSTANCES[name]
    problem = read_problem(path)
    result = ExactSolver(backend="scipy").solve(problem)
    assert_valid_result(problem, result)
    assert result.status == Status.OPTIMAL
    assert result.objective == pytest.approx(certified_objective(path), abs=TOL)


@pytest.mark.parametrize(
    ("name", "formulations"),
    [("chain-20x5-s0", ("local", "textbook")), ("local-20x5-s0", ("local",))],
)
def test_cvxpy_formulations_agree_with_the_plain_solve(
    name: str, formulations: tuple[str, ...]
) -> None:
    path = INSTANCES[name]
    problem = read_problem(path)
    plain = ExactSolver().solve(problem)
    for formulation in formulations:
        result = solve_cvxpy(problem, formulation)
        assert_valid_result(problem, result)
        assert result.status == Status.OPTIMAL
        assert result.solver == f"cvxpy-{formulation}"
        assert result.objective == pytest.approx(plain.objective, abs=TOL)


@pytest.mark.parametrize("case", [0, 2, 4, 7, 9])
def test_cvxpy_textbook_and_local_agree_on_tiny_pages(case: int) -> None:
    problem = _tiny(case)
    best, _ = brute_force(problem)
    for formulation in ("local", "textbook"):
        result = solve_cvxpy(problem, formulation)
        assert_valid_result(problem, result)
        assert result.objective == pytest.approx(best, abs=TOL)


def test_cvxpy_model_takes_a_business_rule() -> None:
    import cvxpy as cp

    problem = _tiny(3)
    free = [t for t in range(problem.n_titles) if problem.allowed[t].sum() > 1]
    unruled = ExactSolver().solve(problem)
    t0 = free[0]
    banned = int(unruled.assignment[t0])
    for formulation in ("local", "textbook"):
        model = build_cvxpy_problem(problem, formulation)
        assert model.x.shape == (problem.n_titles, problem.n_images)
        ruled = cp.Problem(
            model.problem.objective, [*model.problem.constraints, model.x[t0, banned] == 0]
        )
        ruled.solve(solver=cp.HIGHS)
        a = model.read_assignment()
        assert a[t0] != banned
        assert problem.is_feasible(a)
        # brute force over the pages that obey the rule
        best = -np.inf
        import itertools

        choices = [np.flatnonzero(problem.allowed[t]).tolist() for t in range(problem.n_titles)]
        for combo in itertools.product(*choices):
            c = np.array(combo)
            if c[t0] == banned or problem.violations(c):
                continue
            best = max(best, problem.evaluate(c).objective)
        assert problem.evaluate(a).objective == pytest.approx(best, abs=TOL)
        assert float(ruled.value) == pytest.approx(best, abs=TOL)


def test_cvxpy_model_read_before_solve_raises() -> None:
    model = build_cvxpy_problem(_tiny(0))
    with pytest.raises(Exception, match="no solution yet"):
        model.read_assignment()


@pytest.mark.parametrize("limit_ms", [30.0, 1500.0])
def test_time_limit_returns_a_valid_page_and_a_bound(limit_ms: float) -> None:
    problem = read_problem(INSTANCES["local-150x20-s0"])
    started = time.perf_counter()
    result = ExactSolver().solve(problem, time_limit_ms=limit_ms)
    elapsed_ms = 1000 * (time.perf_counter() - started)
    assert_valid_result(problem, result)
    assert result.status in (Status.TIME_LIMIT, Status.OPTIMAL)
    assert result.bound is not None and result.bound >= result.objective - 1e-9
    assert result.objective <= certified_objective(INSTANCES["local-150x20-s0"]) + TOL
    # the limit is honoured up to one HiGHS call's overshoot and the set-up
    assert elapsed_ms < limit_ms + 4000


def test_warm_start_page_is_kept_when_time_runs_out() -> None:
    path = INSTANCES["local-150x20-s0"]
    problem = read_problem(path)
    best = problem.assignment_from_ids(read_optimum(path)["assignment"])
    calls: list[int] = []

    def warm(p: PageProblem) -> np.ndarray:
        calls.append(p.n_titles)
        return best

    result = ExactSolver(warm_start=warm).solve(problem, time_limit_ms=1.0)
    assert calls == [problem.n_titles]
    assert_valid_result(problem, result)
    assert result.status == Status.TIME_LIMIT
    assert result.objective == pytest.approx(certified_objective(path), abs=TOL)


def test_warm_start_of_the_wrong_shape_is_refused() -> None:
    problem = _tiny(0)
    solver = ExactSolver(warm_start=lambda p: np.zeros(2, dtype=np.int64))
    with pytest.raises(InvalidProblemError, match="warm_start"):
        solver.solve(problem)


def _quota_infeasible() -> PageProblem:
    # two titles, image 0 tagged A, image 1 tagged B: A at most 0 and B at most 1 cannot hold
    scores = np.array([[0.1, 0.2], [0.3, 0.1]])
    a_tag = np.array([[True, False], [True, False]])
    return PageProblem.from_arrays(
        scores,
        image_tags={"A": a_tag, "B": ~a_tag},
        tag_quotas={"A": 0, "B": 1},
    )


@pytest.mark.parametrize(
    "options",
    [{}, {"backend": "scipy"}, {"backend": "cvxpy"}, {"lp_first": False}],
    ids=["highspy", "scipy", "cvxpy", "mip"],
)
def test_quota_infeasible_page_has_status_infeasible(options: dict[str, object]) -> None:
    problem = _quota_infeasible()
    result = ExactSolver(**options).solve(problem)
    assert_valid_result(problem, result)
    assert result.status == Status.INFEASIBLE
    assert result.info["violations"]


def test_node_limit_gives_a_valid_page() -> None:
    path = INSTANCES["local-20x5-s0"]
    problem = read_problem(path)
    result = ExactSolver(node_limit=1, lp_first=False).solve(problem)
    assert_valid_result(problem, result)
    assert result.status in (Status.FEASIBLE, Status.OPTIMAL)
    assert result.objective <= certified_objective(path) + TOL


def test_registered_as_exact_and_reports_backend_details() -> None:
    solver = get_solver("exact", backend="scipy")
    assert isinstance(solver, ExactSolver) and solver.backend == "scipy"
    problem = read_problem(INSTANCES["chain-20x5-s2"])
    result = get_solver("exact").solve(problem)
    assert result.solver == "exact"
    for key in ("backend", "build_ms", "lp_ms", "mip_ms", "nodes", "backend_status", "components"):
        assert key in result.info
    assert result.info["components"] > 1  # rows of a chain page are independent


@pytest.mark.parametrize(
    ("seed", "budget", "phase"),
    [(2, 12, "components"), (2, 11, "joint after components"), (7, 2, "joint")],
)
def test_components_then_joint_under_a_budget(seed: int, budget: int, phase: str) -> None:
    # 12 changes fit seed 2's unconstrained optimum, 11 do not; 2 is below the per-title
    # argmax's 16 changes on seed 7, so the components are not solved first
    problem = random_problem(30, 4, "chain", seed=seed, max_changes=budget)
    split = ExactSolver().solve(problem)
    joint = ExactSolver(split_components=False).solve(problem)
    assert_valid_result(problem, split)
    assert split.info["phase"] == phase
    assert joint.info["phase"] == "joint"
    assert split.n_changes <= budget
    assert split.status == joint.status == Status.OPTIMAL
    assert split.objective == pytest.approx(joint.objective, abs=TOL)


def test_benchmark_routes_solve_a_page() -> None:
    problem = _tiny(6)
    best, _ = brute_force(problem)
    for name, route in benchmark_routes().items():
        result = route(problem, None)
        assert_valid_result(problem, result)
        assert result.objective == pytest.approx(best, abs=TOL), name


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"backend": "gurobi"}, r"'backend' parameter of ExactSolver .* got 'gurobi'"),
        ({"formulation": "qubo"}, r"'formulation' parameter of ExactSolver .* got 'qubo'"),
        ({"mip_rel_gap": -0.1}, r"'mip_rel_gap' .* got -0.1"),
        ({"mip_rel_gap": True}, r"'mip_rel_gap' .* got True"),
        ({"threads": 0}, r"'threads' .* integer >= 1; got 0"),
        ({"node_limit": 0}, r"'node_limit' .* got 0"),
        ({"warm_start": 5}, r"'warm_start' .* callable or None; got int"),
    ],
)
def test_bad_options_are_refused(options: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidProblemError, match=message):
        ExactSolver(**options)


@pytest.mark.parametrize("limit", [0, -5.0, float("nan")])
def test_bad_time_limit_is_refused(limit: float) -> None:
    with pytest.raises(InvalidProblemError, match="time_limit_ms"):
        ExactSolver().solve(_tiny(0), time_limit_ms=limit)


def test_build_milp_refuses_an_unknown_formulation() -> None:
    with pytest.raises(InvalidProblemError, match="formulation"):
        build_milp(np.zeros((2, 2)), np.array([[0, 1]]), np.zeros((1, 2, 2)), formulation="x")


# ---------------------------------------------------------------------- model invariants
@st.composite
def _pages(draw: st.DrawFn) -> PageProblem:
    n_titles = draw(st.integers(2, 8))
    n_images = draw(st.integers(1, 4))
    layout = draw(st.sampled_from(["local", "chain", "dense"]))
    budget = draw(st.sampled_from([None, 0, 1, 3]))
    return random_problem(
        n_titles,
        n_images,
        layout,
        seed=draw(st.integers(0, 10_000)),
        max_changes=budget,
        locked_share=draw(st.sampled_from([0.0, 0.4])),
        variable_images=draw(st.booleans()),
        diversity=draw(st.sampled_from([None, 0.0, 0.5])),
        dim=8,
    )


@given(page=_pages(), pick=st.integers(0, 2**31))
def test_model_value_of_an_assignment_is_its_objective(page: PageProblem, pick: int) -> None:
    rng = np.random.default_rng(pick)
    a = np.array([rng.choice(np.flatnonzero(page.allowed[t])) for t in range(page.n_titles)])
    objective = page.evaluate(a).objective
    for formulation in ("local", "textbook"):
        model = build_milp(page.unary, page.pairs, page.pair_cost, formulation=formulation)
        z = model.encode(a)
        assert model.value(z) == pytest.approx(objective, abs=1e-9)
        assert (model.decode(z) == a).all()
        row = model.A @ z  # the encoded page satisfies every row
        assert (row >= model.row_lower - 1e-9).all() and (row <= model.row_upper + 1e-9).all()
    reduced = reduce_problem(page)
    z = reduced.model().encode(a[reduced.free]) if reduced.n_free else None
    if z is not None:
        assert reduced.model().value(z) == pytest.approx(objective, abs=1e-9)
    assert (reduced.full_assignment(a[reduced.free]) == a).all()


@given(page=_pages())
def test_exact_is_between_the_baseline_and_its_bound(page: PageProblem) -> None:
    result = ExactSolver().solve(page)
    assert_valid_result(page, result)
    assert result.status == Status.OPTIMAL
    baseline = IndependentSolver().solve(page)
    assert result.objective >= baseline.objective - 1e-9
    assert result.bound is not None and result.bound <= baseline.bound + TOL


def test_instances_are_present() -> None:
    assert len(INSTANCES) == 24, sorted(INSTANCES)
    assert all(isinstance(p, Path) for p in INSTANCES.values())
