"""compose() in the simulated world (slate.sim): stability rules cut churn at a measured cost.

The same oracle (true, context-dependent) scores drive an unconstrained per-title argmax and
compose() with dwell and hysteresis; the simulator reports each policy's true take fraction and
churn (share of impressions with a previous image whose image changed) on the same sessions.
"""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest

from slate.serve import ComposeConfig, Composer
from slate.sim import ArgmaxPolicy, PageBatch, World, make_schedule, make_world, oracle_scorer, simulate
from slate.stability import InMemoryStore, StabilityRules


class ComposePolicy:
    """A simulator policy that serves every page of a batch through compose()."""

    name = "compose"

    def __init__(self, world: World, rules: StabilityRules) -> None:
        self.world = world
        self.scorer = oracle_scorer()
        self.page_scores: np.ndarray | None = None
        self.composer = Composer(
            lambda request: self.page_scores[:, : request.n_images],  # type: ignore[index]
            InMemoryStore(),
            config=ComposeConfig(solver="independent", diversity=0.0, stability=rules, solver_time_ms=1000.0,
                                 scoring_budget_ms=1000.0, store_budget_ms=1000.0),
        )
        w = world
        self.images = [list(w.image_ids[w.image_offset[t]: w.image_offset[t] + w.n_images[t]])
                       for t in range(w.n_titles)]
        self.local = {image: k for ids in self.images for k, image in enumerate(ids)}

    def __call__(self, batch: PageBatch) -> np.ndarray:
        w = self.world
        scores = self.scorer(batch)
        out = np.empty(batch.titles.shape, dtype=np.int64)
        for b in range(batch.n_pages):
            self.page_scores = scores[b]
            request = {
                "member_id": int(w.member_ids[batch.member[b]]),
                "session_id": int(batch.session_id[b]),
                "timestamp": datetime.fromtimestamp(batch.timestamp[b] / 1e6, tz=timezone.utc),
                "titles": [{"title_id": w.title_ids[t], "image_ids": self.images[t], "row": int(w.slot_rows[s]),
                            "col": int(w.slot_cols[s])} for s, t in enumerate(batch.titles[b].tolist())],
            }
            decision = self.composer.compose(request)
            assert decision.status == "ok", decision.fault_details
            out[b] = [self.local[i] for i in decision.image_ids]
        return out


@pytest.fixture(scope="module")
def world_and_schedule():
    world = make_world(n_members=40, n_titles=80, seed=0)
    return world, make_schedule(world, n_days=10, seed=1)


def test_compose_without_rules_is_the_argmax_policy(world_and_schedule):
    world, schedule = world_and_schedule
    argmax = simulate(schedule, ArgmaxPolicy(oracle_scorer())).value()
    free = simulate(schedule, ComposePolicy(world, StabilityRules(churn=0.0))).value()
    assert free.take_fraction == pytest.approx(argmax.take_fraction, abs=1e-12)
    assert free.churn == pytest.approx(argmax.churn, abs=1e-12)
    assert argmax.churn > 0.05  # context moves the argmax: there is churn to cut


def test_dwell_and_hysteresis_cut_churn_at_least_5x(world_and_schedule):
    world, schedule = world_and_schedule
    argmax = simulate(schedule, ArgmaxPolicy(oracle_scorer())).value()
    stable = simulate(
        schedule, ComposePolicy(world, StabilityRules(dwell_sessions=3, dwell_days=7, min_gain=0.01))
    ).value()
    ratio = argmax.churn / max(stable.churn, 1e-12)
    cost = (argmax.take_fraction - stable.take_fraction) / argmax.take_fraction
    print(f"churn {argmax.churn:.4f} -> {stable.churn:.4f} ({ratio:.1f}x less); take fraction "
          f"{argmax.take_fraction:.5f} -> {stable.take_fraction:.5f} ({cost:+.2%} cost)")
    assert ratio >= 5.0
    assert cost < 0.05  # stability costs little true take fraction here (measured, reported above)
