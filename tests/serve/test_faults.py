"""Never fail: scoring, store, solver and logger faults give a valid page, a status and a count."""

from __future__ import annotations

import sys
import time
from datetime import timedelta

import numpy as np
import pytest

from slate.serve import Composer, Fault, StickyEpsilon
from slate.solvers import IndependentSolver, register_solver
from slate.solvers.result import SolveResult, Status
from slate.stability import InMemoryStore, Reason, StabilityRules
from tests.serve.test_compose import T0, TableScorer, assert_valid, cfg, make_request


class FlakyStore(InMemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.fail_get = False
        self.fail_put = False
        self.garbage = False

    def get(self, member_id, title_ids):
        if self.fail_get:
            raise OSError("database is locked")
        if self.garbage:
            return {t: "not a state" for t in title_ids}
        return super().get(member_id, title_ids)

    def put(self, member_id, states):
        if self.fail_put:
            raise OSError("disk full")
        super().put(member_id, states)


class FaultySolver:
    """A solver whose misbehaviour is chosen per call."""

    mode = "ok"
    delay = 0.03
    name = "faulty"

    def solve(self, problem, time_limit_ms=None):
        mode = FaultySolver.mode
        if mode == "raise":
            raise RuntimeError("HiGHS crashed")
        result = IndependentSolver().solve(problem)
        if mode == "slow":
            time.sleep(FaultySolver.delay)
        if mode == "time_limit":
            return _with(result, status=Status.TIME_LIMIT)
        if mode == "out_of_range":
            return _with(result, assignment=np.full(problem.n_titles, problem.n_images + 3))
        if mode == "move_locked":
            a = result.assignment.copy()
            locked = np.flatnonzero(problem.locked)
            a[locked] = (problem.previous[locked] + 1) % problem.candidates[locked].sum(axis=1)
            return _with(result, assignment=a)
        if mode == "infeasible":
            return _with(result, status=Status.INFEASIBLE)
        return result


def _with(result: SolveResult, **changes) -> SolveResult:
    import dataclasses

    return dataclasses.replace(result, **changes)


@pytest.fixture(scope="module", autouse=True)
def _faulty_registered():
    """Register the faulty solver for this module only (the registry is global)."""
    from slate.solvers import base

    register_solver("faulty", FaultySolver)
    yield
    base.SOLVERS.unregister("faulty")
    for key in [k for k in compose_cache() if k[0] == "faulty"]:
        compose_cache().pop(key)


def compose_cache() -> dict:
    return sys.modules["slate.serve.composer"]._SOLVERS  # type: ignore[no-any-return]


@pytest.fixture(autouse=True)
def _reset_solver():
    FaultySolver.mode, FaultySolver.delay = "ok", 0.03
    yield
    FaultySolver.mode, FaultySolver.delay = "ok", 0.03


RULES = StabilityRules(max_changes=2, dwell_sessions=2, state_ttl_days=None)


def warmed(store=None, exploration=None, **config):
    """A composer whose member has one session of state (so 'previous image' means something)."""
    store = store if store is not None else FlakyStore()
    composer = Composer(TableScorer(drift=0.05), store, exploration,
                        config=cfg(solver="faulty", stability=RULES, **config))
    first = composer.compose(make_request(session=1, locked=(0,)))
    return composer, first


def second(composer, **kw):
    return composer.compose(make_request(session=2, when=T0 + timedelta(days=3), locked=(0,), **kw))


def previous_of(decision):
    return dict(zip(decision.title_ids, decision.image_ids, strict=True))


@pytest.mark.parametrize("mode", ["raise", "out_of_range", "move_locked", "infeasible"])
def test_solver_failures_fall_back_to_previous_images(mode):
    composer, first = warmed()
    FaultySolver.mode = mode
    d = second(composer)
    assert d.status == "fallback" and d.faults == (Fault.SOLVER_FAILED,)
    assert d.solver_status == "failed"
    assert d.image_ids == first.image_ids  # every title had a previous image
    assert not d.explored.any() and (d.propensity == 1).all()
    assert composer.stats_.faults["solver_failed"] == 1
    assert composer.stats_.statuses["fallback"] == 1


def test_solver_late_uses_its_valid_page_and_says_so():
    composer, first = warmed(solver_time_ms=1.0, solver_grace_ms=1.0)
    FaultySolver.mode = "slow"
    d = second(composer)
    assert d.faults == (Fault.SOLVER_LATE,) and d.status == "degraded"
    assert d.solver_status == "feasible"
    assert "ms for a budget of 1 ms" in d.fault_details[0]
    assert_valid(d, make_request(session=2, locked=(0,)), previous_of(first), max_changes=2)


def test_solver_time_limit_is_a_status_not_a_fault():
    composer, _ = warmed()
    FaultySolver.mode = "time_limit"
    d = second(composer)
    assert d.status == "ok" and d.solver_status == "time_limit"
    assert composer.stats_.solver_statuses["time_limit"] == 1


def test_scoring_failure_keeps_previous_else_first_image():
    composer, first = warmed()
    composer._score = lambda request: (_ for _ in ()).throw(ValueError("model not loaded"))
    request = make_request(n_titles=14, session=2, when=T0 + timedelta(days=3), locked=(0,))
    d = composer.compose(request)  # titles T12, T13 are new to the member
    assert d.status == "fallback" and d.faults == (Fault.SCORING_FAILED,)
    assert "ValueError: model not loaded" in d.fault_details[0]
    assert d.image_ids[:12] == first.image_ids
    assert d.image_ids[12:] == ("T12-I0", "T13-I0")
    assert d.objective is None and d.solver_status == "skipped"


@pytest.mark.parametrize("bad", ["shape", "nan", "inf"])
def test_bad_scores_fall_back_to_best_finite_scores(bad):
    scores = np.tile([0.1, 0.3, 0.2, 0.05], (3, 1))
    if bad == "shape":
        scores = scores[:, :2]
    elif bad == "nan":
        scores[1, 1] = np.nan
    else:
        scores[2, :] = np.inf
    request = make_request(n_titles=3, n_images=4)
    composer = Composer(lambda r: scores, InMemoryStore(), config=cfg(solver="independent"), strict=False)
    d = composer.compose(request)
    assert d.status == "fallback"
    if bad == "shape":
        assert d.faults == (Fault.SCORING_FAILED,) and "expected (3, 4)" in d.fault_details[0]
        assert d.image_ids == ("T0-I0", "T1-I0", "T2-I0")
    else:
        assert d.faults == (Fault.SCORES_NOT_FINITE,)
        assert d.image_ids[0] == "T0-I1"
        assert d.image_ids[1] == ("T1-I2" if bad == "nan" else "T1-I1")
        assert d.image_ids[2] == ("T2-I1" if bad == "nan" else "T2-I0")


def test_store_read_failure_serves_without_state_and_does_not_write():
    store = FlakyStore()
    composer, first = warmed(store)
    store.fail_get = True
    d = second(composer, )
    assert d.faults == (Fault.STORE_READ_FAILED,) and d.status == "degraded"
    assert (d.reason == Reason.NEW).all()
    store.fail_get = False
    kept = store.get(1, list(first.title_ids))
    assert {t: s.image_id for t, s in kept.items()} == previous_of(first)  # not overwritten


def test_unusable_state_counts_as_a_read_failure():
    store = FlakyStore()
    composer, _ = warmed(store)
    store.garbage = True
    d = second(composer)
    assert d.faults == (Fault.STORE_READ_FAILED,) and "unusable state" in d.fault_details[0]


def test_store_write_failure_still_serves_the_page():
    store = FlakyStore()
    composer, first = warmed(store, exploration=StickyEpsilon(0.5, seed=0))
    store.fail_put = True
    d = second(composer)
    assert d.faults == (Fault.STORE_WRITE_FAILED,) and d.status == "degraded"
    assert_valid(d, make_request(session=2, locked=(0,)), previous_of(first), max_changes=2)
    assert "disk full" in d.fault_details[0]


def test_slow_store_and_scoring_are_reported():
    class SlowStore(InMemoryStore):
        def get(self, member_id, title_ids):
            time.sleep(0.02)
            return super().get(member_id, title_ids)

    def slow_scores(request):
        time.sleep(0.02)
        return np.ones((request.n_titles, request.n_images))

    composer = Composer(slow_scores, SlowStore(),
                        config=cfg(solver="independent", store_budget_ms=5.0, scoring_budget_ms=5.0))
    d = composer.compose(make_request())
    assert set(d.faults) == {Fault.STORE_LATE, Fault.SCORING_LATE} and d.status == "degraded"


def test_logger_failure_is_a_fault():
    class BrokenLogger:
        def append(self, decision):
            raise OSError("no space left on device")

    composer = Composer(TableScorer(), None, config=cfg(solver="independent"), logger=BrokenLogger())
    d = composer.compose(make_request())
    assert d.faults == (Fault.LOG_FAILED,) and d.status == "degraded"


def test_a_bug_inside_compose_still_serves_a_page(monkeypatch):
    composer, first = warmed()

    def broken(*args, **kwargs):
        raise ZeroDivisionError("oops")

    monkeypatch.setattr(sys.modules["slate.serve.composer"], "plan_page", broken)
    d = second(composer)
    assert d.faults == (Fault.INTERNAL_ERROR,) and d.status == "fallback"
    assert d.image_ids == first.image_ids
    assert composer.stats_.faults["internal_error"] == 1


def test_random_fault_injection_every_page_valid_every_fault_counted():
    """1,000 requests over 100 members with random faults (the benchmark runs 100k)."""
    FaultySolver.delay = 0.006
    rng = np.random.default_rng(0)
    store = FlakyStore()
    scorer = TableScorer(drift=0.05)
    modes = ["ok", "raise", "slow", "time_limit", "out_of_range", "infeasible"]

    def scores(request):
        if draw["score"] == "raise":
            raise RuntimeError("scorer down")
        s = scorer.score_page(request)
        if draw["score"] == "nan":
            s[rng.integers(request.n_titles), 0] = np.nan
        return s

    composer = Composer(scores, store, StickyEpsilon(0.2, max_explored=2, sticky_sessions=2, seed=1),
                        config=cfg(solver="faulty", stability=RULES, solver_time_ms=1.0, solver_grace_ms=3.0))
    last: dict[int, dict[str, str]] = {}
    expected: dict[str, int] = {}
    for i in range(1000):
        member = int(rng.integers(100))
        draw = {"score": rng.choice(["ok", "raise", "nan"], p=[0.9, 0.05, 0.05])}
        FaultySolver.mode = str(rng.choice(modes, p=[0.8, 0.04, 0.04, 0.04, 0.04, 0.04]))
        store.fail_get = bool(rng.random() < 0.03)
        store.fail_put = bool(rng.random() < 0.03)
        request = make_request(member=member, session=i, when=T0 + timedelta(hours=i), locked=(0,), seed=member)
        d = composer.compose(request)
        previous = {} if store.fail_get else last.get(member, {})
        assert_valid(d, request, previous, max_changes=2 if not store.fail_get else None)
        injected = set()
        if draw["score"] == "raise":
            injected.add(Fault.SCORING_FAILED)
        elif draw["score"] == "nan":
            injected.add(Fault.SCORES_NOT_FINITE)
        elif FaultySolver.mode in ("raise", "out_of_range", "infeasible"):
            injected.add(Fault.SOLVER_FAILED)
        elif FaultySolver.mode == "slow":
            injected.add(Fault.SOLVER_LATE)
        if store.fail_get:
            injected.add(Fault.STORE_READ_FAILED)
        elif store.fail_put:
            injected.add(Fault.STORE_WRITE_FAILED)
        assert injected <= set(d.faults), (injected, d.faults)
        for f in d.faults:
            expected[f.value] = expected.get(f.value, 0) + 1
        if not store.fail_get and not store.fail_put:
            last[member] = previous_of(d)
    snapshot = composer.stats_.snapshot()
    assert snapshot["pages"] == 1000 and snapshot["faults"] == expected
    assert sum(snapshot["statuses"].values()) == 1000
    assert snapshot["faults"]["solver_failed"] > 50 and snapshot["faults"]["scoring_failed"] > 25
