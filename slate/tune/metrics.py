"""Page diversity of decisions on logged pages (churn comes from :mod:`slate.replay.metrics`).

A page's *similarity* is the layout-weighted mean visual similarity of the images shown in
interacting positions, ``sum_p w_p max(0, cos(e_i, e_j)) / sum_p w_p``; *diversity* is one minus
its mean over pages (pages without interacting positions are left out). This is the definition
the simulator uses for its ground truth (:class:`slate.sim.PolicyValue`), so estimated and true
diversity are comparable. Under an exploration rate ``eps`` every title shows a uniformly random
candidate with probability ``eps``, independently; the expected similarity of a pair is then
exact (:class:`ExplorationSimilarity`).

:func:`pair_similarity` and :func:`page_diversity` live in :mod:`slate.replay.metrics` (replay
computes the same diversity of a target on logged pages); they are re-exported here.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from slate._internal.similarity import PAIR_CHUNK, diversity_from_pairs
from slate.page.similarity import positive_cosine
from slate.replay.metrics import page_diversity, pair_similarity

__all__ = ["ExplorationSimilarity", "page_diversity", "pair_similarity"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


class ExplorationSimilarity:
    """Exact expected page diversity when each title explores uniformly with probability ``eps``.

    For a pair ``(i, j)`` with greedy images ``a, b`` and candidate sets ``A, B``::

        E[s] = (1-eps)^2 s(a, b) + (1-eps) eps mean_l s(a, l) + eps (1-eps) mean_k s(k, b)
               + eps^2 mean_{k, l} s(k, l)

    The row means, column means and the total mean of every pair's similarity matrix are
    computed once (they do not depend on the setting) and reused by every point.
    """

    def __init__(
        self,
        candidates: NDArray[np.int32],
        vectors: FloatArray,
        pair_i: IntArray,
        pair_j: IntArray,
    ) -> None:
        n_pairs = len(pair_i)
        k = candidates.shape[1]
        self.row_mean = np.zeros((n_pairs, k))
        self.col_mean = np.zeros((n_pairs, k))
        self.mean = np.zeros(n_pairs)
        step = max(1, PAIR_CHUNK // max(k * k, 1))
        for lo in range(0, n_pairs, step):
            hi = min(lo + step, n_pairs)
            ci = candidates[pair_i[lo:hi]].astype(np.int64)
            cj = candidates[pair_j[lo:hi]].astype(np.int64)
            mi, mj = ci >= 0, cj >= 0
            vi = vectors[np.maximum(ci, 0)] * mi[:, :, None]
            vj = vectors[np.maximum(cj, 0)] * mj[:, :, None]
            s = positive_cosine(np.einsum("pkd,pld->pkl", vi, vj))
            ni = mi.sum(axis=1).astype(np.float64)
            nj = mj.sum(axis=1).astype(np.float64)
            self.row_mean[lo:hi] = s.sum(axis=2) / nj[:, None]
            self.col_mean[lo:hi] = s.sum(axis=1) / ni[:, None]
            self.mean[lo:hi] = s.sum(axis=(1, 2)) / (ni * nj)
        self.pair_i = pair_i
        self.pair_j = pair_j

    def diversity(
        self,
        images: IntArray,
        choice: IntArray,
        eps: float,
        vectors: FloatArray,
        pair_w: FloatArray,
        pair_page: IntArray,
        n_pages: int,
    ) -> float:
        """Expected page diversity of greedy ``choice`` (positions) / ``images`` (codes)."""
        i, j = self.pair_i, self.pair_j
        greedy = pair_similarity(images[i], images[j], vectors)
        p = np.arange(len(i))
        e = float(eps)
        expected = (
            (1 - e) ** 2 * greedy
            + (1 - e) * e * self.row_mean[p, choice[i]]
            + e * (1 - e) * self.col_mean[p, choice[j]]
            + e * e * self.mean
        )
        return diversity_from_pairs(expected, pair_w, pair_page, n_pages)
