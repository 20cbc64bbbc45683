"""Serving: ``compose()`` a member's page with session stability, logged exploration, never failing.

>>> from slate.serve import StickyEpsilon
>>> StickyEpsilon(0.05).sticky
StickyPeriod(sessions=None, days=3.0)
"""

from slate.serve.composer import Composer, DecisionSink, PageScorer, PolicyScorer, compose
from slate.serve.decision import Fault, PageDecision, ServeStats
from slate.serve.decision_log import DecisionLogger, decisions_table
from slate.serve.exploration import (
    Exploration,
    ExplorationDraw,
    NoExploration,
    StickyEpsilon,
    explore_probability,
)
from slate.serve.request import (
    ComposeConfig,
    ImageCatalog,
    InvalidRequestError,
    PageRequest,
    TitleRequest,
    parse_request,
)

__all__ = [
    "ComposeConfig",
    "Composer",
    "DecisionLogger",
    "DecisionSink",
    "Exploration",
    "ExplorationDraw",
    "Fault",
    "ImageCatalog",
    "InvalidRequestError",
    "NoExploration",
    "PageDecision",
    "PageRequest",
    "PageScorer",
    "PolicyScorer",
    "ServeStats",
    "StickyEpsilon",
    "TitleRequest",
    "compose",
    "decisions_table",
    "explore_probability",
    "parse_request",
]
