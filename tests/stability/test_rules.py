"""Each stability rule on its own: locks, dwell, hysteresis, expiry, retired images, held draws."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

from slate.stability import (
    Reason,
    StabilityRules,
    StickyPeriod,
    TitleState,
    next_states,
    plan_page,
)

DAY = 86_400.0
TITLES = ["A", "B", "C"]
IMAGES = [("A0", "A1", "A2"), ("B0", "B1", "B2"), ("C0", "C1", "C2")]
CAND = np.ones((3, 3), dtype=bool)


def st(image: str, *, since: float = 0.0, sessions: int = 1, session: int = 1, updated: float = 0.0,
       seen: bool = True, draw_at: float = math.nan, draw_sessions: int = 0, p: float = 1.0,
       explored: bool = False) -> TitleState:
    return TitleState(image, since, sessions, session, updated, seen, draw_at, draw_sessions, p, explored)


def plan(rules=None, states=None, *, now=3600.0, session=2, locked=(False, False, False), scores=None,
         seen=(), sticky=None, candidates=CAND, images=IMAGES):
    return plan_page(
        rules or StabilityRules(),
        now=now,
        session_id=session,
        title_ids=TITLES,
        image_ids=images,
        candidates=candidates,
        locked=np.array(locked),
        states=states or {},
        scores=scores,
        seen_title_ids=seen,
        sticky=sticky,
    )


def reasons(p) -> list[str]:
    return [Reason(int(r)).name for r in p.reason]


def test_no_state_means_new_titles_free_everywhere():
    p = plan()
    assert reasons(p) == ["NEW"] * 3
    assert (p.previous == -1).all() and not p.held.any()
    assert (p.solver_candidates == CAND).all() and (p.explore_candidates == CAND).all()


def test_locks_keep_the_previous_image_only_when_there_is_one():
    p = plan(states={"A": st("A2")}, locked=(True, True, False))
    assert reasons(p) == ["LOCKED", "NEW", "NEW"]
    assert p.held.tolist() == [True, False, False]
    assert p.solver_candidates[0].tolist() == [False, False, True]
    assert p.explore_candidates[0].tolist() == [False, False, True]


class TestDwell:
    rules = StabilityRules(dwell_sessions=3, dwell_days=7)

    def test_held_until_n_sessions(self):
        p = plan(self.rules, {"A": st("A1", sessions=2), "B": st("B1", sessions=3)})
        assert reasons(p)[:2] == ["DWELL", "FREE"]
        assert p.solver_candidates[0].tolist() == [False, True, False]
        assert p.solver_candidates[1].all()

    def test_released_after_d_days_even_with_few_sessions(self):
        p = plan(self.rules, {"A": st("A1", since=0.0, sessions=1)}, now=7 * DAY + 1)
        assert reasons(p)[0] == "FREE"
        p = plan(self.rules, {"A": st("A1", since=0.0, sessions=1, updated=6 * DAY)}, now=7 * DAY - 1)
        assert reasons(p)[0] == "DWELL"

    def test_each_limit_alone(self):
        only_days = StabilityRules(dwell_days=1.0)
        assert reasons(plan(only_days, {"A": st("A1", sessions=50)}, now=0.5 * DAY))[0] == "DWELL"
        only_sessions = StabilityRules(dwell_sessions=2)
        assert reasons(plan(only_sessions, {"A": st("A1", sessions=1)}, now=100 * DAY, ))[0] == "NEW"
        # (100 days is past the default 30-day state expiry; within it:)
        assert reasons(plan(only_sessions, {"A": st("A1", sessions=1)}, now=20 * DAY))[0] == "DWELL"

    def test_an_image_never_seen_is_not_held(self):
        states = {"A": st("A1", seen=False), "B": st("B1", seen=False)}
        p = plan(self.rules, states, seen=("B",))
        assert reasons(p)[:2] == ["FREE", "DWELL"]
        assert p.states[1].seen and not p.states[0].seen

    def test_no_dwell_rule_holds_nothing(self):
        assert reasons(plan(StabilityRules(), {"A": st("A1")}))[0] == "FREE"


class TestHysteresis:
    scores = np.array([[0.10, 0.12, 0.20], [0.5, 0.1, 0.1], [0.3, 0.3, 0.3]])

    def test_only_images_that_beat_the_current_one_by_the_threshold(self):
        rules = StabilityRules(min_gain=0.05)
        p = plan(rules, {"A": st("A0"), "B": st("B0")}, scores=self.scores)
        assert p.solver_candidates[0].tolist() == [True, False, True]  # +0.02 is not enough, +0.10 is
        assert p.solver_candidates[1].tolist() == [True, False, False]
        assert p.solver_candidates[2].all()  # a new title is free
        assert p.explore_candidates[:2].all()  # exploration is not restricted by hysteresis
        assert not p.held.any()

    def test_off_without_threshold_or_scores(self):
        states = {"A": st("A0")}
        assert plan(StabilityRules(), states, scores=self.scores).solver_candidates.all()
        assert plan(StabilityRules(min_gain=0.05), states, scores=None).solver_candidates.all()

    def test_zero_threshold_needs_a_strict_gain(self):
        p = plan(StabilityRules(min_gain=0.0), {"C": st("C1")}, scores=self.scores)
        assert p.solver_candidates[2].tolist() == [False, True, False]


def test_expiry_forgets_old_state():
    rules = StabilityRules(state_ttl_days=10, dwell_sessions=5)
    states = {"A": st("A1", updated=0.0), "B": st("B1", updated=5 * DAY)}
    p = plan(rules, states, now=11 * DAY)
    assert reasons(p)[:2] == ["NEW", "DWELL"]
    assert p.previous_ids[:2] == (None, "B1")
    never = StabilityRules(state_ttl_days=None, dwell_sessions=5)
    assert reasons(plan(never, states, now=1000 * DAY))[0] == "DWELL"


def test_retired_previous_image_frees_the_title_but_is_remembered():
    p = plan(StabilityRules(dwell_sessions=5), {"A": st("A-old")}, locked=(True, False, False))
    assert reasons(p)[0] == "RETIRED"
    assert p.previous[0] == -1 and p.previous_ids[0] == "A-old" and not p.held[0]


def test_previous_image_in_padding_is_not_a_candidate():
    images = [("A0",), ("B0", "B1", "B2"), ("C0", "C1", "C2")]
    cand = np.array([[True, False, False], [True] * 3, [True] * 3])
    p = plan(StabilityRules(dwell_sessions=5), {"A": st("A0")}, candidates=cand, images=images)
    assert p.previous[0] == 0 and p.solver_candidates[0].tolist() == [True, False, False]


class TestHeldDraws:
    sticky = StickyPeriod(sessions=3, days=2.0)

    def test_held_within_the_period_with_its_propensity(self):
        states = {"A": st("A2", draw_at=0.0, draw_sessions=2, p=0.02, explored=True)}
        p = plan(StabilityRules(), states, sticky=self.sticky, now=DAY)
        assert reasons(p)[0] == "STICKY"
        assert p.draw_held[0] and p.draw_propensity[0] == 0.02 and p.draw_explored[0]
        assert p.solver_candidates[0].tolist() == [False, False, True]

    @pytest.mark.parametrize(("draw_sessions", "now"), [(3, 0.5 * DAY), (1, 2.5 * DAY)])
    def test_released_after_sessions_or_days(self, draw_sessions, now):
        states = {"A": st("A2", draw_at=0.0, draw_sessions=draw_sessions, p=0.02)}
        p = plan(StabilityRules(), states, sticky=self.sticky, now=now)
        assert reasons(p)[0] == "FREE" and not p.draw_held[0] and p.draw_propensity[0] == 1.0

    def test_always_held_within_its_own_session(self):
        states = {"A": st("A2", session=7, draw_at=0.0, draw_sessions=1, p=0.3)}
        p = plan(StabilityRules(), states, sticky=StickyPeriod(sessions=1), session=7, now=DAY)
        assert p.draw_held[0]
        p = plan(StabilityRules(), states, sticky=StickyPeriod(sessions=1), session=8, now=DAY)
        assert not p.draw_held[0]

    def test_not_held_without_sticky_exploration(self):
        states = {"A": st("A2", draw_at=0.0, draw_sessions=1, p=0.3)}
        assert not plan(StabilityRules(), states, sticky=None).draw_held.any()

    def test_lock_wins_the_reason_but_the_draw_keeps_its_propensity(self):
        states = {"A": st("A2", draw_at=0.0, draw_sessions=1, p=0.3)}
        rules = StabilityRules(dwell_sessions=9)
        p = plan(rules, states, sticky=self.sticky, locked=(True, False, False), now=10.0)
        assert reasons(p)[0] == "LOCKED" and p.draw_held[0] and p.draw_propensity[0] == 0.3


class TestNextStates:
    rules = StabilityRules(dwell_sessions=3)

    def test_same_image_counts_sessions_once_per_session(self):
        states = {"A": st("A1", sessions=1, session=1, since=5.0)}
        p = plan(self.rules, states, session=2, now=100.0)
        new = next_states(p, self.rules, now=100.0, session_id=2, title_ids=TITLES,
                          shown_ids=["A1", "B0", "C0"], drawn=np.zeros(3, bool),
                          propensity=np.ones(3), explored=np.zeros(3, bool))
        assert new["A"].sessions == 2 and new["A"].shown_since == 5.0 and new["A"].updated_at == 100.0
        assert new["B"] == TitleState("B0", 100.0, 1, 2, 100.0, True)
        again = plan(self.rules, new, session=2, now=150.0)  # a refresh in the same session
        newer = next_states(again, self.rules, now=150.0, session_id=2, title_ids=TITLES,
                            shown_ids=["A1", "B0", "C0"], drawn=np.zeros(3, bool),
                            propensity=np.ones(3), explored=np.zeros(3, bool))
        assert newer["A"].sessions == 2 and newer["B"].sessions == 1

    def test_new_image_restarts_and_draws_are_recorded_held_or_cleared(self):
        sticky = StickyPeriod(sessions=5)
        states = {"A": st("A1", draw_at=1.0, draw_sessions=1, p=0.4, explored=True),
                  "B": st("B1", draw_at=1.0, draw_sessions=9, p=0.4)}
        p = plan(StabilityRules(), states, sticky=sticky, session=2, now=100.0)
        assert p.draw_held.tolist() == [True, False, False]
        new = next_states(p, StabilityRules(assume_seen=False), now=100.0, session_id=2,
                          title_ids=TITLES, shown_ids=["A1", "B2", "C1"],
                          drawn=np.array([False, False, True]), propensity=np.array([0.4, 1.0, 0.7]),
                          explored=np.array([True, False, True]))
        assert new["A"].draw_sessions == 2 and new["A"].draw_at == 1.0 and new["A"].draw_propensity == 0.4
        assert new["B"].image_id == "B2" and new["B"].sessions == 1 and not new["B"].seen
        assert not new["B"].has_draw
        assert new["C"].has_draw and new["C"].draw_propensity == 0.7 and new["C"].draw_explored


@pytest.mark.parametrize(
    ("field", "value"),
    [("churn", -0.1), ("max_changes", -1), ("dwell_sessions", 0), ("dwell_days", 0),
     ("min_gain", float("nan")), ("state_ttl_days", -1), ("unknown", 1)],
)
def test_bad_rules_name_the_field(field, value):
    with pytest.raises(ValidationError, match=field):
        StabilityRules(**{field: value})


def test_a_page_object_gives_the_plan_its_four_arrays_give():
    from slate.page import Page, PageRequest

    page = Page.of(PageRequest(member_id=1, session_id=2, titles=[
        {"title_id": t, "image_ids": list(ids), "row": 0, "col": c, "locked": t == "B"}
        for c, (t, ids) in enumerate(zip(TITLES, IMAGES, strict=True))]))
    states = {"A": st("A1", sessions=1), "B": st("B2"), "C": st("gone")}
    args = {"now": 3600.0, "session_id": 2, "states": states, "sticky": StickyPeriod(sessions=2)}
    rules = StabilityRules(dwell_sessions=2)
    by_page = plan_page(rules, page, **args)
    by_arrays = plan_page(rules, title_ids=TITLES, image_ids=IMAGES, candidates=CAND,
                          locked=np.array([False, True, False]), **args)
    assert reasons(by_page) == reasons(by_arrays) == ["DWELL", "LOCKED", "RETIRED"]
    for name in ("previous", "held", "solver_candidates", "explore_candidates", "draw_propensity"):
        assert np.array_equal(getattr(by_page, name), getattr(by_arrays, name)), name
    with pytest.raises(TypeError, match="a page or its arrays, not both"):
        plan_page(rules, page, title_ids=TITLES, **args)
    with pytest.raises(TypeError, match="missing required keyword argument 'image_ids'"):
        plan_page(rules, title_ids=TITLES, **args)
    with pytest.raises(TypeError, match="unexpected keyword argument 'titles'"):
        plan_page(rules, titles=TITLES, **args)
