"""Fit a registered scoring policy from a ``slate.impressions`` log, in memory, streaming or on dask.

:func:`train` reads the log (a file or a folder of files, version 1 or 2), validates it with
the reader of :mod:`slate.logs` (rejected rows counted by reason), folds each file's rows into
the policy's sufficient statistics (:mod:`slate.train.statistics`) and finishes the fit with
:func:`slate.bandit.statistics.policy_from_statistics`:

* ``engine="memory"``: each file is read and validated whole;
* ``engine="stream"``: each file is read in chunks of whole pages (bounded memory: one chunk,
  plus the statistics);
* ``engine="dask"``: one task per file on a dask cluster; the per-file statistics are merged
  on the client in file order.

The three give bit-identical statistics and models: every sum runs in file row order within a
file and in sorted path order across files, whatever the chunking. The features are the log's
inline context features (``features`` or ``feature_j``), with a constant 1 prepended as column 0
(``bias=True``); ``features_ref`` is not resolved. Each image of the log (shown or candidate) is
an arm, in sorted image-id order; images offered but never shown keep the policy's prior.

Logistic Thompson sampling has no sufficient statistics (Newton's method on every row of each
image), so it trains with ``engine="memory"`` only, on the rows in the same fixed order.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from slate.bandit import ScoringPolicy, make_policy
from slate.bandit.statistics import policy_from_statistics, statistics_kind
from slate.bandit.trained import save_trained_model
from slate.errors import InvalidProblemError
from slate.logs.parquet import InvalidLogError
from slate.logs.schema import FEATURE_PREFIX
from slate.logs.stream import DEFAULT_CHUNK_ROWS, list_log_files, scan_impressions
from slate.train.diagnostics import TrainDiagnostics
from slate.train.features import load_feature_store
from slate.train.statistics import FileFold, Layout, LogStatistics

__all__ = ["ENGINES", "TrainResult", "TrainSpec", "file_statistics", "train"]

ENGINES = ("memory", "stream", "dask")
"""Names accepted by ``train(engine=...)``."""


@dataclass(frozen=True)
class TrainSpec:
    """What a worker needs to fold one file (picklable)."""

    layout: Layout
    whole_file: bool = False
    chunk_rows: int = DEFAULT_CHUNK_ROWS
    known_images: tuple[str, ...] | None = None
    feature_store: str | None = None

    @property
    def columns(self) -> list[str]:
        """Columns read besides the required ones (the same for every engine, so that every
        engine checks, and accepts, the same rows)."""
        if self.layout.feature_store:
            return ["features_ref"]
        return ["features"] if self.layout.n_log_features else []


def _open(path: str | os.PathLike[str]) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        raise InvalidLogError(f"The log file '{path}' cannot be read as Parquet ({exc}).") from None


def file_statistics(path: str | os.PathLike[str], spec: TrainSpec) -> LogStatistics:
    """Fold one file into :class:`LogStatistics` (whole, or chunk by chunk).

    Examples
    --------
    >>> import tempfile, os
    >>> from slate.logs import write_impressions
    >>> from slate.logs.parquet import example_table
    >>> path = write_impressions(os.path.join(tempfile.mkdtemp(), "log.parquet"), example_table())
    >>> stats = file_statistics(path, TrainSpec(Layout("counts", 0)))
    >>> stats.image_ids, stats.events.tolist()
    (['T1-a', 'T1-b', 'T2-a', 'T2-b'], [1, 1, 1, 1])
    """
    n_rows = _open(path).metadata.num_rows
    store = load_feature_store(spec.feature_store) if spec.layout.feature_store and spec.feature_store else None
    fold = FileFold(LogStatistics(spec.layout), n_rows, store)
    d = 0 if spec.layout.feature_store else spec.layout.n_log_features
    chunk_rows = max(1, n_rows) if spec.whole_file else spec.chunk_rows
    for chunk in scan_impressions(path, known_images=spec.known_images, n_features=d or None,
                                  columns=spec.columns, chunk_rows=chunk_rows):
        fold.feed(chunk)
    return fold.close()


def log_feature_count(files: Sequence[Path]) -> int:
    """Inline context features per row: version-2 ``feature_j`` columns, or the length of the
    first non-null version-1 ``features`` list (0 when the log has none)."""
    for path in files:
        meta = _open(path)
        names = meta.schema_arrow.names
        v2 = [c for c in names if c.startswith(FEATURE_PREFIX) and c[len(FEATURE_PREFIX):].isdigit()]
        if v2:
            return len(v2)
        if "features" not in names:
            return 0
        for g in range(meta.metadata.num_row_groups):
            column = meta.read_row_group(g, columns=["features"]).column(0)
            lengths = column.combine_chunks().value_lengths().drop_null().to_numpy()
            if len(lengths):
                return int(np.bincount(lengths).argmax())
    return 0


def _layout(policy: ScoringPolicy, n_log_features: int, bias: bool, ips: bool, store: bool = False) -> Layout:
    kind = statistics_kind(policy)
    if kind in ("counts", "total"):
        return Layout(kind, n_log_features, bias=bias, ips=ips)
    d = n_log_features + int(bias)
    if d == 0:
        raise InvalidProblemError(
            f"The policy '{policy.name}' needs features: the log has no inline features and "
            "bias is off."
        )

    def columns(value: Any, what: str) -> tuple[int, ...]:
        if value is None:
            return tuple(range(d))
        try:
            cols = [int(c) for c in value]
        except (TypeError, ValueError):
            cols = []
        if not cols or len(set(cols)) != len(cols) or min(cols) < 0 or max(cols) >= d:
            raise InvalidProblemError(
                f"The '{what}' parameter of {type(policy).__name__} must list distinct columns in "
                f"0..{d - 1}{' (column 0 is the bias)' if bias else ''}; got {value!r} instead."
            )
        return tuple(cols)

    if kind == "hybrid":
        return Layout(kind, n_log_features, bias=bias, ips=ips, feature_store=store,
                      arm_columns=columns(getattr(policy, "arm_columns", None), "arm_columns"),
                      shared_columns=columns(getattr(policy, "shared_columns", None), "shared_columns"))
    return Layout(kind, n_log_features, bias=bias, ips=ips, feature_store=store, arm_columns=tuple(range(d)))


def _fold_files(files: Sequence[Path], spec: TrainSpec, engine: str, n_workers: int,
                address: str | None) -> list[LogStatistics]:
    if engine != "dask":
        return [file_statistics(p, spec) for p in files]
    import dask
    from distributed import Client, LocalCluster

    if isinstance(n_workers, bool) or not isinstance(n_workers, (int, np.integer)) or n_workers < 1:
        raise InvalidProblemError(f"The 'n_workers' parameter of train must be an integer >= 1; got {n_workers!r} instead.")
    cluster = None
    if address is None:
        with dask.config.set({"distributed.worker.profile.enabled": False}):
            cluster = LocalCluster(n_workers=int(n_workers), threads_per_worker=1, processes=True,
                                   dashboard_address=None)
    client = Client(cluster if cluster is not None else address)
    try:
        futures = client.map(file_statistics, [str(p) for p in files], [spec] * len(files), pure=False)
        return list(client.gather(futures))
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


@dataclass(frozen=True, eq=False)
class TrainResult:
    """A policy fitted from a log, with the statistics it came from and the fit diagnostics.

    Attributes
    ----------
    policy : ScoringPolicy
        Arm ``i`` is ``image_ids[i]``.
    image_ids : tuple of str
        Every image of the log (shown or candidate), sorted.
    layout : Layout
    statistics : LogStatistics
        The merged sums (``statistics.statistics()`` gives the arrays handed to the policy).
    diagnostics : TrainDiagnostics
    engine : str
    """

    policy: ScoringPolicy
    image_ids: tuple[str, ...]
    layout: Layout
    statistics: LogStatistics
    diagnostics: TrainDiagnostics
    engine: str
    info: Mapping[str, Any] = field(default_factory=dict)

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write the model folder (:func:`slate.bandit.trained.save_trained_model`) plus
        ``diagnostics.json`` and ``image_counts.csv``; returns the folder."""
        out = save_trained_model(Path(directory), self.policy, self.image_ids, bias=self.layout.bias,
                                 n_log_features=self.layout.n_log_features,
                                 info={**self.info, "diagnostics": self.diagnostics.summary()})
        self.diagnostics.write(out)
        return out


def train(
    source: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    policy: str | ScoringPolicy = "linucb",
    *,
    params: Mapping[str, Any] | None = None,
    engine: str = "memory",
    ips: bool = False,
    bias: bool = True,
    n_workers: int = 2,
    address: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> TrainResult:
    """Fit ``policy`` from the log at ``source``.

    Parameters
    ----------
    source : path, folder or iterable of paths
        A ``slate.impressions`` log (see :func:`slate.logs.list_log_files`).
    policy : str or ScoringPolicy
        A registered policy name (:func:`slate.bandit.available_policies`) or an unfitted policy.
    params : mapping, optional
        Hyperparameters for ``make_policy(policy, **params)`` (with a name).
    engine : {"memory", "stream", "dask"}
    ips : bool, default False
        Weight each row by the inverse of its logged propensity.
    bias : bool, default True
        Prepend a constant feature (column 0) to the log's features.
    n_workers, address
        Dask: workers of a local cluster, or the address of a running scheduler.
    options : mapping, optional
        ``chunk_rows`` (stream and dask), ``known_images`` (the reader rejects rows with other
        images) and ``catalog`` (image ids to give an arm even if the log never offered them:
        they keep the prior, so that a later log with new images can be replayed) and
        ``feature_store`` (a Parquet file of features by key, :mod:`slate.train.features`, for a
        log without inline features: rows are matched on ``features_ref``).

    Returns
    -------
    TrainResult

    Examples
    --------
    >>> import tempfile, os
    >>> from slate.logs import write_impressions
    >>> from slate.logs.parquet import example_table
    >>> path = write_impressions(os.path.join(tempfile.mkdtemp(), "log.parquet"), example_table())
    >>> result = train(path, "take_rate")
    >>> result.image_ids, result.diagnostics.n_used
    (('T1-a', 'T1-b', 'T2-a', 'T2-b'), 4)
    """
    if engine not in ENGINES:
        raise InvalidProblemError(f"The 'engine' parameter of train must be one of {list(ENGINES)}; got {engine!r} instead.")
    opts = dict(options or {})
    unknown = sorted(set(opts) - {"chunk_rows", "known_images", "catalog", "feature_store"})
    if unknown:
        raise InvalidProblemError(
            f"Unknown train option(s) {unknown}; the options are chunk_rows, known_images, catalog "
            "and feature_store."
        )
    model = make_policy(policy, **dict(params or {})) if isinstance(policy, str) else policy
    files = list_log_files(source)
    kind = statistics_kind(model)
    if kind == "rows" and engine != "memory":
        raise InvalidProblemError(
            f"The policy '{model.name}' has no sufficient statistics to merge (Newton's method needs "
            "every row of an image at once); train it with engine 'memory'."
        )
    inline = log_feature_count(files)
    store_path = str(opts["feature_store"]) if opts.get("feature_store") is not None else ""
    use_store = bool(store_path) and inline == 0 and kind in ("ridge", "hybrid", "rows")
    n_log_features = load_feature_store(store_path).n_features if use_store else inline
    layout = _layout(model, n_log_features, bias, ips, use_store)
    known = opts.get("known_images")
    spec = TrainSpec(layout, whole_file=engine == "memory",
                     chunk_rows=int(opts.get("chunk_rows", DEFAULT_CHUNK_ROWS)),
                     known_images=None if known is None else tuple(str(x) for x in known),
                     feature_store=str(Path(store_path).resolve()) if use_store else None)
    parts = _fold_files(files, spec, engine, n_workers, address)
    catalog = [str(x) for x in opts.get("catalog", ())]
    stats = LogStatistics.combine(parts, layout, catalog)
    diagnostics = TrainDiagnostics.from_statistics(stats, n_files=len(files))
    if diagnostics.n_used == 0:
        raise InvalidProblemError(f"The log '{source}' has no accepted rows to train on:\n{diagnostics}")
    fitted = _finish(model, stats)
    info = {"engine": engine, "ips_weighted": ips, "files": [str(p) for p in files]}
    return TrainResult(fitted, tuple(stats.image_ids), layout, stats, diagnostics, engine, info)


def _finish(policy: ScoringPolicy, stats: LogStatistics) -> ScoringPolicy:
    """Fit from the sums, or (``rows`` kind) from the rows in their fixed order."""
    if stats.layout.kind != "rows":
        return policy_from_statistics(policy, stats.statistics())
    x = np.concatenate([p[0] for p in stats.rows]).astype(np.float64)
    if stats.layout.bias:
        x = np.c_[np.ones(len(x)), x]
    arms = np.concatenate([p[1] for p in stats.rows])
    reward = np.concatenate([p[2] for p in stats.rows])
    weight = np.concatenate([p[3] for p in stats.rows])
    return policy.fit(x, arms, reward, weight)
