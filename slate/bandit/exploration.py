"""Exploration on a page, with the exact propensity of every image shown.

The scheme of :class:`StickyEpsilon`, given the page optimiser's choice ``a*`` and the titles
*eligible* for exploration (titles no stability rule holds, with at least two images):

1. every eligible title flips a coin that comes up with probability ``epsilon``;
2. if more than ``m`` coins came up (``m`` = the page's exploration budget), ``m`` of those
   titles are kept, chosen uniformly at random;
3. every kept (explored) title shows an image drawn uniformly among its candidates (``a*``
   included); every other title shows ``a*``.

With ``n`` eligible titles, a title is explored with probability (exactly)

.. math::

    q(n, \\varepsilon, m) = \\varepsilon \\sum_{b=0}^{n-1} \\binom{n-1}{b}
        \\varepsilon^b (1-\\varepsilon)^{n-1-b} \\min\\left(1, \\frac{m}{b+1}\\right),

(``b`` is the number of *other* titles whose coin came up; among the ``b + 1`` that did, ``m`` are
kept uniformly), so image ``k`` of title ``t`` with ``A_t`` candidates is shown with probability

.. math::

    \\pi_t(k) = (1 - q)\\,[k = a^*_t] + q / |A_t|.

This is the marginal probability given everything known before the coins are flipped (the
member's state and the scores), which is what inverse-propensity replay needs. The draws are
seeded by ``(seed, member_id, session_id)``, so a page is reproducible.

*Sticky* exploration keeps the outcome of a title's draw (explored or not) for a period
(:class:`~slate.stability.StickyPeriod`); every page in the period shows the same image and logs
the propensity of the original draw. Because the draw is the only randomness that decides what
the title shows during the period, inverse-propensity weights with that propensity remain
unbiased for every page of the period, and the member's artwork does not flicker.

Exploration shares the page's change budget: the optimiser gets ``max_changes - r`` where
``r = min(m, number of eligible titles with a previous image)``, so any explored set keeps the
page within its budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray
from scipy.stats import binom

from slate.errors import InvalidProblemError
from slate.stability.rules import StickyPeriod

__all__ = [
    "Exploration",
    "ExplorationDraw",
    "NoExploration",
    "StickyEpsilon",
    "exactly_explored_matrix",
    "exactly_explored_probability",
    "explore_probability",
    "joint_choice_probabilities",
    "joint_choice_probability",
    "joint_explore_probability",
]

_U64 = (1 << 64) - 1


@lru_cache(maxsize=4096)
def explore_probability(n_eligible: int, epsilon: float, max_explored: int | None) -> float:
    """Probability ``q`` that a given eligible title is explored (see the module docstring).

    Parameters
    ----------
    n_eligible : int
        Number of titles eligible for exploration on the page.
    epsilon : float
        Per-title exploration probability before the budget.
    max_explored : int or None
        At most this many titles explored per page (None: no limit).

    Examples
    --------
    >>> round(explore_probability(10, 0.1, None), 6)
    0.1
    >>> round(explore_probability(2, 0.5, 1), 6)   # 0.5 * (0.5 * 1 + 0.5 * 1/2)
    0.375
    """
    if n_eligible <= 0 or epsilon <= 0.0:
        return 0.0
    if max_explored is None or max_explored >= n_eligible:
        return float(epsilon)
    if max_explored <= 0:
        return 0.0
    b = np.arange(n_eligible)
    keep = np.minimum(1.0, max_explored / (b + 1.0))
    return float(epsilon * np.dot(binom.pmf(b, n_eligible - 1, epsilon), keep))


def joint_explore_probability(n_eligible: int, k: int, epsilon: float, cap: int | None) -> float:
    """Probability that ``k`` given eligible titles of a page are *all* explored.

    Given ``b + k`` coins up (``b`` among the other ``n - k`` titles), the kept set is a uniform
    subset of size ``min(cap, b + k)``, which holds all ``k`` with probability
    ``C(b, cap - k) / C(b + k, cap)``. Under a cap this differs from ``q ** k`` (the product of
    the per-title probabilities): the joint propensities of neighbours are not independent.

    Examples
    --------
    >>> round(joint_explore_probability(8, 2, 0.5, None), 6)   # no cap: independent, 0.5 ** 2
    0.25
    >>> q = explore_probability(8, 0.5, 3)
    >>> round(joint_explore_probability(8, 2, 0.5, 3) / q ** 2, 3)   # the cap couples them
    0.771
    >>> joint_explore_probability(8, 2, 0.5, 1)
    0.0
    """
    from math import comb

    n, k = int(n_eligible), int(k)
    if k < 0 or k > n:
        raise InvalidProblemError(f"The 'k' of joint_explore_probability must be in [0, {n}]; got {k}.")
    if k == 0:
        return 1.0
    eps = float(epsilon)
    if cap is None or cap >= n:
        return eps**k
    if cap < k:
        return 0.0
    total = 0.0
    for b in range(n - k + 1):
        keep = 1.0 if b + k <= cap else comb(b, cap - k) / comb(b + k, cap)
        total += comb(n - k, b) * eps**b * (1 - eps) ** (n - k - b) * keep
    return eps**k * total


def exactly_explored_probability(n_eligible: int, s: int, e: int, epsilon: float, cap: int | None) -> float:
    """Probability that, of ``s`` given eligible titles, ``e`` given ones are explored and the other
    ``s - e`` are not (inclusion-exclusion over :func:`joint_explore_probability`). With the
    page's logged ``explore_eligible``, ``explore_rate`` and ``explore_cap`` this gives the exact
    joint propensity of any set of titles' choices: a title explored shows each of its ``A``
    candidates with probability ``1 / A``, a title not explored shows the optimiser's choice.

    Examples
    --------
    >>> round(exactly_explored_probability(5, 1, 1, 0.2, None), 6)
    0.2
    >>> round(sum(exactly_explored_probability(6, 3, e, 0.4, 2) * __import__("math").comb(3, e)
    ...           for e in range(4)), 9)
    1.0
    """
    from math import comb

    if not 0 <= e <= s <= n_eligible:
        raise InvalidProblemError(
            f"exactly_explored_probability needs 0 <= e <= s <= n_eligible; got e={e}, s={s}, n={n_eligible}."
        )
    return float(sum((-1) ** j * comb(s - e, j) * joint_explore_probability(n_eligible, e + j, epsilon, cap)
                     for j in range(s - e + 1)))


def _exactly_table(n_eligible: int, size: int, epsilon: float, cap: int | None) -> NDArray[np.float64]:
    """``[exactly_explored_probability(n, size, e, epsilon, cap) for e in 0..size]``."""
    return np.array([exactly_explored_probability(n_eligible, size, e, epsilon, cap)
                     for e in range(size + 1)])


def exactly_explored_matrix(
    n_eligible: NDArray[np.int64], epsilon: NDArray[np.float64], cap: NDArray[np.int64],
    size: NDArray[np.int64], width: int,
) -> NDArray[np.float64]:
    """``(R, width + 1)``: entry ``[r, e]`` is the probability that exactly ``e`` given titles of
    a set of ``size[r]`` in a draw of ``n_eligible[r]`` (rate ``epsilon[r]``, cap ``cap[r]``,
    ``-1``: none) are explored (:func:`exactly_explored_probability`; 0 beyond ``size[r]``).
    Computed once per distinct ``(n, epsilon, cap, size)``."""
    R = len(size)
    out = np.zeros((R, width + 1))
    keys = np.stack([np.asarray(n_eligible, np.float64), np.asarray(epsilon, np.float64),
                     np.asarray(cap, np.float64), np.asarray(size, np.float64)], axis=1)
    uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
    for u, (n, eps, m, sz) in enumerate(uniq):
        table = _exactly_table(int(n), int(sz), float(eps), None if m < 0 else int(m))
        out[inverse.ravel() == u, : int(sz) + 1] = table
    return out


def joint_choice_probabilities(
    n_eligible: NDArray[np.int64], epsilon: NDArray[np.float64], cap: NDArray[np.int64],
    n_candidates: NDArray[np.int64], exploit: NDArray[np.int64], chosen: NDArray[np.int64],
    member: NDArray[np.bool_],
) -> NDArray[np.float64]:
    """Exact probability, per set, that every member title showed its ``chosen`` image under the
    capped exploration of :class:`StickyEpsilon` (vectorised over sets).

    Row ``r`` describes a set of titles of one page, all in the page's draw (eligible, not held):
    column ``j`` is a title when ``member[r, j]``, with ``n_candidates[r, j]`` images, the
    optimiser's choice ``exploit[r, j]`` and the image ``chosen[r, j]``. The page had
    ``n_eligible[r]`` titles in the draw, coin probability ``epsilon[r]`` and cap ``cap[r]``
    (``-1``: none). A title not explored shows ``exploit``; an explored one each candidate with
    probability ``1 / n_candidates``. With ``D`` the members whose ``chosen`` is not ``exploit``
    (they must have been explored) and ``F`` the others,

    .. math::

        P = \\sum_{f} P(\\text{exactly } |D| + f \\text{ of the set explored})
            \\prod_{t \\in D} \\frac{1}{A_t}\\, e_f\\left(\\{1/A_t\\}_{t \\in F}\\right),

    ``e_f`` the elementary symmetric polynomial (which ``f`` of ``F`` were explored, by symmetry
    of the draw every explored set of a given size being equally likely), and ``P(exactly ...)``
    from :func:`exactly_explored_probability`. Under a cap this is not the product of the
    marginal propensities.

    Returns
    -------
    ndarray (n_sets,)
    """
    member = np.asarray(member, dtype=bool)
    R, S = member.shape
    inv = np.where(member, 1.0 / np.maximum(np.asarray(n_candidates, np.float64), 1.0), 0.0)
    must = member & (np.asarray(chosen) != np.asarray(exploit))
    base = np.prod(np.where(must, inv, 1.0), axis=1)
    esym = np.zeros((R, S + 1))
    esym[:, 0] = 1.0
    x = np.where(member & ~must, inv, 0.0)
    for j in range(S):
        esym[:, 1:] = esym[:, 1:] + esym[:, :-1] * x[:, j:j + 1]
    size = member.sum(axis=1)
    d = must.sum(axis=1)
    exactly = exactly_explored_matrix(n_eligible, epsilon, cap, size, S)
    f = np.arange(S + 1)
    e_index = np.minimum(d[:, None] + f[None, :], S)
    valid = (d[:, None] + f[None, :]) <= size[:, None]
    terms = np.where(valid, np.take_along_axis(exactly, e_index, axis=1) * esym, 0.0)
    return np.asarray(base * terms.sum(axis=1), dtype=np.float64)


def joint_choice_probability(
    n_eligible: int, epsilon: float, cap: int | None, n_candidates: list[int] | NDArray[np.int64],
    exploit: list[int] | NDArray[np.int64], chosen: list[int] | NDArray[np.int64],
) -> float:
    """Exact probability that the given titles of a page's draw all showed ``chosen`` (one set;
    see :func:`joint_choice_probabilities`).

    Examples
    --------
    >>> q = explore_probability(8, 0.5, 3)
    >>> p = joint_choice_probability(8, 0.5, 3, [4, 4], [0, 0], [1, 2])
    >>> round(p / (q / 4) ** 2, 3)           # both explored: the cap couples them
    0.771
    >>> p1 = 0.5 + 0.5 / 4                   # no cap: q = 0.5, a title shows its exploit image
    >>> round(joint_choice_probability(8, 0.5, None, [4, 4], [0, 0], [0, 0]) / p1 ** 2, 6)
    1.0
    """
    A = np.asarray(n_candidates, np.int64)[None]
    if A.shape[1] == 0:
        return 1.0
    if cap is not None and cap < 0:
        raise InvalidProblemError(f"The 'cap' of joint_choice_probability must be None or >= 0; got {cap}.")
    if A.shape[1] > n_eligible:
        raise InvalidProblemError(
            f"The 'n_candidates' of joint_choice_probability name {A.shape[1]} titles, more than "
            f"n_eligible={n_eligible}."
        )
    return float(joint_choice_probabilities(
        np.array([n_eligible]), np.array([epsilon]), np.array([-1 if cap is None else cap]), A,
        np.asarray(exploit, np.int64)[None], np.asarray(chosen, np.int64)[None],
        np.ones(A.shape, bool),
    )[0])


@dataclass(frozen=True, eq=False)
class ExplorationDraw:
    """The outcome of exploration on one page.

    Attributes
    ----------
    shown : ndarray (n_titles,), int
        Padded column of the image shown per title.
    propensity : ndarray (n_titles,)
        Probability of the shown image under the scheme (1 for titles not randomized).
    propensities : ndarray (n_titles, n_images)
        The full distribution per title (one-hot for titles not randomized).
    explored : ndarray (n_titles,), bool
        Titles whose image was drawn by exploration.
    drawn : ndarray (n_titles,), bool
        Titles that were randomized (eligible), explored or not.
    probability : float
        ``q``: the probability that an eligible title is explored.
    """

    shown: NDArray[np.int64]
    propensity: NDArray[np.float64]
    propensities: NDArray[np.float64]
    explored: NDArray[np.bool_]
    drawn: NDArray[np.bool_]
    probability: float


def _no_draw(exploit: NDArray[np.int64], n_images: int) -> ExplorationDraw:
    n = len(exploit)
    one_hot = np.zeros((n, n_images))
    one_hot[np.arange(n), exploit] = 1.0
    return ExplorationDraw(
        shown=exploit.copy(),
        propensity=np.ones(n),
        propensities=one_hot,
        explored=np.zeros(n, dtype=bool),
        drawn=np.zeros(n, dtype=bool),
        probability=0.0,
    )


@runtime_checkable
class Exploration(Protocol):
    """An exploration scheme with exact propensities (see :class:`StickyEpsilon`)."""

    @property
    def sticky(self) -> StickyPeriod | None:
        """How long a randomized choice is held (None: not across sessions)."""
        ...

    def reserve(self, n_eligible_with_previous: int, max_changes: int | None) -> int:
        """Changes to keep out of the optimiser's budget so that exploration cannot exceed it."""
        ...

    def draw(
        self,
        exploit: NDArray[np.int64],
        candidates: NDArray[np.bool_],
        eligible: NDArray[np.bool_],
        *,
        max_changes: int | None,
        key: tuple[int, ...],
        n_held_explored: int = 0,
    ) -> ExplorationDraw:
        """Randomize the eligible titles of a page around the optimiser's choice ``exploit``;
        ``n_held_explored`` explored titles of the page hold earlier draws (they use up the cap)."""
        ...


@dataclass(frozen=True)
class NoExploration:
    """Show the optimiser's page as is (every propensity is 1).

    Examples
    --------
    >>> import numpy as np
    >>> d = NoExploration().draw(np.array([1, 0]), np.ones((2, 2), bool), np.ones(2, bool),
    ...                          max_changes=None, key=(0,))
    >>> d.shown.tolist(), d.propensity.tolist()
    ([1, 0], [1.0, 1.0])
    """

    @property
    def sticky(self) -> StickyPeriod | None:
        return None

    def reserve(self, n_eligible_with_previous: int, max_changes: int | None) -> int:
        return 0

    def draw(
        self,
        exploit: NDArray[np.int64],
        candidates: NDArray[np.bool_],
        eligible: NDArray[np.bool_],
        *,
        max_changes: int | None,
        key: tuple[int, ...],
        n_held_explored: int = 0,
    ) -> ExplorationDraw:
        return _no_draw(np.asarray(exploit, dtype=np.int64), candidates.shape[1])


@dataclass(frozen=True)
class StickyEpsilon:
    """Epsilon exploration per title, at most ``max_explored`` titles per page, held for a period.

    Parameters
    ----------
    epsilon : float, default 0.05
        Probability that an eligible title's coin comes up.
    max_explored : int or None, default 2
        Exploration budget: at most this many explored titles per page, counting the titles
        that show an explored held (sticky) draw of an earlier page, so a page never shows more
        than ``max_explored`` explored titles (and a new draw never more than the page's change
        budget). None: no limit of its own.
    sticky_sessions : int or None, default None
        A draw is held for this many sessions ...
    sticky_days : float or None, default 3.0
        ... or this many days, whichever comes first. ``sticky_sessions=1`` re-randomizes every
        session (a draw is always held for the rest of its own session).
    seed : int, default 0
        Draws are seeded by ``(seed, member_id, session_id)``.

    Examples
    --------
    >>> import numpy as np
    >>> explore = StickyEpsilon(0.5, max_explored=1, seed=3)
    >>> d = explore.draw(np.array([0, 0, 0]), np.ones((3, 4), bool), np.ones(3, bool),
    ...                  max_changes=None, key=(7, 1))
    >>> int(d.explored.sum()) <= 1, bool(np.allclose(d.propensities.sum(axis=1), 1.0))
    (True, True)
    >>> round(d.probability, 4)   # q(3, 0.5, 1) = 0.5 * (1/4 + 2/4 * 1/2 + 1/4 * 1/3)
    0.2917
    """

    epsilon: float = 0.05
    max_explored: int | None = 2
    sticky_sessions: int | None = None
    sticky_days: float | None = 3.0
    seed: int = 0

    def __post_init__(self) -> None:
        def fail(name: str, must: str) -> InvalidProblemError:
            return InvalidProblemError(
                f"The '{name}' parameter of StickyEpsilon must be {must}; got {getattr(self, name)!r} instead."
            )

        eps = self.epsilon
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0.0 <= eps <= 1.0:
            raise fail("epsilon", "a number in [0, 1]")
        m = self.max_explored
        if m is not None and (isinstance(m, bool) or not isinstance(m, int) or m < 0):
            raise fail("max_explored", "None or an integer >= 0")
        s = self.sticky_sessions
        if s is not None and (isinstance(s, bool) or not isinstance(s, int) or s < 1):
            raise fail("sticky_sessions", "None or an integer >= 1")
        d = self.sticky_days
        if d is not None and (isinstance(d, bool) or not isinstance(d, (int, float)) or not d >= 0):
            raise fail("sticky_days", "None or a number >= 0")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise fail("seed", "an integer >= 0")

    @property
    def sticky(self) -> StickyPeriod | None:
        return StickyPeriod(sessions=self.sticky_sessions, days=self.sticky_days)

    def page_budget(self, max_changes: int | None) -> int | None:
        """At most this many titles are explored on a page with change budget ``max_changes``."""
        if max_changes is None:
            return self.max_explored
        return max_changes if self.max_explored is None else min(self.max_explored, max_changes)

    def draw_cap(self, max_changes: int | None, n_held_explored: int = 0) -> int | None:
        """At most this many titles may be explored by a new draw on a page where
        ``n_held_explored`` titles already show an explored held draw (the per-page cap counts
        them), with change budget ``max_changes``.

        Examples
        --------
        >>> StickyEpsilon(0.1, max_explored=4).draw_cap(None, n_held_explored=3)
        1
        >>> StickyEpsilon(0.1, max_explored=4).draw_cap(None, n_held_explored=6)
        0
        """
        m = self.page_budget(max_changes)
        if m is None or self.max_explored is None:
            return m
        return max(0, min(m, self.max_explored - int(n_held_explored)))

    def reserve(self, n_eligible_with_previous: int, max_changes: int | None) -> int:
        if max_changes is None or self.epsilon == 0.0:
            return 0
        m = self.page_budget(max_changes)
        return min(n_eligible_with_previous, m if m is not None else n_eligible_with_previous)

    def draw(
        self,
        exploit: NDArray[np.int64],
        candidates: NDArray[np.bool_],
        eligible: NDArray[np.bool_],
        *,
        max_changes: int | None,
        key: tuple[int, ...],
        n_held_explored: int = 0,
    ) -> ExplorationDraw:
        exploit = np.asarray(exploit, dtype=np.int64)
        out = _no_draw(exploit, candidates.shape[1])
        titles = np.flatnonzero(eligible)
        n_eligible = len(titles)
        if n_eligible == 0 or self.epsilon == 0.0:
            return out
        m = self.draw_cap(max_changes, n_held_explored)
        q = explore_probability(n_eligible, float(self.epsilon), m)
        rng = np.random.default_rng([self.seed, *(int(k) & _U64 for k in key)])
        flips = titles[rng.random(n_eligible) < self.epsilon]
        if m is not None and len(flips) > m:
            flips = np.sort(rng.choice(flips, size=m, replace=False))
        counts = candidates[titles].sum(axis=1)
        shown = out.shown
        if len(flips):
            sub = candidates[flips]
            pick = np.floor(rng.random(len(flips)) * sub.sum(axis=1)).astype(np.int64)
            shown[flips] = np.argmax(np.cumsum(sub, axis=1) > pick[:, None], axis=1)
            out.explored[flips] = True
        dist = (q / counts)[:, None] * candidates[titles]
        dist[np.arange(n_eligible), exploit[titles]] += 1.0 - q
        out.propensities[titles] = dist
        out.propensity[titles] = dist[np.arange(n_eligible), shown[titles]]
        out.drawn[titles] = True
        return ExplorationDraw(
            shown=shown,
            propensity=out.propensity,
            propensities=out.propensities,
            explored=out.explored,
            drawn=out.drawn,
            probability=q,
        )
