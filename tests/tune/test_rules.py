"""Dwell, min_gain, exploration rate and stickiness as sweep axes: the fields of ComposeConfig,
evaluated with the rules compose() serves with, and deployed as recommended-compose.json."""

from __future__ import annotations

import json
import textwrap
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slate.cli import main
from slate.logs import join_outcomes
from slate.page import GridLayout
from slate.page.embeddings import ImageEmbeddings
from slate.serve import ComposeConfig, Composer, DecisionLogger, ExplorationConfig
from slate.serve.scorer import NamedScorer
from slate.stability import InMemoryStore, StabilityRules
from slate.tune import experiment_from_dict, load_results, run_sweep
from slate.tune.config import InvalidExperimentError
from slate.tune.engine import PageBlock, SolverConfig, solve_block
from slate.tune.report import recommended_compose

LOG = {"kind": "log", "path": "log.parquet", "embeddings": "e.parquet"}


# ---------------------------------------------------------------------- the experiment
@pytest.mark.parametrize("search, field, says", [
    ({"dwell_sessions": [0]}, "search.dwell_sessions", '>= 1 or "none"'),
    ({"dwell_sessions": [1.5]}, "search.dwell_sessions", "an integer"),
    ({"dwell_days": [0.0]}, "search.dwell_days", '> 0 or "none"'),
    ({"min_gain": [-0.01]}, "search.min_gain", '>= 0 or "none"'),
    ({"min_gain": ["off"]}, "search.min_gain", "a number or \"none\""),
    ({"sticky_days": 3}, "search.sticky_days", "a list"),
    ({"sticky_sessions": []}, "search.sticky_sessions", "at least one value"),
    ({"kind": "random", "n_points": 2, "dwell_days": [-1]}, "search.dwell_days", "> 0"),
])
def test_bad_rule_values_are_one_line_naming_the_field(search, field, says):
    with pytest.raises(InvalidExperimentError) as err:
        experiment_from_dict({"data": LOG, "search": search})
    message = str(err.value)
    assert "\n" not in message and f"'{field}'" in message and says in message


def test_rule_axes_multiply_the_grid_and_leave_older_experiments_alone():
    old = experiment_from_dict({"data": LOG, "search": {"diversity": [0.0, 0.5], "churn": [0.0, 0.2]}})
    assert [(p.diversity, p.churn, p.dwell_sessions, p.min_gain, p.sticky_sessions) for p in old.points()] == [
        (0.0, 0.0, None, None, 1), (0.0, 0.2, None, None, 1), (0.5, 0.0, None, None, 1), (0.5, 0.2, None, None, 1)]
    exp = experiment_from_dict({"data": LOG, "search": {
        "diversity": [0.0, 0.5], "dwell_sessions": [2, "none"], "dwell_days": [1.5], "min_gain": [0.01, "none"],
        "exploration": [0.0, 0.1], "sticky_sessions": ["none", 3], "sticky_days": [2.0]}})
    points = exp.points()
    assert len(points) == 2 * 2 * 2 * 2 * 2
    assert {p.dwell_sessions for p in points} == {2, None} and {p.min_gain for p in points} == {0.01, None}
    assert {p.dwell_days for p in points} == {1.5}
    # exploration and stickiness do not change the solves: 2 x 2 x 2 distinct solver settings
    assert len({p.solve_key for p in points}) == 8
    rand = experiment_from_dict({"data": LOG, "seed": 3, "search": {"kind": "random", "n_points": 5}})
    rand_rules = experiment_from_dict({"data": LOG, "seed": 3, "search": {
        "kind": "random", "n_points": 5, "dwell_sessions": [2, 4]}})
    assert [p.diversity for p in rand.points()] == [p.diversity for p in rand_rules.points()]
    assert {p.dwell_sessions for p in rand_rules.points()} <= {2, 4}


@given(ds=st.sampled_from([None, 1, 3]), dd=st.sampled_from([None, 0.5, 7.0]),
       gain=st.sampled_from([None, 0.0, 0.02]), eps=st.sampled_from([0.0, 0.05, 1.0]),
       ss=st.sampled_from([None, 1, 4]), sd=st.sampled_from([None, 0.0, 3.0]),
       budget=st.sampled_from([None, 0, 5]), base=st.booleans())
@settings(max_examples=60, deadline=None)
def test_recommended_compose_round_trips_every_rule(ds, dd, gain, eps, ss, sd, budget, base):
    """model_validate_json of the written file equals the ComposeConfig built from the point."""
    served = {"layout": "chain", "stability": {"state_ttl_days": 9.0, "dwell_days": 2.0},
              "exploration": {"epsilon": 0.3, "max_explored": 4, "seed": 5}} if base else None
    exp = experiment_from_dict({"data": LOG, "policy": {"kind": "scorer", "scorer": "t:s"}, "compose": served,
                                "solver": {"name": "exact", "time_limit_ms": 7}})
    row = {"w_diversity": 0.3, "w_churn": 0.02, "max_changes": budget, "exploration": eps, "dwell_sessions": ds,
           "dwell_days": dd, "min_gain": gain, "sticky_sessions": ss, "sticky_days": sd}
    text = json.dumps(recommended_compose(SimpleNamespace(experiment=exp), row))  # type: ignore[arg-type]
    explore = None
    if eps > 0:
        kept = {"max_explored": 4, "seed": 5} if base else {"max_explored": None}
        explore = ExplorationConfig(epsilon=eps, sticky_sessions=ss, sticky_days=sd, **kept)
    expected = ComposeConfig(
        solver="exact", solver_time_ms=7, diversity=0.3, layout="chain" if base else "grid",
        stability=StabilityRules(churn=0.02, max_changes=budget, dwell_sessions=ds, dwell_days=dd, min_gain=gain,
                                 **({"state_ttl_days": 9.0} if base else {})),
        exploration=explore)
    assert ComposeConfig.model_validate_json(text) == expected


# ---------------------------------------------------------------------- the engine
def _block(n_pages: int, n_titles: int, k: int, seed: int) -> PageBlock:
    """One member's pages, one per session a day apart, the same titles with noisy scores."""
    rng = np.random.default_rng(seed)
    n = n_pages * n_titles
    cand = np.tile(np.arange(n_titles * k).reshape(n_titles, k), (n_pages, 1))
    return PageBlock(
        rows=np.arange(n), page_start=np.arange(n_pages + 1) * n_titles, page_id=np.arange(n_pages) + 1,
        member=np.zeros(n_pages, np.int64), title=np.tile(np.arange(n_titles), n_pages),
        row=np.zeros(n, np.int64), col=np.tile(np.arange(n_titles), n_pages), candidates=cand,
        scores=rng.uniform(0.0, 0.1, (n, k)), vectors=rng.normal(size=(n_titles * k, 4)), local=cand,
        session=np.arange(n_pages) + 10, time=np.arange(n_pages) * 86_400.0)


def _runs(choices: np.ndarray, n_titles: int) -> list[int]:
    """Lengths of the runs of one image per title (the last, unfinished run of a title excluded)."""
    per_title = choices.reshape(-1, n_titles)
    runs: list[int] = []
    for t in range(n_titles):
        values = per_title[:, t]
        cut = np.flatnonzero(values[1:] != values[:-1])
        runs += np.diff(np.r_[-1, cut]).tolist()
    return runs


@given(dwell=st.integers(1, 4), seed=st.integers(0, 10_000))
@settings(max_examples=25, deadline=None)
def test_dwell_keeps_an_image_for_its_sessions(dwell, seed):
    block = _block(12, 5, 3, seed)
    config = SolverConfig(name="independent", relative=False, layout=GridLayout(rows=1, cols=5))
    free, held = solve_block(block, [(0.0, 0.0, None), (0.0, 0.0, None, dwell, None, None)], config).choices.T
    assert min(_runs(held, 5)) >= dwell
    assert np.array_equal(free, block.scores.argmax(axis=1))  # no rule: the best image every time
    if dwell > 1:
        assert min(_runs(free, 5)) < dwell  # the noisy scores do move images (the check can fail)


@pytest.mark.parametrize("solver", ["fast", "exact"])
def test_held_titles_stay_held_with_diversity_in_every_solver(solver):
    block = _block(12, 5, 3, 4)
    config = SolverConfig(name=solver, relative=False, layout=GridLayout(rows=1, cols=5))
    free, held, gain = solve_block(block, [(0.3, 0.0, None), (0.3, 0.0, None, 3, None, None),
                                           (0.3, 0.0, None, None, None, 1.0)], config).choices.T
    assert min(_runs(held, 5)) >= 3 and min(_runs(free, 5)) < 3
    assert (gain.reshape(12, 5) == gain.reshape(12, 5)[0]).all()


def test_dwell_days_and_min_gain_hold_as_compose_does():
    block = _block(12, 5, 3, 4)
    config = SolverConfig(name="independent", relative=False, layout=GridLayout(rows=1, cols=5))
    days2, gain, huge = solve_block(block, [(0.0, 0.0, None, None, 2.5, None), (0.0, 0.0, None, None, None, 0.03),
                                            (0.0, 0.0, None, None, None, 1.0)], config).choices.T
    assert min(_runs(days2, 5)) >= 3  # pages are a day apart: kept on days 0, 1, 2
    assert (huge.reshape(12, 5) == huge.reshape(12, 5)[0]).all()  # nothing beats the first image by 1.0
    scores = block.scores.reshape(12, 5, 3)
    shown = gain.reshape(12, 5)
    for p in range(1, 12):
        for t in range(5):
            if shown[p, t] != shown[p - 1, t]:
                assert scores[p, t, shown[p, t]] - scores[p, t, shown[p - 1, t]] > 0.03


# ---------------------------------------------------------------------- a simulated log, with truth
WORLD = {"n_members": 30, "n_titles": 30, "max_images": 4, "seed": 5, "page": {"rows": 2, "cols": 4}}


@pytest.fixture(scope="module")
def sim_run(tmp_path_factory):
    exp = experiment_from_dict({
        "name": "rules", "seed": 2,
        "data": {"kind": "sim", "world": WORLD, "n_days": 6, "schedule_seed": 3},
        "policy": {"kind": "oracle"}, "estimator": {"name": "snips", "n_bootstrap": 50},
        "search": {"dwell_sessions": ["none", 3], "min_gain": ["none", 0.05], "exploration": [0.0, 0.5],
                   "sticky_sessions": [1, "none"], "sticky_days": ["none"]},
        "compute": {"scheduler": "sync", "block_pages": 40, "progress": False},
    })
    return run_sweep(exp, tmp_path_factory.mktemp("rules") / "results", plots=False)


def _row(results, **want):
    rows = [r for r in results.rows() if all(r[k] == v for k, v in want.items())]
    assert len(rows) == 1, want
    return rows[0]


def test_dwell_and_min_gain_cut_churn_in_replay_and_in_the_simulated_deployment(sim_run):
    base = _row(sim_run, dwell_sessions=None, min_gain=None, exploration=0.0, sticky_sessions=1)
    for rule in ({"dwell_sessions": 3, "min_gain": None}, {"dwell_sessions": None, "min_gain": 0.05}):
        ruled = _row(sim_run, exploration=0.0, sticky_sessions=1, **rule)
        assert ruled["churn"] < base["churn"] and ruled["true_churn"] < base["true_churn"], rule
    assert base["churn"] > 0.04  # the oracle's page-blind argmax moves images as members' states change


def test_stickiness_changes_the_truth_but_not_the_replay_estimate(sim_run):
    fresh = _row(sim_run, dwell_sessions=None, min_gain=None, exploration=0.5, sticky_sessions=1)
    held = _row(sim_run, dwell_sessions=None, min_gain=None, exploration=0.5, sticky_sessions=None)
    # a held draw keeps the explored image: the deployed pages change less
    assert held["true_churn"] < fresh["true_churn"] - 0.02
    # per-row replay sees only each row's marginal, (1 - eps) [k = choice] + eps / n: the same
    assert held["take_fraction"] == fresh["take_fraction"]


# ---------------------------------------------------------------------- the user's own log
T0 = datetime(2024, 6, 1, 18, tzinfo=timezone.utc)
SCORER = textwrap.dedent('''
    import zlib
    import numpy as np

    def score(request):
        out = np.zeros((request.n_titles, request.n_images))
        for t, title in enumerate(request.titles):
            for k, image in enumerate(title.image_ids):
                h = zlib.crc32(f"{request.member_id}/{image}/{request.session_id % 5}".encode()) % 1000
                out[t, k] = 0.02 + h / 10000.0
        return out
''')


@pytest.fixture(scope="module")
def own_log(tmp_path_factory):
    """A team's catalog and scorer, 80 pages served by compose(), plays joined by `slate join`."""
    folder = tmp_path_factory.mktemp("own")
    (folder / "rules_team_scorer.py").write_text(SCORER)
    rng = np.random.default_rng(11)
    titles = [(f"T{t:02d}", [f"T{t:02d}-{k}" for k in range(2 + t % 4)]) for t in range(16)]
    images = [i for _, ids in titles for i in ids]
    vectors = rng.normal(size=(len(images), 8)).astype(np.float32)
    pq.write_table(pa.table({"image_id": images, "embedding": [v.tolist() for v in vectors]}),
                   folder / "embeddings.parquet")
    requests = []
    for s in range(80):
        chosen = rng.choice(len(titles), size=8, replace=False)
        requests.append({
            "member_id": s % 6, "session_id": s, "timestamp": (T0 + timedelta(hours=5 * s)).isoformat(),
            "titles": [{"title_id": titles[t][0], "image_ids": titles[t][1], "row": j // 4, "col": j % 4}
                       for j, t in enumerate(chosen)]})
    scorer = NamedScorer("rules_team_scorer:score", folder)
    served = ComposeConfig(solver="exact", solver_time_ms=10_000, solver_grace_ms=10_000, diversity=0.0,
                           stability=StabilityRules(churn=0.0))
    with DecisionLogger(folder / "decisions", batch_pages=16) as logger:
        composer = Composer(scorer, InMemoryStore(), config=served, catalog=ImageEmbeddings(images, vectors),
                            logger=logger)
        for r in requests:
            composer.compose(r)
    plays = pa.table({"member_id": [r["member_id"] for r in requests[::3]],
                      "title_id": [r["titles"][0]["title_id"] for r in requests[::3]],
                      "timestamp": pa.array([T0 + timedelta(hours=5 * s + 1) for s in range(0, 80, 3)],
                                            pa.timestamp("us", tz="UTC")),
                      "reward": [1] * len(requests[::3])})
    join_outcomes(folder / "decisions", plays, folder / "log")
    (folder / "exp.toml").write_text(textwrap.dedent('''
        name = "own-rules"
        [data]
        kind = "log"
        path = "log"
        embeddings = "embeddings.parquet"
        [policy]
        kind = "scorer"
        scorer = "rules_team_scorer:score"
        [solver]
        name = "exact"
        [estimator]
        name = "ips"
        n_bootstrap = 50
        [search]
        diversity = [0.0]
        churn = [0.0, 0.01]
        dwell_sessions = ["none", 3]
        dwell_days = ["none", 2.0]
        min_gain = ["none", 0.02]
        [compose]
        solver_time_ms = 10000
        solver_grace_ms = 10000
        [compute]
        scheduler = "sync"
        block_pages = 30
        progress = false
    '''))
    return SimpleNamespace(folder=folder, requests=requests, catalog=ImageEmbeddings(images, vectors), scorer=scorer)


def test_slate_sweep_over_dwell_and_min_gain_on_own_log_deploys_what_it_evaluated(own_log, capsys):
    """For every point, compose() online with the ComposeConfig loaded from the point's
    recommended-compose.json makes, row for row, the decisions the sweep evaluated."""
    out = own_log.folder / "results"
    assert main(["sweep", str(own_log.folder / "exp.toml"), "--output", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    res = load_results(out)
    assert res.n_points == 16
    from slate.tune.data import prepare

    prep = prepare(res.experiment, own_log.folder)
    log = prep.log
    keys = [(int(log.session_id[r]), log.title_ids[log.title[r]]) for r in range(log.n_rows)]
    churn = {}
    for row in res.rows():
        point = row["point"]
        _, target = res.target(point, own_log.folder)
        text = json.dumps(recommended_compose(res, row))
        config = ComposeConfig.model_validate_json(text)
        online = Composer(own_log.scorer, InMemoryStore(), config=config, catalog=own_log.catalog)
        decided = {}
        for r in own_log.requests:
            decided.update({(r["session_id"], t): i for t, i in online.compose(r).images.items()})
        chosen = [log.image_ids[log.candidates[r, target.choice[r]]] for r in range(log.n_rows)]
        assert chosen == [decided[k] for k in keys], point
        churn[(row["w_churn"], row["dwell_sessions"], row["dwell_days"], row["min_gain"])] = row["churn"]
    # the rules act: each one alone keeps images the unconstrained point changes
    free = churn[(0.0, None, None, None)]
    assert churn[(0.0, 3, None, None)] < free and churn[(0.0, None, 2.0, None)] < free
    assert churn[(0.0, None, None, 0.02)] < free


def test_bad_rule_in_an_experiment_file_is_one_line_from_the_cli(own_log, capsys):
    bad = own_log.folder / "bad.toml"
    bad.write_text((own_log.folder / "exp.toml").read_text().replace('min_gain = ["none", 0.02]',
                                                                      'min_gain = [-0.5]'))
    assert main(["sweep", str(bad), "--output", str(own_log.folder / "bad-out"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "search.min_gain" in err and '>= 0 or "none"' in err


# ---------------------------------------------------------------------- exploration in ComposeConfig
def test_compose_config_exploration_serves_as_sticky_epsilon(own_log):
    """A config's exploration explores exactly as the same StickyEpsilon given explicitly, and a
    kind = "compose" replay sets it aside."""
    from slate.serve import StickyEpsilon
    from slate.serve.offline import ComposePolicy

    explore = {"epsilon": 0.4, "max_explored": 3, "sticky_sessions": 2, "sticky_days": None, "seed": 9}
    base = ComposeConfig(solver="independent", diversity=0.0)
    with_config = Composer(own_log.scorer, InMemoryStore(), config=base.model_copy(
        update={"exploration": ExplorationConfig(**explore)}))
    explicit = Composer(own_log.scorer, InMemoryStore(), StickyEpsilon(**explore), config=base)
    assert isinstance(with_config.exploration, StickyEpsilon) and with_config.exploration == StickyEpsilon(**explore)
    a = [with_config.compose(r) for r in own_log.requests[:30]]
    b = [explicit.compose(r) for r in own_log.requests[:30]]
    assert [d.image_ids for d in a] == [d.image_ids for d in b]
    assert all(np.array_equal(x.propensity, y.propensity) for x, y in zip(a, b, strict=True))
    assert any((d.propensity < 1.0).any() for d in a)  # it did explore
    wins = Composer(own_log.scorer, None, StickyEpsilon(0.0), config=with_config.config)
    assert wins.exploration == StickyEpsilon(0.0)
    from slate.logs import read_impressions

    log, _ = read_impressions(own_log.folder / "log")
    off = ComposePolicy(own_log.scorer, base).action_distribution(log).choice
    on = ComposePolicy(own_log.scorer, with_config.config).action_distribution(log).choice
    assert np.array_equal(off, on)
    with pytest.raises(ValueError, match="epsilon"):
        ComposeConfig.model_validate_json('{"exploration": {"epsilon": 1.5}}')
