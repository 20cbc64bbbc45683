"""Greedy repair of style quotas ("at most m titles may show a close-up")."""

from __future__ import annotations

import numpy as np

from slate.page.problem import PageProblem

__all__ = ["quota_counts", "repair_quotas"]


def quota_counts(problem: PageProblem, assignment: np.ndarray) -> np.ndarray:
    """Number of titles showing an image with each quota tag, shape (n_tags,)."""
    t = np.arange(problem.n_titles)
    return problem.image_tags[:, t, assignment].sum(axis=1).astype(np.int64)


def repair_quotas(problem: PageProblem, assignment: np.ndarray) -> tuple[np.ndarray, bool]:
    """Move titles off over-quota tags, one cheapest move at a time, keeping locks and budget.

    A move switches one title showing an over-quota tag to an allowed image that puts no tag over
    its quota and keeps the change budget; the move losing the least unary value is taken.
    Returns the repaired assignment and whether every quota now holds (the repair is a
    heuristic: on a tight, multi-tag page it can fail where the exact solver succeeds).
    """
    a = np.array(assignment, dtype=np.int64)
    if not problem.has_quotas:
        return a, True
    t = np.arange(problem.n_titles)
    tags = problem.image_tags  # (G, T, K)
    for _ in range(problem.n_titles * max(1, len(problem.tag_names))):
        counts = quota_counts(problem, a)
        over: np.ndarray = np.asarray(counts > problem.tag_max)
        if not over.any():
            return a, True
        at_cap: np.ndarray = np.asarray(counts >= problem.tag_max)
        current_tags: np.ndarray = np.asarray(tags[:, t, a], dtype=bool)  # (G, T)
        # a title is worth moving if it shows an over-quota tag
        movers = (current_tags & over[:, None]).any(axis=0)
        # new image must not add a tag that is at its cap (unless the title already carries it)
        adds = tags & ~current_tags[:, :, None]  # (G, T, K)
        blocked = (adds & at_cap[:, None, None]).any(axis=0)
        # and must drop at least one over-quota tag
        drops = (current_tags[:, :, None] & ~tags & over[:, None, None]).any(axis=0)
        ok = problem.allowed & movers[:, None] & ~blocked & drops
        if problem.max_changes is not None:
            n_changes = int(problem.changes[t, a].sum())
            adds_change = problem.changes & ~problem.changes[t, a][:, None]
            if n_changes >= problem.max_changes:
                ok &= ~adds_change
        if not ok.any():
            return a, False
        loss = np.where(ok, problem.unary[t, a][:, None] - problem.unary, np.inf)
        tt, kk = np.unravel_index(int(np.argmin(loss)), loss.shape)
        a[tt] = kk
    return a, not (quota_counts(problem, a) > problem.tag_max).any()
