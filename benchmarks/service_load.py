"""Load test of the reference service (slate.serve.asgi): pages/s and latency for 1, 2 and 4 workers.

For each worker count, starts ``python -m slate.serve.asgi --workers N`` on a free 127.0.0.1 port,
sharing one Redis (a ``redis-server`` started on a free loopback port, persistence off) and
writing per-process decision logs, waits for ``/health``, then, with httpx from this process:

1. **capacity**: a closed loop of ``--concurrency`` clients per worker posting 40 x 10 pages for
   ``--duration`` seconds (at most ``--requests`` pages): pages/s and latency percentiles;
2. **80% load**: an open loop at 80% of that capacity (requests sent on a fixed schedule, latency
   measured from the scheduled send time, so queueing counts) for the same duration: p50/p99/p99.9.

Each phase also reports how busy the service was (``busy``: its processes' CPU seconds over the
phase's seconds times the worker count, from /proc), its CPU milliseconds per page and the
milliseconds per page its threads sat runnable waiting for a CPU (``wait``, from schedstat): a
phase meant to run at 80% that shows ``busy`` near the capacity phase's ran at saturation, and
a large ``wait`` means other work on the machine took the cores from the service.

Everything runs on this machine: the client's CPU competes with the workers' (reported). Bounded:
127.0.0.1 only, a fixed duration and request count per phase.

Usage::

    python benchmarks/service_load.py                      # 1, 2, 4 workers, 10 s per phase
    python benchmarks/service_load.py --workers 1,2 --duration 5
    python benchmarks/service_load.py --workers 1,2 --repeat 3     # alternate 1,2,1,2,1,2; medians
    python benchmarks/service_load.py --client wrk --workers 1,2 --repeat 3   # capacity from wrk

On a machine shared with other jobs, alternate the worker counts (``--repeat``) and compare the
medians: the load of the other jobs changes from one phase to the next.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from slate.testing.stores import free_port, redis_server

N_MEMBERS = 2000


def bodies(
    n: int, *, n_members: int = N_MEMBERS, n_titles: int = 40, n_images: int = 10, seed: int = 0,
    first_session: int = 0, members: list[int] | None = None,
) -> list[bytes]:
    """``n`` page requests of random members (or ``members`` in turn), session ids from
    ``first_session`` on (each phase takes its own range, so no request repeats a session)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        member = int(rng.integers(n_members)) if members is None else members[i % len(members)]
        first = int(rng.integers(0, 400))
        out.append(json.dumps({"member_id": member, "session_id": first_session + i,
                               "titles": _titles(first, n_titles, n_images)}).encode())
    return out


def _titles(first: int, n_titles: int, n_images: int) -> list[dict[str, Any]]:
    return [{"title_id": f"T{first + t}", "image_ids": [f"T{first + t}-{k}" for k in range(n_images)],
             "row": t // 8, "col": t % 8} for t in range(n_titles)]


async def prime(url: str, n_members: int, connections: int) -> float:
    """Serve one page to every member (untimed, closed loop on raw keep-alive connections), so
    the measured phases see returning members with state, as a service in steady state does.
    Returns the seconds it took."""
    host, port = url.removeprefix("http://").split(":")
    payloads = bodies(n_members, members=list(range(n_members)), first_session=1, seed=1)
    next_index = 0
    started = time.perf_counter()

    async def connection() -> None:
        nonlocal next_index
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while next_index < len(payloads):
                body = payloads[next_index]
                next_index += 1
                writer.write((f"POST /compose HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                              f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
                await _read_response(reader)
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(connections)))
    return time.perf_counter() - started


def _default_priority() -> None:
    """The service runs at the default priority even when this client was favoured (--favour-peers)."""
    try:
        os.setpriority(os.PRIO_PROCESS, 0, 0)
    except PermissionError:  # not root: the client was not favoured either
        pass


def start_service(
    workers: int, store: str, log_dir: str, solver: str, shared_socket: bool = False
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "slate.serve.asgi", "--workers", str(workers), "--port", str(port),
         "--store", store, "--log-dir", log_dir, "--solver", solver, *(["--shared-socket"] if shared_socket else [])],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": os.getcwd()},
        preexec_fn=_default_priority,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    healthy = 0
    while time.monotonic() < deadline and healthy < 8 * workers:
        if proc.poll() is not None:
            raise RuntimeError(f"the service exited: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
        try:
            healthy = healthy + 1 if httpx.get(f"{url}/health", timeout=2).status_code == 200 else 0
        except httpx.HTTPError:
            healthy = 0
            time.sleep(0.2)
    if healthy < 8 * workers:
        raise RuntimeError("the service did not become healthy within 120 s")
    time.sleep(1.0)  # the last workers finish their warm-up
    return proc, url


async def closed_loop(url: str, payloads: list[bytes], clients: int, duration: float) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    next_index = 0
    stop_at = time.perf_counter() + duration

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal next_index, errors
        while time.perf_counter() < stop_at and next_index < len(payloads):
            body = payloads[next_index]
            next_index += 1
            t = time.perf_counter()
            r = await http.post("/compose", content=body, headers={"content-type": "application/json"})
            latencies.append(time.perf_counter() - t)
            errors += r.status_code != 200

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return summary(latencies, elapsed, errors)


async def open_loop(url: str, payloads: list[bytes], rate: float, duration: float, clients: int) -> dict[str, Any]:
    """Requests due at ``i / rate``; ``clients`` senders take the next due request in turn (a late
    sender sends at once), and latency runs from the due time, so any queueing counts."""
    n = min(len(payloads), int(rate * duration))
    latencies: list[float] = []
    errors = 0
    next_index = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as http:
        started = time.perf_counter()

        async def sender() -> None:
            nonlocal errors, next_index
            while next_index < n:
                i = next_index
                next_index += 1
                due = started + i / rate
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                r = await http.post("/compose", content=payloads[i], headers={"content-type": "application/json"})
                latencies.append(time.perf_counter() - due)
                errors += r.status_code != 200

        await asyncio.gather(*(sender() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return summary(latencies, elapsed, errors)


async def _read_response(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))  # type: ignore[union-attr]
    return head, await reader.readexactly(length)


async def _worker_connections(host: str, port: int, workers: int, per_worker: int) -> list[list[Any]]:
    """Keep-alive connections grouped by the worker process that accepted them: open connections,
    ask each one's ``/health`` for its pid, until every worker holds ``per_worker`` of them (the
    kernel hashes new connections over the workers' SO_REUSEPORT sockets, so this takes a few
    tries); extras are closed."""
    groups: dict[int, list[Any]] = {}
    for _ in range(40 * workers * per_worker):
        if len(groups) == workers and all(len(g) >= per_worker for g in groups.values()):
            break
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(f"GET /health HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        _, body = await _read_response(reader)
        group = groups.setdefault(int(json.loads(body)["pid"]), [])
        if len(group) < per_worker:
            group.append((reader, writer))
        else:
            writer.close()
    if len(groups) != workers or any(len(g) < per_worker for g in groups.values()):
        raise RuntimeError(f"could not reach {workers} workers with {per_worker} connections each: "
                           f"{ {pid: len(g) for pid, g in groups.items()} }")
    return list(groups.values())


async def paced_raw(
    url: str, payloads: list[bytes], rate: float, duration: float, connections: int, workers: int = 1
) -> dict[str, Any]:
    """An open loop at a constant rate: request ``i`` is due at ``i / rate`` and goes to worker
    ``i % workers`` (round robin over the worker processes, as an L7 load balancer spreads
    requests over backends; the kernel's hashing of a few long-lived connections would give one
    worker more of them, and so more of the load, than the other), on the first free keep-alive
    connection of that worker (``connections / workers`` each; raw HTTP/1.1 on asyncio streams,
    uvloop when installed: tens of microseconds of client CPU per page, against about a
    millisecond for httpx). Latency runs from the due time, so a request that waited for a free
    connection counts its wait (no coordinated omission). Percentiles over every request."""
    host, port = url.removeprefix("http://").split(":")
    n = min(len(payloads), int(rate * duration))
    heads = [(f"POST /compose HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
              f"Content-Length: {len(b)}\r\n\r\n").encode() + b for b in payloads[:n]]
    latencies = np.empty(n)
    late = np.empty(n)  # send time - due time: the client was busy, or every connection to the worker was
    errors = 0
    groups = await _worker_connections(host, int(port), workers, max(1, connections // workers))
    next_index = list(range(workers))  # worker w serves requests w, w + workers, ...
    started = 0.0

    async def connection(w: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal errors
        while next_index[w] < n:
            i = next_index[w]
            next_index[w] += workers
            due = started + i / rate
            wait = due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(heads[i])
            late[i] = time.perf_counter() - due
            head, _ = await _read_response(reader)
            latencies[i] = time.perf_counter() - due
            errors += not head.startswith(b"HTTP/1.1 200")

    started = time.perf_counter() + 0.05
    try:
        await asyncio.gather(*(connection(w, r, wr) for w, group in enumerate(groups) for r, wr in group))
    finally:
        for group in groups:
            for _, writer in group:
                writer.close()
    elapsed = time.perf_counter() - started
    result = summary(list(latencies), elapsed, errors)
    result["client_late_p99_ms"] = float(np.percentile(late, 99) * 1e3)
    return result


def run_paced(
    url: str, payloads: list[bytes], rate: float, duration: float, connections: int, workers: int = 1
) -> dict[str, Any]:
    try:
        import uvloop

        return uvloop.run(paced_raw(url, payloads, rate, duration, connections, workers))
    except ImportError:  # pragma: no cover - uvloop comes with the service extra
        return asyncio.run(paced_raw(url, payloads, rate, duration, connections, workers))


def wrk_capacity(
    url: str, payloads: list[bytes], connections: int, duration: float, folder: str, rate: float = 0.0
) -> dict[str, Any]:
    """Capacity measured by ``wrk`` (a compiled closed-loop client: one thread, a few % of a core),
    each request with its own member and session (members and title lists taken from ``payloads``,
    session ids counting up from its first). Percentiles from wrk's ``--latency`` table.

    With ``rate`` > 0, each connection waits ``connections / rate`` seconds before each request
    (wrk's ``delay()``), pacing the total near ``rate`` pages/s; latency is then measured from
    each request's sending, not from a fixed schedule (a slow response delays that connection's
    next request, so with enough connections the pace holds)."""
    script = Path(folder) / "bodies.lua"
    # every request its own (member, session): the title lists of the first 256 bodies, the
    # member ids of the first 4096, session ids counting up from the first body's
    docs = [json.loads(b) for b in payloads[:4096]]
    titles = ",\n".join("[==[" + json.dumps(d["titles"]) + "]==]" for d in docs[:256])
    members = ",".join(str(d["member_id"]) for d in docs)
    pacing = f"delay = function()\n  return {1000.0 * connections / rate:.3f}\nend\n" if rate > 0 else ""
    script.write_text(
        "local titles = {\n" + titles + "\n}\nlocal members = {" + members + "}\nlocal i = 0\n"
        f"local first_session = {docs[0]['session_id']}\n"
        "request = function()\n  i = i + 1\n"
        "  local body = '{\"member_id\": ' .. members[(i % #members) + 1] .. ', \"session_id\": ' .."
        " (first_session + i) .. ', \"titles\": ' .. titles[(i % #titles) + 1] .. '}'\n"
        "  return wrk.format('POST', '/compose', {['Content-Type'] = 'application/json'}, body)\n"
        "end\n" + pacing
    )
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency", "-s", str(script),
         f"{url}/compose"], capture_output=True, text=True, timeout=duration + 60, check=True,
    ).stdout
    unit = {"us": 1e-3, "ms": 1.0, "s": 1e3}

    def ms(text: str) -> float:
        m = re.match(r"([0-9.]+)(us|ms|s)", text)
        return float(m.group(1)) * unit[m.group(2)] if m else float("nan")

    pct = {m.group(1): ms(m.group(2)) for m in re.finditer(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.M)}
    rate = float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"pages": total, "errors": int(bad.group(1)) if bad else 0, "pages_per_s": rate,
            "p50_ms": pct.get("50", float("nan")), "p99_ms": pct.get("99", float("nan")),
            "p999_ms": float("nan"), "max_ms": ms(re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", out).group(1))}  # type: ignore[union-attr]


def service_pids(proc: subprocess.Popen[bytes]) -> list[int]:
    """The processes that serve pages: the service itself and its worker processes (Linux /proc)."""
    pids = [proc.pid]
    try:
        for child in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split():
            pids.append(int(child))
    except OSError:
        pass
    return pids


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of these processes so far (0 where /proc cannot tell)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def runqueue_seconds(pids: list[int]) -> float:
    """Seconds the threads of these processes spent runnable but waiting for a CPU (Linux
    schedstat; 0 where unavailable): time taken from the service by other work on the machine."""
    total = 0
    for pid in pids:
        try:
            tasks = list(Path(f"/proc/{pid}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                total += int((task / "schedstat").read_text().split()[1])
            except (OSError, IndexError, ValueError):
                continue
    return total / 1e9


def busy(pids: list[int], workers: int, run: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Run one phase and add how busy the service was: its CPU seconds over the phase's
    wall-clock seconds times the worker count (1.0: every worker busy all the time), its CPU
    milliseconds per page, and the milliseconds per page its threads waited for a CPU."""
    cpu0, wait0, t0 = cpu_seconds(pids), runqueue_seconds(pids), time.perf_counter()
    result = run(*args, **kwargs)
    cpu, wall = cpu_seconds(pids) - cpu0, time.perf_counter() - t0
    wait = runqueue_seconds(pids) - wait0
    pages = result["pages"]
    result["busy"] = cpu / (wall * workers) if wall > 0 else float("nan")
    result["cpu_ms_per_page"] = 1e3 * cpu / pages if pages else float("nan")
    result["wait_ms_per_page"] = 1e3 * wait / pages if pages else float("nan")
    return result


def summary(latencies: list[float], elapsed: float, errors: int) -> dict[str, Any]:
    a = np.array(latencies) * 1e3
    return {"pages": len(a), "errors": errors, "pages_per_s": len(a) / elapsed,
            "p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)),
            "p999_ms": float(np.percentile(a, 99.9)), "max_ms": float(a.max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per phase")
    parser.add_argument("--requests", type=int, default=40_000, help="at most this many pages per phase")
    parser.add_argument("--concurrency", type=int, default=4, help="closed-loop clients per worker")
    parser.add_argument("--solver", default="fast")
    parser.add_argument("--repeat", type=int, default=1, help="alternate the worker counts this many times")
    parser.add_argument("--json", default=None)
    parser.add_argument("--sockets", default="per-worker",
                        help="comma-separated: per-worker (SO_REUSEPORT, the service's default), shared (uvicorn's "
                             "one socket); each worker count runs with each")
    parser.add_argument("--client", choices=["httpx", "wrk"], default="httpx",
                        help="capacity phase client: httpx in this process, or wrk (compiled; apt-get install wrk), "
                             "whose own CPU use is a few %% of a core")
    parser.add_argument("--paced", choices=["raw", "client"], default="raw",
                        help="80%% load phase: raw (constant rate from a light raw-socket client, latency from each "
                             "request's due time: the default) or client (the --client program: wrk paced by its "
                             "delay(), or httpx)")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="pages/s per worker for the paced phase, with no capacity phase before it (the first "
                             "pages a fresh service serves; --paced raw)")
    parser.add_argument("--no-log", action="store_true", help="workers write no decision log")
    parser.add_argument("--favour-peers", action="store_true",
                        help="run this client and redis-server at nice -5 (root only), as if each had its own host: "
                             "on a machine the workers saturate, a preempted client sends late and a preempted "
                             "Redis answers late, and both count as the service's latency")
    parser.add_argument("--no-prime", action="store_true",
                        help="skip serving every member one page before the capacity phase (then the first phase "
                             "sees mostly new members, the later one returning members)")
    args = parser.parse_args()
    if args.rate and args.paced != "raw":
        parser.error("--rate needs --paced raw")
    if args.client == "wrk" and shutil.which("wrk") is None:
        parser.error("--client wrk needs the wrk program (apt-get install wrk)")
    # each phase its own session ids: no request repeats a (member, session) another phase sent
    cap_payloads = bodies(args.requests, first_session=1_000_000)
    payloads = bodies(args.requests, first_session=2_000_000, seed=2)
    print(f"# service load — {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; 40x10 pages, "
          f"solver {args.solver}, RedisStore on loopback, {'no decision log' if args.no_log else 'per-process Parquet logs'}; "
          f"capacity client {'none (--rate)' if args.rate else args.client}, "
          f"80% load {'constant rate, raw sockets, latency from the due time' if args.paced == 'raw' else ('wrk paced by delay()' if args.client == 'wrk' else 'httpx in this process')}; "
          "sockets: p = one per worker (SO_REUSEPORT), s = shared"
          + ("; client and redis-server at nice -5" if args.favour_peers else ""))
    print(f"{'workers':>7}{'phase':>10}{'pages':>8}{'pages/s':>9}{'p50 ms':>8}{'p99 ms':>8}{'p99.9 ms':>10}"
          f"{'max ms':>8}{'errors':>7}{'busy':>6}{'CPU ms/pg':>10}{'wait ms/pg':>11}{'load':>6}")
    results: dict[str, list[Any]] = {}
    sockets = args.sockets.split(",")
    if not set(sockets) <= {"per-worker", "shared"}:
        parser.error("--sockets takes per-worker and/or shared")
    counts = [(int(w), s) for w in args.workers.split(",") for s in sockets] * args.repeat
    with redis_server() as redis, tempfile.TemporaryDirectory() as tmp:
        if args.favour_peers:
            try:
                for pid in (0, redis.pid):  # this process (the paced client, wrk inherits it) and Redis
                    os.setpriority(os.PRIO_PROCESS, pid, -5)
            except PermissionError:
                parser.error("--favour-peers needs root (it lowers the nice value of the client and redis-server)")
        for i, (workers, socket_mode) in enumerate(counts):
            proc, url = start_service(workers, f"{redis.url[:-1]}{i % 15 + 1}", "" if args.no_log else f"{tmp}/logs-{i}",
                                      args.solver,
                                      shared_socket=socket_mode == "shared")
            try:
                cpu0 = time.process_time()
                pids = service_pids(proc)
                if not (args.no_prime or args.rate):
                    primed = asyncio.run(prime(url, N_MEMBERS, 4 * workers))
                    print(f"        (every member served one page first: {N_MEMBERS} pages in {primed:.1f} s)")
                if args.rate:  # no capacity phase: the paced phase starts on a fresh service
                    cap = {"pages": 0, "errors": 0, "pages_per_s": args.rate * workers / 0.8, "p50_ms": float("nan"),
                           "p99_ms": float("nan"), "p999_ms": float("nan"), "max_ms": float("nan"),
                           "busy": float("nan"), "cpu_ms_per_page": float("nan"), "wait_ms_per_page": float("nan")}
                elif args.client == "wrk":
                    cap = busy(pids, workers, wrk_capacity, url, cap_payloads, args.concurrency * workers,
                               args.duration, tmp)
                else:
                    cap = busy(pids, workers, lambda *a: asyncio.run(closed_loop(*a)),
                               url, cap_payloads, args.concurrency * workers, args.duration)
                rate = 0.8 * cap["pages_per_s"]
                if args.paced == "raw":  # constant rate, latency from the due time
                    load = busy(pids, workers, run_paced, url, payloads, rate, args.duration, 8 * workers, workers)
                elif args.client == "wrk":  # paced by wrk's delay(): 8 connections per worker
                    load = busy(pids, workers, wrk_capacity, url, payloads, 8 * workers, args.duration, tmp, rate=rate)
                else:
                    load = busy(pids, workers, lambda *a: asyncio.run(open_loop(*a)),
                                url, payloads, rate, args.duration, 8 * workers)
                client_cpu = time.process_time() - cpu0
            finally:
                proc.terminate()
                proc.wait(timeout=60)
            key = str(workers) if socket_mode == sockets[0] else f"{workers} {socket_mode}"
            results.setdefault(key, []).append(
                {"capacity": cap, "at_80pct": load, "client_cpu_s": client_cpu, "load_average": os.getloadavg()[0]})
            for phase, r in (("capacity", cap), ("80% load", load)):
                print(f"{workers:>4}{socket_mode[0]:>3}{phase:>10}{r['pages']:>8}{r['pages_per_s']:>9.0f}{r['p50_ms']:>8.2f}"
                      f"{r['p99_ms']:>8.2f}{r['p999_ms']:>10.2f}{r['max_ms']:>8.1f}{r['errors']:>7}"
                      f"{r['busy']:>6.2f}{r['cpu_ms_per_page']:>10.2f}{r['wait_ms_per_page']:>11.2f}{os.getloadavg()[0]:>6.1f}")
            late = load.get("client_late_p99_ms")
            print(f"        (client CPU {client_cpu:.1f} s over both phases"
                  + (f"; 80% phase: p99 of send time - due time {late:.2f} ms)" if late is not None
                     else ")"))
    med = {w: float(np.median([r["capacity"]["pages_per_s"] for r in rs])) for w, rs in results.items()}
    p99 = {w: float(np.median([r["at_80pct"]["p99_ms"] for r in rs])) for w, rs in results.items()}
    print("medians: " + "; ".join(f"{w} worker(s) {med[w]:.0f} pages/s, p99 at 80% {p99[w]:.1f} ms" for w in med))
    if "1" in med and "2" in med:
        print(f"2 workers / 1 worker capacity (medians): {med['2'] / med['1']:.2f}x")
    if "1" in med and "2 shared" in med:
        print(f"2 workers on one shared socket / 1 worker capacity (medians): {med['2 shared'] / med['1']:.2f}x")
    print(f"# load average at the end {os.getloadavg()[0]:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
