"""One policy vocabulary (slate.policy): every built-in speaks it, the adapters give the old answers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slate.bandit import PageFeatures, ScoringPolicy, available_policies, make_policy
from slate.errors import InvalidProblemError, InvalidReplayInputError, InvalidRequestError
from slate.logs import read_impressions
from slate.logs.parquet import example_table
from slate.policy import (
    Chooser,
    PageSampler,
    Policy,
    Scorer,
    argmax_choice,
    as_policy,
    as_scorer,
    epsilon_greedy,
    greedy,
    greedy_probabilities,
    mix_uniform,
    tie_propensity,
)
from slate.replay import DecisionTable, LinearPolicy, TargetPolicy, UniformPolicy, evaluate
from slate.replay.policy import as_action_distribution
from slate.serve import ComposeConfig, Composer, PageScorer, PolicyScorer, ScoreTable
from slate.serve.offline import ComposePolicy
from slate.sim import (
    ArgmaxPolicy,
    EpsilonGreedyLogging,
    LoggingPolicy,
    PageOptimizerPolicy,
    StickyExplorationLogging,
    UniformRandomLogging,
    decide,
    initial_state,
    make_schedule,
    make_world,
    oracle_scorer,
)
from slate.sim import Policy as SimPolicy
from tests.replay.test_world import World


def _page(n_rows: int = 4, n_images: int = 5, d: int = 3, seed: int = 1) -> PageFeatures:
    rng = np.random.default_rng(seed)
    x = np.concatenate([np.ones((n_rows, n_images, 1)), rng.normal(size=(n_rows, n_images, d - 1))], axis=2)
    arms = np.tile(np.arange(n_images), (n_rows, 1))
    arms[0, -1] = -1
    return PageFeatures.from_arrays(x, arms)


def _fitted(name: str) -> ScoringPolicy:
    rng = np.random.default_rng(0)
    x = np.c_[np.ones(200), rng.normal(size=(200, 2))]
    arms = rng.integers(0, 5, 200)
    rewards = (rng.random(200) < 0.4).astype(float)
    return make_policy(name, seed=3).fit(x, arms, rewards)


def _batch():
    world = make_world(n_members=30, n_titles=60, seed=1)
    return make_schedule(world, n_days=1).batch(0, initial_state(world))


def _replay_log():
    w = World(seed=8)
    log = w.to_log(w.simulate(200, "uniform", seed=9))
    rng = np.random.default_rng(10)
    weights = rng.normal(size=(len(log.image_ids), w.n_features))
    bias = rng.normal(size=len(log.image_ids))
    return log, LinearPolicy(list(log.image_ids), weights, bias)


# ---------------------------------------------------------------------------- protocols
def test_every_built_in_scorer_and_policy_satisfies_its_protocol():
    page = _page()
    for name in available_policies():
        policy = _fitted(name)
        assert isinstance(policy, ScoringPolicy)
        scores = as_scorer(policy)(page)
        assert np.array_equal(scores, policy.score(page, propensities=False).mean)
        assert isinstance(greedy(policy), Policy)
    table = ScoreTable(member_id=[1], image_id=["a"], score=[0.5])
    policy_scorer = PolicyScorer(_fitted("linucb"), lambda request: page)
    for scorer in (table, policy_scorer, oracle_scorer()):
        assert isinstance(scorer, Scorer) or isinstance(scorer, PageScorer)
        assert callable(as_scorer(scorer))
    assert isinstance(policy_scorer, PageScorer)

    _, linear = _replay_log()
    decisions = DecisionTable.from_arrays(member_id=[1], session_id=[1], title_id=["T1"], image_id=["a"])
    compose_policy = ComposePolicy(lambda r: np.zeros((r.n_titles, r.n_images)), ComposeConfig(solver="independent"))
    for target in (UniformPolicy(), linear, decisions, compose_policy, greedy(linear.scores)):
        assert isinstance(target, Policy) and isinstance(target, TargetPolicy)
        assert as_policy(target) is target

    for sampler in (UniformRandomLogging(seed=1), EpsilonGreedyLogging(ArgmaxPolicy(oracle_scorer()), 0.1, seed=1),
                    StickyExplorationLogging(ArgmaxPolicy(oracle_scorer()), 0.1, hold_days=2, seed=1)):
        assert isinstance(sampler, PageSampler) and isinstance(sampler, LoggingPolicy)
        assert as_policy(sampler) is sampler
    for chooser in (ArgmaxPolicy(oracle_scorer()), PageOptimizerPolicy(oracle_scorer())):
        assert isinstance(chooser, Chooser) and isinstance(chooser, SimPolicy)


# ---------------------------------------------------------------------------- same answers as the old paths
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_greedy_equals_the_bandit_tie_propensity(seed):
    page = _page(n_rows=6, seed=seed)
    policy = _fitted("linucb")
    scores = policy.score(page)
    assert np.array_equal(greedy_probabilities(scores.adjusted, page.mask), scores.propensity)
    assert np.array_equal(greedy(lambda p: scores.adjusted).action_distribution(page), scores.propensity)
    # ties: argmax_choice samples among the maxima that greedy_probabilities weighs evenly
    tied = np.array([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0]])
    mask = np.ones(tied.shape, bool)
    choice, is_max, count = argmax_choice(tied, mask, np.random.default_rng(seed))
    assert is_max[np.arange(2), choice].all()
    assert np.array_equal(tie_propensity(is_max, count), greedy_probabilities(tied, mask))


@pytest.mark.parametrize("epsilon", [0.0, 0.2, 1.0])
def test_greedy_of_a_log_scorer_equals_the_linear_target_policy(epsilon):
    log, linear = _replay_log()
    eps_linear = LinearPolicy(linear.image_ids, linear.weights, linear.bias, epsilon=epsilon)
    old = as_action_distribution(eps_linear, log).probabilities()
    # the formula LinearPolicy used before slate.policy
    choice = linear.choose(log)
    expected = epsilon * (log.candidates >= 0) / log.n_candidates[:, None].astype(np.float64)
    expected[np.arange(log.n_rows), choice] += 1.0 - epsilon
    if epsilon > 0:
        assert np.array_equal(old, expected)
    else:
        assert np.array_equal(old, (expected > 0).astype(float))
    new = as_action_distribution(epsilon_greedy(linear.scores, epsilon), log)
    assert np.array_equal(new.probs, old)
    assert np.array_equal(new.prob_logged, as_action_distribution(eps_linear, log).prob_logged)
    assert evaluate(log, epsilon_greedy(linear.scores, epsilon)).estimate.value == pytest.approx(
        evaluate(log, eps_linear).estimate.value, rel=1e-12)


def test_sim_decision_propensities_equal_the_old_formula():
    batch = _batch()
    for policy in (UniformRandomLogging(seed=4), EpsilonGreedyLogging(ArgmaxPolicy(oracle_scorer()), 0.3, seed=4)):
        d = decide(policy, batch)
        k = int(batch.n_candidates.max())
        local = np.arange(k)[None, None, :]
        n = batch.n_candidates[..., None].astype(np.float64)
        eps = d.epsilon[..., None]
        old = np.where(local < batch.n_candidates[..., None], eps / n + (1.0 - eps) * (local == d.greedy[..., None]), 0.0)
        new = d.propensities(batch.n_candidates)
        assert np.array_equal(new, old)
        shown = np.take_along_axis(new, d.images[..., None], axis=2)[..., 0]
        assert np.allclose(shown, d.propensity, rtol=1e-14, atol=0)


def test_greedy_on_simulated_pages_agrees_with_the_argmax_chooser():
    batch = _batch()
    scorer = oracle_scorer()
    probs = greedy(scorer).action_distribution(batch)
    choice = ArgmaxPolicy(scorer)(batch)
    k = probs.shape[-1]
    assert np.allclose(probs.sum(axis=-1), 1.0, rtol=0, atol=1e-12)
    assert (probs[np.arange(k)[None, None, :] >= batch.n_candidates[..., None]] == 0).all()
    assert (np.take_along_axis(probs, choice[..., None], axis=2) > 0).all()
    untied = (probs > 0).sum(axis=-1) == 1
    assert untied.mean() > 0.9
    assert np.array_equal(probs.argmax(axis=-1)[untied], choice[untied])
    # epsilon_greedy gives what the epsilon-greedy logging policy reports (no ties here)
    decision = decide(EpsilonGreedyLogging(ArgmaxPolicy(scorer), 0.3, seed=5), batch)
    mixed = epsilon_greedy(scorer, 0.3).action_distribution(batch)
    expected = decision.propensities(batch.n_candidates, k)
    assert np.array_equal(mixed[untied], expected[untied])


# ---------------------------------------------------------------------------- one clear error
def test_a_wrong_object_gets_one_error_naming_what_it_lacks():
    with pytest.raises(InvalidProblemError, match=r"must be a Policy \(with action_distribution\(context\)\).*got object"):
        as_policy(object())
    with pytest.raises(InvalidProblemError, match=r"looks like a Scorer: wrap it with slate.policy.greedy"):
        as_policy(lambda page: page)
    log, _ = read_impressions(example_table())
    with pytest.raises(InvalidReplayInputError, match=r"'policy' parameter of evaluate must be .*; got int, which has neither"):
        as_action_distribution(3, log)
    with pytest.raises(InvalidReplayInputError, match="only samples pages"):
        as_action_distribution(UniformRandomLogging(seed=1), log)
    with pytest.raises(InvalidProblemError, match=r"must be a Scorer: callable .*got int"):
        as_scorer(3)
    with pytest.raises(InvalidRequestError, match=r"adapt it with slate.serve.PolicyScorer"):
        Composer(_fitted("linucb"), None)
    with pytest.raises(InvalidProblemError, match=r"LoggingPolicy .* or a deterministic policy.*got int"):
        decide(3, _batch())  # type: ignore[arg-type]
    with pytest.raises(InvalidProblemError, match="epsilon"):
        epsilon_greedy(lambda p: p, 1.5)


# ---------------------------------------------------------------------------- invariants
@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 6), st.integers(1, 6), st.integers(0, 3), st.integers(0, 2**31),
    st.floats(0.0, 1.0),
)
def test_greedy_propensities_sum_to_one_and_are_positive_only_on_maxima(n_rows, n_images, levels, seed, eps):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, levels + 1, size=(n_rows, n_images)).astype(float)  # few levels: many ties
    mask = rng.random((n_rows, n_images)) < 0.7
    mask[np.arange(n_rows), rng.integers(0, n_images, n_rows)] = True
    p = greedy_probabilities(scores, mask)
    assert np.allclose(p.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    best = np.where(mask, scores, -np.inf).max(axis=1, keepdims=True)
    assert np.array_equal(p > 0, mask & (scores == best))
    q = mix_uniform(p, eps, mask)
    assert np.allclose(q.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    assert (q[~mask] == 0).all()
