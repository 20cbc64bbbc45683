"""The state-store contract as runnable checks, and a throw-away Redis server for tests.

Every store slate ships (memory, SQLite, Redis) passes :func:`check_store`; a third-party
:class:`~slate.stability.StateStore` can be checked the same way::

    from slate.testing import check_store
    check_store(lambda: MyStore(...))   # a fresh, empty store per call

Each check takes a factory returning a fresh, empty store (it closes the stores it makes) and
raises :class:`AssertionError` naming what broke. Checks of versions and compare-and-set run only
on a :class:`~slate.stability.VersionedStateStore`. :data:`STORE_CHECKS` lists them, for one test
per check (``pytest.mark.parametrize("check", STORE_CHECKS)``).

Examples
--------
>>> from slate.stability import InMemoryStore
>>> check_store(InMemoryStore)
['stores_follow_the_protocol', 'round_trip_keeps_every_field', 'members_are_separate_and_put_merges', 'purge_removes_only_old_records', 'versions_start_at_zero_and_count_writes', 'stale_write_changes_nothing', 'no_lost_updates_under_threads']
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from slate.stability.state import TitleState
from slate.stability.store import StateStore, VersionedStateStore

__all__ = ["STORE_CHECKS", "check_store", "free_port", "redis_cluster", "redis_server"]

StoreFactory = Callable[[], Any]


def _state(image: str = "a", *, updated_at: float = 10.0, **kw: Any) -> TitleState:
    base: dict[str, Any] = dict(
        image_id=image,
        shown_since=1.5,
        sessions=2,
        last_session_id=-(2**62),
        updated_at=updated_at,
        seen=True,
    )
    base.update(kw)
    return TitleState(**base)


def _same(a: TitleState, b: TitleState) -> bool:
    """Field-wise equality, with NaN == NaN (``draw_at`` of a title without a held draw)."""
    return all(
        (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y)) or x == y
        for x, y in zip(a, b, strict=True)
    )


@contextlib.contextmanager
def _opened(factory: StoreFactory) -> Iterator[Any]:
    store = factory()
    try:
        yield store
    finally:
        store.close()


def check_stores_follow_the_protocol(factory: StoreFactory) -> None:
    """The store is a :class:`~slate.stability.StateStore`; an unknown member reads as empty."""
    with _opened(factory) as store:
        assert isinstance(store, StateStore), f"{type(store).__name__} lacks get/put/purge/close"
        assert store.get(1, ["T1"]) == {}, "a member never written must read as {}"
        assert store.get(1, []) == {}, "reading no titles must return {}"


def check_round_trip_keeps_every_field(factory: StoreFactory) -> None:
    """Every field comes back equal and of its type (NaN ``draw_at``, bools, extreme integers, Unicode)."""
    records = {
        "T1": _state("a"),
        "Tß-✓": _state("b-é", draw_at=5.25, draw_sessions=3, draw_propensity=0.125, draw_explored=True, seen=False),
        "T3": _state("c", sessions=2**62, last_session_id=2**63 - 1, shown_since=-1e300),
    }
    member = 2**63 - 1
    with _opened(factory) as store:
        store.put(member, records)
        got = store.get(member, [*records, "absent"])
        assert sorted(got) == sorted(records), f"titles read back {sorted(got)}, written {sorted(records)}"
        for title, record in records.items():
            assert _same(got[title], record), f"{title}: wrote {record}, read {got[title]}"
            assert type(got[title].seen) is bool and type(got[title].draw_explored) is bool, "seen/explored not bool"
        assert math.isnan(got["T1"].draw_at), "a NaN draw_at (no held draw) must read back as NaN"


def check_members_are_separate_and_put_merges(factory: StoreFactory) -> None:
    """``put`` replaces the titles it names, keeps the member's other titles, and touches no other member."""
    with _opened(factory) as store:
        store.put(1, {"T1": _state("a"), "T2": _state("b")})
        store.put(2, {"T1": _state("x")})
        store.put(1, {"T1": _state("c")})
        one = store.get(1, ["T1", "T2"])
        assert {t: s.image_id for t, s in one.items()} == {"T1": "c", "T2": "b"}, f"member 1 reads {one}"
        assert store.get(2, ["T1", "T2"])["T1"].image_id == "x", "member 2 was changed by member 1's writes"
        assert store.get(3, ["T1"]) == {}


def check_purge_removes_only_old_records(factory: StoreFactory) -> None:
    """``purge(before)`` deletes exactly the records updated before ``before`` and says how many."""
    with _opened(factory) as store:
        store.put(1, {"old": _state(updated_at=5.0), "new": _state(updated_at=50.0)})
        store.put(2, {"old": _state(updated_at=1.0)})
        removed = store.purge(before=10.0)
        assert removed == 2, f"purge removed {removed} records, expected 2"
        assert sorted(store.get(1, ["old", "new"])) == ["new"]
        assert store.get(2, ["old"]) == {}


def check_versions_start_at_zero_and_count_writes(factory: StoreFactory) -> None:
    """A new member has version 0; ``write`` at the current version commits and adds one; ``put`` adds one."""
    with _opened(factory) as store:
        if not isinstance(store, VersionedStateStore):
            return
        states, version = store.read(5, ["T1"])
        assert (states, version) == ({}, 0), f"a new member reads {states}, version {version}"
        assert store.write(5, {"T1": _state("a")}, 0) is True, "a write at the current version must commit"
        states, version = store.read(5, ["T1", "T2"])
        assert version == 1 and states["T1"].image_id == "a" and "T2" not in states, (states, version)
        store.put(5, {"T2": _state("b")})
        assert store.read(5, ["T1"])[1] == 2, "put must move the version too"
        assert store.write(5, {"T1": _state("c")}, 2) is True
        assert store.read(6, ["T1"]) == ({}, 0), "versions are per member"


def check_stale_write_changes_nothing(factory: StoreFactory) -> None:
    """A write at an old version returns False and writes nothing (compare-and-set)."""
    with _opened(factory) as store:
        if not isinstance(store, VersionedStateStore):
            return
        _, v0 = store.read(9, ["T1"])
        assert store.write(9, {"T1": _state("first")}, v0) is True
        assert store.write(9, {"T1": _state("lost"), "T2": _state("lost")}, v0) is False, "a stale write committed"
        states, version = store.read(9, ["T1", "T2"])
        assert version == v0 + 1, f"a refused write moved the version to {version}"
        assert sorted(states) == ["T1"] and states["T1"].image_id == "first", f"a refused write changed {states}"
        assert store.write(9, {"T1": _state("x")}, 0 if v0 else 7) is False, "a write at a wrong version committed"


def check_no_lost_updates_under_threads(factory: StoreFactory) -> None:
    """Four threads increment one member's counter by read + conditional write: no increment is lost."""
    per_thread, n_threads = 40, 4
    with _opened(factory) as store:
        if not isinstance(store, VersionedStateStore):
            return
        errors: list[BaseException] = []
        conflicts = [0] * n_threads

        def work(k: int) -> None:
            try:
                done = 0
                while done < per_thread:
                    states, version = store.read(11, ["n"])
                    n = states["n"].sessions if "n" in states else 0
                    if store.write(11, {"n": _state(f"t{k}", sessions=n + 1)}, version):
                        done += 1
                    else:
                        conflicts[k] += 1
            except BaseException as err:  # reported below, with the thread's error
                errors.append(err)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, f"a thread failed: {errors[0]!r}"
        states, version = store.read(11, ["n"])
        total = per_thread * n_threads
        assert states["n"].sessions == total, f"{total - states['n'].sessions} of {total} increments were lost"
        assert version == total, f"version {version} after {total} committed writes"


STORE_CHECKS: tuple[Callable[[StoreFactory], None], ...] = (
    check_stores_follow_the_protocol,
    check_round_trip_keeps_every_field,
    check_members_are_separate_and_put_merges,
    check_purge_removes_only_old_records,
    check_versions_start_at_zero_and_count_writes,
    check_stale_write_changes_nothing,
    check_no_lost_updates_under_threads,
)
"""Every check of the store contract, in order."""


def check_store(factory: StoreFactory) -> list[str]:
    """Run every check of :data:`STORE_CHECKS` on stores made by ``factory``; return their names.

    Parameters
    ----------
    factory : callable
        ``factory()`` returns a fresh, empty store (called once per check).

    Raises
    ------
    AssertionError
        The first check that fails, with what broke.
    """
    names = []
    for check in STORE_CHECKS:
        check(factory)
        names.append(check.__name__.removeprefix("check_"))
    return names


# ---------------------------------------------------------------------------------- a Redis server
def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def redis_server(executable: str = "redis-server", *, timeout_s: float = 20.0, cluster: bool = False) -> Iterator[Any]:
    """Start ``redis-server`` on a free 127.0.0.1 port, persistence off, in a temporary folder.

    Yields the :class:`subprocess.Popen` of the server, with ``.url`` (``redis://127.0.0.1:<port>/0``)
    and ``.port`` set; the server is shut down (and its folder removed) on exit. ``cluster=True``
    starts it as a cluster node (see :func:`redis_cluster`).

    Raises
    ------
    RuntimeError
        ``redis-server`` is not installed or did not start (the message says which).
    """
    binary = shutil.which(executable)
    if binary is None:
        raise RuntimeError(
            f"{executable} is not installed (Debian/Ubuntu: apt-get install -y redis-server); "
            "the Redis store tests need a real server."
        )
    with tempfile.TemporaryDirectory(prefix="slate-redis-") as folder:
        for attempt in range(5):  # a free port may be taken by someone else before the server binds it
            port = free_port()
            args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                    "--dir", folder, "--loglevel", "warning"]
            if cluster:
                args += ["--cluster-enabled", "yes", "--cluster-config-file", os.path.join(folder, "nodes.conf")]
            proc: Any = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                _wait_for(port, proc, timeout_s)
                break
            except RuntimeError:
                _stop(proc)
                if attempt == 4:
                    raise
        try:
            proc.url, proc.port = f"redis://127.0.0.1:{port}/0", port
            yield proc
        finally:
            _stop(proc)


def _stop(proc: Any) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a stopped (SIGSTOP) server
            proc.kill()
            proc.wait()
    if proc.stderr is not None:
        proc.stderr.close()


@contextlib.contextmanager
def redis_cluster(n_nodes: int = 3, *, timeout_s: float = 30.0) -> Iterator[list[str]]:
    """Start a Redis Cluster of ``n_nodes`` masters on loopback (persistence off); yield their URLs.

    Uses ``redis-server --cluster-enabled yes`` and ``redis-cli --cluster create``; everything is
    shut down on exit.
    """
    cli = shutil.which("redis-cli")
    if cli is None:
        raise RuntimeError("redis-cli is not installed (Debian/Ubuntu: apt-get install -y redis-tools).")
    with contextlib.ExitStack() as stack:
        nodes = [stack.enter_context(redis_server(cluster=True, timeout_s=timeout_s)) for _ in range(n_nodes)]
        addresses = [f"127.0.0.1:{node.port}" for node in nodes]
        out = subprocess.run([cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
                             capture_output=True, text=True, timeout=timeout_s, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {(out.stdout + out.stderr).strip()[-500:]}")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:  # every node must see the cluster as ok
            states = [subprocess.run([cli, "-p", str(n.port), "cluster", "info"], capture_output=True, text=True,
                                     timeout=5, check=False).stdout for n in nodes]
            if all("cluster_state:ok" in s for s in states):
                break
            time.sleep(0.1)
        else:
            raise RuntimeError("the Redis cluster did not reach cluster_state:ok")
        yield [node.url for node in nodes]


def _wait_for(port: int, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise RuntimeError(f"redis-server exited with code {proc.returncode}: {err.strip()[:500]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            pass
        time.sleep(0.02)
    raise RuntimeError(f"redis-server did not answer on 127.0.0.1:{port} within {timeout_s:g} s (pid {os.getpid()})")
