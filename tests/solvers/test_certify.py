"""Certificates: every reported bound holds (brute force, exact, hypothesis); proofs are honest."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import slate
from slate.errors import InfeasibleProblemError, InvalidProblemError
from slate.page import GridLayout, PageProblem, random_problem, read_problem
from slate.page.layout import DenseLayout
from slate.solvers import AutoSolver, FastSolver, Status
from slate.solvers.certify import (
    Certificate,
    certify,
    embedding_bound,
    embedding_certificate,
    has_non_negative_cosines,
    layout_factor,
    meets,
    polytope_certificate,
)
from tests.pages import brute_force, instance_paths

TOL = 1e-9


def _tiny(seed: int, *, layout: str = "grid", budget: int | None = 1, quotas: bool = False, locks: bool = True,
          n_titles: int = 6, n_images: int = 3, diversity: float = 0.08, dim: int = 4) -> PageProblem:
    """A tiny page with signed embeddings (many negative cosines), locks, a budget and quotas."""
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(n_titles, n_images, dim))
    previous = rng.integers(0, n_images, size=n_titles)
    previous[rng.random(n_titles) < 0.2] = -1
    locked = (rng.random(n_titles) < 0.2) & (previous >= 0) if locks else np.zeros(n_titles, bool)
    lay = DenseLayout() if layout == "dense" else GridLayout(rows=2, cols=(n_titles + 1) // 2)
    tags = {"close": rng.random((n_titles, n_images)) < 0.4} if quotas else None
    return PageProblem.from_arrays(
        rng.uniform(0.01, 0.2, (n_titles, n_images)), emb, layout=lay, previous=previous, locked=locked,
        max_changes=budget, diversity=diversity, churn=0.01, image_tags=tags,
        tag_quotas={"close": 2} if quotas else None,
    )


def _page(problem: PageProblem) -> np.ndarray:
    return FastSolver(compute_bound=False, seed=0).solve(problem).assignment


CASES = [
    dict(layout="grid", budget=1),
    dict(layout="grid", budget=None),
    dict(layout="grid", budget=2, quotas=True),
    dict(layout="dense", budget=1),
    dict(layout="dense", budget=None, locks=False),
    dict(layout="dense", budget=2, quotas=True),
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("seed", range(4))
def test_every_bound_holds_against_brute_force(case: dict, seed: int) -> None:
    problem = _tiny(seed, **case)
    optimum, _ = brute_force(problem)
    page = _page(problem)
    objective = problem.evaluate(page).objective
    certs = [
        polytope_certificate(problem, page),
        polytope_certificate(problem, page, completion=False),
        polytope_certificate(problem, page, max_sweeps=4),
        embedding_certificate(problem, page),
        embedding_certificate(problem, page, deadline=-1.0, clock=lambda: 0.0),  # out of time at once
        certify(problem, page),
        certify(problem, page, time_limit_ms=0.0),
    ]
    for cert in certs:
        assert cert is not None
        assert cert.bound >= optimum - TOL, (cert.method, cert.bound, optimum)
        proven_page = page if cert.assignment is None else cert.assignment
        assert problem.is_feasible(proven_page)
        assert cert.objective == pytest.approx(problem.evaluate(proven_page).objective)
        assert cert.objective >= objective - TOL
        if cert.optimal:  # a proof is honest: the page it names is optimal
            assert cert.objective >= optimum - 1e-6 * max(1.0, abs(optimum))


@pytest.mark.parametrize("seed", range(3))
def test_completion_proves_tiny_pages_exactly(seed: int) -> None:
    # with every title kept the completion is an exact search: the optimal page is proven
    problem = _tiny(seed, n_titles=8, budget=2)
    optimum, best = brute_force(problem)
    cert = polytope_certificate(problem, best, max_sweeps=8)
    assert cert.optimal and cert.bound >= optimum - TOL
    assert cert.bound - optimum <= 1e-6 * max(1.0, abs(optimum)) * 1.001


def test_a_page_that_is_not_optimal_is_never_proven() -> None:
    problem = _tiny(7, n_titles=8, budget=2)
    optimum, best = brute_force(problem)
    t = np.arange(problem.n_titles)
    worse = None
    for title in t[~problem.locked]:
        for k in np.flatnonzero(problem.allowed[title]):
            candidate = best.copy()
            candidate[title] = k
            if problem.is_feasible(candidate) and problem.evaluate(candidate).objective < optimum - 1e-4:
                worse = candidate
                break
        if worse is not None:
            break
    assert worse is not None
    cert = polytope_certificate(problem, worse, completion=False)
    assert not cert.optimal and cert.assignment is None
    assert cert.bound >= optimum - TOL and cert.gap > 0
    # the exact completion (and the embedding certificate's Lagrangian page) search as they
    # prove: they may prove a better page, and say which
    for cert in (polytope_certificate(problem, worse), certify(problem, worse), embedding_certificate(problem, worse)):
        assert cert is not None
        assert cert.bound >= optimum - TOL
        if cert.optimal:
            assert cert.assignment is not None and problem.is_feasible(cert.assignment)
            assert cert.objective == pytest.approx(problem.evaluate(cert.assignment).objective)
            assert cert.objective >= optimum - 1e-6 * max(1.0, abs(optimum))


def test_bounds_hold_against_exact_on_random_pages() -> None:
    for layout, size in (("local", (20, 5)), ("chain", (20, 5)), ("dense", (12, 4))):
        problem = random_problem(*size, layout, seed=11)
        exact = slate.solve(problem, solver="exact")
        assert exact.status is Status.OPTIMAL
        page = _page(problem)
        for cert in (certify(problem, page), polytope_certificate(problem, page), embedding_certificate(problem, page)):
            assert cert is not None and cert.bound >= exact.objective - TOL


SHARED = [p for p in instance_paths() if p.stem.split("-")[1] in ("20x5", "40x10")]


@pytest.mark.parametrize("path", SHARED, ids=lambda p: p.stem)
def test_bounds_hold_on_shared_instances(path) -> None:
    import json

    problem = read_problem(path)
    optimum = float(json.loads(path.read_text())["optimum"]["objective"])
    cert = certify(problem, _page(problem), time_limit_ms=20)
    assert cert.bound >= optimum - 1e-6 * max(1.0, abs(optimum))


@given(
    seed=st.integers(0, 10_000),
    layout=st.sampled_from(["grid", "dense"]),
    budget=st.sampled_from([None, 0, 1, 3]),
    quotas=st.booleans(),
    diversity=st.floats(0.0, 0.5),
    n_titles=st.integers(2, 6),
    n_images=st.integers(1, 3),
)
def test_no_feasible_page_beats_a_reported_bound(seed, layout, budget, quotas, diversity, n_titles, n_images) -> None:
    try:
        problem = _tiny(seed, layout=layout, budget=budget, quotas=quotas, diversity=diversity,
                        n_titles=n_titles, n_images=n_images)
    except InfeasibleProblemError:  # quotas no page can meet: nothing to bound
        return
    optimum, _ = brute_force(problem)
    page = _page(problem)
    if problem.violations(page):  # the quota repair can fail; certify needs a valid page
        return
    for cert in (certify(problem, page), polytope_certificate(problem, page, max_sweeps=8)):
        assert cert.bound >= optimum - TOL
        if cert.optimal:
            proven_page = page if cert.assignment is None else cert.assignment
            assert problem.evaluate(proven_page).objective >= optimum - 1e-6 * max(1.0, abs(optimum))
    out = embedding_bound(problem, page)
    if out is not None:
        assert out[0] >= optimum - TOL


@given(seed=st.integers(0, 10_000), slope=st.floats(0.01, 1.0), layout=st.sampled_from(["grid", "dense"]))
def test_every_minorant_slope_gives_a_valid_bound(seed, slope, layout) -> None:
    # slope * c <= max(0, c) for slope in (0, 1]: the bound holds on pages with negative cosines
    problem = _tiny(seed, layout=layout, budget=2, diversity=0.3)
    optimum, _ = brute_force(problem)
    out = embedding_bound(problem, _page(problem), slope=slope)
    assert out is not None and out[0] >= optimum - TOL


@pytest.mark.parametrize("slope", [0.0, -0.5, 1.5, float("nan")])
def test_bad_slope_is_one_clear_error(slope) -> None:
    with pytest.raises(InvalidProblemError, match=r"'slope' parameter of embedding_bound must be in \(0, 1\]"):
        embedding_bound(_tiny(0, layout="dense"), _page(_tiny(0, layout="dense")), slope=slope)


def _non_negative(problem: PageProblem) -> PageProblem:
    assert problem.embeddings is not None
    return PageProblem.from_arrays(
        problem.scores, np.abs(problem.embeddings), layout=DenseLayout(), previous=problem.previous,
        locked=problem.locked, max_changes=problem.max_changes, diversity=problem.diversity, churn=problem.churn,
    )  # fmt: skip


def test_local_search_runs_under_a_deadline_only_once_measured() -> None:
    from slate.solvers.certify import embedding as em

    problem = _non_negative(random_problem(30, 6, "dense", seed=4))
    page = _page(problem)
    frozen = lambda: 0.0  # noqa: E731  (a clock that never reaches the deadline)
    embedding_certificate(problem, page, deadline=1.0, clock=frozen)
    assert em._dual(problem, 8).search_seconds is None  # unmeasured: skipped under a deadline
    embedding_certificate(problem, page)  # no deadline: searched and measured
    measured = em._dual(problem, 8).search_seconds
    assert measured is not None and measured >= 0.0
    cert = embedding_certificate(problem, page, deadline=1.0, clock=frozen)  # fits now
    assert cert is not None and cert.bound >= cert.objective
    assert em._dual(problem, 8).search_seconds is not None and em._dual(problem, 8).search_seconds <= measured


def test_non_negative_cosines_are_detected_and_auto_keeps_its_bound() -> None:
    signed = random_problem(40, 6, "dense", seed=11)
    unsigned = _non_negative(signed)
    assert not has_non_negative_cosines(signed) and has_non_negative_cosines(unsigned)
    assert not has_non_negative_cosines(random_problem(10, 3, "dense", seed=1, diversity=0.0))
    best = FastSolver(compute_bound=False).solve(unsigned).objective
    for limit in (0.5, 5.0, 50.0):
        result = AutoSolver().solve(unsigned, time_limit_ms=limit)
        assert unsigned.is_feasible(result.assignment)
        assert result.bound >= max(best, result.objective) - TOL
        assert result.info["certificate"]["method"] in ("embedding", "page-blind")


def test_warm_start_gives_a_valid_bound_and_reports_use() -> None:
    first = random_problem(40, 10, "local", seed=21)
    second = random_problem(40, 10, "local", seed=22)  # next session: same layout, new scores
    previous = certify(first, _page(first))
    page = _page(second)
    warm = polytope_certificate(second, page, warm_start=previous.duals, max_sweeps=8)
    assert warm.info["warm_start"] == "used"
    assert warm.bound >= slate.solve(second, solver="exact").objective - TOL
    wrong = polytope_certificate(second, page, warm_start=np.zeros(3), max_sweeps=4)
    assert wrong.info["warm_start"].startswith("ignored")
    # the embedding multipliers warm-start the embedding bound (and are valid for any value)
    dense = random_problem(30, 6, "dense", seed=5)
    cert = embedding_certificate(dense, _page(dense))
    assert cert is not None
    again = embedding_certificate(dense, _page(dense), warm_start=cert.duals + 0.3)
    assert again is not None and again.info["warm_start"] == "used"
    assert again.bound >= FastSolver().solve(dense).objective - TOL


def test_embedding_bound_is_tight_when_cosines_are_non_negative() -> None:
    base = random_problem(60, 8, "dense", seed=3)
    problem = PageProblem.from_arrays(
        base.scores, np.abs(base.embeddings), layout=DenseLayout(), previous=base.previous,
        locked=base.locked, max_changes=base.max_changes, diversity=base.diversity, churn=base.churn,
    )
    cert = embedding_certificate(problem, _page(problem))
    assert cert is not None and cert.gap < 0.005


def test_layout_factor_keeps_the_quadratic_form_below() -> None:
    problem = random_problem(12, 2, "local", seed=0)
    factor, sigma = layout_factor(problem, max_rank=3)
    w = np.zeros((12, 12))
    w[problem.pairs[:, 0], problem.pairs[:, 1]] = problem.pair_weights
    w += w.T
    assert np.linalg.eigvalsh(w + sigma * np.eye(12) - factor @ factor.T).min() >= -1e-9


def test_auto_reports_its_certificate() -> None:
    problem = random_problem(20, 5, "local", seed=9)
    result = AutoSolver().solve(problem, time_limit_ms=50)
    cert = result.info["certificate"]
    assert set(cert) == {"method", "bound", "gap"}
    assert cert["bound"] == result.bound and result.bound >= result.objective
    assert (result.status is Status.OPTIMAL) == meets(result.bound, result.objective)
    assert result.info["duals"].shape == (problem.n_pairs, 2, problem.n_images)
    warm = AutoSolver(warm_start=result.info["duals"]).solve(problem, time_limit_ms=50)
    assert warm.bound >= slate.solve(problem, solver="exact").objective - TOL
    chain = AutoSolver().solve(random_problem(20, 5, "chain", seed=9))
    assert chain.info["certificate"]["method"] == "chain-dp"
    plain = AutoSolver(certify=False).solve(problem, time_limit_ms=50)
    assert plain.info["certificate"]["method"] == "mplp" and plain.info["inner_solver"] == "fast"


def test_certificate_gap_and_clamp() -> None:
    cert = Certificate(bound=2.0, objective=1.0, method="page-blind")
    assert cert.gap == pytest.approx(0.5) and not cert.optimal
    assert Certificate(bound=1.0 - 1e-15, objective=1.0, method="mplp").bound == 1.0


@pytest.mark.parametrize(
    ("assignment", "match"),
    [
        (np.zeros(3, dtype=np.int64), r"must be 6 integer image indices"),
        (np.zeros(6), r"must be 6 integer image indices"),
        (np.full(6, 7, dtype=np.int64), r"must be a valid page"),
    ],
)
def test_bad_assignment_is_one_clear_error(assignment, match) -> None:
    with pytest.raises(InvalidProblemError, match=match):
        certify(_tiny(0), assignment)


@pytest.mark.parametrize("path", [p for p in SHARED if p.stem.startswith("local")], ids=lambda p: p.stem)
def test_local_shared_instances_are_proven_at_their_certified_optimum(path) -> None:
    import json

    problem = read_problem(path)
    optimum = float(json.loads(path.read_text())["optimum"]["objective"])
    cert = certify(problem, _page(problem))  # no limit: deterministic
    assert cert.optimal
    assert cert.objective == pytest.approx(optimum, rel=1e-6, abs=1e-9)


def test_auto_with_quotas_and_a_limit_keeps_the_bound_valid() -> None:
    problem = random_problem(20, 5, "local", seed=3, quotas={"style0": 2})
    result = AutoSolver().solve(problem, time_limit_ms=50)
    assert problem.is_feasible(result.assignment) and result.info["route"] == "fast"
    assert result.bound >= slate.solve(problem, solver="exact").objective - TOL


def test_auto_does_not_certify_a_page_that_breaks_its_quotas(monkeypatch) -> None:
    import time

    import slate.solvers.auto as auto_module
    from slate.solvers import make_result

    class _Stuck:  # a fast solver whose quota repair failed
        def solve(self, problem, time_limit_ms=None):
            return make_result(problem, np.zeros(problem.n_titles, dtype=np.int64), status="infeasible",
                               solver="fast", started=time.perf_counter())

    monkeypatch.setattr(auto_module, "FastSolver", lambda seed=0: _Stuck())
    problem = random_problem(20, 5, "local", seed=1, locked_share=0.0)
    result = AutoSolver().solve(problem, time_limit_ms=5)
    assert "fallback" not in result.info
    assert result.status is Status.INFEASIBLE and result.info["certificate"]["method"] == "none"


# ---------------------------------------------------------------- the embedding route's kernels


def _tiny_non_negative(seed: int, **kwargs) -> PageProblem:
    """A tiny dense page whose cosines are all >= 0 (``|embeddings|``), locks and a budget kept."""
    base = _tiny(seed, layout="dense", **kwargs)
    assert base.embeddings is not None
    return PageProblem.from_arrays(
        base.scores, np.abs(base.embeddings), layout=DenseLayout(), previous=base.previous, locked=base.locked,
        max_changes=base.max_changes, diversity=base.diversity, churn=base.churn,
    )  # fmt: skip


def test_page_parts_and_incremental_penalty_match_the_problem() -> None:
    from slate.solvers.certify import _kernels as ck
    from slate.solvers.certify import embedding as em

    problem = random_problem(30, 6, "dense", seed=2)
    rng = np.random.default_rng(0)
    dual = em._dual(problem, 8)
    last = _page(problem).copy()
    penalty = float(ck.embedding_penalty(dual.emb, dual.pairs, dual.weights, last))
    for _ in range(20):  # pages that differ in a few titles (incremental) or many (from scratch)
        a = last.copy()
        moved = rng.choice(problem.n_titles, size=int(rng.integers(1, 12)), replace=False)
        for t in moved:
            a[t] = rng.choice(np.flatnonzero(problem.allowed[t]))
        expected = problem.evaluate(a)
        penalty = float(ck.embedding_penalty_moved(dual.emb, dual.pairs, dual.weights, dual.adjacency, last, a, penalty))
        assert np.array_equal(last, a)
        assert penalty == pytest.approx(expected.diversity_penalty, rel=1e-12, abs=1e-12)
        parts = em.page_parts(problem, a)
        assert parts.objective == pytest.approx(expected.objective, rel=1e-12, abs=1e-12)
        assert (parts.relevance, parts.n_changes) == (pytest.approx(expected.relevance), expected.n_changes)
    with pytest.raises(InvalidProblemError, match=r"'embeddings' field of the page problem must be given"):
        em.page_parts(PageProblem.from_arrays(np.ones((2, 2)), similarity=np.ones((1, 2, 2)), pairs=np.array([[0, 1]]),
                                              pair_weights=np.ones(1)), np.zeros(2, dtype=np.int64))  # fmt: skip


@pytest.mark.parametrize("seed", range(3))
def test_budgeted_argmax_attains_the_budgeted_maximum(seed: int) -> None:
    from slate.solvers import _fast_kernels as fk
    from slate.solvers.certify import _kernels as ck

    problem = random_problem(25, 5, "dense", seed=seed)
    theta = np.where(problem.allowed, np.random.default_rng(seed).normal(size=problem.unary.shape), -np.inf)
    change = np.ascontiguousarray(problem.changes, dtype=np.uint8)
    for budget in (0, 2, 5, 1 << 40):
        a = ck.budgeted_argmax(theta, change, budget)
        assert problem.allowed[np.arange(25), a].all() and int(change[np.arange(25), a].sum()) <= budget
        assert theta[np.arange(25), a].sum() == pytest.approx(fk.budgeted_max(theta, change, budget))


def test_dual_evaluation_gradient_and_order() -> None:
    # the smoothed value is above the exact bound (the budget priced, not kept, and the
    # log-sum-exp above the max) and its gradient matches finite differences
    from slate.solvers.certify import embedding as em

    problem = _tiny_non_negative(3, n_titles=6, n_images=3, budget=2)
    dual = em._dual(problem, 8)
    rng = np.random.default_rng(1)
    x0 = np.append(rng.normal(size=dual.rank * dual.dim) * 0.05, 0.01)
    run = em._Run(dual, x0, track=False, objective=None, rtol=1e-6)
    run.temperature(0.01)
    theta, grad, buf = np.empty(dual.ut.shape), np.empty_like(x0), np.empty((3, max(dual.dim, 3)))
    from slate.solvers.certify import _kernels as ck

    value, exact = ck.embedding_dual_eval(run.data, x0, run.par, theta, grad, buf)
    assert value >= exact - 1e-12
    y = x0[:-1].reshape(dual.rank, dual.dim)
    assert exact == pytest.approx(dual.exact(y), rel=1e-12, abs=1e-12)
    step = 1e-6
    for i in range(len(x0)):
        e = np.zeros_like(x0)
        e[i] = step
        up, _ = ck.embedding_dual_eval(run.data, x0 + e, run.par, theta, np.empty_like(x0), buf)
        down, _ = ck.embedding_dual_eval(run.data, x0 - e, run.par, theta, np.empty_like(x0), buf)
        assert (up - down) / (2 * step) == pytest.approx(grad[i], abs=1e-5)


def test_rtol_stops_early_and_keeps_the_bound() -> None:
    problem = _non_negative(random_problem(60, 8, "dense", seed=3))
    page = _page(problem)
    proof = embedding_certificate(problem, page)
    early = embedding_certificate(problem, page, rtol=0.005)
    assert proof is not None and early is not None
    assert early.gap <= 0.005 and early.info["evaluations"] < proof.info["evaluations"]
    assert early.bound >= proof.bound - TOL  # the early bound is looser or equal, never below
    best = max(proof.objective, early.objective, FastSolver().solve(problem).objective)
    assert min(proof.bound, early.bound) >= best - TOL


@pytest.mark.parametrize("seed", range(4))
def test_auto_dense_non_negative_route_holds_against_brute_force(seed: int) -> None:
    problem = _tiny_non_negative(seed, n_titles=7, n_images=3, budget=2)
    optimum, _ = brute_force(problem)
    for limit, rtol in ((None, 1e-6), (0.5, 1e-6), (5.0, 0.005), (50.0, 1e-6)):
        # (exact_max_titles=0: without a limit a tiny page would go to exact)
        result = AutoSolver(certify_rtol=rtol, exact_max_titles=0).solve(problem, time_limit_ms=limit)
        assert result.info["start"] == "page-blind" and result.info["inner_solver"] == "fast"
        assert problem.is_feasible(result.assignment)
        assert result.objective == pytest.approx(problem.evaluate(result.assignment).objective)
        assert result.bound >= optimum - TOL
        assert result.objective <= optimum + TOL
        if result.status is Status.OPTIMAL:
            assert result.objective >= optimum - 1e-6 * max(1.0, abs(optimum))


def test_auto_dense_non_negative_with_quotas_keeps_fast() -> None:
    base = random_problem(30, 5, "dense", seed=4, quotas={"style0": 3})
    assert base.embeddings is not None
    problem = PageProblem.from_arrays(
        base.scores, np.abs(base.embeddings), layout=DenseLayout(), previous=base.previous, locked=base.locked,
        max_changes=base.max_changes, diversity=base.diversity, churn=base.churn,
        image_tags={g: base.image_tags[i] for i, g in enumerate(base.tag_names)}, tag_quotas={"style0": 3},
    )  # fmt: skip
    result = AutoSolver().solve(problem, time_limit_ms=20)
    assert result.info["start"] in ("greedy", "argmax") and result.info["inner_solver"] == "fast"
    assert problem.is_feasible(result.assignment) and result.bound >= result.objective


@pytest.mark.parametrize("rtol", [-0.1, 1.0, float("nan"), "0.1"])
def test_bad_certify_rtol_is_one_clear_error(rtol) -> None:
    with pytest.raises(InvalidProblemError, match=r"'certify_rtol' parameter of AutoSolver must be a number in \[0, 1\)"):
        AutoSolver(certify_rtol=rtol)


def test_page_blind_optimum_is_cached_and_copied() -> None:
    from slate.solvers.bounds import budgeted_unary_optimum

    problem = random_problem(20, 4, "dense", seed=1)
    first, value = budgeted_unary_optimum(problem)
    first[:] = -1  # the caller's copy: the cached page is unchanged
    again, value_again = budgeted_unary_optimum(problem)
    assert value_again == value and (again >= 0).all()
    assert value == pytest.approx(problem.unary[np.arange(20), again].sum())


@given(
    seed=st.integers(0, 10_000),
    budget=st.sampled_from([None, 0, 1, 3]),
    locks=st.booleans(),
    n_titles=st.integers(3, 6),  # (two titles are a chain: exact DP)
    n_images=st.integers(1, 3),
    scale=st.floats(0.0, 3.0),
)
def test_no_feasible_page_beats_the_embedding_route(seed, budget, locks, n_titles, n_images, scale) -> None:
    # dense pages with non-negative cosines: the route that skips fast, from any warm start
    problem = _tiny_non_negative(seed, budget=budget, locks=locks, n_titles=n_titles, n_images=n_images,
                                 diversity=0.3)  # fmt: skip
    optimum, _ = brute_force(problem)
    limited = AutoSolver().solve(problem, time_limit_ms=5.0)  # (wall clock: may skip the bound)
    assert limited.bound >= optimum - TOL and problem.is_feasible(limited.assignment)
    result = AutoSolver(exact_max_titles=0).solve(problem)  # no limit: the route always certifies
    assert result.info["start"] == "page-blind"
    assert result.bound >= optimum - TOL and problem.is_feasible(result.assignment)
    first = embedding_certificate(problem, result.assignment)
    assert first is not None and first.duals is not None
    duals = first.duals
    shaken = duals + scale * np.random.default_rng(seed).normal(size=duals.shape)
    cert = embedding_certificate(problem, result.assignment, warm_start=shaken, rtol=0.005)
    assert cert is not None and cert.bound >= optimum - TOL
    assert cert.objective <= optimum + TOL


@pytest.mark.parametrize("seed", range(3))
def test_rest_bound_takes_the_largest_gains_of_both_lists(seed: int) -> None:
    # the completion's bound of the rest: every later title's best unchanged value plus the
    # n_left largest positive gains among the later titles' and the outside ones (reference:
    # a full sort of both lists)
    from slate.solvers.certify import _kernels as ck

    rng = np.random.default_rng(seed)
    for _ in range(300):
        m = int(rng.integers(1, 25))
        depth = int(rng.integers(-1, m))
        keep = rng.normal(size=m)
        chg = np.where(rng.random(m) < 0.7, keep + rng.normal(size=m), -np.inf)
        outside = np.sort(np.abs(rng.normal(size=int(rng.integers(0, 6)))))[::-1].copy()
        n_left = int(rng.integers(-1, 10))
        later = slice(depth + 1, m)
        gains = np.concatenate([(chg - keep)[later], outside])
        gains = np.sort(gains[gains > 0])[::-1]
        expected = keep[later].sum() + (gains[: max(n_left, 0)].sum() if n_left > 0 else 0.0)
        assert ck._rest_bound(depth, keep, chg, outside, n_left, np.empty(m)) == pytest.approx(expected, abs=1e-12)


def test_bfs_order_visits_each_kept_title_once_neighbours_first() -> None:
    from slate.solvers.certify import _kernels as ck
    from slate.solvers.fast import _adjacency

    problem = random_problem(30, 3, "local", seed=2)
    ptr, nbr, *_ = _adjacency(problem.n_titles, problem.pairs)
    rng = np.random.default_rng(0)
    kept = rng.random(30) < 0.7
    roots = rng.permutation(30)
    order = ck.bfs_order(ptr, nbr, kept, roots)
    assert sorted(order.tolist()) == np.flatnonzero(kept).tolist()
    # a breadth-first order: each title after the first of its tree is a neighbour of an earlier one
    # or the next unreached root
    seen: set[int] = set()
    for t in order.tolist():
        reached = any(int(o) in seen for o in nbr[ptr[t] : ptr[t + 1]])
        first_root = next(int(r) for r in roots if kept[r] and int(r) not in seen)
        assert reached or t == first_root
        seen.add(t)


def test_completion_out_of_nodes_sweeps_more_and_still_holds(monkeypatch) -> None:
    # searches of two nodes run out: the route sweeps more and searches again with twice the
    # nodes; every bound still holds and the optimal pages are still proven
    from slate.solvers.certify import polytope

    monkeypatch.setattr(polytope, "_FIRST_NODES", 2)
    monkeypatch.setattr(polytope, "_FIRST_SWEEPS", 4)
    resumed = 0
    for seed in range(6):
        problem = _tiny(seed, n_titles=8, budget=2)
        optimum, best = brute_force(problem)
        for page in (best, _page(problem)):
            cert = polytope_certificate(problem, page)
            assert cert.bound >= optimum - TOL
            if cert.optimal:
                assert cert.objective >= optimum - 1e-6 * max(1.0, abs(optimum))
        cert = polytope_certificate(problem, best)
        assert cert.optimal
        resumed += cert.info["sweeps"] > 4 and cert.info.get("completion_rounds", 0) >= 1
    assert resumed >= 2  # the interleaving ran (sweeps after a search that ran out of nodes)
