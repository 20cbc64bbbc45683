"""``slate replay``: policy configs, decision tables, engines, the printed table and the JSON."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from slate.logs import read_impressions, write_impressions
from slate.replay import InvalidReplayInputError, LinearPolicy, evaluate
from slate.replay.cli import add_replay_parser, load_policy_config
from tests.replay.test_world import World


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="slate")
    add_replay_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["replay", *argv])
    return int(args.func(args))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    w = World(seed=4, n_slots=3)
    table = w.to_table(w.simulate(300, "uniform", seed=5))
    path = write_impressions(root / "log.parquet", table, version=2)
    log, _ = read_impressions(path)
    policy = LinearPolicy(log.image_ids, np.random.default_rng(0).normal(size=(len(log.image_ids), 3)))
    policy.save(root / "weights.npz")
    (root / "policy.json").write_text(json.dumps({"weights": "weights.npz", "name": "candidate"}))
    (root / "policy.toml").write_text('[policy]\nkind = "linear"\nweights = "weights.npz"\nstickiness = 0.5\n')
    choice = policy.action_distribution(log).choice
    decided = pa.table({
        "member_id": log.member_id, "session_id": log.session_id,
        "title_id": np.asarray(log.title_ids, dtype=object)[log.title],
        "image_id": np.asarray(log.image_ids, dtype=object)[log.candidates[np.arange(log.n_rows), choice]],
    })
    pq.write_table(decided, root / "decisions.parquet")
    return root, log, policy


def test_policy_config_prints_a_table_and_writes_every_estimate(setup, capsys):
    root, log, policy = setup
    out = root / "out.json"
    assert run([str(root / "log.parquet"), "--policy", str(root / "policy.json"), "-e", "snips,ips",
                "-e", "dr", "--bootstrap", "50", "--seed", "3", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "policy 'candidate'" in printed and "snips" in printed and "dr" in printed
    saved = json.loads(out.read_text())
    expected = evaluate(log, policy, ["snips", "ips", "dr"], n_bootstrap=50, seed=3)
    for k in ("snips", "ips", "dr"):
        assert saved["estimates"][k]["value"] == expected.estimates[k].value
        assert saved["estimates"][k]["interval"] == list(expected.estimates[k].interval)
    assert saved["options"]["n_bootstrap"] == 50 and saved["rejections"]["n_rejected"] == 0


def test_decision_table_and_stream_engine_agree_with_the_linear_policy(setup, capsys):
    root, _log, _policy = setup
    a, b = root / "a.json", root / "b.json"
    run([str(root / "log.parquet"), "--table", str(root / "decisions.parquet"), "--bootstrap", "0",
         "-o", str(a)])
    run([str(root / "log.parquet"), "--policy", str(root / "policy.json"), "--engine", "stream",
         "--bootstrap", "0", "-o", str(b)])
    ta, tb = json.loads(a.read_text()), json.loads(b.read_text())
    assert ta["estimates"]["snips"]["value"] == pytest.approx(tb["estimates"]["snips"]["value"], rel=1e-12)
    assert tb["options"]["bootstrap"] == "poisson"
    capsys.readouterr()


def test_toml_config_with_stickiness(setup):
    root, _log, policy = setup
    sticky = load_policy_config(root / "policy.toml")
    assert sticky.stickiness == 0.5 and sticky.base.image_ids == policy.image_ids


BAD_CONFIGS = [
    ({"weights": "weights.npz", "epsilon": 2}, r"invalid at 'epsilon': .*less than or equal to 1"),
    ({"kind": "linear"}, r"needs 'weights'"),
    ({"kind": "table"}, r"needs 'table'"),
    ({"weights": "weights.npz", "colour": "red"}, r"invalid at 'colour': Extra inputs"),
    ({"kind": "table", "table": "nope.parquet"}, r"'table' of the policy config must name an existing"),
    ({"weights": "missing.npz"}, r"could not be read as .npz"),
    ({"kind": "table", "table": "decisions.parquet", "stickiness": 1.0}, r"'stickiness' applies to a 'linear'"),
]


@pytest.mark.parametrize(("config", "message"), BAD_CONFIGS)
def test_bad_policy_configs_raise_naming_the_key(setup, config, message):
    root, _, _ = setup
    path = root / "bad.json"
    path.write_text(json.dumps(config))
    with pytest.raises(InvalidReplayInputError, match=message):
        load_policy_config(path)


def test_bad_command_lines_raise(setup):
    root, _, _ = setup
    with pytest.raises(InvalidReplayInputError, match="existing Parquet file or folder"):
        run([str(root / "nope.parquet")])
    with pytest.raises(InvalidReplayInputError, match=r"must be a \.json or \.toml file"):
        (root / "p.yaml").write_text("a: 1")
        run([str(root / "log.parquet"), "--policy", str(root / "p.yaml")])
    with pytest.raises(SystemExit):  # argparse: --policy and --table together
        run([str(root / "log.parquet"), "--policy", "a.json", "--table", "b.parquet"])
