"""Page metrics beside the take fraction: churn, image coverage and page diversity.

A policy that wins on take fraction by reshuffling every image each session, by showing the
same image of a title to everyone, or by showing the same close-up in every position of a row,
is not what the user wants; these metrics show it. They are properties of the target's
*decisions* on the logged contexts, so they are computed exactly (in expectation over a
stochastic target), not estimated from rewards.

Page diversity
--------------
A page's *similarity* is the layout-weighted mean visual similarity of the images shown in
interacting positions, ``sum_p w_p max(0, cos(e_i, e_j)) / sum_p w_p``; *diversity* is one minus
its mean over pages (pages without interacting positions are left out). This is the definition
of the simulator's ground truth (:class:`slate.sim.PolicyValue`, whose layout is a
:class:`~slate.page.GridLayout`) and of :mod:`slate.tune`, so estimated and true values are
comparable. For a stochastic target the titles of a page are taken to draw their images
independently given the row probabilities, so a pair's expected similarity is
``p_i^T S_ij p_j`` with ``S_ij[k, l] = max(0, cos(e[c_ik], e[c_jl]))``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal, Protocol

import numba
import numpy as np
from numpy.typing import NDArray

from slate._internal.similarity import PAIR_CHUNK, diversity_from_pairs
from slate._internal.text import examples
from slate.errors import InvalidEmbeddingsError
from slate.logs.log import ImpressionLog
from slate.page.embeddings import ImageEmbeddings, as_image_embeddings
from slate.page.layout import GridLayout
from slate.page.similarity import positive_cosine
from slate.replay import _exact
from slate.replay.policy import ActionDistribution, InvalidReplayInputError

__all__ = [
    "COVERAGE_SHARE",
    "DEFAULT_DIVERSITY_LAYOUT",
    "DiversitySums",
    "ImageEmbeddings",
    "InvalidEmbeddingsError",
    "PageMetric",
    "as_image_embeddings",
    "churn_rate",
    "churn_vs_previous",
    "consecutive_pairs",
    "diversity_pairs",
    "diversity_sums",
    "image_coverage",
    "layout_diversity",
    "logged_distribution",
    "page_diversity",
    "pair_similarity",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

COVERAGE_SHARE = 0.05
"""An image "covers" when it gets at least this share of its title's impressions (5%, as in
the Netflix post's figure of the images that each receive over 5% of impressions)."""


class PageMetric(Protocol):
    """Hook for further page metrics: ``metric(log, target) -> float`` (see ``extra_metrics``
    of :func:`slate.replay.evaluate`)."""

    def __call__(self, log: ImpressionLog, target: ActionDistribution) -> float: ...


MetricFunction = Callable[[ImpressionLog, ActionDistribution], float]


def logged_distribution(log: ImpressionLog) -> ActionDistribution:
    """The logged images as a deterministic 'policy' (to compute the logged metrics)."""
    return ActionDistribution.deterministic(log.shown, log.shown, log.k_max, name="logged")


def consecutive_pairs(log: ImpressionLog) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Row pairs ``(i, j)``: the same member and title, ``j`` the first impression in the next
    session after ``i``'s (sessions ordered by time, then id).

    Examples
    --------
    >>> from slate.logs import read_impressions
    >>> from slate.logs.parquet import example_table
    >>> log, _ = read_impressions(example_table())
    >>> [a.tolist() for a in consecutive_pairs(log)]  # members 1 and 2 have one session each
    [[], []]
    """
    order = np.lexsort((log.session_id, log.timestamp, log.title, log.member_id))
    m = log.member_id[order]
    t = log.title[order]
    s = log.session_id[order]
    ok = (m[1:] == m[:-1]) & (t[1:] == t[:-1]) & (s[1:] != s[:-1])
    return order[:-1][ok].astype(np.int64), order[1:][ok].astype(np.int64)


def _same_image_prob(
    log: ImpressionLog, probs: NDArray[np.float64], i: NDArray[np.int64], j: NDArray[np.int64]
) -> NDArray[np.float64]:
    out = np.empty(len(i))
    step = max(1, 1_000_000 // max(log.k_max * log.k_max, 1))
    for a in range(0, len(i), step):
        ii, jj = i[a : a + step], j[a : a + step]
        ci, cj = log.candidates[ii], log.candidates[jj]
        same = (ci[:, :, None] == cj[:, None, :]) & (ci[:, :, None] >= 0)
        out[a : a + step] = np.einsum("pk,pl,pkl->p", probs[ii], probs[jj], same)
    return out


def churn_rate(log: ImpressionLog, target: ActionDistribution) -> float:
    """Share of titles whose image changes between a member's consecutive sessions.

    Exact for a deterministic target; for a stochastic one, the expected share with independent
    draws in the two sessions. NaN when no member sees a title in two sessions.

    Examples
    --------
    >>> import pyarrow as pa
    >>> from slate.logs import read_impressions
    >>> from slate.logs.parquet import example_table
    >>> log, _ = read_impressions(example_table().set_column(0, "member_id", pa.array([1] * 4)))
    >>> churn_rate(log, logged_distribution(log))  # T1: a -> b, T2: b -> a
    1.0
    """
    i, j = consecutive_pairs(log)
    if len(i) == 0:
        return float("nan")
    if target.choice is not None:
        rows = np.arange(log.n_rows)
        image = log.candidates[rows, target.choice]
        return float(np.mean(image[i] != image[j]))
    probs = target.probabilities()
    if probs is None:
        return float("nan")
    return float(np.mean(1.0 - _same_image_prob(log, probs, i, j)))


def churn_vs_previous(
    log: ImpressionLog, target: ActionDistribution, previous: NDArray[np.int32] | None = None
) -> float:
    """Share of rows (with a previous image) where the target shows another image than the one
    the member actually saw last time: ``previous`` (image codes, -1 for none; default the log's
    ``previous_image_id`` column, else :func:`slate.replay.sequential.previous_shown`). NaN when
    no row has a previous image."""
    probs = target.probabilities()
    if previous is None:
        if log.previous_image is not None:
            previous = log.previous_image
        else:
            from slate.replay.sequential import previous_shown

            previous = previous_shown(log)
    if probs is None:
        return float("nan")
    has = previous >= 0
    if not has.any():
        return float("nan")
    same = (log.candidates[has] == previous[has, None]) & (log.candidates[has] >= 0)
    return float(np.mean(1.0 - (probs[has] * same).sum(axis=1)))


def image_coverage(
    log: ImpressionLog, target: ActionDistribution, share: float = COVERAGE_SHARE
) -> tuple[float, NDArray[np.float64]]:
    """Share of each title's candidate images that get at least ``share`` of its impressions.

    Returns the mean over titles and the per-title array (aligned with ``log.title_ids``; NaN
    for titles without rows). Expected impressions under a stochastic target.

    Examples
    --------
    >>> from slate.logs import read_impressions
    >>> from slate.logs.parquet import example_table
    >>> log, _ = read_impressions(example_table())
    >>> mean, per_title = image_coverage(log, logged_distribution(log))
    >>> mean, per_title.tolist()
    (1.0, [1.0, 1.0])
    """
    probs = target.probabilities()
    if probs is None:
        return float("nan"), np.full(len(log.title_ids), np.nan)
    n_img, n_tit = len(log.image_ids), len(log.title_ids)
    real = log.candidates >= 0
    cands = log.candidates[real]
    expected = np.bincount(cands, probs[real], n_img)
    offered = np.bincount(cands, minlength=n_img) > 0
    img_title = np.full(n_img, -1, dtype=np.int64)
    img_title[cands] = np.broadcast_to(log.title[:, None], log.candidates.shape)[real]
    rows = np.bincount(log.title, minlength=n_tit).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = expected / rows[np.maximum(img_title, 0)]
    t = img_title[offered]
    covered = np.bincount(t, (frac[offered] >= share - 1e-12).astype(np.float64), n_tit)
    n_images = np.bincount(t, minlength=n_tit).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_title = np.where(n_images > 0, covered / np.where(n_images > 0, n_images, 1), np.nan)
    return float(np.nanmean(per_title)) if np.isfinite(per_title).any() else float("nan"), per_title


# ====================================================================== page diversity
_CHUNK = PAIR_CHUNK
"""Pairs per chunk of the deterministic similarity (arrays of ``_CHUNK x dim``)."""
_CHUNK_ELEMENTS = 2_000_000
"""Elements per chunk of the stochastic expectation (``pairs x k x (k + 2 dim)``)."""


def pair_similarity(
    images_i: NDArray[np.integer], images_j: NDArray[np.integer], vectors: FloatArray
) -> FloatArray:
    """``max(0, <v[images_i], v[images_j]>)`` for unit ``vectors``, chunked.

    Examples
    --------
    >>> import numpy as np
    >>> v = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    >>> pair_similarity(np.array([0, 0]), np.array([1, 2]), v).tolist()
    [0.0, 0.0]
    >>> pair_similarity(np.array([0]), np.array([0]), v).tolist()
    [1.0]
    """
    out = np.empty(len(images_i))
    for lo in range(0, len(images_i), _CHUNK):
        hi = lo + _CHUNK
        out[lo:hi] = np.einsum("pd,pd->p", vectors[images_i[lo:hi]], vectors[images_j[lo:hi]])
    return positive_cosine(out, out=out)


def page_diversity(
    images: NDArray[np.integer],
    vectors: FloatArray,
    pair_i: IntArray,
    pair_j: IntArray,
    pair_w: FloatArray,
    pair_page: IntArray,
    n_pages: int,
) -> float:
    """One minus the mean over pages of the layout-weighted similarity of the shown images.

    The array-level form (used by :mod:`slate.tune`); :func:`layout_diversity` works on a log.

    Parameters
    ----------
    images : ndarray (n_rows,), int
        Image code shown on each row.
    vectors : ndarray (n_image_codes, dim)
        Unit embeddings.
    pair_i, pair_j, pair_w, pair_page : ndarray (n_pairs,)
        Interacting rows, their weight and their page index.
    n_pages : int

    Examples
    --------
    >>> import numpy as np
    >>> v = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> i, j, w, pg = np.array([0, 2]), np.array([1, 3]), np.array([1.0, 1.0]), np.array([0, 1])
    >>> page_diversity(np.array([0, 0, 0, 1]), v, i, j, w, pg, 2)  # page 0 same image, page 1 orthogonal
    0.5
    """
    sim = pair_similarity(images[pair_i], images[pair_j], vectors)
    return diversity_from_pairs(sim, pair_w, pair_page, n_pages)


# ---------------------------------------------------------------------- embeddings
# ---------------------------------------------------------------------- interacting pairs
DEFAULT_DIVERSITY_LAYOUT = GridLayout(rows=1, cols=1)
"""The default weights of :class:`~slate.page.GridLayout` (row neighbours 1, farther titles in
a row 0.1, above/below 0.5): the simulator's and the page optimizer's defaults. Its ``rows``
and ``cols`` are not used: positions come from the log's ``row`` and ``col``."""

MissingEmbeddings = Literal["raise", "skip"]
"""What to do with an image the diversity needs that has no embedding."""

DiversityLayout = GridLayout | str | Sequence[tuple[int, int]] | None
"""A :class:`~slate.page.GridLayout` (its weights), ``"row"`` / ``"grid"`` or explicit
``(d_row, d_col)`` offsets (weight 1 per neighbouring pair, as the ``neighbourhood``
estimator's ``neighbours``), or None for :data:`DEFAULT_DIVERSITY_LAYOUT`."""


def _offsets(layout: DiversityLayout, max_col: int) -> list[tuple[int, int, float]]:
    """``(d_row, d_col, weight)`` with each unordered pair once (``d_row > 0`` or ``d_col > 0``
    in row 0), in a fixed order (a page's pairs are then in the same order in any chunk)."""
    if layout is None:
        layout = DEFAULT_DIVERSITY_LAYOUT
    if isinstance(layout, GridLayout):
        return layout.offsets(max_col)  # the optimizer's weights (GridLayout.offset_weights)
    if isinstance(layout, str):
        from slate.replay.estimators import NEIGHBOURHOODS

        if layout not in NEIGHBOURHOODS:
            raise InvalidReplayInputError(
                f"The 'diversity_layout' must be a GridLayout, one of {sorted(NEIGHBOURHOODS)} or "
                f"a sequence of (d_row, d_col); got {layout!r} instead."
            )
        layout = NEIGHBOURHOODS[layout]
    try:
        raw = [(int(a), int(b)) for a, b in layout]
    except (TypeError, ValueError):
        raise InvalidReplayInputError(
            "The 'diversity_layout' must be a GridLayout, 'row', 'grid' or a sequence of "
            f"(d_row, d_col); got {layout!r} instead."
        ) from None
    if any(o == (0, 0) for o in raw):
        raise InvalidReplayInputError("The 'diversity_layout' offsets must not include (0, 0).")
    canon = {(a, b) if (a > 0 or (a == 0 and b > 0)) else (-a, -b) for a, b in raw}
    return [(a, b, 1.0) for a, b in sorted(canon)]


def diversity_pairs(
    log: ImpressionLog, layout: DiversityLayout = None
) -> tuple[IntArray, IntArray, FloatArray, IntArray]:
    """Interacting row pairs of every page: ``(i, j, weight, page index)``.

    Positions come from the log's ``row`` and ``col``; each unordered pair appears once. Pairs
    are ordered by offset, then by row, so a page gives the same pairs in the same order in any
    chunk of the log. Vectorised: one sort, one ``searchsorted`` per offset.

    Examples
    --------
    >>> from slate.logs import read_impressions
    >>> from slate.logs.parquet import example_table
    >>> log, _ = read_impressions(example_table())   # two pages of two titles side by side
    >>> [a.tolist() for a in diversity_pairs(log)]
    [[0, 2], [1, 3], [1.0, 1.0], [0, 1]]
    """
    n = log.n_rows
    empty = np.zeros(0, np.int64)
    if n == 0:
        return empty, empty, np.zeros(0), empty
    row = log.row.astype(np.int64)
    col = log.col.astype(np.int64)
    R, C = int(row.max()) + 1, int(col.max()) + 1
    offsets = _offsets(layout, C - 1)
    page = log.page_index.astype(np.int64)
    key = (page * R + row) * C + col
    order = np.argsort(key, kind="stable")
    skey = key[order]
    parts_i, parts_j, parts_w = [], [], []
    for dr, dc, w in offsets:
        r2, c2 = row + dr, col + dc
        inside = np.flatnonzero((r2 >= 0) & (r2 < R) & (c2 >= 0) & (c2 < C))
        target = key[inside] + dr * C + dc
        pos = np.minimum(np.searchsorted(skey, target), n - 1)
        found = skey[pos] == target
        parts_i.append(inside[found])
        parts_j.append(order[pos[found]])
        parts_w.append(np.full(int(found.sum()), float(w)))
    if not parts_i:
        return empty, empty, np.zeros(0), empty
    i = np.concatenate(parts_i).astype(np.int64)
    j = np.concatenate(parts_j).astype(np.int64)
    return i, j, np.concatenate(parts_w), page[i]


# ---------------------------------------------------------------------- the metric
@dataclass(eq=False)
class DiversitySums:
    """Mergeable, exact sums behind a page diversity: ``merge`` adds two of them.

    Attributes
    ----------
    similarity : ndarray (N_BINS,), int64
        Exact sum (see :mod:`slate.replay._exact`) over pages of each page's layout-weighted
        similarity.
    n_pages : int
        Pages with at least one interacting pair (with embeddings).
    n_pairs : int
        Interacting pairs seen.
    skipped : ndarray (N_BINS,), int64
        Exact sum of the (expected) number of pairs left out because an image has no embedding
        (``missing="skip"``).
    missing_images : frozenset of str
        Images the metric needed that have no embedding.
    """

    similarity: NDArray[np.int64] = field(default_factory=_exact.new)
    n_pages: int = 0
    n_pairs: int = 0
    skipped: NDArray[np.int64] = field(default_factory=_exact.new)
    missing_images: frozenset[str] = frozenset()

    def merge(self, other: DiversitySums) -> DiversitySums:
        """The sums over the pages of both (exact: the order of merging does not matter)."""
        sim = self.similarity + other.similarity
        skipped = self.skipped + other.skipped
        _exact.normalize(sim)
        _exact.normalize(skipped)
        return DiversitySums(sim, self.n_pages + other.n_pages, self.n_pairs + other.n_pairs,
                             skipped, self.missing_images | other.missing_images)

    @property
    def value(self) -> float:
        """``1 -`` the mean page similarity (correctly rounded); NaN without pages."""
        if self.n_pages == 0:
            return float("nan")
        mean = Fraction(_exact.to_int(self.similarity), self.n_pages << _exact.SCALE_BITS)
        return float(1 - mean)

    @property
    def skipped_pairs(self) -> float:
        """(Expected) number of pairs left out for want of an embedding."""
        return float(Fraction(_exact.to_int(self.skipped), 1 << _exact.SCALE_BITS))


def _missing_error(ids: Iterable[str], embeddings: ImageEmbeddings) -> InvalidEmbeddingsError:
    ids = sorted(ids)
    return InvalidEmbeddingsError(
        f"The 'image_embeddings' ({embeddings.source}) have no vector for {len(ids)} images the "
        f"page diversity needs, e.g. {examples(ids, 10)}; add them, or pass "
        f"missing_embeddings='skip' to leave their pairs out (counted in the report)."
    )


def _candidate_sets(cand: NDArray[np.int32]) -> IntArray:
    """Index of each row's candidate set (rows with the same candidates in the same order share
    one): one lexicographic sort of the rows."""
    n = len(cand)
    if n == 0:
        return np.zeros(0, np.int64)
    order = np.lexsort(cand.T[::-1])
    ranked = cand[order]
    new = np.r_[True, (ranked[1:] != ranked[:-1]).any(axis=1)]
    out = np.empty(n, np.int64)
    out[order] = np.cumsum(new) - 1
    return out


@numba.njit(cache=True, nogil=True)
def _quadratic_forms(
    s: FloatArray, inv: IntArray, rows_i: IntArray, rows_j: IntArray, probs: FloatArray,
    out: FloatArray, at: IntArray,
) -> None:  # pragma: no cover - compiled
    """``out[at[p]] = probs[rows_i[p]] @ s[inv[p]] @ probs[rows_j[p]]`` for every ``p``: the
    gather of each pair's ``S`` fused with its quadratic form (no ``pairs x k x k`` temporary)."""
    k = s.shape[1]
    for p in range(len(inv)):
        c = inv[p]
        a = rows_i[p]
        b = rows_j[p]
        total = 0.0
        for x in range(k):
            px = probs[a, x]
            if px != 0.0:
                inner = 0.0
                for y in range(k):
                    inner += s[c, x, y] * probs[b, y]
                total += px * inner
        out[at[p]] = total


def _expected_pair_similarity(
    cand: NDArray[np.int32], probs: FloatArray, vectors: FloatArray, has: NDArray[np.bool_],
    i: IntArray, j: IntArray,
) -> tuple[FloatArray, FloatArray]:
    """``E[s] = p_i^T S p_j`` (with zero similarity for images without an embedding) and the
    probability that both drawn images have one, for every pair.

    ``S`` depends on the two rows' candidate sets only: pairs are sorted by that couple, each
    distinct ``S`` of a chunk is computed once (one batched matrix product), and a compiled loop
    takes every pair's quadratic form. A pair's numbers depend on its own rows only, not on the
    chunk it is in."""
    k = cand.shape[1]
    dim = vectors.shape[1]
    n_img = len(vectors)
    padded = np.vstack([vectors, np.zeros((1, dim))])  # padding (-1) reads a zero vector
    real = np.where(cand >= 0, cand, n_img).astype(np.int64)
    mass = (probs * np.r_[has, False][real]).sum(axis=1)
    sets = _candidate_sets(cand)
    key = sets[i] * (int(sets.max()) + 1) + sets[j]
    order = np.argsort(key)
    probs = np.ascontiguousarray(probs, dtype=np.float64)
    e = np.empty(len(i))
    step = max(1, _CHUNK_ELEMENTS // max(k * (k + 2 * dim), 1))
    for lo in range(0, len(i), step):
        at = order[lo : lo + step]
        ranked = key[at]  # sorted: equal couples are consecutive
        new = np.r_[True, ranked[1:] != ranked[:-1]]
        first = at[np.flatnonzero(new)]
        s = np.matmul(padded[real[i[first]]], padded[real[j[first]]].transpose(0, 2, 1))
        positive_cosine(s, out=s)
        _quadratic_forms(s, np.cumsum(new) - 1, i[at], j[at], probs, e, at)
    return e, mass[i] * mass[j]


def diversity_sums(
    log: ImpressionLog,
    target: ActionDistribution,
    embeddings: Any,
    *,
    layout: DiversityLayout = None,
    missing: MissingEmbeddings = "raise",
    pairs: tuple[IntArray, IntArray, FloatArray, IntArray] | None = None,
) -> DiversitySums:
    """The page diversity of ``target``'s decisions on ``log``, as mergeable exact sums.

    Parameters
    ----------
    log : ImpressionLog
        Whole pages (a chunk of them, in the partitioned path).
    target : ActionDistribution
        Deterministic (exact) or stochastic (expected value, titles drawing independently given
        their row probabilities). Rows it does not decide are left out of the pairs. A target
        with neither ``choice`` nor ``probs`` gives empty sums (NaN diversity).
    embeddings : ImageEmbeddings or anything :func:`as_image_embeddings` takes
    layout : GridLayout, "row", "grid", sequence of (d_row, d_col) or None
        Which positions interact and how much (see :data:`DiversityLayout`).
    missing : "raise" or "skip", default "raise"
        An image the metric needs (one the target may show on a row with a neighbour) without an
        embedding raises :class:`InvalidEmbeddingsError` naming it; with ``"skip"`` the pairs
        (or, for a stochastic target, the share of a pair's probability) involving it are left
        out, counted in ``skipped`` and ``missing_images``.
    pairs : tuple, optional
        :func:`diversity_pairs` of ``log`` and ``layout``, when already computed.

    Returns
    -------
    DiversitySums
    """
    if missing not in ("raise", "skip"):
        raise InvalidReplayInputError(
            f"The 'missing_embeddings' option must be 'raise' or 'skip'; got {missing!r} instead."
        )
    emb = as_image_embeddings(embeddings)
    i, j, w, pg = diversity_pairs(log, layout) if pairs is None else pairs
    if target.decided is not None and not target.decided.all():
        keep = target.decided[i] & target.decided[j]
        i, j, w, pg = i[keep], j[keep], w[keep], pg[keep]
    out = DiversitySums(n_pairs=len(i))
    if len(i) == 0:
        return out
    vectors, has = emb.lookup(log.image_ids)
    cand = log.candidates
    if target.choice is not None:
        images = cand[np.arange(log.n_rows), target.choice].astype(np.int64)
        a, b = images[i], images[j]
        sim = pair_similarity(a, b, vectors)
        both = (has[a] & has[b]).astype(np.float64)
        needed = np.r_[a, b]
    else:
        probs = target.probabilities()
        if probs is None:
            return out
        sim, both = _expected_pair_similarity(cand, probs, vectors, has, i, j)
        paired = np.zeros(log.n_rows, bool)
        paired[i] = paired[j] = True
        support = (probs > 0) & (cand >= 0) & paired[:, None]
        needed = cand[support & ~has[np.maximum(cand, 0)]].astype(np.int64)
    lacking = np.unique(needed[~has[needed]])
    if len(lacking):
        names = frozenset(np.asarray(log.image_ids, dtype=object)[lacking].tolist())
        if missing == "raise":
            raise _missing_error(names, emb)
        out.missing_images = names
        if not _exact.accumulate(out.skipped, np.ascontiguousarray(1.0 - both)):
            raise InvalidReplayInputError("The target's probabilities must be finite.")
        den = np.bincount(pg, w * both, minlength=log.n_pages)
    else:
        den = np.bincount(pg, w, minlength=log.n_pages)
    num = np.bincount(pg, w * sim, minlength=log.n_pages)
    ok = den > 0
    if not _exact.accumulate(out.similarity, np.ascontiguousarray(num[ok] / den[ok])):
        raise InvalidReplayInputError("The target's probabilities must be finite.")
    out.n_pages = int(ok.sum())
    return out


def layout_diversity(
    log: ImpressionLog,
    target: ActionDistribution,
    embeddings: Any,
    *,
    layout: DiversityLayout = None,
    missing: MissingEmbeddings = "raise",
) -> float:
    """Page diversity of ``target``'s decisions: ``1 -`` the mean over pages of the
    layout-weighted similarity ``max(0, cos)`` of the images in interacting positions.

    Exact for a deterministic target, the expected value for a stochastic one (see
    :func:`diversity_sums` for the parameters). NaN when no page has interacting positions.

    Examples
    --------
    >>> from slate.logs import read_impressions
    >>> from slate.logs.parquet import example_table
    >>> log, _ = read_impressions(example_table())
    >>> log.image_ids
    ('T1-a', 'T1-b', 'T2-a', 'T2-b')
    >>> emb = {"T1-a": [1.0, 0.0], "T1-b": [0.0, 1.0], "T2-a": [1.0, 0.0], "T2-b": [1.0, 1.0]}
    >>> # page 100 shows T1-a beside T2-b (cos 0.707), page 200 T1-b beside T2-a (cos 0)
    >>> round(layout_diversity(log, logged_distribution(log), emb), 6)  # 1 - (0.707 + 0) / 2
    0.646447
    """
    return diversity_sums(log, target, embeddings, layout=layout, missing=missing).value
