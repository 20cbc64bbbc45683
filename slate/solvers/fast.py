"""``fast``: greedy start, local search and iterated local search (numba), the serving default.

The search works on the page objective of :mod:`slate.page.problem`::

    sum_t unary[t, a_t] - sum_{p = (i, j)} pair_cost[p, a_i, a_j]

with ``changes <= max_changes``, locks and style quotas kept at every step:

1. **Start.** A greedy page: titles in layout order, each taking its best image given the
   titles placed before it; over the budget, the changes with the smallest gains are
   reverted (``start="argmax"``: each title's best image on its own, as
   :func:`~slate.solvers.bounds.budgeted_unary_optimum`). Style quotas are then repaired
   greedily: the cheapest move that lowers the excess, or, when the budget blocks every such
   move, a budget swap that reverts a changed title to pay for it.
2. **Local search** (:func:`local_search`). Each title keeps a *local field*
   ``field[t, k] = unary[t, k] - sum of pair costs against its neighbours' current images``, so
   the gain of any single move is one subtraction and a move updates only its neighbours' rows.
   Titles are examined from a work queue (a title re-enters when a neighbour moves); a move
   that would add a change at the budget is not allowed. When the budget is used up, *budget
   swaps* (revert one changed title to its previous image while changing another) are searched
   exactly: the best non-adjacent partner from a short list of the largest change gains,
   adjacent partners exactly. The result has no improving single move and no improving swap.
3. **Iterated local search** (Lourenço, Martin & Stützle, 2003). A few rounds of: set a random
   title and up to ``strength - 1`` of its neighbours to random allowed images (paying for a
   new change by reverting a random changed title), descend again, keep the page when it is
   not worse. Seeded, so the same ``seed`` gives the same page. It stops after ``max_rounds``
   rounds, after ``patience`` rounds in a row without improvement, or at the time limit.
4. **Upper bound** (optional, ``compute_bound``). Max-product linear programming (MPLP,
   Globerson & Jaakkola, 2007) sweeps over the pairs, with the budget priced by a Lagrange
   multiplier during the sweeps and kept exactly in the final evaluation
   (:func:`~slate.solvers._fast_kernels.dual_value`), which is a valid bound for *any*
   messages. Quotas are relaxed in the bound. When the bound meets the objective the status is
   ``optimal``.

Performance (2-core shared machine, warm, in-process medians of the full ``solve`` with the
bound): about 0.55 ms on a 40x10 local page, 1.4 ms on 80x10 and 4-7 ms on 150x20, with a mean
gap to certified optima of about 0.02% (``benchmarks/page_solvers.py`` prints the tables).
Quality is checked by ``tests/solvers/test_fast.py``. The numba kernels are compiled once per machine
and cached on disk (``cache=True``): the first call in a fresh environment pays a one-off
compile of about 25 s of CPU (see :func:`warm_up`); later processes load the cache in well
under a second.

References
----------
H. R. Lourenço, O. C. Martin and T. Stützle, "Iterated local search", Handbook of
Metaheuristics, 2003.
A. Globerson and T. Jaakkola, "Fixing max-product: convergent message passing algorithms for
MAP LP-relaxations", NIPS 2007.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from slate.errors import InvalidProblemError
from slate.page.problem import PageProblem
from slate.solvers import _fast_kernels as kernels
from slate.solvers.base import register_solver
from slate.solvers.bounds import budgeted_unary_optimum
from slate.solvers.result import SolveResult, Status, check_problem, make_result, normalize_time_limit

__all__ = ["FastSolver", "lagrangian_bound", "local_search", "warm_up"]

_NO_BUDGET = 1 << 40
_CHUNK_ROUNDS = 24  # rounds between two looks at the clock when a time limit is set
_CHUNK_SWEEPS = 2  # bound sweeps between two looks at the clock (or at the target)
_SWEEP_WORK = 150_000  # pair-cost lookups the default bound may spend


def _frozen(array: ArrayLike, dtype: Any, *, own: bool = False) -> NDArray[Any]:
    """A read-only C-contiguous array of ``dtype``; copies only when it must (or when a
    writeable array belongs to someone else, ``own=False``)."""
    out = np.asarray(array)
    if out.dtype != dtype or not out.flags.c_contiguous:
        out = np.array(out, dtype=dtype, order="C")
    elif out.flags.writeable and not own:
        out = out.copy()
    out.flags.writeable = False
    return out


_Adjacency = tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64], NDArray[np.int64], int]
_ADJACENCY: OrderedDict[tuple[int, bytes], _Adjacency] = OrderedDict()
_ADJACENCY_CACHE_SIZE = 256
_ADJACENCY_LOCK = threading.Lock()


def _adjacency(n_titles: int, pairs: NDArray[np.int64]) -> _Adjacency:
    """``(ptr, nbr, pid, side, max_degree)`` of a layout's pairs, cached by value (a serving
    layout repeats on every request). ``ptr`` and ``nbr`` are read-only; ``pid`` and ``side``
    are private to the kernels."""
    key = (n_titles, pairs.tobytes())
    with _ADJACENCY_LOCK:
        hit = _ADJACENCY.get(key)
        if hit is not None:
            _ADJACENCY.move_to_end(key)
            return hit
    ptr, nbr, pid, side = kernels.build_adjacency(n_titles, pairs)
    max_degree = int(np.diff(ptr).max()) if n_titles else 0
    out = (_frozen(ptr, np.int64, own=True), _frozen(nbr, np.int64, own=True), pid, side, max_degree)
    with _ADJACENCY_LOCK:
        _ADJACENCY[key] = out
        if len(_ADJACENCY) > _ADJACENCY_CACHE_SIZE:
            _ADJACENCY.popitem(last=False)
    return out


class _Page:
    """The flat arrays the kernels work on, derived once per problem (cached weakly)."""

    def __init__(self, problem: PageProblem) -> None:
        n_titles = problem.n_titles
        self.unary = _frozen(problem.unary, np.float64)
        self.cost = _frozen(problem.pair_cost, np.float64)
        self.pairs = _frozen(problem.pairs, np.int64)
        self.ptr, self.nbr, pid, side, max_degree = _adjacency(n_titles, self.pairs)
        dcost, cmax = kernels.directed_costs(self.cost, pid, side)
        self.dcost = _frozen(dcost, np.float64, own=True)
        self.cmax = _frozen(cmax, np.float64, own=True)
        self.change = _frozen(problem.changes, np.uint8)
        self.prev = _frozen(problem.previous, np.int64)
        self.locked = _frozen(problem.locked, np.uint8)
        self.tags = _frozen(problem.image_tags, np.uint8)
        self.tag_max = _frozen(problem.tag_max, np.int64)
        self.budget = _NO_BUDGET if problem.max_changes is None else int(problem.max_changes)
        self.top_size = max(1, min(n_titles, max_degree + 1))
        finite = self.unary[np.isfinite(self.unary)]
        scale = float(np.abs(finite).max()) if finite.size else 1.0
        if len(cmax):
            scale = max(scale, float(cmax.max()))
        self.tol = 1e-12 * max(1.0, scale)  # smallest gain worth a move
        self.prob = (
            self.dcost,
            self.ptr,
            self.nbr,
            self.change,
            self.prev,
            self.locked,
            self.tags,
            self.tag_max,
            self.cmax,
            float(cmax.max()) if len(cmax) else 0.0,
        )


_PAGES: weakref.WeakKeyDictionary[PageProblem, _Page] = weakref.WeakKeyDictionary()


def _page(problem: PageProblem) -> _Page:
    page = _PAGES.get(problem)
    if page is None:
        page = _Page(problem)
        _PAGES[problem] = page
    return page


class _State:
    """A page under search: assignment, local fields and bookkeeping (kernel tuple ``st``)."""

    def __init__(self, page: _Page, assignment: NDArray[np.int64] | None) -> None:
        n_titles, n_images = page.unary.shape
        self.a = np.zeros(n_titles, dtype=np.int64)
        if assignment is not None:
            self.a[:] = assignment
        self.field = np.empty((n_titles, n_images))
        self.counts = np.zeros(len(page.tag_max), dtype=np.int64)
        self.st = (
            self.a,
            self.field,
            self.counts,
            np.ones(n_titles, np.uint8),  # dirty
            np.empty(n_titles),  # revert gains
            np.empty(n_titles),  # best change gains
            np.empty(n_titles, np.int64),  # image of the best change
        )
        self.inq = np.ones(n_titles, np.uint8)
        self.work = (
            np.empty(n_titles, np.int64),
            np.zeros(n_titles, np.int64),
            np.empty(page.top_size, np.int64),
        )
        if assignment is None:
            self.n_changes = int(kernels.greedy_start(page.unary, page.prob, self.st, page.budget))
        else:
            kernels.compute_field(page.unary, page.dcost, page.ptr, page.nbr, self.a, self.field)
            self.n_changes = int(page.change[np.arange(n_titles), self.a].sum())
        if len(self.counts):
            self.counts[:] = page.tags[:, np.arange(n_titles), self.a].sum(axis=1)
        self.value = float(kernels.objective_of(page.unary, page.cost, page.pairs, self.a))

    def repair(self, page: _Page) -> bool:
        """Bring the quotas under their maxima (see :func:`_fast_kernels.repair_quotas`)."""
        self.n_changes, gain, ok = kernels.repair_quotas(page.prob, self.st, self.n_changes, page.budget)
        self.value += gain
        return bool(ok)

    def descend(self, page: _Page, deadline: float | None = None) -> bool:
        """Descend to a local optimum; with a deadline, in chunks of moves, stopping when it
        passes (the page is valid after every move). Returns whether the descent finished."""
        self.inq[:] = 1
        if deadline is None:
            self.n_changes, gain = kernels.descend(
                page.prob, self.st, self.n_changes, page.budget, page.tol, self.inq, self.work
            )
            self.value += gain
            return True
        chunk = max(8, len(self.a) // 4)
        while True:
            self.n_changes, gain, finished = kernels.descend_limited(
                page.prob, self.st, self.n_changes, page.budget, page.tol, self.inq, self.work, chunk
            )
            self.value += gain
            if finished:
                return True
            if time.perf_counter() >= deadline:
                return False


def _seed_state(seed: int) -> NDArray[np.uint64]:
    """A non-zero xorshift state from ``seed`` (splitmix64 finaliser)."""
    z = (int(seed) * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    z ^= z >> 31
    return np.array([z or 1], dtype=np.uint64)


def _check_assignment(problem: PageProblem, assignment: ArrayLike) -> NDArray[np.int64]:
    """The assignment as int64, or a clear error when it breaks candidates, locks or budget."""
    a = np.asarray(assignment)
    if a.shape != (problem.n_titles,) or not np.issubdtype(a.dtype, np.integer):
        raise InvalidProblemError(
            f"The 'assignment' parameter of local_search must be {problem.n_titles} integer image "
            f"indices; got {a.dtype} of shape {a.shape} instead."
        )
    a = a.astype(np.int64)
    t = np.arange(problem.n_titles)
    bad = (a < 0) | (a >= problem.n_images)
    bad[~bad] = ~problem.allowed[t[~bad], a[~bad]]
    if bad.any():
        title = int(np.flatnonzero(bad)[0])
        raise InvalidProblemError(
            f"The 'assignment' parameter of local_search must name an allowed image of every "
            f"title; got index {int(a[title])} for title '{problem.title_ids[title]}' instead "
            f"(not a candidate, or a locked title moved)."
        )
    n_changes = int(problem.changes[t, a].sum())
    if problem.max_changes is not None and n_changes > problem.max_changes:
        raise InvalidProblemError(
            f"The 'assignment' parameter of local_search must keep the budget of "
            f"{problem.max_changes} changes; got {n_changes} changes instead."
        )
    return a


def local_search(
    problem: PageProblem,
    assignment: ArrayLike,
    *,
    rounds: int = 0,
    patience: int | None = None,
    strength: int = 3,
    seed: int = 0,
) -> NDArray[np.int64]:
    """Improve a valid page to a local optimum (single moves and budget swaps).

    Parameters
    ----------
    problem : PageProblem
    assignment : array_like (n_titles,), int
        A page that keeps the locks, the change budget and the candidates. Broken quotas are
        repaired first (greedily, with budget swaps); if that fails, no later move makes a
        broken quota worse.
    rounds : int, default 0
        Rounds of iterated local search after the descent (0: plain descent).
    patience : int, optional
        Stop the rounds after this many in a row without improvement (default: ``rounds``).
    strength : int, default 3
        Titles perturbed per round.
    seed : int, default 0
        Seed of the perturbations (unused when ``rounds == 0``).

    Returns
    -------
    ndarray (n_titles,), int
        A page at least as good as ``assignment`` on which no single-title move and no budget
        swap improves the objective, keeping every constraint ``assignment`` kept.

    Raises
    ------
    InvalidProblemError
        ``assignment`` is malformed or breaks a lock, the budget or the candidates.

    Examples
    --------
    >>> from slate.page import random_problem
    >>> from slate.solvers.independent import IndependentSolver
    >>> problem = random_problem(20, 5, "local", seed=0)
    >>> start = IndependentSolver().solve(problem).assignment
    >>> better = local_search(problem, start)
    >>> problem.evaluate(better).objective >= problem.evaluate(start).objective
    True
    """
    a = _check_assignment(problem, assignment)
    page = _page(problem)
    state = _State(page, a)
    if problem.has_quotas:
        state.repair(page)
    state.descend(page)
    if rounds > 0:
        stop = rounds if patience is None else patience
        _iterate(page, state, rounds, stop, strength, _seed_state(seed), None)
    return state.a.copy()


def _iterate(
    page: _Page,
    state: _State,
    rounds: int,
    patience: int,
    strength: int,
    rng: NDArray[np.uint64],
    deadline: float | None,
) -> tuple[int, bool]:
    """Run iterated local search; returns (rounds done, whether the clock stopped it)."""
    done = 0
    stale = 0
    save = np.empty_like(state.a)
    per_round = 0.0  # seconds, measured on the rounds run so far
    while done < rounds and stale < patience:
        now = time.perf_counter()
        if deadline is not None and now >= deadline:
            return done, True
        if deadline is None:
            chunk = rounds - done
        else:  # size the chunk so that it ends well before the deadline
            # min() first: a huge limit over a tiny round time is inf, which int() refuses
            fit = _CHUNK_ROUNDS if per_round == 0.0 else int(min((deadline - now) / (2.0 * per_round), _CHUNK_ROUNDS))
            chunk = max(1, min(_CHUNK_ROUNDS, fit, rounds - done)) if done else 1
        state.value, state.n_changes, n, stale = kernels.iterated_local_search(
            page.prob,
            state.st,
            state.n_changes,
            page.budget,
            page.tol,
            state.value,
            rng,
            chunk,
            patience,
            strength,
            stale,
            state.inq,
            state.work,
            save,
        )
        done += n
        if n == 0:
            break
        if deadline is not None:
            per_round = max(per_round, (time.perf_counter() - now) / n)
    return done, False


def _auto_sweeps(problem: PageProblem) -> int:
    """Sweeps costing about as much as ``_SWEEP_WORK`` cost lookups, between 1 and 10."""
    work = max(1, problem.n_pairs * problem.n_images * problem.n_images)
    return int(min(10, max(1, _SWEEP_WORK // work)))


def lagrangian_bound(
    problem: PageProblem,
    sweeps: int | None = None,
    *,
    deadline: float | None = None,
    target: float | None = None,
) -> tuple[float, int]:
    """A proven upper bound on the page's optimal objective (MPLP dual, budget priced exactly).

    Parameters
    ----------
    problem : PageProblem
    sweeps : int, optional
        MPLP sweeps over the pairs; 0 gives the trivial bound of
        :func:`~slate.solvers.bounds.trivial_upper_bound`, more give tighter bounds. Default:
        as many as cost about 150,000 pair-cost lookups (8 on a 40x10 page, 1 on 150x20).
    deadline : float, optional
        A :func:`time.perf_counter` reading after which no further sweeps start.
    target : float, optional
        The objective of a known page: sweeping stops once the bound meets it (optimality).

    Returns
    -------
    bound : float
        At least the optimum of the problem (quotas are relaxed, everything else is kept).
    sweeps_done : int

    Examples
    --------
    >>> from slate.page import random_problem
    >>> from slate.solvers.bounds import trivial_upper_bound
    >>> problem = random_problem(20, 5, "chain", seed=0)
    >>> bound, _ = lagrangian_bound(problem, sweeps=20)
    >>> bound <= trivial_upper_bound(problem) + 1e-12
    True
    """
    page = _page(problem)
    n_images = page.unary.shape[1]
    n_sweeps = _auto_sweeps(problem) if sweeps is None else int(sweeps)
    lam = np.zeros((problem.n_pairs, 2, n_images))
    done = 0
    if problem.n_pairs and n_sweeps > 0:
        theta = np.where(np.isfinite(page.unary), page.unary, kernels._FLOOR)
        mu = 0.0
        watch = deadline is not None or target is not None
        while done < n_sweeps:
            if deadline is not None and time.perf_counter() >= deadline:
                break
            chunk = min(_CHUNK_SWEEPS, n_sweeps - done) if watch else n_sweeps
            mu = kernels.mplp_sweeps(theta, page.cost, page.pairs, page.change, page.budget, lam, chunk, mu)
            done += chunk
            if target is not None:
                # after a sweep every pair term is <= 0, so this is the bound up to rounding
                estimate = kernels.budgeted_max(theta, page.change, page.budget)
                if estimate - target <= 1e-9 * max(1.0, abs(target)):
                    break
    # evaluated exactly (no rounding shortcuts): valid for whatever messages the sweeps left
    bound = float(kernels.dual_value(page.unary, page.cost, page.pairs, page.change, page.budget, lam))
    return bound, done


def _scan_ms(problem: PageProblem) -> float:
    """Rough milliseconds to read every pair cost once (about 2 ns per entry, measured)."""
    return 2e-6 * problem.n_pairs * problem.n_images * problem.n_images


def _default_rounds(problem: PageProblem) -> int:
    rounds = min(300, max(120, 3 * problem.n_titles))
    return 3 * rounds if problem.has_quotas else rounds


def _default_patience(problem: PageProblem) -> int:
    # quotas block many moves, so a page with quotas needs more rounds to reach the same quality
    patience = min(100, max(40, problem.n_titles))
    return 3 * patience if problem.has_quotas else patience


@dataclass(frozen=True)
class FastSolver:
    """Greedy start, local search with budget swaps, iterated local search, MPLP upper bound.

    Parameters
    ----------
    seed : int, default 0
        Seed of the perturbations; the same seed gives the same page.
    max_rounds : int, optional
        Rounds of iterated local search (default ``3 * n_titles`` within [120, 300], three
        times that on a page with quotas).
    patience : int, optional
        Stop after this many rounds in a row without improvement (default ``n_titles``
        within [40, 100], three times that on a page with quotas).
    strength : int, default 3
        Titles perturbed per round (a title and random neighbours of it).
    start : {"greedy", "argmax"}, default "greedy"
        The first page: titles in order, each taking its best image given the titles placed
        before it (then the lowest-gain changes over the budget reverted), or each title's
        best image on its own.
    compute_bound : bool, default True
        Compute the MPLP upper bound (its cost is reported as ``info["bound_ms"]``).
    bound_sweeps : int, optional
        MPLP sweeps for the bound (default: by page size, see :func:`lagrangian_bound`; fewer
        when the time limit leaves no room).
    name : str, default "fast"

    Examples
    --------
    >>> from slate.page import random_problem
    >>> problem = random_problem(40, 10, "local", seed=0)
    >>> result = FastSolver(seed=0).solve(problem)
    >>> result.status.value in ("feasible", "optimal"), problem.is_feasible(result.assignment)
    (True, True)
    >>> result.bound >= result.objective
    True
    """

    seed: int = 0
    max_rounds: int | None = None
    patience: int | None = None
    strength: int = 3
    compute_bound: bool = True
    bound_sweeps: int | None = None
    start: str = "greedy"
    name: str = "fast"

    def __post_init__(self) -> None:
        for field_name in ("max_rounds", "patience", "bound_sweeps"):
            value = getattr(self, field_name)
            if value is not None and (not isinstance(value, (int, np.integer)) or value < 0):
                raise InvalidProblemError(
                    f"The '{field_name}' parameter of FastSolver must be None or an integer >= 0; "
                    f"got {value!r} instead."
                )
        if self.start not in ("greedy", "argmax"):
            raise InvalidProblemError(
                "The 'start' parameter of FastSolver must be 'greedy' or 'argmax'; "
                f"got {self.start!r} instead."
            )
        for field_name, low in (("strength", 1),):
            value = getattr(self, field_name)
            if not isinstance(value, (int, np.integer)) or value < low:
                raise InvalidProblemError(
                    f"The '{field_name}' parameter of FastSolver must be an integer >= {low}; "
                    f"got {value!r} instead."
                )

    def solve(self, problem: PageProblem, time_limit_ms: float | None = None) -> SolveResult:
        started = time.perf_counter()
        check_problem(problem, self.name)
        time_limit_ms = normalize_time_limit(time_limit_ms)
        deadline = None if time_limit_ms is None else started + time_limit_ms / 1000.0
        page = _page(problem)
        info: dict[str, Any] = {"seed": self.seed}
        start = self.start
        if start == "greedy" and deadline is not None and time_limit_ms is not None and _scan_ms(problem) > 0.25 * time_limit_ms:
            start = "argmax"  # the greedy start scans every pair cost once: too slow for this budget
        info["start"] = start
        if start == "greedy":
            state = _State(page, None)
        else:
            state = _State(page, budgeted_unary_optimum(problem, page.unary)[0])
        if problem.has_quotas:
            info["quota_repair"] = state.repair(page)
        descended = state.descend(page, deadline)
        info["descent_objective"] = state.value
        rounds = _default_rounds(problem) if self.max_rounds is None else int(self.max_rounds)
        patience = _default_patience(problem) if self.patience is None else int(self.patience)
        rng = _seed_state(self.seed)
        if descended:
            done, timed_out = _iterate(page, state, rounds, patience, self.strength, rng, deadline)
        else:  # the time limit stopped the first descent: return the valid page it reached
            done, timed_out = 0, True
            info["descent_finished"] = False
        info["rounds"] = done
        info["search_ms"] = (time.perf_counter() - started) * 1000.0
        bound = None
        if self.compute_bound:
            t0 = time.perf_counter()
            left_ms = None if deadline is None else (deadline - t0) * 1000.0
            if left_ms is not None and _scan_ms(problem) > left_ms:
                # no time to read every pair cost: pair costs are >= 0, so the best page-blind
                # value (budget and locks kept) is still a valid, looser, upper bound
                bound = budgeted_unary_optimum(problem, page.unary)[1]
                info["bound_kind"] = "page-blind (time limit)"
            else:
                bound, sweeps = lagrangian_bound(
                    problem, self.bound_sweeps, deadline=deadline, target=state.value
                )
                info["bound_kind"] = "mplp"
                info["bound_sweeps"] = sweeps
            info["bound_ms"] = (time.perf_counter() - t0) * 1000.0
        status = Status.TIME_LIMIT if timed_out else Status.FEASIBLE
        if bound is not None and bound - state.value <= 1e-9 * max(1.0, abs(state.value)):
            status = Status.OPTIMAL
        return make_result(
            problem, state.a, status=status, solver=self.name, started=started, bound=bound, info=info
        )


def warm_up() -> float:
    """Compile (or load from the on-disk cache) every kernel; returns the seconds it took.

    The first call in a fresh environment compiles the numba kernels (about 25 s of CPU, once
    per machine: the machine code is cached beside the module); later processes load the cache
    in a fraction of a second.

    Examples
    --------
    >>> seconds = warm_up()
    >>> seconds >= 0
    True
    """
    from slate.page.random import random_problem

    t0 = time.perf_counter()
    for quotas in (None, {"style0": 3}):
        problem = random_problem(12, 4, "local", seed=0, quotas=quotas)
        FastSolver(max_rounds=4).solve(problem)
        local_search(problem, FastSolver(max_rounds=0, compute_bound=False).solve(problem).assignment)
    return time.perf_counter() - t0


register_solver("fast", FastSolver)
