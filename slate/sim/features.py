"""The observable context of simulated pages as :mod:`slate.bandit` features.

:class:`SimFeatures` plays the feature store for simulated logs: it turns a
:class:`~slate.sim.PageBatch` (member, device, hour, titles) into the feature tensors of
:class:`slate.bandit.FeatureBuilder`, using only what a real system could observe: the member's
viewing-history genre profile, country, language, device, hour and day of week, whether they
played the title before, a recommender score, the cast they watched, and each image's tags
(its theme -- for a cast image the actor's main genres, as an editor would tag it --, its
aesthetic) and visual embedding. Latent tastes, appeal and click-bait flags stay hidden.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from slate.sim.response import PageBatch
from slate.sim.world import DAYPARTS, World, daypart_of

__all__ = ["SimFeatures", "bandit_scorer", "predicted_mean"]

FloatArray = NDArray[np.floating[Any]]


class SimFeatures:
    """Features of simulated impressions for the bandit policies.

    Parameters
    ----------
    world : World
    embedding : bool, default True
        Include the images' visual embeddings.
    dtype : str, default "float32"

    Examples
    --------
    >>> import numpy as np
    >>> from slate.sim import make_world, make_schedule, initial_state
    >>> world = make_world(n_members=20, n_titles=60, seed=0)
    >>> batch = make_schedule(world, n_days=1).batch(0, initial_state(world))
    >>> features = SimFeatures(world)
    >>> x = features.candidates(batch.take([0]))
    >>> x.shape == (world.n_slots, int(batch.n_candidates[0].max()), features.n_features)
    True
    """

    def __init__(self, world: World, *, embedding: bool = True, dtype: str = "float32") -> None:
        from slate.bandit import FeatureBuilder, FeatureConfig

        self.world = world
        self.dtype = np.dtype(dtype)
        self.config = FeatureConfig(
            genres=world.genres,
            aesthetics=world.aesthetics,
            countries=world.countries,
            languages=world.languages,
            devices=world.devices,
            embedding_dim=world.config.embedding_dim if embedding else 0,
        )
        self.builder = FeatureBuilder(self.config)
        n_g = len(world.genres)
        cast_images = world.image_highlight_kind == 1
        themes = np.zeros((world.n_images_total, n_g), dtype=bool)
        themes[~cast_images, world.image_highlight[~cast_images]] = True
        actor = world.image_highlight[cast_images]
        themes[cast_images] = world.cast_genres[actor] >= 0.3  # the actor's main genres
        self.image_themes = themes
        self.image_aesthetics = np.eye(len(world.aesthetics), dtype=bool)[world.image_aesthetic]
        self.embedding = embedding
        start = np.datetime64(world.config.start_date, "D")
        self._dow0 = int((start.astype(np.int64) + 3) % 7)  # 1970-01-01 was a Thursday (3)

    @property
    def n_features(self) -> int:
        """Length of a feature vector: the builder's blocks plus ``context_x_aesthetic``."""
        return int(self.builder.n_features) + len(self._context_names)

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Names of the features, in order."""
        return tuple(self.builder.feature_names) + self._context_names

    @property
    def _context_names(self) -> tuple[str, ...]:
        w = self.world
        names = [f"device_x_aesthetic:{d}:{a}" for d in w.devices for a in w.aesthetics]
        names += [f"daypart_x_aesthetic:{p}:{a}" for p in DAYPARTS for a in w.aesthetics]
        return tuple(names)

    def columns(self, *blocks: str) -> NDArray[np.int64]:
        """Columns of the named feature blocks: :data:`slate.bandit.BLOCKS` and
        ``"context_x_aesthetic"`` (device and daypart crossed with the image's aesthetic)."""
        out = []
        for block in blocks:
            if block == "context_x_aesthetic":
                start = int(self.builder.n_features)
                out.append(np.arange(start, start + len(self._context_names)))
            else:
                out.append(np.asarray(self.builder.columns(block)))
        return np.concatenate(out).astype(np.int64) if out else np.zeros(0, np.int64)

    def observed_cast_affinity(self, members: NDArray[Any], cast: NDArray[Any]) -> FloatArray:
        """How much each member has watched each actor, in [0, 1] (0 for non-fans)."""
        fav = self.world.favourite_cast[members]
        strength = self.world.favourite_strength[members] / 1.5
        shape = np.broadcast_shapes(np.shape(members), np.shape(cast))
        out = np.zeros(shape)
        c = np.broadcast_to(cast, shape)
        for f in range(fav.shape[-1]):
            out += np.where(c == np.broadcast_to(fav[..., f], shape), np.broadcast_to(strength[..., f], shape), 0.0)
        return np.minimum(out, 1.0)

    def _rows(self, batch: PageBatch) -> dict[str, Any]:
        w = self.world
        p = batch.n_slots
        member = np.repeat(batch.member, p)
        day = np.repeat(batch.day, p)
        profile = w.member_profile(member, day)
        titles = batch.titles.ravel()
        observed = w.taste(member, day) + w.profile_noise[member]
        recommender = (observed * w.title_genres[titles]).sum(axis=1) + w.title_popularity[titles]
        return {
            "member": member,
            "titles": titles,
            "genre_affinity": profile,
            "country": w.member_country[member],
            "language": w.member_language[member],
            "device": np.repeat(batch.device, p),
            "hour": np.floor(np.repeat(batch.hour, p)),
            "day_of_week": (day + self._dow0) % 7,
            "interacted": batch.known.ravel().astype(np.float64),
            "recommender_score": recommender,
        }

    def _encode(self, rows: dict[str, Any], g: NDArray[np.int64], mask: NDArray[np.bool_]) -> FloatArray:
        w = self.world
        safe = np.where(mask, g, 0)
        actor = np.where(w.image_highlight_kind[safe] == 1, w.image_highlight[safe], -1)
        cast_match = np.where(actor >= 0, self.observed_cast_affinity(rows["member"][:, None], actor), 0.0)
        base = np.asarray(
            self.builder.encode(
                genre_affinity=rows["genre_affinity"],
                themes=self.image_themes[safe] & mask[..., None],
                mask=mask,
                cast_match=cast_match * mask,
                aesthetics=self.image_aesthetics[safe] & mask[..., None],
                embedding=(w.embeddings[safe] * mask[..., None]) if self.embedding else None,
                country=rows["country"],
                language=rows["language"],
                device=rows["device"],
                hour=rows["hour"],
                day_of_week=rows["day_of_week"],
                interacted=rows["interacted"],
                recommender_score=rows["recommender_score"],
                dtype=self.dtype.name,
            )
        )
        n_rows, n_img, _ = base.shape
        n_a, n_d = len(w.aesthetics), len(w.devices)
        x = np.zeros((n_rows, n_img, self.n_features), dtype=self.dtype)
        x[:, :, : base.shape[2]] = base
        aest = w.image_aesthetic[safe]
        rows_idx = np.arange(n_rows)[:, None]
        start = base.shape[2]
        device_col = start + rows["device"][:, None] * n_a + aest
        daypart_col = start + n_d * n_a + daypart_of(rows["hour"])[:, None] * n_a + aest
        cols = np.broadcast_to(rows_idx, aest.shape)
        slots = np.broadcast_to(np.arange(n_img)[None, :], aest.shape)
        x[cols[mask], slots[mask], device_col[mask]] = 1.0
        x[cols[mask], slots[mask], daypart_col[mask]] = 1.0
        return x

    def shown(
        self, batch: PageBatch, images: NDArray[Any], columns: NDArray[np.int64] | None = None
    ) -> FloatArray:
        """``(B * P, n_features)`` features of the shown images (rows page-major).

        ``columns`` keeps only those feature columns.
        """
        g = batch.global_images(images).reshape(-1, 1)
        x = self._encode(self._rows(batch), g, np.ones(g.shape, dtype=bool))[:, 0, :]
        return np.ascontiguousarray(x if columns is None else x[:, columns])

    def candidates(self, batch: PageBatch) -> FloatArray:
        """``(B * P, K_b, n_features)`` features of every candidate, ``K_b`` the batch's widest title."""
        k = int(batch.n_candidates.max())
        g = self.world.title_images[batch.titles.ravel(), :k]
        return self._encode(self._rows(batch), g, g >= 0)

    def arms(self, batch: PageBatch) -> NDArray[np.int64]:
        """``(B * P, K_b)`` arm of every candidate: its global image index, ``-1`` on padding."""
        k = int(batch.n_candidates.max())
        return np.asarray(self.world.title_images[batch.titles.ravel(), :k])

    def candidates_flat(
        self, batch: PageBatch, columns: NDArray[np.int64] | None = None
    ) -> tuple[FloatArray, NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
        """Features of every real candidate, one row each (no padding).

        Returns
        -------
        x : (n_candidates, n_features) or (n_candidates, len(columns))
        cell : (n_candidates,) int
            ``page * P + slot`` of each candidate.
        local : (n_candidates,) int
            Local image index within its title.
        arms : (n_candidates,) int
            Global image index (the bandits' arm).
        """
        n = batch.n_candidates.ravel()
        cell = np.repeat(np.arange(n.size), n)
        local = np.arange(cell.size) - np.repeat(np.cumsum(n) - n, n)
        g = self.world.image_offset[batch.titles.ravel()[cell]] + local
        rows = {k: v[cell] for k, v in self._rows(batch).items()}
        x = self._encode(rows, g[:, None], np.ones((cell.size, 1), dtype=bool))[:, 0, :]
        x = np.ascontiguousarray(x if columns is None else x[:, columns])
        return x, cell, local, np.asarray(g, dtype=np.int64)


def predicted_mean(policy: Any, x: FloatArray, arms: NDArray[np.int64]) -> FloatArray | None:
    """The predictive mean of a fitted policy straight from its learned state, or None.

    A fast path for scoring many candidates without the exploration terms: for
    :class:`slate.bandit.HybridLinUCB` the documented model ``z . beta_ + x_a . theta_a``, for
    :class:`slate.bandit.TakeRateBandit` the posterior mean take rate. Other policies return None
    (use their ``score``). ``x`` is ``(n_rows, n_images, n_features)``, ``arms`` ``(n_rows,
    n_images)`` with ``-1`` padding; arms the policy never saw get the prior (0 for the per-image
    part, the prior mean take rate).
    """
    from slate.bandit import HybridLinUCB, TakeRateBandit

    safe = np.maximum(arms, 0)
    if isinstance(policy, TakeRateBandit):
        s = np.zeros(safe.shape)
        f = np.zeros(safe.shape)
        known = safe < len(policy.successes_)
        s[known] = policy.successes_[safe[known]]
        f[known] = policy.failures_[safe[known]]
        a, b = policy.prior_alpha, policy.prior_beta
        return np.asarray((a + s) / (a + b + s + f))
    if isinstance(policy, HybridLinUCB) and policy.n_features_ is not None:
        from slate.bandit import PageFeatures

        d = policy.n_features_
        # the shared block is re-solved lazily before scoring: score a one-image page to bring
        # beta_ and theta_ up to date (public API; cheap)
        policy.score(PageFeatures.from_arrays(np.zeros((1, 1, d)), [[0]]), propensities=False)
        z_cols = np.arange(d) if policy.shared_columns is None else np.asarray(policy.shared_columns)
        x_cols = np.arange(d) if policy.arm_columns is None else np.asarray(policy.arm_columns)
        beta = np.zeros(d)
        beta[z_cols] = policy.beta_
        mean = x @ beta.astype(x.dtype)  # one product over all columns, no column copy
        theta = np.zeros((safe.max(initial=0) + 1, len(x_cols)))
        n_known = min(len(theta), policy.n_arms_)
        theta[:n_known] = policy.theta_[:n_known]
        per_arm = theta[safe]
        for j, c in enumerate(x_cols.tolist()):
            mean += x[..., c] * per_arm[..., j]
        return np.asarray(np.clip(mean, 0.0, 1.0))
    return None


def bandit_scorer(
    policy: Any,
    features: SimFeatures,
    *,
    columns: NDArray[np.int64] | None = None,
    chunk_pages: int = 128,
    field: str = "mean",
    fast: bool = True,
    cache: int = 4,
) -> Callable[[PageBatch], NDArray[np.float64]]:
    """A :data:`~slate.sim.Scorer` from a fitted :mod:`slate.bandit` policy.

    Scores ``(B, P, K)`` are the policy's ``field`` (``"mean"``: predicted probability of a
    quality play) for every candidate (NaN on padding), computed ``chunk_pages`` pages at a time
    on the real candidates only. ``columns`` selects the feature columns the policy was trained
    on (default: all). With ``fast`` the mean of the policies :func:`predicted_mean` knows is
    computed from their learned state (the same numbers as ``policy.score(...).mean``, without
    the exploration terms). The last ``cache`` batches' scores are kept, keyed by the batch's
    content (member, day, hour, device, titles, known), so two policies sharing a scorer on the
    same pages score them once.
    """
    import hashlib
    from collections import OrderedDict

    from slate.bandit import PageFeatures, TakeRateBandit

    memo: OrderedDict[bytes, NDArray[np.float64]] = OrderedDict()
    needs_x = not (fast and field == "mean" and isinstance(policy, TakeRateBandit))

    def compute(batch: PageBatch) -> NDArray[np.float64]:
        world = features.world
        out = np.full((*batch.titles.shape, world.max_images), np.nan)
        flat = out.reshape(-1, world.max_images)
        for lo in range(0, batch.n_pages, chunk_pages):
            part = batch.take(np.arange(lo, min(lo + chunk_pages, batch.n_pages)))
            if needs_x:
                x, cell, local, arms = features.candidates_flat(part, columns)
            else:  # a take-rate bandit needs no features
                n = part.n_candidates.ravel()
                cell = np.repeat(np.arange(n.size), n)
                local = np.arange(cell.size) - np.repeat(np.cumsum(n) - n, n)
                arms = world.image_offset[part.titles.ravel()[cell]] + local
                x = np.zeros((cell.size, 1), dtype=features.dtype)
            values = predicted_mean(policy, x[:, None, :], arms[:, None]) if fast and field == "mean" else None
            if values is None:
                page = PageFeatures.from_arrays(x[:, None, :], arms[:, None])
                values = getattr(policy.score(page, propensities=False), field)
            flat[lo * batch.n_slots + cell, local] = np.asarray(values)[:, 0]
        return out

    def score(batch: PageBatch) -> NDArray[np.float64]:
        if cache <= 0:
            return compute(batch)
        digest = hashlib.blake2b(digest_size=16)
        for a in (batch.member, batch.day, batch.hour, batch.device, batch.titles, batch.known):
            digest.update(np.ascontiguousarray(a).tobytes())
        key = digest.digest()
        if key in memo:
            memo.move_to_end(key)
            return memo[key].copy()
        result = compute(batch)
        memo[key] = result
        while len(memo) > cache:
            memo.popitem(last=False)
        return result.copy()

    return score
