"""PageProblem construction, validation and the objective."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from slate.errors import InfeasibleProblemError, InvalidProblemError, UnknownOptionError
from slate.page import DenseLayout, GridLayout, PageProblem, grid_positions, random_problem
from tests.pages import recompute_objective

RNG = np.random.default_rng(0)
SCORES = RNG.uniform(0.01, 0.2, (4, 3))
EMB = RNG.normal(size=(4, 3, 5))


def build(**overrides):
    args = {"scores": SCORES, "embeddings": EMB, "layout": GridLayout(rows=2, cols=2), "diversity": 0.1}
    args.update(overrides)
    return PageProblem.from_arrays(**args)


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


# ---------------------------------------------------------------------- one bad-input table
# Both constructors run the same check for a rule (one function per rule in slate/page/problem.py),
# so a bad field gets the same message whichever way it comes in. Each row: which constructors
# the rule applies to, overrides of the valid base arguments padded_args(P0) (which from_arrays
# takes too), the error and the message.
P0 = random_problem(6, 3, "local", seed=3, variable_images=True)  # T000 has one candidate, T005 two
SIM_NAN = P0.similarity.copy()
SIM_NAN[0, 0, 0] = np.nan
SIM_NEG = P0.similarity.copy()
SIM_NEG[-1, 0, 0] = -0.5
PREV_NOT_CAND = P0.previous.copy()
PREV_NOT_CAND[int(np.flatnonzero(~P0.candidates.all(axis=1))[0])] = P0.n_images - 1
NO_T001 = P0.candidates.copy()
NO_T001[1] = False
EMB_NAN = P0.embeddings.copy()
EMB_NAN[2, 1, 0] = np.nan
BOTH, ARRAYS, PADDED = ("from_arrays", "from_padded"), ("from_arrays",), ("from_padded",)
E_ARGS = {"similarity": None, "embeddings": P0.embeddings}  # from_arrays deriving the similarity
E_PAIRS = {**E_ARGS, "pair_weights": None}
INVALID, INFEASIBLE = InvalidProblemError, InfeasibleProblemError

BAD_INPUTS = [
    (BOTH, {"scores": np.zeros((0, 3))}, INVALID, r"'scores'.*non-empty 2-D.*shape \(0, 3\)"),
    (BOTH, {"scores": np.where(P0.candidates, np.nan, 0.0)}, INVALID, r"'scores'.*finite.*nan.*'T000'"),
    (BOTH, {"scores": np.where(P0.candidates, np.inf, 0.0)}, INVALID, r"'scores'.*finite.*inf.*'T000'"),
    (BOTH, {"candidates": np.ones((6, 2), bool)}, INVALID, r"'candidates'.*shape of scores \(6, 3\).*\(6, 2\)"),
    (BOTH, {"candidates": NO_T001}, INVALID, r"'candidates'.*at least one image.*no image for title 'T001'"),
    (BOTH, {"title_ids": ("a", "b")}, INVALID, r"'title_ids'.*6 entries.*got 2"),
    (BOTH, {"title_ids": ("a", "b", "c", "a", "d", "e")}, INVALID, r"'title_ids'.*unique.*'a' twice"),
    (BOTH, {"image_ids": P0.image_ids[:5]}, INVALID, r"'image_ids'.*6 entries.*got 5"),
    (BOTH, {"image_ids": (P0.image_ids[0], P0.image_ids[1][:1], *P0.image_ids[2:])}, INVALID,
     r"'image_ids'.*one id per candidate of title 'T001' \(3\).*got 1"),
    (BOTH, {"image_ids": ((P0.image_ids[1][0],), *P0.image_ids[1:])}, INVALID,
     rf"'image_ids'.*unique across the page.*'{P0.image_ids[1][0]}' twice"),
    (ARRAYS, {**E_ARGS, "embeddings": np.ones((6, 2, 5))}, INVALID, r"'embeddings'.*\(6, 3, dim\).*\(6, 2, 5\)"),
    (ARRAYS, {**E_ARGS, "embeddings": EMB_NAN}, INVALID, r"'embeddings'.*finite.*'T002' image index 1"),
    (ARRAYS, {"embeddings": P0.embeddings}, INVALID, r"either 'embeddings' or 'similarity'"),
    (ARRAYS, {**E_PAIRS, "pairs": [[0, 1], [1, 0]]}, INVALID, r"'pairs'.*once.*\('T000', 'T001'\) twice"),
    (ARRAYS, {**E_PAIRS, "pairs": [[0, 0]]}, INVALID, r"'pairs'.*different titles.*'T000'"),
    (ARRAYS, {**E_PAIRS, "pairs": [[0, 7]]}, INVALID, r"'pairs'.*0..5.*\[0, 7\]"),
    (ARRAYS, {"layout": GridLayout(rows=2, cols=3)}, INVALID, r"either 'layout' or 'pairs'"),
    (PADDED, {"pairs": P0.pairs[::-1]}, INVALID, r"'pairs'.*sorted unique pairs"),
    (PADDED, {"pairs": P0.pairs[:, ::-1]}, INVALID, r"'pairs'.*sorted unique pairs"),
    (PADDED, {"pairs": np.vstack([P0.pairs[:-1], [[0, 9]]])}, INVALID, r"'pairs'.*0 <= a < b < 6"),
    (PADDED, {"pairs": P0.pairs.astype(float)}, INVALID, r"'pairs'.*integer array of shape \(n_pairs, 2\)"),
    (BOTH, {"pair_weights": P0.pair_weights[:-1]}, INVALID, r"'pair_weights'.*one weight per pair \(11\)"),
    (BOTH, {"pair_weights": -P0.pair_weights}, INVALID, r"'pairs.weight'.*finite and >= 0.*-"),
    (BOTH, {"similarity": P0.similarity[:-1]}, INVALID, r"'similarity'.*shape.*\(11, 3, 3\).*\(10, 3, 3\)"),
    (BOTH, {"similarity": SIM_NAN}, INVALID, r"'similarity'.*finite and >= 0"),
    (BOTH, {"similarity": SIM_NEG}, INVALID, r"'similarity'.*finite and >= 0"),
    (BOTH, {"previous": np.full(6, -2)}, INVALID, r"'previous'.*-1 \(none\).*-2"),
    (BOTH, {"previous": np.full(6, 3)}, INVALID, r"'previous'.*name a candidate.*index 3.*'T000'"),
    (BOTH, {"previous": PREV_NOT_CAND}, INVALID, r"'previous'.*name a candidate.*'T000'"),
    (BOTH, {"previous": np.zeros(6)}, INVALID, r"'previous'.*integer array"),
    (BOTH, {"locked": np.ones(6, bool), "previous": np.full(6, -1)}, INVALID, r"'locked'.*'T000' locked with none"),
    (BOTH, {"locked": np.ones(5, bool)}, INVALID, r"'locked'.*shape \(6,\)"),
    (BOTH, {"max_changes": -1}, INVALID, r"'max_changes'.*>= 0.*-1"),
    (BOTH, {"max_changes": 1.5}, INVALID, r"'max_changes'.*1.5"),
    (BOTH, {"diversity": -0.1}, INVALID, r"'weights.diversity'.*>= 0.*-0.1"),
    (BOTH, {"churn": np.nan}, INVALID, r"'weights.churn'.*finite"),
    (BOTH, {"scores": np.where(P0.candidates, 1e308, 0.0)}, INVALID, r"'scores'.*objective is finite.*overflow"),
    (BOTH, {"diversity": 1e308}, INVALID, r"'weights.diversity'.*objective is finite.*overflow"),
    (BOTH, {"churn": 1e308}, INVALID, r"'weights.churn'.*objective is finite.*overflow"),
    (BOTH, {"rows": np.zeros(5, int)}, INVALID, r"'rows/cols'.*\(6,\)"),
    (ARRAYS, {"image_tags": {"close": np.ones((6, 3), bool)}, "tag_quotas": {"close": 2}}, INFEASIBLE,
     r"quota for tag 'close'.*at most 2.*6 titles can only show"),
    (ARRAYS, {"image_tags": {}, "tag_quotas": {"close": 2}}, INVALID, r"'image_tags'.*'close'"),
    (ARRAYS, {"image_tags": {"close": np.ones((6, 3), bool)}, "tag_quotas": {"close": -2}}, INVALID,
     r"'quotas.close'.*>= 0"),
    (ARRAYS, {"image_tags": {"close": np.array([[1, 0, 0]] * 6, bool)}, "tag_quotas": {"close": 2},
              "previous": np.zeros(6, int), "max_changes": 1}, INFEASIBLE,
     r"budget of 1 changes and the quota for tag 'close'"),
    (BOTH, {"diversty": 0.1}, UnknownOptionError, r"Unknown option 'diversty' for PageProblem.from_\w+; its options"),
    (PADDED, {"layout": GridLayout(rows=2, cols=3)}, UnknownOptionError, r"from_padded does not take 'layout'"),
    (PADDED, {"tag_quotas": {"close": 1}}, UnknownOptionError, r"from_padded does not take 'tag_quotas'"),
    (PADDED, {"similarity": None}, TypeError, r"from_padded\(\) missing required keyword argument 'similarity'"),
]


def _construct(constructor: str, args: dict):
    return getattr(PageProblem, constructor)(**args)


@pytest.mark.parametrize(
    ("constructor", "overrides", "error", "message"),
    [(c, overrides, error, message) for cs, overrides, error, message in BAD_INPUTS for c in cs],
)
def test_bad_inputs_raise_with_clear_messages(constructor, overrides, error, message):
    assert _construct(constructor, padded_args(P0)).n_titles == 6  # the base arguments are valid
    with pytest.raises(error, match=message):
        _construct(constructor, padded_args(P0, **overrides))


@pytest.mark.parametrize("overrides", [row[1] for row in BAD_INPUTS if row[0] == BOTH])
def test_both_constructors_say_the_same_about_a_bad_field(overrides):
    """One check per rule: the message is the same, word for word, whichever constructor is used
    (up to the constructor's own name for an unknown keyword)."""
    said = []
    for constructor in BOTH:
        with pytest.raises(InvalidProblemError) as err:
            _construct(constructor, padded_args(P0, **overrides))
        said.append(str(err.value).replace(constructor, "<constructor>"))
    assert said[0] == said[1]


@pytest.mark.parametrize("constructor", BOTH)
def test_huge_values_whose_totals_stay_finite_are_accepted(constructor):
    """The finite-objective check bounds the totals by maxima first; where that bound overflows
    but the exact totals do not (one huge pair weight among tiny ones), the page is accepted."""
    weights = np.full(len(P0.pair_weights), 1e-300)
    weights[0] = 1e300
    problem = _construct(constructor, padded_args(P0, pair_weights=weights, diversity=1e7))
    assert problem.n_pairs == len(weights)
    big = np.where(P0.candidates, 1e306, 0.0)  # 6 titles: 2 x 6e306 is finite
    assert _construct(constructor, padded_args(P0, scores=big)).n_titles == 6
