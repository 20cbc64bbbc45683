"""Training throughput from Parquet (``slate train``), with the in-memory fit in the same run.

Generates the synthetic log of ``replay_throughput.py`` (pages of 40 titles, 10 candidates per
title, 16 context features, files of ``--file-rows`` rows with 131,072-row row groups, both
schema versions), then fits LinUCB (17 features with the bias, 4,000 images) and measures,
each the median of ``--repeats`` runs:

A. ``train(engine="stream")`` on ``slate.impressions/2``, one process (pyarrow single-threaded):
   rows / CPU second of this process = rows/s per core. The same on ``/1``, and
   ``engine="memory"`` on ``/2``.
B. The reference: ``LinUCB().fit(x, arms, rewards)`` on the same rows already in memory as
   numpy arrays (no reading, no validation), rows / CPU second, and the ratio A / B.
C. ``engine="dask"`` on a running local cluster of 2 single-threaded workers (warmed up once):
   wall-clock rows/s, and whether its arrays equal the stream's bit for bit.

Usage::

    python benchmarks/train_throughput.py [--rows 4e6] [--file-rows 1e6] [--repeats 3] [--skip-dask]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from replay_throughput import make_logs

from slate.bandit import LinUCB
from slate.logs import read_impressions
from slate.train import train


def timed(fn: Callable[[], object], repeats: int, clock: Callable[[], float]) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = clock()
        out = fn()
        times.append(clock() - t0)
    return float(np.median(times)), out


def in_memory_arrays(root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rows as the in-memory fit takes them: features with a bias column, arms (sorted image
    ids, as slate train numbers them), rewards."""
    xs, shown, rewards = [], [], []
    for path in sorted((root / "v2").rglob("*.parquet")):
        log, _ = read_impressions(path)
        xs.append(np.c_[np.ones(log.n_rows), log.features.astype(np.float64)])
        shown.append(np.asarray(log.image_ids)[log.image])
        rewards.append(log.reward.astype(np.float64))
    _, arms = np.unique(np.concatenate(shown), return_inverse=True)
    return np.concatenate(xs), arms.astype(np.int64), np.concatenate(rewards)


def same_arrays(a: object, b: object) -> bool:
    sa, sb = a.statistics, b.statistics  # type: ignore[attr-defined]
    names = ("counts", "events", "A", "b", "totals")
    return sa.image_ids == sb.image_ids and all(np.array_equal(getattr(sa, n), getattr(sb, n)) for n in names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=float, default=4e6)
    parser.add_argument("--file-rows", type=float, default=1e6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-dask", action="store_true")
    args = parser.parse_args()
    n = int(args.rows)
    root = Path(tempfile.mkdtemp(prefix="slate-train-bench-"))
    try:
        t0 = time.perf_counter()
        make_logs(root, n, int(args.file_rows))
        print(f"log: {n:,} rows in files of {int(args.file_rows):,} (v1 and v2), written in "
              f"{time.perf_counter() - t0:.0f} s")
        train(root / "v2", "linucb", engine="stream")  # compile the kernels once
        cpu = time.process_time
        rows: dict[str, float] = {}
        t, stream = timed(lambda: train(root / "v2", "linucb", engine="stream"), args.repeats, cpu)
        rows["A. stream, slate.impressions/2"] = n / t
        t, _ = timed(lambda: train(root / "v1", "linucb", engine="stream"), args.repeats, cpu)
        rows["A. stream, slate.impressions/1"] = n / t
        t, memory = timed(lambda: train(root / "v2", "linucb", engine="memory"), args.repeats, cpu)
        rows["A. memory engine, /2"] = n / t
        x, arms, r = in_memory_arrays(root)
        t, _ = timed(lambda: LinUCB().fit(x, arms, r), args.repeats, cpu)
        rows["B. LinUCB.fit on in-memory arrays"] = n / t
        reference = rows["B. LinUCB.fit on in-memory arrays"]
        print(f"\n{'path (LinUCB, 17 features, one process)':<44}{'M rows/s per core':>18}{'vs B':>8}")
        for name, value in rows.items():
            print(f"{name:<44}{value / 1e6:>18.2f}{value / reference:>8.2f}")
        print(f"memory engine == stream engine, bit for bit: {same_arrays(memory, stream)}")
        if not args.skip_dask:
            import dask
            from distributed import Client, LocalCluster

            with dask.config.set({"distributed.worker.profile.enabled": False}):
                cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None)
            address = cluster.scheduler_address
            try:
                with Client(address):
                    train(root / "v2", "linucb", engine="dask", address=address)  # warm the workers
                t, dask_result = timed(lambda: train(root / "v2", "linucb", engine="dask", address=address),
                                       args.repeats, time.perf_counter)
            finally:
                cluster.close()
            t_one, _ = timed(lambda: train(root / "v2", "linucb", engine="stream"), args.repeats,
                             time.perf_counter)
            print(f"C. dask, 2 workers (wall clock, running cluster): {n / t / 1e6:.2f} M rows/s, "
                  f"{t_one / t:.2f}x the one-process stream's wall clock ({n / t_one / 1e6:.2f} M rows/s); "
                  f"arrays == stream: {same_arrays(dask_result, stream)}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
