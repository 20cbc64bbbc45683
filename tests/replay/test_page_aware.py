"""The page-aware estimator (marginalised IPS over the neighbour-similarity statistic) and exact
joint propensities under capped exploration.

Statistical checks are seeded; tolerances are stated next to each assertion.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slate.replay import ActionDistribution, ReplayData, get_estimator
from slate.replay.estimators import poisson_binomial_at
from slate.replay.joint import ExplorationColumns, set_propensity
from slate.replay.policy import InvalidReplayInputError
from slate.serve.exploration import StickyEpsilon, joint_choice_probability
from tests.replay.test_world import Sample, World


# ---------------------------------------------------------------- exact joint propensities
def brute_force(n, eps, cap, members, A, exploit, chosen):
    """Enumerate every coin outcome and every kept subset of the capped draw."""
    total = 0.0
    for coins in itertools.product((0, 1), repeat=n):
        p = math.prod(eps if c else 1 - eps for c in coins)
        up = [i for i, c in enumerate(coins) if c]
        kept = list(itertools.combinations(up, cap)) if cap is not None and len(up) > cap else [up]
        for K in kept:
            term = 1.0
            for t, a, e, c in zip(members, A, exploit, chosen, strict=True):
                term *= 1.0 / a if t in K else float(c == e)
            total += p / len(kept) * term
    return total


@st.composite
def draws(draw):
    n = draw(st.integers(1, 6))
    s = draw(st.integers(1, min(n, 4)))
    A = draw(st.lists(st.integers(2, 4), min_size=s, max_size=s))
    exploit = [draw(st.integers(0, a - 1)) for a in A]
    chosen = [draw(st.integers(0, a - 1)) for a in A]
    cap = draw(st.one_of(st.none(), st.integers(0, n)))
    eps = draw(st.floats(0.0, 1.0))
    members = sorted(draw(st.permutations(range(n)))[:s])
    return n, eps, cap, members, A, exploit, chosen


@settings(max_examples=150, deadline=None)
@given(draws())
def test_joint_choice_probability_matches_brute_force(case):
    n, eps, cap, members, A, exploit, chosen = case
    got = joint_choice_probability(n, eps, cap, A, exploit, chosen)
    assert got == pytest.approx(brute_force(n, eps, cap, members, A, exploit, chosen), abs=1e-12)


def test_joint_choice_probability_matches_sticky_epsilon_draws():
    """Monte Carlo over 20,000 real draws (8 titles, rate 0.5, cap 3, 4 images): the frequency of
    each joint outcome is within 4.5 binomial sd of the exact probability."""
    explore = StickyEpsilon(0.5, max_explored=3, seed=11)
    n, N = 8, 20_000
    exploit = np.zeros(n, np.int64)
    shown = np.array([explore.draw(exploit, np.ones((n, 4), bool), np.ones(n, bool),
                                   max_changes=None, key=(i,)).shown for i in range(N)])
    for chosen in ([1, 2], [0, 0], [0, 3], [1, 1, 1]):
        k = len(chosen)
        freq = np.mean(np.all(shown[:, :k] == chosen, axis=1))
        p = joint_choice_probability(n, 0.5, 3, [4] * k, [0] * k, chosen)
        assert abs(freq - p) < 4.5 * np.sqrt(p * (1 - p) / N), (chosen, freq, p)
    q_prod = np.prod([np.mean(shown[:, j] == 1) for j in range(2)])
    assert joint_choice_probability(n, 0.5, 3, [4, 4], [0, 0], [1, 1]) < 0.85 * q_prod


def capped_world_log(n_pages: int, seed: int):
    """Pages of 6 titles in a row, all in a capped draw (rate 0.5, cap 3, 4 images, optimiser's
    choice image 0). P(play) = 0.2 + 0.3 [own image = 1] - 0.1 (neighbours showing image 1)."""
    world = World(n_titles=6, n_images=4, n_features=1, n_slots=6, seed=seed)
    explore = StickyEpsilon(0.5, max_explored=3, seed=seed)
    L, K = 6, 4
    draws = [explore.draw(np.zeros(L, np.int64), np.ones((L, K), bool), np.ones(L, bool),
                          max_changes=None, key=(p,)) for p in range(n_pages)]
    shown = np.array([d.shown for d in draws])
    mu = np.array([d.propensities for d in draws])
    one = (shown == 1).astype(float)
    nb = np.zeros_like(one)
    nb[:, 1:] += one[:, :-1]
    nb[:, :-1] += one[:, 1:]
    prob = 0.2 + 0.3 * one - 0.1 * nb
    rng = np.random.default_rng(seed + 1)
    reward = (rng.random(prob.shape) < prob).astype(np.int64)
    titles = np.tile(np.arange(L), (n_pages, 1))
    s = Sample(np.zeros((n_pages, 1)), titles, mu, shown, reward, prob)
    log = world.to_log(s)
    n = log.n_rows
    cols = ExplorationColumns(np.ones(n, bool), np.zeros(n, bool), np.full(n, 0.5),
                              np.full(n, 3, np.int64), np.full(n, L, np.int64))
    target = ActionDistribution.deterministic(np.ones(n, np.int64), log.shown, K)
    return ReplayData.build(log, target), cols


def test_set_propensity_is_the_exact_joint_of_the_rows():
    data, cols = capped_world_log(50, seed=3)
    log = data.log
    sets = np.array([[0, 1, -1], [1, 2, 3]])
    got = set_propensity(log, cols, sets)
    for i, rows in enumerate(sets):
        rows = rows[rows >= 0]
        exp = joint_choice_probability(6, 0.5, 3, [4] * len(rows), [0] * len(rows),
                                       log.shown[rows].tolist())
        assert got[i] == pytest.approx(exp, rel=1e-12)


def test_set_propensity_of_one_row_is_its_logged_propensity():
    data, cols = capped_world_log(200, seed=9)
    one = set_propensity(data.log, cols, np.arange(data.n_rows)[:, None])
    assert np.allclose(one, data.log.propensity, rtol=1e-12)


def test_neighbourhood_with_exact_joint_propensities_is_unbiased_under_the_cap():
    """Truth if every title shows image 1: (4 * 0.3 + 2 * 0.4) / 6. Over 60 seeded logs of 1,500
    pages the exact-joint neighbourhood estimate is within 4 SE of it, and the product of the
    per-title propensities (wrong under the cap: 0.44x for three explored titles) is more than
    4 SE off."""
    truth = (4 * 0.3 + 2 * 0.4) / 6
    exact, product = [], []
    for r in range(60):
        data, cols = capped_world_log(1500, seed=100 + r)
        exact.append(get_estimator("neighbourhood", exploration=cols).estimate(
            data, n_bootstrap=0).value)
        product.append(get_estimator("neighbourhood").estimate(data, n_bootstrap=0).value)
    for values, unbiased in ((np.array(exact), True), (np.array(product), False)):
        z = (values.mean() - truth) / (values.std(ddof=1) / np.sqrt(len(values)))
        assert (abs(z) < 4) == unbiased, (unbiased, values.mean(), truth, z)


def test_group_count_propensity_sums_the_exact_joint_over_neighbour_images():
    """P(own image, S = s) under the cap equals the sum of the exact joint probability over
    every neighbour image configuration with that count (enumerated, 4 ** 2 per row)."""
    from slate.replay.estimators import neighbour_rows
    from slate.replay.joint import group_count_propensity

    data, cols = capped_world_log(30, seed=5)
    log = data.log
    code = (np.arange(6 * 4) % 4 == 1).astype(np.int64)       # group: image 1 or not
    cand_group = code[log.candidates]
    own = code[log.image]
    nb = neighbour_rows(log, [(0, -1), (0, 1)])
    s = ((nb >= 0) & (own[np.maximum(nb, 0)] == own[:, None])).sum(axis=1)
    got = group_count_propensity(log, cols, nb, cand_group, own, s)
    for i in (0, 1, 2, 5, 7, 13):
        members = [int(m) for m in nb[i] if m >= 0]
        exp = 0.0
        for images in itertools.product(range(4), repeat=len(members)):
            if sum(code[log.candidates[m, k]] == own[i] for m, k in zip(members, images, strict=True)) == s[i]:
                exp += joint_choice_probability(6, 0.5, 3, [4] * (1 + len(members)),
                                                [0] * (1 + len(members)), [int(log.shown[i]), *images])
        assert got[i] == pytest.approx(exp, rel=1e-10), i


def test_page_aware_with_exact_joint_propensities_is_unbiased_under_the_cap():
    """The capped world's reward depends on the neighbours only through how many show image 1,
    so page-aware with groups (image 1 or not) applies. Over 60 seeded logs of 1,500 pages its
    exact-joint form (unnormalised) is within 4 SE of the truth; the independent form is more
    than 4 SE off."""
    truth = (4 * 0.3 + 2 * 0.4) / 6
    groups = (np.arange(6 * 4) % 4 == 1).astype(np.int64)
    exact, product = [], []
    for r in range(60):
        data, cols = capped_world_log(1500, seed=100 + r)
        exact.append(get_estimator("page-aware", groups=groups, exploration=cols,
                                   self_normalized=False).estimate(data, n_bootstrap=0).value)
        product.append(get_estimator("page-aware", groups=groups, self_normalized=False)
                       .estimate(data, n_bootstrap=0).value)
    for values, unbiased in ((np.array(exact), True), (np.array(product), False)):
        z = (values.mean() - truth) / (values.std(ddof=1) / np.sqrt(len(values)))
        assert (abs(z) < 4) == unbiased, (unbiased, values.mean(), truth, z)


def test_exploration_columns_need_the_decision_columns():
    import pyarrow as pa

    with pytest.raises(InvalidReplayInputError, match="explore_cap"):
        ExplorationColumns.from_table(pa.table({
            "page_id": [1], "explore_eligible": [True], "explore_held": [False],
            "explore_rate": [0.1]}))


# ---------------------------------------------------------------- page-aware estimator
@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.floats(0, 1), min_size=3, max_size=3), min_size=1, max_size=4))
def test_poisson_binomial_matches_enumeration(ps):
    p = np.array(ps)
    for s in range(4):
        exp = [sum(math.prod(pi if b else 1 - pi for pi, b in zip(row, bits, strict=True))
                   for bits in itertools.product((0, 1), repeat=3) if sum(bits) == s) for row in ps]
        got = poisson_binomial_at(p, np.full(len(ps), s))
        assert np.allclose(got, exp, atol=1e-12)


def page_world(effect: float) -> World:
    return World(seed=41, n_titles=24, n_images=4, n_features=2, n_slots=6, page_effect=effect)


def style_groups(world: World) -> np.ndarray:
    return world.style[np.arange(world.n_titles * world.n_images) % world.n_images]


def same_style(x, titles):
    return np.zeros(titles.shape, dtype=np.int64)


def test_page_aware_with_one_group_is_snips():
    """Every image in one group: the neighbour statistic is certain, the weight is per-title."""
    world = page_world(1.5)
    s = world.simulate(300, "uniform", seed=1)
    data = ReplayData.build(world.to_log(s), world.target(world.greedy(0.6, 2), s))
    one = np.zeros(world.n_titles * world.n_images, np.int64)
    a = get_estimator("page-aware", groups=one).estimate(data, n_bootstrap=0)
    b = get_estimator("snips").estimate(data, n_bootstrap=0)
    assert a.value == pytest.approx(b.value, rel=1e-12)
    assert "visual group" in a.assumption and "own image" in b.assumption


def test_page_aware_bad_input_names_the_field():
    world = page_world(1.5)
    s = world.simulate(20, "uniform", seed=1)
    data = ReplayData.build(world.to_log(s), world.target(same_style, s))
    with pytest.raises(InvalidReplayInputError, match="'groups'"):
        get_estimator("page-aware").estimate(data, n_bootstrap=0)
    with pytest.raises(InvalidReplayInputError, match="'groups'"):
        get_estimator("page-aware", groups=np.zeros(3, np.int64)).estimate(data, n_bootstrap=0)
    by_id = dict(zip(data.log.image_ids, style_groups(world).tolist(), strict=True))
    e1 = get_estimator("page-aware", groups=by_id).estimate(data, n_bootstrap=0)
    e2 = get_estimator("page-aware", groups=style_groups(world)).estimate(data, n_bootstrap=0)
    assert e1.value == e2.value
    with pytest.raises(InvalidReplayInputError, match="'groups' mapping"):
        get_estimator("page-aware", groups={}).estimate(data, n_bootstrap=0)


def test_page_aware_is_unbiased_with_page_effects_and_tighter_than_neighbourhood():
    """Same-style target on a world with page effects, 50 seeded uniform logs of 1,000 pages:
    the page-aware mean is within 3 SE of the value if deployed, its spread is under 0.6x the
    neighbourhood estimator's (measured ~0.5x) and under 1.6x per-title SNIPS's (~1.4x), and
    its 95% intervals cover the truth at >= 0.84 (50 repetitions: the coverage's sd is ~0.03)."""
    world = page_world(1.5)
    truth = world.truth(same_style, n_pages=200_000)
    groups = style_groups(world)
    reps = 50
    out = {k: np.empty((reps, 3)) for k in ("snips", "neighbourhood", "page-aware")}
    for r in range(reps):
        s = world.simulate(1000, "uniform", seed=500 + r)
        data = ReplayData.build(world.to_log(s), world.target(same_style, s))
        for k in out:
            opts = {"groups": groups} if k == "page-aware" else {}
            e = get_estimator(k, **opts).estimate(data, n_bootstrap=100, seed=r)
            out[k][r] = e.value, *e.interval
    v, lo, hi = out["page-aware"].T
    sd = {k: out[k][:, 0].std(ddof=1) for k in out}
    assert abs(v.mean() - truth) < 3 * sd["page-aware"] / np.sqrt(reps), (v.mean(), truth)
    assert sd["page-aware"] < 0.6 * sd["neighbourhood"], sd
    assert sd["page-aware"] < 1.6 * sd["snips"], sd
    assert np.mean((lo <= truth) & (truth <= hi)) >= 0.84
