"""Scoring policies: propensities, agreement with textbook algorithms, learning, merging, persistence."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from slate.bandit import (
    EpsilonGreedy,
    HybridLinUCB,
    ImageFeaturePrior,
    LinearThompson,
    LinUCB,
    LogisticThompson,
    PageFeatures,
    PendingImpressions,
    ScoringPolicy,
    TakeRateBandit,
    UniformRandom,
    available_policies,
    load_policy,
    make_policy,
    save_policy,
)
from slate.bandit.synthetic import make_linear_stream, make_title_launch, run_stream

ALL = ["epsilon_greedy", "hybrid_linucb", "linear_ts", "linucb", "logistic_ts", "take_rate", "uniform"]


def _log(n: int = 600, d: int = 4, n_arms: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = np.c_[np.ones(n), rng.normal(size=(n, d - 1))]
    arms = rng.integers(0, n_arms, n)
    theta = rng.normal(0, 0.3, size=(n_arms, d))
    p = np.clip(0.3 + np.einsum("nd,nd->n", x, theta[arms]) * 0.3, 0.02, 0.98)
    rewards = (rng.random(n) < p).astype(float)
    return x, arms, rewards


def _page(n_rows: int = 3, n_images: int = 4, d: int = 4, seed: int = 1, pad: bool = True) -> PageFeatures:
    rng = np.random.default_rng(seed)
    x = np.concatenate([np.ones((n_rows, n_images, 1)), rng.normal(size=(n_rows, n_images, d - 1))], axis=2)
    arms = np.tile(np.arange(n_images), (n_rows, 1))
    if pad:
        arms[0, -1] = -1
    return PageFeatures.from_arrays(x, arms)


def _fitted(name: str, seed: int = 0, **params) -> ScoringPolicy:
    x, arms, rewards = _log(300)
    return make_policy(name, seed=seed, **params).fit(x, arms, rewards)


# ---------------------------------------------------------------------------- registry
def test_registry_lists_every_policy_and_each_satisfies_the_protocol():
    assert available_policies() == ALL
    for name in ALL:
        policy = make_policy(name)
        assert isinstance(policy, ScoringPolicy)
        assert policy.name == name


# ---------------------------------------------------------------------------- propensities
@given(
    n_rows=st.integers(1, 5),
    n_images=st.integers(1, 6),
    name=st.sampled_from(ALL),
    seed=st.integers(0, 2**16),
)
def test_propensities_sum_to_one_and_vanish_on_padding(n_rows, n_images, name, seed):
    rng = np.random.default_rng(seed)
    arms = np.tile(np.arange(n_images), (n_rows, 1))
    mask = rng.random((n_rows, n_images)) < 0.7
    mask[np.arange(n_rows), rng.integers(0, n_images, n_rows)] = True
    arms = np.where(mask, arms, -1)
    page = PageFeatures.from_arrays(rng.normal(size=(n_rows, n_images, 4)), arms)
    params = {"n_draws": 200} if name in ("linear_ts", "logistic_ts", "take_rate") else {}
    scores = _fitted(name, seed=seed, **params).score(page)
    assert scores.propensity is not None and scores.propensity_se is not None
    np.testing.assert_allclose(scores.propensity.sum(axis=1), 1.0, atol=1e-12)
    assert (scores.propensity[~mask] == 0).all() and (scores.propensity >= 0).all()
    assert mask[np.arange(n_rows), scores.choice].all()
    assert (scores.mean[~mask] == 0).all() and (scores.adjusted[~mask] == -np.inf).all()
    assert ((scores.mean >= 0) & (scores.mean <= 1)).all()
    if scores.exact:
        assert (scores.propensity_se == 0).all()


CHI_SQUARE_CASES = [
    ("uniform", {}),
    ("take_rate", {"n_draws": 200_000}),
    ("epsilon_greedy", {"epsilon": 0.3}),
    ("linear_ts", {"n_draws": 200_000, "noise": 1.0}),
    ("logistic_ts", {"n_draws": 200_000}),
    ("linucb", {}),  # fresh model: every bound ties, the tie-break must be uniform
    ("hybrid_linucb", {}),
]


@pytest.mark.parametrize(("name", "params"), CHI_SQUARE_CASES)
def test_observed_choice_frequencies_match_propensities(name, params):
    """Chi-square goodness of fit of 3000 seeded choices per row against the stated propensities."""
    page = _page()
    policy = make_policy(name, seed=11, **params)
    if name in ("linucb", "hybrid_linucb"):  # same features for every image: all bounds tie
        page = PageFeatures.from_arrays(page.x[:, 0, :], page.arms)
    else:
        x, arms, rewards = _log(60, seed=5)  # little data: genuinely random policies
        policy.fit(x, arms, rewards)
    reference = policy.score(page)
    assert reference.propensity is not None
    p = reference.propensity
    n_calls = 3000
    counts = np.zeros(p.shape)
    for _ in range(n_calls):
        c = policy.score(page, propensities=False).choice
        counts[np.arange(page.n_rows), c] += 1
    assert (counts[p == 0] == 0).all()
    support = p > 0
    chi2 = float((((counts - n_calls * p) ** 2)[support] / (n_calls * p[support])).sum())
    dof = int(support.sum() - page.n_rows)
    assert dof > 0, "the test page must give the policy a real choice"
    p_value = stats.chi2.sf(chi2, dof)
    assert p_value > 1e-3, f"{name}: chi2={chi2:.1f} on {dof} dof"
    if not reference.exact:
        np.testing.assert_allclose(reference.propensity_se, np.sqrt(p * (1 - p) / reference.n_draws))


def test_monte_carlo_propensities_of_two_gaussian_images_match_the_closed_form():
    """For two images, P(s1 > s2) = Phi((mu1 - mu2) / sqrt(s1^2 + s2^2)) (exact)."""
    x, arms, rewards = _log(200, seed=3)
    policy = LinearThompson(noise=0.8, n_draws=100_000, seed=0).fit(x, arms, rewards)
    page = PageFeatures.from_arrays(np.array([[1.0, 0.2, -0.1, 0.4]]), [[1, 3]])
    scores = policy.score(page)
    mu = page.context[0] @ policy.theta_[[1, 3]].T
    var = 0.8**2 * np.einsum("d,ade,e->a", page.context[0], policy.Ainv_[[1, 3]], page.context[0])
    exact = stats.norm.cdf((mu[0] - mu[1]) / np.sqrt(var.sum()))
    assert abs(scores.propensity[0, 0] - exact) < 4 * scores.propensity_se[0, 0] + 1e-9


# ---------------------------------------------------------------------------- textbook agreement
def _textbook_linucb(contexts, rewards_table, alpha, ridge):
    """Li et al. (2010), Algorithm 1, written out plainly (inverse recomputed every round)."""
    n_rounds, n_arms, d = contexts.shape
    A = [ridge * np.eye(d) for _ in range(n_arms)]
    b = [np.zeros(d) for _ in range(n_arms)]
    chosen, ucbs = [], []
    for t in range(n_rounds):
        p = np.empty(n_arms)
        for a in range(n_arms):
            Ainv = np.linalg.inv(A[a])
            theta = Ainv @ b[a]
            x = contexts[t, a]
            p[a] = theta @ x + alpha * np.sqrt(x @ Ainv @ x)
        a = int(np.argmax(p))
        r = rewards_table[t, a]
        A[a] += np.outer(contexts[t, a], contexts[t, a])
        b[a] += r * contexts[t, a]
        chosen.append(a)
        ucbs.append(p)
    return np.array(chosen), np.array(ucbs)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_linucb_agrees_with_textbook_algorithm(dtype):
    rng = np.random.default_rng(4)
    n_rounds, n_arms, d = 300, 4, 5
    contexts = rng.normal(size=(n_rounds, n_arms, d))
    rewards_table = (rng.random((n_rounds, n_arms)) < 0.4).astype(float)
    chosen_ref, ucb_ref = _textbook_linucb(contexts, rewards_table, alpha=0.7, ridge=1.5)
    policy = LinUCB(alpha=0.7, ridge=1.5, dtype=dtype, seed=0)
    arms = np.arange(n_arms)[None, :]
    tol = 1e-9 if dtype == "float64" else 2e-4
    for t in range(n_rounds):
        scores = policy.score(PageFeatures.from_arrays(contexts[t : t + 1], arms))
        np.testing.assert_allclose(scores.adjusted[0], ucb_ref[t], rtol=tol, atol=tol)
        a = int(scores.choice[0])
        if dtype == "float64":
            assert a == chosen_ref[t]
        a = int(chosen_ref[t])  # follow the textbook's path so both see the same data
        policy.update(contexts[t, a], a, rewards_table[t, a])
    # the batch fit on the same log gives the same model
    refit = LinUCB(alpha=0.7, ridge=1.5).fit(contexts[np.arange(n_rounds), chosen_ref], chosen_ref,
                                             rewards_table[np.arange(n_rounds), chosen_ref])
    np.testing.assert_allclose(refit.theta_[:n_arms], policy.theta_[:n_arms], atol=1e-10)
    np.testing.assert_allclose(refit.Ainv_[:n_arms], policy.Ainv_[:n_arms], atol=1e-10)


def test_hybrid_linucb_equals_ridge_on_the_joint_parameter_vector():
    """Block elimination (Li et al. 2010, Algorithm 2) is exact: compare with the joint solve."""
    rng = np.random.default_rng(2)
    n, d, n_arms, ridge = 400, 5, 3, 0.7
    x = rng.normal(size=(n, d))
    arms = rng.integers(0, n_arms, n)
    r = (rng.random(n) < 0.3).astype(float)
    zc, xc = [0, 1, 2], [2, 3, 4]
    half = n // 2
    policy = HybridLinUCB(alpha=0.0, ridge=ridge, shared_columns=zc, arm_columns=xc, seed=0)
    policy.fit(x[:half], arms[:half], r[:half]).update(x[half:], arms[half:], r[half:])

    def phi(row, a):
        out = np.zeros(len(zc) + n_arms * len(xc))
        out[: len(zc)] = row[zc]
        out[len(zc) + a * len(xc) : len(zc) + (a + 1) * len(xc)] = row[xc]
        return out

    Phi = np.array([phi(x[i], arms[i]) for i in range(n)])
    M = ridge * np.eye(Phi.shape[1]) + Phi.T @ Phi
    w = np.linalg.solve(M, Phi.T @ r)
    test = rng.normal(size=(2, n_arms, d))
    scores = policy.score(PageFeatures.from_arrays(test, np.tile(np.arange(n_arms), (2, 1))))
    for i in range(2):
        for a in range(n_arms):
            f = phi(test[i, a], a)
            assert scores.adjusted[i, a] == pytest.approx(f @ w, abs=1e-9)
            assert scores.uncertainty[i, a] == pytest.approx(np.sqrt(f @ np.linalg.solve(M, f)), abs=1e-9)


# ---------------------------------------------------------------------------- learning
@pytest.mark.parametrize("cls", [LinUCB, LinearThompson, EpsilonGreedy])
@pytest.mark.parametrize("forgetting", [1.0, 0.97])
def test_online_updates_equal_the_batch_fit(cls, forgetting):
    x, arms, rewards = _log(500)
    w = np.random.default_rng(0).uniform(0.5, 2.0, len(arms))
    batch = cls(forgetting=forgetting).fit(x, arms, rewards, sample_weight=w)
    online = cls(forgetting=forgetting)
    for i in range(len(arms)):
        online.update(x[i], int(arms[i]), float(rewards[i]), sample_weight=w[i : i + 1])
    minibatch = cls(forgetting=forgetting)
    for s in range(0, len(arms), 64):
        minibatch.update(x[s : s + 64], arms[s : s + 64], rewards[s : s + 64], w[s : s + 64])
    for other in (online, minibatch):
        np.testing.assert_allclose(other.A_[:5], batch.A_[:5], rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(other.theta_[:5], batch.theta_[:5], rtol=1e-8, atol=1e-9)
        np.testing.assert_allclose(other.Ainv_[:5], batch.Ainv_[:5], rtol=1e-8, atol=1e-10)
    # unweighted single impressions take the compiled fast path once an image is known
    batch = cls(forgetting=forgetting).fit(x, arms, rewards)
    fast = cls(forgetting=forgetting)
    for i in range(len(arms)):
        fast.update(x[i], arms[i], rewards[i])
    for other in (fast,):
        np.testing.assert_allclose(other.A_[:5], batch.A_[:5], rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(other.theta_[:5], batch.theta_[:5], rtol=1e-8, atol=1e-9)
        np.testing.assert_allclose(other.Ainv_[:5], batch.Ainv_[:5], rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize(
    "name", ["linucb", "linear_ts", "epsilon_greedy", "hybrid_linucb", "take_rate", "uniform"]
)
def test_merged_statistics_equal_a_single_fit(name):
    x, arms, rewards = _log(900)
    single = make_policy(name).fit(x, arms, rewards)
    parts = [make_policy(name).fit(x[idx], arms[idx], rewards[idx]) for idx in np.array_split(np.arange(900), 3)]
    merged = parts[0].merge(parts[1]).merge(parts[2])
    page = _page(d=4)
    a = single.score(page)
    b = merged.score(page)
    np.testing.assert_allclose(b.mean, a.mean, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(b.uncertainty, a.uncertainty, rtol=1e-10, atol=1e-12)
    for attr in ("A_", "b_", "successes_", "failures_", "Z_"):
        if hasattr(single, attr):
            np.testing.assert_allclose(getattr(merged, attr), getattr(single, attr), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["linucb", "take_rate"])
def test_merge_with_forgetting_treats_the_other_part_as_later(name):
    x, arms, rewards = _log(600)
    single = make_policy(name, forgetting=0.95).fit(x, arms, rewards)
    early = make_policy(name, forgetting=0.95).fit(x[:250], arms[:250], rewards[:250])
    late = make_policy(name, forgetting=0.95).fit(x[250:], arms[250:], rewards[250:])
    merged = early.merge(late)
    page = _page(d=4)
    np.testing.assert_allclose(merged.score(page).mean, single.score(page).mean, rtol=1e-10, atol=1e-12)


def test_logistic_merge_is_close_to_a_joint_fit():
    x, arms, rewards = _log(4000, seed=2)
    single = LogisticThompson().fit(x, arms, rewards)
    halves = [LogisticThompson().fit(x[idx], arms[idx], rewards[idx]) for idx in np.array_split(np.arange(4000), 2)]
    merged = halves[0].merge(halves[1])
    np.testing.assert_allclose(merged.theta_[:5], single.theta_[:5], atol=0.05)


def test_logistic_fit_finds_the_posterior_mode():
    """At the fitted mean the gradient of the negative log posterior vanishes."""
    x, arms, rewards = _log(800, seed=7)
    policy = LogisticThompson(ridge=2.0).fit(x, arms, rewards)
    for a in range(5):
        sel = arms == a
        m = policy.theta_[a]
        p = 1 / (1 + np.exp(-x[sel] @ m))
        grad = 2.0 * m - x[sel].T @ (rewards[sel] - p)
        assert np.abs(grad).max() < 1e-8
        H = 2.0 * np.eye(4) + (x[sel] * (p * (1 - p))[:, None]).T @ x[sel]
        np.testing.assert_allclose(policy.Ainv_[a], np.linalg.inv(H), rtol=1e-8)


def test_logistic_online_updates_track_the_batch_posterior():
    x, arms, rewards = _log(3000, seed=8)
    batch = LogisticThompson().fit(x, arms, rewards)
    online = LogisticThompson()
    for s in range(0, 3000, 100):
        online.update(x[s : s + 100], arms[s : s + 100], rewards[s : s + 100])
    np.testing.assert_allclose(online.theta_[:5], batch.theta_[:5], atol=0.1)


def test_delayed_rewards_arriving_out_of_order_give_the_in_order_model():
    x, arms, rewards = _log(300)
    ids = [f"imp-{i}" for i in range(300)]
    pending = PendingImpressions()
    pending.add(ids, x, arms, timestamps=np.arange(300.0))
    policy = LinearThompson()
    order = np.random.default_rng(0).permutation(250)
    for chunk in np.array_split(order, 7):
        pending.resolve(policy, [ids[i] for i in chunk], rewards[chunk])
    assert len(pending) == 50
    expired = pending.expire(policy, now=400.0, max_age=120.0)  # 250..279 are older than 120
    assert expired == 30 and len(pending) == 20
    reference = LinearThompson().fit(
        np.r_[x[:280]], arms[:280], np.r_[rewards[:250], np.zeros(30)]
    )
    np.testing.assert_allclose(policy.theta_[:5], reference.theta_[:5], rtol=1e-8, atol=1e-10)


def test_image_feature_prior_gives_a_new_image_the_pooled_prediction():
    world = make_title_launch(n_history=3000, n_launch=10, seed=3)
    plain = LinearThompson().fit(world.history_x, world.history_arms, world.history_rewards)
    prior = LinearThompson(prior=ImageFeaturePrior(strength=5.0)).fit(
        world.history_x, world.history_arms, world.history_rewards
    )
    page = world.launch.page(slice(0, 10))
    d = world.history_x.shape[1]
    pooled = np.linalg.solve(np.eye(d) + world.history_x.T @ world.history_x, world.history_x.T @ world.history_rewards)
    np.testing.assert_allclose(prior.prior_mean_, pooled, rtol=1e-9)
    mean = prior.score(page).mean  # scoring unseen images grows the model; they start at the prior
    new = world.launch.arms
    np.testing.assert_allclose(prior.theta_[new], np.tile(pooled, (len(new), 1)), rtol=1e-9)
    np.testing.assert_allclose(mean, np.clip(np.einsum("nkd,d->nk", page.x, pooled), 0, 1), atol=1e-12)
    assert np.allclose(plain.score(page).mean, 0.0)  # a new image without the prior knows nothing
    truth = world.launch.probabilities[:10]
    assert np.corrcoef(mean.ravel(), truth.ravel())[0, 1] > 0.8


def test_image_feature_prior_speeds_up_a_title_launch():
    """Cold start on a seeded launch: the prior's early take rate is near the oracle's, and higher."""
    world = make_title_launch(n_history=8000, n_launch=600, seed=0)
    oracle = world.launch.probabilities.max(axis=1)
    rates = {}
    for label, prior in (("plain", None), ("prior", ImageFeaturePrior(strength=20.0))):
        policy = LinearThompson(noise=0.2, prior=prior, seed=0)
        policy.fit(world.history_x, world.history_arms, world.history_rewards)
        run = run_stream(policy, world.launch, batch_size=10)
        rates[label] = run.expected[:300].mean() / oracle[:300].mean()
    assert rates["prior"] >= 0.9
    assert rates["prior"] > rates["plain"] + 0.05


def test_linucb_and_linear_ts_approach_the_oracle_on_a_stream():
    stream = make_linear_stream(20_000, 8, 4, seed=1)
    for policy in (LinUCB(alpha=0.3, seed=0), LinearThompson(noise=0.2, seed=0)):
        run = run_stream(policy, stream, batch_size=50)
        late = run.expected[-5000:].mean() / stream.probabilities[-5000:].max(axis=1).mean()
        assert late > 0.95
    uniform = run_stream(UniformRandom(seed=0), stream).expected.mean() / stream.oracle_rate()
    assert uniform < 0.85


def test_take_rate_bandit_learns_the_best_image_whatever_the_member():
    stream = make_linear_stream(5000, 4, 3, seed=2)
    run = run_stream(TakeRateBandit(seed=0), stream)
    best = int(np.argmax(stream.probabilities.mean(axis=0)))
    assert (run.choice[-1000:] == best).mean() > 0.9


# ---------------------------------------------------------------------------- reproducibility, persistence
@pytest.mark.parametrize("name", ALL)
def test_same_seed_same_numbers(name):
    page = _page()
    a = _fitted(name, seed=5).score(page)
    b = _fitted(name, seed=5).score(page)
    np.testing.assert_array_equal(a.adjusted, b.adjusted)
    np.testing.assert_array_equal(a.propensity, b.propensity)
    np.testing.assert_array_equal(a.choice, b.choice)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("variant", ["plain", "options"])
def test_save_and_load_round_trip_exactly(tmp_path, name, variant):
    options = {
        "plain": {},
        "options": {
            "linucb": {"prior": ImageFeaturePrior(strength=3.0), "dtype": "float32", "forgetting": 0.99},
            "linear_ts": {"prior": ImageFeaturePrior(strength=3.0, refresh_every=50), "n_draws": 50},
            "epsilon_greedy": {"epsilon": 0.2, "forgetting": 0.9},
            "hybrid_linucb": {"shared_columns": [1, 2], "arm_columns": [0, 3], "dtype": "float32"},
            "logistic_ts": {"forgetting": 0.99, "n_draws": 50},
            "take_rate": {"prior_alpha": 2.0, "forgetting": 0.98},
            "uniform": {},
        }[name],
    }[variant]
    x, arms, rewards = _log(300)
    policy = make_policy(name, seed=9, **options).fit(x[:200], arms[:200], rewards[:200])
    policy.update(x[200:], arms[200:], rewards[200:])
    policy.score(_page())  # advance the random streams
    path = save_policy(policy, tmp_path / "model")
    loaded = load_policy(path)
    assert loaded.get_params() == policy.get_params()
    page = _page(seed=4)
    for _ in range(2):
        a, b = policy.score(page), loaded.score(page)
        for field in ("mean", "adjusted", "uncertainty", "choice", "propensity", "propensity_se"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    # and they keep learning identically
    policy.update(x[:10], arms[:10], rewards[:10])
    loaded.update(x[:10], arms[:10], rewards[:10])
    np.testing.assert_array_equal(policy.score(page).mean, loaded.score(page).mean)


def test_scores_feed_the_page_problem():
    from slate.page import GridLayout, PageProblem
    from slate.solvers import solve

    rng = np.random.default_rng(0)
    page = _page(n_rows=6, n_images=3)
    scores = _fitted("linucb").score(page)
    problem = PageProblem.from_arrays(
        scores.mean, rng.normal(size=(6, 3, 4)), candidates=scores.mask, layout=GridLayout(rows=2, cols=3), diversity=0.01
    )
    result = solve(problem, solver="independent")
    assert problem.is_feasible(result.assignment)
    np.testing.assert_array_equal(problem.candidates, scores.mask)


def test_new_arms_start_at_the_prior_and_grow_the_model():
    policy = LinUCB(alpha=1.0, ridge=2.0).fit(*_log(100, n_arms=2))
    page = PageFeatures.from_arrays(np.ones((1, 3, 4)), [[0, 1, 40]])
    scores = policy.score(page)
    assert policy.n_arms_ == 41
    assert scores.mean[0, 2] == 0.0
    assert scores.uncertainty[0, 2] == pytest.approx(np.sqrt(4 / 2.0))


def test_float32_scoring_matches_float64_on_every_path():
    x, arms, rewards = _log(500, n_arms=50)
    p64 = LinUCB().fit(x, arms, rewards)
    p32 = LinUCB(dtype="float32").fit(x, arms, rewards)
    rng = np.random.default_rng(1)
    shared = PageFeatures.from_arrays(rng.normal(size=(700, 4)), np.tile([0, 3, 7, -1], (700, 1)))
    per_image = PageFeatures.from_arrays(rng.normal(size=(700, 4, 4)), np.tile([0, 3, 7, 9], (700, 1)))
    many = PageFeatures.from_arrays(rng.normal(size=(40, 5, 4)), np.arange(200).reshape(40, 5) % 50 + 0 * np.arange(5))
    few = PageFeatures.from_arrays(rng.normal(size=(900, 2, 4)), rng.permutation(np.tile([[1, 2], [2, 1]], (450, 1))))
    for page in (shared, per_image, many, few):
        a, b = p64.score(page, propensities=False), p32.score(page, propensities=False)
        assert b.mean.dtype == np.float32
        np.testing.assert_allclose(b.mean, a.mean, atol=1e-5)
        np.testing.assert_allclose(b.uncertainty, a.uncertainty, atol=1e-5)
        # and all paths agree with a plain per-pair computation
        rr, kk = np.nonzero(page.mask)
        arm = page.arms[rr, kk]
        xs = page.x[rr, kk]
        ref = np.einsum("pd,pd->p", xs, p64.theta_[arm])
        np.testing.assert_allclose(np.clip(ref, 0, 1), a.mean[rr, kk], atol=1e-12)
        ref_w = np.sqrt(np.einsum("pd,pde,pe->p", xs, p64.Ainv_[arm], xs))
        np.testing.assert_allclose(ref_w, a.uncertainty[rr, kk], atol=1e-12)
