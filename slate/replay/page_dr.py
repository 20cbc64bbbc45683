"""Page-aware doubly robust estimation: the marginalised page-aware weights corrected around a
cross-fitted, page-aware take model.

The take model ``q(title, image, S)`` predicts a title's reward from its own image and ``S``, the
number of its layout neighbours showing an image of the same visual group (the statistic the
page-aware weights marginalise over). It is a table of shrunk cell means: each
``(title, image, S)`` cell is shrunk towards its ``(title, image)`` mean, itself shrunk towards
the global mean. Pages are split into two folds by a hash of their id (of their member's id
with ``cluster="member"``); each fold's rows are predicted by the model fitted on the other
fold (cross-fitting), so a row's prediction never uses its own reward. Every piece of the
estimate is a sum over pages, so the bootstrap refits the model on every replicate's pages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import sparse

from slate.replay.estimators import (
    Contributions,
    MarginalizedNeighbourhood,
    ReplayData,
    image_groups,
    neighbour_rows,
)
from slate.replay.stats import _BOOTSTRAP_CELLS, poisson_binomial_pmf

if TYPE_CHECKING:
    from slate.replay.joint import ExplorationColumns

__all__ = ["PageAwareDoublyRobust", "page_folds"]

_HASH = np.uint64(0x9E3779B97F4A7C15)


def page_folds(data: ReplayData) -> NDArray[np.int64]:
    """Fold (0 or 1) of every row: a hash of its page id, or of its member's id when the
    independent units are members (``cluster="member"``), so a unit never spans both folds.

    Examples
    --------
    >>> import numpy as np
    >>> from slate.logs import read_impressions
    >>> from slate.logs.parquet import example_table
    >>> from slate.replay import ActionDistribution
    >>> log, _ = read_impressions(example_table())
    >>> data = ReplayData.build(log, ActionDistribution(prob_logged=np.full(4, 0.5)))
    >>> page_folds(data).shape
    (4,)
    """
    log = data.log
    unit = log.member_id if data.cluster_by == "member" else log.page_id
    h = np.asarray(unit).astype(np.int64).view(np.uint64) * _HASH
    h ^= h >> np.uint64(29)
    h *= _HASH
    return (h >> np.uint64(63)).astype(np.int64)


@dataclass(frozen=True, eq=False)
class _Terms:
    """The estimate as page sums: ``H`` (pages, 2 + 6G) holds per page ``[sum W r, rows,
    coef (fold 0 cells, fold 1 cells), rewards (fold 0, fold 1), counts (fold 0, fold 1)]``;
    ``ti`` maps every cell to its (title, image) code."""

    H: sparse.csr_array
    ti: NDArray[np.int64]
    n_ti: int
    smoothing: float

    @property
    def G(self) -> int:
        return len(self.ti)

    def values(self, T: NDArray[np.float64]) -> NDArray[np.float64]:
        """(B,) estimates from (B, columns) totals, the model refitted per fold."""
        G = self.G
        U = T[:, 0].copy()
        for f in (0, 1):
            other = 1 - f
            R = T[:, 2 + 2 * G + other * G: 2 + 2 * G + (other + 1) * G]
            N = T[:, 2 + 4 * G + other * G: 2 + 4 * G + (other + 1) * G]
            U += np.einsum("bg,bg->b", T[:, 2 + f * G: 2 + (f + 1) * G], self.q(R, N))
        V = T[:, 1]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(V != 0, U / np.where(V != 0, V, 1.0), np.nan)

    def q(self, R: NDArray[np.float64], N: NDArray[np.float64]) -> NDArray[np.float64]:
        """(B, G) shrunk cell means from (B, G) reward sums and counts."""
        a = self.smoothing
        B = R.shape[0]
        with np.errstate(invalid="ignore", divide="ignore"):
            glob = np.nan_to_num(R.sum(axis=1) / N.sum(axis=1))
        Rti = np.zeros((B, self.n_ti))
        Nti = np.zeros((B, self.n_ti))
        for b in range(B):
            Rti[b] = np.bincount(self.ti, R[b], self.n_ti)
            Nti[b] = np.bincount(self.ti, N[b], self.n_ti)
        qti = (Rti + a * glob[:, None]) / (Nti + a)
        return (R + a * qti[:, self.ti]) / (N + a)

    def bootstrap(self, n_bootstrap: int, seed: int | None,
                  clusters: NDArray[np.int64] | None) -> NDArray[np.float64]:
        """Replicates over clusters resampled exactly as ``bootstrap_ratio`` resamples them."""
        H = self.H
        if clusters is not None:
            C = int(clusters.max()) + 1 if len(clusters) else 0
            agg = sparse.csr_array((np.ones(len(clusters)), (clusters, np.arange(len(clusters)))),
                                   shape=(C, len(clusters)))
            H = sparse.csr_array(agg @ H)
        P = H.shape[0]
        out = np.full(n_bootstrap, np.nan)
        if P == 0 or n_bootstrap == 0:
            return out
        rng = np.random.default_rng(seed)
        HT = sparse.csr_array(H.T)
        chunk = max(1, _BOOTSTRAP_CELLS // P)
        for start in range(0, n_bootstrap, chunk):
            b = min(chunk, n_bootstrap - start)
            idx = rng.integers(0, P, size=(b, P))
            for s0 in range(0, b, 64):  # the model's tables are (replicates, cells)
                sub = idx[s0:s0 + 64]
                m = len(sub)
                flat = (sub + (np.arange(m) * P)[:, None]).ravel()
                counts = np.bincount(flat, minlength=m * P).reshape(m, P).astype(np.float64)
                out[start + s0:start + s0 + m] = self.values(np.asarray(HT @ counts.T).T)
        return out


class PageAwareDoublyRobust(MarginalizedNeighbourhood):
    """Page-aware doubly robust: the direct method under a page-aware take model, corrected by
    the marginalised page-aware weights on the model's residual at the logged (image, ``S``).

    .. math::

        \\hat V = \\frac1n \\sum_i \\Big[\\sum_{k, s} \\pi(k | x_i) P_\\pi(S_i = s | k)\\,
                  q(t_i, k, s) + w_i \\big(r_i - q(t_i, a_i, s_i)\\big)\\Big],

    with ``w_i`` the weight of :class:`~slate.replay.estimators.MarginalizedNeighbourhood`
    (unnormalised) and ``q`` the cross-fitted take model of :mod:`slate.replay.page_dr`. Since
    ``q`` of a row is fitted on the other fold's pages, the estimate is unbiased whenever the
    page-aware weights are (whatever the model), and its variance falls as far as the model
    explains the rewards. The bootstrap refits the model on every replicate
    (``interval_method`` ends in ``", model refit"``); the standard error holds it fixed.

    Parameters
    ----------
    groups, neighbours, exploration
        As for :class:`~slate.replay.estimators.MarginalizedNeighbourhood`.
    smoothing : float, default 5.0
        Pseudo-count of the shrinkage of the model's cell means towards their parents.
    """

    name = "page-aware-dr"
    long_name = "PageAwareDoublyRobust"
    fits_reward_model = True
    assumption = (
        "a title's reward depends on the page only through its own image and how many of its "
        "neighbours show an image of the same visual group; logging independent across titles "
        "(right propensities; the cross-fitted take model need not be right)"
    )

    def __init__(
        self, groups: ArrayLike | Mapping[str, int] | None = None,
        neighbours: str | Sequence[tuple[int, int]] = "row",
        exploration: ExplorationColumns | None = None, smoothing: float = 5.0,
    ) -> None:
        super().__init__(groups, neighbours, self_normalized=False, exploration=exploration)
        self.smoothing = float(smoothing)

    def terms(self, data: ReplayData) -> _Terms:
        """The estimate's page sums (see :class:`_Terms`)."""
        W = self.row_weights(data)
        log = data.log
        n, K = log.candidates.shape
        pi = data.need_probs("page-aware-dr")
        pi = pi[:, :K] if pi.shape[1] >= K else np.pad(pi, ((0, 0), (0, K - pi.shape[1])))
        code = image_groups(log, self.groups)  # type: ignore[arg-type]  # checked by row_weights
        cand_group = np.where(log.candidates >= 0, code[np.maximum(log.candidates, 0)], -1)
        nb = neighbour_rows(log, self.offsets)
        present = nb >= 0
        M = nb.shape[1]
        j = np.where(present, nb, 0)
        own = code[log.image]
        s_log = (present & (own[j] == own[:, None])).sum(axis=1)
        # P_pi(neighbour m in the group of my candidate k): (n, M, K)
        same = cand_group[j][:, :, :, None] == cand_group[:, None, None, :]  # (n, M, Kc, K)
        p = np.einsum("nmc,nmck->nmk", pi[j], same) * present[:, :, None]
        pmf = poisson_binomial_pmf(p.transpose(0, 2, 1).reshape(n * K, M)).reshape(n, K, M + 1)
        n_img = len(log.image_ids)
        ti_log = log.title.astype(np.int64) * n_img + log.image.astype(np.int64)
        ti_c = log.title.astype(np.int64)[:, None] * n_img + np.maximum(log.candidates, 0)
        key_log = ti_log * (M + 1) + s_log
        coef_dm = pi[:, :, None] * pmf * (log.candidates >= 0)[:, :, None]  # (n, K, M+1)
        key_dm = ti_c[:, :, None] * (M + 1) + np.arange(M + 1)
        rows_dm, kk, ss = np.nonzero(coef_dm)
        all_keys = np.concatenate([key_dm[rows_dm, kk, ss], key_log])
        keys, g = np.unique(all_keys, return_inverse=True)
        g = g.ravel()
        G = len(keys)
        g_dm, g_log = g[:len(rows_dm)], g[len(rows_dm):]
        fold = page_folds(data)
        page = log.page_index
        P = data.n_clusters
        r = data.reward
        rows = np.concatenate([rows_dm, np.arange(n)])
        cols = np.concatenate([g_dm, g_log]) + fold[rows] * G
        vals = np.concatenate([coef_dm[rows_dm, kk, ss], -W])
        C = sparse.coo_array((vals, (page[rows], cols + 2)), shape=(P, 2 + 6 * G))
        stat_r = sparse.coo_array((r, (page, 2 + 2 * G + fold * G + g_log)), shape=(P, 2 + 6 * G))
        stat_n = sparse.coo_array((np.ones(n), (page, 2 + 4 * G + fold * G + g_log)),
                                  shape=(P, 2 + 6 * G))
        UV = sparse.coo_array((np.r_[W * r, np.ones(n)], (np.r_[page, page],
                               np.r_[np.zeros(n, np.int64), np.ones(n, np.int64)])),
                              shape=(P, 2 + 6 * G))
        H = sparse.csr_array(C + stat_r + stat_n + UV)
        ti_codes, ti = np.unique(keys // (M + 1), return_inverse=True)
        return _Terms(H, ti.ravel().astype(np.int64), len(ti_codes), self.smoothing)

    def contributions(self, data: ReplayData, seed: int | None) -> Contributions:
        t = self.terms(data)
        G = t.G
        T = t.H.sum(axis=0)[None]
        q = [t.q(T[:, 2 + 2 * G + o * G: 2 + 2 * G + (o + 1) * G],
                 T[:, 2 + 4 * G + o * G: 2 + 4 * G + (o + 1) * G])[0] for o in (1, 0)]
        beta = np.concatenate([[1.0, 0.0], q[0], q[1], np.zeros(4 * G)])
        Hc = t.H.tocsc()
        U = np.asarray(Hc @ beta, dtype=np.float64)
        V = np.asarray(Hc[:, [1]].toarray(), dtype=np.float64).ravel()
        W = self.row_weights(data)
        return Contributions(U, V, None, None, W, W > 0)

    def refit_replicates(
        self, data: ReplayData, n_bootstrap: int, seed: int | None
    ) -> NDArray[np.float64] | None:
        return self.terms(data).bootstrap(n_bootstrap, seed, data.page_cluster)

    def __repr__(self) -> str:
        return (f"PageAwareDoublyRobust(neighbours={self.neighbours!r}, "
                f"smoothing={self.smoothing})")


def _register() -> None:
    from collections.abc import Callable
    from typing import cast

    from slate.replay.estimators import Estimator, register_estimator

    register_estimator(PageAwareDoublyRobust.long_name,
                       cast(Callable[..., Estimator], PageAwareDoublyRobust), ("page-aware-dr",))


_register()
