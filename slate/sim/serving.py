"""Serve a simulated world through :class:`slate.serve.Composer` and log it, with its truth.

:func:`serve` walks a :class:`~slate.sim.Schedule` day by day through :func:`simulate`, composing
every page with a real :class:`~slate.serve.Composer` (stability rules, a state store, sticky
exploration with exact propensities). The simulator's response model draws what members do
(common random numbers), and every decision is appended, with its rewards, to a Parquet decision
log written by :class:`~slate.serve.DecisionLogger` (the ``slate.impressions/1`` schema
:func:`slate.replay.evaluate` reads). The :class:`ServedRun` it returns holds the log's folder,
the :class:`~slate.sim.Run` (session state as logged, rewards, exact take probabilities) and the
logged propensities, so a target policy's true value on the same pages is one call away:

* per title, with the rest of the page and the session state as logged
  (:func:`~slate.sim.counterfactual_value`, the estimand of per-title replay), and
* for the whole page, the target's images on every slot (:func:`page_value`), the estimand of
  page-level estimators when titles interact.

Only the *randomized* rows (logged propensity below 1) carry information about another image:
:meth:`ServedRun.target_table` writes the target's decisions for those rows as a
:class:`~slate.replay.DecisionTable` (other rows are left out, ``missing="skip"``), and
:meth:`ServedRun.truth` averages a true value over the same rows.

Under *sticky* exploration one draw is shown in several sessions of a member, so rows of one
member are correlated across pages; ``slate.replay.evaluate(..., cluster="member")`` computes the standard errors with members
(not pages) as the independent units.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import special

from slate.errors import InvalidProblemError
from slate.sim.config import ResponseConfig
from slate.sim.policies import Scorer, hash_uniform, oracle_scorer
from slate.sim.response import PageBatch, respond
from slate.sim.schedule import Schedule, SessionState
from slate.sim.simulate import Run, simulate

__all__ = [
    "ComposePolicy",
    "ServedRun",
    "noisy_scorer",
    "page_value",
    "serve",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]


def noisy_scorer(noise: float = 0.5, *, seed: int = 0, config: ResponseConfig | None = None) -> Scorer:
    """The true page-blind P(quality play) times a fixed log-normal error per (member, image).

    A stand-in for a learned model: the error of a member's score for an image is the same in
    every session (a model is wrong the same way until it is retrained).

    Parameters
    ----------
    noise : float, default 0.5
        Standard deviation of the log error.
    seed : int, default 0
    config : ResponseConfig, optional
        Response model of the truth (default: the world's).

    Examples
    --------
    >>> from slate.sim import make_world, make_schedule, initial_state
    >>> world = make_world(n_members=30, n_titles=60, seed=1)
    >>> batch = make_schedule(world, n_days=1).batch(0, initial_state(world))
    >>> s = noisy_scorer(0.5, seed=3)(batch)
    >>> s.shape == batch.titles.shape + (world.max_images,), bool((noisy_scorer(0.5, seed=3)(batch) == s)[s == s].all())
    (True, True)
    """
    if not noise >= 0:
        raise InvalidProblemError(f"The 'noise' parameter of noisy_scorer must be >= 0; got {noise!r} instead.")
    truth = oracle_scorer(config)

    def score(batch: PageBatch) -> FloatArray:
        p = truth(batch)
        g = batch.world.title_images[batch.titles]  # (B, P, K) global image, -1 on padding
        u = hash_uniform(seed, batch.member[:, None, None], np.maximum(g, 0))
        z = special.ndtri(np.clip(u, 1e-12, 1.0 - 1e-12))
        return np.asarray(p * np.exp(noise * z))

    return score


class ComposePolicy:
    """A simulator policy that serves every page of a batch through a :class:`~slate.serve.Composer`.

    Titles become requests with the world's image ids (local order) and grid positions; the
    page's scores come from ``scorer`` (computed for the whole day's batch at once). Decisions are
    kept in :attr:`decisions_`, in the schedule's order.

    Parameters
    ----------
    world : World
    scorer : callable ``scorer(batch) -> (B, P, K)``
        The logging policy's scores.
    store, exploration, config, catalog
        As for :class:`~slate.serve.Composer` (``catalog``: default the world's embeddings).

    Examples
    --------
    >>> from slate.serve import ComposeConfig
    >>> from slate.sim import make_world, make_schedule, simulate
    >>> from slate.stability import InMemoryStore
    >>> world = make_world(n_members=20, n_titles=30, include_example=False, page={"rows": 2, "cols": 4}, seed=0)
    >>> policy = ComposePolicy(world, oracle_scorer(), InMemoryStore(),
    ...                        config=ComposeConfig(solver="independent", diversity=0.0))
    >>> run = simulate(make_schedule(world, n_days=2, seed=1), policy)
    >>> len(policy.decisions_) == run.n_pages, policy.decisions_[0].status
    (True, 'ok')
    """

    name = "compose"

    def __init__(
        self,
        world: Any,
        scorer: Scorer,
        store: Any,
        exploration: Any = None,
        *,
        config: Any = None,
        catalog: Any = None,
    ) -> None:
        from slate.page.embeddings import ImageEmbeddings
        from slate.serve import Composer

        self.world = world
        self.scorer = scorer
        if catalog is None:
            catalog = ImageEmbeddings(tuple(world.image_ids), world.embeddings)
        self._scores: FloatArray | None = None
        self.composer = Composer(self._page_scores, store, exploration, config=config, catalog=catalog)
        self.decisions_: list[Any] = []
        self._titles: dict[tuple[int, int], Any] = {}

    def _page_scores(self, request: Any) -> FloatArray:
        if self._scores is None:
            raise InvalidProblemError("ComposePolicy scores pages only while serving a batch.")
        return self._scores[:, : request.n_images]

    def _title(self, title: int, slot: int) -> Any:
        from slate.serve import TitleRequest

        key = (title, slot)
        hit = self._titles.get(key)
        if hit is None:
            w = self.world
            lo = int(w.image_offset[title])
            hit = TitleRequest(
                title_id=w.title_ids[title],
                image_ids=w.image_ids[lo : lo + int(w.n_images[title])],
                row=int(w.slot_rows[slot]),
                col=int(w.slot_cols[slot]),
            )
            self._titles[key] = hit
        return hit

    def __call__(self, batch: PageBatch) -> IntArray:
        from slate.serve import PageRequest

        w = self.world
        scores = np.asarray(self.scorer(batch), dtype=np.float64)
        out = np.empty(batch.titles.shape, dtype=np.int64)
        for b in range(batch.n_pages):
            self._scores = scores[b]
            request = PageRequest(
                member_id=int(w.member_ids[batch.member[b]]),
                session_id=int(batch.session_id[b]),
                page_id=int(batch.page_id[b]),
                timestamp=datetime.fromtimestamp(int(batch.timestamp[b]) / 1e6, tz=timezone.utc),
                titles=tuple(self._title(t, s) for s, t in enumerate(batch.titles[b].tolist())),
            )
            decision = self.composer.compose(request)
            if decision.faults:
                raise InvalidProblemError(f"compose() reported faults in a simulation: {decision.fault_details}")
            self.decisions_.append(decision)
            out[b] = [w.image_index[i] - w.image_offset[t] for i, t in zip(decision.image_ids, batch.titles[b], strict=True)]
        return out


@dataclass(frozen=True, eq=False)
class ServedRun:
    """A schedule served through compose() and logged (see :func:`serve`).

    Attributes
    ----------
    run : Run
        The simulation: images shown, session state as logged, rewards, exact probabilities.
    log_path : pathlib.Path
        Folder of the Parquet decision log (read it with :func:`slate.logs.read_impressions` or
        pass it to :func:`slate.replay.evaluate`).
    propensity : (S, P) float64
        Logged propensity of each shown image.
    explored : (S, P) bool
    reason : (S, P) int8
        The stability rule that decided each title (:class:`slate.stability.Reason`).
    files : tuple of pathlib.Path
    stats : ServeStats
        compose()'s counters.
    """

    run: Run
    log_path: Path
    propensity: FloatArray
    explored: BoolArray
    reason: NDArray[np.int8]
    files: tuple[Path, ...] = field(repr=False)
    stats: Any = field(repr=False)

    @property
    def randomized(self) -> BoolArray:
        """``(S, P)``: rows whose image was randomized (logged propensity below 1)."""
        return np.asarray(self.propensity < 1.0)

    def truth(self, probability: FloatArray, rows: BoolArray | None = None) -> float:
        """Mean of a ``(S, P)`` true probability over ``rows`` (default: the randomized rows)."""
        mask = self.randomized if rows is None else np.asarray(rows, dtype=bool)
        return float(np.asarray(probability)[mask].mean())

    def target_table(self, images: NDArray[Any], rows: BoolArray | None = None, *, name: str = "target") -> Any:
        """A target's local ``(S, P)`` images as a :class:`~slate.replay.DecisionTable` for
        ``rows`` (default: the randomized rows); other log rows are left out (``missing="skip"``)."""
        from slate.replay import DecisionTable

        mask = self.randomized if rows is None else np.asarray(rows, dtype=bool)
        sched = self.run.schedule
        w = sched.world
        titles = sched.titles
        page, slot = np.nonzero(mask)
        t = titles[page, slot]
        g = w.image_offset[t] + np.asarray(images)[page, slot]
        return DecisionTable.from_arrays(
            member_id=w.member_ids[sched.member[page]],
            session_id=sched.session_id[page],
            title_id=np.asarray(w.title_ids, dtype=object)[t],
            image_id=np.asarray(w.image_ids, dtype=object)[g],
            missing="skip",
            name=name,
        )


def serve(
    schedule: Schedule,
    scorer: Scorer,
    directory: str | Path,
    *,
    exploration: Any = None,
    config: Any = None,
    store: Any = None,
    state: SessionState | None = None,
    outcome_seed: int | None = None,
    response: ResponseConfig | None = None,
    batch_pages: int = 4096,
) -> ServedRun:
    """Serve every page of ``schedule`` through compose(), draw outcomes, and log the decisions.

    Parameters
    ----------
    schedule : Schedule
    scorer : callable ``scorer(batch) -> (B, P, K)``
        The logging policy's scores (e.g. :func:`noisy_scorer`).
    directory : str or path
        Folder of the decision log (created if missing; it must hold no Parquet file yet, so
        that reading the folder reads this run only).
    exploration : Exploration, optional
        E.g. :class:`slate.serve.StickyEpsilon`.
    config : ComposeConfig, optional
        Default: the independent solver with generous time budgets (so that results do not
        depend on the machine's speed) and no diversity term.
    store : StateStore, optional
        Default a new :class:`slate.stability.InMemoryStore`.
    state : SessionState, optional
        Starting session state of the simulator.
    outcome_seed : int, optional
        Seed of the outcomes (default: the schedule's).
    response : ResponseConfig, optional
        Response model (default: the world's).
    batch_pages : int, default 4096
        Pages per decision-log file.

    Returns
    -------
    ServedRun

    Raises
    ------
    InvalidProblemError
        compose() reported a fault (a simulation expects none), or ``directory`` already holds
        Parquet files.

    Examples
    --------
    >>> import tempfile
    >>> from slate.serve import StickyEpsilon
    >>> from slate.sim import ArgmaxPolicy, counterfactual_value, make_schedule, make_world
    >>> from slate.replay import evaluate
    >>> world = make_world(n_members=30, n_titles=40, include_example=False, max_images=4,
    ...                    page={"rows": 2, "cols": 4}, seed=0)
    >>> served = serve(make_schedule(world, n_days=3, seed=1), noisy_scorer(seed=2), tempfile.mkdtemp(),
    ...                exploration=StickyEpsilon(0.3, max_explored=2, sticky_sessions=2, seed=3))
    >>> served.run.n_impressions == served.propensity.size, bool(served.randomized.any())
    (True, True)
    >>> target = counterfactual_value(served.run, ArgmaxPolicy(oracle_scorer()))  # truth per row
    >>> report = evaluate(served.log_path, served.target_table(target.images), "snips", n_bootstrap=0)
    >>> report.n_undecided == int((~served.randomized).sum())
    True
    >>> truth = served.truth(target.probability)  # the same (randomized) rows
    >>> bool(abs(report.estimate.value - truth) < 4 * report.estimate.se)
    True
    """
    from slate.serve import ComposeConfig, DecisionLogger, DecisionLogOptions
    from slate.stability import InMemoryStore

    folder = Path(directory)
    if folder.is_dir() and next(folder.rglob("*.parquet"), None) is not None:
        raise InvalidProblemError(
            f"The 'directory' parameter of serve must be a new or empty folder; got {str(folder)!r}, "
            "which already holds Parquet files."
        )
    if config is None:
        config = ComposeConfig(
            solver="independent", diversity=0.0, solver_time_ms=10_000.0, solver_grace_ms=10_000.0,
            scoring_budget_ms=10_000.0, store_budget_ms=10_000.0,
        )
    policy = ComposePolicy(schedule.world, scorer, InMemoryStore() if store is None else store, exploration,
                           config=config)
    run = simulate(schedule, policy, state=state, outcome_seed=outcome_seed, config=response, name="compose")
    decisions = policy.decisions_
    with DecisionLogger(directory, DecisionLogOptions(fsync=False), batch_pages=batch_pages, partition=None) as logger:
        for i, d in enumerate(decisions):
            logger.append(d, rewards=run.reward[i].astype(np.int8))
    return ServedRun(
        run=run,
        log_path=folder,
        propensity=np.stack([d.propensity for d in decisions]),
        explored=np.stack([d.explored for d in decisions]),
        reason=np.stack([d.reason for d in decisions]).astype(np.int8),
        files=tuple(logger.files_),
        stats=policy.composer.stats_,
    )


def page_value(run: Run, policy: Callable[[PageBatch], NDArray[Any]], *, config: ResponseConfig | None = None) -> FloatArray:
    """``(S, P)`` true P(quality play) with ``policy``'s images on *every* slot of the logged pages.

    The session state is as logged; the neighbours are the policy's own images (what a page-level
    estimator targets when titles interact), unlike :func:`~slate.sim.counterfactual_value`,
    whose neighbours are the logged images.

    Examples
    --------
    >>> from slate.sim import ArgmaxPolicy, UniformRandomLogging, counterfactual_value
    >>> from slate.sim import make_schedule, make_world, simulate
    >>> world = make_world(n_members=30, n_titles=60, seed=0)
    >>> run = simulate(make_schedule(world, n_days=2, seed=1), UniformRandomLogging(seed=2))
    >>> best = ArgmaxPolicy(oracle_scorer())
    >>> whole, per_title = page_value(run, best), counterfactual_value(run, best).probability
    >>> whole.shape == run.images.shape, bool((whole != per_title).any())  # neighbours matter
    (True, True)
    """
    prob = np.empty(run.images.shape)
    for s, batch in run.batches():
        images = np.asarray(policy(batch), dtype=np.int64)
        prob[s] = respond(batch, images, run.noticed_before[s], config=config).probability
    return prob
