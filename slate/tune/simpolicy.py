"""A sweep setting as a policy of the simulated world, for its on-policy ground truth.

:class:`TunedPagePolicy` makes the same decisions the sweep makes when it re-solves a logged
page: the same weight-free page problem, the same weight scaling, the same previous images (its
own choice the last time the member saw the title) and the same seeded solver per page id. Run
on-policy by :func:`slate.sim.policy_value`, it gives the setting's true take fraction,
diversity and churn if it were deployed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from slate.tune.engine import (
    History,
    Setting,
    SolverConfig,
    base_problem,
    page_scale,
    page_seed,
    solve_page_settings,
)

__all__ = ["TunedPagePolicy", "true_value"]


class TunedPagePolicy:
    """``policy(batch) -> (B, P)`` images: one sweep setting, with its own history per member.

    Parameters
    ----------
    scorer : callable
        ``scorer(batch) -> (B, P, K)`` scores (NaN or anything on padding).
    setting : (diversity, churn, max_changes)
    config : SolverConfig
    """

    name = "tuned page optimizer"

    def __init__(self, scorer: Any, setting: Setting, config: SolverConfig) -> None:
        self.scorer = scorer
        self.setting = setting
        self.config = config
        self._history: dict[int, History] = {}

    def __call__(self, batch: Any) -> NDArray[np.int64]:
        world = batch.world
        scores_all = np.asarray(self.scorer(batch), dtype=np.float64)
        emb = np.asarray(world.embeddings, dtype=np.float64)
        norms = np.linalg.norm(emb, axis=1, keepdims=True)
        emb = np.divide(emb, norms, out=np.zeros_like(emb), where=norms > 0)
        out = np.empty(batch.titles.shape, dtype=np.int64)
        rows = np.asarray(world.slot_rows[: batch.n_slots], dtype=np.int64)
        cols = np.asarray(world.slot_cols[: batch.n_slots], dtype=np.int64)
        for b in range(batch.n_pages):
            titles = np.asarray(batch.titles[b], dtype=np.int64)
            k = int(batch.n_candidates[b].max())
            codes = np.asarray(world.title_images[titles, :k], dtype=np.int64)
            mask = codes >= 0
            scores = np.where(mask, np.nan_to_num(scores_all[b, :, :k], nan=0.0), 0.0)
            base = base_problem(scores, emb[np.maximum(codes, 0)], mask, rows, cols, self.config.layout)
            scale = page_scale(base.scores, mask, self.config.relative)
            member = int(batch.member[b])
            history = self._history.setdefault(member, History(1))
            previous = history.previous(titles, codes)
            seed = page_seed(self.config.seed, int(batch.page_id[b]))
            assign, _, _ = solve_page_settings(base, scale, previous, [self.setting], self.config, seed)
            out[b] = assign[0]
            history.record(titles, codes[np.arange(len(titles)), assign[0]][None, :])
        return out


def true_value(context: Any, setting: Setting, exploration: float, config: SolverConfig) -> dict[str, float]:
    """On-policy true take fraction, diversity and churn of one setting on the simulated days.

    ``context`` is a :class:`slate.tune.data.SimContext`. With an exploration rate, each title
    shows a uniformly random candidate with that probability (seeded by the experiment seed).
    """
    from slate.sim import EpsilonGreedyLogging, policy_value

    policy: Any = TunedPagePolicy(context.scorer, setting, config)
    if exploration > 0:
        policy = EpsilonGreedyLogging(policy, epsilon=float(exploration), seed=config.seed)
    value = policy_value(context.schedule, policy, state=context.state)
    return {
        "true_take_fraction": float(value.take_fraction),
        "true_diversity": float(value.diversity),
        "true_churn": float(value.churn),
    }
