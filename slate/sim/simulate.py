"""Run a policy through a schedule of sessions: outcomes, session state, logs, and true values.

:func:`simulate` walks the schedule day by day. Each day is one vectorised step: the policy
picks images for all of the day's pages, the response model gives every impression's exact
P(quality play), outcomes are drawn from the schedule's common random numbers, and the session
state (previous image, noticed, known) is updated. The :class:`Run` keeps every impression; it
converts to a ``slate.impressions/1`` table (:meth:`Run.to_table`) or Parquet file
(:meth:`Run.write`) through :mod:`slate.logs`.

Ground truth:

* :func:`policy_value` -- the true expected take fraction, diversity and churn of a policy,
  simulated on-policy (its own images shape the session state) with the schedule's common random
  numbers, so policies are compared on the same members, sessions and outcome draws;
* :func:`counterfactual_value` -- what per-title replay estimates from a log: each logged
  impression with the policy's image for that title, with the neighbours and session state as
  logged. The two differ when page or session effects are on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from slate.errors import InvalidProblemError
from slate.sim.config import ResponseConfig
from slate.sim.policies import LoggingPolicy, Policy, decide, policy_name
from slate.sim.response import PageBatch, respond
from slate.sim.schedule import Schedule, SessionState, initial_state

__all__ = [
    "CounterfactualValue",
    "PolicyValue",
    "Run",
    "compare_policies",
    "counterfactual_value",
    "policy_value",
    "simulate",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

FeatureFunction = Callable[[PageBatch], NDArray[Any]]
"""``features(batch) -> (B, P, n_features)`` context features written inline to logs."""


@dataclass(frozen=True)
class PolicyValue:
    """True performance of a policy on a schedule.

    Attributes
    ----------
    policy : str
    take_fraction : float
        Expected take fraction: the mean over impressions of the exact P(quality play) along
        the simulated path (unbiased for the expected share of impressions with a quality play).
    realized_take_fraction : float
        Share of impressions with a sampled quality play.
    standard_error : float
        Standard error of ``realized_take_fraction`` around ``take_fraction`` (pages as units).
    start_rate : float
        Expected share of impressions with a play start (quality or not).
    diversity : float
        ``1 -`` the mean layout-weighted similarity of neighbouring images.
    churn : float
        Share of impressions with a previous image whose image changed.
    n_pages, n_impressions : int
    """

    policy: str
    take_fraction: float
    realized_take_fraction: float
    standard_error: float
    start_rate: float
    diversity: float
    churn: float
    n_pages: int
    n_impressions: int

    def as_dict(self) -> dict[str, Any]:
        """The fields as a plain dict."""
        return dict(self.__dict__)


@dataclass(frozen=True, eq=False)
class Run:
    """Every impression of one simulation (``S`` pages of ``P`` slots).

    Attributes
    ----------
    schedule : Schedule
    policy : str
    outcome_seed : int
    images, previous : (S, P) int16
        Shown and previously shown local image (``-1``: none).
    known, noticed_before : (S, P) bool
        Session state when the page was shown.
    probability : (S, P) float64
        Exact P(quality play) of each impression.
    attention, p_start, p_quality : (S, P) float32
    noticed, started, reward : (S, P) bool
        Sampled outcomes (``reward``: quality play).
    engagement : (S, P) float32
        Minutes watched (0 without a start).
    propensity : (S, P) float64
    explored : (S, P) bool
    greedy : (S, P) int16
    epsilon : (S, P) float32
    page_similarity : (S,) float64
    final_state : SessionState
    """

    schedule: Schedule
    policy: str
    outcome_seed: int
    images: NDArray[np.int16]
    previous: NDArray[np.int16]
    known: BoolArray
    noticed_before: BoolArray
    probability: FloatArray
    attention: NDArray[np.float32]
    p_start: NDArray[np.float32]
    p_quality: NDArray[np.float32]
    noticed: BoolArray
    started: BoolArray
    reward: BoolArray
    engagement: NDArray[np.float32]
    propensity: FloatArray
    explored: BoolArray
    greedy: NDArray[np.int16]
    epsilon: NDArray[np.float32]
    page_similarity: FloatArray
    final_state: SessionState = field(repr=False)

    @property
    def n_pages(self) -> int:
        """Number of pages ``S``."""
        return int(self.images.shape[0])

    @property
    def n_impressions(self) -> int:
        """Number of impressions ``S * P``."""
        return int(self.images.size)

    @property
    def changed(self) -> BoolArray:
        """``(S, P)``: a previous image existed and the shown one differs."""
        return np.asarray((self.previous >= 0) & (self.images != self.previous))

    def value(self) -> PolicyValue:
        """Summary of the run as a :class:`PolicyValue`."""
        per_page_p = self.probability.mean(axis=1)
        per_page_r = self.reward.mean(axis=1)
        resid = per_page_r - per_page_p
        se = float(resid.std(ddof=1) / np.sqrt(len(resid))) if len(resid) > 1 else float("nan")
        has_prev = self.previous >= 0
        churn = float(self.changed.sum() / has_prev.sum()) if has_prev.any() else 0.0
        return PolicyValue(
            policy=self.policy,
            take_fraction=float(self.probability.mean()),
            realized_take_fraction=float(self.reward.mean()),
            standard_error=se,
            start_rate=float((self.attention.astype(np.float64) * self.p_start).mean()),
            diversity=float(1.0 - self.page_similarity.mean()),
            churn=churn,
            n_pages=self.n_pages,
            n_impressions=self.n_impressions,
        )

    def batches(self) -> Iterator[tuple[slice, PageBatch]]:
        """The logged pages day by day, with the session state as it was when they were shown."""
        sched = self.schedule
        world = sched.world
        for day in sched.days:
            s = sched.sessions_of(day)
            if s.stop == s.start:
                continue
            yield s, PageBatch(
                world=world,
                member=sched.member[s],
                day=sched.day[s],
                hour=sched.hour[s],
                device=sched.device[s],
                titles=sched.titles[s],
                previous=self.previous[s].astype(np.int64),
                known=self.known[s],
                session_id=sched.session_id[s],
                page_id=sched.page_id[s],
                timestamp=sched.timestamp[s],
            )

    # ------------------------------------------------------------------ logs
    def to_table(
        self,
        *,
        pages: slice | None = None,
        include_propensities: bool = True,
        features: FeatureFunction | None = None,
    ) -> Any:
        """The run as a ``slate.impressions/1`` :class:`pyarrow.Table` (one row per impression).

        Parameters
        ----------
        pages : slice, optional
            A range of pages (default: all).
        include_propensities : bool, default True
            Write the full logging distribution over candidates (``propensities``).
        features : callable, optional
            ``features(batch) -> (B, P, n_features)``; written inline as ``features``.

        Examples
        --------
        >>> from slate.sim import make_world, make_schedule, simulate, UniformRandomLogging
        >>> world = make_world(n_members=20, n_titles=60, seed=0)
        >>> run = simulate(make_schedule(world, n_days=2), UniformRandomLogging(seed=1))
        >>> table = run.to_table()
        >>> table.num_rows == run.n_impressions, table.schema.metadata[b"slate.schema"]
        (True, b'slate.impressions/1')
        """
        import pyarrow as pa

        from slate.logs import impressions_table

        sched = self.schedule
        world = sched.world
        sel = slice(0, self.n_pages) if pages is None else pages
        titles = sched.titles[sel]
        S, P = titles.shape
        t = titles.ravel()
        images = self.images[sel].astype(np.int64).ravel()
        n_cand = world.n_images[t]
        ids = pa.array(world.image_ids, type=pa.string())
        offsets = np.concatenate([[0], np.cumsum(n_cand)]).astype(np.int32)
        flat = np.repeat(world.image_offset[t] - offsets[:-1], n_cand) + np.arange(offsets[-1])
        candidate_ids = pa.ListArray.from_arrays(pa.array(offsets), ids.take(pa.array(flat)))
        prev = self.previous[sel].astype(np.int64).ravel()
        prev_global = np.where(prev >= 0, world.image_offset[t] + prev, 0)
        previous_ids = ids.take(pa.array(prev_global, mask=prev < 0))
        propensities = None
        if include_propensities:
            local = np.arange(offsets[-1]) - np.repeat(offsets[:-1], n_cand)
            eps = np.repeat(self.epsilon[sel].astype(np.float64).ravel(), n_cand)
            greedy = np.repeat(self.greedy[sel].astype(np.int64).ravel(), n_cand)
            dist = eps / np.repeat(n_cand, n_cand) + (1.0 - eps) * (local == greedy)
            propensities = pa.ListArray.from_arrays(pa.array(offsets), pa.array(dist, type=pa.float64()))
        feats = None
        if features is not None:
            parts = []
            for s, batch in self.batches():
                lo, hi = max(s.start, sel.start or 0), min(s.stop, sel.stop if sel.stop is not None else s.stop)
                if lo >= hi:
                    continue
                f = np.asarray(features(batch.take(np.arange(lo - s.start, hi - s.start))), dtype=np.float32)
                parts.append(f.reshape(-1, f.shape[-1]))
            feats = np.concatenate(parts)
        return impressions_table(
            member_id=np.repeat(world.member_ids[sched.member[sel]], P),
            session_id=np.repeat(sched.session_id[sel], P),
            page_id=np.repeat(sched.page_id[sel], P),
            timestamp=np.repeat(sched.timestamp[sel], P),
            title_id=pa.array(world.title_ids, type=pa.string()).take(pa.array(t)),
            row=np.tile(world.slot_rows[:P], S).astype(np.int32),
            col=np.tile(world.slot_cols[:P], S).astype(np.int32),
            image_id=ids.take(pa.array(world.image_offset[t] + images)),
            candidate_ids=candidate_ids,
            propensity=self.propensity[sel].ravel(),
            propensities=propensities,
            explored=self.explored[sel].ravel(),
            reward=self.reward[sel].ravel().astype(np.int8),
            engagement=self.engagement[sel].ravel().astype(np.float64),
            previous_image_id=previous_ids,
            features=feats,
        )

    def write(self, path: str | Path, **options: Any) -> Path:
        """Write the run as a ``slate.impressions/1`` Parquet file (via :mod:`slate.logs`).

        ``options`` go to :meth:`to_table`; the file's metadata names the logging policy and the
        world's seed.
        """
        from slate.logs import write_impressions

        table = self.to_table(**options)
        meta = {
            "slate.sim.policy": self.policy,
            "slate.sim.world_seed": str(self.schedule.world.config.seed),
            "slate.sim.schedule_seed": str(self.schedule.seed),
        }
        return write_impressions(path, table, metadata=meta)


def _progress(iterable: Any, enabled: bool, desc: str, total: int) -> Any:
    if not enabled:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is an optional extra
        return iterable
    return tqdm(iterable, desc=desc, total=total, leave=False)


def simulate(
    schedule: Schedule,
    policy: Policy | LoggingPolicy,
    *,
    state: SessionState | None = None,
    outcome_seed: int | None = None,
    config: ResponseConfig | None = None,
    progress: bool = False,
    name: str | None = None,
) -> Run:
    """Show the schedule's pages with ``policy``'s images and draw what members do.

    Parameters
    ----------
    schedule : Schedule
    policy : Policy or LoggingPolicy
        A callable ``policy(batch) -> (B, P)`` images, or a logging policy with ``decide``.
    state : SessionState, optional
        Starting session state (copied; default :func:`initial_state`).
    outcome_seed : int, optional
        Seed of the outcome uniforms (default: the schedule's seed). Runs with the same seed
        share their random numbers (common random numbers).
    config : ResponseConfig, optional
        Response model (default: the world's), e.g. with an effect switched off.
    progress : bool, default False
        Show a progress bar (tqdm) over days.
    name : str, optional
        Name recorded for the policy.

    Returns
    -------
    Run

    Examples
    --------
    >>> from slate.sim import make_world, make_schedule, UniformRandomLogging
    >>> world = make_world(n_members=40, n_titles=60, seed=0)
    >>> sched = make_schedule(world, n_days=3, seed=1)
    >>> run = simulate(sched, UniformRandomLogging(seed=2))
    >>> run.n_impressions == sched.n_impressions, 0.0 < run.value().take_fraction < 0.5
    (True, True)
    >>> again = simulate(sched, UniformRandomLogging(seed=2))
    >>> bool((again.reward == run.reward).all() and (again.probability == run.probability).all())
    True
    """
    world = schedule.world
    cfg = world.config.response if config is None else config
    st = initial_state(world) if state is None else state.copy()
    if st.previous.shape != (world.n_members, world.n_titles):
        raise InvalidProblemError(
            f"The 'state' parameter must have arrays of shape {(world.n_members, world.n_titles)}; "
            f"got {st.previous.shape} instead."
        )
    seed = schedule.seed if outcome_seed is None else int(outcome_seed)
    S, P = schedule.titles.shape
    i16 = np.int16
    out: dict[str, NDArray[Any]] = {
        "images": np.empty((S, P), i16),
        "previous": np.empty((S, P), i16),
        "known": np.empty((S, P), bool),
        "noticed_before": np.empty((S, P), bool),
        "probability": np.empty((S, P)),
        "attention": np.empty((S, P), np.float32),
        "p_start": np.empty((S, P), np.float32),
        "p_quality": np.empty((S, P), np.float32),
        "noticed": np.empty((S, P), bool),
        "started": np.empty((S, P), bool),
        "reward": np.empty((S, P), bool),
        "engagement": np.empty((S, P), np.float32),
        "propensity": np.empty((S, P)),
        "explored": np.empty((S, P), bool),
        "greedy": np.empty((S, P), i16),
        "epsilon": np.empty((S, P), np.float32),
        "page_similarity": np.empty(S),
    }
    label = name or policy_name(policy)
    for day in _progress(schedule.days, progress, label, schedule.n_days):
        s = schedule.sessions_of(day)
        if s.stop == s.start:
            continue
        batch = schedule.batch(day, st)
        m, t = batch.member[:, None], batch.titles
        noticed_before = st.noticed[m, t]
        dec = decide(policy, batch)
        resp = respond(batch, dec.images, noticed_before, config=cfg)
        u = schedule.uniforms(day, seed)
        noticed = u[..., 0] < resp.attention
        started = noticed & (u[..., 1] < resp.p_start)
        quality = started & (u[..., 2] < resp.p_quality)
        q = resp.p_quality
        minutes = np.where(
            quality,
            20.0 + 100.0 * u[..., 2] / q,
            10.0 * (u[..., 2] - q) / np.maximum(1.0 - q, 1e-12),
        )
        out["images"][s] = dec.images
        out["previous"][s] = batch.previous
        out["known"][s] = batch.known
        out["noticed_before"][s] = noticed_before
        out["probability"][s] = resp.probability
        out["attention"][s] = resp.attention
        out["p_start"][s] = resp.p_start
        out["p_quality"][s] = resp.p_quality
        out["noticed"][s] = noticed
        out["started"][s] = started
        out["reward"][s] = quality
        out["engagement"][s] = np.where(started, minutes, 0.0)
        out["propensity"][s] = dec.propensity
        out["explored"][s] = dec.explored
        out["greedy"][s] = dec.greedy
        out["epsilon"][s] = dec.epsilon
        out["page_similarity"][s] = resp.page_similarity
        st.previous[m, t] = dec.images
        st.noticed[m, t] = noticed
        st.known[m, t] |= quality
    return Run(schedule=schedule, policy=label, outcome_seed=seed, final_state=st, **out)


def policy_value(
    schedule: Schedule,
    policy: Policy | LoggingPolicy,
    *,
    state: SessionState | None = None,
    outcome_seed: int | None = None,
    config: ResponseConfig | None = None,
    progress: bool = False,
    name: str | None = None,
) -> PolicyValue:
    """The true take fraction, diversity and churn of ``policy`` on the schedule (on-policy).

    Same arguments as :func:`simulate`. Calling it for several policies with the same schedule
    and ``outcome_seed`` compares them on the same members, sessions and random numbers.

    Examples
    --------
    >>> from slate.sim import make_world, make_schedule, ArgmaxPolicy, oracle_scorer
    >>> from slate.sim import UniformRandomLogging
    >>> world = make_world(n_members=60, n_titles=60, seed=0)
    >>> sched = make_schedule(world, n_days=3, seed=1)
    >>> best = policy_value(sched, ArgmaxPolicy(oracle_scorer()))
    >>> rand = policy_value(sched, UniformRandomLogging(seed=0))
    >>> best.take_fraction > rand.take_fraction
    True
    """
    run = simulate(
        schedule, policy, state=state, outcome_seed=outcome_seed, config=config, progress=progress, name=name
    )
    return run.value()


def compare_policies(
    schedule: Schedule,
    policies: Mapping[str, Policy | LoggingPolicy],
    *,
    state: SessionState | None = None,
    outcome_seed: int | None = None,
    config: ResponseConfig | None = None,
    progress: bool = False,
) -> dict[str, PolicyValue]:
    """:func:`policy_value` of each named policy, with common random numbers."""
    return {
        label: policy_value(
            schedule, p, state=state, outcome_seed=outcome_seed, config=config, progress=progress, name=label
        )
        for label, p in policies.items()
    }


@dataclass(frozen=True)
class CounterfactualValue:
    """The value per-title replay estimates from a log (its target), and how often it matches.

    Attributes
    ----------
    policy : str
    take_fraction : float
        Mean over logged impressions of P(quality play) had the policy's image been shown for
        that title, with the rest of the page and the session state as logged.
    match_rate : float
        Share of logged impressions where the log shows the policy's image.
    probability : (S, P) ndarray
        The counterfactual probabilities.
    images : (S, P) ndarray
        The policy's images on the logged pages.
    """

    policy: str
    take_fraction: float
    match_rate: float
    probability: FloatArray = field(repr=False)
    images: IntArray = field(repr=False)


def counterfactual_value(
    run: Run,
    policy: Policy | LoggingPolicy,
    *,
    config: ResponseConfig | None = None,
    name: str | None = None,
) -> CounterfactualValue:
    """True value of ``policy`` on a logged run's contexts: replay's estimand.

    Each logged page is shown to the policy with the logged session state; every slot is then
    evaluated with the policy's image for that slot and the *logged* images in the other slots
    (per-title replay cannot see a policy's own neighbours). For a logging policy (which knows
    its distribution) the value is the exact expectation over its randomisation; ``images``
    then holds one draw.

    Examples
    --------
    >>> from slate.sim import make_world, make_schedule, simulate, UniformRandomLogging
    >>> from slate.sim import ArgmaxPolicy, oracle_scorer
    >>> world = make_world(n_members=40, n_titles=60, seed=0)
    >>> run = simulate(make_schedule(world, n_days=2), UniformRandomLogging(seed=1))
    >>> cf = counterfactual_value(run, ArgmaxPolicy(oracle_scorer()))
    >>> cf.take_fraction > run.value().take_fraction, 0.0 < cf.match_rate < 1.0
    (True, True)
    """
    cfg = run.schedule.world.config.response if config is None else config
    prob = np.empty(run.images.shape)
    images = np.empty(run.images.shape, dtype=np.int64)
    for s, batch in run.batches():
        dec = decide(policy, batch)
        logged = run.images[s].astype(np.int64)
        noticed = run.noticed_before[s]
        if isinstance(policy, LoggingPolicy):
            # the exact expectation over the policy's own randomisation
            n = batch.n_candidates
            dist = dec.propensities(n)
            expected = np.zeros(n.shape)
            for k in range(dist.shape[2]):
                live = k < n
                if not live.any():
                    continue
                trial = np.minimum(k, n - 1)
                p = respond(batch, trial, noticed, config=cfg, neighbours=logged).probability
                expected += np.where(live, dist[:, :, k] * p, 0.0)
            prob[s] = expected
        else:
            prob[s] = respond(batch, dec.images, noticed, config=cfg, neighbours=logged).probability
        images[s] = dec.images
    return CounterfactualValue(
        policy=name or policy_name(policy),
        take_fraction=float(prob.mean()),
        match_rate=float((images == run.images).mean()),
        probability=prob,
        images=images,
    )
