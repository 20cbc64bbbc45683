"""Bias, spread and 95% coverage of the page-aware estimator against the value if deployed.

The world is the replay tests' logged-bandit world (``tests/replay/test_world.py``): pages of
``--slots`` titles in one row, 4 images per title in 2 visual styles; a member plays title ``t``
shown with image ``k`` with probability ``sigmoid(base[t] + theta[t, k] @ x - page_effect *
(share of row neighbours whose image has the same style))``; logging is uniform and independent
across titles. The truth is the target's value *if deployed* (its own pages, page effects
included), exact per context and averaged over a million contexts.

Two targets, each with page effects on (``--page-effect``) and off (0):

* ``same-style``: every title shows its image 0 (style 0), so neighbours look alike;
* ``greedy``: the per-title argmax of (noisy) true scores, which mixes styles.

Estimators: per-title ``snips``, ``neighbourhood`` (product of the neighbours' ratios; and
``neighbourhood-cv`` with the optimal control variate / additive baseline), ``pi-cv`` (the
pseudoinverse with its control variate; it assumes additive page rewards, so page effects bias
it) and the page-aware ones, given the images' style as ``groups``: ``page-aware-sn``
(marginalised over the same-style neighbour count, self-normalised), ``page-aware-u`` (its
unnormalised, unbiased form), ``page-aware-cv`` (unnormalised with the optimal control variate)
and ``page-aware-dr`` (doubly robust around the cross-fitted page-aware take model, refitted in
the bootstrap).

Printed per (world, target, estimator): truth, mean estimate, bias in standard errors of the
mean (``bias / (sd / sqrt(R))``), spread (sd over repetitions) and its ratio to per-title
SNIPS's on the same logs (with a 95% interval of that ratio from 2,000 bootstrap resamples of
the repetitions, both sds recomputed on each: the ratio's own noise), and the coverage of the
95% percentile-bootstrap intervals.

Run: ``python benchmarks/page_aware.py [--reps 100] [--pages 2000] [--bootstrap 200]``
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from slate.replay import ReplayData, get_estimator
from tests.replay.test_world import World

NAMES = ("snips", "neighbourhood", "neighbourhood-cv", "pi-cv", "page-aware-sn", "page-aware-u",
         "page-aware-cv", "page-aware-dr")


def estimator(name: str, groups: np.ndarray):
    """The estimator behind a row name."""
    options = {
        "neighbourhood-cv": ("neighbourhood", {"baseline": True}),
        "pi-cv": ("pi", {"baseline": True}),
        "page-aware-sn": ("mips", {"groups": groups, "self_normalized": True}),
        "page-aware-u": ("mips", {"groups": groups, "self_normalized": False}),
        "page-aware-cv": ("mips", {"groups": groups, "baseline": True}),
        "page-aware-dr": ("page-aware-dr", {"groups": groups}),
    }
    base, kw = options.get(name, (name, {}))
    return get_estimator(base, **kw)


def run(world: World, choose, reps: int, pages: int, n_boot: int) -> dict[str, np.ndarray]:
    """(reps, 3) value, lower, upper per estimator over seeded logs."""
    groups = world.style[np.arange(world.n_titles * world.n_images) % world.n_images]
    out = {k: np.empty((reps, 3)) for k in NAMES}
    for r in range(reps):
        s = world.simulate(pages, "uniform", seed=10_000 + r)
        data = ReplayData.build(world.to_log(s), world.target(choose, s))
        for k in NAMES:
            e = estimator(k, groups).estimate(data, n_bootstrap=n_boot, seed=r)
            out[k][r] = e.value, e.interval[0], e.interval[1]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=100)
    ap.add_argument("--pages", type=int, default=2000)
    ap.add_argument("--slots", type=int, default=6)
    ap.add_argument("--bootstrap", type=int, default=200)
    ap.add_argument("--page-effect", type=float, default=1.5)
    ap.add_argument("--only", default="", help="comma-separated estimators (default: all)")
    args = ap.parse_args()
    global NAMES
    if args.only:
        NAMES = tuple(["snips"] + [k for k in args.only.split(",") if k != "snips"])
    print(f"{args.reps} seeded logs of {args.pages} pages x {args.slots} titles, uniform logging, "
          f"{args.bootstrap} bootstrap replicates")
    print(f"{'page effect':>11} {'target':>10} {'estimator':>16} {'truth':>7} {'mean':>7} "
          f"{'bias/se':>8} {'spread':>7} {'x snips [95%]':>20} {'cover':>6}")
    t0 = time.perf_counter()
    for effect in (args.page_effect, 0.0):
        world = World(seed=41, n_titles=24, n_images=4, n_features=2, n_slots=args.slots,
                      page_effect=effect)
        targets = {
            "same-style": lambda x, titles: np.zeros(titles.shape, dtype=np.int64),
            "greedy": world.greedy(noise=0.6, seed=2),
        }
        for tname, choose in targets.items():
            truth = world.truth(choose)
            res = run(world, choose, args.reps, args.pages, args.bootstrap)
            sd_snips = res["snips"][:, 0].std(ddof=1)
            idx = np.random.default_rng(0).integers(0, args.reps, (2000, args.reps))
            sd_snips_b = res["snips"][idx, 0].std(axis=1, ddof=1)
            for k in NAMES:
                v, lo, hi = res[k].T
                sd = v.std(ddof=1)
                z = (v.mean() - truth) / (sd / np.sqrt(len(v)))
                cover = np.mean((lo <= truth) & (truth <= hi))
                with np.errstate(invalid="ignore", divide="ignore"):  # tiny --reps: 0 / 0
                    ratio_b = v[idx].std(axis=1, ddof=1) / sd_snips_b
                r_lo, r_hi = np.nanpercentile(ratio_b[np.isfinite(ratio_b)], [2.5, 97.5])
                print(f"{effect:>11.2f} {tname:>10} {k:>16} {truth:7.4f} {v.mean():7.4f} "
                      f"{z:8.2f} {sd:7.4f} {sd / sd_snips:7.2f} [{r_lo:.2f}, {r_hi:.2f}] "
                      f"{cover:6.2f}", flush=True)
    print(f"wall {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
