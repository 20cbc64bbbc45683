"""The serving boundary: the composer's configuration (pydantic models) and image catalog.

The page request itself is :class:`slate.page.PageRequest` (re-exported here, the same class).
Requests and configuration are validated once, when they come in (frozen models,
``extra="forbid"``); past that, :func:`slate.serve.compose` works on arrays. A malformed request
raises :class:`InvalidRequestError`, naming the field and what was received.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from slate.errors import InvalidRequestError
from slate.page.request import PageRequest, TitleRequest, parse_request
from slate.stability.rules import StabilityRules

__all__ = [
    "ComposeConfig",
    "ExplorationConfig",
    "ImageCatalog",
    "InvalidRequestError",
    "PageRequest",
    "TitleRequest",
    "parse_request",
]

_BLOCK_CACHE_SIZE = 4096  # titles whose embedding rows an ImageCatalog keeps (a few MB)


class ExplorationConfig(BaseModel):
    """Sticky epsilon exploration as configuration: the parameters of
    :class:`slate.serve.StickyEpsilon` (same names, defaults and meaning).

    Examples
    --------
    >>> ExplorationConfig(epsilon=0.1, sticky_sessions=2).make()
    StickyEpsilon(epsilon=0.1, max_explored=2, sticky_sessions=2, sticky_days=3.0, seed=0)
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    epsilon: float = Field(default=0.05, ge=0, le=1, allow_inf_nan=False)
    """Probability that an eligible title's coin comes up."""
    max_explored: int | None = Field(default=2, ge=0)
    """At most this many explored titles per page (None: no limit of its own)."""
    sticky_sessions: int | None = Field(default=None, ge=1)
    """A draw is held for this many sessions ..."""
    sticky_days: float | None = Field(default=3.0, ge=0, allow_inf_nan=False)
    """... or this many days, whichever comes first (both None: until the state expires)."""
    seed: int = Field(default=0, ge=0)
    """Draws are seeded by ``(seed, member_id, session_id)``."""

    def make(self) -> Any:
        """The :class:`slate.serve.StickyEpsilon` these parameters describe."""
        from slate.bandit.exploration import StickyEpsilon

        return StickyEpsilon(**self.model_dump())


class ComposeConfig(BaseModel):
    """How :func:`slate.serve.compose` builds and solves a page.

    Attributes
    ----------
    solver : str
        Registered solver name (``"fast"``, the serving default; see :func:`slate.available_solvers`).
    solver_options : dict
        Options for the solver's constructor (e.g. ``{"compute_bound": False}`` for ``fast``).
    solver_time_ms : float
        Time budget of the solve.
    solver_grace_ms : float
        A solve that returns later than ``solver_time_ms + solver_grace_ms`` is reported as late.
    scoring_budget_ms, store_budget_ms : float
        Scoring, or a store read or write, slower than this is reported as late.
    diversity : float
        Weight of the visual-similarity penalty between interacting titles.
    layout : {"grid", "chain", "dense"}
        Which titles interact: grid neighbours (row, farther in the row, above/below), row
        neighbours only, or every pair.
    stability : StabilityRules
    exploration : ExplorationConfig or None
        Sticky epsilon exploration (:class:`~slate.serve.StickyEpsilon`); None (the default):
        none. An ``exploration`` given to :class:`~slate.serve.Composer` or ``compose()`` takes
        precedence.

    Examples
    --------
    >>> ComposeConfig(solver_time_ms=0)
    Traceback (most recent call last):
    ...
    pydantic_core._pydantic_core.ValidationError: 1 validation error for ComposeConfig
    solver_time_ms
      Input should be greater than 0 [type=greater_than, input_value=0, input_type=int]
        ...
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    solver: str = "fast"
    solver_options: dict[str, Any] = Field(default_factory=dict)
    solver_time_ms: float = Field(default=2.0, gt=0, allow_inf_nan=False)
    solver_grace_ms: float = Field(default=5.0, ge=0, allow_inf_nan=False)
    scoring_budget_ms: float = Field(default=20.0, gt=0, allow_inf_nan=False)
    store_budget_ms: float = Field(default=20.0, gt=0, allow_inf_nan=False)
    diversity: float = Field(default=0.05, ge=0, allow_inf_nan=False)
    layout: Literal["grid", "chain", "dense"] = "grid"
    stability: StabilityRules = StabilityRules()
    exploration: ExplorationConfig | None = None

    @classmethod
    def from_effects(cls, effects: Any, **overrides: Any) -> ComposeConfig:
        """A config whose diversity and churn weights are the estimated ones (:mod:`slate.replay.effects`).

        ``diversity = effects.diversity.estimate`` and ``stability.churn = effects.churn.estimate``
        (take-probability units: ``2 * strength * take rate`` and ``-change * take rate``),
        clipped at 0; an effect that could not be estimated keeps the default. ``effects`` is a
        :class:`~slate.replay.effects.PageEffects`, its ``to_dict()``, or the path of a
        ``slate effects --out`` file (a ``slate.effects/1`` document); ``overrides`` are further
        fields.

        Raises
        ------
        InvalidConfigError
            The file is missing, not JSON, or not a ``slate.effects/1`` document.

        Examples
        --------
        >>> doc = {"format": "slate.effects/1", "diversity": {"estimate": 0.012}, "churn": {"estimate": None}}
        >>> cfg = ComposeConfig.from_effects(doc)
        >>> cfg.diversity, cfg.stability.churn == StabilityRules().churn
        (0.012, True)
        """
        diversity, churn = _effect_weights(effects)
        fields: dict[str, Any] = dict(overrides)
        if diversity is not None and "diversity" not in overrides:
            fields["diversity"] = max(0.0, diversity)
        if churn is not None and "stability" not in overrides:
            fields["stability"] = StabilityRules(churn=max(0.0, churn))
        return cls(**fields)


def _effect_weights(effects: Any) -> tuple[float | None, float | None]:
    """The (diversity, churn) estimates of a PageEffects, its dict, or a ``slate effects`` file.

    Read by duck typing: serve sits beside replay, not above it (docs/architecture.md)."""
    import json
    import os

    from slate.errors import InvalidConfigError

    if isinstance(effects, (str, os.PathLike)):
        try:
            with open(effects, encoding="utf-8") as f:
                effects = json.load(f)
        except (OSError, ValueError) as err:
            raise InvalidConfigError(f"The effects file '{os.fspath(effects)}' cannot be read as JSON: {err}.") from None
    if isinstance(effects, dict):
        if effects.get("format") != "slate.effects/1":
            raise InvalidConfigError("The effects must be a slate.effects/1 document (from `slate effects --out`).")
        try:
            values = [effects[k]["estimate"] for k in ("diversity", "churn")]
        except (KeyError, TypeError) as err:
            raise InvalidConfigError(f"The effects document is missing {err}.") from None
    else:
        values = [getattr(getattr(effects, k, None), "estimate", None) for k in ("diversity", "churn")]
    out = [None if v is None else float(v) for v in values]
    return out[0], out[1]


class ImageCatalog:
    """A serving view of :class:`~slate.page.embeddings.ImageEmbeddings`: float32 unit vectors
    with an index by image id and a per-title cache of padded blocks, for ``compose()``.

    Parameters
    ----------
    image_ids : sequence of str, or ImageEmbeddings (or anything
        :func:`~slate.page.embeddings.as_image_embeddings` takes: a mapping, a table, a path)
    embeddings : array_like (n_images, dim), optional
        The vectors, when ``image_ids`` is a sequence of ids.

    Raises
    ------
    InvalidEmbeddingsError
        As :class:`~slate.page.embeddings.ImageEmbeddings` (wrong shape, repeated ids,
        non-finite or all-zero vectors); also an :class:`~slate.errors.InvalidProblemError`.

    Examples
    --------
    >>> cat = ImageCatalog(["a", "b"], [[3.0, 4.0], [0.0, 2.0]])
    >>> cat.rows(["b", "zz", "a"]).tolist(), cat.dim
    ([1, 2, 0], 2)
    >>> cat.unit[0].tolist()
    [0.6000000238418579, 0.800000011920929]
    >>> ImageCatalog({"a": [1.0, 0.0]}).embeddings.image_ids
    ('a',)
    """

    def __init__(self, image_ids: Any, embeddings: Any = None) -> None:
        from slate.page.embeddings import ImageEmbeddings, as_image_embeddings

        if embeddings is None:
            emb = as_image_embeddings(image_ids)
        else:
            emb = ImageEmbeddings(tuple(str(x) for x in image_ids), embeddings, "ImageCatalog")
        self.embeddings = emb
        self.index: dict[str, int] = {image: i for i, image in enumerate(emb.image_ids)}
        # one extra zero row: the embedding of padding and of unknown images
        self.unit = np.vstack([emb.vectors, np.zeros((1, emb.dim))]).astype(np.float32)
        self.unit.flags.writeable = False
        self.missing_row = len(emb)
        # a title's image list -> its rows of `unit` and how many are missing (derived data of
        # this catalog, bounded; a serving catalog repeats titles across members' pages)
        self._blocks: dict[tuple[str, ...], tuple[NDArray[np.float32], int]] = {}

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        return int(self.unit.shape[1])

    def __len__(self) -> int:
        return self.missing_row

    def page_units(self, image_ids: Sequence[Sequence[str]], n_images: int) -> tuple[NDArray[np.float32], int]:
        """Unit embeddings of a page's candidates, padded, and how many images are unknown.

        Parameters
        ----------
        image_ids : sequence of sequences of str
            Each title's candidate images (at most ``n_images`` per title).
        n_images : int
            Padded width.

        Returns
        -------
        units : ndarray (n_titles, n_images, dim), float32
            ``unit[rows(image_ids[t])]`` padded with the zero row (the row of unknown images).
        n_missing : int
            Images without an embedding.

        Examples
        --------
        >>> cat = ImageCatalog(["a", "b"], [[3.0, 4.0], [0.0, 2.0]])
        >>> units, n_missing = cat.page_units([("b", "zz"), ("a",)], 2)
        >>> units.shape, n_missing, units[1, 1].tolist()
        ((2, 2, 2), 1, [0.0, 0.0])
        """
        get = self._blocks.get
        try:
            hits = [get(ids) for ids in image_ids]  # type: ignore[call-overload]  # tuples from a PageRequest
        except TypeError:  # lists: unhashable
            image_ids = [tuple(ids) for ids in image_ids]
            hits = [get(ids) for ids in image_ids]  # type: ignore[call-overload]
        found = [
            hit if hit is not None else self._block(tuple(ids))
            for hit, ids in zip(hits, image_ids, strict=True)
        ]
        blocks = [h[0] for h in found]
        n_missing = sum([h[1] for h in found])
        if blocks and all([len(b) == n_images for b in blocks]):
            return np.concatenate(blocks).reshape(len(blocks), n_images, -1), n_missing
        units = np.zeros((len(blocks), n_images, self.unit.shape[1]), dtype=self.unit.dtype)
        for t, block in enumerate(blocks):
            units[t, : len(block)] = block
        return units, n_missing

    def _block(self, ids: tuple[str, ...]) -> tuple[NDArray[np.float32], int]:
        """A title's rows of :attr:`unit` and its number of unknown images (cached)."""
        rows = self.rows(ids)
        block = self.unit[rows]
        block.flags.writeable = False
        hit = (block, int((rows == self.missing_row).sum()))
        if len(self._blocks) >= _BLOCK_CACHE_SIZE:
            self._blocks.clear()
        self._blocks[ids] = hit
        return hit

    def rows(self, image_ids: Any) -> np.ndarray:
        """Row of each image in :attr:`unit` (the zero row for an unknown image)."""
        ids = image_ids if isinstance(image_ids, (list, tuple)) else list(image_ids)
        if not ids:
            return np.zeros(0, dtype=np.int64)
        try:
            found = itemgetter(*ids)(self.index)
        except KeyError:
            get = self.index.get
            missing = self.missing_row
            return np.array([get(i, missing) for i in ids], dtype=np.int64)
        return np.array(found if len(ids) > 1 else (found,), dtype=np.int64)
