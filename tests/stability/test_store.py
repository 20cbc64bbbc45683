"""State stores: round trips, batch get/put, purge, WAL, concurrency, crash survival."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slate.errors import InvalidProblemError, UnknownStoreError
from slate.stability import (
    InMemoryStore,
    SQLiteStore,
    StateStore,
    TitleState,
    available_stores,
    make_store,
)


def state(image: str = "a", *, updated_at: float = 10.0, draw_at: float = math.nan, **kw: object) -> TitleState:
    base = dict(
        image_id=image,
        shown_since=1.5,
        sessions=2,
        last_session_id=-(2**62),
        updated_at=updated_at,
        seen=True,
        draw_at=draw_at,
        draw_sessions=1 if not math.isnan(draw_at) else 0,
        draw_propensity=0.125,
        draw_explored=True,
    )
    base.update(kw)
    return TitleState(**base)  # type: ignore[arg-type]


@pytest.fixture(params=["memory", "sqlite"])
def store(request, tmp_path):
    s = InMemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "state.db")
    yield s
    s.close()


def same(a: TitleState, b: TitleState) -> bool:
    """Equality with NaN == NaN for ``draw_at``."""
    return all(
        (isinstance(x, float) and math.isnan(x) and math.isnan(y)) or x == y
        for x, y in zip(a, b, strict=True)
    )


def test_stores_follow_the_protocol(store):
    assert isinstance(store, StateStore)
    assert available_stores() == ["memory", "redis", "sqlite"]


def test_round_trip_keeps_every_field(store):
    records = {"T1": state("a"), "T2": state("b", draw_at=5.25, seen=False, draw_explored=False)}
    store.put(2**63 - 1, records)
    got = store.get(2**63 - 1, ["T1", "T2", "T3"])
    assert sorted(got) == ["T1", "T2"]
    for title, record in records.items():
        assert same(got[title], record)
        assert type(got[title].seen) is bool and type(got[title].draw_explored) is bool
    assert math.isnan(got["T1"].draw_at) and not got["T1"].has_draw and got["T2"].has_draw


def test_members_are_separate_and_put_replaces(store):
    store.put(1, {"T1": state("a")})
    store.put(2, {"T1": state("b")})
    store.put(1, {"T1": state("c"), "T2": state("d")})
    assert store.get(1, ["T1", "T2"])["T1"].image_id == "c"
    assert store.get(2, ["T1", "T2"])["T1"].image_id == "b"
    assert store.get(3, ["T1"]) == {}
    assert store.get(1, []) == {}


def test_purge_removes_only_old_records(store):
    store.put(1, {"old": state(updated_at=5.0), "new": state(updated_at=50.0)})
    store.put(2, {"old": state(updated_at=1.0)})
    assert store.purge(before=10.0) == 2
    assert sorted(store.get(1, ["old", "new"])) == ["new"]
    assert store.get(2, ["old"]) == {}


_SHARED: dict[str, object] = {}


@given(
    st.dictionaries(
        st.text(min_size=1, max_size=8),
        st.tuples(st.text(min_size=1, max_size=8), st.integers(1, 10**6), st.booleans()),
        max_size=20,
    )
)
def test_sqlite_matches_memory_on_random_pages(tmp_path_factory, page):
    if "sqlite" not in _SHARED:  # one database for every example; a new member per example
        _SHARED["sqlite"] = SQLiteStore(tmp_path_factory.mktemp("db") / "s.db")
        _SHARED["member"] = 0
    sqlite = _SHARED["sqlite"]
    member = _SHARED["member"] = int(_SHARED["member"]) + 1  # type: ignore[call-overload]
    memory = InMemoryStore()
    records = {t: state(img, sessions=n, seen=seen) for t, (img, n, seen) in page.items()}
    for s in (memory, sqlite):
        s.put(member, records)  # type: ignore[attr-defined]
    titles = [*page, "never-stored"]
    a, b = memory.get(member, titles), sqlite.get(member, titles)  # type: ignore[attr-defined]
    assert sorted(a) == sorted(b) == sorted(page)
    assert all(same(a[t], b[t]) for t in a)


def test_sqlite_is_one_wal_file_and_checks_its_version(tmp_path):
    path = tmp_path / "sub" / "state.db"
    with SQLiteStore(path) as store:
        assert store.journal_mode == "wal"
        store.put(1, {"T": state()})
    assert path.exists()
    import sqlite3

    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.commit()
    conn.close()
    with pytest.raises(InvalidProblemError, match="schema version 99"):
        SQLiteStore(path)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"timeout_ms": -1}, "'timeout_ms' parameter of SQLiteStore"),
        ({"timeout_ms": "x"}, "timeout_ms"),
        ({"checkpoint": "never"}, "'checkpoint' parameter of SQLiteStore must be 'background' or 'inline'"),
        ({"checkpoint_every": 0}, "'checkpoint_every' parameter of SQLiteStore must be an integer >= 1"),
    ],
)
def test_sqlite_bad_parameters(tmp_path, kwargs, message):
    with pytest.raises(InvalidProblemError, match=message):
        SQLiteStore(tmp_path / "s.db", **kwargs)


def test_make_store_by_name(tmp_path):
    assert isinstance(make_store("memory"), InMemoryStore)
    sqlite = make_store("sqlite", path=tmp_path / "x.db")
    assert isinstance(sqlite, SQLiteStore)
    sqlite.close()
    with pytest.raises(UnknownStoreError, match="'name' parameter of make_store must be one of"):
        make_store("nope")


def test_sqlite_concurrent_readers_see_whole_pages(tmp_path):
    """One writer rewrites a 30-title page with a version number; readers in other threads must
    always see one version across the page (a page is one transaction), never an error."""
    path = tmp_path / "state.db"
    store = SQLiteStore(path, timeout_ms=2000)
    titles = [f"T{i}" for i in range(30)]
    store.put(1, {t: state("v0") for t in titles})
    stop = threading.Event()
    errors: list[BaseException] = []
    seen_versions: set[str] = set()

    def read() -> None:
        reader = SQLiteStore(path, timeout_ms=2000)
        try:
            while not stop.is_set():
                page = reader.get(1, titles)
                versions = {s.image_id for s in page.values()}
                if len(page) != 30 or len(versions) != 1:
                    raise AssertionError(f"torn page: {len(page)} titles, versions {versions}")
                seen_versions.update(versions)
        except BaseException as err:
            errors.append(err)
        finally:
            reader.close()

    readers = [threading.Thread(target=read) for _ in range(3)]
    for r in readers:
        r.start()
    for v in range(1, 150):
        store.put(1, {t: state(f"v{v}") for t in titles})
    stop.set()
    for r in readers:
        r.join()
    store.close()
    assert not errors, errors[0]
    assert len(seen_versions) > 1  # readers really ran while the writer wrote


def test_sqlite_store_shared_by_threads_uses_one_connection_each(tmp_path):
    store = SQLiteStore(tmp_path / "s.db", timeout_ms=2000)
    errors: list[BaseException] = []

    def work(member: int) -> None:
        try:
            for i in range(50):
                store.put(member, {"T": state(f"{member}-{i}")})
                assert store.get(member, ["T"])["T"].image_id == f"{member}-{i}"
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=work, args=(m,)) for m in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert len(store) == 4
    store.close()


WRITER = textwrap.dedent(
    """
    import math, os, sys
    from slate.stability import SQLiteStore, TitleState
    store = SQLiteStore(sys.argv[1])
    for i in range(int(sys.argv[2])):
        store.put(1, {f"T{t}": TitleState(f"p{i}", 0.0, 1, i, float(i), True) for t in range(20)})
    print("committed", flush=True)
    if sys.argv[3] == "kill":
        os.kill(os.getpid(), 9)   # die without closing anything
    sys.stdin.read()
    """
)


def test_sqlite_survives_a_killed_writer(tmp_path):
    path = tmp_path / "state.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), "25", "kill"],
        stdout=subprocess.PIPE,
        stdin=subprocess.PIPE,
        text=True,
    )
    out, _ = proc.communicate(timeout=60)
    assert "committed" in out
    assert proc.returncode == -signal.SIGKILL
    with SQLiteStore(path) as store:
        page = store.get(1, [f"T{t}" for t in range(20)])
    assert len(page) == 20 and {s.image_id for s in page.values()} == {"p24"}


def test_sqlite_killed_during_writes_keeps_a_whole_page(tmp_path):
    """Kill a writer at a random moment mid-stream: the file opens and holds one whole page."""
    path = tmp_path / "state.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), "100000", "wait"],
        stdout=subprocess.PIPE,
        stdin=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.communicate(timeout=60)
    with SQLiteStore(path) as store:
        page = store.get(1, [f"T{t}" for t in range(20)])
    assert len(page) in (0, 20)
    assert len({s.image_id for s in page.values()}) <= 1


def test_background_checkpoints_keep_the_wal_small_and_page_writes_free_of_them(tmp_path):
    path = tmp_path / "state.db"
    store = SQLiteStore(path, checkpoint_every=10)
    conn = store._connection()
    assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0  # page writes never checkpoint
    titles = [f"T{t}" for t in range(40)]
    for member in range(400):
        store.put(member, {t: state(f"{member}-{t}") for t in titles})
    # 40 wake-ups of the checkpointer (wake-ups while it works coalesce into one checkpoint)
    assert store.checkpoints_ >= 3 and store.checkpoint_errors_ == 0
    thread = store._checkpointer
    assert thread is not None and thread.is_alive() and thread is not threading.current_thread()
    if sys.platform.startswith("linux"):  # the checkpointer yields the CPU to request threads
        assert os.getpriority(os.PRIO_PROCESS, thread.native_id) > os.getpriority(os.PRIO_PROCESS, 0)
    store._wake.set()  # one more checkpoint: every commit ends up copied into the database file
    deadline = time.monotonic() + 20
    while store._checkpointed < store._commits and time.monotonic() < deadline:
        time.sleep(0.01)
    assert store._checkpointed == store._commits == 400
    import sqlite3

    busy, frames, copied = sqlite3.connect(path).execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    assert busy == 0 and frames == copied  # nothing left in the WAL that the database lacks
    assert store.get(399, titles)["T39"].image_id == "399-T39" and len(store) == 400 * 40
    store.close()
    assert not thread.is_alive()
    with SQLiteStore(path, checkpoint="inline") as inline:
        assert inline._connection().execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000
        assert inline.get(0, titles)["T0"].image_id == "0-T0"
        inline.put(1, {"T0": state("x")})
        assert inline.checkpoints_ == 0 and inline._checkpointer is None


def test_a_stalled_checkpointer_is_replaced_by_the_writer(tmp_path, monkeypatch):
    """If the background checkpointer never runs, a page write checkpoints after 20 x checkpoint_every."""
    path = tmp_path / "state.db"
    monkeypatch.setattr(SQLiteStore, "_start_checkpointer", lambda self: None)
    store = SQLiteStore(path, checkpoint_every=2)
    for member in range(39):
        store.put(member, {"T": state()})
    assert store.checkpoints_ == 0
    store.put(39, {"T": state()})  # the 40th commit: 20 x 2 behind
    assert store.checkpoints_ == 1 and store._commits - store._checkpointed == 0
    store.close()
