"""slate.logs.mapping: CSV/Parquet logs with other names, id types and time formats."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from slate.cli import main
from slate.logs import InvalidLogError, read_impressions
from slate.logs.imports import stable_id
from slate.logs.mapping import import_mapped, load_mapping

MAPPING = """
[source]
format = "csv"
delimiter = ";"

[columns]
member_id = "user"
session_id = "visit"
page_id = "request"
timestamp = "when"
title_id = "slot"
image_id = "shown"
candidate_ids = "options"
propensity = "prob"
reward = "minutes"
explored = "random"
engagement = "minutes"
features = ["f1", "f2"]

[convert]
candidate_separator = "|"
timestamp = "%d/%m/%Y %H:%M"
utc_offset_minutes = 60
reward_threshold = 2.0
"""

CSV = """user;visit;request;when;slot;shown;options;prob;minutes;random;f1;f2
u-1;10;r1;01/03/2024 21:00;T1;a;a|b;0.5;5.0;1;0.1;0.2
u-1;10;r1;01/03/2024 21:00;T2;c;c|d|e;0.25;0.5;0;0.3;0.4
42;11;r2;02/03/2024 09:30;T1;b;a|b;0.5;0;1;0.5;0.6
u-2;12;r3;31/02/2024 09:30;T1;b;a|b;0.5;0;1;0.5;0.6
u-2;12;r4;02/03/2024 09:30;T1;;a|b;0.5;0;1;0.5;0.6
u-2;12;r5;02/03/2024 09:30;T1;b;a|b;half;0;1;0.5;0.6
u-2;12;r6;02/03/2024 09:30;T1;b;a|b;0.5;0;1;0.5
u-3;13;r7;02/03/2024 09:30;T1;z;a|b;0.5;0;1;0.5;0.6
u-3;13;r8;02/03/2024 09:30;T1;a;a|b;1.5;0;1;0.5;0.6
"""


@pytest.fixture
def files(tmp_path):
    (tmp_path / "map.toml").write_text(MAPPING)
    (tmp_path / "log.csv").write_text(CSV)
    return tmp_path


def test_csv_with_every_conversion_and_rejections_by_reason(files):
    report = import_mapped(files / "log.csv", files / "map.toml", files / "out.parquet")
    assert report.n_read == 9
    assert dict(report.rejected) == {"bad_timestamp": 1, "missing_value": 1, "bad_number": 1, "malformed_row": 1}
    assert dict(report.reader_rejected) == {"shown_not_candidate": 1, "propensity_out_of_range": 1}
    assert report.n_written == 3
    log, rejected = read_impressions(files / "out.parquet")
    assert rejected.n_rejected == 0 and log.n_rows == 3
    assert log.member_id.tolist() == [stable_id("u-1"), stable_id("u-1"), 42]  # text hashed, integers kept
    assert log.page_id.tolist() == [stable_id("r1")] * 2 + [stable_id("r2")]
    assert log.session_id.tolist() == [10, 10, 11]
    # 01/03/2024 21:00 at UTC+1 is 20:00 UTC
    assert log.timestamp[0] == np.datetime64("2024-03-01T20:00", "us").astype(np.int64)
    assert log.reward.tolist() == [1, 0, 0] and log.engagement.tolist() == [5.0, 0.5, 0.0]
    assert log.explored.tolist() == [True, False, True]
    assert log.col.tolist() == [0, 1, 0]  # position on the page when no column is mapped
    np.testing.assert_allclose(log.features, [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]], rtol=1e-6)
    ids = np.asarray(log.image_ids)
    assert [ids[c[c >= 0]].tolist() for c in log.candidates] == [["a", "b"], ["c", "d", "e"], ["a", "b"]]


def test_parquet_source_with_typed_columns(tmp_path):
    table = pa.table({
        "uid": pa.array([7, 8], pa.int64()), "pid": pa.array(["p1", "p2"]),
        "t": pa.array([1_709_323_200_000, 1_709_323_260_000], pa.int64()),
        "title": ["T1", "T1"], "img": ["a", "b"], "cands": pa.array([["a", "b"], ["a", "b"]]),
        "p": [0.5, 0.5], "click": [True, False], "pos": [3, 4],
    })
    pq.write_table(table, tmp_path / "log.parquet")
    (tmp_path / "map.toml").write_text("""
[columns]
member_id = "uid"
page_id = "pid"
timestamp = "t"
title_id = "title"
image_id = "img"
candidate_ids = "cands"
propensity = "p"
reward = "click"
col = "pos"
[convert]
timestamp = "unix_ms"
""")
    report = import_mapped(tmp_path / "log.parquet", tmp_path / "map.toml", tmp_path / "out.parquet", version=2)
    assert report.n_written == 2 and not report.rejected
    log, _ = read_impressions(tmp_path / "out.parquet")
    assert log.schema == "slate.impressions/2"
    assert log.member_id.tolist() == [7, 8] and log.reward.tolist() == [1, 0] and log.col.tolist() == [3, 4]
    assert log.timestamp.tolist() == [1_709_323_200_000_000, 1_709_323_260_000_000]
    assert log.explored.tolist() == [True, True]  # propensity < 1 by default


@pytest.mark.parametrize("text,message", [
    ("[columns]\nmember_id = 'u'\n", "invalid at 'columns.page_id': Field required"),
    ("[columns\n", "is not valid TOML"),
    ("colums = 1\n", "invalid at 'columns'"),
    (MAPPING.replace('format = "csv"', 'format = "xlsx"'), "invalid at 'source.format'"),
    (MAPPING.replace("[convert]", "[convert]\ncolour = 1"), "invalid at 'convert.colour': Extra inputs"),
    (MAPPING.replace('prob"', 'probability"'), "source column(s) ['probability']"),
])
def test_mapping_errors_are_one_line_and_exit_2(files, capsys, text, message):
    (files / "bad.toml").write_text(text)
    with pytest.raises(InvalidLogError) as err:
        if "source column" in message:
            import_mapped(files / "log.csv", files / "bad.toml", files / "o.parquet")
        else:
            load_mapping(files / "bad.toml")
    assert message in str(err.value) and "\n" not in str(err.value)
    code = main(["import", str(files / "log.csv"), "--map", str(files / "bad.toml"),
                 "--output", str(files / "o.parquet")])
    stderr = capsys.readouterr().err
    assert code == 2 and message in stderr and stderr.count("\n") == 1


def test_cli_import_mapped(files, capsys):
    assert main(["import", str(files / "log.csv"), "--map", str(files / "map.toml"),
                 "--output", str(files / "cli.parquet")]) == 0
    out = capsys.readouterr().out
    assert "9 rows read, 4 rejected, 3 impression rows written" in out
    assert "reader rejected shown_not_candidate" in out
    assert main(["import", str(files / "missing.csv"), "--map", str(files / "map.toml"),
                 "--output", str(files / "cli.parquet")]) == 2
    assert main(["import", str(files / "log.csv"), "--map", str(files / "nope.toml"),
                 "--output", str(files / "cli.parquet")]) == 2
    assert "mapping file must exist" in capsys.readouterr().err


def test_number_and_iso_timestamp_fast_paths_agree_with_the_row_by_row_parse():
    from slate.logs.mapping import ConvertOptions, _numbers, _timestamps

    good = pa.array(["2024-03-01T20:00:00Z", "2024-03-01T20:00:00.25+01:00", None])
    mixed = pa.array(["2024-03-01T20:00:00Z", "2024-03-01T20:00:00.25+01:00", "never"])
    fast, slow = _timestamps(good, ConvertOptions()), _timestamps(mixed, ConvertOptions())
    assert fast[:2].tolist() == slow[:2].tolist() and np.isnan(fast[2]) and np.isnan(slow[2])
    assert fast[1] - fast[0] == -3600e6 + 0.25e6
    np.testing.assert_array_equal(_numbers(pa.array(["1.5", "", "2"])), [1.5, np.nan, 2.0])
    np.testing.assert_array_equal(_numbers(pa.array(["1.5", "x", "2"])), [1.5, np.nan, 2.0])
