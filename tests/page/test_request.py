"""One page request (slate.page.PageRequest) and its array form, slate.page.Page."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import slate.bandit
import slate.page
import slate.serve
import slate.serve.request
from slate.bandit import FeatureRequest
from slate.errors import InvalidRequestError
from slate.page import Page, PageRequest, parse_request


def _request(n_images=(2, 1), locked=(False, True)) -> PageRequest:
    return PageRequest(member_id=1, session_id=2, titles=[
        {"title_id": f"T{t}", "image_ids": [f"T{t}-{k}" for k in range(n)], "row": t // 3, "col": t % 3,
         "locked": lock}
        for t, (n, lock) in enumerate(zip(n_images, locked, strict=True))])


def test_one_class_named_page_request():
    assert slate.serve.PageRequest is PageRequest
    assert slate.serve.request.PageRequest is PageRequest
    assert slate.serve.parse_request is parse_request
    assert slate.serve.TitleRequest is slate.page.TitleRequest


@pytest.mark.parametrize("module", ["slate.bandit", "slate.bandit.requests"])
def test_bandit_page_request_is_a_deprecated_alias_of_feature_request(module):
    mod = importlib.import_module(module)
    with pytest.warns(DeprecationWarning, match="FeatureRequest"):
        alias = mod.PageRequest
    assert alias is FeatureRequest
    assert "PageRequest" not in mod.__all__
    with pytest.raises(AttributeError):
        mod.NoSuchName  # noqa: B018


def test_page_of_a_request():
    page = Page.of(_request((3, 1), (False, True)))
    assert page.title_ids == ("T0", "T1")
    assert page.image_ids == (("T0-0", "T0-1", "T0-2"), ("T1-0",))
    assert page.candidates.tolist() == [[True, True, True], [True, False, False]]
    assert page.rows.tolist() == [0, 0] and page.cols.tolist() == [0, 1]
    assert page.locked.tolist() == [False, True]
    assert (page.n_titles, page.n_images) == (2, 3)
    for array in (page.candidates, page.rows, page.cols, page.locked):
        assert not array.flags.writeable
    with pytest.raises(AttributeError):
        page.title_ids = ()  # type: ignore[misc]


@given(st.lists(st.tuples(st.integers(1, 5), st.booleans()), min_size=1, max_size=12))
@settings(max_examples=50, deadline=None)
def test_page_mask_counts_each_title_s_images(titles):
    request = _request(tuple(n for n, _ in titles), tuple(lock for _, lock in titles))
    page = Page.of(request)
    assert page.candidates.sum(axis=1).tolist() == [len(t.image_ids) for t in request.titles]
    assert page.n_images == request.n_images
    assert page.locked.tolist() == [t.locked for t in request.titles]
    assert np.array_equal(page.rows * 3 + page.cols, np.arange(len(titles)))


def test_parse_request_names_the_bad_field():
    with pytest.raises(InvalidRequestError, match="'titles' field of the page request"):
        parse_request({"member_id": 1, "session_id": 2, "titles": []})
    with pytest.raises(InvalidRequestError, match="appears twice on the page"):
        parse_request({"member_id": 1, "session_id": 2, "titles": [
            {"title_id": "A", "image_ids": ["x"], "row": 0, "col": 0},
            {"title_id": "A", "image_ids": ["y"], "row": 0, "col": 1}]})
