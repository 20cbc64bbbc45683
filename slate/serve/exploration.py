"""Exploration on a page with exact propensities: now :mod:`slate.bandit.exploration`.

It moved below :mod:`slate.replay` (which inverts its joint propensities) and
:mod:`slate.serve` (which draws it); every name stays importable from here.
"""

from slate.bandit.exploration import (
    Exploration,
    ExplorationDraw,
    NoExploration,
    StickyEpsilon,
    exactly_explored_matrix,
    exactly_explored_probability,
    explore_probability,
    joint_choice_probabilities,
    joint_choice_probability,
    joint_explore_probability,
)

__all__ = [
    "Exploration",
    "ExplorationDraw",
    "NoExploration",
    "StickyEpsilon",
    "exactly_explored_matrix",
    "exactly_explored_probability",
    "explore_probability",
    "joint_choice_probabilities",
    "joint_choice_probability",
    "joint_explore_probability",
]
