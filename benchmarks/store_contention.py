"""N processes serving the same members through one state store: lost updates, budget breaks, conflicts.

Each of N processes (2 and 4 by default) composes pages for the same few members through one
store (an SQLite file, and a Redis server started on a free loopback port with persistence off),
all starting at once, with a change budget of 3 and scores redrawn for every page (so every page
wants more changes than the budget allows). The records of every store call are analysed by
:func:`slate.testing.contention.analyse` (see there for the definitions). ``--blind`` adds the
same runs with blind writes (``put``, no version check; slate before versions): the analysis finds
their lost updates, which shows it can.

Usage::

    python benchmarks/store_contention.py                       # 2 and 4 processes, sqlite and redis
    python benchmarks/store_contention.py --pages 3000 --members 20 --blind
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile

from slate.testing.contention import run_contention
from slate.testing.stores import redis_server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", default="2,4")
    parser.add_argument("--stores", default="sqlite,redis")
    parser.add_argument("--pages", type=int, default=1500, help="pages per process")
    parser.add_argument("--members", type=int, default=20)
    parser.add_argument("--max-changes", type=int, default=3)
    parser.add_argument("--blind", action="store_true", help="also run with blind writes (no versions)")
    args = parser.parse_args()
    print(f"# store contention — {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; "
          f"{args.pages} pages per process, {args.members} members, max_changes {args.max_changes}")
    print(f"{'store':<8}{'writes':<8}{'procs':>6}{'pages':>8}{'committed':>10}{'conflicts':>10}"
          f"{'lost upd.':>10}{'budget br.':>11}{'pages/s':>9}  other faults")
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        redis_url = stack.enter_context(redis_server()).url if "redis" in args.stores else ""
        run = 0
        for store in args.stores.split(","):
            for n in (int(x) for x in args.processes.split(",")):
                for blind in ([False, True] if args.blind else [False]):
                    run += 1
                    spec = f"sqlite:///{tmp}/state-{run}.db" if store == "sqlite" else f"{redis_url[:-1]}{run % 16}"
                    r = run_contention(spec, n_processes=n, pages=args.pages, n_members=args.members,
                                       max_changes=args.max_changes, blind=blind, seed=run)
                    other = {k: v for k, v in r["faults"].items() if k != "store_conflict"}
                    print(f"{store:<8}{'blind' if blind else 'CAS':<8}{n:>6}{r['pages']:>8}{r['committed']:>10}"
                          f"{r['conflicts']:>10}{r['lost_updates']:>10}{r['budget_breaks']:>11}"
                          f"{r['pages_per_s']:>9.0f}  {other}")
    print(f"# load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
