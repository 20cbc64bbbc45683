"""Simulated impressions per second: the response model on whole pages, and full simulation days.

Prints a table. Rows:

* ``respond``: the response model alone (:func:`slate.sim.respond`) on batches of whole pages
  (40 titles on a 5x8 grid, page and session effects on), i.e. P(quality play) of every slot
  including the layout-neighbour similarity;
* ``respond (no page effects)``: the same with the page effect switched off (for the ratio);
* ``candidates``: page-blind probabilities of every candidate image (what an oracle scorer does);
* ``simulate uniform``: full days of :func:`slate.sim.simulate` with uniform random logging
  (policy + response + outcome draws + session-state updates);
* ``simulate argmax``: the same with the oracle per-title argmax policy.

A second table reports the bar on page effects: the true take fraction (on-policy, common
random numbers) of the page optimizer against per-title argmax of the same (oracle) scores, with
page effects on and off, over several seeds (mean relative difference and its standard error
across seeds). Skip it with ``--no-page-table``.

``--demo-seeds N`` also runs the full-size demo (:func:`slate.sim.demo.run_demo`) on seeds
0..N-1 and prints, per seed, whether replay ranks random < take-rate < contextual, whether every
replay interval covers its true value on the logged pages, and the wall and CPU time.

Timings are medians over repeats on one core (numba and BLAS threads are pinned to 1); the
machine may be shared, so the ratios between rows measured in the same run are the stable part.

Run: ``python benchmarks/simulator.py [--members 2000] [--days 28] [--repeats 5]``
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("NUMBA_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import statistics
import time

import numpy as np

from slate.sim import (
    ArgmaxPolicy,
    PageBatch,
    PageOptimizerPolicy,
    ResponseConfig,
    UniformRandomLogging,
    candidate_probabilities,
    initial_state,
    make_schedule,
    make_world,
    oracle_scorer,
    respond,
    simulate,
)


def _median_time(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=2000)
    parser.add_argument("--titles", type=int, default=300)
    parser.add_argument("--days", type=int, default=28)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-page-table", action="store_true", help="skip the page-effect table")
    parser.add_argument("--page-seeds", type=int, default=5)
    parser.add_argument("--demo-seeds", type=int, default=0, help="run the demo on seeds 0..N-1")
    parser.add_argument("--only-demo", action="store_true", help="skip the throughput and page tables")
    args = parser.parse_args()
    if not args.only_demo:
        throughput(args)
        if not args.no_page_table:
            page_table(args.page_seeds)
    if args.demo_seeds:
        demo_seeds(args.demo_seeds)


def throughput(args: argparse.Namespace) -> None:
    """The impressions-per-second table."""
    world = make_world(n_members=args.members, n_titles=args.titles, n_days=args.days, seed=args.seed)
    schedule = make_schedule(world, seed=args.seed)
    state = initial_state(world)
    rng = np.random.default_rng(args.seed)
    # one batch of every page of the schedule, with random previous images and noticed flags
    titles = schedule.titles
    n_cand = world.n_images[titles]
    previous = np.where(rng.random(titles.shape) < 0.5, (rng.random(titles.shape) * n_cand).astype(np.int64), -1)
    batch = PageBatch(
        world=world,
        member=schedule.member,
        day=schedule.day,
        hour=schedule.hour,
        device=schedule.device,
        titles=titles,
        previous=previous,
        known=state.known[schedule.member[:, None], titles],
        session_id=schedule.session_id,
        page_id=schedule.page_id,
        timestamp=schedule.timestamp,
    )
    images = (rng.random(titles.shape) * n_cand).astype(np.int64)
    noticed = rng.random(titles.shape) < 0.5
    no_page = world.config.response.model_copy(update={"page_effects": False})
    n_imp = schedule.n_impressions
    n_cand_total = int(n_cand.sum())

    def fresh() -> PageBatch:
        batch._cache.clear()  # measure the member/title terms too, not a cached copy
        return batch

    respond(batch.take(np.arange(4)), images[:4])  # compile the kernel before timing
    oracle = ArgmaxPolicy(oracle_scorer())
    rows = [
        ("respond", n_imp, "impressions", lambda: respond(fresh(), images, noticed)),
        ("respond (no page effects)", n_imp, "impressions", lambda: respond(fresh(), images, noticed, config=no_page)),
        ("candidates", n_cand_total, "candidate images", lambda: candidate_probabilities(fresh())),
        ("simulate uniform", n_imp, "impressions", lambda: simulate(schedule, UniformRandomLogging(seed=1))),
        ("simulate argmax", n_imp, "impressions", lambda: simulate(schedule, oracle)),
    ]
    print(
        f"world: {world.n_members} members, {world.n_titles} titles, {world.n_images_total} images; "
        f"schedule: {schedule.n_days} days, {schedule.n_sessions} pages of {world.n_slots} titles "
        f"({n_imp} impressions, {len(world.pairs)} layout pairs per page)"
    )
    print(f"median of {args.repeats} repeats, 1 thread\n")
    print(f"{'what':<28} {'items':>10} {'median s':>9} {'M items/s':>10}  unit")
    print("-" * 72)
    for label, n_items, unit, fn in rows:
        seconds = _median_time(fn, args.repeats)
        print(f"{label:<28} {n_items:>10} {seconds:>9.3f} {n_items / seconds / 1e6:>10.2f}  {unit}")


def demo_seeds(n_seeds: int) -> None:
    """The full-size demo on several seeds: ranking by replay, coverage, time."""
    import tempfile

    from slate.sim.demo import POLICIES, run_demo

    print(f"\nslate demo (2000 members, 4 weeks, 1 held out) on seeds 0..{n_seeds - 1}: replay estimates")
    head = f"{'seed':>4} " + " ".join(f"{p[:18]:>18}" for p in POLICIES) + f" {'ordering':>9} {'covered':>8} {'wall s':>7} {'cpu s':>6}"
    print(head)
    print("-" * len(head))
    for seed in range(n_seeds):
        with tempfile.TemporaryDirectory() as tmp:
            wall, cpu = time.perf_counter(), time.process_time()
            report = run_demo(tmp, seed=seed, progress=False)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        cells = " ".join(f"{r.replay:.4f} ({r.truth_logged:.4f})".rjust(18) for r in report.rows)
        print(f"{seed:>4} {cells} {report.ordering_holds!s:>9} {report.all_covered!s:>8} {wall:>7.1f} {cpu:>6.1f}")
    print("cells: replay estimate (true value on the logged pages)")


def page_table(n_seeds: int) -> None:
    """Page optimizer vs per-title argmax of the same scores, page effects on and off."""
    settings = [(0.25, 0.1), (0.5, 0.1), (1.0, 0.1)]
    print(
        f"\npage optimizer ('fast') vs per-title argmax of the oracle's scores: true take fraction, "
        f"on-policy, {n_seeds} seeds x (300 members, 5 days)"
    )
    crowding = ResponseConfig().crowding
    print(f"diversity and churn weights are relative (x mean best score of the page); crowding = {crowding}")
    print(f"{'page effects':<13} {'diversity':>9} {'churn':>6} {'argmax':>8} {'optimizer':>10} "
          f"{'rel. diff':>10} {'se':>7} {'div. argmax':>12} {'div. opt':>9}")
    print("-" * 92)
    rows: dict[tuple[bool, float, float], list[tuple[float, float, float, float]]] = {}
    for seed in range(n_seeds):
        world = make_world(n_members=300, seed=seed)
        schedule = make_schedule(world, n_days=5, seed=seed)
        scorer = oracle_scorer()
        for effects in (True, False):
            cfg = world.config.response.model_copy(update={"page_effects": effects})
            base = simulate(schedule, ArgmaxPolicy(scorer), config=cfg).value()
            for mult, churn in settings:
                policy = PageOptimizerPolicy(
                    scorer, diversity=mult * crowding, churn=churn, options={"compute_bound": False}
                )
                v = simulate(schedule, policy, config=cfg).value()
                rows.setdefault((effects, mult, churn), []).append(
                    (base.take_fraction, v.take_fraction, base.diversity, v.diversity)
                )
    for (effects, mult, churn), vals in rows.items():
        a = np.array(vals)
        rel = a[:, 1] / a[:, 0] - 1.0
        se = rel.std(ddof=1) / np.sqrt(len(rel)) if len(rel) > 1 else float("nan")
        print(
            f"{'on' if effects else 'off':<13} {mult * crowding:>9.4f} {churn:>6.2f} {a[:, 0].mean():>8.4f} "
            f"{a[:, 1].mean():>10.4f} {100 * rel.mean():>+9.2f}% {100 * se:>6.2f}% "
            f"{a[:, 2].mean():>12.3f} {a[:, 3].mean():>9.3f}"
        )


if __name__ == "__main__":
    main()
