"""Page-aware doubly robust estimation, the control variates (optimal additive baselines) and
the separation from the logging policy. Seeded; tolerances stated next to each assertion."""

from __future__ import annotations

import numpy as np
import pytest

from slate.replay import ActionDistribution, ReplayData, get_estimator
from slate.replay.page_dr import page_folds
from tests.replay.test_world import World


@pytest.fixture(scope="module")
def world():
    return World(seed=41, n_titles=24, n_images=4, n_features=2, n_slots=6, page_effect=1.5)


def _groups(w):
    return w.style[np.arange(w.n_titles * w.n_images) % w.n_images]


def _data(w, choose, pages=1000, seed=0):
    s = w.simulate(pages, "uniform", seed=seed)
    return ReplayData.build(w.to_log(s), w.target(choose, s))


def test_page_aware_dr_and_cv_are_unbiased_with_page_effects(world):
    # 40 seeded logs: the means are within 3 standard errors (of the mean) of the truth.
    choose = world.greedy(noise=0.6, seed=2)
    truth = world.truth(choose, n_pages=200_000)
    g = _groups(world)
    ests = {"dr": get_estimator("page-aware-dr", groups=g),
            "cv": get_estimator("page-aware", groups=g, baseline=True)}
    vals = {k: [] for k in ests}
    for r in range(40):
        data = _data(world, choose, 500, seed=100 + r)
        for k, e in ests.items():
            vals[k].append(e.estimate(data, n_bootstrap=0).value)
    for k, v in vals.items():
        v = np.asarray(v)
        assert abs(v.mean() - truth) < 3 * v.std(ddof=1) / np.sqrt(len(v)) + 1e-3, k


def test_page_aware_dr_refits_its_model_in_the_bootstrap_and_stays_paired(world):
    data = _data(world, world.greedy(noise=0.6, seed=2), 300)
    e, reps = get_estimator("page-aware-dr", groups=_groups(world)).estimate_with_replicates(
        data, n_bootstrap=50, seed=3)
    assert e.interval_method == "bootstrap, model refit" and e.status == "ok"
    assert np.isfinite(reps).all() and e.interval[0] < e.value < e.interval[1]
    assert set(np.unique(page_folds(data))) == {0, 1}


def test_baseline_is_exact_on_policy_and_reduces_to_ips_with_constant_weights(world):
    s = world.simulate(300, "uniform", seed=5)
    log = world.to_log(s)
    on = ReplayData.build(log, ActionDistribution(prob_logged=log.propensity.copy(),
                                                  probs=log.propensities))
    mean = float(log.reward.mean())
    for name, kw in (("neighbourhood", {}), ("pi", {}), ("page-aware", {"groups": _groups(world)})):
        e = get_estimator(name, baseline=True, **kw).estimate(on, n_bootstrap=0)
        assert e.value == pytest.approx(mean, abs=1e-12), name


def test_baseline_lowers_the_spread_of_unnormalised_neighbourhood(world):
    choose = world.greedy(noise=0.6, seed=2)
    plain, cv = [], []
    for r in range(20):
        data = _data(world, choose, 300, seed=200 + r)
        plain.append(get_estimator("neighbourhood").estimate(data, n_bootstrap=0).value)
        cv.append(get_estimator("neighbourhood", baseline=True).estimate(data, n_bootstrap=0).value)
    assert np.std(cv) < np.std(plain)


def test_estimate_says_whether_it_separates_the_target_from_logging(world):
    s = world.simulate(300, "uniform", seed=7)
    log = world.to_log(s)
    on = ReplayData.build(log, ActionDistribution(prob_logged=log.propensity.copy(),
                                                  probs=log.propensities))
    e = get_estimator("snips").estimate(on, n_bootstrap=100)
    assert e.difference == pytest.approx(0.0, abs=1e-12) and not e.separated
    assert e.separation.startswith("not separated") and e.logged_value == pytest.approx(
        float(log.reward.mean()))
    better = ReplayData.build(log, world.target(world.greedy(noise=0.0, seed=2), s))
    e = get_estimator("page-aware", groups=_groups(world)).estimate(better, n_bootstrap=100)
    lo, hi = e.difference_interval
    assert e.separated and lo > 0 and e.separation.startswith("separated: above")
    assert e.to_dict()["difference_interval"] == [lo, hi]
