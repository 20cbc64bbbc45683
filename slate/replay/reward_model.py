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
from scipy import sparse

from slate.logs.log import ImpressionLog
from slate.replay.policy import InvalidReplayInputError

__all__ = [
    "TakeRateCounts",
    "TakeRateFit",
    "fit_reward_model",
    "resolve_reward_model",
    "take_rate_model",
]


def take_rate_model(
    log: ImpressionLog, *, n_folds: int = 2, prior_strength: float = 1.0, seed: int | None = 0
) -> NDArray[np.float64]:
    """Cross-fitted, smoothed take rate of every candidate image on every row.

    ``q[i, k] = (plays(image) + a * rate(title)) / (impressions(image) + a)``, counted on the
    pages of the other folds (``n_folds=1``: on all pages). Padding gets 0. The same as
    ``TakeRateFit.from_log(log, ...).predict()``.

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
    return TakeRateFit.from_log(log, n_folds=n_folds, prior_strength=prior_strength,
                                seed=seed).predict()


def _sums(
    key: NDArray[np.int64], weights: NDArray[np.float64], n_folds: int, n: int
) -> NDArray[np.float64]:
    """(n_folds, n) sums of ``weights`` by ``key = fold * n + id``."""
    return np.asarray(np.bincount(key, weights, n_folds * n), dtype=np.float64).reshape(n_folds, n)


@dataclass(frozen=True, eq=False)
class TakeRateFit:
    """The take-rate model of :func:`take_rate_model` with the log it is fitted on, so that it
    can be refitted with the pages reweighted (a bootstrap replicate) and differentiated.

    The model is a function of per-fold sums over pages: plays and impressions of every image
    and of every title (its *sufficient statistics*). :meth:`page_statistics` gives them page by
    page, :meth:`predict_from` the predictions from (reweighted) totals, and
    :meth:`gradient` the derivative of a linear functional of the predictions with respect to
    the totals (for delta-method standard errors that include the model's own estimation
    error). Pages keep their fold in every replicate, so a page drawn twice is never used to
    predict itself.

    Attributes
    ----------
    log : ImpressionLog
        The log the model is fitted on (every row, decided by the target or not).
    n_folds : int
        Cross-fitting folds actually used (1 when the log has fewer pages than folds).
    prior_strength : float
    fold : ndarray (n,), int64
        Fold of every row (its page's fold).

    Examples
    --------
    >>> import numpy as np
    >>> from slate.logs import read_impressions
    >>> from slate.logs.parquet import example_table
    >>> log, _ = read_impressions(example_table())
    >>> fit = TakeRateFit.from_log(log, n_folds=1, prior_strength=0.0)
    >>> bool(np.array_equal(fit.predict(), take_rate_model(log, n_folds=1, prior_strength=0.0)))
    True
    >>> # page 0 counted twice, page 1 not: images seen only on page 1 get their title's rate
    >>> fit.predict(page_weights=np.array([2.0, 0.0])).tolist()
    [[1.0, 1.0], [0.0, 0.0], [1.0, 1.0], [0.0, 0.0]]
    """

    log: ImpressionLog
    n_folds: int
    prior_strength: float
    fold: NDArray[np.int64]

    @classmethod
    def from_log(
        cls, log: ImpressionLog, *, n_folds: int = 2, prior_strength: float = 1.0,
        seed: int | None = 0,
    ) -> TakeRateFit:
        """Assign the pages to folds (seeded permutation) and keep the log."""
        if not isinstance(n_folds, (int, np.integer)) or n_folds < 1:
            raise InvalidReplayInputError(
                f"The 'n_folds' parameter of take_rate_model must be an integer >= 1; got {n_folds!r}."
            )
        if not np.isfinite(prior_strength) or prior_strength < 0:
            raise InvalidReplayInputError(
                f"The 'prior_strength' parameter of take_rate_model must be >= 0; got {prior_strength!r}."
            )
        if n_folds == 1 or log.n_pages < n_folds:
            fold = np.zeros(log.n_rows, dtype=np.int64)
            n_folds = 1
        else:
            rng = np.random.default_rng(seed)
            page_fold = rng.permutation(log.n_pages) % n_folds
            fold = page_fold[log.page_index].astype(np.int64)
        return cls(log, int(n_folds), float(prior_strength), fold)

    @property
    def n_images(self) -> int:
        """Images in the log's vocabulary."""
        return len(self.log.image_ids)

    @property
    def n_titles(self) -> int:
        """Titles in the log's vocabulary."""
        return len(self.log.title_ids)

    @property
    def n_statistics(self) -> int:
        """Columns of :meth:`page_statistics`: ``2 F (n_images + n_titles)``."""
        return 2 * self.n_folds * (self.n_images + self.n_titles)

    def _split(self, totals: NDArray[np.float64]) -> tuple[NDArray[np.float64], ...]:
        """(B, n_statistics) totals -> image plays, image views (B, F, n_img), title plays,
        title views (B, F, n_tit)."""
        F, ni, nt = self.n_folds, self.n_images, self.n_titles
        B = totals.shape[0]
        a, b = F * ni, F * (ni + nt)
        return (totals[:, :a].reshape(B, F, ni), totals[:, a:2 * a].reshape(B, F, ni),
                totals[:, 2 * a:2 * a + F * nt].reshape(B, F, nt),
                totals[:, 2 * a + F * nt:2 * b].reshape(B, F, nt))

    def page_statistics(self) -> sparse.csr_array:
        """(n_pages, n_statistics) sparse: per page, ``[image plays (fold, image) | image
        impressions | title plays (fold, title) | title impressions]``."""
        log = self.log
        F, ni, nt = self.n_folds, self.n_images, self.n_titles
        img = self.fold * ni + log.image
        tit = self.fold * nt + log.title
        reward = log.reward.astype(np.float64)
        ones = np.ones(log.n_rows)
        cols = np.concatenate([img, F * ni + img, 2 * F * ni + tit, 2 * F * ni + F * nt + tit])
        rows = np.tile(log.page_index, 4)
        vals = np.concatenate([reward, ones, reward, ones])
        return sparse.csr_array(sparse.coo_array((vals, (rows, cols)),
                                                 shape=(log.n_pages, self.n_statistics)))

    def _trained(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        """Per-fold sums -> the sums each fold is predicted from (the other folds)."""
        return x.sum(axis=1, keepdims=True) - x if self.n_folds > 1 else x

    def _parts(
        self, totals: NDArray[np.float64], fold: NDArray[np.int64], image: NDArray[np.int64],
        title: NDArray[np.int64],
    ) -> tuple[NDArray[np.float64], ...]:
        """Numerator pieces of ``q`` at keys (fold, image, title): image plays, denominator,
        the title's rate, the title's impressions, and the overall rate (B,)."""
        ip, iv, tp, tv = self._split(totals)
        overall = tp.sum(axis=(1, 2)) / np.maximum(tv.sum(axis=(1, 2)), 1e-300)
        ip, iv, tp, tv = self._trained(ip), self._trained(iv), self._trained(tp), self._trained(tv)
        tv_g = tv[:, fold, title]
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = np.where(tv_g > 0, tp[:, fold, title] / np.where(tv_g > 0, tv_g, 1.0),
                            overall[:, None])
        den = iv[:, fold, image] + self.prior_strength
        return ip[:, fold, image], den, rate, tv_g, overall

    def predict_from(
        self, totals: NDArray[np.float64], fold: NDArray[np.int64], image: NDArray[np.int64],
        title: NDArray[np.int64],
    ) -> NDArray[np.float64]:
        """(B, G) predictions at G keys (row's fold, candidate image, row's title) from B
        vectors of totals of :meth:`page_statistics` (e.g. reweighted by bootstrap counts)."""
        plays, den, rate, _, _ = self._parts(np.atleast_2d(totals), fold, image, title)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, (plays + self.prior_strength * rate) / np.where(den > 0, den, 1.0),
                            rate)

    def gradient(
        self, totals: NDArray[np.float64], fold: NDArray[np.int64], image: NDArray[np.int64],
        title: NDArray[np.int64], alpha: NDArray[np.float64],
    ) -> NDArray[np.float64]:
        """(n_statistics,) gradient of ``sum_g alpha[g] q[g]`` with respect to the totals
        (one vector of totals, shape (n_statistics,))."""
        F, ni, nt = self.n_folds, self.n_images, self.n_titles
        a = self.prior_strength
        plays, den, rate, tv_g, overall = (x[0] for x in self._parts(totals[None], fold, image, title))
        pos = den > 0
        safe = np.where(pos, den, 1.0)
        q = np.where(pos, (plays + a * rate) / safe, rate)
        d_plays = np.where(pos, alpha / safe, 0.0)
        d_views = np.where(pos, -alpha * q / safe, 0.0)
        d_rate = alpha * np.where(pos, a / safe, 1.0)
        g_ip = _sums(fold * ni + image, d_plays, F, ni)
        g_iv = _sums(fold * ni + image, d_views, F, ni)
        tv = self._split(totals[None])[3]
        seen = tv_g > 0
        key = fold * nt + title
        with np.errstate(invalid="ignore", divide="ignore"):
            inv = np.where(seen, 1.0 / np.where(seen, tv_g, 1.0), 0.0)
        g_tp = _sums(key, np.where(seen, d_rate * inv, 0.0), F, nt)
        g_tv = _sums(key, np.where(seen, -d_rate * rate * inv, 0.0), F, nt)
        if F > 1:  # a fold is predicted from the others: a statistic of fold f feeds folds != f
            g_ip, g_iv = g_ip.sum(0) - g_ip, g_iv.sum(0) - g_iv
            g_tp, g_tv = g_tp.sum(0) - g_tp, g_tv.sum(0) - g_tv
        unseen = float(d_rate[~seen].sum())  # titles never seen in training: the overall rate
        if unseen:
            n_all = max(float(tv.sum()), 1e-300)
            g_tp = g_tp + unseen / n_all
            g_tv = g_tv - unseen * overall / n_all
        return np.concatenate([g_ip.ravel(), g_iv.ravel(), g_tp.ravel(), g_tv.ravel()])

    def predict(self, page_weights: NDArray[np.float64] | None = None) -> NDArray[np.float64]:
        """``q`` (n, k_max) on every row of the log, the pages counted with ``page_weights``
        (n_pages,) (default 1 each: :func:`take_rate_model`)."""
        log = self.log
        F, ni, nt = self.n_folds, self.n_images, self.n_titles
        fold = self.fold
        reward = log.reward.astype(np.float64)
        img_key = fold * ni + log.image
        tit_key = fold * nt + log.title
        if page_weights is None:
            img_plays = np.bincount(img_key, reward, F * ni).reshape(F, ni)
            img_views = np.bincount(img_key, minlength=F * ni).astype(float).reshape(F, ni)
            tit_plays = np.bincount(tit_key, reward, F * nt).reshape(F, nt)
            tit_views = np.bincount(tit_key, minlength=F * nt).astype(float).reshape(F, nt)
            overall = reward.mean() if log.n_rows else 0.0
        else:
            c = np.asarray(page_weights, dtype=np.float64)
            if c.shape != (log.n_pages,):
                raise InvalidReplayInputError(
                    f"The 'page_weights' of TakeRateFit.predict must have shape ({log.n_pages},); "
                    f"got {c.shape} instead."
                )
            cr = c[log.page_index]
            img_plays = np.bincount(img_key, cr * reward, F * ni).reshape(F, ni)
            img_views = np.bincount(img_key, cr, F * ni).reshape(F, ni)
            tit_plays = np.bincount(tit_key, cr * reward, F * nt).reshape(F, nt)
            tit_views = np.bincount(tit_key, cr, F * nt).reshape(F, nt)
            total = float(cr.sum())
            overall = float(cr @ reward) / total if total > 0 else 0.0
        if F > 1:  # train on the other folds
            img_plays = img_plays.sum(0) - img_plays
            img_views = img_views.sum(0) - img_views
            tit_plays = tit_plays.sum(0) - tit_plays
            tit_views = tit_views.sum(0) - tit_views
        with np.errstate(invalid="ignore", divide="ignore"):
            tit_rate = np.where(tit_views > 0, tit_plays / np.where(tit_views > 0, tit_views, 1.0),
                                overall)
        a = self.prior_strength
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


def fit_reward_model(
    model: Any, log: ImpressionLog, seed: int | None, *, refit: bool = True
) -> TakeRateFit | NDArray[np.float64]:
    """What :func:`slate.replay.evaluate` hands the estimators: the refittable
    :class:`TakeRateFit` for ``"take_rate"`` (or a ``TakeRateFit`` given, fitted on ``log``) when
    ``refit``, else the predictions (:func:`resolve_reward_model`)."""
    if isinstance(model, TakeRateFit):
        if model.log.n_rows != log.n_rows or not np.array_equal(model.log.page_id, log.page_id):
            raise InvalidReplayInputError(
                "The 'reward_model' TakeRateFit must be fitted on the evaluated log; got one of "
                f"{model.log.n_rows} rows for a log of {log.n_rows}."
            )
        return model if refit else model.predict()
    if refit and isinstance(model, str) and model == "take_rate":
        return TakeRateFit.from_log(log, seed=seed)
    return resolve_reward_model(model, log, seed)


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
        from slate.replay._exact import counter_uniform, seed_key

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
