"""Statistical properties of the replay estimators on a logged-bandit world with known truth.

Fixed seeds throughout; tolerances are stated next to each assertion. Over R seeded
repetitions, an unbiased estimator's mean lies within 4 standard errors of the truth
(``sd / sqrt(R)``; a false alarm about once in 16,000 runs per check), and its 95% bootstrap
intervals cover the truth at a rate within [0.90, 0.99] (the binomial band around 0.95 for
R = 200 is about ±0.03 at 2 sd).
"""

from __future__ import annotations

import numpy as np
import pytest

from slate.replay import ReplayData, get_estimator, take_rate_model
from tests.replay.test_world import World

R = 200
N_BOOT = 200


def run(world: World, logging: str, names: list[str], n_pages: int, reps: int, seed: int,
        choose, true_q: bool = False):
    values = {k: np.empty(reps) for k in names}
    lo = {k: np.empty(reps) for k in names}
    hi = {k: np.empty(reps) for k in names}
    for r in range(reps):
        s = world.simulate(n_pages, logging, seed=seed + r)
        log = world.to_log(s)
        q = world.true_q(s) if true_q else take_rate_model(log, seed=r)
        data = ReplayData.build(log, world.target(choose, s), q)
        for k in names:
            e = get_estimator(k).estimate(data, n_bootstrap=N_BOOT, seed=r)
            values[k][r], lo[k][r], hi[k][r] = e.value, e.interval[0], e.interval[1]
    return values, lo, hi


@pytest.mark.parametrize("logging", ["uniform", "softmax"])
def test_unbiased_and_intervals_cover_at_nominal_rate(logging):
    world = World(seed=31, n_titles=10, n_images=4, n_features=3, n_slots=4)
    choose = world.greedy(noise=0.6, seed=2)
    truth = world.truth(choose)
    names = ["ips", "snips", "dr", "replay"]
    values, lo, hi = run(world, logging, names, 300, R, 1000, choose)
    dm_values, dm_lo, dm_hi = run(world, logging, ["dm"], 300, R, 1000, choose, true_q=True)
    values.update(dm_values)
    lo.update(dm_lo)
    hi.update(dm_hi)
    summary = {}
    for k in values:
        bias = values[k].mean() - truth
        se_mean = values[k].std(ddof=1) / np.sqrt(R)
        coverage = np.mean((lo[k] <= truth) & (truth <= hi[k]))
        summary[k] = (round(bias, 5), round(se_mean, 5), coverage)
        assert abs(bias) < 4 * se_mean, (k, summary[k])
        assert 0.90 <= coverage <= 0.99, (k, summary[k])
    print(logging, "truth", round(truth, 4), summary)


def test_dm_with_a_context_blind_model_is_biased_and_dr_repairs_it():
    # the take-rate model ignores the context; the target's choice depends on it
    world = World(seed=31, n_titles=10, n_images=4, n_features=3, n_slots=4)
    choose = world.greedy(noise=0.6, seed=2)
    truth = world.truth(choose)
    values, _, _ = run(world, "uniform", ["dm", "dr"], 300, 60, 5000, choose)
    dm_bias = values["dm"].mean() - truth
    dm_se = values["dm"].std(ddof=1) / np.sqrt(60)
    dr_bias = values["dr"].mean() - truth
    dr_se = values["dr"].std(ddof=1) / np.sqrt(60)
    assert abs(dm_bias) > 6 * dm_se  # clearly biased
    assert abs(dr_bias) < 4 * dr_se  # doubly robust: the propensities are right


def test_page_effects_bias_per_title_estimates_not_neighbourhood_ones():
    """Titles lose appeal next to a same-style image. A target that shows style-0 images
    everywhere is over-estimated by the per-title estimator (uniform logs mostly mix styles);
    the neighbourhood estimator matches the neighbours too and is unbiased."""
    world = World(seed=41, n_titles=8, n_images=3, n_features=2, n_slots=4, page_effect=1.5)

    def same_style(x, titles):
        return np.zeros(titles.shape, dtype=np.int64)

    truth = world.truth(same_style)
    reps = 100
    names = ["ips", "neighbourhood", "page"]
    values, lo, hi = run(world, "uniform", names, 2000, reps, 7000, same_style)
    bias = {k: values[k].mean() - truth for k in names}
    se = {k: values[k].std(ddof=1) / np.sqrt(reps) for k in names}
    coverage = {k: np.mean((lo[k] <= truth) & (truth <= hi[k])) for k in names}
    print("truth", round(truth, 4), "bias", bias, "se", se, "coverage", coverage)
    assert bias["ips"] > 8 * se["ips"]  # per-title: biased upwards, far beyond its noise
    assert abs(bias["neighbourhood"]) < 3 * se["neighbourhood"]
    assert abs(bias["page"]) < 4 * se["page"]
    # 100 repetitions: the coverage's own sd is ~0.022, so >= 0.87 is ~3 sd below 0.95
    assert coverage["neighbourhood"] >= 0.87 and coverage["ips"] < 0.5
