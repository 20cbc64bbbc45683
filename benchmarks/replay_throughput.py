"""Replay throughput from Parquet, end to end, with baselines in the same run.

Generates a synthetic log once (``--rows`` impressions, pages of 40 titles, 10 candidate images
per title, 16 context features, hive-partitioned by date into files of ``--file-rows`` rows with
131,072-row row groups), in both schema versions, then measures:

A. SNIPS of a linear policy, one process: slate's streaming path on ``slate.impressions/2`` and
   ``/1``, slate's in-memory ``evaluate()``, and a plain pyarrow + numpy loop (no validation)
   on each layout. Rows/s per core = rows / CPU seconds of this (single-threaded) process.
B. Every estimator on the streaming path (version 2), rows/s per core; the cost of
   ``per_title=True`` (SNIPS, without and with 100 bootstrap replicates).
C. dask (a LocalCluster of single-threaded worker processes, profiler off, one task per file)
   with 1 and 2 workers: wall-clock rows/s, and whether the estimates are bit-identical to the
   single-process stream.
D. DuckDB computing the same SNIPS in SQL, if duckdb is installed.

Timings are the median of ``--repeats`` runs (the machine is shared; ratios in one run are the
meaningful figures). Usage::

    python benchmarks/replay_throughput.py [--rows 20e6] [--file-rows 1e6] [--repeats 3]
        [--skip-dask] [--skip-estimators]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from slate.logs import list_log_files, read_impressions, write_impressions
from slate.logs.schema import CANDIDATE_SEPARATOR
from slate.replay import LinearPolicy, evaluate
from slate.replay.distributed import evaluate_dask, evaluate_stream

K, D, T, L, COLS = 10, 16, 400, 40, 8


def make_logs(root: Path, n: int, file_rows: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """Write the log in both versions under root/v1 and root/v2 (same rows, same files)."""
    rng = np.random.default_rng(seed)
    ids = pa.array([f"T{t:04d}-I{k}" for t in range(T) for k in range(K)], pa.string())
    titles = pa.array([f"T{t:04d}" for t in range(T)], pa.string())
    weights = rng.normal(size=(T * K, D)).astype(np.float32)
    file_rows = (file_rows // L) * L  # whole pages per file
    for f, start in enumerate(range(0, n, file_rows)):
        m = min(file_rows, n - start)
        rows = start + np.arange(m)
        page = rows // L
        slot = rows % L
        first = rng.integers(0, T, m // L + 1)[page - page[0]]
        title = (first + slot * 7) % T  # 40 distinct titles per page
        shown = rng.integers(0, K, m)
        x = rng.normal(size=(m, D)).astype(np.float32)
        cand = (title[:, None] * K + np.arange(K)).ravel()
        table = pa.table({
            "member_id": page // 5, "session_id": page, "page_id": page,
            "timestamp": pa.array((1_704_067_200 + f * 86_400 + page % 86_400) * 1_000_000,
                                  pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            "title_id": titles.take(pa.array(title)),
            "row": (slot // COLS).astype(np.int32), "col": (slot % COLS).astype(np.int32),
            "image_id": ids.take(pa.array(title * K + shown)),
            "candidate_ids": pa.ListArray.from_arrays(
                pa.array(np.arange(0, m * K + 1, K, dtype=np.int32)), ids.take(pa.array(cand))),
            "propensity": np.full(m, 1.0 / K), "explored": np.ones(m, bool),
            "reward": (rng.random(m) < 0.3).astype(np.int8),
            "features": pa.ListArray.from_arrays(
                pa.array(np.arange(0, m * D + 1, D, dtype=np.int32)), pa.array(x.ravel())),
        })
        day = f"date=2024-01-{f + 1:02d}" if f < 31 else f"date=2024-02-{f - 30:02d}"
        for version in (1, 2):
            folder = root / f"v{version}" / day
            folder.mkdir(parents=True, exist_ok=True)
            write_impressions(folder / "part-0.parquet", table, version=version)
    return ids.to_pylist(), weights


def plain_loop_v1(files: list[Path], weights_by_id: dict[str, np.ndarray]) -> float:
    """What a competent user writes with pyarrow + numpy alone on the version-1 layout (no
    validation): stream row groups, strings as dictionary codes, gather, einsum, argmax, SNIPS."""
    num = den = 0.0
    for path in files:
        pf = pq.ParquetFile(path, read_dictionary=["image_id", "candidate_ids.list.element"])
        for batch in pf.iter_batches(batch_size=131072, use_threads=False,
                                     columns=["candidate_ids", "image_id", "propensity", "reward",
                                              "features"]):
            n = len(batch)
            cands = batch.column("candidate_ids").flatten()  # dictionary array
            k = len(cands) // n
            w = np.stack([weights_by_id[v] for v in cands.dictionary.to_pylist()])
            codes = cands.indices.to_numpy().reshape(n, k)
            x = batch.column("features").flatten().to_numpy().reshape(n, -1)
            choice = np.einsum("nkd,nd->nk", w[codes], x).argmax(axis=1)
            chosen = np.asarray(cands.dictionary)[codes[np.arange(n), choice]]
            match = chosen == batch.column("image_id").to_numpy(zero_copy_only=False)
            wt = match / batch.column("propensity").to_numpy()
            num += float(wt @ batch.column("reward").to_numpy().astype(float))
            den += float(wt.sum())
    return num / den


def plain_loop_v2(files: list[Path], weights_by_id: dict[str, np.ndarray]) -> float:
    """The same loop on the version-2 layout (candidate sets dictionary-encoded, flat features)."""
    num = den = 0.0
    feats = [f"feature_{j}" for j in range(D)]
    for path in files:
        pf = pq.ParquetFile(path, read_dictionary=["image_id", "candidate_set"])
        for batch in pf.iter_batches(batch_size=131072, use_threads=False,
                                     columns=["candidate_set", "image_id", "propensity", "reward",
                                              *feats]):
            sets = batch.column("candidate_set")
            members = pc.split_pattern(sets.dictionary, CANDIDATE_SEPARATOR).to_pylist()
            set_w = np.stack([np.stack([weights_by_id[v] for v in s]) for s in members])
            set_ids = np.array(members, dtype=object)
            idx = sets.indices.to_numpy()
            x = np.column_stack([batch.column(c).to_numpy() for c in feats])
            choice = np.einsum("nkd,nd->nk", set_w[idx], x).argmax(axis=1)
            chosen = set_ids[idx, choice]
            match = chosen == batch.column("image_id").to_numpy(zero_copy_only=False)
            wt = match / batch.column("propensity").to_numpy()
            num += float(wt @ batch.column("reward").to_numpy().astype(float))
            den += float(wt.sum())
    return num / den


def duckdb_snips(root: Path, weights_path: Path) -> float | None:  # pragma: no cover - optional
    try:
        import duckdb
    except ImportError:
        return None
    con = duckdb.connect()
    con.execute("SET threads = 1")
    feats = ", ".join(f"feature_{j}" for j in range(D))
    score = " + ".join(f"w.w{j} * c.feature_{j}" for j in range(D))
    query = f"""
        WITH cands AS (
            SELECT filename, file_row_number AS rid, image_id, reward, propensity, {feats},
                   unnest(string_split(candidate_set, chr(31))) AS image
            FROM read_parquet('{root}/**/*.parquet', filename = true, file_row_number = true)),
        scores AS (
            SELECT c.filename, c.rid, c.image_id, c.reward, c.propensity, c.image, {score} AS s
            FROM cands c JOIN read_parquet('{weights_path}') w ON w.image = c.image),
        best AS (
            SELECT filename, rid, any_value(image_id) AS image_id, any_value(reward) AS reward,
                   any_value(propensity) AS propensity, arg_max(image, s) AS choice
            FROM scores GROUP BY filename, rid)
        SELECT sum(CASE WHEN choice = image_id THEN reward / propensity ELSE 0 END)
             / sum(CASE WHEN choice = image_id THEN 1 / propensity ELSE 0 END)
        FROM best
    """
    return float(con.execute(query).fetchone()[0])


def _busy(_: int) -> float:
    a = np.random.default_rng(0).random(1_000_000)
    for _ in range(15):
        np.sort(a)
    return 0.0


def parallel_capacity() -> float:
    """Speed-up that two processes get over one on this machine right now (the same CPU-bound
    numpy work, 4 tasks), to read the dask figures against."""
    import multiprocessing as mp

    walls = {}
    for n in (1, 2):
        with mp.get_context("spawn").Pool(n) as pool:
            pool.map(_busy, range(n))
            t0 = time.perf_counter()
            pool.map(_busy, range(4))
            walls[n] = time.perf_counter() - t0
    return walls[1] / walls[2]


def timed(fn: Callable[[], object], repeats: int, clock: Callable[[], float]) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = clock()
        out = fn()
        times.append(clock() - t0)
    return float(np.median(times)), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=float, default=20e6)
    parser.add_argument("--file-rows", type=float, default=1e6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-dask", action="store_true")
    parser.add_argument("--skip-estimators", action="store_true")
    args = parser.parse_args()
    n = int(args.rows)
    root = Path(tempfile.mkdtemp(prefix="slate-replay-bench-"))
    try:
        t0 = time.perf_counter()
        ids, weights = make_logs(root, n, int(args.file_rows))
        v1, v2 = list_log_files(root / "v1"), list_log_files(root / "v2")
        size = {v: sum(os.path.getsize(f) for f in files) / 1e6 for v, files in (("v1", v1), ("v2", v2))}
        print(f"log: {n:,} rows in {len(v2)} files, {K} candidates, {D} features, written in "
              f"{time.perf_counter() - t0:.0f} s; v1 {size['v1']:.0f} MB, v2 {size['v2']:.0f} MB")
        policy = LinearPolicy(ids, weights)
        by_id = dict(zip(ids, weights, strict=True))
        evaluate_stream(v2[0], policy, "snips", n_bootstrap=0)  # compile the kernels
        evaluate_stream(v1[0], policy, "snips", n_bootstrap=0)

        # ---------------------------------------------------------------- A: the bar
        mem_rows = pq.ParquetFile(v2[0]).metadata.num_rows
        cases = [
            ("slate stream, v2 (SNIPS)", n, lambda: evaluate_stream(root / "v2", policy, "snips", n_bootstrap=0).estimate.value),
            ("slate stream, v1 (SNIPS)", n, lambda: evaluate_stream(root / "v1", policy, "snips", n_bootstrap=0).estimate.value),
            ("slate evaluate(), v2, 1 file", mem_rows,
             lambda: evaluate(read_impressions(v2[0], use_threads=False)[0], policy, "snips",
                              n_bootstrap=0, metrics=False).estimate.value),
            ("plain pyarrow + numpy, v1", n, lambda: plain_loop_v1(v1, by_id)),
            ("plain pyarrow + numpy, v2", n, lambda: plain_loop_v2(v2, by_id)),
        ]
        rows = []
        for name, m, fn in cases:
            secs, value = timed(fn, args.repeats, time.process_time)
            rows.append((name, secs, m / secs / 1e6, value))
        base1 = rows[3][2]
        base2 = rows[4][2]
        print(f"\nA. SNIPS, linear policy, one process: CPU seconds, median of {args.repeats}")
        print(f"{'path':<36}{'cpu s':>8}{'M rows/s/core':>15}{'vs plain v1':>13}{'vs plain v2':>13}  value")
        for name, secs, rate, value in rows:
            print(f"{name:<36}{secs:>8.2f}{rate:>15.2f}{rate / base1:>13.2f}{rate / base2:>13.2f}  {value:.12f}")

        # ---------------------------------------------------------------- B: estimators
        if not args.skip_estimators:
            print("\nB. each estimator, slate stream on v2, one process (dm/dr: two passes)")
            print(f"{'estimator':<16}{'cpu s':>8}{'M rows/s/core':>15}  value ± se")
            for est in ("snips", "ips", "replay", "dm", "dr", "neighbourhood", "page", "pi"):
                secs, rep = timed(lambda est=est: evaluate_stream(root / "v2", policy, est, n_bootstrap=0), 1,
                                  time.process_time)
                e = rep.estimate  # type: ignore[attr-defined]
                print(f"{est:<16}{secs:>8.2f}{n / secs / 1e6:>15.2f}  {e.value:.4f} ± {e.se:.4f}")
            secs, rep = timed(lambda: evaluate_stream(root / "v2", policy, "snips", n_bootstrap=100),
                              1, time.process_time)
            print(f"{'snips, 100 boot':<16}{secs:>8.2f}{n / secs / 1e6:>15.2f}  "
                  f"{rep.estimate.interval}")  # type: ignore[attr-defined]
            print(f"   per title ({T} titles), cost vs the same call without per_title:")
            for boot in (0, 100):
                plain, _ = timed(lambda boot=boot: evaluate_stream(
                    root / "v2", policy, "snips", n_bootstrap=boot), 1, time.process_time)
                secs, rep = timed(lambda boot=boot: evaluate_stream(
                    root / "v2", policy, "snips", n_bootstrap=boot, per_title=True), 1,
                    time.process_time)
                pt = rep.per_title["snips"]  # type: ignore[attr-defined]
                label = f"snips, per-title{f', {boot} boot' if boot else ''}"
                print(f"{label:<28}{secs:>8.2f}{n / secs / 1e6:>15.2f}  {secs / plain:.2f}x; "
                      f"{len(pt.title_ids)} titles, median se {np.nanmedian(pt.se):.4f}")

        # ---------------------------------------------------------------- C: dask
        if not args.skip_dask:
            import dask
            from distributed import Client, LocalCluster

            reference = evaluate_stream(root / "v2", policy, ["snips", "ips"], n_bootstrap=20)
            capacity = parallel_capacity()
            print("\nC. dask LocalCluster (processes, 1 thread each, profiler off), one task per file;"
                  f" wall seconds, median of {args.repeats}; SNIPS + IPS, 20 Poisson bootstrap"
                  f" replicates.\n   Two plain processes get {capacity:.2f}x one on this machine"
                  " right now (same CPU-bound work), the ceiling for dask's speed-up.")
            print(f"{'workers':<10}{'wall s':>8}{'M rows/s':>10}{'speed-up':>10}  bit-identical to stream")
            walls = {}
            for workers in (1, 2):
                with dask.config.set({"distributed.worker.profile.enabled": False}), \
                        LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                     dashboard_address=None) as cluster, Client(cluster) as client:
                    # warm every worker (numba kernels load from the cache on first use)
                    evaluate_dask(root / "v2", policy, ["snips", "ips"], client=client, n_bootstrap=20)
                    secs, rep = timed(lambda client=client: evaluate_dask(
                        root / "v2", policy, ["snips", "ips"], client=client, n_bootstrap=20),
                        args.repeats, time.perf_counter)
                walls[workers] = secs
                same = all(rep.estimates[k] == reference.estimates[k]  # type: ignore[attr-defined]
                           for k in ("snips", "ips"))
                print(f"{workers:<10}{secs:>8.2f}{n / secs / 1e6:>10.2f}{walls[1] / secs:>10.2f}  {same}")

        # ---------------------------------------------------------------- D: DuckDB
        wpath = root / "weights.parquet"
        pq.write_table(pa.table({"image": ids, **{f"w{j}": weights[:, j] for j in range(D)}}), wpath)
        secs, value = timed(lambda: duckdb_snips(root / "v2", wpath), 1, time.process_time)
        if value is None:
            print("\nD. DuckDB: not installed (pip install duckdb to compare)")
        else:
            print(f"\nD. DuckDB SQL, the same SNIPS on v2 (1 thread, CPU): {secs:.2f} s, "
                  f"{n / secs / 1e6:.2f} M rows/s, value {value:.12f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
