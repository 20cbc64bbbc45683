"""Spread of page-aware variants relative to per-title SNIPS, with the ratio's own noise.

Same world, targets and seeded logs as ``benchmarks/page_aware.py`` (log ``r`` is simulated with
seed ``10_000 + r``), but no bootstrap intervals per log, so many repetitions are cheap: the
spread (sd over repetitions) of every variant, its ratio to per-title SNIPS's and to
``page-aware``'s on the same logs, and a 95% interval of each ratio from a bootstrap over the
repetitions (2,000 resamples of the logs; both sds recomputed on every resample).

Variants, all consistent under the ``page-aware`` assumption (``W`` the marginalised weights of
:class:`slate.replay.estimators.MarginalizedNeighbourhood`):

* ``page-aware``: ``sum W r / sum W`` (the alias's form);
* ``strat-title``, ``strat-nb``, ``strat-col``, ``strat-title-nb``, ``strat-nb-s*``:
  post-stratified self-normalisation, ``sum_s n_s / n * (sum_{i in s} W r / sum_{i in s} W)``
  with strata by title, number of row neighbours present (row end or interior), column, title x
  neighbours present, neighbours present x the target's own same-group count ``s*`` (all
  functions of the context, so a stratum's share of rows is the same under target and logging);
* ``oracle-dr``: ``mean q_pi + mean W (r - q)`` with the simulator's *true* take probabilities
  (``q`` of the logged page, ``q_pi`` of the target's): the least spread any reward model or
  control variate can give these weights, i.e. what is left is the takes' coin noise;
* ``fitted-dr`` (``--fitted-dr``): the same with a cross-fitted (two page folds) ridge-logistic
  take model of the simulator's form, a per-(title, image) intercept and slope on the context
  plus one coefficient for the share of same-style neighbours, self-normalised residual term.

Run: ``python benchmarks/page_aware_spread.py [--reps 1000] [--pages 2000] [--fitted-dr]``
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


def stratified(W: np.ndarray, r: np.ndarray, stratum: np.ndarray) -> float:
    """Post-stratified self-normalised estimate; NaN when a stratum with rows has no weight."""
    n = np.bincount(stratum).astype(np.float64)
    U = np.bincount(stratum, W * r, len(n))
    V = np.bincount(stratum, W, len(n))
    if np.any((n > 0) & (V <= 0)):
        return float("nan")
    return float(np.sum(n / n.sum() * np.where(n > 0, U / np.where(V > 0, V, 1.0), 0.0)))


def same_share(style: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(P, L) count and share of a title's row neighbours showing the same style."""
    same = np.zeros(style.shape)
    count = np.zeros(style.shape)
    same[:, 1:] += style[:, 1:] == style[:, :-1]
    same[:, :-1] += style[:, :-1] == style[:, 1:]
    count[:, 1:] += 1
    count[:, :-1] += 1
    return same, same / count


def design(cell: np.ndarray, x: np.ndarray, share: np.ndarray, n_cells: int) -> np.ndarray:
    """Per-cell intercept and context slopes, and one page-effect column."""
    n, d = x.shape
    X = np.zeros((n, n_cells * (d + 1) + 1))
    rows = np.arange(n)
    X[rows, cell * (d + 1)] = 1.0
    for k in range(d):
        X[rows, cell * (d + 1) + 1 + k] = x[:, k]
    X[:, -1] = share
    return X


def fit_logistic(X: np.ndarray, y: np.ndarray, ridge: float = 1.0, steps: int = 12) -> np.ndarray:
    """Ridge-penalised logistic regression by Newton steps."""
    b = np.zeros(X.shape[1])
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-X @ b))
        H = (X * (p * (1 - p))[:, None]).T @ X + ridge * np.eye(X.shape[1])
        b += np.linalg.solve(H, X.T @ (y - p) - ridge * b)
    return b


def fitted_dr(world: World, s, choice: np.ndarray, W: np.ndarray, y: np.ndarray) -> float:
    """Cross-fitted DR with a take model of the simulator's form (see the module docstring)."""
    P, L = s.titles.shape
    x = np.repeat(s.x, L, axis=0)
    cells = world.n_titles * world.n_images
    X = design(
        (s.titles * world.n_images + s.shown).ravel(), x, same_share(world.style[s.shown])[1].ravel(), cells
    )
    Xt = design(
        (s.titles * world.n_images + choice).ravel(), x, same_share(world.style[choice])[1].ravel(), cells
    )
    fold = np.repeat(np.arange(P) % 2, L)
    q, qt = np.empty(len(y)), np.empty(len(y))
    for f in (0, 1):
        b = fit_logistic(X[fold != f], y[fold != f])
        q[fold == f] = 1.0 / (1.0 + np.exp(-X[fold == f] @ b))
        qt[fold == f] = 1.0 / (1.0 + np.exp(-Xt[fold == f] @ b))
    return float(qt.mean() + np.sum(W * (y - q)) / W.sum())


def one_log(world: World, choose, groups: np.ndarray, r: int, pages: int, with_fit: bool) -> dict[str, float]:
    """Every variant on seeded log ``r``."""
    s = world.simulate(pages, "uniform", seed=10_000 + r)
    data = ReplayData.build(world.to_log(s), world.target(choose, s))
    W = get_estimator("page-aware", groups=groups).row_weights(data)  # type: ignore[attr-defined]
    w1, y = data.weight, data.reward.astype(np.float64)
    L = s.titles.shape[1]
    col = data.log.col.astype(np.int64)
    nb = ((col > 0) & (col < L - 1)).astype(np.int64)
    title = data.log.title.astype(np.int64)
    choice = choose(s.x, s.titles)
    s_star = same_share(world.style[choice])[0].ravel().astype(np.int64)
    q_target = world.play_prob(s.x, s.titles, choice).ravel()
    out = {
        "snips": float((w1 * y).sum() / w1.sum()),
        "page-aware": float((W * y).sum() / W.sum()),
        "strat-title": stratified(W, y, title),
        "strat-nb": stratified(W, y, nb),
        "strat-col": stratified(W, y, col),
        "strat-title-nb": stratified(W, y, title * 2 + nb),
        "strat-nb-s*": stratified(W, y, nb * 3 + s_star),
        "oracle-dr": float(q_target.mean() + np.mean(W * (y - s.prob.ravel()))),
    }
    if with_fit:
        out["fitted-dr"] = fitted_dr(world, s, choice, W, y)
    return out


def report(values: np.ndarray, names: list[str], truth: float, head: str) -> None:
    """Mean, bias/se, spread and the two spread ratios with bootstrap intervals."""
    sd = values.std(axis=0, ddof=1)
    reps = len(values)
    idx = np.random.default_rng(0).integers(0, reps, (2000, reps))
    sdb = np.stack([values[i].std(axis=0, ddof=1) for i in idx])
    for j, k in enumerate(names):
        vs = np.percentile(sdb[:, j] / sdb[:, 0], [2.5, 97.5])
        vp = np.percentile(sdb[:, j] / sdb[:, 1], [2.5, 97.5])
        z = (values[:, j].mean() - truth) / (sd[j] / np.sqrt(reps))
        print(
            f"{head} {k:>15} {values[:, j].mean():7.4f} {z:8.2f} {sd[j]:7.4f} "
            f"{sd[j] / sd[0]:6.3f} [{vs[0]:.3f}, {vs[1]:.3f}] "
            f"{sd[j] / sd[1]:6.3f} [{vp[0]:.3f}, {vp[1]:.3f}]",
            flush=True,
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=1000)
    ap.add_argument("--pages", type=int, default=2000)
    ap.add_argument("--page-effect", type=float, default=1.5)
    ap.add_argument("--fitted-dr", action="store_true", help="also the fitted-model DR (slow)")
    ap.add_argument("--target", default="", help="only this target (same-style or greedy)")
    ap.add_argument("--no-zero", action="store_true", help="skip the world without page effects")
    args = ap.parse_args()
    print(
        f"{args.reps} seeded logs of {args.pages} pages x 6 titles, uniform logging; "
        "[..] = 95% bootstrap interval over the repetitions"
    )
    print(
        f"{'page effect':>11} {'target':>10} {'variant':>15} {'mean':>7} {'bias/se':>8} "
        f"{'spread':>7} {'x snips':>22} {'x page-aware':>22}"
    )
    t0 = time.perf_counter()
    for effect in (args.page_effect,) if args.no_zero else (args.page_effect, 0.0):
        world = World(seed=41, n_titles=24, n_images=4, n_features=2, n_slots=6, page_effect=effect)
        groups = world.style[np.arange(world.n_titles * world.n_images) % world.n_images]
        targets = {
            "same-style": lambda x, titles: np.zeros(titles.shape, dtype=np.int64),
            "greedy": world.greedy(noise=0.6, seed=2),
        }
        for tname, choose in targets.items():
            if args.target and tname != args.target:
                continue
            rows = [one_log(world, choose, groups, r, args.pages, args.fitted_dr) for r in range(args.reps)]
            names = list(rows[0])
            values = np.array([[row[k] for k in names] for row in rows])
            report(values, names, world.truth(choose), f"{effect:>11.2f} {tname:>10}")
    print(f"wall {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
