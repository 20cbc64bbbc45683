"""PageProblem.build (one builder from a Page) and with_weights / with_stability."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slate.errors import InvalidProblemError
from slate.page import GridLayout, Interactions, Page, PageProblem, PageRequest, Stability, Weights


def _page(n_titles: int = 6, n_images: int = 3, cols: int = 3) -> Page:
    return Page.of(PageRequest(member_id=1, session_id=1, titles=[
        {"title_id": f"T{t}", "image_ids": [f"T{t}-{k}" for k in range(n_images - (t % 2))],
         "row": t // cols, "col": t % cols} for t in range(n_titles)]))


def _parts(seed: int, page: Page) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    scores = rng.uniform(0, 0.2, page.candidates.shape)
    emb = rng.normal(size=(*page.candidates.shape, 4))
    return scores, emb


def _same(a: PageProblem, b: PageProblem) -> None:
    for name in ("title_ids", "image_ids", "max_changes", "diversity", "churn", "tag_names"):
        assert getattr(a, name) == getattr(b, name), name
    for name in ("scores", "candidates", "pairs", "pair_weights", "similarity", "previous", "locked",
                 "rows", "cols"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def test_build_takes_ids_positions_and_candidates_from_the_page():
    page = _page()
    scores, emb = _parts(0, page)
    problem = PageProblem.build(page, scores, interactions=Interactions(embeddings=emb), weights=Weights(0.1))
    assert problem.title_ids == page.title_ids and problem.image_ids == page.image_ids
    np.testing.assert_array_equal(problem.candidates, page.candidates)
    np.testing.assert_array_equal(problem.rows, page.rows)
    same = PageProblem.from_arrays(scores, emb, candidates=page.candidates, title_ids=page.title_ids,
                                   image_ids=page.image_ids, rows=page.rows, cols=page.cols,
                                   layout=GridLayout(rows=2, cols=3), diversity=0.1)
    _same(problem, same)


def test_build_with_padded_interactions_equals_the_derived_ones():
    page = _page()
    scores, emb = _parts(1, page)
    stability = Stability(previous=[0] * 6, locked=[True] + [False] * 5, max_changes=2)
    derived = PageProblem.build(page, scores, interactions=Interactions(embeddings=emb), weights=Weights(0.1),
                                stability=stability)
    padded = PageProblem.build(page, scores, interactions=Interactions(derived.pairs, derived.pair_weights,
                                                                       derived.similarity),
                               weights=Weights(0.1), stability=stability)
    _same(derived, padded)


@pytest.mark.parametrize(("swap", "message"), [
    ({"previous": [5, -1, -1, -1, -1, -1]}, "'previous' field .* must name a candidate image of its title"),
    ({"previous": [-2, -1, -1, -1, -1, -1]}, "'previous' field .* must be -1 \\(none\\) or a candidate index"),
    ({"previous": [0.5] * 6}, "'previous' field .* must be an integer array of shape \\(6,\\)"),
    ({"locked": [True] * 6}, "'locked' field .* must lock only titles with a previous image"),
    ({"locked": [True]}, "'locked' field .* must have shape \\(6,\\)"),
    ({"max_changes": -1}, "'max_changes' field .* must be None or an integer >= 0"),
    ({"max_changes": True}, "'max_changes' field .* must be None or an integer >= 0"),
    ({"candidates": np.zeros((6, 3), bool)}, "'candidates' field .* must give every title at least one image"),
    ({"candidates": np.ones((6, 3), bool)}, "'candidates' field .* must be a subset of the problem's candidates"),
])
def test_with_stability_checks_what_it_swaps_as_the_constructors_do(swap, message):
    page = _page()
    problem = PageProblem.build(page, _parts(2, page)[0])
    with pytest.raises(InvalidProblemError, match=message):
        problem.with_stability(**swap)
    if "candidates" not in swap:  # the same message from the builder
        with pytest.raises(InvalidProblemError, match=message):
            PageProblem.build(page, _parts(2, page)[0], stability=Stability(**swap))


@pytest.mark.parametrize("weights", [{"diversity": -0.1}, {"churn": float("nan")}, {"diversity": "x"}])
def test_with_weights_checks_the_weights(weights):
    page = _page()
    problem = PageProblem.build(page, _parts(3, page)[0])
    with pytest.raises(InvalidProblemError, match=r"'weights\.(diversity|churn)' field"):
        problem.with_weights(**weights)


finite = st.floats(0, 10, allow_nan=False)


@given(seed=st.integers(0, 2**16), diversity=finite, churn=finite)
@settings(max_examples=30, deadline=None)
def test_with_weights_equals_a_fresh_build(seed, diversity, churn):
    page = _page()
    scores, emb = _parts(seed, page)
    inter, stab = Interactions(embeddings=emb), Stability(previous=[0] * 6)
    base = PageProblem.build(page, scores, interactions=inter, stability=stab, weights=Weights(0.3, 0.1))
    fresh = PageProblem.build(page, scores, interactions=inter, stability=stab, weights=Weights(diversity, churn))
    swapped = base.with_weights(diversity=diversity, churn=churn)
    _same(swapped, fresh)
    a = np.zeros(6, dtype=np.int64)
    assert swapped.evaluate(a) == fresh.evaluate(a)
    assert base.diversity == 0.3  # the base is unchanged


@given(seed=st.integers(0, 2**16), data=st.data())
@settings(max_examples=30, deadline=None)
def test_with_stability_equals_a_fresh_build(seed, data):
    page = _page()
    scores, emb = _parts(seed, page)
    n_cand = page.candidates.sum(axis=1)
    previous = [data.draw(st.integers(-1, int(n) - 1)) for n in n_cand]
    locked = [p >= 0 and data.draw(st.booleans()) for p in previous]
    budget = data.draw(st.none() | st.integers(0, 6))
    inter = Interactions(embeddings=emb)
    base = PageProblem.build(page, scores, interactions=inter, weights=Weights(0.2))
    fresh = PageProblem.build(page, scores, interactions=inter, weights=Weights(0.2),
                              stability=Stability(previous, locked, budget))
    _same(base.with_stability(previous=previous, locked=locked, max_changes=budget), fresh)
