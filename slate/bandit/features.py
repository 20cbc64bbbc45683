"""From requests to feature tensors: member, member-title, image and interaction features.

The feature vector of a (member, title, image) triple is laid out in named blocks::

    bias          1
    member        genre affinities, country / language / device one-hot (with <other>),
                  hour and day of week as points on a circle (sin, cos)
    member_title  interacted before, recommender score
    image         theme tags, aesthetic tags, visual embedding
    interaction   affinity x theme per genre, theme match, cast match, new-to-member x theme
                  match, new-to-member x cast match [, affinity x embedding]

The interactions are what lets a comedy fan get the comedian's image: ``affinity x theme`` is
large exactly when the image shows what the member watches. ``cast match`` is the member's
affinity summed over the cast visible in the image, so no cast vocabulary is needed.

:meth:`FeatureBuilder.encode` is the vectorised core on arrays (many rows at once, e.g. from a
simulator); :meth:`FeatureBuilder.build` turns a validated :class:`FeatureRequest` into those
arrays and returns :class:`PageFeatures`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from slate.bandit.batch import PageFeatures
from slate.bandit.requests import FeatureConfig, FeatureRequest
from slate.errors import InvalidProblemError

__all__ = ["BLOCKS", "ArmIndex", "FeatureBuilder", "FeatureInputs"]

BLOCKS = ("bias", "member", "member_title", "image", "interaction")


class ArmIndex:
    """Maps image ids to arm indices (the rows of a model's per-image statistics).

    Persist it next to the model (:meth:`to_list` / :meth:`from_list`).

    Examples
    --------
    >>> index = ArmIndex(["a", "b"])
    >>> index.index(["b", "c"]).tolist(), len(index)
    ([1, 2], 3)
    >>> index.index(["zzz"], grow=False)
    Traceback (most recent call last):
    ...
    slate.errors.InvalidProblemError: Unknown image id 'zzz' (the arm index has 3 images and may not grow here).
    """

    def __init__(self, image_ids: Iterable[str] = ()) -> None:
        self._ids: list[str] = []
        self._pos: dict[str, int] = {}
        self.index(list(image_ids))

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, image_id: object) -> bool:
        return image_id in self._pos

    @property
    def ids(self) -> tuple[str, ...]:
        """Image ids in arm order."""
        return tuple(self._ids)

    def index(self, image_ids: Sequence[str], *, grow: bool = True) -> NDArray[np.int64]:
        """Arm indices of ``image_ids``; unknown ids get new arms when ``grow`` (else raise)."""
        out = np.empty(len(image_ids), np.int64)
        for i, iid in enumerate(image_ids):
            pos = self._pos.get(iid)
            if pos is None:
                if not grow:
                    raise InvalidProblemError(
                        f"Unknown image id '{iid}' (the arm index has {len(self._ids)} images and may not grow here)."
                    )
                pos = len(self._ids)
                self._ids.append(str(iid))
                self._pos[str(iid)] = pos
            out[i] = pos
        return out

    def to_list(self) -> list[str]:
        """JSON-serialisable form."""
        return list(self._ids)

    @classmethod
    def from_list(cls, ids: Sequence[str]) -> ArmIndex:
        """Inverse of :meth:`to_list`."""
        return cls(ids)


@dataclass(frozen=True)
class FeatureInputs:
    """The arrays :meth:`FeatureBuilder.encode` turns into features (``n_rows`` rows, which may be
    different members; ``n_images`` candidates per row).

    Attributes
    ----------
    genre_affinity : array_like (n_rows, n_genres) in [0, 1]
    themes : array_like (n_rows, n_images, n_genres) of bool
    mask : array_like (n_rows, n_images) of bool, optional
    cast_match : array_like (n_rows, n_images), optional
        The member's affinity summed over the cast shown in each image.
    aesthetics : array_like (n_rows, n_images, n_aesthetics) of bool, optional
    embedding : array_like (n_rows, n_images, embedding_dim), optional
    country, language, device : array_like (n_rows,) of int, optional
        Index into the configured list; ``-1`` (or out of range) for ``<other>``.
    hour : array_like (n_rows,) in 0..23, optional
    day_of_week : array_like (n_rows,) in 0..6, optional
    interacted : array_like (n_rows,) of bool, optional
    recommender_score : array_like (n_rows,), optional
    """

    genre_affinity: ArrayLike
    themes: ArrayLike
    mask: ArrayLike | None = None
    cast_match: ArrayLike | None = None
    aesthetics: ArrayLike | None = None
    embedding: ArrayLike | None = None
    country: ArrayLike | None = None
    language: ArrayLike | None = None
    device: ArrayLike | None = None
    hour: ArrayLike | None = None
    day_of_week: ArrayLike | None = None
    interacted: ArrayLike | None = None
    recommender_score: ArrayLike | None = None


def _fail(field_name: str, must: str, got: object) -> InvalidProblemError:
    return InvalidProblemError(f"The '{field_name}' field must {must}; got {got} instead.")


class FeatureBuilder:
    """Builds the (rows x images x features) tensor of a page, vectorised.

    Parameters
    ----------
    config : FeatureConfig
    arms : ArmIndex, optional
        Image id -> arm map (a new empty one by default); :meth:`build` adds unseen images.

    Attributes
    ----------
    feature_names : tuple of str
    n_features : int

    Examples
    --------
    >>> from slate.bandit import (FeatureBuilder, FeatureConfig, FeatureRequest, MemberContext,
    ...                           TitleCandidate, ImageCandidate)
    >>> builder = FeatureBuilder(FeatureConfig(genres=("comedy", "romance")))
    >>> request = FeatureRequest(
    ...     member=MemberContext(member_id="m1", genre_affinity={"comedy": 0.9}),
    ...     titles=[TitleCandidate(title_id="good-will-hunting", images=[
    ...         ImageCandidate(image_id="comedian", themes=("comedy",), cast=("Robin Williams",)),
    ...         ImageCandidate(image_id="couple", themes=("romance",))])])
    >>> page = builder.build(request)
    >>> page.x.shape, page.arms.tolist()
    ((1, 2, 20), [[0, 1]])
    >>> j = builder.feature_names.index("affinity_x_theme:comedy")
    >>> page.x[0, :, j].tolist()
    [0.9, 0.0]
    """

    def __init__(self, config: FeatureConfig, arms: ArmIndex | None = None) -> None:
        if not isinstance(config, FeatureConfig):
            raise InvalidProblemError(f"FeatureBuilder needs a FeatureConfig; got {type(config).__name__} instead.")
        self.config = config
        self.arms = arms if arms is not None else ArmIndex()
        c = config
        g, e = list(c.genres), c.embedding_dim
        blocks: dict[str, list[str]] = {
            "bias": ["bias"],
            "member": [f"genre:{x}" for x in g]
            + [f"country:{x}" for x in c.countries]
            + ["country:<other>"]
            + [f"language:{x}" for x in c.languages]
            + ["language:<other>"]
            + [f"device:{x}" for x in c.devices]
            + ["device:<other>"]
            + ["hour_sin", "hour_cos", "dow_sin", "dow_cos"],
            "member_title": ["interacted", "recommender_score"],
            "image": [f"theme:{x}" for x in g] + [f"aesthetic:{x}" for x in c.aesthetics] + [f"embedding:{i}" for i in range(e)],
            "interaction": [f"affinity_x_theme:{x}" for x in g]
            + ["theme_match", "cast_match", "new_x_theme_match", "new_x_cast_match"]
            + ([f"affinity_x_embedding:{x}:{i}" for x in g for i in range(e)] if c.embedding_interactions else []),
        }
        names: list[str] = []
        self._slices: dict[str, slice] = {}
        for blk in BLOCKS:
            self._slices[blk] = slice(len(names), len(names) + len(blocks[blk]))
            names.extend(blocks[blk])
        self.feature_names = tuple(names)
        self.n_features = len(names)
        self._genre = {x: i for i, x in enumerate(c.genres)}
        self._aesth = {x: i for i, x in enumerate(c.aesthetics)}
        self._country = {x: i for i, x in enumerate(c.countries)}
        self._language = {x: i for i, x in enumerate(c.languages)}
        self._device = {x: i for i, x in enumerate(c.devices)}

    def columns(self, *blocks: str) -> NDArray[np.int64]:
        """Column indices of the named blocks (e.g. for :class:`HybridLinUCB`'s column split).

        Examples
        --------
        >>> from slate.bandit import FeatureBuilder, FeatureConfig
        >>> FeatureBuilder(FeatureConfig(genres=("a",))).columns("member_title").tolist()
        [9, 10]
        """
        out: list[int] = []
        for blk in blocks:
            if blk not in self._slices:
                raise InvalidProblemError(f"Unknown feature block '{blk}'; the blocks are {', '.join(BLOCKS)}.")
            s = self._slices[blk]
            out.extend(range(s.start, s.stop))
        return np.asarray(out, dtype=np.int64)

    # ------------------------------------------------------------------ arrays -> features
    def encode(
        self,
        inputs: FeatureInputs | None = None,
        /,
        *,
        dtype: type[np.floating[Any]] | str = np.float64,
        **arrays: ArrayLike | None,
    ) -> NDArray[np.floating[Any]]:
        """Feature tensor from arrays (the vectorised core; rows may be different members).

        Parameters
        ----------
        inputs : FeatureInputs, optional
            The arrays; or give them as keywords instead (the fields of :class:`FeatureInputs`:
            ``genre_affinity``, ``themes``, ``mask``, ``cast_match``, ``aesthetics``,
            ``embedding``, ``country``, ``language``, ``device``, ``hour``, ``day_of_week``,
            ``interacted``, ``recommender_score``).
        dtype : float32 or float64
        **arrays
            The fields of :class:`FeatureInputs`, when ``inputs`` is not given.

        Returns
        -------
        ndarray (n_rows, n_images, n_features)
            Zeros on padding.

        Raises
        ------
        InvalidProblemError
            A shape or range is wrong (the message names the argument).
        TypeError
            Both ``inputs`` and keywords, an unknown keyword, or a required array missing.
        """
        if inputs is None:
            try:
                inputs = FeatureInputs(**arrays)  # type: ignore[arg-type]
            except TypeError as err:
                raise TypeError(f"encode: {err}".replace("FeatureInputs.__init__() ", "")) from None
        elif arrays:
            raise TypeError("encode takes a FeatureInputs or keyword arrays, not both.")
        c = self.config
        aff, th, m, cm, em, image = self._image_arrays(inputs)
        n_rows, n_img = m.shape
        member, inter, rec = self._member_arrays(inputs, aff)
        d = self.n_features
        x = np.zeros((n_rows, n_img, d), dtype=dtype)
        x[:, :, self._slices["bias"]] = 1.0
        x[:, :, self._slices["member"]] = member[:, None, :]
        x[:, :, self._slices["member_title"]] = np.stack([inter, rec], axis=1)[:, None, :]
        x[:, :, self._slices["image"]] = image
        axt = aff[:, None, :] * th
        n_themes = th.sum(axis=2)
        theme_match = axt.sum(axis=2) / np.maximum(n_themes, 1.0)
        new = (1.0 - inter)[:, None]
        parts = [axt, theme_match[..., None], cm[..., None], (new * theme_match)[..., None], (new * cm)[..., None]]
        if c.embedding_interactions:
            n_g, n_e = len(c.genres), c.embedding_dim
            parts.append((aff[:, None, :, None] * em[:, :, None, :]).reshape(n_rows, n_img, n_g * n_e))
        x[:, :, self._slices["interaction"]] = np.concatenate(parts, axis=2)
        x[~m] = 0.0
        return x

    def _image_arrays(self, inputs: FeatureInputs) -> tuple[NDArray[Any], ...]:
        """Check genre affinity and the per-image arrays; return affinity, themes, mask, cast
        match, embedding and the image block (themes, aesthetics, embedding)."""
        c = self.config
        n_g, n_a, n_e = len(c.genres), len(c.aesthetics), c.embedding_dim
        aff = self._arr("genre_affinity", inputs.genre_affinity, 2)
        n_rows = aff.shape[0]
        if aff.shape[1] != n_g:
            raise _fail("genre_affinity", f"have one column per genre ({n_g})", f"shape {aff.shape}")
        if ((aff < 0) | (aff > 1)).any():
            raise _fail("genre_affinity", "be in [0, 1]", f"{aff[(aff < 0) | (aff > 1)][0]}")
        th = self._arr("themes", inputs.themes, 3)
        if th.shape[0] != n_rows or th.shape[2] != n_g:
            raise _fail("themes", f"have shape (n_rows, n_images, n_genres) = ({n_rows}, n_images, {n_g})", f"shape {th.shape}")
        n_img = th.shape[1]
        mask, cast_match, aesthetics, embedding = inputs.mask, inputs.cast_match, inputs.aesthetics, inputs.embedding
        m = np.ones((n_rows, n_img), bool) if mask is None else np.asarray(mask, dtype=bool)
        if m.shape != (n_rows, n_img):
            raise _fail("mask", f"have shape ({n_rows}, {n_img})", f"shape {m.shape}")
        cm = np.zeros((n_rows, n_img)) if cast_match is None else self._arr("cast_match", cast_match, 2)
        if cm.shape != (n_rows, n_img):
            raise _fail("cast_match", f"have shape ({n_rows}, {n_img})", f"shape {cm.shape}")
        ae = np.zeros((n_rows, n_img, n_a)) if aesthetics is None else self._arr("aesthetics", aesthetics, 3)
        if ae.shape != (n_rows, n_img, n_a):
            raise _fail("aesthetics", f"have shape ({n_rows}, {n_img}, {n_a})", f"shape {ae.shape}")
        if n_e and embedding is None:
            raise _fail("embedding", f"be given (the config has embedding_dim={n_e})", "None")
        em = np.zeros((n_rows, n_img, 0)) if embedding is None else self._arr("embedding", embedding, 3)
        if em.shape != (n_rows, n_img, n_e):
            raise _fail("embedding", f"have shape ({n_rows}, {n_img}, {n_e})", f"shape {em.shape}")
        return aff, th, m, cm, em, np.concatenate([th, ae, em], axis=2)

    def _member_arrays(
        self, inputs: FeatureInputs, aff: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        """Check the per-row context; return the member block, ``interacted`` and the
        recommender score."""
        c = self.config
        n_rows = aff.shape[0]

        def per_row(name: str, value: ArrayLike | None, default: float) -> NDArray[np.float64]:
            if value is None:
                return np.full(n_rows, default)
            v = self._arr(name, value, 1)
            if v.shape != (n_rows,):
                raise _fail(name, f"have shape ({n_rows},)", f"shape {v.shape}")
            return v

        hr = per_row("hour", inputs.hour, 12.0)
        dw = per_row("day_of_week", inputs.day_of_week, 0.0)
        if ((hr < 0) | (hr > 23)).any():
            raise _fail("hour", "be in 0..23", f"{hr[(hr < 0) | (hr > 23)][0]}")
        if ((dw < 0) | (dw > 6)).any():
            raise _fail("day_of_week", "be in 0..6", f"{dw[(dw < 0) | (dw > 6)][0]}")
        inter = per_row("interacted", inputs.interacted, 0.0)
        rec = per_row("recommender_score", inputs.recommender_score, 0.0)

        def onehot(name: str, codes: ArrayLike | None, size: int) -> NDArray[np.float64]:
            out = np.zeros((n_rows, size + 1))
            if codes is None:
                out[:, size] = 1.0
                return out
            cd = np.asarray(codes)
            if cd.shape != (n_rows,) or not np.issubdtype(cd.dtype, np.integer):
                raise _fail(name, f"be integer codes of shape ({n_rows},)", f"{cd.dtype} of shape {cd.shape}")
            cd = np.where((cd < 0) | (cd >= size), size, cd)
            out[np.arange(n_rows), cd] = 1.0
            return out

        member = np.concatenate(
            [
                aff,
                onehot("country", inputs.country, len(c.countries)),
                onehot("language", inputs.language, len(c.languages)),
                onehot("device", inputs.device, len(c.devices)),
                np.stack(
                    [
                        np.sin(2 * np.pi * hr / 24),
                        np.cos(2 * np.pi * hr / 24),
                        np.sin(2 * np.pi * dw / 7),
                        np.cos(2 * np.pi * dw / 7),
                    ],
                    axis=1,
                ),
            ],
            axis=1,
        )
        return member, inter, rec

    @staticmethod
    def _arr(name: str, value: ArrayLike, ndim: int) -> NDArray[np.float64]:
        a = np.asarray(value, dtype=np.float64)
        if a.ndim != ndim:
            raise _fail(name, f"be {ndim}-D", f"shape {a.shape}")
        if not np.isfinite(a).all():
            raise _fail(name, "be finite", f"{a[~np.isfinite(a)][0]}")
        return a

    # ------------------------------------------------------------------ request -> features
    def build(self, request: FeatureRequest, *, grow: bool = True, dtype: type[np.floating[Any]] | str = np.float64) -> PageFeatures:
        """Features of a validated page request, one row per title.

        Parameters
        ----------
        request : FeatureRequest
        grow : bool, default True
            Give images not yet in ``self.arms`` a new arm (a new image then starts at the
            model's prior); when false an unknown image id raises.
        dtype : float32 or float64

        Raises
        ------
        InvalidProblemError
            A tag outside the configured vocabularies (unless ``unknown_tags="ignore"``), an
            embedding of the wrong length, or an unknown image id with ``grow=False``.
        """
        if not isinstance(request, FeatureRequest):
            raise InvalidProblemError(f"FeatureBuilder.build needs a FeatureRequest; got {type(request).__name__} instead.")
        c = self.config
        member = request.member
        n_rows = len(request.titles)
        n_img = max(len(t.images) for t in request.titles)
        n_g, n_a, n_e = len(c.genres), len(c.aesthetics), c.embedding_dim
        strict = c.unknown_tags == "error"

        aff = np.zeros((1, n_g))
        for gname, v in member.genre_affinity.items():
            j = self._genre.get(gname)
            if j is None:
                if strict:
                    raise _fail("member.genre_affinity", f"use the configured genres {list(c.genres)}", f"'{gname}'")
                continue
            aff[0, j] = v

        mask = np.zeros((n_rows, n_img), bool)
        themes = np.zeros((n_rows, n_img, n_g))
        aes = np.zeros((n_rows, n_img, n_a))
        emb = np.zeros((n_rows, n_img, n_e))
        cast = np.zeros((n_rows, n_img))
        image_ids: list[tuple[str, ...]] = []
        all_ids: list[str] = []
        for t, title in enumerate(request.titles):
            image_ids.append(tuple(im.image_id for im in title.images))
            for k, im in enumerate(title.images):
                mask[t, k] = True
                all_ids.append(im.image_id)
                for tag in im.themes:
                    j = self._genre.get(tag)
                    if j is None:
                        if strict:
                            raise _fail(f"titles[{t}].images[{k}].themes", f"use the configured genres {list(c.genres)}", f"'{tag}'")
                        continue
                    themes[t, k, j] = 1.0
                for tag in im.aesthetics:
                    j = self._aesth.get(tag)
                    if j is None:
                        if strict:
                            raise _fail(
                                f"titles[{t}].images[{k}].aesthetics", f"use the configured aesthetics {list(c.aesthetics)}", f"'{tag}'"
                            )
                        continue
                    aes[t, k, j] = 1.0
                if n_e:
                    if im.embedding is None or len(im.embedding) != n_e:
                        got = "None" if im.embedding is None else f"length {len(im.embedding)}"
                        raise _fail(f"titles[{t}].images[{k}].embedding", f"have length {n_e}", got)
                    emb[t, k] = im.embedding
                cast[t, k] = sum(member.cast_affinity.get(a, 0.0) for a in im.cast)
        arms_flat = self.arms.index(all_ids, grow=grow)
        arms = np.full((n_rows, n_img), -1, np.int64)
        arms[mask] = arms_flat
        x = self.encode(
            genre_affinity=np.repeat(aff, n_rows, axis=0),
            themes=themes,
            mask=mask,
            cast_match=cast,
            aesthetics=aes,
            embedding=emb if n_e else None,
            country=np.full(n_rows, self._country.get(member.country, -1)),
            language=np.full(n_rows, self._language.get(member.language, -1)),
            device=np.full(n_rows, self._device.get(member.device, -1)),
            hour=np.full(n_rows, float(member.hour)),
            day_of_week=np.full(n_rows, float(member.day_of_week)),
            interacted=np.array([float(t.interacted) for t in request.titles]),
            recommender_score=np.array([t.recommender_score for t in request.titles]),
            dtype=dtype,
        )
        return PageFeatures.from_arrays(
            x,
            arms,
            mask,
            feature_names=self.feature_names,
            row_ids=[t.title_id for t in request.titles],
            image_ids=image_ids,
        )
