"""Re-solving logged pages at many weight settings, reusing the work the settings share.

A block holds the pages of a few members, in time order. For each page the weight-free part of
the page problem (scores, candidates, layout pairs and the visual similarity of every pair of
candidate images) is built and validated **once**; each setting then only swaps in its weights,
its change budget and its own previous images, and is solved. The previous image of a title is
the image *this setting* chose the last time the member saw the title (the setting's own
history, as if it had been deployed), so churn and the change budget mean what they would mean
in production.

Everything here works on plain arrays so that blocks can be shipped to dask workers.
"""

from __future__ import annotations

import functools
import importlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from slate.page.layout import GridLayout
from slate.page.problem import PageProblem

__all__ = [
    "BlockResult",
    "PageBlock",
    "Setting",
    "SolverConfig",
    "base_problem",
    "ensure_solver",
    "page_seed",
    "setting_rules",
    "solve_block",
    "with_setting",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

Setting = tuple[Any, ...]
"""``(diversity, churn, max_changes[, dwell_sessions, dwell_days, min_gain])`` as the solver sees
them (weights before page scaling; the stability rules act with the setting's own history)."""


_SOLVER_MODULES = ("fast", "exact", "auto", "chain", "independent")


def ensure_solver(name: str) -> None:
    """Make sure the solver ``name`` is registered (solver modules register on import).

    Raises
    ------
    UnknownSolverError
        Naming the available solvers.
    """
    from slate.solvers import available_solvers, get_solver

    if name in available_solvers():
        return
    for module in (name, *_SOLVER_MODULES):
        try:
            importlib.import_module(f"slate.solvers.{module}")
        except ImportError:
            pass
        if name in available_solvers():
            return
    get_solver(name)  # raises UnknownSolverError with the list of names


@dataclass(frozen=True)
class SolverConfig:
    """How every page is solved: solver name, options, time limit, weight scaling, layout."""

    name: str = "fast"
    options: tuple[tuple[str, Any], ...] = ()
    time_limit_ms: float | None = None
    relative: bool = True
    layout: GridLayout = field(default_factory=lambda: GridLayout(rows=1, cols=1))
    seed: int = 0

    def make(self, seed: int) -> Any:
        """A solver instance for one page (seeded when the solver takes a seed)."""
        from slate.solvers import get_solver

        ensure_solver(self.name)
        options = dict(self.options)
        if self.name == "fast":
            options.setdefault("compute_bound", False)
        if _takes_seed(self.name):
            options.setdefault("seed", seed)
        return get_solver(self.name, **options)


@functools.cache
def _takes_seed(name: str) -> bool:
    from slate.solvers.base import SOLVERS

    return SOLVERS.takes(name, "seed")


def page_seed(seed: int, page_id: int) -> int:
    """The solver seed of one page: a function of the experiment seed and the page id only, so
    results do not depend on how pages are split into blocks.

    Examples
    --------
    >>> page_seed(0, 17) == page_seed(0, 17), page_seed(0, 17) == page_seed(1, 17)
    (True, False)
    """
    return int(np.random.SeedSequence([int(seed), int(page_id) % (1 << 63)]).generate_state(1)[0])


def base_problem(
    scores: FloatArray,
    embeddings: FloatArray,
    candidates: NDArray[np.bool_],
    rows: IntArray,
    cols: IntArray,
    layout: GridLayout,
) -> PageProblem:
    """The weight-free page problem of one page (validated; similarity computed once)."""
    return PageProblem.from_arrays(
        np.where(candidates, scores, 0.0),
        np.where(candidates[:, :, None], embeddings, 0.0),
        layout=layout,
        candidates=candidates,
        rows=rows,
        cols=cols,
    )


def with_setting(
    base: PageProblem, previous: IntArray, setting: Setting, scale: float, plan: Any = None
) -> PageProblem:
    """``base`` with a setting's weights, budget and previous images.

    ``base`` was validated by :meth:`PageProblem.from_arrays`; the parts swapped in here are
    validated by :meth:`PageProblem.with_stability` and :meth:`PageProblem.with_weights` (and
    nothing else again). With a :class:`slate.stability.StabilityPlan` (dwell, ``min_gain``),
    the optimiser may choose only ``plan.solver_candidates`` and the held titles are locked, as
    in ``compose()``.
    """
    diversity, churn, max_changes = setting[:3]
    extra: dict[str, Any] = {}
    if plan is not None:
        extra = {"candidates": plan.solver_candidates, "locked": plan.held}
    return base.with_stability(
        previous=np.asarray(previous, dtype=np.int64), max_changes=max_changes, **extra
    ).with_weights(diversity=float(diversity) * scale, churn=float(churn) * scale)


def setting_rules(setting: Setting) -> Any:
    """The :class:`slate.stability.StabilityRules` of a setting's dwell and ``min_gain`` (the
    rules that need the member's history beyond the previous image), or None when both are off.

    Examples
    --------
    >>> setting_rules((0.1, 0.0, None)) is None, setting_rules((0.1, 0.0, 3, 2, None, 0.01)).dwell_sessions
    (True, 2)
    """
    dwell_sessions, dwell_days, min_gain = (*setting[3:6], None, None, None)[:3]
    if dwell_sessions is None and dwell_days is None and min_gain is None:
        return None
    from slate.stability import StabilityRules

    # the sweep's history does not expire (as for the settings without these rules)
    return StabilityRules(churn=float(setting[1]), max_changes=setting[2], dwell_sessions=dwell_sessions,
                          dwell_days=dwell_days, min_gain=min_gain, state_ttl_days=None)


def _readonly(a: NDArray[Any]) -> NDArray[Any]:
    a = np.ascontiguousarray(a)
    a.flags.writeable = False
    return a


def page_scale(scores: FloatArray, candidates: NDArray[np.bool_], relative: bool) -> float:
    """Multiplier of the weights on one page: the mean over titles of the best score (relative
    weights) or 1 (absolute weights)."""
    if not relative:
        return 1.0
    best = np.max(np.where(candidates, scores, -np.inf), axis=1)
    return max(float(best.mean()), 0.0)


@dataclass(frozen=True, eq=False)
class PageBlock:
    """The pages of some members, rows sorted by (member, time, page).

    Attributes
    ----------
    rows : ndarray (n,), int64
        Index of each row in the evaluated log.
    page_start : ndarray (n_pages + 1,), int64
        Offsets of the pages in the rows.
    page_id, member : ndarray (n_pages,), int64
    title : ndarray (n,), int64
        Title code of each row.
    row, col : ndarray (n,), int64
        Layout position.
    candidates : ndarray (n, k), int64
        Image codes (``-1`` padding).
    scores : ndarray (n, k), float64
    vectors : ndarray (n_images, dim), float64
        Embeddings of the images the block uses; ``local`` indexes them.
    local : ndarray (n, k), int64
        Row of ``vectors`` of each candidate (0 on padding).
    session : ndarray (n_pages,), int64, optional
    time : ndarray (n_pages,), float64, optional
        Session id and time (Unix seconds) of each page: needed by dwell rules.
    """

    rows: IntArray
    page_start: IntArray
    page_id: IntArray
    member: IntArray
    title: IntArray
    row: IntArray
    col: IntArray
    candidates: IntArray
    scores: FloatArray
    vectors: FloatArray
    local: IntArray
    session: IntArray | None = None
    time: FloatArray | None = None

    @property
    def n_pages(self) -> int:
        """Pages in the block."""
        return len(self.page_id)

    @property
    def n_rows(self) -> int:
        """Rows (page, title) in the block."""
        return len(self.rows)


@dataclass(frozen=True, eq=False)
class BlockResult:
    """Choices of every setting on every row of a block.

    Attributes
    ----------
    rows : ndarray (n,), int64
    choices : ndarray (n, n_settings), int16
        Candidate position chosen per row and setting.
    n_solves : int
    solve_seconds : float
        Wall time inside ``solver.solve`` (the page-solve cost).
    build_seconds : float
        Wall time building the weight-free problems (once per page).
    n_flagged : int
        Solves whose status was ``time_limit`` or ``infeasible`` (the page is still valid for
        ``time_limit``; ``infeasible`` cannot happen without style quotas).
    """

    rows: IntArray
    choices: NDArray[np.int16]
    n_solves: int
    solve_seconds: float
    build_seconds: float
    n_flagged: int


class History:
    """Per-setting memory of the image each title last showed to one member."""

    def __init__(self, n_settings: int) -> None:
        self.n_settings = n_settings
        self._last: dict[int, NDArray[np.int64]] = {}

    def previous(self, titles: IntArray, candidates: IntArray) -> IntArray:
        """``(n_settings, n_titles)`` candidate positions of the previous images (``-1``: none)."""
        codes = np.full((self.n_settings, len(titles)), -1, dtype=np.int64)
        for i, t in enumerate(titles.tolist()):
            last = self._last.get(t)
            if last is not None:
                codes[:, i] = last
        hit = (candidates[None, :, :] == codes[:, :, None]) & (codes[:, :, None] >= 0)
        return np.where(hit.any(axis=2), hit.argmax(axis=2), -1).astype(np.int64)

    def record(self, titles: IntArray, images: IntArray) -> None:
        """``images``: ``(n_settings, n_titles)`` image codes shown now."""
        for i, t in enumerate(titles.tolist()):
            self._last[t] = images[:, i].copy()


class RuleHistory:
    """Per-setting stability state of one member (:class:`slate.stability.TitleState` by title),
    for settings with dwell or ``min_gain``: the plan of a page and the state after it come from
    :func:`slate.stability.plan_page` and :func:`slate.stability.next_states`, the functions
    ``compose()`` serves with, so the rules mean the same in a sweep as in serving.

    ``rules`` holds one entry per setting (None: no such rule; the plan is then only the
    previous images). Like :class:`History`, the state does not expire.
    """

    def __init__(self, rules: Sequence[Any]) -> None:
        from slate.stability import StabilityRules

        self.rules = [r if r is not None else StabilityRules(state_ttl_days=None) for r in rules]
        self._states: list[dict[str, Any]] = [{} for _ in self.rules]

    def plans(self, titles: IntArray, candidates: IntArray, scores: FloatArray, now: float,
              session: int) -> list[Any]:
        """One :class:`slate.stability.StabilityPlan` per setting for a page."""
        from slate.stability import plan_page

        title_ids = [str(t) for t in titles.tolist()]
        image_ids = [[str(c) for c in row] for row in candidates.tolist()]
        mask = candidates >= 0
        locked = np.zeros(len(title_ids), dtype=bool)
        return [
            plan_page(rules, now=now,
                      session_id=session, title_ids=title_ids, image_ids=image_ids, candidates=mask,
                      locked=locked, states=states, scores=scores)
            for rules, states in zip(self.rules, self._states, strict=True)
        ]

    def record(self, plans: Sequence[Any], titles: IntArray, images: IntArray, now: float, session: int) -> None:
        """``images``: ``(n_settings, n_titles)`` image codes shown now."""
        from slate.stability import next_states

        title_ids = [str(t) for t in titles.tolist()]
        n = len(title_ids)
        none, ones = np.zeros(n, dtype=bool), np.ones(n)
        for j, plan in enumerate(plans):
            rules = self.rules[j]
            shown = [str(c) for c in images[j].tolist()]
            self._states[j].update(next_states(plan, rules, now=now, session_id=session, title_ids=title_ids,
                                               shown_ids=shown, drawn=none, propensity=ones, explored=none))


def solve_page_settings(
    base: PageProblem,
    scale: float,
    previous: IntArray,
    settings: Sequence[Setting],
    config: SolverConfig,
    seed: int,
    plans: Sequence[Any] | None = None,
) -> tuple[IntArray, float, int]:
    """Solve one page at every setting: ``(assignments (n_settings, n_titles), seconds,
    number of non-valid statuses)``. ``plans`` (from :meth:`RuleHistory.plans`) restrict the
    candidates of settings with dwell or ``min_gain``."""
    solver = config.make(seed)
    out = np.empty((len(settings), base.n_titles), dtype=np.int64)
    spent = 0.0
    bad = 0
    for j, setting in enumerate(settings):
        plan = None if plans is None else plans[j]
        problem = with_setting(base, previous[j], setting, scale, plan)
        t0 = time.perf_counter()
        result = solver.solve(problem, time_limit_ms=config.time_limit_ms)
        spent += time.perf_counter() - t0
        if result.status.value in ("infeasible", "time_limit"):
            bad += 1
        out[j] = result.assignment
    return out, spent, bad


def solve_block(block: PageBlock, settings: Sequence[Setting], config: SolverConfig) -> BlockResult:
    """Re-solve every page of ``block`` at every setting, each setting with its own history.

    Examples
    --------
    >>> import numpy as np
    >>> from slate.page import GridLayout
    >>> rng = np.random.default_rng(0)
    >>> n, k = 8, 3                                     # two pages of 4 titles, one member
    >>> block = PageBlock(
    ...     rows=np.arange(n), page_start=np.array([0, 4, 8]), page_id=np.array([1, 2]),
    ...     member=np.array([5, 5]), title=np.tile(np.arange(4), 2), row=np.zeros(n, np.int64),
    ...     col=np.tile(np.arange(4), 2), candidates=np.arange(n * k).reshape(n, k) % 12,
    ...     scores=rng.uniform(0, 0.1, (n, k)), vectors=rng.normal(size=(12, 4)),
    ...     local=np.arange(n * k).reshape(n, k) % 12)
    >>> config = SolverConfig(layout=GridLayout(rows=1, cols=4))
    >>> result = solve_block(block, [(0.0, 0.0, None), (0.0, 10.0, None)], config)
    >>> result.choices.shape, result.n_solves
    ((8, 2), 4)
    >>> bool((result.choices[4:, 1] == result.choices[:4, 1]).all())  # a huge churn weight keeps images
    True
    """
    n_set = len(settings)
    choices = np.empty((block.n_rows, n_set), dtype=np.int16)
    solve_s = 0.0
    build_s = 0.0
    bad = 0
    rules = [setting_rules(s) for s in settings]
    staged = any(r is not None for r in rules)
    if staged and (block.session is None or block.time is None):
        raise ValueError("settings with dwell or min_gain need the pages' session and time")
    history = History(n_set)
    ruled = RuleHistory(rules)
    current_member: int | None = None
    for p in range(block.n_pages):
        lo, hi = int(block.page_start[p]), int(block.page_start[p + 1])
        member = int(block.member[p])
        if member != current_member:
            history = History(n_set)
            ruled = RuleHistory(rules)
            current_member = member
        cand_codes = block.candidates[lo:hi]
        width = int((cand_codes >= 0).sum(axis=1).max())
        cand_codes = cand_codes[:, :width]
        mask = cand_codes >= 0
        t0 = time.perf_counter()
        base = base_problem(
            block.scores[lo:hi, :width],
            block.vectors[block.local[lo:hi, :width]],
            mask,
            block.row[lo:hi],
            block.col[lo:hi],
            config.layout,
        )
        build_s += time.perf_counter() - t0
        scale = page_scale(base.scores, mask, config.relative)
        titles = block.title[lo:hi]
        plans = None
        if staged:
            assert block.session is not None and block.time is not None
            now, session = float(block.time[p]), int(block.session[p])
            plans = ruled.plans(titles, cand_codes, base.scores, now, session)
            previous = np.stack([plan.previous for plan in plans])
        else:
            previous = history.previous(titles, cand_codes)
        assign, spent, n_bad = solve_page_settings(
            base, scale, previous, settings, config, page_seed(config.seed, int(block.page_id[p])), plans
        )
        solve_s += spent
        bad += n_bad
        choices[lo:hi] = assign.T
        shown = np.take_along_axis(cand_codes[None, :, :], assign[:, :, None], axis=2)[:, :, 0]
        if plans is not None:
            ruled.record(plans, titles, shown, now, session)
        else:
            history.record(titles, shown)
    return BlockResult(
        rows=block.rows,
        choices=choices,
        n_solves=block.n_pages * n_set,
        solve_seconds=solve_s,
        build_seconds=build_s,
        n_flagged=bad,
    )
