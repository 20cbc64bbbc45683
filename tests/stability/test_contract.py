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


# ------------------------------------------------------------------ a model of versions
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from slate.stability import TitleState  # noqa: E402

OPS = st.lists(
    st.tuples(
        st.sampled_from(["read", "write", "stale-write", "put"]),
        st.integers(0, 2),  # member
        st.dictionaries(st.sampled_from(["A", "B", "C"]), st.sampled_from(["x", "y", "z"]), max_size=3),
    ),
    max_size=25,
)


@pytest.mark.parametrize("kind", ["memory", "sqlite", "redis"])
@settings(max_examples=25, deadline=None)
@given(ops=OPS)
def test_versions_follow_a_simple_model(kind, ops, tmp_path_factory, request):
    """Random reads, writes at the current version, writes at a stale version and blind puts: the
    store's answers and contents match a dict-and-counter model after every operation."""
    if kind == "memory":
        store = InMemoryStore()
    elif kind == "sqlite":
        store = SQLiteStore(tmp_path_factory.mktemp("model") / "s.db")
    else:
        store = RedisStore(request.getfixturevalue("redis_server").url, prefix=f"model{next(_PREFIXES)}:")
    model: dict[int, tuple[int, dict[str, str]]] = {}
    try:
        for op, member, page in ops:
            version, records = model.get(member, (0, {}))
            states = {t: TitleState(img, 0.0, 1, 1, 1.0, True) for t, img in page.items()}
            if op == "write":
                assert store.write(member, states, version) is True
                model[member] = (version + 1, {**records, **page})
            elif op == "stale-write":
                assert store.write(member, states, version + 1 + len(page)) is False
            elif op == "put" and page:
                store.put(member, states)
                model[member] = (version + 1, {**records, **page})
            got, got_version = store.read(member, ["A", "B", "C"])
            want_version, want = model.get(member, (0, {}))
            assert got_version == want_version
            assert {t: s.image_id for t, s in got.items()} == want
    finally:
        store.close()
