"""Compiled row checks for the log reader (numba): one pass per check instead of several
numpy passes over ``(n, k_max)`` arrays. Each kernel is a plain loop over rows."""

from __future__ import annotations

import numba
import numpy as np
from numpy.typing import NDArray

__all__ = [
    "candidate_checks",
    "duplicates_in_pages",
    "expand_sets",
    "finite_rows",
    "interleave_finite",
    "remap",
]


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


@numba.njit(cache=True, nogil=True)
def expand_sets(
    set_index: NDArray[np.int32], set_codes: NDArray[np.int32], set_lengths: NDArray[np.int64],
    image: NDArray[np.int32], cands: NDArray[np.int32], lengths: NDArray[np.int64],
    shown: NDArray[np.int32], found: NDArray[np.bool_],
) -> None:  # pragma: no cover
    """Fill rows of candidate codes from the distinct sets (``set_index`` -1: null, no
    candidates; ``set_codes`` padded with -1 to the width of ``cands``), their lengths, and the
    position of ``image`` among them (and whether it is there)."""
    n = len(set_index)
    k = cands.shape[1]
    for i in range(n):
        s = set_index[i]
        if s < 0:
            for j in range(k):
                cands[i, j] = -1
            lengths[i] = 0
            shown[i] = 0
            found[i] = False
            continue
        lengths[i] = set_lengths[s]
        for j in range(k):
            cands[i, j] = set_codes[s, j]
        target = image[i]
        pos = -1
        for j in range(k - 1, -1, -1):
            if set_codes[s, j] == target:
                pos = j
        ok = pos >= 0 and target >= 0
        shown[i] = pos if ok else 0
        found[i] = ok


@numba.njit(cache=True, nogil=True)
def interleave_finite(columns: tuple[NDArray[np.float32], ...], out: NDArray[np.float32]) -> NDArray[np.bool_]:  # pragma: no cover
    """Copy ``d`` feature columns into the rows of ``out`` (n, d), in cache-sized blocks, and say
    which rows are all finite."""
    n, d = out.shape
    ok = np.ones(n, dtype=np.bool_)
    for b0 in range(0, n, 1024):
        b1 = min(n, b0 + 1024)
        for j in range(d):
            column = columns[j]
            for i in range(b0, b1):
                v = column[i]
                out[i, j] = v
                if not (v - v == 0.0):
                    ok[i] = False
    return ok
