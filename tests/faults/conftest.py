"""Files the fault cases are built from: a valid page, a small valid log and policy, and their
damaged or hostile variants (written once per session into a temporary folder)."""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from slate.logs import read_impressions, write_impressions
from slate.replay import LinearPolicy

INSTANCES = Path(__file__).resolve().parents[2].parent / "shared" / "instances"


def small_page(seed: int = 0, n_rows: int = 2, n_cols: int = 4, n_images: int = 3) -> dict:
    """A slate.page-problem/1 mapping of a small grid page with layout-derived pairs."""
    rng = np.random.default_rng(seed)
    titles = []
    for t in range(n_rows * n_cols):
        images = [{"id": f"T{t}-I{k}", "score": float(rng.uniform(0.05, 0.2)),
                   "embedding": rng.normal(size=4).tolist()} for k in range(n_images)]
        titles.append({"id": f"T{t}", "row": t // n_cols, "col": t % n_cols,
                       "previous": f"T{t}-I0", "locked": False, "images": images})
    return {"format": "slate.page-problem/1", "name": "small", "layout": {"rows": n_rows, "cols": n_cols},
            "weights": {"diversity": 0.1, "churn": 0.01}, "max_changes": None, "titles": titles}


@dataclass
class Files:
    """Paths of the fixture files (see :func:`files`)."""

    root: Path
    page: Path
    dense_page: Path
    log: Path
    policy: Path
    weights: Path
    decisions: Path
    mismatch: Path

    def write(self, name: str, data: bytes | str) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, str):
            data = data.encode("utf-8")
        path.write_bytes(data)
        return path

    def json(self, name: str, data: object) -> Path:
        return self.write(name, json.dumps(data))

    def page_with(self, name: str, edit) -> Path:
        data = copy.deepcopy(json.loads(self.page.read_text()))
        edit(data)
        return self.json(name, data)

    def fifo(self, name: str) -> Path:
        path = self.root / name
        if not path.exists():
            os.mkfifo(path)
        return path


def _log_table(n_pages: int = 60, seed: int = 0) -> pa.Table:
    from tests.replay.test_world import World

    world = World(seed=seed, n_slots=3)
    return world.to_table(world.simulate(n_pages, "uniform", seed=seed + 1))


@pytest.fixture(scope="session")
def files(tmp_path_factory) -> Files:
    root = tmp_path_factory.mktemp("faults")
    page = root / "page.json"
    page.write_text(json.dumps(small_page()))
    dense = root / "dense.json"
    dense_data = json.loads((INSTANCES / "dense-20x5-s0.json").read_text())
    dense.write_text(json.dumps(dense_data))
    log_path = write_impressions(root / "log.parquet", _log_table(), version=2)
    log, _ = read_impressions(log_path)
    rng = np.random.default_rng(0)
    policy = LinearPolicy(log.image_ids, rng.normal(size=(len(log.image_ids), log.n_features or 1)))
    policy.save(root / "weights.npz")
    (root / "policy.json").write_text(json.dumps({"weights": "weights.npz", "name": "candidate"}))
    titles = np.asarray(log.title_ids, dtype=object)[log.title]
    images = np.asarray(log.image_ids, dtype=object)
    rows = np.arange(log.n_rows)
    shown_pos = (log.candidates == log.image[:, None]).argmax(axis=1)
    pq.write_table(pa.table({"member_id": log.member_id, "session_id": log.session_id, "title_id": titles,
                             "image_id": images[log.candidates[rows, shown_pos]]}), root / "decisions.parquet")
    other = (shown_pos + 1) % np.asarray(log.n_candidates)
    pq.write_table(pa.table({"member_id": log.member_id, "session_id": log.session_id, "title_id": titles,
                             "image_id": images[log.candidates[rows, other]]}), root / "mismatch.parquet")
    return Files(root=root, page=page, dense_page=dense, log=log_path, policy=root / "policy.json",
                 weights=root / "weights.npz", decisions=root / "decisions.parquet",
                 mismatch=root / "mismatch.parquet")
