"""Throughput and reward of the scoring policies on one synthetic stream, beside MABWiser and VW.

Run::

    python benchmarks/bandit_throughput.py                 # d=32, K=10, 100k rounds (a few minutes)
    python benchmarks/bandit_throughput.py --rounds 20000  # quicker

Everything runs with one BLAS thread (threadpoolctl) in one process, so the ratios between
libraries are measured under the same conditions; timings are medians of repeats. The stream is
:func:`slate.bandit.synthetic.make_linear_stream` (linear quality-play probability per image, one
member context of ``d`` features per round); rewards use common random numbers, so every policy
sees the same luck. MABWiser (``pip install mabwiser``) and Vowpal Wabbit
(``pip install vowpalwabbit``) are optional: when one is missing the script says so and runs the
rest.

Tables printed:

1. throughput per policy: batch scoring ((member, image) scores/s), batch fit (logged
   impressions/s), online update (one impression per call, /s), mini-batch update (100 per call),
   Monte Carlo propensities (rows/s);
2. average reward on the stream (cumulative over all rounds and over the last 10%) relative to
   the oracle that knows the probabilities;
3. cold start on a simulated title launch, with and without the image-feature prior;
4. the issue's bars, each marked PASS or FAIL.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from slate.bandit import (
    EpsilonGreedy,
    HybridLinUCB,
    ImageFeaturePrior,
    LinearThompson,
    LinUCB,
    LogisticThompson,
    TakeRateBandit,
    UniformRandom,
)
from slate.bandit.synthetic import LinearStream, make_linear_stream, make_title_launch, run_stream

try:
    from threadpoolctl import threadpool_info, threadpool_limits
except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn / mabwiser
    threadpool_limits = None
    threadpool_info = None

ALPHA = 0.3  # LinUCB width multiplier (ours and MABWiser's)
NOISE = 0.2  # linear Thompson posterior scale
EPSILON = 0.05  # epsilon-greedy and VW's exploration


def median_time(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def version(pkg: str) -> str:
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


# ---------------------------------------------------------------------------- our policies
def our_policies() -> dict[str, Callable[[], Any]]:
    return {
        "uniform": lambda: UniformRandom(seed=0),
        "take_rate": lambda: TakeRateBandit(seed=0),
        "epsilon_greedy": lambda: EpsilonGreedy(EPSILON, dtype="float32", seed=0),
        "linucb": lambda: LinUCB(ALPHA, dtype="float32", seed=0),
        "hybrid_linucb": lambda: HybridLinUCB(ALPHA, dtype="float32", seed=0),
        "linear_ts": lambda: LinearThompson(NOISE, dtype="float32", seed=0),
        "logistic_ts": lambda: LogisticThompson(dtype="float32", seed=0),
    }


@dataclass
class Row:
    name: str
    score: float | None = None  # (member, image) scores / s
    fit: float | None = None  # logged impressions / s
    online: float | None = None  # single-impression updates / s
    minibatch: float | None = None  # impressions / s in calls of 100
    propensity: float | None = None  # rows / s with propensities
    note: str = ""


def logged_data(stream: LinearStream, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A uniformly logged version of the stream (for the batch fits)."""
    rng = np.random.default_rng(seed + 1)
    choice = rng.integers(0, stream.n_images, stream.n_rounds)
    rows = slice(0, stream.n_rounds)
    return stream.chosen_x(rows, choice), stream.arms[choice], stream.rewards(rows, choice)


def measure_ours(stream: LinearStream, log: tuple, repeats: int, n_online: int) -> tuple[list[Row], dict[str, float]]:
    x_log, arms_log, r_log = log
    n = stream.n_rounds
    page32 = stream.page(slice(0, n), np.float32)
    page_prop = stream.page(slice(0, min(n, 1000)), np.float32)
    rows = []
    raw: dict[str, float] = {}
    m = min(n_online, n)
    xs, arms, rs = x_log[:m], arms_log[:m], r_log[:m]
    arm_list, r_list = [int(a) for a in arms], [float(r) for r in rs]

    def online(p: Any) -> None:  # one impression per call, as a serving loop would
        for i in range(m):
            p.update(xs[i], arm_list[i], r_list[i])

    def mini(p: Any) -> None:
        for s in range(0, m, 100):
            p.update(xs[s : s + 100], arms[s : s + 100], rs[s : s + 100])

    for name, make in our_policies().items():
        row = Row(name)
        policy = make()
        row.fit = n / median_time(lambda p=policy: p.fit(x_log, arms_log, r_log), max(1, repeats // 2))
        policy.fit(x_log, arms_log, r_log)
        t = median_time(lambda p=policy: p.score(page32, propensities=False), repeats)
        row.score = n * stream.n_images / t
        raw[name] = t
        t = median_time(lambda p=policy: p.score(page_prop, propensities=True), max(1, repeats // 2))
        row.propensity = page_prop.n_rows / t
        row.online = m / median_time(lambda p=policy: online(p), 3)
        row.minibatch = m / median_time(lambda p=policy: mini(p), 3)
        rows.append(row)
    return rows, raw


# ---------------------------------------------------------------------------- MABWiser
def measure_mabwiser(stream: LinearStream, log: tuple, repeats: int, ours_linucb: Any) -> tuple[Row | None, dict[str, float], str]:
    try:
        from mabwiser.mab import MAB, LearningPolicy
    except ImportError as exc:
        return None, {}, f"MABWiser not installed ({exc}); pip install mabwiser"
    x_log, arms_log, r_log = log
    n = stream.n_rounds
    arms = list(range(stream.n_images))
    mab = MAB(arms=arms, learning_policy=LearningPolicy.LinUCB(alpha=ALPHA, l2_lambda=1.0), seed=0)
    row = Row("MABWiser LinUCB")
    row.fit = n / median_time(lambda: mab.fit(arms_log, r_log, x_log), max(1, repeats // 2))
    mab.fit(arms_log, r_log, x_log)
    contexts = stream.x
    # interleave with ours so that both see the same machine load
    page32 = stream.page(slice(0, n), np.float32)
    t_mab, t_ours = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        mab.predict(contexts)
        t_mab.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ours_linucb.score(page32, propensities=False)
        t_ours.append(time.perf_counter() - t0)
    row.score = n * stream.n_images / statistics.median(t_mab)
    m = min(2000, n)

    def online() -> None:
        for i in range(m):
            mab.partial_fit([int(arms_log[i])], [float(r_log[i])], x_log[i : i + 1])

    row.online = m / median_time(online, 1)

    def mini() -> None:
        for s in range(0, m, 100):
            mab.partial_fit(arms_log[s : s + 100], r_log[s : s + 100], x_log[s : s + 100])

    row.minibatch = m / median_time(mini, 3)
    row.note = "float64 (its only mode)"
    return row, {"mab": statistics.median(t_mab), "ours": statistics.median(t_ours)}, ""


def run_mabwiser_stream(stream: LinearStream, batch: int) -> np.ndarray | None:
    try:
        from mabwiser.mab import MAB, LearningPolicy
    except ImportError:
        return None
    mab = MAB(arms=list(range(stream.n_images)), learning_policy=LearningPolicy.LinUCB(alpha=ALPHA, l2_lambda=1.0), seed=0)
    rng = np.random.default_rng(0)
    n = stream.n_rounds
    choice = np.zeros(n, np.int64)
    for s in range(0, n, batch):
        rows = slice(s, min(n, s + batch))
        ctx = stream.x[rows]
        c = rng.integers(0, stream.n_images, len(ctx)) if s == 0 else np.asarray(mab.predict(ctx), np.int64).reshape(-1)
        r = stream.rewards(rows, c)
        if s == 0:
            mab.fit(c, r, ctx)
        else:
            mab.partial_fit(c, r, ctx)
        choice[rows] = c
    return stream.probabilities[np.arange(n), choice]


# ---------------------------------------------------------------------------- Vowpal Wabbit
def vw_lines(context: np.ndarray, n_images: int, label: tuple[int, float, float] | None = None) -> list[str]:
    shared = "shared |U " + " ".join(f"{j}:{v:.6g}" for j, v in enumerate(context))
    lines = [shared]
    for k in range(n_images):
        if label is not None and label[0] == k:
            lines.append(f"0:{label[1]:.6g}:{label[2]:.6g} |A a{k}")
        else:
            lines.append(f"|A a{k}")
    return lines


VW_ARGS = f"--cb_explore_adf -q UA --epsilon {EPSILON} --quiet --random_seed 0"
# VW's default exploration (epsilon-greedy) and its strongest built-in one (SquareCB): the
# reward bar compares against the better of the two
VW_STREAM_CONFIGS = {
    f"VW cb_explore_adf -q UA eps={EPSILON}": VW_ARGS,
    "VW cb_explore_adf -q UA squarecb": "--cb_explore_adf -q UA --squarecb --quiet --random_seed 0",
}


def measure_vw(
    stream: LinearStream, log: tuple, n_examples: int, ours_linucb: Any, repeats: int
) -> tuple[Row | None, dict[str, float], str]:
    try:
        import vowpalwabbit
    except ImportError as exc:
        return None, {}, f"Vowpal Wabbit not installed ({exc}); pip install vowpalwabbit"
    x_log, arms_log, r_log = log
    k = stream.n_images
    m = min(n_examples, stream.n_rounds)
    # example text is built before timing: VW's own parse + learn/predict is what is measured
    labelled = [vw_lines(x_log[i], k, (int(arms_log[i]), -float(r_log[i]), 1.0 / k)) for i in range(m)]
    plain = [vw_lines(stream.x[i], k) for i in range(m)]
    ws = vowpalwabbit.Workspace(VW_ARGS)
    row = Row(f"VW cb_explore_adf -q UA eps={EPSILON}")
    t = median_time(lambda: [ws.learn(ex) for ex in labelled], 1)
    row.fit = m / t
    row.online = m / t  # VW's fit is a sequence of online updates
    # predict interleaved with our LinUCB scoring, so both see the same machine load
    page32 = stream.page(slice(0, stream.n_rounds), np.float32)
    n_pred = min(m, 5000)
    t_vw, t_ours = [], []
    for _ in range(max(3, repeats // 2)):
        t0 = time.perf_counter()
        for ex in plain[:n_pred]:
            ws.predict(ex)
        t_vw.append((time.perf_counter() - t0) / (n_pred * k))
        t0 = time.perf_counter()
        ours_linucb.score(page32, propensities=False)
        t_ours.append((time.perf_counter() - t0) / (stream.n_rounds * k))
    row.score = 1.0 / statistics.median(t_vw)
    row.note = f"Python API, {m} examples, text pre-built"
    ws.finish()
    return row, {"vw": statistics.median(t_vw), "ours": statistics.median(t_ours)}, ""


def run_vw_stream(stream: LinearStream, vw_args: str = VW_ARGS) -> np.ndarray | None:
    try:
        import vowpalwabbit
    except ImportError:
        return None
    ws = vowpalwabbit.Workspace(vw_args)
    rng = np.random.default_rng(0)
    n, k = stream.n_rounds, stream.n_images
    choice = np.zeros(n, np.int64)
    for t in range(n):
        pmf = np.asarray(ws.predict(vw_lines(stream.x[t], k)), dtype=np.float64)
        pmf /= pmf.sum()
        c = int(rng.choice(k, p=pmf))
        r = float(stream.uniforms[t] < stream.probabilities[t, c])
        ws.learn(vw_lines(stream.x[t], k, (c, -r, float(pmf[c]))))
        choice[t] = c
    ws.finish()
    return stream.probabilities[np.arange(n), choice]


# ---------------------------------------------------------------------------- cold start
def impressions_to(curve: np.ndarray, oracle: np.ndarray, level: float = 0.9, window: int = 200) -> int | None:
    """First n such that the expected take rate over impressions (n, n + window] is >= level x oracle."""
    c = np.r_[0.0, np.cumsum(curve)]
    o = np.r_[0.0, np.cumsum(oracle)]
    for start in range(0, len(curve) - window + 1):
        if c[start + window] - c[start] >= level * (o[start + window] - o[start]):
            return start
    return None


def cold_start(seeds: int, n_history: int, n_launch: int) -> list[tuple[str, int | None, int | None, float, float]]:
    configs = {
        "linear_ts": lambda prior: LinearThompson(NOISE, prior=prior, seed=0),
        "linucb": lambda prior: LinUCB(ALPHA, prior=prior, seed=0),
    }
    out = []
    for name, make in configs.items():
        curves: dict[str, list[np.ndarray]] = {"plain": [], "prior": []}
        oracles = []
        for seed in range(seeds):
            world = make_title_launch(n_history=n_history, n_launch=n_launch, seed=seed)
            oracles.append(world.launch.probabilities.max(axis=1))
            for label, prior in (("plain", None), ("prior", ImageFeaturePrior(strength=20.0))):
                policy = make(prior).fit(world.history_x, world.history_arms, world.history_rewards)
                curves[label].append(run_stream(policy, world.launch, batch_size=10).expected)
        oracle = np.mean(oracles, axis=0)
        plain, prior = np.mean(curves["plain"], axis=0), np.mean(curves["prior"], axis=0)
        out.append(
            (
                name,
                impressions_to(plain, oracle),
                impressions_to(prior, oracle),
                float(plain[:500].mean() / oracle[:500].mean()),
                float(prior[:500].mean() / oracle[:500].mean()),
            )
        )
    return out


# ---------------------------------------------------------------------------- printing
def fmt(v: float | None) -> str:
    if v is None:
        return "-"
    if v >= 1e6:
        return f"{v / 1e6:.2f}M"
    if v >= 1e3:
        return f"{v / 1e3:.1f}k"
    return f"{v:.0f}"


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=100_000)
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--images", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=100, help="rounds per score/update cycle on the stream")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--online", type=int, default=20_000, help="impressions for the online-update timing")
    parser.add_argument("--vw-examples", type=int, default=20_000)
    parser.add_argument("--cold-seeds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="small sizes everywhere (a smoke run)")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.online, args.vw_examples, args.cold_seeds = 2, 1000, 500, 1

    limiter = threadpool_limits(1) if threadpool_limits is not None else None
    blas = threadpool_info() if threadpool_info is not None else []
    print("# slate bandit throughput")
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores; numpy {np.__version__}, "
          f"numba {version('numba')}, mabwiser {version('mabwiser')}, vowpalwabbit {version('vowpalwabbit')}")
    print("BLAS: " + ", ".join(f"{b.get('internal_api')} {b.get('architecture', '')} threads={b.get('num_threads')}" for b in blas)
          + ("" if limiter is not None else " (threadpoolctl missing: BLAS threads NOT limited)"))
    stream = make_linear_stream(args.rounds, args.features, args.images, seed=args.seed)
    print(f"stream: {args.rounds} rounds, d={args.features}, K={args.images}, oracle take rate {stream.oracle_rate():.4f}, "
          f"uniform {stream.probabilities.mean():.4f}, best single image {stream.probabilities.mean(axis=0).max():.4f}")
    print(f"hyperparameters: LinUCB alpha={ALPHA}, linear TS noise={NOISE}, epsilon={EPSILON}, ridge=1; "
          "linear models score in float32")
    print()

    log = logged_data(stream, args.seed)
    ours, _ = measure_ours(stream, log, args.repeats, args.online)
    linucb = LinUCB(ALPHA, dtype="float32", seed=0).fit(*log)
    mab_row, mab_times, mab_msg = measure_mabwiser(stream, log, args.repeats, linucb)
    vw_row, vw_times, vw_msg = measure_vw(stream, log, args.vw_examples, linucb, args.repeats)
    for msg in (mab_msg, vw_msg):
        if msg:
            print(f"NOTE: {msg}")

    print("## 1. Throughput (1 BLAS thread; medians)")
    table = [r for r in (*ours, mab_row, vw_row) if r is not None]
    print_table(
        ["policy", "score (member,image)/s", "batch fit /s", "online update /s", "update x100 /s", "propensities rows/s", "note"],
        [[r.name, fmt(r.score), fmt(r.fit), fmt(r.online), fmt(r.minibatch), fmt(r.propensity), r.note] for r in table],
    )
    print("score: policy.score(page, propensities=False) on all rounds at once (PageFeatures built and validated "
          "beforehand); propensities: score(..., propensities=True) on 1000 rows (Monte Carlo policies use "
          "1000 draws)")
    print()

    print(f"## 2. Average reward on the stream (mini-batches of {args.batch_size} rounds; VW learns per example)")
    oracle = stream.probabilities.max(axis=1)
    last = slice(int(0.9 * stream.n_rounds), stream.n_rounds)
    results: dict[str, np.ndarray] = {}
    timings: dict[str, float] = {}
    for name, make in our_policies().items():
        t0 = time.perf_counter()
        results[name] = run_stream(make(), stream, batch_size=args.batch_size, dtype=np.float32).expected
        timings[name] = time.perf_counter() - t0
    t0 = time.perf_counter()
    mab_curve = run_mabwiser_stream(stream, args.batch_size)
    if mab_curve is not None:
        results["MABWiser LinUCB"] = mab_curve
        timings["MABWiser LinUCB"] = time.perf_counter() - t0
    vw_means = []
    for label, vw_args in VW_STREAM_CONFIGS.items():
        t0 = time.perf_counter()
        vw_curve = run_vw_stream(stream, vw_args)
        if vw_curve is not None:
            results[label] = vw_curve
            timings[label] = time.perf_counter() - t0
            vw_means.append(vw_curve.mean())
    rows = [["oracle", f"{oracle.mean():.4f}", "1.000", "1.000", "-"]]
    for name, curve in results.items():
        rows.append(
            [
                name,
                f"{curve.mean():.4f}",
                f"{curve.mean() / oracle.mean():.3f}",
                f"{curve[last].mean() / oracle[last].mean():.3f}",
                f"{timings[name]:.1f}",
            ]
        )
    print_table(["policy", "mean expected reward", "vs oracle (all rounds)", "vs oracle (last 10%)", "wall s"], rows)
    print("expected reward = true probability of the image shown (the realised rewards share common random numbers)")
    print()

    print(f"## 3. Cold start: a title launch after {20_000} logged impressions of 50 old images ({args.cold_seeds} seeds)")
    cs = cold_start(args.cold_seeds, 20_000 if not args.quick else 2000, 3000 if not args.quick else 600)
    print_table(
        ["policy", "impressions to 90% of oracle: without prior", "with prior", "first 500 vs oracle: without", "with"],
        [[n, str(a), str(b), f"{c:.3f}", f"{d:.3f}"] for n, a, b, c, d in cs],
    )
    print("impressions to 90%: first n with the expected take rate over impressions (n, n+200] >= 0.9 x the oracle's "
          "(curves averaged over seeds); prior = ImageFeaturePrior(strength=20)")
    print()

    print("## 4. Bars")
    by = {r.name: r for r in table}
    checks: list[tuple[str, bool | None, str]] = []
    lin = by["linucb"]
    checks.append(("LinUCB float32 batch scoring >= 2M scores/s (1 thread)", (lin.score or 0) >= 2e6, fmt(lin.score)))
    if mab_times:
        ratio = mab_times["mab"] / mab_times["ours"]
        checks.append((">= 5x MABWiser LinUCB predict (interleaved runs)", ratio >= 5, f"{ratio:.1f}x"))
    else:
        checks.append((">= 5x MABWiser LinUCB predict", None, "MABWiser not installed"))
    if vw_times:
        ratio = vw_times["vw"] / vw_times["ours"]
        checks.append((">= 100x VW predict through its Python API (interleaved runs)", ratio >= 100, f"{ratio:.0f}x"))
    else:
        checks.append((">= 100x VW predict", None, "VW not installed"))
    for name in ("linucb", "linear_ts"):
        r = by[name]
        checks.append((f"{name} online update >= 50k/s", (r.online or 0) >= 5e4, fmt(r.online)))
    vw_mean = max(vw_means) if vw_means else None
    for name in ("linucb", "linear_ts"):
        curve = results[name]
        cum, late = curve.mean() / oracle.mean(), curve[last].mean() / oracle[last].mean()
        checks.append((f"{name} within 5% of oracle (all rounds)", cum >= 0.95, f"{cum:.3f}"))
        checks.append((f"{name} within 5% of oracle (last 10%)", late >= 0.95, f"{late:.3f}"))
        if vw_mean is not None:
            checks.append((f"{name} reward >= VW's best", curve.mean() >= vw_mean, f"{curve.mean():.4f} vs {vw_mean:.4f}"))
    for name, a, b, _, _ in cs:
        ok = b is not None and (a is None or b <= 0.5 * a)
        checks.append((f"{name} cold start: prior needs <= half the impressions", ok, f"{b} vs {a}"))
    for label, ok, value in checks:
        status = "n/a " if ok is None else ("PASS" if ok else "FAIL")
        print(f"{status}  {label}: {value}")
    if limiter is not None:
        limiter.unregister() if hasattr(limiter, "unregister") else None
    return 0


if __name__ == "__main__":
    sys.exit(main())
