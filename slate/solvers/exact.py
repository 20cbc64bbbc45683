"""The ``exact`` page solver: a MILP on the local-marginal-polytope linearisation, solved by HiGHS.

The model (see :mod:`slate.solvers.milp_model`) has a binary ``x[t, k]`` per allowed image and,
per interacting pair of titles, continuous ``y[p, k, l] >= 0`` tied to ``x`` by their marginals.
Its LP relaxation is the local polytope, exact on chains and trees and very tight on grids, so
the solver works LP-first:

1. Titles with one allowed image (locks) are folded into their neighbours' values, and the
   rest is split into independent components. Without a budget or quota that can bind, each
   component is solved on its own. With one, the components are first solved without it; if
   the changes (and quota counts) fit, that page is optimal, otherwise the page is solved
   jointly with the budget and quota rows. (When the per-title best images alone already
   break the budget, the first round is skipped: it would almost surely not fit.)
2. The LP relaxation is solved with the dual simplex. An integral LP solution is optimal.
3. Otherwise its reduced costs give, for every image, a lower bound on how much any page using
   it loses against the LP bound. Images whose loss exceeds the gap to the best known page
   cannot be in a better page and are dropped (reduced-cost fixing, Nemhauser & Wolsey 1988);
   what is left is a much smaller MILP, solved by HiGHS branch and cut with the
   best page as a warm start. A first, tighter restriction finds a good page cheaply; a second
   one, with the gap that page leaves, proves optimality. The bound returned accounts for the
   dropped images, so ``status == "optimal"`` is a proof for the whole problem.

Backends (``ExactSolver(backend=...)``): ``"highspy"`` (default; HiGHS through its own Python
API: warm starts, time and node limits, the MIP dual bound), ``"scipy"``
(:func:`scipy.optimize.linprog` and :func:`scipy.optimize.milp`, the HiGHS bundled with SciPy;
no warm start) and ``"cvxpy"`` (the whole problem as a :mod:`cvxpy` model solved by HiGHS; see
:func:`build_cvxpy_problem` to add your own constraints).

Choice of route, measured on the shared instances (2-core machine shared with other jobs;
whole solve including model building; median of 3 runs per instance, all routes in the same
run; ``benchmark_routes()`` names them):

==============  ========  ===========  ==================  =======================
instance        exact     LP-first     plain MILP,         plain MILP,
                          via SciPy    highspy             scipy.optimize.milp
==============  ========  ===========  ==================  =======================
local-40x10-s0  0.38 s    0.49 s       1.28 s              0.76 s
local-40x10-s1  0.22 s    0.26 s       0.60 s              0.29 s
local-40x10-s2  0.16 s    0.26 s       0.34 s              0.35 s
local-80x10-s0  0.24 s    0.32 s       0.71 s              0.57 s
local-80x10-s1  0.25 s    0.32 s       0.81 s              0.58 s
local-80x10-s2  0.22 s    0.34 s       0.58 s              0.54 s
==============  ========  ===========  ==================  =======================

As plain MILPs, SciPy's bundled HiGHS beat highspy 1.16 in this run (highspy's presolve,
off here, finds nothing to remove in these models and costs another 0.25 s on 80x10). LP-first
wins for both, and highspy wins LP-first: it solves the LP without SciPy's conversions, takes a
warm start for the restricted MILPs and reports the dual bound of a stopped search. On
local-150x20 (fractional LP) the plain MILP takes 35-50 s; LP-first with warm-started
restricted MILPs proves the optimum in about 3.5 s.

References
----------
.. [1] G. L. Nemhauser and L. A. Wolsey, "Integer and Combinatorial Optimization", Wiley, 1988.
.. [2] M. J. Wainwright and M. I. Jordan, "Graphical Models, Exponential Families, and
   Variational Inference", Foundations and Trends in Machine Learning 1(1-2), 2008.
.. [3] Q. Huangfu and J. A. J. Hall, "Parallelizing the dual revised simplex method",
   Mathematical Programming Computation 10, 2018 (HiGHS).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np
import scipy.optimize as sopt
from numpy.typing import NDArray

from slate.errors import InvalidProblemError, SolverError
from slate.page.problem import PageProblem
from slate.solvers.base import register_solver
from slate.solvers.bounds import budgeted_unary_optimum, trivial_upper_bound
from slate.solvers.milp_model import (
    FORMULATIONS,
    MilpModel,
    ReducedProblem,
    build_milp,
    reduce_arrays,
    reduce_problem,
)
from slate.solvers.quotas import repair_quotas
from slate.solvers.result import SolveResult, Status, check_problem, make_result, normalize_time_limit

if TYPE_CHECKING:
    import cvxpy as cp

__all__ = [
    "BACKENDS",
    "CvxpyModel",
    "ExactSolver",
    "benchmark_routes",
    "build_cvxpy_problem",
    "solve_cvxpy",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

Backend = Literal["highspy", "scipy", "cvxpy"]
BACKENDS: tuple[str, ...] = ("highspy", "scipy", "cvxpy")

_INTEGRAL_TOL = 1e-6
_BOUND_TOL = 1e-7  # only at lower / upper bound when this close
_FIRST_STAGE = 0.05


# ---------------------------------------------------------------------------------- backends
@dataclass
class _Run:
    """One backend call. ``lower`` bounds ``c @ z`` from below (min sense)."""

    z: FloatArray | None
    status: str  # optimal | infeasible | time_limit | limit | error
    lower: float
    nodes: int
    backend_status: str
    seconds: float
    reduced_costs: FloatArray | None = None


_BANNER_SHOWN = False


def _new_highs(hs: Any) -> Any:
    """A ``Highs`` instance; the first one of the process prints HiGHS' copyright banner to the C
    stdout, which would corrupt the output of a program that prints JSON (``slate solve``) or
    serves pages, so that one is created with file descriptor 1 pointed at /dev/null."""
    global _BANNER_SHOWN
    if _BANNER_SHOWN:
        return hs.Highs()
    import os
    import sys

    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            h = hs.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    _BANNER_SHOWN = True
    return h


class _HighspyBackend:
    def __init__(self, gap: float, threads: int, node_limit: int | None, presolve: bool) -> None:
        import highspy

        self.hs = highspy
        self.gap = gap
        self.threads = threads
        self.node_limit = node_limit
        self.presolve = presolve

    def _highs(self, model: MilpModel, relax: bool, time_limit: float | None) -> Any:
        h = _new_highs(self.hs)
        h.setOptionValue("output_flag", False)
        h.setOptionValue("threads", int(self.threads))
        h.setOptionValue("mip_rel_gap", float(self.gap))
        h.setOptionValue("presolve", "on" if (self.presolve and not relax) else "off")
        if time_limit is not None:
            h.setOptionValue("time_limit", max(float(time_limit), 1e-3))
        if self.node_limit is not None and not relax:
            h.setOptionValue("mip_max_nodes", int(self.node_limit))
        a = model.A
        integrality = np.zeros(model.n_cols, np.int32) if relax else model.integrality
        status = h.passModel(
            model.n_cols,
            model.n_rows,
            int(a.nnz),
            1,  # column-wise
            1,  # minimise
            0.0,
            model.c,
            model.col_lower,
            model.col_upper,
            model.row_lower,
            model.row_upper,
            a.indptr.astype(np.int32),
            a.indices.astype(np.int32),
            a.data.astype(np.float64),
            integrality,
        )
        if status == self.hs.HighsStatus.kError:
            raise SolverError("HiGHS rejected the page MILP model (passModel failed).")
        return h

    def _status(self, h: Any, relax: bool) -> tuple[str, str]:
        ms = h.getModelStatus()
        name = str(h.modelStatusToString(ms))
        s = self.hs.HighsModelStatus
        if ms == s.kOptimal:
            return "optimal", name
        if ms in (s.kInfeasible, s.kUnboundedOrInfeasible):
            return "infeasible", name
        if ms == s.kTimeLimit:
            return "time_limit", name
        if ms in (s.kIterationLimit, s.kSolutionLimit, s.kObjectiveBound, s.kObjectiveTarget):
            return "limit", name
        return "error", name

    def lp(self, model: MilpModel, time_limit: float | None) -> _Run:
        t0 = time.perf_counter()
        h = self._highs(model, True, time_limit)
        h.run()
        status, name = self._status(h, True)
        z = d = None
        lower = -math.inf
        if status == "optimal":
            sol = h.getSolution()
            z = np.asarray(sol.col_value, dtype=np.float64)
            d = np.asarray(sol.col_dual, dtype=np.float64)
            lower = float(model.c @ z)
        return _Run(z, status, lower, 0, name, time.perf_counter() - t0, d)

    def mip(self, model: MilpModel, time_limit: float | None, start: FloatArray | None) -> _Run:
        t0 = time.perf_counter()
        h = self._highs(model, False, time_limit)
        if start is not None:
            sol = self.hs.HighsSolution()
            sol.col_value = start.tolist()
            sol.value_valid = True
            h.setSolution(sol)
        h.run()
        status, name = self._status(h, False)
        info = h.getInfo()
        z = None
        if int(info.primal_solution_status) == 2:  # a feasible point exists
            z = np.asarray(h.getSolution().col_value, dtype=np.float64)
        lower = float(info.mip_dual_bound) if status != "infeasible" else math.inf
        if not math.isfinite(lower) and status == "optimal" and z is not None:
            lower = float(model.c @ z)
        return _Run(z, status, lower, int(info.mip_node_count), name, time.perf_counter() - t0)


class _ScipyBackend:
    def __init__(self, gap: float, node_limit: int | None, presolve: bool) -> None:
        self.gap = gap
        self.node_limit = node_limit
        self.presolve = presolve

    def lp(self, model: MilpModel, time_limit: float | None) -> _Run:
        t0 = time.perf_counter()
        a = model.A.tocsr()
        eq = model.row_lower == model.row_upper
        le = ~eq & np.isfinite(model.row_upper)
        ge = ~eq & ~le
        a_ub = _vstack([a[le], -a[ge]])
        b_ub = np.concatenate([model.row_upper[le], -model.row_lower[ge]])
        options: dict[str, Any] = {"presolve": False}
        if time_limit is not None:
            options["time_limit"] = max(float(time_limit), 1e-3)
        res = sopt.linprog(
            model.c,
            A_ub=a_ub if a_ub.shape[0] else None,
            b_ub=b_ub if a_ub.shape[0] else None,
            A_eq=a[eq],
            b_eq=model.row_lower[eq],
            bounds=np.stack([model.col_lower, model.col_upper], axis=1),
            method="highs-ds",
            options=options,
        )
        status = {0: "optimal", 1: "time_limit", 2: "infeasible"}.get(int(res.status), "error")
        z = d = None
        lower = -math.inf
        if status == "optimal":
            z = np.asarray(res.x, dtype=np.float64)
            d = np.asarray(res.lower.marginals) + np.asarray(res.upper.marginals)
            lower = float(model.c @ z)
        return _Run(z, status, lower, 0, str(res.message), time.perf_counter() - t0, d)

    def mip(self, model: MilpModel, time_limit: float | None, start: FloatArray | None) -> _Run:
        del start  # scipy.optimize.milp takes no warm start
        t0 = time.perf_counter()
        options: dict[str, Any] = {"mip_rel_gap": float(self.gap), "presolve": self.presolve}
        if time_limit is not None:
            options["time_limit"] = max(float(time_limit), 1e-3)
        if self.node_limit is not None:
            options["node_limit"] = int(self.node_limit)
        res = sopt.milp(
            model.c,
            integrality=model.integrality,
            bounds=sopt.Bounds(model.col_lower, model.col_upper),
            constraints=sopt.LinearConstraint(model.A, model.row_lower, model.row_upper),
            options=options,
        )
        status = {0: "optimal", 1: "time_limit", 2: "infeasible"}.get(int(res.status), "error")
        if status == "time_limit" and "node" in str(res.message).lower():
            status = "limit"
        z = None if res.x is None else np.asarray(res.x, dtype=np.float64)
        bound = getattr(res, "mip_dual_bound", None)
        lower = float(bound) if bound is not None and np.isfinite(bound) else -math.inf
        if status == "infeasible":
            lower = math.inf
        elif status == "optimal" and z is not None and not math.isfinite(lower):
            lower = float(model.c @ z)
        nodes = int(getattr(res, "mip_node_count", 0) or 0)
        return _Run(z, status, lower, nodes, str(res.message), time.perf_counter() - t0)


def _vstack(blocks: list[Any]) -> Any:
    import scipy.sparse as sp

    return sp.vstack(blocks, format="csr")


# ---------------------------------------------------------------------------------- helpers
@dataclass
class _Stats:
    build_s: float = 0.0
    lp_s: float = 0.0
    mip_s: float = 0.0
    n_lp: int = 0
    n_mip: int = 0
    nodes: int = 0
    largest_cols: int = 0
    largest_rows: int = 0
    backend_status: list[str] = field(default_factory=list)
    lp_integral: int = 0
    restricted: int = 0
    errors: int = 0

    def note_model(self, model: MilpModel) -> None:
        self.largest_cols = max(self.largest_cols, model.n_cols)
        self.largest_rows = max(self.largest_rows, model.n_rows)


@dataclass
class _Outcome:
    """Best assignment of a reduced problem (over its ``n_titles``) and an upper bound."""

    assignment: IntArray | None
    value: float  # page value of the assignment (max sense), -inf without one
    bound: float  # upper bound on the optimum (max sense)
    status: str  # optimal | time_limit | limit | infeasible


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.perf_counter()


def _reduced_value(rp: ReducedProblem, free_assignment: IntArray) -> float:
    """Page value (max sense, including ``rp.constant``) of an assignment of the free titles."""
    t = np.arange(rp.n_free)
    value = rp.constant + float(rp.unary[t, free_assignment].sum())
    if len(rp.pairs):
        p = np.arange(len(rp.pairs))
        value -= float(
            rp.pair_cost[p, free_assignment[rp.pairs[:, 0]], free_assignment[rp.pairs[:, 1]]].sum()
        )
    return value


def _reduced_feasible(rp: ReducedProblem, free_assignment: IntArray) -> bool:
    t = np.arange(rp.n_free)
    if not np.isfinite(rp.unary[t, free_assignment]).all():
        return False
    if rp.max_changes is not None and int(rp.changes[t, free_assignment].sum()) > rp.max_changes:
        return False
    if len(rp.tag_max):
        counts = rp.image_tags[:, t, free_assignment].sum(axis=1)
        if (counts > rp.tag_max).any():
            return False
    return True


def _fit_budget(problem: PageProblem, assignment: IntArray) -> IntArray:
    """Revert the changes that lose least unary value until the change budget holds."""
    a = np.array(assignment, dtype=np.int64)
    if problem.max_changes is None:
        return a
    t = np.arange(problem.n_titles)
    changed = problem.changes[t, a]
    excess = int(changed.sum()) - problem.max_changes
    if excess <= 0:
        return a
    prev = problem.previous
    u = problem.unary
    loss = np.where(changed, u[t, a] - u[t, np.maximum(prev, 0)], np.inf)
    revert = np.argsort(loss, kind="stable")[:excess]
    a[revert] = prev[revert]
    return a


def _budget_surely_binds(problem: PageProblem) -> bool:
    """Whether the per-title best images already make more changes than the budget allows.

    Then the components' unconstrained optima almost never fit the budget either (the pair
    penalties push away from neighbours, not towards last session's images), so solving them
    first is skipped. A heuristic for speed only: the joint solve is exact either way.
    """
    if problem.max_changes is None:
        return False
    t = np.arange(problem.n_titles)
    best = np.argmax(problem.unary, axis=1)
    return int(problem.changes[t, best].sum()) > problem.max_changes


def _lp_losses(model: MilpModel, z: FloatArray, d: FloatArray) -> FloatArray:
    """Per image, a lower bound on what any solution using it loses against the LP bound.

    From LP duality, ``c @ z' >= c @ z* + sum_j d_j (z'_j - z*_j)`` for every feasible ``z'``
    and every term is >= 0; keeping only the ``x`` terms of title ``t`` choosing ``k``: the term
    of ``x[t, k]`` (if it sits at 0) plus that of the image at 1 it replaces (if any).
    """
    idx = model.x_index
    ok = idx >= 0
    xs = np.where(ok, z[np.maximum(idx, 0)], 0.0)
    ds = np.where(ok, d[np.maximum(idx, 0)], 0.0)
    at_lower = ok & (xs <= _BOUND_TOL)
    at_upper = ok & (xs >= 1.0 - _BOUND_TOL)
    enter = np.where(at_lower, np.maximum(ds, 0.0), 0.0)
    leave_t = np.where(at_upper, np.maximum(-ds, 0.0), 0.0).sum(axis=1)
    loss = enter + np.where(at_upper, 0.0, leave_t[:, None])
    return np.where(ok, loss, np.inf)


# ---------------------------------------------------------------------------------- the solver
@dataclass(frozen=True)
class ExactSolver:
    """Proves the best page: a MILP on the local-marginal-polytope linearisation, solved by HiGHS.

    Parameters
    ----------
    backend : {"highspy", "scipy", "cvxpy"}, default "highspy"
        How HiGHS is called (see the module docstring). ``"cvxpy"`` solves the whole page as one
        :func:`build_cvxpy_problem` model (no components, no LP-first, no warm start).
    formulation : {"local", "textbook"}, default "local"
        The pair linearisation (see :mod:`slate.solvers.milp_model`). ``"textbook"`` is much
        slower and is here for comparison; it is solved as a plain MILP.
    mip_rel_gap : float, default 1e-6
        Relative gap at which HiGHS stops (the proof's tolerance).
    threads : int, default 1
        HiGHS threads (highspy and cvxpy backends).
    lp_first : bool, default True
        Solve the LP relaxation first and restrict the MILP by reduced-cost fixing. With
        False every model is handed to HiGHS' branch and cut as it is.
    split_components : bool, default True
        Solve independent components separately (see the module docstring).
    presolve : bool, default False
        HiGHS presolve for the MILPs (it finds nothing to remove in these models and costs
        time; the LPs are always solved without it).
    node_limit : int, optional
        Branch-and-bound node limit per MILP; a search stopped by it returns status
        ``feasible``.
    warm_start : callable, optional
        ``warm_start(problem) -> assignment``: a heuristic page (e.g. the ``fast`` solver's)
        used as the first incumbent, next to the budgeted per-title argmax.
    name : str, default "exact"

    Examples
    --------
    >>> from slate.page import random_problem
    >>> problem = random_problem(20, 5, "local", seed=0)
    >>> result = ExactSolver().solve(problem)
    >>> result.status.value, problem.is_feasible(result.assignment)
    ('optimal', True)
    >>> abs(result.bound - result.objective) <= 1e-6 * abs(result.objective)
    True
    """

    backend: Backend = "highspy"
    formulation: Literal["local", "textbook"] = "local"
    mip_rel_gap: float = 1e-6
    threads: int = 1
    lp_first: bool = True
    split_components: bool = True
    presolve: bool = False
    node_limit: int | None = None
    warm_start: Callable[[PageProblem], Any] | None = None
    name: str = "exact"

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise InvalidProblemError(
                f"The 'backend' parameter of ExactSolver must be one of {BACKENDS}; "
                f"got {self.backend!r} instead."
            )
        if self.formulation not in FORMULATIONS:
            raise InvalidProblemError(
                f"The 'formulation' parameter of ExactSolver must be one of {FORMULATIONS}; "
                f"got {self.formulation!r} instead."
            )
        gap = self.mip_rel_gap
        if isinstance(gap, bool) or not isinstance(gap, (int, float)) or not 0 <= gap < 1:
            raise InvalidProblemError(
                f"The 'mip_rel_gap' parameter of ExactSolver must be a number in [0, 1); "
                f"got {gap!r} instead."
            )
        for name in ("threads", "node_limit"):
            value = getattr(self, name)
            if value is None and name == "node_limit":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise InvalidProblemError(
                    f"The '{name}' parameter of ExactSolver must be an integer >= 1; "
                    f"got {value!r} instead."
                )
        if self.warm_start is not None and not callable(self.warm_start):
            raise InvalidProblemError(
                f"The 'warm_start' parameter of ExactSolver must be callable or None; "
                f"got {type(self.warm_start).__name__} instead."
            )

    # ------------------------------------------------------------------ entry point
    def solve(self, problem: PageProblem, time_limit_ms: float | None = None) -> SolveResult:
        """Solve ``problem`` to proven optimality, or return the best page at the time limit.

        Parameters
        ----------
        problem : PageProblem
        time_limit_ms : float, optional
            Wall-time budget in milliseconds (model building included).

        Returns
        -------
        SolveResult
            ``status`` is ``optimal`` (``bound`` within ``mip_rel_gap`` of ``objective``),
            ``time_limit`` (best page found, ``bound`` = the proven upper bound),
            ``feasible`` (node limit) or ``infeasible`` (no page meets the quotas; the
            assignment is the best repair found and ``info["violations"]`` says what it breaks).
        """
        started = time.perf_counter()
        check_problem(problem, self.name)
        time_limit_ms = normalize_time_limit(time_limit_ms)
        if time_limit_ms is not None and time_limit_ms <= 0:
            raise InvalidProblemError(
                f"The 'time_limit_ms' parameter must be a positive number or None; "
                f"got {time_limit_ms!r} instead."
            )
        deadline = None if time_limit_ms is None else started + time_limit_ms / 1000.0
        if self.backend == "cvxpy":
            return _solve_cvxpy(
                problem,
                self.formulation,
                time_limit_ms,
                self.mip_rel_gap,
                self.threads,
                started,
                self.name,
                self._incumbents(problem),
            )
        return self._solve_highs(problem, started, deadline)

    # ------------------------------------------------------------------ incumbents
    def _incumbents(self, problem: PageProblem) -> list[IntArray]:
        """Heuristic pages, feasible first: budgeted argmax (quota-repaired), the warm start."""
        out: list[IntArray] = []
        base, _ = budgeted_unary_optimum(problem)
        if problem.has_quotas:
            base, _ = repair_quotas(problem, base)
        out.append(np.asarray(base, dtype=np.int64))
        if self.warm_start is not None:
            given = np.asarray(self.warm_start(problem))
            if given.shape != (problem.n_titles,) or not np.issubdtype(given.dtype, np.integer):
                raise InvalidProblemError(
                    f"The 'warm_start' callable must return {problem.n_titles} integer image "
                    f"indices; got {given.dtype} of shape {given.shape} instead."
                )
            out.append(given.astype(np.int64))
        feasible = [a for a in out if problem.is_feasible(a)]
        feasible.sort(key=lambda a: -problem.evaluate(a).objective)
        return feasible + [a for a in out if not problem.is_feasible(a)]

    def _fitter(self, problem: PageProblem) -> Callable[[IntArray], IntArray | None]:
        def fit(assignment: IntArray) -> IntArray | None:
            a = _fit_budget(problem, assignment)
            if problem.has_quotas:
                a, _ = repair_quotas(problem, a)
            return a if problem.is_feasible(a) else None

        return fit

    # ------------------------------------------------------------------ HiGHS routes
    def _backend(self) -> _HighspyBackend | _ScipyBackend:
        if self.backend == "highspy":
            return _HighspyBackend(self.mip_rel_gap, self.threads, self.node_limit, self.presolve)
        return _ScipyBackend(self.mip_rel_gap, self.node_limit, self.presolve)

    def _solve_highs(
        self, problem: PageProblem, started: float, deadline: float | None
    ) -> SolveResult:
        backend = self._backend()
        stats = _Stats()
        t0 = time.perf_counter()
        rp = reduce_problem(problem)
        stats.build_s += time.perf_counter() - t0
        incumbents = self._incumbents(problem)
        feasible = [a for a in incumbents if problem.is_feasible(a)]
        fit = self._fitter(problem)
        info: dict[str, Any] = {
            "backend": self.backend,
            "formulation": self.formulation,
            "fixed_titles": int(problem.n_titles - rp.n_free),
            "components": len(rp.components),
            "coupled": rp.is_coupled,
        }

        outcome: _Outcome
        phase = "joint"
        if self.split_components and len(rp.components) > 1 and not _budget_surely_binds(problem):
            phase = "components"
            outcome = self._solve_components(rp, feasible, backend, deadline, stats)
            if rp.is_coupled and outcome.assignment is not None:
                free_a = outcome.assignment[rp.free]
                if not _reduced_feasible(rp, free_a):
                    phase = "joint after components"
                    relaxed = outcome
                    fitted = fit(outcome.assignment)
                    starts = ([fitted] if fitted is not None else []) + feasible
                    outcome = self._solve_unit(rp, starts, fit, backend, deadline, stats)
                    outcome.bound = min(outcome.bound, relaxed.bound)
        else:
            outcome = self._solve_unit(rp, feasible, fit, backend, deadline, stats)
        info["phase"] = phase

        if outcome.assignment is None or not problem.is_feasible(outcome.assignment):
            assignment = incumbents[0]
            if outcome.status != "infeasible" and problem.is_feasible(assignment):
                status = Status.TIME_LIMIT if outcome.status == "time_limit" else Status.FEASIBLE
            else:
                status = Status.INFEASIBLE
                info["violations"] = problem.violations(assignment)
        else:
            assignment = outcome.assignment
            status = {
                "optimal": Status.OPTIMAL,
                "time_limit": Status.TIME_LIMIT,
                "limit": Status.FEASIBLE,
                "infeasible": Status.INFEASIBLE,
            }[outcome.status]
        bound: float | None = outcome.bound if math.isfinite(outcome.bound) else None
        if status is Status.INFEASIBLE:
            bound = None
        if status is Status.OPTIMAL:
            value = problem.evaluate(assignment).objective
            if bound is None or bound - value > self.mip_rel_gap * max(1.0, abs(value)) + 1e-9:
                status = Status.TIME_LIMIT if deadline is not None else Status.FEASIBLE
        if bound is None and status is not Status.INFEASIBLE:
            bound = trivial_upper_bound(problem)
        if status is Status.TIME_LIMIT and deadline is None:  # no limit was set: never "time_limit"
            status = Status.FEASIBLE
        if stats.errors:
            info["backend_errors"] = stats.errors
        info.update(
            build_ms=1000 * stats.build_s,
            lp_ms=1000 * stats.lp_s,
            mip_ms=1000 * stats.mip_s,
            n_lp=stats.n_lp,
            n_mip=stats.n_mip,
            lp_integral=stats.lp_integral,
            restricted_mips=stats.restricted,
            nodes=stats.nodes,
            model_cols=stats.largest_cols,
            model_rows=stats.largest_rows,
            backend_status=stats.backend_status[-1] if stats.backend_status else "not called",
        )
        return make_result(
            problem,
            assignment,
            status=status,
            solver=self.name,
            started=started,
            bound=bound,
            info=info,
        )

    def _solve_components(
        self,
        rp: ReducedProblem,
        feasible: list[IntArray],
        backend: _HighspyBackend | _ScipyBackend,
        deadline: float | None,
        stats: _Stats,
    ) -> _Outcome:
        """Every component on its own, without the budget and quota rows."""
        free_a = np.zeros(rp.n_free, dtype=np.int64)
        bound = rp.constant
        statuses: list[str] = []
        for comp in rp.components:
            sub = _subproblem(rp, comp)
            starts = [a[rp.free[comp]] for a in feasible]
            out = self._solve_unit(sub, starts, None, backend, deadline, stats)
            if out.assignment is None:  # time is up: the best page we know on this component
                best = starts[0] if starts else sub.full_assignment(np.argmax(sub.unary, axis=1))
                out = _Outcome(best, _reduced_value(sub, best[sub.free]), out.bound, "time_limit")
            assert out.assignment is not None
            free_a[comp] = out.assignment
            bound += out.bound
            statuses.append(out.status)
        status = (
            "optimal"
            if all(s == "optimal" for s in statuses)
            else ("time_limit" if "time_limit" in statuses else "limit")
        )
        full = rp.full_assignment(free_a)
        return _Outcome(full, _reduced_value(rp, free_a), bound, status)

    def _solve_unit(
        self,
        rp: ReducedProblem,
        starts: list[IntArray],
        fit: Callable[[IntArray], IntArray | None] | None,
        backend: _HighspyBackend | _ScipyBackend,
        deadline: float | None,
        stats: _Stats,
    ) -> _Outcome:
        """Solve a reduced problem with its coupling rows; assignments are over ``rp.n_titles``.

        ``starts`` are feasible pages (over ``rp.n_titles``); ``fit`` makes an assignment
        feasible for the coupling rows (None: there are none).
        """
        if rp.n_free == 0:
            v = rp.constant
            return _Outcome(rp.fixed_assignment.copy(), v, v, "optimal")
        if not len(rp.pairs) and not rp.is_coupled:
            best = np.argmax(rp.unary, axis=1).astype(np.int64)
            v = _reduced_value(rp, best)
            return _Outcome(rp.full_assignment(best), v, v, "optimal")

        inc_a: IntArray | None = None
        inc_v = -math.inf
        for a in starts:
            fa = a[rp.free]
            if _reduced_feasible(rp, fa):
                v = _reduced_value(rp, fa)
                if v > inc_v:
                    inc_a, inc_v = fa, v

        t0 = time.perf_counter()
        model = rp.model(formulation=self.formulation)
        stats.build_s += time.perf_counter() - t0
        stats.note_model(model)

        if not self.lp_first or self.formulation == "textbook":
            return self._mip(rp, model, inc_a, inc_v, backend, deadline, stats, upper=math.inf)

        remaining = _remaining(deadline)
        if remaining is not None and remaining <= 0:
            return self._give_up(rp, inc_a, inc_v, math.inf)
        lp = backend.lp(model, remaining)
        stats.n_lp += 1
        stats.lp_s += lp.seconds
        stats.backend_status.append(lp.backend_status)
        stats.errors += lp.status == "error"
        if lp.status == "infeasible":
            return _Outcome(None, -math.inf, -math.inf, "infeasible")
        if lp.status != "optimal" or lp.z is None or lp.reduced_costs is None:
            given_up = "time_limit" if lp.status == "time_limit" else "limit"
            return self._give_up(rp, inc_a, inc_v, math.inf, given_up)
        upper = model.offset - lp.lower
        lp_a = model.decode(lp.z)
        lp_x = lp.z[: model.n_x]
        if np.minimum(lp_x, 1.0 - lp_x).max() <= _INTEGRAL_TOL and _reduced_feasible(rp, lp_a):
            v = _reduced_value(rp, lp_a)
            if v >= upper - 1e-9 * max(1.0, abs(upper)):
                stats.lp_integral += 1
                return _Outcome(rp.full_assignment(lp_a), v, max(upper, v), "optimal")
        # a rounded LP page as another incumbent
        rounded: IntArray | None = lp_a
        if fit is not None:
            fitted = fit(rp.full_assignment(lp_a))
            rounded = None if fitted is None else fitted[rp.free]
        if rounded is not None and _reduced_feasible(rp, rounded):
            v = _reduced_value(rp, rounded)
            if v > inc_v:
                inc_a, inc_v = rounded, v
        if inc_a is None:  # no page to measure the gap against: plain branch and cut
            return self._mip(rp, model, None, inc_v, backend, deadline, stats, upper=upper)

        losses = _lp_losses(model, lp.z, lp.reduced_costs)
        tol = 1e-9 * max(1.0, abs(upper))
        threshold = _FIRST_STAGE * (upper - inc_v)
        for _stage in range(3):
            if upper - inc_v <= self.mip_rel_gap * max(1.0, abs(upper)):
                return _Outcome(rp.full_assignment(inc_a), inc_v, upper, "optimal")
            keep = (losses <= threshold + tol) & rp.allowed
            keep[np.arange(rp.n_free), inc_a] = True
            excluded = rp.allowed & ~keep
            if not excluded.any():
                return self._mip(rp, model, inc_a, inc_v, backend, deadline, stats, upper=upper)
            outside = upper - float(
                losses[excluded].min()
            )  # no page using a dropped image beats it
            sub = rp.restrict(keep)
            stats.restricted += 1
            out = self._solve_restricted(sub, inc_a, inc_v, backend, deadline, stats)
            if out.assignment is not None and out.value > inc_v:
                inc_a, inc_v = out.assignment, out.value
            bound = min(upper, max(out.bound, outside))
            if out.status == "infeasible":  # cannot be (the incumbent is in it): no proof
                return _Outcome(rp.full_assignment(inc_a), inc_v, upper, "limit")
            if out.status != "optimal":
                return _Outcome(rp.full_assignment(inc_a), inc_v, max(bound, inc_v), out.status)
            if inc_v >= outside - tol:
                return _Outcome(rp.full_assignment(inc_a), inc_v, max(bound, inc_v), "optimal")
            threshold = upper - inc_v
        return _Outcome(rp.full_assignment(inc_a), inc_v, upper, "limit")  # pragma: no cover

    def _solve_restricted(
        self,
        sub: ReducedProblem,
        inc_a: IntArray,
        inc_v: float,
        backend: _HighspyBackend | _ScipyBackend,
        deadline: float | None,
        stats: _Stats,
    ) -> _Outcome:
        """Branch and cut on a restricted problem (over the parent's free titles)."""
        if sub.n_free == 0:
            v = sub.constant
            return _Outcome(sub.fixed_assignment.copy(), v, v, "optimal")
        t0 = time.perf_counter()
        model = sub.model(formulation=self.formulation)
        stats.build_s += time.perf_counter() - t0
        stats.note_model(model)
        out = self._mip(
            sub, model, inc_a[sub.free], inc_v, backend, deadline, stats, upper=math.inf
        )
        return out

    def _mip(
        self,
        rp: ReducedProblem,
        model: MilpModel,
        inc_a: IntArray | None,
        inc_v: float,
        backend: _HighspyBackend | _ScipyBackend,
        deadline: float | None,
        stats: _Stats,
        *,
        upper: float,
    ) -> _Outcome:
        """Branch and cut on ``model`` (over ``rp``'s free titles), warm-started from ``inc_a``."""
        remaining = _remaining(deadline)
        if remaining is not None and remaining <= 0:
            return self._give_up(rp, inc_a, inc_v, upper)
        start = None if inc_a is None else model.encode(inc_a)
        run = backend.mip(model, remaining, start)
        stats.n_mip += 1
        stats.mip_s += run.seconds
        stats.nodes += run.nodes
        stats.backend_status.append(run.backend_status)
        stats.errors += run.status == "error"
        if run.status == "infeasible":
            return _Outcome(None, -math.inf, -math.inf, "infeasible")
        bound = min(upper, model.offset - run.lower)
        if run.z is not None:
            a = model.decode(run.z)
            if _reduced_feasible(rp, a):
                v = _reduced_value(rp, a)
                if v > inc_v:
                    inc_a, inc_v = a, v
        if inc_a is None:
            return _Outcome(None, -math.inf, bound, run.status if run.status != "error" else "limit")
        # a backend error is not a time limit: the best page so far, without a proof ("limit")
        status = run.status if run.status in ("optimal", "time_limit", "limit") else "limit"
        return _Outcome(rp.full_assignment(inc_a), inc_v, max(bound, inc_v), status)

    @staticmethod
    def _give_up(
        rp: ReducedProblem, inc_a: IntArray | None, inc_v: float, upper: float, status: str = "time_limit"
    ) -> _Outcome:
        if inc_a is None:
            return _Outcome(None, -math.inf, upper, status)
        return _Outcome(rp.full_assignment(inc_a), inc_v, max(upper, inc_v), status)


def _subproblem(rp: ReducedProblem, titles: IntArray) -> ReducedProblem:
    """The free titles ``titles`` of ``rp`` and the pairs among them, without coupling rows."""
    inside = np.zeros(rp.n_free, bool)
    inside[titles] = True
    sel = np.flatnonzero(inside[rp.pairs[:, 0]] & inside[rp.pairs[:, 1]])
    local = np.full(rp.n_free, -1, dtype=np.int64)
    local[titles] = np.arange(len(titles))
    n_images = rp.unary.shape[1]
    return reduce_arrays(
        rp.unary[titles],
        local[rp.pairs[sel]],
        rp.pair_cost[sel],
        changes=rp.changes[titles],
        max_changes=None,
        image_tags=np.zeros((0, len(titles), n_images), dtype=bool),
        tag_max=np.zeros(0, dtype=np.int64),
    )


# ---------------------------------------------------------------------------------- cvxpy
class CvxpyModel(NamedTuple):
    """A page problem as a :mod:`cvxpy` model, for research (add constraints, then solve).

    Attributes
    ----------
    problem : cvxpy.Problem
        ``Maximize(page objective)`` subject to the page's constraints.
    x : cvxpy.Variable (n_titles, n_images), boolean
        ``x[t, k] = 1`` when title ``t`` shows image ``k`` (forced to 0 where not allowed).
    y : cvxpy.Variable
        The pair variables of the chosen formulation (one per column of the sparse model).
    read_assignment : callable
        ``read_assignment()`` returns the assignment (image index per title) from ``x.value``
        after a solve.
    """

    problem: cp.Problem
    x: cp.Variable
    y: cp.Variable
    read_assignment: Callable[[], IntArray]


def build_cvxpy_problem(
    problem: PageProblem, formulation: Literal["local", "textbook"] = "local"
) -> CvxpyModel:
    """The page problem as a :mod:`cvxpy` MILP, to extend with your own constraints.

    Budget and quota constraints are included. The model is vectorised (sparse matrices), so
    building it is fast; solve with ``model.problem.solve(solver=cvxpy.HIGHS)``.

    Parameters
    ----------
    problem : PageProblem
    formulation : {"local", "textbook"}, default "local"
        ``"local"``: the local-marginal-polytope linearisation (tight; fast to solve).
        ``"textbook"``: ``y >= x_a + x_b - 1`` per positive-cost image pair (weak; slow).

    Returns
    -------
    CvxpyModel
        ``(problem, x, y, read_assignment)``.

    Examples
    --------
    A business rule on top of the page problem: title 0 must not show image 1.

    >>> import cvxpy as cp
    >>> from slate.page import random_problem
    >>> page = random_problem(10, 3, "local", seed=1)
    >>> model = build_cvxpy_problem(page)
    >>> rule = cp.Problem(model.problem.objective, model.problem.constraints + [model.x[0, 1] == 0])
    >>> _ = rule.solve(solver=cp.HIGHS)
    >>> a = model.read_assignment()
    >>> int(a[0]) != 1 and page.is_feasible(a)
    True
    """
    import cvxpy as cp

    if formulation not in FORMULATIONS:
        raise InvalidProblemError(
            f"The 'formulation' parameter must be one of {FORMULATIONS}; "
            f"got {formulation!r} instead."
        )
    model = build_milp(
        problem.unary,
        problem.pairs,
        problem.pair_cost,
        changes=problem.changes,
        max_changes=problem.max_changes,
        image_tags=problem.image_tags,
        tag_max=problem.tag_max,
        formulation=formulation,
    )
    n_titles, n_images = problem.n_titles, problem.n_images
    allowed = problem.allowed
    x = cp.Variable((n_titles, n_images), boolean=True, name="x")
    n_y = model.n_cols - model.n_x
    y = cp.Variable(max(n_y, 1), nonneg=True, name="y")
    x_flat = cp.reshape(x, (n_titles * n_images,), order="C")
    x_cols = x_flat[np.flatnonzero(allowed.ravel())]
    a = model.A.tocsc()
    a_x = a[:, : model.n_x]
    a_y = a[:, model.n_x :]
    expr = a_x @ x_cols
    if n_y:
        expr = expr + a_y @ y
        objective = -model.c[: model.n_x] @ x_cols - model.c[model.n_x :] @ y
    else:
        objective = -model.c[: model.n_x] @ x_cols
    lo, hi = model.row_lower, model.row_upper
    eq = lo == hi
    le = ~eq & np.isfinite(hi)
    ge = ~eq & ~le
    constraints = []
    if eq.any():
        constraints.append(expr[np.flatnonzero(eq)] == lo[eq])
    if le.any():
        constraints.append(expr[np.flatnonzero(le)] <= hi[le])
    if ge.any():
        constraints.append(expr[np.flatnonzero(ge)] >= lo[ge])
    if not allowed.all():
        constraints.append(x_flat[np.flatnonzero(~allowed.ravel())] == 0)
    if n_y == 0:
        constraints.append(y == 0)
    prob = cp.Problem(cp.Maximize(objective), constraints)

    def read_assignment() -> IntArray:
        if x.value is None:
            raise SolverError("The cvxpy model has no solution yet; solve it first.")
        values = np.where(allowed, np.asarray(x.value, dtype=np.float64), -np.inf)
        return np.argmax(values, axis=1).astype(np.int64)

    return CvxpyModel(prob, x, y, read_assignment)


def solve_cvxpy(
    problem: PageProblem,
    formulation: Literal["local", "textbook"] = "textbook",
    time_limit_ms: float | None = None,
    *,
    mip_rel_gap: float = 1e-6,
    threads: int = 1,
) -> SolveResult:
    """Solve the page with a plain :mod:`cvxpy` model and HiGHS (the benchmark's baseline).

    Parameters
    ----------
    problem : PageProblem
    formulation : {"textbook", "local"}, default "textbook"
        See :func:`build_cvxpy_problem`.
    time_limit_ms : float, optional
        Wall-time budget: what building the model took is subtracted from HiGHS' time limit
        (cvxpy's own compilation inside ``solve`` cannot be interrupted).
    mip_rel_gap : float, default 1e-6
    threads : int, default 1

    Returns
    -------
    SolveResult
        ``solver`` is ``"cvxpy-<formulation>"``; ``info`` has the cvxpy status and the times to
        build and to solve.

    Examples
    --------
    >>> from slate.page import random_problem
    >>> page = random_problem(8, 3, "dense", seed=2)
    >>> a, b = solve_cvxpy(page, "textbook"), solve_cvxpy(page, "local")
    >>> a.status.value, abs(a.objective - b.objective) < 1e-6
    ('optimal', True)
    """
    started = time.perf_counter()
    return _solve_cvxpy(
        problem,
        formulation,
        time_limit_ms,
        mip_rel_gap,
        threads,
        started,
        f"cvxpy-{formulation}",
        [],
    )


def _solve_cvxpy(
    problem: PageProblem,
    formulation: Literal["local", "textbook"],
    time_limit_ms: float | None,
    mip_rel_gap: float,
    threads: int,
    started: float,
    name: str,
    incumbents: list[IntArray],
) -> SolveResult:
    import cvxpy as cp

    model = build_cvxpy_problem(problem, formulation)
    built = time.perf_counter()
    options: dict[str, Any] = {"mip_rel_gap": float(mip_rel_gap), "threads": int(threads)}
    if time_limit_ms is not None:
        options["time_limit"] = max(1e-3, time_limit_ms / 1000.0 - (built - started))
    try:
        model.problem.solve(solver=cp.HIGHS, **options)
    except cp.error.SolverError as err:  # pragma: no cover - a broken install
        raise SolverError(f"cvxpy's HIGHS failed on the page problem: {err}") from err
    solved = time.perf_counter()
    cvx_status = str(model.problem.status)
    stats = model.problem.solver_stats
    extra = getattr(stats, "extra_stats", None)
    info: dict[str, Any] = {
        "backend": "cvxpy",
        "formulation": formulation,
        "cvxpy_status": cvx_status,
        "build_ms": 1000 * (built - started),
        "solve_ms": 1000 * (solved - built),
        "nodes": int(getattr(extra, "mip_node_count", 0) or 0),
    }
    if not incumbents:
        base, _ = budgeted_unary_optimum(problem)
        if problem.has_quotas:
            base, _ = repair_quotas(problem, base)
        incumbents = [np.asarray(base, dtype=np.int64)]
    bound: float | None = None
    if model.x.value is not None and cvx_status in (
        cp.OPTIMAL,
        cp.OPTIMAL_INACCURATE,
        cp.USER_LIMIT,
    ):
        assignment = model.read_assignment()
        if extra is not None and model.problem.value is not None:
            gap = float(extra.objective_function_value) - float(extra.mip_dual_bound)
            if math.isfinite(gap):
                bound = float(model.problem.value) + max(gap, 0.0)
        status = Status.OPTIMAL if cvx_status == cp.OPTIMAL else Status.TIME_LIMIT
    elif cvx_status in (cp.INFEASIBLE, cp.INFEASIBLE_INACCURATE):
        assignment = incumbents[0]
        status = Status.INFEASIBLE
        info["violations"] = problem.violations(assignment)
    else:
        assignment = incumbents[0]
        status = Status.TIME_LIMIT
    if status is not Status.INFEASIBLE:
        value = problem.evaluate(assignment).objective
        if bound is None:
            bound = trivial_upper_bound(problem)
        if status is Status.OPTIMAL and bound - value > mip_rel_gap * max(1.0, abs(value)) + 1e-9:
            status = Status.FEASIBLE
    return make_result(
        problem, assignment, status=status, solver=name, started=started, bound=bound, info=info
    )


# ---------------------------------------------------------------------------------- benchmarks
def benchmark_routes() -> dict[str, Callable[[PageProblem, float | None], SolveResult]]:
    """Named ways to solve a page exactly, for ``benchmarks/page_solvers.py``.

    Returns
    -------
    dict
        ``name -> route(problem, time_limit_ms)``: ``exact`` (the default solver: highspy,
        LP-first), ``exact-scipy`` (same algorithm through SciPy), ``exact-mip`` (highspy,
        plain branch and cut on the whole model), ``cvxpy-local`` and ``cvxpy-textbook``
        (the plain cvxpy baseline).

    Examples
    --------
    >>> sorted(benchmark_routes())
    ['cvxpy-local', 'cvxpy-textbook', 'exact', 'exact-mip', 'exact-scipy']
    """

    def cvxpy_local(problem: PageProblem, time_limit_ms: float | None = None) -> SolveResult:
        return solve_cvxpy(problem, "local", time_limit_ms)

    def cvxpy_textbook(problem: PageProblem, time_limit_ms: float | None = None) -> SolveResult:
        return solve_cvxpy(problem, "textbook", time_limit_ms)

    return {
        "exact": ExactSolver().solve,
        "exact-scipy": ExactSolver(backend="scipy").solve,
        "exact-mip": ExactSolver(lp_first=False).solve,
        "cvxpy-local": cvxpy_local,
        "cvxpy-textbook": cvxpy_textbook,
    }


register_solver("exact", ExactSolver)
