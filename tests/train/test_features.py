"""slate.train with a feature store: logs that reference their features through ``features_ref``."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from slate.cli import main
from slate.errors import SlateError
from slate.logs import write_impressions
from slate.train import train
from slate.train.features import FeatureStore, load_feature_store
from tests.train_logs import make_table


@pytest.fixture
def logs(tmp_path):
    """The same rows with inline features (``inline/``) and by reference (``ref/`` + store);
    rows 5 and 9 have no reference, row 7 a key the store lacks."""
    table = make_table(60, seed=4)
    feats = np.stack(table.column("features").to_numpy(zero_copy_only=False)).astype(np.float32)
    n = table.num_rows
    refs = [f"k{i}" for i in range(n)]
    refs[5] = refs[9] = None
    refs[7] = "k-missing"
    by_ref = table.drop_columns(["features"]).append_column("features_ref", pa.array(refs, pa.string()))
    (tmp_path / "ref").mkdir()
    write_impressions(tmp_path / "ref" / "log.parquet", by_ref, row_group_size=50)
    keys = [f"k{i}" for i in range(n)][::-1]  # any order
    pq.write_table(pa.table({"key": keys, "feature_0": feats[::-1, 0], "feature_1": feats[::-1, 1],
                             "feature_2": feats[::-1, 2]}), tmp_path / "store.parquet")
    keep = np.setdiff1d(np.arange(n), [5, 7, 9])
    (tmp_path / "inline").mkdir()
    write_impressions(tmp_path / "inline" / "log.parquet", table.take(pa.array(keep)))
    return tmp_path


def test_the_reader_keeps_null_references_null(logs):
    from slate.logs import read_impressions

    log, _ = read_impressions(logs / "ref" / "log.parquet")  # dictionary-decoded strings
    assert log.features_ref[5] is None and log.features_ref[9] is None and log.features_ref[6] == "k6"


def test_store_features_give_the_inline_model_bit_for_bit(logs):
    inline = train(logs / "inline", "linucb")
    for engine, options in (("memory", {}), ("stream", {"chunk_rows": 7})):
        stored = train(logs / "ref", "linucb", engine=engine,
                       options={"feature_store": logs / "store.parquet", **options})
        assert stored.diagnostics.left_out == {"missing_features_ref": 2, "unknown_features_ref": 1}
        assert stored.diagnostics.n_used == inline.diagnostics.n_used == 237
        for name in ("A", "b", "counts", "events"):
            assert np.array_equal(getattr(stored.statistics, name), getattr(inline.statistics, name)), name
        assert np.array_equal(stored.policy.theta_, inline.policy.theta_)


def test_cli_prints_rows_left_out(logs, tmp_path, capsys):
    code = main(["train", str(logs / "ref"), "--policy", "hybrid_linucb", "--feature-store",
                 str(logs / "store.parquet"), "--output", str(tmp_path / "m")])
    assert code == 0
    out = capsys.readouterr().out
    assert "left out missing_features_ref" in out and "left out unknown_features_ref" in out


@pytest.mark.parametrize("table,message", [
    (pa.table({"id": ["a"], "feature_0": [1.0]}), "must have a 'key' column"),
    (pa.table({"key": ["a", "a"], "feature_0": [1.0, 2.0]}), "repeats the key 'a'"),
    (pa.table({"key": ["a"], "other": [1.0]}), "must have 'features' or 'feature_j'"),
    (pa.table({"key": ["a"], "feature_0": [float("nan")]}), "non-finite"),
])
def test_bad_stores_are_one_line_errors(tmp_path, table, message):
    pq.write_table(table, tmp_path / "s.parquet")
    with pytest.raises(SlateError, match=message):
        load_feature_store(tmp_path / "s.parquet")


def test_list_column_store_and_lookup():
    store = FeatureStore.from_arrays(["b", "a", "c"], [[2.0, 0.0], [1.0, 0.0], [3.0, 1.0]])
    x, present, found = store.lookup(np.array(["c", None, "q", "a"], dtype=object), 4)
    assert x.tolist() == [[3.0, 1.0], [0.0, 0.0], [0.0, 0.0], [1.0, 0.0]]
    assert present.tolist() == [True, False, True, True] and found.tolist() == [True, False, False, True]
