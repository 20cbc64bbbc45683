"""Replay over partitions: exact partial sums, bit-identical estimates whatever the split
(files, row groups, chunks, dask workers), and agreement with the in-memory evaluate()."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slate.logs import read_impressions, write_impressions
from slate.replay import InvalidReplayInputError, LinearPolicy, ReplayMethod, _exact, evaluate
from slate.replay.distributed import evaluate_dask, evaluate_stream
from tests.replay.test_world import World

ALL = ["snips", "ips", "replay", "dm", "dr", "neighbourhood", "page", "pi"]


@settings(max_examples=60)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=60), st.randoms())
def test_exact_sums_do_not_depend_on_order_or_split(values, rnd):
    x = np.array(values, dtype=np.float64)
    whole = _exact.new()
    assert _exact.accumulate(whole, x)
    assert Fraction(_exact.to_int(whole), 2**_exact.SCALE_BITS) == sum(map(Fraction, values))
    perm = np.array(rnd.sample(range(len(x)), len(x)), dtype=np.int64)
    cut = rnd.randint(0, len(x))
    a, b = _exact.new(), _exact.new()
    _exact.accumulate(a, x[perm[:cut]])
    _exact.accumulate(b, x[perm[cut:]])
    merged = a + b
    _exact.normalize(merged)
    assert _exact.to_int(merged) == _exact.to_int(whole)
    assert not _exact.accumulate(_exact.new(), np.array([1.0, np.nan]))


def test_counter_uniforms_are_uniform_and_keyed():
    u = _exact.counter_uniform(np.uint64(5), np.arange(20_000), np.zeros(20_000, np.int64))
    assert abs(u.mean() - 0.5) < 4 * math.sqrt(1 / 12 / 20_000)  # 4 standard errors
    assert np.histogram(u, bins=10, range=(0, 1))[0].min() > 1800  # expected 2000 per bin
    again = _exact.counter_uniform(np.uint64(5), np.arange(20_000)[::-1], np.zeros(20_000, np.int64))
    assert np.array_equal(u, again[::-1])  # a page's number does not depend on its position
    other = _exact.counter_uniform(np.uint64(6), np.arange(20_000), np.zeros(20_000, np.int64))
    assert abs(np.corrcoef(u, other)[0, 1]) < 0.05


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    """One World log written as: one v2 file; three v1 files (pages whole); two v2 files."""
    root = tmp_path_factory.mktemp("partitioned")
    world = World(seed=3, n_slots=4)
    sample = world.simulate(1500, "softmax", seed=4)
    table = world.to_table(sample)
    n = table.num_rows
    write_impressions(root / "one.parquet", table, version=2, row_group_size=500)
    for name, cuts, version, group in (("three", [0, 2000, 4400, n], 1, 333),
                                       ("two", [0, 3604, n], 2, 1000)):
        (root / name).mkdir()
        for i in range(len(cuts) - 1):
            write_impressions(root / name / f"part-{i}.parquet", table.slice(cuts[i], cuts[i + 1] - cuts[i]),
                              version=version, row_group_size=group)
    log, _ = read_impressions(root / "one.parquet")
    weights = np.random.default_rng(1).normal(size=(len(log.image_ids), world.n_features))
    return root, log, LinearPolicy(log.image_ids, weights)


def test_estimates_are_bit_identical_across_one_two_three_files_and_chunks(logs):
    root, _, policy = logs
    runs = [
        evaluate_stream(root / "one.parquet", policy, ALL, n_bootstrap=30, seed=7),
        evaluate_stream(root / "one.parquet", policy, ALL, n_bootstrap=30, seed=7, chunk_rows=700),
        evaluate_stream(root / "two", policy, ALL, n_bootstrap=30, seed=7, chunk_rows=1),
        evaluate_stream(root / "three", policy, ALL, n_bootstrap=30, seed=7),
    ]
    first = runs[0]
    for other in runs[1:]:
        for k in ALL:
            assert other.estimates[k] == first.estimates[k], k  # every field, bit for bit
        assert other.n_rows == first.n_rows == 6000 and other.n_pages == 1500
    assert first.estimate.interval_method == "poisson bootstrap"
    different = evaluate_stream(root / "two", policy, ["snips"], n_bootstrap=30, seed=8)
    assert different.estimate.value == first.estimates["snips"].value
    assert different.estimate.interval != first.estimates["snips"].interval


def test_streamed_values_equal_the_in_memory_ones(logs):
    root, log, policy = logs
    names = ["snips", "ips", "neighbourhood", "page", "pi"]
    stream = evaluate_stream(root / "three", policy, names, n_bootstrap=0)
    memory = evaluate(log, policy, names, n_bootstrap=0, metrics=False)
    for k in names:
        a, b = stream.estimates[k], memory.estimates[k]
        assert a.value == pytest.approx(b.value, rel=1e-12, abs=1e-15), k
        assert a.se == pytest.approx(b.se, rel=1e-9), k
        assert a.ess == pytest.approx(b.ess, rel=1e-12), k
        assert (a.n_matched, a.n_rows, a.n_pages) == (b.n_matched, b.n_rows, b.n_pages)
        assert a.max_weight == b.max_weight
        assert a.top1_weight_share == pytest.approx(b.top1_weight_share, rel=0.05), k
        assert a.interval == pytest.approx(b.interval, rel=1e-9), k  # both normal intervals
    # replay: the stream fixes M = 1 / min(propensity); in memory, the same M gives the same events
    bound = 1.0 / log.propensity.min()
    rep = evaluate(log, policy, ReplayMethod(max_weight=bound), n_bootstrap=0, metrics=False)
    streamed = evaluate_stream(root / "two", policy, "replay", n_bootstrap=0)
    assert streamed.estimate.n_matched == rep.estimate.n_matched
    assert streamed.estimate.value == pytest.approx(rep.estimate.value, rel=1e-12)


@pytest.mark.parametrize("cluster", ["page", "member"])
def test_streamed_separation_equals_the_in_memory_one(logs, cluster):
    """The difference from the logging policy (paired, same clusters) is filled in the stream as
    in memory: same logged value and difference, same normal interval (float rounding apart)."""
    root, log, policy = logs
    names = ["snips", "ips", "neighbourhood"]
    stream = evaluate_stream(root / "three", policy, names, n_bootstrap=0, cluster=cluster)
    memory = evaluate(log, policy, names, n_bootstrap=0, metrics=False, cluster=cluster)
    for k in names:
        a, b = stream.estimates[k], memory.estimates[k]
        assert a.logged_value == pytest.approx(b.logged_value, rel=1e-12) and 0 < a.logged_value < 1, k
        assert a.difference == pytest.approx(b.difference, rel=1e-12, abs=1e-15), k
        assert a.difference_interval == pytest.approx(b.difference_interval, rel=1e-9), k
        assert (a.separated, a.separation) == (b.separated, b.separation), k
        assert a.separation.startswith(("separated", "not separated")), k
    # with a Poisson bootstrap: the paired interval is the bootstrap one, about as wide as the
    # normal one (400 replicates: within 20%), and it does not depend on the partitioning
    boot = [evaluate_stream(root / d, policy, "snips", n_bootstrap=400, seed=5, cluster=cluster).estimate
            for d in ("three", "two", "one.parquet")]
    assert boot[0] == boot[1] == boot[2]
    lo, hi = boot[0].difference_interval
    nlo, nhi = stream.estimates["snips"].difference_interval
    assert (hi - lo) / (nhi - nlo) == pytest.approx(1.0, abs=0.2)


def test_poisson_bootstrap_interval_matches_the_normal_one(logs):
    root, _, policy = logs
    report = evaluate_stream(root / "one.parquet", policy, "snips", n_bootstrap=400, seed=2)
    e = report.estimate
    lo, hi = e.interval
    assert lo < e.value < hi
    # smooth statistic, 1500 pages: the widths agree within 15% (Monte Carlo error at 400 reps)
    assert (hi - lo) / (2 * 1.959964 * e.se) == pytest.approx(1.0, abs=0.15)


def test_corrupted_rows_give_the_estimates_of_the_clean_rows(tmp_path):
    world = World(seed=5, n_slots=3)
    table = world.to_table(world.simulate(400, "uniform", seed=6))
    rng = np.random.default_rng(0)
    bad = rng.choice(table.num_rows, size=table.num_rows // 100, replace=False)
    prop = table.column("propensity").to_numpy().copy()
    prop[bad] = 1.5  # out of range: rejected
    import pyarrow as pa

    corrupted = table.set_column(table.schema.get_field_index("propensity"), "propensity", pa.array(prop))
    write_impressions(tmp_path / "bad.parquet", corrupted, version=2, row_group_size=100)
    good = np.setdiff1d(np.arange(table.num_rows), bad)
    write_impressions(tmp_path / "clean.parquet", table.take(good), version=2, row_group_size=77)
    log, _ = read_impressions(tmp_path / "clean.parquet")
    policy = LinearPolicy(log.image_ids, rng.normal(size=(len(log.image_ids), world.n_features)))
    names = ["snips", "ips", "replay", "dr", "neighbourhood"]
    a = evaluate_stream(tmp_path / "bad.parquet", policy, names, n_bootstrap=20, seed=1)
    b = evaluate_stream(tmp_path / "clean.parquet", policy, names, n_bootstrap=20, seed=1)
    for k in names:
        assert a.estimates[k] == b.estimates[k], k
    assert a.rejections.counts["propensity_out_of_range"] == len(bad) == a.rejections.n_rejected
    assert sorted(a.rejections.rows.tolist()) == sorted(bad.tolist())


def test_dask_local_cluster_gives_the_stream_estimates(logs):
    # a LocalCluster of 2 threaded workers keeps the test short (worker processes spend seconds
    # importing slate); the benchmark checks the same equality on worker processes, and the
    # partial sums' pickling is checked here
    import pickle

    from distributed import Client, LocalCluster

    from slate.replay.distributed import ReplaySpec, file_partials
    from slate.replay.estimators import get_estimator

    root, _, policy = logs
    names = ["snips", "ips", "replay", "dr"]
    stream = evaluate_stream(root / "three", policy, names, n_bootstrap=20, seed=3)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        dask = evaluate_dask(root / "three", policy, names, client=client, n_bootstrap=20, seed=3)
        assert len(client.scheduler_info()["workers"]) == 2
    for k in names:
        assert dask.estimates[k] == stream.estimates[k], k
    assert dask.rejections.n_read == stream.rejections.n_read == 6000
    assert dask.options["files"] == 3
    spec = ReplaySpec(policy, (get_estimator("snips"),), n_bootstrap=5)
    part = file_partials(0, sorted((root / "three").iterdir())[0], spec)
    back = pickle.loads(pickle.dumps(part))
    assert (back.sums["snips"].estimate(level=0.9, seed=0, logged=back.logged)
            == part.sums["snips"].estimate(level=0.9, seed=0, logged=part.logged))
    assert part.sums["snips"].estimate(level=0.9, seed=0, logged=part.logged).separation.startswith(
        ("separated", "not separated"))
    # sums without the logging policy's say so instead of leaving the fields silently NaN
    assert "no comparison with the logging policy" in part.sums["snips"].estimate(level=0.9, seed=0).separation


def test_bad_partitioned_inputs_raise(logs):
    root, _, policy = logs
    with pytest.raises(InvalidReplayInputError, match="need a reward model"):
        evaluate_stream(root / "one.parquet", policy, "dm", reward_model=None)
    with pytest.raises(InvalidReplayInputError, match="'reward_model' of a partitioned evaluation"):
        evaluate_stream(root / "one.parquet", policy, "dm", reward_model=np.zeros((2, 2)))
    with pytest.raises(InvalidReplayInputError, match="at least one estimator"):
        evaluate_stream(root / "one.parquet", policy, [])
    with pytest.raises(InvalidReplayInputError, match="'n_bootstrap' parameter must be an integer >= 0"):
        evaluate_stream(root / "one.parquet", policy, "snips", n_bootstrap=-1)
    with pytest.raises(InvalidReplayInputError, match="'n_workers' parameter of evaluate_dask"):
        evaluate_dask(root / "one.parquet", policy, "snips", n_workers=0)
    with pytest.raises(InvalidReplayInputError, match="'max_weight' of ReplayMethod must bound"):
        evaluate_stream(root / "one.parquet", policy, ReplayMethod(max_weight=1.5))


def test_take_rate_counts_merge_across_different_vocabularies(logs):
    from slate.replay import TakeRateCounts

    _, log, _ = logs
    by_title = log.title % 2 == 0  # two halves that see different images and titles
    halves = [log.take(np.flatnonzero(by_title)), log.take(np.flatnonzero(~by_title))]
    halves = [read_impressions(_table_of(h))[0] for h in halves]  # own, smaller vocabularies
    assert halves[0].image_ids != halves[1].image_ids
    merged = TakeRateCounts.from_log(halves[1], seed=4).merge(TakeRateCounts.from_log(halves[0], seed=4))
    whole = TakeRateCounts.from_log(log, seed=4)
    assert np.array_equal(merged.predict(log), whole.predict(log))
    assert merged.plays == int(log.reward.sum()) and merged.rows == log.n_rows


def _table_of(log):
    from slate.logs import impressions_table

    ids = np.asarray(log.image_ids, dtype=object)
    return impressions_table(
        member_id=log.member_id, session_id=log.session_id, page_id=log.page_id,
        timestamp=log.timestamp, title_id=np.asarray(log.title_ids, dtype=object)[log.title],
        row=log.row, col=log.col, image_id=ids[log.image],
        candidate_ids=[list(ids[c[c >= 0]]) for c in log.candidates], propensity=log.propensity,
        explored=log.explored, reward=log.reward)


def test_streamed_page_aware_equals_the_in_memory_one(logs):
    """Chunks have their own image vocabularies: a mapping image_id -> group is read per chunk."""
    from slate.replay import MarginalizedNeighbourhood

    root, log, policy = logs
    groups = {image: int(image[-1]) % 2 for image in log.image_ids}
    est = MarginalizedNeighbourhood(groups=groups)
    stream = evaluate_stream(root / "three", policy, est, n_bootstrap=0).estimate
    memory = evaluate(log, policy, est, n_bootstrap=0, metrics=False).estimate
    assert stream.value == pytest.approx(memory.value, rel=1e-12)
    assert stream.se == pytest.approx(memory.se, rel=1e-9)
    assert stream.assumption == memory.assumption != ""
