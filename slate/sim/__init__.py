"""A simulated homepage world with known ground truth.

Members with latent tastes see homepages of titles, each title with several artworks; a response
model says how likely each impression is to end in a quality play, with page effects (images
that look like their neighbours draw less attention) and session effects (a changed image costs
recognizability or triggers reconsideration). Logging policies write exploration logs in the
``slate.impressions/1`` schema with exact propensities, and any policy's true take fraction,
diversity and churn can be simulated on the same sessions.

>>> from slate.sim import make_world, make_schedule, simulate, UniformRandomLogging
>>> world = make_world(n_members=50, n_titles=60, seed=0)
>>> run = simulate(make_schedule(world, n_days=2, seed=0), UniformRandomLogging(seed=0))
>>> run.n_impressions == run.schedule.n_impressions
True
"""

from slate.sim.config import (
    DriftConfig,
    InvalidConfigError,
    PageConfig,
    ResponseConfig,
    WorldConfig,
    make_config,
)
from slate.sim.policies import (
    ArgmaxPolicy,
    Decision,
    EpsilonGreedyLogging,
    LoggingPolicy,
    PageOptimizerPolicy,
    Policy,
    Scorer,
    StickyExplorationLogging,
    UniformRandomLogging,
    decide,
    hash_uniform,
    oracle_scorer,
    policy_name,
    table_scorer,
)
from slate.sim.response import PageBatch, Response, candidate_probabilities, respond
from slate.sim.schedule import Schedule, SessionState, initial_state, make_schedule
from slate.sim.simulate import (
    CounterfactualValue,
    PolicyValue,
    Run,
    compare_policies,
    counterfactual_value,
    policy_value,
    simulate,
)
from slate.sim.world import DAYPARTS, SeedExample, World, daypart_of, make_world

__all__ = [
    "DAYPARTS",
    "ArgmaxPolicy",
    "CounterfactualValue",
    "Decision",
    "DriftConfig",
    "EpsilonGreedyLogging",
    "InvalidConfigError",
    "LoggingPolicy",
    "PageBatch",
    "PageConfig",
    "PageOptimizerPolicy",
    "Policy",
    "PolicyValue",
    "Response",
    "ResponseConfig",
    "Run",
    "Schedule",
    "Scorer",
    "SeedExample",
    "SessionState",
    "StickyExplorationLogging",
    "UniformRandomLogging",
    "World",
    "WorldConfig",
    "candidate_probabilities",
    "compare_policies",
    "counterfactual_value",
    "daypart_of",
    "decide",
    "hash_uniform",
    "initial_state",
    "make_config",
    "make_schedule",
    "make_world",
    "oracle_scorer",
    "policy_name",
    "policy_value",
    "respond",
    "simulate",
    "table_scorer",
]
