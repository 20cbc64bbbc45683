"""slate.replay: estimators against reference formulas, policies, decision tables, metrics,
the registry, and bad inputs. (Statistical properties: tests/replay/test_statistics.py.)"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from slate.logs import read_impressions, write_impressions
from slate.logs.parquet import example_table
from slate.replay import (
    ActionDistribution,
    DecisionTable,
    DoublyRobust,
    InvalidReplayInputError,
    LayoutNeighbourhood,
    LinearPolicy,
    ReplayData,
    UniformPolicy,
    UnknownEstimatorError,
    available_estimators,
    evaluate,
    get_estimator,
)
from slate.replay.estimators import neighbour_rows
from slate.replay.metrics import churn_rate, consecutive_pairs, image_coverage, logged_distribution
from tests.replay.test_world import World


def random_probs(rng, n, k):
    p = rng.random((n, k)) ** 3
    return p / p.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def softmax_case():
    w = World(seed=11, n_slots=3)
    s = w.simulate(300, "softmax", seed=12)
    log = w.to_log(s)
    rng = np.random.default_rng(13)
    probs = random_probs(rng, log.n_rows, w.n_images)
    q = rng.random((log.n_rows, w.n_images))
    return log, probs, q


def test_ips_snips_dm_dr_equal_reference_formulas(softmax_case):
    log, probs, q = softmax_case
    target = ActionDistribution.from_probs(probs, log.shown)
    data = ReplayData.build(log, target, q)
    n = log.n_rows
    r = log.reward.astype(float)
    w = np.array([probs[i, log.shown[i]] / log.propensity[i] for i in range(n)])
    dm_rows = np.array([sum(probs[i, k] * q[i, k] for k in range(q.shape[1])) for i in range(n)])
    ref = {
        "ips": np.mean(w * r),
        "snips": np.sum(w * r) / np.sum(w),
        "dm": np.mean(dm_rows),
        "dr": np.mean(dm_rows + w * (r - q[np.arange(n), log.shown])),
    }
    for name, expected in ref.items():
        est = get_estimator(name).estimate(data, n_bootstrap=0)
        assert est.value == pytest.approx(expected, rel=1e-12, abs=1e-15), name
        assert est.n_rows == n and est.n_pages == 300
        assert est.page_value == pytest.approx(3 * expected, rel=1e-12)
    ips = get_estimator("ips").estimate(data, n_bootstrap=0)
    assert ips.n_matched == int((w > 0).sum())
    assert ips.ess == pytest.approx(w.sum() ** 2 / (w**2).sum())
    assert ips.max_weight == pytest.approx(w.max())


def test_standard_error_is_the_page_cluster_one(softmax_case):
    log, probs, q = softmax_case
    data = ReplayData.build(log, ActionDistribution.from_probs(probs, log.shown), q)
    w = data.weight
    r = log.reward.astype(float)
    page_sums = np.bincount(log.page_index, w * r)
    P = len(page_sums)
    ips = get_estimator("ips").estimate(data, n_bootstrap=0)
    per_page_mean = page_sums / 3  # 3 titles per page: value = mean of page means
    assert ips.se == pytest.approx(per_page_mean.std(ddof=1) / np.sqrt(P), rel=1e-10)
    # SNIPS: delta method around the ratio
    V = np.bincount(log.page_index, w)
    theta = page_sums.sum() / V.sum()
    expected = np.sqrt(P / (P - 1) * np.sum((page_sums - theta * V) ** 2)) / V.sum()
    assert get_estimator("snips").estimate(data, n_bootstrap=0).se == pytest.approx(expected, rel=1e-10)


def test_bootstrap_is_seeded_and_brackets_the_value(softmax_case):
    log, probs, q = softmax_case
    data = ReplayData.build(log, ActionDistribution.from_probs(probs, log.shown), q)
    est = get_estimator("snips")
    a = est.estimate(data, n_bootstrap=300, seed=5)
    b = est.estimate(data, n_bootstrap=300, seed=5)
    c = est.estimate(data, n_bootstrap=300, seed=6)
    assert a == b and a.interval != c.interval
    assert a.interval_method == "bootstrap" and a.interval[0] < a.value < a.interval[1]
    # the bootstrap interval's width is close to the normal one's (smooth statistic, 300 pages)
    assert (a.interval[1] - a.interval[0]) / (2 * 1.96 * a.se) == pytest.approx(1.0, abs=0.2)
    normal = est.estimate(data, n_bootstrap=0)
    assert normal.interval_method == "normal"
    assert normal.interval == pytest.approx((a.value - 1.959964 * a.se, a.value + 1.959964 * a.se))


def test_replay_on_uniform_logs_is_the_mean_over_matched_events():
    w = World(seed=2)
    s = w.simulate(500, "uniform", seed=3)
    log = w.to_log(s)
    choose = w.greedy()
    target = w.target(choose, s)
    est = get_estimator("replay").estimate(ReplayData.build(log, target), n_bootstrap=0)
    match = target.choice == log.shown
    assert est.n_matched == match.sum()
    assert est.value == pytest.approx(log.reward[match].mean(), rel=1e-12)
    # the same as SNIPS on uniform logs with a deterministic target
    snips = get_estimator("snips").estimate(ReplayData.build(log, target), n_bootstrap=0)
    assert snips.value == pytest.approx(est.value, rel=1e-12)


def test_rejection_sampling_replay_is_seeded_and_accepts_w_over_m():
    w = World(seed=2)
    s = w.simulate(3000, "softmax", seed=3)
    log = w.to_log(s, with_vectors=False)
    data = ReplayData.build(log, w.target(w.greedy(), s))
    rep = get_estimator("ReplayMethod")
    a = rep.estimate(data, n_bootstrap=0, seed=1)
    assert a == rep.estimate(data, n_bootstrap=0, seed=1)
    assert a.value != rep.estimate(data, n_bootstrap=0, seed=2).value
    expected = data.weight.sum() / data.weight.max()
    assert abs(a.n_matched - expected) < 4 * np.sqrt(expected)


def test_neighbour_rows_and_weights_match_a_loop():
    w = World(seed=4, n_slots=5)
    s = w.simulate(40, "softmax", seed=5)
    log = w.to_log(s)
    # scramble row order so that lookups cannot rely on it
    log = log.take(np.random.default_rng(0).permutation(log.n_rows))
    nb = neighbour_rows(log, [(0, -1), (0, 1)])
    where = {(int(log.page_id[i]), int(log.row[i]), int(log.col[i])): i for i in range(log.n_rows)}
    for i in range(log.n_rows):
        key = (int(log.page_id[i]), int(log.row[i]))
        assert nb[i, 0] == where.get((*key, int(log.col[i]) - 1), -1)
        assert nb[i, 1] == where.get((*key, int(log.col[i]) + 1), -1)
    target = ActionDistribution.from_probs(random_probs(np.random.default_rng(1), log.n_rows, 4), log.shown)
    data = ReplayData.build(log, target)
    weights = LayoutNeighbourhood().row_weights(data)
    page_w = get_estimator("page").row_weights(data)
    for i in range(log.n_rows):
        own = data.weight[i] * np.prod([data.weight[j] for j in nb[i] if j >= 0])
        assert weights[i] == pytest.approx(own, rel=1e-12)
        same_page = np.flatnonzero(log.page_id == log.page_id[i])
        assert page_w[i] == pytest.approx(np.prod(data.weight[same_page]), rel=1e-12)


def test_pseudoinverse_closed_form_equals_the_pseudoinverse_of_gamma():
    """Brute force (Swaminathan et al. 2017, eq. 5): q_pi^T Gamma^+ 1_s over every slate."""
    w = World(seed=6, n_slots=2, n_images=3)
    s = w.simulate(60, "softmax", seed=7)
    log = w.to_log(s)
    rng = np.random.default_rng(8)
    probs = random_probs(rng, log.n_rows, 3)
    data = ReplayData.build(log, ActionDistribution.from_probs(probs, log.shown))
    est = get_estimator("pi").estimate(data, n_bootstrap=0)
    L, K = 2, 3
    total = 0.0
    for p in range(60):
        rows = np.flatnonzero(log.page_id == p)
        mu = log.propensities[rows]
        gamma = np.zeros((L * K, L * K))
        for slate in itertools.product(range(K), repeat=L):
            ind = np.zeros(L * K)
            ind[[j * K + a for j, a in enumerate(slate)]] = 1
            gamma += np.prod([mu[j, a] for j, a in enumerate(slate)]) * np.outer(ind, ind)
        q_pi = probs[rows].ravel()
        shown = np.zeros(L * K)
        shown[[j * K + a for j, a in enumerate(log.shown[rows])]] = 1
        total += (q_pi @ np.linalg.pinv(gamma) @ shown) * log.reward[rows].sum()
    assert est.value == pytest.approx(total / log.n_rows, rel=1e-9)


def test_per_title_estimates_equal_estimates_on_each_title(softmax_case):
    log, probs, q = softmax_case
    data = ReplayData.build(log, ActionDistribution.from_probs(probs, log.shown), q)
    for name in ("ips", "snips", "dr"):
        pt = get_estimator(name).per_title(data)
        for t, title in enumerate(log.title_ids):
            rows = log.title == t
            w = data.weight[rows]
            r = log.reward[rows].astype(float)
            if name == "ips":
                expected = np.mean(w * r)
            elif name == "snips":
                expected = np.sum(w * r) / np.sum(w)
            else:
                qq, pp = q[rows], probs[rows]
                expected = np.mean((pp * qq).sum(1) + w * (r - qq[np.arange(rows.sum()), log.shown[rows]]))
            assert pt.value[t] == pytest.approx(expected, rel=1e-10), (name, title)
            assert pt.n_rows[t] == rows.sum()
        assert np.all(pt.lower <= pt.value) and np.all(pt.value <= pt.upper)
    assert get_estimator("pi").per_title(data) is None


def test_registry_names_and_aliases():
    assert available_estimators() == ["dm", "dr", "ips", "neighbourhood", "page", "page-aware", "page-aware-dr",
                                      "pi", "replay", "snips", "snips-crowding"]
    pairs = [("ReplayMethod", "replay"), ("InverseProbabilityWeighting", "ips"), ("ipw", "ips"),
             ("SelfNormalizedIPS", "snips"), ("DirectMethod", "dm"), ("DoublyRobust", "dr"),
             ("LayoutNeighbourhood", "neighbourhood"), ("PseudoInverse", "pi"), ("WholePageMatch", "page")]
    assert get_estimator("CrowdingAdjustedSNIPS", embeddings={"a": [1.0]}).name == "snips-crowding"
    for long, short in pairs:
        assert get_estimator(long).name == short
    dr = DoublyRobust()
    assert get_estimator(dr) is dr
    with pytest.raises(UnknownEstimatorError, match="Unknown estimator 'magic'; available estimators are dm, dr"):
        get_estimator("magic")


def test_linear_policy_matches_numpy_argmax_and_epsilon_mix():
    w = World(seed=8)
    s = w.simulate(200, "uniform", seed=9)
    log = w.to_log(s)
    rng = np.random.default_rng(10)
    weights = rng.normal(size=(len(log.image_ids), w.n_features))
    bias = rng.normal(size=len(log.image_ids))
    order = rng.permutation(len(log.image_ids))  # the policy's own image order
    policy = LinearPolicy([log.image_ids[i] for i in order], weights[order], bias[order])
    scores = np.einsum("nkd,nd->nk", weights[log.candidates], log.features) + bias[log.candidates]
    assert np.array_equal(policy.choose(log), scores.argmax(axis=1))
    assert np.allclose(policy.scores(log), scores, atol=1e-4)
    eps = LinearPolicy(policy.image_ids, policy.weights, policy.bias, epsilon=0.2).action_distribution(log)
    assert np.allclose(eps.probs.sum(axis=1), 1.0)
    assert np.allclose(eps.probs[np.arange(log.n_rows), scores.argmax(axis=1)], 0.8 + 0.2 / 4)


def _decisions(log, choice):
    return DecisionTable.from_arrays(
        member_id=log.member_id, session_id=log.session_id,
        title_id=np.asarray(log.title_ids, dtype=object)[log.title],
        image_id=np.asarray(log.image_ids, dtype=object)[log.candidates[np.arange(log.n_rows), choice]],
    )


def test_decision_table_gives_the_same_estimates_as_the_choices(tmp_path):
    w = World(seed=14)
    s = w.simulate(400, "softmax", seed=15)
    log = w.to_log(s)
    choice = w.greedy(noise=0.5)(s.x, s.titles).ravel()
    table = _decisions(log, choice)
    shuffled = DecisionTable(table.table.take(np.random.default_rng(0).permutation(log.n_rows)))
    direct = evaluate(log, {"choice": choice}, ["snips", "ips", "dr"], n_bootstrap=100, seed=3)
    via_table = evaluate(log, shuffled, ["snips", "ips", "dr"], n_bootstrap=100, seed=3)
    for k in direct.estimates:
        assert via_table.estimates[k] == direct.estimates[k]
    pa_path = tmp_path / "decisions.parquet"
    import pyarrow.parquet as pq

    pq.write_table(table.table, pa_path)
    from_file = evaluate(log, str(pa_path), "snips", n_bootstrap=100, seed=3)
    assert from_file.estimate.value == direct.estimates["snips"].value
    assert from_file.metrics["churn_rate"] == direct.metrics["churn_rate"]


def test_decision_table_missing_rows_error_or_skip():
    w = World(seed=14)
    s = w.simulate(100, "uniform", seed=15)
    log = w.to_log(s)
    choice = w.greedy()(s.x, s.titles).ravel()
    full = _decisions(log, choice).table
    partial = full.filter(pc.not_equal(full.column("title_id"), log.title_ids[0]))
    with pytest.raises(InvalidReplayInputError, match=r"must decide every log row; got no decision for \d+ rows"):
        evaluate(log, DecisionTable(partial), n_bootstrap=0)
    report = evaluate(log, DecisionTable(partial, missing="skip"), ["snips"], n_bootstrap=0)
    kept = log.title != 0
    assert report.n_undecided == (~kept).sum() and report.n_rows == kept.sum()
    sub = log.take(kept)
    expected = evaluate(sub, {"choice": choice[kept]}, ["snips"], n_bootstrap=0)
    assert report.estimate.value == pytest.approx(expected.estimate.value, rel=1e-12)
    dup = pa.concat_tables([full, full.slice(0, 1)])
    with pytest.raises(InvalidReplayInputError, match=r"one row per .* got 1 repeated keys"):
        evaluate(log, DecisionTable(dup), n_bootstrap=0)
    wrong = full.set_column(3, "image_id", pa.array(["T99-I0"] * full.num_rows))
    with pytest.raises(InvalidReplayInputError, match=r"must pick one of each row's candidate images; got .* 'T99-I0'"):
        evaluate(log, DecisionTable(wrong), n_bootstrap=0)
    with pytest.raises(InvalidReplayInputError, match=r"must have the columns .* missing \['image_id'\]"):
        DecisionTable(full.drop_columns(["image_id"]))
    with pytest.raises(InvalidReplayInputError, match="'missing' parameter of DecisionTable"):
        DecisionTable(full, missing="drop")


def test_one_percent_corrupted_file_gives_the_clean_estimate(tmp_path):
    w = World(seed=21)
    s = w.simulate(2000, "softmax", seed=22)
    clean = w.to_table(s)
    n = clean.num_rows
    rng = np.random.default_rng(23)
    bad = np.sort(rng.choice(n, size=n // 100, replace=False))
    kind = np.arange(len(bad)) % 4
    prop = clean.column("propensity").to_numpy().copy()
    reward = clean.column("reward").to_numpy().astype(np.int8).copy()
    prop_arr = pa.array(np.where(np.isin(np.arange(n), bad[kind == 0]), np.nan, prop))
    reward[bad[kind == 1]] = 3
    image = clean.column("image_id").to_numpy(zero_copy_only=False).copy()
    image[bad[kind == 2]] = "nope"
    mask_null = np.zeros(n, bool)
    mask_null[bad[kind == 3]] = True
    corrupted = (
        clean.set_column(clean.schema.get_field_index("propensity"), "propensity", prop_arr)
        .set_column(clean.schema.get_field_index("reward"), "reward", pa.array(reward))
        .set_column(clean.schema.get_field_index("image_id"), "image_id", pa.array(image.astype(object), pa.string()))
        .set_column(clean.schema.get_field_index("title_id"), "title_id",
                    pc.if_else(pa.array(mask_null), pa.scalar(None, pa.string()), clean.column("title_id")))
    )
    dups = clean.take(rng.choice(n, size=20, replace=False))  # duplicate impressions, after the originals
    path = write_impressions(tmp_path / "corrupt.parquet", pa.concat_tables([corrupted, dups]),
                             row_group_size=5000)
    log, report = read_impressions(path)
    assert report.counts["propensity_out_of_range"] == (kind == 0).sum()
    assert report.counts["reward_out_of_label_set"] == (kind == 1).sum()
    assert report.counts["shown_not_candidate"] == (kind == 2).sum()
    assert report.counts["missing_field"] == (kind == 3).sum()
    assert report.counts["duplicate_impression"] == 20
    assert report.n_rejected == len(bad) + 20
    good = np.setdiff1d(np.arange(n), bad)
    clean_path = write_impressions(tmp_path / "clean.parquet", clean.take(good))
    names = ["snips", "ips", "dr", "replay", "neighbourhood"]
    policy = LinearPolicy(log.image_ids, np.random.default_rng(1).normal(size=(len(log.image_ids), 3)))
    a = evaluate(path, policy, names, n_bootstrap=200, seed=4)
    b = evaluate(clean_path, policy, names, n_bootstrap=200, seed=4)
    for k in names:
        assert a.estimates[k] == b.estimates[k], k
    assert a.rejections.n_rejected == report.n_rejected and b.rejections.n_rejected == 0


def _two_session_log():
    t = example_table()
    return read_impressions(t.set_column(0, "member_id", pa.array([1, 1, 1, 1])))[0]


def test_churn_and_coverage_by_hand():
    log = _two_session_log()  # one member, sessions 10 then 20; titles T1, T2 with images a, b
    i, j = consecutive_pairs(log)
    assert sorted(zip(i.tolist(), j.tolist(), strict=False)) == [(0, 2), (1, 3)]
    assert churn_rate(log, logged_distribution(log)) == 1.0  # T1 a->b, T2 b->a
    same = ActionDistribution.deterministic([0, 0, 0, 0], log.shown, 2)  # always image a
    assert churn_rate(log, same) == 0.0
    assert image_coverage(log, same)[0] == 0.5  # one of two images per title
    uniform = UniformPolicy().action_distribution(log)
    assert churn_rate(log, uniform) == pytest.approx(0.5)  # 1 - (0.25 + 0.25)
    assert image_coverage(log, uniform)[0] == 1.0
    skewed = ActionDistribution.from_probs([[0.97, 0.03]] * 4, log.shown)
    assert image_coverage(log, skewed)[0] == 0.5  # 3% < 5%
    report = evaluate(log, same, "ips", n_bootstrap=0)
    assert report.metrics["churn_rate"] == 0.0 and report.metrics["logged_churn_rate"] == 1.0
    assert report.metrics["image_coverage"] == 0.5 and report.metrics["logged_image_coverage"] == 1.0


def test_report_serialises(tmp_path):
    report = evaluate(example_table(), UniformPolicy(), ["snips", "dm", "snips"], n_bootstrap=20,
                      per_title=True, extra_metrics={"answer": lambda log, target: 42.0})
    assert list(report.estimates) == ["snips", "dm", "snips'"]
    data = json.loads(report.to_json(tmp_path / "r.json"))
    assert data["estimates"]["snips"]["value"] == report.estimate.value
    assert set(data["per_title"]["snips"]) == {"T1", "T2"}
    assert data["metrics"]["answer"] == 42.0 and data["metrics"]["churn_rate"] is None
    assert json.loads((tmp_path / "r.json").read_text()) == data
    assert "snips" in str(report) and "policy 'uniform'" in str(report)


def _log():
    return read_impressions(example_table())[0]


BAD_CALLS = [
    (lambda: evaluate(_log(), UniformPolicy(), n_bootstrap=-1), "'n_bootstrap' parameter must be an integer >= 0; got -1"),
    (lambda: evaluate(_log(), UniformPolicy(), level=1.5), "'level' parameter must be in \\(0, 1\\); got 1.5"),
    (lambda: evaluate(_log(), UniformPolicy(), estimator=[]), "must name at least one estimator"),
    (lambda: evaluate(_log(), 42), "'policy' parameter of evaluate must be .*; got int"),
    (lambda: evaluate([1, 2], UniformPolicy()), "'log' parameter of evaluate must be .*; got list"),
    (lambda: evaluate(_log(), {"probs": np.ones((4, 3)) / 3}), r"'probs' of a target policy must have shape \(4, 2\)"),
    (lambda: evaluate(_log(), {"probs": np.full((4, 2), 0.4)}), "must sum to 1 on every row; got 0.8 on row 0"),
    (lambda: evaluate(_log(), {"probs": np.full((4, 2), np.nan)}), "must be finite and within \\[0, 1\\]"),
    (lambda: evaluate(_log(), {"choice": [0, 1, 2, 0]}), "must be a candidate position in \\[0, 2\\)"),
    (lambda: evaluate(_log(), ActionDistribution(np.ones(3))), "must describe the 4 rows of the log; got 3"),
    (lambda: evaluate(_log(), ActionDistribution(np.ones(4)), "dm"), "direct-method estimator needs the target's full distribution"),
    (lambda: evaluate(_log(), UniformPolicy(), "dr", reward_model=np.ones((4, 3))), r"predictions must have shape \(4, 2\)"),
    (lambda: evaluate(_log(), UniformPolicy(), "dr", reward_model="forest"), "'reward_model' parameter must be 'take_rate'"),
    (lambda: evaluate(_log(), LinearPolicy(["T1-a"], np.zeros((1, 0)))), "must have weights for every candidate image; got none for 3 images"),
    (lambda: evaluate(_log(), LinearPolicy(["T1-a"], np.zeros((1, 2)))), "must have 2 inline features .* got 0"),
    (lambda: LinearPolicy(["a", "b"], np.zeros((3, 2))), r"'weights' of LinearPolicy must have shape \(n_images=2"),
    (lambda: LinearPolicy(["a"], np.zeros((1, 2)), epsilon=2), "'epsilon' of LinearPolicy must be in \\[0, 1\\]"),
    (lambda: LayoutNeighbourhood(neighbours="diagonal"), "'neighbours' parameter of LayoutNeighbourhood must be one of"),
    (lambda: LayoutNeighbourhood(neighbours=[(0, 0)]), "must not include \\(0, 0\\)"),
    (lambda: get_estimator(3.5), "'estimator' parameter must be a name or an Estimator; got float"),
]


@pytest.mark.parametrize(("call", "message"), BAD_CALLS)
def test_bad_inputs_raise_clear_errors(call, message):
    with pytest.raises(InvalidReplayInputError, match=message):
        call()


@pytest.mark.parametrize("seed", range(6))
def test_top_sum_equals_a_sort_even_with_ties(seed):
    from slate.replay.stats import top_sum

    rng = np.random.default_rng(seed)
    kinds = [rng.random(5000), rng.integers(0, 3, 5000) * 10.0, np.r_[np.zeros(4990), rng.random(10)],
             rng.pareto(1.0, 5000), np.full(5000, 2.0), np.zeros(5000)]
    a = kinds[seed]
    for k in (1, 7, 50, 4999, 5000):
        assert top_sum(a, k) == pytest.approx(np.sort(a)[::-1][:k].sum(), rel=1e-12, abs=1e-12)
