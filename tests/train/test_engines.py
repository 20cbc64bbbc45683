"""slate.train: every engine gives the same statistics and model, bit for bit; the sums are right."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slate.bandit import LinUCB, TakeRateBandit
from slate.errors import InvalidProblemError
from slate.logs import read_impressions
from slate.train import FileFold, Layout, LogStatistics, train
from tests.train_logs import make_table, write_log

ARRAYS = ("offered", "counts", "events", "A", "b", "B", "Z", "c", "totals")


def assert_same(r1, r2) -> None:
    s1, s2 = r1.statistics, r2.statistics
    assert s1.image_ids == s2.image_ids
    for name in ARRAYS:
        a, b = getattr(s1, name), getattr(s2, name)
        assert a.shape == b.shape and np.array_equal(a, b), name
    p1, p2 = r1.policy._state()[0], r2.policy._state()[0]
    for name in p1:
        assert np.array_equal(p1[name], p2[name]), name


@pytest.fixture(scope="module")
def log_v1(tmp_path_factory) -> Path:
    return write_log(tmp_path_factory.mktemp("v1"), version=1)


@pytest.fixture(scope="module")
def log_v2(tmp_path_factory) -> Path:
    return write_log(tmp_path_factory.mktemp("v2"), version=2)


@pytest.mark.parametrize("policy,params", [
    ("linucb", {}), ("hybrid_linucb", {"shared_columns": [1, 2, 3], "arm_columns": [0, 1]}),
    ("take_rate", {}), ("linear_ts", {"noise": 0.3}), ("epsilon_greedy", {}), ("uniform", {}),
])
@pytest.mark.parametrize("ips", [False, True])
def test_memory_equals_stream_any_chunking(log_v1, policy, params, ips):
    memory = train(log_v1, policy, params=params, ips=ips)
    for chunk_rows in (1, 37, 10_000):
        stream = train(log_v1, policy, params=params, ips=ips, engine="stream",
                       options={"chunk_rows": chunk_rows})
        assert_same(memory, stream)


def test_version1_and_version2_logs_give_the_same_model(log_v1, log_v2):
    assert_same(train(log_v1, "linucb"), train(log_v2, "linucb", engine="stream"))


def test_dask_two_workers_equals_memory(log_v2):
    memory = train(log_v2, "hybrid_linucb", params={"shared_columns": [1, 2], "arm_columns": [0, 3]})
    dask = train(log_v2, "hybrid_linucb", params={"shared_columns": [1, 2], "arm_columns": [0, 3]},
                 engine="dask", n_workers=2, options={"chunk_rows": 50})
    assert_same(memory, dask)
    lin = train(log_v2, "linucb", engine="dask", n_workers=2)
    assert_same(train(log_v2, "linucb", engine="stream", options={"chunk_rows": 3}), lin)


def test_sums_match_the_policies_own_fit(log_v1):
    log, _ = read_impressions(log_v1 / "part-0.parquet")
    result = train(log_v1 / "part-0.parquet", "linucb", ips=True)
    arms = np.searchsorted(np.array(result.image_ids), np.asarray(log.image_ids)[log.image])
    x = np.c_[np.ones(log.n_rows), log.features.astype(np.float64)]
    w = 1.0 / log.propensity
    reference = LinUCB().fit(x, arms, log.reward.astype(float), w)
    k = len(result.image_ids)
    np.testing.assert_allclose(result.policy.A_[:k], reference.A_[:k], rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(result.policy.theta_[:k], reference.theta_[:k], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(result.policy.n_[:k], np.bincount(arms, w, minlength=k))
    counts = train(log_v1 / "part-0.parquet", "take_rate")
    ref = TakeRateBandit().fit(None, arms, log.reward.astype(float))
    assert np.array_equal(counts.policy.successes_, ref.successes_[:k])
    assert np.array_equal(counts.policy.failures_, ref.failures_[:k])


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_file_fold_is_independent_of_chunk_order(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("fold") / "log.parquet"
    from slate.logs import write_impressions

    write_impressions(path, make_table(40, seed=3))
    log, _ = read_impressions(path)
    layout = Layout("hybrid", 3, arm_columns=(0, 1), shared_columns=(2, 3), ips=True)

    def fold(pieces):
        ff = FileFold(LogStatistics(layout), log.n_rows)
        for idx in pieces:
            ff.feed(log.take(np.asarray(idx, np.int64)))
        return ff.close()

    reference = fold([np.arange(log.n_rows)])
    cuts = sorted(data.draw(st.sets(st.integers(1, log.n_rows - 1), max_size=8)))
    pieces = np.split(np.arange(log.n_rows), cuts)
    order = data.draw(st.permutations(range(len(pieces))))
    got = fold([pieces[i] for i in order])
    ref_ids = sorted(reference.image_ids)
    got_pos = [got.image_ids.index(i) for i in ref_ids]
    ref_pos = [reference.image_ids.index(i) for i in ref_ids]
    for name in ("counts", "events", "A", "b", "B"):
        assert np.array_equal(getattr(got, name)[got_pos], getattr(reference, name)[ref_pos]), name
    for name in ("Z", "c", "totals"):
        assert np.array_equal(getattr(got, name), getattr(reference, name)), name


def test_logistic_thompson_trains_in_memory_only(log_v1):
    result = train(log_v1, "logistic_ts", params={"max_iter": 10})
    assert result.policy.n_features_ == 4
    with pytest.raises(InvalidProblemError, match=r"no sufficient statistics.*engine 'memory'"):
        train(log_v1, "logistic_ts", engine="stream")


@pytest.mark.parametrize("kwargs,message", [
    ({"policy": "linucb", "params": {"forgetting": 0.9}}, "'forgetting' parameter of LinUCB must be 1"),
    ({"policy": "hybrid_linucb", "params": {"shared_columns": [9]}}, "'shared_columns' parameter"),
    ({"policy": "hybrid_linucb", "params": {"arm_columns": []}}, "'arm_columns' parameter"),
    ({"policy": "linucb", "engine": "spark"}, "'engine' parameter of train"),
    ({"policy": "linucb", "options": {"chunk": 3}}, "Unknown train option"),
    ({"policy": "linucb", "engine": "dask", "n_workers": 0}, "'n_workers' parameter"),
])
def test_bad_arguments_name_the_field(log_v1, kwargs, message):
    with pytest.raises(InvalidProblemError, match=message):
        train(log_v1, **kwargs)
