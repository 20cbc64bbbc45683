"""Policies that pick one image per title for simulated pages, and logging policies.

A *policy* is any callable ``policy(batch) -> images``: it maps a :class:`~slate.sim.PageBatch`
(pages: member, context, titles, candidates, previous images) to a ``(B, P)`` array of local
image indices. Adapters build policies from scores:

* :class:`ArgmaxPolicy` -- per-title argmax of a score array (the page-blind baseline);
* :class:`PageOptimizerPolicy` -- scores plus the page optimizer (:func:`slate.solvers.solve`),
  which trades relevance against neighbour similarity and churn;
* :func:`oracle_scorer` -- the page-blind truth as a scorer (what a perfect model predicts).

*Logging policies* randomise and know their exact propensities. Their random numbers are a
counter-based hash of (seed, page id, slot), so a decision does not depend on how pages are
batched:

* :class:`UniformRandomLogging` -- a uniformly random image per title;
* :class:`EpsilonGreedyLogging` -- a production policy's image, a uniform one with prob. epsilon;
* :class:`StickyExplorationLogging` -- exploration draws are kept for a member-title for
  ``hold_days`` days (cleaner attribution, as in the Netflix post).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from slate.errors import InvalidProblemError
from slate.policy import Chooser, PageSampler, mix_uniform
from slate.policy import Scorer as _Scorer
from slate.sim.config import ResponseConfig
from slate.sim.response import PageBatch, candidate_probabilities

__all__ = [
    "ArgmaxPolicy",
    "Decision",
    "EpsilonGreedyLogging",
    "LoggingPolicy",
    "PageOptimizerPolicy",
    "Policy",
    "Scorer",
    "StickyExplorationLogging",
    "UniformRandomLogging",
    "decide",
    "hash_uniform",
    "oracle_scorer",
    "policy_name",
    "table_scorer",
]

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

Scorer = _Scorer
"""A :class:`slate.policy.Scorer` on simulated pages: ``scorer(batch) -> (B, P, K)`` scores of
every candidate image (ignored on padding)."""


@runtime_checkable
class Policy(Chooser, Protocol):
    """A :class:`slate.policy.Chooser` (a deterministic policy) on simulated pages:
    ``policy(batch) -> (B, P)`` local image indices, one candidate per title, propensity 1."""

    def __call__(self, batch: PageBatch, /) -> IntArray: ...


@runtime_checkable
class LoggingPolicy(PageSampler, Protocol):
    """A :class:`slate.policy.PageSampler` on simulated pages: a randomised policy that reports
    the exact probability of what it shows (a :class:`Decision`)."""

    name: str

    def decide(self, batch: PageBatch, /) -> Decision: ...


# ---------------------------------------------------------------------- hashing
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix(x: NDArray[np.uint64]) -> NDArray[np.uint64]:
    # splitmix64 finaliser (Steele, Lea & Flood 2014); numpy uint64 arithmetic wraps.
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return np.asarray(x ^ (x >> np.uint64(31)))


def hash_uniform(seed: int, *keys: NDArray[Any] | int) -> FloatArray:
    """Uniforms in [0, 1) that are a pure function of ``(seed, *keys)`` (broadcast).

    A counter-based generator: the value for a key does not depend on which other keys are
    drawn or in what order, so decisions are reproducible however pages are batched.

    Examples
    --------
    >>> u = hash_uniform(7, np.arange(5), 3)
    >>> bool(((u >= 0) & (u < 1)).all()), bool((hash_uniform(7, np.arange(5), 3) == u).all())
    (True, True)
    >>> float(abs(hash_uniform(1, np.arange(100_000)).mean() - 0.5)) < 0.01
    True
    """
    arrays = [np.asarray(k).astype(np.int64).view(np.uint64) for k in keys]
    shape = np.broadcast_shapes(*(a.shape for a in arrays)) if arrays else ()
    h = _mix(np.full(shape, np.uint64(seed) + _GOLDEN, dtype=np.uint64))
    for a in arrays:
        h = _mix(h ^ (a + _GOLDEN))
    return np.asarray((h >> np.uint64(11)).astype(np.float64) * 2.0**-53)


# ---------------------------------------------------------------------- decisions
@dataclass(frozen=True, eq=False)
class Decision:
    """What a policy showed on ``B`` pages, with exact propensities.

    Every policy here draws from a mixture: with probability ``1 - epsilon`` its greedy image,
    otherwise a uniformly random candidate. The full distribution over candidates is
    ``(1 - epsilon) * [k == greedy] + epsilon / n_candidates`` (:meth:`propensities`).

    Attributes
    ----------
    images : (B, P) int64
    propensity : (B, P) float64
        Probability of the shown image.
    explored : (B, P) bool
        Chosen by the exploration branch.
    greedy : (B, P) int64
        The greedy image (``-1`` when the policy is uniformly random).
    epsilon : (B, P) float64
    """

    images: IntArray
    propensity: FloatArray
    explored: BoolArray
    greedy: IntArray
    epsilon: FloatArray

    @classmethod
    def deterministic(cls, images: NDArray[Any]) -> Decision:
        """A deterministic decision: propensity 1, nothing explored."""
        img = np.asarray(images, dtype=np.int64)
        return cls(img, np.ones(img.shape), np.zeros(img.shape, bool), img, np.zeros(img.shape))

    def propensities(self, n_candidates: IntArray, k_max: int | None = None) -> FloatArray:
        """``(B, P, K)`` logging distribution over candidates (0 on padding)."""
        k = int(n_candidates.max()) if k_max is None else k_max
        local = np.arange(k)[None, None, :]
        greedy = (local == self.greedy[..., None]).astype(np.float64)
        return mix_uniform(greedy, self.epsilon, local < n_candidates[..., None])


def _mixture_decision(
    batch: PageBatch, greedy: IntArray | None, epsilon: float, explore_u: FloatArray, image_u: FloatArray
) -> Decision:
    n = batch.n_candidates
    random_image = np.minimum((image_u * n).astype(np.int64), n - 1)
    if greedy is None:
        eps = np.ones(n.shape)
        return Decision(random_image, 1.0 / n, np.ones(n.shape, bool), np.full(n.shape, -1, np.int64), eps)
    explore = explore_u < epsilon
    images = np.where(explore, random_image, greedy)
    propensity = epsilon / n + (1.0 - epsilon) * (images == greedy)
    return Decision(images, propensity, explore, greedy.astype(np.int64), np.full(n.shape, float(epsilon)))


def _check_images(batch: PageBatch, images: NDArray[Any], who: str) -> IntArray:
    img = np.asarray(images)
    if img.shape != batch.titles.shape or not np.issubdtype(img.dtype, np.integer):
        raise InvalidProblemError(
            f"The policy '{who}' must return integers of shape {batch.titles.shape}; got {img.dtype} of shape {img.shape} instead."
        )
    bad = (img < 0) | (img >= batch.n_candidates)
    if bad.any():
        b, s = (int(x) for x in np.argwhere(bad)[0])
        raise InvalidProblemError(
            f"The policy '{who}' must choose a candidate of each title; got image {int(img[b, s])} for title "
            f"'{batch.world.title_ids[batch.titles[b, s]]}' ({int(batch.n_candidates[b, s])} candidates)."
        )
    return img.astype(np.int64)


def decide(policy: Policy | LoggingPolicy, batch: PageBatch) -> Decision:
    """Run any policy on a batch: logging policies report their decision, plain callables are
    deterministic (propensity 1). The images are checked to be candidates."""
    if isinstance(policy, PageSampler):
        decision = policy.decide(batch)
        _check_images(batch, decision.images, policy.name)
        return decision
    if not callable(policy):
        raise InvalidProblemError(
            f"The policy must be a LoggingPolicy (decide(batch) and a name) or a deterministic policy "
            f"callable as policy(batch) -> images; got {type(policy).__name__}, which is neither."
        )
    name = getattr(policy, "name", type(policy).__name__)
    return Decision.deterministic(_check_images(batch, policy(batch), str(name)))


def _check_epsilon(epsilon: float, who: str) -> float:
    if not isinstance(epsilon, (int, float)) or not 0.0 <= float(epsilon) <= 1.0:
        raise InvalidProblemError(f"The 'epsilon' parameter of {who} must be a number in [0, 1]; got {epsilon!r} instead.")
    return float(epsilon)


@dataclass(frozen=True)
class UniformRandomLogging:
    """Show a uniformly random candidate for every title (propensity ``1 / n_candidates``).

    Examples
    --------
    >>> from slate.sim import make_world, make_schedule, initial_state
    >>> world = make_world(n_members=30, n_titles=60, seed=1)
    >>> batch = make_schedule(world, n_days=1).batch(0, initial_state(world))
    >>> d = UniformRandomLogging(seed=3).decide(batch)
    >>> bool(np.allclose(d.propensity, 1.0 / batch.n_candidates)), bool(d.explored.all())
    (True, True)
    """

    seed: int = 0
    name: str = "uniform"

    def decide(self, batch: PageBatch) -> Decision:
        slot = np.arange(batch.n_slots)[None, :]
        image_u = hash_uniform(self.seed, 1, batch.page_id[:, None], slot)
        return _mixture_decision(batch, None, 1.0, image_u, image_u)

    def __call__(self, batch: PageBatch) -> IntArray:
        return self.decide(batch).images


@dataclass(frozen=True)
class EpsilonGreedyLogging:
    """The production policy's image; with probability ``epsilon`` a uniformly random one.

    Parameters
    ----------
    production : Policy
        Any policy (a callable on batches), e.g. :class:`ArgmaxPolicy` of a model's scores.
    epsilon : float
    seed : int
    """

    production: Policy
    epsilon: float = 0.1
    seed: int = 0
    name: str = "epsilon-greedy"

    def __post_init__(self) -> None:
        _check_epsilon(self.epsilon, "EpsilonGreedyLogging")

    def decide(self, batch: PageBatch) -> Decision:
        greedy = _check_images(batch, self.production(batch), "production")
        slot = np.arange(batch.n_slots)[None, :]
        explore_u = hash_uniform(self.seed, 2, batch.page_id[:, None], slot)
        image_u = hash_uniform(self.seed, 3, batch.page_id[:, None], slot)
        return _mixture_decision(batch, greedy, self.epsilon, explore_u, image_u)

    def __call__(self, batch: PageBatch) -> IntArray:
        return self.decide(batch).images


@dataclass(frozen=True)
class StickyExplorationLogging:
    """Exploration whose draws are kept for a member-title for ``hold_days`` days.

    Time is cut into periods of ``hold_days`` days (with a per member-title phase). In each
    period a member-title is explored with probability ``epsilon`` and, when explored, shows one
    random image for the whole period; otherwise it shows the production policy's image
    (``production=None`` with ``epsilon=1``: sticky uniform exploration).

    The logged propensity ``(1 - epsilon) [image == greedy] + epsilon / n`` is exact as a
    marginal over the period's draw. It is the right weight for target policies that do not
    read ``previous`` images; within a period the previous image reveals the draw, so estimates
    for churn-aware policies are better made on non-sticky logs.

    Examples
    --------
    >>> from slate.sim import make_world, make_schedule, initial_state
    >>> world = make_world(n_members=30, n_titles=60, seed=1)
    >>> sched = make_schedule(world, n_days=2)
    >>> policy = StickyExplorationLogging(hold_days=7, seed=2)
    >>> a = policy.decide(sched.batch(0, initial_state(world)))
    >>> bool(np.allclose(a.propensity, 1.0 / world.n_images[sched.titles[sched.sessions_of(0)]]))
    True
    """

    production: Policy | None = None
    epsilon: float = 1.0
    hold_days: int = 7
    seed: int = 0
    name: str = "sticky"

    def __post_init__(self) -> None:
        _check_epsilon(self.epsilon, "StickyExplorationLogging")
        if self.production is None and self.epsilon != 1.0:
            raise InvalidProblemError(
                f"StickyExplorationLogging without a production policy must have epsilon=1; got {self.epsilon} instead."
            )
        if not isinstance(self.hold_days, int) or self.hold_days < 1:
            raise InvalidProblemError(
                f"The 'hold_days' parameter of StickyExplorationLogging must be an integer >= 1; got {self.hold_days!r} instead."
            )

    def decide(self, batch: PageBatch) -> Decision:
        member = batch.world.member_ids[batch.member][:, None]
        title = batch.titles
        phase = np.floor(hash_uniform(self.seed, 4, member, title) * self.hold_days).astype(np.int64)
        period = (batch.day[:, None] + phase) // self.hold_days
        explore_u = hash_uniform(self.seed, 5, member, title, period)
        image_u = hash_uniform(self.seed, 6, member, title, period)
        if self.production is None:
            return _mixture_decision(batch, None, 1.0, explore_u, image_u)
        greedy = _check_images(batch, self.production(batch), "production")
        return _mixture_decision(batch, greedy, self.epsilon, explore_u, image_u)

    def __call__(self, batch: PageBatch) -> IntArray:
        return self.decide(batch).images


# ---------------------------------------------------------------------- scorers and adapters
def oracle_scorer(config: ResponseConfig | None = None, *, include_position: bool = False) -> Scorer:
    """A scorer returning the true page-blind P(quality play) of every candidate.

    Examples
    --------
    >>> from slate.sim import make_world, make_schedule, initial_state
    >>> world = make_world(n_members=30, n_titles=60, seed=1)
    >>> batch = make_schedule(world, n_days=1).batch(0, initial_state(world))
    >>> oracle_scorer()(batch).shape == batch.titles.shape + (world.max_images,)
    True
    """

    def score(batch: PageBatch) -> FloatArray:
        return candidate_probabilities(batch, config=config, include_position=include_position)

    return score


def table_scorer(table: NDArray[Any]) -> Scorer:
    """A context-free scorer from a ``(T, K)`` table of per-title image scores (e.g. take rates)."""
    scores = np.asarray(table, dtype=np.float64)

    def score(batch: PageBatch) -> FloatArray:
        if scores.shape != (batch.world.n_titles, batch.world.max_images):
            raise InvalidProblemError(
                f"The score table must have shape {(batch.world.n_titles, batch.world.max_images)}; got {scores.shape} instead."
            )
        return np.asarray(scores[batch.titles])

    return score


def _masked(batch: PageBatch, scores: NDArray[Any]) -> FloatArray:
    s = np.asarray(scores, dtype=np.float64)
    k = batch.world.max_images
    if s.ndim != 3 or s.shape[:2] != batch.titles.shape or s.shape[2] < int(batch.n_candidates.max()):
        raise InvalidProblemError(
            f"The scorer must return an array of shape {(*batch.titles.shape, k)}; got {s.shape} instead."
        )
    s = s[:, :, :k]
    cand = batch.candidates[:, :, : s.shape[2]]
    bad = cand & ~np.isfinite(s)
    if bad.any():
        b, t, j = (int(x) for x in np.argwhere(bad)[0])
        raise InvalidProblemError(
            f"The scorer must return finite scores for candidates; got {s[b, t, j]} for title "
            f"'{batch.world.title_ids[batch.titles[b, t]]}' image {j}."
        )
    return np.asarray(np.where(cand, s, -np.inf))


@dataclass(frozen=True)
class ArgmaxPolicy:
    """Per-title argmax of a scorer's scores (ties to the lowest index): a Chooser from a Scorer.

    For the tie-aware distribution (ties split evenly) use :func:`slate.policy.greedy`.

    Examples
    --------
    >>> from slate.sim import make_world, make_schedule, initial_state
    >>> world = make_world(n_members=30, n_titles=60, seed=1)
    >>> batch = make_schedule(world, n_days=1).batch(0, initial_state(world))
    >>> images = ArgmaxPolicy(oracle_scorer())(batch)
    >>> images.shape == batch.titles.shape, bool((images < batch.n_candidates).all())
    (True, True)
    """

    scorer: Scorer
    name: str = "argmax"

    def __call__(self, batch: PageBatch) -> IntArray:
        return np.asarray(np.argmax(_masked(batch, self.scorer(batch)), axis=2), dtype=np.int64)


@dataclass(frozen=True)
class PageOptimizerPolicy:
    """Scores plus the page optimizer: one :func:`slate.solvers.solve` per page.

    Each page becomes a :class:`~slate.page.PageProblem` with the world's layout pairs, the
    candidates' visual embeddings and the member's previous images.

    Parameters
    ----------
    scorer : Scorer
    diversity, churn : float
        Weights of the neighbour-similarity and change penalties. With ``relative=True`` (the
        default) each is multiplied, page by page, by the mean over titles of the best score, so
        a weight is a rate: ``diversity = 2 * crowding`` matches the response model's page effect
        to first order (``p * exp(-crowding * c) ~ p - crowding * p * c``, each pair counted by
        both its titles).
    relative : bool, default True
    max_changes : int, optional
        Budget on changed titles per page.
    solver : str, default "fast"
        Any registered solver name.
    time_limit_ms : float, optional
    """

    scorer: Scorer
    diversity: float = 0.7
    churn: float = 0.0
    relative: bool = True
    max_changes: int | None = None
    solver: str = "fast"
    time_limit_ms: float | None = None
    name: str = "page-optimizer"
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for wname in ("diversity", "churn"):
            value = getattr(self, wname)
            if not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
                raise InvalidProblemError(
                    f"The '{wname}' parameter of PageOptimizerPolicy must be a finite number >= 0; got {value!r} instead."
                )

    def __call__(self, batch: PageBatch) -> IntArray:
        from slate.page.problem import PageProblem
        from slate.solvers import solve

        _ensure_registered(self.solver)
        scores = _masked(batch, self.scorer(batch))
        world = batch.world
        out = np.empty(batch.titles.shape, dtype=np.int64)
        for b in range(batch.n_pages):
            k = int(batch.n_candidates[b].max())
            cand = batch.candidates[b, :, :k]
            s = np.where(cand, scores[b, :, :k], 0.0)
            g = world.title_images[batch.titles[b], :k]
            emb = np.where(cand[:, :, None], world.embeddings[np.maximum(g, 0)], 0.0)
            scale = float(np.max(np.where(cand, s, -np.inf), axis=1).mean()) if self.relative else 1.0
            scale = max(scale, 0.0)
            problem = PageProblem.from_arrays(
                s,
                emb,
                pairs=world.pairs,
                pair_weights=world.pair_weights,
                candidates=cand,
                previous=batch.previous[b],
                max_changes=self.max_changes,
                diversity=self.diversity * scale,
                churn=self.churn * scale,
                rows=world.slot_rows[: batch.n_slots],
                cols=world.slot_cols[: batch.n_slots],
            )
            result = solve(problem, solver=self.solver, time_limit_ms=self.time_limit_ms, **self.options)
            out[b] = result.assignment
        return out


def _ensure_registered(solver: str) -> None:
    """Import ``slate.solvers.<solver>`` when the name is not registered yet (solver modules
    register themselves on import)."""
    import importlib

    from slate.solvers import available_solvers

    if solver not in available_solvers():
        try:
            importlib.import_module(f"slate.solvers.{solver}")
        except ImportError:
            pass  # solve() then raises UnknownSolverError naming the available solvers


def policy_name(policy: Any) -> str:
    """A display name: the policy's ``name`` attribute, else its type or function name."""
    name = getattr(policy, "name", None)
    if isinstance(name, str):
        return name
    return str(getattr(policy, "__name__", type(policy).__name__))

