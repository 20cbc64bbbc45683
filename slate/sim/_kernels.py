"""Numba kernel behind the page effect: layout-weighted visual similarity to neighbours.

A page's pairs are the same for every page of a batch (one homepage grid), so the kernel walks
pages and pairs once, reading the two images' unit embeddings by global index: no
``(pages, pairs, dim)`` temporary is built. Compiled on first use, cached on disk.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def neighbour_similarity(embeddings, own, other, pairs, weights, same):
    """Crowding of every slot and the weighted similarity of every page.

    Parameters
    ----------
    embeddings : (N, D) float64, unit rows
    own : (B, P) int64
        Global image shown in each slot (the slot whose crowding is measured).
    other : (B, P) int64
        Global image of each slot as seen by its neighbours (``own`` for a real page; a logged
        page when ``own`` swaps in counterfactual images one slot at a time).
    pairs : (n_pairs, 2) int64
    weights : (n_pairs,) float64
    same : bool
        True when ``other`` is ``own`` (skips the second pass of dot products).

    Returns
    -------
    crowd : (B, P) float64
        ``crowd[b, i] = sum over pairs (i, j) of w * max(0, <e[own[b, i]], e[other[b, j]]>)``.
    page : (B,) float64
        ``sum_pairs w * max(0, <e[own[b, a]], e[own[b, c]]>) / sum_pairs w`` (0 without pairs).
    """
    n_pages, n_slots = own.shape
    dim = embeddings.shape[1]
    n_pairs = pairs.shape[0]
    crowd = np.zeros((n_pages, n_slots))
    page = np.zeros(n_pages)
    total_w = 0.0
    for p in range(n_pairs):
        total_w += weights[p]
    for b in range(n_pages):
        acc = 0.0
        for p in range(n_pairs):
            i = pairs[p, 0]
            j = pairs[p, 1]
            w = weights[p]
            gi = own[b, i]
            gj = own[b, j]
            s = 0.0
            for d in range(dim):
                s += embeddings[gi, d] * embeddings[gj, d]
            if s < 0.0:
                s = 0.0
            acc += w * s
            if same:
                crowd[b, i] += w * s
                crowd[b, j] += w * s
            else:
                oi = other[b, i]
                oj = other[b, j]
                s1 = 0.0
                s2 = 0.0
                for d in range(dim):
                    s1 += embeddings[gi, d] * embeddings[oj, d]
                    s2 += embeddings[gj, d] * embeddings[oi, d]
                if s1 > 0.0:
                    crowd[b, i] += w * s1
                if s2 > 0.0:
                    crowd[b, j] += w * s2
        if total_w > 0.0:
            page[b] = acc / total_w
    return crowd, page
