"""Detecting page effects in a log: does a title's take depend on whether its neighbours look
like it?

:func:`detect_page_effects` is a score test, on the explored rows, of the association between
a title's reward and ``S``, the number of its layout neighbours showing an image of the same
visual group, *within* strata of (title, shown image): with ``e_i = (r_i - mean_g r)(S_i -
E_mu[S_i | x_i])`` for stratum ``g`` of row ``i`` (``E_mu[S | x]`` from the logged full logging
distributions, so a context-dependent logging policy does not fake an effect; without them,
``mean_g S``, valid only when the logging did not depend on the context), the statistic ``z = sum e_i / sqrt(sum_p (sum_{i in
p} e_i)^2)`` has its variance summed over pages (rows of a page are not independent), and is
standard normal without page effects when the images were chosen at random (explored rows). A
two-sided p-value below ``alpha`` detects page effects: the false-positive rate is ``alpha``
(asymptotically; checked on a seeded no-effect world in ``tests/replay/test_detect.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats as sps

from slate.logs.log import ImpressionLog
from slate.replay.estimators import LayoutNeighbourhood, image_groups, neighbour_rows

__all__ = ["PageEffectTest", "detect_page_effects"]


@dataclass(frozen=True)
class PageEffectTest:
    """The result of :func:`detect_page_effects`.

    Attributes
    ----------
    detected : bool
        ``p_value < alpha``.
    z, p_value : float
        The score statistic and its two-sided p-value (NaN without usable rows).
    alpha : float
        The false-positive rate of the test.
    n_rows : int
        Explored rows used.
    effect : float
        Regression slope of the reward on ``S`` within strata (take per same-group neighbour).
    reason : str
        The result in words.
    """

    detected: bool
    z: float
    p_value: float
    alpha: float
    n_rows: int
    effect: float
    reason: str


def detect_page_effects(
    log: ImpressionLog, groups: ArrayLike | Mapping[str, int],
    neighbours: str | Sequence[tuple[int, int]] = "row", *, alpha: float = 0.05,
    explored: ArrayLike | None = None,
) -> PageEffectTest:
    """Test whether take depends on neighbour similarity (see the module docstring).

    Parameters
    ----------
    log : ImpressionLog
    groups : array of int (one per image code) or mapping image_id -> int
        Visual group of every image.
    neighbours : "row", "grid" or offsets, default "row"
    alpha : float, default 0.05
        False-positive rate.
    explored : bool array (n_rows,), optional
        Rows to test on; default: the rows whose logged propensity is below 1 or one of whose
        neighbours' is (so ``S`` or the image was drawn at random).

    Examples
    --------
    >>> from slate.logs import read_impressions
    >>> from slate.logs.parquet import example_table
    >>> log, _ = read_impressions(example_table())
    >>> detect_page_effects(log, [0] * len(log.image_ids)).detected
    False
    """
    offsets = LayoutNeighbourhood(neighbours).offsets
    code = image_groups(log, groups)
    nb = neighbour_rows(log, offsets)
    present = nb >= 0
    j = np.where(present, nb, 0)
    own = code[log.image]
    s = (present & (own[j] == own[:, None])).sum(axis=1).astype(np.float64)
    expected = None
    if log.propensities is not None:
        cand_group = np.where(log.candidates >= 0, code[np.maximum(log.candidates, 0)], -1)
        same = cand_group[j] == own[:, None, None]
        expected = np.where(present, np.einsum("nmk,nmk->nm", log.propensities[j], same),
                            0.0).sum(axis=1)
    if explored is None:
        random = log.propensity < 1.0
        ok = np.asarray(random | np.any(present & random[j], axis=1))
    else:
        ok = np.asarray(explored, dtype=bool)
    rows = np.flatnonzero(ok)
    r = log.reward.astype(np.float64)[rows]
    s = s[rows]
    key = log.title.astype(np.int64)[rows] * max(len(log.image_ids), 1) + log.image[rows]
    _, g = np.unique(key, return_inverse=True)
    g = g.ravel()
    G = int(g.max()) + 1 if len(g) else 0
    cnt = np.bincount(g, minlength=G).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        rc = r - (np.bincount(g, r, G) / cnt)[g]
        sc = s - (np.bincount(g, s, G) / cnt)[g] if expected is None else s - expected[rows]
    e = rc * sc
    per_page = np.bincount(log.page_index[rows], e, log.n_pages)
    var = float(per_page @ per_page)
    ss = float(sc @ sc)
    if len(rows) < 2 or var <= 0 or ss <= 0:
        return PageEffectTest(False, float("nan"), float("nan"), float(alpha), len(rows),
                              float("nan"), "no usable explored rows with varying neighbours")
    z = float(e.sum() / np.sqrt(var))
    p = float(2 * sps.norm.sf(abs(z)))
    effect = float(e.sum() / ss)
    detected = p < alpha
    reason = (f"{'page effects detected' if detected else 'no page effect detected'}: take "
              f"changes by {effect:+.4g} per same-group neighbour within (title, image) on "
              f"{len(rows)} explored rows (z = {z:.2f}, p = {p:.3g}, false-positive rate {alpha:g})")
    return PageEffectTest(detected, z, p, float(alpha), len(rows), effect, reason)
