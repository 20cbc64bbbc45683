"""``slate train`` on the demo's exploration log: trained LinUCB vs uniform on the held-out week.

Builds the demo's world (:func:`slate.sim.demo.run_demo`'s defaults, or smaller with
``--members/--titles``), logs uniform-random exploration for ``--days`` days exactly as the demo
does, but writes each day as one ``slate.impressions`` file *with inline context features*
(the member's genre profile, whether they played the title before, the recommender score:
what a real log would carry), the last 7 days held out. Then, through the command line:

    slate train LOGS/train --policy linucb --param alpha=0 --catalog C --output M --engine memory
    slate train LOGS/train --policy linucb --param alpha=0 --catalog C --output M2 --engine dask --workers 2
    slate replay LOGS/heldout --policy M/policy.toml  (and without --policy: uniform)

(``C`` lists the world's image ids: titles launched in the held-out week get an arm at the
prior) and prints the two replay estimates (SNIPS), their difference in standard errors, and whether
the dask model's arrays equal the memory model's bit for bit.

    python benchmarks/train_demo.py [--members 2000 --titles 300 --days 28 --seed 0]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def context_columns(features: Any) -> np.ndarray:
    """Genre profile + (interacted, recommender score): context of a (member, title) row."""
    n_genres = len(features.world.genres)
    return np.concatenate([features.columns("member")[:n_genres], features.columns("member_title")])


def write_daily(run: Any, features: Any, folder: Path, version: int = 2) -> int:
    """One file per simulated day with inline context features; returns the rows written."""
    from slate.logs import write_impressions

    cols = context_columns(features)
    folder.mkdir(parents=True, exist_ok=True)
    total = 0
    for s, batch in run.batches():
        def ctx(b: Any) -> np.ndarray:
            x = features.shown(b, np.zeros(b.titles.shape, np.int64), cols)  # context: image-free
            return x.reshape(*b.titles.shape, len(cols))

        table = run.to_table(pages=s, features=ctx, include_propensities=False)
        write_impressions(folder / f"day={int(batch.day[0]):03d}.parquet", table, version=version)
        total += table.num_rows
    return total


def make_logs(root: Path, *, members: int, titles: int, days: int, seed: int, version: int = 2) -> dict[str, Any]:
    """The demo's exploration logs (train / held-out week) with context features."""
    from slate.sim import UniformRandomLogging, make_schedule, make_world, simulate
    from slate.sim.features import SimFeatures

    world = make_world(n_members=members, n_titles=titles, n_days=days, seed=seed)
    train_days = days - 7
    logging_policy = UniformRandomLogging(seed=seed)
    train_run = simulate(make_schedule(world, n_days=train_days, seed=seed), logging_policy)
    test_run = simulate(make_schedule(world, n_days=7, first_day=train_days, seed=seed), logging_policy,
                        state=train_run.final_state)
    features = SimFeatures(world)
    n_train = write_daily(train_run, features, root / "train", version)
    n_test = write_daily(test_run, features, root / "heldout", version)
    (root / "catalog.txt").write_text("\n".join(world.image_ids) + "\n")
    return {"train_rows": n_train, "heldout_rows": n_test, "images": world.n_images_total}


def model_arrays(folder: Path) -> dict[str, np.ndarray]:
    with np.load(folder / "model.npz", allow_pickle=False) as data:
        return {k: data[k] for k in data.files if k.startswith("state.")}


def replay(log: Path, out: Path, policy: Path | None) -> dict[str, float]:
    from slate.cli import main

    argv = ["replay", str(log), "--estimator", "snips", "--bootstrap", "0", "--output", str(out)]
    if policy is not None:
        argv += ["--policy", str(policy)]
    if main(argv) != 0:
        raise SystemExit(f"slate {' '.join(argv)} failed")
    est = json.loads(out.read_text())["estimates"]["snips"]
    return {"value": float(est["value"]), "se": float(est["se"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=2000)
    parser.add_argument("--titles", type=int, default=300)
    parser.add_argument("--days", type=int, default=28)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--folder", default=None, help="keep the logs and models here")
    args = parser.parse_args()
    from slate.cli import main as slate

    root = Path(args.folder or tempfile.mkdtemp(prefix="slate-train-demo-"))
    t0 = time.perf_counter()
    sizes = make_logs(root, members=args.members, titles=args.titles, days=args.days, seed=args.seed)
    print(f"logs: {sizes} in {time.perf_counter() - t0:.1f} s under {root}")
    timings = {}
    for engine, extra in (("memory", []), ("dask", ["--workers", "2"])):
        t0 = time.perf_counter()
        code = slate(["train", str(root / "train"), "--policy", "linucb", "--param", "alpha=0",
                      "--output", str(root / f"model-{engine}"), "--engine", engine,
                      "--catalog", str(root / "catalog.txt"), *extra])
        timings[engine] = time.perf_counter() - t0
        if code != 0:
            raise SystemExit(f"slate train --engine {engine} failed")
    a, b = model_arrays(root / "model-memory"), model_arrays(root / "model-dask")
    same = a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    trained = replay(root / "heldout", root / "replay-linucb.json", root / "model-memory" / "policy.toml")
    uniform = replay(root / "heldout", root / "replay-uniform.json", None)
    diff = trained["value"] - uniform["value"]
    se = float(np.hypot(trained["se"], uniform["se"]))
    print()
    print(f"{'policy':<22}{'SNIPS':>9}{'se':>9}")
    print(f"{'trained LinUCB':<22}{trained['value']:>9.4f}{trained['se']:>9.4f}")
    print(f"{'uniform':<22}{uniform['value']:>9.4f}{uniform['se']:>9.4f}")
    print(f"difference {diff:.4f} = {diff / se:.1f} standard errors (se of the difference "
          f"sqrt(se1^2 + se2^2) = {se:.4f}); bar > 3: {'met' if diff / se > 3 else 'NOT met'}")
    print(f"train seconds: memory {timings['memory']:.1f}, dask 2 workers {timings['dask']:.1f}; "
          f"dask arrays == memory arrays: {same}")


if __name__ == "__main__":
    main()
