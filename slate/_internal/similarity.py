"""Page diversity from per-pair similarities, shared by replay's metrics and tune's sweeps."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

PAIR_CHUNK = 200_000
"""Pairs per chunk of the deterministic similarity (arrays of ``PAIR_CHUNK x dim``)."""


def diversity_from_pairs(
    sim: NDArray[np.float64], w: NDArray[np.float64], page: NDArray[np.integer], n_pages: int
) -> float:
    """``1 -`` the mean over pages of the weighted mean similarity of the page's pairs (NaN
    when no page has a pair of positive weight).

    Examples
    --------
    >>> import numpy as np
    >>> diversity_from_pairs(np.array([1.0, 0.0]), np.array([1.0, 1.0]), np.array([0, 1]), 2)
    0.5
    """
    if len(sim) == 0:
        return float("nan")
    num = np.bincount(page, w * sim, minlength=n_pages)
    den = np.bincount(page, w, minlength=n_pages)
    has = den > 0
    if not has.any():
        return float("nan")
    return float(1.0 - np.mean(num[has] / den[has]))
