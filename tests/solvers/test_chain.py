"""The chain/forest dynamic program: exact against brute force, the shared instances, bad input."""

from __future__ import annotations

import dataclasses
import re
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from slate.errors import InvalidProblemError
from slate.page import GridLayout, PageProblem, random_problem, read_problem
from slate.solvers import Status, get_solver, solve
from slate.solvers.chain import ChainSolver, supports
from tests.pages import assert_valid_result, brute_force, certified_objective, instance_paths

CHAIN_INSTANCES = [p for p in instance_paths() if p.name.startswith("chain-")]


def forest_problem(
    parents: list[int],
    n_images: int,
    *,
    seed: int,
    max_changes: int | None,
    locked_share: float = 0.3,
    variable: bool = True,
    diversity: float = 0.4,
    zero_share: float = 0.2,
) -> PageProblem:
    """A page whose interaction graph is the forest ``parents`` (-1: a root), explicit similarity."""
    rng = np.random.default_rng(seed)
    n = len(parents)
    pairs = [(min(t, p), max(t, p)) for t, p in enumerate(parents) if p >= 0]
    counts = rng.integers(1, n_images + 1, size=n) if variable else np.full(n, n_images)
    cand = np.arange(n_images)[None, :] < counts[:, None]
    scores = rng.uniform(0.0, 0.3, size=(n, n_images))
    sim = rng.uniform(0.0, 1.0, size=(len(pairs), n_images, n_images))
    sim[rng.random(sim.shape) < zero_share] = 0.0
    has_prev = rng.random(n) < 0.8
    previous = np.where(has_prev, (rng.random(n) * counts).astype(np.int64), -1)
    locked = has_prev & (rng.random(n) < locked_share)
    return PageProblem.from_arrays(
        scores,
        similarity=sim,
        pairs=np.asarray(pairs, dtype=np.int64).reshape(-1, 2),
        pair_weights=rng.uniform(0.2, 1.5, size=len(pairs)),
        candidates=cand,
        previous=previous,
        locked=locked,
        max_changes=max_changes,
        diversity=diversity,
        churn=0.02,
    )


def assert_exact(problem: PageProblem) -> None:
    """The chain solver's page is valid, optimal by brute force, and reports bound = objective."""
    result = ChainSolver().solve(problem)
    assert_valid_result(problem, result)
    best, _ = brute_force(problem)
    assert result.status == Status.OPTIMAL
    assert result.objective == pytest.approx(best, abs=1e-9)
    assert result.bound == pytest.approx(result.objective, abs=1e-9)


# ---------------------------------------------------------------------------- brute force
@pytest.mark.parametrize("variable", [False, True])
@pytest.mark.parametrize("diversity", [None, 0.6])
@pytest.mark.parametrize("seed", [0, 1])
def test_tiny_chain_pages_every_budget(seed: int, diversity: float | None, variable: bool) -> None:
    for budget in [None, *range(8)]:
        problem = random_problem(
            7,
            3,
            "chain",
            seed=seed,
            diversity=diversity,
            locked_share=0.25,
            variable_images=variable,
            max_changes=budget,
        )
        assert problem.is_chain and len(problem.components) == 2  # rows of 5 and 2
        assert_exact(problem)


TREES = {
    "path": [-1, 0, 1, 2, 3, 4],
    "path-reversed-labels": [1, 2, 3, 4, 5, -1],
    "star": [-1, 0, 0, 0, 0, 0, 0, 0],
    "star-centre-last": [7, 7, 7, 7, 7, 7, 7, -1],
    "caterpillar": [-1, 0, 1, 2, 1, 2],
    "binary": [-1, 0, 0, 1, 1, 2],
    "forest+isolated": [-1, 0, -1, 2, 2, -1],
    "no-pairs": [-1, -1, -1, -1, -1],
}


@pytest.mark.parametrize("shape", list(TREES))
def test_tiny_trees_every_budget(shape: str) -> None:
    parents = TREES[shape]
    n_images = 2 if len(parents) > 6 else 3
    for budget in [None, *range(len(parents) + 1)]:
        problem = forest_problem(parents, n_images, seed=len(shape), max_changes=budget)
        assert supports(problem)
        assert_exact(problem)


@st.composite
def forests(draw: st.DrawFn) -> PageProblem:
    n = draw(st.integers(1, 6))
    # each title attaches to an earlier one, or starts a new tree; labels then shuffled
    parents = [-1] + [draw(st.integers(-1, t - 1)) for t in range(1, n)]
    perm = draw(st.permutations(range(n)))
    relabelled = [-1] * n
    for t, p in enumerate(parents):
        relabelled[perm[t]] = -1 if p < 0 else perm[p]
    n_images = draw(st.integers(1, 3))
    budget = draw(st.one_of(st.none(), st.integers(0, n)))
    return forest_problem(
        relabelled,
        n_images,
        seed=draw(st.integers(0, 2**16)),
        max_changes=budget,
        locked_share=draw(st.sampled_from([0.0, 0.3])),
        variable=draw(st.booleans()),
        diversity=draw(st.sampled_from([0.0, 0.2, 1.0])),
    )


@given(forests())
def test_random_forests_match_brute_force(problem: PageProblem) -> None:
    assert_exact(problem)


@given(
    n=st.integers(1, 7),
    n_images=st.integers(1, 3),
    seed=st.integers(0, 10_000),
    budget=st.one_of(st.none(), st.integers(0, 7)),
    variable=st.booleans(),
)
def test_random_chain_pages_match_brute_force(
    n: int, n_images: int, seed: int, budget: int | None, variable: bool
) -> None:
    problem = random_problem(
        n, n_images, "chain", seed=seed, max_changes=budget, variable_images=variable, diversity=0.5
    )
    assert_exact(problem)


# ---------------------------------------------------------------------------- larger pages
@pytest.mark.parametrize("path", CHAIN_INSTANCES, ids=lambda p: p.stem)
def test_shared_chain_instances_reach_certified_optimum(path) -> None:
    problem = read_problem(path)
    result = solve(problem, solver="chain")
    assert_valid_result(problem, result)
    assert result.status == Status.OPTIMAL
    assert problem.budget_binding_possible and result.info["budget_in_state"]
    assert abs(result.objective - certified_objective(path)) <= 1e-6


def test_shared_chain_instances_found() -> None:
    assert len(CHAIN_INSTANCES) == 9


@given(seed=st.integers(0, 1000), n=st.integers(8, 24))
def test_objective_grows_with_the_budget(seed: int, n: int) -> None:
    def page(budget: int | None) -> PageProblem:
        return random_problem(n, 5, "chain", seed=seed, diversity=0.3, max_changes=budget)

    base = page(None)
    changeable = int(((base.previous >= 0) & ~base.locked).sum())
    values = []
    for budget in range(changeable + 2):
        result = ChainSolver().solve(page(budget))
        assert result.n_changes <= budget
        values.append(result.objective)
    assert all(b >= a - 1e-12 for a, b in pairwise(values))
    unbudgeted = ChainSolver().solve(base)
    assert not unbudgeted.info["budget_in_state"]
    assert unbudgeted.objective == pytest.approx(values[-1], abs=1e-12)


def test_zero_budget_keeps_every_previous_image() -> None:
    problem = random_problem(40, 6, "chain", seed=5, max_changes=0, locked_share=0.0)
    result = ChainSolver().solve(problem)
    assert result.info["budget_in_state"]
    assert result.n_changes == 0
    had = problem.previous >= 0
    assert (result.assignment[had] == problem.previous[had]).all()


def test_pairs_without_cost_do_not_count_as_cycles() -> None:
    # a full grid (cycles) whose vertical and same-row pairs have zero similarity: only the rows'
    # neighbour pairs interact, so the page is a chain for the DP
    rng = np.random.default_rng(3)
    layout = GridLayout(rows=2, cols=3)
    probe = PageProblem.from_arrays(rng.uniform(0, 0.2, (6, 3)), layout=layout)
    neighbours = (np.abs(probe.pairs[:, 0] - probe.pairs[:, 1]) == 1) & (
        probe.rows[probe.pairs[:, 0]] == probe.rows[probe.pairs[:, 1]]
    )
    sim = rng.uniform(0, 1, (probe.n_pairs, 3, 3)) * neighbours[:, None, None]
    problem = PageProblem.from_arrays(
        rng.uniform(0, 0.2, (6, 3)),
        similarity=sim,
        layout=layout,
        previous=np.array([0, 1, 2, 0, 1, 2]),
        max_changes=2,
        diversity=0.5,
    )
    assert not problem.is_forest and supports(problem)
    assert_exact(problem)
    # with any cost on the closing pairs the cycle is real
    cyclic = PageProblem.from_arrays(
        rng.uniform(0, 0.2, (6, 3)), similarity=sim + 0.01, layout=layout, diversity=0.5
    )
    assert not supports(cyclic)


def test_registry_and_frozen_options() -> None:
    solver = get_solver("chain")
    assert isinstance(solver, ChainSolver) and solver.name == "chain"
    with pytest.raises(dataclasses.FrozenInstanceError):
        solver.name = "other"  # type: ignore[misc]


def test_same_problem_same_page() -> None:
    problem = random_problem(80, 10, "chain", seed=11)
    first = ChainSolver().solve(problem)
    again = ChainSolver().solve(problem)  # the rooted forest now comes from the cache
    fresh = ChainSolver().solve(random_problem(80, 10, "chain", seed=11))
    assert (first.assignment == again.assignment).all()
    assert (first.assignment == fresh.assignment).all()


# ---------------------------------------------------------------------------- bad input
BAD = [
    (
        lambda: random_problem(10, 4, "chain", seed=0, quotas={"style0": 6}),
        r"chain solver does not support style quotas; this page has quotas on 'style0'; "
        r"use 'exact' or 'fast'",
    ),
    (
        lambda: random_problem(12, 4, "local", seed=0),
        r"needs a chain/forest layout; this page has a cycle between titles 'T\d{3}', 'T\d{3}'.*"
        r"use 'exact' or 'fast'",
    ),
    (
        lambda: random_problem(5, 3, "dense", seed=0),
        r"needs a chain/forest layout; this page has a cycle between titles 'T\d{3}'",
    ),
    (
        lambda: PageProblem.from_arrays(
            np.ones((3, 2)), similarity=np.ones((3, 2, 2)), pairs=[[0, 1], [1, 2], [0, 2]], diversity=1.0
        ),
        r"cycle between titles 'T00\d', 'T00\d', 'T00\d' \(interacting titles must form chains",
    ),
]


@pytest.mark.parametrize(("make", "message"), BAD)
def test_bad_input_raises(make, message: str) -> None:
    problem = make()
    assert not supports(problem)
    with pytest.raises(InvalidProblemError, match=message):
        ChainSolver().solve(problem)
    with pytest.raises(InvalidProblemError, match=re.escape("use 'exact' or 'fast'")):
        solve(problem, solver="chain")
