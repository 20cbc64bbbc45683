"""Replay on compose() decision logs is unbiased against the simulator's truth, end to end.

Each of ``REPS`` seeded repetitions builds a small slate.sim world (page, session and
familiarity effects off, so a title's reward depends on its own image and the context only),
serves every page of a schedule through :class:`slate.serve.Composer` (noisy-model scores;
churn penalty, dwell and hysteresis on; :class:`~slate.serve.StickyEpsilon` with a cap of
``CAP`` explored titles per page, draws held for ``STICKY`` sessions), draws outcomes from the
response model, writes the Parquet decision log, and replays the oracle-argmax target (unlike
the logging policy) with :func:`slate.replay.evaluate` on the rows the logger randomized. The
truth is the simulator's exact mean P(quality play) of the target's image on the same rows.

Stated tolerances (the band of the replay issue): over ``REPS`` repetitions the 95% intervals,
with members as clusters, cover the truth at a rate in [0.92, 0.98]; the mean error is within
3 standard errors of its mean. It can fail: with the propensity ignored, or with held sticky
draws logged as deterministic, coverage falls far below the band. Intervals that treat pages as
independent (``evaluate()``'s) are narrower than the member-clustered ones: a held draw repeats
on a member's later pages.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from slate.logs import read_impressions
from slate.replay import evaluate
from slate.serve import ComposeConfig, StickyEpsilon
from slate.sim import ArgmaxPolicy, counterfactual_value, make_schedule, make_world, oracle_scorer
from slate.sim.serving import noisy_scorer, serve
from slate.stability import Reason, StabilityRules

REPS = 100
N_MEMBERS, N_DAYS = 60, 8
EPSILON, CAP, STICKY = 0.5, 3, 8  # a draw is held for the whole run: the hardest case for the SE
CONFIG = ComposeConfig(
    solver="independent", diversity=0.0, solver_time_ms=1e4, solver_grace_ms=1e4, scoring_budget_ms=1e4,
    store_budget_ms=1e4, stability=StabilityRules(churn=0.002, dwell_sessions=4, min_gain=0.005),
)


def with_propensity(table: pa.Table, propensity: np.ndarray) -> pa.Table:
    return table.set_column(table.schema.get_field_index("propensity"), "propensity", pa.array(propensity))


def one_rep(seed: int, folder) -> dict[str, tuple[float, float, float, float]]:
    """``{label: (estimate, low, high, truth)}`` for one seeded repetition."""
    world = make_world(
        n_members=N_MEMBERS, n_titles=30, include_example=False, min_images=2, max_images=3, seed=seed,
        page={"rows": 2, "cols": 4}, drift={"launch_share": 0.0},
        response={"page_effects": False, "session_effects": False, "familiarity_effects": False},
    )
    explore = StickyEpsilon(EPSILON, max_explored=CAP, sticky_sessions=STICKY, sticky_days=None, seed=seed)
    served = serve(make_schedule(world, n_days=N_DAYS, seed=seed), noisy_scorer(0.5, seed=seed + 1),
                   folder / f"rep-{seed}", exploration=explore, config=CONFIG)
    run = served.run
    cf = counterfactual_value(run, ArgmaxPolicy(oracle_scorer()))
    truth = served.truth(cf.probability)  # the randomized rows
    target = served.target_table(cf.images)  # decisions for the randomized rows only
    log, rejected = read_impressions(served.log_path)
    assert rejected.n_rejected == 0 and log.n_rows == run.n_impressions
    out = {}
    for name in ("ips", "snips"):
        page = evaluate(log, target, name, n_bootstrap=0, metrics=False).estimate
        member = evaluate(log, target, name, n_bootstrap=0, metrics=False, cluster="member").estimate
        assert member.value == pytest.approx(page.value, rel=1e-12)
        out[f"{name} page"] = (page.value, *page.interval, truth)
        out[f"{name} member"] = (member.value, *member.interval, truth)
    # the IPS error against the row-level truth, and its standard error with pages or members as
    # clusters (an oracle check of the clustering: it needs the true values)
    rows = served.randomized
    e = ((run.images == cf.images) * run.reward / served.propensity - cf.probability)[rows]
    page = np.nonzero(rows)[0]
    ses = []
    for key in (page, run.schedule.member[page]):
        sums = np.bincount(np.unique(key, return_inverse=True)[1], e)
        ses.append(np.sqrt(len(sums) / (len(sums) - 1) * (sums @ sums)) / len(e))
    out["oracle"] = (float(e.mean()), *ses, truth)
    # failing directions, on the same decision log
    raw = pq.read_table(served.log_path)
    assert np.array_equal(raw.column("page_id").to_numpy(), np.repeat(run.schedule.page_id, run.images.shape[1]))
    p = raw.column("propensity").to_numpy()
    held = (served.reason == Reason.STICKY).ravel()
    for label, wrong in (("ignored", np.ones_like(p)), ("held as 1", np.where(held, 1.0, p))):
        bad, _ = read_impressions(with_propensity(raw, wrong))
        e = evaluate(bad, target, "ips", n_bootstrap=0, metrics=False, cluster="member").estimate
        out[f"ips {label}"] = (e.value, *e.interval, truth)
    return out


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve-replay")
    rows: dict[str, list[tuple[float, float, float, float]]] = {}
    for seed in range(REPS):
        for k, v in one_rep(seed, folder).items():
            rows.setdefault(k, []).append(v)
    return {k: np.array(v) for k, v in rows.items()}


def coverage(a: np.ndarray) -> float:
    _, lo, hi, truth = a.T
    return float(((lo <= truth) & (truth <= hi)).mean())


@pytest.mark.parametrize("name", ["ips", "snips"])
def test_member_clustered_intervals_cover_the_truth(results, name):
    a = results[f"{name} member"]
    err = a[:, 0] - a[:, 3]
    se_mean = err.std(ddof=1) / np.sqrt(len(err))
    print(f"{name}: coverage {coverage(a):.3f}, bias {err.mean():+.5f} ± {se_mean:.5f}, truth {a[:, 3].mean():.4f}")
    assert 0.92 <= coverage(a) <= 0.98
    assert abs(err.mean()) <= 3 * se_mean
    assert se_mean < 0.05 * a[:, 3].mean()  # the check is sharp: 3 SE of the mean is < 15% of the value


def test_pages_are_not_independent_under_sticky_draws_members_are(results):
    # the standard error of the IPS error computed from the true residuals: with pages as clusters
    # it misses the covariance of a held draw's rows on a member's later pages; with members as
    # clusters it matches the spread over repetitions (whose own relative SE is ~7% at 100 reps)
    err, se_page, se_member, _ = results["oracle"].T
    sd = err.std(ddof=1)
    page_ratio, member_ratio = np.sqrt(np.mean(se_page**2)) / sd, np.sqrt(np.mean(se_member**2)) / sd
    print(f"oracle SE / SD: pages {page_ratio:.3f}, members {member_ratio:.3f}; evaluate() coverage "
          f"ips {coverage(results['ips page']):.3f}, snips {coverage(results['snips page']):.3f}")
    assert page_ratio < 0.85
    assert 0.85 <= member_ratio <= 1.15


def test_wrong_propensities_fail_the_coverage_check(results):
    ignored, held = results["ips ignored"], results["ips held as 1"]
    print(f"coverage: propensity ignored {coverage(ignored):.3f}, held draws as 1 {coverage(held):.3f}")
    assert coverage(ignored) < 0.5
    assert coverage(held) < 0.85


def test_same_seed_same_numbers(results, tmp_path):
    again = one_rep(3, tmp_path)
    for k, v in again.items():
        assert v == tuple(results[k][3])


def test_bad_inputs_are_named(tmp_path):
    from slate.errors import InvalidProblemError
    from slate.logs.parquet import example_table
    from slate.replay import UniformPolicy

    with pytest.raises(InvalidProblemError, match="'noise' parameter of noisy_scorer"):
        noisy_scorer(-1.0)
    log, _ = read_impressions(example_table())
    with pytest.raises(ValueError, match="cluster"):
        evaluate(log, UniformPolicy(), "ips", cluster="title")
    pq.write_table(pa.table({"x": [1]}), tmp_path / "old.parquet")
    world = make_world(n_members=5, n_titles=30, include_example=False, page={"rows": 2, "cols": 4}, seed=0)
    with pytest.raises(InvalidProblemError, match="'directory' parameter of serve must be a new or empty"):
        serve(make_schedule(world, n_days=1), noisy_scorer(), tmp_path)
