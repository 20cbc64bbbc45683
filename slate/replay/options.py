"""``ReplayOptions``: the one set of replay options, taken by every replay entry point.

:func:`slate.replay.evaluate` (in memory), :func:`slate.replay.evaluate_stream` and
:func:`slate.replay.evaluate_dask` (partitioned), the ``slate replay`` command and the sweeps
of :mod:`slate.tune` all take a :class:`ReplayOptions`; each also takes its fields as keyword
overrides, so ``evaluate(log, policy, n_bootstrap=0)`` keeps working.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from slate.errors import UnknownOptionError
from slate.logs.stream import DEFAULT_CHUNK_ROWS
from slate.replay.clusters import DEFAULT_N_BUCKETS

__all__ = ["ReplayOptions", "replay_options"]



@dataclass(frozen=True)
class ReplayOptions:
    """How to replay a log: estimators, interval, clustering, reward model, metrics, reading.

    One frozen set of options with one set of defaults for every replay entry point. Fields
    that only one path uses are ignored by the others (noted below).

    Parameters
    ----------
    estimator : str, Estimator or sequence of them, default "snips"
        See :func:`~slate.replay.available_estimators`.
    n_bootstrap : int, default 1000
        Bootstrap replicates (pages resampled; the Poisson bootstrap on the partitioned paths);
        0 for a normal interval.
    seed : int, optional, default 0
        Seeds the bootstrap, replay's acceptance draws and the reward model's folds.
    level : float, default 0.95
        Coverage of the intervals.
    reward_model : "take_rate", TakeRateFit, array or callable, default "take_rate"
        For the direct method and doubly robust (see :func:`slate.replay.evaluate`; the
        partitioned paths take ``"take_rate"`` or a callable ``model(log)``).
    refit_reward_model : bool, default True
        In memory: refit the take-rate model in every bootstrap replicate.
    cluster : {"page", "member"}, default "page"
        Independent units of the standard errors and bootstrap intervals.
    n_buckets : int, default 65536
        Hash buckets of member ids for ``cluster="member"``.
    per_title : bool, default False
        Also per-title estimates.
    metrics : bool, default True
        In memory: churn and image coverage (target and logged).
    extra_metrics : mapping of str to callable(log, target) -> float, optional
        In memory: further page metrics.
    known_images : iterable of str, optional
        Image catalog passed to the reader.
    image_embeddings : mapping, (ids, array) pair, pyarrow table or path, optional
        Image vectors keyed by ``image_id``: the page ``diversity`` and ``logged_diversity``.
    diversity_layout : GridLayout, "row", "grid" or sequence of (d_row, d_col), optional
        Which positions interact and how much (default the grid weights).
    missing_embeddings : "raise" or "skip", default "raise"
        An image without an embedding raises an error naming it, or its pairs are skipped.
    n_features, columns, chunk_rows
        Partitioned paths: as for :func:`slate.logs.scan_impressions`.

    Examples
    --------
    >>> from slate.logs.parquet import example_table
    >>> from slate.replay import ReplayOptions, UniformPolicy, evaluate
    >>> opts = ReplayOptions(estimator=("snips", "ips"), n_bootstrap=50)
    >>> opts.with_overrides(level=0.9, who="evaluate").level
    0.9
    >>> report = evaluate(example_table(), UniformPolicy(), options=opts)
    >>> list(report.estimates), round(report.estimate.value, 3)
    (['snips', 'ips'], 0.5)
    >>> ReplayOptions().with_overrides(n_bootstraps=5, who="evaluate")
    Traceback (most recent call last):
    ...
    slate.errors.UnknownOptionError: Unknown option 'n_bootstraps' for evaluate; its options are estimator, n_bootstrap, seed, level, reward_model, refit_reward_model, cluster, n_buckets, per_title, metrics, extra_metrics, known_images, image_embeddings, diversity_layout, missing_embeddings, n_features, columns, chunk_rows.
    """

    estimator: Any = "snips"
    n_bootstrap: int = 1000
    seed: int | None = 0
    level: float = 0.95
    reward_model: Any = "take_rate"
    refit_reward_model: bool = True
    cluster: str = "page"
    n_buckets: int = DEFAULT_N_BUCKETS
    per_title: bool = False
    metrics: bool = True
    extra_metrics: Mapping[str, Any] | None = None
    known_images: Iterable[str] | None = None
    image_embeddings: Any = None
    diversity_layout: Any = None
    missing_embeddings: Any = "raise"
    n_features: int | None = None
    columns: Iterable[str] | None = None
    chunk_rows: int = DEFAULT_CHUNK_ROWS

    def with_overrides(self, who: str = "ReplayOptions", **overrides: Any) -> ReplayOptions:
        """A copy with ``overrides`` (field names) replaced; an unknown name raises
        :class:`~slate.errors.UnknownOptionError` naming it and ``who``."""
        if not overrides:
            return self
        known = [f.name for f in fields(ReplayOptions)]
        unknown = [k for k in overrides if k not in known]
        if unknown:
            raise UnknownOptionError(
                f"Unknown option '{unknown[0]}' for {who}; its options are {', '.join(known)}."
            )
        return replace(self, **overrides)

    def estimator_list(self) -> list[Any]:
        """The estimators asked for, as a list (one name or instance becomes a list of one)."""
        from slate.replay.estimators import Estimator

        e = self.estimator
        return [e] if isinstance(e, (str, Estimator)) else list(e)


def replay_options(
    options: ReplayOptions | None, estimator: str | Any | Sequence[Any] | None,
    overrides: dict[str, Any], who: str,
) -> ReplayOptions:
    """``options`` (or the defaults) with ``estimator`` (when given) and keyword ``overrides``."""
    if options is not None and not isinstance(options, ReplayOptions):
        raise UnknownOptionError(
            f"The 'options' parameter of {who} must be a ReplayOptions; got "
            f"{type(options).__name__} instead."
        )
    if estimator is not None:
        overrides = {**overrides, "estimator": estimator}
    return (options or ReplayOptions()).with_overrides(who, **overrides)
