"""slate.train model folders: policy.toml through replay, PolicyScorer.load through compose()."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from slate.bandit.trained import load_trained_model
from slate.errors import InvalidProblemError
from slate.logs import read_impressions
from slate.replay import LinearPolicy, evaluate
from slate.replay.cli import load_policy_config
from slate.serve import ComposeConfig, PolicyScorer, compose
from slate.stability import InMemoryStore
from slate.train import train
from tests.train_logs import write_log


@pytest.fixture(scope="module")
def log(tmp_path_factory) -> Path:
    return write_log(tmp_path_factory.mktemp("log"), n_files=2, n_pages=400)


@pytest.fixture(scope="module")
def model(log, tmp_path_factory) -> tuple[Path, object]:
    result = train(log, "linucb", params={"alpha": 0.0})
    return result.save(tmp_path_factory.mktemp("model") / "m"), result


def _greedy(result, log_data) -> np.ndarray:
    """Argmax of x . theta over each row's candidates, from the fitted policy itself."""
    ids = np.array(result.image_ids)
    arms = np.searchsorted(ids, np.asarray(log_data.image_ids)[np.maximum(log_data.candidates, 0)])
    x = np.c_[np.ones(log_data.n_rows), log_data.features.astype(np.float64)]
    theta = result.policy.theta_[: len(ids)]
    scores = np.einsum("nd,nkd->nk", x, theta[arms])
    scores[log_data.candidates < 0] = -np.inf
    return scores.argmax(axis=1)


def test_policy_toml_is_a_replay_policy_with_the_models_greedy_choice(log, model):
    folder, result = model
    policy = load_policy_config(folder / "policy.toml")
    assert isinstance(policy, LinearPolicy)
    data, _ = read_impressions(log / "part-1.parquet")
    assert np.array_equal(policy.choose(data), _greedy(result, data))
    report = evaluate(data, policy, "snips", n_bootstrap=0, metrics=False)
    uniform = evaluate(data, _uniform(), "snips", n_bootstrap=0, metrics=False)
    # the synthetic world rewards the context-matched image: the greedy model beats uniform
    assert report.estimate.value > uniform.estimate.value + 2 * report.estimate.se


def _uniform():
    from slate.replay import UniformPolicy

    return UniformPolicy()


def test_slate_replay_accepts_the_folder_unchanged(log, model, tmp_path, capsys):
    from slate.cli import main

    folder, _ = model
    out = tmp_path / "r.json"
    code = main(["replay", str(log), "--policy", str(folder / "policy.toml"), "--bootstrap", "0",
                 "--output", str(out)])
    assert code == 0
    assert json.loads(out.read_text())["estimates"]["snips"]["n_matched"] > 0


def _request(context):
    return {"member_id": 1, "session_id": 2, "timestamp": "2024-05-01T20:00:00Z", "context": context,
            "titles": [{"title_id": "T0", "image_ids": ["T0-i0", "T0-i1", "T0-i2"], "row": 0, "col": 0},
                       {"title_id": "T1", "image_ids": ["T1-i2", "T1-new"], "row": 0, "col": 1}]}


def test_policy_scorer_load_scores_like_the_model(model):
    folder, result = model
    scorer = PolicyScorer.load(folder)
    features = {"T0": [0.9, 0.1, 0.1], "T1": [0.1, 0.1, 0.8]}
    from slate.serve import parse_request

    scores = np.asarray(scorer.score_page(parse_request(_request({"features": features}))))
    theta = result.policy.theta_
    ids = list(result.image_ids)
    expect_t0 = [np.r_[1.0, features["T0"]] @ theta[ids.index(f"T0-i{k}")] for k in range(3)]
    np.testing.assert_allclose(scores[0], np.clip(expect_t0, 0, 1), rtol=1e-12)
    assert scores[1, 1] == 0.0  # an image the log never offered: prior mean 0
    decision = compose(_request({"features": [0.5, 0.5, 0.5]}), scorer, InMemoryStore(),
                       config=ComposeConfig(solver="independent"))
    assert decision.status == "ok" and set(decision.images) == {"T0", "T1"}


def test_take_rate_scorer_needs_no_context_features(log, tmp_path):
    folder = train(log / "part-0.parquet", "take_rate").save(tmp_path / "tr")
    from slate.serve import parse_request

    scores = np.asarray(PolicyScorer.load(folder).score_page(parse_request(_request({}))))
    assert scores.shape == (2, 3) and np.isfinite(scores[0]).all()


@pytest.mark.parametrize("context,message", [
    ({}, "must hold the 3 context features"),
    ({"features": [1.0, 2.0]}, "must be 3 finite numbers per title"),
    ({"features": {"T0": [1.0, 2.0, 3.0]}}, "no features for title 'T1'"),
])
def test_serving_context_errors_name_the_field(model, context, message):
    from slate.serve import parse_request

    trained = load_trained_model(model[0])
    with pytest.raises(InvalidProblemError, match=message):
        trained.page_features(parse_request(_request(context)))


def test_model_folder_round_trip_and_bad_folders(model, tmp_path):
    folder, result = model
    loaded = load_trained_model(folder)
    assert loaded.image_ids == result.image_ids and loaded.bias and loaded.n_log_features == 3
    assert np.array_equal(loaded.policy.theta_, result.policy.theta_)
    assert loaded.info["diagnostics"]["rows_used"] == result.diagnostics.n_used
    with pytest.raises(InvalidProblemError, match=r"must hold model\.json and model\.npz"):
        load_trained_model(tmp_path)
    (tmp_path / "model.json").write_text(json.dumps({"format": "other"}))
    (tmp_path / "model.npz").write_bytes(b"")
    with pytest.raises(InvalidProblemError, match="'format' field"):
        load_trained_model(tmp_path)


@pytest.mark.parametrize("policy", ["take_rate", "uniform", "hybrid_linucb", "epsilon_greedy", "logistic_ts"])
def test_every_policy_writes_a_replayable_folder(log, tmp_path, policy):
    result = train(log / "part-0.parquet", policy)
    folder = result.save(tmp_path / policy)
    target = load_policy_config(folder / "policy.toml")
    data, _ = read_impressions(log / "part-1.parquet")
    report = evaluate(data, target, "snips", n_bootstrap=0, metrics=False)
    assert 0.0 < report.estimate.value < 1.0
    if policy == "take_rate":  # the greedy image is the one with the best posterior take rate
        rate = (1 + result.policy.successes_) / (2 + result.policy.successes_ + result.policy.failures_)
        ids = np.array(result.image_ids)
        chosen = ids[np.searchsorted(ids, np.asarray(data.image_ids)[data.candidates[np.arange(data.n_rows), target.choose(data)]])]
        best = [max(c, key=lambda i: rate[list(ids).index(i)]) for c in
                (np.asarray(data.image_ids)[row[row >= 0]] for row in data.candidates[:20])]
        assert list(chosen[:20]) == best
