"""SNIPS with the page effect carried to the target's neighbours by a crowding model fitted on the
exploration log: ``snips-crowding`` (:class:`CrowdingAdjustedSNIPS`).

**Model.** A title's chance of being played is its own part (member, title, image, position,
session) times ``exp(-c * crowd)``, where ``crowd`` is the layout-weighted similarity of its image
to its neighbours' images, ``sum over its layout pairs of w * max(0, cos(e_own, e_neighbour))``:
the page optimizer's diversity term (:class:`~slate.page.GridLayout` weights) and the simulator's
attention model (:mod:`slate.sim.response`). Then, for a row showing the image the target would
show, ``E[r | logged neighbours] * exp(-c (crowd* - crowd))`` is what it would take with the
target's neighbours (``crowd*``), so weighting each matched row's reward by

    ``rho = E_pi[exp(-c crowd*)] / exp(-c crowd)``

(``E_pi`` over the neighbours' target distributions, titles drawing independently) turns per-title
SNIPS, which keeps the logged neighbours, into an estimate of the target's value *with its own
pages*, at about SNIPS's variance (its weights are the own image's ratio only).

**Fitting c from the log.** Under randomised logging a row's neighbours draw their images
independently of the row itself, with known probabilities, so ``crowd`` varies around its
expectation ``crowd_bar = E_mu[crowd | own image]`` independently of everything else that moves
the row's reward: ``E[r exp(c0 crowd) (crowd - crowd_bar)] = 0`` at the true ``c0``. The estimator
solves that one-dimensional equation (:func:`fit_crowding`; Brent's method). Its uncertainty is
carried into the standard error and the bootstrap by the estimate's influence function: each
page's sums include the linearised effect of its own rows on ``c``, so every resampling of the
pages refits ``c`` to first order, and paired differences with other targets stay paired.

**When it is wrong.** Page effects of another form (not multiplicative in this similarity, or
through something other than the images' embeddings) bias it; without page effects ``c`` is
estimated near 0 and the estimate is SNIPS's. Session effects of the target's own history (an
image changed since the member's last page) are not moved, as with SNIPS.
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import brentq

from slate.errors import InvalidEmbeddingsError
from slate.page.embeddings import as_image_embeddings
from slate.page.layout import GridLayout
from slate.replay.estimators import BaseEstimator, Contributions, ReplayData
from slate.replay.metrics import diversity_pairs
from slate.replay.policy import InvalidReplayInputError

__all__ = ["CrowdingAdjustedSNIPS", "CrowdingTerms", "crowding_terms", "fit_crowding"]

FloatArray = NDArray[np.float64]

_PAIR_CELLS = 4_000_000
"""Directed pairs x candidates held at once."""

_KEPT_CELLS = 32_000_000
"""Directed pairs x candidates whose similarities are kept between targets (128 MB of float32)."""

_BRACKET = 64.0
"""The crowding coefficient is searched in [-64, 64] (exp(-64) is no attention at all)."""


@dataclass(frozen=True, eq=False)
class CrowdingTerms:
    """What the crowding model needs of a log, independent of the target.

    Attributes
    ----------
    i, j : ndarray (m,), int64
        Directed layout pairs: row ``i`` is crowded by row ``j`` (each unordered pair twice).
    w : ndarray (m,)
        Their layout weights.
    crowd : ndarray (n,)
        Crowding of every row's logged image by its logged neighbours.
    crowd_bar : ndarray (n,)
        Its expectation over the neighbours' logging distributions (own image fixed).
    """

    i: NDArray[np.int64]
    j: NDArray[np.int64]
    w: FloatArray
    crowd: FloatArray
    crowd_bar: FloatArray
    vectors: FloatArray
    image: NDArray[np.int64]
    candidates: NDArray[np.int64]

    kept: NDArray[np.float32] | None = None
    """The similarities of every directed pair, when they fit ``_KEPT_CELLS`` (float32)."""

    def similarities(self, lo: int, hi: int) -> FloatArray:
        """``max(0, cos)`` of row ``i``'s logged image with every candidate of row ``j``, for
        directed pairs ``lo:hi`` (0 on padding)."""
        if self.kept is not None:
            return self.kept[lo:hi].astype(np.float64)
        own = self.vectors[self.image[self.i[lo:hi]]]
        other = self.vectors[self.candidates[self.j[lo:hi]]]
        out = np.einsum("md,mkd->mk", own, other)
        return np.maximum(out, 0.0, out=out)

    def chunks(self) -> Any:
        """``(lo, hi)`` ranges of directed pairs holding about ``_PAIR_CELLS`` cells each."""
        k = max(self.candidates.shape[1], 1)
        step = max(1, _PAIR_CELLS // k)
        return ((lo, min(lo + step, len(self.i))) for lo in range(0, len(self.i), step))


def crowding_terms(
    data: ReplayData, embeddings: Any, layout: GridLayout | str | Sequence[tuple[int, int]] | None = None
) -> CrowdingTerms:
    """The layout pairs and logged crowding of ``data``'s log (see :class:`CrowdingTerms`).

    Needs the log's full logging distributions and an embedding for every candidate image of
    every row that has a layout neighbour (an :class:`~slate.errors.InvalidEmbeddingsError`
    names a missing one).
    """
    log = data.log
    mu = log.propensities
    if mu is None:
        raise InvalidReplayInputError(
            "The snips-crowding estimator needs the log's 'propensities' column (the full logging "
            "distribution of every title), to fit the crowding from the log."
        )
    emb = as_image_embeddings(embeddings)
    vectors, has = emb.lookup(log.image_ids)
    a, b, w, _ = diversity_pairs(log, layout)
    i, j, w = np.r_[a, b], np.r_[b, a], np.r_[w, w].astype(np.float64)
    cand = log.candidates.astype(np.int64)
    paired = np.zeros(log.n_rows, bool)
    paired[i] = True
    needed = cand[paired][cand[paired] >= 0]
    lacking = np.unique(needed[~has[needed]])
    if len(lacking):
        names = np.asarray(log.image_ids, dtype=object)[lacking]
        raise InvalidEmbeddingsError(
            f"The snips-crowding estimator needs an embedding for every candidate image of a title "
            f"with layout neighbours; {len(lacking)} have none, e.g. {names[0]!r}."
        )
    padded = np.vstack([vectors, np.zeros((1, vectors.shape[1]))])  # padding (-1) reads zeros
    cand = np.where(cand >= 0, cand, len(vectors))
    image = log.image.astype(np.int64)
    shown = np.argmax(log.candidates == log.image[:, None], axis=1)
    terms = CrowdingTerms(i, j, w, np.zeros(log.n_rows), np.zeros(log.n_rows), padded, image, cand)
    kept = np.empty(cand[j].shape, np.float32) if len(j) * cand.shape[1] <= _KEPT_CELLS else None
    for lo, hi in terms.chunks():
        S = terms.similarities(lo, hi)
        if kept is not None:
            kept[lo:hi] = S
        jj = j[lo:hi]
        terms.crowd[:] += np.bincount(i[lo:hi], w[lo:hi] * S[np.arange(hi - lo), shown[jj]], log.n_rows)
        terms.crowd_bar[:] += np.bincount(i[lo:hi], w[lo:hi] * (S * mu[jj]).sum(axis=1), log.n_rows)
    return dataclasses.replace(terms, kept=kept)


def _moment(c: float, r: FloatArray, crowd: FloatArray, dev: FloatArray) -> float:
    return float(np.sum(r * np.exp(c * crowd) * dev))


def fit_crowding(reward: FloatArray, crowd: FloatArray, crowd_bar: FloatArray) -> float:
    """The crowding coefficient ``c`` solving ``sum r exp(c crowd) (crowd - crowd_bar) = 0``
    (one term per row: its reward, its logged crowding and that crowding's expectation over the
    neighbours' logging distributions).

    Raises
    ------
    InvalidReplayInputError
        When the equation has no root in [-64, 64] (e.g. no reward on a row with neighbours, or
        a log too small to tell): the model cannot be fitted, and no number is made up.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> crowd_bar = np.full(400_000, 0.5)
    >>> crowd = rng.uniform(0, 1, 400_000)     # neighbours drawn at random around the mean
    >>> r = (rng.uniform(size=400_000) < 0.3 * np.exp(-0.8 * crowd)).astype(float)
    >>> round(fit_crowding(r, crowd, crowd_bar), 1)
    0.8
    """
    dev = crowd - crowd_bar
    use = dev != 0
    r, crowd, dev = reward[use], crowd[use], dev[use]
    if not np.any(r != 0):
        raise InvalidReplayInputError(
            f"The crowding of the snips-crowding estimator cannot be fitted from this log: none of "
            f"its {int(use.sum())} rows with neighbours has a reward; pass crowding=<known value>."
        )
    lo, hi = -1.0, 1.0
    f_lo, f_hi = _moment(lo, r, crowd, dev), _moment(hi, r, crowd, dev)
    while f_lo * f_hi > 0 and hi < _BRACKET:
        lo, hi = 2 * lo, 2 * hi
        f_lo, f_hi = _moment(lo, r, crowd, dev), _moment(hi, r, crowd, dev)
    if not (np.isfinite(f_lo) and np.isfinite(f_hi)) or f_lo * f_hi > 0:
        raise InvalidReplayInputError(
            f"The crowding of the snips-crowding estimator cannot be fitted from this log: its "
            f"moment equation has no root in [{-_BRACKET:g}, {_BRACKET:g}] ({int(use.sum())} rows "
            f"with neighbours, {int((r > 0).sum())} with a reward); pass crowding=<known value>."
        )
    return float(brentq(_moment, lo, hi, args=(r, crowd, dev), xtol=1e-10))


def _target_terms(
    terms: CrowdingTerms, probs: FloatArray, c: float, n: int
) -> tuple[FloatArray, FloatArray]:
    """``log E_pi[exp(-c crowd*)]`` of every row (its logged image against the neighbours'
    target distributions) and its derivative in ``c``."""
    log_e = np.zeros(n)
    d_log_e = np.zeros(n)
    for lo, hi in terms.chunks():
        S = terms.similarities(lo, hi)
        ws = terms.w[lo:hi, None] * S
        e = probs[terms.j[lo:hi]] * np.exp(-c * ws)
        tot = e.sum(axis=1)
        safe = np.where(tot > 0, tot, 1.0)
        log_e += np.bincount(terms.i[lo:hi], np.log(safe), n)
        d_log_e += np.bincount(terms.i[lo:hi], -(e * ws).sum(axis=1) / safe, n)
    return log_e, d_log_e


class CrowdingAdjustedSNIPS(BaseEstimator):
    """Per-title SNIPS with every matched row's reward moved to the target's neighbours by a
    crowding model ``exp(-c * crowd)``, ``c`` fitted on the exploration log (see the module
    docstring for the model, the fit and when it is wrong).

    Parameters
    ----------
    embeddings : ImageEmbeddings or anything :func:`~slate.page.as_image_embeddings` takes
        Unit vectors of the candidate images (those of titles with layout neighbours must all
        have one).
    layout : GridLayout, "row", "grid" or sequence of (d_row, d_col), optional
        Which positions crowd each other and how much (default: the optimizer's grid weights,
        :data:`slate.replay.metrics.DEFAULT_DIVERSITY_LAYOUT`).
    crowding : float, optional
        The coefficient ``c`` when known; by default fitted on the log, and its uncertainty
        included in the standard error and the bootstrap.

    Attributes
    ----------
    crowding_ : float
        The coefficient of the last estimate (fitted or given).

    Examples
    --------
    See docs/replay.md ("Page effects moved by a fitted crowding model").
    """

    name = "snips-crowding"
    long_name = "CrowdingAdjustedSNIPS"
    needs_probs = True
    fits_reward_model = True  # the crowding model: on-policy it gives the logged mean in expectation only
    assumption = (
        "a title's take probability is its own part times exp(-c * crowd), crowd the layout-weighted "
        "positive cosine of its image with its neighbours' images; c fitted on the log (randomised, "
        "independent logging across titles, full logging distributions)"
    )

    def __init__(
        self, embeddings: Any = None, layout: GridLayout | str | Sequence[tuple[int, int]] | None = None,
        crowding: float | None = None,
    ) -> None:
        if embeddings is None:
            raise InvalidReplayInputError(
                "The snips-crowding estimator needs the 'embeddings' option: a vector for every "
                "candidate image (e.g. ImageEmbeddings.load('images.parquet'))."
            )
        if crowding is not None and (isinstance(crowding, bool) or not np.isfinite(float(crowding))):
            raise InvalidReplayInputError(
                f"The 'crowding' option of snips-crowding must be a finite number or None; got {crowding!r}."
            )
        self.embeddings = embeddings
        self.layout = layout
        self.crowding = None if crowding is None else float(crowding)
        self.crowding_ = float("nan")
        # per log: its pairs, crowding and fitted c do not depend on the target (a sweep
        # estimates every point on the same log)
        self._fitted: weakref.WeakKeyDictionary[Any, tuple[CrowdingTerms, float]] = weakref.WeakKeyDictionary()

    def _terms(self, data: ReplayData) -> tuple[CrowdingTerms, float]:
        cached = self._fitted.get(data.log)
        if cached is None:
            terms = crowding_terms(data, self.embeddings, self.layout)
            c = fit_crowding(data.reward, terms.crowd, terms.crowd_bar) if self.crowding is None else self.crowding
            cached = self._fitted[data.log] = (terms, c)
        return cached

    def __getstate__(self) -> dict[str, Any]:  # sent to dask workers without the cache
        state = dict(self.__dict__)
        state["_fitted"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._fitted = weakref.WeakKeyDictionary()

    def contributions(self, data: ReplayData, seed: int | None) -> Contributions:
        terms, c = self._terms(data)
        r, w = data.reward, data.weight
        self.crowding_ = c
        probs = data.need_probs(self.name)
        k = data.log.candidates.shape[1]
        probs = probs[:, :k] if probs.shape[1] >= k else np.pad(probs, ((0, 0), (0, k - probs.shape[1])))
        log_e, d_log_e = _target_terms(terms, probs, c, data.n_rows)
        rho = np.exp(log_e + c * terms.crowd)
        u = w * r * rho
        if self.crowding is None:  # the influence of each row on the fitted c, linearised
            dev = terms.crowd - terms.crowd_bar
            moment = r * np.exp(c * terms.crowd) * dev
            slope = float(np.sum(moment * terms.crowd))
            d_value = float(np.sum(u * (terms.crowd + d_log_e)))
            if slope > 0:
                u = u - (d_value / slope) * moment
        return Contributions.from_rows(data, u, w, w, w > 0)

    def __repr__(self) -> str:
        return f"CrowdingAdjustedSNIPS(layout={self.layout!r}, crowding={self.crowding!r})"


def _register() -> None:
    from collections.abc import Callable
    from typing import cast

    from slate.replay.estimators import Estimator, register_estimator

    register_estimator(CrowdingAdjustedSNIPS.long_name,
                       cast(Callable[..., Estimator], CrowdingAdjustedSNIPS), ("snips-crowding",))


_register()
