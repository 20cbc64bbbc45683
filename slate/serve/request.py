"""The serving boundary: the composer's configuration (pydantic models).

The page request itself is :class:`slate.page.PageRequest` (re-exported here, the same class).
Requests and configuration are validated once, when they come in (frozen models,
``extra="forbid"``); past that, :func:`slate.serve.compose` works on arrays. A malformed request
raises :class:`InvalidRequestError`, naming the field and what was received.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from slate.errors import InvalidRequestError
from slate.page.request import PageRequest, TitleRequest, parse_request
from slate.stability.rules import StabilityRules

if TYPE_CHECKING:  # pyarrow is imported on use: `import slate.serve` stays light
    from slate.page.embeddings import ImageEmbeddings

__all__ = [
    "ComposeConfig",
    "ExplorationConfig",
    "ImageCatalog",
    "InvalidRequestError",
    "PageRequest",
    "TitleRequest",
    "parse_request",
]

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


class _CatalogAlias(type):
    """``isinstance(x, ImageCatalog)`` is ``isinstance(x, ImageEmbeddings)``."""

    def __instancecheck__(cls, obj: object) -> bool:
        from slate.page.embeddings import ImageEmbeddings

        return isinstance(obj, ImageEmbeddings)


class ImageCatalog(metaclass=_CatalogAlias):
    """Deprecated alias of :class:`slate.page.embeddings.ImageEmbeddings` (also
    ``slate.replay.ImageEmbeddings``), the one embeddings class, which serves ``compose()``
    itself (:meth:`~slate.page.embeddings.ImageEmbeddings.page_units`).

    ``ImageCatalog(image_ids, vectors)`` returns ``ImageEmbeddings(image_ids, vectors)`` and
    ``ImageCatalog(obj)`` returns ``as_image_embeddings(obj)`` (a mapping, a table, a path or an
    ``ImageEmbeddings``), with a ``DeprecationWarning``; ``isinstance(x, ImageCatalog)`` is true
    of every ``ImageEmbeddings``. Write ``ImageEmbeddings(image_ids, vectors)`` instead.

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore", DeprecationWarning)
    ...     cat = ImageCatalog(["a", "b"], [[3.0, 4.0], [0.0, 2.0]])
    >>> type(cat).__name__, isinstance(cat, ImageCatalog), cat.rows(["b", "zz", "a"]).tolist()
    ('ImageEmbeddings', True, [1, 2, 0])
    """

    def __new__(cls, image_ids: Any, embeddings: Any = None) -> ImageEmbeddings:  # type: ignore[misc]
        from slate.page.embeddings import ImageEmbeddings, as_image_embeddings

        warnings.warn(
            "slate.serve.ImageCatalog is deprecated: it is slate.page.embeddings.ImageEmbeddings; "
            "write ImageEmbeddings(image_ids, vectors).",
            DeprecationWarning,
            stacklevel=2,
        )
        if embeddings is None:
            return as_image_embeddings(image_ids)
        return ImageEmbeddings(tuple(str(x) for x in image_ids), embeddings, "ImageCatalog")
