"""SQLiteStore under hostile conditions: unopenable files, a file deleted or replaced mid-run,
many processes creating one new database, a version-1 file, lock waits."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from slate.errors import InvalidProblemError, StoreError, StoreReplacedError, StoreTimeoutError
from slate.serve import ComposeConfig, Composer, Fault
from slate.stability import SQLiteStore, TitleState


def state(image: str = "a") -> TitleState:
    return TitleState(image, 0.0, 1, 1, 10.0, True)


OPEN_AS = textwrap.dedent(
    """
    import os, sys
    from slate.errors import StoreError
    from slate.stability import SQLiteStore, TitleState
    if os.geteuid() == 0:
        os.setgid(65534)
        os.setuid(65534)  # root writes anywhere: open the file as 'nobody'
    try:
        SQLiteStore(sys.argv[1]).put(1, {"T": TitleState("x", 0.0, 1, 1, 1.0, True)})
    except StoreError as err:
        print(err)
    """
)


def test_a_read_only_file_is_a_clean_error_naming_it():
    import tempfile
    from pathlib import Path

    folder = Path(tempfile.mkdtemp(prefix="slate-ro-"))  # reachable by 'nobody' (pytest's tmp_path is not)
    path = folder / "state.db"
    SQLiteStore(path).close()
    for p in folder.iterdir():
        if p.name != "state.db":
            p.unlink()
    path.chmod(0o444)
    folder.chmod(0o555)
    try:
        out = subprocess.run([sys.executable, "-c", OPEN_AS, str(path)], capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": os.getcwd()}, timeout=120, check=False)
    finally:
        folder.chmod(0o755)
        shutil.rmtree(folder)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith(f"Cannot open the state database '{path}': it is read-only"), out.stdout


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.mkdir(), "it is a folder"),
        (lambda p: p.write_bytes(b"name,value\n" * 200), "it is not an SQLite database"),
        (lambda p: p.write_bytes(os.urandom(8192)), "it is not an SQLite database"),
    ],
    ids=["directory", "csv", "random-bytes"],
)
def test_unopenable_paths_are_clean_errors_naming_the_file(tmp_path, make, message):
    path = tmp_path / "state.db"
    make(path)
    with pytest.raises(StoreError, match=rf"^Cannot open the state database '{path}': {message}"):
        SQLiteStore(path)


def test_a_deleted_database_is_reported_once_per_connection_not_silently_emptied(tmp_path, caplog):
    path = tmp_path / "state.db"
    store = SQLiteStore(path)
    # generous budgets: creating the new file is slow, and the machine may be loaded
    config = ComposeConfig(solver="independent", store_budget_ms=1e4, solver_grace_ms=1e4, scoring_budget_ms=1e4)
    composer = Composer(lambda r: [[0.1, 0.2]] * r.n_titles, store, config=config)
    req = {"member_id": 1, "session_id": 1,
           "titles": [{"title_id": "T", "image_ids": ["a", "b"], "row": 0, "col": 0}]}
    assert composer.compose(req).status == "ok"
    for p in tmp_path.iterdir():
        p.unlink()
    with caplog.at_level(logging.WARNING, logger="slate.stability"):
        d = composer.compose({**req, "session_id": 2})
    assert d.faults == (Fault.STORE_REPLACED,) and d.status == "degraded"
    assert "was deleted while in use" in d.fault_details[0]
    assert any("was deleted" in r.getMessage() for r in caplog.records)
    assert store.replaced_ == 1
    d = composer.compose({**req, "session_id": 3})  # the next page uses the new, empty file
    assert d.status == "ok" and d.previous_image_ids == (None,)
    assert path.exists()
    store.close()


def test_a_replaced_database_is_detected(tmp_path):
    path = tmp_path / "state.db"
    with SQLiteStore(tmp_path / "other.db") as other:
        other.put(5, {"T": state("other")})
    store = SQLiteStore(path)
    store.put(5, {"T": state("mine")})
    shutil.copy(tmp_path / "other.db", tmp_path / "copy.db")
    os.replace(tmp_path / "copy.db", path)  # e.g. a restore from a backup (without our WAL)
    for suffix in ("-wal", "-shm"):
        os.unlink(f"{path}{suffix}")
    with pytest.raises(StoreReplacedError, match="replaced by another file"):
        store.get(5, ["T"])
    assert store.get(5, ["T"])["T"].image_id == "other"
    store.close()


CREATOR = textwrap.dedent(
    """
    import sys
    from slate.stability import SQLiteStore, TitleState
    store = SQLiteStore(sys.argv[1])
    states, version = store.read(1, ["T"])
    store.put(int(sys.argv[2]), {"T": TitleState("x", 0.0, 1, 1, 1.0, True)})
    store.close()
    print("ok")
    """
)


def test_many_processes_creating_one_new_database_all_succeed(tmp_path):
    path = tmp_path / "new" / "state.db"
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    procs = [subprocess.Popen([sys.executable, "-c", CREATOR, str(path), str(i)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for i in range(8)]
    outs = [p.communicate(timeout=120) for p in procs]
    failed = [err for p, (_, err) in zip(procs, outs, strict=True) if p.returncode]
    assert not failed, failed[0]
    with SQLiteStore(path) as store:
        assert len(store) == 8


def test_a_version_1_file_is_upgraded_and_keeps_its_records(tmp_path):
    import sqlite3

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE title_state (member_id INTEGER NOT NULL, title_id TEXT NOT NULL, image_id TEXT NOT NULL,"
        " shown_since REAL NOT NULL, sessions INTEGER NOT NULL, last_session_id INTEGER NOT NULL,"
        " updated_at REAL NOT NULL, seen INTEGER NOT NULL, draw_at REAL, draw_sessions INTEGER NOT NULL,"
        " draw_propensity REAL NOT NULL, draw_explored INTEGER NOT NULL, PRIMARY KEY (member_id, title_id))"
        " WITHOUT ROWID; INSERT INTO title_state VALUES (1, 'T', 'old', 0, 1, 1, 5, 1, NULL, 0, 1, 0);"
        " PRAGMA user_version = 1;"
    )
    conn.close()
    with SQLiteStore(path) as store:
        states, version = store.read(1, ["T"])
        assert states["T"].image_id == "old" and version == 0
        assert store.write(1, {"T": state("new")}, 0) and store.read(1, ["T"])[1] == 1
    with pytest.raises(InvalidProblemError, match="schema version 99"):
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA user_version = 99")
        conn.commit()
        conn.close()
        SQLiteStore(path)


def test_a_held_lock_times_out_cleanly_after_retries(tmp_path):
    import sqlite3

    path = tmp_path / "state.db"
    store = SQLiteStore(path, timeout_ms=60)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    try:
        with pytest.raises(StoreTimeoutError, match=r"stayed locked for more than 60 ms \(write\)"):
            store.write(1, {"T": state()}, 0)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert store.write(1, {"T": state()}, 0)  # the lock is gone: the same write commits
    store.close()
