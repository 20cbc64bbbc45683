"""``evaluate()``: the top-level entry point of offline replay, and its :class:`ReplayReport`."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from slate.logs.log import ImpressionLog, RejectionReport
from slate.logs.parquet import read_impressions
from slate.replay.estimators import (
    Estimate,
    Estimator,
    PerTitleEstimates,
    ReplayData,
    get_estimator,
)
from slate.replay.metrics import (
    DiversityLayout,
    DiversitySums,
    MissingEmbeddings,
    as_image_embeddings,
    churn_rate,
    churn_vs_previous,
    diversity_pairs,
    diversity_sums,
    image_coverage,
    logged_distribution,
)
from slate.replay.options import ReplayOptions, replay_options
from slate.replay.policy import (
    ActionDistribution,
    InvalidReplayInputError,
    as_action_distribution,
)
from slate.replay.reward_model import fit_reward_model

__all__ = ["ReplayReport", "evaluate"]


@dataclass(frozen=True, eq=False)
class ReplayReport:
    """What :func:`evaluate` returns.

    Attributes
    ----------
    estimates : mapping of str to Estimate
        One per estimator asked for, by its alias, in the order asked.
    per_title : mapping of str to PerTitleEstimates
        Per-title estimates of the estimators that have them (when ``per_title=True``).
    metrics : mapping of str to float
        ``churn_rate`` and ``image_coverage`` of the target, the same for the logged policy
        (``logged_churn_rate``, ``logged_image_coverage``), ``churn_vs_previous`` (against what
        each member actually saw last time: the log's ``previous_image_id``, else the member's
        previous session in the log) and ``logged_churn_vs_previous``; with image embeddings,
        ``diversity`` and ``logged_diversity`` (and, with ``missing_embeddings="skip"``,
        ``diversity_missing_images``, ``diversity_skipped_pairs`` and
        ``logged_diversity_skipped_pairs``); and any extra metrics (NaN where not computable).
    policy : str
    n_rows, n_pages : int
        Accepted log rows and pages.
    n_undecided : int
        Rows the target has no decision for (left out of the estimates).
    rejections : RejectionReport
        What reading the log rejected, by reason.
    """

    estimates: Mapping[str, Estimate]
    per_title: Mapping[str, PerTitleEstimates]
    metrics: Mapping[str, float]
    policy: str
    n_rows: int
    n_pages: int
    n_undecided: int
    rejections: RejectionReport
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def estimate(self) -> Estimate:
        """The first (main) estimate."""
        return next(iter(self.estimates.values()))

    def to_dict(self) -> dict[str, Any]:
        """Every estimate, metric and count, JSON-ready."""
        return {
            "policy": self.policy,
            "n_rows": self.n_rows,
            "n_pages": self.n_pages,
            "n_undecided": self.n_undecided,
            "options": dict(self.options),
            "estimates": {k: v.to_dict() for k, v in self.estimates.items()},
            "per_title": {k: v.to_dict() for k, v in self.per_title.items()},
            "metrics": {k: (None if not np.isfinite(v) else v) for k, v in self.metrics.items()},
            "rejections": self.rejections.to_dict(),
        }

    def to_json(self, path: str | os.PathLike[str] | None = None) -> str:
        """The :meth:`to_dict` as JSON text (NaN written as null); also written to ``path``."""
        def clean(x: Any) -> Any:
            if isinstance(x, float) and not np.isfinite(x):
                return None
            if isinstance(x, dict):
                return {k: clean(v) for k, v in x.items()}
            if isinstance(x, list):
                return [clean(v) for v in x]
            return x

        text = json.dumps(clean(self.to_dict()), indent=2)
        if path is not None:
            with open(path, "w") as fh:
                fh.write(text)
        return text

    def __str__(self) -> str:
        head = (f"policy {self.policy!r}: {self.n_rows} rows, {self.n_pages} pages"
                + (f", {self.n_undecided} undecided" if self.n_undecided else ""))
        lines = [head, f"{'estimator':<14}{'value':>9}{'se':>9}{'interval':>22}"
                 f"{'ess':>11}{'matched':>9}  warn"]
        for name, e in self.estimates.items():
            lo, hi = e.interval
            lines.append(
                f"{name:<14}{e.value:>9.4f}{e.se:>9.4f}{f'[{lo:.4f}, {hi:.4f}]':>22}"
                f"{e.ess:>11.1f}{e.n_matched:>9}  "
                f"{'no estimate: ' + e.reason if e.status != 'ok' else 'weights!' if e.weights_exploded else ''}"
            )
        for name, e in self.estimates.items():  # can the estimate tell the target from logging?
            if e.status == "ok" and e.separation:
                lines.append(f"{name} vs logging ({e.logged_value:.4f}): {e.separation}")
        width = max([24, *(len(k) + 1 for k in self.metrics)])
        for k, v in self.metrics.items():
            lines.append(f"{k:<{width}}{v:.4f}")
        for name, pt in self.per_title.items():
            fixed = "model" in self.estimates[name].interval_method  # DM/DR: per title, q fixed
            lines.extend(_per_title_lines(name, pt, fixed))
        return "\n".join(lines)


PER_TITLE_ROWS = 10
"""Titles printed per estimator by ``str(report)`` (those with the most rows)."""


def _per_title_lines(name: str, pt: PerTitleEstimates, model_fixed: bool = False) -> list[str]:
    """A compact per-title table: the titles with the most rows first, then a count of the rest."""
    order = np.argsort(-pt.n_rows, kind="stable")[:PER_TITLE_ROWS]
    tw = max([6, *(len(pt.title_ids[i]) + 1 for i in order)])
    how = "normal intervals" + (", reward model fixed" if model_fixed else "")
    lines = [f"per title ({name}, {how}):",
             f"  {'title':<{tw}}{'value':>9}{'interval':>22}{'rows':>9}{'matched':>9}"]
    for i in order:
        lines.append(f"  {pt.title_ids[i]:<{tw}}{pt.value[i]:>9.4f}"
                     f"{f'[{pt.lower[i]:.4f}, {pt.upper[i]:.4f}]':>22}{pt.n_rows[i]:>9}"
                     f"{pt.n_matched[i]:>9}")
    rest = len(pt.title_ids) - len(order)
    if rest > 0:
        lines.append(f"  ... and {rest} more title{'s' if rest > 1 else ''} (report.per_title)")
    return lines


def nothing_left(report: RejectionReport) -> InvalidReplayInputError | None:
    """The error to raise when every row of a log was rejected (None when some row is left).

    Examples
    --------
    >>> import numpy as np
    >>> from slate.logs import RejectionReport
    >>> r = RejectionReport(n_read=3, n_accepted=0, rows=np.arange(3), reasons=np.full(3, 8, np.int8))
    >>> print(nothing_left(r))
    All 3 rows were rejected (missing_reward: 3): nothing is left to replay. Rewards are null in a decision log until outcomes are attached: run 'slate join DECISIONS OUTCOMES --output LOG'.
    """
    if report.n_accepted or not report.n_read:
        return None
    reasons = ", ".join(f"{k}: {v}" for k, v in report.counts.items() if v)
    hint = ""
    if report.counts.get("missing_reward") == report.n_read:
        hint = (" Rewards are null in a decision log until outcomes are attached: run "
                "'slate join DECISIONS OUTCOMES --output LOG'.")
    return InvalidReplayInputError(
        f"All {report.n_read} rows were rejected ({reasons}): nothing is left to replay.{hint}"
    )


def _as_log(
    log: ImpressionLog | pa.Table | str | os.PathLike[str], known_images: Iterable[str] | None
) -> ImpressionLog:
    if isinstance(log, ImpressionLog):
        return log
    if isinstance(log, (pa.Table, str, os.PathLike)):
        return read_impressions(log, known_images=known_images)[0]
    raise InvalidReplayInputError(
        "The 'log' parameter of evaluate must be an ImpressionLog, a pyarrow Table or a path to "
        f"a slate.impressions Parquet file; got {type(log).__name__} instead."
    )


def diversity_metrics_from(
    target: DiversitySums, logged: DiversitySums, missing: str
) -> dict[str, float]:
    """The report's diversity metrics from the target's and the log's sums."""
    out = {"diversity": target.value, "logged_diversity": logged.value}
    if missing == "skip":
        out["diversity_missing_images"] = float(len(target.missing_images | logged.missing_images))
        out["diversity_skipped_pairs"] = target.skipped_pairs
        out["logged_diversity_skipped_pairs"] = logged.skipped_pairs
    return out


def _diversity_metrics(
    log: ImpressionLog, target: ActionDistribution, embeddings: Any, layout: DiversityLayout,
    missing: MissingEmbeddings,
) -> dict[str, float]:
    emb = as_image_embeddings(embeddings)
    pairs = diversity_pairs(log, layout)
    sums = diversity_sums(log, target, emb, layout=layout, missing=missing, pairs=pairs)
    logged = diversity_sums(log, logged_distribution(log), emb, layout=layout, missing=missing,
                            pairs=pairs)
    return diversity_metrics_from(sums, logged, missing)


def evaluate(
    log: ImpressionLog | pa.Table | str | os.PathLike[str],
    policy: Any,
    estimator: str | Estimator | Sequence[str | Estimator] | None = None,
    *,
    options: ReplayOptions | None = None,
    **overrides: Any,
) -> ReplayReport:
    """Estimate what ``policy`` would have achieved on the logged pages.

    Parameters
    ----------
    log : ImpressionLog, pyarrow.Table or path
        Read and validated with :func:`slate.logs.read_impressions` unless already a log.
    policy
        The target: an :class:`~slate.replay.ActionDistribution`, a :class:`TargetPolicy`
        (e.g. :class:`~slate.replay.LinearPolicy`, :class:`~slate.replay.DecisionTable`), a path
        to a decision table, or ``{"probs": (n, k_max)}`` / ``{"choice": (n,)}``.
    estimator : str, Estimator or sequence of them, optional
        Replaces ``options.estimator`` (default "snips"); see
        :func:`~slate.replay.available_estimators`.
    options : ReplayOptions, optional
        Every other option (:class:`~slate.replay.ReplayOptions`, defaults below).
    **overrides
        Fields of :class:`~slate.replay.ReplayOptions`, replacing those of ``options``; an
        unknown one raises :class:`~slate.errors.UnknownOptionError`. They are:
    n_bootstrap : int, default 1000
        Bootstrap replicates (pages resampled); 0 for a normal interval.
    seed : int, optional
        Seeds the bootstrap, replay's acceptance draws and the reward model's folds.
    level : float, default 0.95
    reward_model : "take_rate", TakeRateFit, array (n, k_max) or callable(log), default "take_rate"
        For the direct method and doubly robust (computed only when one of them is asked for).
        ``"take_rate"``: :func:`~slate.replay.take_rate_model` (cross-fitted, seeded by
        ``seed``); a :class:`~slate.replay.reward_model.TakeRateFit` of the log for other
        options. An array or a callable is held fixed: their intervals leave out the model's
        own estimation error (``interval_method`` ends in ``"model fixed"``).
    refit_reward_model : bool, default True
        With the take-rate model, refit it in every bootstrap replicate and include its
        estimation error in the standard error (delta method), so DM's and DR's intervals
        cover the model's uncertainty (``interval_method`` ``"bootstrap, model refit"``).
        False holds the fitted model fixed (narrower intervals that ignore its error).
    cluster : {"page", "member"}, default "page"
        The independent units of the standard errors and bootstrap intervals. ``"member"`` when
        one member's pages are correlated (sticky exploration holds a random draw across
        sessions; members have persistent tastes): pages are summed per member bucket
        (``n_buckets`` hash buckets of member ids, as on the streaming and dask paths) first.
    n_buckets : int, default 65536
        Hash buckets of member ids for ``cluster="member"``.
    per_title : bool, default False
        Also compute per-title estimates.
    metrics : bool, default True
        Compute churn and image coverage (target and logged).
    extra_metrics : mapping of str to callable(log, target) -> float, optional
        Further page metrics.
    known_images : iterable of str, optional
        Image catalog passed to the reader.
    image_embeddings : mapping, (ids, array) pair, pyarrow table or path, optional
        Image vectors keyed by ``image_id`` (see :class:`~slate.replay.metrics.ImageEmbeddings`);
        when given, the page ``diversity`` of the target and ``logged_diversity`` of the log
        are computed (whatever ``metrics``; see :func:`~slate.replay.metrics.diversity_sums`).
    diversity_layout : GridLayout, "row", "grid" or sequence of (d_row, d_col), optional
        Which positions interact and how much; default the :class:`~slate.page.GridLayout`
        weights of the simulator and the page optimizer (neighbours 1, farther in the row 0.1,
        above/below 0.5). ``"row"``/``"grid"``: weight 1 per neighbouring pair.
    missing_embeddings : "raise" or "skip", default "raise"
        An image the diversity needs without an embedding raises an error naming it; "skip"
        leaves its pairs out and reports how many.

    Returns
    -------
    ReplayReport

    Examples
    --------
    >>> from slate.logs.parquet import example_table
    >>> from slate.replay import evaluate, UniformPolicy
    >>> report = evaluate(example_table(), UniformPolicy(), ["snips", "ips"], n_bootstrap=50)
    >>> round(report.estimate.value, 3), report.estimate.n_matched
    (0.5, 4)
    """
    o = replay_options(options, estimator, overrides, "evaluate")
    the_log = _as_log(log, o.known_images)
    empty = nothing_left(the_log.rejections)
    if empty is not None:
        raise empty
    target = as_action_distribution(policy, the_log)
    names = o.estimator_list()
    if not names:
        raise InvalidReplayInputError("The 'estimator' parameter must name at least one estimator.")
    estimators = [get_estimator(e) for e in names]
    need_q = any(getattr(e, "needs_reward_model", False) for e in estimators)
    q = (fit_reward_model(o.reward_model, the_log, o.seed, refit=o.refit_reward_model)
         if need_q else None)
    data = ReplayData.build(the_log, target, q, cluster=o.cluster, n_buckets=o.n_buckets)
    estimates, titles = _estimates(data, estimators, o)
    values = _metrics(data, o)
    return ReplayReport(
        estimates=estimates,
        per_title=titles,
        metrics=values,
        policy=target.name,
        n_rows=data.n_rows,
        n_pages=data.log.n_pages,
        n_undecided=the_log.n_rows - data.n_rows,
        rejections=the_log.rejections,
        options={"n_bootstrap": o.n_bootstrap, "seed": o.seed, "level": o.level,
                 **({"refit_reward_model": bool(o.refit_reward_model)} if need_q else {}),
                 **({"cluster": "member", "n_buckets": data.n_buckets,
                     "n_clusters": int(data.page_cluster.max()) + 1}
                    if data.page_cluster is not None else {})},
    )


def _estimates(
    data: ReplayData, estimators: list[Estimator], o: ReplayOptions
) -> tuple[dict[str, Estimate], dict[str, PerTitleEstimates]]:
    n_bootstrap, seed, level, per_title = o.n_bootstrap, o.seed, o.level, o.per_title
    estimates: dict[str, Estimate] = {}
    titles: dict[str, PerTitleEstimates] = {}
    for est in estimators:
        key = est.name
        while key in estimates:
            key += "'"
        estimates[key] = est.estimate(data, n_bootstrap=n_bootstrap, seed=seed, level=level)
        if per_title and hasattr(est, "per_title"):
            pt = est.per_title(data, seed=seed, level=level)
            if pt is not None:
                titles[key] = pt
    return estimates, titles


def _metrics(data: ReplayData, o: ReplayOptions) -> dict[str, float]:
    metrics, image_embeddings, extra_metrics = o.metrics, o.image_embeddings, o.extra_metrics
    diversity_layout, missing_embeddings = o.diversity_layout, o.missing_embeddings
    values: dict[str, float] = {}
    if metrics:
        logged = logged_distribution(data.log)
        values["churn_rate"] = churn_rate(data.log, data.target)
        values["logged_churn_rate"] = churn_rate(data.log, logged)
        values["image_coverage"] = image_coverage(data.log, data.target)[0]
        values["logged_image_coverage"] = image_coverage(data.log, logged)[0]
        values["churn_vs_previous"] = churn_vs_previous(data.log, data.target)
        values["logged_churn_vs_previous"] = churn_vs_previous(data.log, logged)
    if image_embeddings is not None:
        values.update(_diversity_metrics(data.log, data.target, image_embeddings,
                                         diversity_layout, missing_embeddings))
    for name, fn in (extra_metrics or {}).items():
        values[name] = float(fn(data.log, data.target))
    return values
