"""Exact, order-independent sums of float64 values, and counter-based random numbers.

A float64 ``x`` is an integer multiple of ``2**-1127`` (``x = m * 2**e`` with a 53-bit integer
``m`` and ``e >= -1074 - 53``), so the sum of any floats is an integer multiple of ``2**-1127``
too. An *accumulator* is an ``int64`` array of :data:`N_BINS` "digits" in base ``2**32`` of that
integer (a long accumulator in Kulisch's sense): adding a float adds its mantissa, shifted, to
three digits. Integer addition is associative, so a sum does not depend on the order of the
terms, nor on how they were split among partitions: merging two accumulators is adding them.
:func:`to_int` gives the exact sum as a Python integer (in units of ``2**-1127``).

The random numbers are a hash of a counter (SplitMix64's finalizer, Steele, Lea & Flood 2014),
so the number drawn for a page depends only on the seed, the page id and the replicate, not on
which partition or chunk the page is in.
"""

from __future__ import annotations

import math
from typing import cast

import numba
import numpy as np
from numpy.typing import NDArray

__all__ = [
    "N_BINS",
    "SCALE_BITS",
    "accumulate",
    "accumulate_ratio_terms",
    "accumulate_weighted",
    "accumulate_window",
    "counter_uniform",
    "new",
    "normalize",
    "poisson_bootstrap",
    "poisson_bootstrap_grouped",
    "ratios",
    "seed_key",
    "to_int",
    "window_of",
    "window_to_ints",
]

SCALE_BITS = 1127
"""Accumulators count units of ``2**-SCALE_BITS``."""
N_BINS = 68
"""Digits (base ``2**32``) of an accumulator: enough for any finite float64 sum."""

_MASK32 = 0xFFFFFFFF
_TWO53 = 9007199254740992.0
_POISSON1_CDF = np.cumsum([math.exp(-1.0) / math.factorial(k) for k in range(24)])
_POISSON1_CDF[-1] = 1.0


def new(*shape: int) -> NDArray[np.int64]:
    """A zero accumulator (or an array of them, ``shape + (N_BINS,)``)."""
    return np.zeros((*shape, N_BINS), dtype=np.int64)


@numba.njit(cache=True, nogil=True, inline="always")
def _add_scaled(acc: NDArray[np.int64], mi: np.int64, shift: np.int64) -> None:  # pragma: no cover
    """Add ``mi * 2**(shift - SCALE_BITS)`` for an integer ``|mi| < 2**57``, ``shift >= 0``."""
    b = shift >> 5
    s = shift & 31
    neg = mi < 0
    a = -mi if neg else mi
    t0 = (a & _MASK32) << s
    t1 = (a >> 32) << s
    d0 = t0 & _MASK32
    d1 = (t0 >> 32) + (t1 & _MASK32)
    d2 = t1 >> 32
    if neg:
        acc[b] -= d0
        acc[b + 1] -= d1
        acc[b + 2] -= d2
    else:
        acc[b] += d0
        acc[b + 1] += d1
        acc[b + 2] += d2


@numba.njit(cache=True, nogil=True, inline="always")
def _split(x: float) -> tuple[np.int64, np.int64]:  # pragma: no cover - compiled
    """``x = mi * 2**(shift - SCALE_BITS)`` with an integer ``|mi| < 2**53``."""
    if x == 0.0:
        return np.int64(0), np.int64(0)
    m, e = math.frexp(x)
    return np.int64(m * _TWO53), np.int64(e + 1074)  # (e - 53) + SCALE_BITS >= 1


@numba.njit(cache=True, nogil=True, inline="always")
def _add(acc: NDArray[np.int64], x: float) -> None:  # pragma: no cover - compiled
    if x != 0.0:
        mi, shift = _split(x)
        _add_scaled(acc, mi, shift)


@numba.njit(cache=True, nogil=True)
def normalize(acc: NDArray[np.int64]) -> None:  # pragma: no cover - compiled
    """Propagate carries so that every digit but the last is in ``[0, 2**32)`` (in place; the
    value is unchanged). Each digit can then take ``2**29`` more additions without overflow."""
    flat = acc.reshape(-1, acc.shape[-1])
    for r in range(flat.shape[0]):
        for j in range(flat.shape[1] - 1):
            carry = flat[r, j] >> 32
            flat[r, j] -= carry << 32
            flat[r, j + 1] += carry


@numba.njit(cache=True, nogil=True)
def accumulate(acc: NDArray[np.int64], values: NDArray[np.float64]) -> bool:  # pragma: no cover
    """Add every value to ``acc``; False (nothing added) when a value is not finite."""
    for i in range(len(values)):
        if not np.isfinite(values[i]):
            return False
    for i in range(len(values)):
        _add(acc, values[i])
        if (i & 0xFFFFFFF) == 0xFFFFFFF:
            normalize(acc)
    normalize(acc)
    return True


@numba.njit(cache=True, nogil=True)
def accumulate_weighted(
    acc: NDArray[np.int64], values: NDArray[np.float64], weights: NDArray[np.float64]
) -> bool:  # pragma: no cover - compiled
    """Add ``values * weights`` (products rounded to float64, then summed exactly)."""
    for i in range(len(values)):
        if not np.isfinite(values[i] * weights[i]):
            return False
    for i in range(len(values)):
        _add(acc, values[i] * weights[i])
    normalize(acc)
    return True


@numba.njit(cache=True, nogil=True, inline="always")
def _add_at(acc: NDArray[np.int64], r: np.int64, x: float) -> None:  # pragma: no cover
    """``acc[r] += x`` for a 2-d array of accumulators (no view created)."""
    if x != 0.0:
        m, e = math.frexp(x)
        mi = np.int64(m * _TWO53)
        shift = np.int64(e + 1074)
        b = shift >> 5
        s = shift & 31
        a = -mi if mi < 0 else mi
        t0 = (a & _MASK32) << s
        t1 = (a >> 32) << s
        d0 = t0 & _MASK32
        d1 = (t0 >> 32) + (t1 & _MASK32)
        d2 = t1 >> 32
        if mi < 0:
            acc[r, b] -= d0
            acc[r, b + 1] -= d1
            acc[r, b + 2] -= d2
        else:
            acc[r, b] += d0
            acc[r, b + 1] += d1
            acc[r, b + 2] += d2


@numba.njit(cache=True, nogil=True)
def accumulate_ratio_terms(
    acc: NDArray[np.int64], group: NDArray[np.int64], u: NDArray[np.float64],
    v: NDArray[np.float64], w: NDArray[np.float64],
) -> bool:  # pragma: no cover - compiled
    """By group, the terms of a ratio estimate: add ``u``, ``v``, ``u*u``, ``u*v``, ``v*v``,
    ``w``, ``w*w`` of row ``i`` (products rounded to float64) to ``acc[group[i], 0..6]``
    (``acc`` of shape ``(n_groups, 7, N_BINS)``); False (nothing added) when a term is not
    finite."""
    n = len(u)
    for i in range(n):
        if not (np.isfinite(u[i] * u[i]) and np.isfinite(v[i] * v[i])
                and np.isfinite(u[i] * v[i]) and np.isfinite(w[i] * w[i])):
            return False
    flat = acc.reshape(-1, acc.shape[-1])
    for i in range(n):
        r = group[i] * 7
        ui, vi, wi = u[i], v[i], w[i]
        _add_at(flat, r, ui)
        _add_at(flat, r + 1, vi)
        _add_at(flat, r + 2, ui * ui)
        _add_at(flat, r + 3, ui * vi)
        _add_at(flat, r + 4, vi * vi)
        _add_at(flat, r + 5, wi)
        _add_at(flat, r + 6, wi * wi)
        if (i & 0x7FFFFFF) == 0x7FFFFFF:
            normalize(acc)
    normalize(acc)
    return True


@numba.njit(cache=True, nogil=True)
def window_of(values: NDArray[np.float64]) -> tuple[np.int64, np.int64]:  # pragma: no cover
    """The digits ``[lo, hi)`` that exact sums of ``values`` (a 2-d array) can touch: adding a
    float touches three digits from ``(e + 1074) >> 5``; ``(0, 0)`` when every value is 0.
    Sums of up to ``2**38`` such values fit, the top digit holding the signed carry."""
    lo = np.int64(N_BINS)
    hi = np.int64(0)
    flat = values.reshape(-1)
    for i in range(len(flat)):
        x = flat[i]
        if x != 0.0 and np.isfinite(x):
            b = _split(x)[1] >> 5
            if b < lo:
                lo = b
            if b + 3 > hi:
                hi = b + 3
    if hi == 0:
        return np.int64(0), np.int64(0)
    return lo, min(hi, np.int64(N_BINS))


@numba.njit(cache=True, nogil=True)
def accumulate_window(
    acc: NDArray[np.int64], lo: np.int64, group: NDArray[np.int64], values: NDArray[np.float64]
) -> bool:  # pragma: no cover - compiled
    """By group, exactly: add ``values[i, c]`` to ``acc[group[i], c]``, an accumulator of the
    digits ``[lo, lo + W)`` only (``acc`` of shape ``(n_groups, C, W)``; the window must hold
    every value, see :func:`window_of`); False (nothing added) when a value is not finite."""
    n, C = values.shape
    for i in range(n):
        for c in range(C):
            if not np.isfinite(values[i, c]):
                return False
    W = acc.shape[-1]
    flat = acc.reshape(-1, W)
    base = np.int64(32) * lo
    for i in range(n):
        for c in range(C):
            x = values[i, c]
            if x == 0.0:
                continue
            mi, shift = _split(x)
            shift -= base
            r = group[i] * C + c
            b = shift >> 5
            s = shift & 31
            a = -mi if mi < 0 else mi
            t0 = (a & _MASK32) << s
            t1 = (a >> 32) << s
            d0 = t0 & _MASK32
            d1 = (t0 >> 32) + (t1 & _MASK32)
            d2 = t1 >> 32
            if mi < 0:
                flat[r, b] -= d0
                flat[r, b + 1] -= d1
                if b + 2 < W:
                    flat[r, b + 2] -= d2
            else:
                flat[r, b] += d0
                flat[r, b + 1] += d1
                if b + 2 < W:
                    flat[r, b + 2] += d2
        if (i & 0x3FFFFFF) == 0x3FFFFFF:
            normalize(flat)
    normalize(flat)
    return True


def window_to_ints(acc: NDArray[np.int64], lo: int) -> NDArray[np.object_]:
    """The exact sums held by windowed accumulators (digits ``[lo, lo + W)``, last axis), as
    Python integers in units of ``2**-SCALE_BITS`` (an object array of shape
    ``acc.shape[:-1]``).

    Examples
    --------
    >>> import numpy as np
    >>> values = np.array([[1e16], [1.0], [-1e16], [0.25]])
    >>> lo, hi = window_of(values)
    >>> acc = np.zeros((1, 1, hi - lo), np.int64)
    >>> accumulate_window(acc, lo, np.zeros(4, np.int64), values)
    True
    >>> int(window_to_ints(acc, lo)[0, 0]) / 2**SCALE_BITS, hi - lo < N_BINS
    (1.25, True)
    """
    total = np.zeros(acc.shape[:-1], dtype=object)
    total[...] = 0
    for j in range(acc.shape[-1] - 1, -1, -1):
        total = (total << 32) + acc[..., j].astype(object)
    return np.asarray(total << (32 * int(lo)), dtype=object)


def to_int(acc: NDArray[np.int64]) -> int:
    """The exact sum held by an accumulator, in units of ``2**-SCALE_BITS``.

    Examples
    --------
    >>> import numpy as np
    >>> acc = new()
    >>> _ = accumulate(acc, np.array([1e16, 1.0, -1e16, 0.25]))
    >>> to_int(acc) / 2**SCALE_BITS   # plain float summation gives 0.25 here
    1.25
    """
    total = 0
    for j in range(acc.shape[-1] - 1, -1, -1):
        total = (total << 32) + int(acc[j])
    return total


@numba.njit(cache=True, nogil=True, inline="always")
def _mix(z: np.uint64) -> np.uint64:  # pragma: no cover - compiled
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@numba.njit(cache=True, nogil=True)
def counter_uniform(
    key: np.uint64, a: NDArray[np.int64], b: NDArray[np.int64]
) -> NDArray[np.float64]:  # pragma: no cover - compiled
    """Uniform numbers in [0, 1), one per ``(a[i], b[i])``: a hash of the key and the pair."""
    out = np.empty(len(a), dtype=np.float64)
    for i in range(len(a)):
        h = _mix(_mix(key ^ np.uint64(a[i])) ^ np.uint64(b[i]))
        out[i] = np.float64(h >> np.uint64(11)) * (1.0 / _TWO53)
    return out


@numba.njit(cache=True, nogil=True)
def poisson_bootstrap(
    key: np.uint64, pages: NDArray[np.int64], U: NDArray[np.float64], V: NDArray[np.float64],
    acc_u: NDArray[np.int64], acc_v: NDArray[np.int64], cdf: NDArray[np.float64],
) -> None:  # pragma: no cover - compiled
    """Poisson(1) bootstrap: replicate ``b`` adds ``c * U[p]`` and ``c * V[p]`` (exactly) for
    each page ``p``, ``c`` a Poisson(1) count drawn from a hash of ``(key, page id, b)``; counts
    above 23 (probability < 1e-23) are capped."""
    n_boot = acc_u.shape[0]
    n = len(pages)
    top = len(cdf) - 1
    base = np.empty(n, dtype=np.uint64)
    mu = np.empty(n, dtype=np.int64)
    su = np.empty(n, dtype=np.int64)
    mv = np.empty(n, dtype=np.int64)
    sv = np.empty(n, dtype=np.int64)
    for p in range(n):
        base[p] = _mix(key ^ np.uint64(pages[p]))
        mu[p], su[p] = _split(U[p])
        mv[p], sv[p] = _split(V[p])
    for b in range(n_boot):  # one replicate at a time: its two accumulators stay in cache
        au = acc_u[b]
        av = acc_v[b]
        for p in range(n):
            h = _mix(base[p] ^ np.uint64(b))
            x = np.float64(h >> np.uint64(11)) * (1.0 / _TWO53)
            c = 0
            while c < top and x >= cdf[c]:
                c += 1
            if c:  # c * mantissa < 2**58: exact
                _add_scaled(au, c * mu[p], su[p])
                _add_scaled(av, c * mv[p], sv[p])
            if (p & 0xFFFFFFF) == 0xFFFFFFF:
                normalize(au)
                normalize(av)
    normalize(acc_u)
    normalize(acc_v)


@numba.njit(cache=True, nogil=True)
def poisson_bootstrap_grouped(
    key: np.uint64, pages: NDArray[np.int64], cluster: NDArray[np.int64],
    group: NDArray[np.int64], u: NDArray[np.float64], v: NDArray[np.float64],
    acc: NDArray[np.int64], cdf: NDArray[np.float64],
) -> None:  # pragma: no cover - compiled
    """The Poisson(1) bootstrap of :func:`poisson_bootstrap` by group: replicate ``b`` adds
    ``c * u[i]`` and ``c * v[i]`` (exactly) to ``acc[b, group[i], 0]`` and ``acc[b, group[i],
    1]`` for each row ``i``, ``c`` the count of its page ``pages[cluster[i]]`` (the same count
    :func:`poisson_bootstrap` draws for that page, key and replicate). ``acc`` has shape
    ``(n_bootstrap, n_groups, 2, N_BINS)``. Work: ``n_bootstrap x (pages + rows)``."""
    n_boot = acc.shape[0]
    P = len(pages)
    n = len(u)
    top = len(cdf) - 1
    base = np.empty(P, dtype=np.uint64)
    for p in range(P):
        base[p] = _mix(key ^ np.uint64(pages[p]))
    mu = np.empty(n, dtype=np.int64)
    su = np.empty(n, dtype=np.int64)
    mv = np.empty(n, dtype=np.int64)
    sv = np.empty(n, dtype=np.int64)
    for i in range(n):
        mu[i], su[i] = _split(u[i])
        mv[i], sv[i] = _split(v[i])
    counts = np.empty(P, dtype=np.int64)
    for b in range(n_boot):  # one replicate at a time: its accumulators stay in cache
        for p in range(P):
            h = _mix(base[p] ^ np.uint64(b))
            x = np.float64(h >> np.uint64(11)) * (1.0 / _TWO53)
            c = 0
            while c < top and x >= cdf[c]:
                c += 1
            counts[p] = c
        ab = acc[b]
        for i in range(n):
            c = counts[cluster[i]]
            if c:  # c * mantissa < 2**58: exact
                g = group[i]
                if mu[i] != 0:
                    _add_scaled(ab[g, 0], c * mu[i], su[i])
                if mv[i] != 0:
                    _add_scaled(ab[g, 1], c * mv[i], sv[i])
            if (i & 0x7FFFFFF) == 0x7FFFFFF:
                normalize(ab)
        normalize(ab)


@numba.njit(cache=True, nogil=True)
def _float_parts(acc: NDArray[np.int64]) -> tuple[float, float, np.int64]:  # pragma: no cover
    """``sign * m * 2**(e - SCALE_BITS)`` ~ the sum in a normalized accumulator, with ``m`` the
    top 96 bits as a float (rounded, deterministically: a normalized accumulator's digits are
    unique for its sum)."""
    d = acc.copy()
    sign = 1.0
    if d[-1] < 0:
        for j in range(len(d)):
            d[j] = -d[j]
        normalize(d)
        sign = -1.0
    h = len(d) - 1
    while h >= 0 and d[h] == 0:
        h -= 1
    if h < 0:
        return 0.0, 0.0, np.int64(0)
    lo = max(h - 2, 0)
    m = 0.0
    for j in range(h, lo - 1, -1):
        m = m * 4294967296.0 + np.float64(d[j])
    return sign, m, np.int64(32 * lo)


@numba.njit(cache=True, nogil=True)
def ratios(
    num: NDArray[np.int64], den: NDArray[np.int64]
) -> NDArray[np.float64]:  # pragma: no cover - compiled
    """``num[r] / den[r]`` for normalized accumulators of shape ``(R, N_BINS)``, to about 1e-16
    relative and NaN where ``den[r]`` is 0: the same integers give the same floats."""
    R = num.shape[0]
    out = np.empty(R, dtype=np.float64)
    for r in range(R):
        sv, mv, ev = _float_parts(den[r])
        if mv == 0.0:
            out[r] = np.nan
            continue
        su, mu, eu = _float_parts(num[r])
        if mu == 0.0:
            out[r] = 0.0
        else:
            out[r] = math.ldexp((su * mu) / (sv * mv), int(eu - ev))
    return out


POISSON1_CDF: NDArray[np.float64] = _POISSON1_CDF
"""Cumulative Poisson(1) probabilities (the last set to 1)."""


def seed_key(seed: int | None, stream: int) -> int:
    """A 64-bit key for the counter-based draws of ``stream`` (None: fresh entropy)."""
    entropy = int(cast(int, np.random.SeedSequence().entropy)) if seed is None else int(seed)
    return int(np.random.SeedSequence([entropy, stream]).generate_state(1, np.uint64)[0])
