"""Reward models for the direct method and doubly robust: ``q[i, k]``, the expected reward of
showing candidate ``k`` on log row ``i``.

The built-in model is the smoothed take rate of each image (quality plays per impression),
shrunk towards its title's take rate, fitted with cross-fitting over pages so that a row's
prediction never uses its own reward. A caller may instead pass an ``(n, k_max)`` array or a
callable ``model(log) -> (n, k_max)`` (e.g. a bandit's predictions).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from slate.logs.log import ImpressionLog
from slate.replay.policy import InvalidReplayInputError

__all__ = ["resolve_reward_model", "take_rate_model"]


def take_rate_model(
    log: ImpressionLog, *, n_folds: int = 2, prior_strength: float = 1.0, seed: int | None = 0
) -> NDArray[np.float64]:
    """Cross-fitted, smoothed take rate of every candidate image on every row.

    ``q[i, k] = (plays(image) + a * rate(title)) / (impressions(image) + a)``, counted on the
    pages of the other folds (``n_folds=1``: on all pages). Padding gets 0.

    Parameters
    ----------
    log : ImpressionLog
    n_folds : int, default 2
    prior_strength : float, default 1.0
        ``a``: pseudo-impressions at the title's take rate.
    seed : int, optional
        Assignment of pages to folds.

    Returns
    -------
    ndarray (n, k_max)

    Examples
    --------
    >>> from slate.logs import read_impressions
    >>> from slate.logs.parquet import example_table
    >>> log, _ = read_impressions(example_table())
    >>> take_rate_model(log, n_folds=1, prior_strength=0.0).tolist()
    [[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0]]
    """
    if not isinstance(n_folds, (int, np.integer)) or n_folds < 1:
        raise InvalidReplayInputError(
            f"The 'n_folds' parameter of take_rate_model must be an integer >= 1; got {n_folds!r}."
        )
    if not np.isfinite(prior_strength) or prior_strength < 0:
        raise InvalidReplayInputError(
            f"The 'prior_strength' parameter of take_rate_model must be >= 0; got {prior_strength!r}."
        )
    n_img = len(log.image_ids)
    n_tit = len(log.title_ids)
    reward = log.reward.astype(np.float64)
    if n_folds == 1 or log.n_pages < n_folds:
        fold = np.zeros(log.n_rows, dtype=np.int64)
        n_folds = 1
    else:
        rng = np.random.default_rng(seed)
        page_fold = rng.permutation(log.n_pages) % n_folds
        fold = page_fold[log.page_index]
    img_plays = np.stack([np.bincount(log.image[fold == f], reward[fold == f], n_img)
                          for f in range(n_folds)])
    img_views = np.stack([np.bincount(log.image[fold == f], minlength=n_img).astype(float)
                          for f in range(n_folds)])
    tit_plays = np.stack([np.bincount(log.title[fold == f], reward[fold == f], n_tit)
                          for f in range(n_folds)])
    tit_views = np.stack([np.bincount(log.title[fold == f], minlength=n_tit).astype(float)
                          for f in range(n_folds)])
    if n_folds > 1:  # train on the other folds
        img_plays = img_plays.sum(0) - img_plays
        img_views = img_views.sum(0) - img_views
        tit_plays = tit_plays.sum(0) - tit_plays
        tit_views = tit_views.sum(0) - tit_views
    overall = reward.mean() if log.n_rows else 0.0
    with np.errstate(invalid="ignore", divide="ignore"):
        tit_rate = np.where(tit_views > 0, tit_plays / np.maximum(tit_views, 1), overall)
    a = float(prior_strength)
    cands = np.maximum(log.candidates, 0)
    prior = tit_rate[fold, log.title][:, None]
    num = img_plays[fold[:, None], cands] + a * prior
    den = img_views[fold[:, None], cands] + a
    with np.errstate(invalid="ignore", divide="ignore"):
        q = np.where(den > 0, num / np.where(den > 0, den, 1.0), prior)
    return np.where(log.candidates >= 0, q, 0.0)


def resolve_reward_model(model: Any, log: ImpressionLog, seed: int | None) -> NDArray[np.float64]:
    """``"take_rate"`` (cross-fitted), an ``(n, k_max)`` array, or a callable ``model(log)``."""
    if isinstance(model, str):
        if model != "take_rate":
            raise InvalidReplayInputError(
                f"The 'reward_model' parameter must be 'take_rate', an (n, k_max) array or a "
                f"callable; got {model!r} instead."
            )
        return take_rate_model(log, seed=seed)
    q: Any = model(log) if isinstance(model, Callable) else model  # type: ignore[arg-type]
    arr = np.asarray(q, dtype=np.float64)
    if arr.shape != (log.n_rows, log.k_max):
        raise InvalidReplayInputError(
            f"The 'reward_model' predictions must have shape ({log.n_rows}, {log.k_max}); "
            f"got {arr.shape} instead."
        )
    if not np.all(np.isfinite(arr[log.candidates >= 0])):
        raise InvalidReplayInputError("The 'reward_model' predictions must be finite on candidates.")
    return np.where(log.candidates >= 0, arr, 0.0)
