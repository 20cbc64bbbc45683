"""Many processes serving the same members through one state store: lost updates and budget breaks.

:func:`run_contention` starts ``n_processes`` worker processes; each composes pages for the same
few members through one store (an SQLite file or a Redis URL) with a change budget, as fast as it
can. Every page's store calls are recorded (versions read and written, and their times on the
system-wide monotonic clock), and :func:`analyse` counts afterwards:

- **lost updates**: committed pages that overwrote, unseen, another page committed after their
  read began and before their write began (the other page's whole write lies between this page's
  read and its write). With compare-and-set this cannot happen: the second write is refused.
- **budget breaks**: pages that changed more than ``max_changes`` images relative to the page the
  member last saw (the page that committed the version this page planned from).
- **conflicts**: pages whose write lost to another page (fault ``store_conflict``), re-planned.

``blind=True`` writes with ``put`` (no version check), as slate did before versions: the same
analysis then finds the lost updates (that is how one knows it can).

Examples
--------
>>> import os, tempfile
>>> result = run_contention("sqlite:///" + os.path.join(tempfile.mkdtemp(), "s.db"), n_processes=2,
...                         pages=40, n_members=3)
>>> result["pages"], result["lost_updates"], result["budget_breaks"]
(80, 0, 0)
"""

from __future__ import annotations

import bisect
import multiprocessing
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["RecordingStore", "analyse", "run_contention", "serve_pages"]


class RecordingStore:
    """Wrap a versioned store; record, per thread, the reads and writes of the page being composed.

    ``events`` (per thread) is a list of ``("read", version, t0, t1)`` and
    ``("write", version, committed, t0, t1)``; :meth:`take` returns and clears it.
    """

    def __init__(self, inner: Any, *, blind: bool = False) -> None:
        self.inner = inner
        self.blind = blind
        self._local = threading.local()

    def _events(self) -> list[tuple[Any, ...]]:
        events: list[tuple[Any, ...]] | None = getattr(self._local, "events", None)
        if events is None:
            events = self._local.events = []
        return events

    def take(self) -> list[tuple[Any, ...]]:
        events = self._events()
        self._local.events = []
        return events

    def read(self, member_id: int, title_ids: Sequence[str]) -> tuple[dict[str, Any], int]:
        t0 = time.monotonic()
        states, version = self.inner.read(member_id, title_ids)
        self._events().append(("read", version, t0, time.monotonic()))
        return states, version

    def write(self, member_id: int, states: Mapping[str, Any], version: int) -> bool:
        t0 = time.monotonic()
        if self.blind:
            self.inner.put(member_id, states)
            ok = True
        else:
            ok = self.inner.write(member_id, states, version)
        self._events().append(("write", version, ok, t0, time.monotonic()))
        return bool(ok)

    def get(self, member_id: int, title_ids: Sequence[str]) -> dict[str, Any]:
        return dict(self.inner.get(member_id, title_ids))

    def put(self, member_id: int, states: Mapping[str, Any]) -> None:
        self.inner.put(member_id, states)

    def purge(self, before: float) -> int:
        return int(self.inner.purge(before))

    def close(self) -> None:
        self.inner.close()


def _request(member: int, session: int, n_titles: int, n_images: int) -> dict[str, Any]:
    return {
        "member_id": member,
        "session_id": session,
        "titles": [
            {"title_id": f"T{t}", "image_ids": [f"T{t}-{k}" for k in range(n_images)], "row": t // 6, "col": t % 6}
            for t in range(n_titles)
        ],
    }


def serve_pages(
    spec: str,
    worker: int,
    pages: int,
    n_members: int,
    *,
    n_titles: int = 12,
    n_images: int = 4,
    max_changes: int = 3,
    blind: bool = False,
    seed: int = 0,
    store_options: Mapping[str, Any] | None = None,
) -> list[tuple[Any, ...]]:
    """Serve ``pages`` pages to random members of ``range(n_members)`` through the store ``spec``.

    Returns one record per page: ``(member, events, image_ids, faults)``. Scores are redrawn for
    every page, so the optimiser always wants to change more images than the budget allows.
    """
    from slate.serve import ComposeConfig, Composer
    from slate.stability import StabilityRules, make_store

    rng = np.random.default_rng([seed, worker])
    store = RecordingStore(make_store(spec, **dict(store_options or {})), blind=blind)
    config = ComposeConfig(
        solver="independent", stability=StabilityRules(churn=0.0, max_changes=max_changes), diversity=0.0
    )

    def scores(request: Any) -> Any:
        return rng.random((request.n_titles, request.n_images))

    composer = Composer(scores, store, config=config)
    records = []
    try:
        for i in range(pages):
            member = int(rng.integers(n_members))
            decision = composer.compose(_request(member, worker * 1_000_000_000 + i, n_titles, n_images))
            records.append((member, store.take(), decision.image_ids, tuple(f.value for f in decision.faults)))
    finally:
        store.close()
    return records


def _worker(barrier: Any, results: Any, spec: str, worker: int, pages: int, n_members: int,
            kwargs: dict[str, Any]) -> None:
    try:
        from slate.serve import compose  # noqa: F401  (import before the start line)

        barrier.wait(timeout=120)  # every process starts serving at once
        results.put((worker, serve_pages(spec, worker, pages, n_members, **kwargs)))
    except BaseException as err:  # reported by the parent
        results.put((worker, err))


def analyse(records: Sequence[tuple[Any, ...]], *, max_changes: int, blind: bool = False) -> dict[str, Any]:
    """Count lost updates, budget breaks and conflicts in the records of :func:`serve_pages`."""
    faults: Counter[str] = Counter()
    committed: dict[int, list[tuple[Any, ...]]] = defaultdict(list)  # member -> (w0, w1, r1, version, images)
    served = []
    for member, events, images, page_faults in records:
        faults.update(page_faults)
        reads = [e for e in events if e[0] == "read"]
        writes = [e for e in events if e[0] == "write" and e[2]]
        if not reads:
            continue
        last_read = reads[-1]
        served.append((member, last_read, images))
        if writes:
            _, version, _, w0, w1 = writes[-1]
            committed[member].append((w0, w1, last_read[3], version + 1, images))
    lost = 0
    by_version: dict[tuple[int, int], tuple[str, ...]] = {}
    for member, pages in committed.items():
        pages.sort()
        starts = [p[0] for p in pages]
        for w0, _w1, r1, version, images in pages:
            # another page's whole write between this page's read and its write: overwritten unseen
            lo, hi = bisect.bisect_right(starts, r1), bisect.bisect_left(starts, w0)
            if any(pages[j][1] < w0 for j in range(lo, hi)):
                lost += 1
            if not blind:
                if (member, version) in by_version:
                    lost += 1  # two commits of one version: compare-and-set is broken
                by_version[(member, version)] = images
    breaks = 0
    for member, read, images in served:
        if blind:  # no exact versions: the latest page committed before this page's read began
            before = [p for p in committed[member] if p[1] < read[2]]
            previous = max(before)[4] if before else None
        else:
            previous = by_version.get((member, read[1]))
        if previous is not None and sum(a != b for a, b in zip(images, previous, strict=True)) > max_changes:
            breaks += 1
    return {
        "pages": len(records),
        "committed": sum(len(p) for p in committed.values()),
        "conflicts": faults.get("store_conflict", 0),
        "lost_updates": lost,
        "budget_breaks": breaks,
        "faults": dict(faults),
    }


def run_contention(
    spec: str,
    *,
    n_processes: int = 2,
    pages: int = 500,
    n_members: int = 5,
    max_changes: int = 3,
    blind: bool = False,
    seed: int = 0,
    store_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Serve ``pages`` pages in each of ``n_processes`` processes through ``spec``; :func:`analyse` them.

    ``spec`` is anything :func:`slate.stability.make_store` takes as a name (``"sqlite:///path"``,
    ``"redis://127.0.0.1:6379/0"``), with ``store_options`` (e.g. ``timeout_ms``). The processes start serving at once (a barrier); the result
    also has ``seconds`` and ``pages_per_s`` (all processes together).
    """
    kwargs = {"max_changes": max_changes, "blind": blind, "seed": seed, "store_options": dict(store_options or {})}
    ctx = multiprocessing.get_context("forkserver")  # no fork of this (maybe threaded) process
    ctx.set_forkserver_preload(["numpy", "pydantic", "slate.serve", "slate.testing.contention"])
    barrier = ctx.Barrier(n_processes + 1)
    results = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(barrier, results, spec, w, pages, n_members, kwargs))
             for w in range(n_processes)]
    for proc in procs:
        proc.start()
    try:
        barrier.wait(timeout=120)
        started = time.perf_counter()
        got = [results.get(timeout=600) for _ in procs]
        seconds = time.perf_counter() - started
    finally:
        for proc in procs:
            proc.join(timeout=60)
    failed = [r for _, r in got if isinstance(r, BaseException)]
    if failed:
        raise RuntimeError(f"a contention worker failed: {failed[0]!r}") from failed[0]
    out = analyse([r for _, rs in got for r in rs], max_changes=max_changes, blind=blind)
    out.update(seconds=seconds, pages_per_s=out["pages"] / seconds, processes=n_processes)
    return out
