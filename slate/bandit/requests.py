"""Request and outcome models at the boundary (pydantic, frozen, ``extra="forbid"``).

A bandit builds its feature vectors from a :class:`FeatureRequest`: the member's context and, per
title, the candidate images with their signals. (The page request of serving, titles with their
images and positions, is :class:`slate.page.PageRequest`; ``slate.bandit.PageRequest`` is a
deprecated alias of :class:`FeatureRequest`.) :class:`FeatureConfig` fixes the
vocabularies that turn requests into feature vectors (see :class:`slate.bandit.FeatureBuilder`).
Outcomes (:class:`ImpressionOutcome`) become labels through :class:`QualityPlayLabel`: a
*quality* play, not a click.
"""

from __future__ import annotations

import warnings
from typing import Annotated, Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from pydantic import BaseModel, ConfigDict, Field, model_validator

from slate.errors import InvalidProblemError

__all__ = [
    "FeatureConfig",
    "FeatureRequest",
    "ImageCandidate",
    "ImpressionOutcome",
    "MemberContext",
    "QualityPlayLabel",
    "TitleCandidate",
]

Affinity = Annotated[float, Field(ge=0.0, le=1.0)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class MemberContext(_Frozen):
    """Who is looking, and when.

    Examples
    --------
    >>> MemberContext(member_id="m1", genre_affinity={"comedy": 0.8}, device="tv", hour=21).hour
    21
    """

    member_id: str = Field(min_length=1)
    genre_affinity: dict[str, Affinity] = Field(default_factory=dict)
    """Share of the member's viewing per genre/theme (from viewing history), each in [0, 1]."""
    cast_affinity: dict[str, Affinity] = Field(default_factory=dict)
    """Preference for cast members (e.g. share of viewing featuring them), each in [0, 1]."""
    country: str = ""
    language: str = ""
    device: str = ""
    hour: int = Field(default=12, ge=0, le=23)
    """Local hour of the request (time of day)."""
    day_of_week: int = Field(default=0, ge=0, le=6)
    """Monday is 0."""


class ImageCandidate(_Frozen):
    """One candidate artwork of a title and its signals."""

    image_id: str = Field(min_length=1)
    themes: tuple[str, ...] = ()
    """Genre/theme tags of what the image shows (comedy, romance, ...)."""
    cast: tuple[str, ...] = ()
    """Cast members visible in the image."""
    aesthetics: tuple[str, ...] = ()
    """Aesthetic tags (close-up, ensemble, action, dark, bright, ...)."""
    embedding: tuple[float, ...] | None = None
    """Visual embedding (length ``FeatureConfig.embedding_dim``)."""


class TitleCandidate(_Frozen):
    """A title on the page with its candidate images and member-title signals."""

    title_id: str = Field(min_length=1)
    images: tuple[ImageCandidate, ...] = Field(min_length=1)
    recommender_score: float = 0.0
    """What the recommender thinks of the title for this member, whatever the image."""
    interacted: bool = False
    """Whether the member has interacted with (e.g. played) the title before."""

    @model_validator(mode="after")
    def _unique_images(self) -> TitleCandidate:
        seen: set[str] = set()
        for im in self.images:
            if im.image_id in seen:
                raise ValueError(f"image id '{im.image_id}' appears twice among the candidates of '{self.title_id}'")
            seen.add(im.image_id)
        return self


class FeatureRequest(_Frozen):
    """One member's homepage to score: the member context and the titles with candidate images.

    Examples
    --------
    >>> req = FeatureRequest(member=MemberContext(member_id="m1"),
    ...                      titles=[TitleCandidate(title_id="t1", images=[ImageCandidate(image_id="i1")])])
    >>> len(req.titles), req.titles[0].images[0].image_id
    (1, 'i1')
    """

    member: MemberContext
    titles: tuple[TitleCandidate, ...] = Field(min_length=1)
    request_id: str = ""

    @model_validator(mode="after")
    def _unique_titles(self) -> FeatureRequest:
        seen: set[str] = set()
        for t in self.titles:
            if t.title_id in seen:
                raise ValueError(f"title id '{t.title_id}' appears twice on the page")
            seen.add(t.title_id)
        return self


class FeatureConfig(_Frozen):
    """Vocabularies and switches of the feature vector.

    ``genres`` is shared by member affinities and image themes (so they can interact);
    categorical member fields outside their list are encoded in an ``<other>`` column.
    Tags outside the vocabularies raise unless ``unknown_tags="ignore"``.
    """

    genres: tuple[str, ...] = Field(min_length=1)
    aesthetics: tuple[str, ...] = ()
    countries: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    embedding_dim: int = Field(default=0, ge=0)
    embedding_interactions: bool = False
    """Add genre-affinity x embedding features (``len(genres) * embedding_dim`` columns)."""
    unknown_tags: Literal["error", "ignore"] = "error"

    @model_validator(mode="after")
    def _unique_vocab(self) -> FeatureConfig:
        for name in ("genres", "aesthetics", "countries", "languages", "devices"):
            values = getattr(self, name)
            if len(set(values)) != len(values):
                raise ValueError(f"'{name}' lists a value twice: {list(values)}")
        return self


class ImpressionOutcome(_Frozen):
    """What happened after an impression (arrives later, possibly out of order)."""

    impression_id: str = Field(min_length=1)
    minutes_played: float = Field(default=0.0, ge=0.0)
    fraction_completed: float = Field(default=0.0, ge=0.0, le=1.0)


class QualityPlayLabel(_Frozen):
    """The label: a play counts only when engagement passes a threshold (not a click).

    A play is a quality play when ``minutes_played >= min_minutes`` or (when set)
    ``fraction_completed >= min_fraction``.

    Examples
    --------
    >>> QualityPlayLabel(min_minutes=10).label([0.0, 3.0, 25.0]).tolist()
    [0.0, 0.0, 1.0]
    >>> QualityPlayLabel(min_minutes=60, min_fraction=0.5).label([20, 20], [0.9, 0.1]).tolist()
    [1.0, 0.0]
    """

    min_minutes: float = Field(default=15.0, gt=0.0)
    min_fraction: float | None = Field(default=None, gt=0.0, le=1.0)

    def label(self, minutes_played: ArrayLike, fraction_completed: ArrayLike | None = None) -> NDArray[np.float64]:
        """0/1 quality-play labels, vectorised.

        Raises
        ------
        InvalidProblemError
            Negative or non-finite minutes, fractions outside [0, 1], or mismatched shapes.
        """
        m = np.asarray(minutes_played, dtype=np.float64)
        bad = ~np.isfinite(m) | (m < 0)
        if bad.any():
            i = int(np.flatnonzero(bad.ravel())[0])
            raise InvalidProblemError(f"The 'minutes_played' field must be finite and >= 0; got {m.ravel()[i]} at {i} instead.")
        quality = m >= self.min_minutes
        if fraction_completed is not None:
            f = np.asarray(fraction_completed, dtype=np.float64)
            if f.shape != m.shape:
                raise InvalidProblemError(
                    f"The 'fraction_completed' field must have the shape of minutes_played {m.shape}; got {f.shape} instead."
                )
            bad = ~np.isfinite(f) | (f < 0) | (f > 1)
            if bad.any():
                i = int(np.flatnonzero(bad.ravel())[0])
                raise InvalidProblemError(f"The 'fraction_completed' field must be in [0, 1]; got {f.ravel()[i]} at {i} instead.")
            if self.min_fraction is not None:
                quality |= f >= self.min_fraction
        return quality.astype(np.float64)

    def label_outcomes(self, outcomes: list[ImpressionOutcome]) -> NDArray[np.float64]:
        """Labels of validated outcomes."""
        return self.label([o.minutes_played for o in outcomes], [o.fraction_completed for o in outcomes])


def _deprecated_alias(module: str, name: str) -> Any:
    """``PageRequest`` of the bandit modules: :class:`FeatureRequest`, with a DeprecationWarning."""
    if name == "PageRequest":
        warnings.warn(
            f"{module}.PageRequest is deprecated: it is slate.bandit.FeatureRequest "
            "(the page request of serving is slate.page.PageRequest)",
            DeprecationWarning,
            stacklevel=3,
        )
        return FeatureRequest
    raise AttributeError(f"module {module!r} has no attribute {name!r}")


def __getattr__(name: str) -> Any:
    return _deprecated_alias(__name__, name)
