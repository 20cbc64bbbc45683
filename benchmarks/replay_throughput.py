"""End-to-end SNIPS replay throughput: Parquet -> validated log -> linear policy -> estimate.

Prints rows/s per core (CPU seconds of this single-threaded process) for slate's path and for
a plain pyarrow + numpy loop doing the same SNIPS computation, in the same run.
Usage: python replay_throughput.py [n_rows_millions=3] [repeats=5]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

import numpy as np
import pyarrow.parquet as pq

from slate.logs import impressions_table, read_impressions, write_impressions
from slate.replay import LinearPolicy, ReplayData, evaluate, get_estimator

K, D, T, L = 10, 16, 400, 40


def make_log(path: str, n: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = np.array([f"T{t:04d}-I{k}" for t in range(T) for k in range(K)], dtype=object)
    titles = np.array([f"T{t:04d}" for t in range(T)], dtype=object)
    weights = rng.normal(size=(T * K, D)).astype(np.float32)
    chunk = 1_000_000
    parts = []
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        page = (start + np.arange(m)) // L
        first = rng.integers(0, T, m // L + 1)[page - page[0]]
        title = (first + ((start + np.arange(m)) % L) * 7) % T  # distinct titles within a page
        shown = rng.integers(0, K, m)
        x = rng.normal(size=(m, D)).astype(np.float32)
        parts.append(impressions_table(
            member_id=page // 5, session_id=page, page_id=page, timestamp=page * 1000,
            title_id=titles[title], row=(np.arange(m) % L) // 8, col=np.arange(m) % 8,
            image_id=ids[title * K + shown], candidate_ids=ids[title[:, None] * K + np.arange(K)],
            propensity=np.full(m, 1.0 / K), explored=np.ones(m, bool),
            reward=(rng.random(m) < 0.3).astype(np.int8), features=x))
    write_impressions(path, (p for p in parts))
    return list(ids), weights


def plain_loop(path: str, weights_by_id: dict[str, np.ndarray]) -> float:
    """What a competent user would write with pyarrow + numpy alone (no validation): stream
    row groups, strings as dictionary codes, gather the weights, einsum, argmax, SNIPS sums."""
    num = den = 0.0
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
        scores = np.einsum("nkd,nd->nk", w[codes], x)
        choice = scores.argmax(axis=1)
        chosen = np.asarray(cands.dictionary)[codes[np.arange(n), choice]]
        shown = batch.column("image_id").to_numpy(zero_copy_only=False)
        match = chosen == shown
        p = batch.column("propensity").to_numpy()
        r = batch.column("reward").to_numpy().astype(float)
        wt = match / p
        num += float(wt @ r)
        den += float(wt.sum())
    return num / den


def cpu(fn, repeats):
    times, out = [], None
    for _ in range(repeats):
        t0 = time.process_time()
        out = fn()
        times.append(time.process_time() - t0)
    return float(np.min(times)), out


def main() -> None:
    n = int(float(sys.argv[1]) * 1e6) if len(sys.argv) > 1 else 3_000_000
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    tmp = tempfile.mkdtemp()
    path = os.path.join(tmp, "log.parquet")
    ids, weights = make_log(path, n)
    policy = LinearPolicy(ids, weights)
    by_id = dict(zip(ids, weights, strict=True))
    evaluate(path, policy, "snips", n_bootstrap=0, metrics=False)  # warm (numba compile)

    def slate_path():
        log, _ = read_impressions(path, use_threads=False)
        data = ReplayData.build(log, policy.action_distribution(log))
        return get_estimator("snips").estimate(data, n_bootstrap=0).value

    def slate_evaluate():
        return evaluate(path, policy, "snips", n_bootstrap=0, metrics=False).estimate.value

    def read_only():
        return read_impressions(path, use_threads=False)[0].n_rows

    def read_raw():
        return pq.read_table(path, use_threads=False).num_rows

    rows = []
    for name, fn in (("pyarrow read_table only", read_raw), ("slate read_impressions", read_only),
                     ("slate end to end (SNIPS)", slate_path),
                     ("slate evaluate() (threads)", slate_evaluate),
                     ("plain pyarrow + numpy loop", lambda: plain_loop(path, by_id))):
        secs, value = cpu(fn, repeats)
        rows.append((name, secs, n / secs / 1e6, value))
    base = rows[-1][2]
    print(f"{n:,} rows, {K} candidates, {D} features, file {os.path.getsize(path) / 1e6:.0f} MB; "
          f"best CPU seconds of {repeats}")
    print(f"{'path':<30}{'cpu s':>8}{'M rows/s/core':>15}{'vs plain':>10}  value")
    for name, secs, rate, value in rows:
        print(f"{name:<30}{secs:>8.3f}{rate:>15.2f}{rate / base:>10.2f}  {value}")


if __name__ == "__main__":
    main()
