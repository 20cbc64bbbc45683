"""Serving: ``compose()`` a member's page with session stability, logged exploration, never failing.

>>> from slate.serve import StickyEpsilon
>>> StickyEpsilon(0.05).sticky
StickyPeriod(sessions=None, days=3.0)
"""

from slate.bandit.exploration import (
    Exploration,
    ExplorationDraw,
    NoExploration,
    StickyEpsilon,
    explore_probability,
)
from slate.serve.composer import Composer, DecisionSink, PageScorer, PolicyScorer, compose
from slate.serve.decision import ExplorationParams, Fault, PageDecision, ServeStats
from slate.serve.decision_log import DecisionLogger, DecisionLogOptions, decisions_table
from slate.serve.request import (
    ComposeConfig,
    ExplorationConfig,
    ImageCatalog,
    InvalidRequestError,
    PageRequest,
    TitleRequest,
    parse_request,
)
from slate.serve.scorer import NamedScorer, ScoreTable, load_scorer, resolve_scorer

__all__ = [
    "ComposeConfig",
    "Composer",
    "DecisionLogOptions",
    "DecisionLogger",
    "DecisionSink",
    "Exploration",
    "ExplorationConfig",
    "ExplorationDraw",
    "ExplorationParams",
    "Fault",
    "ImageCatalog",
    "InvalidRequestError",
    "NamedScorer",
    "NoExploration",
    "PageDecision",
    "PageRequest",
    "PageScorer",
    "PolicyScorer",
    "ScoreTable",
    "ServeStats",
    "StickyEpsilon",
    "TitleRequest",
    "compose",
    "decisions_table",
    "explore_probability",
    "load_scorer",
    "parse_request",
    "resolve_scorer",
]
