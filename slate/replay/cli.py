"""``slate replay LOG``: estimate a policy's take fraction on a logged Parquet log.

::

    slate replay LOG [--policy CONFIG | --table DECISIONS.parquet] [--estimator NAME ...]
                     [--bootstrap N] [--seed S] [--output OUT.json]
                     [--engine memory|stream|dask] [--workers N] [--address ADDR] [--level L]
                     [--per-title] [--cluster page|member [--buckets N]]
                     [--embeddings FILE [--diversity-layout grid-weights|row|grid]
                      [--missing-embeddings raise|skip]]

prints a table of the estimates (value, standard error, interval, effective sample size,
matched events, weight warnings) and the metrics, and writes every estimate, metric and
rejection count as JSON (``--output``, default ``replay.json``).

A policy ``CONFIG`` is a JSON or TOML file (keys at the top level, or under ``[policy]``)::

    kind = "linear"            # "linear" (default), "table", "uniform" or "compose"
    weights = "weights.npz"    # linear: image_ids, weights (n_images, n_features), bias, epsilon
    epsilon = 0.05             # linear: optional, overrides the file's
    stickiness = 0.5           # optional: keep the image the member saw last time (StickyPolicy)
    table = "decisions.parquet"  # table: member_id, session_id, title_id, image_id
    missing = "skip"           # table: rows without a decision are an "error" or "skip"ped
    name = "candidate v2"      # shown in the report

A ``kind = "compose"`` policy replays :func:`slate.serve.compose` with other weights
(:class:`slate.serve.offline.ComposePolicy`)::

    kind = "compose"
    scorer = "team_scorer:score"   # "module:function" (config folder, cwd, then packages) or a
                                   # Parquet score table (member_id, title_id, image_id, score)
    embeddings = "embeddings.parquet"  # image_id, embedding (needed when diversity > 0)
    [compose]                      # the fields of slate.serve.ComposeConfig
    diversity = 0.1
    solver = "fast"
    stability = { churn = 0.02, dwell_sessions = 3 }

A ``"module:function"`` scorer is imported and run: load configs only from people you trust.

Relative paths are relative to the config file and must stay inside its folder (absolute paths
and ``..`` out of it are refused unless ``--allow-outside-paths``). ``--table D.parquet`` is short for a config
``{"kind": "table", "table": "D.parquet"}``; with neither, the uniform policy is evaluated.
``--engine memory`` (default) reads the log into memory (:func:`slate.replay.evaluate`);
``stream`` streams it in chunks of whole pages, ``dask`` runs one task per file on a dask
cluster (:mod:`slate.replay.distributed`; Poisson bootstrap). ``--per-title`` adds per-title
estimates to the JSON (``per_title``) with every engine: the same values and standard errors;
the stream and dask engines' per-title intervals are Poisson bootstrap ones with ``--bootstrap
N > 0`` (the memory engine's are normal).

``--cluster member`` clusters the standard errors and the bootstrap on hash buckets of the
member ids (``--buckets N``, default 65536; :mod:`slate.replay.clusters`) instead of pages:
for logs where a member's pages are correlated (sticky exploration). The stream and dask
engines take it; the memory engine once :func:`slate.replay.evaluate` has a ``cluster``
parameter (until then ``--engine memory --cluster member`` is refused with a message).

``--embeddings FILE`` (Parquet with ``image_id`` and ``embedding`` columns, or ``.npz`` with
``image_id`` and ``embedding`` arrays) adds the page ``diversity`` of the target and the
``logged_diversity`` to the metrics, with every engine. ``--diversity-layout`` picks the
interacting positions: ``grid-weights`` (default: the GridLayout weights of the simulator and
the page optimizer), ``row`` or ``grid`` (weight 1 per neighbouring pair). An image without an
embedding is an error naming it unless ``--missing-embeddings skip`` (then counted).
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from slate.errors import NoEstimateError
from slate.limits import check_limit, check_nesting, read_text_file
from slate.replay.options import ReplayOptions
from slate.replay.policy import DecisionTable, InvalidReplayInputError, LinearPolicy, UniformPolicy

__all__ = ["PolicyConfig", "add_replay_parser", "check_output_path", "cmd_replay", "load_policy_config"]


class PolicyConfig(BaseModel):
    """The policy file of ``slate replay --policy`` (validated once, at the boundary)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["linear", "table", "uniform", "compose"] = "linear"
    weights: str | None = None
    epsilon: float | None = Field(default=None, ge=0.0, le=1.0)
    stickiness: float | None = None
    history: Literal["auto", "logged", "column"] = "auto"
    table: str | None = None
    missing: Literal["error", "skip"] = "error"
    name: str | None = None
    scorer: str | None = None
    embeddings: str | None = None
    compose: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _needs_its_file(self) -> PolicyConfig:
        if self.kind == "linear" and not self.weights:
            raise ValueError("a 'linear' policy needs 'weights' (an .npz file)")
        if self.kind == "table" and not self.table:
            raise ValueError("a 'table' policy needs 'table' (a Parquet decision table)")
        if self.stickiness is not None and self.kind != "linear":
            raise ValueError("'stickiness' applies to a 'linear' policy only")
        if self.kind == "compose" and not self.scorer:
            raise ValueError("a 'compose' policy needs 'scorer' ('module:function' or a Parquet score table)")
        if self.kind != "compose" and (self.scorer or self.embeddings or self.compose is not None):
            raise ValueError("'scorer', 'embeddings' and [compose] apply to a 'compose' policy only")
        return self

    def _compose_policy(self, base: Path, resolve: Any) -> Any:
        from slate.serve.offline import ComposePolicy

        assert self.scorer is not None
        if self.embeddings:
            resolve(self.embeddings)  # refuses a file outside the config's folder
        if self.scorer.endswith(".parquet") or ":" not in self.scorer:
            resolve(self.scorer)
        scorer, config, catalog = compose_parts(self.scorer, self.embeddings, self.compose, base,
                                                "the policy config")
        return ComposePolicy(scorer, config, catalog, name=self.name or f"compose {self.scorer}")

    def build(self, base: Path, *, allow_outside: bool = False) -> Any:
        """The target policy, files resolved relative to ``base``.

        A file outside ``base`` (an absolute path, or ``..`` leading out of it) is refused
        unless ``allow_outside`` (``slate replay --allow-outside-paths``): a config file
        shared with others must not read arbitrary files.
        """
        def resolve(p: str) -> Path:
            path = Path(p)
            full = path if path.is_absolute() else base / path
            if not allow_outside and not _inside(full, base):
                raise InvalidReplayInputError(
                    f"The policy config names the file '{p}', which is outside the config's folder "
                    f"'{base}'; move it there or pass --allow-outside-paths."
                )
            return full

        policy: Any
        if self.kind == "linear":
            assert self.weights is not None
            policy = LinearPolicy.load(resolve(self.weights), epsilon=self.epsilon, name=self.name)
        elif self.kind == "table":
            assert self.table is not None
            path = resolve(self.table)
            if not path.is_file():
                raise InvalidReplayInputError(
                    f"The 'table' of the policy config must name an existing Parquet file; got "
                    f"'{path}' instead."
                )
            policy = DecisionTable.from_parquet(path, missing=self.missing, name=self.name)
        elif self.kind == "compose":
            policy = self._compose_policy(base, resolve)
        else:
            policy = UniformPolicy(name=self.name or "uniform")
        if self.stickiness is not None:
            from slate.replay.sequential import StickyPolicy

            policy = StickyPolicy(policy, self.stickiness, history=self.history,
                                  name=self.name or f"sticky {getattr(policy, 'name', '')}".strip())
        return policy


def _inside(path: Path, base: Path) -> bool:
    """Whether ``path`` (symbolic links resolved) lies inside the folder ``base``."""
    try:
        path.resolve().relative_to(base.resolve())
    except ValueError:
        return False
    return True


def compose_parts(
    scorer: str, embeddings: str | None, compose: dict[str, Any] | None, base: Path, where: str
) -> tuple[Any, Any, Any]:
    """The scorer, :class:`~slate.serve.ComposeConfig` and :class:`~slate.page.embeddings.ImageEmbeddings` of
    a config's ``scorer``, ``embeddings`` and ``[compose]`` table (paths relative to ``base``)."""
    from slate.serve import ComposeConfig
    from slate.serve.scorer import load_scorer

    try:
        config = ComposeConfig.model_validate(compose or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(x) for x in first.get("loc", ()))
        raise InvalidReplayInputError(
            f"The [compose] table of {where} is invalid at '{field}': {first['msg']} (got {first.get('input')!r})."
        ) from None
    catalog = None
    if embeddings:
        from slate.replay.metrics import ImageEmbeddings

        path = Path(embeddings)
        catalog = ImageEmbeddings.load(path if path.is_absolute() else base / path)
    return load_scorer(scorer, base), config, catalog


def load_policy_config(path: str | os.PathLike[str], *, allow_outside: bool = False) -> Any:
    """Read a policy config file (JSON or TOML) and build its policy.

    Examples
    --------
    >>> import json, os, tempfile
    >>> from slate.replay import LinearPolicy
    >>> folder = tempfile.mkdtemp()
    >>> LinearPolicy(["a", "b"], [[1.0], [2.0]]).save(os.path.join(folder, "w.npz"))
    >>> with open(os.path.join(folder, "policy.json"), "w") as fh:
    ...     json.dump({"weights": "w.npz", "epsilon": 0.1, "name": "mine"}, fh)
    >>> policy = load_policy_config(os.path.join(folder, "policy.json"))
    >>> policy.name, policy.epsilon
    ('mine', 0.1)
    """
    p = Path(path)
    if not p.is_file():
        raise InvalidReplayInputError(
            f"The policy config must be an existing JSON or TOML file; got '{path}' instead."
        )
    text = read_text_file(p, "policy config")
    try:
        if p.suffix.lower() == ".toml":
            try:
                import tomllib
            except ImportError:  # pragma: no cover - Python 3.10
                import tomli as tomllib  # type: ignore[no-redef]

            raw: Any = tomllib.loads(text)
        elif p.suffix.lower() == ".json":
            raw = json.loads(text)
        else:
            raise InvalidReplayInputError(
                f"The policy config must be a .json or .toml file; got '{p.name}'."
            )
    except (json.JSONDecodeError, ValueError, RecursionError) as exc:
        if isinstance(exc, InvalidReplayInputError):
            raise
        why = "nested too deeply" if isinstance(exc, RecursionError) else " ".join(str(exc).split())
        raise InvalidReplayInputError(f"The policy config '{p}' could not be parsed ({why}).") from None
    check_nesting(raw, f"policy config '{p}'")
    if isinstance(raw, dict) and set(raw) == {"policy"} and isinstance(raw["policy"], dict):
        raw = raw["policy"]
    if not isinstance(raw, dict):
        raise InvalidReplayInputError(
            f"The policy config '{p}' must be a table of keys; got {type(raw).__name__}."
        )
    try:
        config = PolicyConfig(**raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first.get("loc", ())) or "config"
        raise InvalidReplayInputError(
            f"The policy config '{p}' is invalid at '{where}': {first['msg']} (got "
            f"{first.get('input')!r})."
        ) from None
    return config.build(p.parent, allow_outside=allow_outside)


def cmd_replay(args: argparse.Namespace) -> int:
    """Run ``slate replay`` (see the module docstring); returns the exit status."""
    from slate.replay.distributed import evaluate_dask, evaluate_stream
    from slate.replay.evaluate import evaluate

    if args.policy and args.table:
        raise InvalidReplayInputError("Give --policy or --table, not both.")
    check_output_path(args.output, "--output")  # before the long work, not after it
    check_limit("max_bootstrap", args.bootstrap, "bootstrap replicates (--bootstrap)")
    if args.policy:
        policy = load_policy_config(args.policy, allow_outside=getattr(args, "allow_outside_paths", False))
    elif args.table:  # a path given on the command line is the user's explicit choice
        policy = PolicyConfig(kind="table", table=str(Path(args.table).resolve()),
                              missing=args.missing).build(Path.cwd(), allow_outside=True)
    else:
        policy = UniformPolicy()
    estimators = [e.strip() for group in (args.estimator or ["snips"]) for e in group.split(",")
                  if e.strip()]
    log = Path(args.log)
    if not log.exists():
        raise InvalidReplayInputError(f"The log must be an existing Parquet file or folder; got '{log}'.")
    options = ReplayOptions(estimator=estimators, n_bootstrap=args.bootstrap, seed=args.seed,
                            level=args.level, per_title=args.per_title)
    if getattr(args, "embeddings", None):
        from slate.replay.metrics import ImageEmbeddings

        layout = getattr(args, "diversity_layout", "grid-weights")
        options = replace(options, image_embeddings=ImageEmbeddings.load(args.embeddings),
                          diversity_layout=None if layout == "grid-weights" else layout,
                          missing_embeddings=getattr(args, "missing_embeddings", "raise"))
    cluster = getattr(args, "cluster", "page")
    if cluster != "page":
        options = replace(options, cluster=cluster, n_buckets=getattr(args, "buckets", 65536))
    if args.engine == "memory":
        report = evaluate(log, policy, options=options)
    elif args.engine == "stream":
        report = evaluate_stream(log, policy, options=options)
    else:
        report = evaluate_dask(log, policy, n_workers=args.workers, address=args.address,
                               options=options)
    print(report)
    if report.rejections.n_rejected or report.rejections.damaged:
        print(report.rejections)
    output = Path(args.output)
    report.to_json(output)
    print(f"wrote {output}")
    missing = {k: e.reason for k, e in report.estimates.items() if e.status != "ok"}
    if missing:
        names = ", ".join(missing)
        raise NoEstimateError(
            f"no estimate for {names}: {next(iter(missing.values()))} (the JSON in {output} "
            "has null values and status 'no_match')."
        )
    return 0


def check_output_path(path: str | os.PathLike[str], option: str) -> None:
    """Refuse an output file that cannot be written (missing folder, a folder, no permission)
    before any work is done.

    Examples
    --------
    >>> check_output_path("/nonexistent-folder/out.json", "--output")
    Traceback (most recent call last):
    ...
    slate.errors.InvalidReplayInputError: The --output file '/nonexistent-folder/out.json' cannot be written: its folder '/nonexistent-folder' does not exist.
    """
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    problem = ""
    if p.is_dir():
        problem = "it is a folder"
    elif not parent.is_dir():
        problem = f"its folder '{parent}' does not exist"
    elif p.exists() and not os.access(p, os.W_OK):
        problem = "permission denied"
    elif not p.exists() and not os.access(parent, os.W_OK | os.X_OK):
        problem = f"permission denied in '{parent}'"
    if problem:
        raise InvalidReplayInputError(f"The {option} file '{p}' cannot be written: {problem}.")


def add_replay_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``slate replay LOG`` to ``subparsers`` (from ``add_subparsers``).

    Examples
    --------
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="slate")
    >>> p = add_replay_parser(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["replay", "log.parquet", "--estimator", "snips,ips", "-e", "dr"])
    >>> args.estimator, args.bootstrap, args.engine
    (['snips,ips', 'dr'], 1000, 'memory')
    """
    from slate.replay.estimators import available_estimators

    p = subparsers.add_parser(
        "replay", help="estimate a policy's take fraction on a logged Parquet log",
        description="Off-policy replay of a slate.impressions log: prints a table of the estimates "
        "and writes every estimate, metric and rejection count as JSON.",
    )
    p.add_argument("log", help="a slate.impressions Parquet file or folder (hive partitions allowed)")
    who = p.add_mutually_exclusive_group()
    who.add_argument("--policy", help="a policy config (JSON or TOML; see 'slate.replay.cli')")
    who.add_argument("--table", help="a decision table (Parquet: member_id, session_id, title_id, image_id)")
    p.add_argument("--allow-outside-paths", action="store_true",
                   help="let the policy config name files outside its own folder")
    p.add_argument("--missing", choices=["error", "skip"], default="error",
                   help="with --table: rows without a decision are an error or left out")
    p.add_argument("--estimator", "-e", action="append", metavar="NAME",
                   help=f"estimator(s), repeatable or comma-separated: {', '.join(available_estimators())}"
                   " (default snips)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates (0: normal interval)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--level", type=float, default=0.95, help="interval level")
    p.add_argument("--output", "-o", default="replay.json", help="JSON file to write (default replay.json)")
    p.add_argument("--per-title", action="store_true",
                   help="also per-title estimates in the JSON (every engine)")
    p.add_argument("--cluster", choices=["page", "member"], default="page",
                   help="independent units of the standard errors and bootstrap: pages (default) "
                   "or hash buckets of the member ids (for sticky exploration)")
    p.add_argument("--buckets", type=int, default=65536,
                   help="with --cluster member: number of member buckets (default 65536)")
    p.add_argument("--engine", choices=["memory", "stream", "dask"], default="memory",
                   help="memory (default), stream (chunks of pages, bounded memory) or dask")
    p.add_argument("--workers", type=int, default=2, help="dask: workers of the local cluster")
    p.add_argument("--address", default=None, help="dask: scheduler address (else a local cluster)")
    p.add_argument("--embeddings", metavar="FILE", default=None,
                   help="image embeddings (Parquet: image_id, embedding; or .npz): adds the page "
                   "diversity of the target and of the log")
    p.add_argument("--diversity-layout", choices=["grid-weights", "row", "grid"],
                   default="grid-weights",
                   help="interacting positions for the diversity: GridLayout weights (default; as "
                   "the simulator), or row/grid neighbours with weight 1")
    p.add_argument("--missing-embeddings", choices=["raise", "skip"], default="raise",
                   help="an image without an embedding is an error (default) or its pairs are "
                   "left out and counted")
    p.set_defaults(func=cmd_replay)
    return p
