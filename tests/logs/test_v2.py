"""slate.impressions/2 (flat, fast layout) and streaming a log in chunks of whole pages."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slate.logs import (
    ImpressionWriter,
    InvalidLogError,
    list_log_files,
    merge_reports,
    read_impressions,
    scan_impressions,
    to_version2,
    write_impressions,
)
from slate.logs.schema import SCHEMA_KEY, impressions_schema
from slate.logs.stream import page_ordered_units
from tests.logs.test_logs import CORRUPTIONS, ROW_CORRUPTIONS, base_rows, table_of

FIELDS = ("member_id", "session_id", "page_id", "timestamp", "title", "row", "col", "image",
          "candidates", "n_candidates", "shown", "propensity", "propensities", "explored",
          "reward", "engagement", "previous_image", "features", "source_row")


def assert_same_log(a, b):
    assert a.image_ids == b.image_ids and a.title_ids == b.title_ids
    for name in FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None and y is None) or np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), name
    assert a.rejections.rows.tolist() == b.rejections.rows.tolist()
    assert a.rejections.counts == b.rejections.counts


def test_version2_file_round_trips_every_value(tmp_path):
    table = table_of(base_rows())
    v1 = read_impressions(write_impressions(tmp_path / "v1.parquet", table))[0]
    path = write_impressions(tmp_path / "v2.parquet", table, version=2)
    schema = pq.read_schema(path)
    assert schema.metadata[SCHEMA_KEY] == b"slate.impressions/2"
    assert "candidate_set" in schema.names and "candidate_ids" not in schema.names
    assert [c for c in schema.names if c.startswith("feature_")] == ["feature_0", "feature_1"]
    assert not schema.field("feature_0").nullable
    v2, report = read_impressions(path)
    assert report.n_rejected == 0 and v2.schema == "slate.impressions/2"
    assert_same_log(v1, v2)


@pytest.mark.parametrize(("mutate", "reason"), CORRUPTIONS)
def test_version2_rejects_the_same_rows_for_the_same_reasons(mutate, reason):
    rows = base_rows()
    mutate(rows[4])
    v1, _r1 = read_impressions(table_of(rows))
    v2, r2 = read_impressions(to_version2(table_of(rows)))
    assert r2.rows.tolist() == [4] and r2.counts[reason] == 1
    assert_same_log(v1, v2)


def test_version2_tables_from_either_layout_and_in_batches(tmp_path):
    table = table_of(base_rows(n_pages=10))
    with ImpressionWriter(tmp_path / "a.parquet", version=2, row_group_size=8) as writer:
        for batch in table.to_batches(max_chunksize=7):
            writer.write(batch)
    with ImpressionWriter(tmp_path / "b.parquet", version=2, n_features=2) as writer:
        writer.write(to_version2(table))  # already version 2: passes through
    a, b = read_impressions(tmp_path / "a.parquet")[0], read_impressions(tmp_path / "b.parquet")[0]
    assert pq.ParquetFile(tmp_path / "a.parquet").num_row_groups == 4
    assert_same_log(a, b)


def test_version2_feature_vectors_of_another_length_are_bad_features():
    rows = base_rows()
    rows[2]["features"] = [1.0, 2.0, 3.0]
    rows[5]["features"] = None
    converted = to_version2(table_of(rows), n_features=2)
    assert np.isnan(converted.column("feature_0")[2].as_py())
    _, report = read_impressions(converted)
    assert report.rows_for("bad_features").tolist() == [2, 5]


BAD_V2 = [
    (lambda t: t.drop_columns(["candidate_set"]), r"required column\(s\) \['candidate_set'\]"),
    (lambda t: t.drop_columns(["feature_0"]), r"feature_0 to feature_0 without gaps; got \['feature_1'\]"),
    (lambda t: t.append_column("candidate_ids", pa.array([["a"]] * t.num_rows)),
     r"version-1 and version-2 columns"),
    (lambda t: t.set_column(t.schema.get_field_index("candidate_set"), "candidate_set",
                            pa.array([1] * t.num_rows)), r"'candidate_set' column .* string; got int64"),
]


@pytest.mark.parametrize(("change", "message"), BAD_V2)
def test_unreadable_version2_tables_raise_naming_the_column(change, message):
    with pytest.raises(InvalidLogError, match=message):
        read_impressions(change(to_version2(table_of(base_rows()))))


def test_version_tags_must_match_the_columns(tmp_path):
    v2 = to_version2(table_of(base_rows()))
    pq.write_table(v2.replace_schema_metadata({SCHEMA_KEY: b"slate.impressions/1"}), tmp_path / "x.parquet")
    with pytest.raises(InvalidLogError, match=r"got 'slate\.impressions/1' with column\(s\) \['candidate_set'"):
        read_impressions(tmp_path / "x.parquet")
    pq.write_table(v2.replace_schema_metadata({SCHEMA_KEY: b"slate.impressions/3"}), tmp_path / "y.parquet")
    with pytest.raises(InvalidLogError, match=r"got 'slate\.impressions/3'"):
        read_impressions(tmp_path / "y.parquet")
    with pytest.raises(InvalidLogError, match=r"'version' parameter of ImpressionWriter .* got 3"):
        ImpressionWriter(tmp_path / "z.parquet", version=3)
    with pytest.raises(InvalidLogError, match="must not contain the separator"):
        rows = base_rows()
        rows[0]["candidate_ids"] = ["a\x1fb", "c"]
        to_version2(table_of(rows))
    assert impressions_schema(version=2, n_features=3).names.count("feature_2") == 1


# ---------------------------------------------------------------------------- streaming
def corrupted_rows(seed: int, n_pages: int = 30) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = base_rows(n_pages=n_pages, cols=3)
    for target in rng.choice(len(rows), size=len(rows) // 10, replace=False):
        ROW_CORRUPTIONS[rng.integers(len(ROW_CORRUPTIONS))][0](rows[target])
    rows += [dict(rows[i], reward=1 - rows[i]["reward"]) for i in rng.choice(len(rows), 3)]
    order = np.argsort([r["page_id"] if r["page_id"] is not None else -1 for r in rows], kind="stable")
    return [rows[i] for i in order]  # pages in order (a duplicate sits next to its page)


@settings(max_examples=20)
@given(st.integers(0, 2**32 - 1), st.integers(2, 25), st.integers(4, 40), st.sampled_from([1, 2]))
def test_chunks_accept_and_reject_exactly_what_the_whole_file_does(tmp_path_factory, seed, group, chunk, version):
    path = tmp_path_factory.mktemp("scan") / "log.parquet"
    write_impressions(path, table_of(corrupted_rows(seed)), row_group_size=group, version=version)
    whole, report = read_impressions(path)
    chunks = list(scan_impressions(path, chunk_rows=chunk, n_features=2))
    assert sum(c.n_pages for c in chunks) == whole.n_pages  # no page is split
    merged = merge_reports([c.rejections for c in chunks], source=str(path))
    assert sorted(merged.rows.tolist()) == report.rows.tolist()
    assert merged.counts == report.counts and merged.n_read == report.n_read
    rows = np.concatenate([c.source_row for c in chunks])
    assert rows.tolist() == whole.source_row.tolist()
    ids = np.concatenate([np.asarray(c.image_ids)[c.image] for c in chunks])
    assert ids.tolist() == np.asarray(whole.image_ids)[whole.image].tolist()
    assert np.array_equal(np.concatenate([c.reward for c in chunks]), whole.reward)


def test_unordered_row_groups_are_read_as_one_chunk(tmp_path):
    rows = base_rows(n_pages=6)
    shuffled = rows[9:] + rows[:9]  # pages 103-105 before 100-102
    path = write_impressions(tmp_path / "log.parquet", table_of(shuffled), row_group_size=3)
    assert page_ordered_units(pq.ParquetFile(path).metadata) is None
    chunks = list(scan_impressions(path, chunk_rows=1))
    assert len(chunks) == 1 and chunks[0].n_rows == 18
    ordered = write_impressions(tmp_path / "ordered.parquet", table_of(rows), row_group_size=3)
    units = page_ordered_units(pq.ParquetFile(ordered).metadata, chunk_rows=1)
    assert [g for g, _ in units] == [[i] for i in range(6)] and not any(c for _, c in units)


def test_a_page_across_row_groups_is_carried_whole(tmp_path):
    path = write_impressions(tmp_path / "log.parquet", table_of(base_rows(n_pages=4)), row_group_size=2)
    units = page_ordered_units(pq.ParquetFile(path).metadata, chunk_rows=1)
    assert [c for _, c in units] == [True, True, False, True, True, False]
    chunks = list(scan_impressions(path, chunk_rows=1))
    assert [c.page_id.tolist() for c in chunks if c.n_rows] == [[100] * 3, [101] * 3, [102] * 3, [103] * 3]


def test_list_log_files_and_missing_sources(tmp_path):
    table = table_of(base_rows())
    for day in ("2024-01-02", "2024-01-01"):
        (tmp_path / f"date={day}").mkdir()
        write_impressions(tmp_path / f"date={day}" / "part.parquet", table)
    (tmp_path / "date=2024-01-01" / ".part.parquet.tmp").write_text("partial")
    files = list_log_files(tmp_path)
    assert [f.parent.name for f in files] == ["date=2024-01-01", "date=2024-01-02"]
    assert list_log_files(reversed(files)) == files
    assert sum(c.n_rows for c in scan_impressions(tmp_path)) == 18
    with pytest.raises(InvalidLogError, match="existing file or folder"):
        list_log_files(tmp_path / "nope")
    with pytest.raises(InvalidLogError, match=r"at least one \.parquet file"):
        list_log_files((tmp_path / "empty").mkdir() or tmp_path / "empty")
    with pytest.raises(InvalidLogError, match=r"'chunk_rows' parameter .* got 0"):
        next(scan_impressions(tmp_path, chunk_rows=0))
