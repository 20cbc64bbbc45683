"""Compiled row checks for the log reader (numba): one pass per check instead of several
numpy passes over ``(n, k_max)`` arrays. Each kernel is a plain loop over rows."""

from __future__ import annotations

import numba
import numpy as np
from numpy.typing import NDArray

__all__ = ["candidate_checks", "duplicates_in_pages", "finite_rows", "remap"]


@numba.njit(cache=True, nogil=True)
def remap(idx: NDArray[np.int32], mapping: NDArray[np.int32]) -> NDArray[np.int32]:  # pragma: no cover
    """``mapping[idx]``, with ``idx == -1`` (null) giving ``-1``."""
    out = np.empty(len(idx), dtype=np.int32)
    for i in range(len(idx)):
        j = idx[i]
        out[i] = -1 if j < 0 else mapping[j]
    return out


@numba.njit(cache=True, nogil=True)
def candidate_checks(
    candidates: NDArray[np.int32], lengths: NDArray[np.int64], image: NDArray[np.int32]
) -> tuple[NDArray[np.int32], NDArray[np.bool_], NDArray[np.bool_]]:  # pragma: no cover
    """Per row: position of ``image`` among the candidates, whether it is there, and whether the
    candidate list is malformed (empty, a null id, or a repeated id)."""
    n = candidates.shape[0]
    shown = np.zeros(n, dtype=np.int32)
    found = np.zeros(n, dtype=np.bool_)
    malformed = np.zeros(n, dtype=np.bool_)
    for i in range(n):
        m = lengths[i]
        bad = m == 0
        s = -1
        target = image[i]
        for k in range(m):
            c = candidates[i, k]
            if c < 0:
                bad = True
                continue
            if c == target and s < 0:
                s = k
            for j in range(k):
                if candidates[i, j] == c:
                    bad = True
        malformed[i] = bad
        if s >= 0 and target >= 0:
            shown[i] = s
            found[i] = True
    return shown, found, malformed


@numba.njit(cache=True, nogil=True)
def duplicates_in_pages(
    order: NDArray[np.int64], page: NDArray[np.int64], key: NDArray[np.int64], n_keys: int,
    alive: NDArray[np.bool_],
) -> NDArray[np.bool_]:  # pragma: no cover
    """Rows whose ``key`` repeats that of an earlier alive row of the same page.

    ``order`` visits the rows page by page (each page contiguous) and, within a page, in input
    order, so the first row in input order is the one kept. ``0 <= key < n_keys``.
    """
    n = len(order)
    dup = np.zeros(len(page), dtype=np.bool_)
    seen = np.full(n_keys, -1, dtype=np.int64)
    run = -1
    last = 0
    for t in range(n):
        i = order[t]
        if t == 0 or page[i] != last:
            run += 1
            last = page[i]
        if not alive[i]:
            continue
        k = key[i]
        if seen[k] == run:
            dup[i] = True
        else:
            seen[k] = run
    return dup


@numba.njit(cache=True, nogil=True)
def finite_rows(x: NDArray[np.float32]) -> NDArray[np.bool_]:  # pragma: no cover
    """Per row: every entry finite."""
    n, d = x.shape
    out = np.ones(n, dtype=np.bool_)
    for i in range(n):
        for j in range(d):
            v = x[i, j]
            if not (v - v == 0.0):  # NaN or infinite
                out[i] = False
                break
    return out
