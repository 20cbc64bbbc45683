"""Adaptive search over continuous weights with Optuna, resumable, chosen on paired estimates.

A grid re-solves every page at every point. :func:`adaptive_search` instead asks Optuna's TPE
sampler (Akiba et al., "Optuna: a next-generation hyperparameter optimization framework", KDD
2019; Bergstra et al., "Algorithms for hyper-parameter optimization", NeurIPS 2011) for one
``(w_diversity, w_churn)`` at a time inside the box the experiment's points span, re-solves the
log's pages at that setting only, and replays it with the experiment's estimator and seed, so
every trial's bootstrap replicates are paired with every other trial's (:mod:`slate.tune.paired`).
The churn constraint is passed to the sampler as a constraint. The study lives in an Optuna
journal file in the output folder (``optuna-journal.log``) with each trial's replicates beside
it, so an interrupted search continues where it stopped. The final choice is
:func:`slate.tune.recommend` over the finished trials with their paired replicates.

Trials run one after another in this process (the page solves of a trial are the cost; the
grid's dask machinery is not used here).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from slate.tune.config import Experiment, SweepPoint
from slate.tune.paired import logging_replicates, paired_comparison
from slate.tune.pareto import Recommendation, recommend

__all__ = ["AdaptiveResults", "adaptive_search"]


@dataclass(frozen=True, eq=False)
class AdaptiveResults:
    """Finished trials of an adaptive search.

    Attributes
    ----------
    trials : list of dict
        ``w_diversity``, ``w_churn``, ``take_fraction`` (and its interval), ``churn``,
        ``diversity``, ``weights_exploded`` per finished trial, in trial order.
    replicates : ndarray (n_trials, n_bootstrap)
        Paired bootstrap replicates of the trials.
    recommendation : Recommendation
        Over the trials (rows of ``trials``).
    n_page_solves : int
        Page solves of all finished trials (this run and earlier ones).
    """

    trials: list[dict[str, Any]]
    replicates: NDArray[np.float64]
    recommendation: Recommendation
    n_page_solves: int


def _box(experiment: Experiment) -> tuple[tuple[float, float], tuple[float, float]]:
    pts = experiment.points()
    d = [p.diversity for p in pts]
    c = [p.churn for p in pts]
    return (min(d), max(d)), (min(c), max(c))


def _solve_all(prep: Any, blocks: list[NDArray[np.int64]], setting: tuple[float, float, None],
               config: Any) -> NDArray[np.int64]:
    from slate.tune.engine import solve_block
    from slate.tune.sweep import _make_block

    choices = np.full(prep.log.n_rows, -1, dtype=np.int64)
    for pages in blocks:
        result = solve_block(_make_block(prep, pages), [setting], config)
        choices[result.rows] = result.choices[:, 0]
    return choices


def adaptive_search(
    experiment: Experiment,
    output: str | os.PathLike[str],
    n_trials: int,
    *,
    base_dir: str | os.PathLike[str] = ".",
    rule: str = "best_estimate",
) -> AdaptiveResults:
    """Run (or continue) an Optuna search of ``n_trials`` settings in total.

    Parameters
    ----------
    experiment : Experiment
        Its points give the search box (min to max of the diversity and churn weights; budget
        none, exploration 0), its estimator, seed and ``constraints.max_churn`` are used.
    output : path
        Folder of the study journal and the trials' replicates.
    n_trials : int
        Trials wanted in total (a resumed search runs only the missing ones).
    base_dir : path
    rule : str
        Recommendation rule over the trials (:func:`slate.tune.recommend`).

    Returns
    -------
    AdaptiveResults

    Raises
    ------
    InvalidExperimentError
        ``n_trials`` is not a positive integer.
    """
    import optuna
    from optuna.storages.journal import JournalFileBackend

    from slate.tune.config import InvalidExperimentError
    from slate.tune.data import prepare
    from slate.tune.estimator_choice import choose_estimator
    from slate.tune.metrics import ExplorationSimilarity
    from slate.tune.sweep import (
        EvalContext,
        _point_replay_options,
        _solver_config,
        evaluate_point,
        plan_blocks,
    )

    if not isinstance(n_trials, int) or n_trials < 1:
        raise InvalidExperimentError(f"The 'n_trials' parameter must be an integer >= 1; got {n_trials!r}.")
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    prep = prepare(experiment, Path(base_dir))
    blocks = plan_blocks(prep.log, experiment.compute.block_pages)
    config = _solver_config(experiment, prep)
    choice = choose_estimator(experiment, prep)
    ctx = EvalContext(
        log=prep.log, vectors=prep.vectors, pair_i=prep.pair_i, pair_j=prep.pair_j,
        pair_w=prep.pair_w, pair_page=prep.pair_page, truth_table=None,
        replay=_point_replay_options(choice, experiment),
        exploration=ExplorationSimilarity(prep.log.candidates, prep.vectors, prep.pair_i, prep.pair_j),
    )
    max_churn = experiment.constraints.max_churn
    (d_lo, d_hi), (c_lo, c_hi) = _box(experiment)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.JournalStorage(
        JournalFileBackend(str(out / "optuna-journal.log")))
    sampler = optuna.samplers.TPESampler(seed=experiment.seed, n_startup_trials=4)
    study = optuna.create_study(study_name=f"{experiment.name}-{experiment.config_hash()}", storage=storage,
                                sampler=sampler, direction="maximize", load_if_exists=True)
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)  # interrupted by an earlier run
    done = lambda: study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))  # noqa: E731
    while len(done()) < n_trials:
        trial = study.ask()
        wd = trial.suggest_float("w_diversity", d_lo, d_hi) if d_hi > d_lo else d_lo
        wc = trial.suggest_float("w_churn", c_lo, c_hi) if c_hi > c_lo else c_lo
        choices = _solve_all(prep, blocks, (wd, wc, None), config)
        point = SweepPoint(point=trial.number, diversity=wd, churn=wc, max_changes=None, exploration=0.0)
        row = evaluate_point(ctx, point, choices)
        reps = np.asarray(row.pop("replicates"), dtype=np.float64)
        np.save(out / f"trial-{trial.number:05d}.npy", reps, allow_pickle=False)
        row.update(w_diversity=wd, w_churn=wc, n_page_solves=prep.log.n_pages)
        for key, value in row.items():
            trial.set_user_attr(key, value)
        over = 0.0 if max_churn is None else float(row["churn"]) - max_churn
        trial.set_constraint("max_churn", over)  # feasible when <= 0
        study.tell(trial, float(row["take_fraction"]))
    logged = logging_replicates(prep.log, experiment.estimator.n_bootstrap, experiment.seed)
    return _collect(done(), out, experiment, rule, logged)


def _collect(trials: list[Any], out: Path, experiment: Experiment, rule: str,
             logged: tuple[float, NDArray[np.float64]]) -> AdaptiveResults:
    trials = sorted(trials, key=lambda t: t.number)
    rows = [dict(t.user_attrs, trial=t.number) for t in trials]
    reps = np.stack([np.load(out / f"trial-{t.number:05d}.npy", allow_pickle=False) for t in trials])
    names = ("take_fraction", "diversity", "churn", "weights_exploded", "w_diversity", "w_churn")
    columns = {k: [r[k] for r in rows] for k in names}
    columns["diversity"] = [0.0 if v is None or v != v else v for v in columns["diversity"]]
    pc = paired_comparison(np.asarray(columns["take_fraction"], dtype=np.float64), reps, logged[0], logged[1],
                           level=experiment.estimator.level)
    columns["diff_logged_low"] = pc.columns["diff_logged_low"].tolist()
    for row, low in zip(rows, columns["diff_logged_low"], strict=True):
        row["diff_logged_low"] = low
    rec = recommend(columns, experiment.constraints, rule=rule, replicates=reps)
    return AdaptiveResults(rows, reps, rec, int(sum(r["n_page_solves"] for r in rows)))
