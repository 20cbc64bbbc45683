"""Shared helpers for page-solver tests: invariants, an independent objective, brute force."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np

from slate.page import PageProblem
from slate.solvers import SolveResult, Status

INSTANCES = Path(__file__).resolve().parents[1].parent / "shared" / "instances"


def instance_paths() -> list[Path]:
    """The shared certified instances (``../shared/instances`` beside the repo)."""
    return sorted(INSTANCES.glob("*.json"))


def certified_objective(path: Path) -> float:
    return float(json.loads(path.read_text())["optimum"]["objective"])


def recompute_objective(problem: PageProblem, assignment: np.ndarray) -> float:
    """The objective recomputed from raw embeddings with plain loops (independent of the library)."""
    a = [int(x) for x in assignment]
    total = 0.0
    for t in range(problem.n_titles):
        total += float(problem.scores[t, a[t]])
        if problem.previous[t] >= 0 and a[t] != problem.previous[t]:
            total -= problem.churn
    for p, (i, j) in enumerate(problem.pairs.tolist()):
        if problem.embeddings is not None:
            x = problem.embeddings[i, a[i]]
            y = problem.embeddings[j, a[j]]
            nx_, ny_ = float(np.linalg.norm(x)), float(np.linalg.norm(y))
            cos = float(x @ y) / (nx_ * ny_) if nx_ > 0 and ny_ > 0 else 0.0
        else:
            cos = float(problem.similarity[p, a[i], a[j]])
        total -= problem.diversity * float(problem.pair_weights[p]) * max(0.0, cos)
    return total


def assert_valid_result(problem: PageProblem, result: SolveResult, tol: float = 1e-9) -> None:
    """A valid page (one candidate per title, locks, budget, quotas) whose reported numbers are true."""
    a = result.assignment
    assert a.shape == (problem.n_titles,)
    assert problem.candidates[np.arange(problem.n_titles), a].all(), "non-candidate image"
    if result.status != Status.INFEASIBLE:
        assert problem.violations(a) == [], problem.violations(a)
        assert (a[problem.locked] == problem.previous[problem.locked]).all()
    assert abs(result.objective - recompute_objective(problem, a)) <= tol * max(1.0, abs(result.objective))
    parts = problem.evaluate(a)
    assert result.n_changes == parts.n_changes
    if result.bound is not None:
        assert result.bound >= result.objective - 1e-9


def brute_force(problem: PageProblem) -> tuple[float, np.ndarray | None]:
    """Best feasible objective by enumerating every assignment (tiny pages only)."""
    choices = [np.flatnonzero(problem.allowed[t]).tolist() for t in range(problem.n_titles)]
    size = int(np.prod([len(c) for c in choices], dtype=np.float64))
    assert size <= 300_000, f"brute force over {size} pages is too many"
    best, best_a = -np.inf, None
    for combo in itertools.product(*choices):
        a = np.array(combo, dtype=np.int64)
        if problem.violations(a):
            continue
        value = problem.evaluate(a).objective
        if value > best:
            best, best_a = value, a
    return best, best_a
