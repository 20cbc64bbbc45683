"""slate.logs: the impressions schema, writing, and validated reading with rejection counts."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from slate.logs import (
    SCHEMA,
    ImpressionWriter,
    InvalidLogError,
    RejectionReason,
    impressions_table,
    read_impressions,
    write_impressions,
)
from slate.logs.schema import SCHEMA_KEY

UTC = dt.timezone.utc


def base_rows(n_pages: int = 3, cols: int = 3, k: int = 3) -> list[dict]:
    """A valid log with every column: n_pages pages of one row of ``cols`` titles."""
    rows = []
    for p in range(n_pages):
        for c in range(cols):
            title = f"T{c}"
            cands = [f"{title}-{i}" for i in range(k)]
            props = [1.0 / k] * k
            shown = (p + c) % k
            rows.append({
                "member_id": p // 2, "session_id": p, "page_id": 100 + p,
                "timestamp": dt.datetime(2024, 1, 1, 10, p, tzinfo=UTC),
                "title_id": title, "row": 0, "col": c, "image_id": cands[shown],
                "candidate_ids": cands, "propensity": props[shown], "propensities": props,
                "explored": True, "reward": (p * c) % 2, "engagement": 1.5 * c,
                "previous_image_id": None if p == 0 else cands[(p + c - 1) % k],
                "features": [float(p), float(c)], "features_ref": f"f{p}",
            })
    return rows


def table_of(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def test_round_trip_keeps_every_value(tmp_path):
    rows = base_rows()
    path = write_impressions(tmp_path / "log.parquet", table_of(rows))
    log, report = read_impressions(path)
    assert report.n_read == len(rows) and report.n_rejected == 0 and log.n_rows == len(rows)
    assert pq.read_schema(path).metadata[SCHEMA_KEY] == b"slate.impressions/1"
    for i, r in enumerate(rows):
        assert log.title_ids[log.title[i]] == r["title_id"]
        assert log.image_ids[log.image[i]] == r["image_id"]
        cands = [log.image_ids[c] for c in log.candidates[i, : log.n_candidates[i]]]
        assert cands == r["candidate_ids"]
        assert cands[log.shown[i]] == r["image_id"]
        assert log.propensity[i] == pytest.approx(r["propensity"])
        assert log.propensities[i].tolist() == pytest.approx(r["propensities"])
        assert log.reward[i] == r["reward"] and log.explored[i] == r["explored"]
        assert log.engagement[i] == r["engagement"]
        prev = r["previous_image_id"]
        assert (log.previous_image[i] == -1) if prev is None else log.image_ids[log.previous_image[i]] == prev
        assert log.features[i].tolist() == r["features"]
        assert log.timestamp[i] == int(r["timestamp"].timestamp() * 1e6)
        assert (log.page_id[i], log.row[i], log.col[i]) == (r["page_id"], r["row"], r["col"])
    assert log.title_ids == tuple(sorted(log.title_ids))
    assert log.n_pages == 3 and log.page_index.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert not log.reward.flags.writeable and not log.candidates.flags.writeable


def test_ragged_candidates_are_padded_and_shown_found():
    rows = base_rows(n_pages=1, cols=3, k=4)
    rows[0]["candidate_ids"] = rows[0]["candidate_ids"][:2]
    rows[0]["propensities"] = [0.5, 0.5]
    rows[0]["image_id"], rows[0]["propensity"] = rows[0]["candidate_ids"][1], 0.5
    log, report = read_impressions(table_of(rows))
    assert report.n_rejected == 0
    assert log.k_max == 4 and log.n_candidates.tolist() == [2, 4, 4]
    assert log.candidates[0, 2:].tolist() == [-1, -1] and log.shown[0] == 1
    assert log.propensities[0].tolist() == [0.5, 0.5, 0.0, 0.0]


def _set(**values):
    def mutate(row):
        row.update(values)
    return mutate


ROW_CORRUPTIONS = [
    (_set(member_id=None), "missing_field"),
    (_set(timestamp=None), "missing_field"),
    (_set(title_id=None), "missing_field"),
    (_set(candidate_ids=None), "missing_field"),
    (_set(explored=None), "missing_field"),
    (_set(candidate_ids=[]), "malformed_candidates"),
    (_set(candidate_ids=["T1-0", "T1-0", "T1-1"]), "malformed_candidates"),
    (_set(candidate_ids=["T1-0", None, "T1-1"]), "malformed_candidates"),
    (_set(row=-1), "bad_position"),
    (_set(propensity=None), "missing_propensity"),
    (_set(propensity=0.0), "propensity_out_of_range"),
    (_set(propensity=1.2), "propensity_out_of_range"),
    (_set(propensity=float("nan")), "propensity_out_of_range"),
    (_set(image_id="T9-9"), "shown_not_candidate"),
    (_set(propensities=[0.5, 0.5]), "bad_propensity_vector"),
    (_set(propensities=[0.5, 0.5, 0.5]), "bad_propensity_vector"),
    (_set(propensities=[0.9, 0.05, 0.05]), "bad_propensity_vector"),  # disagrees at the shown image
    (_set(propensities=None), "bad_propensity_vector"),
    (_set(reward=None), "missing_reward"),
    (_set(reward=2), "reward_out_of_label_set"),
    (_set(reward=-1), "reward_out_of_label_set"),
    (_set(engagement=-3.0), "bad_engagement"),
    (_set(engagement=float("inf")), "bad_engagement"),
    (_set(features=[1.0]), "bad_features"),
    (_set(features=None), "bad_features"),
    (_set(features=[float("nan"), 1.0]), "bad_features"),
    # two faults: counted once, under the first reason in check order
    (_set(reward=7, propensity=None), "missing_propensity"),
]
CORRUPTIONS = [
    *ROW_CORRUPTIONS,
    (_set(title_id="T0"), "duplicate_impression"),  # row 4 is T1 of page 101, row 3 its T0
    (_set(title_id="TX", col=0), "duplicate_position"),  # TX at the T0 slot
]


@pytest.mark.parametrize(("mutate", "reason"), CORRUPTIONS)
def test_each_bad_row_is_counted_under_its_reason(mutate, reason):
    rows = base_rows()
    mutate(rows[4])
    log, report = read_impressions(table_of(rows))
    assert report.n_rejected == 1 and report.rows.tolist() == [4]
    assert report.counts[reason] == 1 and sum(report.counts.values()) == 1
    assert report.rows_for(reason).tolist() == [4]
    assert log.n_rows == len(rows) - 1 and 4 not in log.source_row.tolist()
    assert report.to_dict()["rejected_by_reason"] == {reason: 1}
    assert reason in str(report)


def test_unknown_image_against_a_catalog():
    rows = base_rows()
    catalog = {c for r in rows for c in r["candidate_ids"]}
    assert read_impressions(table_of(rows), known_images=catalog)[1].n_rejected == 0
    catalog.discard("T2-1")  # candidate of the three T2 rows
    _log, report = read_impressions(table_of(rows), known_images=catalog)
    assert report.counts["unknown_image"] == 3 and report.rows.tolist() == [2, 5, 8]


def test_duplicate_keeps_the_first_valid_row():
    rows = base_rows()
    bad_copy_of_2 = dict(rows[2], propensity=None)
    copy_of_1 = dict(rows[1], reward=1 - rows[1]["reward"])
    rows = [bad_copy_of_2, rows[0], rows[1], copy_of_1, *rows[2:]]
    log, report = read_impressions(table_of(rows))
    assert report.counts["missing_propensity"] == 1 and report.counts["duplicate_impression"] == 1
    assert report.rows.tolist() == [0, 3]
    kept = {(int(log.page_id[i]), log.title_ids[log.title[i]]): int(log.reward[i]) for i in range(log.n_rows)}
    assert kept[(100, "T1")] == base_rows()[1]["reward"]  # the first copy
    assert (100, "T2") in kept  # the valid row after the rejected copy


def test_optional_columns_may_be_absent_or_all_null():
    rows = base_rows()
    for r in rows:
        for c in ("propensities", "engagement", "previous_image_id", "features", "features_ref"):
            del r[c]
    table = pa.Table.from_pylist(rows, schema=pa.schema([SCHEMA.field(c) for c in rows[0]]))
    log, report = read_impressions(table)
    assert report.n_rejected == 0
    assert log.propensities is None and log.features is None and log.engagement is None
    assert log.previous_image is None and log.n_features == 0
    nulls = table.append_column(SCHEMA.field("features"), pa.nulls(table.num_rows, pa.list_(pa.float32())))
    log2, report2 = read_impressions(nulls)
    assert report2.n_rejected == 0 and log2.features is None


@given(
    st.lists(st.integers(0, len(ROW_CORRUPTIONS) - 1), max_size=20),
    st.lists(st.integers(0, 35), max_size=5),
    st.integers(0, 2**32 - 1),
)
def test_corrupted_rows_leave_exactly_the_clean_rows(kinds, duplicated, seed):
    rng = np.random.default_rng(seed)
    rows = base_rows(n_pages=12, cols=3)
    copies = [dict(rows[d], reward=1 - rows[d]["reward"]) for d in duplicated]  # valid copies
    targets = rng.choice(len(rows), size=len(kinds), replace=False)
    for kind, target in zip(kinds, targets, strict=False):
        ROW_CORRUPTIONS[kind][0](rows[target])
    rows += copies
    log, report = read_impressions(table_of(rows))
    bad = set(report.rows.tolist())
    assert report.n_rejected == len(bad) == sum(report.counts.values())
    copies_kept = sum(1 for d in set(duplicated) if d in set(targets.tolist()))
    assert bad == set(targets.tolist()) | set(range(36, len(rows))) - set(
        36 + duplicated.index(d) for d in set(duplicated) if d in set(targets.tolist())
    )
    assert report.counts["duplicate_impression"] == len(duplicated) - copies_kept
    good = [i for i in range(len(rows)) if i not in bad]
    assert log.source_row.tolist() == good
    ref, ref_report = read_impressions(table_of([rows[i] for i in good]))
    assert ref_report.n_rejected == 0
    assert np.array_equal(ref.reward, log.reward) and np.array_equal(ref.propensity, log.propensity)
    assert [ref.image_ids[i] for i in ref.image] == [log.image_ids[i] for i in log.image]


def test_multi_chunk_file_and_folder_give_the_same_codes(tmp_path):
    rows = base_rows(n_pages=20)
    table = table_of(rows)
    one, _ = read_impressions(write_impressions(tmp_path / "one.parquet", table))
    many, _ = read_impressions(write_impressions(tmp_path / "many.parquet", table, row_group_size=4))
    assert pq.ParquetFile(tmp_path / "many.parquet").num_row_groups == 15
    folder = tmp_path / "logs"
    for day in range(2):
        (folder / f"date=2024-01-0{day + 1}").mkdir(parents=True)
        write_impressions(folder / f"date=2024-01-0{day + 1}" / "part.parquet", table.slice(day * 30, 30))
    parted, report = read_impressions(folder)
    assert report.ignored_columns == ("date",)
    for other in (many, parted):
        assert other.image_ids == one.image_ids and other.title_ids == one.title_ids
        for name in ("image", "candidates", "title", "shown", "previous_image", "reward"):
            assert np.array_equal(getattr(other, name), getattr(one, name)), name


def test_writer_streams_batches_into_row_groups(tmp_path):
    table = table_of(base_rows(n_pages=10))
    with ImpressionWriter(tmp_path / "s.parquet", row_group_size=8, metadata={"policy": "eps"}) as w:
        for batch in table.to_batches(max_chunksize=7):
            w.write(batch)
    meta = pq.ParquetFile(tmp_path / "s.parquet")
    assert meta.metadata.num_rows == 30 and meta.num_row_groups == 4
    assert meta.schema_arrow.metadata[b"policy"] == b"eps"
    log, report = read_impressions(tmp_path / "s.parquet")
    assert log.n_rows == 30 and report.n_rejected == 0


def test_impressions_table_from_numpy_matches_pylist():
    rows = base_rows()
    n = len(rows)
    table = impressions_table(
        member_id=[r["member_id"] for r in rows], session_id=[r["session_id"] for r in rows],
        page_id=[r["page_id"] for r in rows],
        timestamp=np.array([r["timestamp"].replace(tzinfo=None) for r in rows], dtype="datetime64[us]"),
        title_id=[r["title_id"] for r in rows], row=[0] * n, col=[r["col"] for r in rows],
        image_id=np.array([r["image_id"] for r in rows]),
        candidate_ids=np.array([r["candidate_ids"] for r in rows]),
        propensity=[r["propensity"] for r in rows], explored=[True] * n,
        reward=[r["reward"] for r in rows], propensities=np.array([r["propensities"] for r in rows]),
        engagement=[r["engagement"] for r in rows],
        previous_image_id=[r["previous_image_id"] for r in rows],
        features=np.array([r["features"] for r in rows]), features_ref=[r["features_ref"] for r in rows],
    )
    assert table.equals(table_of(rows))


BAD_READS = [
    (lambda t: t.drop_columns(["propensity"]), r"required column\(s\) \['propensity'\]"),
    (lambda t: t.set_column(0, "member_id", pa.array(["a"] * t.num_rows)), r"'member_id' column .* integer; got string"),
    (lambda t: t.set_column(8, "candidate_ids", pa.array(["a"] * t.num_rows)), r"'candidate_ids' column .* list; got string"),
    (lambda t: t.set_column(3, "timestamp", pa.array([1] * t.num_rows)), r"'timestamp' column .* timestamp; got int64"),
]


@pytest.mark.parametrize(("change", "message"), BAD_READS)
def test_unreadable_tables_raise_naming_the_column(change, message):
    with pytest.raises(InvalidLogError, match=message):
        read_impressions(change(table_of(base_rows())))


def test_bad_files_and_sources_raise(tmp_path):
    table = table_of(base_rows())
    pq.write_table(table.replace_schema_metadata(None), tmp_path / "plain.parquet")
    with pytest.raises(InvalidLogError, match=r"must carry 'slate\.schema'"):
        read_impressions(tmp_path / "plain.parquet")
    assert read_impressions(tmp_path / "plain.parquet", strict_version=False)[0].n_rows == 9
    pq.write_table(table.replace_schema_metadata({SCHEMA_KEY: b"slate.impressions/2"}), tmp_path / "v2.parquet")
    with pytest.raises(InvalidLogError, match=r"got 'slate\.impressions/2'"):
        read_impressions(tmp_path / "v2.parquet")
    with pytest.raises(InvalidLogError, match="existing file or folder; got"):
        read_impressions(tmp_path / "nope.parquet")
    with pytest.raises(InvalidLogError, match="path or a pyarrow Table; got list"):
        read_impressions([1, 2])  # type: ignore[arg-type]
    with pytest.raises(InvalidLogError, match=r"unknown column\(s\) \['clicks'\]"):
        write_impressions(tmp_path / "x.parquet", table.append_column("clicks", pa.array([1] * 9)))
    with pytest.raises(InvalidLogError, match=r"required column\(s\) \['reward'\]"):
        write_impressions(tmp_path / "x.parquet", table.drop_columns(["reward"]))
    with pytest.raises(InvalidLogError, match=r"'row_group_size' parameter .* got 0"):
        ImpressionWriter(tmp_path / "x.parquet", row_group_size=0)
    with pytest.raises(InvalidLogError, match="'propensity' column must be castable"):
        write_impressions(tmp_path / "x.parquet", table.set_column(9, "propensity", pa.array(["x"] * 9)))


def test_reason_codes_are_stable():
    # the integer codes in RejectionReport.reasons index tuple(RejectionReason): never reorder
    assert [r.value for r in RejectionReason][:3] == ["missing_field", "malformed_candidates", "bad_position"]
    values = [r.value for r in RejectionReason]
    assert values[values.index("duplicate_position") + 1] == "corrupt_row_group"  # appended, not inserted


@given(st.integers(0, 2**32 - 1), st.booleans())
def test_duplicate_lookup_table_and_sort_fallback_agree(seed, shuffled):
    from slate.logs.parquet import _first_duplicates, _page_order

    rng = np.random.default_rng(seed)
    page = rng.integers(0, 40, 400)
    page = page if shuffled else np.sort(page)
    key = rng.integers(0, 25, 400)
    alive = rng.random(400) < 0.9
    order = _page_order(page)
    table = _first_duplicates(page, order, key, 25, alive)
    fallback = _first_duplicates(page, order, key, 10**9, alive)  # forces the sort path
    assert np.array_equal(table, fallback)
    # brute force: a row is a duplicate iff an earlier alive row has its (page, key)
    seen, expected = set(), np.zeros(400, bool)
    for i in range(400):
        if alive[i]:
            expected[i] = (page[i], key[i]) in seen
            seen.add((page[i], key[i]))
    assert np.array_equal(table, expected)


def test_two_members_pages_under_one_page_id_are_counted_not_merged():
    rows = base_rows()
    page = rows[4]["page_id"]
    same_page = [i for i, r in enumerate(rows) if r["page_id"] == page]
    intruder = same_page[-1]
    rows[intruder]["member_id"] = rows[intruder]["member_id"] + 1000  # another member's page, same id
    log, report = read_impressions(table_of(rows))
    assert report.counts["page_id_shared"] == 1 and report.rows.tolist() == [intruder]
    assert log.n_rows == len(rows) - 1


def test_page_id_shared_is_appended_to_the_reason_codes():
    assert [r.value for r in RejectionReason][-2:] == ["corrupt_row_group", "page_id_shared"]
