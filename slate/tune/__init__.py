"""Tuning the diversity and stability weights: sweeps, Pareto fronts, plots, reports.

An experiment file names the data (an impression log, or a simulated world), the scoring
policy, the estimator and the search over the weights; :func:`run_sweep` re-optimises every
logged page at every setting (on dask, resumably), estimates each setting's take fraction by
replay and measures its page diversity and churn; the results table marks the Pareto front, and
:func:`write_report` turns a results folder into a self-contained Markdown/HTML page.

>>> from slate.tune import experiment_from_dict
>>> exp = experiment_from_dict({"data": {"kind": "sim"}, "policy": {"kind": "oracle"},
...                             "search": {"diversity": {"min": 0, "max": 1, "n": 3}}})
>>> [p.diversity for p in exp.points()]
[0.0, 0.5, 1.0]
"""

from slate.tune.config import (
    Constraints,
    Experiment,
    InvalidExperimentError,
    SweepPoint,
    experiment_from_dict,
    load_experiment,
)
from slate.tune.paired import PairedComparison, paired_comparison
from slate.tune.pareto import Recommendation, front, near_front_mask, pareto_mask, recommend
from slate.tune.plots import draw_all
from slate.tune.report import write_report
from slate.tune.sweep import SweepError, SweepResults, load_replicates, load_results, run_sweep

__all__ = [
    "Constraints",
    "Experiment",
    "InvalidExperimentError",
    "PairedComparison",
    "Recommendation",
    "SweepError",
    "SweepPoint",
    "SweepResults",
    "draw_all",
    "experiment_from_dict",
    "front",
    "load_experiment",
    "load_replicates",
    "load_results",
    "near_front_mask",
    "paired_comparison",
    "pareto_mask",
    "recommend",
    "run_sweep",
    "write_report",
]
