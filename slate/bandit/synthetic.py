"""Small seeded worlds with known truth for testing and benchmarking the scoring policies.

These are deliberately simple (the full homepage simulator lives in ``slate.sim``):

* :func:`make_linear_stream`: one member context per round, ``n_images`` images, quality-play
  probability linear in the context per image (the disjoint-LinUCB setting of the benchmark).
* :func:`make_title_launch`: images described by feature vectors; the probability depends on
  member x image interactions through coefficients shared by all images (plus a small
  per-image deviation). A history of old images is logged at random, then a new title launches
  with unseen images: the cold-start scenario.

Rewards use common random numbers (``uniforms``) so that every policy run on a world sees the
same luck: the reward of showing image ``k`` in round ``t`` is ``uniforms[t] < p[t, k]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from slate.bandit.base import ScoringPolicy
from slate.bandit.batch import PageFeatures

__all__ = [
    "LinearStream",
    "StreamRun",
    "TitleLaunch",
    "make_linear_stream",
    "make_title_launch",
    "run_stream",
]

F64 = NDArray[np.float64]


@dataclass(frozen=True)
class LinearStream:
    """A stream of decisions with known quality-play probabilities.

    Attributes
    ----------
    x : ndarray (n_rounds, n_images, n_features) or (n_rounds, n_features)
        Features (2-D: one member context per round shared by all images).
    arms : ndarray (n_images,)
        Arm index of each column.
    probabilities : ndarray (n_rounds, n_images)
        True quality-play probability of each image.
    uniforms : ndarray (n_rounds,)
        Common random numbers for the rewards.
    """

    x: F64
    arms: NDArray[np.int64]
    probabilities: F64
    uniforms: F64

    @property
    def n_rounds(self) -> int:
        """Number of rounds."""
        return int(self.probabilities.shape[0])

    @property
    def n_images(self) -> int:
        """Images per round."""
        return int(self.probabilities.shape[1])

    def page(self, rows: slice, dtype: Any = np.float64) -> PageFeatures:
        """The rounds in ``rows`` as a validated page (one row per round)."""
        x = self.x[rows]
        arms = np.broadcast_to(self.arms, (x.shape[0], self.n_images))
        return PageFeatures.from_arrays(x, arms, dtype=dtype)

    def chosen_x(self, rows: slice, choice: NDArray[np.int64]) -> F64:
        """Features of the chosen image of each round in ``rows``."""
        x = self.x[rows]
        if x.ndim == 2:
            return x
        return x[np.arange(x.shape[0]), choice]

    def rewards(self, rows: slice, choice: NDArray[np.int64]) -> F64:
        """Realised 0/1 rewards of ``choice`` (column per round) in ``rows``."""
        p = self.probabilities[rows]
        return (self.uniforms[rows] < p[np.arange(p.shape[0]), choice]).astype(np.float64)

    def oracle_rate(self) -> float:
        """Expected reward per round of the policy that knows the probabilities."""
        return float(self.probabilities.max(axis=1).mean())


def make_linear_stream(
    n_rounds: int = 100_000,
    n_features: int = 32,
    n_images: int = 10,
    *,
    base: tuple[float, float] = (0.15, 0.25),
    spread: float = 0.1,
    seed: int = 0,
) -> LinearStream:
    """Rounds with context ``x = (1, z)``, ``z ~ N(0, I / (d - 1))``, and per-image probability
    ``clip(base_k + z . w_k, 0.01, 0.99)`` with ``w_k ~ N(0, spread^2 I)``.

    Examples
    --------
    >>> s = make_linear_stream(1000, 8, 4, seed=0)
    >>> s.x.shape, s.probabilities.shape, 0.2 < s.oracle_rate() < 0.5
    ((1000, 8), (1000, 4), True)
    """
    rng = np.random.default_rng(seed)
    d = n_features
    z = rng.normal(size=(n_rounds, d - 1)) / np.sqrt(d - 1)
    w = rng.normal(scale=spread, size=(n_images, d - 1))
    b = rng.uniform(base[0], base[1], size=n_images)
    p = np.clip(b[None, :] + z @ w.T, 0.01, 0.99)
    x = np.c_[np.ones(n_rounds), z]
    return LinearStream(x, np.arange(n_images, dtype=np.int64), p, rng.random(n_rounds))


@dataclass(frozen=True)
class TitleLaunch:
    """History on old images, then a new title with unseen images (see module docstring).

    Attributes
    ----------
    history_x, history_arms, history_rewards : ndarray
        Logged impressions of old images under uniform random logging.
    launch : LinearStream
        Rounds of the new title: one member per round, the title's new images (arms after the
        old ones).
    n_old_images : int
    """

    history_x: F64
    history_arms: NDArray[np.int64]
    history_rewards: F64
    launch: LinearStream
    n_old_images: int


def make_title_launch(
    *,
    n_old_titles: int = 10,
    images_per_title: int = 5,
    n_history: int = 20_000,
    n_launch: int = 4000,
    member_dim: int = 4,
    image_dim: int = 4,
    idiosyncrasy: float = 0.01,
    seed: int = 0,
) -> TitleLaunch:
    """A catalogue of old titles with logged history, and a new title launching.

    Features of member ``z`` and image ``f`` are ``x = (1, z, f, z (x) f)``; the true
    probability of image ``a`` is ``clip(x . (beta + delta_a), 0.01, 0.99)`` with shared
    ``beta`` and a small per-image ``delta_a ~ N(0, idiosyncrasy^2 I)``.

    Examples
    --------
    >>> w = make_title_launch(n_history=500, n_launch=100, seed=1)
    >>> w.history_x.shape, w.launch.x.shape, w.launch.arms.tolist()
    ((500, 25), (100, 5, 25), [50, 51, 52, 53, 54])
    """
    rng = np.random.default_rng(seed)
    m, q = member_dim, image_dim
    d = 1 + m + q + m * q
    beta = np.r_[0.2, rng.normal(0, 0.05, m), rng.normal(0, 0.05, q), rng.normal(0, 0.12, m * q)]
    n_old = n_old_titles * images_per_title
    n_img = n_old + images_per_title
    f = rng.normal(size=(n_img, q)) / np.sqrt(q)
    delta = rng.normal(0, idiosyncrasy, size=(n_img, d))

    def feats(z: F64, imgs: NDArray[np.int64]) -> F64:
        # z (n, m), imgs (n, k) -> (n, k, d)
        n, k = imgs.shape
        ff = f[imgs]
        zz = np.broadcast_to(z[:, None, :], (n, k, m))
        inter = (zz[:, :, :, None] * ff[:, :, None, :]).reshape(n, k, m * q)
        return np.concatenate([np.ones((n, k, 1)), zz, ff, inter], axis=2)

    def probs(x: F64, imgs: NDArray[np.int64]) -> F64:
        return np.clip(np.einsum("nkd,nkd->nk", x, beta[None, None, :] + delta[imgs]), 0.01, 0.99)

    # history: each round one old title, one of its images at random
    title = rng.integers(0, n_old_titles, n_history)
    img = title * images_per_title + rng.integers(0, images_per_title, n_history)
    z = rng.normal(size=(n_history, m)) / np.sqrt(m)
    hx = feats(z, img[:, None])
    hp = probs(hx, img[:, None])[:, 0]
    hr = (rng.random(n_history) < hp).astype(np.float64)

    new = np.arange(n_old, n_img, dtype=np.int64)
    z = rng.normal(size=(n_launch, m)) / np.sqrt(m)
    imgs = np.broadcast_to(new, (n_launch, images_per_title))
    lx = feats(z, np.ascontiguousarray(imgs))
    lp = probs(lx, np.ascontiguousarray(imgs))
    launch = LinearStream(lx, new, lp, rng.random(n_launch))
    return TitleLaunch(hx[:, 0], img.astype(np.int64), hr, launch, n_old)


@dataclass(frozen=True)
class StreamRun:
    """What a policy did on a stream: choices, realised and expected rewards per round."""

    choice: NDArray[np.int64]
    rewards: F64
    expected: F64

    @property
    def mean_reward(self) -> float:
        """Average realised reward."""
        return float(self.rewards.mean())


def run_stream(
    policy: ScoringPolicy, stream: LinearStream, *, batch_size: int = 100, dtype: Any = np.float64
) -> StreamRun:
    """Play a policy on a stream: score a mini-batch of rounds, show the choices, learn, repeat.

    Examples
    --------
    >>> from slate.bandit import UniformRandom
    >>> run = run_stream(UniformRandom(seed=0), make_linear_stream(500, 4, 3, seed=0))
    >>> run.choice.shape, 0.0 < run.mean_reward < 1.0
    ((500,), True)
    """
    n = stream.n_rounds
    choice = np.zeros(n, np.int64)
    rewards = np.zeros(n)
    for s in range(0, n, batch_size):
        rows = slice(s, min(n, s + batch_size))
        scores = policy.score(stream.page(rows, dtype), propensities=False)
        c = scores.choice
        r = stream.rewards(rows, c)
        policy.update(stream.chosen_x(rows, c), stream.arms[c], r)
        choice[rows] = c
        rewards[rows] = r
    expected = stream.probabilities[np.arange(n), choice]
    return StreamRun(choice, rewards, expected)
