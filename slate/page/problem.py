"""The page problem: one image per title for a whole homepage, chosen jointly.

Maximise::

    sum_t score[t, a_t]
      - diversity * sum_{(i, j, w) in pairs} w * sim_ij[a_i, a_j]
      - churn * #{t : previous_t is set and a_t != previous_t}

subject to ``#changes <= max_changes``, ``a_t = previous_t`` for locked titles and, optionally,
at most ``quota[g]`` titles showing an image tagged ``g``. ``sim`` is ``max(0, cosine)`` of the
images' visual embeddings (or a precomputed per-pair similarity).

Internally the problem is held as padded arrays: ``n_images`` is the largest candidate count;
a title with fewer candidates has ``candidates[t, k] = False`` for the padding.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from itertools import chain
from typing import TYPE_CHECKING, Any

import networkx as nx
import numpy as np
from numpy.typing import ArrayLike, NDArray

from slate.errors import InfeasibleProblemError, InvalidProblemError, UnknownOptionError
from slate.limits import check_limit
from slate.page.format import FORMAT, problem_arguments
from slate.page.layout import GridLayout, Layout, grid_positions
from slate.page.similarity import cosine_similarity_pairs, unit_vectors

if TYPE_CHECKING:
    from slate.page.request import Page

__all__ = ["ObjectiveParts", "PageProblem", "ProblemFields", "cosine_similarity_pairs", "unit_vectors"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]


_KEEP: Any = object()  # a with_* argument not given: keep the part


def _readonly(array: NDArray[Any]) -> NDArray[Any]:
    array = np.ascontiguousarray(array)
    array.flags.writeable = False
    return array


def _readonly_view(array: NDArray[Any]) -> NDArray[Any]:
    """A read-only C-contiguous view (the caller's array is left writeable)."""
    view = np.ascontiguousarray(array).view()
    view.flags.writeable = False
    return view


def _check_totals_finite(
    scores: FloatArray, pair_weights: FloatArray, diversity: float, churn: float, n_titles: int
) -> None:
    """Each value may be finite while a page's objective overflows (scores near 1e308 add up to
    inf); refuse such pages so no objective, bound or JSON output is ever infinite."""
    # a bound of all three totals without sums (maxima cannot overflow; Python floats go to inf
    # silently): finite on any page of sane numbers, so the exact totals run only near overflow
    n_pairs = len(pair_weights)
    quick = float(np.abs(scores).max()) * n_titles * 2.0 + churn * n_titles * 2.0
    if n_pairs:
        quick += diversity * float(pair_weights.max()) * n_pairs * 2.0
    if math.isfinite(quick):
        return
    with np.errstate(over="ignore", invalid="ignore"):
        totals = {
            "scores": float(np.abs(scores).max(axis=1).sum()) * 2.0,
            "weights.diversity": diversity * float(np.sum(pair_weights)) * 2.0,
            "weights.churn": churn * n_titles * 2.0,
        }
    for name, total in totals.items():
        if not np.isfinite(total):
            raise _fail(name, "be small enough that the page's objective is finite", "values that overflow")




# ---------------------------------------------------------------------- one check per rule
# Every constructor (from_arrays, from_padded, from_dict) and every with_* method runs the same
# check for a field, so a bad input gets the same message whichever way it comes in.
def _check_previous(previous: ArrayLike | None, cand: BoolArray, t_ids: Sequence[str]) -> IntArray:
    """``previous``: one int per title, -1 (none) or the index of a candidate image."""
    n_titles, n_images = cand.shape
    prev = np.full(n_titles, -1, np.int64) if previous is None else np.asarray(previous)
    if prev.shape != (n_titles,) or prev.dtype.kind not in "iu":  # an integer array
        raise _fail("previous", f"be an integer array of shape ({n_titles},)", f"{prev.dtype} of shape {prev.shape}")
    prev = prev.astype(np.int64, copy=False)
    has = np.flatnonzero(prev >= 0)
    ok = prev[has] < n_images
    ok[ok] = cand[has[ok], prev[has[ok]]]
    if not ok.all():
        t = int(has[~ok][0])
        raise _fail("previous", "name a candidate image of its title", f"index {prev[t]} for title '{t_ids[t]}'")
    if (prev < -1).any():
        t = int(np.flatnonzero(prev < -1)[0])
        raise _fail("previous", "be -1 (none) or a candidate index", f"{prev[t]} for title '{t_ids[t]}'")
    return prev


def _check_locked(locked: ArrayLike | None, prev: IntArray, t_ids: Sequence[str]) -> BoolArray:
    """``locked``: one bool per title, only titles with a previous image."""
    n_titles = len(prev)
    lock = np.zeros(n_titles, bool) if locked is None else np.asarray(locked)
    if lock.shape != (n_titles,):
        raise _fail("locked", f"have shape ({n_titles},)", f"shape {lock.shape}")
    lock = lock.astype(bool, copy=False)
    orphan = np.flatnonzero(lock & (prev < 0))
    if len(orphan):
        raise _fail("locked", "lock only titles with a previous image", f"title '{t_ids[orphan[0]]}' locked with none")
    return lock


def _check_max_changes(max_changes: Any) -> int | None:
    """``max_changes``: None or an integer >= 0."""
    if max_changes is None:
        return None
    if isinstance(max_changes, bool) or not isinstance(max_changes, (int, np.integer)) or max_changes < 0:
        raise _fail("max_changes", "be None or an integer >= 0", repr(max_changes))
    return int(max_changes)


def _check_weights(diversity: Any, churn: Any) -> None:
    """``diversity`` and ``churn``: finite numbers >= 0."""
    for wname, wval in (("diversity", diversity), ("churn", churn)):
        if not isinstance(wval, (int, float, np.floating, np.integer)) or not np.isfinite(wval) or wval < 0:
            raise _fail(f"weights.{wname}", "be a finite number >= 0", repr(wval))


def _check_candidates(candidates: ArrayLike, shape: tuple[int, ...], t_ids: Sequence[str]) -> BoolArray:
    """``candidates``: a bool mask of the shape of scores, at least one image per title."""
    cand = _check_candidate_shape(candidates, shape, copy=False)
    _check_has_candidates(cand.sum(axis=1), t_ids)
    return cand


def _check_scores(scores: ArrayLike) -> FloatArray:
    """``scores``: a non-empty 2-D float array (n_titles, n_images)."""
    raw = np.asarray(scores, dtype=np.float64)
    if raw.ndim != 2 or raw.shape[0] == 0 or raw.shape[1] == 0:
        raise _fail("scores", "be a non-empty 2-D array (n_titles, n_images)", f"shape {raw.shape}")
    return raw


def _check_candidate_shape(candidates: ArrayLike, shape: tuple[int, ...], *, copy: bool) -> BoolArray:
    """``candidates``: a bool mask of the shape of scores (a copy when ``copy``)."""
    cand = np.asarray(candidates)
    if cand.shape != shape:
        raise _fail("candidates", f"have the shape of scores {shape}", f"shape {cand.shape}")
    return cand.astype(bool, copy=copy)


def _check_has_candidates(n_cand: IntArray, t_ids: Sequence[str]) -> None:
    """``candidates``: at least one image per title."""
    if not n_cand.all():
        t = int(np.flatnonzero(n_cand == 0)[0])
        raise _fail("candidates", "give every title at least one image", f"no image for title '{t_ids[t]}'")


def _check_titles(t_ids: tuple[str, ...], n_cand: IntArray) -> None:
    """``title_ids``: one unique id per title; ``candidates``: at least one image per title."""
    n_titles = len(n_cand)
    if len(t_ids) != n_titles:
        raise _fail("title_ids", f"have {n_titles} entries (one per title)", f"{len(t_ids)}")
    _check_has_candidates(n_cand, t_ids)
    if len(set(t_ids)) != n_titles:
        raise _fail("title_ids", "be unique", f"'{_first_duplicate(t_ids)}' twice")


def _check_image_ids(i_ids: tuple[tuple[str, ...], ...], n_cand: IntArray, t_ids: tuple[str, ...]) -> None:
    """``image_ids``: one list per title, one id per candidate, unique across the page."""
    n_titles = len(n_cand)
    if len(i_ids) != n_titles:
        raise _fail("image_ids", f"have {n_titles} entries (one list per title)", f"{len(i_ids)}")
    counts = np.fromiter(map(len, i_ids), dtype=np.int64, count=n_titles)
    if (counts != n_cand).any():
        t = int(np.flatnonzero(counts != n_cand)[0])
        raise _fail(
            "image_ids", f"list one id per candidate of title '{t_ids[t]}' ({int(n_cand[t])})", f"{counts[t]}"
        )
    if len(set(chain.from_iterable(i_ids))) != int(counts.sum()):
        all_images = list(chain.from_iterable(i_ids))
        raise _fail("image_ids", "be unique across the page", f"'{_first_duplicate(all_images)}' twice")


def _check_finite_scores(raw: FloatArray, cand: BoolArray, t_ids: tuple[str, ...]) -> FloatArray:
    """``scores``: finite on every candidate; returns them with 0 on padding."""
    bad = cand & ~np.isfinite(raw)
    if bad.any():
        t, k = map(int, np.argwhere(bad)[0])
        raise _fail(
            "scores", "be finite for every candidate image", f"{raw[t, k]} for title '{t_ids[t]}' image index {k}"
        )
    return np.where(cand, raw, 0.0)


def _check_positions(
    rows: ArrayLike | None, cols: ArrayLike | None, n_titles: int, default_cols: int
) -> tuple[IntArray, IntArray]:
    """``rows``/``cols``: one grid position per title (default row-major in ``default_cols``)."""
    if rows is None or cols is None:
        return grid_positions(n_titles, default_cols)
    r = np.asarray(rows, dtype=np.int64)
    c = np.asarray(cols, dtype=np.int64)
    if r.shape != (n_titles,) or c.shape != (n_titles,):
        raise _fail("rows/cols", f"have shape ({n_titles},)", f"{r.shape} and {c.shape}")
    return r, c


def _check_pair_weights(pair_weights: ArrayLike, n_pairs: int) -> FloatArray:
    """``pair_weights``: one finite weight >= 0 per pair."""
    w = np.asarray(pair_weights, dtype=np.float64).reshape(-1)
    if w.shape != (n_pairs,):
        raise _fail("pair_weights", f"have one weight per pair ({n_pairs})", f"shape {w.shape}")
    return w


def _check_pair_weight_values(w: FloatArray) -> None:
    """``pairs.weight``: finite and >= 0 (one reduction each for the valid case)."""
    if len(w) and not (float(w.min()) >= 0 and float(w.max()) < np.inf):
        bad = w[~np.isfinite(w) | (w < 0)][0]
        raise _fail("pairs.weight", "be finite and >= 0", repr(float(bad)))


def _check_padded_pairs(pairs: ArrayLike, n_titles: int) -> IntArray:
    """``pairs``: an integer (n_pairs, 2) array of sorted unique ``(a, b)``, ``0 <= a < b < n_titles``."""
    pair_arr = np.asarray(pairs)
    if pair_arr.ndim != 2 or pair_arr.shape[1] != 2 or not (
        pair_arr.dtype.kind in "iu" or pair_arr.size == 0  # an integer dtype
    ):
        raise _fail("pairs", "be an integer array of shape (n_pairs, 2)", f"{pair_arr.dtype} of shape {pair_arr.shape}")
    pair_arr = pair_arr.astype(np.int64, copy=False)
    if len(pair_arr):
        a, b = pair_arr[:, 0], pair_arr[:, 1]
        key = a * n_titles + b
        if (  # one reduction per condition (b - a cannot overflow once 0 <= a and b < n_titles)
            a.min() < 0
            or b.max() >= n_titles
            or (b - a).min() <= 0
            or (len(pair_arr) > 1 and np.diff(key).min() <= 0)
        ):
            raise _fail(
                "pairs",
                f"hold sorted unique pairs (a, b) with 0 <= a < b < {n_titles}",
                "an unsorted, repeated, reversed or out-of-range pair",
            )
    return pair_arr


def _check_similarity(similarity: ArrayLike, pair_arr: IntArray, cand: BoolArray, n_cand: IntArray) -> FloatArray:
    """``similarity``: (n_pairs, n_images, n_images), finite and >= 0 on candidate image pairs;
    returns it with 0 on padding (the caller's array itself when there is no padding)."""
    n_pairs, n_images = len(pair_arr), cand.shape[1]
    sim = np.asarray(similarity, dtype=np.float64)
    if sim.shape != (n_pairs, n_images, n_images):
        raise _fail(
            "similarity",
            f"have shape (n_pairs, n_images, n_images) = ({n_pairs}, {n_images}, {n_images})",
            f"shape {sim.shape}",
        )
    mask = None
    if n_pairs and (n_cand < n_images).any():  # candidate image pairs (all pairs, one pass)
        mask = cand[pair_arr[:, 0]][:, :, None] & cand[pair_arr[:, 1]][:, None, :]
    if sim.size and not (sim.min() >= 0 and sim.max() < np.inf):  # garbage is allowed on padding only
        valid = np.ones(sim.shape, dtype=bool) if mask is None else mask
        if not np.isfinite(sim[valid]).all() or (sim[valid] < 0).any():
            raise _fail("similarity", "be finite and >= 0", "a negative or non-finite value")
    if mask is not None:  # zero the similarity of padding (and of removed images), in a copy
        sim = np.where(mask, sim, 0.0)
    return sim


def _check_embeddings(embeddings: ArrayLike, cand: BoolArray, t_ids: tuple[str, ...]) -> FloatArray:
    """``embeddings``: (n_titles, n_images, dim), finite on candidates; returns them with 0 on padding."""
    n_titles, n_images = cand.shape
    emb = np.asarray(embeddings, dtype=np.float64)
    if emb.ndim != 3 or emb.shape[:2] != (n_titles, n_images):
        raise _fail(
            "embeddings", f"have shape (n_titles, n_images, dim) = ({n_titles}, {n_images}, dim)", f"shape {emb.shape}"
        )
    bad = cand[:, :, None] & ~np.isfinite(emb)
    if bad.any():
        t, k, _ = map(int, np.argwhere(bad)[0])
        raise _fail("embeddings", "be finite", f"a non-finite value for title '{t_ids[t]}' image index {k}")
    return np.where(cand[:, :, None], emb, 0.0)


@dataclass(frozen=True)
class Interactions:
    """Which titles interact and how similar their images are: padded ``pairs`` (sorted unique
    ``a < b``), ``pair_weights`` and ``similarity`` (n_pairs, n_images, n_images); or a
    ``layout`` and ``embeddings`` (similarity ``max(0, cosine)``). Validated by
    :meth:`PageProblem.build`."""

    pairs: ArrayLike | None = None
    pair_weights: ArrayLike | None = None
    similarity: ArrayLike | None = None
    layout: Layout | None = None
    embeddings: ArrayLike | None = None

    @property
    def is_padded(self) -> bool:
        """Pairs and similarity given in the problem's layout (nothing to derive)."""
        return self.pairs is not None and self.similarity is not None and self.layout is None and self.embeddings is None


@dataclass(frozen=True)
class Stability:
    """Last session's images (``previous``, -1 for none), titles that must keep theirs
    (``locked``) and the budget on changed titles (``max_changes``). Validated by
    :meth:`PageProblem.build` and :meth:`PageProblem.with_stability`."""

    previous: ArrayLike | None = None
    locked: ArrayLike | None = None
    max_changes: int | None = None


@dataclass(frozen=True)
class Weights:
    """Weights of the diversity and churn penalties (finite, >= 0; validated where used)."""

    diversity: float = 0.0
    churn: float = 0.0


@dataclass(frozen=True)
class Quotas:
    """Style tags per candidate image and, per tag, at most how many titles may show one."""

    image_tags: Mapping[str, ArrayLike] | None = None
    tag_quotas: Mapping[str, int] | None = None


@dataclass(frozen=True, eq=False)
class ProblemFields:
    """Everything of a page problem but its scores and embeddings, as
    :meth:`PageProblem.from_arrays` and :meth:`PageProblem.from_padded` take it (each field is
    also a keyword of theirs). Not validated here: the constructors check every field.

    Attributes
    ----------
    title_ids, image_ids : optional
        Ids (``from_arrays`` defaults ``T000`` and ``T000-I0``...). Unique; ``image_ids`` lists
        one id per candidate of each title, in padded-column order.
    candidates : array_like (n_titles, n_images) of bool, optional
        Which entries are real images (``from_arrays`` default: all). At least one per title.
    similarity : array_like (n_pairs, n_images, n_images), optional
        Precomputed similarity aligned with the pairs; finite, ``>= 0`` on candidate pairs.
    layout : Layout, optional
        Derives pairs from grid positions; ``from_arrays`` default ``GridLayout`` with 8 columns
        when no ``pairs`` are given. Not taken by ``from_padded``.
    pairs, pair_weights : array_like, optional
        Explicit ``(n_pairs, 2)`` title-index pairs and their weights (finite, ``>= 0``).
    previous : array_like (n_titles,) of int, optional
        Last session's image index per title, ``-1`` when none (default: all ``-1``).
    locked : array_like (n_titles,) of bool, optional
        Titles that must keep their previous image.
    max_changes : int, optional
        Budget on the number of titles whose image changes (default: no budget).
    diversity, churn : float
        Non-negative weights.
    image_tags : mapping tag -> array_like (n_titles, n_images) of bool, optional
    tag_quotas : mapping tag -> int, optional
        At most this many titles may show an image with the tag. Not taken by ``from_padded``.
    rows, cols : array_like (n_titles,), optional
        Grid positions; default row-major with the layout's column count (8 without a grid).
    name : str
    """

    title_ids: Sequence[str] | None = None
    image_ids: Sequence[Sequence[str]] | None = None
    candidates: ArrayLike | None = None
    similarity: ArrayLike | None = None
    layout: Layout | None = None
    pairs: ArrayLike | None = None
    pair_weights: ArrayLike | None = None
    previous: ArrayLike | None = None
    locked: ArrayLike | None = None
    max_changes: int | None = None
    diversity: float = 0.0
    churn: float = 0.0
    image_tags: Mapping[str, ArrayLike] | None = None
    tag_quotas: Mapping[str, int] | None = None
    rows: ArrayLike | None = None
    cols: ArrayLike | None = None
    name: str = ""


_PADDED_REQUIRED = ("title_ids", "image_ids", "candidates", "pairs", "pair_weights", "similarity")
_PADDED_REFUSED = ("layout", "image_tags", "tag_quotas")


def _padded_fields(given: ProblemFields | None, overrides: dict[str, Any]) -> ProblemFields:
    """The fields of :meth:`PageProblem.from_padded`: the required ones given, none it refuses."""
    who = "PageProblem.from_padded"
    f = _problem_fields(given, overrides, who)
    missing = [k for k in _PADDED_REQUIRED if getattr(f, k) is None]
    if missing:
        raise TypeError(f"{who}() missing required keyword argument '{missing[0]}'")
    refused = [k for k in _PADDED_REFUSED if getattr(f, k) is not None]
    if refused:
        raise UnknownOptionError(
            f"{who} does not take '{refused[0]}' (no layout or quotas to derive); use PageProblem.from_arrays."
        )
    return f


def _problem_fields(given: ProblemFields | None, overrides: dict[str, Any], who: str) -> ProblemFields:
    """``given`` (or the defaults) with keyword ``overrides``; an unknown keyword raises
    :class:`~slate.errors.UnknownOptionError` naming it and ``who``."""
    if given is not None and not isinstance(given, ProblemFields):
        raise UnknownOptionError(
            f"The 'fields' parameter of {who} must be a ProblemFields; got {type(given).__name__} instead."
        )
    known = ProblemFields.__dataclass_fields__
    unknown = [k for k in overrides if k not in known]
    if unknown:
        raise UnknownOptionError(f"Unknown option '{unknown[0]}' for {who}; its options are {', '.join(known)}.")
    if given is None:
        return ProblemFields(**overrides)
    return dataclasses.replace(given, **overrides) if overrides else given


@dataclass(frozen=True)
class ObjectiveParts:
    """The objective of one assignment and its parts.

    ``objective = relevance - diversity_penalty - churn_penalty``; the penalties are already
    multiplied by their weights.
    """

    objective: float
    relevance: float
    diversity_penalty: float
    churn_penalty: float
    n_changes: int


def _fail(field_name: str, must: str, got: object) -> InvalidProblemError:
    return InvalidProblemError(
        f"The '{field_name}' field of the page problem must {must}; got {got} instead."
    )


@dataclass(frozen=True, eq=False)
class PageProblem:
    """One member's homepage: titles, candidate images and their scores, layout, stability terms.

    Build it with :meth:`from_arrays` or :meth:`from_dict` / :func:`slate.page.read_problem`;
    both validate. All arrays are read-only.

    Attributes
    ----------
    title_ids : tuple of str, length n_titles
    image_ids : tuple of tuple of str
        Candidate image ids per title (ragged).
    scores : ndarray (n_titles, n_images)
        Bandit scores; 0 on padding.
    candidates : ndarray (n_titles, n_images), bool
    pairs : ndarray (n_pairs, 2), int
        Interacting title pairs, ``pairs[:, 0] < pairs[:, 1]``, each unordered pair once.
    pair_weights : ndarray (n_pairs,)
    similarity : ndarray (n_pairs, n_images, n_images)
        ``similarity[p, k, l]``: similarity of image ``k`` of title ``pairs[p, 0]`` and image ``l``
        of title ``pairs[p, 1]`` (0 on padding).
    previous : ndarray (n_titles,), int
        Index of last session's image, ``-1`` for a title new to the member.
    locked : ndarray (n_titles,), bool
    max_changes : int or None
        Budget on changed titles; None for no budget.
    diversity, churn : float
        Weights of the two penalties.
    tag_names : tuple of str
        Style tags with a quota.
    image_tags : ndarray (n_tags, n_titles, n_images), bool
    tag_max : ndarray (n_tags,), int
        At most ``tag_max[g]`` titles may show an image tagged ``tag_names[g]``.
    rows, cols : ndarray (n_titles,), int
        Grid positions (row-major defaults when none are given).
    embeddings : ndarray (n_titles, n_images, dim) or None
    name : str
    """

    title_ids: tuple[str, ...]
    image_ids: tuple[tuple[str, ...], ...]
    scores: FloatArray
    candidates: BoolArray
    pairs: IntArray
    pair_weights: FloatArray
    similarity: FloatArray
    previous: IntArray
    locked: BoolArray
    max_changes: int | None
    diversity: float
    churn: float
    tag_names: tuple[str, ...]
    image_tags: BoolArray
    tag_max: IntArray
    rows: IntArray
    cols: IntArray
    embeddings: FloatArray | None = None
    name: str = ""
    _ids: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_arrays(
        cls,
        scores: ArrayLike,
        embeddings: ArrayLike | None = None,
        *,
        fields: ProblemFields | None = None,
        **overrides: Any,
    ) -> PageProblem:
        """Build and validate a page problem from arrays.

        Parameters
        ----------
        scores : array_like (n_titles, n_images)
            Predicted probability of a quality play for each candidate image. Entries outside
            ``candidates`` are ignored (they may be NaN).
        embeddings : array_like (n_titles, n_images, dim), optional
            Visual embeddings; similarity is ``max(0, cosine)``. Give this or ``similarity``
            (or neither, for a page without diversity terms).
        fields : ProblemFields, optional
            Candidates, ids, pairs or layout, similarity, stability terms, weights, quotas,
            positions and name (see :class:`ProblemFields` for each).
        **overrides
            Fields of :class:`ProblemFields` as keywords (``layout=``, ``diversity=``, ...),
            replacing those of ``fields``; the usual way to call this.

        Raises
        ------
        InvalidProblemError
            A field is malformed; the message names it and what was received.
        InfeasibleProblemError
            Locks, budget and quotas cannot all hold.
        UnknownOptionError
            A keyword that is not a field of :class:`ProblemFields`.

        Examples
        --------
        >>> import numpy as np
        >>> from slate.page import PageProblem, GridLayout
        >>> rng = np.random.default_rng(0)
        >>> problem = PageProblem.from_arrays(
        ...     rng.uniform(0, 0.1, (6, 3)), rng.normal(size=(6, 3, 4)),
        ...     layout=GridLayout(rows=2, cols=3), diversity=0.05)
        >>> problem.n_titles, problem.n_images, problem.n_pairs
        (6, 3, 9)
        """
        f = _problem_fields(fields, overrides, "PageProblem.from_arrays")
        raw = _check_scores(scores)
        n_titles, n_images = raw.shape
        check_limit("max_titles", n_titles, "titles in one page")
        check_limit("max_page_cells", n_titles * n_images, "title x image cells in one page")
        cand = (
            np.ones(raw.shape, dtype=bool) if f.candidates is None
            else _check_candidate_shape(f.candidates, raw.shape, copy=True)
        )
        n_cand = cand.sum(axis=1)
        t_ids = tuple(f"T{t:03d}" for t in range(n_titles)) if f.title_ids is None else tuple(map(str, f.title_ids))
        _check_titles(t_ids, n_cand)
        if f.image_ids is None:
            i_ids = tuple(tuple(f"{t_ids[t]}-I{k}" for k in np.flatnonzero(cand[t])) for t in range(n_titles))
        else:
            i_ids = tuple(tuple(map(str, ids)) for ids in f.image_ids)
        _check_image_ids(i_ids, n_cand, t_ids)
        score_arr = _check_finite_scores(raw, cand, t_ids)

        default_cols = f.layout.cols if isinstance(f.layout, GridLayout) else 8
        r, c = _check_positions(f.rows, f.cols, n_titles, default_cols)
        pair_arr, w = _derived_pairs(f.layout, f.pairs, f.pair_weights, r, c, default_cols, t_ids)
        emb_arr, sim = _derived_similarity(embeddings, f.similarity, pair_arr, cand, n_cand, t_ids)

        prev = _check_previous(f.previous, cand, t_ids)
        lock = _check_locked(f.locked, prev, t_ids)
        max_changes = _check_max_changes(f.max_changes)
        _check_weights(f.diversity, f.churn)
        _check_totals_finite(score_arr, w, float(f.diversity), float(f.churn), n_titles)
        tag_names, tags, tag_max = _build_quotas(f.image_tags, f.tag_quotas, cand, n_titles, n_images)

        problem = cls(
            title_ids=t_ids,
            image_ids=i_ids,
            scores=_readonly(score_arr),
            candidates=_readonly(cand),
            pairs=_readonly(pair_arr),
            pair_weights=_readonly(w),
            similarity=_readonly(sim),
            previous=_readonly(prev),
            locked=_readonly(lock),
            max_changes=max_changes,
            diversity=float(f.diversity),
            churn=float(f.churn),
            tag_names=tag_names,
            image_tags=_readonly(tags),
            tag_max=_readonly(tag_max),
            rows=_readonly(r),
            cols=_readonly(c),
            embeddings=None if emb_arr is None else _readonly(emb_arr),
            name=f.name,
        )
        problem._check_feasibility()
        return problem

    @classmethod
    def build(
        cls,
        page: Page,
        scores: ArrayLike,
        *,
        interactions: Interactions | None = None,
        stability: Stability | None = None,
        weights: Weights | None = None,
        quotas: Quotas | None = None,
        name: str = "",
    ) -> PageProblem:
        """The page problem of a :class:`~slate.page.Page` (titles, image ids, candidates and
        positions come from it) plus its parts, each validated by the one check of its rule.

        Parameters
        ----------
        page : Page
        scores : array_like (page.n_titles, page.n_images)
        interactions : Interactions, optional
            Padded ``pairs`` / ``pair_weights`` / ``similarity`` (the vectorised path of
            :meth:`from_padded`), or a ``layout`` (default: a grid over the page's positions) and
            ``embeddings``, as in :meth:`from_arrays`. Default: a grid without similarity.
        stability : Stability, optional
            ``previous``, ``locked`` (the problem's locks: titles that must keep their previous
            image, not ``page.locked``, the member's engagement that stability rules turn into
            locks) and ``max_changes``.
        weights : Weights, optional
            ``diversity`` and ``churn`` (default 0).
        quotas : Quotas, optional
        name : str

        Examples
        --------
        >>> import numpy as np
        >>> from slate.page import Page, PageRequest, Stability
        >>> page = Page.of(PageRequest(member_id=1, session_id=1, titles=[
        ...     {"title_id": "A", "image_ids": ["a1", "a2"], "row": 0, "col": 0},
        ...     {"title_id": "B", "image_ids": ["b1"], "row": 0, "col": 1}]))
        >>> problem = PageProblem.build(page, [[0.1, 0.2], [0.3, np.nan]], stability=Stability(previous=[0, -1]))
        >>> problem.title_ids, problem.image_ids, problem.n_pairs, problem.previous.tolist()
        (('A', 'B'), (('a1', 'a2'), ('b1',)), 1, [0, -1])
        """
        inter = interactions if interactions is not None else Interactions()
        stab = stability if stability is not None else Stability()
        w = weights if weights is not None else Weights()
        common: dict[str, Any] = {
            "title_ids": page.title_ids, "image_ids": page.image_ids, "candidates": page.candidates,
            "previous": stab.previous, "locked": stab.locked, "max_changes": stab.max_changes,
            "diversity": w.diversity, "churn": w.churn, "rows": page.rows, "cols": page.cols, "name": name,
        }
        if inter.is_padded and quotas is None:
            n_pairs = len(np.asarray(inter.pairs).reshape(-1, 2))
            pair_weights = np.ones(n_pairs) if inter.pair_weights is None else inter.pair_weights
            return cls.from_padded(scores=scores, pairs=inter.pairs, pair_weights=pair_weights,
                                   similarity=inter.similarity, **common)
        layout = inter.layout
        if layout is None and inter.pairs is None:
            layout = GridLayout(rows=int(page.rows.max()) + 1, cols=int(page.cols.max()) + 1)
        q = quotas if quotas is not None else Quotas()
        return cls.from_arrays(scores, inter.embeddings, similarity=inter.similarity, layout=layout,
                               pairs=inter.pairs, pair_weights=inter.pair_weights, image_tags=q.image_tags,
                               tag_quotas=q.tag_quotas, **common)

    @classmethod
    def from_padded(
        cls,
        *,
        scores: ArrayLike,
        fields: ProblemFields | None = None,
        **overrides: Any,
    ) -> PageProblem:
        """Build a page problem from arrays already in its internal layout, with vectorised checks.

        The constructor for callers that build a problem per request (e.g.
        :func:`slate.serve.compose`): no layout, embeddings or quotas to derive, every check a
        few array operations. It gives the same problem as :meth:`from_arrays` with ``pairs``,
        ``pair_weights`` and ``similarity`` (entries outside ``candidates`` are set to 0 in
        ``scores`` and ``similarity``), but expects what :meth:`from_arrays` would canonicalise:
        pairs ``(a, b)`` with ``a < b``, sorted and unique. Arrays that need no change are not
        copied: the problem holds read-only views of them, so the caller must not modify them
        afterwards.

        Parameters
        ----------
        scores : array_like (n_titles, n_images)
            Finite on candidates (other entries are ignored and may be NaN).
        fields : ProblemFields, optional
        **overrides
            Fields of :class:`ProblemFields` as keywords, replacing those of ``fields``.
            Required: ``title_ids``, ``image_ids`` (one id per candidate, in padded-column
            order), ``candidates`` (at least one per title), ``pairs`` (``0 <= a < b <
            n_titles``, in lexicographic order, each pair once), ``pair_weights`` and
            ``similarity``. Optional: ``previous``, ``locked``, ``max_changes``, ``diversity``,
            ``churn``, ``rows``/``cols`` (default: row-major in rows of 8) and ``name``.
            ``layout``, ``image_tags`` and ``tag_quotas`` are not taken (use :meth:`from_arrays`).

        Raises
        ------
        InvalidProblemError
            A field is malformed; the message names it and what was received.
        UnknownOptionError
            A keyword that is not a field of :class:`ProblemFields`, or one it does not take.
        TypeError
            A required field is missing.

        Examples
        --------
        >>> import numpy as np
        >>> p = PageProblem.from_padded(
        ...     title_ids=["A", "B"], image_ids=[["A-1", "A-2"], ["B-1"]],
        ...     scores=np.array([[0.1, 0.3], [0.2, np.nan]]),
        ...     candidates=np.array([[True, True], [True, False]]),
        ...     pairs=np.array([[0, 1]]), pair_weights=np.array([1.0]),
        ...     similarity=np.full((1, 2, 2), 0.5), previous=np.array([0, 0]), churn=0.01)
        >>> p.scores.tolist(), p.similarity[0].tolist()
        ([[0.1, 0.3], [0.2, 0.0]], [[0.5, 0.0], [0.5, 0.0]])
        >>> PageProblem.from_padded(
        ...     title_ids=["A"], image_ids=[["A-1"]], scores=[[0.1]], candidates=[[True]],
        ...     pairs=np.zeros((0, 2), int), pair_weights=[], similarity=np.zeros((0, 1, 1)),
        ...     previous=[3])
        Traceback (most recent call last):
        ...
        slate.errors.InvalidProblemError: The 'previous' field of the page problem must name a candidate image of its title; got index 3 for title 'A' instead.
        """
        f = _padded_fields(fields, overrides)
        raw = _check_scores(scores)
        n_titles, n_images = raw.shape
        check_limit("max_titles", n_titles, "titles in one page")
        check_limit("max_page_cells", n_titles * n_images, "title x image cells in one page")
        cand = _check_candidate_shape(f.candidates, raw.shape, copy=False)  # type: ignore[arg-type]
        n_cand = cand.sum(axis=1)
        t_ids = tuple(f.title_ids)  # type: ignore[arg-type]
        _check_titles(t_ids, n_cand)
        i_ids = tuple(map(tuple, f.image_ids))  # type: ignore[arg-type]
        _check_image_ids(i_ids, n_cand, t_ids)
        score_arr = _check_finite_scores(raw, cand, t_ids)

        pair_arr = _check_padded_pairs(f.pairs, n_titles)  # type: ignore[arg-type]
        w = _check_pair_weights(f.pair_weights, len(pair_arr))  # type: ignore[arg-type]
        _check_pair_weight_values(w)
        sim = _check_similarity(f.similarity, pair_arr, cand, n_cand)  # type: ignore[arg-type]

        prev = _check_previous(f.previous, cand, t_ids)
        lock = _check_locked(f.locked, prev, t_ids)
        max_changes = _check_max_changes(f.max_changes)
        _check_weights(f.diversity, f.churn)
        _check_totals_finite(score_arr, w, float(f.diversity), float(f.churn), n_titles)
        r, c = _check_positions(f.rows, f.cols, n_titles, 8)
        return cls(
            title_ids=t_ids,
            image_ids=i_ids,
            scores=_readonly_view(score_arr),
            candidates=_readonly_view(cand),
            pairs=_readonly_view(pair_arr),
            pair_weights=_readonly_view(w),
            similarity=_readonly_view(sim),
            previous=_readonly_view(prev),
            locked=_readonly_view(lock),
            max_changes=max_changes,
            diversity=float(f.diversity),
            churn=float(f.churn),
            tag_names=(),
            image_tags=_readonly(np.zeros((0, n_titles, n_images), dtype=bool)),
            tag_max=_readonly(np.zeros(0, dtype=np.int64)),
            rows=_readonly_view(r),
            cols=_readonly_view(c),
            embeddings=None,
            name=f.name,
        )

    # ------------------------------------------------------------------ sizes
    @property
    def n_titles(self) -> int:
        """Number of titles on the page."""
        return len(self.title_ids)

    @property
    def n_images(self) -> int:
        """Largest number of candidate images of a title (the padded width)."""
        return int(self.scores.shape[1])

    @property
    def n_pairs(self) -> int:
        """Number of interacting title pairs."""
        return len(self.pairs)

    @property
    def has_quotas(self) -> bool:
        """Whether any style quota constrains the page."""
        return len(self.tag_names) > 0

    @property
    def budget_binding_possible(self) -> bool:
        """False when the budget can never bind (no budget, or fewer changeable titles than it)."""
        if self.max_changes is None:
            return False
        return int(((self.previous >= 0) & ~self.locked).sum()) > self.max_changes

    # ------------------------------------------------------------------ derived arrays
    @cached_property
    def changes(self) -> BoolArray:
        """``changes[t, k]``: choosing image ``k`` for title ``t`` counts as a change."""
        k = np.arange(self.n_images)
        out = (self.previous[:, None] >= 0) & (k[None, :] != self.previous[:, None]) & self.candidates
        return _readonly(out)

    @cached_property
    def allowed(self) -> BoolArray:
        """Candidates that the locks allow."""
        out = self.candidates.copy()
        lt = np.flatnonzero(self.locked)
        out[lt] = False
        out[lt, self.previous[lt]] = True
        return _readonly(out)

    @cached_property
    def unary(self) -> FloatArray:
        """Per-image value: score minus the churn penalty of a change; ``-inf`` where not allowed."""
        u = self.scores - self.churn * self.changes
        return _readonly(np.where(self.allowed, u, -np.inf))

    @cached_property
    def pair_cost(self) -> FloatArray:
        """``diversity * weight * similarity``, shape (n_pairs, n_images, n_images)."""
        return _readonly(self.diversity * self.pair_weights[:, None, None] * self.similarity)

    @cached_property
    def graph(self) -> nx.Graph:
        """The interaction graph: nodes are title indices, edges carry ``weight`` and ``pair``."""
        g = nx.Graph()
        g.add_nodes_from(range(self.n_titles))
        g.add_edges_from(
            (int(a), int(b), {"weight": float(w), "pair": p})
            for p, ((a, b), w) in enumerate(zip(self.pairs, self.pair_weights, strict=True))
        )
        return g

    @cached_property
    def components(self) -> tuple[IntArray, ...]:
        """Independent groups of titles (connected components of the graph with nonzero costs)."""
        g = nx.Graph()
        g.add_nodes_from(range(self.n_titles))
        active = self.pair_cost.reshape(self.n_pairs, -1).max(axis=1) > 0 if self.n_pairs else []
        g.add_edges_from((int(a), int(b)) for (a, b), on in zip(self.pairs, active, strict=True) if on)
        comps = sorted((sorted(c) for c in nx.connected_components(g)), key=lambda c: c[0])
        return tuple(_readonly(np.asarray(c, dtype=np.int64)) for c in comps)

    @cached_property
    def is_chain(self) -> bool:
        """True when every component is a path (each title interacts with at most two others)."""
        g = self.graph
        return all(d <= 2 for _, d in g.degree()) and nx.is_forest(g)

    @cached_property
    def is_forest(self) -> bool:
        """True when the interaction graph has no cycle (tree-structured page)."""
        return bool(nx.is_forest(self.graph))

    # ------------------------------------------------------------------ ids
    def image_index(self, t: int, image_id: str) -> int:
        """Padded column index of ``image_id`` among title ``t``'s candidates."""
        lookup = self._ids.get("image_index")
        if lookup is None:
            lookup = {}
            for tt in range(self.n_titles):
                cols = np.flatnonzero(self.candidates[tt])
                for k, iid in zip(cols, self.image_ids[tt], strict=True):
                    lookup[(tt, iid)] = int(k)
            self._ids["image_index"] = lookup
        try:
            return int(lookup[(t, image_id)])
        except KeyError:
            raise InvalidProblemError(
                f"Image '{image_id}' is not a candidate of title '{self.title_ids[t]}'."
            ) from None

    @cached_property
    def image_id_table(self) -> NDArray[np.object_]:
        """``(n_titles, n_images)`` object array of image ids (``None`` on padding)."""
        table = np.full((self.n_titles, self.n_images), None, dtype=object)
        for t in range(self.n_titles):
            table[t, np.flatnonzero(self.candidates[t])] = self.image_ids[t]
        table.flags.writeable = False
        return table

    def image_id(self, t: int, k: int) -> str:
        """Id of the image in padded column ``k`` of title ``t``."""
        if not (0 <= k < self.n_images) or not self.candidates[t, k]:
            raise InvalidProblemError(f"Column {k} is not a candidate of title '{self.title_ids[t]}'.")
        return str(self.image_id_table[t, k])

    def assignment_to_ids(self, assignment: ArrayLike) -> dict[str, str]:
        """``{title id: image id}`` for an assignment of padded column indices."""
        a = self._as_assignment(assignment)
        return dict(
            zip(self.title_ids, self.image_id_table[np.arange(self.n_titles), a].tolist(), strict=True)
        )

    def assignment_from_ids(self, mapping: Mapping[str, str]) -> IntArray:
        """Padded column indices from ``{title id: image id}`` (every title must be present)."""
        missing = [t for t in self.title_ids if t not in mapping]
        if missing:
            raise InvalidProblemError(f"The assignment has no image for title '{missing[0]}'.")
        extra = set(mapping) - set(self.title_ids)
        if extra:
            raise InvalidProblemError(f"The assignment names an unknown title '{sorted(extra)[0]}'.")
        return np.array(
            [self.image_index(t, mapping[tid]) for t, tid in enumerate(self.title_ids)], dtype=np.int64
        )

    # ------------------------------------------------------------------ objective
    def evaluate(self, assignment: ArrayLike) -> ObjectiveParts:
        """Objective and its parts for an assignment (padded column index per title).

        Examples
        --------
        >>> import numpy as np
        >>> p = PageProblem.from_arrays(np.array([[0.3, 0.1], [0.2, 0.4]]),
        ...                             previous=np.array([0, 0]), churn=0.05)
        >>> parts = p.evaluate([0, 1])
        >>> round(parts.objective, 3), parts.n_changes
        (0.65, 1)
        """
        a = self._as_assignment(assignment)
        t = np.arange(self.n_titles)
        relevance = float(self.scores[t, a].sum())
        if self.n_pairs:
            p = np.arange(self.n_pairs)
            div = float(self.pair_cost[p, a[self.pairs[:, 0]], a[self.pairs[:, 1]]].sum())
        else:
            div = 0.0
        n_changes = int(self.changes[t, a].sum())
        churn = self.churn * n_changes
        return ObjectiveParts(relevance - div - churn, relevance, div, churn, n_changes)

    def violations(self, assignment: ArrayLike) -> list[str]:
        """Every constraint the assignment breaks, in words (empty when it is a valid page)."""
        a = np.asarray(assignment)
        out: list[str] = []
        if a.shape != (self.n_titles,) or not np.issubdtype(a.dtype, np.integer):
            return [f"assignment must be {self.n_titles} integers; got {a.dtype} of shape {a.shape}"]
        bad = (a < 0) | (a >= self.n_images)
        if bad.any():
            return [f"title '{self.title_ids[int(np.flatnonzero(bad)[0])]}' has no valid image index"]
        t = np.arange(self.n_titles)
        not_cand = ~self.candidates[t, a]
        if not_cand.any():
            out.append(
                f"title '{self.title_ids[int(np.flatnonzero(not_cand)[0])]}' shows a non-candidate image"
            )
        moved = self.locked & (a != self.previous)
        if moved.any():
            out.append(f"locked title '{self.title_ids[int(np.flatnonzero(moved)[0])]}' changed its image")
        n_changes = int((self.changes[t, a] & ~not_cand).sum())
        if self.max_changes is not None and n_changes > self.max_changes:
            out.append(f"{n_changes} changes exceed the budget of {self.max_changes}")
        for g, tag in enumerate(self.tag_names):
            count = int(self.image_tags[g, t, a].sum())
            if count > self.tag_max[g]:
                out.append(f"{count} titles show '{tag}' images, above the quota of {self.tag_max[g]}")
        return out

    def is_feasible(self, assignment: ArrayLike) -> bool:
        """Whether the assignment is a valid page (see :meth:`violations`)."""
        return not self.violations(assignment)

    def _as_assignment(self, assignment: ArrayLike) -> IntArray:
        a = np.asarray(assignment)
        if a.shape != (self.n_titles,) or not np.issubdtype(a.dtype, np.integer):
            raise InvalidProblemError(
                f"The assignment must be {self.n_titles} integer image indices; got {a.dtype} of shape {a.shape}."
            )
        if ((a < 0) | (a >= self.n_images)).any() or not self.candidates[np.arange(self.n_titles), a].all():
            raise InvalidProblemError("The assignment names an image that is not a candidate of its title.")
        return a.astype(np.int64)

    # ------------------------------------------------------------------ swapping parts
    def with_weights(self, *, diversity: float | None = None, churn: float | None = None) -> PageProblem:
        """This problem with other penalty weights (validated; nothing else is checked again).

        Examples
        --------
        >>> import numpy as np
        >>> p = PageProblem.from_arrays(np.ones((2, 2)), np.ones((2, 2, 3)), diversity=0.1)
        >>> q = p.with_weights(diversity=0.5)
        >>> q.diversity, q.churn, p.diversity
        (0.5, 0.0, 0.1)
        >>> p.with_weights(churn=-1.0)
        Traceback (most recent call last):
        ...
        slate.errors.InvalidProblemError: The 'weights.churn' field of the page problem must be a finite number >= 0; got -1.0 instead.
        """
        div = self.diversity if diversity is None else diversity
        ch = self.churn if churn is None else churn
        _check_weights(div, ch)
        _check_totals_finite(self.scores, self.pair_weights, float(div), float(ch), self.n_titles)
        return dataclasses.replace(self, diversity=float(div), churn=float(ch), _ids={})

    def with_stability(
        self,
        *,
        previous: ArrayLike | object | None = _KEEP,
        locked: ArrayLike | object | None = _KEEP,
        max_changes: int | object | None = _KEEP,
        candidates: ArrayLike | object = _KEEP,
    ) -> PageProblem:
        """This problem with other stability parts, each validated as the constructors do.

        Parameters
        ----------
        previous : array_like (n_titles,) of int, or None (no previous images), optional
        locked : array_like (n_titles,) of bool, or None (nothing locked), optional
        max_changes : int or None (no budget), optional
        candidates : array_like (n_titles, n_images) of bool, optional
            Restrict the images the optimiser may choose (a subset of the problem's candidates,
            e.g. a :class:`slate.stability.StabilityPlan`'s ``solver_candidates``); the image ids
            stay those of the full candidate lists.

        Parts not given are kept. ``previous`` and ``locked`` are checked against the new
        candidates and each other; then feasibility with quotas, as at construction.

        Examples
        --------
        >>> import numpy as np
        >>> p = PageProblem.from_arrays(np.ones((2, 2)))
        >>> p.with_stability(previous=[1, -1], locked=[True, False], max_changes=1).locked.tolist()
        [True, False]
        >>> p.with_stability(locked=[False, True])
        Traceback (most recent call last):
        ...
        slate.errors.InvalidProblemError: The 'locked' field of the page problem must lock only titles with a previous image; got title 'T001' locked with none instead.
        """
        cand = self.candidates
        if candidates is not _KEEP:
            cand = _check_candidates(candidates, self.scores.shape, self.title_ids)  # type: ignore[arg-type]
            if (cand & ~self.candidates).any():
                raise _fail("candidates", "be a subset of the problem's candidates", "an image that is not one")
        prev = self.previous if previous is _KEEP else previous
        prev = _check_previous(prev, cand, self.title_ids)  # type: ignore[arg-type]
        lock = _check_locked(self.locked if locked is _KEEP else locked, prev, self.title_ids)  # type: ignore[arg-type]
        budget = _check_max_changes(self.max_changes if max_changes is _KEEP else max_changes)
        problem = dataclasses.replace(
            self,
            candidates=_readonly_view(cand),
            previous=_readonly_view(prev),
            locked=_readonly_view(lock),
            max_changes=budget,
            _ids={},
        )
        problem._check_feasibility()
        return problem

    # ------------------------------------------------------------------ feasibility
    def _check_feasibility(self) -> None:
        """Fail early, naming the constraint, when locks, budget and quotas cannot all hold.

        Locks and the budget are always compatible (keeping every previous image is a valid
        choice). Quotas are checked with counting arguments that are exact for single-tag
        quotas; the exact solver reports anything subtler as status ``infeasible``.
        """
        if not self.has_quotas:
            return
        t = np.arange(self.n_titles)
        for g, tag in enumerate(self.tag_names):
            tagged = self.image_tags[g] & self.allowed
            untagged_option = (self.allowed & ~self.image_tags[g]).any(axis=1)
            forced = ~untagged_option  # every allowed image carries the tag
            n_forced = int(forced.sum())
            n_locked = int((forced & self.locked).sum())
            if n_forced > self.tag_max[g]:
                raise InfeasibleProblemError(
                    f"The quota for tag '{tag}' (at most {self.tag_max[g]} titles) cannot hold: "
                    f"{n_forced} titles can only show '{tag}' images ({n_locked} of them locked)."
                )
            if self.max_changes is not None:
                prev_tagged = (self.previous >= 0) & tagged[t, np.maximum(self.previous, 0)] & ~forced
                # titles keeping a tagged previous image unless the budget pays to change them
                # (an escape to an untagged image that is itself the previous image is impossible)
                need = n_forced + max(0, int(prev_tagged.sum()) - self.max_changes)
                if need > self.tag_max[g]:
                    raise InfeasibleProblemError(
                        f"The budget of {self.max_changes} changes and the quota for tag '{tag}' "
                        f"(at most {self.tag_max[g]} titles) cannot both hold: {int(prev_tagged.sum())} "
                        f"titles showed a '{tag}' image last session and {n_forced} can only show one."
                    )

    # ------------------------------------------------------------------ interchange
    def to_dict(self) -> dict[str, Any]:
        """The ``slate.page-problem/1`` representation (see :mod:`slate.page.io`)."""
        titles = []
        for t, tid in enumerate(self.title_ids):
            images = []
            for k in np.flatnonzero(self.candidates[t]):
                image: dict[str, Any] = {"id": self.image_id(t, int(k)), "score": float(self.scores[t, k])}
                if self.embeddings is not None:
                    image["embedding"] = self.embeddings[t, k].tolist()
                tag_list = [g for gi, g in enumerate(self.tag_names) if self.image_tags[gi, t, k]]
                if tag_list:
                    image["tags"] = tag_list
                images.append(image)
            prev = int(self.previous[t])
            titles.append(
                {
                    "id": tid,
                    "row": int(self.rows[t]),
                    "col": int(self.cols[t]),
                    "previous": self.image_id(t, prev) if prev >= 0 else None,
                    "locked": bool(self.locked[t]),
                    "images": images,
                }
            )
        if self.embeddings is None and self.n_pairs and self.similarity.any():
            raise InvalidProblemError(
                "A page problem built from a precomputed similarity cannot be written as slate.page-problem/1, "
                "which stores embeddings."
            )
        out: dict[str, Any] = {
            "format": FORMAT,
            "name": self.name,
            "layout": {"rows": int(self.rows.max()) + 1, "cols": int(self.cols.max()) + 1},
            "weights": {"diversity": self.diversity, "churn": self.churn},
            "max_changes": self.max_changes,
            "titles": titles,
            "pairs": [
                {"a": self.title_ids[a], "b": self.title_ids[b], "weight": float(w)}
                for (a, b), w in zip(self.pairs.tolist(), self.pair_weights.tolist(), strict=True)
            ],
        }
        if self.has_quotas:
            out["quotas"] = {g: int(m) for g, m in zip(self.tag_names, self.tag_max.tolist(), strict=True)}
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PageProblem:
        """Build from a ``slate.page-problem/1`` mapping (see :mod:`slate.page.io`)."""
        return cls.from_arrays(**problem_arguments(data))


def _first_duplicate(items: Sequence[str]) -> str | None:
    seen: set[str] = set()
    for item in items:
        if item in seen:
            return item
        seen.add(item)
    return None


def _derived_pairs(
    layout: Layout | None,
    pairs: ArrayLike | None,
    pair_weights: ArrayLike | None,
    rows: IntArray,
    cols: IntArray,
    default_cols: int,
    t_ids: tuple[str, ...],
) -> tuple[IntArray, FloatArray]:
    """The canonical pairs and weights of ``from_arrays``: explicit ``pairs`` (in any order and
    orientation) or the layout's (default: a grid over the positions)."""
    n_titles = len(t_ids)
    if pairs is not None:
        if layout is not None:
            raise InvalidProblemError("Give either 'layout' or 'pairs' to the page problem, not both.")
        pair_arr = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        w = np.ones(len(pair_arr)) if pair_weights is None else np.asarray(pair_weights, dtype=np.float64)
    else:
        lay = layout if layout is not None else GridLayout(rows=int(rows.max()) + 1, cols=default_cols)
        pair_arr, w = lay.pairs(rows, cols)
    return _canonical_pairs(pair_arr, _check_pair_weights(w, len(pair_arr)), n_titles, t_ids)


def _derived_similarity(
    embeddings: ArrayLike | None,
    similarity: ArrayLike | None,
    pair_arr: IntArray,
    cand: BoolArray,
    n_cand: IntArray,
    t_ids: tuple[str, ...],
) -> tuple[FloatArray | None, FloatArray]:
    """``(embeddings, similarity)`` of ``from_arrays``: ``max(0, cosine)`` of the embeddings, a
    checked copy of a precomputed similarity, or zeros."""
    if similarity is not None and embeddings is not None:
        raise InvalidProblemError("Give either 'embeddings' or 'similarity' to the page problem, not both.")
    if embeddings is not None:
        emb = _check_embeddings(embeddings, cand, t_ids)
        return emb, cosine_similarity_pairs(emb, pair_arr, cand)
    if similarity is not None:
        return None, np.array(_check_similarity(similarity, pair_arr, cand, n_cand))  # a copy: read-only below
    n_images = cand.shape[1]
    return None, np.zeros((len(pair_arr), n_images, n_images))


def _canonical_pairs(
    pairs: IntArray, weights: FloatArray, n_titles: int, t_ids: tuple[str, ...]
) -> tuple[IntArray, FloatArray]:
    if len(pairs) and ((pairs < 0) | (pairs >= n_titles)).any():
        raise _fail(
            "pairs",
            f"index titles 0..{n_titles - 1}",
            f"{pairs[((pairs < 0) | (pairs >= n_titles)).any(axis=1)][0].tolist()}",
        )
    if (pairs[:, 0] == pairs[:, 1]).any():
        t = int(pairs[pairs[:, 0] == pairs[:, 1]][0, 0])
        raise _fail("pairs", "join two different titles", f"a pair of title '{t_ids[t]}' with itself")
    _check_pair_weight_values(weights)
    lo = np.minimum(pairs[:, 0], pairs[:, 1])
    hi = np.maximum(pairs[:, 0], pairs[:, 1])
    canon = np.stack([lo, hi], axis=1)
    if len(canon):
        uniq, counts = np.unique(canon, axis=0, return_counts=True)
        if (counts > 1).any():
            a, b = uniq[counts > 1][0]
            raise _fail("pairs", "list each pair of titles once", f"('{t_ids[a]}', '{t_ids[b]}') twice")
    order = np.lexsort((canon[:, 1], canon[:, 0])) if len(canon) else np.arange(0)
    return canon[order].astype(np.int64), weights[order].astype(np.float64)


def _build_quotas(
    image_tags: Mapping[str, ArrayLike] | None,
    tag_quotas: Mapping[str, int] | None,
    cand: BoolArray,
    n_titles: int,
    n_images: int,
) -> tuple[tuple[str, ...], BoolArray, IntArray]:
    quotas = dict(tag_quotas or {})
    tags_in = dict(image_tags or {})
    names = tuple(sorted(quotas))
    out = np.zeros((len(names), n_titles, n_images), dtype=bool)
    maxes = np.zeros(len(names), dtype=np.int64)
    for g, tag in enumerate(names):
        q = quotas[tag]
        if isinstance(q, bool) or not isinstance(q, (int, np.integer)) or q < 0:
            raise _fail(f"quotas.{tag}", "be an integer >= 0", repr(q))
        if tag not in tags_in:
            raise _fail("image_tags", f"tag images with '{tag}', which has a quota", "no such tag")
        arr = np.asarray(tags_in[tag])
        if arr.shape != (n_titles, n_images):
            raise _fail(f"image_tags.{tag}", f"have shape ({n_titles}, {n_images})", f"shape {arr.shape}")
        out[g] = arr.astype(bool) & cand
        maxes[g] = int(q)
    return names, out, maxes
