"""Offline replay: estimate what a policy would have achieved on logged pages.

>>> from slate.replay import available_estimators
>>> "snips" in available_estimators()
True
"""

from slate.replay.estimators import (
    DirectMethod,
    DoublyRobust,
    Estimate,
    Estimator,
    InverseProbabilityWeighting,
    LayoutNeighbourhood,
    PerTitleEstimates,
    PseudoInverse,
    ReplayData,
    ReplayMethod,
    SelfNormalizedIPS,
    UnknownEstimatorError,
    WholePageMatch,
    available_estimators,
    get_estimator,
    register_estimator,
)
from slate.replay.evaluate import ReplayReport, evaluate
from slate.replay.metrics import churn_rate, image_coverage
from slate.replay.policy import (
    ActionDistribution,
    DecisionTable,
    InvalidReplayInputError,
    LinearPolicy,
    TargetPolicy,
    UniformPolicy,
)
from slate.replay.reward_model import take_rate_model

__all__ = [
    "ActionDistribution",
    "DecisionTable",
    "DirectMethod",
    "DoublyRobust",
    "Estimate",
    "Estimator",
    "InvalidReplayInputError",
    "InverseProbabilityWeighting",
    "LayoutNeighbourhood",
    "LinearPolicy",
    "PerTitleEstimates",
    "PseudoInverse",
    "ReplayData",
    "ReplayMethod",
    "ReplayReport",
    "SelfNormalizedIPS",
    "TargetPolicy",
    "UniformPolicy",
    "UnknownEstimatorError",
    "WholePageMatch",
    "available_estimators",
    "churn_rate",
    "evaluate",
    "get_estimator",
    "image_coverage",
    "register_estimator",
    "take_rate_model",
]
