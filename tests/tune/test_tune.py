"""slate.tune without running sweeps: experiment validation, points, Pareto front, recommendation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from slate.tune import (
    Constraints,
    InvalidExperimentError,
    experiment_from_dict,
    load_experiment,
    near_front_mask,
    pareto_mask,
    recommend,
)

LOG = {"kind": "log", "path": "log.parquet", "embeddings": "images.parquet"}
SIM = {"kind": "sim", "world": {"n_members": 20, "n_titles": 60}}


# ---------------------------------------------------------------------- validation table
BAD = [
    ({}, r"missing the required field 'data'"),
    ({"data": {"kind": "db"}}, r"'data.kind' field .* must be 'log' or 'sim'; got 'db'"),
    ({"data": {"path": "x"}}, r"'data.kind' field .* must be 'log' or 'sim'; got None"),
    ({"data": {"kind": "log", "path": "x"}}, r"missing the required field 'data.embeddings'"),
    ({"data": LOG, "polcy": {}}, r"unknown field 'polcy'"),
    ({"data": LOG, "search": {"diversity": [-1.0]}}, r"'search.diversity.0' .* greater than or equal to 0; got -1.0"),
    ({"data": LOG, "search": {"churn": []}}, r"'search.churn' .* at least 1 item"),
    ({"data": LOG, "search": {"diversity": {"min": 1, "max": 0, "n": 3}}}, r"'search.diversity' .* max must be >= min"),
    ({"data": LOG, "search": {"diversity": {"min": 0, "max": 1}}}, r"search.diversity is a range on a grid and needs n"),
    ({"data": LOG, "search": {"churn": {"min": 0, "max": 1, "n": 3, "scale": "log"}}}, r"log scale needs min > 0"),
    ({"data": LOG, "search": {"max_changes": [-2]}}, r"'search.max_changes' .* integer >= 0 or \"none\"; got -2"),
    ({"data": LOG, "search": {"max_changes": ["all"]}}, r"'search.max_changes.0' .* got 'all'"),
    ({"data": LOG, "search": {"exploration": [1.5]}}, r"'search.exploration' .* must be in \[0, 1\]; got 1.5"),
    ({"data": LOG, "search": {"kind": "bayes"}}, r"'search.kind' .* must be 'grid' or 'random'; got 'bayes'"),
    ({"data": LOG, "search": {"kind": "random"}}, r"missing the required field 'search.n_points'"),
    ({"data": LOG, "search": {"weights": "scaled"}}, r"'search.weights'"),
    ({"data": LOG, "policy": {"name": "nope"}}, r"'policy.name' .* unknown policy 'nope'; available: .*linucb"),
    ({"data": LOG, "policy": {"kind": "oracle"}}, r"oracle' needs simulated data"),
    ({"data": LOG, "policy": {"train_fraction": 1.0}}, r"'policy.train_fraction' .* less than 1"),
    ({"data": SIM, "policy": {"kind": "bandit"}}, r"needs data.train_days >= 1"),
    ({"data": {**SIM, "world": {"n_members": 0}}}, r"'data.world' .* 'n_members' field of WorldConfig"),
    ({"data": {**SIM, "world": {"bogus": 1}}}, r"unknown field 'bogus' of the simulated world"),
    ({"data": SIM, "policy": {"kind": "oracle", "train_path": "x.parquet"}}, r"train_path is for logs"),
    ({"data": LOG, "solver": {"name": "magic"}}, r"'solver.name' .* Unknown solver 'magic'; available solvers are .*fast"),
    ({"data": LOG, "solver": {"time_limit_ms": 0}}, r"'solver.time_limit_ms' .* greater than 0"),
    ({"data": LOG, "estimator": {"name": "bogus"}}, r"'estimator.name' .* unknown estimator 'bogus'; available: .*snips"),
    ({"data": LOG, "estimator": {"level": 1.5}}, r"'estimator.level' .* less than 1; got 1.5"),
    ({"data": LOG, "estimator": {"n_bootstrap": -1}}, r"'estimator.n_bootstrap'"),
    ({"data": LOG, "constraints": {"max_churn": 2}}, r"'constraints.max_churn' .* less than or equal to 1; got 2"),
    ({"data": LOG, "compute": {"scheduler": "mpi"}}, r"'compute.scheduler' .* 'local', 'threads', 'sync' or a scheduler address"),
    ({"data": LOG, "compute": {"block_pages": 0}}, r"'compute.block_pages'"),
    ({"data": LOG, "seed": -1}, r"'seed' .* greater than or equal to 0; got -1"),
]


@pytest.mark.parametrize(("data", "message"), BAD, ids=[m[:40] for _, m in BAD])
def test_bad_experiments_name_the_field(data, message):
    with pytest.raises(InvalidExperimentError, match=message):
        experiment_from_dict(data)


def test_experiment_is_frozen_and_rejects_non_mappings():
    exp = experiment_from_dict({"data": LOG})
    with pytest.raises(ValueError, match="frozen"):
        exp.seed = 3  # type: ignore[misc]
    with pytest.raises(InvalidExperimentError, match="must be a mapping"):
        experiment_from_dict([1, 2])  # type: ignore[arg-type]


def test_load_experiment_reads_toml_and_reports_bad_files(tmp_path):
    good = tmp_path / "exp.toml"
    good.write_text(
        'name = "t"\n[data]\nkind = "log"\npath = "a.parquet"\nembeddings = "e.parquet"\n'
        '[search]\ndiversity = { min = 0.0, max = 1.0, n = 3 }\nmax_changes = ["none", 5]\n'
    )
    exp, base = load_experiment(good)
    assert base == tmp_path.resolve()
    assert [(p.diversity, p.max_changes) for p in exp.points()] == [
        (0.0, None), (0.0, 5), (0.5, None), (0.5, 5), (1.0, None), (1.0, 5)
    ]
    with pytest.raises(InvalidExperimentError, match="does not exist"):
        load_experiment(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n")
    with pytest.raises(InvalidExperimentError, match="not valid TOML"):
        load_experiment(bad)
    other = tmp_path / "exp.json"
    other.write_text("{}")
    with pytest.raises(InvalidExperimentError, match=r"must be TOML \(\*\.toml\) or YAML"):
        load_experiment(other)


def test_yaml_experiments_equal_their_toml_twins_and_bad_yaml_is_named(tmp_path):
    toml = tmp_path / "exp.toml"
    toml.write_text(
        'name = "t"\nseed = 3\n[data]\nkind = "sim"\n[policy]\nkind = "oracle"\n'
        '[search]\ndiversity = [0.0, 0.5]\nmax_changes = ["none", 4]\n[constraints]\nmax_churn = 0.1\n'
    )
    yaml = tmp_path / "exp.yml"
    yaml.write_text(
        "name: t\nseed: 3\ndata: {kind: sim}\npolicy: {kind: oracle}\n"
        "search: {diversity: [0.0, 0.5], max_changes: [none, 4]}\nconstraints: {max_churn: 0.1}\n"
    )
    a, b = load_experiment(toml)[0], load_experiment(yaml)[0]
    assert a == b and a.config_hash() == b.config_hash()
    broken = tmp_path / "broken.yaml"
    broken.write_text("data: [unclosed\n")
    with pytest.raises(InvalidExperimentError, match="not valid YAML"):
        load_experiment(broken)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just a string\n")
    with pytest.raises(InvalidExperimentError, match="must hold a mapping at its top; got str"):
        load_experiment(scalar)
    typo = tmp_path / "typo.yaml"
    typo.write_text("data: {kind: sim}\npolicy: {kind: oracle}\nserach: {}\n")
    with pytest.raises(InvalidExperimentError, match="serach"):
        load_experiment(typo)


# ---------------------------------------------------------------------- points and hash
def test_grid_points_are_the_product_in_a_fixed_order():
    exp = experiment_from_dict({"data": LOG, "search": {
        "diversity": [0.0, 1.0], "churn": {"min": 0.01, "max": 1.0, "n": 3, "scale": "log"},
        "max_changes": ["none", 4], "exploration": [0.0, 0.1]}})
    pts = exp.points()
    assert len(pts) == 2 * 3 * 2 * 2
    expected = list(itertools.product([0.0, 1.0], [0.01, 0.1, 1.0], [None, 4], [0.0, 0.1]))
    got = [(p.diversity, round(p.churn, 12), p.max_changes, p.exploration) for p in pts]
    assert got == [(d, round(c, 12), b, e) for d, c, b, e in expected]
    assert [p.point for p in pts] == list(range(len(pts)))


def test_random_points_are_seeded_and_within_ranges():
    spec = {"data": LOG, "search": {"kind": "random", "n_points": 40,
                                    "diversity": {"min": 0.1, "max": 2.0, "scale": "log"},
                                    "churn": [0.0, 0.3], "max_changes": ["none", 3]}}
    a = experiment_from_dict({**spec, "seed": 5}).points()
    b = experiment_from_dict({**spec, "seed": 5}).points()
    c = experiment_from_dict({**spec, "seed": 6}).points()
    assert a == b and a != c
    assert all(0.1 <= p.diversity <= 2.0 and p.churn in (0.0, 0.3) and p.max_changes in (None, 3) for p in a)
    assert {p.churn for p in a} == {0.0, 0.3}


def test_config_hash_ignores_compute_and_constraints_only():
    base = experiment_from_dict({"data": LOG})
    same = experiment_from_dict({"data": LOG, "compute": {"scheduler": "sync", "n_workers": 7},
                                 "constraints": {"max_churn": 0.1}, "name": "other"})
    changed = experiment_from_dict({"data": LOG, "search": {"churn": [0.0, 0.1]}})
    seeded = experiment_from_dict({"data": LOG, "seed": 1})
    assert base.config_hash() == same.config_hash()
    assert len({base.config_hash(), changed.config_hash(), seeded.config_hash()}) == 3


# ---------------------------------------------------------------------- Pareto front
def brute_front(t, d, c):
    n = len(t)
    out = []
    for i in range(n):
        dominated = any(
            t[j] >= t[i] and d[j] >= d[i] and c[j] <= c[i] and (t[j] > t[i] or d[j] > d[i] or c[j] < c[i])
            for j in range(n)
        )
        out.append(not dominated)
    return out


values = st.integers(0, 4).map(lambda v: v / 4)  # few values, so that ties are common


@given(st.lists(st.tuples(values, values, values), min_size=1, max_size=30))
def test_pareto_mask_matches_the_definition(points):
    t, d, c = (list(x) for x in zip(*points, strict=True))
    assert pareto_mask(t, d, c).tolist() == brute_front(t, d, c)


@given(st.lists(st.tuples(values, st.integers(0, 3), values, values), min_size=1, max_size=25))
def test_near_front_matches_the_definition(points):
    t = np.array([p[0] for p in points])
    half = np.array([p[1] for p in points]) / 20
    d = np.array([p[2] for p in points])
    c = np.array([p[3] for p in points])
    lo, hi = t - half, t + half
    front = np.array(brute_front(t, d, c))
    near = near_front_mask(t, lo, hi, d, c)
    se = (hi - lo) / (2 * 1.959964)
    for i in range(len(t)):
        covers = [j for j in range(len(t)) if d[j] >= d[i] and c[j] <= c[i]]
        beaten = any(lo[j] > hi[i] for j in covers)
        far = any(t[j] - t[i] > se[i] for j in covers)  # off the front by more than noise
        assert near[i] == (not front[i] and not beaten and not far)
    assert not (near & front).any()


def test_near_front_marks_are_selective():
    """Wide intervals used to mark nearly every point off the front as near it."""
    t = np.array([0.12, 0.11, 0.10, 0.09, 0.119])
    d = np.array([0.5, 0.4, 0.3, 0.2, 0.5])
    c = np.zeros(5)
    near = near_front_mask(t, t - 0.005, t + 0.005, d, c)
    # point 1's interval touches point 0's (so "not beaten with confidence"), but it is 0.01
    # (about 4 standard errors) below it: not near; point 4 is 0.001 below: near
    assert near.tolist() == [False, False, False, False, True]


def test_pareto_mask_rejects_nan_and_ragged_input():
    with pytest.raises(ValueError, match="NaN"):
        pareto_mask([0.1, np.nan], [0, 0], [0, 0])
    with pytest.raises(ValueError, match="one value per point"):
        pareto_mask([0.1], [0, 0], [0])


# ---------------------------------------------------------------------- recommendation
@given(st.lists(st.tuples(values, values, values), min_size=1, max_size=20), st.sampled_from([None, 0.25, 0.5]),
       st.sampled_from([None, 0.5]))
def test_recommend_is_the_best_feasible_point(points, max_churn, min_div):
    t, d, c = (np.array(x) for x in zip(*points, strict=True))
    rec = recommend({"take_fraction": t, "diversity": d, "churn": c},
                    Constraints(max_churn=max_churn, min_diversity=min_div))
    ok = np.ones(len(t), bool)
    if max_churn is not None:
        ok &= c <= max_churn
    if min_div is not None:
        ok &= d >= min_div
    assert rec.n_feasible == int(ok.sum())
    if not ok.any():
        assert rec.index is None and "no point meets" in rec.reason
        return
    best = max(np.flatnonzero(ok), key=lambda i: (t[i], d[i], -c[i], -i))
    assert rec.index == best
