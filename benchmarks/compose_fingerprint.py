"""A fingerprint of ``compose()``: serve N pages and print one SHA-256 over what they decided.

Pages of 24 titles x 6 images on a grid, returning members, a fixed seed: the full serving path
with an in-memory state store, stability rules (churn, change budget, dwell, locks), sticky
epsilon exploration, visual diversity from an image catalog, and a Parquet decision log. The
hash covers every decision (images, propensities, exploration, changes and reasons, previous
images, objective parts, solver status, faults), the member's stored state after each page, and
the decision-log rows read back (timing columns left out: they are wall-clock). Time budgets are
generous so no page is late; page ids are given in the requests.

Two versions of the code that compose the same pages print the same hash: run it before and
after a refactoring that must not change behaviour::

    python benchmarks/compose_fingerprint.py --pages 2000
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import hashlib  # noqa: E402
import tempfile  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

import slate.solvers.fast  # noqa: E402,F401  (registers the serving solver)
from slate.page.embeddings import ImageEmbeddings  # noqa: E402
from slate.serve import ComposeConfig, Composer, DecisionLogger, ImageCatalog, StickyEpsilon  # noqa: E402
from slate.stability import InMemoryStore, StabilityRules  # noqa: E402

# The one embeddings class serves compose() itself (page_units); before, the serving view was
# slate.serve.ImageCatalog: use whichever this tree has, so the script runs on both versions.
CATALOG = ImageEmbeddings if hasattr(ImageEmbeddings, "page_units") else ImageCatalog

T0 = 1_714_600_000.0  # 2024-05-01
N_TITLES, N_IMAGES, COLS = 24, 6, 8


def _feed(h: Any, *parts: Any) -> None:
    for part in parts:
        if isinstance(part, np.ndarray):
            h.update(str(part.dtype).encode())
            h.update(np.ascontiguousarray(part).tobytes())
        else:
            h.update(repr(part).encode())
        h.update(b"\x00")


def fingerprint(n_pages: int, seed: int = 0) -> tuple[str, dict[str, int]]:
    rng = np.random.default_rng(seed)
    n_catalog, n_members, dim = 120, 40, 16
    image_ids = [[f"T{t}-I{k}" for k in range(N_IMAGES)] for t in range(n_catalog)]
    catalog = CATALOG(tuple(i for ids in image_ids for i in ids), rng.normal(size=(n_catalog * N_IMAGES, dim)))
    members = rng.normal(size=(n_members, dim)) * 0.5
    homepages = [rng.choice(n_catalog, N_TITLES, replace=False) for _ in range(n_members)]
    locked = [set(rng.choice(N_TITLES, 2, replace=False).tolist()) for _ in range(n_members)]
    sessions = np.zeros(n_members, dtype=np.int64)

    def scorer(request: Any) -> np.ndarray:
        rows = catalog.rows([i for t in request.titles for i in t.image_ids])
        z = catalog.unit[rows].astype(np.float64) @ members[request.member_id]
        return 0.02 + 0.18 / (1.0 + np.exp(-3.0 * z.reshape(request.n_titles, -1)))

    rules = StabilityRules(churn=0.005, max_changes=6, dwell_sessions=3, dwell_days=7, min_gain=0.005)
    config = ComposeConfig(solver="fast", solver_options={"compute_bound": False}, solver_time_ms=10_000.0,
                           solver_grace_ms=10_000.0, scoring_budget_ms=60_000.0, store_budget_ms=60_000.0,
                           diversity=0.05, stability=rules)
    warm = Composer(scorer, InMemoryStore(), config=config, catalog=catalog)  # JIT compilation: not hashed
    warm.compose({"member_id": 0, "session_id": 0, "page_id": 0, "timestamp": datetime.fromtimestamp(T0, tz=timezone.utc),
                  "titles": [{"title_id": f"T{t}", "image_ids": image_ids[t], "row": t // COLS, "col": t % COLS}
                             for t in range(N_TITLES)]})
    store = InMemoryStore()
    h = hashlib.sha256()
    counts = {"pages": 0, "explored": 0, "changed": 0, "degraded": 0}
    with tempfile.TemporaryDirectory() as tmp:
        logger = DecisionLogger(Path(tmp) / "log", batch_pages=256)
        composer = Composer(scorer, store, StickyEpsilon(0.05, max_explored=2, sticky_sessions=2, seed=1),
                            config=config, catalog=catalog, logger=logger)
        clock = T0
        for page_id in range(n_pages):
            member = int(rng.integers(n_members))
            page = homepages[member]
            for t in np.flatnonzero(rng.random(N_TITLES) < 0.05).tolist():
                new = int(rng.integers(n_catalog))
                if new not in page:
                    page[t] = new
            sessions[member] += 1
            clock += float(rng.exponential(3600.0))
            request = {
                "member_id": member, "session_id": int(member * 1_000_000 + sessions[member]),
                "page_id": page_id, "timestamp": datetime.fromtimestamp(clock, tz=timezone.utc),
                "titles": [{"title_id": f"T{int(title)}", "image_ids": image_ids[int(title)],
                            "row": i // COLS, "col": i % COLS, "locked": i in locked[member]}
                           for i, title in enumerate(page.tolist())],
            }
            d = composer.compose(request)
            _feed(h, d.member_id, d.session_id, d.page_id, d.timestamp, d.title_ids, d.image_ids,
                  d.propensity, d.explored, d.changed, d.reason, d.previous_image_ids, d.objective,
                  d.solver, d.solver_status, d.faults, d.status, d.candidate_ids, d.propensities,
                  d.rows, d.cols, d.locked, d.explore_eligible, d.explore_held, d.exploration,
                  d.config_json, d.context_json)
            state = store.get(member, list(d.title_ids))
            _feed(h, sorted(state.items()))
            counts["pages"] += 1
            counts["explored"] += int(d.explored.sum())
            counts["changed"] += int(d.changed.sum())
            counts["degraded"] += d.status != "ok"
            for fault in d.faults:
                counts[f"fault:{fault.value}"] = counts.get(f"fault:{fault.value}", 0) + 1
        logger.close()
        import pyarrow.parquet as pq

        table = pq.read_table(Path(tmp) / "log").sort_by([("page_id", "ascending"), ("title_id", "ascending")])
        kept = [c for c in table.column_names if "timing" not in c and not c.endswith("_ms") and c != "date"]
        for name in kept:
            _feed(h, name, table.column(name).to_pylist())
        counts["log_rows"] = table.num_rows
    return h.hexdigest(), counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    digest, counts = fingerprint(args.pages, args.seed)
    print(" ".join(f"{k}={v}" for k, v in counts.items()))
    print(f"sha256 {digest}")


if __name__ == "__main__":
    main()
