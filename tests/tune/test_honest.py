"""Honest recommendations, the scorer policy of experiments, and the deployable ComposeConfig."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from slate.serve import ComposeConfig
from slate.tune import experiment_from_dict, recommend
from slate.tune.config import Constraints, InvalidExperimentError
from slate.tune.report import recommended_compose
from slate.tune.sweep import SweepError

COLS = {"take_fraction": [0.12, 0.11, 0.10], "diversity": [0.2, 0.3, 0.4], "churn": [0.1, 0.1, 0.1],
        "take_fraction_low": [0.105, 0.085, 0.095], "weights_exploded": [True, False, False]}


def test_exploded_weights_and_unproven_points_are_not_recommended():
    rec = recommend(COLS, Constraints(), baseline=0.09)
    assert rec.index == 2  # 0 exploded, 1's interval reaches below the logging policy's 0.09
    assert "1 with exploded weights" in rec.reason and "1 whose interval" in rec.reason
    none = recommend(COLS, Constraints(), baseline=0.1)
    assert none.index is None and none.reason.startswith("no point beats what you run now")
    assert recommend(COLS, Constraints(allow_unproven=True), baseline=0.1).index == 0
    assert recommend({k: COLS[k] for k in ("take_fraction", "diversity", "churn")}).index == 0


@given(st.lists(st.tuples(st.floats(0, 0.2), st.floats(0, 0.05), st.booleans()), min_size=1, max_size=20),
       st.floats(0, 0.2))
def test_a_recommended_point_always_beats_the_logging_policy_with_sound_weights(points, baseline):
    take = np.array([p[0] for p in points])
    cols = {"take_fraction": take, "diversity": np.zeros(len(take)), "churn": np.zeros(len(take)),
            "take_fraction_low": take - np.array([p[1] for p in points]),
            "weights_exploded": np.array([p[2] for p in points])}
    rec = recommend(cols, Constraints(), baseline=baseline)
    sound = (~cols["weights_exploded"]) & (cols["take_fraction_low"] > baseline)
    assert (rec.index is None) == (not sound.any())
    if rec.index is not None:
        assert sound[rec.index] and take[rec.index] == take[sound].max()


def _experiment(**policy):
    return {"data": {"kind": "log", "path": "log.parquet", "embeddings": "e.parquet"},
            "policy": {"kind": "scorer", **policy}}


def test_scorer_policy_needs_one_source_and_logged_data():
    assert experiment_from_dict(_experiment(scorer="team:score")).policy.scorer == "team:score"
    assert experiment_from_dict(_experiment(scores="s.parquet")).search.weights == "absolute"
    with pytest.raises(InvalidExperimentError, match="exactly one of"):
        experiment_from_dict(_experiment())
    with pytest.raises(InvalidExperimentError, match="exactly one of"):
        experiment_from_dict(_experiment(scorer="a:b", scores="s.parquet"))
    sim = {"data": {"kind": "sim", "world": {"n_members": 5}}, "policy": {"kind": "scorer", "scorer": "a:b"}}
    with pytest.raises(InvalidExperimentError, match=r"data\.kind = 'log'"):
        experiment_from_dict(sim)


def test_recommended_compose_is_a_compose_config():
    exp = experiment_from_dict({**_experiment(scorer="t:s"), "solver": {"name": "exact", "time_limit_ms": 8}})
    results = SimpleNamespace(experiment=exp)
    row = {"w_diversity": 0.07, "w_churn": 0.01, "max_changes": 3}
    text = json.dumps(recommended_compose(results, row))  # type: ignore[arg-type]
    config = ComposeConfig.model_validate_json(text)
    assert (config.diversity, config.stability.churn, config.stability.max_changes) == (0.07, 0.01, 3)
    assert (config.solver, config.solver_time_ms) == ("exact", 8)
    kept = experiment_from_dict({**_experiment(scorer="t:s"),
                                 "compose": {"layout": "chain", "stability": {"dwell_sessions": 3, "churn": 9.0}}})
    config = ComposeConfig.model_validate(recommended_compose(SimpleNamespace(experiment=kept), row))  # type: ignore[arg-type]
    assert (config.layout, config.stability.dwell_sessions, config.stability.churn) == ("chain", 3, 0.01)
    with pytest.raises(InvalidExperimentError, match="compose"):
        experiment_from_dict({**_experiment(scorer="t:s"), "compose": {"diversity": -1}})
    relative = experiment_from_dict({**_experiment(scorer="t:s"), "search": {"weights": "relative"}})
    with pytest.raises(SweepError, match="relative"):
        recommended_compose(SimpleNamespace(experiment=relative), row)  # type: ignore[arg-type]
