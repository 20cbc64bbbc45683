"""Configuration of the simulated world: frozen pydantic models, validated once at the boundary.

Every knob of the world lives here: its size, the tags of titles and images, the strength of
each effect in the response model (each can be switched off for experiments and tests), drift,
and the homepage grid. The whole world is a deterministic function of a :class:`WorldConfig`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from slate.errors import InvalidConfigError

__all__ = [
    "DEFAULT_AESTHETICS",
    "DEFAULT_COUNTRIES",
    "DEFAULT_DEVICES",
    "DEFAULT_GENRES",
    "DriftConfig",
    "InvalidConfigError",
    "PageConfig",
    "ResponseConfig",
    "WorldConfig",
    "make_config",
]

DEFAULT_GENRES: tuple[str, ...] = (
    "comedy", "romance", "drama", "action", "thriller", "horror",
    "sci-fi", "documentary", "family", "crime", "fantasy", "animation",
)  # fmt: skip
"""Genres, which double as the themes an image can highlight."""

DEFAULT_AESTHETICS: tuple[str, ...] = ("close-up", "ensemble", "action", "dark", "bright", "scenic")
"""Visual styles of artwork (the Netflix post's "different aesthetics")."""

DEFAULT_COUNTRIES: tuple[tuple[str, str], ...] = (
    ("US", "en"), ("GB", "en"), ("BR", "pt"), ("MX", "es"), ("ES", "es"),
    ("IN", "hi"), ("FR", "fr"), ("DE", "de"), ("JP", "ja"), ("KR", "ko"),
)  # fmt: skip
"""``(country, primary language)`` pairs members are drawn from."""

DEFAULT_DEVICES: tuple[str, ...] = ("tv", "mobile", "web", "tablet")
"""Devices a member may use."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=False)


class ResponseConfig(_Frozen):
    """Strengths of the effects in P(quality play | member, title, image, page).

    The probability of a quality play of title ``t`` shown with image ``k`` at a page slot is::

        attention * sigmoid(start_logit) * sigmoid(quality_logit)

    with ``attention = position_bias * exp(-crowding * neighbour_similarity)`` (page effect),
    ``start_logit = base_logit + relevance_weight * relevance + (1 - familiarity_damping * known)
    * image_weight * (member-image match + base appeal) + clickbait_start * clickbait +
    session shift`` and ``quality_logit = quality_base + quality_relevance * relevance -
    clickbait_quality * clickbait``.

    Each effect has a switch (``page_effects``, ``session_effects``, ``context_effects``,
    ``familiarity_effects``) so that tests can isolate it.
    """

    base_logit: float = Field(default=-3.0, description="intercept of the play-start logit")
    relevance_weight: float = Field(default=1.0, ge=0, description="weight of member-title relevance")
    image_weight: float = Field(default=1.0, ge=0, description="weight of the member-image match")
    appeal_weight: float = Field(default=0.6, ge=0, description="weight of an image's base appeal")
    theme_weight: float = Field(default=0.8, ge=0, description="weight of the highlighted theme's taste")
    cast_weight: float = Field(default=0.8, ge=0, description="weight of fandom of the highlighted cast")
    aesthetic_weight: float = Field(default=0.45, ge=0, description="weight of the aesthetic taste")
    familiarity_damping: float = Field(
        default=0.7, ge=0, le=1, description="share of the image effect lost when the member knows the title"
    )
    familiarity_effects: bool = True
    clickbait_start: float = Field(default=0.9, ge=0, description="logit boost of a click-bait image on starts")
    clickbait_quality: float = Field(
        default=2.5, ge=0, description="logit drop of a click-bait image on quality given a start"
    )
    quality_base: float = Field(default=1.2, description="intercept of the quality-given-start logit")
    quality_relevance: float = Field(default=0.5, ge=0, description="relevance weight in quality logit")
    page_effects: bool = True
    crowding: float = Field(
        default=0.25, ge=0, description="attention lost per unit of layout-weighted neighbour similarity"
    )
    row_decay: float = Field(default=0.08, ge=0, description="attention lost per row down the page (log)")
    col_decay: float = Field(default=0.03, ge=0, description="attention lost per column to the right (log)")
    session_effects: bool = True
    change_noticed: float = Field(
        default=-0.3, description="start-logit shift when the image of a title the member noticed changes"
    )
    change_unnoticed: float = Field(
        default=0.15, description="start-logit shift when the image of an unnoticed title changes"
    )
    context_effects: bool = True
    device_aesthetic_sd: float = Field(default=0.35, ge=0, description="spread of device x aesthetic effects")
    daypart_aesthetic_sd: float = Field(default=0.25, ge=0, description="spread of daypart x aesthetic effects")
    language_bonus: float = Field(default=0.6, ge=0, description="relevance bonus of a title in the member's language")


class DriftConfig(_Frozen):
    """Change over time: tastes, images' appeal over a title's life, and title launches."""

    taste_drift: float = Field(default=0.04, ge=0, description="daily random-walk step of genre tastes")
    appeal_drift: float = Field(default=0.15, ge=0, description="spread of image appeal change per 30 days of age")
    launch_share: float = Field(default=0.1, ge=0, le=1, description="share of titles launching during the run")
    launch_boost: float = Field(default=0.8, ge=0, description="relevance boost of a new title")
    launch_half_life: float = Field(default=7.0, gt=0, description="days for the launch boost to halve")


class PageConfig(_Frozen):
    """The homepage grid and how strongly layout neighbours interact (see GridLayout)."""

    rows: int = Field(default=5, ge=1, le=50)
    cols: int = Field(default=8, ge=1, le=50)
    neighbour: float = Field(default=1.0, ge=0)
    same_row: float = Field(default=0.1, ge=0)
    vertical: float = Field(default=0.5, ge=0)
    recommender_noise: float = Field(default=0.6, ge=0, description="spread of the title recommender's noise")

    @property
    def n_slots(self) -> int:
        """Titles on one page."""
        return self.rows * self.cols


class WorldConfig(_Frozen):
    """Everything that defines a simulated world; the world is a deterministic function of it.

    Examples
    --------
    >>> config = WorldConfig(n_members=50, n_titles=60, seed=3)
    >>> config.page.n_slots, config.min_images, config.max_images
    (40, 3, 30)
    >>> WorldConfig(n_members=0)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    pydantic_core._pydantic_core.ValidationError: 1 validation error for WorldConfig
    n_members
    ...
    """

    seed: int = Field(default=0, ge=0)
    n_members: int = Field(default=2000, ge=1)
    n_titles: int = Field(default=300, ge=1)
    n_days: int = Field(default=28, ge=1, le=3650)
    n_cast: int = Field(default=200, ge=3)
    min_images: int = Field(default=3, ge=1, le=64)
    max_images: int = Field(default=30, ge=1, le=64)
    genres: tuple[str, ...] = DEFAULT_GENRES
    aesthetics: tuple[str, ...] = DEFAULT_AESTHETICS
    countries: tuple[tuple[str, str], ...] = DEFAULT_COUNTRIES
    devices: tuple[str, ...] = DEFAULT_DEVICES
    embedding_dim: int = Field(default=16, ge=2, le=512)
    clickbait_share: float = Field(default=0.08, ge=0, le=1)
    known_share: float = Field(default=0.15, ge=0, le=1, description="scale of P(member already knows a title)")
    cast_image_share: float = Field(default=0.5, ge=0, le=1, description="share of images highlighting cast")
    activity: tuple[float, float] = Field(
        default=(2.0, 3.0), description="Beta(a, b) of a member's daily visit probability"
    )
    include_example: bool = Field(default=True, description="add the Good Will Hunting example (post, Fig. 3)")
    start_date: str = Field(default="2024-01-01", description="calendar date of day 0 (ISO)")
    response: ResponseConfig = ResponseConfig()
    drift: DriftConfig = DriftConfig()
    page: PageConfig = PageConfig()

    @model_validator(mode="after")
    def _check(self) -> WorldConfig:
        if self.min_images > self.max_images:
            raise ValueError(
                f"min_images must be <= max_images; got {self.min_images} > {self.max_images}"
            )
        if len(self.genres) < 2 or len(set(self.genres)) != len(self.genres):
            raise ValueError(f"genres must be at least 2 distinct names; got {self.genres}")
        if self.include_example:
            missing = {"comedy", "romance", "drama"} - set(self.genres)
            if missing:
                raise ValueError(f"include_example needs genres comedy, romance, drama; missing {missing}")
            if self.n_members < 2:
                raise ValueError("include_example needs n_members >= 2 (two example profiles)")
            if self.max_images < 3:
                raise ValueError("include_example needs max_images >= 3")
        if len(self.aesthetics) < 2 or len(set(self.aesthetics)) != len(self.aesthetics):
            raise ValueError(f"aesthetics must be at least 2 distinct names; got {self.aesthetics}")
        if not self.countries or not self.devices:
            raise ValueError("countries and devices must not be empty")
        if min(self.activity) <= 0:
            raise ValueError(f"activity must be two positive Beta parameters; got {self.activity}")
        return self


def make_config(**overrides: Any) -> WorldConfig:
    """Build a :class:`WorldConfig`, turning pydantic's error into :class:`InvalidConfigError`.

    Nested parts may be given as dicts (``response={"page_effects": False}``).

    Raises
    ------
    InvalidConfigError
        A field is malformed; the message names it and what was received.

    Examples
    --------
    >>> make_config(n_members=10, response={"page_effects": False}).response.page_effects
    False
    >>> make_config(n_titles=-1)
    Traceback (most recent call last):
    ...
    slate.errors.InvalidConfigError: The 'n_titles' field of WorldConfig must be greater than or equal to 1; got -1 instead.
    """
    try:
        return WorldConfig(**overrides)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "config"
        got = first.get("input")
        if first["type"] == "extra_forbidden":
            raise InvalidConfigError(f"WorldConfig has no field '{where}'; got {where}={got!r}.") from None
        message = first["msg"]
        message = message[0].lower() + message[1:]
        if message.startswith("value error, "):
            message = message[len("value error, ") :]
            raise InvalidConfigError(f"WorldConfig is invalid: {message}.") from None
        raise InvalidConfigError(
            f"The '{where}' field of WorldConfig must {message.removeprefix('input should ')}; "
            f"got {got!r} instead."
        ) from None
