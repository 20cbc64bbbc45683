"""``SweepResults``: a finished sweep's table, front, recommendation and decisions, and
:func:`load_results` to open one (below :mod:`slate.tune.sweep`, which writes them, and
:mod:`slate.tune.plots`, which draws them)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import NDArray

from slate.errors import SweepError
from slate.logs.log import ImpressionLog
from slate.replay.policy import ActionDistribution
from slate.tune.config import Constraints, Experiment
from slate.tune.data import prepare
from slate.tune.pareto import Recommendation, front, recommend

__all__ = ["SweepResults", "load_replicates", "load_results", "target_distribution"]


@dataclass(frozen=True, eq=False)
class SweepResults:
    """A finished sweep: the table, the front, the recommendation and where files are.

    Attributes
    ----------
    path : Path
        The results folder.
    table : pyarrow.Table
        One row per point (see ``docs/tuning.md`` for the columns).
    experiment : Experiment
    summary : dict
        Config hash, library version, seed, timings, the logging policy's own metrics, the
        recommendation.
    """

    path: Path
    table: pa.Table
    experiment: Experiment
    summary: dict[str, Any] = field(default_factory=dict)

    def column(self, name: str) -> NDArray[Any]:
        """One column as a numpy array (nulls as NaN)."""
        col = self.table.column(name)
        if pa.types.is_integer(col.type) and col.null_count:
            return np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64)
        return np.asarray(col.to_numpy(zero_copy_only=False))

    @property
    def n_points(self) -> int:
        """Points in the table."""
        return self.table.num_rows

    def front(self, constraints: Constraints | None = None, *, paired: bool | None = None) -> NDArray[np.int64]:
        """Rows on the front (see :func:`slate.tune.front`).

        By default the paired front (a point leaves it only when another point is clearly
        better, on paired bootstrap differences) when the sweep kept replicates, else the plain
        Pareto front of the estimates; ``paired=False`` gives the plain one. ``constraints``
        (default: none) filter the points first.
        """
        names = self.table.column_names
        if constraints is None and paired is not False and "front_paired" in names:
            mask = self.column("front_paired").astype(bool)
        elif constraints is None and not paired:
            mask = self.column("pareto").astype(bool)
        else:
            reps = load_replicates(self.path) if paired is not False else None
            if paired and reps is None:
                raise SweepError(f"The sweep in {self.path} kept no paired replicates: no paired front.")
            mask = _front_of(self.table, None if reps is None else reps[0], constraints,
                             self.experiment.estimator.level)
        return np.flatnonzero(mask)

    def recommended(self, constraints: Constraints | None = None) -> int | None:
        """Row of the recommended point under ``constraints`` (default: the experiment's)."""
        return self.recommendation(constraints).index

    def recommendation(self, constraints: Constraints | None = None, rule: str = "best_estimate") -> Recommendation:
        """The recommended point and why (see :func:`slate.tune.recommend`): exploded weights
        and intervals that do not beat the logging policy are left out unless
        ``constraints.allow_unproven``; ``rule`` chooses among the rest ("best_estimate",
        "lower_bound" or "simplest"), with ties found on the paired replicates."""
        cons = self.experiment.constraints if constraints is None else constraints
        names = ("take_fraction", "diversity", "churn", "take_fraction_low", "weights_exploded",
                 "diff_logged_low", "w_diversity", "w_churn")
        columns = {k: self.column(k) for k in names if k in self.table.column_names}
        baseline = self.summary.get("logged", {}).get("take_fraction")
        reps = load_replicates(self.path)
        return recommend(columns, cons, baseline=None if baseline is None else float(baseline),
                         rule=rule, replicates=None if reps is None else reps[0])

    def rows(self) -> list[dict[str, Any]]:
        """The table as a list of dicts."""
        return list(self.table.to_pylist())

    def target(
        self, point: int, base_dir: str | os.PathLike[str] | None = None
    ) -> tuple[ImpressionLog, ActionDistribution]:
        """The evaluated log and point ``point``'s decisions on it, ready for
        :func:`slate.replay.evaluate` with any estimator (no page is solved again).

        The data is read (or simulated) again from the experiment, relative to ``base_dir``
        (default: the folder the sweep ran from); its checksums must match the results'.

        Examples
        --------
        >>> import tempfile
        >>> from slate.replay import evaluate
        >>> from slate.tune import experiment_from_dict, run_sweep
        >>> exp = experiment_from_dict({
        ...     "data": {"kind": "sim", "world": {"n_members": 30, "n_titles": 40, "max_images": 4,
        ...                                       "page": {"rows": 2, "cols": 5}},
        ...              "n_days": 2},
        ...     "policy": {"kind": "oracle"}, "search": {"diversity": [0.0, 1.0]},
        ...     "estimator": {"name": "snips", "n_bootstrap": 0},
        ...     "compute": {"scheduler": "sync", "progress": False}})
        >>> results = run_sweep(exp, tempfile.mkdtemp(), plots=False)
        >>> log, target = results.target(1)
        >>> again = evaluate(log, target, "snips", n_bootstrap=0, seed=exp.seed, metrics=False)
        >>> bool(again.estimate.value == results.column("take_fraction")[1])
        True
        """
        points = self.experiment.points()
        if not 0 <= point < len(points):
            raise SweepError(f"The 'point' must be one of 0..{len(points) - 1}; got {point!r}.")
        the_point = points[point]
        where = base_dir if base_dir is not None else self.summary.get("base_dir", ".")
        prep = prepare(self.experiment, Path(where))
        stored = self.summary.get("data", {})
        for key, value in prep.info.items():
            if key.endswith("sha256") and stored.get(key) != value:
                raise SweepError(f"The data changed since the sweep in '{self.path}' ran ({key} differs).")
        settings = list(dict.fromkeys(p.solve_key for p in points))
        column = settings.index(the_point.solve_key)
        folder = Path(self.summary.get("timing", {}).get("solve_folder", self.path / "work"))
        choice = np.full(prep.log.n_rows, -1, dtype=np.int64)
        for block in sorted(folder.glob("solve-*.npz")):
            with np.load(block, allow_pickle=False) as z:
                choice[z["rows"]] = z["choices"][:, column]
        if (choice < 0).any():
            raise SweepError(f"The solves of '{self.path}' are incomplete or gone (looked in '{folder}').")
        target = target_distribution(prep.log, choice, the_point.exploration, name=f"point {point}")
        return prep.log, target

    @property
    def ms_per_solve(self) -> float:
        """Mean wall time of one page solve, milliseconds (over every solve the sweep made)."""
        return float(self.summary.get("timing", {}).get("ms_per_solve", float("nan")))


def load_results(path: str | os.PathLike[str]) -> SweepResults:
    """Open a results folder written by :func:`run_sweep`.

    Raises
    ------
    SweepError
        The folder has no finished results.
    """
    p = Path(path)
    table_path = p / "results.parquet"
    manifest_path = p / "manifest.json"
    if not table_path.exists() or not manifest_path.exists():
        raise SweepError(f"'{p}' is not a finished sweep (no results.parquet / manifest.json); run the sweep first.")
    from slate.tune.config import experiment_from_dict

    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        summary = json.loads((p / "summary.json").read_text(encoding="utf-8")) if (p / "summary.json").exists() else {}
        table = pq.read_table(table_path, page_checksum_verification=True)
        experiment = experiment_from_dict(manifest["experiment"])
    except (OSError, ValueError, RecursionError, KeyError, TypeError, pa.ArrowException) as err:
        detail = " ".join(str(err).split())[:200] or type(err).__name__
        raise SweepError(
            f"The results in '{p}' are damaged ({type(err).__name__}: {detail}); run 'slate sweep' "
            "again to recompute them."
        ) from None
    return SweepResults(path=p, table=table, experiment=experiment, summary=summary)


# ====================================================================== blocks


def load_replicates(path: str | os.PathLike[str]) -> tuple[NDArray[np.float64], NDArray[np.float64]] | None:
    """``(points (n_points, B), logged (B,))`` paired bootstrap replicates of a results folder
    (None for a sweep written before they were kept)."""
    f = Path(path) / "replicates.npz"
    if not f.exists():
        return None
    with np.load(f, allow_pickle=False) as z:
        return np.asarray(z["points"], np.float64), np.asarray(z["logged"], np.float64)


def target_distribution(log: ImpressionLog, choice: NDArray[Any], eps: float, name: str) -> ActionDistribution:
    """The point's target on the log: its choice, mixed with uniform exploration at rate ``eps``."""
    c = np.asarray(choice, dtype=np.int64)
    if eps == 0:
        return ActionDistribution.deterministic(c, log.shown, log.k_max, name=name)
    real = log.candidates >= 0
    probs = eps * real / log.n_candidates[:, None].astype(np.float64)
    probs[np.arange(log.n_rows), c] += 1.0 - eps
    return ActionDistribution(prob_logged=probs[np.arange(log.n_rows), log.shown], probs=probs, name=name)


def _front_of(table: pa.Table | dict[str, Any], reps: NDArray[np.float64] | None,
              constraints: Constraints | None, level: float) -> NDArray[np.bool_]:
    """The front of a results table's points with an estimate and an interval (paired when
    ``reps`` has at least 2 replicates; a point without replicates is compared on estimates)."""
    def col(name: str) -> NDArray[np.float64]:
        v = table.column(name).to_numpy(zero_copy_only=False) if isinstance(table, pa.Table) else table[name]
        return np.asarray(v, dtype=np.float64)

    take, lo, hi = col("take_fraction"), col("take_fraction_low"), col("take_fraction_high")
    # diversity or churn is NaN for every point alike when the pages have no layout pairs or
    # no member comes back; they then do not separate points
    div, churn = np.nan_to_num(col("diversity"), nan=0.0), np.nan_to_num(col("churn"), nan=0.0)
    ok = ~np.isnan(take) & ~np.isnan(lo) & ~np.isnan(hi)
    mask = np.zeros(len(take), dtype=bool)
    if ok.any():
        use = reps[ok] if reps is not None and reps.shape[1] >= 2 else None
        mask[ok] = front(take[ok], div[ok], churn[ok], replicates=use, paired=use is not None,
                         constraints=constraints, level=level)
    return mask
