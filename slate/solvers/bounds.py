"""Cheap valid upper bounds on a page's optimal objective."""

from __future__ import annotations

import weakref

import numpy as np

from slate.page.problem import PageProblem

__all__ = ["budgeted_unary_optimum", "trivial_upper_bound"]


def budgeted_unary_optimum(problem: PageProblem, unary: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Best assignment of a separable objective under locks and the change budget (exact).

    Each title takes its best allowed image; if that makes more changes than the budget, only
    the changes with the largest gain over keeping the previous image are kept.

    Parameters
    ----------
    problem : PageProblem
    unary : ndarray (n_titles, n_images), optional
        Per-image values (default ``problem.unary``); ``-inf`` marks images that are not allowed.

    Returns
    -------
    assignment : ndarray (n_titles,)
    value : float
        Sum of ``unary`` over the assignment.

    Without ``unary`` the answer is computed once per problem (cached weakly: a problem is
    immutable) and a fresh copy of the assignment is returned.
    """
    if unary is None:
        hit = _PAGE_BLIND.get(problem)
        if hit is None:
            hit = _PAGE_BLIND[problem] = _budgeted_unary_optimum(problem, problem.unary)
        return hit[0].copy(), hit[1]
    return _budgeted_unary_optimum(problem, unary)


_PAGE_BLIND: weakref.WeakKeyDictionary[PageProblem, tuple[np.ndarray, float]] = weakref.WeakKeyDictionary()


def _budgeted_unary_optimum(problem: PageProblem, u: np.ndarray) -> tuple[np.ndarray, float]:
    t = np.arange(problem.n_titles)
    best = np.argmax(u, axis=1)
    changed = problem.changes[t, best]
    if problem.max_changes is not None and int(changed.sum()) > problem.max_changes:
        prev = problem.previous
        keep_value = np.where(prev >= 0, u[t, np.maximum(prev, 0)], -np.inf)
        gain = np.where(changed, u[t, best] - keep_value, -np.inf)
        order = np.argsort(-gain, kind="stable")
        revert = order[problem.max_changes :]
        revert = revert[changed[revert]]
        best = best.copy()
        best[revert] = prev[revert]
    return best.astype(np.int64), float(u[t, best].sum())


def trivial_upper_bound(problem: PageProblem) -> float:
    """The budgeted unary optimum minus, per pair, the least penalty any two allowed images pay."""
    _, value = budgeted_unary_optimum(problem)
    if problem.n_pairs == 0:
        return value
    allowed_pair = (
        problem.allowed[problem.pairs[:, 0]][:, :, None] & problem.allowed[problem.pairs[:, 1]][:, None, :]
    )
    least = np.where(allowed_pair, problem.pair_cost, np.inf).reshape(problem.n_pairs, -1).min(axis=1)
    return value - float(least.sum())
