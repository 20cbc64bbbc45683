"""The response model: P(quality play | member, title, image, page), vectorised over pages.

For a title ``t`` shown with image ``g`` in slot ``s`` of a page seen by member ``m`` on day ``d``
(config: :class:`~slate.sim.config.ResponseConfig`)::

    P = attention * sigmoid(start_logit) * sigmoid(quality_logit)

    attention     = position_bias[s] * exp(-crowding * crowd)                       (page effect)
    crowd         = sum over layout pairs (s, j) of w_sj * max(0, cos(e_g, e_j))
    start_logit   = base_logit + relevance_weight * relevance(m, t, d)
                    + (1 - familiarity_damping * known) * image_weight * match(m, g, context, d)
                    + clickbait_start * clickbait_g + session_shift
    quality_logit = quality_base + quality_relevance * relevance - clickbait_quality * clickbait_g
    relevance     = taste_m(d) . genres_t + language_bonus * [same language]
                    + popularity_t + launch_boost_t(d)
    match         = taste_m(d) . genre_vector_g + cast_weight * fandom(m, cast_g)
                    + aesthetic_weight * (aesthetic_taste[m, a_g] + device[a_g] + daypart[a_g])
                    + appeal_weight * appeal_g(d)
    session_shift = change_noticed   if the image changed and the member had noticed the title,
                    change_unnoticed if it changed and they had not, 0 otherwise  (session effect)

so an image that looks like its layout neighbours draws less attention (diversity has value), a
changed image may cost recognizability or trigger reconsideration, artwork matters less for a
title the member knows, and click-bait images raise starts but lower quality.

Everything is array code over ``(pages, slots)`` (and a trailing candidate axis for
:func:`candidate_probabilities`); the similarity to neighbours is one numba pass over pages and
layout pairs. There is no Python loop per impression.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
from numpy.typing import NDArray

from slate.errors import InvalidProblemError
from slate.sim._kernels import neighbour_similarity
from slate.sim.config import ResponseConfig
from slate.sim.world import World, daypart_of

__all__ = ["PageBatch", "Response", "candidate_probabilities", "respond"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]


def _sigmoid(x: FloatArray) -> FloatArray:
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * x)))


@dataclass(frozen=True, eq=False)
class PageBatch:
    """``B`` homepages of the simulated world: who sees them, when, and which titles where.

    This is the page context a policy receives. All pages use the world's grid (slot ``s`` is at
    ``world.slot_rows[s], world.slot_cols[s]``). Images are referred to by *local* index within
    their title (``0 .. n_candidates - 1``), as in :class:`~slate.page.PageProblem`.

    Attributes
    ----------
    world : World
    member : (B,) int64
        Member index (``world.member_ids[member]`` is the logged id).
    day : (B,) int64
    hour : (B,) float64
        Local hour of the visit, in [0, 24).
    device : (B,) int64
        Index into ``world.devices``.
    titles : (B, P) int64
        Title index per slot.
    previous : (B, P) int64
        Local image the member saw for the title last time, ``-1`` for none.
    known : (B, P) bool
        The member has played the title before (observable history).
    session_id, page_id : (B,) int64
    timestamp : (B,) int64
        Microseconds since the epoch, UTC.
    """

    world: World
    member: IntArray
    day: IntArray
    hour: FloatArray
    device: IntArray
    titles: IntArray
    previous: IntArray
    known: BoolArray
    session_id: IntArray
    page_id: IntArray
    timestamp: IntArray
    _cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        b, p = self.titles.shape
        for name in ("member", "day", "hour", "device", "session_id", "page_id", "timestamp"):
            if getattr(self, name).shape != (b,):
                raise InvalidProblemError(
                    f"The '{name}' field of PageBatch must have shape ({b},); got {getattr(self, name).shape} instead."
                )
        for name in ("previous", "known"):
            if getattr(self, name).shape != (b, p):
                raise InvalidProblemError(
                    f"The '{name}' field of PageBatch must have shape ({b}, {p}); got {getattr(self, name).shape} instead."
                )

    @property
    def n_pages(self) -> int:
        """Number of pages ``B``."""
        return int(self.titles.shape[0])

    @property
    def n_slots(self) -> int:
        """Titles per page ``P``."""
        return int(self.titles.shape[1])

    @cached_property
    def n_candidates(self) -> IntArray:
        """``(B, P)`` number of candidate images of each title."""
        return np.asarray(self.world.n_images[self.titles])

    @cached_property
    def candidates(self) -> BoolArray:
        """``(B, P, K)`` mask of real candidate images (``K = world.max_images``)."""
        return np.asarray(np.arange(self.world.max_images)[None, None, :] < self.n_candidates[..., None])

    @cached_property
    def daypart(self) -> IntArray:
        """``(B,)`` index into :data:`slate.sim.world.DAYPARTS`."""
        return daypart_of(self.hour)

    def global_images(self, images: NDArray[Any]) -> IntArray:
        """Global image indices of local ``images`` of shape ``(B, P)`` or ``(B, P, R)``.

        Raises
        ------
        InvalidProblemError
            An image index is not a candidate of its title.
        """
        local = np.asarray(images)
        if local.shape[:2] != self.titles.shape or not np.issubdtype(local.dtype, np.integer):
            raise InvalidProblemError(
                f"The 'images' array must be integers of shape {self.titles.shape} (+ trailing axes); "
                f"got {local.dtype} of shape {local.shape} instead."
            )
        n = self.n_candidates.reshape(self.titles.shape + (1,) * (local.ndim - 2))
        bad = (local < 0) | (local >= n)
        if bad.any():
            b, s = (int(x) for x in np.argwhere(bad)[0][:2])
            raise InvalidProblemError(
                f"The 'images' array must name a candidate of each title; got {int(local[b, s].flat[0])} "
                f"for title '{self.world.title_ids[self.titles[b, s]]}' on page {b} slot {s} "
                f"({int(self.n_candidates[b, s])} candidates)."
            )
        offset = self.world.image_offset[self.titles].reshape(n.shape)
        return np.asarray(offset + local, dtype=np.int64)

    def image_ids(self, images: NDArray[Any]) -> NDArray[np.object_]:
        """Image id strings of local ``images`` ``(B, P)``."""
        return np.asarray(self.world.image_id_array[self.global_images(images)])

    def candidate_embeddings(self) -> FloatArray:
        """``(B, P, K, D)`` embeddings of every candidate (zeros on padding)."""
        g = self.world.title_images[self.titles]
        emb = self.world.embeddings[np.maximum(g, 0)]
        return np.asarray(np.where((g >= 0)[..., None], emb, 0.0))

    def take(self, index: NDArray[Any]) -> PageBatch:
        """The pages at ``index`` (indices or boolean mask) as a new batch."""
        idx = np.asarray(index)
        return PageBatch(
            world=self.world,
            member=self.member[idx],
            day=self.day[idx],
            hour=self.hour[idx],
            device=self.device[idx],
            titles=self.titles[idx],
            previous=self.previous[idx],
            known=self.known[idx],
            session_id=self.session_id[idx],
            page_id=self.page_id[idx],
            timestamp=self.timestamp[idx],
        )

    # ------------------------------------------------------------------ latent parts
    def _parts(self, config: ResponseConfig) -> dict[str, Any]:
        """Member- and title-level terms shared by every image of a title (cached per config)."""
        cached = self._cache.get("parts")
        if cached is not None and cached[0] == config:
            parts_cached: dict[str, Any] = cached[1]
            return parts_cached
        w = self.world
        taste = w.taste(self.member, self.day)  # (B, G)
        n_genres = taste.shape[1]
        base = np.arange(self.n_pages)[:, None] * n_genres
        g_idx, g_w = w.title_genres_sparse
        taste_flat = taste.ravel()
        relevance = np.zeros(self.titles.shape)
        for j in range(g_idx.shape[1]):
            relevance += np.take(taste_flat, base + np.take(g_idx[:, j], self.titles)) * np.take(g_w[:, j], self.titles)
        relevance += config.language_bonus * (w.title_language[self.titles] == w.member_language[self.member][:, None])
        days, inverse = np.unique(self.day, return_inverse=True)
        title_effect = np.stack([w.title_effect(int(d)) for d in days] or [np.zeros(w.n_titles)])
        relevance += title_effect[inverse.reshape(-1, 1), self.titles]
        appeal = config.appeal_weight * np.stack([w.appeal_table(int(d)) for d in days] or [np.zeros(w.n_images_total)])
        context = w.aesthetic_taste[self.member]  # (B, A)
        if config.context_effects:
            context = context + w.device_aesthetic[self.device] + w.daypart_aesthetic[self.daypart]
        damp: FloatArray = np.ones(self.titles.shape)
        if config.familiarity_effects:
            damp = np.asarray(1.0 - config.familiarity_damping * self.known, dtype=np.float64)
        parts = {
            "taste": taste,
            "relevance": relevance,
            "aesthetic": context,
            "damp": damp,
            "appeal": appeal,
            "day_row": inverse,
            "cast_highlight": np.where(w.image_highlight_kind == 1, w.image_highlight, -1),
        }
        self._cache["parts"] = (config, parts)
        return parts


def _image_terms(
    batch: PageBatch, g: IntArray, page: IntArray, slot: IntArray, config: ResponseConfig
) -> tuple[FloatArray, FloatArray]:
    """Start and quality logits without the session shift.

    ``g``, ``page`` and ``slot`` have one shape (any): global image, page index and slot index of
    each element. All gathers are ``np.take`` on flat arrays (numpy's fastest gather).
    """
    w = batch.world
    parts = batch._parts(config)
    taste, aest = parts["taste"], parts["aesthetic"]
    n_genres, n_aest = taste.shape[1], aest.shape[1]
    cell = page * batch.n_slots + slot
    relevance = np.take(parts["relevance"].ravel(), cell)
    damp = np.take(parts["damp"].ravel(), cell)
    v_idx, v_w = w.image_genre_sparse
    taste_flat = taste.ravel()
    base = page * n_genres
    match = np.take(taste_flat, base + np.take(v_idx[:, 0], g)) * np.take(v_w[:, 0], g)
    for j in range(1, v_idx.shape[1]):
        match += np.take(taste_flat, base + np.take(v_idx[:, j], g)) * np.take(v_w[:, j], g)
    cast_high = np.take(parts["cast_highlight"], g)  # -1 for theme images
    fav = w.favourite_cast[batch.member]
    strength = config.cast_weight * w.favourite_strength[batch.member]
    for f in range(fav.shape[1]):
        match += np.where(cast_high == np.take(fav[:, f], page), np.take(strength[:, f], page), 0.0)
    match += config.aesthetic_weight * np.take(aest.ravel(), page * n_aest + np.take(w.image_aesthetic, g))
    appeal = parts["appeal"]
    if appeal.shape[0] == 1:
        match += np.take(appeal[0], g)
    else:
        match += appeal[np.take(parts["day_row"], page), g]
    bait = np.take(w.image_clickbait, g)
    start = config.base_logit + config.relevance_weight * relevance + (config.image_weight * damp) * match
    start += config.clickbait_start * bait
    quality = config.quality_base + config.quality_relevance * relevance - config.clickbait_quality * bait
    return start, quality


@dataclass(frozen=True, eq=False)
class Response:
    """The response model's output for ``B`` pages of ``P`` slots.

    Attributes
    ----------
    probability : (B, P) float64
        P(quality play) = ``attention * p_start * p_quality``.
    attention : (B, P) float64
        Position bias times the page effect (in (0, 1]).
    p_start, p_quality : (B, P) float64
        P(start | noticed) and P(quality | start).
    crowd : (B, P) float64
        Layout-weighted similarity of each image to its neighbours' images.
    page_similarity : (B,) float64
        Weighted mean neighbour similarity of each page (``1 - diversity``).
    changed : (B, P) bool
        The image differs from the previous one the member saw (a previous one existed).
    """

    probability: FloatArray
    attention: FloatArray
    p_start: FloatArray
    p_quality: FloatArray
    crowd: FloatArray
    page_similarity: FloatArray
    changed: BoolArray


def respond(
    batch: PageBatch,
    images: NDArray[Any],
    noticed: BoolArray | None = None,
    *,
    config: ResponseConfig | None = None,
    neighbours: NDArray[Any] | None = None,
) -> Response:
    """P(quality play) of every slot of every page, given the images shown.

    Parameters
    ----------
    batch : PageBatch
    images : (B, P) int
        Local image index shown per slot.
    noticed : (B, P) bool, optional
        Whether the member noticed each title last time it was shown (latent session state;
        default: none noticed).
    config : ResponseConfig, optional
        Defaults to the world's.
    neighbours : (B, P) int, optional
        Images the neighbours show, when they differ from ``images``: slot ``s`` is evaluated
        with image ``images[b, s]`` against neighbours' ``neighbours[b, j]`` (a counterfactual one
        slot at a time, as replay evaluates a per-title policy on logged pages).

    Returns
    -------
    Response

    Examples
    --------
    >>> import numpy as np
    >>> from slate.sim import make_world, make_schedule, initial_state
    >>> world = make_world(n_members=30, n_titles=60, seed=2)
    >>> schedule = make_schedule(world, n_days=2, seed=0)
    >>> batch = schedule.batch(0, initial_state(world))
    >>> r = respond(batch, np.zeros(batch.titles.shape, dtype=np.int64))
    >>> r.probability.shape == batch.titles.shape, bool(((r.probability > 0) & (r.probability < 1)).all())
    (True, True)
    """
    cfg = batch.world.config.response if config is None else config
    w = batch.world
    g = batch.global_images(images)
    page, slot = (np.asarray(a, dtype=np.int64) for a in np.indices(g.shape))
    start, quality = _image_terms(batch, g, page, slot, cfg)
    local = np.asarray(images)
    changed = (batch.previous >= 0) & (local != batch.previous)
    if cfg.session_effects:
        seen = np.zeros(changed.shape, bool) if noticed is None else np.asarray(noticed, bool)
        start = start + np.where(changed, np.where(seen, cfg.change_noticed, cfg.change_unnoticed), 0.0)
    if neighbours is None:
        crowd, page = neighbour_similarity(w.embeddings, g, g, w.pairs, w.pair_weights, True)
    else:
        other = batch.global_images(neighbours)
        crowd, page = neighbour_similarity(w.embeddings, g, other, w.pairs, w.pair_weights, False)
    attention = np.broadcast_to(w.position_bias[: batch.n_slots], crowd.shape)
    if cfg.page_effects:
        attention = attention * np.exp(-cfg.crowding * crowd)
    p_start = _sigmoid(start)
    p_quality = _sigmoid(quality)
    return Response(
        probability=attention * p_start * p_quality,
        attention=np.asarray(attention),
        p_start=p_start,
        p_quality=p_quality,
        crowd=crowd,
        page_similarity=page,
        changed=changed,
    )


def candidate_probabilities(
    batch: PageBatch,
    *,
    config: ResponseConfig | None = None,
    noticed: BoolArray | None = None,
    include_position: bool = True,
) -> FloatArray:
    """``(B, P, K)`` P(quality play) of every candidate image, without the page effect.

    The page-blind truth: what a perfect per-title model would predict (NaN on padding). Session
    shifts are included when ``noticed`` is given (and session effects are on).

    Examples
    --------
    >>> from slate.sim import make_world, make_schedule, initial_state
    >>> world = make_world(n_members=30, n_titles=60, seed=2)
    >>> batch = make_schedule(world, n_days=1, seed=0).batch(0, initial_state(world))
    >>> p = candidate_probabilities(batch)
    >>> p.shape == batch.titles.shape + (world.max_images,)
    True
    """
    cfg = batch.world.config.response if config is None else config
    w = batch.world
    n = batch.n_candidates.ravel()
    cell = np.repeat(np.arange(n.size), n)
    local = np.arange(cell.size) - np.repeat(np.cumsum(n) - n, n)
    page, slot = np.divmod(cell, batch.n_slots)
    g = np.take(w.image_offset, np.take(batch.titles.ravel(), cell)) + local
    start, quality = _image_terms(batch, g, page, slot, cfg)
    if cfg.session_effects and noticed is not None:
        prev = np.take(batch.previous.ravel(), cell)
        changed = (prev >= 0) & (local != prev)
        seen = np.take(np.asarray(noticed, bool).ravel(), cell)
        start = start + np.where(changed, np.where(seen, cfg.change_noticed, cfg.change_unnoticed), 0.0)
    p = _sigmoid(start) * _sigmoid(quality)
    if include_position:
        p = p * np.take(w.position_bias, slot)
    out = np.full((*batch.titles.shape, w.max_images), np.nan)
    out.reshape(-1, w.max_images)[cell, local] = p
    return out
