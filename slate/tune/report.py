"""``slate report RESULTS``: a results folder as a Markdown page and a self-contained HTML page.

The page holds what the experiment was (config hash, library version, seed, data, estimator),
the recommended setting under the constraints with its interval (and the simulator's truth when
known), the Pareto front, every point, the logging policy's own numbers, the cost of a page
solve, and the four plots. ``report.md`` links the plots in ``plots/``; ``report.html`` embeds
them (base64), so it can be mailed on its own.
"""

from __future__ import annotations

import base64
import html
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from slate.tune.config import Constraints
from slate.tune.sweep import SweepResults, load_replicates, load_results, separation_summary

__all__ = ["recommended_compose", "report_sections", "write_report"]

_FRONT_COLUMNS = (
    "point", "w_diversity", "w_churn", "max_changes", "exploration", "take_fraction",
    "take_fraction_low", "take_fraction_high", "diversity", "churn",
)
_PAIRED = ("diff_logged", "diff_logged_low", "diff_logged_high", "diff_best", "diff_best_low",
           "diff_best_high", "prob_best", "tied_best")
_FRONT_TITLE = ("Front (take fraction up, diversity up, churn down) of the points meeting the constraints; "
                "a point leaves it only when another is clearly better on paired differences "
                "(on the estimates when the sweep kept no replicates)")
_TRUTH = ("true_take_fraction", "true_take_fraction_logged", "true_diversity", "true_churn")
_PLOTS = (
    ("front", "Front (not clearly dominated on paired differences, or the plain Pareto front without "
              "replicates): take fraction vs diversity, coloured by churn"),
    ("front_by_churn", "The front by churn band: constraints drawn, points breaking them greyed, "
                       "the paired front ringed"),
    ("paired", "Paired differences against the logging policy and the best point (same bootstrap replicates)"),
    ("take_vs_diversity_weight", "Take fraction vs diversity weight (replay intervals)"),
    ("page_before_after", "One page before and after diversification (tiles coloured by image style)"),
    ("sessions_before_after", "One member across sessions before and after the stability terms"),
)


def _fmt(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else ""
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if np.isnan(v):
            return "-"
        return f"{v:.4g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"
    return str(value)


def _table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> list[list[str]]:
    return [[_fmt(r.get(c)) for c in columns] for r in rows]


def report_sections(results: SweepResults, constraints: Constraints | None = None) -> dict[str, Any]:
    """The report's content as plain data (what both pages render)."""
    cons = results.experiment.constraints if constraints is None else constraints
    rows = results.rows()
    rec = results.recommendation(cons)
    same = set(rec.indistinguishable)
    for i, r in enumerate(rows):
        r["indistinguishable"] = "recommended" if i == rec.index else i in same
    has_truth = bool(np.isfinite(results.column("true_take_fraction")).any())
    cols = list(_FRONT_COLUMNS) + ([c for c in _TRUTH if c in results.table.column_names] if has_truth else [])
    cols.append("indistinguishable")
    front_rows = sorted((rows[i] for i in results.front(cons)), key=lambda r: -r["take_fraction"])
    paired = [c for c in _PAIRED if c in results.table.column_names]
    paired += [c for c in ("separated",) if c in results.table.column_names]
    marks = ["pareto", *(["front_paired"] if "front_paired" in results.table.column_names else []), "near_front"]
    exp = results.experiment
    s = results.summary
    timing = s.get("timing", {})
    facts = [
        ("experiment", exp.name),
        ("config hash", s.get("config_hash", rows[0]["config_hash"] if rows else "")),
        ("slate version", s.get("slate_version", rows[0]["slate_version"] if rows else "")),
        ("seed", exp.seed),
        ("data", f"{exp.data.kind}: {s.get('n_pages', '?')} pages, {s.get('n_rows', '?')} (page, title) rows"),
        ("policy", f"{exp.policy.kind} {exp.policy.name if exp.policy.kind == 'bandit' else ''}".strip()),
        ("estimator", f"{exp.estimator.name} {dict(exp.estimator.options) or ''}, {exp.estimator.level:.0%} interval, "
                      f"{exp.estimator.n_bootstrap} bootstrap replicates (pages)"),
        ("solver", f"{exp.solver.name}, weights {exp.search.weights}"),
        ("points", f"{results.n_points} ({s.get('n_settings', '?')} distinct solver settings)"),
        ("page solves", f"{timing.get('n_solves', '?')}, {_fmt(timing.get('ms_per_solve'))} ms each"),
        ("wall time", f"{_fmt(timing.get('seconds_total'))} s on {timing.get('scheduler', '?')}"),
    ]
    if "front_paired" in results.table.column_names:
        facts.append(("front", f"{int(results.column('pareto').sum())} of {results.n_points} points on the Pareto "
                               f"front of the estimates; {int(results.column('front_paired').sum())} not clearly "
                               "dominated on paired differences (front_paired); "
                               f"{len(front_rows)} on the paired front of the points meeting the constraints"))
    if rec.index is not None and load_replicates(results.path) is not None:
        facts.append(("indistinguishable", f"{len(rec.indistinguishable)} other points meeting the constraints "
                                           "cannot be told apart from the recommended one"))
    data = s.get("data", {})
    if data.get("in_sample"):
        facts.append(("warning", "the policy was fitted on the evaluated log itself (in-sample): estimates are optimistic"))
    if data.get("log_sha256"):
        facts.append(("log sha256", data["log_sha256"]))
    logged = s.get("logged", {})
    logging_row = _logging_row(logged, int(s.get("n_rows", 0) or 0), exp.estimator.level)
    if logging_row is not None:
        front_rows = sorted([*front_rows, logging_row], key=lambda r: -r["take_fraction"])
        rows = [*rows, logging_row]
    return {
        "title": f"Sweep report: {exp.name}",
        "facts": facts,
        "recommended": None if rec.index is None else rows[rec.index],
        "reason": rec.reason,
        "columns": cols,
        "front": _table(front_rows, cols),
        "all": _table(rows, [*cols, *paired, *marks, "weights_exploded"]),
        "all_columns": [*cols, *paired, *marks, "weights_exploded"],
        "paired": _paired_lines(results, rec),
        "separation": separation_summary(results, rec.index),
        "logged": [[k, _fmt(v)] for k, v in logged.items()],
        "has_truth": has_truth,
    }


def _paired_lines(results: SweepResults, rec: Any) -> list[str]:
    """What the paired bootstrap says about the recommendation (empty without replicates)."""
    if rec.index is None or "diff_logged_low" not in results.table.column_names:
        return []
    i = rec.index
    col = results.column
    if not np.isfinite(col("diff_logged_low")[i]):
        return []
    lines = [
        f"Paired difference against the logging policy {_fmt(col('diff_logged')[i])} "
        f"[{_fmt(col('diff_logged_low')[i])}, {_fmt(col('diff_logged_high')[i])}] "
        "(the same bootstrap replicates for both, so shared page effects cancel).",
        f"Rule {rec.rule}; {len(rec.tied)} of the eligible points cannot be told apart from the best "
        f"eligible one (paired interval includes 0): points "
        f"{', '.join(str(int(col('point')[j])) for j in rec.tied) or 'none'}; "
        f"bootstrap probability that the chosen point is the best: {_fmt(rec.prob_best)}.",
        f"{len(rec.indistinguishable)} other points meeting the constraints are indistinguishable from "
        f"the recommended one (their paired interval against it includes 0): points "
        f"{', '.join(str(int(col('point')[j])) for j in rec.indistinguishable) or 'none'} "
        "(column indistinguishable; each point's bootstrap probability of being the best: column prob_best).",
    ]
    if np.isfinite(rec.selection_bias):
        lines.append(
            f"The best estimate overstates its point's value by about {_fmt(rec.selection_bias)} "
            "(bootstrap selection bias, Tibshirani & Tibshirani 2009): subtract it before quoting "
            "the best estimate as the value of deploying it.")
    return lines


def _logging_row(logged: dict[str, Any], n_rows: int, level: float) -> dict[str, Any] | None:
    """The logging policy as a row of the tables (its on-policy take fraction, a normal interval)."""
    if "take_fraction" not in logged:
        return None
    from statistics import NormalDist

    p = float(logged["take_fraction"])
    half = NormalDist().inv_cdf(0.5 + level / 2) * (p * (1 - p) / max(n_rows, 1)) ** 0.5
    return {"point": "logging (now)", "w_diversity": None, "w_churn": None, "max_changes": None,
            "exploration": None, "take_fraction": p, "take_fraction_low": p - half,
            "take_fraction_high": p + half, "diversity": logged.get("diversity"),
            "churn": logged.get("churn"), "pareto": None, "near_front": None, "weights_exploded": None,
            "front_paired": None, "indistinguishable": False}


def recommended_compose(results: SweepResults, row: dict[str, Any]) -> dict[str, Any]:
    """The :class:`slate.serve.ComposeConfig` (as a JSON-ready dict) of a sweep point: its weights
    are the config's fields (``diversity``; ``stability.churn``, ``max_changes``,
    ``dwell_sessions``, ``dwell_days``, ``min_gain``; ``exploration.epsilon``,
    ``sticky_sessions``, ``sticky_days``; the solver). Raises :class:`SweepError` for a sweep of
    relative weights (they do not deploy).

    The fields the sweep does not vary (layout, time budgets, ``state_ttl_days``,
    ``exploration.max_explored`` and ``seed``) come from the experiment's ``[compose]`` table
    (the config served today), as given; a rule column missing from ``row`` (results of an
    older sweep) keeps the ``[compose]`` value. An exploration rate of 0 deploys no exploration
    (``exploration = null``); a positive rate without ``[compose] exploration`` deploys
    ``max_explored = null``, the uncapped per-title rate the sweep evaluated.
    """
    from slate.serve import ComposeConfig, ExplorationConfig
    from slate.stability import StabilityRules
    from slate.tune.sweep import SweepError

    exp = results.experiment
    if exp.search.weights != "absolute":
        raise SweepError(
            "The sweep's weights are relative (scaled page by page): they are not ComposeConfig "
            "weights. Run the sweep with [search] weights = \"absolute\" to deploy its recommendation."
        )
    base = ComposeConfig.model_validate(exp.compose or {})
    solver: dict[str, Any] = {"solver": exp.solver.name, "solver_options": dict(exp.solver.options)}
    if exp.solver.time_limit_ms is not None:
        solver["solver_time_ms"] = exp.solver.time_limit_ms
    stability = base.stability.model_dump()
    stability.update(churn=float(row["w_churn"]), max_changes=row["max_changes"])
    stability.update({k: row[k] for k in ("dwell_sessions", "dwell_days", "min_gain") if k in row})
    exploration: ExplorationConfig | None = base.exploration
    eps = row.get("exploration")
    if eps is not None and float(eps) == 0.0:
        exploration = None
    elif eps is not None:
        explore = (base.exploration or ExplorationConfig(max_explored=None)).model_dump()
        explore.update(epsilon=float(eps), **{k: row[k] for k in ("sticky_sessions", "sticky_days") if k in row})
        exploration = ExplorationConfig.model_validate(explore)
    config = base.model_copy(update={
        "diversity": float(row["w_diversity"]),
        "stability": StabilityRules.model_validate(stability),
        "exploration": exploration,
        **solver,
    })
    return ComposeConfig.model_validate(config.model_dump()).model_dump(mode="json")


def _recommended_lines(sec: dict[str, Any]) -> list[str]:
    r = sec["recommended"]
    if r is None:
        return [f"No recommendation: {sec['reason']}."]
    budget = "none" if r["max_changes"] is None else r["max_changes"]
    lines = [
        f"Point {r['point']}: diversity weight {_fmt(r['w_diversity'])}, churn weight {_fmt(r['w_churn'])}, "
        f"change budget {budget}, exploration {_fmt(r['exploration'])} ({sec['reason']}).",
        f"Take fraction {_fmt(r['take_fraction'])} [{_fmt(r['take_fraction_low'])}, "
        f"{_fmt(r['take_fraction_high'])}], diversity {_fmt(r['diversity'])}, churn {_fmt(r['churn'])}.",
    ]
    lines += sec.get("paired", [])
    sep = sec.get("separation") or {}
    if sep.get("separation"):
        lines.append(f"Against the logging policy (the estimate's own paired interval): {sep['separation']}.")
    elif sep:
        lines.append("Against the logging policy: not recorded (the point was estimated by an earlier slate "
                     "version; rerun the sweep to record it).")
    if sec["has_truth"]:
        lines.append(
            f"Simulator truth: take fraction {_fmt(r.get('true_take_fraction'))} if deployed "
            f"({_fmt(r.get('true_take_fraction_logged'))} on the logged pages, replay's estimand), "
            f"diversity {_fmt(r.get('true_diversity'))}, churn {_fmt(r.get('true_churn'))}."
        )
    return lines


def _markdown(sec: dict[str, Any], plots: dict[str, str]) -> str:
    def table(columns: Sequence[str], body: Sequence[Sequence[str]]) -> list[str]:
        out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        out += ["| " + " | ".join(row) + " |" for row in body]
        return out

    lines = [f"# {sec['title']}", ""]
    lines += table(["", ""], [[k, _fmt(v)] for k, v in sec["facts"]])
    lines += ["", "## Recommended setting", "", *_recommended_lines(sec)]
    lines += ["", f"## {_FRONT_TITLE}", ""]
    lines += table(sec["columns"], sec["front"])
    for key, caption in _PLOTS:
        if key in plots:
            lines += ["", f"### {caption}", "", f"![{caption}]({plots[key]})"]
    if sec["logged"]:
        lines += ["", "## The logging policy on the same pages", ""]
        lines += table(["metric", "value"], sec["logged"])
    lines += ["", "## Every point", ""]
    lines += table(sec["all_columns"], sec["all"])
    lines += ["", "Points marked *near_front* are off the front but no point beats them with confidence "
              "(their take-fraction intervals overlap a point at least as diverse and as stable). "
              "*front_paired*: no point is clearly better (at least as good on all three estimates, and "
              "its paired take-fraction interval above 0 or strictly more diverse or less churny). "
              "*indistinguishable*: meets the constraints and its paired interval against the recommended "
              "point includes 0.", ""]
    return "\n".join(lines)


def _html(sec: dict[str, Any], images: dict[str, bytes]) -> str:
    e = html.escape

    def table(columns: Sequence[str], body: Sequence[Sequence[str]]) -> str:
        head = "".join(f"<th>{e(c)}</th>" for c in columns)
        rows = "".join("<tr>" + "".join(f"<td>{e(v)}</td>" for v in row) + "</tr>" for row in body)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"

    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{e(sec['title'])}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;font-size:12px;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}th{background:#f3f3f3}"
        "img{max-width:100%;border:1px solid #eee}</style></head><body>",
        f"<h1>{e(sec['title'])}</h1>",
        table(["", ""], [[k, _fmt(v)] for k, v in sec["facts"]]),
        "<h2>Recommended setting</h2>",
        "".join(f"<p>{e(line)}</p>" for line in _recommended_lines(sec)),
        f"<h2>{e(_FRONT_TITLE)}</h2>",
        table(sec["columns"], sec["front"]),
    ]
    for key, caption in _PLOTS:
        if key in images:
            data = base64.b64encode(images[key]).decode()
            parts.append(f"<h3>{e(caption)}</h3><img alt='{e(caption)}' src='data:image/png;base64,{data}'>")
    if sec["logged"]:
        parts += ["<h2>The logging policy on the same pages</h2>", table(["metric", "value"], sec["logged"])]
    parts += ["<h2>Every point</h2>", table(sec["all_columns"], sec["all"]), "</body></html>"]
    return "\n".join(parts)


def write_report(
    results: SweepResults | str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    *,
    constraints: Constraints | None = None,
) -> list[Path]:
    """Write ``report.md`` and ``report.html`` for a results folder; returns the two paths.

    Parameters
    ----------
    results : SweepResults or path
        A finished sweep (or its folder).
    output : path, optional
        Folder to write into (default: the results folder). The plots are copied (or drawn)
        into its ``plots/`` folder, which the Markdown page links; the HTML page embeds them.
    constraints : Constraints, optional
        Recommend under these instead of the experiment's.

    Raises
    ------
    SweepError
        ``results`` is not a finished sweep folder.
    """
    from slate.tune.plots import draw_all

    res = results if isinstance(results, SweepResults) else load_results(results)
    out = res.path if output is None else Path(output)
    out.mkdir(parents=True, exist_ok=True)
    plot_dir = out / "plots"
    paired = "diff_logged_low" in res.table.column_names and bool(np.isfinite(res.column("diff_logged_low")).any())
    keys = [key for key, _ in _PLOTS if paired or key != "paired"]
    have = all((res.path / "plots" / f"{key}.{fmt}").exists() for key in keys for fmt in ("png", "svg"))
    if constraints is not None:
        from slate.tune import plots as plotting

        rec = res.recommendation(constraints).index
        plotting.plot_take_vs_weight(res, plot_dir / "take_vs_diversity_weight")
        plotting.plot_front(res, plot_dir / "front", recommended=rec)
        plotting.plot_front_by_churn(res, plot_dir / "front_by_churn", constraints, recommended=rec)
        if paired:
            plotting.plot_paired(res, plot_dir / "paired")
        plotting.plot_page(res, plot_dir / "page_before_after", after=rec)
        plotting.plot_sessions(res, plot_dir / "sessions_before_after", after=rec)
    elif not have:
        draw_all(res, plot_dir)
    elif plot_dir.resolve() != (res.path / "plots").resolve():
        plot_dir.mkdir(parents=True, exist_ok=True)
        for key in keys:
            for fmt in ("png", "svg"):
                shutil.copyfile(res.path / "plots" / f"{key}.{fmt}", plot_dir / f"{key}.{fmt}")
    sec = report_sections(res, constraints)
    links = {key: f"plots/{key}.png" for key in keys}
    images = {key: (plot_dir / f"{key}.png").read_bytes() for key in keys}
    deploy = out / "recommended-compose.json"
    if sec["recommended"] is not None and res.experiment.search.weights == "absolute":
        import json

        deploy.write_text(json.dumps(recommended_compose(res, sec["recommended"]), indent=2))
    elif deploy.exists():
        deploy.unlink()  # a stale recommendation must not be deployed
    md = out / "report.md"
    md.write_text(_markdown(sec, links))
    page = out / "report.html"
    page.write_text(_html(sec, images))
    return [md, page]
