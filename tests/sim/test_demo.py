"""The bridge from the simulator to the bandits, and a small end-to-end run of the demo.

The full-size demo (2000 members, four weeks) on seeds 0-5 is run by
``python benchmarks/simulator.py --demo-seeds 6`` (about a minute per seed); here a small world
checks the whole path: logs written and read back, training, replay, truths, outputs.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from slate.bandit import HybridLinUCB, PageFeatures, TakeRateBandit
from slate.sim import initial_state, make_schedule, make_world, simulate
from slate.sim.demo import POLICIES, run_demo
from slate.sim.features import SimFeatures, bandit_scorer, predicted_mean
from slate.sim.policies import UniformRandomLogging


@pytest.fixture(scope="module")
def trained():
    world = make_world(n_members=150, n_titles=70, seed=2)
    sched = make_schedule(world, n_days=4, seed=0)
    run = simulate(sched, UniformRandomLogging(seed=0))
    features = SimFeatures(world)
    xs, arms, rewards = [], [], []
    for s, batch in run.batches():
        images = run.images[s].astype(np.int64)
        xs.append(features.shown(batch, images))
        arms.append(batch.global_images(images).ravel())
        rewards.append(run.reward[s].ravel().astype(float))
    x, a, r = np.concatenate(xs), np.concatenate(arms), np.concatenate(rewards)
    shared = features.columns("member_title", "image", "interaction", "context_x_aesthetic")
    hybrid = HybridLinUCB(alpha=0.5, shared_columns=shared, arm_columns=features.columns("bias"), seed=0)
    hybrid.fit(x, a, r)
    take_rate = TakeRateBandit(seed=0).fit(None, a, r)
    return world, sched, features, hybrid, take_rate


def test_features_use_observable_tags(trained):
    world, sched, features, _, _ = trained
    batch = sched.batch(0, initial_state(world)).take([0])
    x = features.candidates(batch)
    names = features.feature_names
    assert x.shape[-1] == features.n_features == len(names)
    # a theme image carries its theme; the aesthetic one-hot is set once per real candidate
    aest = [i for i, n in enumerate(names) if n.startswith("aesthetic:")]
    real = features.arms(batch) >= 0
    assert np.array_equal(x[..., aest].sum(axis=-1)[real], np.ones(real.sum()))
    assert (x[~real] == 0).all()
    # flat and padded encodings agree
    flat, cell, local, arms = features.candidates_flat(batch)
    np.testing.assert_allclose(flat, x.reshape(-1, world.max_images if x.shape[1] == world.max_images
                                               else x.shape[1], x.shape[2])[cell, local])  # fmt: skip
    assert np.array_equal(arms, features.arms(batch)[cell, local])


@pytest.mark.parametrize("which", ["hybrid", "take_rate"])
def test_fast_mean_equals_the_policys_own_score(trained, which):
    world, sched, features, hybrid, take_rate = trained
    policy = hybrid if which == "hybrid" else take_rate
    batch = sched.batch(1, initial_state(world)).take([0, 1])
    x, arms = features.candidates(batch), features.arms(batch)
    fast = predicted_mean(policy, x, arms)
    slow = policy.score(PageFeatures.from_arrays(x, arms, arms >= 0), propensities=False).mean
    real = arms >= 0
    np.testing.assert_allclose(fast[real], slow[real], atol=1e-6)
    scores = bandit_scorer(policy, features)(batch)
    np.testing.assert_allclose(scores.reshape(-1, world.max_images)[:, : arms.shape[1]][real], slow[real], atol=1e-6)
    again = bandit_scorer(policy, features, fast=False)(batch)
    np.testing.assert_allclose(again, scores, atol=1e-6)


def test_demo_end_to_end_on_a_small_world(tmp_path):
    report = run_demo(
        tmp_path / "demo", seed=0, progress=False, n_members=300, n_titles=80, n_days=8,
        heldout_days=2, n_bootstrap=200,
    )  # fmt: skip
    assert [r.policy for r in report.rows] == list(POLICIES)
    for name in ("csv", "markdown", "json", "png", "train_log", "heldout_log"):
        assert report.files[name].exists() and report.files[name].stat().st_size > 0, name
    data = json.loads(report.files["json"].read_text())
    assert [r["policy"] for r in data["rows"]] == list(POLICIES)
    text = str(report)
    assert "Good Will Hunting" in text and "contextual + page optimizer" in text
    for r in report.rows:
        assert r.low <= r.replay <= r.high
        assert r.page_aware_low <= r.page_aware <= r.page_aware_high  # page-aware row computed
        assert 0.0 < r.truth_logged < 0.5 and 0.0 < r.truth_deployed < 0.5
        assert 0.0 <= r.churn <= 1.0 and 0.0 < r.diversity < 1.0
    # random's truth on the logged pages is the logged policy's own expected value
    assert report.row("random").truth_logged == pytest.approx(report.info["logged_take_fraction"], rel=0.02)
    # the page optimizer makes deployed pages more diverse than the same scores' argmax
    assert report.row("contextual + page optimizer").diversity > report.row("contextual bandit").diversity
    # the Figure 3 example: each profile gets the image of its taste
    comedy, romance = report.example
    assert comedy.chosen.endswith("robin-williams") and comedy.score_comedian > comedy.score_couple
    assert romance.chosen.endswith("couple") and romance.score_couple > romance.score_comedian
    # the truth ranks the policies as the demo's table should (replay on a world this small is
    # too noisy to rank them reliably; the full-size ranking is checked by the benchmark)
    truths = [report.row(p).truth_logged for p in POLICIES[:3]]
    assert truths[0] < truths[1] < truths[2]
