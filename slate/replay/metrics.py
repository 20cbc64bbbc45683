"""Page metrics beside the take fraction: churn and image coverage (diversity: a hook for later).

A policy that wins on take fraction by reshuffling every image each session, or by showing the
same image of a title to everyone, is not what the user wants; these metrics show it. They are
properties of the target's *decisions* on the logged contexts, so they are computed exactly
(in expectation over a stochastic target), not estimated from rewards.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from slate.logs.log import ImpressionLog
from slate.replay.policy import ActionDistribution

__all__ = [
    "COVERAGE_SHARE",
    "PageMetric",
    "churn_rate",
    "churn_vs_previous",
    "consecutive_pairs",
    "image_coverage",
    "logged_distribution",
]

COVERAGE_SHARE = 0.05
"""An image "covers" when it gets at least this share of its title's impressions (5%, as in
the Netflix post's figure of the images that each receive over 5% of impressions)."""


class PageMetric(Protocol):
    """Hook for further page metrics (page diversity, which needs image embeddings, goes here):
    ``metric(log, target) -> float``."""

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
