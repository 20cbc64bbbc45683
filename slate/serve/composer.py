"""``compose()``: a member's page from scores, stability state, the page optimiser and exploration.

The stages, each timed in :attr:`PageDecision.timings_ms`:

1. ``validate``: the request (pydantic) -> arrays. A malformed request raises
   :class:`~slate.serve.InvalidRequestError`; nothing after this point raises.
2. ``store_get``: the member's stability state for the page's titles (one round trip).
3. ``score``: the scoring policy's ``(n_titles, n_images)`` scores.
4. ``plan``: stability rules (:func:`slate.stability.plan_page`): locks, held draws, dwell,
   hysteresis, expiry.
5. ``problem``: the :class:`~slate.page.PageProblem` (layout pairs, visual similarity from the
   image catalog, churn, change budget minus the exploration reserve).
6. ``solve``: :func:`slate.solvers.solve` within ``solver_time_ms``.
7. ``explore``: randomize eligible titles with exact propensities.
8. ``store_put``: the new state (one round trip).
9. ``log``: hand the decision to the decision logger. With a durable logger
   (``DecisionLogger(durable=True)``) the page is logged *before* ``store_put``, so every
   committed state has its page in the log; a page the log refuses is not committed.

**No lost updates.** With a :class:`~slate.stability.VersionedStateStore` (the memory, SQLite and
Redis stores) the state is read with the member's version and written only if that version is
unchanged. If another page for the member (another thread, process or host) was saved in
between, the page is re-planned once against the fresh state; should that conflict too, it shows
the stored images and is not saved. Either way the fault ``store_conflict`` says so. A store with
only ``get``/``put`` is written blindly.

**Threads.** A :class:`Composer` may be shared by many threads (an ASGI server's thread pool):
it keeps no per-request state on itself; the module caches (solvers, layout pairs) are locked;
:class:`~slate.serve.ServeStats`, the stores and :class:`~slate.serve.DecisionLogger` are
thread-safe (the SQLite store opens one connection per thread, the Redis store uses a pool).

**Never fail.** If scoring fails or returns non-finite scores, or the solver raises or returns an
invalid page, the page shows each title's previous image where the rules allow, else its
best-scored image (else its first candidate), with no new exploration; the decision's
``faults`` and ``status`` say what happened and :class:`ServeStats` counts it. If the store
cannot be read, the page is built without state (and not written back). A slow stage is
reported (``solver_late``, ``scoring_late``, ``store_late``) but its valid result is used.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from itertools import compress
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike, NDArray

from slate.bandit.exploration import Exploration, NoExploration
from slate.errors import ResourceLimitError, ScorerOutputError, StoreReplacedError, StoreTimeoutError
from slate.limits import check_limit
from slate.page.layout import DenseLayout, GridLayout, Layout
from slate.page.problem import ObjectiveParts, PageProblem
from slate.page.request import Page
from slate.page.similarity import positive_cosine
from slate.policy import as_scorer
from slate.serve.decision import ExplorationParams, Fault, PageDecision, ServeStats
from slate.serve.request import (
    ComposeConfig,
    InvalidRequestError,
    PageRequest,
    parse_request,
)
from slate.solvers.base import Solver, get_solver
from slate.solvers.result import Status
from slate.stability.rules import Reason, StabilityPlan, next_states, plan_page
from slate.stability.state import TitleState
from slate.stability.store import StateStore

if TYPE_CHECKING:  # pyarrow is imported on use
    from slate.page.embeddings import ImageEmbeddings

__all__ = ["Composer", "DecisionSink", "PageScorer", "PolicyScorer", "compose"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]


@runtime_checkable
class PageScorer(Protocol):
    """A :class:`slate.policy.Scorer` as compose sees it: scores for every (title, candidate
    image) of a page, from a ``score_page`` method (:func:`slate.policy.as_scorer` reads it).

    ``score_page(request)`` returns an array of shape ``(request.n_titles, request.n_images)``
    whose row ``t`` holds the scores of ``request.titles[t].image_ids`` in order (entries past a
    title's last image are ignored). A plain callable ``f(request)`` works too.
    """

    def score_page(self, request: PageRequest) -> ArrayLike:
        """Scores of the page's candidate images (predicted probability of a quality play)."""
        ...


@dataclass(frozen=True)
class PolicyScorer:
    """Adapt a :class:`slate.bandit.ScoringPolicy` to :class:`PageScorer`.

    Parameters
    ----------
    policy : ScoringPolicy
        Anything with ``score(features, propensities=False)`` returning an object with a
        ``mean`` (and ``adjusted``) array of shape ``(n_titles, n_images)``.
    features : callable
        ``features(request) -> PageFeatures`` (e.g. a :class:`slate.bandit.FeatureBuilder` bound
        to the member's context), rows in the order of ``request.titles``.
    use : {"mean", "adjusted"}, default "mean"
        Which score the page optimiser maximises. ``"adjusted"`` suits deterministic optimism
        (LinUCB); for Thompson sampling it is a random draw that the logged propensities do not
        account for, so keep ``"mean"`` and let compose's exploration randomize.

    Examples
    --------
    >>> import numpy as np
    >>> from types import SimpleNamespace
    >>> policy = SimpleNamespace(score=lambda x, propensities: SimpleNamespace(mean=x * 0.1, adjusted=x))
    >>> PolicyScorer(policy, lambda request: np.ones((1, 2))).score_page(None).tolist()
    [[0.1, 0.1]]
    """

    policy: Any
    features: Callable[[Any], Any]
    use: str = "mean"

    def __post_init__(self) -> None:
        if self.use not in ("mean", "adjusted"):
            raise InvalidRequestError(
                f"The 'use' parameter of PolicyScorer must be 'mean' or 'adjusted'; got {self.use!r} instead."
            )

    def score_page(self, request: PageRequest) -> ArrayLike:
        """The policy's scores for the page."""
        scores = self.policy.score(self.features(request), propensities=False)
        return np.asarray(getattr(scores, self.use))

    @classmethod
    def load(cls, directory: Any, *, use: str = "mean") -> PolicyScorer:
        """The scorer of a model folder written by ``slate train`` (see :mod:`slate.bandit.trained`).

        The request's ``context["features"]`` carries the context features the model was trained
        on (one list for every title, or a mapping title id -> list).
        """
        from slate.bandit.trained import load_trained_model

        model = load_trained_model(directory)
        return cls(model.policy, model.page_features, use=use)


@runtime_checkable
class DecisionSink(Protocol):
    """Where decisions go after the page is composed (e.g. :class:`slate.serve.DecisionLogger`)."""

    def append(self, decision: PageDecision) -> None:
        """Take one decision."""
        ...


Policy = PageScorer | Callable[[PageRequest], ArrayLike]

DEFAULT_CONFIG = ComposeConfig()

_SOLVERS: dict[tuple[str, str], Solver] = {}
_PAIRS: OrderedDict[tuple[str, bytes, bytes], tuple[IntArray, FloatArray]] = OrderedDict()
_PAIR_CACHE_SIZE = 512
_PAIRS_LOCK = threading.Lock()
_SOLVERS_LOCK = threading.Lock()


def _solver(name: str, options: Mapping[str, Any]) -> Solver:
    key = (name, repr(sorted(options.items())))
    solver = _SOLVERS.get(key)
    if solver is None:
        with _SOLVERS_LOCK:
            solver = _SOLVERS.get(key)
            if solver is None:
                solver = get_solver(name, **options)  # raises UnknownSolverError: a configuration error
                _SOLVERS[key] = solver
    return solver


def _ro(array: NDArray[Any]) -> NDArray[Any]:
    array.flags.writeable = False
    return array


def _check_page_size(kind: str, page: Page, n_images: int) -> None:
    """Refuse a page whose similarity tables (pairs x images x images) would not fit the serving
    budget, before anything of that size is allocated (a 500 x 50 grid page needs 6.9 million
    cells and about a second; see ``max_pair_cells`` in :mod:`slate.limits`)."""
    pairs, _ = _layout(kind, page.rows, page.cols)
    try:
        check_limit("max_pair_cells", len(pairs) * n_images * n_images,
                    f"pair x image x image cells ({len(pairs)} interacting pairs, {n_images} images)")
    except ResourceLimitError as err:
        raise InvalidRequestError(f"The page is too large to compose: {err}") from None


def _layout(kind: str, rows: IntArray, cols: IntArray) -> tuple[IntArray, FloatArray]:
    key = (kind, rows.tobytes(), cols.tobytes())
    with _PAIRS_LOCK:
        hit = _PAIRS.get(key)
        if hit is not None:
            _PAIRS.move_to_end(key)
            return hit
    n_rows, n_cols = int(rows.max()) + 1, int(cols.max()) + 1
    layout: Layout
    if kind == "grid":
        layout = GridLayout(rows=n_rows, cols=n_cols)
    elif kind == "chain":
        layout = GridLayout.chain(rows=n_rows, cols=n_cols)
    else:
        layout = DenseLayout()
    pairs, weights = layout.pairs(rows, cols)
    lo = np.minimum(pairs[:, 0], pairs[:, 1])
    hi = np.maximum(pairs[:, 0], pairs[:, 1])
    order = np.lexsort((hi, lo))
    out = (_ro(np.stack([lo, hi], axis=1)[order].astype(np.int64)), _ro(weights[order].astype(np.float64)))
    with _PAIRS_LOCK:
        _PAIRS[key] = out
        if len(_PAIRS) > _PAIR_CACHE_SIZE:
            _PAIRS.popitem(last=False)
    return out


def _similarity(
    page: Page, catalog: ImageEmbeddings | None, pairs: IntArray, diversity: float
) -> tuple[FloatArray, int]:
    """``max(0, cosine)`` per pair and image pair, and the number of images missing from the catalog."""
    n_images = page.n_images
    if catalog is None or diversity == 0.0 or len(pairs) == 0:
        return np.zeros((len(pairs), n_images, n_images)), 0
    unit, n_missing = catalog.page_units(page.image_ids, n_images)
    sim = np.matmul(unit[pairs[:, 0]], unit[pairs[:, 1]].transpose(0, 2, 1))
    positive_cosine(sim, out=sim)
    return sim.astype(np.float64), n_missing


def _build_problem(
    page: Page,
    plan: StabilityPlan,
    scores: FloatArray,
    pairs: IntArray,
    weights: FloatArray,
    sim: FloatArray,
    *,
    diversity: float,
    churn: float,
    max_changes: int | None,
    name: str,
) -> PageProblem:
    """The page problem, through :meth:`PageProblem.from_padded` (vectorised validation)."""
    cand = plan.solver_candidates
    image_ids = page.image_ids
    masked = np.flatnonzero((cand != page.candidates).any(axis=1))
    if len(masked):
        ids = list(image_ids)
        for t, keep in zip(masked.tolist(), cand[masked].tolist(), strict=True):
            ids[t] = tuple(compress(ids[t], keep))
        image_ids = tuple(ids)
    return PageProblem.from_padded(
        title_ids=page.title_ids,
        image_ids=image_ids,
        scores=scores,
        candidates=cand,
        pairs=pairs,
        pair_weights=weights,
        similarity=sim,  # not modified: masked images are zeroed in a copy
        previous=plan.previous,
        locked=plan.held,
        max_changes=max_changes,
        diversity=diversity,
        churn=churn,
        rows=page.rows,
        cols=page.cols,
        name=name,
    )


def _objective(
    scores: FloatArray,
    a: IntArray,
    previous: IntArray,
    pairs: IntArray,
    weights: FloatArray,
    sim: FloatArray,
    diversity: float,
    churn: float,
) -> ObjectiveParts:
    t = np.arange(len(a))
    relevance = float(scores[t, a].sum())
    if len(pairs) and diversity:
        p = np.arange(len(pairs))
        div = diversity * float((weights * sim[p, a[pairs[:, 0]], a[pairs[:, 1]]]).sum())
    else:
        div = 0.0
    n_changes = int(((previous >= 0) & (a != previous)).sum())
    churn_penalty = churn * n_changes
    return ObjectiveParts(relevance - div - churn_penalty, relevance, div, churn_penalty, n_changes)


def _fallback_assignment(page: Page, previous: IntArray, scores: FloatArray | None) -> IntArray:
    """Previous image where there is one, else the best-scored image, else the first candidate."""
    if scores is None:
        best = np.zeros(page.n_titles, dtype=np.int64)
    else:
        usable = page.candidates & np.isfinite(scores)
        best = np.argmax(np.where(usable, scores, -np.inf), axis=1).astype(np.int64)
        best[~usable.any(axis=1)] = 0
    return np.where(previous >= 0, previous, best).astype(np.int64)


_ID_EPOCH_MS = 1_577_836_800_000  # 2020-01-01T00:00:00Z
_ID_LOCK = threading.Lock()
_ID_OFFSET = int.from_bytes(os.urandom(3), "little") & 0x3FFFFF  # 22 random bits per process
_last_page_id = 0


def _new_process_offset() -> None:
    """A forked child (a pre-fork server's worker) draws its own offset and counter."""
    global _ID_OFFSET, _last_page_id
    _ID_OFFSET = int.from_bytes(os.urandom(3), "little") & 0x3FFFFF
    _last_page_id = 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_process_offset)


def _page_id(request: PageRequest, now: float) -> int:
    """A time-ordered id (like a ULID in an int64): milliseconds since 2020 in the top 41 bits,
    plus a random offset of this process in the low 22 bits. Ids increase strictly within a
    process (the next id is at least the last + 1), so a decision log, written in composing
    order, is ordered by ``page_id`` and streams in chunks.

    Processes do not coordinate: two can only give the same id when they compose a page in the
    same millisecond with offsets closer than the pages each composed in it (100 processes serving
    up to 10 pages per millisecond each: about a 2% chance per start of the fleet that some two
    processes are that close; 10 process bits and a per-millisecond counter made a shared id
    near-certain). Give ``page_id`` in the request when ids must be unique by construction."""
    global _last_page_id
    if request.page_id is not None:
        return request.page_id
    ms = max(int(now * 1000.0) - _ID_EPOCH_MS, 0)
    base = (ms << 22) + _ID_OFFSET
    with _ID_LOCK:
        page_id = max(base, _last_page_id + 1)
        _last_page_id = page_id
    return page_id


class _Faults:
    __slots__ = ("details", "faults")

    def __init__(self) -> None:
        self.faults: list[Fault] = []
        self.details: list[str] = []

    def add(self, fault: Fault, detail: str) -> None:
        if fault not in self.faults:
            self.faults.append(fault)
            self.details.append(f"{fault.value}: {detail}")


def _err(err: BaseException) -> str:
    text = f"{type(err).__name__}: {err}"
    return text if len(text) <= 300 else text[:297] + "..."


def _store_failed(faults: _Faults, fault: Fault, err: BaseException) -> None:
    """Report a store error: a replaced file, a timeout (also ``store_late``) or a plain failure."""
    if isinstance(err, StoreReplacedError):
        fault = Fault.STORE_REPLACED
    faults.add(fault, _err(err))
    if isinstance(err, StoreTimeoutError):
        faults.add(Fault.STORE_LATE, "timed out")


class _Run:
    """One attempt at a page: what its stages pass along (see :meth:`Composer._compose`)."""

    def __init__(self, req: PageRequest, page: Page, now: float, timings: dict[str, float], attempt: int) -> None:
        self.req, self.page, self.now, self.timings = req, page, now, timings
        self.faults = _Faults()
        self.stored_only = attempt >= 2  # after two conflicts: the stored images, no write
        self.t = 0.0  # the clock at the end of the last stage
        self.states: Mapping[str, TitleState] = {}
        self.version = 0
        self.state_ok = False
        self.versioned = False
        self.scores: FloatArray | None = None
        self.fallback_scores: FloatArray | None = None
        self.plan: StabilityPlan = None  # type: ignore[assignment]  # set by the plan stage
        self.pairs: IntArray = np.zeros((0, 2), dtype=np.int64)
        self.weights: FloatArray = np.zeros(0)
        self.sim: FloatArray | None = None
        self.exploit: IntArray | None = None
        self.solver_status = "skipped"
        self.eligible: BoolArray = np.zeros(0, dtype=bool)
        self.explore_on = False
        self.params: ExplorationParams | None = None
        self.propensity: FloatArray = np.zeros(0)
        self.explored: BoolArray = np.zeros(0, dtype=bool)
        self.propensities: FloatArray = np.zeros(0)


_CONFLICT = (
    "",
    "another page for the member was saved after this page read its state: re-planned against the fresh state",
    "another page for the member was saved first, twice: showed the stored images, state not saved",
)
_CONFLICT_LOGGED = (
    "another page for the member was saved after this page read its state; this page was already in "
    "the durable log, so it was served as logged and its state not saved"
)


def compose(
    request: PageRequest | Mapping[str, Any],
    policy: Policy,
    store: StateStore | None,
    exploration: Exploration | None = None,
    *,
    config: ComposeConfig | None = None,
    catalog: ImageEmbeddings | None = None,
    logger: DecisionSink | None = None,
    stats: ServeStats | None = None,
    strict: bool | None = None,
) -> PageDecision:
    """Compose a member's page: one image per title, its propensity, and the decision record.

    Parameters
    ----------
    request : PageRequest or mapping
        Validated with :func:`~slate.serve.parse_request` when a mapping.
    policy : PageScorer or callable
        ``policy.score_page(request)`` (or ``policy(request)``) -> ``(n_titles, n_images)`` scores.
    store : StateStore or None
        Stability state (e.g. :class:`slate.stability.SQLiteStore`); None for stateless serving.
    exploration : Exploration, optional
        E.g. :class:`~slate.serve.StickyEpsilon`; default ``config.exploration`` (none when that
        is None).
    config : ComposeConfig, optional
    catalog : ImageEmbeddings, optional
        Visual embeddings for the diversity term (:class:`slate.page.embeddings.ImageEmbeddings`;
        without it the page has no diversity penalty).
    logger : DecisionSink, optional
        Receives the decision (e.g. :class:`~slate.serve.DecisionLogger`).
    stats : ServeStats, optional
        Counters updated with the decision.
    strict : bool, optional
        Raise :class:`~slate.errors.ScorerOutputError` when the scorer returns scores of the
        wrong shape (a bug in the scorer, to be found in tests and development), instead of
        serving a fallback page with a counted ``scoring_failed`` fault (production). Default:
        the environment variable ``SLATE_STRICT`` (``1``, ``true``, ``yes`` or ``on``: strict),
        else not strict.

    Returns
    -------
    PageDecision

    Raises
    ------
    InvalidRequestError
        The request is malformed (the only error raised for a request).
    UnknownSolverError
        ``config.solver`` names no registered solver (a configuration error).
    InvalidProblemError
        ``config.diversity`` was set above 0 but no ``catalog`` was given (a configuration error:
        the page would have no diversity term). The default diversity applies only with a catalog.
    ScorerOutputError
        In strict mode, the scorer returned scores of the wrong shape.

    Examples
    --------
    >>> import numpy as np
    >>> from slate.serve import compose, ComposeConfig
    >>> from slate.stability import InMemoryStore, StabilityRules
    >>> request = {"member_id": 7, "session_id": 1, "timestamp": "2024-05-01T20:00:00Z",
    ...            "titles": [{"title_id": "T1", "image_ids": ["T1-a", "T1-b"], "row": 0, "col": 0},
    ...                       {"title_id": "T2", "image_ids": ["T2-a", "T2-b"], "row": 0, "col": 1}]}
    >>> scores = lambda req: np.array([[0.1, 0.3], [0.2, 0.1]])
    >>> config = ComposeConfig(solver="independent", stability=StabilityRules(dwell_sessions=3))
    >>> decision = compose(request, scores, InMemoryStore(), config=config)
    >>> decision.images, decision.status, decision.propensity.tolist()
    ({'T1': 'T1-b', 'T2': 'T2-a'}, 'ok', [1.0, 1.0])
    """
    return Composer(
        policy, store, exploration, config=config, catalog=catalog, logger=logger, stats=stats,
        strict=strict,
    ).compose(request)


class Composer:
    """:func:`compose` with its collaborators bound once (the object to keep in a server).

    Parameters
    ----------
    policy, store, exploration, config, catalog, logger
        As for :func:`compose`.
    stats : ServeStats, optional
        Counters (a new :class:`ServeStats` by default, in ``stats_``).
    strict : bool, optional
        As for :func:`compose` (default: the ``SLATE_STRICT`` environment variable).

    Examples
    --------
    >>> import numpy as np
    >>> from slate.serve import Composer, ComposeConfig
    >>> composer = Composer(lambda req: np.ones((1, 2)), None,
    ...                     config=ComposeConfig(solver="independent"))
    >>> d = composer.compose({"member_id": 1, "session_id": 1,
    ...                       "titles": [{"title_id": "T", "image_ids": ["a", "b"], "row": 0, "col": 0}]})
    >>> d.image_ids, composer.stats_.pages
    (('a',), 1)
    """

    def __init__(
        self,
        policy: Policy,
        store: StateStore | None,
        exploration: Exploration | None = None,
        *,
        config: ComposeConfig | None = None,
        catalog: ImageEmbeddings | None = None,
        logger: DecisionSink | None = None,
        stats: ServeStats | None = None,
        strict: bool | None = None,
    ) -> None:
        self.policy = policy
        self.store = store
        self.config = config if config is not None else DEFAULT_CONFIG
        if exploration is None and self.config.exploration is not None:
            exploration = self.config.exploration.make()
        self.exploration: Exploration = exploration if exploration is not None else NoExploration()
        self.catalog = catalog
        self.logger = logger
        self.stats_ = stats if stats is not None else ServeStats()
        self._score: Callable[[PageRequest], ArrayLike] = as_scorer(
            policy, what="The 'policy' parameter of compose", error=InvalidRequestError, needs_features=True
        )
        self.strict = strict_default() if strict is None else bool(strict)
        if catalog is None and self.config.diversity > 0 and "diversity" in self.config.model_fields_set:
            from slate.errors import InvalidProblemError

            raise InvalidProblemError(
                f"ComposeConfig.diversity = {self.config.diversity:g} needs image embeddings: give "
                "compose a 'catalog' (slate.page.embeddings.ImageEmbeddings), or set diversity = 0."
            )
        self._config_json = self.config.model_dump_json()

    def warm_up(self, requests: Any = None, *, pages: int = 50, freeze_gc: bool = True) -> float:
        """Warm the serving path up and freeze the heap (see :func:`slate.serve.warmup.warm_up`)."""
        from slate.serve.warmup import warm_up

        return warm_up(self, requests, pages=pages, freeze_gc=freeze_gc)

    def compose(self, request: PageRequest | Mapping[str, Any]) -> PageDecision:
        """Compose one page (see :func:`compose`)."""
        started = time.perf_counter()
        req = parse_request(request)
        solver = _solver(self.config.solver, self.config.solver_options)
        now = req.timestamp.timestamp() if req.timestamp is not None else time.time()
        page = Page.of(req)
        _check_page_size(self.config.layout, page, req.n_images)
        timings = {"validate": (time.perf_counter() - started) * 1000.0}
        try:
            # a write conflict (another page for the member saved meanwhile) re-plans, at most twice
            result = None
            for attempt in range(3):
                result = self._compose(req, page, solver, now, timings, started, attempt)
                if result is not None:
                    break
            if result is None:  # pragma: no cover - the last attempt does not write, so cannot conflict
                raise RuntimeError("a state write conflicted on the last attempt")
            decision = result
        except ScorerOutputError:  # strict mode: a scorer of the wrong shape is a bug to surface
            raise
        except Exception as err:  # never fail: a bug in compose itself still serves a page
            decision = self._last_resort(req, page, now, err, timings, started)
        self.stats_.record(decision)
        return decision

    # ------------------------------------------------------------------ the pipeline
    def _compose(
        self,
        req: PageRequest,
        page: Page,
        solver: Solver,
        now: float,
        timings: dict[str, float],
        started: float,
        attempt: int = 0,
    ) -> PageDecision | None:
        """The page; None when its conditional state write lost to another page (re-plan).

        Stages: state read, scores, stability plan, problem and solve, exploration, state write
        and the decision (each a method below, timed in ``timings``)."""
        run = _Run(req, page, now, timings, attempt)
        if attempt:
            run.faults.add(Fault.STORE_CONFLICT, _CONFLICT[min(attempt, 2)])
        self._read_state(run)
        self._score_page(run)
        self._plan(run)
        self._solve(run, solver)
        draw = self._explore(run)
        return self._write_and_decide(run, draw, started)

    def _read_state(self, run: _Run) -> None:
        """Stage: the member's stored state of the page's titles."""
        req, page, faults, timings, cfg = run.req, run.page, run.faults, run.timings, self.config
        t0 = time.perf_counter()
        store = self.store
        run.state_ok = store is not None
        run.versioned = store is not None and hasattr(store, "read") and hasattr(store, "write")
        if store is not None:
            try:
                if run.versioned:
                    run.states, run.version = store.read(req.member_id, page.title_ids)  # type: ignore[attr-defined]
                else:
                    run.states = store.get(req.member_id, page.title_ids)
            except Exception as err:
                run.state_ok = False
                _store_failed(faults, Fault.STORE_READ_FAILED, err)
        run.t = time.perf_counter()
        timings["store_get"] = (run.t - t0) * 1000.0
        if run.state_ok and timings["store_get"] > cfg.store_budget_ms:
            faults.add(Fault.STORE_LATE, f"read took {timings['store_get']:.1f} ms")

    def _score_page(self, run: _Run) -> None:
        """Stage: the policy's scores (a fault, and no scores, when they are unusable)."""
        req, page, faults, timings, cfg = run.req, run.page, run.faults, run.timings, self.config
        try:
            raw = np.asarray(self._score(req), dtype=np.float64)
            if raw.shape != page.candidates.shape:
                message = f"scores of shape {raw.shape}, expected {page.candidates.shape}"
                if self.strict:
                    raise ScorerOutputError(
                        f"The scorer must return one score per (title, candidate image), an array of "
                        f"shape (n_titles, n_images) = {page.candidates.shape}; got {raw.shape} for "
                        f"member {req.member_id} (strict mode)."
                    )
                raise ValueError(message)
            bad = page.candidates & ~np.isfinite(raw)
            if bad.any():
                t, k = map(int, np.argwhere(bad)[0])
                faults.add(
                    Fault.SCORES_NOT_FINITE,
                    f"{int(bad.sum())} non-finite scores, e.g. {raw[t, k]} for image "
                    f"'{page.image_ids[t][k]}' of title '{page.title_ids[t]}'",
                )
                run.fallback_scores = raw
            else:
                run.scores = raw
        except ScorerOutputError:
            raise
        except Exception as err:
            faults.add(Fault.SCORING_FAILED, _err(err))
        t2 = time.perf_counter()
        timings["score"] = (t2 - run.t) * 1000.0
        run.t = t2
        if run.scores is not None and timings["score"] > cfg.scoring_budget_ms:
            faults.add(Fault.SCORING_LATE, f"scoring took {timings['score']:.1f} ms")

    def _plan(self, run: _Run) -> None:
        """Stage: the stability plan (held titles, allowed images, explore candidates)."""
        req, page = run.req, run.page
        rules = self.config.stability
        plan_args = dict(
            now=run.now,
            session_id=req.session_id,
            scores=run.scores,
            seen_title_ids=req.seen_title_ids,
            sticky=self.exploration.sticky,
        )
        try:
            run.plan = plan_page(rules, page, states=run.states, **plan_args)  # type: ignore[arg-type]
        except Exception as err:  # a store that returned something unusable
            run.state_ok = False
            run.faults.add(Fault.STORE_READ_FAILED, f"unusable state: {_err(err)}")
            run.plan = plan_page(rules, page, states={}, **plan_args)  # type: ignore[arg-type]
        t3 = time.perf_counter()
        run.timings["plan"] = (t3 - run.t) * 1000.0
        run.t = t3

    def _solve(self, run: _Run, solver: Solver) -> None:
        """Stage: the page problem (layout, similarity, stability) and its solve."""
        req, page, faults, plan, cfg = run.req, run.page, run.faults, run.plan, self.config
        rules = cfg.stability
        scores = run.scores
        run.pairs, run.weights = _layout(cfg.layout, page.rows, page.cols)
        run.eligible = ~plan.held & (plan.explore_candidates.sum(axis=1) >= 2)
        # no new draws without the member's state (held draws unknown), except when serving statelessly
        run.explore_on = (
            scores is not None and (run.state_ok or self.store is None)
            and not isinstance(self.exploration, NoExploration)
        )
        reserve = 0
        if run.explore_on:
            reserve = self.exploration.reserve(
                int((run.eligible & (plan.previous >= 0)).sum()), rules.max_changes
            )
        budget = None if rules.max_changes is None else rules.max_changes - reserve
        t3 = t4 = run.t
        if scores is not None and not run.stored_only:
            run.sim, n_missing = _similarity(page, self.catalog, run.pairs, cfg.diversity)
            if n_missing:
                faults.add(Fault.EMBEDDINGS_MISSING, f"{n_missing} images have no embedding")
            problem = _build_problem(
                page,
                plan,
                scores,
                run.pairs,
                run.weights,
                run.sim,
                diversity=cfg.diversity,
                churn=rules.churn,
                max_changes=budget,
                name=f"member-{req.member_id}",
            )
            t4 = time.perf_counter()
            try:
                result = solver.solve(problem, time_limit_ms=cfg.solver_time_ms)
                wall_ms = (time.perf_counter() - t4) * 1000.0
                a = np.asarray(result.assignment)
                broken = _invalid(a, plan, budget)
                if result.status is Status.INFEASIBLE or broken:
                    faults.add(
                        Fault.SOLVER_FAILED,
                        f"{getattr(result, 'solver', '?')} returned an invalid page: "
                        f"{broken or 'status infeasible'}",
                    )
                else:
                    run.exploit = a.astype(np.int64)
                    run.solver_status = str(result.status.value)
                    if wall_ms > cfg.solver_time_ms + cfg.solver_grace_ms:
                        faults.add(
                            Fault.SOLVER_LATE,
                            f"{wall_ms:.1f} ms for a budget of {cfg.solver_time_ms:g} ms",
                        )
            except Exception as err:
                faults.add(Fault.SOLVER_FAILED, _err(err))
            if run.exploit is None:
                run.solver_status = "failed"
        t5 = time.perf_counter()
        run.timings["problem"] = (t4 - t3) * 1000.0
        run.timings["solve"] = (t5 - t4) * 1000.0
        run.t = t5

    def _explore(self, run: _Run) -> Any:
        """Stage: sticky exploration around the solver's page (or the fallback page)."""
        req, page, plan = run.req, run.page, run.plan
        rules = self.config.stability
        healthy = run.scores is not None
        exploit = run.exploit
        if exploit is None:
            healthy = False
            scores = run.scores if run.scores is not None else run.fallback_scores
            exploit = _fallback_assignment(page, plan.previous, scores)
        n_held_explored = int((plan.draw_held & plan.draw_explored).sum())
        if healthy and run.explore_on:
            draw = self.exploration.draw(
                exploit,
                plan.explore_candidates,
                run.eligible,
                max_changes=rules.max_changes,
                key=(req.member_id, req.session_id),
                n_held_explored=n_held_explored,
            )
            cap_of = getattr(self.exploration, "draw_cap", None)
            run.params = ExplorationParams(
                rate=float(getattr(self.exploration, "epsilon", float("nan"))),
                cap=cap_of(rules.max_changes, n_held_explored) if cap_of is not None else None,
                probability=float(draw.probability),
                n_eligible=int(draw.drawn.sum()),
                n_held_explored=n_held_explored,
            )
        else:
            draw = NoExploration().draw(exploit, page.candidates, run.eligible, max_changes=None, key=())
        run.propensity = draw.propensity
        run.explored = draw.explored
        run.propensities = draw.propensities
        held_draw = np.flatnonzero(plan.draw_held)
        if len(held_draw):
            run.propensity = run.propensity.copy()
            run.propensity[held_draw] = plan.draw_propensity[held_draw]
            run.explored = run.explored | plan.draw_explored
            run.propensities = run.propensities.copy()
            run.propensities[held_draw] = np.nan
        t6 = time.perf_counter()
        run.timings["explore"] = (t6 - run.t) * 1000.0
        run.t = t6
        return draw

    def _write_and_decide(self, run: _Run, draw: Any, started: float) -> PageDecision | None:
        """Stages: the state write (a durable logger: after the page is in the log, see
        :meth:`_log_then_commit`) and the decision; None when the write lost (re-plan)."""
        req, page, plan, faults, timings, cfg = run.req, run.page, run.plan, run.faults, run.timings, self.config
        rules = cfg.stability
        shown = draw.shown
        shown_ids = tuple(ids[k] for ids, k in zip(page.image_ids, shown.tolist(), strict=True))
        log_first = bool(getattr(self.logger, "durable", False))
        new_state = None
        write_version = run.version if run.versioned else None
        timings["store_put"] = 0.0
        if self.store is not None and run.state_ok and not run.stored_only:
            new = next_states(
                plan,
                rules,
                now=run.now,
                session_id=req.session_id,
                title_ids=page.title_ids,
                shown_ids=shown_ids,
                drawn=draw.drawn,
                propensity=run.propensity,
                explored=run.explored,
            )
            new_state = new
            if not log_first and not self._put_state(req.member_id, new, write_version, faults, timings, run.t):
                return None  # another page for the member was saved meanwhile: re-plan

        objective = None
        if run.scores is not None and run.sim is not None:
            objective = _objective(
                run.scores, shown, plan.previous, run.pairs, run.weights, run.sim, cfg.diversity, rules.churn
            )
        changed = ((plan.previous >= 0) & (shown != plan.previous)) | (plan.reason == Reason.RETIRED)
        decision = PageDecision(
            member_id=req.member_id,
            session_id=req.session_id,
            page_id=_page_id(req, run.now),
            timestamp=run.now,
            title_ids=page.title_ids,
            image_ids=shown_ids,
            propensity=run.propensity,
            explored=run.explored,
            changed=changed,
            reason=plan.reason,
            previous_image_ids=plan.previous_ids,
            objective=objective,
            solver=self.config.solver,
            solver_status=run.solver_status,
            faults=tuple(faults.faults),
            fault_details=tuple(faults.details),
            timings_ms=timings,
            candidate_ids=page.image_ids,
            propensities=run.propensities,
            rows=page.rows,
            cols=page.cols,
            locked=page.locked,
            explore_eligible=draw.drawn,
            explore_held=plan.draw_held,
            exploration=run.params,
            config_json=self._config_json,
            context_json=_context_json(req),
        )
        if log_first and new_state is not None:
            return self._log_then_commit(decision, new_state, write_version, timings, started)
        return self._log(decision, timings, started)

    def _put_state(
        self, member_id: int, new: Any, version: int | None, faults: _Faults, timings: dict[str, float],
        t: float | None = None,
    ) -> bool:
        """``store_put``: commit the member's new state (a failure or overrun is a fault).

        With a version (a :class:`~slate.stability.VersionedStateStore`) the write happens only if
        no other page for the member was saved since the read; False says it lost that race.
        """
        store = self.store
        assert store is not None
        t = time.perf_counter() if t is None else t
        try:
            if version is None:
                store.put(member_id, new)
            elif not store.write(member_id, new, version):  # type: ignore[attr-defined]
                return False
        except Exception as err:
            _store_failed(faults, Fault.STORE_WRITE_FAILED, err)
        timings["store_put"] = (time.perf_counter() - t) * 1000.0
        if timings["store_put"] > self.config.store_budget_ms and Fault.STORE_WRITE_FAILED not in faults.faults:
            faults.add(Fault.STORE_LATE, f"write took {timings['store_put']:.1f} ms")
        return True

    def _log_then_commit(
        self, decision: PageDecision, new: Any, version: int | None, timings: dict[str, float], started: float
    ) -> PageDecision:
        """Durable order: the page is in the (durable) log before its state is committed, so
        every committed state is in the log. A page the log refused is not committed either.

        A page already logged cannot be re-planned: if its conditional write loses to another
        page for the member, the page is served as logged, its state is not saved, and the fault
        ``store_conflict`` says so.
        """
        decision = self._log(decision, timings, started)
        if Fault.LOG_FAILED in decision.faults:
            return decision
        faults = _Faults()
        if not self._put_state(decision.member_id, new, version, faults, timings):
            faults.add(Fault.STORE_CONFLICT, _CONFLICT_LOGGED)
        timings["total"] = (time.perf_counter() - started) * 1000.0
        if not faults.faults:
            return decision
        return replace(decision, faults=(*decision.faults, *faults.faults),
                       fault_details=(*decision.fault_details, *faults.details))

    def _log(self, decision: PageDecision, timings: dict[str, float], started: float) -> PageDecision:
        t = time.perf_counter()
        if self.logger is not None:
            try:
                self.logger.append(decision)
            except Exception as err:
                decision = replace(
                    decision,
                    faults=(*decision.faults, Fault.LOG_FAILED),
                    fault_details=(*decision.fault_details, f"{Fault.LOG_FAILED.value}: {_err(err)}"),
                )
        end = time.perf_counter()
        timings["log"] = (end - t) * 1000.0
        timings["total"] = (end - started) * 1000.0
        return decision

    def _last_resort(
        self,
        req: PageRequest,
        page: Page,
        now: float,
        error: BaseException,
        timings: dict[str, float],
        started: float,
    ) -> PageDecision:
        """Previous images read straight from the store where possible, else first candidates."""
        previous = np.full(page.n_titles, -1, dtype=np.int64)
        previous_ids: list[str | None] = [None] * page.n_titles
        try:
            states = self.store.get(req.member_id, page.title_ids) if self.store is not None else {}
            for t, title in enumerate(page.title_ids):
                s = states.get(title)
                if s is not None:
                    previous_ids[t] = s.image_id
                    if s.image_id in page.image_ids[t]:
                        previous[t] = page.image_ids[t].index(s.image_id)
        except Exception:  # the store is part of what failed: first candidates
            pass
        shown = np.where(previous >= 0, previous, 0).astype(np.int64)
        n = page.n_titles
        one_hot = np.zeros(page.candidates.shape)
        one_hot[np.arange(n), shown] = 1.0
        decision = PageDecision(
            member_id=req.member_id,
            session_id=req.session_id,
            page_id=_page_id(req, now),
            timestamp=now,
            title_ids=page.title_ids,
            image_ids=tuple(ids[k] for ids, k in zip(page.image_ids, shown.tolist(), strict=True)),
            propensity=np.ones(n),
            explored=np.zeros(n, dtype=bool),
            changed=np.array(
                [p is not None and p != page.image_ids[t][shown[t]] for t, p in enumerate(previous_ids)],
                dtype=bool,
            ),
            reason=np.where(previous >= 0, Reason.FREE, Reason.NEW).astype(np.int8),
            previous_image_ids=tuple(previous_ids),
            objective=None,
            solver=self.config.solver,
            solver_status="skipped",
            faults=(Fault.INTERNAL_ERROR,),
            fault_details=(f"{Fault.INTERNAL_ERROR.value}: {_err(error)}",),
            timings_ms=timings,
            candidate_ids=page.image_ids,
            propensities=one_hot,
            rows=page.rows,
            cols=page.cols,
            locked=page.locked,
            config_json=self._config_json,
            context_json=_context_json(req),
        )
        return self._log(decision, timings, started)


def strict_default() -> bool:
    """Whether compose is strict when not told: the ``SLATE_STRICT`` environment variable.

    Examples
    --------
    >>> import os
    >>> saved = os.environ.get("SLATE_STRICT")
    >>> os.environ["SLATE_STRICT"] = "1"; strict_default()
    True
    >>> os.environ["SLATE_STRICT"] = "0"; strict_default()
    False
    >>> _ = os.environ.pop("SLATE_STRICT") if saved is None else os.environ.update(SLATE_STRICT=saved)
    """
    return os.environ.get("SLATE_STRICT", "").strip().lower() in ("1", "true", "yes", "on")


def _context_json(req: PageRequest) -> str:
    if not req.context:
        return ""
    return json.dumps(req.context, sort_keys=True, separators=(",", ":"), default=str)


def _invalid(a: NDArray[Any], plan: StabilityPlan, budget: int | None) -> str:
    """Why an assignment is not a valid page for the plan ('' when it is valid)."""
    n, k = plan.solver_candidates.shape
    if a.shape != (n,) or not np.issubdtype(a.dtype, np.integer):
        return f"assignment of dtype {a.dtype} and shape {a.shape}"
    if ((a < 0) | (a >= k)).any():
        return "an image index out of range"
    if not plan.solver_candidates[np.arange(n), a].all():
        return "an image the stability rules do not allow"
    if budget is not None:
        n_changes = int(((plan.previous >= 0) & (a != plan.previous)).sum())
        if n_changes > budget:
            return f"{n_changes} changes for a budget of {budget}"
    return ""

