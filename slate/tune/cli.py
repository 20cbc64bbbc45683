"""``slate sweep EXPERIMENT.toml`` and ``slate report RESULTS`` (wired into :mod:`slate.cli`).

``slate sweep`` runs (or resumes) an experiment, shows a progress bar, and prints where the
table went, the cost of one page solve and the recommended setting. ``slate report`` writes
``report.md`` and a self-contained ``report.html`` for a results folder. Errors in the input
raise :class:`slate.errors.SlateError` subclasses, which the ``slate`` command turns into a
one-line message and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["add_report_parser", "add_sweep_parser", "check_output_folder", "cmd_report", "cmd_sweep"]


def _fmt(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def check_output_folder(path: str | None, option: str) -> None:
    """Refuse an output folder that cannot be made (a file in its place or on its path, no
    permission) before the sweep's long work, not after it."""
    import os
    from pathlib import Path

    from slate.tune.config import InvalidExperimentError

    if path is None:
        return
    p = Path(path)
    for q in (p, *p.parents):
        if q.exists():
            if not q.is_dir():
                raise InvalidExperimentError(f"The {option} folder '{p}' cannot be made: '{q}' is a file.")
            if not os.access(q, os.W_OK | os.X_OK):
                raise InvalidExperimentError(f"The {option} folder '{p}' cannot be written: permission denied in '{q}'.")
            return


def cmd_sweep(args: argparse.Namespace) -> int:
    """Run ``slate sweep``; returns the exit status."""
    from slate.tune.config import check_paths_inside, load_experiment
    from slate.tune.sweep import run_sweep

    check_output_folder(args.output, "--output")
    experiment, base = load_experiment(args.experiment)
    if not args.allow_outside_paths:
        check_paths_inside(experiment, base)
    if getattr(args, "centre_on", None):
        from slate.replay.effects import load_effects
        from slate.tune.effects import centre_on_effects

        experiment = centre_on_effects(experiment, load_effects(args.centre_on))
    results = run_sweep(
        experiment,
        args.output,
        base_dir=base,
        scheduler=args.scheduler,
        n_workers=args.workers,
        progress=False if args.no_progress else None,
        plots=not args.no_plots,
        log=lambda msg: print(msg, file=sys.stderr),
        allow_remote_scheduler=args.allow_remote_scheduler,
    )
    s = results.summary
    t = s["timing"]
    print(f"results: {results.path / 'results.parquet'} (and results.csv), {results.n_points} points")
    print(f"config hash {s['config_hash']}, slate {s['slate_version']}, seed {s['seed']}")
    print(
        f"page solves: {t['n_solves']} at {t['ms_per_solve']:.3f} ms each "
        f"(+ {t['ms_per_page_build']:.3f} ms per page to build its problem once); "
        f"total {t['seconds_total']:.1f} s"
    )
    print(_front_line(results))
    rec = s.get("recommended")
    if rec is None:
        print(f"recommended: none ({s['recommendation']})")
    else:
        print(
            f"recommended: point {rec['point']} (diversity w {_fmt(rec['w_diversity'])}, churn w "
            f"{_fmt(rec['w_churn'])}, budget {_fmt(rec['max_changes'])}, exploration {_fmt(rec['exploration'])}"
            f"{_rules_text(rec)}): "
            f"take fraction {_fmt(rec['take_fraction'])} [{_fmt(rec['take_fraction_low'])}, "
            f"{_fmt(rec['take_fraction_high'])}], diversity {_fmt(rec['diversity'])}, churn {_fmt(rec['churn'])}"
        )
    return 0


def _front_line(results: Any) -> str:
    """The front the report shows, named for what it is: the paired front of the points meeting
    the experiment's constraints (the plain Pareto front of the estimates when the sweep kept no
    paired replicates).

    Examples
    --------
    >>> from types import SimpleNamespace as NS
    >>> import numpy as np
    >>> res = NS(table=NS(column_names=["pareto"]), experiment=NS(constraints=NS(max_churn=0.1)),
    ...          front=lambda constraints=None: np.array([0, 3]))
    >>> _front_line(res)
    'front (Pareto front of the estimates, churn <= 0.1): points 0, 3'
    """
    cons = results.experiment.constraints
    rows = results.front(cons)
    paired = "front_paired" in results.table.column_names
    kind = "not clearly dominated on paired differences" if paired else "Pareto front of the estimates"
    where = f", churn <= {cons.max_churn:g}" if cons.max_churn is not None else ""
    if getattr(cons, "min_diversity", None) is not None:
        where += f", diversity >= {cons.min_diversity:g}"
    if getattr(cons, "min_take_fraction", None) is not None:
        where += f", take fraction >= {cons.min_take_fraction:g}"
    return f"front ({kind}{where}): points {', '.join(str(int(i)) for i in rows) or 'none'}"


def _rules_text(row: dict[str, Any]) -> str:
    """The stability and stickiness rules a point sets (those that are on), for one line.

    Examples
    --------
    >>> _rules_text({"dwell_sessions": 3, "dwell_days": None, "min_gain": 0.05, "exploration": 0.0})
    ', dwell_sessions 3, min_gain 0.05'
    """
    names = ["dwell_sessions", "dwell_days", "min_gain"]
    if row.get("exploration"):
        names += ["sticky_sessions", "sticky_days"]
    return "".join(f", {k} {_fmt(row[k])}" for k in names if row.get(k) is not None)


def cmd_report(args: argparse.Namespace) -> int:
    """Run ``slate report``; returns the exit status."""
    from pydantic import ValidationError

    from slate.tune.config import Constraints
    from slate.tune.report import write_report

    check_output_folder(args.output, "--output")
    constraints = None
    if (args.max_churn is not None or args.min_diversity is not None or args.min_take_fraction is not None
            or args.allow_unproven):
        try:
            constraints = Constraints(
                max_churn=args.max_churn, min_diversity=args.min_diversity, min_take_fraction=args.min_take_fraction,
                allow_unproven=args.allow_unproven,
            )
        except ValidationError as err:
            from slate.tune.config import InvalidExperimentError

            first = err.errors()[0]
            option = "--" + "-".join(str(x) for x in first.get("loc", ())).replace("_", "-")
            raise InvalidExperimentError(
                f"Invalid constraint {option}: {first['msg']}; got {first.get('input')!r}."
            ) from None
    for path in write_report(args.results, args.output, constraints=constraints):
        print(path)
    _say_recommendation(args.results, args.output, constraints)
    return 0


def _say_recommendation(results: str, output: str | None, constraints: Any) -> None:
    """One line: the recommended point and where its ComposeConfig is, or why there is none."""
    from pathlib import Path

    from slate.tune.sweep import load_results

    res = load_results(results)
    rec = res.recommendation(constraints)
    if rec.index is None:
        print(f"recommended: none ({rec.reason})")
        return
    deploy = Path(output if output is not None else res.path) / "recommended-compose.json"
    where = f"ComposeConfig in {deploy}" if deploy.exists() else "relative weights: not deployable"
    print(f"recommended: point {res.rows()[rec.index]['point']} ({rec.reason}); {where}")


def add_sweep_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``slate sweep EXPERIMENT.toml`` to ``subparsers`` (from ``add_subparsers``).

    Examples
    --------
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="slate")
    >>> p = add_sweep_parser(parser.add_subparsers(dest="command"))
    >>> parser.parse_args(["sweep", "exp.toml", "--scheduler", "sync"]).scheduler
    'sync'
    """
    p = subparsers.add_parser(
        "sweep", help="run (or resume) a weight sweep described by an experiment file",
        description="Re-optimise every logged page at every setting of the experiment, estimate each "
        "setting's take fraction by replay, and write results.parquet/.csv, the Pareto front and plots.",
    )
    p.add_argument("experiment", help="an experiment file (TOML, or YAML with the same fields)")
    p.add_argument("--output", "-o", default=None,
                   help="results folder (default: <experiment folder>/<name>-<config hash>); rerun to resume")
    p.add_argument("--scheduler", default=None,
                   help="'local' (dask processes), 'threads', 'sync' or a dask scheduler address (tcp://host:port)")
    p.add_argument("--allow-outside-paths", action="store_true",
                   help="let the experiment name data files outside its own folder")
    p.add_argument("--allow-remote-scheduler", action="store_true",
                   help="use a scheduler address (tcp://...) named in the experiment file's [compute]")
    p.add_argument("--workers", type=int, default=None, help="workers of the local dask cluster")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-plots", action="store_true", help="skip the plots")
    p.add_argument("--centre-on", default=None, metavar="EFFECTS_JSON",
                   help="span the diversity and churn search over the 95%% intervals of `slate effects --out`")
    p.set_defaults(func=cmd_sweep)
    return p


def add_report_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``slate report RESULTS`` to ``subparsers``.

    Examples
    --------
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="slate")
    >>> p = add_report_parser(parser.add_subparsers(dest="command"))
    >>> parser.parse_args(["report", "results", "--max-churn", "0.1"]).max_churn
    0.1
    """
    p = subparsers.add_parser(
        "report", help="write report.md and a self-contained report.html for a sweep's results",
    )
    p.add_argument("results", help="a results folder written by 'slate sweep'")
    p.add_argument("--output", "-o", default=None, help="folder for the report (default: the results folder)")
    p.add_argument("--max-churn", type=float, default=None, help="recommend under this churn instead")
    p.add_argument("--min-diversity", type=float, default=None, help="recommend under this diversity instead")
    p.add_argument("--min-take-fraction", type=float, default=None, help="recommend under this take fraction")
    p.add_argument("--allow-unproven", action="store_true",
                   help="recommend the best point even if its weights exploded or its interval does not "
                   "lie above the logging policy's take fraction")
    p.set_defaults(func=cmd_report)
    return p
