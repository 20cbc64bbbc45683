"""A small, vectorised logged-bandit world with known truth, for the replay tests.

Pages of ``n_slots`` titles in one row; each title has ``n_images`` candidate images. A member
(context ``x``) plays title ``t`` shown with image ``k`` with probability
``sigmoid(base[t] + theta[t, k] @ x - page_effect * (share of row neighbours whose image has
the same style))``. The logging policy picks each title's image independently (uniformly, or by
a softmax of its own noisy scores mixed with uniform). The truth of a deterministic target is
computed exactly per context and averaged over a large fresh sample of contexts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from slate.logs import ImpressionLog, RejectionReport, impressions_table
from slate.replay import ActionDistribution


@dataclass
class Sample:
    x: NDArray[np.float64]  # (P, d)
    titles: NDArray[np.int64]  # (P, L)
    mu: NDArray[np.float64]  # (P, L, K) logging distribution
    shown: NDArray[np.int64]  # (P, L)
    reward: NDArray[np.int64]  # (P, L)
    prob: NDArray[np.float64]  # (P, L) true play probability of the shown images


@dataclass
class World:
    n_titles: int = 12
    n_images: int = 4
    n_features: int = 3
    n_slots: int = 4
    page_effect: float = 0.0
    n_styles: int = 2
    seed: int = 0
    base: NDArray[np.float64] = field(init=False)
    theta: NDArray[np.float64] = field(init=False)

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        self.base = rng.normal(-1.0, 0.5, self.n_titles)
        self.theta = rng.normal(0.0, 0.8, (self.n_titles, self.n_images, self.n_features))
        self.logging_theta = self.theta + rng.normal(0.0, 0.8, self.theta.shape)
        self.style = np.arange(self.n_images) % self.n_styles
        self.title_ids = [f"T{t:02d}" for t in range(self.n_titles)]
        self.image_ids = [[f"T{t:02d}-I{k}" for k in range(self.n_images)] for t in range(self.n_titles)]

    # ------------------------------------------------------------------ sampling
    def contexts(self, n_pages: int, rng: np.random.Generator):
        x = rng.normal(size=(n_pages, self.n_features))
        titles = np.argsort(rng.random((n_pages, self.n_titles)), axis=1)[:, : self.n_slots]
        return x, titles

    def logits(self, x, titles):
        """(P, L, K) logit of a play per candidate, without page effects."""
        return self.base[titles][..., None] + np.einsum("plkd,pd->plk", self.theta[titles], x)

    def play_prob(self, x, titles, images):
        """(P, L) play probability of the given images, with the page effect."""
        lg = np.take_along_axis(self.logits(x, titles), images[..., None], axis=2)[..., 0]
        if self.page_effect:
            st = self.style[images]
            same = np.zeros(st.shape)
            count = np.zeros(st.shape)
            same[:, 1:] += st[:, 1:] == st[:, :-1]
            same[:, :-1] += st[:, :-1] == st[:, 1:]
            count[:, 1:] += 1
            count[:, :-1] += 1
            lg = lg - self.page_effect * same / count
        return 1.0 / (1.0 + np.exp(-lg))

    def logging(self, x, titles, kind: str):
        P, L, K = len(x), self.n_slots, self.n_images
        if kind == "uniform":
            return np.full((P, L, K), 1.0 / K)
        s = np.einsum("plkd,pd->plk", self.logging_theta[titles], x)
        e = np.exp(s - s.max(axis=2, keepdims=True))
        soft = e / e.sum(axis=2, keepdims=True)
        return 0.7 * soft + 0.3 / K

    def simulate(self, n_pages: int, logging: str = "uniform", seed: int = 0) -> Sample:
        rng = np.random.default_rng(seed)
        x, titles = self.contexts(n_pages, rng)
        mu = self.logging(x, titles, logging)
        cum = mu.cumsum(axis=2)
        u = rng.random(mu.shape[:2])[..., None]
        shown = np.minimum((u > cum).sum(axis=2), self.n_images - 1)
        prob = self.play_prob(x, titles, shown)
        reward = (rng.random(prob.shape) < prob).astype(np.int64)
        return Sample(x, titles, mu, shown, reward, prob)

    # ------------------------------------------------------------------ targets and truth
    def greedy(self, noise: float = 0.0, seed: int = 1) -> Callable:
        """A deterministic target: argmax of the (noisy) true logits."""
        rng = np.random.default_rng(seed)
        theta = self.theta + rng.normal(0.0, noise, self.theta.shape) if noise else self.theta

        def choose(x, titles):
            return np.argmax(np.einsum("plkd,pd->plk", theta[titles], x), axis=2)

        return choose

    def truth(self, choose: Callable, n_pages: int = 1_000_000, seed: int = 12345) -> float:
        """Expected take fraction of a deterministic target (exact per context, MC over x)."""
        rng = np.random.default_rng(seed)
        x, titles = self.contexts(n_pages, rng)
        return float(self.play_prob(x, titles, choose(x, titles)).mean())

    def true_q(self, s: Sample) -> NDArray[np.float64]:
        """(n, K) true play probabilities per candidate (valid without page effects)."""
        lg = self.logits(s.x, s.titles)
        return (1.0 / (1.0 + np.exp(-lg))).reshape(-1, self.n_images)

    def target(self, choose: Callable, s: Sample) -> ActionDistribution:
        choice = choose(s.x, s.titles)
        return ActionDistribution.deterministic(choice.ravel(), s.shown.ravel(), self.n_images)

    # ------------------------------------------------------------------ as logs
    def to_log(self, s: Sample, with_vectors: bool = True) -> ImpressionLog:
        """An ImpressionLog built directly from arrays (fast; for the statistical tests)."""
        P, L = s.titles.shape
        K = self.n_images
        n = P * L
        titles = s.titles.ravel()
        cands = (titles[:, None] * K + np.arange(K)).astype(np.int32)  # image codes, sorted ids
        shown = s.shown.ravel().astype(np.int32)
        mu = s.mu.reshape(n, K)
        page = np.repeat(np.arange(P, dtype=np.int64), L)
        report = RejectionReport(n_read=n, n_accepted=n, rows=np.zeros(0), reasons=np.zeros(0))
        return ImpressionLog(
            member_id=page // 3, session_id=page, page_id=page, timestamp=page * 1_000_000,
            title=titles.astype(np.int32), row=np.zeros(n, np.int32),
            col=np.tile(np.arange(L, dtype=np.int32), P), image=cands[np.arange(n), shown],
            candidates=cands, n_candidates=np.full(n, K, np.int32), shown=shown,
            propensity=mu[np.arange(n), shown], propensities=mu if with_vectors else None,
            explored=np.ones(n, bool), reward=s.reward.ravel().astype(np.int8), engagement=None,
            previous_image=None, features=np.repeat(s.x, L, axis=0).astype(np.float32),
            features_ref=None, title_ids=tuple(self.title_ids),
            image_ids=tuple(i for ids in self.image_ids for i in ids),
            source_row=np.arange(n, dtype=np.int64), rejections=report,
        )

    def to_table(self, s: Sample) -> pa.Table:
        """The same rows as a slate.impressions/1 table (for end-to-end tests)."""
        P, L = s.titles.shape
        K = self.n_images
        n = P * L
        titles = s.titles.ravel()
        shown = s.shown.ravel()
        ids = np.array([i for ids in self.image_ids for i in ids], dtype=object)
        cands = ids[titles[:, None] * K + np.arange(K)]
        mu = s.mu.reshape(n, K)
        page = np.repeat(np.arange(P), L)
        return impressions_table(
            member_id=page // 3, session_id=page, page_id=page, timestamp=page * 1_000_000,
            title_id=np.array(self.title_ids, dtype=object)[titles], row=np.zeros(n, int),
            col=np.tile(np.arange(L), P), image_id=cands[np.arange(n), shown], candidate_ids=cands,
            propensity=mu[np.arange(n), shown], propensities=mu, explored=np.ones(n, bool),
            reward=s.reward.ravel(), features=np.repeat(s.x, L, axis=0),
        )


def test_world_log_and_table_agree():
    from slate.logs import read_impressions

    w = World(seed=3)
    s = w.simulate(50, "softmax", seed=4)
    direct = w.to_log(s)
    read, report = read_impressions(w.to_table(s))
    assert report.n_rejected == 0
    for name in ("title", "image", "candidates", "shown", "reward", "col"):
        assert np.array_equal(getattr(direct, name), getattr(read, name)), name
    assert np.allclose(direct.propensity, read.propensity)
    assert np.allclose(direct.propensities, read.propensities)
    assert np.allclose(direct.features, read.features)
    assert direct.image_ids == read.image_ids and direct.title_ids == read.title_ids


def test_world_truth_matches_simulated_rewards_under_the_target():
    # simulate the target itself online: its mean reward matches truth() within 4 standard errors
    w = World(seed=5, page_effect=1.0)
    choose = w.greedy()
    rng = np.random.default_rng(9)
    x, titles = w.contexts(50_000, rng)
    p = w.play_prob(x, titles, choose(x, titles))
    online = (rng.random(p.shape) < p).mean()
    se = np.sqrt(p.mean() * (1 - p.mean()) / p.size)
    # 0.003: slack for truth()'s own Monte Carlo error over contexts (200k pages)
    assert abs(online - w.truth(choose, n_pages=200_000)) < 4 * se + 0.003
