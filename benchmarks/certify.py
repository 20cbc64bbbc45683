"""Certified pages within a serving budget: share proven optimal / within 0.5% inside 1, 2, 5 ms.

For every family (layout x size) and fresh seeded pages (seeds 50,000 + i, never used by the
tests), each page is built and solved once first ("warm": its derived arrays exist, as on a
serving path that prepares the page ahead of the request), then for each budget B:

* **certify**: ``AutoSolver().solve(problem, time_limit_ms=B)``, which certifies: on the ``fast``
  route, ``fast`` (no bound) within B/2 and :func:`slate.solvers.certify.certify` with the rest;
  on dense pages ``fast`` gets 0.9 B and the embedding certificate (and the page its multipliers
  point at) the rest, except on dense pages whose embeddings are all non-negative and that have
  no quotas: there ``fast`` is skipped and the embedding certificate starts from the page-blind
  page, its Lagrangian pages being the page; chain pages go to the exact DP. Timed in CPU time
  (``time.process_time``, the run with the median CPU time of three); the page counts as proven
  optimal / within 0.5% only if the result says so *and* the solve used at most B of CPU (the
  solver's own deadlines are wall-clock, so on a loaded machine it gets less CPU than B).
* **today**: ``fast`` with its own bound (MPLP dual or page-blind) within B, the route ``auto``
  took before certificates, timed the same way, in the same run.

A family's gap is ``(bound - objective) / |bound|`` (``SolveResult.gap``); "over 5 ms" is the
share of pages whose 5 ms solve used more than 5 ms of CPU. Also printed: ``fast``'s
own p50 on the local 40x10 pages (the certificate is off there: ``fast`` is unchanged), and the
load average, since the machine is shared.

    python benchmarks/certify.py --pages 10
    python benchmarks/certify.py --pages 10 --families local-40x10 dense-150x20
    python benchmarks/certify.py --pages 5 --families dense-150x20 --slopes 1 0.8 0.6 0.4
    python benchmarks/certify.py --pages 10 --families dense-40x10 dense-80x10 dense-150x20 --minorant-floor
    python benchmarks/certify.py --pages 10 --families dense-150x20 --next-session
    python benchmarks/certify.py --pages 3 --families dense-40x10 dense-150x20 --phi 2 4 8
    python benchmarks/certify.py --pages 3 --families dense-40x10 --phi --sdp-norm2 1.5

``--next-session``: warm starts (see :func:`next_session`).

``--phi K ...``: signed dense pages, the embedding-sum bound with image features ``phi`` in place
of the embeddings (any ``phi`` with ``phi_x . phi_y <= max(0, cos_xy)`` for images of different
titles gives a valid bound; see :func:`phi_table`).

``--minorant-floor``: for signed embeddings, the least any separable minorant ``a c + b c^2``
of ``max(0, c)`` (``a, b >= 0``, valid on the page's candidate cosines ``[c_min, 1]``: the
lifted embedding-sum bounds) gives away on the best page known (``fast``'s, or the
certificate's without a time limit): every bound of that family is at least that page's
objective plus this loss, so a loss over 0.5% of the objective rules the family out.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import dataclass, field

import numpy as np

from slate.page import PageProblem, random_problem
from slate.page.layout import DenseLayout
from slate.solvers import AutoSolver, FastSolver, SolveResult, Status
from slate.solvers.certify import certify, embedding_bound, meets

FAMILIES = [f"{layout}-{size}" for layout in ("local", "chain", "dense") for size in ("40x10", "80x10", "150x20")]
BUDGETS_MS = (1.0, 2.0, 5.0)
SEED0 = 50_000
WITHIN = 0.005


@dataclass
class Tally:
    proven: dict[float, int] = field(default_factory=dict)
    within: dict[float, int] = field(default_factory=dict)
    gaps: dict[float, list[float]] = field(default_factory=dict)
    absolute: list[float] = field(default_factory=list)
    methods: dict[str, int] = field(default_factory=dict)
    late: dict[float, int] = field(default_factory=dict)  # solves over the budget (CPU)

    def add(self, budget: float, proven: bool, within: bool, gap: float, late: bool = False) -> None:
        self.late[budget] = self.late.get(budget, 0) + int(late)
        self.proven[budget] = self.proven.get(budget, 0) + int(proven)
        self.within[budget] = self.within.get(budget, 0) + int(within)
        self.gaps.setdefault(budget, []).append(gap)


def make_page(family: str, seed: int, non_negative: bool = False) -> PageProblem:
    layout, size = family.split("-")
    n_titles, n_images = (int(x) for x in size.split("x"))
    problem = random_problem(n_titles, n_images, layout, seed=seed)  # type: ignore[arg-type]
    if non_negative and problem.embeddings is not None:  # every cosine >= 0
        problem = PageProblem.from_arrays(
            problem.scores, np.abs(problem.embeddings), layout=DenseLayout() if layout == "dense" else None,
            pairs=None if layout == "dense" else problem.pairs,
            pair_weights=None if layout == "dense" else problem.pair_weights,
            previous=problem.previous, locked=problem.locked, max_changes=problem.max_changes,
            diversity=problem.diversity, churn=problem.churn, name=problem.name + "-nonneg",
        )  # fmt: skip
    return problem


REPEATS = 3  # each measurement is the run with the median CPU time of this many


def _median_run(runs: list[tuple[float, object]]) -> tuple[float, object]:
    return sorted(runs, key=lambda r: r[0])[len(runs) // 2]


def run_certify(problem: PageProblem, budget_ms: float) -> tuple[bool, bool, float, str, float, bool]:
    runs = []
    for _ in range(REPEATS):
        c0 = time.process_time()
        result = AutoSolver().solve(problem, time_limit_ms=budget_ms)
        runs.append(((time.process_time() - c0) * 1000.0, result))
    total, out = _median_run(runs)
    assert isinstance(out, SolveResult) and out.bound is not None
    inside = total <= budget_ms
    gap = float(out.gap or 0.0)
    method = f"{out.info['route']}/{out.info['certificate']['method']}"
    absolute = out.bound - out.objective
    return inside and out.status is Status.OPTIMAL, inside and gap <= WITHIN, gap, method, absolute, not inside


def run_today(problem: PageProblem, budget_ms: float) -> tuple[bool, bool, float, float, bool]:
    runs = []
    for _ in range(REPEATS):
        c0 = time.process_time()
        out = FastSolver().solve(problem, time_limit_ms=budget_ms)
        runs.append(((time.process_time() - c0) * 1000.0, out))
    total, result = _median_run(runs)
    assert isinstance(result, SolveResult)
    inside = total <= budget_ms
    assert result.bound is not None
    gap = float(result.gap or 0.0)
    proven = inside and meets(result.bound, result.objective)
    return proven, inside and gap <= WITHIN, gap, result.bound - result.objective, not inside


def bench_family(family: str, pages: int, non_negative: bool) -> tuple[Tally, Tally]:
    new, old = Tally(), Tally()
    for i in range(pages):
        problem = make_page(family, SEED0 + i, non_negative)
        FastSolver().solve(problem)  # warm: derived arrays built, kernels loaded
        certify(problem, FastSolver(compute_bound=False).solve(problem).assignment, time_limit_ms=5)
        for budget in BUDGETS_MS:
            proven, within, gap, method, absolute, late = run_certify(problem, budget)
            new.add(budget, proven, within, gap, late)
            new.methods[method] = new.methods.get(method, 0) + 1
            proven, within, gap, old_absolute, late = run_today(problem, budget)
            old.add(budget, proven, within, gap, late)
            if budget == BUDGETS_MS[-1]:
                new.absolute.append(absolute)
                old.absolute.append(old_absolute)
    return new, old


def fast_p50(pages: int, repeats: int) -> float:
    times = []
    for i in range(pages):
        problem = random_problem(40, 10, "local", seed=SEED0 + i)
        solver = FastSolver()
        solver.solve(problem)
        for _ in range(repeats):
            c0 = time.process_time()
            solver.solve(problem)
            times.append((time.process_time() - c0) * 1000.0)
    return statistics.median(times)


def slope_table(family: str, pages: int, slopes: list[float], non_negative: bool) -> None:
    """Median bound - objective of the embedding bound with the minorant ``s * c`` (no time
    limit), the objective being the best of ``fast``'s page and the certificate's."""
    gaps: dict[float, list[float]] = {s: [] for s in slopes}
    for i in range(pages):
        problem = make_page(family, SEED0 + i, non_negative)
        page = FastSolver(compute_bound=False).solve(problem).assignment
        best = certify(problem, page).objective
        for slope in slopes:
            out = embedding_bound(problem, page, slope=slope)
            assert out is not None
            gaps[slope].append(out[0] - best)
    cells = " | ".join(f"{statistics.median(gaps[s]):.3f}" for s in slopes)
    print(f"| {family}{'-nonneg' if non_negative else ''} | {pages} | {cells} |", flush=True)


def minorant_floor(family: str, pages: int) -> None:
    """The loss of the best separable minorant ``a c + b c^2`` on the best page known (see the
    module docstring). The loss is linear in ``(a, b)``, so its least over the valid triangle
    ``a, b >= 0, a + b <= 1, b |c_min| <= a`` is at a corner: ``(1, 0)`` (the linear bound) or
    ``(|c_min|, 1) / (1 + |c_min|)``."""
    from slate.page.similarity import unit_vectors

    rows = []
    for i in range(pages):
        problem = make_page(family, SEED0 + i)
        assert problem.embeddings is not None
        page = FastSolver(compute_bound=False).solve(problem).assignment
        cert = certify(problem, page)  # no limit: the converged linear bound and its best page
        best = page if cert.assignment is None else cert.assignment
        objective = problem.evaluate(best).objective
        unit = unit_vectors(problem.embeddings)[problem.candidates]
        owner = np.nonzero(problem.candidates)[0]
        cosines = unit @ unit.T
        c_min = float(cosines[owner[:, None] != owner[None, :]].min())
        picked = unit_vectors(problem.embeddings)[np.arange(problem.n_titles), best]
        c = (picked @ picked.T)[problem.pairs[:, 0], problem.pairs[:, 1]]
        w = problem.diversity * problem.pair_weights
        a, b = abs(c_min) / (1 + abs(c_min)), 1 / (1 + abs(c_min))
        linear = float((w * (np.maximum(c, 0) - c)).sum())
        quadratic = float((w * (np.maximum(c, 0) - a * c - b * c * c)).sum())
        gap = (cert.bound - objective) / abs(cert.bound)
        rows.append((c_min, float((c < 0).mean()), gap, linear / abs(objective), quadratic / abs(objective)))
    r = np.array(rows)
    least = np.minimum(r[:, 3], r[:, 4]).min()
    print(
        f"| {family} | {pages} | {np.median(r[:, 0]):.2f} | {np.median(r[:, 1]):.0%} | {np.median(r[:, 2]):.1%} "
        f"| {np.median(r[:, 3]):.1%} | {np.median(r[:, 4]):.1%} | {least:.1%} |",
        flush=True,
    )


def _phi_problem(problem: PageProblem, phi: np.ndarray, norm2: float = 1.0) -> PageProblem:
    """The page with image features ``sqrt(norm2) phi`` (``phi``: n_titles, n_images, D', unit rows)
    in place of its embeddings, as unit features and a diversity weight times ``norm2``: its
    penalty ``d norm2 max(0, phi . phi)`` is at most the page's on every pair of images of
    different titles (checked by the caller), so its objective is at least the page's on every
    page and any bound on its optimum bounds the page's."""
    return PageProblem.from_arrays(
        problem.scores, phi, layout=DenseLayout(), candidates=problem.candidates, previous=problem.previous,
        locked=problem.locked, max_changes=problem.max_changes, diversity=problem.diversity * norm2,
        churn=problem.churn,
    )  # fmt: skip


def _check_phi(unit: np.ndarray, titles: np.ndarray, phi: np.ndarray, norm2: float = 1.0) -> None:
    """Exact check, over every pair of candidate images of different titles, that
    ``max(0, norm2 phi_x . phi_y) <= max(0, cos_xy)`` (rows unit up to rounding)."""
    gram, cos = norm2 * (phi @ phi.T), unit @ unit.T
    cross = titles[:, None] != titles[None, :]
    over = np.where(cross, np.maximum(gram, 0) - np.maximum(cos, 0), 0.0).max()
    assert over <= 1e-12, f"phi breaks max(0, phi.phi) <= max(0, cos) by {over:.2e}"


def _cluster_phi(unit: np.ndarray, n_clusters: int, seed: int) -> np.ndarray:
    """``e_x (x) onehot(cluster(x))``: spherical k-means clusters; ``phi_x . phi_y`` is ``cos_xy``
    within a cluster and 0 across, so every pair loses ``max(0, -c)`` within and ``max(0, c)`` across."""
    rng = np.random.default_rng(seed)
    centres = unit[rng.choice(len(unit), n_clusters, replace=False)]
    for _ in range(30):
        label = np.argmax(unit @ centres.T, axis=1)
        for j in range(n_clusters):
            m = unit[label == j].sum(0)
            centres[j] = m / np.linalg.norm(m) if np.linalg.norm(m) > 0 else centres[j]
    label = np.argmax(unit @ centres.T, axis=1)
    phi = np.zeros((len(unit), unit.shape[1] * n_clusters))
    for j in range(n_clusters):
        phi[label == j, j * unit.shape[1] : (j + 1) * unit.shape[1]] = unit[label == j]
    return phi


def _sdp_phi(unit: np.ndarray, titles: np.ndarray, norm2: float = 1.0) -> np.ndarray:
    """The Gram matrix ``G >= 0`` with diagonal ``norm2`` and ``G_xy <= max(0, cos_xy) - 1e-5`` on
    every pair of different titles that maximises the sum over all those pairs (CVXPY, SCS),
    factored and scaled to unit rows (the margin absorbs the solver's tolerance;
    :func:`_check_phi` verifies)."""
    import cvxpy as cp

    clipped = np.maximum(unit @ unit.T, 0.0)
    cross = (titles[:, None] != titles[None, :]).astype(float)
    gram = cp.Variable((len(unit), len(unit)), PSD=True)
    objective = cp.Maximize(cp.sum(cp.multiply(cross, gram)) / 2)
    cp.Problem(objective, [cp.diag(gram) == norm2, cp.multiply(cross, gram) <= cross * (clipped - 1e-5)]).solve(
        solver="SCS", eps=1e-7, max_iters=50_000
    )
    w, u = np.linalg.eigh((gram.value + gram.value.T) / 2)
    phi = u * np.sqrt(np.clip(w, 0.0, None))
    return phi / np.linalg.norm(phi, axis=1, keepdims=True)


def phi_table(family: str, pages: int, clusters: list[int], sdp_max_images: int, norm2: float) -> None:
    """Signed dense pages: the embedding-sum bound with features ``phi`` (``phi_x . phi_y <=
    max(0, cos_xy)`` for every pair of images of different titles, verified exactly) in place of the
    embeddings, without a time limit; gap against the best page known (``fast``'s or the linear
    bound's). ``phi``: today's (``e``), ``e (x) onehot(cluster)`` per number of clusters, and the
    catalogue-wide SDP features with squared norm ``norm2`` (pages of at most ``sdp_max_images``
    candidate images; a norm above 1 leaves the pairs more room and the relaxation more slack)."""
    from slate.page.similarity import unit_vectors

    for i in range(pages):
        problem = make_page(family, SEED0 + i)
        assert problem.embeddings is not None
        page = FastSolver(compute_bound=False).solve(problem).assignment
        cert = certify(problem, page)
        best = page if cert.assignment is None else cert.assignment
        objective = problem.evaluate(best).objective
        titles, images = np.nonzero(problem.candidates)
        unit = unit_vectors(problem.embeddings)[titles, images]
        cells = [f"{(cert.bound - objective) / abs(cert.bound):.1%}"]
        features = [(_cluster_phi(unit, k, seed=i), 1.0) for k in clusters]
        if len(unit) <= sdp_max_images:
            features.append((_sdp_phi(unit, titles, norm2), norm2))
        for phi, scale in features:
            _check_phi(unit, titles, phi, scale)
            full = np.zeros((*problem.candidates.shape, phi.shape[1]))
            full[titles, images] = phi
            bound = certify(_phi_problem(problem, full, scale), best).bound
            assert bound >= objective - 1e-9
            cells.append(f"{(bound - objective) / abs(bound):.1%}")
        cells += ["n/a"] * (len(clusters) + 2 - len(cells))
        print(f"| {family} | {SEED0 + i} | {objective:.3f} | " + " | ".join(cells) + " |", flush=True)


def next_session(family: str, pages: int) -> None:
    """Warm starts on dense pages with non-negative cosines: the next session of each page
    (scores moved by 5%, the last page as ``previous``) certified cold and from the last
    session's duals: evaluations to 0.5% without a limit, and within 0.5% inside 1 ms (CPU)."""
    from slate.solvers.bounds import budgeted_unary_optimum
    from slate.solvers.certify import embedding_certificate

    rows = []
    for i in range(pages):
        problem = make_page(family, SEED0 + i, non_negative=True)
        first = AutoSolver(exact_max_titles=0).solve(problem)
        moved = problem.scores * (1 + 0.05 * np.random.default_rng(i).normal(size=problem.scores.shape))
        nxt = PageProblem.from_arrays(
            moved, problem.embeddings, layout=DenseLayout(), previous=first.assignment,
            locked=problem.locked & (first.assignment == problem.previous), max_changes=problem.max_changes,
            diversity=problem.diversity, churn=problem.churn,
        )  # fmt: skip
        start = budgeted_unary_optimum(nxt)[0]
        row = []
        for duals in (None, first.info["duals"]):
            cert = embedding_certificate(nxt, start, rtol=WITHIN, warm_start=duals)
            assert cert is not None
            AutoSolver(warm_start=duals).solve(nxt, time_limit_ms=1.0)
            runs = []
            for _ in range(REPEATS):
                c0 = time.process_time()
                out = AutoSolver(warm_start=duals).solve(nxt, time_limit_ms=1.0)
                runs.append(((time.process_time() - c0) * 1000.0, out))
            cpu, result = _median_run(runs)
            assert isinstance(result, SolveResult)
            row += [cert.info["evaluations"], cpu <= 1.0 and (result.gap or 0.0) <= WITHIN, result.gap or 0.0]
        rows.append(row)
    r = np.array(rows, dtype=float)
    print(
        f"| {family}-nonneg | {pages} | {np.median(r[:, 0]):.0f} | {np.median(r[:, 3]):.0f} | {r[:, 1].mean():.0%} "
        f"| {r[:, 4].mean():.0%} | {np.median(r[:, 2]):.3%} | {np.median(r[:, 5]):.3%} |",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=10)
    parser.add_argument("--families", nargs="*", default=FAMILIES)
    parser.add_argument("--non-negative", action="store_true", help="use |embeddings| (every cosine >= 0)")
    parser.add_argument("--fast-repeats", type=int, default=30)
    parser.add_argument(
        "--slopes", nargs="*", type=float, default=None,
        help="instead: median bound - objective of the embedding bound per minorant slope (no time limit)",
    )  # fmt: skip
    parser.add_argument("--minorant-floor", action="store_true", help="instead: the minorant family's least loss")
    parser.add_argument("--next-session", action="store_true", help="instead: warm starts on non-negative pages")
    parser.add_argument(
        "--phi", nargs="*", type=int, default=None, metavar="CLUSTERS",
        help="instead: signed dense pages, the bound with features phi (clusters per e (x) onehot, and the SDP)",
    )  # fmt: skip
    parser.add_argument("--sdp-max-images", type=int, default=600, help="largest page for the SDP features")
    parser.add_argument("--sdp-norm2", type=float, default=1.0, help="squared norm of the SDP features")
    args = parser.parse_args()
    if args.next_session:
        print(
            "| family | pages | evaluations to 0.5%, cold | warm | <=0.5% inside 1 ms, cold | warm "
            "| median gap at 1 ms, cold | warm |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for family in args.families:
            next_session(family, args.pages)
        return
    if args.phi is not None:
        head = "".join(f"e (x) onehot, {k} clusters | " for k in args.phi)
        print(f"| family | seed | objective | today (e) | {head}SDP features, norm^2 {args.sdp_norm2:g} |")
        print("|---|---|---|---|" + "---|" * len(args.phi) + "---|")
        for family in args.families:
            phi_table(family, args.pages, args.phi, args.sdp_max_images, args.sdp_norm2)
        return
    if args.minorant_floor:
        print(
            "| family | pages | median c_min | page pairs with c < 0 | linear bound's gap (no limit) "
            "| loss of c | loss of the best a c + b c^2 | least loss of either, any page |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for family in args.families:
            minorant_floor(family, args.pages)
        return
    if args.slopes:
        print("| family | pages | " + " | ".join(f"slope {s:g}" for s in args.slopes) + " |")
        print("|---|---|" + "---|" * len(args.slopes))
        for family in args.families:
            slope_table(family, args.pages, args.slopes, args.non_negative)
        return
    print(f"load average before: {os.getloadavg()}")
    head = " | ".join(f"proven {b:g} ms | <=0.5% {b:g} ms" for b in BUDGETS_MS)
    print(f"| family | pages | method | {head} | median gap at 5 ms | median bound - objective at 5 ms | over 5 ms |")
    print("|---|---|---|" + "---|---|" * len(BUDGETS_MS) + "---|---|---|")
    for family in args.families:
        new, old = bench_family(family, args.pages, args.non_negative)
        for name, tally in (("certify", new), ("today (fast bound)", old)):
            cells = " | ".join(
                f"{tally.proven[b] / args.pages:.0%} | {tally.within[b] / args.pages:.0%}" for b in BUDGETS_MS
            )
            gap = statistics.median(tally.gaps[5.0])
            label = name if name != "certify" else f"certify ({', '.join(f'{k}: {v}' for k, v in sorted(tally.methods.items()))})"
            absolute = statistics.median(tally.absolute)
            late = tally.late[BUDGETS_MS[-1]] / args.pages
            print(f"| {family} | {args.pages} | {label} | {cells} | {gap:.3%} | {absolute:.4f} | {late:.0%} |", flush=True)
    print(f"\nfast (certificate off), local 40x10, CPU p50: {fast_p50(min(args.pages, 5), args.fast_repeats):.3f} ms")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
