"""The ``slate`` command line.

``slate demo [--output DIR] [--seed N]`` runs the main job end to end on a simulated world
(see :func:`slate.sim.demo.run_demo`) and prints the replay table beside the true values.

``slate solve PAGE.json [--solver NAME] [--time-limit-ms T]`` prints one JSON object with the
assignment (title id -> image id), objective and its parts, status, bound, solver and wall time.
A bad file gives a one-line message on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from slate.errors import SlateError

__all__ = ["main"]


def _cmd_solve(args: argparse.Namespace) -> int:
    from slate.page.io import read_problem
    from slate.solvers import solve

    problem = read_problem(args.page)
    if args.solver in ("fast", "auto"):
        from slate.solvers.fast import warm_up

        warm_up()  # load the compiled kernels first, so wall_ms measures the solve alone
    if args.solver == "auto":
        from slate.solvers.certify import warm_up as warm_up_certify

        warm_up_certify()
    result = solve(problem, solver=args.solver, time_limit_ms=args.time_limit_ms)
    print(json.dumps(result.to_json_dict()))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from slate.sim.demo import run_demo

    report = run_demo(args.output, seed=args.seed, progress=not args.no_progress)
    print(report)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``slate`` command."""
    from slate.solvers import available_solvers

    parser = argparse.ArgumentParser(prog="slate", description="Joint artwork selection for whole homepages.")
    sub = parser.add_subparsers(dest="command", required=True)

    p_solve = sub.add_parser("solve", help="solve one page-problem file and print the result as JSON")
    p_solve.add_argument("page", help="a slate.page-problem/1 JSON file")
    p_solve.add_argument("--solver", default="auto", choices=available_solvers())
    p_solve.add_argument("--time-limit-ms", type=float, default=None, help="wall-time budget in milliseconds")
    p_solve.set_defaults(func=_cmd_solve)

    p_demo = sub.add_parser(
        "demo",
        help="simulate a homepage world, log exploration, train bandits, replay them against the truth",
    )
    p_demo.add_argument("--output", default="slate-output", help="folder for the table, chart and logs")
    p_demo.add_argument("--seed", type=int, default=0)
    p_demo.add_argument("--no-progress", action="store_true", help="no progress bar")
    p_demo.set_defaults(func=_cmd_demo)

    from slate.replay.cli import add_replay_parser
    from slate.tune.cli import add_report_parser, add_sweep_parser

    add_replay_parser(sub)

    add_sweep_parser(sub)
    add_report_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``slate`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except SlateError as err:
        print(f"slate {args.command}: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `slate solve page.json | head`
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
