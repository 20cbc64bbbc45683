"""The ``slate`` command line.

``slate demo [--output DIR] [--seed N]`` runs the main job end to end on a simulated world
(see :func:`slate.sim.demo.run_demo`) and prints the replay table beside the true values.

``slate join DECISIONS OUTCOMES --output LOG`` attaches play events to a decision log
(:func:`slate.logs.join.join_outcomes`).

``slate solve PAGE.json [--solver NAME] [--time-limit-ms T]`` prints one JSON object with the
assignment (title id -> image id), objective and its parts, status, bound, solver and wall time.
A bad file gives a one-line message on stderr and exit status 2.

``slate train LOG --policy NAME --output DIR`` fits a scoring policy from an impression log
(:mod:`slate.train.cli`); ``slate import FILE --output LOG.parquet`` converts a Vowpal Wabbit
DSJSON log or a mapped CSV/Parquet log (:mod:`slate.logs.cli`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from slate.errors import NoEstimateError, SlateError

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
    print(json.dumps(result.to_json_dict(), allow_nan=False))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from slate.sim.demo import run_demo

    report = run_demo(args.output, seed=args.seed, progress=not args.no_progress)
    print(report)
    return 0


def _cmd_join(args: argparse.Namespace) -> int:
    from pathlib import Path

    from slate.logs.join import join_outcomes

    _, report = join_outcomes(
        args.decisions, args.outcomes, args.output, window=args.window,
        quality_threshold=args.quality_threshold, engine=args.engine,
        partitions=args.partitions if args.partitions else "auto",
    )
    print(report)
    if args.report:
        Path(args.report).write_text(json.dumps(report.to_dict(), indent=2))
    return 0


def _add_join_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "join", help="attach outcome events (plays) to a decision log: a replayable log",
        description="Attribute each outcome event to the latest impression of its title for its "
        "member within a window (or to its page when the event names one); shown and not played "
        "rows get reward 0; unmatched events are counted by reason (see slate.logs.join).",
    )
    p.add_argument("decisions", help="the decision log (Parquet file or folder)")
    p.add_argument("outcomes", help="outcome events (Parquet: member_id, title_id, timestamp, "
                   "reward or engagement, optional page_id)")
    p.add_argument("--output", "-o", required=True, help="the joined log (a file, or a folder for a folder)")
    p.add_argument("--window", default="24h", help="longest impression-to-event time (default 24h)")
    p.add_argument("--quality-threshold", type=float, default=None,
                   help="with engagement and no reward: engagement at least this is a quality play")
    p.add_argument("--engine", choices=["local", "dask"], default="local")
    p.add_argument("--partitions", type=int, default=0,
                   help="member-hash buckets matched one at a time (default: auto)")
    p.add_argument("--report", default=None, help="also write the join counts as JSON")
    p.set_defaults(func=_cmd_join)


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
    _add_join_parser(sub)

    from slate.replay.effects import add_effects_parser

    add_effects_parser(sub)

    from slate.train.cli import add_train_parser

    add_train_parser(sub)

    from slate.logs.cli import add_import_parser

    add_import_parser(sub)

    add_sweep_parser(sub)
    add_report_parser(sub)

    from slate.visual.cli import add_embed_parser

    add_embed_parser(sub)
    return parser


def _one_line(err: BaseException) -> str:
    """One line for an error that escaped the library's own checks (the exception types that
    input files can raise), naming the file when the error knows it."""
    text = " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, OSError):
        names = [str(n) for n in (err.filename, err.filename2) if n]
        reason = err.strerror or text
        return f"cannot use '{names[0]}': {reason}" if names else f"input/output error: {reason}"
    if isinstance(err, UnicodeDecodeError):
        return f"an input file is not UTF-8 text ({err.reason} at byte {err.start})"
    if isinstance(err, RecursionError):
        return "an input file is nested too deeply to be read"
    if isinstance(err, MemoryError):
        return "out of memory; the input is too large (see the limits in slate.limits)"
    if isinstance(err, OverflowError):
        return f"a number in the input is out of range ({text})"
    if type(err).__name__ == "ValidationError":  # pydantic: its first error, without the URL
        errors: list[Any] = getattr(err, "errors", list)()
        if errors:
            first = errors[0]
            where = ".".join(str(x) for x in first.get("loc", ())) or "input"
            return f"invalid value at '{where}': {first.get('msg')} (got {first.get('input')!r})"
        return text.splitlines()[0]
    return f"{type(err).__name__}: {text}"


# the exception types that damaged or hostile input files raise from the libraries slate uses;
# anything else is a bug and keeps its traceback
_INPUT_ERRORS: tuple[type[BaseException], ...] = (
    OSError, UnicodeDecodeError, RecursionError, MemoryError, OverflowError, EOFError,
)


def _input_errors() -> tuple[type[BaseException], ...]:
    extra: list[type[BaseException]] = []
    try:
        import pyarrow as pa

        extra += [pa.ArrowInvalid, pa.ArrowException]
    except ImportError:  # pragma: no cover
        pass
    try:
        import pydantic

        extra.append(pydantic.ValidationError)
    except ImportError:  # pragma: no cover
        pass
    import json as _json
    import zipfile

    extra += [_json.JSONDecodeError, zipfile.BadZipFile]
    try:
        import tomllib
    except ImportError:  # pragma: no cover - Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    extra.append(tomllib.TOMLDecodeError)
    return _INPUT_ERRORS + tuple(extra)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``slate`` console script; returns the exit status.

    0: done; 2: bad input (one line on stderr naming the file and what is wrong, no traceback);
    3: the command ran but has no answer (e.g. a replay in which no logged row matches the
    target policy).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except BrokenPipeError:  # e.g. `slate solve page.json | head`
        return 0
    except NoEstimateError as err:
        print(f"slate {args.command}: {err}", file=sys.stderr)
        return 3
    except SlateError as err:
        print(f"slate {args.command}: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"slate {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if not isinstance(err, _input_errors()):
            raise
        print(f"slate {args.command}: {_one_line(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
