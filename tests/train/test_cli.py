"""``slate train``: diagnostics (rows used and rejected by reason, images), files, exit codes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from slate.cli import main
from slate.logs import write_impressions
from slate.train import train
from tests.train_logs import make_table, write_log


@pytest.fixture(scope="module")
def bad_log(tmp_path_factory) -> Path:
    """A log with 3 rows of bad propensity, 2 of out-of-set reward, 1 of NaN features, and an
    image offered but never shown."""
    table = make_table(50, seed=1)
    n = table.num_rows
    prop = table.column("propensity").to_numpy().copy()
    prop[[0, 5, 9]] = 0.0
    reward = table.column("reward").to_numpy().copy()
    reward[[13, 17]] = 5
    feats = np.stack(table.column("features").to_numpy(zero_copy_only=False)).astype(np.float32)
    feats[21, 0] = np.nan
    cands = [list(c) for c in table.column("candidate_ids").to_pylist()]
    cands[30] = [*cands[30], "T2-extra"]  # offered once, never shown
    table = table.set_column(table.column_names.index("propensity"), "propensity", pa.array(prop))
    table = table.set_column(table.column_names.index("reward"), "reward", pa.array(reward, pa.int8()))
    table = table.set_column(table.column_names.index("features"), "features",
                             pa.array(list(feats), pa.list_(pa.float32())))
    table = table.set_column(table.column_names.index("candidate_ids"), "candidate_ids",
                             pa.array(cands, pa.list_(pa.string())))
    path = tmp_path_factory.mktemp("bad") / "log.parquet"
    write_impressions(path, table)
    assert table.num_rows == n
    return path


def test_diagnostics_count_rejections_and_images(bad_log, tmp_path, capsys):
    out = tmp_path / "model"
    assert main(["train", str(bad_log), "--policy", "linucb", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "200 read in 1 file(s), 194 used, 6 rejected" in printed
    assert "propensity_out_of_range" in printed and "never shown (prior only): 1: T2-extra" in printed
    diag = json.loads((out / "diagnostics.json").read_text())
    assert diag["rejected_by_reason"] == {"propensity_out_of_range": 3, "reward_out_of_label_set": 2,
                                          "bad_features": 1}
    assert diag["rows_used"] == 194 and diag["never_shown"] == ["T2-extra"]
    with open(out / "image_counts.csv") as fh:
        rows = {r["image_id"]: r for r in csv.DictReader(fh)}
    assert rows["T2-extra"] == {"image_id": "T2-extra", "impressions": "0", "explored": "0",
                                "plays": "0", "offered": "1"}
    assert sum(int(r["impressions"]) for r in rows.values()) == 194
    assert sorted(p.name for p in out.iterdir()) == [
        "diagnostics.json", "image_counts.csv", "model.json", "model.npz", "policy.toml", "weights.npz"]


def test_ips_weighting_and_effective_sample_size(tmp_path):
    log = write_log(tmp_path / "log", n_files=1, epsilon=0.3)
    plain = train(log, "take_rate")
    ips = train(log, "take_rate", ips=True)
    assert plain.diagnostics.effective_sample_size == plain.diagnostics.n_used
    assert ips.diagnostics.effective_sample_size < ips.diagnostics.n_used
    stats = ips.statistics
    assert stats.counts[:, 0].sum() == pytest.approx(stats.totals[0])
    assert ips.diagnostics.summary()["ips_weighted"] is True


def test_memory_and_stream_flags_write_the_same_arrays(tmp_path):
    log = write_log(tmp_path / "log", n_files=2, n_pages=60)
    for engine in ("memory", "stream"):
        assert main(["train", str(log), "--policy", "linucb", "--engine", engine, "--chunk-rows", "9",
                     "--output", str(tmp_path / engine)]) == 0
    with np.load(tmp_path / "memory" / "model.npz") as a, np.load(tmp_path / "stream" / "model.npz") as b:
        arrays = [k for k in a.files if k.startswith("state.")]  # the metadata holds the rng state
        assert a.files == b.files and all(np.array_equal(a[k], b[k]) for k in arrays)


def test_catalog_and_params(tmp_path):
    log = write_log(tmp_path / "log", n_files=1, n_pages=40)
    catalog = tmp_path / "catalog.txt"
    catalog.write_text("T0-i0\nZ-new\n\n")
    assert main(["train", str(log), "--policy", "hybrid_linucb", "--param", "alpha=0.5",
                 "--param", "shared_columns=[1,2]", "--param", "arm_columns=[0,3]",
                 "--catalog", str(catalog), "--output", str(tmp_path / "m")]) == 0
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert "Z-new" in meta["image_ids"] and meta["params"]["shared_columns"] == [1, 2]
    assert meta["params"]["alpha"] == 0.5


@pytest.mark.parametrize("argv,message", [
    (["train", "{missing}", "--policy", "linucb"], "must name an existing file or folder"),
    (["train", "{log}", "--policy", "nope"], "Unknown policy 'nope'"),
    (["train", "{log}", "--policy", "linucb", "--param", "alpha"], "KEY=VALUE"),
    (["train", "{log}", "--policy", "linucb", "--param", "beta=1"], "Unknown option 'beta' for policy 'linucb'; its options are alpha"),
    (["train", "{log}", "--policy", "hybrid_linucb", "--param", "arm_columns=\"ab\""], "Bad --param"),
    (["train", "{log}", "--policy", "linucb", "--param", "alpha=-1"], "'alpha' parameter of LinUCB"),
    (["train", "{log}", "--policy", "logistic_ts", "--engine", "stream"], "engine 'memory'"),
    (["train", "{log}", "--policy", "linucb", "--catalog", "{missing}"], "--catalog file must exist"),
    (["train", "{notlog}", "--policy", "linucb"], "notlog"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, argv, message):
    log = write_log(tmp_path / "log", n_files=1, n_pages=10)
    notlog = tmp_path / "notlog.parquet"
    notlog.write_text("not parquet")
    fill = {"log": str(log), "missing": str(tmp_path / "missing"), "notlog": str(notlog)}
    code = main([a.format(**fill) for a in argv] + ["--output", str(tmp_path / "m")])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_a_file_without_features_in_a_featured_log_is_an_error(tmp_path, capsys):
    log = write_log(tmp_path / "log", n_files=1, n_pages=20)
    table = make_table(20, seed=5, page_offset=1000).drop_columns(["features"])
    write_impressions(log / "part-9.parquet", table)
    assert main(["train", str(log), "--policy", "linucb", "--output", str(tmp_path / "m")]) == 2
    assert "part-9.parquet' has no inline features" in capsys.readouterr().err
    assert main(["train", str(log), "--policy", "take_rate", "--output", str(tmp_path / "m")]) == 0
