"""DM's and DR's intervals with the take-rate model refitted in every bootstrap replicate.

Exactness first (a vectorised replicate equals refitting the model by brute force on the
reweighted pages; the delta-method standard error equals the one from a numerical gradient),
then a statistical check on the world of ``tests/replay/test_world.py`` with fixed seeds: over
R = 200 seeded repetitions, the 95% interval of DM with the model refitted covers the truth at a
rate within [0.90, 0.99] where the model is unbiased (the binomial band around 0.95 for R = 200
is about ±0.03 at 2 sd; the extra room below is for the bootstrap's own error), while DM's
fixed-model interval covers it far less often, and refitting widens the intervals where the
model is sparse (few impressions per image).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from slate.logs.parquet import example_table
from slate.replay import InvalidReplayInputError, ReplayData, evaluate, get_estimator
from slate.replay.estimators import LinearModelTerms
from slate.replay.reward_model import TakeRateFit
from tests.replay.test_world import World

R = 200
N_BOOT = 200


def fixed_choice(world: World, seed: int):
    """A context-free deterministic target: one image per title. The take-rate model (blind to
    the context) is then unbiased for what DM needs, up to its shrinkage."""
    pick = np.random.default_rng(seed).integers(0, world.n_images, world.n_titles)
    return lambda x, titles: pick[titles]


@pytest.fixture(scope="module")
def case():
    world = World(seed=21, n_titles=8, n_images=3, n_features=2, n_slots=3)
    s = world.simulate(60, "softmax", seed=22)
    log = world.to_log(s)
    target = world.target(world.greedy(noise=0.5, seed=3), s)
    return world, s, log, target


def brute_force_take_rate(log, fold, weights, a):
    """The take-rate model by loops: each candidate's weighted plays and impressions on the
    other folds' rows, shrunk towards its title's rate there."""
    n, k_max = log.candidates.shape
    F = int(fold.max()) + 1
    cw = weights[log.page_index]
    overall = (cw * log.reward).sum() / cw.sum()
    q = np.zeros((n, k_max))
    for i in range(n):
        train = [j for j in range(n) if F == 1 or fold[j] != fold[i]]
        tv = sum(cw[j] for j in train if log.title[j] == log.title[i])
        tp = sum(cw[j] * log.reward[j] for j in train if log.title[j] == log.title[i])
        rate = tp / tv if tv > 0 else overall
        for k in range(k_max):
            m = log.candidates[i, k]
            if m < 0:
                continue
            views = sum(cw[j] for j in train if log.image[j] == m)
            plays = sum(cw[j] * log.reward[j] for j in train if log.image[j] == m)
            q[i, k] = (plays + a * rate) / (views + a) if views + a > 0 else rate
    return q


@pytest.mark.parametrize("n_folds, a", [(1, 1.0), (2, 1.0), (3, 0.0)])
def test_reweighted_take_rate_model_equals_brute_force(case, n_folds, a):
    _, _, log, _ = case
    fit = TakeRateFit.from_log(log, n_folds=n_folds, prior_strength=a, seed=4)
    rng = np.random.default_rng(n_folds)
    weights = np.bincount(rng.integers(0, log.n_pages, log.n_pages), minlength=log.n_pages)
    weights = weights.astype(float)
    assert np.allclose(fit.predict(page_weights=weights),
                       brute_force_take_rate(log, fit.fold, weights, a), rtol=1e-12, atol=1e-15)
    assert np.allclose(fit.predict(), brute_force_take_rate(log, fit.fold, np.ones(log.n_pages), a),
                       rtol=1e-12, atol=1e-15)
    with pytest.raises(InvalidReplayInputError, match=r"'page_weights'.*got \(3,\)"):
        fit.predict(page_weights=np.ones(3))


@pytest.mark.parametrize("name", ["dm", "dr"])
@pytest.mark.parametrize("undecided", [False, True])
def test_replicates_equal_refitting_by_brute_force(case, name, undecided):
    _, _, log, target = case
    if undecided:  # the model is fitted on every row; the estimate uses the decided ones
        decided = np.random.default_rng(7).random(log.n_rows) < 0.8
        target = dataclasses.replace(target, decided=decided)
    fit = TakeRateFit.from_log(log, seed=5)
    data = ReplayData.build(log, target, fit)
    est = get_estimator(name)
    terms = LinearModelTerms.build(data, *est.model_terms(data))
    point = est.estimate(data, n_bootstrap=0)
    assert terms.values(terms.totals()[None])[0] == pytest.approx(point.value, rel=1e-12)
    rng = np.random.default_rng(8)
    for _ in range(3):
        counts = np.bincount(rng.integers(0, log.n_pages, log.n_pages), minlength=log.n_pages)
        counts = counts.astype(float)
        refitted = ReplayData.build(log, target, fit.predict(page_weights=counts))
        c = est.contributions(refitted, 0)
        # page sums of the decided rows, weighted by the counts of their pages in the full log
        page = log.page_index[data.fit_rows]
        U = np.bincount(page, c.u, log.n_pages)
        V = np.bincount(page, c.v, log.n_pages)
        brute = counts @ U / (counts @ V)
        fast = terms.values(np.asarray(terms.H.T @ counts)[None])[0]
        assert fast == pytest.approx(brute, rel=1e-12)
    # the delta-method standard error: the same with a numerical gradient of the totals
    T = terms.totals()
    grad = np.empty_like(T)
    for j in range(len(T)):
        step = 1e-6 * max(1.0, abs(T[j]))
        up, down = T.copy(), T.copy()
        up[j] += step
        down[j] -= step
        grad[j] = (terms.values(up[None])[0] - terms.values(down[None])[0]) / (2 * step)
    phi = terms.H @ grad
    P = len(phi)
    numerical = np.sqrt(P / (P - 1) * np.sum((phi - phi.mean()) ** 2))
    assert point.se == pytest.approx(numerical, rel=1e-5)
    assert point.interval_method == "normal, model delta method"


def test_interval_method_says_whether_the_model_is_refitted():
    table = example_table()
    default = evaluate(table, {"probs": np.full((4, 2), 0.5)}, ["dm", "dr", "ips"], n_bootstrap=20)
    assert default.estimates["dm"].interval_method == "bootstrap, model refit"
    assert default.estimates["dr"].interval_method == "bootstrap, model refit"
    assert default.estimates["ips"].interval_method == "bootstrap"
    assert default.options["refit_reward_model"] is True
    user = evaluate(table, {"probs": np.full((4, 2), 0.5)}, ["dm", "dr"], n_bootstrap=20,
                    reward_model=np.full((4, 2), 0.3))
    assert {e.interval_method for e in user.estimates.values()} == {"bootstrap, model fixed"}
    held = evaluate(table, {"probs": np.full((4, 2), 0.5)}, "dm", n_bootstrap=0,
                    refit_reward_model=False)
    assert held.estimate.interval_method == "normal, model fixed"
    assert held.estimate.value == default.estimates["dm"].value  # the same model, the same value


def test_a_take_rate_fit_of_another_log_is_refused(case):
    world, _, log, target = case
    other = world.to_log(world.simulate(30, "uniform", seed=1))
    with pytest.raises(InvalidReplayInputError, match="fitted on the log being evaluated"):
        ReplayData.build(log, target, TakeRateFit.from_log(other))
    with pytest.raises(InvalidReplayInputError, match="TakeRateFit must be fitted on the evaluated log"):
        evaluate(log, target, "dm", reward_model=TakeRateFit.from_log(other))
    mine = evaluate(log, target, "dm", n_bootstrap=0, reward_model=TakeRateFit.from_log(log, seed=0))
    assert mine.estimate.value == evaluate(log, target, "dm", n_bootstrap=0, seed=0).estimate.value


def run(world: World, n_pages: int, seed: int):
    """Fixed-model and refitted intervals of dm and dr over R seeded logs of a uniform logger."""
    choose = fixed_choice(world, 5)
    truth = world.truth(choose, n_pages=200_000)
    out: dict[tuple[str, str], list[tuple[float, float, float, float]]] = {}
    for r in range(R):
        s = world.simulate(n_pages, "uniform", seed=seed + r)
        log = world.to_log(s)
        fit = TakeRateFit.from_log(log, seed=r)
        target = world.target(choose, s)
        for mode, model in (("fixed", fit.predict()), ("refit", fit)):
            data = ReplayData.build(log, target, model)
            for name in ("dm", "dr"):
                e = get_estimator(name).estimate(data, n_bootstrap=N_BOOT, seed=r)
                out.setdefault((name, mode), []).append((e.value, e.se, *e.interval))
    arrays = {k: np.array(v) for k, v in out.items()}
    coverage = {k: float(np.mean((a[:, 2] <= truth) & (truth <= a[:, 3]))) for k, a in arrays.items()}
    width = {k: a[:, 3] - a[:, 2] for k, a in arrays.items()}
    return truth, arrays, coverage, width


def test_refitting_the_model_gives_dm_honest_coverage():
    # enough data: 400 pages x 4 titles of 10, 4 images each (40 impressions per image)
    world = World(seed=31, n_titles=10, n_images=4, n_features=3, n_slots=4)
    truth, arrays, coverage, width = run(world, 400, 1000)
    print("right-ish: truth", round(truth, 4), "coverage", coverage)
    dm = arrays[("dm", "refit")]
    sd = dm[:, 0].std(ddof=1)
    assert abs(dm[:, 0].mean() - truth) < 4 * sd / np.sqrt(R)  # the model is unbiased here
    assert 0.90 <= coverage[("dm", "refit")] <= 0.99
    assert coverage[("dm", "fixed")] < 0.5  # the fixed model's interval misses the model's error
    assert 0.90 <= coverage[("dr", "refit")] <= 0.99
    assert 0.90 <= coverage[("dr", "fixed")] <= 0.99  # right propensities: DR barely needs it
    # the delta-method standard error (model included) matches the spread over repetitions
    # within 20% (the sd of R = 200 values is itself known to about ±10% at 2 sd)
    assert dm[:, 1].mean() / sd == pytest.approx(1.0, abs=0.2)
    assert np.median(width[("dm", "refit")] / width[("dm", "fixed")]) > 3.0


def test_refitting_widens_the_intervals_where_the_model_is_sparse():
    # 150 pages x 4 titles of 60, 6 images each: under 2 impressions per image
    world = World(seed=32, n_titles=60, n_images=6, n_features=3, n_slots=4)
    truth, _, coverage, width = run(world, 150, 3000)
    ratio = {k: float(np.median(width[(k, "refit")] / width[(k, "fixed")])) for k in ("dm", "dr")}
    print("sparse: truth", round(truth, 4), "coverage", coverage, "width ratio", ratio)
    assert ratio["dm"] > 1.5
    assert ratio["dr"] > 1.02
    assert np.mean(width[("dm", "refit")] > width[("dm", "fixed")]) > 0.95
    assert coverage[("dm", "fixed")] < 0.8
    assert coverage[("dm", "refit")] >= 0.88
    assert coverage[("dr", "refit")] >= coverage[("dr", "fixed")]


def test_report_prints_the_titles_with_the_most_rows():
    world = World(seed=1, n_titles=14)
    s = world.simulate(300, "uniform", seed=2)
    log = world.to_log(s)
    report = evaluate(log, world.target(world.greedy(), s), ["snips", "dm"], n_bootstrap=20,
                      per_title=True, metrics=False)
    text = str(report)
    assert "per title (snips, normal intervals):" in text
    assert "per title (dm, normal intervals, reward model fixed):" in text
    assert text.count("... and 4 more titles (report.per_title)") == 2
    busiest = np.argsort(-report.per_title["snips"].n_rows, kind="stable")[:10]
    quietest = np.argsort(-report.per_title["snips"].n_rows, kind="stable")[10:]
    block = text.split("per title (snips")[1].split("per title (dm")[0]
    assert all(f"  {log.title_ids[i]} " in block for i in busiest)
    assert not any(f"  {log.title_ids[i]} " in block for i in quietest)
    assert "per title" not in str(evaluate(log, world.target(world.greedy(), s), "snips",
                                           n_bootstrap=0, metrics=False))


def test_clusters_of_pages_sum_their_rows_of_the_design(case):
    _, _, log, target = case
    data = ReplayData.build(log, target, TakeRateFit.from_log(log, seed=5))
    est = get_estimator("dm")
    pages = LinearModelTerms.build(data, *est.model_terms(data))
    clusters = np.arange(log.n_pages) // 3  # three pages per cluster
    grouped = LinearModelTerms.build(data, *est.model_terms(data), clusters=clusters)
    assert grouped.H.shape[0] == (log.n_pages + 2) // 3
    assert np.allclose(grouped.totals(), pages.totals(), rtol=1e-12)
    dense = pages.H.toarray()
    assert np.allclose(grouped.H.toarray()[1], dense[3:6].sum(axis=0))
    assert grouped.se() != pytest.approx(pages.se(), rel=1e-6)  # other units, another spread
