"""slate.replay.effects: page and change effects from exploration logs against seeded simulator truths."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from slate.cli import main
from slate.errors import InvalidEmbeddingsError, InvalidReplayInputError, NoEstimateError
from slate.logs import read_impressions
from slate.page.embeddings import ImageEmbeddings
from slate.replay.effects import EffectsOptions, PageEffects, estimate_effects, load_effects
from slate.serve import ComposeConfig
from slate.sim import UniformRandomLogging, make_schedule, make_world, simulate
from slate.tune.data import write_embeddings


def _world_log(tmp: Path, name: str, seed: int, **response: object) -> tuple[Path, Path, object]:
    world = make_world(n_members=400, n_titles=100, n_days=10, seed=seed, response=response)
    run = simulate(make_schedule(world, n_days=10, seed=seed), UniformRandomLogging(seed=seed + 7919))
    log = tmp / f"{name}.parquet"
    run.write(log, include_propensities=True)
    emb = write_embeddings(tmp / f"{name}-images.parquet", world.image_ids, world.embeddings)
    return log, emb, world


@pytest.fixture(scope="module")
def strong(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, PageEffects]:
    tmp = tmp_path_factory.mktemp("effects")
    log, emb, _ = _world_log(tmp, "strong", 3, crowding=0.8, change_noticed=-0.5, change_unnoticed=-0.5)
    return log, emb, estimate_effects(str(log), ImageEmbeddings.load(emb))


@pytest.fixture(scope="module")
def null(tmp_path_factory: pytest.TempPathFactory) -> PageEffects:
    tmp = tmp_path_factory.mktemp("effects-null")
    log, emb, _ = _world_log(tmp, "null", 4, page_effects=False, session_effects=False)
    return estimate_effects(str(log), ImageEmbeddings.load(emb))


def test_strength_interval_covers_the_configured_crowding(strong: tuple[Path, Path, PageEffects]) -> None:
    result = strong[2]
    assert result.strength.covers(0.8), result.strength
    assert result.strength.low is not None and result.strength.low > 0.3
    adjacent, farther, vertical = result.relations
    assert adjacent.estimate is not None and vertical.estimate is not None and farther.estimate is not None
    assert adjacent.estimate < vertical.estimate < 0  # weights 1.0 and 0.5: adjacent costs more
    assert result.cluster == "member" and "exploration" in result.assumption


def test_change_effect_is_negative_when_changes_cost_takes(strong: tuple[Path, Path, PageEffects]) -> None:
    change = strong[2].change
    assert change.high is not None and change.high < 0
    assert change.covers(-0.5 * (1 - 0.06)) or change.covers(-0.5)


def test_weights_are_the_objective_translation(strong: tuple[Path, Path, PageEffects]) -> None:
    r = strong[2]
    assert r.strength.estimate is not None and r.change.estimate is not None
    assert r.diversity.estimate == pytest.approx(2 * r.strength.estimate * r.take_rate)
    assert r.diversity_relative.estimate == pytest.approx(2 * r.strength.estimate)
    assert r.churn.estimate == pytest.approx(-r.change.estimate * r.take_rate)
    assert r.churn.low is not None and r.churn.low > 0


def test_no_effect_world_covers_zero(null: PageEffects) -> None:
    assert null.strength.covers(0.0), null.strength
    assert null.change.covers(0.0), null.change
    assert all(rel.covers(0.0) for rel in null.relations), null.relations


def test_json_round_trip_and_compose_config(strong: tuple[Path, Path, PageEffects], tmp_path: Path) -> None:
    result = strong[2]
    path = tmp_path / "effects.json"
    result.to_json(path)
    again = load_effects(path)
    assert again == result
    cfg = ComposeConfig.from_effects(path)
    assert cfg.diversity == pytest.approx(result.diversity.estimate)
    assert cfg.stability.churn == pytest.approx(result.churn.estimate)
    assert "strength" in str(result) and "clustered on member" in str(result)


def test_too_few_explored_rows_says_cannot_be_estimated(strong: tuple[Path, Path, PageEffects]) -> None:
    log, emb, _ = strong
    with pytest.raises(NoEstimateError, match="cannot be estimated"):
        estimate_effects(str(log), ImageEmbeddings.load(emb), EffectsOptions(min_rows=10**9))


def test_unexplored_log_gives_no_number(strong: tuple[Path, Path, PageEffects]) -> None:
    log, _ = read_impressions(strong[0])
    from dataclasses import replace

    unexplored = replace(log, explored=np.zeros_like(log.explored))
    with pytest.raises(NoEstimateError, match="only 0 explored"):
        estimate_effects(unexplored, ImageEmbeddings.load(strong[1]))


def test_missing_embedding_names_the_file_and_image(strong: tuple[Path, Path, PageEffects], tmp_path: Path) -> None:
    emb = ImageEmbeddings.load(strong[1])
    short = write_embeddings(tmp_path / "short.parquet", emb.image_ids[1:], emb.vectors[1:])
    with pytest.raises(InvalidEmbeddingsError, match=r"short\.parquet.*no vector for image"):
        estimate_effects(str(strong[0]), ImageEmbeddings.load(short))


def test_bad_effects_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "other"}))
    with pytest.raises(InvalidReplayInputError, match=r"bad\.json"):
        load_effects(bad)
    with pytest.raises(InvalidReplayInputError, match="must exist"):
        load_effects(tmp_path / "none.json")


def test_cli_writes_effects_and_exits_2_on_bad_input(
    strong: tuple[Path, Path, PageEffects], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log, emb, _ = strong
    out = tmp_path / "effects.json"
    assert main(["effects", str(log), "--embeddings", str(emb), "--out", str(out)]) == 0
    assert load_effects(out).strength == strong[2].strength
    capsys.readouterr()
    assert main(["effects", str(tmp_path / "missing.parquet"), "--embeddings", str(emb)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.parquet" in err[0] and "Traceback" not in err[0]
    assert main(["effects", str(log), "--embeddings", str(tmp_path / "none.parquet")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "none.parquet" in err[0]
    assert main(["effects", str(log), "--embeddings", str(emb), "--min-rows", "1000000000"]) == 3


def test_sweep_centres_on_the_intervals(strong: tuple[Path, Path, PageEffects]) -> None:
    from slate.cli import build_parser
    from slate.tune.config import Experiment
    from slate.tune.effects import centre_on_effects

    result = strong[2]
    exp = Experiment.model_validate({"name": "x", "data": {"kind": "sim"}, "policy": {"kind": "oracle"},
                                     "search": {"diversity": [0.0, 0.5], "churn": [0.0], "weights": "relative"}})
    grid = centre_on_effects(exp, result).search
    div = grid.diversity.grid()
    assert len(div) == 5 and div[0] == pytest.approx(max(0.0, result.diversity_relative.low))
    assert div[-1] == pytest.approx(result.diversity_relative.high)
    assert grid.churn.grid()[-1] == pytest.approx(result.churn_relative.high)
    args = build_parser().parse_args(["sweep", "exp.toml", "--centre-on", "effects.json"])
    assert args.centre_on == "effects.json"
