"""Per-title estimates on the partitioned paths (stream, dask): exact per-title partial sums
merged by title id, bit-identical whatever the split, equal to the in-memory per-title estimates,
and a per-title Poisson bootstrap that resamples the same pages as the overall one."""

from __future__ import annotations

import argparse
import json
import pickle
from fractions import Fraction

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slate.logs import read_impressions, write_impressions
from slate.replay import InvalidReplayInputError, LinearPolicy, ReplayMethod, _exact, evaluate
from slate.replay.cli import add_replay_parser
from slate.replay.distributed import ReplaySpec, evaluate_dask, evaluate_stream, file_partials
from slate.replay.estimators import get_estimator
from slate.replay.partials import ChunkBootstrap, TitleSums
from tests.replay.test_world import World

NAMES = ["snips", "ips", "replay", "dr", "dm", "neighbourhood", "page", "pi"]
WITH_ROWS = [k for k in NAMES if k != "pi"]  # pi has no per-row terms: no per-title estimates
FIELDS = ("value", "se", "lower", "upper", "n_rows", "n_matched", "ess")


def reward_model(log):
    """Row-local predictions (the same for a row in any chunk): a sigmoid of its features."""
    x = log.features.astype(np.float64)
    k = np.arange(log.k_max)
    q = 1.0 / (1.0 + np.exp(-(x[:, :1] * 0.7 + 0.2 * k[None, :] - 1.0)))
    return np.where(log.candidates >= 0, q, 0.0)


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    """One World log (12 titles, 4 per page; title T11's rows all rejected) written as one file,
    three files cut by row, and two files split so that one never sees title T00."""
    root = tmp_path_factory.mktemp("per_title")
    world = World(seed=3, n_slots=4)
    table = world.to_table(world.simulate(1500, "softmax", seed=4))
    prop = table.column("propensity").to_numpy().copy()
    prop[np.asarray(pc.equal(table.column("title_id"), "T11"))] = 1.5  # rejected: out of range
    table = table.set_column(table.schema.get_field_index("propensity"), "propensity",
                             pa.array(prop))
    n = table.num_rows
    write_impressions(root / "one.parquet", table, version=2, row_group_size=500)
    (root / "three").mkdir()
    for i, (a, b) in enumerate([(0, 2000), (2000, 4400), (4400, n)]):
        write_impressions(root / "three" / f"part-{i}.parquet", table.slice(a, b - a),
                          version=1, row_group_size=333)
    page = table.column("page_id").to_numpy()
    with_t0 = np.isin(page, page[np.asarray(pc.equal(table.column("title_id"), "T00"))])
    (root / "by_title").mkdir()
    for i, mask in enumerate([with_t0, ~with_t0]):
        write_impressions(root / "by_title" / f"part-{i}.parquet", table.filter(pa.array(mask)),
                          version=2, row_group_size=200)
    log, _ = read_impressions(root / "one.parquet")
    weights = np.random.default_rng(1).normal(size=(len(log.image_ids), world.n_features))
    return root, log, LinearPolicy(log.image_ids, weights)


def assert_same(a, b, exact=True):
    assert a.title_ids == b.title_ids
    for f in FIELDS:
        x, y = getattr(a, f), getattr(b, f)
        if exact:
            assert np.array_equal(x, y, equal_nan=True), f
        else:
            assert x == pytest.approx(y, rel=1e-12, nan_ok=True), f


def test_per_title_estimates_are_bit_identical_across_files_chunks_and_title_subsets(logs):
    root, _, policy = logs
    opts = {"n_bootstrap": 25, "seed": 7, "per_title": True, "reward_model": reward_model}
    runs = [
        evaluate_stream(root / "one.parquet", policy, NAMES, **opts),
        evaluate_stream(root / "three", policy, NAMES, **opts),
        evaluate_stream(root / "by_title", policy, NAMES, **opts),
        evaluate_stream(root / "by_title", policy, NAMES, chunk_rows=1, **opts),  # page per chunk
    ]
    first = runs[0]
    assert sorted(first.per_title) == sorted(WITH_ROWS)
    pt = first.per_title["snips"]
    assert pt.title_ids == tuple(f"T{t:02d}" for t in range(12))  # sorted, T11 from rejected rows
    assert pt.n_rows[-1] == 0 and np.isnan(pt.value[-1]) and pt.n_rows[:-1].sum() == first.n_rows
    assert np.all(np.isfinite(pt.value[:-1]))
    assert np.all((pt.lower[:-1] < pt.value[:-1]) & (pt.value[:-1] < pt.upper[:-1]))
    assert first.options["per_title_interval"] == "poisson bootstrap"
    for other in runs[1:]:
        for k in WITH_ROWS:
            assert_same(other.per_title[k], first.per_title[k])
            assert other.estimates[k] == first.estimates[k], k
    reseeded = evaluate_stream(root / "by_title", policy, "snips", n_bootstrap=25, seed=8,
                               per_title=True)
    assert np.array_equal(reseeded.per_title["snips"].value, pt.value, equal_nan=True)
    assert not np.array_equal(reseeded.per_title["snips"].lower, pt.lower, equal_nan=True)
    plain = evaluate_stream(root / "one.parquet", policy, "snips", n_bootstrap=25, seed=7)
    assert plain.per_title == {} and plain.estimate == first.estimates["snips"]


def test_per_title_estimates_equal_the_in_memory_ones(logs):
    root, log, policy = logs
    names = ["snips", "ips", "dr", "dm", "neighbourhood", "page", "pi"]
    stream = evaluate_stream(root / "three", policy, names, n_bootstrap=0, per_title=True,
                             reward_model=reward_model)
    memory = evaluate(log, policy, names, n_bootstrap=0, per_title=True, metrics=False,
                      reward_model=reward_model)
    assert sorted(stream.per_title) == sorted(memory.per_title) == sorted(set(names) - {"pi"})
    assert stream.options["per_title_interval"] == "normal"
    for k in stream.per_title:
        a, b = stream.per_title[k], memory.per_title[k]
        assert a.title_ids == b.title_ids, k
        assert np.array_equal(a.n_rows, b.n_rows) and np.array_equal(a.n_matched, b.n_matched), k
        assert a.value == pytest.approx(b.value, rel=1e-12, abs=1e-15, nan_ok=True), k
        assert a.se == pytest.approx(b.se, rel=1e-9, nan_ok=True), k
        assert a.ess == pytest.approx(b.ess, rel=1e-12), k
        assert a.lower == pytest.approx(b.lower, rel=1e-9, nan_ok=True), k  # both normal
        assert a.upper == pytest.approx(b.upper, rel=1e-9, nan_ok=True), k
    # replay: the stream's M = 1 / min(propensity) used in memory gives the same events
    bound = 1.0 / log.propensity.min()
    a = evaluate_stream(root / "by_title", policy, "replay", n_bootstrap=0, per_title=True)
    b = evaluate(log, policy, ReplayMethod(max_weight=bound), n_bootstrap=0, per_title=True,
                 metrics=False)
    assert np.array_equal(a.per_title["replay"].n_matched, b.per_title["replay"].n_matched)
    assert a.per_title["replay"].value == pytest.approx(b.per_title["replay"].value, rel=1e-12,
                                                        nan_ok=True)


def test_per_title_bootstrap_resamples_the_pages_of_the_overall_bootstrap(logs):
    # IPS: a page's (U, V) are the sums of its rows' (u, v), so summing the per-title replicate
    # sums over the titles gives the overall replicate sums iff the page counts agree: exactly
    # for V (v = 1 per row), to rounding for U (a page's U is a float sum of its rows' u)
    root, _, policy = logs
    spec = ReplaySpec(policy, (get_estimator("ips"),), n_bootstrap=12, seed=5, per_title=True)
    part = file_partials(0, root / "one.parquet", spec)
    titles, overall = part.titles["ips"], part.sums["ips"]
    G = len(titles.title_ids)
    for b in range(12):
        u_sum = sum(_exact.to_int(titles.boot[b, g, 0]) for g in range(G))
        v_sum = sum(_exact.to_int(titles.boot[b, g, 1]) for g in range(G))
        assert v_sum == _exact.to_int(overall.boot[1, b])
        assert u_sum / _exact.to_int(overall.boot[0, b]) == pytest.approx(1.0, abs=1e-13)
    assert len({_exact.to_int(overall.boot[1, b]) for b in range(12)}) > 1  # counts vary
    back = pickle.loads(pickle.dumps(part))  # a dask task ships the sums back
    assert_same(back.titles["ips"].estimate(level=0.9), titles.estimate(level=0.9))


def test_per_title_poisson_intervals_match_the_normal_ones(logs):
    root, _, policy = logs
    report = evaluate_stream(root / "one.parquet", policy, "ips", n_bootstrap=400, seed=2,
                             per_title=True)
    pt = report.per_title["ips"]
    ok = pt.n_rows > 0
    ratio = (pt.upper - pt.lower)[ok] / (2 * 1.959964 * pt.se[ok])
    # ~500 rows per title, 400 replicates: each width within 25% of the normal one, the median
    # within 10% (Monte Carlo error of a 95% percentile interval at 400 replicates ~ 7%)
    assert np.all(np.abs(ratio - 1) < 0.25), ratio
    assert abs(np.median(ratio) - 1) < 0.10, ratio


def test_dask_gives_the_stream_per_title_estimates(logs):
    from distributed import Client, LocalCluster

    root, _, policy = logs
    names = ["snips", "ips", "dr"]
    opts = {"n_bootstrap": 20, "seed": 3, "per_title": True}
    stream = evaluate_stream(root / "by_title", policy, names, **opts)
    for workers in (1, 2):
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=False,
                          dashboard_address=None) as cluster, Client(cluster) as client:
            spread = evaluate_dask(root / "by_title", policy, names, client=client, **opts)
            assert len(client.scheduler_info()["workers"]) == workers
        for k in names:
            assert_same(spread.per_title[k], stream.per_title[k])


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 60), st.integers(1, 6), st.integers(0, 6), st.randoms(use_true_random=False))
def test_title_sums_merge_exactly_in_any_order(n, n_titles, n_boot, rnd):
    rng = np.random.default_rng(rnd.randint(0, 2**32 - 1))
    ids = tuple(f"t{i}" for i in range(n_titles))
    title = rng.integers(0, n_titles, n)
    page = np.arange(n) // 3  # rows in page order; pages of up to 3 rows
    u = rng.normal(size=n) * 10.0 ** rng.integers(-20, 20, n)
    v = rng.random(n) * 10.0 ** rng.integers(-5, 5, n)
    w = rng.random(n)

    def part(rows):
        pages, cluster = np.unique(page[rows], return_inverse=True)
        return TitleSums.from_rows("snips", ids, title[rows], pages, cluster.reshape(-1), u[rows],
                                   v[rows], w[rows], w[rows] > 0.5, ChunkBootstrap(n_boot, 11))

    whole = part(np.arange(n))
    cuts = sorted(rnd.sample(range(1, n), min(n - 1, rnd.randint(0, 4)))) if n > 1 else []
    pieces = [part(r) for r in np.split(np.arange(n), cuts)]
    rnd.shuffle(pieces)
    merged = pieces[0]
    for p in pieces[1:]:
        merged = merged.merge(p)
    assert merged.title_ids == whole.title_ids == tuple(ids[t] for t in np.unique(title))
    assert np.array_equal(merged.sums, whole.sums) and np.array_equal(merged.boot, whole.boot)
    assert np.array_equal(merged.n_rows, whole.n_rows)
    for g, t in enumerate(np.unique(title)):  # the sums are exact: u and u*v of each title
        rows = title == t
        for k, terms in ((0, u[rows]), (3, u[rows] * v[rows])):
            exact = sum(map(Fraction, terms)) * 2**_exact.SCALE_BITS
            assert _exact.to_int(whole.sums[g, k]) == exact
    assert_same(merged.estimate(level=0.9, title_ids=ids), whole.estimate(level=0.9, title_ids=ids))


def test_title_sums_value_is_the_exact_ratio():
    u = np.array([1e16, 1.0, -1e16, 0.25, 3.0])
    v = np.array([1.0, 1.0, 1.0, 1.0, 3.0])
    title = np.array([0, 0, 0, 0, 1])
    s = TitleSums.from_rows("ips", ("a", "b"), title, np.arange(5), np.arange(5), u, v, v,
                            np.ones(5, bool))
    est = s.estimate(level=0.95, title_ids=("a", "b", "c"))
    assert est.value[0] == float(sum(map(Fraction, u[:4])) / 4) == 0.3125  # floats give 0.0625
    assert est.value[1] == 1.0 and np.isnan(est.se[1])  # one row: no standard error
    assert np.isnan(est.value[2]) and est.n_rows.tolist() == [4, 1, 0]


def test_bad_per_title_inputs_raise():
    a = TitleSums.empty("snips", 3)
    with pytest.raises(InvalidReplayInputError, match="same estimator and bootstrap size"):
        a.merge(TitleSums.empty("snips", 4))
    with pytest.raises(InvalidReplayInputError, match="same estimator and bootstrap size"):
        a.merge(TitleSums.empty("ips", 3))
    one = np.ones(1)
    s = TitleSums.from_rows("ips", ("x",), np.zeros(1, int), np.zeros(1, np.int64),
                            np.zeros(1, np.int64), one, one, one, one > 0)
    with pytest.raises(InvalidReplayInputError, match="must include every title summed"):
        s.estimate(level=0.95, title_ids=("y",))
    with pytest.raises(InvalidReplayInputError, match="per-title terms must be finite"):
        TitleSums.from_rows("ips", ("x",), np.zeros(1, int), np.zeros(1, np.int64),
                            np.zeros(1, np.int64), one * np.inf, one, one, one > 0)


def test_cli_writes_per_title_estimates_for_every_engine(logs, tmp_path):
    root, _, policy = logs
    policy.save(tmp_path / "w.npz")
    (tmp_path / "p.json").write_text(json.dumps({"weights": "w.npz"}))
    saved = {}
    for engine in ("memory", "stream"):
        parser = argparse.ArgumentParser(prog="slate")
        add_replay_parser(parser.add_subparsers(dest="command", required=True))
        out = tmp_path / f"{engine}.json"
        args = parser.parse_args(["replay", str(root / "one.parquet"), "--policy",
                                  str(tmp_path / "p.json"), "-e", "snips,ips", "--bootstrap", "0",
                                  "--per-title", "--engine", engine, "--output", str(out)])
        assert args.func(args) == 0
        saved[engine] = json.loads(out.read_text())["per_title"]
    assert sorted(saved["stream"]) == ["ips", "snips"]
    for k in ("snips", "ips"):
        mem, stm = saved["memory"][k], saved["stream"][k]
        assert list(stm) == list(mem) == [f"T{t:02d}" for t in range(12)]
        for title in mem:
            for f in ("value", "se", "lower", "upper", "ess"):
                if mem[title][f] is None:  # NaN is written as null
                    assert stm[title][f] is None
                else:
                    assert stm[title][f] == pytest.approx(mem[title][f], rel=1e-9), (k, title, f)
            assert stm[title]["n_rows"] == mem[title]["n_rows"]
