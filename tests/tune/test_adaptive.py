"""slate.tune.adaptive: an Optuna search over continuous weights, seeded, resumable, paired."""

from __future__ import annotations

import numpy as np
import pytest

from slate.tune.adaptive import adaptive_search
from slate.tune.config import InvalidExperimentError
from tests.tune.test_sweep import sim_experiment

pytest.importorskip("optuna")


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    out = tmp_path_factory.mktemp("adaptive")
    return out, adaptive_search(sim_experiment(), out, 5)


def test_trials_stay_in_the_box_and_pay_one_solve_per_page(searched):
    _, res = searched
    exp = sim_experiment()
    assert len(res.trials) == 5 and res.replicates.shape == (5, exp.estimator.n_bootstrap)
    for row in res.trials:
        assert 0.0 <= row["w_diversity"] <= 1.5 and 0.0 <= row["w_churn"] <= 0.6
    n_pages = res.trials[0]["n_page_solves"]
    assert res.n_page_solves == 5 * n_pages


def test_recommendation_meets_the_churn_constraint_and_reports_ties(searched):
    _, res = searched
    rec = res.recommendation
    if rec.index is not None:
        assert res.trials[rec.index]["churn"] <= 0.1
        assert rec.index in rec.tied
    assert "points meeting churn <= 0.1" in rec.reason or "no point" in rec.reason


def test_a_resumed_search_runs_only_the_missing_trials(searched, tmp_path, monkeypatch):
    out, first = searched
    import slate.tune.adaptive as adaptive

    calls = []
    real = adaptive._solve_all
    monkeypatch.setattr(adaptive, "_solve_all", lambda *a: calls.append(1) or real(*a))
    again = adaptive_search(sim_experiment(), out, 6)
    assert len(calls) == 1 and len(again.trials) == 6
    # the first five trials are read back, not redone
    assert [t["w_diversity"] for t in again.trials[:5]] == [t["w_diversity"] for t in first.trials]
    assert np.array_equal(again.replicates[:5], first.replicates)


def test_the_search_is_seeded(searched, tmp_path):
    _, first = searched
    other = adaptive_search(sim_experiment(), tmp_path / "again", 5)
    assert [t["w_diversity"] for t in other.trials] == [t["w_diversity"] for t in first.trials]
    assert [t["take_fraction"] for t in other.trials] == [t["take_fraction"] for t in first.trials]


def test_bad_trial_count_is_one_clear_line(tmp_path):
    with pytest.raises(InvalidExperimentError, match="'n_trials' parameter must be an integer >= 1"):
        adaptive_search(sim_experiment(), tmp_path, 0)
