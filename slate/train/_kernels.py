"""Compiled folds of sufficient statistics over log rows, in row order.

Every sum is a running float64 sum over the rows in the order given (no reassociation: numba
without ``fastmath`` keeps IEEE order), so the same rows in the same order give the same bits
whatever the chunking around the call.
"""

from __future__ import annotations

import numba
import numpy as np
from numpy.typing import NDArray

__all__ = ["fold_rows"]


@numba.njit(cache=True, nogil=True)
def fold_rows(
    slots: NDArray[np.int64],
    x: NDArray[np.float32],
    reward: NDArray[np.float64],
    weight: NDArray[np.float64],
    explored: NDArray[np.bool_],
    bias: bool,
    xc: NDArray[np.int64],
    zc: NDArray[np.int64],
    counts: NDArray[np.float64],
    events: NDArray[np.int64],
    A: NDArray[np.float64],
    b: NDArray[np.float64],
    B: NDArray[np.float64],
    Z: NDArray[np.float64],
    c: NDArray[np.float64],
    totals: NDArray[np.float64],
) -> None:  # pragma: no cover - compiled
    """Add rows ``0..n-1`` in order.

    ``counts[a]`` holds ``(sum w, sum w r, sum w (1 - r), sum w^2, explored rows, sum r)``;
    ``events[a]`` the rows. With arm columns ``xc`` of the row vector ``e = [1 if bias] + x``:
    ``A[a]`` (upper triangle) ``sum w e_xc e_xc^T``, ``b[a]`` ``sum w r e_xc``; with shared
    columns ``zc``: ``B[a]`` ``sum w e_xc e_zc^T``, ``Z`` (upper triangle) ``sum w e_zc e_zc^T``,
    ``c`` ``sum w r e_zc``. ``totals`` holds ``(sum w, sum w r, sum w^2)`` over all rows.
    """
    n = len(slots)
    d = x.shape[1]
    da = len(xc)
    k = len(zc)
    width = d + (1 if bias else 0)
    e = np.empty(width)
    u = np.empty(da)
    v = np.empty(k)
    for i in range(n):
        a = slots[i]
        w = weight[i]
        r = reward[i]
        wr = w * r
        counts[a, 0] += w
        counts[a, 1] += wr
        counts[a, 2] += w * (1.0 - r)
        counts[a, 3] += w * w
        if explored[i]:
            counts[a, 4] += 1.0
        counts[a, 5] += r
        events[a] += 1
        totals[0] += w
        totals[1] += wr
        totals[2] += w * w
        if da == 0 and k == 0:
            continue
        if bias:
            e[0] = 1.0
            for j in range(d):
                e[j + 1] = x[i, j]
        else:
            for j in range(d):
                e[j] = x[i, j]
        for p in range(da):
            u[p] = e[xc[p]]
        for p in range(k):
            v[p] = e[zc[p]]
        for p in range(da):
            wu = w * u[p]
            b[a, p] += wu * r
            for q in range(p, da):
                A[a, p, q] += wu * u[q]
            for q in range(k):
                B[a, p, q] += wu * v[q]
        for p in range(k):
            wv = w * v[p]
            c[p] += wv * r
            for q in range(p, k):
                Z[p, q] += wv * v[q]
