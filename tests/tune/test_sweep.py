"""Running sweeps end to end on small simulated worlds and logs: numbers, determinism, resume,
the simulator's truth, plots, reports and the command line."""

from __future__ import annotations

import argparse
import json
from html import escape as html_escape

import numpy as np
import pyarrow.parquet as pq
import pytest

import slate.tune.sweep as sweep_module
from slate.tune import SweepError, experiment_from_dict, load_results, run_sweep, write_report
from slate.tune.cli import add_report_parser, add_sweep_parser

WORLD = {"n_members": 40, "n_titles": 40, "max_images": 5, "seed": 3, "page": {"rows": 2, "cols": 5}}


def sim_experiment(**overrides):
    spec = {
        "name": "tiny",
        "seed": 1,
        "data": {"kind": "sim", "world": WORLD, "n_days": 4, "schedule_seed": 2},
        "policy": {"kind": "oracle"},
        "estimator": {"name": "snips", "n_bootstrap": 100},
        "search": {"diversity": [0.0, 1.5], "churn": [0.0, 0.6], "exploration": [0.0, 0.2]},
        "constraints": {"max_churn": 0.1},
        "compute": {"scheduler": "sync", "block_pages": 12, "progress": False},
    }
    spec.update(overrides)
    return experiment_from_dict(spec)


def same_table(a, b):
    assert a.column_names == b.column_names
    for name in a.column_names:
        x, y = a.column(name).to_pylist(), b.column(name).to_pylist()
        if a.column(name).type.id == b.column(name).type.id and isinstance(x[0], float):
            assert np.array_equal(np.array(x, float), np.array(y, float), equal_nan=True), name
        else:
            assert x == y, name


@pytest.fixture(scope="module")
def sim_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim") / "results"
    return run_sweep(sim_experiment(), out)


# ---------------------------------------------------------------------- the table
def test_table_has_every_point_with_hash_version_seed(sim_run):
    import slate

    t = sim_run.table
    assert t.num_rows == 8
    assert set(t.column("config_hash").to_pylist()) == {sim_run.experiment.config_hash()}
    assert set(t.column("slate_version").to_pylist()) == {slate.__version__}
    assert set(t.column("seed").to_pylist()) == {1}
    meta = pq.read_schema(sim_run.path / "results.parquet").metadata
    assert meta[b"slate.config_hash"].decode() == sim_run.experiment.config_hash()
    csv = (sim_run.path / "results.csv").read_text().splitlines()
    assert len(csv) == 9 and "take_fraction_low" in csv[0]
    lo, v, hi = (sim_run.column(c) for c in ("take_fraction_low", "take_fraction", "take_fraction_high"))
    assert (lo <= v).all() and (v <= hi).all() and (hi - lo > 0).all()
    # the front is the brute-force front of the table
    t_, d, c = sim_run.column("take_fraction"), sim_run.column("diversity"), sim_run.column("churn")
    for i in range(len(t_)):
        dominated = any(t_[j] >= t_[i] and d[j] >= d[i] and c[j] <= c[i] and
                        (t_[j] > t_[i] or d[j] > d[i] or c[j] < c[i]) for j in range(len(t_)))
        assert sim_run.column("pareto")[i] == (not dominated)


def test_weights_move_diversity_and_churn_the_right_way(sim_run):
    rows = {(r["w_diversity"], r["w_churn"], r["exploration"]): r for r in sim_run.rows()}
    plain, diverse, stable = rows[(0.0, 0.0, 0.0)], rows[(1.5, 0.0, 0.0)], rows[(0.0, 0.6, 0.0)]
    assert diverse["diversity"] > plain["diversity"] + 0.02
    assert stable["churn"] < plain["churn"]
    assert diverse["true_diversity"] > plain["true_diversity"]
    # exploration adds churn (independent draws) and costs take fraction in truth
    explored = rows[(0.0, 0.0, 0.2)]
    assert explored["churn"] > plain["churn"]
    assert explored["true_take_fraction"] < plain["true_take_fraction"]


def test_unweighted_point_is_the_argmax_policy_exactly(sim_run):
    """Diversity 0, churn 0, no budget, no exploration is the per-title argmax of the scores:
    the same replay estimate as evaluating that policy directly, and the same truths as the
    simulator computes for ArgmaxPolicy."""
    from slate.replay import evaluate
    from slate.sim import (
        ArgmaxPolicy,
        UniformRandomLogging,
        counterfactual_value,
        make_config,
        make_schedule,
        make_world,
        oracle_scorer,
        policy_value,
        simulate,
    )
    from slate.tune.data import prepare

    exp = sim_run.experiment
    prep = prepare(exp)
    choice = np.argmax(np.where(prep.log.candidates >= 0, prep.scores, -np.inf), axis=1)
    direct = evaluate(prep.log, {"choice": choice}, "snips", n_bootstrap=100, seed=exp.seed, metrics=False)
    row = next(r for r in sim_run.rows() if r["w_diversity"] == 0 and r["w_churn"] == 0 and r["exploration"] == 0)
    assert row["take_fraction"] == direct.estimate.value
    assert (row["take_fraction_low"], row["take_fraction_high"]) == direct.estimate.interval

    world = make_world(make_config(**WORLD))
    sched = make_schedule(world, n_days=4, first_day=0, seed=2)
    run = simulate(sched, UniformRandomLogging(seed=0))
    argmax = ArgmaxPolicy(oracle_scorer())
    assert row["true_take_fraction_logged"] == pytest.approx(counterfactual_value(run, argmax).take_fraction, abs=1e-12)
    deployed = policy_value(sched, argmax)
    assert row["true_take_fraction"] == pytest.approx(deployed.take_fraction, abs=1e-12)
    assert row["true_churn"] == pytest.approx(deployed.churn, abs=1e-12)


def test_replay_churn_matches_the_simulated_deployment(sim_run):
    """Churn computed from the decisions on the logged pages is the churn the setting has when
    simulated on-policy (the sessions and pages are the same; only scores drift with what the
    member learned), within a few points."""
    churn, true_churn = sim_run.column("churn"), sim_run.column("true_churn")
    assert np.abs(churn - true_churn).max() < 0.05
    div, true_div = sim_run.column("diversity"), sim_run.column("true_diversity")
    assert np.abs(div - true_div).max() < 0.02


# ---------------------------------------------------------------------- determinism and resume
def test_rerun_gives_identical_numbers(sim_run, tmp_path):
    again = run_sweep(sim_run.experiment, tmp_path / "again", plots=False)
    same_table(sim_run.table, again.table)


def test_threads_scheduler_gives_the_same_table(sim_run, tmp_path):
    threaded = run_sweep(sim_run.experiment, tmp_path / "threads", scheduler="threads", n_workers=2, plots=False)
    same_table(sim_run.table, threaded.table)


class Interrupt(BaseException):
    pass


def test_interrupted_sweep_resumes_to_the_same_table(sim_run, tmp_path, monkeypatch):
    out = tmp_path / "resumed"
    calls = {"solve": 0, "eval": 0}
    real_solve, real_eval = sweep_module._solve_block, sweep_module.evaluate_point

    def flaky_solve(*args):
        calls["solve"] += 1
        if calls["solve"] == 3:
            raise Interrupt
        return real_solve(*args)

    monkeypatch.setattr(sweep_module, "_solve_block", flaky_solve)
    with pytest.raises(Interrupt):
        run_sweep(sim_run.experiment, out, plots=False)
    stored = sorted(p.name for p in (out / "work").glob("solve-*.npz"))
    assert stored == ["solve-00000.npz", "solve-00001.npz"]
    assert not (out / "results.parquet").exists()

    def flaky_eval(*args):
        calls["eval"] += 1
        if calls["eval"] == 4:
            raise Interrupt
        return real_eval(*args)

    monkeypatch.setattr(sweep_module, "_solve_block", real_solve)
    monkeypatch.setattr(sweep_module, "evaluate_point", flaky_eval)
    with pytest.raises(Interrupt):
        run_sweep(sim_run.experiment, out, plots=False)
    assert len(list((out / "work").glob("point-*.json"))) == 3
    n_blocks = len(list((out / "work").glob("solve-*.npz")))

    monkeypatch.setattr(sweep_module, "evaluate_point", real_eval)
    resumed = run_sweep(sim_run.experiment, out, plots=False)
    same_table(sim_run.table, resumed.table)
    assert len(list((out / "work").glob("solve-*.npz"))) == n_blocks  # nothing solved twice


def test_solve_cache_reuses_solves_when_only_the_estimator_changes(sim_run, tmp_path, monkeypatch):
    compute = {"scheduler": "sync", "block_pages": 12, "progress": False, "solve_cache": "cache"}
    first = run_sweep(sim_experiment(compute=compute), tmp_path / "snips", base_dir=tmp_path, plots=False)
    same_table(sim_run.table, first.table)  # the cache does not change a number
    n_blocks = first.summary["timing"]["n_blocks"]
    assert first.summary["timing"]["n_blocks_solved_this_run"] == n_blocks
    assert len(list((tmp_path / "cache").glob("solves-*/solve-*.npz"))) == n_blocks

    def must_not_solve(*args):
        raise AssertionError("a cached block was solved again")

    estimator = {"name": "ips", "n_bootstrap": 100}
    monkeypatch.setattr(sweep_module, "_solve_block", must_not_solve)
    monkeypatch.setattr(sweep_module, "_true_point", must_not_solve)  # the truth is cached too
    reused = run_sweep(sim_experiment(compute=compute, estimator=estimator), tmp_path / "ips",
                       base_dir=tmp_path, plots=False)
    assert reused.summary["timing"]["n_blocks_solved_this_run"] == 0
    monkeypatch.undo()
    fresh = run_sweep(sim_experiment(estimator=estimator), tmp_path / "ips-fresh", plots=False)
    same_table(fresh.table, reused.table)
    assert np.isfinite(reused.column("true_take_fraction")).all()
    # another seed makes other decisions: it must not pick up the cached solves
    other = run_sweep(sim_experiment(compute=compute, seed=2), tmp_path / "seed2", base_dir=tmp_path, plots=False)
    assert other.summary["timing"]["n_blocks_solved_this_run"] == other.summary["timing"]["n_blocks"]
    assert len(list((tmp_path / "cache").glob("solves-*"))) == 2


def test_a_points_target_reproduces_its_estimate_with_no_solve(sim_run, monkeypatch):
    from slate.replay import evaluate

    def must_not_solve(*args):
        raise AssertionError("target() must not solve pages")

    monkeypatch.setattr(sweep_module, "_solve_block", must_not_solve)
    exp = sim_run.experiment
    for point in (1, 6):  # exploration 0.2 and 0.0
        log, target = sim_run.target(point)
        report = evaluate(log, target, exp.estimator.name, n_bootstrap=exp.estimator.n_bootstrap,
                          seed=exp.seed, level=exp.estimator.level, metrics=False)
        e = report.estimate
        assert (e.value, *e.interval) == (sim_run.column("take_fraction")[point],
                                          sim_run.column("take_fraction_low")[point],
                                          sim_run.column("take_fraction_high")[point])
    assert sim_run.column("exploration")[1] > 0 and sim_run.column("exploration")[6] == 0
    with pytest.raises(SweepError, match=r"'point' must be one of 0\.\.7"):
        sim_run.target(8)


def test_output_folder_of_another_experiment_is_refused(sim_run):
    other = sim_experiment(seed=2)
    with pytest.raises(SweepError, match="holds results of experiment"):
        run_sweep(other, sim_run.path, plots=False)
    reblocked = sim_experiment(compute={"scheduler": "sync", "block_pages": 5, "progress": False})
    with pytest.raises(SweepError, match="block_pages"):
        run_sweep(reblocked, sim_run.path, plots=False)


# ---------------------------------------------------------------------- plots and report
def test_plots_are_written_and_not_empty(sim_run):
    plots = sorted((sim_run.path / "plots").iterdir())
    names = {p.name for p in plots}
    for stem in ("front", "take_vs_diversity_weight", "page_before_after", "sessions_before_after"):
        assert {f"{stem}.png", f"{stem}.svg"} <= names
    for p in plots:
        data = p.read_bytes()
        assert len(data) > 5000, p
        if p.suffix == ".png":
            assert data[:8] == b"\x89PNG\r\n\x1a\n"
        else:
            assert b"<svg" in data[:2000]


def test_report_is_self_contained(sim_run, tmp_path):
    md, page = write_report(load_results(sim_run.path), tmp_path / "report")
    html = page.read_text()
    assert html.count("data:image/png;base64,") == 6  # with the paired-differences and churn-band plots
    assert sim_run.experiment.config_hash() in html and "Recommended setting" in html
    text = md.read_text()
    assert "## Front (" in text and "](plots/front.png)" in text and "](plots/front_by_churn.png)" in text
    assert (tmp_path / "report" / "plots" / "front.png").stat().st_size > 5000
    # the paired front of the points meeting the experiment's constraints
    n_front = len(sim_run.front(sim_run.experiment.constraints))
    front_section = text.split("## Front (")[1].split("###")[0]
    assert front_section.count("\n| ") == n_front + 2  # header, one line per front point, the logging policy


def test_load_results_refuses_an_unfinished_folder(tmp_path):
    with pytest.raises(SweepError, match="not a finished sweep"):
        load_results(tmp_path)


# ---------------------------------------------------------------------- a log on disk, the CLI
@pytest.fixture(scope="module")
def log_files(tmp_path_factory):
    from slate.logs import write_impressions
    from slate.sim import UniformRandomLogging, make_config, make_schedule, make_world, simulate
    from slate.tune.data import write_embeddings

    folder = tmp_path_factory.mktemp("log")
    world = make_world(make_config(**WORLD))
    run = simulate(make_schedule(world, n_days=6, seed=4), UniformRandomLogging(seed=1))
    write_impressions(folder / "log.parquet", run.to_table())
    write_embeddings(folder / "images.parquet", world.image_ids, world.embeddings)  # no styles: k-means
    (folder / "exp.toml").write_text(
        'name = "from-log"\nseed = 4\n'
        '[data]\nkind = "log"\npath = "log.parquet"\nembeddings = "images.parquet"\n'
        '[policy]\nkind = "bandit"\nname = "take_rate"\ntrain_fraction = 0.5\n'
        '[estimator]\nname = "ips"\nn_bootstrap = 50\n'
        '[search]\ndiversity = [0.0, 2.0]\nchurn = [0.0, 1.0]\nmax_changes = ["none", 1]\n'
        '[constraints]\nmax_churn = 0.2\n'
        '[compute]\nscheduler = "sync"\nblock_pages = 20\nprogress = false\n'
    )
    return folder


def run_cli(argv):
    parser = argparse.ArgumentParser(prog="slate")
    sub = parser.add_subparsers(dest="command", required=True)
    add_sweep_parser(sub)
    add_report_parser(sub)
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_sweep_and_report_on_a_log(log_files, capsys):
    out = log_files / "results"
    assert run_cli(["sweep", str(log_files / "exp.toml"), "--output", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "ms each" in printed and "recommended: point" in printed and "config hash" in printed
    res = load_results(out)
    # the front printed is the report's: paired differences, under the experiment's constraints
    front_line = next(line for line in printed.splitlines() if line.startswith("front ("))
    assert "Pareto front" not in printed
    cons = res.experiment.constraints
    assert front_line.endswith(", ".join(str(int(i)) for i in res.front(cons)) or "none")
    assert res.n_points == 8
    assert np.isnan(res.column("true_take_fraction")).all()  # no truth for a log
    rows = {(r["w_diversity"], r["w_churn"], r["max_changes"]): r for r in res.rows()}
    assert rows[(2.0, 0.0, None)]["diversity"] > rows[(0.0, 0.0, None)]["diversity"]
    assert rows[(0.0, 1.0, None)]["churn"] <= rows[(0.0, 0.0, None)]["churn"]
    # a budget of one change per page keeps churn at most one title per page
    budget = rows[(0.0, 0.0, 1)]
    assert budget["churn"] <= rows[(0.0, 0.0, None)]["churn"]
    manifest = (out / "manifest.json").read_text()
    assert '"log_sha256"' in manifest and '"experiment"' in manifest
    assert run_cli(["report", str(out), "--max-churn", "0.05"]) == 0
    printed = capsys.readouterr().out
    assert "report.html" in printed
    html = (out / "report.html").read_text()
    assert "churn &lt;= 0.05" in html or "churn <= 0.05" in html


def test_budget_caps_the_changes_of_every_page(log_files):
    """With max_changes = 1, no page changes the image of more than one title against the
    setting's own previous images (checked on the stored decisions)."""
    from slate.tune import load_experiment
    from slate.tune.data import prepare

    exp, base = load_experiment(log_files / "exp.toml")
    out = log_files / "results-budget"
    res = run_sweep(exp, out, base_dir=base, plots=False)
    prep = prepare(exp, base)
    settings = []
    for p in exp.points():
        if p.solve_key not in settings:
            settings.append(p.solve_key)
    log = prep.log
    order = np.lexsort((log.page_id, log.session_id, log.timestamp, log.member_id))

    def most_changes(setting):
        col = [s[:3] for s in settings].index(setting)
        choices = np.full(log.n_rows, -1, dtype=np.int64)
        for f in sorted((out / "work").glob("solve-*.npz")):
            with np.load(f) as z:
                choices[z["rows"]] = z["choices"][:, col]
        images = log.candidates[np.arange(log.n_rows), choices]
        last: dict[tuple[int, int], int] = {}
        changes: dict[int, int] = {}
        for r in order.tolist():
            key = (int(log.member_id[r]), int(log.title[r]))
            if key in last and last[key] != images[r]:
                changes[int(log.page_id[r])] = changes.get(int(log.page_id[r]), 0) + 1
            last[key] = int(images[r])
        return max(changes.values(), default=0)

    assert most_changes((2.0, 0.0, None)) > 1  # without a budget, diversity reshuffles pages
    assert most_changes((2.0, 0.0, 1)) == 1
    assert res.n_points == 8


def test_missing_embedding_is_a_clear_error(log_files, tmp_path):
    from slate.tune import InvalidExperimentError
    from slate.tune.data import write_embeddings

    write_embeddings(tmp_path / "few.parquet", ["nothing"], np.ones((1, 3)))
    exp = experiment_from_dict({
        "data": {"kind": "log", "path": str(log_files / "log.parquet"), "embeddings": str(tmp_path / "few.parquet")},
        "compute": {"scheduler": "sync"},
    })
    with pytest.raises(InvalidExperimentError, match=r"must have an embedding for every image of the log; got none for \d+"):
        run_sweep(exp, tmp_path / "out")


# ---------------------------------------------------------------------- paired comparisons
def test_paired_columns_use_the_same_replicates_as_the_estimates(sim_run):
    from slate.tune import load_replicates

    reps, logged = load_replicates(sim_run.path)
    B = sim_run.experiment.estimator.n_bootstrap
    assert reps.shape == (sim_run.n_points, B) and logged.shape == (B,)
    # every point's stored replicates give its own marginal interval back
    q = np.quantile(reps, [0.025, 0.975], axis=1)
    assert np.allclose(q[0], sim_run.column("take_fraction_low"))
    assert np.allclose(q[1], sim_run.column("take_fraction_high"))
    take = sim_run.column("take_fraction")
    diff = sim_run.column("diff_logged")
    assert np.allclose(diff, take - sim_run.summary["logged"]["take_fraction"])
    best = int(np.argmax(np.where(sim_run.column("weights_exploded"), -np.inf, take)))
    assert sim_run.column("diff_best")[best] == 0 and sim_run.column("tied_best")[best]
    lo, hi = np.quantile(reps - reps[best], [0.025, 0.975], axis=1)
    others = np.arange(sim_run.n_points) != best
    # shifted up by the optimism of the winner of each replicate among the eligible points
    ok = ~sim_run.column("weights_exploded").astype(bool)
    ok = ok if ok.any() else np.ones_like(ok)
    sub = reps[ok]
    win = np.argmax(sub, axis=0)
    shift = max(float(np.mean(sub[win, np.arange(B)] - sub.mean(axis=1)[win])), 0.0)
    assert shift > 0
    assert np.allclose(sim_run.column("diff_best_low")[others], lo[others] + shift)
    assert np.allclose(sim_run.column("diff_best_high")[others], hi[others] + shift)
    assert np.allclose(sim_run.column("diff_best")[others], (take - take[best])[others] + shift)
    assert np.nansum(sim_run.column("prob_best")) == pytest.approx(1.0)
    paired = sim_run.summary["paired"]
    assert paired["rule"] == "best_estimate" and "selection_bias" in paired


def test_separation_from_logging_is_in_the_table_summary_and_report(sim_run, tmp_path):
    """Every point carries its estimate's separation from the logging policy; it agrees with the
    paired columns (same replicates), and summary.json and both report pages state it for the
    recommended point."""
    sep = sim_run.column("separated")
    text = sim_run.table.column("separation").to_pylist()
    low, high = sim_run.column("diff_logged_low"), sim_run.column("diff_logged_high")
    assert len(text) == sim_run.n_points and all(t.startswith(("separated", "not separated")) for t in text)
    assert np.array_equal(sep.astype(bool), (low > 0) | (high < 0))
    from slate.tune.config import Constraints
    from slate.tune.sweep import separation_summary

    summary = json.loads((sim_run.path / "summary.json").read_text())
    assert sim_run.recommendation().index is None and summary["separation"] is None  # nothing recommended
    anyway = Constraints(max_churn=0.1, allow_unproven=True)
    rec = sim_run.recommendation(anyway).index
    assert rec is not None
    s = separation_summary(sim_run, rec)
    assert s["point"] == int(sim_run.column("point")[rec]) and s["separation"] == text[rec]
    assert s["diff_logged_interval"] == pytest.approx([low[rec], high[rec]])
    md, page = write_report(sim_run, tmp_path / "rep", constraints=anyway)
    line = f"Against the logging policy (the estimate's own paired interval): {text[rec]}."
    assert line in md.read_text()
    assert html_escape(line) in page.read_text()
    every = md.read_text().split("## Every point")[1].strip().splitlines()
    assert " separated " in every[0]  # a column of the table of every point


def test_paired_front_keeps_every_classic_front_point_and_the_report_says_so(sim_run, tmp_path):
    from slate.tune import Constraints, front, load_replicates

    plain = sim_run.column("pareto").astype(bool)
    clear = sim_run.column("front_paired").astype(bool)
    assert (clear | ~plain).all()        # a front point is never clearly dominated
    reps, _ = load_replicates(sim_run.path)
    cols = [sim_run.column(k) for k in ("take_fraction", "diversity", "churn")]
    assert np.array_equal(clear, front(*cols, replicates=reps))
    assert np.array_equal(sim_run.front(), np.flatnonzero(clear))             # paired by default
    assert np.array_equal(sim_run.front(paired=False), np.flatnonzero(plain))
    cons = Constraints(max_churn=0.3)
    assert np.array_equal(sim_run.front(cons), np.flatnonzero(front(*cols, replicates=reps, constraints=cons)))
    assert (cols[2][sim_run.front(cons)] <= 0.3).all()
    anyway = Constraints(max_churn=0.3, allow_unproven=True)
    md, _ = write_report(sim_run, tmp_path / "rep", constraints=anyway)
    text = md.read_text()
    assert "not clearly dominated on paired differences" in text
    assert (tmp_path / "rep" / "plots" / "paired.png").stat().st_size > 1000
    rec = sim_run.recommendation(anyway)
    assert rec.index is not None
    n_same = len(rec.indistinguishable)
    assert f"{n_same} other points meeting the constraints are indistinguishable from the recommended one" in text
    assert f"{n_same} other points meeting the constraints cannot be told apart" in (tmp_path / "rep" / "report.html").read_text()
    assert " indistinguishable |" in text                  # a column of the tables
    assert sim_run.summary["paired"]["n_indistinguishable"] == 0   # no recommendation by default
    assert sim_run.summary["paired"]["n_front_paired"] == int(clear.sum())


def test_front_by_churn_figure_shows_the_constraint_and_the_paired_front(sim_run):
    from slate.tune import Constraints
    from slate.tune.plots import churn_bands, front_by_churn_figure

    cons = Constraints(max_churn=0.3, min_diversity=0.8)
    fig = front_by_churn_figure(sim_run, cons)
    churn = sim_run.column("churn")
    edges = churn_bands(churn, 0.3)
    assert 0.3 in edges.tolist()                          # no panel straddles the constraint
    panels = [ax for ax in fig.axes if ax.get_gid() is None and ax.collections]
    assert len(panels) == len(edges) - 1

    def offsets(gid):
        pts = [c.get_offsets() for ax in panels for c in ax.collections if c.get_gid() == gid]
        return np.concatenate(pts) if pts else np.empty((0, 2))

    take, div = sim_run.column("take_fraction"), sim_run.column("diversity")
    xy = {(round(float(x), 9), round(float(y), 9)) for x, y in zip(div, take, strict=True)}

    def rows(gid):
        got = {(round(float(x), 9), round(float(y), 9)) for x, y in offsets(gid)}
        assert got <= xy
        return {i for i in range(len(take)) if (round(float(div[i]), 9), round(float(take[i]), 9)) in got}

    breaks = {i for i in range(len(take)) if churn[i] > 0.3 or div[i] < 0.8}
    assert rows("filtered") == breaks                      # greyed: exactly the points breaking them
    assert rows("feasible") == set(range(len(take))) - breaks
    assert rows("front_paired") == set(sim_run.front(cons).tolist())
    assert rows("front_plain") == set(sim_run.front(cons, paired=False).tolist())
    assert rows("front_plain") <= rows("front_paired") and not rows("front_paired") & breaks
    lines = [ln for ax in panels for ln in ax.lines if ln.get_gid() == "min_diversity"]
    assert lines and all(np.allclose(ln.get_xdata(), 0.8) for ln in lines)
    shaded = [ax for ax in panels if "breaks churn <= 0.3" in ax.get_title()]
    assert len(shaded) == int((edges[:-1] >= 0.3).sum())


def test_a_points_replay_options_are_the_replay_options_of_its_estimator_spec():
    """The sweep's evaluation context carries one ReplayOptions: the estimator spec's own
    (EstimatorSpec.replay_options, the spelling `slate replay` uses), page metrics off."""
    from slate.tune.estimator_choice import choose_estimator

    exp = sim_experiment(estimator={"name": "neighbourhood", "n_bootstrap": 40, "level": 0.9,
                                    "options": {"neighbours": "row"}})
    opts = sweep_module._point_replay_options(choose_estimator(exp, None), exp)
    spec = exp.estimator.replay_options(seed=exp.seed, metrics=False)
    assert (opts.n_bootstrap, opts.level, opts.seed, opts.metrics) == (40, 0.9, 1, False)
    assert (opts.n_bootstrap, opts.level, opts.seed, opts.metrics) == (
        spec.n_bootstrap, spec.level, spec.seed, spec.metrics)
    assert opts.estimator.name == spec.estimator.name == "neighbourhood"
    assert opts.estimator.neighbours == spec.estimator.neighbours == "row"
