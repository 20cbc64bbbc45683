"""Where stability state lives between sessions: the :class:`StateStore` protocol and two stores.

=============  ==============================================================================
name           store
=============  ==============================================================================
``sqlite``     :class:`SQLiteStore`, the default: one embedded file (SQLite in WAL mode), safe
               under concurrent readers and one writer, durable across a process crash
``memory``     :class:`InMemoryStore`: a dict, for tests, simulations and single-process serving
=============  ==============================================================================

A page reads the state of all its titles in one call (:meth:`StateStore.get`) and writes it back
in one call (:meth:`StateStore.put`): one round trip each way per page.
"""

from __future__ import annotations

import math
import os
import sqlite3
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from slate.errors import InvalidProblemError, StoreOpenError
from slate.stability.state import TitleState

__all__ = [
    "InMemoryStore",
    "SQLiteStore",
    "StateStore",
    "available_stores",
    "make_store",
    "register_store",
]


def _lower_thread_priority(increment: int = 10) -> None:
    """Lower the calling thread's CPU priority (Linux: per-thread nice), best effort.

    Background workers (this store's checkpointer, :class:`slate.serve.DecisionLogger`'s writer)
    call it on themselves so that, on a busy core, the scheduler runs request threads first.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + increment))
    except (AttributeError, OSError):  # pragma: no cover - not permitted or not supported
        pass


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
    """

    name = "memory"

    def __init__(self) -> None:
        self._data: dict[int, dict[str, TitleState]] = {}
        self._lock = threading.Lock()

    def get(self, member_id: int, title_ids: Sequence[str]) -> dict[str, TitleState]:
        with self._lock:
            member = self._data.get(member_id)
            if not member:
                return {}
            return {t: member[t] for t in title_ids if t in member}

    def put(self, member_id: int, states: Mapping[str, TitleState]) -> None:
        with self._lock:
            self._data.setdefault(member_id, {}).update(states)

    def purge(self, before: float) -> int:
        removed = 0
        with self._lock:
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


_SCHEMA_VERSION = 1
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
_CREATE = f"""
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
) WITHOUT ROWID;
PRAGMA user_version = {_SCHEMA_VERSION};
"""
_PUT = (
    f"INSERT OR REPLACE INTO title_state (member_id, title_id, {', '.join(_COLUMNS)}) "
    f"VALUES ({', '.join('?' * (len(_COLUMNS) + 2))})"
)


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
    ``timeout_ms``, then the write fails and :func:`~slate.serve.compose` reports it). A page's
    records are written in one transaction, so a reader sees all of a page's update or none of
    it. Committed pages survive a crash of the process (``synchronous=NORMAL`` in WAL mode;
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
    timeout_ms : float, default 50
        How long a write waits for another writer's lock before failing.
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
        Checkpoints that failed (e.g. the database was locked); the next one retries.

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
    >>> store.close()
    """

    name = "sqlite"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        timeout_ms: float = 50.0,
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
        try:
            self._connection()  # create the file and the table now, so errors surface here
        except (sqlite3.Error, OSError) as err:
            raise StoreOpenError(_open_failure(self.path, err)) from None

    # ------------------------------------------------------------------ connections
    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path,
            timeout=self.timeout_ms / 1000.0,
            isolation_level=None,  # transactions are explicit
            check_same_thread=False,  # used by its own thread only; close() may run elsewhere
        )
        conn.execute(f"PRAGMA busy_timeout = {int(self.timeout_ms)}")
        if self.path != ":memory:":
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError(f"SQLiteStore could not switch {self.path} to WAL mode")
        conn.execute(f"PRAGMA synchronous = {'FULL' if self.durable else 'NORMAL'}")
        if self._background:
            conn.execute("PRAGMA wal_autocheckpoint = 0")  # the checkpointer thread does it
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            conn.executescript(_CREATE)
        elif version != _SCHEMA_VERSION:
            conn.close()
            raise InvalidProblemError(
                f"The state database {self.path} has schema version {version}; this slate reads "
                f"version {_SCHEMA_VERSION}."
            )
        self._local.conn = conn
        self._local.pid = os.getpid()
        with self._lock:
            self._connections.append(conn)
        return conn

    @property
    def journal_mode(self) -> str:
        """The SQLite journal mode in force (``"wal"`` for a file)."""
        return str(self._connection().execute("PRAGMA journal_mode").fetchone()[0]).lower()

    # ------------------------------------------------------------------ protocol
    def get(self, member_id: int, title_ids: Sequence[str]) -> dict[str, TitleState]:
        n = len(title_ids)
        if n == 0:
            return {}
        sql = self._get_sql.get(n)
        if sql is None:
            sql = (
                f"SELECT title_id, {', '.join(_COLUMNS)} FROM title_state "
                f"WHERE member_id = ? AND title_id IN ({', '.join('?' * n)})"
            )
            self._get_sql[n] = sql
        rows = self._connection().execute(sql, (member_id, *title_ids)).fetchall()
        return {row[0]: _row_to_state(row) for row in rows}

    def put(self, member_id: int, states: Mapping[str, TitleState]) -> None:
        if not states:
            return
        conn = self._connection()
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
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(_PUT, rows)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        if self._background:
            self._committed(conn)

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
            self._run_checkpoint(conn)
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
        _lower_thread_priority()
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
        except sqlite3.Error:
            busy = 1
        with self._lock:
            if busy:
                self.checkpoint_errors_ += 1
            else:
                self._checkpointed = max(self._checkpointed, start)
                self.checkpoints_ += 1

    def purge(self, before: float) -> int:
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            cursor = conn.execute("DELETE FROM title_state WHERE updated_at < ?", (float(before),))
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return int(cursor.rowcount)

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


_REGISTRY: dict[str, Callable[..., StateStore]] = {}


def register_store(name: str, factory: Callable[..., StateStore]) -> None:
    """Register a store factory under ``name`` (``factory(**options)`` returns a :class:`StateStore`)."""
    _REGISTRY[name] = factory


def available_stores() -> list[str]:
    """Names accepted by :func:`make_store`.

    Examples
    --------
    >>> available_stores()
    ['memory', 'sqlite']
    """
    return sorted(_REGISTRY)


def make_store(name: str = "sqlite", **options: Any) -> StateStore:
    """Build the store registered as ``name`` (``"sqlite"`` needs ``path=...``).

    Examples
    --------
    >>> make_store("memory").get(1, ["T1"])
    {}
    """
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise InvalidProblemError(
            f"The 'name' parameter of make_store must be one of {available_stores()}; got {name!r} instead."
        ) from None
    return factory(**options)


register_store("memory", InMemoryStore)
register_store("sqlite", SQLiteStore)
