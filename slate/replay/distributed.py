"""Replay over logs too large for memory: one process streaming chunks, or dask.

Both paths run the same pure function, :func:`file_partials`, on each file of the log: it
streams the file in chunks of whole pages (:func:`slate.logs.scan_impressions`), evaluates the
target on each chunk and reduces it to exact partial sums (:mod:`slate.replay.partials`).
:func:`evaluate_stream` runs it file after file in this process; :func:`evaluate_dask` runs one
task per file on a dask cluster (a :class:`distributed.LocalCluster` of processes by default,
or any cluster by address) and merges the partial sums. The partial sums are exact integers, so
the estimates are bit-identical whatever the number of workers, files or chunks.

Differences from the in-memory :func:`slate.replay.evaluate`: the bootstrap is the Poisson
bootstrap (each page resampled independently, counts drawn from a hash of the seed and the
page id); ``replay`` uses ``M = 1 / min(propensity)`` over the log (from the Parquet statistics,
or a pass over the ``propensity`` column); the take-rate reward model of ``dm``/``dr`` assigns
pages to folds by a hash (two passes over the log); the churn and coverage metrics are not
computed. Per-title estimates (``per_title=True``) have the in-memory values, standard errors
and effective sample sizes (summed exactly per title, :class:`~slate.replay.partials.TitleSums`);
with ``n_bootstrap > 0`` their intervals are Poisson bootstrap percentile intervals (the same
page counts as the overall bootstrap) where the in-memory ones are normal. Page diversity is
(with ``image_embeddings``): a page's
similarity depends on its rows only, and pages are never split across files or chunks, so its
per-page values are summed exactly (:class:`~slate.replay.metrics.DiversitySums`) and equal
the in-memory :func:`slate.replay.evaluate`'s bit for bit.

``cluster="member"`` makes the standard errors and the Poisson bootstrap cluster on hash
buckets of the member ids (:mod:`slate.replay.clusters`) instead of pages: for logs where a
member's pages are correlated (sticky exploration). Exact per-bucket sums are kept
(:class:`~slate.replay.partials.BucketSums`, ``O(n_buckets)`` memory), so the estimates stay
bit-identical whatever the partitioning.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from numpy.typing import NDArray

from slate.logs.log import ImpressionLog, RejectionReport
from slate.logs.parquet import InvalidLogError, PathLike, read_row_groups
from slate.logs.schema import RejectionReason
from slate.logs.stream import DEFAULT_CHUNK_ROWS, list_log_files, scan_impressions
from slate.replay.clusters import DEFAULT_N_BUCKETS, check_cluster, check_n_buckets, page_buckets
from slate.replay.estimators import (
    Estimator,
    ReplayData,
    ReplayMethod,
    _check_options,
    get_estimator,
    seed_key,
)
from slate.replay.evaluate import ReplayReport, diversity_metrics_from
from slate.replay.metrics import (
    DiversityLayout,
    DiversitySums,
    ImageEmbeddings,
    MissingEmbeddings,
    as_image_embeddings,
    diversity_pairs,
    diversity_sums,
    logged_distribution,
)
from slate.replay.options import ReplayOptions, replay_options
from slate.replay.partials import BucketSums, ChunkBootstrap, EstimatorSums, TitleSums, page_ids_of
from slate.replay.policy import InvalidReplayInputError, as_action_distribution
from slate.replay.reward_model import TakeRateCounts

__all__ = [
    "Partials",
    "ReplaySpec",
    "chunk_partials",
    "evaluate_dask",
    "evaluate_stream",
    "file_partials",
]

_N_REASONS = len(RejectionReason)


@dataclass(frozen=True, eq=False)
class ReplaySpec:
    """Everything a worker needs to reduce a file to partial sums (picklable).

    Attributes
    ----------
    policy
        The target (see :func:`slate.replay.evaluate`; not a decision-table path).
    estimators : tuple of Estimator
    n_bootstrap : int
    seed : int or None
    reward_model : callable, TakeRateCounts or None
        For ``dm``/``dr``: ``model(log) -> (n, k_max)`` applied to each chunk, or merged
        take-rate counts.
    known_images : tuple of str, optional
    n_features : int, optional
    columns : tuple of str, optional
    chunk_rows : int
    embeddings : ImageEmbeddings, optional
        When given, the page diversity of the target and of the log is summed too.
    diversity_layout, missing_embeddings
        As for :func:`slate.replay.evaluate`.
    per_title : bool
        Also sum per-title terms (:class:`~slate.replay.partials.TitleSums`).
    cluster : {"page", "member"}
        Clusters of the standard errors and bootstrap (:mod:`slate.replay.clusters`).
    n_buckets : int
        Member buckets, with ``cluster="member"``.
    boot_key : int or None
        Key of the bootstrap counts, drawn once per evaluation (None: from ``seed``).
    """

    policy: Any
    estimators: tuple[Estimator, ...]
    n_bootstrap: int = 0
    seed: int | None = 0
    reward_model: Any = None
    known_images: tuple[str, ...] | None = None
    n_features: int | None = None
    columns: tuple[str, ...] | None = None
    chunk_rows: int = DEFAULT_CHUNK_ROWS
    embeddings: ImageEmbeddings | None = None
    diversity_layout: DiversityLayout = None
    missing_embeddings: MissingEmbeddings = "raise"
    per_title: bool = False
    cluster: str = "page"
    n_buckets: int = DEFAULT_N_BUCKETS
    boot_key: int | None = None

    def __post_init__(self) -> None:
        check_cluster(self.cluster, "ReplaySpec")
        check_n_buckets(self.n_buckets, "ReplaySpec")

    @property
    def names(self) -> list[str]:
        """Keys of the estimates (aliases; repeats get a prime)."""
        keys: list[str] = []
        for est in self.estimators:
            key = est.name
            while key in keys:
                key += "'"
            keys.append(key)
        return keys


@dataclass(eq=False)
class Partials:
    """Exact partial sums of every estimator over some files or chunks, and the counts of the
    rows read, accepted, rejected (by file, row and reason) and undecided, the page
    diversity sums of the target and of the log (with embeddings), and (with ``per_title``)
    the per-title sums of every estimator that has per-row terms and the ids of every title
    read; :meth:`merge` adds.
    """

    sums: dict[str, EstimatorSums]
    n_read: int = 0
    n_accepted: int = 0
    n_undecided: int = 0
    rejected: dict[int, tuple[NDArray[np.int64], NDArray[np.int8]]] = field(default_factory=dict)
    ignored_columns: tuple[str, ...] = ()
    diversity: DiversitySums | None = None
    logged_diversity: DiversitySums | None = None
    titles: dict[str, TitleSums] = field(default_factory=dict)
    title_vocabulary: frozenset[str] = frozenset()
    damaged: tuple[str, ...] = ()  # row groups or files that could not be read (see RejectionReport)
    logged: EstimatorSums | None = None  # the logging policy's: takes and rows per page

    def merge(self, other: Partials) -> Partials:
        """Sums and counts of both (the order of merging does not matter)."""
        sums = dict(self.sums)
        for key, value in other.sums.items():
            sums[key] = sums[key].merge(value) if key in sums else value
        rejected = dict(self.rejected)
        for f, (rows, reasons) in other.rejected.items():
            if f in rejected:
                r0, c0 = rejected[f]
                rows, reasons = np.r_[r0, rows], np.r_[c0, reasons].astype(np.int8)
                order = np.argsort(rows, kind="stable")
                rows, reasons = rows[order], reasons[order]
            rejected[f] = (rows, reasons)
        ignored = self.ignored_columns + tuple(
            c for c in other.ignored_columns if c not in self.ignored_columns)
        def add(a: DiversitySums | None, b: DiversitySums | None) -> DiversitySums | None:
            return b if a is None else a if b is None else a.merge(b)

        logged = other.logged if self.logged is None else (
            self.logged if other.logged is None else self.logged.merge(other.logged))
        titles = dict(self.titles)
        for key, part in other.titles.items():
            titles[key] = titles[key].merge(part) if key in titles else part
        return Partials(sums, self.n_read + other.n_read, self.n_accepted + other.n_accepted,
                        self.n_undecided + other.n_undecided, rejected, ignored,
                        add(self.diversity, other.diversity),
                        add(self.logged_diversity, other.logged_diversity), titles,
                        self.title_vocabulary | other.title_vocabulary,
                        tuple(sorted(self.damaged + other.damaged)), logged)


def _empty_sums(spec: ReplaySpec) -> dict[str, EstimatorSums]:
    from slate.replay import _exact

    def buckets() -> BucketSums | None:
        return BucketSums(spec.n_buckets) if spec.cluster == "member" else None

    return {key: EstimatorSums(est.name, boot=_exact.new(2, spec.n_bootstrap), buckets=buckets())
            for key, est in zip(spec.names, spec.estimators, strict=True)}


def chunk_partials(log: ImpressionLog, spec: ReplaySpec, file_index: int = 0) -> Partials:
    """Reduce one chunk of whole pages (an :class:`~slate.logs.ImpressionLog`) to partial sums.

    Examples
    --------
    >>> from slate.logs import read_impressions
    >>> from slate.logs.parquet import example_table
    >>> from slate.replay import UniformPolicy, get_estimator
    >>> log, _ = read_impressions(example_table())
    >>> spec = ReplaySpec(UniformPolicy(), (get_estimator("snips"),))
    >>> halves = [chunk_partials(log.take(rows), spec) for rows in ([0, 1], [2, 3])]
    >>> merged = halves[0].merge(halves[1])
    >>> merged.sums["snips"].estimate(level=0.95, seed=0).value, merged.n_accepted
    (0.5, 4)
    """
    report = log.rejections
    rejected = {}
    if report.n_rejected:
        rejected[file_index] = (np.asarray(report.rows, np.int64), np.asarray(report.reasons, np.int8))
    out = Partials(_empty_sums(spec), report.n_read, log.n_rows, 0, rejected,
                   tuple(report.ignored_columns), damaged=tuple(report.damaged))
    if spec.per_title:
        out.title_vocabulary = frozenset(log.title_ids)
    if log.n_rows == 0:
        return out
    target = as_action_distribution(spec.policy, log)
    n_decided = log.n_rows if target.decided is None else int(target.decided.sum())
    out.n_undecided = log.n_rows - n_decided
    if n_decided == 0:
        return out
    need_q = any(getattr(e, "needs_reward_model", False) for e in spec.estimators)
    q = None
    if need_q:
        if spec.reward_model is None:
            raise InvalidReplayInputError(
                "The dm and dr estimators need a reward model in a partitioned evaluation; got "
                "none (pass reward_model='take_rate' or a callable model(log))."
            )
        model = spec.reward_model
        q = model.predict(log) if isinstance(model, TakeRateCounts) else model(log)
        q = np.asarray(q, dtype=np.float64)
        if q.shape != (log.n_rows, log.k_max):
            raise InvalidReplayInputError(
                f"The 'reward_model' predictions must have shape ({log.n_rows}, {log.k_max}); "
                f"got {q.shape} instead."
            )
    data = ReplayData.build(log, target, q)
    pages = page_ids_of(data.log)
    boot_key = seed_key(spec.seed, 1) if spec.boot_key is None else spec.boot_key
    buckets = None
    if spec.cluster == "member":
        buckets = page_buckets(data.log, spec.n_buckets)
    bootstrap = ChunkBootstrap(spec.n_bootstrap, boot_key, buckets, spec.n_buckets)
    # the logging policy on the same pages (its takes over its rows), for the paired difference
    R = np.bincount(data.cluster, data.reward, data.n_clusters).astype(np.float64)
    N = np.bincount(data.cluster, minlength=data.n_clusters).astype(np.float64)
    out.logged = EstimatorSums.from_pages(
        "logging", pages, R, N, None, None, data.n_rows, data.n_rows, bootstrap)
    for key, est in zip(spec.names, spec.estimators, strict=True):
        c = est.contributions(data, spec.seed)  # type: ignore[attr-defined]
        cluster = data.cluster if c.weights is not None and len(c.weights) == data.n_rows else None
        out.sums[key] = EstimatorSums.from_pages(
            est.name, pages, c.U, c.V, c.weights, cluster, data.n_rows, int(c.matched.sum()), bootstrap,
        ).with_logged(c.U, c.V, R, N)
        if spec.per_title and c.u is not None and c.v is not None:
            # the bootstrap counts of a row are its page's, or under member clustering its
            # bucket's (TitleSums hashes the ids it is given)
            out.titles[key] = TitleSums.from_rows(
                est.name, data.log.title_ids, data.log.title, pages, data.cluster, c.u, c.v,
                c.weights, c.matched, bootstrap)
    if spec.embeddings is not None:
        pairs = diversity_pairs(data.log, spec.diversity_layout)
        opts: dict[str, Any] = {"layout": spec.diversity_layout,
                                "missing": spec.missing_embeddings, "pairs": pairs}
        out.diversity = diversity_sums(data.log, data.target, spec.embeddings, **opts)
        out.logged_diversity = diversity_sums(
            data.log, logged_distribution(data.log), spec.embeddings, **opts)
    return out


def file_partials(file_index: int, path: PathLike, spec: ReplaySpec) -> Partials:
    """Stream one file in chunks of whole pages and reduce it to partial sums: the function each
    dask task runs (pure: the same file and spec give the same sums)."""
    total = Partials(_empty_sums(spec))
    for chunk in scan_impressions(
        path, known_images=spec.known_images, n_features=spec.n_features, columns=spec.columns,
        chunk_rows=spec.chunk_rows,
    ):
        total = total.merge(chunk_partials(chunk, spec, file_index))
    return total


def _take_rate_partials(file_index: int, path: PathLike, spec: ReplaySpec) -> TakeRateCounts | None:
    counts = None
    for chunk in scan_impressions(
        path, known_images=spec.known_images, n_features=spec.n_features, columns=spec.columns,
        chunk_rows=spec.chunk_rows,
    ):
        part = TakeRateCounts.from_log(chunk, seed=spec.seed)
        counts = part if counts is None else counts.merge(part)
    return counts


def _num_rows(path: Path) -> int:
    """Rows of a log file from its footer (0 for a file whose footer is unreadable: it is
    reported as damaged by the scan)."""
    try:
        return int(pq.ParquetFile(path).metadata.num_rows)
    except (OSError, pa.ArrowException):
        return 0


def _min_propensity(files: Sequence[Path]) -> float:
    """Smallest propensity in (0, 1] of the log: from the Parquet statistics when every row
    group has them and they lie in (0, 1], else from a pass over the ``propensity`` column."""
    lowest = math.inf
    for path in files:
        try:
            meta = pq.ParquetFile(path).metadata
        except (OSError, pa.ArrowException):  # reported as damaged by the scan
            continue
        names = meta.schema.to_arrow_schema().names
        if "propensity" not in names:
            raise InvalidLogError(f"The log file {path} must have a 'propensity' column.")
        j = names.index("propensity")
        stats_ok = True
        for i in range(meta.num_row_groups):
            st = meta.row_group(i).column(j).statistics
            if meta.row_group(i).num_rows == 0:
                continue
            if st is None or not st.has_min_max or not (0 < st.min and st.max <= 1):
                stats_ok = False
                break
            lowest = min(lowest, float(st.min))
        if not stats_ok:
            try:
                p = pq.read_table(path, columns=["propensity"], page_checksum_verification=True).column(0)
            except (OSError, pa.ArrowException):  # a damaged page: the groups that read
                file = pq.ParquetFile(path, page_checksum_verification=True)
                parts = read_row_groups(file, range(meta.num_row_groups), ["propensity"], 0)[0]
                if not parts:
                    continue
                p = pa.concat_tables(parts).column(0)
            good = pc.filter(p, pc.and_(pc.greater(p, 0.0), pc.less_equal(p, 1.0)))
            if len(good):
                lowest = min(lowest, float(pc.min(good).as_py()))
    return lowest


def _prepare(
    source: PathLike | Iterable[PathLike], policy: Any, o: ReplayOptions, who: str,
) -> tuple[list[Path], ReplaySpec]:
    estimator, n_bootstrap, seed, level, reward_model = (
        o.estimator, o.n_bootstrap, o.seed, o.level, o.reward_model)
    known_images, n_features, columns, chunk_rows = o.known_images, o.n_features, o.columns, o.chunk_rows
    image_embeddings, diversity_layout, missing_embeddings = (
        o.image_embeddings, o.diversity_layout, o.missing_embeddings)
    per_title, cluster, n_buckets = o.per_title, o.cluster, o.n_buckets
    _check_options(n_bootstrap, level)
    cluster = check_cluster(cluster, who)
    n_buckets = check_n_buckets(n_buckets, who)
    files = list_log_files(source)
    names = [estimator] if isinstance(estimator, (str, Estimator)) else list(estimator)
    if not names:
        raise InvalidReplayInputError("The 'estimator' parameter must name at least one estimator.")
    estimators: list[Estimator] = [get_estimator(e) for e in names]
    if any(isinstance(e, ReplayMethod) and e.max_weight is None for e in estimators):
        lowest = _min_propensity(files)
        bound = 1.0 / lowest if math.isfinite(lowest) else 1.0
        estimators = [cast(Estimator, ReplayMethod(bound))
                      if isinstance(e, ReplayMethod) and e.max_weight is None else e
                      for e in estimators]
    if isinstance(policy, (str, os.PathLike)):
        from slate.replay.policy import DecisionTable

        policy = DecisionTable.from_parquet(policy)
    if reward_model is not None and not (
        (isinstance(reward_model, str) and reward_model == "take_rate") or callable(reward_model)
    ):
        raise InvalidReplayInputError(
            f"The 'reward_model' of a partitioned evaluation must be 'take_rate' or a callable "
            f"model(log); got {type(reward_model).__name__} instead."
        )
    spec = ReplaySpec(
        policy=policy, estimators=tuple(estimators), n_bootstrap=int(n_bootstrap), seed=seed,
        reward_model=reward_model, known_images=None if known_images is None else tuple(
            str(x) for x in known_images),
        n_features=n_features, columns=None if columns is None else tuple(columns),
        chunk_rows=int(chunk_rows),
        embeddings=None if image_embeddings is None else as_image_embeddings(image_embeddings),
        diversity_layout=diversity_layout, missing_embeddings=missing_embeddings,
        per_title=bool(per_title), cluster=cluster, n_buckets=n_buckets,
        boot_key=seed_key(seed, 1),  # once: with seed=None, one key for every chunk
    )
    if spec.embeddings is not None:
        if missing_embeddings not in ("raise", "skip"):
            raise InvalidReplayInputError(
                "The 'missing_embeddings' option must be 'raise' or 'skip'; got "
                f"{missing_embeddings!r} instead."
            )
        from slate.replay.metrics import _offsets

        _offsets(diversity_layout, 1)  # a bad layout fails here, not in a worker
    return files, spec


def _needs_take_rate(spec: ReplaySpec) -> bool:
    return isinstance(spec.reward_model, str) and spec.reward_model == "take_rate" and any(
        getattr(e, "needs_reward_model", False) for e in spec.estimators)


def _report(
    total: Partials, files: Sequence[Path], spec: ReplaySpec, level: float, source: str
) -> ReplayReport:
    from slate.replay.evaluate import nothing_left

    offsets = np.r_[0, np.cumsum([_num_rows(f) for f in files])]
    rows = [total.rejected[f][0] + offsets[f] for f in sorted(total.rejected)]
    reasons = [total.rejected[f][1] for f in sorted(total.rejected)]
    rejections = RejectionReport(
        n_read=total.n_read, n_accepted=total.n_accepted,
        rows=np.concatenate(rows) if rows else np.zeros(0, np.int64),
        reasons=np.concatenate(reasons) if reasons else np.zeros(0, np.int8),
        ignored_columns=total.ignored_columns, source=source, damaged=total.damaged,
    )
    empty = nothing_left(rejections)
    if empty is not None:
        raise empty
    estimates = {k: s.estimate(level=level, seed=spec.seed, logged=total.logged)
                 for k, s in total.sums.items()}
    first = next(iter(total.sums.values()))
    policy = spec.policy
    name = getattr(policy, "name", type(policy).__name__)
    metrics: dict[str, float] = {}
    if spec.embeddings is not None:
        metrics = diversity_metrics_from(total.diversity or DiversitySums(),
                                         total.logged_diversity or DiversitySums(),
                                         spec.missing_embeddings)
    options: dict[str, Any] = {"n_bootstrap": spec.n_bootstrap, "seed": spec.seed,
                               "level": level, "bootstrap": "poisson", "files": len(files)}
    if spec.cluster == "member":
        options["cluster"] = "member"
        options["n_buckets"] = spec.n_buckets
        options["n_clusters"] = {k: s.buckets.n_clusters for k, s in total.sums.items()
                                 if s.buckets is not None}
    per_title = {}
    if spec.per_title:
        vocabulary = tuple(sorted(total.title_vocabulary))
        per_title = {k: total.titles[k].estimate(level=level, title_ids=vocabulary)
                     for k in total.sums if k in total.titles}
        options["per_title_interval"] = "poisson bootstrap" if spec.n_bootstrap else "normal"
    return ReplayReport(
        estimates=estimates, per_title=per_title, metrics=metrics, policy=str(name),
        n_rows=first.n_rows, n_pages=first.n_pages, n_undecided=total.n_undecided,
        rejections=rejections, options=options,
    )


def evaluate_stream(
    source: PathLike | Iterable[PathLike],
    policy: Any,
    estimator: str | Estimator | Sequence[str | Estimator] | None = None,
    *,
    options: ReplayOptions | None = None,
    **overrides: Any,
) -> ReplayReport:
    """Evaluate ``policy`` on a Parquet log in this process, one chunk of pages at a time.

    Memory is that of one chunk (about ``chunk_rows`` rows), whatever the size of the log. The
    estimates equal :func:`evaluate_dask`'s bit for bit. See the module docstring for how they
    differ from :func:`slate.replay.evaluate` (Poisson bootstrap).

    Parameters
    ----------
    source : path, folder or iterable of paths
        ``slate.impressions`` Parquet files (a page never split across files).
    policy, estimator, options, **overrides
        As for :func:`slate.replay.evaluate` (:class:`~slate.replay.ReplayOptions`; its
        ``refit_reward_model``, ``metrics`` and ``extra_metrics`` are not used here). Of them:
    seed, level
        As for :func:`slate.replay.evaluate`.
    n_bootstrap : int, default 1000
        Poisson bootstrap replicates; 0 for a normal interval.
    reward_model : "take_rate", callable or None, default "take_rate"
        For ``dm``/``dr`` (a second pass over the log counts the take rates).
    known_images, n_features, columns, chunk_rows
        As for :func:`slate.logs.scan_impressions`.
    image_embeddings, diversity_layout, missing_embeddings
        As for :func:`slate.replay.evaluate`: the page ``diversity`` and ``logged_diversity``,
        summed exactly per page (bit-identical to the in-memory values).
    per_title : bool, default False
        Also per-title estimates (``report.per_title``: one entry per title id read, sorted) of
        every estimator with per-row terms (all but ``pi``). Values, standard errors and
        effective sample sizes are the in-memory :func:`slate.replay.evaluate`'s (to rounding);
        with ``n_bootstrap > 0`` the intervals are Poisson bootstrap percentile intervals (the
        in-memory per-title intervals are normal). The bootstrap costs ``n_bootstrap x rows``
        additions and ``1088 * n_titles * n_bootstrap`` bytes per chunk and in the merged sums.
    cluster : {"page", "member"}, default "page"
        Independent units of the standard errors and the bootstrap: pages, or hash buckets of
        the member ids (:mod:`slate.replay.clusters`), for logs where a member's pages are
        correlated (sticky exploration, a member's taste). Values are the same either way.
        Under ``"member"`` the per-title intervals (with ``n_bootstrap > 0``) resample buckets
        too, while the per-title ``se`` stays the row-level one.
    n_buckets : int, default 65536
        Member buckets, with ``cluster="member"`` (memory ``O(n_buckets)``).

    Returns
    -------
    ReplayReport

    Examples
    --------
    >>> import tempfile, os
    >>> from slate.logs import write_impressions
    >>> from slate.logs.parquet import example_table
    >>> from slate.replay import UniformPolicy
    >>> path = write_impressions(os.path.join(tempfile.mkdtemp(), "log.parquet"), example_table())
    >>> report = evaluate_stream(path, UniformPolicy(), ["snips", "ips"], n_bootstrap=20)
    >>> report.estimate.value, report.estimate.interval_method
    (0.5, 'poisson bootstrap')
    >>> titles = evaluate_stream(path, UniformPolicy(), "ips", per_title=True).per_title["ips"]
    >>> titles.title_ids, titles.value.tolist()
    (('T1', 'T2'), [0.5, 0.5])
    >>> by_member = evaluate_stream(path, UniformPolicy(), "ips", cluster="member", n_buckets=16)
    >>> by_member.estimate.value, by_member.options["cluster"]
    (0.5, 'member')
    """
    o = replay_options(options, estimator, overrides, "evaluate_stream")
    files, spec = _prepare(source, policy, o, "evaluate_stream")
    if _needs_take_rate(spec):
        counts = None
        for i, f in enumerate(files):
            part = _take_rate_partials(i, f, spec)
            if part is not None:
                counts = part if counts is None else counts.merge(part)
        spec = replace(spec, reward_model=counts)
    total = Partials(_empty_sums(spec))
    for i, f in enumerate(files):
        total = total.merge(file_partials(i, f, spec))
    return _report(total, files, spec, float(o.level), str(source) if isinstance(
        source, (str, os.PathLike)) else "<files>")


def evaluate_dask(
    source: PathLike | Iterable[PathLike],
    policy: Any,
    estimator: str | Estimator | Sequence[str | Estimator] | None = None,
    *,
    client: Any = None,
    address: str | None = None,
    n_workers: int = 2,
    options: ReplayOptions | None = None,
    **overrides: Any,
) -> ReplayReport:
    """Evaluate ``policy`` on a Parquet log with dask: one task per file, partial sums merged.

    Parameters
    ----------
    client : distributed.Client, optional
        Use this client's cluster.
    address : str, optional
        Else connect to the scheduler at this address.
    n_workers : int, default 2
        Else start a :class:`distributed.LocalCluster` of this many single-threaded worker
        processes (with dask's worker profiler off: it costs 20-25% on this workload), and
        close it afterwards.
    source, policy, estimator, options, **overrides
        As for :func:`evaluate_stream`, whose estimates this returns bit for bit.

    Returns
    -------
    ReplayReport
    """
    o = replay_options(options, estimator, overrides, "evaluate_dask")
    files, spec = _prepare(source, policy, o, "evaluate_dask")
    import dask
    from distributed import Client, LocalCluster

    own_cluster = None
    own_client = None
    if client is None:
        if address is not None:
            own_client = client = Client(address)
        else:
            if not isinstance(n_workers, (int, np.integer)) or not 1 <= n_workers <= 1024:
                raise InvalidReplayInputError(
                    f"The 'n_workers' parameter of evaluate_dask must be an integer in [1, 1024] "
                    f"(worker processes of a local cluster); got {n_workers!r} instead."
                )
            with dask.config.set({"distributed.worker.profile.enabled": False}):
                own_cluster = LocalCluster(n_workers=int(n_workers), threads_per_worker=1,
                                           processes=True, dashboard_address=None)
                own_client = client = Client(own_cluster)
    try:
        if _needs_take_rate(spec):
            parts = client.gather(client.map(_take_rate_partials, range(len(files)), files,
                                             [spec] * len(files), pure=False))
            counts = None
            for part in parts:
                if part is not None:
                    counts = part if counts is None else counts.merge(part)
            spec = replace(spec, reward_model=counts)
        [spec_future] = client.scatter([spec], broadcast=True, hash=False)
        futures = client.map(file_partials, range(len(files)), files,
                             [spec_future] * len(files), pure=False)
        total = Partials(_empty_sums(spec))
        for part in client.gather(futures):
            total = total.merge(part)
    finally:
        if own_client is not None:
            own_client.close()
        if own_cluster is not None:
            own_cluster.close()
    return _report(total, files, spec, float(o.level), str(source) if isinstance(
        source, (str, os.PathLike)) else "<files>")
