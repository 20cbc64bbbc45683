"""A 50-point weight sweep on a 200k-impression log of 40-title pages (issue 7's bar).

Builds the data with the simulator (a uniformly explored log: 5,000 pages of a 5x8 grid with 3-10
images per title, plus a week of training log for the take-rate bandit and the images'
embeddings), writes an experiment file, and runs ``slate.tune.run_sweep`` on a local dask
cluster of 2 worker processes: 10 diversity weights x 5 churn weights, every page re-optimised
at every point (250,000 page solves), SNIPS with 1,000 bootstrap replicates, churn <= 10%.

Prints the wall time of each stage, the time per page solve, the table, the front and the
recommended setting. With ``--rerun`` the same experiment runs again into a fresh folder and the
two tables are compared; with ``--resume`` a third run is interrupted (SIGINT) after
``--interrupt-after`` seconds and resumed, and its table compared with the first.

With ``--sim`` it also runs a sweep on the simulator (oracle scores, uniform exploration log,
5 x 5 weights, every point also simulated on-policy, the row-neighbourhood estimator because the
world has page effects) and checks the recommended setting against the simulator's truth: its
true take fraction inside its replay interval, its true churn within the constraint. It also
re-estimates every point's stored decisions with per-title SNIPS and prints how many intervals
of each estimator cover the deployed truth and replay's logged-page estimand.

With ``--fronts`` it runs the 50-point sweep only and prints how many points the plain Pareto
front and the paired front (a point dominated only when clearly, on paired bootstrap
differences) mark, with and without the churn constraint, checks the paired front by brute force,
and prints how many points are indistinguishable from the recommended one.

With ``--paired N`` it runs the simulator sweep on ``N`` seeded worlds (solves and on-policy
truths kept in a content-keyed cache, so a rerun after an estimator change only re-estimates)
and prints, per world and averaged: coverage of the paired intervals (against the logging
policy and against the best point) of the deployed truth's difference, their widths and ratios
to the marginal width, what limits the ratio (replicate correlation with the best point, share
of rows whose neighbourhood agrees with it), the deployed regret of each recommendation rule,
and the regret that the estimates' noise alone would cost with 1, 4, 16 and 64 times the pages.

Usage::

    python benchmarks/sweep.py [--out DIR] [--workers 2] [--rerun] [--resume] [--pages 5000] [--sim] [--fronts]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

N_PAGES = 5000


def build_data(folder: Path, n_pages: int) -> None:
    """Training log (7 days), evaluated log (``n_pages`` pages) and embeddings, from the simulator."""
    from slate.logs import write_impressions
    from slate.sim import UniformRandomLogging, make_schedule, make_world, simulate
    from slate.tune.data import write_embeddings

    folder.mkdir(parents=True, exist_ok=True)
    if (folder / "evaluated.parquet").exists():
        return
    world = make_world(n_members=800, n_titles=300, min_images=3, max_images=10, seed=0)
    logging = UniformRandomLogging(seed=0)
    train = simulate(make_schedule(world, n_days=7, seed=1), logging)
    write_impressions(folder / "train.parquet", train.to_table())
    days = 7
    while True:
        sched = make_schedule(world, n_days=days, first_day=7, seed=1)
        if sched.titles.shape[0] >= n_pages:
            break
        days += 2
    run = simulate(sched, logging, state=train.final_state)
    write_impressions(folder / "evaluated.parquet", run.to_table(pages=slice(0, n_pages)))
    write_embeddings(folder / "images.parquet", world.image_ids, world.embeddings,
                     styles=np.asarray(world.aesthetics)[world.image_aesthetic])


EXPERIMENT = """\
name = "bench-50"
seed = 0

[data]
kind = "log"
path = "data/evaluated.parquet"
embeddings = "data/images.parquet"

[policy]
kind = "bandit"
name = "take_rate"
train_path = "data/train.parquet"

[estimator]
name = "snips"
n_bootstrap = 1000

[search]
kind = "grid"
diversity = {{ min = 0.0, max = 1.8, n = 10 }}
churn = [0.0, 0.05, 0.1, 0.2, 0.4]

[constraints]
max_churn = 0.10

[compute]
scheduler = "local"
n_workers = {workers}
block_pages = 125
progress = false
"""


SIM_EXPERIMENT = """\
name = "bench-sim"
seed = 0

[data]
kind = "sim"
n_days = 10
schedule_seed = {schedule_seed}
logging = "uniform"
truth = "all"

[data.world]
n_members = 600
n_titles = 300
min_images = 3
max_images = 10
seed = {world_seed}

[policy]
kind = "oracle"

[estimator]
{estimator}
n_bootstrap = 1000

[search]
diversity = [0.0, 0.25, 0.5, 1.0, 2.0]
churn = [0.0, 0.05, 0.1, 0.2, 0.4]

[constraints]
max_churn = 0.10

[compute]
scheduler = "local"
n_workers = {workers}
block_pages = 100
progress = false
solve_cache = "cache"      # solves and on-policy truths keyed by content: shared by estimator changes
"""


ESTIMATORS = {
    # page effects are on: weight each title by its row neighbours' ratios too
    "neighbourhood": 'name = "neighbourhood"\noptions = { neighbours = "row", self_normalized = true }',
    # per-title SNIPS with the page effect moved by a crowding model fitted on the log
    "snips-crowding": 'name = "snips-crowding"',
}
"""The simulator sweep's estimator (``--estimator``)."""


def sim_experiment(workers: int, world_seed: int, schedule_seed: int, estimator: str = "neighbourhood") -> str:
    """The simulator sweep's experiment file."""
    return SIM_EXPERIMENT.format(workers=workers, world_seed=world_seed, schedule_seed=schedule_seed,
                                 estimator=ESTIMATORS[estimator])


def run_sim(root: Path, workers: int, estimator: str = "neighbourhood") -> None:
    from slate.tune import load_experiment, run_sweep

    exp_path = root / "sim-experiment.toml"
    exp_path.write_text(sim_experiment(workers, 0, 1, estimator))
    experiment, base = load_experiment(exp_path)
    t0 = time.perf_counter()
    res = run_sweep(experiment, root / f"sim-{experiment.config_hash()}", base_dir=base,
                    log=lambda m: print("  " + m))
    s = res.summary
    print(f"\nsimulator sweep: {res.n_points} points on {s['n_pages']} pages in {time.perf_counter() - t0:.1f} s "
          f"(truth {s['timing']['seconds_truth']:.1f} s)")
    cols = ["point", "w_diversity", "w_churn", "take_fraction", "take_fraction_low", "take_fraction_high",
            "true_take_fraction_logged", "true_take_fraction", "diversity", "true_diversity", "churn", "true_churn"]
    print(" ".join(f"{c[:12]:>12}" for c in cols))
    for row in res.rows():
        print(" ".join(f"{row[c]:>12.4f}" if isinstance(row[c], float) else f"{row[c]!s:>12}" for c in cols))
    # the same decisions, estimated per title (SNIPS), from the stored work files
    from slate.replay import evaluate
    from slate.tune.data import prepare
    from slate.tune.sweep import target_distribution

    prep = prepare(experiment, base)
    keys = list(dict.fromkeys(p.solve_key for p in experiment.points()))
    choices = np.full((prep.log.n_rows, len(keys)), -1, dtype=np.int64)
    for f in sorted(_solve_folder(res).glob("solve-*.npz")):
        with np.load(f) as z:
            choices[z["rows"]] = z["choices"]
    snips = []
    for p in experiment.points():
        target = target_distribution(prep.log, choices[:, keys.index(p.solve_key)], p.exploration, "point")
        snips.append(evaluate(prep.log, target, "snips", n_bootstrap=1000, seed=experiment.seed,
                              metrics=False).estimate.interval)
    intervals = {
        {"neighbourhood": "neighbourhood (row, self-normalized)"}.get(estimator, estimator):
            (res.column("take_fraction_low"), res.column("take_fraction_high")),
        "snips (per title)": (np.array([i[0] for i in snips]), np.array([i[1] for i in snips])),
    }
    print(f"{'estimator':<40}{'mean width':>11}{'covers deployed truth':>23}{'covers logged-page truth':>26}")
    for name, (lo, hi) in intervals.items():
        cover = [int(((lo <= res.column(t)) & (res.column(t) <= hi)).sum()) for t in
                 ("true_take_fraction", "true_take_fraction_logged")]
        print(f"{name:<40}{float(np.mean(hi - lo)):>11.4f}{f'{cover[0]} of {res.n_points}':>23}"
              f"{f'{cover[1]} of {res.n_points}':>26}")
    rec = s["recommended"]
    if rec is None:
        print("no recommendation:", s["recommendation"])
        return
    inside = rec["take_fraction_low"] <= rec["true_take_fraction"] <= rec["take_fraction_high"]
    inside_logged = rec["take_fraction_low"] <= rec["true_take_fraction_logged"] <= rec["take_fraction_high"]
    print(f"recommended point {rec['point']} (diversity w {rec['w_diversity']}, churn w {rec['w_churn']}): "
          f"replay {rec['take_fraction']:.4f} [{rec['take_fraction_low']:.4f}, {rec['take_fraction_high']:.4f}]")
    print(f"  true take fraction deployed {rec['true_take_fraction']:.4f} (inside the interval: {inside}); "
          f"on the logged pages {rec['true_take_fraction_logged']:.4f} (inside: {inside_logged})")
    print(f"  churn: replay {rec['churn']:.4f}, true {rec['true_churn']:.4f} "
          f"(constraint <= 0.10 met: {rec['true_churn'] <= 0.10})")


def _solve_folder(res) -> Path:
    """Where the sweep's solve blocks are (its work folder, or the shared solve cache)."""
    return Path(res.summary.get("timing", {}).get("solve_folder", res.path / "work"))


def paired_world(root: Path, workers: int, world: int, estimator: str = "neighbourhood") -> dict[str, float]:
    """One seeded simulated world: coverage and width of the paired intervals against the
    deployed truth, and the regret of the recommendation under each rule."""
    from slate.tune import load_experiment, run_sweep

    exp_path = root / f"sim-world-{world}-{estimator}.toml"
    exp_path.write_text(sim_experiment(workers, world, world + 1, estimator)
                        .replace('name = "bench-sim"', f'name = "bench-sim-w{world}"'))
    experiment, base = load_experiment(exp_path)
    res = run_sweep(experiment, root / f"sim-w{world}-{experiment.config_hash()}", base_dir=base, plots=False)
    truth = res.column("true_take_fraction")
    logged_truth = float(res.summary["logged"]["true_take_fraction"])
    lo, hi = res.column("take_fraction_low"), res.column("take_fraction_high")
    best = int(np.flatnonzero(res.column("diff_best") == 0)[0])
    d_log = truth - logged_truth
    d_best = truth - truth[best]
    others = np.arange(res.n_points) != best
    cov_log = (res.column("diff_logged_low") <= d_log) & (d_log <= res.column("diff_logged_high"))
    cov_best = (res.column("diff_best_low") <= d_best) & (d_best <= res.column("diff_best_high"))
    w_marg = hi - lo
    feasible = res.column("churn") <= 0.10
    top = float(truth[feasible].max())
    out = {
        "world": world,
        "cover_logged": float(cov_log.mean()), "cover_best": float(cov_best[others].mean()),
        "width_marginal": float(w_marg.mean()),
        "width_logged": float((res.column("diff_logged_high") - res.column("diff_logged_low")).mean()),
        "width_best": float((res.column("diff_best_high") - res.column("diff_best_low"))[others].mean()),
        "ratio_logged": float((res.column("diff_logged_high") - res.column("diff_logged_low")).mean() / w_marg.mean()),
        "ratio_best": float((res.column("diff_best_high") - res.column("diff_best_low"))[others].mean()
                            / w_marg.mean()),
        "n_tied": int(res.column("tied_best").sum()),
        "n_front": int(res.column("pareto").sum()),
        "n_front_paired": int(res.column("front_paired").sum()) if "front_paired" in res.table.column_names else -1,
    }
    snips, log, decisions = _snips_paired(res, experiment, base, truth, logged_truth)
    out.update(snips)
    out.update(_why_paired(res, truth, best, feasible, log, decisions))
    from slate.tune.config import Constraints

    for rule in ("best_estimate", "lower_bound", "simplest"):
        rec = res.recommendation(Constraints(max_churn=0.10, allow_unproven=True), rule=rule)
        out[f"regret_{rule}"] = float("nan") if rec.index is None else 1.0 - float(truth[rec.index]) / top
    return out


def _why_paired(res, truth, best: int, feasible, log, decisions) -> dict[str, float]:
    """What limits the paired widths and the regret on this world.

    * ``corr_best``: mean correlation of a point's replicates with the best point's; the paired
      width is about ``sqrt(2 (1 - corr))`` times the marginal one (``implied_ratio``), so 1/3
      needs a correlation of 0.944 or more (``n_corr_ge_0944`` points have it).
    * ``agree_hood_best``: share of rows on which a point shows the same images as the best point
      on the title and both its row neighbours, the only rows that drop out of the difference
      exactly (for the row-neighbourhood estimator).
    * ``cover_best_raw``: coverage of the unshifted percentile intervals against the best point
      (before the correction for the optimism of choosing it).
    * ``regret_noise_xK``: mean regret of the argmax of "deployed truth + the bootstrap noise of
      the estimates with K times the pages" over the replicates: what the noise alone costs.
    """
    from slate.replay.estimators import NEIGHBOURHOODS, neighbour_rows
    from slate.tune import load_replicates

    R = load_replicates(res.path)[0]
    others = np.arange(res.n_points) != best
    rho = np.corrcoef(R)[best][others]
    q = np.quantile(R - R[best], [0.025, 0.975], axis=1)
    d_best = truth - truth[best]
    top = float(truth[feasible].max())
    idx = np.flatnonzero(feasible)
    dev = R - R.mean(axis=1, keepdims=True)
    out = {
        "corr_best": float(rho.mean()),
        "implied_ratio": float(np.sqrt(2 * (1 - rho)).mean()),
        "n_corr_ge_0944": int((rho >= 0.944).sum()),
        "cover_best_raw": float(((q[0] <= d_best) & (d_best <= q[1]))[others].mean()),
    }
    winners = idx[np.argmax(R[idx], axis=0)]
    out["regret_prob_best"] = 1.0 - float(truth[np.bincount(winners, minlength=res.n_points).argmax()]) / top
    for k in (1, 4, 16, 64):
        picks = idx[np.argmax(truth[idx, None] + dev[idx] / np.sqrt(k), axis=0)]
        out[f"regret_noise_x{k}"] = float(np.mean(1.0 - truth[picks] / top))
    C = decisions
    nb = neighbour_rows(log, NEIGHBOURHOODS["row"])
    Cx = np.vstack([C, np.full((1, C.shape[1]), -2)])  # a missing neighbour agrees
    same = (C == C[:, [best]]) & np.all(np.where(nb[:, :, None] >= 0, Cx[nb] == Cx[nb][:, :, [best]], True), axis=1)
    out["agree_hood_best"] = float(same.mean(axis=0)[others].mean())
    return out


def _snips_paired(res, experiment, base, truth, logged_truth):
    """The same points' stored decisions re-estimated with per-title SNIPS, paired the same way;
    also the evaluated log and every point's decisions (rows x points)."""
    from slate.replay import ReplayData, get_estimator
    from slate.tune.data import prepare
    from slate.tune.paired import logging_replicates, paired_comparison
    from slate.tune.sweep import target_distribution

    prep = prepare(experiment, base)
    keys = list(dict.fromkeys(p.solve_key for p in experiment.points()))
    choices = np.full((prep.log.n_rows, len(keys)), -1, dtype=np.int64)
    for f in sorted(_solve_folder(res).glob("solve-*.npz")):
        with np.load(f) as z:
            choices[z["rows"]] = z["choices"]
    values, reps = [], []
    for p in experiment.points():
        target = target_distribution(prep.log, choices[:, keys.index(p.solve_key)], p.exploration, "point")
        est, r = get_estimator("snips").estimate_with_replicates(
            ReplayData.build(prep.log, target), n_bootstrap=1000, seed=experiment.seed)
        values.append(est.value)
        reps.append(r)
    v, R = np.asarray(values), np.asarray(reps)
    lv, lr = logging_replicates(prep.log, 1000, experiment.seed)
    pc = paired_comparison(v, R, lv, lr)
    c = pc.columns
    best = int(pc.best)
    others = np.arange(len(v)) != best
    d_log, d_best = truth - logged_truth, truth - truth[best]
    marg = np.quantile(R, [0.025, 0.975], axis=1)
    decisions = np.stack([choices[:, keys.index(p.solve_key)] for p in experiment.points()], axis=1)
    return {
        "snips_cover_logged": float(((c["diff_logged_low"] <= d_log) & (d_log <= c["diff_logged_high"])).mean()),
        "snips_cover_best": float(((c["diff_best_low"] <= d_best) & (d_best <= c["diff_best_high"]))[others].mean()),
        "snips_width_marginal": float(np.mean(marg[1] - marg[0])),
        "snips_width_logged": float(np.mean(c["diff_logged_high"] - c["diff_logged_low"])),
        "snips_width_best": float(np.mean((c["diff_best_high"] - c["diff_best_low"])[others])),
        "snips_regret_best_estimate": 1.0 - float(truth[best]) / float(truth.max()),
    }, prep.log, decisions


def adaptive_world(root: Path, workers: int, world: int, n_trials: int, estimator: str = "neighbourhood") -> dict[str, float]:
    """Optuna search of ``n_trials`` settings on one world (its grid sweep must have run): page
    solves and the deployed regret of its recommendation against the grid's best feasible point."""
    from slate.tune import load_experiment, load_results
    from slate.tune.adaptive import adaptive_search
    from slate.tune.data import prepare
    from slate.tune.simpolicy import true_value
    from slate.tune.sweep import _solver_config

    experiment, base = load_experiment(root / f"sim-world-{world}-{estimator}.toml")
    grid = load_results(root / f"sim-w{world}-{experiment.config_hash()}")
    res = adaptive_search(experiment, root / f"adaptive-w{world}-{estimator}-{n_trials}", n_trials, base_dir=base)
    truth = grid.column("true_take_fraction")
    top = float(truth[grid.column("churn") <= 0.10].max())
    from slate.tune import recommend
    from slate.tune.config import Constraints

    # as for the grid's regret: exploded weights (every point, with this estimator) allowed
    names = ("take_fraction", "diversity", "churn", "w_diversity", "w_churn")
    rec = recommend({k: [t[k] for t in res.trials] for k in names},
                    Constraints(max_churn=0.10, allow_unproven=True), replicates=res.replicates)
    out: dict[str, float] = {"world": world, "trials": n_trials, "page_solves": res.n_page_solves,
                             "grid_page_solves": int(grid.summary["timing"]["n_solves"])}
    if rec.index is None:
        return {**out, "regret": float("nan")}
    row = res.trials[rec.index]
    prep = prepare(experiment, base)
    assert prep.sim is not None
    value = true_value(prep.sim, (row["w_diversity"], row["w_churn"], None), 0.0, _solver_config(experiment, prep))
    return {**out, "w_diversity": row["w_diversity"], "w_churn": row["w_churn"],
            "true_take_fraction": value["true_take_fraction"], "true_churn": value["true_churn"],
            "regret": 1.0 - value["true_take_fraction"] / top}


def run_paired(root: Path, workers: int, n_worlds: int, estimator: str = "neighbourhood") -> None:
    """``--paired N``: the paired-interval bars over ``N`` seeded worlds."""
    rows = []
    for world in range(n_worlds):
        t0 = time.perf_counter()
        rows.append(paired_world(root, workers, world, estimator))
        print(json.dumps(rows[-1]), f"({time.perf_counter() - t0:.0f} s)", flush=True)
    keys = [k for k in rows[0] if k != "world"]
    print(f"mean over {n_worlds} worlds:", json.dumps({k: round(float(np.mean([r[k] for r in rows])), 4) for k in keys}))


def run_fronts(root: Path, workers: int) -> None:
    """The 50-point sweep, then its fronts: how many points the plain front and the paired front
    (dominated only when clearly, on paired bootstrap differences) mark, with and without the
    churn constraint, and how many points are indistinguishable from the recommended one."""
    from slate.tune import Constraints, front, load_experiment, load_replicates, run_sweep

    exp_path = root / "experiment.toml"
    exp_path.write_text(EXPERIMENT.format(workers=workers))
    experiment, base = load_experiment(exp_path)
    out = root / "fronts"
    if out.exists():
        import shutil

        shutil.rmtree(out)
    t0 = time.perf_counter()
    res = run_sweep(experiment, out, base_dir=base, plots=False)
    print(f"sweep: {res.n_points} points in {time.perf_counter() - t0:.0f} s")
    reps, _ = load_replicates(out)
    take, div, churn = (res.column(k) for k in ("take_fraction", "diversity", "churn"))
    cons = experiment.constraints
    for label, c in (("no constraints", None), (f"churn <= {cons.max_churn:g}", cons)):
        plain = res.front(c, paired=False)
        paired = res.front(c)
        print(f"{label}: plain front {len(plain)} points, paired front {len(paired)} points "
              f"(plain inside paired: {set(plain.tolist()) <= set(paired.tolist())})")
    # the bar: no marked point is clearly dominated, every unmarked feasible one is
    mask = front(take, div, churn, replicates=reps, constraints=cons)
    ok = churn <= cons.max_churn
    wrong = 0
    for i in range(res.n_points):
        beaten = False
        for j in np.flatnonzero(ok):
            if j == i or not (take[j] >= take[i] and div[j] >= div[i] and churn[j] <= churn[i]):
                continue
            clear = np.quantile(reps[j] - reps[i], 0.025) > 0 or div[j] > div[i] or churn[j] < churn[i]
            beaten |= bool(clear)
        wrong += int(mask[i] != (ok[i] and not beaten))
    print(f"brute-force check of the paired front under the constraint: {wrong} points marked wrongly")
    for label, c in (("experiment's constraints", cons),
                     ("same, allow_unproven", Constraints(max_churn=cons.max_churn, allow_unproven=True))):
        rec = res.recommendation(c)
        if rec.index is None:
            print(f"{label}: no recommendation ({rec.reason})")
            continue
        pts = [int(res.column("point")[j]) for j in rec.indistinguishable]
        print(f"{label}: recommended point {int(res.column('point')[rec.index])} "
              f"(take {take[rec.index]:.4f}, churn {churn[rec.index]:.3f}, prob_best {rec.prob_best:.3f}); "
              f"{len(pts)} of the other {rec.n_feasible - 1} eligible points are indistinguishable from it: {pts}")


def _same(a: Path, b: Path) -> bool:
    """The two results tables hold exactly the same values (NaN equal to NaN)."""
    x, y = pq.read_table(a / "results.parquet"), pq.read_table(b / "results.parquet")
    if x.column_names != y.column_names:
        return False
    for name in x.column_names:
        u, v = x.column(name).to_pylist(), y.column(name).to_pylist()
        if u == v:
            continue
        if not all(isinstance(p, float) for p in u + v):
            return False
        if not np.array_equal(np.array(u, float), np.array(v, float), equal_nan=True):
            return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench-sweep", help="working folder")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pages", type=int, default=N_PAGES)
    parser.add_argument("--rerun", action="store_true", help="run again and compare the tables")
    parser.add_argument("--resume", action="store_true", help="interrupt a run, resume it, compare")
    parser.add_argument("--interrupt-after", type=float, default=60.0)
    parser.add_argument("--sim", action="store_true", help="also run the simulator check")
    parser.add_argument("--sim-only", action="store_true", help="only run the simulator check")
    parser.add_argument("--paired", type=int, default=0, metavar="N",
                        help="only measure the paired intervals and recommendation regret on N seeded worlds")
    parser.add_argument("--adaptive", type=int, default=0, metavar="N",
                        help="only run the Optuna search on the first N worlds of --paired (run that first)")
    parser.add_argument("--fronts", action="store_true",
                        help="run the 50-point sweep and count the plain and paired fronts and the "
                        "points indistinguishable from the recommended one")
    parser.add_argument("--trials", type=int, default=8, help="trials of the adaptive search")
    parser.add_argument("--estimator", choices=sorted(ESTIMATORS), default="neighbourhood",
                        help="the simulator sweeps' estimator (--sim, --paired)")
    args = parser.parse_args()

    from slate.solvers.fast import warm_up
    from slate.tune import load_experiment, run_sweep

    root = Path(args.out).resolve()
    t0 = time.perf_counter()
    build_data(root / "data", args.pages)
    print(f"data ready in {time.perf_counter() - t0:.1f} s ({root / 'data'})")
    print(f"numba warm-up (compiles or loads the solver kernels once per machine): {warm_up():.1f} s")
    if args.adaptive:
        for world in range(args.adaptive):
            t0 = time.perf_counter()
            print(json.dumps(adaptive_world(root, args.workers, world, args.trials, args.estimator)),
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
        return
    if args.paired:
        run_paired(root, args.workers, args.paired, args.estimator)
        return
    if args.fronts:
        run_fronts(root, args.workers)
        return
    if args.sim_only:
        run_sim(root, args.workers, args.estimator)
        return
    exp_path = root / "experiment.toml"
    exp_path.write_text(EXPERIMENT.format(workers=args.workers))
    experiment, base = load_experiment(exp_path)

    first = root / "run-1"
    if first.exists():
        import shutil

        shutil.rmtree(first)
    t0 = time.perf_counter()
    res = run_sweep(experiment, first, base_dir=base, log=lambda m: print("  " + m))
    wall = time.perf_counter() - t0
    s = res.summary
    t = s["timing"]
    print()
    print(f"{res.n_points} points on {s['n_pages']} pages ({s['n_rows']} impressions), "
          f"{t['n_solves']} page solves, {args.workers} workers")
    print(f"{'stage':<28}{'seconds':>10}")
    for key in ("seconds_prepare", "seconds_solve", "seconds_truth", "seconds_evaluate", "seconds_total"):
        print(f"{key.removeprefix('seconds_'):<28}{t[key]:>10.1f}")
    print(f"{'wall (incl. plots)':<28}{wall:>10.1f}")
    print(f"time per page solve: {t['ms_per_solve']:.3f} ms (inside solver.solve, per worker); "
          f"building a page's weight-free problem once: {t['ms_per_page_build']:.3f} ms")
    print(f"throughput: {t['n_solves'] / t['seconds_solve']:.0f} page solves/s over {args.workers} workers")
    print()
    cols = ["point", "w_diversity", "w_churn", "take_fraction", "take_fraction_low", "take_fraction_high",
            "diversity", "churn", "pareto", "near_front"]
    print(" ".join(f"{c:>12}" for c in cols))
    for row in res.rows():
        print(" ".join(f"{row[c]:>12.4f}" if isinstance(row[c], float) else f"{row[c]!s:>12}" for c in cols))
    print()
    print("front:", ", ".join(str(i) for i in res.front()))
    print("recommended (churn <= 0.10):", json.dumps({k: s["recommended"][k] for k in cols}))
    print("logged policy:", json.dumps(s["logged"]))
    print("plots:", ", ".join(s["plots"]))

    if args.rerun:
        second = root / "run-2"
        if second.exists():
            import shutil

            shutil.rmtree(second)
        t0 = time.perf_counter()
        run_sweep(experiment, second, base_dir=base)
        print(f"\nrerun in {time.perf_counter() - t0:.1f} s: identical table: {_same(first, second)}")

    if args.resume:
        third = root / "run-3"
        if third.exists():
            import shutil

            shutil.rmtree(third)
        code = (
            "import sys; from slate.tune import load_experiment, run_sweep;"
            f"e, b = load_experiment({str(exp_path)!r}); run_sweep(e, {str(third)!r}, base_dir=b)"
        )
        proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
        time.sleep(args.interrupt_after)
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait()
        done = len(list((third / "work").glob("solve-*.npz")))
        print(f"\ninterrupted after {args.interrupt_after:.0f} s with {done} solve blocks stored")
        t0 = time.perf_counter()
        run_sweep(experiment, third, base_dir=base)
        print(f"resumed in {time.perf_counter() - t0:.1f} s: identical table: {_same(first, third)}")

    if args.sim:
        run_sim(root, args.workers, args.estimator)


if __name__ == "__main__":
    main()
