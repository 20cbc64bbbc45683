"""Replay results, pickled, to check that a change to the code leaves every number the same.

``python benchmarks/replay_identity.py write FILE`` runs a fixed set of replays on a seeded
log (in memory, streamed, on dask and through ``slate replay``; several estimators; bootstrap
on; per-title estimates, member clustering and page diversity) and pickles every report's
``to_dict()``. ``python benchmarks/replay_identity.py compare A B`` says whether two such files
hold the same numbers (bit for bit; NaN equals NaN) and names the first difference.

Run ``write`` once on each version of the code (``PYTHONPATH`` pointing at its tree) and
``compare`` the two files. Only keyword calls are used, so it runs on versions before and after
:class:`slate.replay.ReplayOptions`.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import pickle
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ESTIMATORS = ["snips", "ips", "replay", "dm", "dr", "neighbourhood", "page", "pi"]


def _log(root: Path) -> tuple[Path, Any, dict[str, np.ndarray]]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from slate.logs import read_impressions, write_impressions
    from slate.replay import LinearPolicy
    from tests.replay.test_world import World  # a seeded world with exact propensities

    world = World(seed=3, n_slots=4)
    table = world.to_table(world.simulate(1200, "softmax", seed=4))
    (root / "parts").mkdir()
    cuts = [0, 1700, 3300, table.num_rows]
    for i in range(3):
        write_impressions(root / "parts" / f"part-{i}.parquet",
                          table.slice(cuts[i], cuts[i + 1] - cuts[i]), version=2, row_group_size=400)
    log, _ = read_impressions(root / "parts")
    rng = np.random.default_rng(1)
    weights = rng.normal(size=(len(log.image_ids), world.n_features))
    vectors = rng.normal(size=(len(log.image_ids), 8))
    embeddings = {i: v / np.linalg.norm(v) for i, v in zip(log.image_ids, vectors, strict=True)}
    return root / "parts", LinearPolicy(log.image_ids, weights), embeddings


def run() -> dict[str, Any]:
    from distributed import Client, LocalCluster

    from slate.cli import main
    from slate.replay import evaluate
    from slate.replay.distributed import evaluate_dask, evaluate_stream

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        parts, policy, emb = _log(Path(tmp))
        out["memory, defaults"] = evaluate(parts, policy)
        out["memory, all"] = evaluate(parts, policy, ESTIMATORS, n_bootstrap=200, seed=7,
                                      per_title=True, image_embeddings=emb)
        out["memory, member, no refit"] = evaluate(
            parts, policy, ["dm", "dr", "snips"], n_bootstrap=100, seed=3, level=0.9,
            cluster="member", n_buckets=64, refit_reward_model=False, metrics=False)
        out["stream, all"] = evaluate_stream(parts, policy, ESTIMATORS, n_bootstrap=100, seed=7,
                                             per_title=True, image_embeddings=emb)
        out["stream, member, chunks"] = evaluate_stream(
            parts, policy, ["snips", "ips", "dr"], n_bootstrap=50, seed=5, level=0.9,
            cluster="member", n_buckets=64, chunk_rows=300)
        out["stream, normal"] = evaluate_stream(parts, policy, "snips", n_bootstrap=0)
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster, Client(cluster) as client:
            out["dask, all"] = evaluate_dask(parts, policy, ESTIMATORS, client=client,
                                             n_bootstrap=100, seed=7, per_title=True,
                                             image_embeddings=emb)
        for engine in ("memory", "stream"):
            path = Path(tmp) / f"{engine}.json"
            with contextlib.redirect_stdout(io.StringIO()):
                status = main(["replay", str(parts), "-e", "snips,ips,dr", "--bootstrap", "100",
                               "--seed", "2", "--per-title", "--engine", engine,
                               "--output", str(path)])
            out[f"cli {engine}"] = {"status": status, "json": json.loads(path.read_text())}
        return _untmp({k: v.to_dict() if hasattr(v, "to_dict") else v for k, v in out.items()}, tmp)


def _untmp(x: Any, tmp: str) -> Any:
    """``x`` with the temporary folder's path written ``<tmp>`` (it differs run to run)."""
    if isinstance(x, dict):
        return {k: _untmp(v, tmp) for k, v in x.items()}
    if isinstance(x, list):
        return [_untmp(v, tmp) for v in x]
    return x.replace(tmp, "<tmp>") if isinstance(x, str) else x


def _first_difference(a: Any, b: Any, where: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        if list(a) != list(b):
            return f"{where}: keys {list(a)} != {list(b)}"
        for k in a:
            found = _first_difference(a[k], b[k], f"{where}/{k}")
            if found:
                return found
        return None
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return f"{where}: lengths {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            found = _first_difference(x, y, f"{where}[{i}]")
            if found:
                return found
        return None
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        same = (np.asarray(a).dtype == np.asarray(b).dtype
                and np.array_equal(a, b, equal_nan=np.asarray(a).dtype.kind == "f"))
        return None if same else f"{where}: arrays differ"
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return None
    if type(a) is not type(b) or a != b:
        return f"{where}: {a!r} != {b!r}"
    return None


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "write":
        results = run()
        Path(argv[1]).write_bytes(pickle.dumps(results))
        print(f"wrote {len(results)} replays to {argv[1]}")
        return 0
    if len(argv) == 3 and argv[0] == "compare":
        a, b = (pickle.loads(Path(p).read_bytes()) for p in argv[1:])
        diff = _first_difference(a, b)
        if diff:
            print(f"DIFFERENT{diff}")
            return 1
        print(f"identical: {len(a)} replays ({', '.join(a)})")
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
