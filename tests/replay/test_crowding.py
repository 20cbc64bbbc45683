"""snips-crowding: SNIPS with the page effect moved by a crowding model fitted on the log.

A grid world with a known multiplicative crowding effect (``p = base[t, k] * exp(-c * crowd)``)
and uniform logging; the truth of a target is computed exactly on the logged pages with the
target's own images, by loops written here (not the estimator's code)."""

from __future__ import annotations

import numpy as np
import pytest

from slate.errors import InvalidEmbeddingsError
from slate.logs import impressions_table, read_impressions
from slate.page.layout import GridLayout
from slate.replay import ActionDistribution, InvalidReplayInputError, ReplayData, get_estimator
from slate.replay.crowding import fit_crowding

ROWS, COLS, K, DIM, N_TITLES = 2, 4, 4, 4, 30
WEIGHTS = {(dr, dc): w for dr, dc, w in GridLayout(rows=ROWS, cols=COLS).offsets(COLS - 1)}


class CrowdedWorld:
    """Titles with ``K`` images each (non-negative unit embeddings), pages of ``ROWS x COLS``
    random titles, uniform independent logging, plays with probability
    ``base[t, k] * exp(-crowding * crowd)``."""

    def __init__(self, crowding: float, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.crowding = crowding
        self.base = rng.uniform(0.2, 0.6, (N_TITLES, K))
        v = np.abs(rng.normal(size=(N_TITLES, K, DIM))) ** 2
        self.vectors = v / np.linalg.norm(v, axis=2, keepdims=True)
        self.image_ids = [[f"T{t}-{k}" for k in range(K)] for t in range(N_TITLES)]

    def crowd(self, titles: np.ndarray, images: np.ndarray) -> np.ndarray:
        """Crowding of every slot of every page, by loops over the grid (the definition)."""
        P = len(titles)
        out = np.zeros((P, ROWS * COLS))
        for p in range(P):
            for a in range(ROWS * COLS):
                for b in range(ROWS * COLS):
                    dr, dc = b // COLS - a // COLS, b % COLS - a % COLS
                    w = WEIGHTS.get((dr, dc), WEIGHTS.get((-dr, -dc), 0.0)) if (dr, dc) != (0, 0) else 0.0
                    if w:
                        cos = self.vectors[titles[p, a], images[p, a]] @ self.vectors[titles[p, b], images[p, b]]
                        out[p, a] += w * max(0.0, cos)
        return out

    def prob(self, titles: np.ndarray, images: np.ndarray) -> np.ndarray:
        return self.base[titles, images] * np.exp(-self.crowding * self.crowd(titles, images))

    def log(self, n_pages: int, seed: int, full_propensities: bool = True):
        rng = np.random.default_rng(seed)
        titles = np.argsort(rng.random((n_pages, N_TITLES)), axis=1)[:, : ROWS * COLS]
        shown = rng.integers(0, K, titles.shape)
        reward = (rng.random(titles.shape) < self.prob(titles, shown)).astype(np.int64)
        n = titles.size
        page = np.repeat(np.arange(n_pages), ROWS * COLS)
        slot = np.tile(np.arange(ROWS * COLS), n_pages)
        t, s = titles.ravel(), shown.ravel()
        table = impressions_table(
            member_id=page, session_id=page, page_id=page, timestamp=page * 1_000_000,
            title_id=np.array([f"T{x}" for x in t], dtype=object), row=slot // COLS, col=slot % COLS,
            image_id=np.array([self.image_ids[a][b] for a, b in zip(t, s, strict=True)], dtype=object),
            candidate_ids=[self.image_ids[a] for a in t], propensity=np.full(n, 1.0 / K),
            propensities=np.full((n, K), 1.0 / K) if full_propensities else None, explored=np.ones(n, bool),
            reward=reward.ravel(),
        )
        log, report = read_impressions(table)
        assert report.n_rejected == 0
        return log, titles

    def embeddings(self) -> dict[str, np.ndarray]:
        return {self.image_ids[t][k]: self.vectors[t, k] for t in range(N_TITLES) for k in range(K)}


def aligned(world: CrowdedWorld, titles: np.ndarray) -> np.ndarray:
    """Every title's image closest to the first axis: neighbours look alike (crowded pages)."""
    return np.argmax(world.vectors[titles][..., 0], axis=-1)


def crowding_target(world: CrowdedWorld, log, titles: np.ndarray) -> ActionDistribution:
    """The target showing :func:`aligned` images (candidates are in catalog order)."""
    shown = np.argmax(log.candidates == log.image[:, None], axis=1)
    return ActionDistribution.deterministic(aligned(world, titles).ravel(), shown, K)


def page_truth(world: CrowdedWorld, titles: np.ndarray) -> float:
    """The target's value on the logged pages with its own images (the value if deployed there)."""
    return float(world.prob(titles, aligned(world, titles)).mean())


@pytest.fixture(scope="module")
def world_log():
    world = CrowdedWorld(crowding=1.5, seed=0)
    log, titles = world.log(3000, seed=1)
    return world, log, titles


def test_the_fitted_crowding_and_the_estimate_recover_the_truth(world_log):
    """Seeded, 3,000 pages: c within 0.3 of 1.5 (about 2.5 of its standard errors in this
    world), the estimate within 3 of its standard errors of the value with the target's own
    pages, where per-title SNIPS (the logged neighbours) is off by more than 3 of its own."""
    world, log, titles = world_log
    data = ReplayData.build(log, crowding_target(world, log, titles))
    est = get_estimator("snips-crowding", embeddings=world.embeddings())
    e = est.estimate(data, n_bootstrap=200, seed=0)
    truth = page_truth(world, titles)
    assert abs(est.crowding_ - 1.5) < 0.3, est.crowding_
    assert abs(e.value - truth) < 3 * e.se, (e.value, truth, e.se)
    assert e.interval[0] <= truth <= e.interval[1]
    snips = get_estimator("snips").estimate(data, n_bootstrap=0)
    assert abs(snips.value - truth) > 3 * snips.se, (snips.value, truth, snips.se)
    assert e.estimator == "snips-crowding" and "exp(-c * crowd)" in e.assumption


def test_a_known_crowding_of_zero_is_snips_and_a_known_one_is_not_refitted(world_log):
    world, log, titles = world_log
    data = ReplayData.build(log, crowding_target(world, log, titles))
    snips = get_estimator("snips").estimate(data, n_bootstrap=50, seed=3)
    zero = get_estimator("snips-crowding", embeddings=world.embeddings(), crowding=0.0)
    e0 = zero.estimate(data, n_bootstrap=50, seed=3)
    assert e0.value == pytest.approx(snips.value, rel=1e-12)
    np.testing.assert_allclose(e0.interval, snips.interval, rtol=1e-12)
    known = get_estimator("snips-crowding", embeddings=world.embeddings(), crowding=1.5)
    fitted = get_estimator("snips-crowding", embeddings=world.embeddings())
    ek, ef = known.estimate(data, n_bootstrap=0), fitted.estimate(data, n_bootstrap=0)
    assert known.crowding_ == 1.5
    assert ek.se < ef.se  # the fitted coefficient's uncertainty widens the interval


def test_intervals_cover_the_value_with_the_targets_own_pages():
    """30 seeded logs of 600 pages: the 95% bootstrap intervals cover the truth at least 26
    times (expected 28.5; fewer than 26 has probability < 3% if the coverage is 95%)."""
    world = CrowdedWorld(crowding=1.5, seed=4)
    est = get_estimator("snips-crowding", embeddings=world.embeddings())
    covered = 0
    for rep in range(30):
        log, titles = world.log(600, seed=100 + rep)
        e = est.estimate(ReplayData.build(log, crowding_target(world, log, titles)), n_bootstrap=200, seed=rep)
        covered += e.interval[0] <= page_truth(world, titles) <= e.interval[1]
    assert covered >= 26, covered


def test_fit_crowding_finds_the_root_and_says_when_there_is_none():
    rng = np.random.default_rng(2)
    crowd_bar = np.full(200_000, 0.4)
    crowd = rng.uniform(0, 0.8, 200_000)
    r = (rng.random(200_000) < 0.5 * np.exp(-2.0 * crowd)).astype(float)
    assert fit_crowding(r, crowd, crowd_bar) == pytest.approx(2.0, abs=0.15)
    with pytest.raises(InvalidReplayInputError, match=r"cannot be fitted.*none of its 1000 rows.*has a reward"):
        fit_crowding(np.zeros(1000), crowd[:1000], crowd_bar[:1000])
    only_crowded = (crowd > crowd_bar).astype(float)  # plays only when more crowded: no c explains it
    with pytest.raises(InvalidReplayInputError, match=r"cannot be fitted.*no root in \[-64, 64\].*pass crowding="):
        fit_crowding(only_crowded, crowd, crowd_bar)


def test_bad_inputs_get_one_clear_line(world_log):
    world, log, titles = world_log
    data = ReplayData.build(log, crowding_target(world, log, titles))
    with pytest.raises(InvalidReplayInputError, match=r"needs the 'embeddings' option"):
        get_estimator("snips-crowding")
    with pytest.raises(InvalidReplayInputError, match=r"'crowding' option.*finite"):
        get_estimator("snips-crowding", embeddings=world.embeddings(), crowding=float("nan"))
    partial = dict(world.embeddings())
    partial.pop("T3-2")
    with pytest.raises(InvalidEmbeddingsError, match=r"embedding for every candidate.*'T3-2'"):
        get_estimator("snips-crowding", embeddings=partial).estimate(data, n_bootstrap=0)
    no_mu, no_mu_titles = world.log(50, seed=9, full_propensities=False)
    assert no_mu.propensities is None
    with pytest.raises(InvalidReplayInputError, match=r"'propensities' column"):
        get_estimator("snips-crowding", embeddings=world.embeddings()).estimate(
            ReplayData.build(no_mu, crowding_target(world, no_mu, no_mu_titles)), n_bootstrap=0)


def test_one_instance_serves_many_targets_and_pickles_without_its_cache(world_log):
    """A sweep estimates every point with one instance on one log (the pairs and the fitted c
    are computed once per log) and sends it to dask workers (pickled, cache left behind)."""
    import pickle

    world, log, titles = world_log
    targets = [crowding_target(world, log, titles),
               ActionDistribution.deterministic(np.zeros(log.n_rows), np.argmax(log.candidates == log.image[:, None], axis=1), K)]
    shared = get_estimator("snips-crowding", embeddings=world.embeddings())
    for target in targets:
        data = ReplayData.build(log, target)
        fresh = get_estimator("snips-crowding", embeddings=world.embeddings()).estimate(data, n_bootstrap=20, seed=1)
        assert shared.estimate(data, n_bootstrap=20, seed=1).to_dict() == fresh.to_dict()
    assert len(shared._fitted) == 1
    copy = pickle.loads(pickle.dumps(shared))
    assert len(copy._fitted) == 0
    data = ReplayData.build(log, targets[0])
    assert copy.estimate(data, n_bootstrap=20, seed=1).value == shared.estimate(data, n_bootstrap=20, seed=1).value
