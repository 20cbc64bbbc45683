"""Seeded random page problems shaped like real homepages (for tests, benchmarks and research)."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Literal

import numpy as np

from slate.errors import InvalidProblemError, UnknownOptionError
from slate.page.layout import DenseLayout, GridLayout, Layout
from slate.page.problem import PageProblem

__all__ = ["LAYOUT_KINDS", "RandomProblemOptions", "make_layout", "random_problem"]

LAYOUT_KINDS = ("local", "chain", "dense")


def make_layout(kind: str, n_titles: int, cols: int | None = None) -> Layout:
    """The named layout used by the shared instances: ``local``, ``chain`` or ``dense``.

    ``local``: row neighbours weigh 1, farther titles in the row 0.1, the title above/below 0.5;
    ``chain``: only row neighbours; ``dense``: every pair weighs 1.
    """
    if cols is None:
        cols = 5 if n_titles <= 20 else (8 if n_titles <= 80 else 10)
    rows = -(-n_titles // cols)
    if kind == "local":
        return GridLayout(rows=rows, cols=cols)
    if kind == "chain":
        return GridLayout.chain(rows=rows, cols=cols)
    if kind == "dense":
        return DenseLayout()
    raise InvalidProblemError(f"The 'layout' parameter must be one of {LAYOUT_KINDS}; got {kind!r} instead.")


@dataclass(frozen=True)
class RandomProblemOptions:
    """How :func:`random_problem` draws a page problem (everything but its size, layout and seed).

    Attributes
    ----------
    dim : int, default 64
        Embedding dimension.
    n_styles : int, default 6
        Style centres the image embeddings cluster around (quota tags ``"style0"`` ...).
    style_spread : float, default 0.6
        Spread of embeddings around their style centre.
    diversity : float, optional
        Diversity weight; None picks one comparable to the spread of scores (per layout).
    churn : float, default 0.005
    max_changes : int or None, default -1
        Change budget; ``-1`` means a quarter of the titles, None no budget.
    previous_share : float, default 0.85
        Share of titles with a previous image.
    locked_share : float, default 0.1
        Share of those whose image is locked.
    variable_images : bool, default False
        Titles have different numbers of candidates.
    quotas : dict of str to int, optional
        Most titles per style tag, e.g. ``{"style0": 5}``.
    """

    dim: int = 64
    n_styles: int = 6
    style_spread: float = 0.6
    diversity: float | None = None
    churn: float = 0.005
    max_changes: int | None = -1
    previous_share: float = 0.85
    locked_share: float = 0.1
    variable_images: bool = False
    quotas: dict[str, int] | None = None


def random_problem(
    n_titles: int = 40,
    n_images: int = 10,
    layout: Literal["local", "chain", "dense"] = "local",
    *,
    seed: int = 0,
    options: RandomProblemOptions | None = None,
    **overrides: Any,
) -> PageProblem:
    """A seeded page problem with clustered image styles, like the shared instances.

    Images are unit embeddings around ``n_styles`` style centres (close-up, ensemble, ...), so
    images of the same style look alike; scores are a title-level relevance times an image-level
    factor, in [0.01, 0.2]. ``max_changes=-1`` means a quarter of the titles; ``diversity=None``
    picks a weight that makes the page penalty comparable to the spread of scores.

    Quotas name style indices as tags ``"style0"`` ...; e.g. ``{"style0": 5}``.

    Parameters
    ----------
    n_titles, n_images : int
    layout : {"local", "chain", "dense"}
    seed : int
    options : RandomProblemOptions, optional
    **overrides
        Fields of :class:`RandomProblemOptions` (``dim=``, ``max_changes=``, ...), replacing
        those of ``options``.

    Raises
    ------
    UnknownOptionError
        A keyword that is not a field of :class:`RandomProblemOptions`.

    Examples
    --------
    >>> p = random_problem(20, 5, "chain", seed=3)
    >>> p.n_titles, p.n_images, p.is_chain
    (20, 5, True)
    >>> bool((random_problem(seed=1).scores == random_problem(seed=1).scores).all())
    True
    >>> random_problem(6, 3, seed=1, max_changes=None).max_changes is None
    True
    """
    o = options if options is not None else RandomProblemOptions()
    if overrides:
        known = [f.name for f in fields(RandomProblemOptions)]
        unknown = [k for k in overrides if k not in known]
        if unknown:
            raise UnknownOptionError(
                f"Unknown option '{unknown[0]}' for random_problem; its options are {', '.join(known)}."
            )
        o = replace(o, **overrides)
    dim, n_styles, style_spread, diversity, churn = o.dim, o.n_styles, o.style_spread, o.diversity, o.churn
    max_changes, previous_share, locked_share = o.max_changes, o.previous_share, o.locked_share
    variable_images, quotas = o.variable_images, o.quotas
    if n_titles < 1 or n_images < 1:
        raise InvalidProblemError(
            f"random_problem needs n_titles >= 1 and n_images >= 1; got {n_titles} and {n_images} instead."
        )
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_styles, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    style = rng.integers(0, n_styles, size=(n_titles, n_images))
    emb = centres[style] + style_spread * rng.normal(size=(n_titles, n_images, dim)) / np.sqrt(dim)
    emb /= np.linalg.norm(emb, axis=2, keepdims=True)
    relevance = rng.uniform(0.02, 0.12, size=(n_titles, 1))
    factor = rng.lognormal(0.0, 0.35, size=(n_titles, n_images))
    scores = np.clip(relevance * factor, 0.01, 0.2)

    cand = np.ones((n_titles, n_images), dtype=bool)
    if variable_images and n_images > 1:
        counts = rng.integers(max(1, n_images // 3), n_images + 1, size=n_titles)
        cand = np.arange(n_images)[None, :] < counts[:, None]
    n_cand = cand.sum(axis=1)
    has_prev = rng.random(n_titles) < previous_share
    previous = np.where(has_prev, (rng.random(n_titles) * n_cand).astype(np.int64), -1)
    locked = has_prev & (rng.random(n_titles) < locked_share)
    lay = make_layout(layout, n_titles)
    if diversity is None:
        diversity = {"local": 0.08, "chain": 0.1, "dense": 0.02}.get(layout, 0.08)
    budget = max(1, n_titles // 4) if max_changes == -1 else max_changes
    tags = None
    if quotas:
        tags = {f"style{s}": style == s for s in range(n_styles)}
    return PageProblem.from_arrays(
        np.where(cand, scores, 0.0),
        np.where(cand[:, :, None], emb, 0.0),
        layout=lay,
        candidates=cand,
        previous=previous,
        locked=locked,
        max_changes=budget,
        diversity=diversity,
        churn=churn,
        image_tags=tags,
        tag_quotas=quotas,
        name=f"{layout}-{n_titles}x{n_images}-random-s{seed}",
    )
