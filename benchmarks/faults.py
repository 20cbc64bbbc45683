"""Fault runs too long for the test suite: shared decision-log folders, kill -9 loops, bit flips.

Prints, for each run, pages served (acknowledged by ``compose()`` / ``append()``), pages on
disk, pages recovered from journals, pages lost, and (kill loops) committed member states whose
page is not in the log.

* ``loggers``: two :class:`~slate.serve.DecisionLogger` in one folder -- two threads, a logger
  re-created in the same process, two processes that are both "PID 1" (``os.getpid`` patched),
  two processes with their own PIDs. Bar: on disk == reported written == served, every file
  readable.
* ``kill``: a serving process (``Composer`` + ``SQLiteStore`` + ``DecisionLogger``) killed with
  SIGKILL at random moments, restarted on the same folder and state database, in the default
  mode and in durable mode (``DecisionLogger(durable=True)``: journal fsync'd per page, state
  committed after the log). Bar (durable): 0 served pages lost, 0 states without their page.
* ``flips``: single-bit flips in the data region of a log file (between the Parquet magic and
  the footer), read back with :func:`slate.logs.read_impressions`; each flip is *detected*
  (reported with its file and row group, the rest identical), *harmless* (nothing reported,
  every row identical) or *silent* (values changed, nothing reported). With page checksums (the
  default) and, as a control, without. Bar: 0 silent.

Usage::

    python benchmarks/faults.py                        # everything, modest sizes
    python benchmarks/faults.py --only kill --kills 8 --pages 4000
    python benchmarks/faults.py --only flips --flips 200
"""

from __future__ import annotations

import argparse
import os
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

T0 = 1_714_593_600.0  # 2024-05-01T20:00:00Z
N_TITLES = 8


# ------------------------------------------------------------------ serving helpers
def request(member: int, when: float, session: int) -> dict[str, Any]:
    return {"member_id": member, "session_id": session, "timestamp": when,
            "titles": [{"title_id": f"T{t}", "image_ids": [f"T{t}-{k}" for k in range(3)],
                        "row": t // 4, "col": t % 4} for t in range(N_TITLES)]}


def scores(req: Any) -> np.ndarray:
    rng = np.random.default_rng(req.member_id)
    return rng.uniform(0.01, 0.2, size=(req.n_titles, req.n_images))


def composer(folder: Path, *, durable: bool, batch_pages: int) -> tuple[Any, Any, Any]:
    from slate.serve import ComposeConfig, Composer, DecisionLogger, StickyEpsilon
    from slate.stability import SQLiteStore, StabilityRules

    store = SQLiteStore(folder / "state.db")
    logger = DecisionLogger(folder / "log", batch_pages=batch_pages, durable=durable)
    config = ComposeConfig(solver="independent", stability=StabilityRules(max_changes=2))
    return Composer(scores, store, StickyEpsilon(0.1, max_explored=2, seed=0), config=config,
                    logger=logger), store, logger


def pages_on_disk(folder: Path) -> tuple[int, int, set[tuple[int, int]]]:
    """(pages, files, {(member, timestamp us)}) of the published files; every file read in full."""
    files = sorted(p for p in folder.rglob("*.parquet") if not p.name.startswith("."))
    pages: set[tuple[int, int]] = set()
    n = 0
    for f in files:
        table = pq.read_table(f, columns=["member_id", "timestamp"], page_checksum_verification=True)
        n += int(pq.read_schema(f).metadata[b"slate.pages"])
        ts = table.column("timestamp").cast("int64").to_numpy()
        pages |= set(zip(table.column("member_id").to_numpy().tolist(), ts.tolist(), strict=True))
    return n, len(files), pages


# ------------------------------------------------------------------ shared folders
def _append_all(logger: Any, decisions: list[Any]) -> None:
    for d in decisions:
        logger.append(d)
    logger.close()


def make_decisions(n: int) -> list[Any]:
    from slate.serve import ComposeConfig, compose

    cfg = ComposeConfig(solver="independent")
    return [compose(request(i % 50, T0, i), scores, None, config=cfg) for i in range(n)]


def logger_worker(folder: str, n: int, fake_pid: bool) -> None:
    if fake_pid:
        os.getpid = lambda: 1  # two containers that are both PID 1
    from slate.serve import DecisionLogger

    logger = DecisionLogger(folder, batch_pages=4)
    _append_all(logger, make_decisions(n))
    print(logger.pages_written_, flush=True)


def loggers_run(n_pages: int) -> None:
    from slate.serve import DecisionLogger

    print(f"\n## two loggers in one folder ({n_pages} pages each, same timestamps, batches of 4)")
    print(f"{'case':<28}{'served':>8}{'reported':>10}{'on disk':>9}{'files':>7}{'lost':>6}")
    decisions = make_decisions(n_pages)
    for case in ("two threads", "re-created logger", "two processes, same PID", "two processes"):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            if case == "two threads":
                loggers = [DecisionLogger(folder, batch_pages=4) for _ in range(2)]
                threads = [threading.Thread(target=_append_all, args=(lg, decisions)) for lg in loggers]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                reported = sum(lg.pages_written_ for lg in loggers)
            elif case == "re-created logger":
                reported = 0
                for half in (decisions[: n_pages // 2], decisions[n_pages // 2 :]) * 2:
                    lg = DecisionLogger(folder, batch_pages=4)
                    _append_all(lg, half)
                    reported += lg.pages_written_
            else:
                fake = "same PID" in case
                procs = [subprocess.Popen([sys.executable, __file__, "--worker", "logger", str(folder),
                                           str(n_pages), str(int(fake))], stdout=subprocess.PIPE, text=True)
                         for _ in range(2)]
                reported = sum(int(p.communicate()[0].split()[0]) for p in procs)
            served = 2 * n_pages
            on_disk, files, _ = pages_on_disk(folder)
            print(f"{case:<28}{served:>8}{reported:>10}{on_disk:>9}{files:>7}{served - on_disk:>6}")


# ------------------------------------------------------------------ kill -9 loops
def kill_worker(folder: str, mode: str, run: int, n_members: int) -> None:
    comp, _, logger = composer(Path(folder), durable=mode == "durable", batch_pages=64)
    print(f"recovered {logger.recovered_pages_}", flush=True)
    i = 0
    while True:  # served until killed; page i of run r is (member i % M, time T0 + r * 1e5 + i)
        comp.compose(request(i % n_members, T0 + run * 100_000 + i, run * 100_000 + i))
        print(i, flush=True)
        i += 1


def kill_run(mode: str, n_kills: int, n_members: int, seed: int) -> dict[str, float]:
    from slate.serve import DecisionLogger
    from slate.stability import SQLiteStore

    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        served: set[tuple[int, int]] = set()
        recovered = 0
        serving = 0.0
        for run in range(n_kills):
            proc = subprocess.Popen([sys.executable, __file__, "--worker", "kill", tmp, mode, str(run),
                                     str(n_members)], stdout=subprocess.PIPE, text=True)
            assert proc.stdout is not None
            recovered += int(proc.stdout.readline().split()[1])  # started: crashed journals replayed
            started = time.perf_counter()
            time.sleep(float(rng.uniform(0.5, 2.5)))
            os.kill(proc.pid, signal.SIGKILL)
            serving += time.perf_counter() - started
            out = proc.communicate()[0].split()
            last = int(out[-1]) if out else 0
            served |= {(i % n_members, round((T0 + run * 100_000 + i) * 1e6)) for i in range(last + 1)}
        final = DecisionLogger(folder / "log", durable=True)  # replays what crashed loggers journaled
        recovered += final.recovered_pages_
        final.close()
        n_disk, files, logged = pages_on_disk(folder / "log")
        store = SQLiteStore(folder / "state.db")
        titles = [f"T{t}" for t in range(N_TITLES)]
        orphan_states = 0
        for member in range(n_members):
            for state in store.get(member, titles).values():
                if (member, round(state.updated_at * 1e6)) not in logged:
                    orphan_states += 1
        store.close()
    return {"served": len(served), "pages_per_s": len(served) / serving, "on_disk": n_disk, "files": files, "recovered": recovered,
            "lost": len(served - logged), "logged_not_acked": len(logged - served),
            "states_without_log": orphan_states}


def kill_loops(n_kills: int, n_members: int, seed: int) -> None:
    print(f"\n## kill -9 loops: {n_kills} kills per mode, {n_members} members, SQLite state, batches of 64")
    print(f"{'mode':<10}{'served':>8}{'pages/s':>9}{'on disk':>9}{'recovered':>11}{'lost':>6}{'logged, not acked':>19}"
          f"{'states w/o page':>17}")
    for mode in ("default", "durable"):
        r = kill_run(mode, n_kills, n_members, seed)
        print(f"{mode:<10}{r['served']:>8}{r['pages_per_s']:>9.0f}{r['on_disk']:>9}{r['recovered']:>11}{r['lost']:>6}"
              f"{r['logged_not_acked']:>19}{r['states_without_log']:>17}")
    print("(served: pages compose() returned; lost: served pages missing from the log; logged, not "
          "acked: the page being served at the kill; states w/o page: (member, title) states whose "
          "page is not in the log)")


# ------------------------------------------------------------------ bit flips
def _decoded(log: Any) -> list[np.ndarray]:
    cand = np.array((*log.image_ids, ""), dtype=object)[log.candidates]
    return [log.member_id, log.page_id, log.timestamp, log.row, log.col, log.propensity, log.explored,
            log.reward, log.source_row, np.array(log.title_ids, dtype=object)[log.title],
            np.array(log.image_ids, dtype=object)[log.image], np.array(["|".join(r) for r in cand])]


def flip_outcome(flipped: Path, base: Any) -> str:
    from slate.logs import InvalidLogError, read_impressions

    try:
        log, report = read_impressions(flipped)
    except InvalidLogError:
        return "refused"
    if report.damaged:
        keep = ~np.isin(base.source_row, report.rows_for("corrupt_row_group"))
        same = all(np.array_equal(a, b[keep]) for a, b in zip(_decoded(log), _decoded(base), strict=True))
        return "detected" if same else "silent"
    same = all(np.array_equal(a, b) for a, b in zip(_decoded(log), _decoded(base), strict=True))
    return "harmless" if same else "silent"


def flips_run(n_flips: int, seed: int) -> None:
    from slate.logs import read_impressions, write_impressions
    from slate.serve import decisions_table

    print(f"\n## {n_flips} single-bit flips in a decision log's data region (seed {seed})")
    print(f"{'checksums':<11}{'bytes':>7}{'detected':>10}{'harmless':>10}{'refused':>9}{'silent':>8}{'s/flip':>8}")
    decisions = make_decisions(2000)
    rewards = np.random.default_rng(seed).integers(0, 2, size=(len(decisions), N_TITLES))
    table = decisions_table(decisions, rewards=list(rewards))
    for checksums in (True, False):
        with tempfile.TemporaryDirectory() as tmp:
            # the decision logger's table and writer (write_impressions), checksums on or off
            path = write_impressions(Path(tmp) / "log.parquet", table, page_checksums=checksums)
            base, _ = read_impressions(path)
            data = path.read_bytes()
            (footer,) = struct.unpack("<I", data[-8:-4])
            end = len(data) - 8 - footer
            rng = np.random.default_rng(seed)
            counts = {"detected": 0, "harmless": 0, "refused": 0, "silent": 0}
            flipped = Path(tmp) / "flipped.parquet"
            started = time.perf_counter()
            for _ in range(n_flips):
                copy = bytearray(data)
                copy[int(rng.integers(4, end))] ^= 1 << int(rng.integers(8))
                flipped.write_bytes(copy)
                counts[flip_outcome(flipped, base)] += 1
            per = (time.perf_counter() - started) / n_flips
            print(f"{'on' if checksums else 'off':<11}{len(data):>7}{counts['detected']:>10}{counts['harmless']:>10}"
                  f"{counts['refused']:>9}{counts['silent']:>8}{per:>8.3f}")
    print("(detected: reported with its file and row group, every other row identical; harmless: nothing "
          "reported and every row identical; refused: the file rejected as a whole with a clear error; "
          "silent: values changed without a report)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["loggers", "kill", "flips"], default=None)
    parser.add_argument("--pages", type=int, default=1000, help="pages per logger (loggers)")
    parser.add_argument("--kills", type=int, default=8)
    parser.add_argument("--members", type=int, default=50)
    parser.add_argument("--flips", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, *rest = args.worker
        if kind == "logger":
            logger_worker(rest[0], int(rest[1]), bool(int(rest[2])))
        else:
            kill_worker(rest[0], rest[1], int(rest[2]), int(rest[3]))
        return
    print(f"# slate fault runs — {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    if args.only in (None, "loggers"):
        loggers_run(args.pages)
    if args.only in (None, "kill"):
        kill_loops(args.kills, args.members, args.seed)
    if args.only in (None, "flips"):
        flips_run(args.flips, args.seed)
    print(f"\n# load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
