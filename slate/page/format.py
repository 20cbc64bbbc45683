"""The ``slate.page-problem/1`` interchange format: its schema and validation.

Below :mod:`slate.page.problem` (whose ``PageProblem.from_dict``/``to_dict`` use it) and
:mod:`slate.page.io` (files). The format is a JSON object (see ``docs/page-problem-format.md``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from slate.errors import InvalidProblemError
from slate.limits import check_limit
from slate.page.layout import GridLayout

__all__ = ["FORMAT", "problem_arguments"]

FORMAT = "slate.page-problem/1"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Image(_Frozen):
    id: str
    score: float
    embedding: list[float] | None = None
    tags: list[str] = Field(default_factory=list)


_MAX_POSITION = 2**31 - 1  # grid positions are stored as int32 in the logs


class _Title(_Frozen):
    id: str
    row: int | None = Field(default=None, ge=0, le=_MAX_POSITION)
    col: int | None = Field(default=None, ge=0, le=_MAX_POSITION)
    previous: str | None = None
    locked: bool = False
    images: list[_Image]


class _Pair(_Frozen):
    a: str
    b: str
    weight: float = 1.0


class _Weights(_Frozen):
    diversity: float = 0.0
    churn: float = 0.0


class _Layout(_Frozen):
    rows: int = Field(ge=1, le=_MAX_POSITION)
    cols: int = Field(ge=1, le=_MAX_POSITION)


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    format: str
    name: str = ""
    layout: _Layout | None = None
    weights: _Weights = _Weights()
    max_changes: int | None = Field(default=None, ge=0, le=2**62)
    titles: list[_Title]
    pairs: list[_Pair] | None = None
    quotas: dict[str, int] = Field(default_factory=dict)
    optimum: dict[str, Any] | None = None


def _validation_message(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(x) for x in first["loc"]) or "(top level)"
    got = first.get("input")
    got_text = repr(got)
    if len(got_text) > 60:
        got_text = got_text[:57] + "..."
    return f"The page-problem field '{where}' is invalid: {first['msg']}; got {got_text}."


def problem_arguments(data: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a ``slate.page-problem/1`` mapping; the arguments of
    :meth:`PageProblem.from_arrays <slate.page.PageProblem.from_arrays>` that build it.

    Raises
    ------
    InvalidProblemError
        Naming the field and the value that was received.
    """
    if not isinstance(data, Mapping):
        raise InvalidProblemError(f"A page problem must be a JSON object; got {type(data).__name__} instead.")
    try:
        doc = _File.model_validate(dict(data))
    except ValidationError as err:
        raise InvalidProblemError(_validation_message(err)) from None
    if doc.format != FORMAT:
        raise InvalidProblemError(
            f"The page-problem field 'format' must be '{FORMAT}'; got '{doc.format}' instead."
        )
    if not doc.titles:
        raise InvalidProblemError("The page-problem field 'titles' must list at least one title; got none.")

    n_titles = len(doc.titles)
    n_images = max(len(t.images) for t in doc.titles)
    check_limit("max_titles", n_titles, "titles in one page problem")
    check_limit("max_page_cells", n_titles * n_images, "title x image cells in one page problem")
    dims = {len(i.embedding) for t in doc.titles for i in t.images if i.embedding is not None}
    has_emb = [i.embedding is not None for t in doc.titles for i in t.images]
    if any(has_emb) and not all(has_emb):
        raise InvalidProblemError(
            "The page-problem field 'embedding' must be given for every image or for none."
        )
    if len(dims) > 1:
        raise InvalidProblemError(
            f"The page-problem field 'embedding' must have one dimension for every image; got dimensions {sorted(dims)}."
        )
    dim = dims.pop() if dims else 0

    scores = np.zeros((n_titles, n_images))
    cand = np.zeros((n_titles, n_images), dtype=bool)
    emb = np.zeros((n_titles, n_images, dim)) if dim else None
    all_tags = sorted({g for t in doc.titles for i in t.images for g in i.tags} | set(doc.quotas))
    tags = {g: np.zeros((n_titles, n_images), dtype=bool) for g in all_tags}
    previous = np.full(n_titles, -1, dtype=np.int64)
    rows = np.zeros(n_titles, dtype=np.int64)
    cols = np.zeros(n_titles, dtype=np.int64)
    have_pos = all(t.row is not None and t.col is not None for t in doc.titles)
    for ti, title in enumerate(doc.titles):
        if not title.images:
            raise InvalidProblemError(
                f"The page-problem field 'titles[{ti}].images' is empty for title '{title.id}'."
            )
        ids = [i.id for i in title.images]
        for k, image in enumerate(title.images):
            scores[ti, k] = image.score
            cand[ti, k] = True
            if emb is not None and image.embedding is not None:
                emb[ti, k] = image.embedding
            for g in image.tags:
                tags[g][ti, k] = True
        if title.previous is not None:
            if title.previous not in ids:
                raise InvalidProblemError(
                    f"The page-problem field 'titles[{ti}].previous' must name one of the title's images; "
                    f"got '{title.previous}' for title '{title.id}'."
                )
            previous[ti] = ids.index(title.previous)
        if have_pos:
            rows[ti], cols[ti] = int(title.row or 0), int(title.col or 0)
    title_ids = [t.id for t in doc.titles]
    index = {tid: i for i, tid in enumerate(title_ids)}
    # no 'pairs' key: the pairs follow from the layout (GridLayout weights); a 'pairs' list
    # (even an empty one) is the page's interaction graph as given
    derive = doc.pairs is None and doc.layout is not None
    given = doc.pairs or []
    pairs = []
    for pi, pair in enumerate(given):
        for side in (pair.a, pair.b):
            if side not in index:
                raise InvalidProblemError(
                    f"The page-problem field 'pairs[{pi}]' names an unknown title '{side}'."
                )
        pairs.append((index[pair.a], index[pair.b]))
    if have_pos and doc.layout is not None:
        outside = [t.id for t in doc.titles if (t.row or 0) >= doc.layout.rows or (t.col or 0) >= doc.layout.cols]
        if outside:
            raise InvalidProblemError(
                f"The page-problem field 'titles' places title '{outside[0]}' outside the layout "
                f"({doc.layout.rows} rows x {doc.layout.cols} cols)."
            )
    layout = GridLayout(rows=doc.layout.rows, cols=doc.layout.cols) if derive and doc.layout else None
    return dict(
        scores=scores,
        embeddings=emb,
        layout=layout,
        pairs=None if layout is not None else np.asarray(pairs, dtype=np.int64).reshape(-1, 2),
        pair_weights=None if layout is not None else np.asarray([p.weight for p in given], dtype=np.float64),
        candidates=cand,
        previous=previous,
        locked=np.array([t.locked for t in doc.titles]),
        max_changes=doc.max_changes,
        diversity=doc.weights.diversity,
        churn=doc.weights.churn,
        title_ids=title_ids,
        image_ids=[[i.id for i in t.images] for t in doc.titles],
        image_tags={g: tags[g] for g in doc.quotas},
        tag_quotas=doc.quotas,
        rows=rows if have_pos else None,
        cols=cols if have_pos else None,
        name=doc.name,
    )
