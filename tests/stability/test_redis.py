"""RedisStore on a real redis-server: round trips, keys, TTL, purge, and a slow or dead server."""

from __future__ import annotations

import itertools
import os
import signal

import pytest
import redis

from slate.errors import InvalidProblemError, StoreError, StoreTimeoutError
from slate.serve import ComposeConfig, Composer, Fault
from slate.stability import RedisStore, StabilityRules, TitleState, make_store
from slate.testing.stores import free_port

_PREFIXES = itertools.count()


# generous time budgets: on a loaded machine a slow solve or store call must not add a fault
RELAXED = dict(solver="independent", solver_grace_ms=1e4, scoring_budget_ms=1e4, store_budget_ms=1e4)


def state(image: str, updated_at: float = 10.0) -> TitleState:
    return TitleState(image, 0.0, 1, 1, updated_at, True)


@pytest.fixture
def store(redis_server):
    s = RedisStore(redis_server.url, prefix=f"t{next(_PREFIXES)}:", timeout_ms=2000, ttl_days=2.0)
    yield s
    s.close()


def request(member: int = 1, session: int = 1) -> dict:
    return {"member_id": member, "session_id": session,
            "titles": [{"title_id": f"T{t}", "image_ids": [f"T{t}-a", f"T{t}-b"], "row": 0, "col": t}
                       for t in range(6)]}


def scores(req):
    import numpy as np

    return np.tile([0.1, 0.2], (req.n_titles, 1))


def test_make_store_takes_a_redis_url(redis_server):
    store = make_store(redis_server.url, prefix="url:")
    assert isinstance(store, RedisStore) and store.url == redis_server.url
    store.put(3, {"T": state("a")})
    assert store.get(3, ["T"])["T"].image_id == "a"
    store.close()
    with pytest.raises(InvalidProblemError, match="unknown scheme 'http'"):
        make_store("http://127.0.0.1/")


def test_keys_are_member_scoped_with_a_hash_tag_and_expire_after_ttl_days(redis_server, store):
    store.put(42, {"T1": state("a"), "T2": state("b")})
    raw = redis.Redis.from_url(redis_server.url)
    keys = sorted(k.decode() for k in raw.keys(f"{store.prefix}*"))
    assert keys == [f"{store.prefix}{{42}}:s", f"{store.prefix}{{42}}:v"]  # one cluster slot per member
    ms = 2 * 86_400_000
    for key in keys:
        assert ms - 60_000 < raw.pttl(key) <= ms
    assert raw.hlen(keys[0]) == 2 and int(raw.get(keys[1])) == 1
    raw.close()


def test_a_page_is_one_round_trip_to_read_and_one_to_write(redis_server, store):
    raw = redis.Redis.from_url(redis_server.url)
    composer = Composer(scores, store, config=ComposeConfig(**RELAXED))
    composer.compose(request())  # loads the scripts
    raw.config_resetstat()
    for s in range(2, 12):
        d = composer.compose(request(session=s))
        assert d.status == "ok", d.fault_details
    calls = {k.removeprefix("cmdstat_"): v["calls"] for k, v in raw.info("commandstats").items()}
    calls.pop("config|resetstat", None)
    calls.pop("info", None)
    # 10 pages x (1 read + 1 write) sent by the client; the rest ran inside those scripts
    assert calls.pop("evalsha") == 20, calls
    assert set(calls) <= {"get", "hmget", "hset", "set", "pexpire"}, calls
    raw.close()


def test_purge_removes_single_stale_records_and_empty_members(store):
    store.put(1, {"old": state("a", 5.0), "new": state("b", 50.0)})
    store.put(2, {"old": state("c", 1.0)})
    assert len(store) == 3
    assert store.purge(before=10.0) == 2
    assert sorted(store.get(1, ["old", "new"])) == ["new"]
    assert store.read(2, ["old"]) == ({}, 0)  # an emptied member starts again from version 0
    assert len(store) == 1


def test_bad_parameters_and_urls_name_the_field():
    with pytest.raises(InvalidProblemError, match="'ttl_days' parameter of RedisStore"):
        RedisStore("redis://127.0.0.1:1/0", ttl_days=0)
    with pytest.raises(InvalidProblemError, match="'timeout_ms' parameter of RedisStore"):
        RedisStore("redis://127.0.0.1:1/0", timeout_ms=float("nan"))
    with pytest.raises(InvalidProblemError, match="Redis URL 'nothing://x' is not valid"):
        RedisStore("nothing://x")


def test_a_dead_server_degrades_pages_and_never_fails_them():
    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", timeout_ms=50)  # nothing listens there
    with pytest.raises(StoreError, match=r"127\.0\.0\.1"):
        store.read(1, ["T"])
    composer = Composer(scores, store, config=ComposeConfig(**RELAXED))
    pages = [composer.compose(request(session=s)) for s in range(20)]
    assert all(len(d.image_ids) == 6 and d.status == "degraded" for d in pages)
    assert all(d.faults == (Fault.STORE_READ_FAILED,) for d in pages)
    assert composer.stats_.snapshot()["faults"] == {"store_read_failed": 20}
    assert store.errors_ >= 20
    store.close()


def test_a_stalled_server_times_out_as_store_late_then_recovers(redis_server):
    store = RedisStore(redis_server.url, prefix="stall:", timeout_ms=100)
    composer = Composer(scores, store, config=ComposeConfig(**RELAXED, stability=StabilityRules(max_changes=1)))
    assert composer.compose(request(session=1)).status == "ok"
    os.kill(redis_server.pid, signal.SIGSTOP)  # the server stops answering (a long pause, a full network)
    try:
        with pytest.raises(StoreTimeoutError, match="within 100 ms"):
            store.read(1, ["T0"])
        d = composer.compose(request(session=2))
        assert set(d.faults) == {Fault.STORE_READ_FAILED, Fault.STORE_LATE}, d.fault_details
        assert d.status == "degraded" and len(d.image_ids) == 6
        assert d.timings_ms["store_get"] < 1000
    finally:
        os.kill(redis_server.pid, signal.SIGCONT)
    d = composer.compose(request(session=3))
    assert d.status == "ok" and d.previous_image_ids[0] is not None, d.fault_details  # state still there
    assert store.timeouts_ >= 2
    store.close()


def test_a_huge_page_is_read_and_written_in_one_call_each(store):
    titles = [f"T{i}" for i in range(9001)]  # beyond what one Lua unpack() takes
    assert store.write(5, {t: state(f"{t}-a") for t in titles}, 0)
    states, version = store.read(5, [*titles, "absent"])
    assert version == 1 and len(states) == 9001 and states["T9000"].image_id == "T9000-a"


def test_a_redis_cluster_keeps_each_member_in_one_slot():
    """On a real 3-node Redis Cluster: the contract holds and members spread over the nodes."""
    from slate.testing.stores import check_store, redis_cluster

    with redis_cluster(3) as urls:
        check_store(lambda: RedisStore(urls[0], cluster=True, prefix=f"c{next(_PREFIXES)}:", timeout_ms=2000))
        store = RedisStore(urls[1], cluster=True, prefix="spread:", timeout_ms=2000)
        for member in range(60):
            assert store.write(member, {"T": state(f"m{member}")}, 0)
        assert [store.get(m, ["T"])["T"].image_id for m in range(60)] == [f"m{m}" for m in range(60)]
        per_node = []
        for url in urls:
            with redis.Redis.from_url(url) as node:
                per_node.append(len(list(node.scan_iter(match="spread:*"))))
        assert sum(per_node) == 120 and min(per_node) > 0, per_node  # 2 keys per member, every node used
        store.close()
