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

from slate.policy import as_scorer
from slate.tune.engine import (
    History,
    RuleHistory,
    Setting,
    SolverConfig,
    base_problem,
    page_scale,
    page_seed,
    setting_rules,
    solve_page_settings,
)

__all__ = ["StickyEpsilonPolicy", "TunedPagePolicy", "true_value"]

DAY = 86_400.0


class TunedPagePolicy:
    """``policy(batch) -> (B, P)`` images: one sweep setting, with its own history per member.

    A :class:`slate.policy.Chooser` made from a :class:`slate.policy.Scorer` (read through
    :func:`slate.policy.as_scorer`) by the page optimiser.

    Parameters
    ----------
    scorer : callable
        ``scorer(batch) -> (B, P, K)`` scores (NaN or anything on padding).
    setting : (diversity, churn, max_changes[, dwell_sessions, dwell_days, min_gain])
        Dwell and ``min_gain`` act on the policy's own history of the member (as the sweep's
        re-solves do, and as ``compose()`` does with a stability store).
    config : SolverConfig
    """

    name = "tuned page optimizer"

    def __init__(self, scorer: Any, setting: Setting, config: SolverConfig) -> None:
        self.scorer = as_scorer(scorer, what="The scorer of TunedPagePolicy")
        self.setting = setting
        self.config = config
        self._history: dict[int, History] = {}
        self._rules = setting_rules(setting)
        self._ruled: dict[int, RuleHistory] = {}

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
            seed = page_seed(self.config.seed, int(batch.page_id[b]))
            if self._rules is None:
                history = self._history.setdefault(member, History(1))
                previous = history.previous(titles, codes)
                assign, _, _ = solve_page_settings(base, scale, previous, [self.setting], self.config, seed)
                history.record(titles, codes[np.arange(len(titles)), assign[0]][None, :])
            else:
                ruled = self._ruled.setdefault(member, RuleHistory([self._rules]))
                now, session = float(batch.timestamp[b]) / 1e6, int(batch.session_id[b])
                plans = ruled.plans(titles, codes, base.scores, now, session)
                assign, _, _ = solve_page_settings(base, scale, plans[0].previous[None, :], [self.setting],
                                                   self.config, seed, plans)
                ruled.record(plans, titles, codes[np.arange(len(titles)), assign[0]][None, :], now, session)
            out[b] = assign[0]
        return out


class StickyEpsilonPolicy:
    """``policy(batch) -> (B, P)`` images: sticky epsilon exploration over another policy, holding
    draws as :class:`slate.serve.StickyEpsilon` does (with no per-page cap). A
    :class:`slate.policy.Chooser` wrapping another Chooser.

    A title with no held draw flips a coin (probability ``epsilon``); when it comes up the title
    shows a uniformly drawn candidate. The draw (explored or not) is held for the rest of its
    session and then while fewer than ``sticky_sessions`` sessions were served under it and less
    than ``sticky_days`` days have passed (None: no limit); during the hold an explored title
    shows the drawn image and an unexplored one the policy's image. Uniforms are a function of
    ``(seed, page id, slot)``.

    Examples
    --------
    >>> policy = StickyEpsilonPolicy(lambda batch: None, 0.5, sticky_sessions=2, sticky_days=None)
    >>> policy.held((0.0, 1, 7, 3), now=10.0, session=8)
    True
    >>> policy.held((0.0, 2, 8, 3), now=20.0, session=9)
    False
    """

    name = "sticky epsilon"

    def __init__(self, policy: Any, epsilon: float, *, sticky_sessions: int | None, sticky_days: float | None,
                 seed: int = 0) -> None:
        self.policy = policy
        self.epsilon = float(epsilon)
        self.sticky_sessions = sticky_sessions
        self.sticky_days = sticky_days
        self.seed = seed
        # (member, title) -> (drawn at, sessions served, last session, image or -1 when not explored)
        self._draws: dict[tuple[int, int], tuple[float, int, int, int]] = {}

    def held(self, draw: tuple[float, int, int, int], now: float, session: int) -> bool:
        """Whether ``draw`` still holds on a page at ``now`` in ``session`` (the rule of
        :func:`slate.stability.plan_page`)."""
        at, served, last, _ = draw
        if session == last:
            return True
        within = self.sticky_sessions is None or served < self.sticky_sessions
        return within and (self.sticky_days is None or now - at < self.sticky_days * DAY)

    def __call__(self, batch: Any) -> NDArray[np.int64]:
        from slate.sim.policies import hash_uniform

        out = np.array(self.policy(batch), dtype=np.int64)
        slot = np.arange(batch.titles.shape[1])[None, :]
        explore_u = hash_uniform(self.seed, 12, batch.page_id[:, None], slot)
        image_u = hash_uniform(self.seed, 13, batch.page_id[:, None], slot)
        n_cand = np.asarray(batch.n_candidates)
        for b in range(batch.n_pages):
            member, session = int(batch.member[b]), int(batch.session_id[b])
            now = float(batch.timestamp[b]) / 1e6
            for slot_i, title in enumerate(batch.titles[b].tolist()):
                key = (member, int(title))
                draw = self._draws.get(key)
                n = int(n_cand[b, slot_i])
                if draw is not None and self.held(draw, now, session):
                    at, served, last, image = draw
                    draw = (at, served + (session != last), session, image)
                else:
                    image = int(image_u[b, slot_i] * n) if explore_u[b, slot_i] < self.epsilon else -1
                    draw = (now, 1, session, image)
                self._draws[key] = draw
                if 0 <= draw[3] < n:
                    out[b, slot_i] = draw[3]
        return out


def true_value(context: Any, setting: Setting, exploration: float, config: SolverConfig,
               sticky: tuple[int | None, float | None] = (1, None)) -> dict[str, float]:
    """On-policy true take fraction, diversity and churn of one setting on the simulated days.

    ``context`` is a :class:`slate.tune.data.SimContext`. With an exploration rate, each title
    shows a uniformly random candidate with that probability (seeded by the experiment seed),
    the draw held for ``sticky = (sticky_sessions, sticky_days)`` as :class:`StickyEpsilonPolicy`
    holds it (a simulated session is one page, so ``(1, None)`` re-draws on every page).
    """
    from slate.sim import EpsilonGreedyLogging, policy_value

    policy: Any = TunedPagePolicy(context.scorer, setting, config)
    if exploration > 0 and tuple(sticky) == (1, None):
        policy = EpsilonGreedyLogging(policy, epsilon=float(exploration), seed=config.seed)
    elif exploration > 0:
        policy = StickyEpsilonPolicy(policy, exploration, sticky_sessions=sticky[0], sticky_days=sticky[1],
                                     seed=config.seed)
    value = policy_value(context.schedule, policy, state=context.state)
    return {
        "true_take_fraction": float(value.take_fraction),
        "true_diversity": float(value.diversity),
        "true_churn": float(value.churn),
    }
