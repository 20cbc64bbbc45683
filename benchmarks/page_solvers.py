"""Page solvers: time, optimality gap, and speed against a plain cvxpy model, in one run.

Usage::

    python benchmarks/page_solvers.py            # full table (about 15-25 minutes on 2 cores)
    python benchmarks/page_solvers.py --quick    # 20x5 and 40x10 only, fewer pages

For every page size (titles x images) and layout it builds ``--pages`` seeded random pages
(:func:`slate.page.random_problem`), solves each with the exact solver for the reference optimum,
then times every solver warm and in-process (``--repeats`` solves per page). Columns:

* ``p50 ms`` / ``p99 ms``: wall time of ``solve()``;
* ``mean gap`` / ``worst gap``: ``(optimum - objective) / optimum`` against the exact optimum
  (for pages the exact solver cannot prove within ``--reference-limit-s`` the reference is its
  upper bound, so the gap shown is an upper bound on the true gap, marked ``<=``);
* ``differs``: share of titles whose image differs from ``independent`` (what the page changes);
* ``x cvxpy``: median of (plain cvxpy textbook MILP time with HiGHS) / (solver time), the
  baseline solved in the same run on the same pages (``>=`` when the baseline hit its limit).

A second table runs every solver on the shared certified instances (``../shared/instances``) and
a third checks ``auto`` with a 5 ms budget on 150x20 dense pages (wall time and overhead).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from slate.page import read_optimum, read_problem
from slate.page.random import random_problem
from slate.solvers import get_solver
from slate.solvers.chain import supports as chain_supports
from slate.solvers.exact import solve_cvxpy
from slate.solvers.fast import warm_up

SIZES = [(20, 5), (40, 10), (80, 10), (150, 20)]
LAYOUTS = ["local", "chain", "dense"]
SOLVERS = ["independent", "fast", "chain", "exact", "auto"]


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def time_solver(name: str, problem, repeats: int, time_limit_ms: float | None = None):
    if name == "exact" and time_limit_ms is None:
        time_limit_ms = 120_000.0  # a proof that takes longer is reported as time_limit
    solver = get_solver(name)
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = solver.solve(problem, time_limit_ms=time_limit_ms)
        times.append((time.perf_counter() - t0) * 1000.0)
    return times, result


def fmt_gap(values: list[float], upper: bool) -> tuple[str, str]:
    if not values:
        return "-", "-"
    mark = "<=" if upper else ""
    return f"{mark}{100 * statistics.fmean(values):.3f}%", f"{mark}{100 * max(values):.3f}%"


def random_table(args: argparse.Namespace) -> None:
    sizes = SIZES[:2] if args.quick else SIZES
    if args.sizes:
        sizes = [s for s in SIZES if f"{s[0]}x{s[1]}" in args.sizes]
    print("\n## Random pages (seeded), warm, in-process\n")
    print("| layout | size | solver | p50 ms | p99 ms | mean gap | worst gap | differs | x cvxpy |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n_titles, n_images in sizes:
        for layout in LAYOUTS:
            if layout == "dense" and n_titles > 20:
                continue  # dense pages beyond ~20 titles are not provable in minutes; see the auto table
            pages = [random_problem(n_titles, n_images, layout, seed=s) for s in range(args.pages)]
            refs, upper = [], False
            baseline_ms, baseline_capped = [], False
            for p in pages:
                ref = get_solver("exact").solve(p, time_limit_ms=args.reference_limit_s * 1000)
                if ref.status != "optimal":
                    upper = True
                refs.append(ref.bound if ref.bound is not None else ref.objective)
                if not args.no_baseline:
                    t0 = time.perf_counter()
                    base = solve_cvxpy(p, "textbook", time_limit_ms=args.baseline_limit_s * 1000)
                    baseline_ms.append((time.perf_counter() - t0) * 1000.0)
                    baseline_capped |= base.status != "optimal"
            independent = [get_solver("independent").solve(p).assignment for p in pages]
            for name in SOLVERS:
                if name == "chain" and not all(chain_supports(p) for p in pages):
                    continue
                times, gaps, differs, ratios = [], [], [], []
                repeats = 1 if name == "exact" else args.repeats
                for i, p in enumerate(pages):
                    ts, res = time_solver(name, p, repeats)
                    times += ts
                    gaps.append(max(0.0, refs[i] - res.objective) / abs(refs[i]))
                    differs.append(float((res.assignment != independent[i]).mean()))
                    if baseline_ms:
                        ratios.append(baseline_ms[i] / statistics.median(ts))
                mean_gap, worst_gap = fmt_gap(gaps, upper)
                ratio = "-" if not ratios else f"{'>=' if baseline_capped else ''}{statistics.median(ratios):,.0f}"
                print(
                    f"| {layout} | {n_titles}x{n_images} | {name} | {pct(times, 50):.2f} | {pct(times, 99):.2f} "
                    f"| {mean_gap} | {worst_gap} | {100 * statistics.fmean(differs):.0f}% | {ratio} |"
                )
            if baseline_ms:
                print(
                    f"| {layout} | {n_titles}x{n_images} | cvxpy textbook (baseline) | {pct(baseline_ms, 50):.0f} "
                    f"| {pct(baseline_ms, 99):.0f} | | | | 1 |"
                )
            sys.stdout.flush()


def shared_table(args: argparse.Namespace) -> None:
    paths = sorted(Path(args.instances).glob("*.json"))
    if not paths:
        print(f"\n(no shared instances found in {args.instances})")
        return
    print("\n## Shared certified instances\n")
    print("| instance | solver | status | p50 ms | gap to certified | beats certified? |")
    print("|---|---|---|---|---|---|")
    worst: dict[str, float] = {}
    means: dict[str, list[float]] = {}
    for path in paths:
        p = read_problem(path)
        certified = float(read_optimum(path)["objective"])
        for name in SOLVERS:
            if name == "chain" and not chain_supports(p):
                continue
            ts, res = time_solver(name, p, 1 if name == "exact" else args.repeats)
            gap = (certified - res.objective) / abs(certified)
            worst[name] = max(worst.get(name, 0.0), gap)
            means.setdefault(name, []).append(max(gap, 0.0))
            beats = "YES" if res.objective > certified + 1e-6 else "no"
            print(f"| {path.stem} | {name} | {res.status} | {pct(ts, 50):.2f} | {100 * gap:.4f}% | {beats} |")
    print("\n| solver | mean gap (shared) | worst gap (shared) |\n|---|---|---|")
    for name in means:
        print(f"| {name} | {100 * statistics.fmean(means[name]):.4f}% | {100 * worst[name]:.4f}% |")


def auto_table(args: argparse.Namespace) -> None:
    print("\n## auto with time_limit_ms=5 on 150x20 dense pages\n")
    print("Warm: repeated solves of a page; first: the first solve of a freshly built page, which also")
    print("derives the page's pair-cost arrays (11,175 pairs x 400 image pairs).\n")
    print("| pages | warm p50 ms | warm p99 ms | warm max ms | first solve p50 ms | statuses | mean gap to its bound |")
    print("|---|---|---|---|---|---|---|")
    times, first, statuses, gaps = [], [], {}, []
    for s in range(args.pages):
        p = random_problem(150, 20, "dense", seed=100 + s)
        for i in range(args.repeats + 1):
            t0 = time.perf_counter()
            res = get_solver("auto").solve(p, time_limit_ms=5)
            (first if i == 0 else times).append((time.perf_counter() - t0) * 1000.0)
            assert p.is_feasible(res.assignment)
            statuses[str(res.status)] = statuses.get(str(res.status), 0) + 1
            if res.gap is not None:
                gaps.append(res.gap)
    gap = f"{100 * statistics.fmean(gaps):.2f}%" if gaps else "-"
    print(
        f"| {args.pages} x {args.repeats} | {pct(times, 50):.2f} | {pct(times, 99):.2f} | {max(times):.2f} "
        f"| {pct(first, 50):.1f} | {statuses} | {gap} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--pages", type=int, default=None, help="random pages per size and layout")
    parser.add_argument("--repeats", type=int, default=None, help="timed solves per page (warm)")
    parser.add_argument("--reference-limit-s", type=float, default=120.0)
    parser.add_argument("--baseline-limit-s", type=float, default=60.0)
    parser.add_argument("--no-baseline", action="store_true", help="skip the cvxpy textbook baseline")
    parser.add_argument("--instances", default=str(Path(__file__).resolve().parents[2] / "shared" / "instances"))
    parser.add_argument("--sizes", nargs="*", default=None, help="e.g. 80x10 150x20 (default: all)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["random", "shared", "auto"])
    args = parser.parse_args()
    args.pages = args.pages or (2 if args.quick else 3)
    args.repeats = args.repeats or (20 if args.quick else 50)
    t0 = time.perf_counter()
    warm_up()
    print(f"# slate page solvers (numba warm-up {1000 * (time.perf_counter() - t0):.0f} ms, not timed below)")
    if "random" not in args.skip:
        random_table(args)
    if "shared" not in args.skip:
        shared_table(args)
    if "auto" not in args.skip:
        auto_table(args)


if __name__ == "__main__":
    main()
