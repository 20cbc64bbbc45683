"""Where stability state lives between sessions: the :class:`StateStore` protocol and three stores.

=============  ==============================================================================
name           store
=============  ==============================================================================
``sqlite``     :class:`SQLiteStore`, the default: one embedded file (SQLite in WAL mode), safe
               under concurrent readers and one writer, durable across a process crash
``memory``     :class:`InMemoryStore`: a dict, for tests, simulations and single-process serving
``redis``      :class:`~slate.stability.RedisStore`: one Redis server (or cluster) shared by every
               serving process on every host (``make_store("redis://host:6379/0")``)
=============  ==============================================================================

A page reads the state of all its titles in one call (:meth:`StateStore.get`) and writes it back
in one call (:meth:`StateStore.put`): one round trip each way per page.

**Versions (compare-and-set).** The three stores are also :class:`VersionedStateStore`: every
member has a version, a counter that each committed write increments. :meth:`~VersionedStateStore.read`
returns the member's records *and* version; :meth:`~VersionedStateStore.write` commits only if the
version is still the one read, and otherwise writes nothing and returns False. Two processes
serving the same member at once cannot overwrite each other's page unseen (a *lost update*):
the second write fails, and :class:`slate.serve.Composer` re-plans the page against the fresh
state (fault ``store_conflict``). ``put`` is a blind write (it increments the version too, so a
concurrent conditional write notices it).
"""

from __future__ import annotations

import logging
import math
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from slate._internal.threads import lower_thread_priority
from slate.errors import (
    InvalidProblemError,
    StoreError,
    StoreOpenError,
    StoreReplacedError,
    StoreTimeoutError,
    UnknownStoreError,
)
from slate.registry import Registry
from slate.stability.state import TitleState

__all__ = [
    "InMemoryStore",
    "SQLiteStore",
    "StateStore",
    "VersionedStateStore",
    "available_stores",
    "make_store",
    "register_store",
]


@runtime_checkable
class StateStore(Protocol):
    """Anything that keeps :class:`TitleState` records keyed by ``(member_id, title_id)``.

    A store may raise on failure (a locked or broken database); :func:`slate.serve.compose`
    catches that, serves a valid page anyway and reports the failure in the decision's status.
    """

    def get(self, member_id: int, title_ids: Sequence[str]) -> dict[str, TitleState]:
        """The records of ``member_id`` for ``title_ids`` (titles without one are absent)."""
        ...

    def put(self, member_id: int, states: Mapping[str, TitleState]) -> None:
        """Insert or replace the records of ``member_id`` for the titles in ``states``, atomically."""
        ...

    def purge(self, before: float) -> int:
        """Delete records last updated before ``before`` (Unix seconds); return how many."""
        ...

    def close(self) -> None:
        """Release the store's resources."""
        ...


@runtime_checkable
class VersionedStateStore(StateStore, Protocol):
    """A :class:`StateStore` with a per-member version, for conditional writes (compare-and-set).

    A member never written has version 0; every committed write (``write`` or ``put``) adds one.
    :func:`slate.testing.stores.check_store` checks a store against this contract.
    """

    def read(self, member_id: int, title_ids: Sequence[str]) -> tuple[dict[str, TitleState], int]:
        """The records of ``member_id`` for ``title_ids`` and the member's version, read atomically."""
        ...

    def write(self, member_id: int, states: Mapping[str, TitleState], version: int) -> bool:
        """Write ``states`` atomically if the member's version is still ``version``.

        Returns True when committed (the version is then ``version + 1``), False when another
        write came first (nothing is written).
        """
        ...


class InMemoryStore:
    """A dictionary store (thread-safe; lost when the process ends).

    Examples
    --------
    >>> from slate.stability import InMemoryStore, TitleState
    >>> store = InMemoryStore()
    >>> store.put(1, {"T1": TitleState("T1-a", 0.0, 1, 1, 0.0, True)})
    >>> sorted(store.get(1, ["T1", "T2"]))
    ['T1']
    >>> store.purge(before=10.0), store.get(1, ["T1"])
    (1, {})
    >>> states, version = store.read(1, ["T1"])
    >>> store.write(1, {"T1": TitleState("T1-b", 0.0, 1, 2, 20.0, True)}, version)
    True
    >>> store.write(1, {"T1": TitleState("T1-c", 0.0, 1, 2, 20.0, True)}, version)  # stale version
    False
    """

    name = "memory"

    def __init__(self) -> None:
        self._data: dict[int, dict[str, TitleState]] = {}
        self._versions: dict[int, tuple[int, float]] = {}  # member -> (version, latest updated_at)
        self._lock = threading.RLock()
        self.conflicts_ = 0

    # read and write go through get and put (under the same re-entrant lock), so a subclass that
    # overrides get or put (e.g. to inject faults in a test) is used by compose too
    def read(self, member_id: int, title_ids: Sequence[str]) -> tuple[dict[str, TitleState], int]:
        with self._lock:
            return self.get(member_id, title_ids), self._versions.get(member_id, (0, 0.0))[0]

    def write(self, member_id: int, states: Mapping[str, TitleState], version: int) -> bool:
        with self._lock:
            if self._versions.get(member_id, (0, 0.0))[0] != version:
                self.conflicts_ += 1
                return False
            self.put(member_id, states)
            if not states:  # put() skips an empty write; a conditional one still moves the version
                current, latest = self._versions.get(member_id, (0, -math.inf))
                self._versions[member_id] = (current + 1, latest)
            return True

    def get(self, member_id: int, title_ids: Sequence[str]) -> dict[str, TitleState]:
        with self._lock:
            member = self._data.get(member_id)
            if not member:
                return {}
            return {t: member[t] for t in title_ids if t in member}

    def put(self, member_id: int, states: Mapping[str, TitleState]) -> None:
        if not states:
            return
        with self._lock:
            current, latest = self._versions.get(member_id, (0, -math.inf))
            self._data.setdefault(member_id, {}).update(states)
            latest = max(latest, max(s.updated_at for s in states.values()))
            self._versions[member_id] = (current + 1, latest)

    def purge(self, before: float) -> int:
        removed = 0
        with self._lock:
            for member_id in [m for m, (_, latest) in self._versions.items() if latest < before]:
                del self._versions[member_id]  # every record of the member is older than ``before`` too
            for member_id in list(self._data):
                member = self._data[member_id]
                old = [t for t, s in member.items() if s.updated_at < before]
                for t in old:
                    del member[t]
                removed += len(old)
                if not member:
                    del self._data[member_id]
        return removed

    def __len__(self) -> int:
        with self._lock:
            return sum(len(m) for m in self._data.values())

    def close(self) -> None:
        """Nothing to release."""


_SCHEMA_VERSION = 2  # 2: member_version (compare-and-set); a version-1 file is upgraded on open
_COLUMNS = (
    "image_id",
    "shown_since",
    "sessions",
    "last_session_id",
    "updated_at",
    "seen",
    "draw_at",
    "draw_sessions",
    "draw_propensity",
    "draw_explored",
)
_CREATE_STATE = """
CREATE TABLE IF NOT EXISTS title_state (
    member_id INTEGER NOT NULL,
    title_id TEXT NOT NULL,
    image_id TEXT NOT NULL,
    shown_since REAL NOT NULL,
    sessions INTEGER NOT NULL,
    last_session_id INTEGER NOT NULL,
    updated_at REAL NOT NULL,
    seen INTEGER NOT NULL,
    draw_at REAL,
    draw_sessions INTEGER NOT NULL,
    draw_propensity REAL NOT NULL,
    draw_explored INTEGER NOT NULL,
    PRIMARY KEY (member_id, title_id)
) WITHOUT ROWID
"""
_CREATE_VERSION = """
CREATE TABLE IF NOT EXISTS member_version (
    member_id INTEGER PRIMARY KEY,
    version INTEGER NOT NULL,
    updated_at REAL NOT NULL
)
"""
_PUT = (
    f"INSERT OR REPLACE INTO title_state (member_id, title_id, {', '.join(_COLUMNS)}) "
    f"VALUES ({', '.join('?' * (len(_COLUMNS) + 2))})"
)
_VERSION = "SELECT version FROM member_version WHERE member_id = ?"
# the conditional bump: one row changed when the member is still at the version read
_BUMP = "UPDATE member_version SET version = version + 1, updated_at = max(updated_at, ?) WHERE member_id = ? AND version = ?"
_FIRST = "INSERT INTO member_version (member_id, version, updated_at) VALUES (?, 1, ?) ON CONFLICT DO NOTHING"
_BLIND = (
    "INSERT INTO member_version (member_id, version, updated_at) VALUES (?, 1, ?) ON CONFLICT(member_id) "
    "DO UPDATE SET version = version + 1, updated_at = max(updated_at, excluded.updated_at)"
)
_OPEN_TIMEOUT_S = 30.0  # opening waits this long for other processes creating or upgrading the file

_log = logging.getLogger("slate.stability")


def _busy(err: sqlite3.Error) -> bool:
    """SQLITE_BUSY / SQLITE_LOCKED: another connection holds the lock (worth a retry)."""
    code = getattr(err, "sqlite_errorcode", None)
    if code is not None:
        return int(code) & 0xFF in (5, 6)
    text = str(err).lower()
    return "locked" in text or "busy" in text


def _file_id(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _row_to_state(row: tuple[Any, ...]) -> TitleState:
    # SQLite stores NaN as NULL: no draw held
    return TitleState(
        row[1],
        row[2],
        row[3],
        row[4],
        row[5],
        bool(row[6]),
        math.nan if row[7] is None else row[7],
        row[8],
        row[9],
        bool(row[10]),
    )


def _open_failure(path: str, err: BaseException) -> str:
    """One line saying why the state database ``path`` cannot be opened."""
    p = Path(path)
    text = " ".join(str(err).split())
    if p.is_dir():
        why = "it is a folder"
    elif "readonly" in text.replace(" ", "").lower() or (p.exists() and not os.access(p, os.W_OK)):
        why = "it is read-only (the store writes every page's state)"
    elif "not a database" in text or "malformed" in text:
        why = "it is not an SQLite database (or it is damaged)"
    else:
        why = text or type(err).__name__
    return f"Cannot open the state database '{path}': {why}."


class SQLiteStore:
    """Stability state in one embedded SQLite file (WAL mode): the default store.

    Each thread (and each process) gets its own connection. In WAL mode readers never block
    and are never blocked by the writer; one writer at a time commits (others wait up to
    ``timeout_ms``, retrying SQLite's "database is locked" meanwhile, then the write fails with
    :class:`~slate.errors.StoreTimeoutError` and :func:`~slate.serve.compose` reports it). A page's
    records and the member's version are read in one statement and written in one transaction,
    so a reader sees all of a page's update or none of it, and a conditional write
    (:meth:`write`) commits only if no other write for the member came after its read. Many
    processes may create or open the same new file at once (opening waits for the others).

    **A deleted or replaced file is reported.** Each connection remembers the device and inode
    of the file it opened; every call checks them (one ``stat``). When the file was deleted or
    replaced, the call raises :class:`~slate.errors.StoreReplacedError` (compose reports
    ``store_replaced``), logs a warning, counts it in ``replaced_``, and the next call opens the
    file now at ``path`` (a new, empty one if it was deleted). A file that cannot be opened (a
    directory, a read-only file, not a database) raises :class:`~slate.errors.StoreError` naming it. Committed pages survive a crash of the process (``synchronous=NORMAL`` in WAL mode;
    ``durable=True`` also survives an OS crash or power loss, at the cost of an fsync per page).

    **Checkpoints off the request path.** In WAL mode, commits append to the ``-wal`` file and a
    *checkpoint* copies them back into the database, with an fsync of each file. By default
    SQLite runs it inside the commit that crosses 1000 WAL pages, so one page write in a few
    hundred pays tens of milliseconds. Here (``checkpoint="background"``) the page writes never
    checkpoint: every ``checkpoint_every`` commits a writer-owned thread, at lowered CPU
    priority, runs a passive checkpoint on its own connection (readers and the writer go on
    meanwhile). Should it fall behind by ``20 * checkpoint_every`` commits, a write checkpoints
    itself. A crash at any point loses nothing committed: the WAL is replayed on the next open.
    ``checkpoint="inline"`` keeps SQLite's default.

    Parameters
    ----------
    path : str or path-like
        The database file (created if missing); ``":memory:"`` for a private in-memory database.
    timeout_ms : float, default 200
        How long a read or write waits for another connection's lock before failing.
    durable : bool, default False
        ``synchronous=FULL`` instead of ``NORMAL``.
    checkpoint : {"background", "inline"}, default "background"
        Who checkpoints the WAL: a background thread of this store, or the committing write
        (SQLite's automatic checkpoint at 1000 WAL pages).
    checkpoint_every : int, default 100
        Commits between two background checkpoints.

    Attributes
    ----------
    checkpoints_ : int
        Background (or fallback) checkpoints run.
    checkpoint_errors_ : int
        Checkpoints that failed with an error other than a held lock; the next one retries.
    checkpoints_skipped_ : int
        Checkpoints that found the database locked by another connection (normal under load);
        the next wake-up retries.
    conflicts_ : int
        Conditional writes refused because the member's version had moved on.
    lock_retries_ : int
        Statements retried after SQLite reported the database locked or busy.
    replaced_ : int
        Times the file was found deleted or replaced.

    Examples
    --------
    >>> import os, tempfile
    >>> from slate.stability import SQLiteStore, TitleState
    >>> store = SQLiteStore(os.path.join(tempfile.mkdtemp(), "state.db"))
    >>> store.put(42, {"T1": TitleState("T1-a", 0.0, 2, 9, 5.0, True)})
    >>> store.get(42, ["T1", "T9"])["T1"].sessions
    2
    >>> store.journal_mode
    'wal'
    >>> states, version = store.read(42, ["T1"])
    >>> version, store.write(42, states, version), store.write(42, states, version)
    (1, True, False)
    >>> store.close()
    """

    name = "sqlite"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        timeout_ms: float = 200.0,
        durable: bool = False,
        checkpoint: Literal["background", "inline"] = "background",
        checkpoint_every: int = 100,
    ) -> None:
        if not isinstance(timeout_ms, (int, float)) or not timeout_ms >= 0:
            raise InvalidProblemError(
                f"The 'timeout_ms' parameter of SQLiteStore must be a number >= 0; got {timeout_ms!r} instead."
            )
        if checkpoint not in ("background", "inline"):
            raise InvalidProblemError(
                f"The 'checkpoint' parameter of SQLiteStore must be 'background' or 'inline'; "
                f"got {checkpoint!r} instead."
            )
        if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) or checkpoint_every < 1:
            raise InvalidProblemError(
                f"The 'checkpoint_every' parameter of SQLiteStore must be an integer >= 1; "
                f"got {checkpoint_every!r} instead."
            )
        self.checkpoint = checkpoint
        self.checkpoint_every = checkpoint_every
        self.checkpoints_ = 0
        self.checkpoint_errors_ = 0
        self.checkpoints_skipped_ = 0
        self.conflicts_ = 0
        self.lock_retries_ = 0
        self.replaced_ = 0
        self._background = checkpoint == "background" and str(path) != ":memory:"
        self._commits = 0  # commits by this process since it opened the store
        self._checkpointed = 0  # value of _commits when the last checkpoint started
        self._wake = threading.Event()
        self._stopping = False
        self._checkpointer: threading.Thread | None = None
        self._checkpointer_pid = -1
        self.path = str(path)
        self.timeout_ms = float(timeout_ms)
        self.durable = bool(durable)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._get_sql: dict[int, str] = {}
        self._connection()  # create the file and the table now, so errors surface here

    # ------------------------------------------------------------------ connections
    def _connection(self) -> sqlite3.Connection:
        """This thread's connection, after checking the file is still the one it opened."""
        local = self._local
        conn: sqlite3.Connection | None = getattr(local, "conn", None)
        if conn is not None and local.pid == os.getpid():
            if self.path == ":memory:":
                return conn
            now = _file_id(self.path)
            if now == local.file_id:
                return conn
            self._drop(conn)
            with self._lock:
                self.replaced_ += 1
            what = "deleted" if now is None else "replaced by another file"
            _log.warning("slate: the state database %s was %s while in use", self.path, what)
            raise StoreReplacedError(
                f"The state database {self.path} was {what} while in use; the state written "
                f"before is not in the file now at that path (the next call opens it)."
            )
        return self._open()

    def _drop(self, conn: sqlite3.Connection) -> None:
        self._local.conn = None
        with self._lock:
            if conn in self._connections:
                self._connections.remove(conn)
        try:
            conn.close()
        except sqlite3.Error:  # pragma: no cover - closing is best effort
            pass

    def _open(self) -> sqlite3.Connection:
        """Open this thread's connection, waiting (with retries) for processes creating the file."""
        deadline = time.monotonic() + max(_OPEN_TIMEOUT_S, self.timeout_ms / 1000.0)
        delay = 0.002
        while True:
            try:
                conn = self._try_open()
                break
            except sqlite3.Error as err:
                if not (_busy(err) and time.monotonic() < deadline):
                    raise StoreOpenError(_open_failure(self.path, err)) from None
            except OSError as err:
                raise StoreOpenError(_open_failure(self.path, err)) from None
            time.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(2 * delay, 0.1)
        self._local.conn = conn
        self._local.pid = os.getpid()
        self._local.file_id = _file_id(self.path) if self.path != ":memory:" else None
        with self._lock:
            self._connections.append(conn)
        return conn

    def _try_open(self) -> sqlite3.Connection:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path,
            timeout=self.timeout_ms / 1000.0,
            isolation_level=None,  # transactions are explicit
            check_same_thread=False,  # used by its own thread only; close() may run elsewhere
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout_ms)}")
            if self.path != ":memory:":
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise sqlite3.OperationalError("cannot switch to WAL mode (attempt to write a readonly database?)")
            conn.execute(f"PRAGMA synchronous = {'FULL' if self.durable else 'NORMAL'}")
            if self._background:
                conn.execute("PRAGMA wal_autocheckpoint = 0")  # the checkpointer thread does it
            self._ensure_schema(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _ensure_schema(self, conn: sqlite3.Connection) -> None:
        """Create (or upgrade version 1 to) the current schema, in one write transaction."""
        if conn.execute("PRAGMA user_version").fetchone()[0] == _SCHEMA_VERSION:
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version in (0, 1):
                conn.execute(_CREATE_STATE)
                conn.execute(_CREATE_VERSION)
                conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        if version not in (0, 1, _SCHEMA_VERSION):
            raise InvalidProblemError(
                f"The state database {self.path} has schema version {version}; this slate reads "
                f"version {_SCHEMA_VERSION}."
            )

    def _retrying(self, what: str, run: Callable[[sqlite3.Connection], Any]) -> Any:
        """``run(conn)``, retried while SQLite reports the database locked, up to ``timeout_ms``."""
        deadline = 0.0
        delay = 0.0005
        while True:
            conn = self._connection()
            try:
                return run(conn)
            except sqlite3.Error as err:
                if conn.in_transaction:
                    try:
                        conn.execute("ROLLBACK")
                    except sqlite3.Error:  # pragma: no cover - the connection is broken
                        pass
                if not _busy(err):
                    raise StoreError(f"The state database {self.path}: {what} failed: {err}.") from err
                now = time.monotonic()
                if not deadline:
                    deadline = now + self.timeout_ms / 1000.0
                if now >= deadline:
                    raise StoreTimeoutError(
                        f"The state database {self.path} stayed locked for more than "
                        f"{self.timeout_ms:g} ms ({what})."
                    ) from err
                with self._lock:
                    self.lock_retries_ += 1
                time.sleep(min(delay, deadline - now) * random.uniform(0.5, 1.0))
                delay = min(2 * delay, 0.01)

    @property
    def journal_mode(self) -> str:
        """The SQLite journal mode in force (``"wal"`` for a file)."""
        return str(self._connection().execute("PRAGMA journal_mode").fetchone()[0]).lower()

    # ------------------------------------------------------------------ protocol
    def _select(self, n: int) -> str:
        sql = self._get_sql.get(n)
        if sql is None:
            blanks = ", ".join(["NULL"] * (len(_COLUMNS) - 1))
            sql = (
                f"SELECT NULL, version, {blanks} FROM member_version WHERE member_id = ? UNION ALL "
                f"SELECT title_id, {', '.join(_COLUMNS)} FROM title_state "
                f"WHERE member_id = ? AND title_id IN ({', '.join('?' * n)})"
            )
            self._get_sql[n] = sql
        return sql

    def read(self, member_id: int, title_ids: Sequence[str]) -> tuple[dict[str, TitleState], int]:
        # one statement: the version and the records come from one snapshot of the database
        sql = self._select(len(title_ids))
        args = (member_id, member_id, *title_ids)
        rows = self._retrying("read", lambda conn: conn.execute(sql, args).fetchall())
        version = 0
        states = {}
        for row in rows:
            if row[0] is None:
                version = int(row[1])
            else:
                states[row[0]] = _row_to_state(row)
        return states, version

    def get(self, member_id: int, title_ids: Sequence[str]) -> dict[str, TitleState]:
        if len(title_ids) == 0:
            return {}
        return self.read(member_id, title_ids)[0]

    def write(self, member_id: int, states: Mapping[str, TitleState], version: int) -> bool:
        ok = bool(self._write(member_id, states, int(version)))
        if not ok:
            with self._lock:
                self.conflicts_ += 1
        return ok

    def put(self, member_id: int, states: Mapping[str, TitleState]) -> None:
        if states:
            self._write(member_id, states, None)

    def _write(self, member_id: int, states: Mapping[str, TitleState], version: int | None) -> bool:
        rows = [
            (
                member_id,
                title,
                s.image_id,
                s.shown_since,
                s.sessions,
                s.last_session_id,
                s.updated_at,
                int(s.seen),
                None if math.isnan(s.draw_at) else s.draw_at,
                s.draw_sessions,
                s.draw_propensity,
                int(s.draw_explored),
            )
            for title, s in states.items()
        ]
        latest = max((s.updated_at for s in states.values()), default=0.0)

        def run(conn: sqlite3.Connection) -> bool:
            conn.execute("BEGIN IMMEDIATE")
            if version is None:
                conn.execute(_BLIND, (member_id, latest))
                ok = True
            elif version == 0:
                ok = conn.execute(_FIRST, (member_id, latest)).rowcount == 1
            else:
                ok = conn.execute(_BUMP, (latest, member_id, version)).rowcount == 1
            if ok:
                conn.executemany(_PUT, rows)
                conn.execute("COMMIT")
            else:
                conn.execute("ROLLBACK")
            return ok

        ok = bool(self._retrying("write", run))
        if ok and self._background:
            self._committed(self._connection())
        return ok

    # ------------------------------------------------------------------ checkpoints
    def _committed(self, conn: sqlite3.Connection) -> None:
        """Count a commit; wake the checkpointer every ``checkpoint_every`` commits."""
        with self._lock:
            self._commits += 1
            behind = self._commits - self._checkpointed
        if behind < self.checkpoint_every:
            return
        if self._checkpointer_pid != os.getpid() or self._checkpointer is None:
            self._start_checkpointer()
        if behind >= 20 * self.checkpoint_every:  # the checkpointer is not keeping up: do it here
            try:
                self._run_checkpoint(conn)
            except Exception:  # the page's write is committed: a failed checkpoint must not fail it
                with self._lock:
                    self.checkpoint_errors_ += 1
        else:
            self._wake.set()

    def _start_checkpointer(self) -> None:
        with self._lock:
            if self._checkpointer_pid == os.getpid() and self._checkpointer is not None:
                return
            self._stopping = False
            self._wake.clear()
            self._checkpointer = threading.Thread(
                target=self._checkpoint_loop, name="slate-sqlite-checkpoint", daemon=True
            )
            self._checkpointer_pid = os.getpid()
            self._checkpointer.start()

    def _checkpoint_loop(self) -> None:
        lower_thread_priority()
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stopping:
                return
            try:
                self._run_checkpoint(self._connection())
            except Exception:  # pragma: no cover - e.g. the file was removed; the next one retries
                with self._lock:
                    self.checkpoint_errors_ += 1

    def _run_checkpoint(self, conn: sqlite3.Connection) -> None:
        with self._lock:
            start = self._commits
        try:
            busy = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[0]
        except sqlite3.Error as err:
            if not _busy(err):
                raise
            busy = 1  # another connection held the lock: not an error, the next wake-up retries
        with self._lock:
            if busy:
                self.checkpoints_skipped_ += 1
            else:
                self._checkpointed = max(self._checkpointed, start)
                self.checkpoints_ += 1

    def purge(self, before: float) -> int:
        def run(conn: sqlite3.Connection) -> int:
            conn.execute("BEGIN IMMEDIATE")
            removed = conn.execute("DELETE FROM title_state WHERE updated_at < ?", (float(before),)).rowcount
            # a version row is as recent as the member's latest record: its records are all gone
            conn.execute("DELETE FROM member_version WHERE updated_at < ?", (float(before),))
            conn.execute("COMMIT")
            return int(removed)

        return int(self._retrying("purge", run))

    def __len__(self) -> int:
        return int(self._connection().execute("SELECT COUNT(*) FROM title_state").fetchone()[0])

    def close(self) -> None:
        """Stop the checkpointer and close every connection this store opened (in any thread)."""
        thread = self._checkpointer
        if thread is not None and self._checkpointer_pid == os.getpid():
            self._stopping = True
            self._wake.set()
            thread.join(timeout=10.0)
        self._checkpointer = None
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            try:
                conn.close()
            except sqlite3.Error:  # pragma: no cover - closing is best effort
                pass
        self._local = threading.local()

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


STORES: Registry[StateStore] = Registry("store", UnknownStoreError)
"""The state-store registry (see :mod:`slate.registry`)."""


def register_store(name: str, factory: Callable[..., StateStore]) -> None:
    """Register a store factory under ``name`` (``factory(**options)`` returns a :class:`StateStore`)."""
    STORES.register(name, factory)


def available_stores() -> list[str]:
    """Names accepted by :func:`make_store`.

    Examples
    --------
    >>> available_stores()
    ['memory', 'redis', 'sqlite']
    """
    return STORES.names()


def make_store(name: str = "sqlite", **options: Any) -> StateStore:
    """Build the store registered as ``name``, or the one a URL names.

    ``"sqlite"`` needs ``path=...``; ``"redis"`` takes ``url=...``. A URL works too:
    ``"redis://host:6379/0"`` (also ``rediss://`` and ``unix://``) for a
    :class:`~slate.stability.RedisStore`, ``"sqlite:///state.db"`` (relative) or ``"sqlite:////abs/state.db"`` for an
    :class:`SQLiteStore`; ``options`` go to the store.

    Examples
    --------
    >>> make_store("memory").get(1, ["T1"])
    {}
    >>> import os, tempfile
    >>> store = make_store("sqlite:///" + os.path.join(tempfile.mkdtemp(), "state.db"))
    >>> type(store).__name__
    'SQLiteStore'
    >>> store.close()
    """
    scheme, sep, rest = name.partition("://")
    if sep:
        if scheme in ("redis", "rediss", "unix"):
            return STORES.create("redis", url=name, **options)
        if scheme == "sqlite" and rest:
            return STORES.create("sqlite", path=rest[1:] if rest.startswith("/") and rest != "/" else rest, **options)
        raise UnknownStoreError(
            f"The store URL {name!r} has an unknown scheme {scheme!r}; use redis://, rediss://, unix:// "
            f"or sqlite:///path."
        )
    if name not in STORES:
        raise UnknownStoreError(
            f"The 'name' parameter of make_store must be one of {available_stores()} or a store URL; "
            f"got {name!r} instead."
        )
    return STORES.create(name, **options)


def _redis_store(**options: Any) -> StateStore:
    from slate.stability.redis_store import RedisStore  # redis-py is an optional dependency

    return RedisStore(**options)


register_store("memory", InMemoryStore)
register_store("sqlite", SQLiteStore)
register_store("redis", _redis_store)
