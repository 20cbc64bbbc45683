"""Page effects from exploration logs (:mod:`slate.replay.effects`) against seeded simulator truths.

Run::

    python benchmarks/effects.py --seeds 20 --sweep 5     # the issue's bars (several minutes)
    python benchmarks/effects.py --seeds 3 --sweep 3      # quicker
    python benchmarks/effects.py --seeds 40 --first-seed 20 --sweep 0   # more worlds, no sweep
    python benchmarks/effects.py --replicate 7 --reps 20  # one world, 20 logs: spread vs se

Besides coverage it prints the mean and spread of ``z = (estimate - truth) / se`` over the worlds
(spread 1 when the intervals are calibrated).

For each seed a world is made with its own page-effect strength (``crowding``, uniform in
[0.2, 1.0]) and change effects (``change_noticed`` in [-0.6, 0], ``change_unnoticed`` in
[0, 0.3]); two weeks of uniform exploration are logged with exact propensities, written to
Parquet, read back and passed to :func:`~slate.replay.effects.estimate_effects` with the world's
embeddings. The logging policy's seed differs from the schedule's (whose seed also drives the
outcome uniforms), so the logged images are independent of the outcome draws. The truths:

* strength: the configured ``crowding`` (the layout weights of the estimate are the world's);
* change effect: ``log(sum P_on / sum P_off)`` over the explored changed rows of titles the
  member has not taken earlier in the log (the rows the estimate uses), ``P_on`` and
  ``P_off`` the exact take probabilities of the logged pages with and without the session shift
  (each row with its own latent ``noticed`` state) -- the average effect the log can show;
* truth-maximizing diversity weight: a small sweep of :class:`~slate.sim.PageOptimizerPolicy`
  (oracle scores, relative weights, churn 0) over ``--sweep`` weights in [0, 3] on three
  further days; its interval is the set of grid weights whose true take fraction is within one
  standard error of the best, extended half a grid step either side.

The recommended weight is the estimate's relative diversity weight ``2 * strength``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from slate.logs import read_impressions
from slate.page.embeddings import ImageEmbeddings
from slate.replay.effects import Z95, EffectsOptions, PageEffects, _took_before, estimate_effects
from slate.sim import (
    PageOptimizerPolicy,
    UniformRandomLogging,
    make_schedule,
    make_world,
    oracle_scorer,
    policy_value,
    simulate,
)
from slate.sim.response import respond


@dataclass
class Row:
    seed: int
    crowding: float
    effects: PageEffects
    change_truth: float
    best_weight: float
    weight_low: float
    weight_high: float
    seconds: float

    @property
    def strength_covered(self) -> bool:
        return self.effects.strength.covers(self.crowding)

    @property
    def change_covered(self) -> bool:
        return self.effects.change.covers(self.change_truth)

    @property
    def weight_covered(self) -> bool:
        w = self.effects.diversity_relative.estimate
        return w is not None and self.weight_low <= w <= self.weight_high

    def z(self, which: str) -> float:
        """``(estimate - truth) / se`` of the strength or the change effect."""
        e = self.effects.strength if which == "strength" else self.effects.change
        truth = self.crowding if which == "strength" else self.change_truth
        return float("nan") if e.estimate is None or not e.se else (e.estimate - truth) / e.se


def change_truth(run, world, explored_rows: np.ndarray) -> float:
    """``log(sum P_on / sum P_off)`` over explored rows whose image changed."""
    cfg = world.config.response
    off = cfg.model_copy(update={"session_effects": False})
    on_sum = off_sum = 0.0
    for s, batch in run.batches():
        images = run.images[s].astype(np.int64)
        p_on = respond(batch, images, run.noticed_before[s], config=cfg).probability
        p_off = respond(batch, images, run.noticed_before[s], config=off).probability
        changed = (batch.previous >= 0) & (images != batch.previous)
        sel = changed & explored_rows[s]
        on_sum += float(p_on[sel].sum())
        off_sum += float(p_off[sel].sum())
    return float(np.log(on_sum / off_sum))


def sweep(world, n_weights: int, first_day: int, seed: int) -> tuple[float, float, float]:
    """Truth-maximizing relative diversity weight on a small grid, and its one-SE interval."""
    grid = np.linspace(0.0, 3.0, n_weights)
    schedule = make_schedule(world, n_days=3, first_day=first_day, seed=seed + 1000)
    values = [
        policy_value(schedule, PageOptimizerPolicy(oracle_scorer(), diversity=float(w), churn=0.0,
                                                   options={"compute_bound": False}), outcome_seed=seed)
        for w in grid
    ]  # fmt: skip
    take = np.array([v.take_fraction for v in values])
    best = int(np.argmax(take))
    near = np.flatnonzero(take >= take[best] - values[best].standard_error)
    step = grid[1] - grid[0] if len(grid) > 1 else 1.0
    return float(grid[best]), float(grid[near.min()] - step / 2), float(grid[near.max()] + step / 2)


def one_world(seed: int, n_weights: int, n_members: int, out: Path) -> Row:
    t0 = time.perf_counter()
    crowding, world = world_config(seed, n_members)
    run = simulate(make_schedule(world, n_days=14, seed=seed), UniformRandomLogging(seed=seed + 7919))
    path = out / f"log-{seed}.parquet"
    run.write(path, include_propensities=True)
    log, _ = read_impressions(path)
    pc = world.config.page
    options = EffectsOptions(neighbour=pc.neighbour, same_row=pc.same_row, vertical=pc.vertical)
    effects = estimate_effects(log, ImageEmbeddings(tuple(world.image_ids), world.embeddings), options)
    explored = (log.explored & ~_took_before(log)).reshape(run.images.shape)
    truth = change_truth(run, world, explored)
    best, lo, hi = sweep(world, n_weights, 14, seed) if n_weights > 0 else (np.nan, np.nan, np.nan)
    return Row(seed, crowding, effects, truth, best, lo, hi, time.perf_counter() - t0)


def world_config(seed: int, n_members: int):
    """The benchmark's world ``seed`` (its own crowding and change effects)."""
    rng = np.random.default_rng(10_000 + seed)
    crowding = float(rng.uniform(0.2, 1.0))
    response = {
        "crowding": crowding,
        "change_noticed": float(rng.uniform(-0.6, 0.0)),
        "change_unnoticed": float(rng.uniform(0.0, 0.3)),
    }
    return crowding, make_world(n_members=n_members, n_titles=120, n_days=17, seed=seed, response=response)


def replicate(seed: int, reps: int, n_members: int, out: Path) -> int:
    """One world, ``reps`` independent logs (schedule, outcome and logging seeds redrawn): the
    spread of the strength estimate against its mean reported standard error, and coverage;
    also with the takes redrawn independently from the exact take probabilities of the same
    pages (which leaves out the variation of the logged images, so it varies less)."""
    crowding, world = world_config(seed, n_members)
    pc = world.config.page
    options = EffectsOptions(neighbour=pc.neighbour, same_row=pc.same_row, vertical=pc.vertical)
    emb = ImageEmbeddings(tuple(world.image_ids), world.embeddings)
    est = np.zeros((reps, 2))
    se = np.zeros((reps, 2))
    print(f"world {seed}: crowding {crowding:.4f}; {reps} independent logs")
    for r in range(reps):
        run = simulate(make_schedule(world, n_days=14, seed=1000 * r + seed), UniformRandomLogging(seed=r + 7919))
        path = out / f"rep-{r}.parquet"
        run.write(path, include_propensities=True)
        log, _ = read_impressions(path)
        redrawn = np.random.default_rng(r).random(run.probability.size) < run.probability.reshape(-1)
        for k, lg in enumerate((log, replace(log, reward=redrawn))):
            s = estimate_effects(lg, emb, options).strength
            est[r, k], se[r, k] = s.estimate, s.se
        print(f"  log {r:>3}: strength {est[r, 0]:.4f} (se {se[r, 0]:.4f}); takes redrawn {est[r, 1]:.4f}", flush=True)
    for k, what in enumerate(("simulated takes", "takes redrawn on the same pages")):
        z = (est[:, k] - crowding) / se[:, k]
        print(f"{what}: mean {est[:, k].mean():.4f} (truth {crowding:.4f}), sd {est[:, k].std(ddof=1):.4f}, "
              f"mean se {se[:, k].mean():.4f}, sd / se {est[:, k].std(ddof=1) / se[:, k].mean():.2f}, "
              f"covered {int((np.abs(z) <= Z95).sum())}/{reps}")
    return 0


def _fmt(e) -> str:
    if e.estimate is None:
        return "n/a".rjust(24)
    return f"{e.estimate:+.3f} [{e.low:+.3f},{e.high:+.3f}]".rjust(24)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--sweep", type=int, default=5, help="diversity weights in the truth sweep (0: no sweep)")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1")
    parser.add_argument("--members", type=int, default=600)
    parser.add_argument("--replicate", type=int, default=None, metavar="WORLD",
                        help="instead: one world, --reps independent logs (spread vs reported se)")
    parser.add_argument("--reps", type=int, default=20)
    args = parser.parse_args(argv)
    if args.replicate is not None:
        with tempfile.TemporaryDirectory() as tmp:
            return replicate(args.replicate, args.reps, args.members, Path(tmp))
    rows = []
    print(f"{'seed':>4} {'crowding':>8} {'strength estimate [95%]':>24} {'cov':>4} "
          f"{'change':>7} {'change estimate [95%]':>24} {'cov':>4} "
          f"{'rec. div':>8} {'truth-max [interval]':>22} {'cov':>4} {'s':>5}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            r = one_world(seed, args.sweep, args.members, Path(tmp))
            rows.append(r)
            rec = r.effects.diversity_relative.estimate
            print(f"{r.seed:>4} {r.crowding:>8.3f} {_fmt(r.effects.strength)} {'yes' if r.strength_covered else 'NO':>4} "
                  f"{r.change_truth:>+7.3f} {_fmt(r.effects.change)} {'yes' if r.change_covered else 'NO':>4} "
                  f"{(rec if rec is not None else float('nan')):>8.3f} "
                  f"{r.best_weight:>5.2f} [{r.weight_low:.2f},{r.weight_high:.2f}]".ljust(8)
                  + f" {('yes' if r.weight_covered else 'NO') if args.sweep > 0 else '-':>4} {r.seconds:>5.0f}",
                  flush=True)  # fmt: skip
    n = len(rows)
    s_cov = sum(r.strength_covered for r in rows)
    c_cov = sum(r.change_covered for r in rows)
    w_cov = sum(r.weight_covered for r in rows)
    need = int(np.ceil(0.9 * n))
    print()
    print(f"strength covered {s_cov}/{n} (bar >= {need}): {'PASS' if s_cov >= need else 'FAIL'}")
    print(f"change effect covered {c_cov}/{n} (bar >= {need}): {'PASS' if c_cov >= need else 'FAIL'}")
    for which in ("strength", "change"):
        z = np.array([r.z(which) for r in rows])
        z = z[np.isfinite(z)]
        if len(z) > 1:
            print(f"{which}: z = (estimate - truth) / se over {len(z)} worlds: mean {z.mean():+.2f}, "
                  f"sd {z.std(ddof=1):.2f} (1 when the intervals are calibrated)")
    if args.sweep > 0:
        print(f"recommended diversity weight inside the truth-maximizing interval {w_cov}/{n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
