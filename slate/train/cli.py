"""``slate train LOG --policy NAME --output DIR``: fit a scoring policy from an impression log.

::

    slate train LOG --policy NAME --output DIR [--engine memory|stream|dask] [--workers N]
                    [--address ADDR] [--ips-weighted] [--param KEY=VALUE ...] [--no-bias]
                    [--chunk-rows N] [--catalog FILE] [--feature-store FILE]

prints the fit diagnostics (rows read, used and rejected by reason, impressions per image,
images never shown or never explored, effective sample size) and writes ``DIR`` (see
:mod:`slate.bandit.trained`): ``model.npz`` + ``model.json`` (the policy, no pickle),
``weights.npz`` and ``policy.toml`` (for ``slate replay --policy DIR/policy.toml``),
``diagnostics.json`` and ``image_counts.csv``. ``--param`` values are JSON (``alpha=0.5``,
``shared_columns=[1,2]``) or plain strings. A bad log, policy or parameter gives one line on
stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from slate.errors import InvalidProblemError, SlateError

__all__ = ["add_train_parser", "cmd_train", "parse_params", "read_catalog"]


def parse_params(items: list[str] | None) -> dict[str, Any]:
    """``["alpha=0.5", "dtype=float32"]`` -> ``{"alpha": 0.5, "dtype": "float32"}``.

    Examples
    --------
    >>> parse_params(["alpha=0.5", "shared_columns=[1, 2]", "dtype=float32"])
    {'alpha': 0.5, 'shared_columns': [1, 2], 'dtype': 'float32'}
    """
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise InvalidProblemError(f"A --param must look like KEY=VALUE; got '{item}' instead.")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out[key.strip()] = value
    return out


def read_catalog(path: str) -> list[str]:
    """Image ids from a text file (one per line, blank lines skipped) or a Parquet file's
    ``image_id`` column."""
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise InvalidProblemError(f"The --catalog file must exist; got '{path}' instead.")
    if p.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            column = pq.read_table(p, columns=["image_id"]).column(0)
        except (KeyError, ValueError, OSError) as exc:
            raise InvalidProblemError(f"The --catalog file '{path}' needs an image_id column ({exc}).") from None
        return [str(x) for x in column.drop_null().to_pylist()]
    return [line.strip() for line in p.read_text().splitlines() if line.strip()]


def cmd_train(args: argparse.Namespace) -> int:
    """Run ``slate train`` (see the module docstring); returns the exit status."""
    from slate.train.training import train

    options: dict[str, Any] = {}
    if args.chunk_rows is not None:
        options["chunk_rows"] = args.chunk_rows
    if args.catalog is not None:
        options["catalog"] = read_catalog(args.catalog)
    if args.feature_store is not None:
        options["feature_store"] = args.feature_store
    try:
        result = train(args.log, args.policy, params=parse_params(args.param), engine=args.engine,
                       ips=args.ips_weighted, bias=not args.no_bias, n_workers=args.workers,
                       address=args.address, options=options)
    except (TypeError, ValueError) as exc:  # a hyperparameter the policy does not take
        if isinstance(exc, SlateError):
            raise
        raise InvalidProblemError(f"Bad --param for policy '{args.policy}': {exc}") from None
    out = result.save(args.output)
    print(f"slate train: {result.policy.name} from {args.log} ({args.engine} engine)")
    print(result.diagnostics)
    print(f"wrote {out} (model.npz, model.json, weights.npz, policy.toml, diagnostics.json, image_counts.csv)")
    return 0


def add_train_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``slate train LOG`` to ``subparsers`` (from ``add_subparsers``).

    Examples
    --------
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="slate")
    >>> _ = add_train_parser(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["train", "log.parquet", "--policy", "linucb", "--output", "m"])
    >>> args.engine, args.ips_weighted, args.workers
    ('memory', False, 2)
    """
    from slate.bandit import available_policies

    p = subparsers.add_parser(
        "train", help="fit a scoring policy from a slate.impressions log",
        description="Fit a registered scoring policy from a slate.impressions log (in memory, "
        "streaming, or on dask: the same model bit for bit) and write a model folder that "
        "slate replay and the serving scorer read.",
    )
    p.add_argument("log", help="a slate.impressions Parquet file or folder")
    p.add_argument("--policy", required=True, metavar="NAME",
                   help=f"registered policy: {', '.join(available_policies())}")
    p.add_argument("--output", "-o", required=True, metavar="DIR", help="model folder to write")
    p.add_argument("--engine", choices=["memory", "stream", "dask"], default="memory",
                   help="memory (default: each file whole), stream (chunks of pages, bounded "
                   "memory) or dask (one task per file)")
    p.add_argument("--workers", type=int, default=2, help="dask: workers of the local cluster")
    p.add_argument("--address", default=None, help="dask: scheduler address (else a local cluster)")
    p.add_argument("--ips-weighted", action="store_true",
                   help="weight each row by 1 / its logged propensity")
    p.add_argument("--param", action="append", metavar="KEY=VALUE",
                   help="policy hyperparameter (JSON value), repeatable")
    p.add_argument("--no-bias", action="store_true", help="no constant feature in column 0")
    p.add_argument("--chunk-rows", type=int, default=None, help="stream/dask: rows per chunk")
    p.add_argument("--feature-store", metavar="FILE", default=None,
                   help="Parquet file of features by 'key', for a log without inline features "
                   "(rows matched on features_ref; rows not found are left out and counted)")
    p.add_argument("--catalog", metavar="FILE", default=None,
                   help="image ids to give an arm even without data (text, one per line; or "
                   "Parquet with an image_id column): new images of a later log keep the prior")
    p.set_defaults(func=cmd_train)
    return p
