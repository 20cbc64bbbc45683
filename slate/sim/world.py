"""The simulated world: members, titles, cast and artwork, with their latent ground truth.

:func:`make_world` turns a :class:`~slate.sim.config.WorldConfig` into a :class:`World`, a frozen
bundle of read-only numpy arrays. Each part (members, cast, titles, images, context effects,
drift) draws from its own child of the config's seed, so the same seed gives the same world.

What is latent (the simulator knows it, a policy should not use it): members' genre tastes and
their drift, cast fandom, aesthetic tastes, images' appeal, click-bait flags. What a policy may
observe: a member's country, language, device and hour, a noisy viewing-history genre profile
(:meth:`World.member_profile`), titles' genres, cast and language, images' tags and embeddings.

The Netflix post's example is built in (``config.include_example``): the title *Good Will
Hunting* with a Robin Williams image (a comedian) and an image of the couple, and two example
profiles, one comedy-inclined, one romance-inclined (:attr:`World.example`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from numpy.typing import NDArray

from slate.page.layout import GridLayout, grid_positions
from slate.sim.config import InvalidConfigError, WorldConfig

__all__ = ["DAYPARTS", "SeedExample", "World", "daypart_of", "make_world"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

DAYPARTS: tuple[str, ...] = ("morning", "afternoon", "evening", "night")
"""Dayparts: morning [5, 12), afternoon [12, 17), evening [17, 22), night [22, 5)."""

N_FAVOURITES = 3
"""Slots of cast fandom per member (unused slots have strength 0)."""

KNOT_DAYS = 7
"""Tastes drift as a random walk with one knot a week, linearly interpolated in between."""


def daypart_of(hour: NDArray[Any]) -> IntArray:
    """Daypart index (see :data:`DAYPARTS`) of hours in [0, 24).

    Examples
    --------
    >>> daypart_of(np.array([6.0, 13.5, 20.0, 23.0, 2.0])).tolist()
    [0, 1, 2, 3, 3]
    """
    h = np.asarray(hour)
    return np.select([(h >= 5) & (h < 12), (h >= 12) & (h < 17), (h >= 17) & (h < 22)], [0, 1, 2], 3).astype(
        np.int64
    )


@dataclass(frozen=True)
class SeedExample:
    """The Netflix post's example (its Figure 3), as indices into the world.

    Attributes
    ----------
    title : int
        Index of *Good Will Hunting*.
    comedian_image, couple_image : int
        Local image indices (within the title) of the Robin Williams image and the couple image.
    comedy_member, romance_member : int
        A comedy-inclined and a romance-inclined member (neither knows the title).
    """

    title: int
    comedian_image: int
    couple_image: int
    comedy_member: int
    romance_member: int


def _readonly(array: NDArray[Any]) -> NDArray[Any]:
    array = np.ascontiguousarray(array)
    array.flags.writeable = False
    return array


def _sparse_rows(matrix: FloatArray) -> tuple[IntArray, FloatArray]:
    """Exact sparse form of a matrix with few non-zeros per row: ``(index, weight)``, zero-padded."""
    k = max(1, int((matrix != 0).sum(axis=1).max()))
    index = np.argsort(-np.abs(matrix), axis=1, kind="stable")[:, :k]
    weight = np.take_along_axis(matrix, index, axis=1)
    return _readonly(index.astype(np.int64)), _readonly(weight)


def _unit(x: FloatArray) -> FloatArray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@dataclass(frozen=True, eq=False)
class World:
    """A generated world. Arrays are read-only; build with :func:`make_world`.

    Attributes (shapes; ``M`` members, ``T`` titles, ``N`` images in all, ``G`` genres,
    ``A`` aesthetics, ``C`` cast, ``D`` embedding dimension, ``K`` most images of a title)
    ----------
    config : WorldConfig
    member_ids : (M,) int64
        Surrogate keys written to logs.
    member_country, member_language, member_device : (M,) int64
        Indices into ``countries``, ``languages``, ``config.devices`` (the primary device).
    member_peak_hour, member_activity : (M,) float64
        Usual hour of a visit and daily visit probability.
    taste_knots : (n_knots, M, G) float64
        Latent genre tastes at days ``0, 7, 14, ...`` (random walk; see :meth:`taste`).
    profile_noise : (M, G) float64
        How the observed viewing-history profile deviates from the latent taste.
    aesthetic_taste : (M, A) float64
    favourite_cast, favourite_strength : (M, 3)
        Cast fandom: cast index (``-1`` for an empty slot) and strength.
    title_ids, title_names : tuple of str, length T
    title_genres : (T, G) float64
        Genre weights of each title (rows sum to 1).
    title_cast : (T, 6) int64
        Cast in billing order, ``-1`` padding.
    title_language : (T,) int64
    title_popularity : (T,) float64
    launch_day : (T,) int64
        Day the title becomes available (``<= 0``: in the catalog from the start).
    n_images, image_offset : (T,) int64
        Images of title ``t`` are global indices ``image_offset[t] + arange(n_images[t])``.
    title_images : (T, K) int64
        Global image index of each local image, ``-1`` padding.
    image_ids : tuple of str, length N
    image_title, image_highlight_kind, image_highlight, image_aesthetic : (N,) int64
        Title, highlight kind (0 theme, 1 cast), highlighted genre or cast index, aesthetic.
    image_genre_vector : (N, G) float64
        How the image's highlight speaks to genre tastes (a theme's one-hot, or the
        highlighted cast member's genre profile), already scaled by the response weights.
    image_appeal, image_appeal_slope : (N,) float64
        Base appeal and its change per unit of ``log1p(title age / 30)``.
    image_clickbait : (N,) bool
    embeddings : (N, D) float64
        Unit-norm visual embeddings; images with the same aesthetic and highlight look alike.
    cast_names : tuple of str, length C
    cast_genres : (C, G) float64
    device_aesthetic : (n_devices, A) float64
    daypart_aesthetic : (4, A) float64
    countries, languages : tuple of str
    layout : GridLayout
    slot_rows, slot_cols : (P,) int64
        Grid position of each page slot (row-major).
    pairs : (n_pairs, 2) int64
    pair_weights : (n_pairs,) float64
        Interacting slot pairs of the homepage grid (as :class:`~slate.page.GridLayout`).
    position_bias : (P,) float64
        Attention multiplier of each slot.
    example : SeedExample or None
    """

    config: WorldConfig
    member_ids: IntArray
    member_country: IntArray
    member_language: IntArray
    member_device: IntArray
    member_peak_hour: FloatArray
    member_activity: FloatArray
    taste_knots: FloatArray
    profile_noise: FloatArray
    aesthetic_taste: FloatArray
    favourite_cast: IntArray
    favourite_strength: FloatArray
    title_ids: tuple[str, ...]
    title_names: tuple[str, ...]
    title_genres: FloatArray
    title_cast: IntArray
    title_language: IntArray
    title_popularity: FloatArray
    launch_day: IntArray
    n_images: IntArray
    image_offset: IntArray
    title_images: IntArray
    image_ids: tuple[str, ...]
    image_title: IntArray
    image_highlight_kind: IntArray
    image_highlight: IntArray
    image_aesthetic: IntArray
    image_genre_vector: FloatArray
    image_appeal: FloatArray
    image_appeal_slope: FloatArray
    image_clickbait: BoolArray
    embeddings: FloatArray
    cast_names: tuple[str, ...]
    cast_genres: FloatArray
    device_aesthetic: FloatArray
    daypart_aesthetic: FloatArray
    countries: tuple[str, ...]
    languages: tuple[str, ...]
    layout: GridLayout
    slot_rows: IntArray
    slot_cols: IntArray
    pairs: IntArray
    pair_weights: FloatArray
    position_bias: FloatArray
    example: SeedExample | None

    # ------------------------------------------------------------------ sizes
    @property
    def n_members(self) -> int:
        """Number of members ``M``."""
        return len(self.member_ids)

    @property
    def n_titles(self) -> int:
        """Number of titles ``T``."""
        return len(self.title_ids)

    @property
    def n_images_total(self) -> int:
        """Number of images in the whole catalog ``N``."""
        return len(self.image_ids)

    @property
    def max_images(self) -> int:
        """Most images of one title ``K`` (the padded width of per-title image arrays)."""
        return int(self.title_images.shape[1])

    @property
    def n_slots(self) -> int:
        """Titles on one page ``P``."""
        return len(self.slot_rows)

    @property
    def genres(self) -> tuple[str, ...]:
        """Genre (theme) names."""
        return self.config.genres

    @property
    def aesthetics(self) -> tuple[str, ...]:
        """Aesthetic names."""
        return self.config.aesthetics

    @property
    def devices(self) -> tuple[str, ...]:
        """Device names."""
        return self.config.devices

    @cached_property
    def title_index(self) -> dict[str, int]:
        """``{title id: index}``."""
        return {t: i for i, t in enumerate(self.title_ids)}

    @cached_property
    def image_index(self) -> dict[str, int]:
        """``{image id: global index}``."""
        return {t: i for i, t in enumerate(self.image_ids)}

    @cached_property
    def image_id_array(self) -> NDArray[np.object_]:
        """Image ids as an object array (for vectorised id lookups), read-only."""
        return _readonly(np.asarray(self.image_ids, dtype=object))

    @cached_property
    def title_id_array(self) -> NDArray[np.object_]:
        """Title ids as an object array, read-only."""
        return _readonly(np.asarray(self.title_ids, dtype=object))

    @cached_property
    def title_genres_sparse(self) -> tuple[IntArray, FloatArray]:
        """``title_genres`` as ``(index, weight)`` arrays of shape ``(T, k)`` (k: most genres of a title)."""
        return _sparse_rows(self.title_genres)

    @cached_property
    def image_genre_sparse(self) -> tuple[IntArray, FloatArray]:
        """``image_genre_vector`` as ``(index, weight)`` arrays of shape ``(N, k)``."""
        return _sparse_rows(self.image_genre_vector)

    def title_effect(self, day: int) -> FloatArray:
        """``(T,)`` popularity plus launch boost of every title on ``day``."""
        return np.asarray(self.title_popularity + self.launch_boost(np.arange(self.n_titles), day))

    def appeal_table(self, day: int) -> FloatArray:
        """``(N,)`` base appeal of every image on ``day`` (see :meth:`image_appeal_at`)."""
        return self.image_appeal_at(np.arange(self.n_images_total), day)

    def image_tags(self, image: int) -> dict[str, str]:
        """Readable tags of one image (global index): highlight and aesthetic.

        Examples
        --------
        >>> w = make_world(WorldConfig(n_members=10, n_titles=60, seed=1))
        >>> tags = w.image_tags(int(w.title_images[w.example.title, w.example.comedian_image]))
        >>> tags["highlight"], tags["aesthetic"]
        ('cast: Robin Williams', 'close-up')
        """
        kind = int(self.image_highlight_kind[image])
        idx = int(self.image_highlight[image])
        highlight = f"cast: {self.cast_names[idx]}" if kind == 1 else f"theme: {self.genres[idx]}"
        return {
            "highlight": highlight,
            "aesthetic": self.aesthetics[int(self.image_aesthetic[image])],
            "clickbait": "yes" if self.image_clickbait[image] else "no",
        }

    # ------------------------------------------------------------------ time-varying truth
    def taste(self, members: NDArray[Any], day: NDArray[Any] | int) -> FloatArray:
        """Latent genre tastes of ``members`` on ``day`` (broadcast), shape ``members.shape + (G,)``.

        A random walk with weekly knots, linear in between; constant after the last knot.
        """
        m = np.asarray(members, dtype=np.int64)
        d = np.broadcast_to(np.asarray(day, dtype=np.float64), m.shape)
        pos = np.clip(d / KNOT_DAYS, 0.0, self.taste_knots.shape[0] - 1.0)
        lo = np.minimum(pos.astype(np.int64), self.taste_knots.shape[0] - 2)
        lo = np.maximum(lo, 0)
        frac = (pos - lo)[..., None]
        if self.taste_knots.shape[0] == 1:
            return self.taste_knots[0][m]
        return (1.0 - frac) * self.taste_knots[lo, m] + frac * self.taste_knots[lo + 1, m]

    def member_profile(self, members: NDArray[Any], day: NDArray[Any] | int) -> FloatArray:
        """Observed viewing-history profile: share of past plays by genre (rows sum to 1).

        A noisy, softened view of the latent taste that tracks its drift (what a bandit may use
        as context: "the genre of the titles they've played").

        Examples
        --------
        >>> w = make_world(WorldConfig(n_members=10, n_titles=60, seed=1))
        >>> p = w.member_profile(np.array([0, 1]), 0)
        >>> p.shape, bool(np.allclose(p.sum(axis=1), 1.0))
        ((2, 12), True)
        >>> ex = w.example
        >>> g = {name: i for i, name in enumerate(w.genres)}
        >>> bool(p[ex.comedy_member, g["comedy"]] > p[ex.comedy_member, g["romance"]])
        True
        """
        m = np.asarray(members, dtype=np.int64)
        z = self.taste(m, day) + self.profile_noise[m]
        z = z - z.max(axis=-1, keepdims=True)
        e = np.exp(z / 0.7)
        return np.asarray(e / e.sum(axis=-1, keepdims=True))

    def title_age(self, titles: NDArray[Any], day: NDArray[Any] | int) -> FloatArray:
        """Days since launch (negative before launch)."""
        return np.asarray(day, dtype=np.float64) - self.launch_day[np.asarray(titles)]

    def launch_boost(self, titles: NDArray[Any], day: NDArray[Any] | int) -> FloatArray:
        """Relevance boost of new titles, halving every ``launch_half_life`` days (0 before launch)."""
        drift = self.config.drift
        age = self.title_age(titles, day)
        return np.where(age >= 0, drift.launch_boost * 0.5 ** (np.maximum(age, 0) / drift.launch_half_life), 0.0)

    def available(self, day: int) -> BoolArray:
        """Titles launched by ``day``."""
        return np.asarray(self.launch_day <= day)

    def image_appeal_at(self, images: NDArray[Any], day: NDArray[Any] | int) -> FloatArray:
        """Base appeal of global images on ``day``: drifts with ``log1p(title age / 30)``."""
        g = np.asarray(images)
        age = np.maximum(np.asarray(day, dtype=np.float64) - self.launch_day[self.image_title[g]], 0.0)
        return np.asarray(self.image_appeal[g] + self.image_appeal_slope[g] * np.log1p(age / 30.0))

    def summary(self) -> dict[str, Any]:
        """Sizes and shares, for printing.

        Examples
        --------
        >>> make_world(WorldConfig(n_members=10, n_titles=60, seed=1)).summary()["n_titles"]
        60
        """
        return {
            "n_members": self.n_members,
            "n_titles": self.n_titles,
            "n_images": self.n_images_total,
            "images_per_title": (int(self.n_images.min()), int(self.n_images.max())),
            "clickbait_share": float(self.image_clickbait.mean()),
            "launching_titles": int((self.launch_day > 0).sum()),
            "n_slots": self.n_slots,
            "n_pairs": len(self.pairs),
        }


# ====================================================================== generation
_EXAMPLE_CAST = (
    ("Robin Williams", {"comedy": 0.85, "drama": 0.15}),
    ("Matt Damon", {"drama": 0.6, "action": 0.4}),
    ("Minnie Driver", {"romance": 0.6, "drama": 0.4}),
    ("Ben Affleck", {"drama": 0.5, "action": 0.5}),
)


def _choice_rows(rng: np.random.Generator, probs: FloatArray) -> IntArray:
    """One categorical draw per row of ``probs`` (rows sum to 1), vectorised."""
    cum = np.cumsum(probs, axis=1)
    u = rng.random((probs.shape[0], 1)) * cum[:, -1:]
    return np.minimum((u > cum).sum(axis=1), probs.shape[1] - 1).astype(np.int64)


def _checked_config(config: WorldConfig | None, overrides: dict[str, Any]) -> WorldConfig:
    """The config to build: ``config`` itself, or the defaults with ``overrides``; checks it fills a page."""
    if config is None:
        from slate.sim.config import make_config

        config = make_config(**overrides)
    elif overrides:
        raise InvalidConfigError("Give make_world either a config or keyword overrides, not both.")
    if not isinstance(config, WorldConfig):
        raise InvalidConfigError(
            f"The 'config' parameter of make_world must be a WorldConfig; got {type(config).__name__} instead."
        )
    T = config.n_titles
    n_launching = round(config.drift.launch_share * T)
    if T - n_launching < config.page.n_slots:
        raise InvalidConfigError(
            f"The world needs at least {config.page.n_slots} titles available on day 0 to fill a "
            f"{config.page.rows}x{config.page.cols} page; got n_titles={T} with {n_launching} launching later."
        )
    return config


@dataclass(frozen=True)
class _Names:
    """Name lookups of a config: genre, country and language indices."""

    genre_index: dict[str, int]
    countries: tuple[str, ...]
    languages: tuple[str, ...]
    lang_index: dict[str, int]
    main_language: int

    @classmethod
    def of(cls, cfg: WorldConfig) -> _Names:
        languages = tuple(dict.fromkeys(lang for _, lang in cfg.countries))
        lang_index = {lang: i for i, lang in enumerate(languages)}
        return cls(
            genre_index={g: i for i, g in enumerate(cfg.genres)},
            countries=tuple(c for c, _ in cfg.countries),
            languages=languages,
            lang_index=lang_index,
            main_language=lang_index[cfg.countries[0][1]],
        )


class _Part:
    """A stage's output: attributes named like :class:`World` fields go into the world."""

    _world_fields: tuple[str, ...] = ()

    def fields(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._world_fields}


@dataclass
class _Cast(_Part):
    cast_genres: FloatArray
    cast_pop: NDArray[Any]
    cast_names: tuple[str, ...]
    _world_fields = ("cast_genres", "cast_names")


def _genres_and_cast(
    cfg: WorldConfig, names: _Names, rng_title: np.random.Generator, rng_cast: np.random.Generator
) -> tuple[FloatArray, _Cast]:
    """Genre popularity (from the title stream) and the cast: genre profiles, popularity, names."""
    G, C = len(cfg.genres), cfg.n_cast
    genre_index = names.genre_index
    genre_pop = rng_title.dirichlet(np.full(G, 3.0))
    for name, bump in (("drama", 0.08), ("comedy", 0.06)):
        if name in genre_index:
            genre_pop[genre_index[name]] += bump
    genre_pop /= genre_pop.sum()

    cast_genres = np.zeros((C, G))
    for c in range(C):
        k = 1 + int(rng_cast.random() < 0.5)
        gs = rng_cast.choice(G, size=k, replace=False, p=genre_pop)
        cast_genres[c, gs] = rng_cast.dirichlet(np.full(k, 2.0))
    cast_pop = 1.0 / np.arange(1, C + 1) ** 0.8
    cast_pop = cast_pop[rng_cast.permutation(C)]
    cast_names = [f"Cast {c:03d}" for c in range(C)]
    if cfg.include_example:
        for c, (name, prof) in enumerate(_EXAMPLE_CAST):
            cast_names[c] = name
            cast_genres[c] = 0.0
            for g, w in prof.items():
                cast_genres[c, genre_index[g] if g in genre_index else 0] += w
            cast_pop[c] = cast_pop.max()
    return genre_pop, _Cast(cast_genres, cast_pop, tuple(cast_names))


@dataclass
class _Titles(_Part):
    title_ids: list[str]
    title_names: list[str]
    title_genres: FloatArray
    title_cast: IntArray
    title_language: IntArray
    title_popularity: FloatArray
    launch_day: IntArray
    _world_fields = (
        "title_genres", "title_cast", "title_language", "title_popularity",
    )

    def fields(self) -> dict[str, Any]:
        return {
            **super().fields(),
            "title_ids": tuple(self.title_ids),
            "title_names": tuple(self.title_names),
            "launch_day": self.launch_day.astype(np.int64),
        }


def _titles(
    cfg: WorldConfig, names: _Names, genre_pop: FloatArray, cast: _Cast, rng_title: np.random.Generator
) -> _Titles:
    """Titles: genres, billed cast, language, popularity and launch days (some launch later)."""
    G, T, C = len(cfg.genres), cfg.n_titles, cfg.n_cast
    n_launching = round(cfg.drift.launch_share * T)
    title_genres = np.zeros((T, G))
    n_gen = rng_title.integers(1, 4, size=T)
    for t in range(T):
        gs = rng_title.choice(G, size=n_gen[t], replace=False, p=genre_pop)
        title_genres[t, gs] = rng_title.dirichlet(np.full(n_gen[t], 2.0))
    title_cast = np.full((T, 6), -1, dtype=np.int64)
    n_cast_t = rng_title.integers(3, 7, size=T)
    affinity = cast.cast_pop[None, :] * (0.1 + title_genres @ cast.cast_genres.T)
    for t in range(T):
        p = affinity[t] / affinity[t].sum()
        title_cast[t, : n_cast_t[t]] = rng_title.choice(C, size=n_cast_t[t], replace=False, p=p)
    title_language = np.where(
        rng_title.random(T) < 0.6, names.main_language, rng_title.integers(0, len(names.languages), size=T)
    ).astype(np.int64)
    title_popularity = rng_title.normal(0.0, 0.5, size=T)
    launch_day = -rng_title.integers(0, 720, size=T)
    first = 1 if cfg.include_example else 0  # the example title is in the catalog from the start
    launching = first + rng_title.permutation(T - first)[:n_launching]
    launch_day[launching] = rng_title.integers(1, max(cfg.n_days, 2), size=n_launching)
    title_ids = [f"T{t:04d}" for t in range(T)]
    title_names = [f"Title {t:04d}" for t in range(T)]
    return _Titles(title_ids, title_names, title_genres, title_cast, title_language, title_popularity, launch_day)


_ExampleImage = tuple[str, int, int, int]  # (suffix, kind, highlight, aesthetic)


def _example_title(cfg: WorldConfig, names: _Names, titles: _Titles) -> list[_ExampleImage]:
    """Make title 0 *Good Will Hunting* (in place) and return its example images."""
    A, genre_index = len(cfg.aesthetics), names.genre_index
    aest = {a: i for i, a in enumerate(cfg.aesthetics)}
    closeup = aest.get("close-up", 0)
    bright = aest.get("bright", 1 % A)
    scenic = aest.get("scenic", 2 % A)
    ex_images = [
        ("robin-williams", 1, 0, closeup),
        ("couple", 0, genre_index["romance"], bright),
        ("chalkboard", 0, genre_index["drama"], scenic),
    ]
    t0 = 0
    titles.title_ids[t0], titles.title_names[t0] = "good-will-hunting", "Good Will Hunting"
    titles.title_genres[t0] = 0.0
    titles.title_genres[t0, genre_index["drama"]] = 0.45
    titles.title_genres[t0, genre_index["romance"]] = 0.3
    titles.title_genres[t0, genre_index["comedy"]] = 0.25
    titles.title_cast[t0] = [0, 1, 2, 3, -1, -1]
    titles.title_language[t0] = names.main_language
    titles.title_popularity[t0] = 0.3
    titles.launch_day[t0] = -400
    return ex_images


@dataclass
class _Images(_Part):
    n_images: IntArray
    image_offset: IntArray
    title_images: IntArray
    image_ids: tuple[str, ...]
    image_title: IntArray
    image_highlight_kind: IntArray
    image_highlight: IntArray
    image_aesthetic: IntArray
    image_genre_vector: FloatArray
    image_appeal: FloatArray
    image_appeal_slope: FloatArray
    image_clickbait: BoolArray
    _world_fields = (
        "n_images", "image_offset", "title_images", "image_ids", "image_title", "image_highlight_kind",
        "image_highlight", "image_aesthetic", "image_genre_vector", "image_appeal", "image_appeal_slope",
        "image_clickbait",
    )


def _image_ids(cfg: WorldConfig, titles: _Titles, n_images: IntArray, ex_images: list[_ExampleImage]) -> tuple[str, ...]:
    title_ids = titles.title_ids
    image_ids = []
    for t in range(cfg.n_titles):
        if cfg.include_example and t == 0:
            image_ids += [f"{title_ids[0]}-{suffix}" for suffix, *_ in ex_images]
            image_ids += [f"{title_ids[0]}-I{k:02d}" for k in range(len(ex_images), n_images[0])]
        else:
            image_ids += [f"{title_ids[t]}-I{k:02d}" for k in range(n_images[t])]
    return tuple(image_ids)


def _images(cfg: WorldConfig, names: _Names, titles: _Titles, cast: _Cast, rng_image: np.random.Generator) -> _Images:
    """Images: how many per title, highlight (theme or cast), aesthetic, appeal and its drift, click-bait."""
    G, A, T = len(cfg.genres), len(cfg.aesthetics), cfg.n_titles
    resp = cfg.response
    title_cast, title_genres = titles.title_cast, titles.title_genres
    lo, hi = np.log(cfg.min_images), np.log(cfg.max_images + 1)
    n_images = np.clip(np.exp(rng_image.uniform(lo, hi, size=T)).astype(np.int64), cfg.min_images, cfg.max_images)
    genre_aesthetic = rng_image.normal(0.0, 0.8, size=(G, A))

    ex_images: list[_ExampleImage] = []
    if cfg.include_example:
        ex_images = _example_title(cfg, names, titles)
        n_images[0] = max(len(ex_images), cfg.min_images)

    image_offset = np.concatenate([[0], np.cumsum(n_images)[:-1]]).astype(np.int64)
    N = int(n_images.sum())
    image_title = np.repeat(np.arange(T), n_images).astype(np.int64)
    is_cast = rng_image.random(N) < cfg.cast_image_share
    # cast highlight: billing-weighted choice among the title's cast
    bill = np.where(title_cast >= 0, 1.0 / np.arange(1, 7), 0.0)
    bill /= bill.sum(axis=1, keepdims=True)
    cast_slot = _choice_rows(rng_image, bill[image_title])
    theme = _choice_rows(rng_image, title_genres[image_title])
    highlight_kind = is_cast.astype(np.int64)
    highlight = np.where(is_cast, title_cast[image_title, cast_slot], theme).astype(np.int64)
    aest_logits = title_genres[image_title] @ genre_aesthetic
    aest_p = np.exp(aest_logits - aest_logits.max(axis=1, keepdims=True))
    aest_p /= aest_p.sum(axis=1, keepdims=True)
    aesthetic = _choice_rows(rng_image, aest_p)
    appeal = rng_image.normal(0.0, 0.5, size=N)
    appeal_slope = rng_image.normal(0.0, cfg.drift.appeal_drift, size=N)
    clickbait = rng_image.random(N) < cfg.clickbait_share
    if cfg.include_example:
        for k, (_, kind, h, a) in enumerate(ex_images):  # further images of the title stay generic
            highlight_kind[k], highlight[k], aesthetic[k] = kind, h, a
            appeal[k], appeal_slope[k], clickbait[k] = 0.0, 0.0, False
        appeal[1] = 0.1  # the couple image is slightly better on average

    image_genre_vector = np.where(
        (highlight_kind == 1)[:, None],
        resp.cast_weight * cast.cast_genres[np.where(highlight_kind == 1, highlight, 0)],
        resp.theme_weight * np.eye(G)[np.where(highlight_kind == 0, highlight, 0)],
    )
    K = int(n_images.max())
    local = np.arange(K)[None, :]
    title_images = np.where(local < n_images[:, None], image_offset[:, None] + local, -1).astype(np.int64)
    return _Images(
        n_images=n_images,
        image_offset=image_offset,
        title_images=title_images,
        image_ids=_image_ids(cfg, titles, n_images, ex_images),
        image_title=image_title,
        image_highlight_kind=highlight_kind,
        image_highlight=highlight,
        image_aesthetic=aesthetic,
        image_genre_vector=image_genre_vector,
        image_appeal=appeal,
        image_appeal_slope=appeal_slope,
        image_clickbait=clickbait,
    )


def _embeddings(cfg: WorldConfig, titles: _Titles, images: _Images, rng_emb: np.random.Generator) -> FloatArray:
    """Unit embeddings: aesthetic centre + highlight + title look + noise."""
    G, A, T, C, D = len(cfg.genres), len(cfg.aesthetics), cfg.n_titles, cfg.n_cast, cfg.embedding_dim
    N = len(images.image_title)
    highlight_kind, highlight = images.image_highlight_kind, images.image_highlight
    aest_centre = _unit(rng_emb.normal(size=(A, D)))
    theme_vec = _unit(rng_emb.normal(size=(G, D)))
    cast_vec = _unit(rng_emb.normal(size=(C, D)))
    title_vec = _unit(rng_emb.normal(size=(T, D)))
    high_vec = np.where((highlight_kind == 1)[:, None], cast_vec[np.where(highlight_kind == 1, highlight, 0)],
                        theme_vec[np.where(highlight_kind == 0, highlight, 0)])  # fmt: skip
    emb = (
        1.0 * aest_centre[images.image_aesthetic]
        + 0.5 * high_vec
        + 0.35 * title_vec[images.image_title]
        + 0.35 * _unit(rng_emb.normal(size=(N, D)))
    )
    return _unit(emb)


@dataclass
class _Members(_Part):
    member_ids: IntArray
    member_country: IntArray
    member_language: IntArray
    member_device: IntArray
    member_peak_hour: FloatArray
    member_activity: FloatArray
    taste0: FloatArray
    profile_noise: FloatArray
    aesthetic_taste: FloatArray
    favourite_cast: IntArray
    favourite_strength: FloatArray
    _world_fields = (
        "member_ids", "member_country", "member_language", "member_device", "member_peak_hour",
        "member_activity", "profile_noise", "aesthetic_taste", "favourite_cast", "favourite_strength",
    )


def _members(
    cfg: WorldConfig, names: _Names, genre_pop: FloatArray, cast: _Cast, rng_member: np.random.Generator
) -> _Members:
    """Members: country, language, device, usual hour, activity, initial tastes, cast fandom."""
    G, A, M, C = len(cfg.genres), len(cfg.aesthetics), cfg.n_members, cfg.n_cast
    countries, languages = names.countries, names.languages
    country_w = 1.0 / np.arange(1, len(countries) + 1)
    member_country = rng_member.choice(len(countries), size=M, p=country_w / country_w.sum()).astype(np.int64)
    country_lang = np.array([names.lang_index[lang] for _, lang in cfg.countries])
    member_language = np.where(
        rng_member.random(M) < 0.85, country_lang[member_country], rng_member.integers(0, len(languages), size=M)
    ).astype(np.int64)
    dev_w = 1.0 / np.arange(1, len(cfg.devices) + 1) ** 1.2
    member_device = rng_member.choice(len(cfg.devices), size=M, p=dev_w / dev_w.sum()).astype(np.int64)
    mode = rng_member.choice(3, size=M, p=[0.7, 0.15, 0.15])
    peak = np.choose(mode, [rng_member.normal(20.5, 1.5, M), rng_member.normal(12.5, 1.5, M),
                            rng_member.normal(7.5, 1.0, M)]) % 24.0  # fmt: skip
    activity = rng_member.beta(cfg.activity[0], cfg.activity[1], size=M)
    taste0 = rng_member.normal(0.0, 0.6, size=(M, G))
    n_fav = rng_member.integers(1, 4, size=M)
    for m in range(M):
        favs = rng_member.choice(G, size=n_fav[m], replace=False, p=genre_pop)
        taste0[m, favs] += rng_member.uniform(0.8, 1.6, size=n_fav[m])
    taste0 -= 0.5
    profile_noise = rng_member.normal(0.0, 0.4, size=(M, G))
    aesthetic_taste = rng_member.normal(0.0, 1.0, size=(M, A))
    soft = np.exp(taste0 - taste0.max(axis=1, keepdims=True))
    soft /= soft.sum(axis=1, keepdims=True)
    fav_aff = cast.cast_pop[None, :] * (0.05 + soft @ cast.cast_genres.T)
    favourite_cast = np.full((M, N_FAVOURITES), -1, dtype=np.int64)
    favourite_strength = np.zeros((M, N_FAVOURITES))
    n_fans = rng_member.binomial(N_FAVOURITES, 0.5, size=M)
    for m in range(M):
        if n_fans[m]:
            p = fav_aff[m] / fav_aff[m].sum()
            favourite_cast[m, : n_fans[m]] = rng_member.choice(C, size=n_fans[m], replace=False, p=p)
            favourite_strength[m, : n_fans[m]] = rng_member.uniform(0.5, 1.5, size=n_fans[m])
    return _Members(
        member_ids=np.arange(M, dtype=np.int64) + 1_000_000,
        member_country=member_country,
        member_language=member_language,
        member_device=member_device,
        member_peak_hour=peak,
        member_activity=activity,
        taste0=taste0,
        profile_noise=profile_noise,
        aesthetic_taste=aesthetic_taste,
        favourite_cast=favourite_cast,
        favourite_strength=favourite_strength,
    )


def _example_members(cfg: WorldConfig, names: _Names, members: _Members) -> SeedExample | None:
    """Make members 0 and 1 the comedy- and romance-inclined profiles (in place), if the example is on."""
    if not cfg.include_example:
        return None
    genre_index = names.genre_index
    com, rom = genre_index["comedy"], genre_index["romance"]
    for m, (up, down) in enumerate(((com, rom), (rom, com))):
        members.taste0[m] = -0.3
        members.taste0[m, up], members.taste0[m, down] = 1.6, -0.6
        members.taste0[m, genre_index["drama"]] = 0.3
        members.profile_noise[m] = 0.0
        members.aesthetic_taste[m] = 0.0
        members.favourite_cast[m], members.favourite_strength[m] = -1, 0.0
        members.member_language[m] = names.main_language
    return SeedExample(title=0, comedian_image=0, couple_image=1, comedy_member=0, romance_member=1)


def _context_and_drift(
    cfg: WorldConfig, members: _Members, rng_ctx: np.random.Generator, rng_drift: np.random.Generator
) -> dict[str, FloatArray]:
    """Device and daypart aesthetic effects, and the weekly knots of the tastes' random walk."""
    G, A, M = len(cfg.genres), len(cfg.aesthetics), cfg.n_members
    resp = cfg.response
    device_aesthetic = rng_ctx.normal(0.0, resp.device_aesthetic_sd, size=(len(cfg.devices), A))
    daypart_aesthetic = rng_ctx.normal(0.0, resp.daypart_aesthetic_sd, size=(len(DAYPARTS), A))
    n_knots = cfg.n_days // KNOT_DAYS + 2
    steps = rng_drift.normal(0.0, cfg.drift.taste_drift * np.sqrt(KNOT_DAYS), size=(n_knots - 1, M, G))
    if cfg.include_example:
        steps[:, :2] = 0.0  # the example profiles keep their tastes
    taste0 = members.taste0
    taste_knots = np.concatenate([taste0[None], taste0[None] + np.cumsum(steps, axis=0)], axis=0)
    return {"device_aesthetic": device_aesthetic, "daypart_aesthetic": daypart_aesthetic, "taste_knots": taste_knots}


def _page_grid(cfg: WorldConfig) -> dict[str, Any]:
    """The homepage grid: layout, slot positions, interacting pairs and position bias."""
    pc, resp = cfg.page, cfg.response
    layout = GridLayout(rows=pc.rows, cols=pc.cols, neighbour=pc.neighbour, same_row=pc.same_row,
                        vertical=pc.vertical)  # fmt: skip
    slot_rows, slot_cols = grid_positions(pc.n_slots, pc.cols)
    pairs, pair_weights = layout.pairs(slot_rows, slot_cols)
    position_bias = np.exp(-resp.row_decay * slot_rows - resp.col_decay * slot_cols)
    return {
        "layout": layout, "slot_rows": slot_rows, "slot_cols": slot_cols, "pairs": pairs,
        "pair_weights": pair_weights, "position_bias": position_bias,
    }


def make_world(config: WorldConfig | None = None, **overrides: Any) -> World:
    """Generate the world described by ``config`` (or by keyword overrides of the defaults).

    Parameters
    ----------
    config : WorldConfig, optional
    **overrides
        Fields of :class:`WorldConfig` (used when ``config`` is None), validated by
        :func:`~slate.sim.config.make_config`.

    Returns
    -------
    World

    Raises
    ------
    InvalidConfigError
        The configuration is malformed or cannot fill a page (fewer titles available on day 0
        than page slots).

    Examples
    --------
    >>> w = make_world(n_members=100, n_titles=80, seed=4)
    >>> w.n_members, w.n_titles, bool(3 <= w.n_images.min()), bool(w.n_images.max() <= 30)
    (100, 80, True, True)
    >>> w.title_names[w.example.title]
    'Good Will Hunting'
    >>> bool((make_world(n_members=100, n_titles=80, seed=4).embeddings == w.embeddings).all())
    True
    """
    cfg = _checked_config(config, overrides)
    streams = np.random.SeedSequence([cfg.seed, 20240101]).spawn(8)
    rng_cast, rng_title, rng_image, rng_member, rng_ctx, rng_drift, rng_emb, _ = (
        np.random.default_rng(s) for s in streams
    )
    names = _Names.of(cfg)
    genre_pop, cast = _genres_and_cast(cfg, names, rng_title, rng_cast)
    titles = _titles(cfg, names, genre_pop, cast, rng_title)
    images = _images(cfg, names, titles, cast, rng_image)
    embeddings = _embeddings(cfg, titles, images, rng_emb)
    members = _members(cfg, names, genre_pop, cast, rng_member)
    example = _example_members(cfg, names, members)
    context = _context_and_drift(cfg, members, rng_ctx, rng_drift)
    grid = _page_grid(cfg)
    parts: dict[str, Any] = {**cast.fields(), **titles.fields(), **images.fields(), **members.fields(), **context, **grid}
    frozen: dict[str, Any] = {k: (_readonly(v) if isinstance(v, np.ndarray) else v) for k, v in parts.items()}
    return World(
        config=cfg,
        embeddings=_readonly(embeddings),
        countries=names.countries,
        languages=names.languages,
        example=example,
        **frozen,
    )
