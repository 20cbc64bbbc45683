"""Session stability: per-member state between sessions, the rules that use it, and where it is stored.

>>> from slate.stability import available_stores
>>> available_stores()
['memory', 'redis', 'sqlite']
"""

from slate.stability.redis_store import RedisStore
from slate.stability.rules import (
    Reason,
    StabilityPlan,
    StabilityRules,
    StickyPeriod,
    next_states,
    plan_page,
)
from slate.stability.state import NO_DRAW, TitleState
from slate.stability.store import (
    STORES,
    InMemoryStore,
    SQLiteStore,
    StateStore,
    VersionedStateStore,
    available_stores,
    make_store,
    register_store,
)

__all__ = [
    "NO_DRAW",
    "STORES",
    "InMemoryStore",
    "Reason",
    "RedisStore",
    "SQLiteStore",
    "StabilityPlan",
    "StabilityRules",
    "StateStore",
    "StickyPeriod",
    "TitleState",
    "VersionedStateStore",
    "available_stores",
    "make_store",
    "next_states",
    "plan_page",
    "register_store",
]
