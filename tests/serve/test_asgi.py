"""The reference service (slate.serve.asgi) served by a real uvicorn on a free loopback port."""

from __future__ import annotations

import gc
import threading
import time

import httpx
import pytest
import uvicorn

from slate.serve.asgi import create_app, demo_composer
from slate.testing.stores import free_port


@pytest.fixture
def service(redis_server, tmp_path):
    app = create_app(lambda: demo_composer(redis_server.url, str(tmp_path / "log"), solver="independent"))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}", tmp_path / "log"
    server.should_exit = True
    thread.join(timeout=30)
    gc.unfreeze()  # the warm-up froze this test process's heap


def page(member: int, session: int) -> dict:
    return {"member_id": member, "session_id": session,
            "titles": [{"title_id": f"T{t}", "image_ids": [f"T{t}-{k}" for k in range(4)], "row": 0, "col": t}
                       for t in range(6)]}


def test_the_service_composes_pages_with_state_and_logs_them(service):
    url, _ = service
    with httpx.Client(base_url=url, timeout=10) as client:
        health = client.get("/health")
        assert health.status_code == 200 and health.json()["status"] == "ok"
        assert health.json()["warm_up_s"] is not None  # warmed up at start-up
        first = client.post("/compose", json=page(7, 1)).json()
        second = client.post("/compose", json=page(7, 2)).json()
        for d in (first, second):  # a loaded machine may make a stage late; nothing else may go wrong
            assert [f for f in d["faults"] if not f.endswith("_late")] == [], d["faults"]
        assert [t["title_id"] for t in second["titles"]] == [f"T{t}" for t in range(6)]
        assert all(t["rule"] != "new" for t in second["titles"])  # the state of page 1 came back from Redis
        bad = client.post("/compose", json={"member_id": 7})
        assert bad.status_code == 400 and "'session_id' field" in bad.json()["error"]
        assert client.post("/compose", content=b"{not json").status_code == 400
        warm = client.post("/warmup")
        assert warm.status_code == 200 and warm.json()["seconds"] >= 0
        assert client.get("/health").json()["stats"]["pages"] == 2


def test_the_log_is_flushed_at_shutdown(redis_server, tmp_path):
    import pyarrow.parquet as pq

    app = create_app(lambda: demo_composer(redis_server.url, str(tmp_path), solver="independent"), warm_up=False)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        for s in range(5):
            assert client.post("/compose", json=page(8, s)).status_code == 200
    server.should_exit = True
    thread.join(timeout=30)
    files = sorted(tmp_path.rglob("*.parquet"))
    assert files and all("decisions-" in f.name for f in files)
    assert sum(pq.read_table(f).num_rows for f in files) == 5 * 6


def test_workers_on_their_own_reuse_port_sockets_all_take_connections_and_stop_on_sigterm(redis_server, tmp_path):
    """``--workers 2`` runs two processes, each listening on its own SO_REUSEPORT socket: fresh
    connections reach both (the kernel spreads them by address hash), responses come without the
    ~40 ms Nagle/delayed-ACK stall, and SIGTERM stops the supervisor and its workers."""
    import os
    import signal
    import subprocess
    import sys

    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.Popen([sys.executable, "-m", "slate.serve.asgi", "--workers", "2", "--port", str(port),
                             "--store", redis_server.url, "--log-dir", str(tmp_path / "log"), "--solver", "independent"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    pids: set[int] = set()
    try:
        deadline = time.monotonic() + 120
        while len(pids) < 2 and time.monotonic() < deadline:
            try:  # a new client each time: a new connection, hashed afresh
                with httpx.Client(base_url=url, timeout=5) as client:
                    r = client.get("/health")
                    if r.status_code == 200:
                        pids.add(r.json()["pid"])
            except httpx.HTTPError:
                time.sleep(0.2)
        assert len(pids) == 2, f"connections reached {len(pids)} worker(s)"
        with httpx.Client(base_url=url, timeout=10) as client:
            client.post("/compose", json=page(1, 0))
            started = time.perf_counter()
            for session in range(1, 21):
                assert client.post("/compose", json=page(1, session)).status_code == 200
            per_page_ms = (time.perf_counter() - started) / 20 * 1e3
        assert per_page_ms < 35, f"{per_page_ms:.1f} ms per page: responses wait for delayed ACKs"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    assert "served for" in out
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_the_direct_compose_route_answers_as_the_starlette_route_does(redis_server):
    """``POST /compose`` is served by plain ASGI (the hot path); Starlette's own route for it gives
    the same answers, including the 400s, and a body sent in several chunks is read whole."""
    import asyncio
    import json

    app = create_app(lambda: demo_composer(redis_server.url, None, solver="independent"), warm_up=False)

    async def post(target, body: bytes, split: int = 0) -> tuple[int, dict, dict]:
        parts = [body[:split], body[split:]] if split else [body]
        messages = [{"type": "http.request", "body": b, "more_body": k < len(parts) - 1} for k, b in enumerate(parts)]
        sent: list[dict] = []

        async def receive():
            return messages.pop(0)

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": "/compose", "raw_path": b"/compose", "query_string": b"",
                 "root_path": "", "headers": [(b"content-type", b"application/json")],
                 "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
        await target(scope, receive, send)
        headers = {k.decode(): v.decode() for k, v in sent[0]["headers"]}
        body_out = b"".join(m.get("body", b"") for m in sent[1:])
        assert int(headers["content-length"]) == len(body_out)
        return sent[0]["status"], headers, json.loads(body_out)

    async def scenario() -> None:
        async with app.app.router.lifespan_context(app.app):
            bad = [b"{not json", b"[1, 2]", json.dumps({"member_id": 7}).encode(),
                   json.dumps({**page(1, 0), "x": 1}).encode()]
            for body in bad:
                a, b = await post(app, body), await post(app.app, body)
                assert a[0] == b[0] == 400, body
                assert a[2] == b[2] and a[2]["error"]
                assert a[1]["content-type"] == b[1]["content-type"] == "application/json"
            a, b = await post(app, json.dumps(page(3, 0)).encode()), await post(app.app, json.dumps(page(4, 0)).encode())
            assert a[0] == b[0] == 200 and a[2].keys() == b[2].keys() and len(a[2]["titles"]) == 6
            c = await post(app, json.dumps(page(5, 0)).encode(), split=10)  # two chunks
            assert c[0] == 200 and c[2]["member_id"] == 5
            composer = app._state["composer"]
            assert composer.stats_.snapshot()["pages"] == 3  # the bad requests are not pages

    asyncio.run(scenario())
