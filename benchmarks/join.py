"""``join_outcomes`` throughput and peak memory, with a DuckDB ASOF join of the same data.

Generates a decision log of ``--impressions`` rows (pages of 40 titles among 2,000, 8 candidate
images each, rewards null, as :class:`slate.serve.DecisionLogger` writes it: ``slate.impressions/1``,
files of ``--file-rows`` rows, 131,072-row row groups, time-ordered) and ``--events`` play
events (80% on a title shown to the member within the last hours, 20% unmatched), then times,
each in a fresh child process (so its peak RSS is that of the join alone):

A. ``slate.logs.join_outcomes`` (folder -> folder, ``engine="local"``, one process), CPU
   seconds, impressions/s per core, peak RSS;
B. DuckDB (``SET threads = 1``): the same attribution as an ASOF JOIN on (member, title,
   time) within the window, then the decision rows LEFT JOINed to the per-row reward and
   written to Parquet; CPU seconds and peak RSS;

and checks that both give the same rewards. Timings are the median of ``--repeats`` runs.
Usage::

    python benchmarks/join.py [--impressions 20e6] [--events 5e6] [--file-rows 2e6] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

L, T, K = 40, 2000, 8
T0_US = 1_714_521_600 * 1_000_000  # 2024-05-01


def make_data(root: Path, n: int, n_events: int, file_rows: int, seed: int = 0) -> None:
    """Write root/decisions (files of whole pages) and root/events.parquet."""
    from slate.logs import write_impressions

    rng = np.random.default_rng(seed)
    n = (n // L) * L
    n_pages = n // L
    members = rng.integers(0, max(n_pages // 4, 1), size=n_pages)
    page_time = T0_US + np.sort(rng.integers(0, 7 * 86_400 * 1_000_000, size=n_pages))
    titles = pa.array([f"T{t:05d}" for t in range(T)])
    images = pa.array([f"T{t:05d}-{k}" for t in range(T) for k in range(K)])
    file_rows = max((file_rows // L) * L, L)
    (root / "decisions").mkdir(parents=True)
    for f, start in enumerate(range(0, n, file_rows)):
        m = min(file_rows, n - start)
        rows = start + np.arange(m)
        page = rows // L
        slot = rows % L
        title = (rng.integers(0, T, size=n_pages)[page] + slot * 37) % T
        shown = rng.integers(0, K, size=m)
        offsets = pa.array(np.arange(m + 1, dtype=np.int32) * K)
        cand = pa.ListArray.from_arrays(offsets, images.take(pa.array((title[:, None] * K + np.arange(K)).ravel())))
        table = pa.table({
            "member_id": pa.array(members[page], pa.int64()),
            "session_id": pa.array(page, pa.int64()),
            "page_id": pa.array(page, pa.int64()),
            "timestamp": pa.array(page_time[page], pa.timestamp("us", tz="UTC")),
            "title_id": titles.take(pa.array(title)),
            "row": pa.array(slot // 10, pa.int32()),
            "col": pa.array(slot % 10, pa.int32()),
            "image_id": images.take(pa.array(title * K + shown)),
            "candidate_ids": cand,
            "propensity": pa.array(np.full(m, 1.0)),
            "explored": pa.array(np.zeros(m, bool)),
            "reward": pa.nulls(m, pa.int8()),
            "previous_image_id": pa.nulls(m, pa.string()),
        })
        write_impressions(root / "decisions" / f"part-{f:04d}.parquet", table)
    # events: 80% on a row shown (a few minutes to hours later), 20% random (mostly unmatched)
    pick = rng.integers(0, n, size=n_events)
    real = rng.random(n_events) < 0.8
    table = pq.read_table(root / "decisions", columns=["member_id", "title_id", "timestamp"])
    member = table.column("member_id").to_numpy()
    stamp = table.column("timestamp").cast(pa.int64()).to_numpy()
    title_codes = np.asarray(pa.compute.index_in(table.column("title_id"), value_set=titles).to_numpy(
        zero_copy_only=False))
    ev_member = np.where(real, member[pick], rng.integers(0, max(n_pages // 4, 1), size=n_events))
    ev_title_code = np.where(real, title_codes[pick], rng.integers(0, T, size=n_events))
    ev_time = np.where(real, stamp[pick], T0_US) + rng.integers(0, 6 * 3600 * 1_000_000, size=n_events)
    pq.write_table(pa.table({
        "member_id": pa.array(ev_member, pa.int64()),
        "title_id": titles.take(pa.array(ev_title_code)),
        "timestamp": pa.array(ev_time, pa.timestamp("us", tz="UTC")),
        "engagement": pa.array(rng.exponential(20.0, size=n_events)),
    }), root / "events.parquet")


SLATE = """
import json, sys, time
def hwm():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) / 1024
from slate.logs.join import join_outcomes
root = sys.argv[1]
t0, c0 = time.perf_counter(), time.process_time()
_, report = join_outcomes(root + "/decisions", root + "/events.parquet", root + "/joined",
                          quality_threshold=15.0, window="24h")
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
print(json.dumps({"wall": wall, "cpu": cpu, "rss_mb": hwm(), "report": report.to_dict()}))
"""

DUCK = """
import json, sys, time
import duckdb
def hwm():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) / 1024
root = sys.argv[1]
con = duckdb.connect()
con.execute("SET threads = 1")
con.execute("SET preserve_insertion_order = false")
t0, c0 = time.perf_counter(), time.process_time()
con.execute(f'''
COPY (
  WITH d AS (SELECT * FROM read_parquet('{root}/decisions/*.parquet')),
  k AS (SELECT member_id, title_id, timestamp, page_id FROM d),
  m AS (
    SELECT k.page_id, k.title_id, max(CASE WHEN e.engagement >= 15.0 THEN 1 ELSE 0 END) AS r,
           sum(e.engagement) AS g
    FROM read_parquet('{root}/events.parquet') e
    ASOF JOIN k ON e.member_id = k.member_id AND e.title_id = k.title_id AND e.timestamp >= k.timestamp
    WHERE e.timestamp - k.timestamp <= INTERVAL 24 HOUR
    GROUP BY ALL)
  SELECT d.* EXCLUDE (reward), coalesce(m.r, 0)::TINYINT AS reward, coalesce(m.g, 0.0) AS engagement
  FROM d LEFT JOIN m USING (page_id, title_id)
) TO '{root}/duck.parquet' (FORMAT parquet)''')
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
print(json.dumps({"wall": wall, "cpu": cpu, "rss_mb": hwm()}))
"""


def run(code: str, root: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", code, str(root)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--impressions", type=float, default=20e6)
    parser.add_argument("--events", type=float, default=5e6)
    parser.add_argument("--file-rows", type=float, default=2e6)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--skip-duckdb", action="store_true")
    args = parser.parse_args()
    n, n_events = int(args.impressions), int(args.events)
    root = Path(tempfile.mkdtemp(prefix="slate-join-"))
    try:
        t = time.perf_counter()
        make_data(root, n, n_events, int(args.file_rows))
        print(f"data: {n:,} impressions, {n_events:,} events in {time.perf_counter() - t:.1f} s "
              f"(generator peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB)")
        slate_runs = [run(SLATE, root) for _ in range(args.repeats)]
        cpu = float(np.median([r["cpu"] for r in slate_runs]))
        wall = float(np.median([r["wall"] for r in slate_runs]))
        rss = max(r["rss_mb"] for r in slate_runs)
        rep = slate_runs[0]["report"]
        print(f"slate join_outcomes: {cpu:.2f} CPU s, {wall:.2f} wall s, {n / cpu / 1e6:.2f} M impressions/s "
              f"per core, peak RSS {rss:.0f} MB; matched {rep['n_matched']:,}, unmatched "
              f"{rep['unmatched_by_reason']}, rows rewarded {rep['n_rewarded']:,}")
        if not args.skip_duckdb:
            duck_runs = [run(DUCK, root) for _ in range(args.repeats)]
            dcpu = float(np.median([r["cpu"] for r in duck_runs]))
            dwall = float(np.median([r["wall"] for r in duck_runs]))
            drss = max(r["rss_mb"] for r in duck_runs)
            print(f"duckdb ASOF join (1 thread): {dcpu:.2f} CPU s, {dwall:.2f} wall s, "
                  f"{n / dcpu / 1e6:.2f} M impressions/s per core, peak RSS {drss:.0f} MB")
            print(f"ratio slate / duckdb (impressions/s per core): {dcpu / cpu:.2f}x")
            def rows(path: Path) -> pa.Table:
                t = pq.read_table(path, columns=["page_id", "title_id", "reward"])
                t = t.set_column(1, "title_id", t.column("title_id").cast(pa.string()))
                return t.sort_by([("page_id", "ascending"), ("title_id", "ascending")])

            ours, theirs = rows(root / "joined"), rows(root / "duck.parquet")
            same = ours.column("reward").to_pylist() == theirs.column("reward").to_pylist()
            print(f"same rewards as duckdb: {same}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
