"""The page-effect detection test: its false-positive rate on a no-effect world and its power
with page effects (seeded)."""

from __future__ import annotations

import numpy as np

from slate.replay.detect import detect_page_effects
from tests.replay.test_world import World


def _rate(effect: float, logging: str, reps: int, pages: int) -> float:
    world = World(seed=41, n_titles=24, n_images=4, n_features=2, n_slots=6, page_effect=effect)
    groups = world.style[np.arange(world.n_titles * world.n_images) % world.n_images]
    hits = [detect_page_effects(world.to_log(world.simulate(pages, logging, seed=500 + r)),
                                groups).detected for r in range(reps)]
    return float(np.mean(hits))


def test_false_detections_are_about_alpha_without_page_effects():
    # 200 seeded no-effect logs: the rate of false detections is 0.05 +- 0.015 (binomial sd);
    # 0.015-0.10 is ~ +-3 sd. Context-dependent logging must not fake an effect either.
    assert 0.015 <= _rate(0.0, "uniform", 200, 300) <= 0.10
    assert 0.015 <= _rate(0.0, "softmax", 200, 300) <= 0.10


def test_page_effects_are_detected():
    assert _rate(1.5, "uniform", 20, 1000) >= 0.9
    assert _rate(1.5, "softmax", 20, 1000) >= 0.9


def test_result_says_why():
    world = World(seed=3, n_slots=4)
    groups = world.style[np.arange(world.n_titles * world.n_images) % world.n_images]
    t = detect_page_effects(world.to_log(world.simulate(200, seed=1)), groups, alpha=0.01)
    assert t.alpha == 0.01 and "false-positive rate 0.01" in t.reason and t.n_rows == 800
