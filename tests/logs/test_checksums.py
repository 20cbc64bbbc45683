"""Page checksums in Parquet logs: written by default, verified on read; a damaged row group is
reported with its file and row group (its rows counted as ``corrupt_row_group``) and the rest of
the log still reads, in memory, streamed and on dask."""

from __future__ import annotations

import struct

import numpy as np
import pyarrow.parquet as pq
import pytest

from slate.logs import InvalidLogError, read_impressions, scan_impressions, write_impressions
from slate.logs.stream import merge_reports
from slate.replay import LinearPolicy
from slate.replay.distributed import evaluate_dask, evaluate_stream
from tests.replay.test_world import World

FIELDS = ("member_id", "page_id", "timestamp", "row", "col", "propensity", "explored", "reward",
          "n_candidates", "shown", "source_row")


def decoded(log):
    """The log's rows with ids decoded (vocabulary codes depend on which rows were read)."""
    out = {f: getattr(log, f) for f in FIELDS}
    out["title"] = np.array(log.title_ids, dtype=object)[log.title]
    out["image"] = np.array(log.image_ids, dtype=object)[log.image]
    cand = np.array((*log.image_ids, ""), dtype=object)[log.candidates]
    out["candidates"] = np.array(["|".join(r) for r in cand], dtype=object)
    if log.features is not None:
        out["features"] = log.features
    return out


def same_rows(a, b, keep=None):
    """Whether log ``a`` holds exactly the rows of ``b`` (or of ``b``'s rows selected by keep)."""
    da, db = decoded(a), decoded(b)
    if keep is not None:
        db = {k: v[keep] for k, v in db.items()}
    return all(np.array_equal(da[k], db[k]) for k in db)


def data_region(path):
    """(start, end) byte offsets of a Parquet file's column chunks (between magic and footer)."""
    data = path.read_bytes()
    (footer,) = struct.unpack("<I", data[-8:-4])
    return 4, len(data) - 8 - footer


@pytest.fixture(scope="module")
def world_log(tmp_path_factory):
    root = tmp_path_factory.mktemp("checksums")
    world = World(seed=2, n_slots=4)
    table = world.to_table(world.simulate(300, "softmax", seed=1))
    path = write_impressions(root / "log.parquet", table, version=2, row_group_size=300)
    return root, path, table


def classify(path, flipped, base):
    """'detected' (reported, the rest identical), 'harmless' (nothing reported, all identical),
    or 'silent' (values changed without a report)."""
    log, report = read_impressions(flipped)
    if report.damaged:
        lost = report.rows_for("corrupt_row_group")
        assert report.counts["corrupt_row_group"] == len(lost) > 0
        assert all(str(flipped) in d and "row group" in d for d in report.damaged)
        keep = ~np.isin(base.source_row, lost)
        return "detected" if same_rows(log, base, keep) else "silent"
    return "harmless" if same_rows(log, base) else "silent"


def test_forty_bit_flips_in_the_data_region_are_never_accepted_silently(world_log, tmp_path):
    _, path, _ = world_log
    base, _ = read_impressions(path)
    data = bytearray(path.read_bytes())
    start, end = data_region(path)
    rng = np.random.default_rng(12)
    outcomes = {"detected": 0, "harmless": 0, "silent": 0}
    flipped = tmp_path / "flipped.parquet"
    for _ in range(40):
        copy = bytearray(data)
        copy[int(rng.integers(start, end))] ^= 1 << int(rng.integers(8))
        flipped.write_bytes(copy)
        outcomes[classify(path, flipped, base)] += 1
    assert outcomes["silent"] == 0, outcomes
    assert outcomes["detected"] >= 30, outcomes  # most flips land in checksummed page data


def test_without_checksums_some_flips_change_values_silently(world_log, tmp_path):
    """The control: the same flips in a file written without page checksums do get through."""
    _, _, table = world_log
    path = write_impressions(tmp_path / "plain.parquet", table, version=2, row_group_size=300,
                             page_checksums=False)
    base, _ = read_impressions(path)
    data = bytearray(path.read_bytes())
    start, end = data_region(path)
    rng = np.random.default_rng(12)
    silent = 0
    flipped = tmp_path / "flipped.parquet"
    for _ in range(40):
        copy = bytearray(data)
        copy[int(rng.integers(start, end))] ^= 1 << int(rng.integers(8))
        flipped.write_bytes(copy)
        try:
            silent += classify(path, flipped, base) == "silent"
        except InvalidLogError:
            continue
    assert silent > 0


def damage_group(path, group, out):
    """A copy of ``path`` with one byte of ``group``'s first column chunk flipped."""
    meta = pq.ParquetFile(path).metadata
    chunk = meta.row_group(group).column(0)
    start = chunk.dictionary_page_offset or chunk.data_page_offset
    data = bytearray(path.read_bytes())
    data[start + chunk.total_compressed_size - 3] ^= 0x10  # inside the page data, past the header
    out.write_bytes(data)
    return out


def test_a_damaged_row_group_is_reported_and_the_rest_reads(world_log, tmp_path):
    _, path, table = world_log
    base, _ = read_impressions(path)
    bad = damage_group(path, 1, tmp_path / "bad.parquet")
    log, report = read_impressions(bad)
    assert report.counts["corrupt_row_group"] == 300 and report.n_read == table.num_rows
    assert report.rows_for("corrupt_row_group").tolist() == list(range(300, 600))
    assert len(report.damaged) == 1 and f"{bad}: row group 1 (300 rows)" in report.damaged[0]
    assert "CRC" in report.damaged[0] and "damaged:" in str(report)
    assert report.to_dict()["damaged"] == list(report.damaged)
    keep = (base.source_row < 300) | (base.source_row >= 600)
    assert same_rows(log, base, keep)

    chunks = list(scan_impressions(bad, chunk_rows=300))
    streamed = merge_reports([c.rejections for c in chunks])
    assert streamed.counts == report.counts and streamed.damaged == report.damaged
    assert np.array_equal(np.concatenate([c.source_row for c in chunks]), log.source_row)


def test_stream_and_dask_replay_read_around_a_damaged_row_group(world_log, tmp_path):
    _, path, table = world_log
    (tmp_path / "log").mkdir()
    damage_group(path, 2, tmp_path / "log" / "a.parquet")
    write_impressions(tmp_path / "log" / "b.parquet", table.slice(0, 600), version=2, row_group_size=300)
    clean = tmp_path / "clean"
    clean.mkdir()
    write_impressions(clean / "a.parquet", table.slice(0, 600), version=2, row_group_size=300)
    write_impressions(clean / "a2.parquet", table.slice(900), version=2, row_group_size=300)
    write_impressions(clean / "b.parquet", table.slice(0, 600), version=2, row_group_size=300)
    log, _ = read_impressions(path)
    policy = LinearPolicy(log.image_ids, np.random.default_rng(0).normal(size=(len(log.image_ids), log.n_features)))
    names = ["snips", "ips"]
    damaged = evaluate_stream(tmp_path / "log", policy, names, n_bootstrap=10, seed=1)
    expected = evaluate_stream(clean, policy, names, n_bootstrap=10, seed=1)
    for k in names:
        assert damaged.estimates[k].value == pytest.approx(expected.estimates[k].value, rel=1e-12)
        assert damaged.estimates[k].n_rows == expected.estimates[k].n_rows
    assert damaged.rejections.counts["corrupt_row_group"] == 300
    assert len(damaged.rejections.damaged) == 1 and "a.parquet: row group 2" in damaged.rejections.damaged[0]

    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        on_dask = evaluate_dask(tmp_path / "log", policy, names, client=client, n_bootstrap=10, seed=1)
    for k in names:
        assert on_dask.estimates[k] == damaged.estimates[k], k
    assert on_dask.rejections.damaged == damaged.rejections.damaged
    assert on_dask.rejections.counts == damaged.rejections.counts


def test_a_file_with_a_broken_footer_is_reported_and_the_folder_still_reads(world_log, tmp_path):
    _, path, table = world_log
    write_impressions(tmp_path / "a.parquet", table.slice(0, 600), version=2, row_group_size=300)
    data = bytearray(path.read_bytes())
    _, end = data_region(path)
    data[end + 4 : -8] = b"\xff" * (len(data) - 8 - end - 4)  # the footer scrambled
    (tmp_path / "b.parquet").write_bytes(data)
    log, report = read_impressions(tmp_path)
    assert log.n_rows + report.n_rejected == 600
    assert len(report.damaged) == 1 and "b.parquet: unreadable file" in report.damaged[0]
    chunks = list(scan_impressions(tmp_path))
    assert sum(c.n_rows for c in chunks) == log.n_rows
    assert merge_reports([c.rejections for c in chunks]).damaged == report.damaged
    with pytest.raises(InvalidLogError, match=r"b\.parquet' cannot be read as Parquet"):
        read_impressions(tmp_path / "b.parquet")


def test_every_writer_stores_page_checksums(tmp_path):
    """The decision logger's files (through write_impressions) and the sweep's table: a flipped
    byte inside a data page is caught by verification."""
    from slate.serve import DecisionLogger
    from tests.serve.test_log import run_pages

    with DecisionLogger(tmp_path / "log", batch_pages=20, partition=None) as logger:
        for d in run_pages(None, 20):
            logger.append(d)
    file = logger.files_[0]
    bad = damage_group(file, 0, tmp_path / "bad.parquet")
    with pytest.raises(OSError, match="CRC"):
        pq.read_table(bad, page_checksum_verification=True)
    _, report = read_impressions(bad)
    assert report.counts["corrupt_row_group"] == logger.rows_written_
