"""The ``slate`` command line.

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
    result = solve(problem, solver=args.solver, time_limit_ms=args.time_limit_ms)
    print(json.dumps(result.to_json_dict()))
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
