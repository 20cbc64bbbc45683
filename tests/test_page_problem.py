"""PageProblem construction, validation and the objective."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from slate.errors import InfeasibleProblemError, InvalidProblemError
from slate.page import DenseLayout, GridLayout, PageProblem, grid_positions, random_problem
from tests.pages import recompute_objective

RNG = np.random.default_rng(0)
SCORES = RNG.uniform(0.01, 0.2, (4, 3))
EMB = RNG.normal(size=(4, 3, 5))


def build(**overrides):
    args = {"scores": SCORES, "embeddings": EMB, "layout": GridLayout(rows=2, cols=2), "diversity": 0.1}
    args.update(overrides)
    return PageProblem.from_arrays(**args)


BAD_INPUTS = [
    ({"scores": np.zeros((0, 3))}, InvalidProblemError, r"'scores'.*non-empty 2-D.*shape \(0, 3\)"),
    (
        {"scores": np.where(np.eye(4, 3, dtype=bool), np.nan, SCORES)},
        InvalidProblemError,
        r"'scores'.*finite.*nan.*'T000'",
    ),
    (
        {"scores": np.where(np.eye(4, 3, dtype=bool), np.inf, SCORES)},
        InvalidProblemError,
        r"'scores'.*finite.*inf",
    ),
    (
        {"candidates": np.array([[1, 1, 1], [0, 0, 0], [1, 0, 0], [1, 1, 0]], bool)},
        InvalidProblemError,
        r"'candidates'.*no image for title 'T001'",
    ),
    ({"title_ids": ["a", "b", "a", "c"]}, InvalidProblemError, r"'title_ids'.*unique.*'a' twice"),
    ({"title_ids": ["a", "b"]}, InvalidProblemError, r"'title_ids'.*4 entries.*got 2"),
    (
        {"image_ids": [["x", "y", "z"], ["x", "q", "r"], ["s", "t", "u"], ["v", "w", "o"]]},
        InvalidProblemError,
        r"'image_ids'.*unique.*'x' twice",
    ),
    (
        {"embeddings": RNG.normal(size=(4, 2, 5))},
        InvalidProblemError,
        r"'embeddings'.*\(4, 3, dim\).*\(4, 2, 5\)",
    ),
    (
        {"embeddings": np.where(np.ones((4, 3, 5), bool) & (np.arange(5) == 2), np.nan, EMB)},
        InvalidProblemError,
        r"'embeddings'.*finite",
    ),
    ({"previous": np.array([0, 5, -1, 1])}, InvalidProblemError, r"'previous'.*candidate.*index 5.*'T001'"),
    ({"previous": np.array([0, 1.0, -1, 1])}, InvalidProblemError, r"'previous'.*integer"),
    (
        {
            "previous": np.array([0, 1, -1, 1]),
            "candidates": np.array([[1, 1, 1], [1, 0, 1], [1, 1, 1], [1, 1, 1]], bool),
        },
        InvalidProblemError,
        r"'previous'.*candidate.*'T001'",
    ),
    (
        {"locked": np.array([True, False, False, False])},
        InvalidProblemError,
        r"'locked'.*'T000' locked with none",
    ),
    ({"diversity": -0.1}, InvalidProblemError, r"'weights.diversity'.*>= 0.*-0.1"),
    ({"churn": float("nan")}, InvalidProblemError, r"'weights.churn'.*finite"),
    ({"max_changes": -1}, InvalidProblemError, r"'max_changes'.*>= 0.*-1"),
    ({"max_changes": 1.5}, InvalidProblemError, r"'max_changes'.*1.5"),
    ({"layout": None, "pairs": [[0, 1], [1, 0]]}, InvalidProblemError, r"'pairs'.*once.*'T000', 'T001'"),
    ({"layout": None, "pairs": [[0, 0]]}, InvalidProblemError, r"'pairs'.*different titles.*'T000'"),
    ({"layout": None, "pairs": [[0, 7]]}, InvalidProblemError, r"'pairs'.*0..3.*\[0, 7\]"),
    (
        {"layout": None, "pairs": [[0, 1]], "pair_weights": [-1.0]},
        InvalidProblemError,
        r"'pairs.weight'.*>= 0.*-1.0",
    ),
    ({"pairs": [[0, 1]]}, InvalidProblemError, r"either 'layout' or 'pairs'"),
    ({"embeddings": None, "similarity": np.zeros((2, 3, 3))}, InvalidProblemError, r"'similarity'.*shape"),
    ({"similarity": np.zeros((4, 3, 3))}, InvalidProblemError, r"either 'embeddings' or 'similarity'"),
    (
        {"image_tags": {"close": np.ones((4, 3), bool)}, "tag_quotas": {"close": 2}},
        InfeasibleProblemError,
        r"quota for tag 'close'.*at most 2.*4 titles can only show",
    ),
    ({"image_tags": {}, "tag_quotas": {"close": 2}}, InvalidProblemError, r"'image_tags'.*'close'"),
    (
        {"image_tags": {"close": np.ones((4, 3), bool)}, "tag_quotas": {"close": -2}},
        InvalidProblemError,
        r"'quotas.close'.*>= 0",
    ),
    (
        {
            "image_tags": {"close": np.array([[1, 0, 0]] * 4, bool)},
            "tag_quotas": {"close": 1},
            "previous": np.array([0, 0, 0, 1]),
            "max_changes": 1,
        },
        InfeasibleProblemError,
        r"budget of 1 changes and the quota for tag 'close'",
    ),
]


@pytest.mark.parametrize(("overrides", "error", "message"), BAD_INPUTS)
def test_bad_inputs_raise_with_clear_messages(overrides, error, message):
    with pytest.raises(error, match=message):
        build(**overrides)


def test_arrays_are_read_only_and_padding_is_masked():
    cand = np.array([[1, 1, 0], [1, 1, 1], [1, 0, 0], [1, 1, 1]], bool)
    scores = np.where(cand, SCORES, np.nan)  # NaN outside candidates is ignored
    p = build(scores=scores, candidates=cand, previous=np.array([1, 2, 0, -1]))
    assert not p.scores.flags.writeable and not p.similarity.flags.writeable
    assert np.isneginf(p.unary[~cand]).all()
    for q, (i, j) in enumerate(p.pairs.tolist()):
        assert (p.similarity[q][~cand[i], :] == 0).all() and (p.similarity[q][:, ~cand[j]] == 0).all()
    assert p.image_ids[0] == ("T000-I0", "T000-I1") and p.image_id(2, 0) == "T002-I0"
    with pytest.raises(InvalidProblemError, match="not a candidate"):
        p.image_id(0, 2)


def test_grid_layout_weights_match_definition():
    rows, cols = grid_positions(10, cols=5)
    pairs, w = GridLayout(
        rows=2, cols=5, neighbour=1.0, same_row=0.2, same_row_decay=0.5, vertical=0.3
    ).pairs(rows, cols)
    got = {tuple(p): x for p, x in zip(pairs.tolist(), w.tolist(), strict=True)}
    assert got[(0, 1)] == 1.0 and got[(0, 2)] == 0.2 and got[(0, 3)] == pytest.approx(0.1)
    assert got[(0, 4)] == pytest.approx(0.05) and got[(0, 5)] == 0.3
    assert (0, 6) not in got  # diagonal neighbours do not interact
    dense = DenseLayout(weight=2.0).pairs(rows, cols)
    assert len(dense[0]) == 45 and (dense[1] == 2.0).all()


def test_local_layout_reproduces_the_shared_instances_pairs():
    from slate.page import make_layout, read_problem
    from tests.pages import instance_paths

    for path in instance_paths():
        if not path.name.startswith(("local", "chain")):
            continue
        p = read_problem(path)
        kind = path.name.split("-")[0]
        lay = make_layout(kind, p.n_titles, cols=int(p.cols.max()) + 1)
        pairs, w = lay.pairs(p.rows, p.cols)
        assert pairs.tolist() == p.pairs.tolist(), path.name
        np.testing.assert_allclose(w, p.pair_weights)


@given(
    seed=st.integers(0, 10_000),
    layout=st.sampled_from(["local", "chain", "dense"]),
    n=st.integers(1, 12),
    k=st.integers(1, 5),
)
def test_evaluate_matches_independent_recomputation(seed, layout, n, k):
    p = random_problem(n, k, layout, seed=seed, variable_images=True)
    rng = np.random.default_rng(seed)
    a = np.array([rng.choice(np.flatnonzero(p.candidates[t])) for t in range(n)])
    parts = p.evaluate(a)
    assert parts.objective == pytest.approx(recompute_objective(p, a), abs=1e-12)
    assert parts.objective == pytest.approx(parts.relevance - parts.diversity_penalty - parts.churn_penalty)
    assert parts.n_changes == int(((p.previous >= 0) & (a != p.previous)).sum())


def test_violations_name_each_broken_constraint():
    tags = {"close": np.array([[1, 0, 0]] * 4, bool)}
    p = build(
        previous=np.array([1, 1, 1, -1]),
        locked=np.array([True, False, False, False]),
        max_changes=1,
        image_tags=tags,
        tag_quotas={"close": 1},
    )
    broken = p.violations(np.array([0, 0, 0, 0]))
    assert any("locked title 'T000'" in v for v in broken)
    assert any("3 changes exceed the budget of 1" in v for v in broken)
    assert any("'close'" in v and "quota of 1" in v for v in broken)
    assert p.violations(np.array([1, 1, 1, 0])) == []
    assert p.violations(np.array([1, 1])) and not p.is_feasible(np.array([1, 1, 1, 9]))


def test_structure_chain_forest_components():
    chain = random_problem(16, 3, "chain", seed=1)
    assert chain.is_chain and chain.is_forest and len(chain.components) == 4
    local = random_problem(16, 3, "local", seed=1)
    assert not local.is_chain and not local.is_forest and len(local.components) == 1
    no_div = random_problem(16, 3, "local", seed=1, diversity=0.0)
    assert len(no_div.components) == 16  # zero-cost pairs do not couple titles


def test_assignment_id_round_trip():
    p = random_problem(10, 4, "local", seed=2, variable_images=True)
    a = np.array([int(np.flatnonzero(p.candidates[t])[-1]) for t in range(p.n_titles)])
    ids = p.assignment_to_ids(a)
    assert (p.assignment_from_ids(ids) == a).all()
    with pytest.raises(InvalidProblemError, match="no image for title 'T000'"):
        p.assignment_from_ids({k: v for k, v in ids.items() if k != "T000"})
    with pytest.raises(InvalidProblemError, match="not a candidate of title 'T001'"):
        p.assignment_from_ids({**ids, "T001": "nope"})
