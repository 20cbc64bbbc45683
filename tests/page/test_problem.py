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


# ---------------------------------------------------------------------- from_padded
def padded_args(p: PageProblem, **overrides):
    """``from_padded`` arguments reproducing ``p`` (arrays copied: the caller's stay writeable)."""
    args = {
        "title_ids": p.title_ids, "image_ids": p.image_ids, "scores": p.scores.copy(),
        "candidates": p.candidates.copy(), "pairs": p.pairs.copy(), "pair_weights": p.pair_weights.copy(),
        "similarity": p.similarity.copy(), "previous": p.previous.copy(), "locked": p.locked.copy(),
        "max_changes": p.max_changes, "diversity": p.diversity, "churn": p.churn, "rows": p.rows,
        "cols": p.cols, "name": p.name,
    }
    args.update(overrides)
    return args


def assert_same_problem(a: PageProblem, b: PageProblem) -> None:
    import dataclasses

    for f in dataclasses.fields(PageProblem):
        if f.name.startswith("_") or f.name == "embeddings":
            continue
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            assert x.shape == y.shape and x.dtype == y.dtype and np.array_equal(x, y), f.name
            assert not x.flags.writeable, f.name
        else:
            assert x == y, f.name


@given(
    seed=st.integers(0, 10_000),
    layout=st.sampled_from(["local", "chain", "dense"]),
    n=st.integers(1, 12),
    k=st.integers(1, 5),
)
def test_from_padded_equals_from_arrays(seed, layout, n, k):
    """The fast constructor gives the problem from_arrays gives for the same pairs and similarity,
    including the masking of padding: garbage outside candidates becomes 0."""
    p = random_problem(n, k, layout, seed=seed, variable_images=True)
    rng = np.random.default_rng(seed)
    noisy_scores = np.where(p.candidates, p.scores, np.nan)
    noisy_sim = p.similarity + rng.uniform(0, 1, p.similarity.shape) * (p.similarity == 0)
    reference = PageProblem.from_arrays(
        noisy_scores, similarity=noisy_sim, pairs=p.pairs, pair_weights=p.pair_weights,
        candidates=p.candidates, previous=p.previous, locked=p.locked, max_changes=p.max_changes,
        diversity=p.diversity, churn=p.churn, title_ids=p.title_ids, image_ids=p.image_ids,
        rows=p.rows, cols=p.cols, name=p.name,
    )
    args = padded_args(p, scores=noisy_scores.copy(), similarity=noisy_sim.copy())
    fast = PageProblem.from_padded(**args)
    assert_same_problem(fast, reference)
    assert np.array_equal(args["similarity"], noisy_sim)  # the caller's array is not modified
    assert args["similarity"].flags.writeable


P0 = random_problem(6, 3, "local", seed=3, variable_images=True)
SIM_NAN = P0.similarity.copy()
SIM_NAN[0, 0, 0] = np.nan
SIM_NEG = P0.similarity.copy()
SIM_NEG[-1, 0, 0] = -0.5
PREV_NOT_CAND = P0.previous.copy()
PREV_NOT_CAND[int(np.flatnonzero(~P0.candidates.all(axis=1))[0])] = P0.n_images - 1

BAD_PADDED = [
    ({"scores": np.zeros((0, 3))}, r"'scores'.*non-empty 2-D.*shape \(0, 3\)"),
    ({"candidates": np.ones((6, 2), bool)}, r"'candidates'.*shape of scores \(6, 3\).*\(6, 2\)"),
    ({"candidates": np.zeros((6, 3), bool)}, r"'candidates'.*at least one image.*'T000'"),
    ({"title_ids": ("a", "b")}, r"'title_ids'.*6 entries.*got 2"),
    ({"title_ids": ("a", "b", "c", "a", "d", "e")}, r"'title_ids'.*unique.*'a' twice"),
    ({"image_ids": P0.image_ids[:5]}, r"'image_ids'.*6 entries.*got 5"),
    ({"image_ids": (P0.image_ids[0], P0.image_ids[1][:1], *P0.image_ids[2:])},
     r"'image_ids'.*one id per candidate of title 'T001' \(3\).*got 1"),
    ({"image_ids": ((P0.image_ids[1][0],) * len(P0.image_ids[0]), *P0.image_ids[1:])}, r"'image_ids'.*unique"),
    ({"scores": np.where(P0.candidates, np.inf, 0.0)}, r"'scores'.*finite.*inf.*'T000'"),
    ({"pairs": P0.pairs[::-1]}, r"'pairs'.*sorted unique pairs"),
    ({"pairs": P0.pairs[:, ::-1]}, r"'pairs'.*sorted unique pairs"),
    ({"pairs": np.vstack([P0.pairs[:-1], [[0, 9]]])}, r"'pairs'.*0 <= a < b < 6"),
    ({"pairs": P0.pairs.astype(float)}, r"'pairs'.*integer array of shape \(n_pairs, 2\)"),
    ({"pair_weights": P0.pair_weights[:-1]}, r"'pair_weights'.*one weight per pair"),
    ({"pair_weights": -P0.pair_weights}, r"'pairs.weight'.*finite and >= 0"),
    ({"similarity": P0.similarity[:-1]}, r"'similarity'.*shape"),
    ({"similarity": SIM_NAN}, r"'similarity'.*finite and >= 0"),
    ({"similarity": SIM_NEG}, r"'similarity'.*finite and >= 0"),
    ({"previous": np.full(6, -2)}, r"'previous'.*-1 \(none\).*-2"),
    ({"previous": np.full(6, 3)}, r"'previous'.*name a candidate.*index 3"),
    ({"previous": PREV_NOT_CAND}, r"'previous'.*name a candidate"),
    ({"previous": np.zeros(6)}, r"'previous'.*integer array"),
    ({"locked": np.ones(6, bool), "previous": np.full(6, -1)}, r"'locked'.*'T000' locked with none"),
    ({"locked": np.ones(5, bool)}, r"'locked'.*shape \(6,\)"),
    ({"max_changes": -1}, r"'max_changes'.*>= 0"),
    ({"churn": np.nan}, r"'weights.churn'.*finite"),
    ({"rows": np.zeros(5, int)}, r"'rows/cols'.*\(6,\)"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD_PADDED)
def test_from_padded_rejects_bad_inputs(overrides, message):
    assert PageProblem.from_padded(**padded_args(P0)).n_titles == 6  # the base arguments are valid
    with pytest.raises(InvalidProblemError, match=message):
        PageProblem.from_padded(**padded_args(P0, **overrides))
