"""Session-stability rules: what may change on a returning member's page, and what must not.

Rules (all configurable in :class:`StabilityRules`, each optional):

- **churn penalty** ``churn``: each changed image costs this much in the page objective;
- **change budget** ``max_changes``: at most this many titles change image on one page;
- **dwell**: an image the member has *seen* is kept until it has been shown in
  ``dwell_sessions`` sessions or ``dwell_days`` days have passed since it was first shown,
  whichever comes first (an image that was shown but never seen, e.g. below the fold, is not
  held);
- **hysteresis** ``min_gain``: a title keeps its image unless another image's predicted score
  beats it by more than ``min_gain`` (this governs the page optimiser's choice, not exploration);
- **locks**: titles the member is engaged with (continue watching, my list) keep their image;
- **expiry** ``state_ttl_days``: state not refreshed for this long is ignored (the title is new
  to the member again) and can be purged from the store.

A held randomized choice (sticky exploration, see :class:`slate.serve.StickyEpsilon`) also keeps
its image, and every page that shows it logs the propensity of the original draw.

:func:`plan_page` turns the rules and the member's stored state into arrays for the page
optimiser; :func:`next_states` computes the state to store after the page is shown.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from slate.stability.state import NO_DRAW, TitleState

__all__ = ["Reason", "StabilityPlan", "StabilityRules", "StickyPeriod", "next_states", "plan_page"]

DAY = 86_400.0
"""Seconds in a day."""


class Reason(IntEnum):
    """Why a title's image is what it is (one code per title on a :class:`StabilityPlan`)."""

    NEW = 0
    """No (unexpired) state: the title is new to the member; free to choose."""
    FREE = 1
    """The member saw an image for the title; no rule holds it."""
    RETIRED = 2
    """The member's previous image is no longer a candidate; free to choose."""
    LOCKED = 3
    """The member is engaged with the title (continue watching, my list): image kept."""
    STICKY = 4
    """A randomized choice is held for the title (sticky exploration): image kept."""
    DWELL = 5
    """The image has not dwelt long enough: kept."""


class StabilityRules(BaseModel):
    """Configuration of the session-stability rules (see the module docstring).

    Examples
    --------
    >>> rules = StabilityRules(max_changes=4, dwell_sessions=3, dwell_days=7, min_gain=0.01)
    >>> rules.max_changes, rules.state_ttl_days
    (4, 30.0)
    >>> StabilityRules(dwell_days=-1)
    Traceback (most recent call last):
    ...
    pydantic_core._pydantic_core.ValidationError: 1 validation error for StabilityRules
    dwell_days
      Input should be greater than 0 [type=greater_than, input_value=-1, input_type=int]
        ...
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    churn: float = Field(default=0.005, ge=0, allow_inf_nan=False)
    """Objective cost of one changed image."""
    max_changes: int | None = Field(default=None, ge=0)
    """Most titles whose image may change on one page (None: no budget)."""
    dwell_sessions: int | None = Field(default=None, ge=1)
    """A seen image is kept until shown in this many sessions (None: no session rule)."""
    dwell_days: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    """... or until this many days after it was first shown (None: no day rule)."""
    min_gain: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    """Hysteresis: change only to an image whose score beats the current one by more (None: off)."""
    state_ttl_days: float | None = Field(default=30.0, gt=0, allow_inf_nan=False)
    """State older than this is ignored (None: never expires)."""
    assume_seen: bool = True
    """Count a shown image as seen (False: only titles reported in ``seen_title_ids`` are)."""


@dataclass(frozen=True)
class StickyPeriod:
    """How long a randomized choice is held: ``sessions`` sessions or ``days`` days, whichever first.

    A choice is always held for the rest of the session it was made in. ``None`` disables a limit;
    with both ``None`` a choice is held until its state expires.
    """

    sessions: int | None = None
    days: float | None = None


BoolArray = NDArray[np.bool_]
IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class StabilityPlan:
    """What the stability rules allow on one page (all arrays read-only).

    Attributes
    ----------
    reason : ndarray (n_titles,), int8
        A :class:`Reason` per title.
    previous : ndarray (n_titles,), int
        Padded column of the member's previous image, ``-1`` when none (new, expired, retired).
    previous_ids : tuple of (str or None)
        The previous image id as stored (also for a retired image), None when none.
    held : ndarray (n_titles,), bool
        The title must show ``previous`` (locked, sticky or dwell).
    solver_candidates : ndarray (n_titles, n_images), bool
        Images the page optimiser may choose (held titles: the previous image only; hysteresis
        removes images that do not beat the previous one by ``min_gain``).
    explore_candidates : ndarray (n_titles, n_images), bool
        Images exploration may show (all candidates of a title that is not held).
    draw_held : ndarray (n_titles,), bool
        A randomized choice is held: the title shows ``previous`` with ``draw_propensity``.
    draw_propensity : ndarray (n_titles,)
    draw_explored : ndarray (n_titles,), bool
    max_changes : int or None
        The page's change budget.
    states : tuple of (TitleState or None)
        The unexpired stored state per title (after applying ``seen_title_ids``).
    new_session : ndarray (n_titles,), bool
        The title's state is from an earlier session (so session counters advance).
    """

    reason: NDArray[np.int8]
    previous: IntArray
    previous_ids: tuple[str | None, ...]
    held: BoolArray
    solver_candidates: BoolArray
    explore_candidates: BoolArray
    draw_held: BoolArray
    draw_propensity: FloatArray
    draw_explored: BoolArray
    max_changes: int | None
    states: tuple[TitleState | None, ...]
    new_session: BoolArray

    @property
    def n_titles(self) -> int:
        """Number of titles on the page."""
        return len(self.reason)

    def counts(self) -> dict[str, int]:
        """Number of titles per :class:`Reason` (by lower-case name)."""
        values = np.bincount(self.reason, minlength=len(Reason))
        return {r.name.lower(): int(values[r]) for r in Reason}


_A = TypeVar("_A", bound=np.ndarray)


def _ro(array: _A) -> _A:
    array.flags.writeable = False
    return array


_PAGE_ARRAYS = ("title_ids", "image_ids", "candidates", "locked")


def plan_page(
    rules: StabilityRules,
    page: Any = None,
    *,
    now: float,
    session_id: int,
    states: Mapping[str, TitleState],
    scores: FloatArray | None = None,
    seen_title_ids: Collection[str] = (),
    sticky: StickyPeriod | None = None,
    **arrays: Any,
) -> StabilityPlan:
    """Apply the stability rules to one page.

    Parameters
    ----------
    rules : StabilityRules
    page : slate.page.Page, optional
        The page: anything with ``title_ids``, ``image_ids``, ``candidates`` and ``locked`` (read
        by attribute, so this package does not import :mod:`slate.page`). Or give those four
        as keywords instead (``**arrays``).
    now : float
        Time of the page (Unix seconds).
    session_id : int
    states : mapping title id -> TitleState
        The member's stored state (from :meth:`StateStore.get`).
    scores : ndarray (n_titles, n_images), optional
        Predicted scores; needed for hysteresis (``rules.min_gain``), ignored otherwise.
    seen_title_ids : collection of str
        Titles whose current image the member is known to have seen since the last page.
    sticky : StickyPeriod, optional
        How long randomized choices are held (None: they are not held across sessions).
    **arrays
        The page as four keywords, when no ``page`` is given: ``title_ids`` (sequence of str,
        length n_titles), ``image_ids`` (candidate image ids per title, in padded-column
        order), ``candidates`` (ndarray (n_titles, n_images) of bool: which padded columns are
        real images) and ``locked`` (ndarray (n_titles,) of bool: titles the member is engaged
        with).

    Returns
    -------
    StabilityPlan

    Raises
    ------
    TypeError
        Both or neither of ``page`` and the four keywords, or an unknown keyword.

    Examples
    --------
    >>> import numpy as np
    >>> from slate.stability import StabilityRules, TitleState, plan_page
    >>> state = {"T1": TitleState("T1-b", shown_since=0.0, sessions=1, last_session_id=1,
    ...                           updated_at=0.0, seen=True)}
    >>> plan = plan_page(StabilityRules(dwell_sessions=2), now=3600.0, session_id=2,
    ...                  title_ids=["T1", "T2"], image_ids=[["T1-a", "T1-b"], ["T2-a", "T2-b"]],
    ...                  candidates=np.ones((2, 2), bool), locked=np.zeros(2, bool), states=state)
    >>> [Reason(r).name for r in plan.reason], plan.previous.tolist()
    (['DWELL', 'NEW'], [1, -1])
    """
    title_ids, image_ids, candidates, locked = _page_arrays(page, arrays)
    n_titles = candidates.shape[0]
    valid, previous_ids, previous, has_state, table = _stored_states(
        rules, now, session_id, title_ids, image_ids, states, seen_title_ids, n_titles
    )
    same_session = table[:, 3] > 0
    draw_propensity = table[:, 6]
    draw_explored = table[:, 7] > 0
    has_prev = previous >= 0
    is_locked = has_prev & np.asarray(locked, dtype=bool)
    draw_ok = _held_draws(sticky, now, has_prev, table, n_titles)
    dwell = _dwelling(rules, now, has_prev, table, n_titles)

    reason = has_prev.astype(np.int8)  # Reason.FREE (1) where there is a previous image, else Reason.NEW (0)
    reason[has_state & ~has_prev] = Reason.RETIRED
    reason[dwell] = Reason.DWELL
    reason[draw_ok] = Reason.STICKY
    reason[is_locked] = Reason.LOCKED
    held = is_locked | draw_ok | dwell
    explore, solver = _plan_candidates(rules, candidates, scores, previous, has_prev, held)

    return StabilityPlan(
        reason=_ro(reason),
        previous=_ro(previous),
        previous_ids=tuple(previous_ids),
        held=_ro(held),
        solver_candidates=_ro(solver),
        explore_candidates=_ro(explore),
        draw_held=_ro(draw_ok),
        draw_propensity=_ro(np.where(draw_ok, draw_propensity, 1.0)),
        draw_explored=_ro(draw_ok & draw_explored),
        max_changes=rules.max_changes,
        states=tuple(valid),
        new_session=_ro(~same_session),
    )


def _page_arrays(page: Any, arrays: Mapping[str, Any]) -> tuple[Any, Any, Any, Any]:
    """``(title_ids, image_ids, candidates, locked)`` of a page object or of the four keywords."""
    unknown = [k for k in arrays if k not in _PAGE_ARRAYS]
    if unknown:
        raise TypeError(f"plan_page() got an unexpected keyword argument '{unknown[0]}'")
    if page is not None:
        if arrays:
            raise TypeError(f"plan_page() takes a page or its arrays, not both; got page and '{next(iter(arrays))}'")
        return page.title_ids, page.image_ids, page.candidates, page.locked
    missing = [k for k in _PAGE_ARRAYS if k not in arrays]
    if missing:
        raise TypeError(f"plan_page() missing required keyword argument '{missing[0]}' (or give a page)")
    return arrays["title_ids"], arrays["image_ids"], arrays["candidates"], arrays["locked"]


def _stored_states(
    rules: StabilityRules,
    now: float,
    session_id: int,
    title_ids: Sequence[str],
    image_ids: Sequence[Sequence[str]],
    states: Mapping[str, TitleState],
    seen_title_ids: Collection[str],
    n_titles: int,
) -> tuple[list[TitleState | None], list[str | None], IntArray, BoolArray, FloatArray]:
    """Stage: the member's unexpired state per title, as the previous image's column and a table
    of ``(seen, sessions, shown_since, same_session, draw_at, draw_sessions, draw_propensity,
    draw_explored)`` (a title whose previous image is no longer a candidate gets the row of a
    title without state)."""
    ttl = None if rules.state_ttl_days is None else rules.state_ttl_days * DAY
    seen_set = set(seen_title_ids)

    valid: list[TitleState | None] = [None] * n_titles
    previous_ids: list[str | None] = [None] * n_titles
    rows: list[int] = []
    cols: list[int] = []
    fields: list[tuple[float, ...]] = []
    get = states.get
    for t, title in enumerate(title_ids):
        s = get(title)
        if s is None or (ttl is not None and now - s.updated_at > ttl):
            continue
        if not s.seen and title in seen_set:
            s = s._replace(seen=True)
        valid[t] = s
        previous_ids[t] = s.image_id
        try:
            cols.append(image_ids[t].index(s.image_id))
        except ValueError:
            cols.append(-1)
        rows.append(t)
        fields.append(
            (
                s.seen,
                s.sessions,
                s.shown_since,
                s.last_session_id == session_id,
                s.draw_at,
                s.draw_sessions,
                s.draw_propensity,
                s.draw_explored,
            )
        )

    previous = np.full(n_titles, -1, dtype=np.int64)
    has_state = np.zeros(n_titles, dtype=bool)
    table = np.zeros((n_titles, 8))
    table[:, 4] = math.nan
    table[:, 6] = 1.0
    if rows:
        r = np.asarray(rows, dtype=np.int64)
        previous[r] = cols
        has_state[r] = True
        table[r] = fields
    retired = has_state & (previous < 0)
    table[retired] = (0.0, 0.0, 0.0, 0.0, math.nan, 0.0, 1.0, 0.0)
    return valid, previous_ids, previous, has_state, table


def _held_draws(sticky: StickyPeriod | None, now: float, has_prev: BoolArray, table: FloatArray, n: int) -> BoolArray:
    """Stage: titles whose randomized choice is still held (same session, or within the period)."""
    if sticky is None:
        return np.zeros(n, dtype=bool)
    same_session = table[:, 3] > 0
    draw_at = table[:, 4]
    draw_sessions = table[:, 5]
    with np.errstate(invalid="ignore"):
        within = np.ones(n, dtype=bool)
        if sticky.sessions is not None:
            within &= draw_sessions < sticky.sessions
        if sticky.days is not None:
            within &= (now - draw_at) < sticky.days * DAY
    return has_prev & ~np.isnan(draw_at) & (same_session | within)


def _dwelling(rules: StabilityRules, now: float, has_prev: BoolArray, table: FloatArray, n: int) -> BoolArray:
    """Stage: titles whose seen image has not dwelt long enough."""
    dwell = np.zeros(n, dtype=bool)
    if rules.dwell_sessions is not None or rules.dwell_days is not None:
        dwell = has_prev & (table[:, 0] > 0)
        if rules.dwell_sessions is not None:
            dwell &= table[:, 1] < rules.dwell_sessions
        if rules.dwell_days is not None:
            dwell &= (now - table[:, 2]) < rules.dwell_days * DAY
    return dwell


def _plan_candidates(
    rules: StabilityRules,
    candidates: BoolArray,
    scores: FloatArray | None,
    previous: IntArray,
    has_prev: BoolArray,
    held: BoolArray,
) -> tuple[BoolArray, BoolArray]:
    """Stage: exploration candidates (a held title only its previous image) and the solver's
    (also without images that do not beat the previous one by ``rules.min_gain``)."""
    cand = np.asarray(candidates, dtype=bool)
    explore = cand.copy()
    ht = np.flatnonzero(held)
    explore[ht] = False
    explore[ht, previous[ht]] = True
    solver = explore.copy()
    if rules.min_gain is not None and scores is not None:
        free_prev = np.flatnonzero(has_prev & ~held)
        if len(free_prev):
            base = scores[free_prev, previous[free_prev]]
            keep = scores[free_prev] - base[:, None] > rules.min_gain
            keep[np.arange(len(free_prev)), previous[free_prev]] = True
            solver[free_prev] &= keep
    return explore, solver


def next_states(
    plan: StabilityPlan,
    rules: StabilityRules,
    *,
    now: float,
    session_id: int,
    title_ids: Sequence[str],
    shown_ids: Sequence[str],
    drawn: BoolArray,
    propensity: FloatArray,
    explored: BoolArray,
) -> dict[str, TitleState]:
    """The state to store for every title of a page after it is shown.

    Parameters
    ----------
    plan : StabilityPlan
        The plan the page was built from.
    rules : StabilityRules
    now : float
    session_id : int
    title_ids, shown_ids : sequences of str
        Titles of the page and the image shown for each.
    drawn : ndarray (n_titles,), bool
        Titles randomized on this page (a new draw to hold).
    propensity, explored : ndarray (n_titles,)
        Propensity and exploration flag of the shown images.

    Returns
    -------
    dict of title id -> TitleState
    """
    out: dict[str, TitleState] = {}
    held_draw = plan.draw_held.tolist()
    new_session = plan.new_session.tolist()
    drawn_list = np.asarray(drawn, dtype=bool).tolist()
    prop = np.asarray(propensity, dtype=np.float64).tolist()
    expl = np.asarray(explored, dtype=bool).tolist()
    assume_seen = rules.assume_seen
    make = TitleState._make  # tuple.__new__ on the fields: no keyword handling per title
    for t, title in enumerate(title_ids):
        image = shown_ids[t]
        s = plan.states[t]
        advance = 1 if new_session[t] else 0
        if s is not None and s.image_id == image:
            base = (image, s.shown_since, s.sessions + advance, session_id, now, s.seen or assume_seen)
        else:
            base = (image, now, 1, session_id, now, assume_seen)
        if held_draw[t] and s is not None:
            draw = (s.draw_at, s.draw_sessions + advance, s.draw_propensity, s.draw_explored)
        elif drawn_list[t]:
            draw = (now, 1, prop[t], expl[t])
        else:
            draw = (NO_DRAW, 0, 1.0, False)
        out[title] = make(base + draw)
    return out
