"""compose() latency and throughput on one core, with fault injection.

Pages of 40 titles x 10 images and 150 x 20, served to returning members through the full
serving path: request validation (pydantic, from a dict), the embedded SQLite state store,
scoring (a linear model over image embeddings, vectorised), stability rules (churn, budget,
dwell, hysteresis, locks), the page solver (``fast`` by default) within its budget, sticky
epsilon exploration with exact propensities, and Parquet decision logging (fsync'd batches).

Prints, per page size: p50 / p99 / p99.9 latency (wall clock and the request thread's CPU time),
pages/s on one core, per stage the mean / p50 / p99 / p99.9 time and share, the garbage
collections that ran during the timed pages, and what the pages did (explored titles, changed
images per returning title, statuses).

Requests are built before the timed loop (so building them is not timed); they stay in memory, a
heap of a few million objects that Python's full (generation-2) collections must traverse, as a
server's long-lived objects would. ``--gc-freeze`` calls ``gc.freeze()`` after the warm-up, as a
server would after start-up, so those collections skip the warm-up's objects.

``--store sqlite,redis,memory`` runs the same pages through each store in turn (Redis: a
``redis-server`` started on a free loopback port, persistence off, unless ``--redis-url``), for
same-run comparisons; ``--gc-freeze`` then calls :meth:`Composer.warm_up`, which composes warm-up
pages and freezes the heap.

``--faults N`` instead serves N requests with injected faults (solver errors, solver overruns,
invalid solver pages, store read/write errors, NaN scores) and checks every response is a valid
page with each injected fault visible in its status.

Usage::

    python benchmarks/compose_latency.py                   # both sizes
    python benchmarks/compose_latency.py --pages 5000 --sizes 40x10
    python benchmarks/compose_latency.py --faults 100000
    python benchmarks/compose_latency.py --sizes 40x10 --pages 5000 --store sqlite,redis --gc-freeze
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import dataclasses  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

import slate.solvers.chain  # noqa: E402  (registers the solvers the registry does not import yet)
import slate.solvers.fast  # noqa: E402,F401
from slate.page.embeddings import ImageEmbeddings  # noqa: E402
from slate.serve import (  # noqa: E402
    ComposeConfig,
    Composer,
    DecisionLogger,
    DecisionLogOptions,
    Fault,
    PageDecision,
    StickyEpsilon,
)
from slate.solvers import get_solver, register_solver  # noqa: E402
from slate.solvers.result import Status  # noqa: E402
from slate.stability import SQLiteStore, StabilityRules, make_store  # noqa: E402
from slate.testing.stores import redis_server  # noqa: E402

STAGES = ("validate", "store_get", "score", "plan", "problem", "solve", "explore", "store_put", "log")
T0 = 1_714_600_000.0  # 2024-05-01


class World:
    """A catalog of titles and images, members with a homepage each, and a linear scoring model."""

    def __init__(self, n_titles: int, n_images: int, *, n_catalog: int, n_members: int, dim: int = 32,
                 seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.n_titles, self.n_images, self.dim = n_titles, n_images, dim
        self.cols = 8 if n_titles <= 40 else 10
        self.image_ids = [[f"T{t}-I{k}" for k in range(n_images)] for t in range(n_catalog)]
        emb = rng.normal(size=(n_catalog * n_images, dim))
        self.catalog = ImageEmbeddings(tuple(i for ids in self.image_ids for i in ids), emb)
        self.members = rng.normal(size=(n_members, dim)).astype(np.float32) * 0.4
        self.pages = [rng.choice(n_catalog, n_titles, replace=False) for _ in range(n_members)]
        self.locked = [set(rng.choice(n_titles, max(1, n_titles // 20), replace=False).tolist())
                       for _ in range(n_members)]
        self.rng = rng
        self.n_catalog = n_catalog
        self.sessions = np.zeros(n_members, dtype=np.int64)

    def request(self, member: int, when: float) -> dict[str, Any]:
        """The member's next page request: their homepage with ~5% of titles replaced."""
        page = self.pages[member]
        swap = np.flatnonzero(self.rng.random(self.n_titles) < 0.05)
        for t in swap.tolist():
            new = int(self.rng.integers(self.n_catalog))
            if new not in page:
                page[t] = new
        self.sessions[member] += 1
        locked = self.locked[member]
        return {
            "member_id": member,
            "session_id": int(member * 1_000_000 + self.sessions[member]),
            "timestamp": datetime.fromtimestamp(when, tz=timezone.utc),
            "titles": [
                {"title_id": f"T{int(title)}", "image_ids": self.image_ids[int(title)],
                 "row": i // self.cols, "col": i % self.cols, "locked": i in locked}
                for i, title in enumerate(page.tolist())
            ],
        }


class LinearScorer:
    """sigmoid(member . image embedding): one gather and one matrix product per page."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.nan_next = False

    def score_page(self, request: Any) -> np.ndarray:
        w = self.world
        rows = w.catalog.rows([i for t in request.titles for i in t.image_ids])
        z = w.catalog.unit[rows] @ w.members[request.member_id]
        scores = 0.02 + 0.18 / (1.0 + np.exp(-3.0 * z.reshape(request.n_titles, -1)))
        if self.nan_next:
            scores[int(w.rng.integers(request.n_titles)), 0] = np.nan
        return scores


LOGGER = "background"  # --logger: the writer thread's priority, or the durable journal
STORE_URLS: dict[str, str] = {}  # "redis" -> the URL of the server of this run


def open_store(kind: str, folder: Path) -> Any:
    if kind == "sqlite":
        return SQLiteStore(folder / "state.db")
    if kind == "redis":
        return make_store(STORE_URLS["redis"], prefix=f"bench-{folder.name}:", ttl_days=30)
    return make_store(kind)


def make_composer(world: World, folder: Path, *, solver: str, time_ms: float, sticky_days: float,
                  store_kind: str = "sqlite") -> tuple[Composer, Any, DecisionLogger]:
    store = open_store(store_kind, folder)
    durable = LOGGER.startswith("durable")
    options = DecisionLogOptions(fsync=LOGGER == "durable") if durable else DecisionLogOptions()
    logger = DecisionLogger(folder / "decisions", options, batch_pages=512, background=LOGGER != "foreground",
                            durable=durable)
    rules = StabilityRules(churn=0.005, max_changes=max(2, world.n_titles // 4), dwell_sessions=3, dwell_days=7,
                           min_gain=0.005)
    options = {"compute_bound": False} if solver == "fast" else {}
    config = ComposeConfig(solver=solver, solver_options=options, solver_time_ms=time_ms, solver_grace_ms=2.0,
                           diversity=0.05, stability=rules)
    composer = Composer(LinearScorer(world), store, StickyEpsilon(0.05, max_explored=2, sticky_days=sticky_days,
                                                                  seed=1),
                        config=config, catalog=world.catalog, logger=logger)
    return composer, store, logger


def pin_one_core() -> str:
    try:
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return f"pinned to CPU {cpu}"
    except (AttributeError, OSError):  # pragma: no cover - platforms without affinity
        return "not pinned"


class GcWatch:
    """Count and time garbage collections (``gc.callbacks``) per generation."""

    def __init__(self) -> None:
        self.started = 0.0
        self.times: list[list[float]] = [[], [], []]

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
        else:
            self.times[info["generation"]].append((time.perf_counter() - self.started) * 1e3)

    def summary(self) -> dict[str, Any]:
        return {f"gen{g}": {"n": len(t), "mean_ms": float(np.mean(t)) if t else 0.0,
                            "max_ms": float(np.max(t)) if t else 0.0} for g, t in enumerate(self.times)}


def latency_run(size: tuple[int, int], n_pages: int, *, n_members: int, solver: str, time_ms: float,
                sticky_days: float, seed: int, gc_freeze: bool = False, store_kind: str = "sqlite") -> dict[str, Any]:
    n_titles, n_images = size
    world = World(n_titles, n_images, n_catalog=4 * n_titles * 10, n_members=n_members, seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        composer, store, logger = make_composer(world, Path(tmp), solver=solver, time_ms=time_ms,
                                                sticky_days=sticky_days, store_kind=store_kind)
        order = world.rng.integers(0, n_members, size=n_pages + 300)
        clock = T0
        for member in order[:300].tolist():  # warm-up: JIT compilation, caches, first sessions
            clock += 30.0
            composer.compose(world.request(member, clock))
        requests = []
        for member in order[300:].tolist():
            clock += 30.0  # a page every 30 s: a member returns every n_members * 30 s on average
            requests.append(world.request(member, clock))
        composer.stats_ = type(composer.stats_)()
        latency = np.empty(n_pages)
        cpu = np.empty(n_pages)
        stage = {name: np.zeros(n_pages) for name in STAGES}
        returning = changed = 0
        if gc_freeze:
            composer.warm_up()  # warm-up pages (not saved, not logged), then gc.collect() + gc.freeze()
        watch = GcWatch()
        gc.callbacks.append(watch)
        started = time.perf_counter()
        cpu_started = time.process_time()
        for i, request in enumerate(requests):
            c = time.thread_time()
            t = time.perf_counter()
            decision = composer.compose(request)
            latency[i] = time.perf_counter() - t
            cpu[i] = time.thread_time() - c
            for name in STAGES:
                stage[name][i] = decision.timings_ms.get(name, 0.0)
            has_prev = np.array([p is not None for p in decision.previous_image_ids])
            returning += int(has_prev.sum())
            changed += int(decision.changed[has_prev].sum())
        logger.close()  # the last batches' writes count too
        wall = time.perf_counter() - started
        process_cpu = time.process_time() - cpu_started
        gc.callbacks.remove(watch)
        if gc_freeze:
            gc.unfreeze()
        files = len(logger.files_)
        checkpoints = getattr(store, "checkpoints_", None)
        store.close()
    total_stage = sum(float(v.sum()) for v in stage.values())
    snap = composer.stats_.snapshot()
    return {
        "size": f"{n_titles}x{n_images}",
        "pages": n_pages,
        "p50_ms": float(np.percentile(latency, 50) * 1e3),
        "p99_ms": float(np.percentile(latency, 99) * 1e3),
        "p999_ms": float(np.percentile(latency, 99.9) * 1e3),
        "max_ms": float(latency.max() * 1e3),
        "log_max_ms": float(stage["log"].max()) if "log" in stage else 0.0,
        "store": store_kind,
        "mean_ms": float(latency.mean() * 1e3),
        "cpu_p50_ms": float(np.percentile(cpu, 50) * 1e3),
        "cpu_p99_ms": float(np.percentile(cpu, 99) * 1e3),
        "cpu_p999_ms": float(np.percentile(cpu, 99.9) * 1e3),
        "cpu_max_ms": float(cpu.max() * 1e3),
        "pages_per_s": n_pages / wall,
        "pages_per_cpu_s": n_pages / process_cpu,
        "stage_share": {k: float(v.sum()) / total_stage for k, v in stage.items()},
        "stage_mean_ms": {k: float(v.mean()) for k, v in stage.items()},
        "stage_p50_ms": {k: float(np.percentile(v, 50)) for k, v in stage.items()},
        "stage_p99_ms": {k: float(np.percentile(v, 99)) for k, v in stage.items()},
        "stage_p999_ms": {k: float(np.percentile(v, 99.9)) for k, v in stage.items()},
        "stage_max_ms": {k: float(v.max()) for k, v in stage.items()},
        "gc": watch.summary(),
        "gc_freeze": gc_freeze,
        "store_checkpoints": checkpoints,
        "explored_per_page": snap["explored"] / n_pages,
        "changed_per_returning_title": changed / max(returning, 1),
        "statuses": snap["statuses"],
        "solver_statuses": snap["solver_statuses"],
        "faults": snap["faults"],
        "log_files": files,
    }


# ---------------------------------------------------------------------------------- faults
class FaultySolver:
    """Wraps a solver; misbehaves as told by ``mode`` (set per request by the driver)."""

    mode = "ok"
    delay_s = 0.004

    def __init__(self, inner: str = "fast", **options: Any) -> None:
        self.inner = get_solver(inner, **options)
        self.name = "bench-faulty"

    def solve(self, problem: Any, time_limit_ms: float | None = None) -> Any:
        mode = FaultySolver.mode
        if mode == "raise":
            raise RuntimeError("injected solver crash")
        result = self.inner.solve(problem, time_limit_ms=time_limit_ms)
        if mode == "overrun":
            time.sleep(FaultySolver.delay_s)
        elif mode == "invalid":
            result = dataclasses.replace(result, assignment=np.full(problem.n_titles, problem.n_images))
        elif mode == "infeasible":
            result = dataclasses.replace(result, status=Status.INFEASIBLE)
        return result


class FaultyStore:
    """Wraps a store; raises on get/put when told to."""

    def __init__(self, inner: SQLiteStore) -> None:
        self.inner = inner
        self.fail_get = self.fail_put = False

    def get(self, member_id: int, title_ids: Any) -> Any:
        if self.fail_get:
            raise OSError("injected: database is locked")
        return self.inner.get(member_id, title_ids)

    def put(self, member_id: int, states: Any) -> None:
        if self.fail_put:
            raise OSError("injected: disk I/O error")
        self.inner.put(member_id, states)

    def purge(self, before: float) -> int:
        return self.inner.purge(before)

    def close(self) -> None:
        self.inner.close()


def check_page(decision: PageDecision, request: dict[str, Any], previous: dict[str, str], budget: int | None) -> str:
    """'' for a valid page, else what is wrong."""
    changes = 0
    for t, title in enumerate(request["titles"]):
        image = decision.image_ids[t]
        if decision.title_ids[t] != title["title_id"] or image not in title["image_ids"]:
            return f"title {t} shows {image}, not a candidate"
        prev = previous.get(title["title_id"])
        if prev is not None and prev in title["image_ids"]:
            if title["locked"] and image != prev:
                return f"locked title {t} changed"
            changes += image != prev
    if budget is not None and changes > budget:
        return f"{changes} changes > budget {budget}"
    if not ((decision.propensity > 0) & (decision.propensity <= 1)).all():
        return "propensity outside (0, 1]"
    return ""


def fault_run(n_requests: int, *, n_members: int, time_ms: float, seed: int) -> dict[str, Any]:
    register_solver("bench-faulty", FaultySolver)
    world = World(40, 10, n_catalog=1600, n_members=n_members, seed=seed)
    rng = np.random.default_rng(seed + 1)
    with tempfile.TemporaryDirectory() as tmp:
        composer, store, logger = make_composer(world, Path(tmp), solver="fast", time_ms=time_ms, sticky_days=1.0)
        faulty_store = FaultyStore(store)
        composer.store = faulty_store
        composer.config = composer.config.model_copy(update={"solver": "bench-faulty"})
        scorer = composer.policy
        assert isinstance(scorer, LinearScorer)
        budget = composer.config.stability.max_changes
        last: dict[int, dict[str, str]] = {}
        injected_counts: dict[str, int] = {}
        seen_counts: dict[str, int] = {}
        invalid = missing = 0
        clock = T0
        modes = ["ok", "raise", "overrun", "invalid", "infeasible"]
        started = time.perf_counter()
        for _ in range(n_requests):
            member = int(rng.integers(n_members))
            clock += 30.0
            request = world.request(member, clock)
            FaultySolver.mode = str(rng.choice(modes, p=[0.84, 0.04, 0.04, 0.04, 0.04]))
            scorer.nan_next = bool(rng.random() < 0.04)
            faulty_store.fail_get = bool(rng.random() < 0.03)
            faulty_store.fail_put = bool(rng.random() < 0.03)
            decision = composer.compose(request)
            previous = {} if faulty_store.fail_get else last.get(member, {})
            if check_page(decision, request, previous, None if faulty_store.fail_get else budget):
                invalid += 1
            injected = set()
            if scorer.nan_next:
                injected.add(Fault.SCORES_NOT_FINITE)
            elif FaultySolver.mode in ("raise", "invalid", "infeasible"):
                injected.add(Fault.SOLVER_FAILED)
            elif FaultySolver.mode == "overrun":
                injected.add(Fault.SOLVER_LATE)
            if faulty_store.fail_get:
                injected.add(Fault.STORE_READ_FAILED)
            elif faulty_store.fail_put:
                injected.add(Fault.STORE_WRITE_FAILED)
            for f in injected:
                injected_counts[f.value] = injected_counts.get(f.value, 0) + 1
            for f in decision.faults:
                seen_counts[f.value] = seen_counts.get(f.value, 0) + 1
            missing += len(injected - set(decision.faults))
            if not faulty_store.fail_get and not faulty_store.fail_put:
                last[member] = dict(zip(decision.title_ids, decision.image_ids, strict=True))
        wall = time.perf_counter() - started
        logger.close()
        store.close()
    snap = composer.stats_.snapshot()
    return {
        "requests": n_requests,
        "valid_pages": n_requests - invalid,
        "injected_faults_not_in_status": missing,
        "injected": injected_counts,
        "reported": seen_counts,
        "stats_faults": snap["faults"],
        "statuses": snap["statuses"],
        "seconds": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="40x10,150x20")
    parser.add_argument("--pages", type=int, default=None, help="pages per size (default 20000 / 5000)")
    parser.add_argument("--members", type=int, default=2000)
    parser.add_argument("--solver", default="fast")
    parser.add_argument("--time-ms", type=float, default=None, help="solver budget (default 1 / 8 ms)")
    parser.add_argument("--sticky-days", type=float, default=1.0)
    parser.add_argument("--faults", type=int, default=0, help="run N fault-injected requests instead")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the process to one CPU")
    parser.add_argument("--store", default="sqlite",
                        help="state store(s), comma-separated: sqlite, redis, memory (same pages for each)")
    parser.add_argument("--redis-url", default=None,
                        help="a Redis server to use (default: start redis-server on a free loopback port)")
    parser.add_argument("--gc-freeze", action="store_true",
                        help="gc.freeze() after the warm-up, as a server would after start-up")
    parser.add_argument("--logger", choices=["background", "foreground", "durable", "durable-nofsync"], default="background",
                        help="decision logger: low-priority writer thread, normal one, durable (journal, fdatasync per "
                             "page), or durable without fsync (survives a process crash, not power loss)")
    args = parser.parse_args()
    global LOGGER
    LOGGER = args.logger
    pinned = "not pinned" if args.no_pin else pin_one_core()
    print(f"# compose() benchmark — {platform.processor() or platform.machine()}, {pinned}, "
          f"load average {os.getloadavg()[0]:.2f}")
    results: dict[str, Any] = {}
    stores = [k.strip() for k in args.store.split(",") if k.strip()]
    with contextlib.ExitStack() as stack:
        if "redis" in stores:
            if args.redis_url:
                STORE_URLS["redis"] = args.redis_url
            else:
                server = stack.enter_context(redis_server())
                with contextlib.suppress(AttributeError, OSError):  # the server is not pinned with us
                    os.sched_setaffinity(server.pid, range(os.cpu_count() or 1))
                STORE_URLS["redis"] = server.url
        run(args, stores, results)
    print(f"\n# load average at the end {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def run(args: argparse.Namespace, stores: list[str], results: dict[str, Any]) -> None:
    if args.faults:
        r = fault_run(args.faults, n_members=args.members, time_ms=args.time_ms or 1.0, seed=args.seed)
        results["faults"] = r
        print(f"\n## fault injection: {r['requests']} requests (40x10), {r['seconds']:.1f} s")
        print(f"valid pages: {r['valid_pages']} / {r['requests']}; injected faults missing from the status: "
              f"{r['injected_faults_not_in_status']}")
        print(f"{'fault':<22}{'injected':>10}{'reported':>10}{'counted':>10}")
        for name in sorted(set(r["injected"]) | set(r["reported"])):
            print(f"{name:<22}{r['injected'].get(name, 0):>10}{r['reported'].get(name, 0):>10}"
                  f"{r['stats_faults'].get(name, 0):>10}")
        print(f"statuses: {r['statuses']}")
        return
    for spec in args.sizes.split(","):
        for store_kind in stores:
            n, k = (int(x) for x in spec.lower().split("x"))
            pages = args.pages or (20_000 if n <= 40 else 5_000)
            time_ms = args.time_ms or (1.0 if n <= 40 else 8.0)
            r = latency_run((n, k), pages, n_members=args.members, solver=args.solver, time_ms=time_ms,
                            sticky_days=args.sticky_days, seed=args.seed, gc_freeze=args.gc_freeze,
                            store_kind=store_kind)
            results[f"{r['size']}-{store_kind}" if len(stores) > 1 else r["size"]] = r
            print(f"\n## {r['size']}: {pages} pages, solver {args.solver} ({time_ms:g} ms budget), {store_kind} store, "
                  f"sticky epsilon 0.05 (<= 2 titles), Parquet logging"
                  f"{', gc.freeze() after warm-up' if args.gc_freeze else ''}")
            print(f"{'p50 ms':>8}{'p99 ms':>8}{'p99.9 ms':>10}{'max ms':>8}{'mean ms':>9}{'cpu p50':>9}{'cpu p99':>9}"
                  f"{'pages/s':>9}{'pages/cpu-s':>13}")
            print(f"{r['p50_ms']:>8.2f}{r['p99_ms']:>8.2f}{r['p999_ms']:>10.2f}{r['max_ms']:>8.2f}{r['mean_ms']:>9.2f}"
                  f"{r['cpu_p50_ms']:>9.2f}{r['cpu_p99_ms']:>9.2f}{r['pages_per_s']:>9.0f}"
                  f"{r['pages_per_cpu_s']:>13.0f}")
            print(f"request-thread CPU p99.9 {r['cpu_p999_ms']:.2f} ms, max {r['cpu_max_ms']:.2f} ms")
            print("(latency: wall clock of one compose(); cpu: that call's thread CPU time, which other load on "
                  "the machine does not inflate; pages/cpu-s: pages per second of process CPU, logging thread "
                  "included)")
            print(f"max {r['max_ms']:.2f} ms; log stage: p99.9 {r['stage_p999_ms'].get('log', 0.0):.3f} ms, "
                  f"max {r['log_max_ms']:.2f} ms ({LOGGER} logger)")
            print(f"{'stage':<10}{'mean ms':>9}{'p50 ms':>8}{'p99 ms':>8}{'p99.9 ms':>10}{'max ms':>8}{'share':>8}")
            for name in STAGES:
                print(f"{name:<10}{r['stage_mean_ms'][name]:>9.3f}{r['stage_p50_ms'][name]:>8.3f}"
                      f"{r['stage_p99_ms'][name]:>8.3f}{r['stage_p999_ms'][name]:>10.3f}"
                      f"{r['stage_max_ms'][name]:>8.1f}{r['stage_share'][name]:>8.1%}")
            print("gc during the timed pages: " + "; ".join(
                f"{g} {v['n']} x {v['mean_ms']:.2f} ms (max {v['max_ms']:.1f})" for g, v in r["gc"].items())
                + f"; store checkpoints {r['store_checkpoints']}")
            print(f"explored titles/page {r['explored_per_page']:.2f}; changed images per returning title "
                  f"{r['changed_per_returning_title']:.3f}; statuses {r['statuses']}; "
                  f"solver {r['solver_statuses']}; faults {r['faults']}; {r['log_files']} log files")


if __name__ == "__main__":
    main()
