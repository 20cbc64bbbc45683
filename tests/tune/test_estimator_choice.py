"""The sweep's estimator choice: snips-crowding (page-aware without embeddings) when page effects
are configured or detected."""

from __future__ import annotations

from types import SimpleNamespace as NS

import numpy as np

from slate.tune.config import EstimatorSpec
from slate.tune.estimator_choice import choose_estimator
from tests.replay.test_world import World


def _prep(effect: float, sim_effects: bool | None = None):
    w = World(seed=41, n_titles=24, n_images=4, n_features=2, n_slots=6, page_effect=effect)
    log = w.to_log(w.simulate(1000, "uniform", seed=3))
    styles = w.style[np.arange(w.n_titles * w.n_images) % w.n_images]
    sim = None if sim_effects is None else NS(world=NS(config=NS(response=NS(page_effects=sim_effects))))
    return NS(log=log, styles=styles, sim=sim)


AUTO = NS(estimator=EstimatorSpec())


def test_default_is_auto_and_named_estimators_are_kept():
    assert EstimatorSpec().name == "auto"
    c = choose_estimator(NS(estimator=EstimatorSpec(name="ips")), _prep(0.0))
    assert (c.name, c.reason) == ("ips", "configured: ips")


def test_detected_page_effects_choose_page_aware():
    c = choose_estimator(AUTO, _prep(1.5))
    assert c.name == "page-aware" and "page effects detected" in c.reason
    assert dict(c.options)["groups"][:4] == [0, 1, 0, 1]


def test_no_page_effects_keep_snips_and_say_why():
    c = choose_estimator(AUTO, _prep(0.0))
    assert c.name == "snips" and "no page effect detected" in c.reason


def test_configured_page_effects_choose_page_aware():
    c = choose_estimator(AUTO, _prep(0.0, sim_effects=True))
    assert c.name == "page-aware" and "configured" in c.reason


def test_with_embeddings_page_effects_choose_snips_crowding_with_them():
    prep = _prep(1.5)
    prep.vectors = np.eye(len(prep.log.image_ids), 3)
    c = choose_estimator(AUTO, prep)
    assert c.name == "snips-crowding" and "page effects detected" in c.reason
    ids, vectors = dict(c.options)["embeddings"]
    assert list(ids) == list(prep.log.image_ids) and vectors is prep.vectors
    none = _prep(0.0)
    none.vectors = prep.vectors
    assert choose_estimator(AUTO, none).name == "snips"  # no page effects: per-title SNIPS


def test_a_configured_snips_crowding_gets_the_sweeps_embeddings():
    prep = _prep(0.0)
    prep.vectors = np.eye(len(prep.log.image_ids), 3)
    c = choose_estimator(NS(estimator=EstimatorSpec(name="snips-crowding")), prep)
    assert c.name == "snips-crowding" and dict(c.options)["embeddings"][1] is prep.vectors
    given = EstimatorSpec(name="snips-crowding", options={"crowding": 0.3})
    assert dict(choose_estimator(NS(estimator=given), prep).options)["crowding"] == 0.3
