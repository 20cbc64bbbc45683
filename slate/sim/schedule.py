"""Sessions over days: who visits when, which titles their homepage shows, and the session state.

A :class:`Schedule` fixes everything about the simulated traffic that does not depend on the
artwork policy: members return on some days (each member at most once a day, at an hour near
their habit, usually on their main device), and each visit shows a homepage whose titles a
(noisy) title recommender picked among the titles launched by then. Because the schedule and its
outcome random numbers are shared, different policies are compared on the same members and
sessions (common random numbers).

:class:`SessionState` is what does depend on the policy: the image each member last saw for each
title, whether they noticed it, and whether they know (have played) it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from slate.errors import InvalidProblemError
from slate.sim.response import PageBatch
from slate.sim.world import World

__all__ = ["Schedule", "SessionState", "initial_state", "make_schedule"]

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

_US_PER_DAY = 86_400_000_000
_US_PER_HOUR = 3_600_000_000


@dataclass(eq=False)
class SessionState:
    """Per (member, title) session state, updated as pages are shown (mutable).

    Attributes
    ----------
    previous : (M, T) int16
        Local image index last shown, ``-1`` for never.
    noticed : (M, T) bool
        The member noticed the title the last time it was shown (latent).
    known : (M, T) bool
        The member has played the title (observable; artwork then matters less).
    """

    previous: NDArray[np.int16]
    noticed: BoolArray
    known: BoolArray

    def copy(self) -> SessionState:
        """An independent copy."""
        return SessionState(self.previous.copy(), self.noticed.copy(), self.known.copy())


def initial_state(world: World) -> SessionState:
    """The session state before the first simulated day: no image seen, some titles known.

    A member already knows a catalog title with probability ``known_share * 2 * sigmoid(r)``
    (``r``: the title's relevance to them on day 0, capped at 1), drawn from the world's seed.
    Titles not yet launched are unknown; the example profiles do not know the example title.

    Examples
    --------
    >>> from slate.sim import make_world
    >>> world = make_world(n_members=50, n_titles=60, seed=0)
    >>> state = initial_state(world)
    >>> state.previous.shape, bool((state.previous == -1).all()), bool(0.0 < state.known.mean() < 0.5)
    ((50, 60), True, True)
    """
    rng = np.random.default_rng(np.random.SeedSequence([world.config.seed, 20240101, 99]))
    relevance = world.taste(np.arange(world.n_members), 0) @ world.title_genres.T + world.title_popularity
    p_known = np.minimum(1.0, world.config.known_share * 2.0 / (1.0 + np.exp(-relevance)))
    known = (rng.random(p_known.shape) < p_known) & (world.launch_day <= 0)[None, :]
    if world.example is not None:
        ex = world.example
        known[[ex.comedy_member, ex.romance_member], ex.title] = False
    return SessionState(
        previous=np.full((world.n_members, world.n_titles), -1, dtype=np.int16),
        noticed=np.zeros((world.n_members, world.n_titles), dtype=bool),
        known=known,
    )


@dataclass(frozen=True, eq=False)
class Schedule:
    """The sessions of ``n_days`` days, sorted by day then time (one homepage per session).

    Attributes
    ----------
    world : World
    seed : int
        Seed of the visits and pages; outcome random numbers default to it too.
    first_day, n_days : int
    member, day, device, session_id, page_id, timestamp : (S,) int64
    hour : (S,) float64
    titles : (S, P) int64
        Titles on each page, slot by slot (row-major, the recommender's order).
    day_start : (n_days + 1,) int64
        Sessions of day ``first_day + i`` are ``day_start[i]:day_start[i + 1]``.
    """

    world: World
    seed: int
    first_day: int
    n_days: int
    member: IntArray
    day: IntArray
    hour: FloatArray
    device: IntArray
    titles: IntArray
    session_id: IntArray
    page_id: IntArray
    timestamp: IntArray
    day_start: IntArray

    @property
    def n_sessions(self) -> int:
        """Number of sessions (pages) ``S``."""
        return len(self.member)

    @property
    def n_impressions(self) -> int:
        """Number of (page, title) impressions."""
        return int(self.titles.size)

    @property
    def days(self) -> range:
        """The simulated days."""
        return range(self.first_day, self.first_day + self.n_days)

    def sessions_of(self, day: int) -> slice:
        """Slice of the sessions on ``day``."""
        i = day - self.first_day
        if not 0 <= i < self.n_days:
            raise InvalidProblemError(
                f"The 'day' parameter must be in {self.first_day}..{self.first_day + self.n_days - 1}; got {day} instead."
            )
        return slice(int(self.day_start[i]), int(self.day_start[i + 1]))

    def batch(self, day: int, state: SessionState) -> PageBatch:
        """The pages of ``day`` as a :class:`PageBatch`, with previous images and known flags
        read from ``state``."""
        s = self.sessions_of(day)
        member = self.member[s]
        titles = self.titles[s]
        return PageBatch(
            world=self.world,
            member=member,
            day=self.day[s],
            hour=self.hour[s],
            device=self.device[s],
            titles=titles,
            previous=state.previous[member[:, None], titles].astype(np.int64),
            known=state.known[member[:, None], titles],
            session_id=self.session_id[s],
            page_id=self.page_id[s],
            timestamp=self.timestamp[s],
        )

    def uniforms(self, day: int, outcome_seed: int | None = None) -> FloatArray:
        """``(S_day, P, 3)`` uniforms of the outcomes on ``day`` (notice, start, quality).

        Shared by every policy simulated on this schedule with the same ``outcome_seed``
        (common random numbers).
        """
        s = self.sessions_of(day)
        seed = self.seed if outcome_seed is None else outcome_seed
        rng = np.random.default_rng(np.random.SeedSequence([seed, day, 7]))
        return rng.random((s.stop - s.start, self.titles.shape[1], 3))

    def restrict(self, members: NDArray[Any]) -> Schedule:
        """The sessions of the given member indices only (same ids, same pages).

        Outcome uniforms are drawn per day for the whole day, so a restricted schedule draws
        different ones; use it for policies that are costly to evaluate on every member.
        """
        keep = np.isin(self.member, np.asarray(members))
        counts = np.array(
            [keep[self.day_start[i] : self.day_start[i + 1]].sum() for i in range(self.n_days)], dtype=np.int64
        )
        return Schedule(
            world=self.world,
            seed=self.seed,
            first_day=self.first_day,
            n_days=self.n_days,
            member=self.member[keep],
            day=self.day[keep],
            hour=self.hour[keep],
            device=self.device[keep],
            titles=self.titles[keep],
            session_id=self.session_id[keep],
            page_id=self.page_id[keep],
            timestamp=self.timestamp[keep],
            day_start=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        )


def make_schedule(
    world: World,
    n_days: int | None = None,
    *,
    first_day: int = 0,
    seed: int = 0,
    members: NDArray[Any] | None = None,
) -> Schedule:
    """Draw the sessions of days ``first_day .. first_day + n_days - 1``.

    Each member visits on a day with probability ``member_activity`` (at most once a day), at
    their habitual hour plus noise, on their main device three times in four. The homepage shows
    the ``P`` launched titles with the highest noisy recommender score (the member's observed
    profile against the title's genres, language, popularity and launch boost, plus Gumbel noise
    of scale ``page.recommender_noise``), best first, row-major.

    Parameters
    ----------
    world : World
    n_days : int, optional
        Default ``world.config.n_days - first_day``.
    first_day : int, default 0
    seed : int, default 0
        Same seed, same sessions; days are drawn independently (day ``d`` does not depend on
        ``first_day``), so a schedule of days 0-27 and one of days 20-27 agree on days 20-27.
    members : array_like of int, optional
        Only these member indices visit (default: everyone).

    Examples
    --------
    >>> from slate.sim import make_world
    >>> world = make_world(n_members=40, n_titles=60, seed=0)
    >>> sched = make_schedule(world, n_days=3, seed=5)
    >>> sched.titles.shape[1], bool((np.diff(sched.day) >= 0).all())
    (40, True)
    >>> later = make_schedule(world, n_days=1, first_day=2, seed=5)
    >>> bool((later.titles == sched.titles[sched.sessions_of(2)]).all())
    True
    """
    cfg = world.config
    if n_days is None:
        n_days = cfg.n_days - first_day
    if not isinstance(n_days, (int, np.integer)) or n_days < 1:
        raise InvalidProblemError(f"The 'n_days' parameter of make_schedule must be an integer >= 1; got {n_days!r} instead.")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidProblemError(f"The 'seed' parameter of make_schedule must be an integer >= 0; got {seed!r} instead.")
    M, T, P = world.n_members, world.n_titles, world.n_slots
    allowed = np.ones(M, bool)
    if members is not None:
        idx = np.asarray(members, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= M):
            raise InvalidProblemError(f"The 'members' parameter must hold member indices in 0..{M - 1}.")
        allowed = np.zeros(M, bool)
        allowed[idx] = True
    lang_match = world.title_language[None, :] == world.member_language[:, None]
    base = world.config.response.language_bonus * lang_match + world.title_popularity[None, :]
    start_us = int(np.datetime64(cfg.start_date, "us").astype(np.int64))

    parts: dict[str, list[NDArray[Any]]] = {k: [] for k in ("member", "day", "hour", "device", "titles")}
    counts = []
    for day in range(first_day, first_day + n_days):
        rng = np.random.default_rng(np.random.SeedSequence([seed, day, 3]))
        visit = (rng.random(M) < world.member_activity) & allowed
        m = np.flatnonzero(visit)
        hour = (world.member_peak_hour[m] + rng.normal(0.0, 1.5, size=len(m))) % 24.0
        hour = np.minimum(hour, np.nextafter(24.0, 0.0))
        device = np.where(
            rng.random(len(m)) < 0.75, world.member_device[m], rng.integers(0, len(cfg.devices), size=len(m))
        )
        observed = world.taste(m, day) + world.profile_noise[m]
        score = observed @ world.title_genres.T + base[m] + world.launch_boost(np.arange(T), day)[None, :]
        score = score + cfg.page.recommender_noise * rng.gumbel(size=score.shape)
        score[:, ~world.available(day)] = -np.inf
        top = np.argpartition(-score, P - 1, axis=1)[:, :P]
        order = np.argsort(-np.take_along_axis(score, top, axis=1), axis=1, kind="stable")
        titles = np.take_along_axis(top, order, axis=1)
        by_time = np.argsort(hour, kind="stable")
        parts["member"].append(m[by_time])
        parts["day"].append(np.full(len(m), day, dtype=np.int64))
        parts["hour"].append(hour[by_time])
        parts["device"].append(device[by_time].astype(np.int64))
        parts["titles"].append(titles[by_time].astype(np.int64))
        counts.append(len(m))
    member = np.concatenate(parts["member"]).astype(np.int64)
    day_arr = np.concatenate(parts["day"])
    hour_arr = np.concatenate(parts["hour"])
    session_id = day_arr * M + member
    return Schedule(
        world=world,
        seed=int(seed),
        first_day=int(first_day),
        n_days=int(n_days),
        member=member,
        day=day_arr,
        hour=hour_arr,
        device=np.concatenate(parts["device"]),
        titles=np.concatenate(parts["titles"]).reshape(-1, P),
        session_id=session_id,
        page_id=session_id.copy(),
        timestamp=start_us + day_arr * _US_PER_DAY + (hour_arr * _US_PER_HOUR).astype(np.int64),
        day_start=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
    )
