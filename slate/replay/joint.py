"""Exact joint logging propensities of a title and its neighbours under capped exploration.

The per-page exploration cap of :class:`slate.serve.StickyEpsilon` makes the titles of a page
dependent: the probability that a title and its neighbours all showed their logged images is not
the product of their propensities (0.77x for two explored titles at cap 3 with 8 in the draw, 0 at
cap 1). A decision log (:class:`slate.serve.DecisionLogger`) records, per title, whether it was in
the page's draw (``explore_eligible``) or shows a held draw (``explore_held``), and per page the
coin probability (``explore_rate``) and the cap of the draw (``explore_cap``).
:class:`ExplorationColumns` reads them; :func:`set_propensity` turns them into the exact joint
propensity of a set of rows of one page (:func:`slate.bandit.exploration.joint_choice_probabilities`),
which :class:`~slate.replay.estimators.LayoutNeighbourhood` uses in place of the product.

Titles outside the draw (locked, single image, or holding an earlier draw) enter the joint
propensity through their logged propensity, as independent factors: a held draw was made on an
earlier page, independently of this page's draw.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from slate.bandit.exploration import (
    exactly_explored_matrix,
    explore_probability,
    joint_choice_probabilities,
)
from slate.logs.log import ImpressionLog
from slate.replay.policy import InvalidReplayInputError
from slate.replay.stats import poisson_binomial_at

__all__ = ["ExplorationColumns", "group_count_propensity", "set_propensity"]

_COLUMNS = ("page_id", "explore_eligible", "explore_held", "explore_rate", "explore_cap")


@dataclass(frozen=True, eq=False)
class ExplorationColumns:
    """A decision log's exploration columns, one entry per row of the input table (indexed by
    :attr:`ImpressionLog.source_row`).

    Attributes
    ----------
    eligible, held : ndarray (N,), bool
    rate : ndarray (N,), float64
        NaN where the page had no exploration.
    cap : ndarray (N,), int64
        ``-1``: no cap.
    n_eligible : ndarray (N,), int64
        Titles in the draw of the row's page.
    """

    eligible: NDArray[np.bool_]
    held: NDArray[np.bool_]
    rate: NDArray[np.float64]
    cap: NDArray[np.int64]
    n_eligible: NDArray[np.int64]

    @classmethod
    def from_table(cls, table: Any) -> ExplorationColumns:
        """From a pyarrow table of a decision log (the one the ``ImpressionLog`` was read from).

        Examples
        --------
        >>> import pyarrow as pa
        >>> t = pa.table({"page_id": [1, 1, 2], "explore_eligible": [True, True, False],
        ...               "explore_held": [False, False, True], "explore_rate": [0.2, 0.2, None],
        ...               "explore_cap": [1, 1, None]})
        >>> ExplorationColumns.from_table(t).n_eligible.tolist()
        [2, 2, 0]
        """
        missing = [c for c in _COLUMNS if c not in table.column_names]
        if missing:
            raise InvalidReplayInputError(
                f"The decision log must have the column '{missing[0]}' to give exact joint "
                f"propensities; got columns {table.column_names}."
            )

        def col(name: str, fill: Any, dtype: Any) -> NDArray[Any]:
            return np.asarray(table.column(name).fill_null(fill).to_numpy(zero_copy_only=False), dtype)

        page = col("page_id", 0, np.int64)
        eligible = col("explore_eligible", False, bool)
        held = col("explore_held", False, bool)
        rate = col("explore_rate", np.nan, np.float64)
        cap = col("explore_cap", -1, np.int64)
        _, inverse = np.unique(page, return_inverse=True)
        inverse = inverse.ravel()
        n_eligible = np.bincount(inverse, eligible & ~held).astype(np.int64)[inverse]
        return cls(eligible & ~held, held, rate, cap, n_eligible)


def set_propensity(
    log: ImpressionLog, exploration: ExplorationColumns, sets: NDArray[np.int64]
) -> NDArray[np.float64]:
    """Exact logging probability that every row of each set showed its logged image.

    Parameters
    ----------
    log : ImpressionLog
    exploration : ExplorationColumns
        Of the table ``log`` was read from.
    sets : ndarray (n_sets, S), int64
        Rows of ``log`` (all of one page per set), ``-1`` for none.

    Returns
    -------
    ndarray (n_sets,)
        Product of the logged propensities of the rows outside the page's draw, times the
        exact joint probability of the rows in it (:func:`joint_choice_probabilities`).
    """
    _check_rows(log, exploration)
    present, j, in_draw, n, rate, cap, q = _draw_of(log, exploration, sets)
    outside = np.prod(np.where(present & ~in_draw, log.propensity[j], 1.0), axis=1)
    A = log.n_candidates[j].astype(np.int64)
    # the shown image is the optimiser's choice iff its propensity exceeds q / A
    is_exploit = log.propensity[j] > (q[:, None] / np.maximum(A, 1)) * (1 + 1e-9)
    joint = joint_choice_probabilities(
        n, rate, cap, A, np.zeros_like(A), (~is_exploit).astype(np.int64), in_draw,
    )
    return np.asarray(outside * joint, dtype=np.float64)


def _check_rows(log: ImpressionLog, exploration: ExplorationColumns) -> None:
    if int(log.source_row.max(initial=-1)) >= len(exploration.eligible):
        raise InvalidReplayInputError(
            "The 'exploration' columns must come from the table the log was read from; got "
            f"{len(exploration.eligible)} rows for a log with source row {int(log.source_row.max())}."
        )


def _draw_of(log: ImpressionLog, exploration: ExplorationColumns, sets: NDArray[np.int64]) -> tuple[
    NDArray[np.bool_], NDArray[np.int64], NDArray[np.bool_], NDArray[np.int64],
    NDArray[np.float64], NDArray[np.int64], NDArray[np.float64],
]:
    """Per set: present members, their rows, which are in the page's draw, and the draw's
    ``n_eligible``, rate, cap and marginal exploration probability ``q``."""
    present = sets >= 0
    j = np.where(present, sets, 0)
    src = log.source_row[j]
    in_draw = present & exploration.eligible[src] & np.isfinite(exploration.rate[src])
    head = src[:, 0]
    n = exploration.n_eligible[head]
    rate = np.nan_to_num(exploration.rate[head])
    cap = exploration.cap[head]
    keys, inverse = np.unique(np.stack([n, rate, cap], axis=1), axis=0, return_inverse=True)
    q_keys = np.array([explore_probability(int(a), float(b), None if c < 0 else int(c))
                       for a, b, c in keys])
    q = q_keys[inverse.ravel()] if len(keys) else np.zeros(0)
    return present, j, in_draw, n, rate, cap, q


def group_count_propensity(
    log: ImpressionLog, exploration: ExplorationColumns, neighbours: NDArray[np.int64],
    cand_group: NDArray[np.int64], own: NDArray[np.int64], s: NDArray[np.int64],
) -> NDArray[np.float64]:
    """Exact logging probability, per row ``i``, that it showed its logged image *and* that
    ``s[i]`` of its ``neighbours`` showed an image of its group ``own[i]``, under capped
    exploration (the page-aware estimator's denominator).

    By the symmetry of the draw, which members of the set ``{i} + neighbours`` were explored
    depends only on how many (:func:`~slate.bandit.exploration.exactly_explored_matrix`); the
    sum runs over the subsets ``E`` of the set's titles in the draw. Given ``E``, an explored
    title shows each candidate with probability ``1 / A`` and the others the optimiser's choice
    (the mode of the logged distribution), independently; titles outside the draw enter through
    their logged distribution. Needs the log's ``propensities``.
    """
    _check_rows(log, exploration)
    mu = log.propensities
    if mu is None:
        raise InvalidReplayInputError(
            "Exact page-aware propensities need the log's 'propensities' column; got none."
        )
    n_rows = log.n_rows
    sets = np.concatenate([np.arange(n_rows)[:, None], neighbours], axis=1)
    present, j, in_draw, n, rate, cap, _ = _draw_of(log, exploration, sets)
    S = sets.shape[1]
    A = np.maximum(log.n_candidates[j], 1).astype(np.float64)
    same = cand_group[j] == own[:, None, None]                       # (n, S, K)
    frac = same.sum(axis=2) / A                                      # explored: in the group
    exploit = np.argmax(mu[j], axis=2)
    exploit_same = np.take_along_axis(same, exploit[..., None], axis=2)[..., 0]
    p_outside = np.einsum("nsk,nsk->ns", mu[j], same)
    own_explored = 1.0 / A[:, 0]
    own_kept = (log.shown == exploit[:, 0]).astype(np.float64)
    exactly = exactly_explored_matrix(n, rate, cap, in_draw.sum(axis=1), S)
    total = np.zeros(n_rows)
    for bits in range(1 << S):
        b = ((bits >> np.arange(S)) & 1).astype(bool)
        ok = ~np.any(b[None, :] & ~in_draw, axis=1)
        e = int(b.sum())
        p_e = exactly[:, e] * ok
        own_p = np.where(in_draw[:, 0], own_explored if b[0] else own_kept, log.propensity)
        p = np.where(in_draw[:, 1:], np.where(b[1:], frac[:, 1:], exploit_same[:, 1:]),
                     np.where(present[:, 1:], p_outside[:, 1:], 0.0))
        total += p_e * own_p * poisson_binomial_at(p, s)
    return total
