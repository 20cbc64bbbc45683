"""Offline replay: estimate what a policy would have achieved on logged pages.

>>> from slate.replay import available_estimators
>>> "snips" in available_estimators()
True
"""

from slate.replay.crowding import CrowdingAdjustedSNIPS
from slate.replay.detect import PageEffectTest, detect_page_effects
from slate.replay.distributed import evaluate_dask, evaluate_stream
from slate.replay.effects import EffectsOptions, PageEffects, estimate_effects, load_effects
from slate.replay.estimators import (
    ESTIMATORS,
    DirectMethod,
    DoublyRobust,
    Estimate,
    Estimator,
    InverseProbabilityWeighting,
    LayoutNeighbourhood,
    MarginalizedNeighbourhood,
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
from slate.replay.metrics import (
    ImageEmbeddings,
    InvalidEmbeddingsError,
    churn_rate,
    diversity_sums,
    image_coverage,
    layout_diversity,
)
from slate.replay.options import ReplayOptions
from slate.replay.page_dr import PageAwareDoublyRobust
from slate.replay.policy import (
    ActionDistribution,
    DecisionTable,
    InvalidReplayInputError,
    LinearPolicy,
    TargetPolicy,
    UniformPolicy,
)
from slate.replay.reward_model import TakeRateCounts, TakeRateFit, fit_reward_model, take_rate_model
from slate.replay.sequential import (
    BanditLearner,
    SequentialReplayResult,
    SequentialTarget,
    StickyPolicy,
    previous_shown,
    sequential_replay,
)

__all__ = [
    "ESTIMATORS",
    "ActionDistribution",
    "BanditLearner",
    "CrowdingAdjustedSNIPS",
    "DecisionTable",
    "DirectMethod",
    "DoublyRobust",
    "EffectsOptions",
    "Estimate",
    "Estimator",
    "ImageEmbeddings",
    "InvalidEmbeddingsError",
    "InvalidReplayInputError",
    "InverseProbabilityWeighting",
    "LayoutNeighbourhood",
    "LinearPolicy",
    "MarginalizedNeighbourhood",
    "PageAwareDoublyRobust",
    "PageEffectTest",
    "PageEffects",
    "PerTitleEstimates",
    "PseudoInverse",
    "ReplayData",
    "ReplayMethod",
    "ReplayOptions",
    "ReplayReport",
    "SelfNormalizedIPS",
    "SequentialReplayResult",
    "SequentialTarget",
    "StickyPolicy",
    "TakeRateCounts",
    "TakeRateFit",
    "TargetPolicy",
    "UniformPolicy",
    "UnknownEstimatorError",
    "WholePageMatch",
    "available_estimators",
    "churn_rate",
    "detect_page_effects",
    "diversity_sums",
    "estimate_effects",
    "evaluate",
    "evaluate_dask",
    "evaluate_stream",
    "fit_reward_model",
    "get_estimator",
    "image_coverage",
    "layout_diversity",
    "load_effects",
    "previous_shown",
    "register_estimator",
    "sequential_replay",
    "take_rate_model",
]
