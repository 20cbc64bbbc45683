"""slate.logs.dsjson: Vowpal Wabbit DSJSON (CB, CCB, slates) into slate.impressions.

The fixtures follow the published format (VW wiki "DSJSON"; the decision-service logs VW reads
with ``--dsjson``): top-level ``_label_cost`` (= -reward), ``_label_probability``,
``_label_Action`` (1-based), ``_labelIndex`` (0-based), ``a`` (1-based action ids, chosen first)
and ``p``, ``EventId``, ``Timestamp``, the context ``c`` with the actions ``_multi``; CCB with
``c._slots`` and per-slot ``_outcomes`` (``_id``, ``_label_cost``, ``_a``, ``_p``); slates with
actions tagged by ``_slot_id`` and one top-level ``_label_cost``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slate.cli import main
from slate.logs import read_impressions
from slate.logs.dsjson import DsjsonOptions, import_dsjson

ACTIONS = [{"_tag": "poster-dark", "i": {"id": "poster-dark"}}, {"_tag": "poster-bright"},
           {"_tag": "poster-face"}]


def cb(event_id: str, cost: float, index: int, prob: float, *, a=None, p=None, **extra) -> str:
    event = {"_label_cost": cost, "_label_probability": prob, "_label_Action": index + 1,
             "_labelIndex": index, "o": [{"v": -cost, "EventId": event_id, "ActionTaken": False}],
             "Timestamp": "2024-03-01T20:15:00.1234567Z", "Version": "1", "EventId": event_id,
             "a": a or [index + 1] + [k + 1 for k in range(3) if k != index],
             "c": {"User": {"id": f"member-{event_id[-1]}", "tenure": 3.5}, "_multi": ACTIONS},
             "p": p or [prob] + [(1 - prob) / 2] * 2, "VWState": {"m": "model/1"}}
    event.update(extra)
    return json.dumps(event)


CCB = json.dumps({
    "Timestamp": "2024-03-01T20:16:00.0000000Z", "Version": "1", "EventId": "ccb-1",
    "c": {"User": {"id": "member-9", "tenure": 1.0}, "_multi": ACTIONS,
          "_slots": [{"_id": "hero", "sj": {"size": "large"}}, {"_id": "row1", "sj": {"size": "small"}}]},
    "_outcomes": [
        {"_label_cost": -1.0, "_id": "hero", "_a": [2, 0, 1], "_p": [0.6, 0.2, 0.2], "_o": [{"v": 1.0}]},
        {"_label_cost": 0.0, "_id": "row1", "_a": [1, 0], "_p": [0.5, 0.5], "_o": []},
    ],
    "_ba": [2, 1], "VWState": {"m": "N/A"},
})

SLATES = json.dumps({
    "Timestamp": "2024-03-01T20:17:00Z", "Version": "1", "EventId": "slate-1", "_label_cost": -0.5,
    "c": {"User": {"id": "member-7", "tenure": 2.0},
          "_multi": [{"_slot_id": 0, "_tag": "a0"}, {"_slot_id": 0, "_tag": "a1"},
                     {"_slot_id": 1, "_tag": "b0"}, {"_slot_id": 1, "_tag": "b1"}, {"_slot_id": 1, "_tag": "b2"}],
          "_slots": [{"_id": "top"}, {"_id": "bottom"}]},
    "_outcomes": [{"_a": [1, 0], "_p": [0.7, 0.3]}, {"_a": [2, 0, 1], "_p": [0.5, 0.25, 0.25]}],
})

BAD = {
    "malformed_json": '{"EventId": "x", "c": {',
    "missing_field": cb("e9", -1.0, 0, 0.5).replace('"EventId": "e9", ', ""),
    "unlabeled": json.dumps({k: v for k, v in json.loads(cb("e8", -1.0, 0, 0.5)).items() if k != "_label_cost"}),
    "bad_action": cb("e7", 0.0, 0, 0.5).replace('"_labelIndex": 0', '"_labelIndex": 7'),
    "bad_probability": cb("e6", 0.0, 1, 1.5),
    "bad_timestamp": cb("e5", 0.0, 0, 0.5).replace("2024-03-01T20:15:00.1234567Z", "yesterday"),
}


@pytest.fixture
def dsjson(tmp_path):
    lines = [cb("e1", -1.0, 0, 0.8), cb("e2", 0.0, 2, 0.1), CCB, SLATES, *BAD.values(), ""]
    path = tmp_path / "log.dsjson"
    path.write_text("\n".join(lines) + "\n")
    return path


def read(path):
    log, report = read_impressions(path)
    assert report.n_rejected == 0
    return log


def test_every_variant_converts_and_bad_lines_are_counted_by_reason(dsjson, tmp_path):
    out = tmp_path / "log.parquet"
    report = import_dsjson(dsjson, out, DsjsonOptions(title_id="billboard"))
    assert report.n_read == 4 + len(BAD)  # the blank line is not an event
    assert dict(report.rejected) == dict.fromkeys(BAD, 1)
    assert report.n_written == 1 + 1 + 2 + 2 and not report.reader_rejected
    assert all("line" in report.examples[r][0] for r in BAD)
    log = read(out)
    ids = np.asarray(log.image_ids)
    shown = ids[log.image].tolist()
    assert shown == ["poster-dark", "poster-face", "hero:poster-face", "row1:poster-bright",
                     "top:a1", "bottom:b2"]
    assert log.reward.tolist() == [1, 0, 1, 0, 1, 1]  # reward = -cost > 0; a slate's cost on every slot
    np.testing.assert_allclose(log.engagement, [1.0, 0.0, 1.0, 0.0, 0.5, 0.5])
    np.testing.assert_allclose(log.propensity, [0.8, 0.1, 0.6, 0.5, 0.7, 0.5])
    assert log.explored.tolist() == [False, True, False, False, False, False]
    titles = np.asarray(log.title_ids)[log.title].tolist()
    assert titles == ["billboard", "billboard", "hero", "row1", "top", "bottom"]
    cands = [ids[c[c >= 0]].tolist() for c in log.candidates]
    assert cands[0] == ["poster-dark", "poster-bright", "poster-face"]
    assert cands[3] == ["row1:poster-bright", "row1:poster-dark"]  # the slot's remaining actions
    assert cands[5] == ["bottom:b2", "bottom:b0", "bottom:b1"]
    assert log.timestamp[0] == np.datetime64("2024-03-01T20:15:00.123456", "us").astype(np.int64)
    assert log.col.tolist() == [0, 0, 0, 1, 0, 1]
    assert len(set(log.page_id.tolist())) == 4


def test_cb_propensities_follow_a_and_p(tmp_path):
    path = tmp_path / "cb.json"
    path.write_text(cb("e1", -1.0, 1, 0.7, a=[2, 3, 1], p=[0.7, 0.2, 0.1]) + "\n")
    import_dsjson(path, tmp_path / "o.parquet")
    log = read(tmp_path / "o.parquet")
    np.testing.assert_allclose(log.propensities[0, :3], [0.1, 0.7, 0.2])  # in _multi order


def test_features_member_and_action_id_paths_and_version_2(tmp_path):
    path = tmp_path / "cb.json"
    event = json.loads(cb("e3", -2.0, 0, 0.6))
    for action in event["c"]["_multi"]:
        action.pop("_tag")
    path.write_text(json.dumps(event) + "\n")
    opts = DsjsonOptions(action_id_path="i.id", member_id_path="User.id",
                         feature_paths=("User.tenure", "User.missing"), reward_threshold=1.5)
    report = import_dsjson(path, tmp_path / "o.parquet", opts, version=2)
    assert report.n_written == 0 and report.reader_rejected == {"bad_features": 1}  # NaN feature
    opts = DsjsonOptions(action_id_path="i.id", member_id_path="User.id", feature_paths=("User.tenure",),
                         reward_threshold=1.5)
    import_dsjson(path, tmp_path / "o.parquet", opts, version=2)
    log = read(tmp_path / "o.parquet")
    assert log.schema == "slate.impressions/2"
    assert np.asarray(log.image_ids)[log.image].tolist() == ["poster-dark"]  # i.id; others by index
    assert sorted(log.image_ids) == ["1", "2", "poster-dark"]
    assert log.features.tolist() == [[3.5]] and log.reward.tolist() == [1]  # 2.0 > 1.5
    from slate.logs.imports import stable_id

    assert log.member_id.tolist() == [stable_id("member-3")]


def test_ccb_with_the_chosen_probability_only(tmp_path):
    event = json.loads(CCB)
    event["_outcomes"][0]["_p"] = [0.6]
    path = tmp_path / "ccb.json"
    path.write_text(json.dumps(event) + "\n")
    import_dsjson(path, tmp_path / "o.parquet")
    log = read(tmp_path / "o.parquet")
    np.testing.assert_allclose(log.propensities[0, :3], [0.6, 0.2, 0.2])


def test_cli_import_dsjson_and_exit_codes(dsjson, tmp_path, capsys):
    out = tmp_path / "cli.parquet"
    assert main(["import", str(dsjson), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "10 lines read, 6 rejected, 6 impression rows written" in printed
    summary = json.loads((tmp_path / "cli.parquet.import.json").read_text())
    assert summary["rejected"]["malformed_json"] == 1 and summary["written"] == 6
    assert main(["import", str(tmp_path / "nope.dsjson"), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "must be an existing file" in err and err.count("\n") == 1
    txt = tmp_path / "log.txt"
    txt.write_text("x")
    assert main(["import", str(txt), "--output", str(out)]) == 2
    assert "Give --map" in capsys.readouterr().err


def test_an_imported_log_trains_and_replays(tmp_path):
    rng = np.random.default_rng(0)
    lines = []
    for i in range(300):
        tenure = float(rng.random())
        chosen = int(rng.integers(0, 3))
        good = (chosen == 0) == (tenure > 0.5)
        cost = -1.0 if rng.random() < (0.7 if good else 0.2) else 0.0
        event = json.loads(cb(f"ev{i}", cost, chosen, 1 / 3, p=[1 / 3] * 3))
        event["c"]["User"]["tenure"] = tenure
        lines.append(json.dumps(event))
    (tmp_path / "ev.dsjson").write_text("\n".join(lines) + "\n")
    assert main(["import", str(tmp_path / "ev.dsjson"), "--output", str(tmp_path / "log.parquet"),
                 "--feature", "User.tenure", "--version", "2"]) == 0
    assert main(["train", str(tmp_path / "log.parquet"), "--policy", "linucb", "--param", "alpha=0",
                 "--output", str(tmp_path / "model")]) == 0
    assert main(["replay", str(tmp_path / "log.parquet"), "--policy", str(tmp_path / "model" / "policy.toml"),
                 "--bootstrap", "0", "--output", str(tmp_path / "r.json")]) == 0
    trained = json.loads((tmp_path / "r.json").read_text())["estimates"]["snips"]
    assert main(["replay", str(tmp_path / "log.parquet"), "--bootstrap", "0",
                 "--output", str(tmp_path / "u.json")]) == 0
    uniform = json.loads((tmp_path / "u.json").read_text())["estimates"]["snips"]
    # in-sample (seeded): the pipeline holds together and the context-matched poster wins
    assert trained["value"] > uniform["value"] + 2 * trained["se"]


GOOD = {"cb1": (cb("e1", -1.0, 0, 0.8), 1), "cb2": (cb("e2", 0.0, 2, 0.1), 1), "ccb": (CCB, 2), "slates": (SLATES, 2)}


@settings(max_examples=20, deadline=None)
@given(picks=st.lists(st.sampled_from(sorted(GOOD) + sorted(BAD)), min_size=1, max_size=12))
def test_any_mix_of_lines_is_counted_exactly(tmp_path_factory, picks):
    folder = tmp_path_factory.mktemp("mix")
    lines = []
    for i, name in enumerate(picks):  # distinct event ids: every page stays unique
        text = GOOD[name][0] if name in GOOD else BAD[name]
        lines.append(text.replace('"EventId": "', f'"EventId": "{i}-'))
    (folder / "mix.dsjson").write_text("\n".join(lines) + "\n")
    report = import_dsjson(folder / "mix.dsjson", folder / "mix.parquet")
    assert report.n_read == len(picks)
    assert dict(report.rejected) == {r: picks.count(r) for r in BAD if r in picks}
    assert report.n_written == sum(GOOD[p][1] for p in picks if p in GOOD)
    assert not report.reader_rejected
