"""The state-store contract (slate.testing.stores), run on the memory, SQLite and Redis stores."""

from __future__ import annotations

import itertools

import pytest

from slate.stability import InMemoryStore, RedisStore, SQLiteStore
from slate.testing.stores import STORE_CHECKS, check_store

_PREFIXES = itertools.count()


@pytest.fixture(params=["memory", "sqlite", "redis"])
def factory(request, tmp_path):
    """A function returning a fresh, empty store of the kind under test."""
    if request.param == "memory":
        return InMemoryStore
    if request.param == "sqlite":
        files = itertools.count()
        return lambda: SQLiteStore(tmp_path / f"state-{next(files)}.db")
    url = request.getfixturevalue("redis_server").url
    return lambda: RedisStore(url, prefix=f"contract{next(_PREFIXES)}:", timeout_ms=2000)


@pytest.mark.parametrize("check", STORE_CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_store_contract(factory, check):
    check(factory)


def test_check_store_runs_every_check_and_catches_a_lost_update():
    assert check_store(InMemoryStore) == [c.__name__.removeprefix("check_") for c in STORE_CHECKS]

    class Blind(InMemoryStore):
        """A store whose conditional write ignores the version: the contract must reject it."""

        def write(self, member_id, states, version):
            self.put(member_id, states)
            return True

    with pytest.raises(AssertionError, match="a stale write committed"):
        check_store(Blind)
