"""Reward models for the direct method and doubly robust: ``q[i, k]``, the expected reward of
showing candidate ``k`` on log row ``i``.

The built-in model is the smoothed take rate of each image (quality plays per impression),
shrunk towards its title's take rate, fitted with cross-fitting over pages so that a row's
prediction never uses its own reward. A caller may instead pass an ``(n, k_max)`` array or a
callable ``model(log) -> (n, k_max)`` (e.g. a bandit's predictions).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from slate.logs.log import ImpressionLog
from slate.replay.policy import InvalidReplayInputError

__all__ = ["TakeRateCounts", "resolve_reward_model", "take_rate_model"]


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


def _union_counts(
    ids_a: tuple[str, ...], counts_a: NDArray[np.int64], ids_b: tuple[str, ...],
    counts_b: NDArray[np.int64],
) -> tuple[tuple[str, ...], NDArray[np.int64]]:
    """Counts of two id vocabularies added id by id (fast when the vocabularies are the same)."""
    if ids_a is ids_b or ids_a == ids_b:
        return ids_a, counts_a + counts_b
    index = {k: i for i, k in enumerate(ids_a)}
    extra = [k for k in ids_b if k not in index]
    ids = ids_a + tuple(extra)
    for k in extra:
        index[k] = len(index)
    out = np.zeros((len(ids), *counts_a.shape[1:]), np.int64)
    out[: len(ids_a)] = counts_a
    np.add.at(out, np.fromiter((index[k] for k in ids_b), np.int64, len(ids_b)), counts_b)
    return ids, out


def _aligned_counts(
    ids: tuple[str, ...], counts: NDArray[np.int64], target: tuple[str, ...]
) -> NDArray[np.float64]:
    """Counts re-indexed to the ``target`` vocabulary (zeros for ids never counted)."""
    if ids is target or ids == target:
        return counts.astype(np.float64)
    index = {k: i for i, k in enumerate(ids)}
    pos = np.fromiter((index.get(k, -1) for k in target), np.int64, len(target))
    out = np.zeros((len(target), *counts.shape[1:]))
    out[pos >= 0] = counts[pos[pos >= 0]]
    return out


@dataclass(frozen=True, eq=False)
class TakeRateCounts:
    """Mergeable counts behind a take-rate model, for logs read in partitions.

    The same model as :func:`take_rate_model`, but pages are assigned to folds by a hash of
    ``(seed, page id)`` instead of a permutation, so the counts (exact integers) and the
    predictions do not depend on how the log is split. Build one per chunk with
    :meth:`from_log`, add them with :meth:`merge`, then call :meth:`predict` on each chunk.

    Attributes
    ----------
    n_folds : int
    seed : int or None
    image_ids, title_ids : tuple of str
    image_counts, title_counts : ndarray (n_ids, n_folds, 2), int64
        ``[plays, impressions]`` per id and fold.
    plays, rows : int
        Totals (the overall take rate, for titles never seen).

    Examples
    --------
    >>> from slate.logs import read_impressions
    >>> from slate.logs.parquet import example_table
    >>> log, _ = read_impressions(example_table())
    >>> halves = [TakeRateCounts.from_log(log.take(rows), n_folds=1) for rows in ([0, 1], [2, 3])]
    >>> counts = halves[0].merge(halves[1])
    >>> counts.predict(log, prior_strength=0.0).tolist() == take_rate_model(
    ...     log, n_folds=1, prior_strength=0.0).tolist()
    True
    """

    n_folds: int
    seed: int | None
    image_ids: tuple[str, ...]
    image_counts: NDArray[np.int64]
    title_ids: tuple[str, ...]
    title_counts: NDArray[np.int64]
    plays: int
    rows: int

    @staticmethod
    def folds(log: ImpressionLog, n_folds: int, seed: int | None) -> NDArray[np.int64]:
        """Fold of each row: a hash of ``(seed, page id)`` modulo ``n_folds``."""
        if n_folds == 1:
            return np.zeros(log.n_rows, np.int64)
        from slate.replay._exact import counter_uniform
        from slate.replay.estimators import seed_key

        u = counter_uniform(np.uint64(seed_key(0 if seed is None else seed, 3)), log.page_id,
                            np.zeros(log.n_rows, np.int64))
        return np.minimum((u * n_folds).astype(np.int64), n_folds - 1)

    @classmethod
    def from_log(cls, log: ImpressionLog, *, n_folds: int = 2, seed: int | None = 0) -> TakeRateCounts:
        """Counts of one chunk of whole pages."""
        if not isinstance(n_folds, (int, np.integer)) or n_folds < 1:
            raise InvalidReplayInputError(
                f"The 'n_folds' parameter of TakeRateCounts must be an integer >= 1; got {n_folds!r}."
            )
        F = int(n_folds)
        fold = cls.folds(log, F, seed)
        reward = log.reward.astype(np.float64)

        def table(codes: NDArray[np.int32], n: int) -> NDArray[np.int64]:
            key = codes.astype(np.int64) * F + fold
            plays = np.bincount(key, reward, n * F)
            views = np.bincount(key, minlength=n * F).astype(np.float64)
            return np.rint(np.stack([plays, views], axis=1)).astype(np.int64).reshape(n, F, 2)

        return cls(F, seed, log.image_ids, table(log.image, len(log.image_ids)),
                   log.title_ids, table(log.title, len(log.title_ids)),
                   int(log.reward.sum()), log.n_rows)

    def merge(self, other: TakeRateCounts) -> TakeRateCounts:
        """The counts of both (exact)."""
        if (other.n_folds, other.seed) != (self.n_folds, self.seed):
            raise InvalidReplayInputError(
                "Only take-rate counts with the same folds and seed merge; got "
                f"{(self.n_folds, self.seed)} and {(other.n_folds, other.seed)}."
            )
        image_ids, image_counts = _union_counts(self.image_ids, self.image_counts,
                                                other.image_ids, other.image_counts)
        title_ids, title_counts = _union_counts(self.title_ids, self.title_counts,
                                                other.title_ids, other.title_counts)
        return TakeRateCounts(self.n_folds, self.seed, image_ids, image_counts, title_ids,
                              title_counts, self.plays + other.plays, self.rows + other.rows)

    def predict(self, log: ImpressionLog, *, prior_strength: float = 1.0) -> NDArray[np.float64]:
        """``q`` (n, k_max) for a chunk: each row's fold is predicted from the other folds."""
        F = self.n_folds
        fold = self.folds(log, F, self.seed)

        def aligned(ids: tuple[str, ...], counts: NDArray[np.int64],
                    target: tuple[str, ...]) -> NDArray[np.float64]:
            c = _aligned_counts(ids, counts, target).transpose(2, 1, 0)  # (2, F, n)
            return c.sum(axis=1, keepdims=True) - c if F > 1 else c

        img = aligned(self.image_ids, self.image_counts, log.image_ids)
        tit = aligned(self.title_ids, self.title_counts, log.title_ids)
        overall = self.plays / self.rows if self.rows else 0.0
        with np.errstate(invalid="ignore", divide="ignore"):
            tit_rate = np.where(tit[1] > 0, tit[0] / np.maximum(tit[1], 1), overall)
        a = float(prior_strength)
        cands = np.maximum(log.candidates, 0)
        prior = tit_rate[fold, log.title][:, None]
        num = img[0][fold[:, None], cands] + a * prior
        den = img[1][fold[:, None], cands] + a
        with np.errstate(invalid="ignore", divide="ignore"):
            q = np.where(den > 0, num / np.where(den > 0, den, 1.0), prior)
        return np.where(log.candidates >= 0, q, 0.0)
