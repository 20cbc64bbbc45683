"""Replay on compose() decision logs vs the simulator's truth: bias, SD and interval coverage.

Each repetition (seeded by its index) builds a small slate.sim world, serves every page of a
schedule through :class:`slate.serve.Composer` (noisy-model scores, stability rules on: churn
penalty, dwell, hysteresis; :class:`~slate.serve.StickyEpsilon` exploration with a per-page cap,
draws held for some sessions), draws outcomes from the simulator's response model, writes
the Parquet decision log with :class:`~slate.serve.DecisionLogger`, and replays a *target*
policy (the argmax of the true page-blind take probabilities, unlike the noisy logging model;
tilted toward one look in the page-effects scenarios)
with :func:`slate.replay.evaluate` on that log. The truth is the simulator's exact expected take
fraction of the target on the same logged pages and contexts.

Scenarios (worlds of 30 titles with 2-3 images on 2 x 4 pages; ``StickyEpsilon(0.5,
max_explored=3)``; dwell 4 sessions, hysteresis 0.005, churn penalty):

* ``per-title`` -- page, session and familiarity effects off (a title's reward depends on its
  own image and the context only), draws held 2 sessions. Target decided on the randomized rows
  (logged propensity below 1); truth: the mean P(quality play) of the target's image on those
  rows. Estimators ``ips``, ``snips``, ``replay``, with intervals from ``evaluate()`` (pages as
  clusters: a normal interval, and a percentile bootstrap over pages) and from
  ``evaluate(..., cluster="member")`` with members as clusters. Deliberately wrong
  propensities show whether the check can fail: every row weighted 1 (``propensity ignored``),
  the epsilon-greedy propensity that ignores the cap and the rules (``epsilon/K``), and held
  sticky draws logged as deterministic (``held draws as propensity 1``). The last line compares
  the spread of the IPS error over repetitions with its standard error computed from the true
  residuals, clustered by page and by member.
* ``per-title-sticky-8`` -- the same with draws held 8 sessions (the whole run).
* ``session-effects`` -- as ``per-title`` with session and familiarity effects on: a held
  draw's later sessions see a member state shaped by the draw itself.
* ``page-effects`` / ``page-effects-nocap`` -- page effects on (crowding 1.0 between row
  neighbours; the far-in-row and vertical weights are 0, so the row neighbourhood is exact). The
  target is tilted toward one look (similar images side by side); it shows its image on
  randomized rows and the held image elsewhere, on every row; truth: its *whole page* (its own
  neighbours), and, for reference, the per-title truth (logged neighbours). Per-title
  ``ips``/``snips`` vs the ``neighbourhood`` estimator (row), with the cap and without it
  (``epsilon=0.25``, ``max_explored=None``: titles explored independently).

Usage::

    python benchmarks/serve_replay_coverage.py [--reps 300] [--scenario all] [--members 60]
        [--days 8] [--bootstrap 200]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from slate.logs import read_impressions
from slate.replay import LayoutNeighbourhood, evaluate
from slate.serve import ComposeConfig, StickyEpsilon
from slate.sim import ArgmaxPolicy, counterfactual_value, make_schedule, make_world, oracle_scorer
from slate.sim.serving import noisy_scorer, page_value, serve
from slate.stability import Reason, StabilityRules


@dataclass(frozen=True)
class Scenario:
    name: str
    page_effects: bool = False
    session_effects: bool = False
    epsilon: float = 0.5
    cap: int | None = 3
    sticky: int = 2
    whole_page: bool = False
    max_images: int = 3


SCENARIOS = {
    "per-title": Scenario("per-title"),
    "per-title-sticky-8": Scenario("per-title-sticky-8", sticky=8),
    "session-effects": Scenario("session-effects", session_effects=True),
    "page-effects": Scenario("page-effects", page_effects=True, whole_page=True),
    "page-effects-nocap": Scenario("page-effects-nocap", page_effects=True, whole_page=True, epsilon=0.25,
                                   cap=None),
}


def world_for(seed: int, scenario: Scenario, n_members: int) -> Any:
    return make_world(
        n_members=n_members, n_titles=30, include_example=False, min_images=2, max_images=scenario.max_images, seed=seed,
        page={"rows": 2, "cols": 4, "same_row": 0.0, "vertical": 0.0}, drift={"launch_share": 0.0},
        response={"page_effects": scenario.page_effects, "session_effects": scenario.session_effects,
                  "familiarity_effects": scenario.session_effects, "crowding": 1.0},
    )


def lookalike_scorer(world: Any, strength: float = 3.0) -> Any:
    """True page-blind P(quality play) tilted toward one look (the mean close-up embedding):
    a target that shows similar images side by side, which the page effect penalizes."""
    look = world.embeddings[world.image_aesthetic == 0].mean(axis=0)
    look = look / np.linalg.norm(look)
    truth = oracle_scorer()

    def score(batch: Any) -> np.ndarray:
        cos = batch.candidate_embeddings() @ look
        return np.asarray(truth(batch) * np.exp(strength * cos))

    return score


def unconstrained(table: pa.Table, epsilon: float) -> pa.Table:
    """The log with the epsilon-greedy propensity that ignores the cap and the stability rules."""
    p = table.column("propensity").to_numpy()
    k = np.asarray(pa.compute.list_value_length(table.column("candidate_ids")).to_numpy(), dtype=np.float64)
    greedy = p > 1.0 / k
    wrong = np.where(p < 1.0, np.where(greedy, 1.0 - epsilon + epsilon / k, epsilon / k), 1.0)
    return table.set_column(table.schema.get_field_index("propensity"), "propensity", pa.array(wrong))


def ignored(table: pa.Table, rows: np.ndarray | None = None) -> pa.Table:
    """The log with the propensity of ``rows`` (default: every row) set to 1."""
    p = table.column("propensity").to_numpy().copy()
    p[slice(None) if rows is None else rows] = 1.0
    return table.set_column(table.schema.get_field_index("propensity"), "propensity", pa.array(p))


def one_rep(seed: int, scenario: Scenario, n_members: int, n_days: int, n_bootstrap: int, folder: Path
            ) -> tuple[dict[str, tuple[float, float, float, float]], dict[str, float]]:
    """``{row label: (estimate, low, high, truth)}`` and counts for one repetition."""
    world = world_for(seed, scenario, n_members)
    schedule = make_schedule(world, n_days=n_days, seed=seed)
    config = ComposeConfig(
        solver="independent", diversity=0.0, solver_time_ms=1e4, solver_grace_ms=1e4, scoring_budget_ms=1e4,
        store_budget_ms=1e4, stability=StabilityRules(churn=0.002, dwell_sessions=4, min_gain=0.005),
    )
    explore = StickyEpsilon(scenario.epsilon, max_explored=scenario.cap, sticky_sessions=scenario.sticky,
                            sticky_days=None, seed=seed)
    served = serve(schedule, noisy_scorer(0.5, seed=seed + 1), folder / f"{scenario.name}-{seed}",
                   exploration=explore, config=config)
    run = served.run
    target = ArgmaxPolicy(oracle_scorer(), name="oracle argmax")
    log, report = read_impressions(served.log_path)
    assert report.n_rejected == 0 and log.n_rows == run.n_impressions
    out: dict[str, tuple[float, float, float, float]] = {}
    diag: dict[str, float] = {}
    randomized = served.randomized

    def record(label: str, source: Any, policy: Any, estimator: Any, truth: float, boot: bool = False) -> None:
        e = evaluate(source, policy, estimator, n_bootstrap=0, seed=seed, metrics=False).estimate
        out[f"{label} | page SE"] = (e.value, *e.interval, truth)
        if boot:
            b = evaluate(source, policy, estimator, n_bootstrap=n_bootstrap, seed=seed, metrics=False).estimate
            out[f"{label} | page bootstrap"] = (b.value, *b.interval, truth)
        c = evaluate(source, policy, estimator, n_bootstrap=0, seed=seed, metrics=False,
                     cluster="member").estimate
        out[f"{label} | member SE"] = (c.value, *c.interval, truth)

    if not scenario.whole_page:
        cf = counterfactual_value(run, target)
        truth = served.truth(cf.probability)
        table = served.target_table(cf.images)
        for name in ("ips", "snips", "replay"):
            record(name, log, table, name, truth, boot=n_bootstrap > 0)
        raw = pq.read_table(served.log_path)
        if scenario.name.startswith("per-title"):
            record("ips, propensity ignored", ignored(raw), table, "ips", truth)
            record("ips, epsilon/K propensity", unconstrained(raw, scenario.epsilon), table, "ips", truth)
            pages = raw.column("page_id").to_numpy()
            assert np.array_equal(pages, np.repeat(run.schedule.page_id, run.images.shape[1]))
            held = (served.reason == Reason.STICKY).ravel()
            record("ips, held draws as propensity 1", ignored(raw, held), table, "ips", truth)
        # the IPS error against the truth row by row, and its standard error with pages or members
        # as clusters (an oracle check of the clustering: it needs the true values)
        e = ((run.images == cf.images) * run.reward / served.propensity - cf.probability)[randomized]
        page_key = np.nonzero(randomized)[0]
        member_key = run.schedule.member[page_key]
        diag["err"] = float(e.mean())
        for key, keys in (("page", page_key), ("member", member_key)):
            sums = np.bincount(np.unique(keys, return_inverse=True)[1], e)
            c = len(sums)
            diag[f"se_{key}"] = float(np.sqrt(c / (c - 1) * (sums @ sums)) / len(e))
    else:
        cf = counterfactual_value(run, ArgmaxPolicy(lookalike_scorer(world), name="look-alike"))
        images = np.where(randomized, cf.images, run.images)

        truth_page = float(page_value(run, _Fixed(images)).mean())
        table = served.target_table(images, np.ones_like(randomized))
        truth_title = float(np.where(randomized, cf.probability, run.probability).mean())
        record("ips vs per-title truth (logged neighbours)", log, table, "ips", truth_title)
        record("ips", log, table, "ips", truth_page)
        record("snips", log, table, "snips", truth_page)
        record("neighbourhood (row)", log, table, LayoutNeighbourhood("row"), truth_page)
    counts = {"pages": run.n_pages, "rows": run.n_impressions, "randomized": float(randomized.mean()),
              "explored": float(served.explored.mean()), **diag}
    return out, counts


class _Fixed:
    """A simulator policy replaying fixed ``(S, P)`` images on the run's batches, in order."""

    def __init__(self, images: np.ndarray) -> None:
        self.images = images
        self.start = 0

    def __call__(self, batch: Any) -> np.ndarray:
        part = self.images[self.start : self.start + batch.n_pages]
        self.start += batch.n_pages
        return part


def summarize(rows: dict[str, list[tuple[float, float, float, float]]]) -> list[str]:
    head = (f"{'estimator | interval':<46}{'true':>8}{'mean est':>10}{'bias':>9}{'bias/SEm':>9}{'SD':>8}"
            f"{'coverage':>10}{'width':>8}")
    lines = [head, "-" * len(head)]
    for label, values in rows.items():
        a = np.array(values)
        est, lo, hi, truth = a.T
        err = est - truth
        n = len(a)
        cover = float(((lo <= truth) & (truth <= hi)).mean())
        lines.append(
            f"{label:<46}{truth.mean():>8.4f}{est.mean():>10.4f}{err.mean():>+9.4f}"
            f"{err.mean() / (err.std(ddof=1) / np.sqrt(n)):>+9.2f}{err.std(ddof=1):>8.4f}"
            f"{cover:>10.3f}{(hi - lo).mean():>8.4f}"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=300)
    parser.add_argument("--scenario", default="all", choices=["all", *SCENARIOS])
    parser.add_argument("--members", type=int, default=60)
    parser.add_argument("--days", type=int, default=8)
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--epsilon", type=float, help="override the scenarios' epsilon")
    parser.add_argument("--cap", type=int, help="override the scenarios' cap (0: none)")
    parser.add_argument("--max-images", type=int, help="override the scenarios' max images per title")
    parser.add_argument("--first-seed", type=int, default=0)
    args = parser.parse_args(argv)
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    for name in names:
        scenario = SCENARIOS[name]
        if args.epsilon is not None:
            scenario = replace(scenario, epsilon=args.epsilon)
        if args.cap is not None:
            scenario = replace(scenario, cap=args.cap or None)
        if args.max_images is not None:
            scenario = replace(scenario, max_images=args.max_images)
        rows: dict[str, list[tuple[float, float, float, float]]] = defaultdict(list)
        counts: dict[str, list[float]] = defaultdict(list)
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            for seed in range(args.first_seed, args.first_seed + args.reps):
                out, c = one_rep(seed, scenario, args.members, args.days, args.bootstrap, Path(tmp))
                for k, v in out.items():
                    rows[k].append(v)
                for k, v in c.items():
                    counts[k].append(v)
        seconds = time.perf_counter() - started
        print(f"\n== {name}: {args.reps} repetitions, {scenario}; {args.members} members, {args.days} days; "
              f"per repetition {np.mean(counts['pages']):.0f} pages, {np.mean(counts['rows']):.0f} rows, "
              f"{np.mean(counts['randomized']):.0%} randomized, {np.mean(counts['explored']):.1%} explored; "
              f"{seconds:.0f} s")
        print("\n".join(summarize(rows)))
        if "err" in counts:
            sd = np.std(counts["err"], ddof=1)
            rms = {k: float(np.sqrt(np.mean(np.square(counts[f"se_{k}"])))) for k in ("page", "member")}
            print(f"IPS error against the row-level truth: SD over repetitions {sd:.5f}; oracle standard error "
                  f"(residuals clustered by page) {rms['page']:.5f} = {rms['page'] / sd:.2f} x SD, "
                  f"(by member) {rms['member']:.5f} = {rms['member'] / sd:.2f} x SD")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
