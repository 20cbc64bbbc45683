"""``slate import FILE --output LOG.parquet``: bring another system's log into ``slate.impressions``.

::

    slate import FILE --output LOG.parquet --map MAPPING.toml      # CSV or Parquet, see slate.logs.mapping
    slate import FILE --output LOG.parquet [--format dsjson]       # Vowpal Wabbit DSJSON, see slate.logs.dsjson
                      [--title-id T] [--action-id-path P] [--member-id-path P] [--feature P ...]
                      [--reward-threshold X] [--version 1|2]

A ``.json``/``.dsjson`` file without ``--map`` is read as DSJSON. Prints the counts (input lines
or rows read, rejected by reason with an example each, rows the validating reader rejected, rows
written) and writes them as JSON beside the output (``LOG.parquet.import.json``). A bad mapping
or an unreadable file gives one line on stderr and exit status 2; bad rows never stop the import.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from slate.logs.parquet import InvalidLogError

__all__ = ["add_import_parser", "cmd_import"]


def cmd_import(args: argparse.Namespace) -> int:
    """Run ``slate import`` (see the module docstring); returns the exit status."""
    source = Path(args.file)
    fmt = args.format or ("mapped" if args.map else "dsjson" if source.suffix.lower() in (".json", ".dsjson") else None)
    if fmt is None:
        raise InvalidLogError(f"Give --map MAPPING.toml to import '{source.name}' (or --format dsjson).")
    if fmt == "mapped":
        if not args.map:
            raise InvalidLogError("--format mapped needs --map MAPPING.toml.")
        from slate.logs.mapping import import_mapped

        report = import_mapped(source, args.map, args.output, version=args.version)
    else:
        from slate.logs.dsjson import DsjsonOptions, import_dsjson

        options = DsjsonOptions(title_id=args.title_id, action_id_path=args.action_id_path,
                                member_id_path=args.member_id_path, feature_paths=tuple(args.feature or ()),
                                reward_threshold=args.reward_threshold)
        report = import_dsjson(source, args.output, options, version=args.version)
    print(report)
    summary = Path(f"{args.output}.import.json")
    summary.write_text(json.dumps(report.to_dict(), indent=1))
    print(f"wrote {args.output} and {summary}")
    return 0


def add_import_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``slate import FILE`` to ``subparsers`` (from ``add_subparsers``).

    Examples
    --------
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="slate")
    >>> _ = add_import_parser(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["import", "log.dsjson", "--output", "log.parquet"])
    >>> args.format, args.version, args.title_id
    (None, 1, 'decision')
    """
    p = subparsers.add_parser(
        "import", help="convert a Vowpal Wabbit DSJSON log, or a CSV/Parquet log with a column "
        "mapping, into a slate.impressions file",
        description="Convert another system's log into slate.impressions; rejected lines/rows are "
        "counted by reason and never stop the import.",
    )
    p.add_argument("file", help="the source log (DSJSON lines, CSV or Parquet)")
    p.add_argument("--output", "-o", required=True, help="the slate.impressions Parquet file to write")
    p.add_argument("--map", metavar="MAPPING.toml", default=None, help="column mapping (CSV/Parquet)")
    p.add_argument("--format", choices=["dsjson", "mapped"], default=None,
                   help="default: mapped with --map, else dsjson for .json/.dsjson files")
    p.add_argument("--version", type=int, choices=[1, 2], default=1, help="schema version to write")
    p.add_argument("--title-id", default="decision", help="DSJSON: title of a contextual-bandit decision")
    p.add_argument("--action-id-path", default=None, help="DSJSON: dotted path to an action's id (no _tag)")
    p.add_argument("--member-id-path", default=None, help="DSJSON: dotted path in 'c' to the member id")
    p.add_argument("--feature", action="append", metavar="PATH",
                   help="DSJSON: dotted path in 'c' to a numeric context feature (repeatable, in order)")
    p.add_argument("--reward-threshold", type=float, default=0.0,
                   help="DSJSON: reward = 1 when -cost > this (default 0)")
    p.set_defaults(func=cmd_import)
    return p
