"""The arrays that go into and come out of a scoring policy: :class:`PageFeatures`, :class:`PageScores`.

A *row* is one decision: one title shown to one member (the titles of one page, or the members of
a stream). The columns of a row are that title's candidate images, padded to ``n_images``;
``mask[r, k]`` says whether column ``k`` is a real image. Each image is an *arm* of the models: an
integer index into the model's per-image statistics (:class:`slate.bandit.ArmIndex` maps image ids
to arms).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from slate.errors import InvalidProblemError

__all__ = ["PageFeatures", "PageScores"]

FloatArray = NDArray[np.floating[Any]]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]


def _fail(field_name: str, must: str, got: object) -> InvalidProblemError:
    return InvalidProblemError(f"The '{field_name}' field must {must}; got {got} instead.")


def _readonly(array: NDArray[Any]) -> NDArray[Any]:
    if array.flags.writeable:
        array.flags.writeable = False
    return array


def _storage_dtype(x_arr: NDArray[Any], dtype: type[np.floating[Any]] | str | None) -> np.dtype[Any]:
    """float32 or float64: ``dtype``, or float32 for float32 features and float64 otherwise."""
    if not np.issubdtype(x_arr.dtype, np.number) or np.issubdtype(x_arr.dtype, np.complexfloating):
        raise _fail("features", "be a real numeric array", f"dtype {x_arr.dtype}")
    if dtype is None:
        return np.dtype(np.float32) if x_arr.dtype == np.float32 else np.dtype(np.float64)
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise _fail("dtype", "be float32 or float64", str(dt))
    return dt


def _checked_arms(arms: ArrayLike, mask: ArrayLike | None) -> tuple[IntArray, BoolArray]:
    """Arms (``-1`` off the mask) and the mask: every real image has an arm >= 0, distinct within
    its row, and every row has an image."""
    arm_arr = np.asarray(arms)
    if arm_arr.ndim != 2 or arm_arr.shape[0] == 0 or arm_arr.shape[1] == 0:
        raise _fail("arms", "be a non-empty 2-D array (n_rows, n_images)", f"shape {arm_arr.shape}")
    if arm_arr.dtype == bool or not np.issubdtype(arm_arr.dtype, np.integer):
        raise _fail("arms", "be an integer array", f"dtype {arm_arr.dtype}")
    n_images = arm_arr.shape[1]
    if mask is None:
        m = arm_arr >= 0
    else:
        m = np.asarray(mask)
        if m.shape != arm_arr.shape:
            raise _fail("mask", f"have the shape of arms {arm_arr.shape}", f"shape {m.shape}")
        m = m.astype(bool)
    bad = m & (arm_arr < 0)
    if bad.any():
        r, k = map(int, np.argwhere(bad)[0])
        raise _fail("arms", "be >= 0 for every real image", f"{int(arm_arr[r, k])} at row {r} image {k}")
    empty = ~m.any(axis=1)
    if empty.any():
        raise _fail("mask", "give every row at least one image", f"no image in row {int(np.flatnonzero(empty)[0])}")
    arm_clean = np.where(m, arm_arr, -1).astype(np.int64)
    if n_images > 1:
        fill = -1 - np.arange(n_images, dtype=np.int64)  # distinct negatives never collide
        srt = np.sort(np.where(m, arm_clean, fill[None, :]), axis=1)
        dup = (srt[:, 1:] == srt[:, :-1]) & (srt[:, 1:] >= 0)
        if dup.any():
            r = int(np.flatnonzero(dup.any(axis=1))[0])
            a = int(srt[r, 1:][dup[r]][0])
            raise _fail("arms", "be distinct within a row (one column per image)", f"arm {a} twice in row {r}")
    return arm_clean, m


def _checked_features(
    x_arr: NDArray[Any], dt: np.dtype[Any], m: BoolArray, feature_names: Sequence[str] | None
) -> tuple[FloatArray, FloatArray | None]:
    """The (read-only) feature tensor, finite on real images and zero on padding, and the per-row
    context when ``x`` was 2-D."""
    n_rows, n_images = m.shape
    context: FloatArray | None = None
    if x_arr.ndim == 2:
        if x_arr.shape[0] != n_rows or x_arr.shape[1] == 0:
            raise _fail(
                "features",
                f"have shape (n_rows, n_features) = ({n_rows}, n_features >= 1) or (n_rows, n_images, n_features)",
                f"shape {x_arr.shape}",
            )
        ctx = np.ascontiguousarray(x_arr, dtype=dt)
        finite = np.isfinite(ctx)
        if not finite.all():
            r, j = map(int, np.argwhere(~finite)[0])
            raise _fail("features", "be finite", f"{ctx[r, j]} at row {r} {_feature_label(feature_names, j)}")
        context = _readonly(ctx)
        return _readonly(np.broadcast_to(ctx[:, None, :], (n_rows, n_images, ctx.shape[1]))), context
    if x_arr.ndim == 3:
        if x_arr.shape[:2] != (n_rows, n_images) or x_arr.shape[2] == 0:
            raise _fail(
                "features",
                f"have shape (n_rows, n_images, n_features) = ({n_rows}, {n_images}, n_features >= 1)",
                f"shape {x_arr.shape}",
            )
        xf = np.array(x_arr, dtype=dt, copy=True, order="C")
        finite = np.isfinite(xf)
        bad_x = ~finite & m[:, :, None]
        if bad_x.any():
            r, k, j = map(int, np.argwhere(bad_x)[0])
            raise _fail(
                "features",
                "be finite for every real image",
                f"{xf[r, k, j]} at row {r} image {k} {_feature_label(feature_names, j)}",
            )
        xf[~m] = 0.0
        return _readonly(xf), context
    raise _fail("features", "be 2-D or 3-D", f"shape {x_arr.shape}")


def _checked_ids(
    n_features: int,
    m: BoolArray,
    feature_names: Sequence[str] | None,
    row_ids: Sequence[str] | None,
    image_ids: Sequence[Sequence[str]] | None,
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[tuple[str, ...], ...]]:
    """Feature names, row ids and image ids as tuples of str, one per feature / row / real image."""
    n_rows = m.shape[0]
    names = tuple(str(s) for s in feature_names) if feature_names is not None else ()
    if names and len(names) != n_features:
        raise _fail("feature_names", f"have one name per feature ({n_features})", f"{len(names)}")
    rids = tuple(str(s) for s in row_ids) if row_ids is not None else ()
    if rids and len(rids) != n_rows:
        raise _fail("row_ids", f"have one id per row ({n_rows})", f"{len(rids)}")
    iids = tuple(tuple(str(s) for s in ids) for ids in image_ids) if image_ids is not None else ()
    if iids:
        if len(iids) != n_rows:
            raise _fail("image_ids", f"have one list per row ({n_rows})", f"{len(iids)}")
        counts = m.sum(axis=1)
        for r, ids in enumerate(iids):
            if len(ids) != counts[r]:
                raise _fail("image_ids", f"list one id per real image of row {r} ({int(counts[r])})", f"{len(ids)}")
    return names, rids, iids


@dataclass(frozen=True, eq=False)
class PageFeatures:
    """Validated feature tensor of a page (or of a batch of decisions): the policies' input.

    Build it with :meth:`from_arrays` (the array-level entry point) or with
    :meth:`slate.bandit.FeatureBuilder.build` (from a :class:`slate.bandit.FeatureRequest`).
    All arrays are read-only.

    Attributes
    ----------
    x : ndarray (n_rows, n_images, n_features), float32 or float64
        Features of each (row, image) pair; zeros on padding. When ``shared_context`` is true this
        is a broadcast view of ``context``.
    arms : ndarray (n_rows, n_images), int64
        Arm (image) index of each candidate, ``-1`` on padding. Distinct within a row.
    mask : ndarray (n_rows, n_images), bool
        Real images (``arms >= 0``).
    context : ndarray (n_rows, n_features) or None
        Set when every image of a row has the same features (the classic disjoint-bandit setting,
        where only the arm differs); scoring then runs one matrix product per row chunk.
    feature_names : tuple of str
    row_ids : tuple of str
        Title ids of the rows (empty when built from arrays without ids).
    image_ids : tuple of tuple of str
        Candidate image ids per row, ragged like :class:`slate.page.PageProblem`.
    """

    x: FloatArray
    arms: IntArray
    mask: BoolArray
    context: FloatArray | None = None
    feature_names: tuple[str, ...] = ()
    row_ids: tuple[str, ...] = ()
    image_ids: tuple[tuple[str, ...], ...] = ()

    @classmethod
    def from_arrays(
        cls,
        x: ArrayLike,
        arms: ArrayLike,
        mask: ArrayLike | None = None,
        *,
        feature_names: Sequence[str] | None = None,
        row_ids: Sequence[str] | None = None,
        image_ids: Sequence[Sequence[str]] | None = None,
        dtype: type[np.floating[Any]] | str | None = None,
    ) -> PageFeatures:
        """Validate feature arrays once, at the boundary.

        Parameters
        ----------
        x : array_like (n_rows, n_images, n_features) or (n_rows, n_features)
            Features per (row, image); a 2-D array means every image of a row shares the row's
            features (only the arm differs). Non-finite values are allowed only on padding.
        arms : array_like (n_rows, n_images) of int
            Arm index per candidate, ``-1`` on padding; distinct within a row.
        mask : array_like (n_rows, n_images) of bool, optional
            Real images (default ``arms >= 0``); where false the arm is ignored.
        feature_names, row_ids, image_ids : optional
            Names carried along for error messages and for mapping scores back to ids.
        dtype : float32 or float64, optional
            Storage type of ``x`` (default: float32 when ``x`` is float32, else float64).

        Raises
        ------
        InvalidProblemError
            Shapes disagree, a feature is NaN or infinite on a real image, an arm is negative or
            repeated within a row, or a row has no image.

        Examples
        --------
        >>> import numpy as np
        >>> page = PageFeatures.from_arrays(np.ones((2, 3, 4)), [[0, 1, 2], [3, 4, -1]])
        >>> page.n_rows, page.n_images, page.n_features, page.mask.sum()
        (2, 3, 4, np.int64(5))
        """
        x_arr = np.asarray(x)
        dt = _storage_dtype(x_arr, dtype)
        arm_clean, m = _checked_arms(arms, mask)
        x_full, context = _checked_features(x_arr, dt, m, feature_names)
        names, rids, iids = _checked_ids(x_full.shape[2], m, feature_names, row_ids, image_ids)
        return cls(
            x=x_full,
            arms=_readonly(arm_clean),
            mask=_readonly(m),
            context=context,
            feature_names=names,
            row_ids=rids,
            image_ids=iids,
        )

    @property
    def n_rows(self) -> int:
        """Number of decisions (titles of the page, or members of a stream)."""
        return int(self.arms.shape[0])

    @property
    def n_images(self) -> int:
        """Padded number of candidate images per row."""
        return int(self.arms.shape[1])

    @property
    def n_features(self) -> int:
        """Length of a feature vector."""
        return int(self.x.shape[2])

    @property
    def shared_context(self) -> bool:
        """Whether every image of a row has the row's features (see ``context``)."""
        return self.context is not None

    def rows(self, index: ArrayLike) -> PageFeatures:
        """A sub-batch with the given rows (no re-validation).

        Examples
        --------
        >>> import numpy as np
        >>> page = PageFeatures.from_arrays(np.ones((4, 2)), np.tile([0, 1], (4, 1)))
        >>> page.rows(slice(1, 3)).n_rows
        2
        """
        idx = np.arange(self.n_rows)[index] if isinstance(index, slice) else np.asarray(index)
        ctx = None if self.context is None else _readonly(np.ascontiguousarray(self.context[idx]))
        x = (
            _readonly(np.broadcast_to(ctx[:, None, :], (len(idx), self.n_images, self.n_features)))
            if ctx is not None
            else _readonly(np.ascontiguousarray(self.x[idx]))
        )
        return PageFeatures(
            x=x,
            arms=_readonly(self.arms[idx].copy()),
            mask=_readonly(self.mask[idx].copy()),
            context=ctx,
            feature_names=self.feature_names,
            row_ids=tuple(self.row_ids[i] for i in idx) if self.row_ids else (),
            image_ids=tuple(self.image_ids[i] for i in idx) if self.image_ids else (),
        )

    def chosen(self, choice: ArrayLike) -> tuple[FloatArray, IntArray]:
        """Features and arm of the chosen image of every row (what a log keeps for learning).

        Parameters
        ----------
        choice : array_like (n_rows,) of int
            Padded column index of the shown image per row.

        Returns
        -------
        x : ndarray (n_rows, n_features)
        arms : ndarray (n_rows,)

        Examples
        --------
        >>> import numpy as np
        >>> page = PageFeatures.from_arrays(np.arange(8.0).reshape(2, 2, 2), [[5, 6], [7, 8]])
        >>> x, arms = page.chosen([1, 0])
        >>> x.tolist(), arms.tolist()
        ([[2.0, 3.0], [4.0, 5.0]], [6, 7])
        """
        c = np.asarray(choice)
        if c.shape != (self.n_rows,) or c.dtype == bool or not np.issubdtype(c.dtype, np.integer):
            raise _fail("choice", f"be {self.n_rows} integer column indices", f"{c.dtype} of shape {c.shape}")
        rows = np.arange(self.n_rows)
        if ((c < 0) | (c >= self.n_images)).any() or not self.mask[rows, np.clip(c, 0, self.n_images - 1)].all():
            bad = int(np.flatnonzero((c < 0) | (c >= self.n_images) | ~self.mask[rows, np.clip(c, 0, self.n_images - 1)])[0])
            raise _fail("choice", "name a real image of every row", f"column {int(c[bad])} in row {bad}")
        if self.context is not None:
            return self.context.copy(), self.arms[rows, c].copy()
        return self.x[rows, c].copy(), self.arms[rows, c].copy()


def _feature_label(names: Sequence[str] | None, j: int) -> str:
    if names is not None and j < len(names):
        return f"feature {j} ('{names[j]}')"
    return f"feature {j}"


@dataclass(frozen=True, eq=False)
class PageScores:
    """What a policy says about a page.

    Attributes
    ----------
    mean : ndarray (n_rows, n_images)
        Predicted probability of a quality play, clipped to [0, 1]; 0 on padding. This is the
        ``scores`` argument of :meth:`slate.page.PageProblem.from_arrays` (with
        ``candidates=mask``).
    adjusted : ndarray (n_rows, n_images)
        Exploration-adjusted score on the model's own scale: the upper confidence bound
        (LinUCB), a posterior draw (Thompson sampling), or the mean (greedy models); ``-inf`` on
        padding. The policy's choice is the per-row argmax of ``adjusted`` (ties split at random),
        except for epsilon-greedy and uniform, whose randomness is a coin, not a score.
    uncertainty : ndarray (n_rows, n_images)
        Standard deviation of the score under the model (0 where the model has none).
    choice : ndarray (n_rows,), int
        The image this call chose for each row (one draw of the policy).
    propensity : ndarray (n_rows, n_images) or None
        Probability that the policy chooses each image, given the model (0 on padding; rows sum
        to 1). None when not requested.
    propensity_se : ndarray (n_rows, n_images) or None
        Standard error of ``propensity``: 0 when exact, ``sqrt(p (1 - p) / n_draws)`` when
        estimated by Monte Carlo.
    n_draws : int
        Monte Carlo draws behind ``propensity`` (0 when exact).
    mask : ndarray (n_rows, n_images), bool
    policy : str
        Registry name of the policy.
    """

    mean: FloatArray
    adjusted: FloatArray
    uncertainty: FloatArray
    choice: IntArray
    propensity: FloatArray | None
    propensity_se: FloatArray | None
    n_draws: int
    mask: BoolArray
    policy: str

    @property
    def exact(self) -> bool:
        """Whether the propensities are exact (closed form) rather than Monte Carlo estimates."""
        return self.n_draws == 0

    def chosen_propensity(self) -> FloatArray:
        """Propensity of the image in ``choice`` for each row (what a decision log records)."""
        if self.propensity is None:
            raise InvalidProblemError("These scores were computed without propensities; score with propensities=True.")
        return self.propensity[np.arange(len(self.choice)), self.choice]
