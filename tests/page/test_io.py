"""The slate.page-problem/1 file format."""

from __future__ import annotations

import json

import numpy as np
import pytest

from slate.errors import InvalidProblemError
from slate.page import problem_from_dict, random_problem, read_optimum, read_problem, write_problem
from tests.pages import certified_objective, instance_paths


def test_every_shared_instance_reads_and_its_optimum_evaluates_to_the_certified_value():
    paths = instance_paths()
    assert len(paths) == 24
    for path in paths:
        p = read_problem(path)
        optimum = read_optimum(path)
        a = p.assignment_from_ids(optimum["assignment"])
        assert p.is_feasible(a), path.name
        assert p.evaluate(a).objective == pytest.approx(certified_objective(path), abs=1e-6)


@pytest.mark.parametrize("quotas", [None, {"style0": 6, "style1": 9}])
def test_write_read_round_trip(tmp_path, quotas):
    p = random_problem(12, 4, "local", seed=5, variable_images=True, quotas=quotas)
    path = tmp_path / "page.json"
    write_problem(p, path, optimum={"objective": 1.0})
    q = read_problem(path)
    assert q.title_ids == p.title_ids and q.image_ids == p.image_ids
    for name in (
        "scores",
        "candidates",
        "pairs",
        "pair_weights",
        "previous",
        "locked",
        "image_tags",
        "tag_max",
    ):
        np.testing.assert_array_equal(getattr(q, name), getattr(p, name), err_msg=name)
    np.testing.assert_allclose(q.similarity, p.similarity, atol=1e-12)
    assert (q.max_changes, q.diversity, q.churn, q.tag_names) == (
        p.max_changes,
        p.diversity,
        p.churn,
        p.tag_names,
    )
    assert read_optimum(path) == {"objective": 1.0}


def _doc():
    return json.loads(instance_paths()[0].read_text())


def _edit(fn):
    doc = _doc()
    fn(doc)
    return doc


BAD_FILES = [
    (
        _edit(lambda d: d.update(format="slate.page-problem/9")),
        r"'format'.*slate.page-problem/1.*page-problem/9",
    ),
    (_edit(lambda d: d.update(titles=[])), r"'titles'.*at least one"),
    (_edit(lambda d: d["titles"][0].update(previous="nope")), r"'titles\[0\].previous'.*'nope'"),
    (_edit(lambda d: d["titles"][0]["images"][0].update(score="high")), r"'titles.0.images.0.score'.*'high'"),
    (_edit(lambda d: d["titles"][0]["images"][0].update(score=float("nan"))), r"'scores'.*finite"),
    (
        _edit(lambda d: d["titles"][0]["images"][0].update(embedding=[1.0, 2.0])),
        r"'embedding'.*one dimension.*\[2, 64\]",
    ),
    (_edit(lambda d: d["titles"][0].update(images=[])), r"'titles\[0\].images' is empty"),
    (
        _edit(lambda d: d["pairs"].append({"a": "T000", "b": "ZZZ", "weight": 1})),
        r"'pairs\[\d+\]'.*unknown title 'ZZZ'",
    ),
    (_edit(lambda d: d.update(surprise=1)), r"'surprise'.*Extra inputs"),
    (_edit(lambda d: d.update(max_changes=-3)), r"'max_changes'.*-3"),
    (_edit(lambda d: d["weights"].update(diversity=-1)), r"'weights.diversity'.*-1"),
    ([1, 2], r"JSON object.*list"),
]


@pytest.mark.parametrize(("doc", "message"), BAD_FILES)
def test_bad_files_raise_with_the_field_named(doc, message):
    with pytest.raises(InvalidProblemError, match=message):
        problem_from_dict(doc)


def test_unreadable_and_malformed_files(tmp_path):
    with pytest.raises(InvalidProblemError, match="Cannot read page-problem file"):
        read_problem(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"format": ')
    with pytest.raises(InvalidProblemError, match=r"not valid JSON.*line 1"):
        read_problem(broken)
