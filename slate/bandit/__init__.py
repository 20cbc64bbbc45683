"""Per-image contextual bandit scoring: features, policies with propensities, learning, persistence.

For every title on a member's page and every candidate image of that title, a policy gives the
predicted probability of a *quality* play, an exploration-adjusted score and the probability
with which it would choose each image. The scores feed :class:`slate.page.PageProblem`::

    page = builder.build(request)                     # PageFeatures (titles x images x features)
    scores = policy.score(page)                       # PageScores
    problem = PageProblem.from_arrays(scores.mean, embeddings, candidates=scores.mask, ...)

=================  ==========================================================================
name               policy
=================  ==========================================================================
``uniform``        :class:`UniformRandom`, exact propensities
``take_rate``      :class:`TakeRateBandit`, Beta-Bernoulli Thompson sampling per image (no context)
``epsilon_greedy`` :class:`EpsilonGreedy` over per-image ridge regression, exact propensities
``linucb``         :class:`LinUCB`, disjoint (Li et al. 2010), exact propensities
``hybrid_linucb``  :class:`HybridLinUCB`, shared + per-image coefficients, exact propensities
``linear_ts``      :class:`LinearThompson`, Monte Carlo propensities with standard errors
``logistic_ts``    :class:`LogisticThompson`, Laplace approximation (Chapelle & Li 2011)
=================  ==========================================================================

:class:`ImageFeaturePrior` gives the linear policies a cold-start prior from image features.
"""

from typing import Any

from slate.bandit.base import (
    POLICIES,
    ScoringPolicy,
    UnknownPolicyError,
    available_policies,
    check_log,
    make_policy,
    register_policy,
)
from slate.bandit.batch import PageFeatures, PageScores
from slate.bandit.delayed import PendingImpressions
from slate.bandit.features import BLOCKS, ArmIndex, FeatureBuilder, FeatureInputs
from slate.bandit.hybrid import HybridLinUCB
from slate.bandit.linear import EpsilonGreedy, ImageFeaturePrior, LinearThompson, LinUCB
from slate.bandit.logistic import LogisticThompson
from slate.bandit.persistence import FORMAT, load_policy, save_policy
from slate.bandit.requests import (
    FeatureConfig,
    FeatureRequest,
    ImageCandidate,
    ImpressionOutcome,
    MemberContext,
    QualityPlayLabel,
    TitleCandidate,
)
from slate.bandit.simple import TakeRateBandit, UniformRandom

__all__ = [
    "BLOCKS",
    "FORMAT",
    "POLICIES",
    "ArmIndex",
    "EpsilonGreedy",
    "FeatureBuilder",
    "FeatureConfig",
    "FeatureInputs",
    "FeatureRequest",
    "HybridLinUCB",
    "ImageCandidate",
    "ImageFeaturePrior",
    "ImpressionOutcome",
    "LinUCB",
    "LinearThompson",
    "LogisticThompson",
    "MemberContext",
    "PageFeatures",
    "PageScores",
    "PendingImpressions",
    "QualityPlayLabel",
    "ScoringPolicy",
    "TakeRateBandit",
    "TitleCandidate",
    "UniformRandom",
    "UnknownPolicyError",
    "available_policies",
    "check_log",
    "load_policy",
    "make_policy",
    "register_policy",
    "save_policy",
]


def __getattr__(name: str) -> Any:
    """``slate.bandit.PageRequest``: the deprecated name of :class:`FeatureRequest`."""
    from slate.bandit.requests import _deprecated_alias

    return _deprecated_alias(__name__, name)
