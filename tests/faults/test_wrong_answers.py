"""The "wrong answers that look right" of issue 12: each now gives the right answer, a counted
rejection, an explicit no-estimate status or a clear error."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import slate.solvers.exact as exact_module
from slate.errors import InvalidProblemError
from slate.logs import read_impressions
from slate.page import read_problem
from slate.page.io import problem_from_dict
from slate.replay import InvalidReplayInputError, LinearPolicy, evaluate
from slate.replay.policy import DecisionTable
from slate.replay.stats import weight_diagnostics
from slate.solvers import solve
from slate.solvers.result import SolveResult, Status

from .conftest import INSTANCES, Files, small_page


# ---------------------------------------------------------------------- solve
@pytest.mark.parametrize("limit", [math.inf, None])
def test_auto_with_an_infinite_limit_solves_the_page_instead_of_falling_back(limit):
    path = INSTANCES / "dense-20x5-s0.json"
    optimum = json.loads(path.read_text())["optimum"]["objective"]
    result = solve(read_problem(path), solver="auto", time_limit_ms=limit)
    assert "fallback" not in result.info
    assert result.info["route"] == "exact" and result.status is Status.OPTIMAL
    assert result.objective == pytest.approx(optimum, abs=1e-6)


@pytest.mark.parametrize("solver", ["auto", "fast", "exact", "chain"])
@pytest.mark.parametrize("limit", [math.nan, -1.0, "5"])
def test_a_nan_negative_or_non_numeric_limit_is_refused_by_every_solver(files: Files, solver, limit):
    with pytest.raises(InvalidProblemError, match="time_limit_ms"):
        solve(read_problem(files.page), solver=solver, time_limit_ms=limit)


def test_the_fallback_reason_is_in_the_json(files: Files, monkeypatch):
    from slate.solvers.fast import FastSolver

    def broken(self, problem, time_limit_ms=None):
        raise RuntimeError("kernel exploded")

    monkeypatch.setattr(FastSolver, "solve", broken)
    result = solve(read_problem(files.dense_page), solver="auto", time_limit_ms=5)
    out = result.to_json_dict()
    assert out["fallback"] == "fast raised RuntimeError: kernel exploded"
    assert json.loads(json.dumps(out, allow_nan=False))["fallback"].startswith("fast raised")
    ok = solve(read_problem(files.dense_page), solver="exact").to_json_dict()
    assert ok["fallback"] is None


@pytest.mark.parametrize("where", ["mip", "lp"])
def test_a_highs_error_is_not_reported_as_a_time_limit(files: Files, monkeypatch, where):
    original = getattr(exact_module._HighspyBackend, where)

    def failing(self, model, time_limit, *rest):
        run = original(self, model, time_limit, *rest)
        return exact_module._Run(None, "error", -math.inf, run.nodes, "Solve error", run.seconds)

    monkeypatch.setattr(exact_module._HighspyBackend, where, failing)
    result = solve(read_problem(files.dense_page), solver="exact")  # no time limit
    assert result.status is not Status.TIME_LIMIT
    assert result.status is Status.FEASIBLE and result.info["backend_errors"] >= 1
    assert read_problem(files.dense_page).is_feasible(result.assignment)


def test_non_finite_numbers_are_written_as_null_never_as_infinity(files: Files):
    result = solve(read_problem(files.page), solver="exact")
    odd = SolveResult(**{**result.__dict__, "bound": math.inf, "objective": math.nan})
    text = json.dumps(odd.to_json_dict(), allow_nan=False)
    assert "Infinity" not in text and json.loads(text)["bound"] is None


# ---------------------------------------------------------------------- pages
def test_a_layout_without_pairs_gets_the_layouts_pairs(files: Files):
    data = small_page()
    derived = problem_from_dict(data)
    explicit = problem_from_dict({**data, "pairs": []})
    assert derived.n_pairs == 2 * 6 + 4 and explicit.n_pairs == 0  # 2 x 4 grid: 6 pairs in each row, 4 vertical
    a = solve(derived, solver="exact").assignment
    parts = derived.evaluate(a)
    assert parts.diversity_penalty > 0
    # the round trip writes the pairs out explicitly and keeps them
    from slate.page.io import problem_to_dict

    again = problem_from_dict(problem_to_dict(derived))
    assert again.n_pairs == derived.n_pairs and np.allclose(again.similarity, derived.similarity)


@pytest.mark.parametrize("scale", [1e155, 1e200, 1e300, 1e-170, 1e-300])
def test_embedding_magnitude_does_not_change_the_similarity(scale):
    data = small_page()
    base = problem_from_dict(data)
    for t in data["titles"]:
        for im in t["images"]:
            im["embedding"] = [x * scale for x in im["embedding"]]
    scaled = problem_from_dict(data)
    assert base.similarity.max() > 0.1
    np.testing.assert_allclose(scaled.similarity, base.similarity, atol=1e-12)


@pytest.mark.parametrize("scale", [1e200, 1e-200])
def test_serving_and_replay_embeddings_survive_extreme_magnitudes(scale):
    from slate.replay.metrics import ImageEmbeddings

    vectors = np.array([[3.0, 4.0], [1.0, 0.0]])
    cat = ImageEmbeddings(("a", "b"), vectors * scale)
    np.testing.assert_allclose(cat.unit[:2], [[0.6, 0.8], [1.0, 0.0]], atol=1e-6)
    emb = ImageEmbeddings(("a", "b"), vectors * scale, "test")
    np.testing.assert_allclose(emb.vectors, [[0.6, 0.8], [1.0, 0.0]], atol=1e-12)


# ---------------------------------------------------------------------- logs
def _edited_log(files: Files, name: str, column: str, rows: np.ndarray, value, typ) -> tuple:
    table = pq.read_table(files.log)
    values = table.column(column).to_numpy().astype(np.int64 if column in ("row", "col") else np.float64)
    values[rows] = value
    i = table.column_names.index(column)
    edited = table.set_column(i, column, pa.array(values, type=typ))
    path = files.root / name
    pq.write_table(edited, path)
    return read_impressions(path), table.num_rows


@pytest.mark.parametrize(
    ("column", "value", "typ", "reason"),
    [
        ("row", 2**40, pa.int64(), "bad_position"),
        ("col", 2**31, pa.int64(), "bad_position"),
        ("row", 2**31 - 1, pa.int64(), None),
        ("propensity", 5e-324, pa.float64(), "propensity_out_of_range"),
        ("propensity", 1e-13, pa.float64(), "propensity_out_of_range"),
        ("propensity", 0.0, pa.float64(), "propensity_out_of_range"),
    ],
)
def test_hostile_values_in_a_log_are_counted_rejections(files: Files, column, value, typ, reason):
    table = pq.read_table(files.log)
    rows = np.arange(0, table.num_rows, 50)  # about 2% of the rows
    (log, report), n = _edited_log(files, f"edit-{column}-{value}.parquet", column, rows, value, typ)
    if reason is None:  # the largest int32 is a valid position and reads back exactly
        assert report.n_rejected == 0 and int(np.asarray(log.row).max()) == value
        return
    assert report.counts[reason] == len(rows) and report.n_rejected == len(rows)
    assert log.n_rows == n - len(rows)
    assert int(np.asarray(log.row).max()) < 2**31 and int(np.asarray(log.row).min()) >= 0


def test_tiny_propensities_no_longer_null_every_estimate(files: Files):
    table = pq.read_table(files.log)
    rows = np.arange(0, table.num_rows, 100)
    (log, report), _ = _edited_log(files, "tiny-prop.parquet", "propensity", rows, 5e-324, pa.float64())
    assert report.counts["propensity_out_of_range"] == len(rows)
    out = evaluate(log, DecisionTable.from_parquet(files.decisions, missing="skip"), ["ips", "snips", "dr"],
                   n_bootstrap=0)
    for e in out.estimates.values():
        assert np.isfinite(e.value) and e.status == "ok"


def test_infinite_weights_count_as_exploded():
    w = np.r_[np.ones(99), np.inf]
    assert weight_diagnostics(w, 100).exploded
    assert not weight_diagnostics(np.ones(100), 100).exploded


# ---------------------------------------------------------------------- replay
@pytest.mark.parametrize("engine", ["memory", "stream"])
def test_no_matched_row_is_no_estimate(files: Files, engine):
    from slate.replay import evaluate_stream

    table = DecisionTable.from_parquet(files.mismatch)
    run = evaluate if engine == "memory" else evaluate_stream
    out = run(files.log, table, ["ips", "snips", "dr", "page", "dm"], n_bootstrap=20, seed=0)
    for name in ("ips", "snips", "dr", "page"):
        e = out.estimates[name]
        assert e.n_matched == 0 and e.status == "no_match", name
        assert math.isnan(e.value) and all(math.isnan(x) for x in e.interval), name
    dm = out.estimates["dm"]  # the direct method is a model's prediction, not a match count
    assert dm.status == "ok" and np.isfinite(dm.value)


def test_a_policy_that_matches_rows_still_gets_an_estimate(files: Files):
    out = evaluate(files.log, DecisionTable.from_parquet(files.decisions), ["ips", "page"], n_bootstrap=0)
    assert out.estimates["ips"].status == "ok" and out.estimates["ips"].value > 0
    assert out.estimates["page"].n_matched > 0 and out.estimates["page"].status == "ok"


@pytest.mark.parametrize(
    ("weights", "bias"),
    [
        (np.full((2, 3), np.nan), None),
        (np.ones((2, 3)), [np.nan, 0.0]),
        (np.r_[np.ones(5), np.inf].reshape(2, 3), None),
        (np.full((2, 3), 1e39), None),  # beyond float32
    ],
)
def test_linear_policy_refuses_weights_that_are_not_finite(weights, bias):
    with pytest.raises(InvalidReplayInputError, match=r"must be finite float32"):
        LinearPolicy(["a", "b"], weights, bias=bias)


def test_whole_page_estimator_without_a_matching_page_is_no_estimate(files: Files):
    match = pq.read_table(files.decisions)
    other = pq.read_table(files.mismatch)
    log, _ = read_impressions(files.log)
    first_of_page = np.r_[True, log.page_id[1:] != log.page_id[:-1]]  # rows of a page are contiguous here
    image = np.where(first_of_page, match.column("image_id").to_numpy(zero_copy_only=False),
                     other.column("image_id").to_numpy(zero_copy_only=False))
    path = files.root / "one-title-matches.parquet"
    pq.write_table(match.set_column(3, "image_id", pa.array(image.tolist(), pa.string())), path)
    out = evaluate(log, DecisionTable.from_parquet(path), ["ips", "page"], n_bootstrap=0)
    assert out.estimates["ips"].status == "ok" and out.estimates["ips"].n_matched == int(first_of_page.sum())
    page = out.estimates["page"]
    assert page.n_matched == 0 and page.status == "no_match" and math.isnan(page.value)
