"""Replay across sessions: what the member saw before, sticky (stability) policies, and
policies that learn only from matched events (Li et al. 2011)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from slate.bandit import EpsilonGreedy, PageFeatures
from slate.logs import ImpressionLog, RejectionReport, read_impressions
from slate.replay import (
    InvalidReplayInputError,
    LinearPolicy,
    ReplayData,
    ReplayMethod,
    StickyPolicy,
    evaluate,
    previous_shown,
    sequential_replay,
)
from slate.replay.metrics import churn_vs_previous
from tests.replay.test_world import World


def session_log(seed: int, n_members: int = 6, n_sessions: int = 5, n_titles: int = 4, k: int = 3,
                n_features: int = 2) -> ImpressionLog:
    """Members with several sessions, each a page of a random subset of titles, shuffled rows."""
    rng = np.random.default_rng(seed)
    rows = []
    page = 0
    for m in range(n_members):
        t0 = int(rng.integers(0, 1000))
        for s in range(n_sessions):
            titles = rng.choice(n_titles, size=int(rng.integers(1, n_titles + 1)), replace=False)
            x = rng.normal(size=n_features)
            for c, t in enumerate(titles):
                rows.append((m, 100 * m + s, page, t0 + 10 * s, int(t), c, int(rng.integers(0, k)),
                             int(rng.integers(0, 2)), x))
            page += 1
    order = rng.permutation(len(rows))
    rows = [rows[i] for i in order]
    n = len(rows)
    cands = np.array([[r[4] * k + j for j in range(k)] for r in rows], np.int32)
    shown = np.array([r[6] for r in rows], np.int32)
    report = RejectionReport(n_read=n, n_accepted=n, rows=np.zeros(0), reasons=np.zeros(0))
    return ImpressionLog(
        member_id=np.array([r[0] for r in rows]), session_id=np.array([r[1] for r in rows]),
        page_id=np.array([r[2] for r in rows]), timestamp=np.array([r[3] for r in rows]),
        title=np.array([r[4] for r in rows], np.int32), row=np.zeros(n, np.int32),
        col=np.array([r[5] for r in rows], np.int32), image=cands[np.arange(n), shown],
        candidates=cands, n_candidates=np.full(n, k, np.int32), shown=shown,
        propensity=np.full(n, 1.0 / k), propensities=None, explored=np.ones(n, bool),
        reward=np.array([r[7] for r in rows], np.int8), engagement=None, previous_image=None,
        features=np.stack([r[8] for r in rows]).astype(np.float32), features_ref=None,
        title_ids=tuple(f"T{t}" for t in range(n_titles)),
        image_ids=tuple(f"T{t}-{j}" for t in range(n_titles) for j in range(k)),
        source_row=np.arange(n, dtype=np.int64), rejections=report,
    )


def brute_previous(log: ImpressionLog) -> list[int]:
    out = []
    for i in range(log.n_rows):
        earlier = [j for j in range(log.n_rows)
                   if log.member_id[j] == log.member_id[i] and log.title[j] == log.title[i]
                   and log.timestamp[j] < log.timestamp[i]]
        if not earlier:
            out.append(-1)
            continue
        last = max(earlier, key=lambda j: (log.timestamp[j], log.page_id[j]))
        out.append(int(log.image[last]))
    return out


@pytest.mark.parametrize("seed", range(5))
def test_previous_shown_is_the_members_last_session(seed):
    log = session_log(seed)
    assert previous_shown(log).tolist() == brute_previous(log)


def test_sticky_policy_keeps_what_the_member_saw():
    log = session_log(1)
    base = LinearPolicy(log.image_ids, np.random.default_rng(0).normal(size=(len(log.image_ids), 2)))
    plain = StickyPolicy(base, 0.0).action_distribution(log)
    assert np.array_equal(plain.choice, base.action_distribution(log).choice)
    stuck = StickyPolicy(base, np.inf).action_distribution(log)
    prev = previous_shown(log)
    has = prev >= 0
    assert has.sum() > 20
    assert np.array_equal(log.candidates[np.arange(log.n_rows), stuck.choice][has], prev[has])
    assert churn_vs_previous(log, stuck) == 0.0
    assert churn_vs_previous(log, plain) > 0.3  # the base ignores history
    report = evaluate(log, StickyPolicy(base, np.inf), ["snips", "ips"], n_bootstrap=0)
    assert report.metrics["churn_vs_previous"] == 0.0
    assert report.metrics["logged_churn_vs_previous"] > 0.3  # uniform logging changes images
    # the history can come from the previous_image_id column (same images here)
    with_column = log.__class__(**{**{f: getattr(log, f) for f in log.__dataclass_fields__
                                      if f != "_cache"}, "previous_image": prev})
    assert np.array_equal(StickyPolicy(base, 1.0, history="column").action_distribution(with_column).choice,
                          StickyPolicy(base, 1.0, history="logged").action_distribution(log).choice)
    with pytest.raises(InvalidReplayInputError, match="needs the log's 'previous_image_id' column"):
        StickyPolicy(base, 1.0, history="column").action_distribution(log)
    with pytest.raises(InvalidReplayInputError, match="'history' parameter of StickyPolicy"):
        StickyPolicy(base, history="future")


def test_sequential_replay_of_a_stateless_policy_is_replay():
    w = World(seed=2)
    s = w.simulate(400, "softmax", seed=3)
    log = w.to_log(s, with_vectors=False)
    policy = LinearPolicy(log.image_ids, np.random.default_rng(1).normal(size=(len(log.image_ids), 3)))
    M = float(1.0 / log.propensity.min())
    seq = sequential_replay(log, StickyPolicy(policy, 0.0), max_weight=M, seed=5, batch_pages=7)
    rep = ReplayMethod(max_weight=M).estimate(ReplayData.build(log, policy.action_distribution(log)),
                                              n_bootstrap=0, seed=5)
    assert seq.n_accepted == rep.n_matched
    assert seq.value == pytest.approx(rep.value, rel=1e-12)
    assert seq.curve[-1] == pytest.approx(seq.value)
    assert seq.to_dict()["n_accepted"] == seq.n_accepted


def test_sticky_sequential_replay_matches_a_loop():
    log = session_log(3, n_members=5, n_sessions=6)
    base = LinearPolicy(log.image_ids, np.random.default_rng(2).normal(size=(len(log.image_ids), 2)))
    result = sequential_replay(log, StickyPolicy(base, 0.8), seed=1)
    # reference: pages in time order; "last time" = the policy's last accepted event
    scores = base.scores(log)
    order = np.lexsort((log.col, log.row, log.page_id, log.timestamp))
    from slate.replay.estimators import row_uniforms

    u = row_uniforms(log, 1, 2)
    state, accepted = {}, []
    for i in order:
        sc = scores[i].copy()
        prev = state.get((log.member_id[i], log.title[i]), -1)
        sc[log.candidates[i] == prev] += 0.8
        p = float(np.argmax(sc) == log.shown[i]) / (3 * log.propensity[i])
        if u[i] < p:
            accepted.append(i)
            state[(log.member_id[i], log.title[i])] = log.image[i]
    assert result.accepted.tolist() == accepted


def online_take_fraction(w: World, n_events: int, seed: int) -> tuple[float, float]:
    """Run a fresh learner online in the world for about n_events title impressions."""
    policy = EpsilonGreedy(epsilon=0.1, seed=seed)
    rng = np.random.default_rng(seed + 1)
    rewards = []
    while len(rewards) < n_events:
        x, titles = w.contexts(1, rng)
        arms = titles[0][:, None] * w.n_images + np.arange(w.n_images)
        ctx = np.repeat(x, w.n_slots, axis=0)
        choice = policy.score(PageFeatures.from_arrays(ctx, arms)).choice
        p = w.play_prob(x, titles, choice[None, :])[0]
        r = (rng.random(len(p)) < p).astype(float)
        policy.update(ctx, arms[np.arange(w.n_slots), choice], r)
        rewards += r.tolist()
    r = np.array(rewards[:n_events])
    return float(r.mean()), float(r.std(ddof=1) / np.sqrt(len(r)))


def test_learning_policy_replay_matches_its_online_run():
    # Li et al. (2011): on uniformly logged events, the accepted events of a learner are
    # distributed as its own online run. Tolerance: 4 combined standard errors.
    w = World(seed=7, n_titles=6, n_images=3, n_features=3)
    log = w.to_log(w.simulate(5000, "uniform", seed=8))
    result = sequential_replay(log, EpsilonGreedy(epsilon=0.1, seed=0), seed=2, batch_pages=2)
    assert 0.2 * log.n_rows < result.n_accepted < 0.5 * log.n_rows  # about 1/3 + exploration
    online, online_se = online_take_fraction(w, result.n_accepted, seed=11)
    assert abs(result.value - online) < 4 * np.hypot(result.se, online_se)
    # it learns: the second half of the accepted events beats the first, and uniform's value
    half = result.n_accepted // 2
    r = log.reward[result.accepted].astype(float)
    assert r[half:].mean() > r[:half].mean()
    assert result.value > log.reward.mean() + 3 * result.se


def test_bad_sequential_inputs_raise():
    log = session_log(0)
    base = LinearPolicy(log.image_ids, np.zeros((len(log.image_ids), 2)))
    with pytest.raises(InvalidReplayInputError, match=r"'batch_pages' parameter .* got 0"):
        sequential_replay(log, StickyPolicy(base), batch_pages=0)
    with pytest.raises(InvalidReplayInputError, match="must bound every weight"):
        sequential_replay(log, StickyPolicy(base), max_weight=1.0)
    with pytest.raises(InvalidReplayInputError, match="must have score\\(page\\) and update"):
        sequential_replay(log, object())
    with pytest.raises(InvalidReplayInputError, match="must have scores\\(log\\)"):
        StickyPolicy(object(), 1.0).action_distribution(log)


def test_previous_shown_from_a_parquet_table():
    from slate.logs.parquet import example_table

    table = example_table().set_column(0, "member_id", pa.array([1, 1, 1, 1]))
    log, _ = read_impressions(table)
    assert previous_shown(log).tolist() == [-1, -1, log.image_index["T1-a"], log.image_index["T2-b"]]
