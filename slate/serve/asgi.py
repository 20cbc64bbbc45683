"""A reference service: ``compose()`` behind a small ASGI app (Starlette), served by uvicorn.

``POST /compose`` takes a page request (the JSON of :class:`~slate.serve.PageRequest`) and returns
the decision (:meth:`PageDecision.to_dict <slate.serve.PageDecision.to_dict>`); a malformed
request gets a 400 with the one-line reason. ``GET /health`` answers 200 once the process is
warmed up (503 before), with its counters; ``POST /warmup`` warms it up again (and freezes the
heap). Run N worker processes sharing one Redis::

    python -m slate.serve.asgi --workers 2 --store redis://127.0.0.1:6379/0 --log-dir logs/

Each process builds its own :class:`~slate.serve.Composer` at start-up (the factory runs in the
worker, after uvicorn forks or spawns it), warms it up, and writes its own decision log: files
named ``decisions-<host>-<pid>-<random>-...`` in ``--log-dir``, so no two processes share a name.
The composer runs on the event loop's thread (compose is CPU-bound: one process per core, not
threads, gives the throughput); ``threaded=True`` runs it in Starlette's thread pool instead,
which the :class:`~slate.serve.Composer` supports too.

Your policy goes in through ``make_composer`` (see :func:`create_app`); the built-in
:func:`demo_composer` scores with a seeded random generator, for trying the service and for
``benchmarks/service_load.py``. starlette, uvicorn and orjson come with the ``service`` extra.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from slate.serve.composer import Composer
from slate.serve.request import ComposeConfig, InvalidRequestError

__all__ = ["app_from_env", "create_app", "demo_composer", "main"]


def demo_composer(store: str = "memory", log_dir: str | None = None, solver: str = "fast") -> Composer:
    """A composer for the reference service: seeded random scores, the given store and log folder.

    ``store`` is anything :func:`slate.stability.make_store` takes (``"memory"``, a Redis URL,
    ``"sqlite:///state.db"``). With ``log_dir``, decisions go to a :class:`~slate.serve.DecisionLogger`
    there, under a file prefix unique to this process.
    """
    from slate.serve.decision_log import DecisionLogger, DecisionLogOptions
    from slate.stability import StabilityRules, make_store

    def scores(request: Any) -> Any:
        rng = np.random.default_rng([request.member_id & 0xFFFFFFFF, request.session_id & 0xFFFFFFFF])
        return rng.uniform(0.01, 0.2, size=(request.n_titles, request.n_images))

    logger = None
    if log_dir:
        prefix = f"decisions-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
        logger = DecisionLogger(log_dir, DecisionLogOptions(prefix=prefix.replace("/", "_")), background=True)
    rules = StabilityRules(churn=0.005, max_changes=10, dwell_sessions=3, min_gain=0.005)
    options = {"compute_bound": False} if solver == "fast" else {}
    config = ComposeConfig(solver=solver, solver_options=options, solver_time_ms=1.0, stability=rules)
    return Composer(scores, make_store(store), config=config, logger=logger)


def create_app(
    make_composer: Callable[[], Composer], *, warm_up: bool = True, threaded: bool = False
) -> Any:
    """The Starlette app: ``/compose``, ``/health``, ``/warmup``.

    Parameters
    ----------
    make_composer : callable
        Builds this process's composer (called once, at start-up, in the serving process).
    warm_up : bool, default True
        Warm the composer up (and :func:`gc.freeze`) at start-up; ``/health`` says 503 until then.
    threaded : bool, default False
        Compose in Starlette's thread pool instead of on the event loop.

    Examples
    --------
    >>> app = create_app(lambda: demo_composer(solver="independent"), warm_up=False)
    >>> sorted(route.path for route in app.routes)
    ['/compose', '/health', '/warmup']

    Serve it with ``uvicorn.run(app, host="127.0.0.1", port=8000)``.
    """
    import contextlib

    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    state: dict[str, Any] = {"composer": None, "warm": False, "warm_s": None}

    def do_warm_up() -> float:
        seconds = float(state["composer"].warm_up())
        state.update(warm=True, warm_s=seconds)
        return seconds

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> Any:
        state["composer"] = make_composer()
        if warm_up:
            do_warm_up()
        else:
            state["warm"] = True
        try:
            yield
        finally:
            composer = state["composer"]
            if composer.logger is not None and hasattr(composer.logger, "close"):
                composer.logger.close()
            if composer.store is not None:
                composer.store.close()

    async def compose(request: Request) -> Response:  # the same handler, for Starlette's own routing
        status, payload = _compose_response(state["composer"], await request.body())
        return Response(payload, status_code=status, media_type="application/json")

    async def health(request: Request) -> Response:
        composer = state["composer"]
        body = {"status": "ok" if state["warm"] else "warming", "pid": os.getpid(), "warm_up_s": state["warm_s"],
                "stats": composer.stats_.snapshot() if composer is not None else None}
        return JSONResponse(body, status_code=200 if state["warm"] else 503)

    async def warmup(request: Request) -> Response:
        seconds = await run_in_threadpool(do_warm_up)
        return JSONResponse({"status": "ok", "pid": os.getpid(), "seconds": seconds})

    routes = [
        Route("/compose", compose, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
        Route("/warmup", warmup, methods=["POST"]),
    ]
    return _ServiceApp(Starlette(routes=routes, lifespan=lifespan), state, threaded)


class _ServiceApp:
    """The ASGI app: ``POST /compose`` answered directly, everything else by Starlette.

    The page route is the hot path: going through Starlette's router, middleware and request
    objects costs more CPU per page than the JSON work (see docs/service.md), so it is served by a
    few lines of plain ASGI with the same answers; lifespan, ``/health``, ``/warmup``, errors and
    any other path go to the Starlette app (``routes`` are Starlette's).
    """

    def __init__(self, app: Any, state: dict[str, Any], threaded: bool) -> None:
        self.app = app
        self.routes = app.routes
        self._state = state
        self._threaded = threaded

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/compose" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        composer = self._state["composer"]
        if self._threaded:
            from starlette.concurrency import run_in_threadpool

            status, payload = await run_in_threadpool(_compose_response, composer, body)
        else:
            status, payload = _compose_response(composer, body)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


def _compose_response(composer: Composer, body: bytes) -> tuple[int, bytes]:
    """The status and JSON body answering one ``/compose`` request."""
    try:
        decision = composer.compose(_parse(body))
    except InvalidRequestError as err:
        return 400, _dumps({"error": str(err).splitlines()[0]})
    return 200, _dumps(decision.to_dict())


try:  # orjson (the service extra) parses and writes JSON 2-4x faster than the standard library
    import orjson

    _loads: Callable[[bytes], Any] = orjson.loads

    def _dumps(value: Any) -> bytes:
        return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)

except ImportError:  # pragma: no cover - the standard library, same output
    import json

    _loads = json.loads

    def _dumps(value: Any) -> bytes:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def _parse(body: bytes) -> Any:
    try:
        data = _loads(body)
    except (ValueError, RecursionError) as err:
        raise InvalidRequestError(f"The request body is not JSON: {err}") from None
    if not isinstance(data, dict):
        raise InvalidRequestError(f"The request body must be a JSON object; got {type(data).__name__}.")
    return data


def app_from_env() -> Any:
    """The app for uvicorn's ``--factory``, configured by ``SLATE_STORE``, ``SLATE_LOG_DIR``, ``SLATE_SOLVER``."""
    store = os.environ.get("SLATE_STORE", "memory")
    log_dir = os.environ.get("SLATE_LOG_DIR") or None
    solver = os.environ.get("SLATE_SOLVER", "fast")
    threaded = os.environ.get("SLATE_THREADED", "") == "1"
    return create_app(lambda: demo_composer(store, log_dir, solver), threaded=threaded)


def _listening_socket(host: str, port: int, reuse_port: bool) -> socket.socket:
    """A bound, listening TCP socket; with ``reuse_port`` each worker binds its own (SO_REUSEPORT)."""
    # proto IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted sockets only when the listening
    # socket says it is TCP (with proto 0, Nagle + delayed ACKs add ~40 ms to every response)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


def _serve_worker(host: str, port: int) -> None:
    """One worker process: its own SO_REUSEPORT socket, its own uvicorn server and composer."""
    import uvicorn

    sock = _listening_socket(host, port, reuse_port=True)
    config = uvicorn.Config("slate.serve.asgi:app_from_env", factory=True, log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


def _serve_reuse_port(host: str, port: int, workers: int) -> int:
    """Run ``workers`` processes, each accepting on its own socket bound to the same port.

    With one shared listening socket (uvicorn's ``--workers``), whichever process is idle first
    accepts a burst of new connections, so a few long-lived client connections can all land in
    one process while the others sit idle. With SO_REUSEPORT the kernel spreads connections over
    the workers' sockets by their address hash. A worker that exits is started again; SIGTERM or
    SIGINT stops them all.
    """
    import multiprocessing
    import signal

    context = multiprocessing.get_context("spawn")
    stopping = False

    def start() -> Any:
        process = context.Process(target=_serve_worker, args=(host, port), daemon=True)
        process.start()
        return process

    def stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    processes = [start() for _ in range(workers)]
    restarts = 0
    while not stopping:
        time.sleep(0.2)
        for i, process in enumerate(processes):
            if not process.is_alive() and not stopping:
                restarts += 1
                processes[i] = start()
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(timeout=30)
    return restarts


def main(argv: list[str] | None = None) -> None:
    """``python -m slate.serve.asgi``: serve :func:`app_from_env` with uvicorn on 127.0.0.1.

    With ``--workers N`` (N > 1) on a system with SO_REUSEPORT (Linux, BSD, macOS), each worker
    process listens on its own socket bound to the port, so the kernel balances connections
    across workers; ``--shared-socket`` uses uvicorn's one shared socket instead.
    """
    import uvicorn

    parser = argparse.ArgumentParser(description="slate's reference compose() service (uvicorn + Starlette)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--store", default="memory", help="a store name or URL (redis://host:6379/0)")
    parser.add_argument("--log-dir", default="", help="decision logs (one file prefix per process)")
    parser.add_argument("--solver", default="fast")
    parser.add_argument("--threaded", action="store_true", help="compose in the thread pool")
    parser.add_argument("--shared-socket", action="store_true",
                        help="with --workers > 1: one listening socket shared by the workers (uvicorn's own)")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be >= 1")
    os.environ.update(SLATE_STORE=args.store, SLATE_LOG_DIR=args.log_dir, SLATE_SOLVER=args.solver,
                      SLATE_THREADED="1" if args.threaded else "")
    started = time.time()
    if args.workers > 1 and not args.shared_socket and hasattr(socket, "SO_REUSEPORT"):
        restarts = _serve_reuse_port(args.host, args.port, args.workers)
        print(f"served for {time.time() - started:.0f} s ({restarts} worker restarts)")
        return
    uvicorn.run("slate.serve.asgi:app_from_env", factory=True, host=args.host, port=args.port,
                workers=args.workers, log_level="warning", access_log=False)
    print(f"served for {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
