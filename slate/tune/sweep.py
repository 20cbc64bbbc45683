"""``run_sweep``: evaluate every setting of an experiment, in parallel, resumably.

The work, in three stages, each stored on disk as soon as a piece finishes:

1. **Solve** (the expensive part). The evaluated pages are cut into blocks of whole members
   (``compute.block_pages`` pages each). A task re-solves every page of its block at *every*
   distinct solver setting, building each page's weight-free problem (scores, layout pairs,
   visual similarity) once; each setting keeps its own history of previous images per member.
   Results go to ``work/solve-NNNNN.npz``, or with ``compute.solve_cache`` set to
   ``<solve_cache>/solves-<key>/``, keyed by what determines the decisions (data digests, policy,
   layout, solver, seed, settings, blocking, library version), so an experiment that changes only
   the estimator, the exploration rates or the constraints reuses them instead of re-solving
   (the simulator's truth per setting and exploration rate is kept there too).
2. **Truth** (simulated data with ``truth = "all"``): each point simulated on-policy
   (``work/truth-NNNNN.json``).
3. **Evaluate**: each point's decisions (with its exploration rate) are replayed on the log with
   the experiment's estimator (take fraction and interval), and their diversity and churn are
   computed (``work/point-NNNNN.json``).

Tasks run on dask (a local cluster of processes by default, or a scheduler by address). A
sweep that is interrupted keeps what finished; running it again with the same experiment and
output folder does only what is missing, and gives the same table as an uninterrupted run
(every random choice is seeded by the experiment seed and the page id, never by the order in
which tasks finish). The table is written as ``results.parquet`` and ``results.csv``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from numpy.typing import NDArray

from slate.errors import SweepError
from slate.limits import check_npz
from slate.logs.log import ImpressionLog
from slate.replay.metrics import churn_rate
from slate.replay.options import ReplayOptions
from slate.replay.policy import ActionDistribution
from slate.tune.config import Experiment, InvalidExperimentError, SweepPoint
from slate.tune.data import Prepared, SimContext, prepare
from slate.tune.engine import BlockResult, PageBlock, Setting, SolverConfig, solve_block
from slate.tune.estimator_choice import EstimatorChoice, choose_estimator
from slate.tune.metrics import ExplorationSimilarity, page_diversity, pair_similarity
from slate.tune.paired import PAIRED_COLUMNS, logging_replicates, paired_comparison
from slate.tune.pareto import Recommendation, near_front_mask, pareto_mask
from slate.tune.results import SweepResults, _front_of, load_replicates, load_results, target_distribution

__all__ = ["SweepError", "SweepResults", "load_replicates", "load_results", "run_sweep"]

RESULTS_SCHEMA = "slate.sweep-results/1"

SETTING_COLUMNS = ("point", "w_diversity", "w_churn", "max_changes", "exploration")
RULE_COLUMNS = ("dwell_sessions", "dwell_days", "min_gain", "sticky_sessions", "sticky_days")
"""The ComposeConfig rules a point sets (null: the rule is off), named as in ComposeConfig."""
ESTIMATE_COLUMNS = (
    "take_fraction", "take_fraction_se", "take_fraction_low", "take_fraction_high",
    "ess", "n_matched", "weights_exploded", "diversity", "churn",
)
TRUTH_COLUMNS = ("true_take_fraction_logged", "true_take_fraction", "true_diversity", "true_churn")
SEPARATION_COLUMNS = ("separated", "separation")
"""The estimate's comparison with the logging policy (:attr:`slate.replay.Estimate.separated` and
its sentence); null for points estimated by an earlier version (resumed sweeps)."""


def _page_ranks(log: ImpressionLog) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Pages sorted by (member, time, session, page id), and each page's member."""
    order = log.page_order
    starts = log.page_starts
    first = order[starts[:-1]]
    member = log.member_id[first]
    rank = np.lexsort((log.page_id[first], log.session_id[first], log.timestamp[first], member))
    return rank.astype(np.int64), member


def plan_blocks(log: ImpressionLog, block_pages: int) -> list[NDArray[np.int64]]:
    """Pages (indices in ``log.page_starts`` order) of each block: whole members, in member
    order, about ``block_pages`` pages per block."""
    rank, member = _page_ranks(log)
    m = member[rank]
    boundaries = np.flatnonzero(np.r_[True, m[1:] != m[:-1]])
    blocks: list[NDArray[np.int64]] = []
    start = 0
    for b in [*boundaries[1:].tolist(), len(rank)]:
        if b - start >= block_pages or b == len(rank):
            if b > start:
                blocks.append(rank[start:b])
            start = b
    return blocks


def _make_block(prep: Prepared, pages: NDArray[np.int64]) -> PageBlock:
    log = prep.log
    order, starts = log.page_order, log.page_starts
    parts = [order[starts[p] : starts[p + 1]] for p in pages.tolist()]
    rows = np.concatenate(parts).astype(np.int64)
    page_start = np.r_[0, np.cumsum([len(x) for x in parts])].astype(np.int64)
    first = rows[page_start[:-1]]
    cand = log.candidates[rows].astype(np.int64)
    used, local = np.unique(np.maximum(cand, 0), return_inverse=True)
    return PageBlock(
        rows=rows,
        page_start=page_start,
        page_id=log.page_id[first].astype(np.int64),
        member=log.member_id[first].astype(np.int64),
        title=log.title[rows].astype(np.int64),
        row=log.row[rows].astype(np.int64),
        col=log.col[rows].astype(np.int64),
        candidates=cand,
        scores=prep.scores[rows],
        vectors=prep.vectors[used],
        local=local.reshape(cand.shape).astype(np.int64),
        session=log.session_id[first].astype(np.int64),
        time=log.timestamp[first].astype(np.float64) / 1e6,
    )


# ====================================================================== evaluation
@dataclass(frozen=True, eq=False)
class EvalContext:
    """What evaluating one point needs (shipped once to each worker)."""

    log: ImpressionLog
    vectors: NDArray[np.float64]
    pair_i: NDArray[np.int64]
    pair_j: NDArray[np.int64]
    pair_w: NDArray[np.float64]
    pair_page: NDArray[np.int64]
    truth_table: NDArray[np.float64] | None
    replay: ReplayOptions
    """How a point is replayed: the estimator (built with its options), ``n_bootstrap``,
    ``seed``, ``level``; page metrics off (see :func:`_point_replay_options`)."""
    exploration: ExplorationSimilarity | None


def _point_replay_options(choice: EstimatorChoice, experiment: Experiment) -> ReplayOptions:
    """The :class:`~slate.replay.ReplayOptions` a sweep's points are replayed with: the chosen
    estimator (built with its options) and the experiment's bootstrap size, level and seed."""
    from slate.replay import get_estimator

    return ReplayOptions(
        estimator=get_estimator(choice.name, **dict(choice.options)),
        n_bootstrap=experiment.estimator.n_bootstrap,
        seed=experiment.seed,
        level=experiment.estimator.level,
        metrics=False,
    )


def evaluate_point(ctx: EvalContext, point: SweepPoint, choice: NDArray[Any]) -> dict[str, Any]:
    """Replay estimate, diversity and churn of one point (and the logged-page truth on
    simulated data)."""
    from slate.replay import evaluate

    log = ctx.log
    c = np.asarray(choice, dtype=np.int64)
    eps = point.exploration
    target = target_distribution(log, c, eps, name=f"point {point.point}")
    estimator = ctx.replay.estimator
    if hasattr(estimator, "estimate_with_replicates"):
        est, reps = _estimate_with_replicates(ctx, target, estimator)
    else:  # a user's estimator without replicates: no paired intervals for it
        est = evaluate(log, target, options=ctx.replay).estimate
        reps = np.full(ctx.replay.n_bootstrap, np.nan)
    images = log.candidates[np.arange(log.n_rows), c].astype(np.int64)
    if eps > 0 and ctx.exploration is not None:
        div = ctx.exploration.diversity(images, c, eps, ctx.vectors, ctx.pair_w, ctx.pair_page, log.n_pages)
    else:
        div = page_diversity(images, ctx.vectors, ctx.pair_i, ctx.pair_j, ctx.pair_w, ctx.pair_page, log.n_pages)
    out: dict[str, Any] = {
        "take_fraction": est.value,
        "take_fraction_se": est.se,
        "take_fraction_low": est.interval[0],
        "take_fraction_high": est.interval[1],
        "ess": est.ess,
        "n_matched": est.n_matched,
        "weights_exploded": bool(est.weights_exploded),
        "diversity": div,
        "churn": churn_rate(log, target),
        "replicates": np.asarray(reps, dtype=np.float64).tolist(),
        "separated": bool(getattr(est, "separated", False)) if getattr(est, "separation", "") else None,
        "separation": str(getattr(est, "separation", "")) or None,
    }
    if ctx.truth_table is not None:
        probs = target.probabilities()
        assert probs is not None
        out["true_take_fraction_logged"] = float(np.nansum(probs * np.nan_to_num(ctx.truth_table)) / log.n_rows)
    return out


def _estimate_with_replicates(ctx: EvalContext, target: ActionDistribution, estimator: Any) -> tuple[Any, NDArray[np.float64]]:
    """The estimate and its bootstrap replicates, as :func:`slate.replay.evaluate` estimates."""
    from slate.replay.estimators import ReplayData
    from slate.replay.reward_model import fit_reward_model

    o = ctx.replay
    q = (fit_reward_model(o.reward_model, ctx.log, o.seed, refit=o.refit_reward_model)
         if getattr(estimator, "needs_reward_model", False) else None)
    data = ReplayData.build(ctx.log, target, q)
    est, reps = estimator.estimate_with_replicates(data, n_bootstrap=o.n_bootstrap, seed=o.seed, level=o.level)
    if est.n_pages != ctx.log.n_pages:  # clusters dropped: replicates are not paired with the others
        reps = np.full(o.n_bootstrap, np.nan)
    return est, reps


def _true_point(context: SimContext, setting: Setting, eps: float, config: SolverConfig,
                sticky: tuple[int | None, float | None] = (1, None)) -> dict[str, float]:
    from slate.tune.simpolicy import true_value

    return true_value(context, setting, eps, config, sticky)


def _sticky_key(p: SweepPoint) -> list[Any]:
    """The stickiness in a truth's cache key (nothing for the default, so older caches stay valid)."""
    return [] if (p.sticky_sessions, p.sticky_days) == (1, None) else [p.sticky_sessions, p.sticky_days]


# ====================================================================== execution
class _Executor:
    """Runs tasks in this process (``sync``) or on dask; yields ``(key, result)`` as they finish.

    The dask client (and a local cluster) starts with the first task, so resuming a finished
    sweep starts nothing.
    """

    def __init__(self, scheduler: str, n_workers: int) -> None:
        self.scheduler = scheduler
        self.n_workers = n_workers
        self.client: Any = None
        self.cluster: Any = None

    def __enter__(self) -> _Executor:
        return self

    def _start(self) -> None:
        if self.scheduler == "sync" or self.client is not None:
            return
        try:
            from dask.distributed import Client, LocalCluster
        except ImportError as err:  # pragma: no cover - dask is in the dist extra
            raise SweepError(
                "A sweep on dask needs dask.distributed (pip install 'slate-artwork[dist]'), or "
                "compute.scheduler = 'sync'."
            ) from err
        if self.scheduler in ("local", "threads"):
            self.cluster = LocalCluster(
                n_workers=self.n_workers, threads_per_worker=1, processes=self.scheduler == "local",
                dashboard_address=":0",  # any free port: never collide with another cluster
                silence_logs=logging.ERROR,  # not the workers' shutdown chatter
            )
            self.client = Client(self.cluster)
        else:
            self.client = Client(self.scheduler)

    def __exit__(self, *exc: object) -> None:
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    def share(self, obj: Any) -> Any:
        """Send a large shared object to every worker once."""
        self._start()
        if self.client is None:
            return obj
        return self.client.scatter(obj, broadcast=True)

    def run(self, fn: Callable[..., Any], tasks: Sequence[tuple[Any, tuple[Any, ...]]]) -> Iterator[tuple[Any, Any]]:
        if not tasks:
            return
        self._start()
        if self.client is None:
            for key, args in tasks:
                yield key, fn(*args)
            return
        from dask.distributed import as_completed

        futures = {}
        for key, args in tasks:
            futures[self.client.submit(fn, *args, pure=False)] = key
        try:
            for fut in as_completed(list(futures)):
                yield futures[fut], fut.result()
        finally:
            for fut in futures:
                fut.cancel()


def _progress(total: int, desc: str, enabled: bool) -> Any:
    if not enabled or total == 0:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is optional
        return None
    return tqdm(total=total, desc=desc, leave=False)


_BLOCK_KEYS = ("rows", "choices", "n_solves", "solve_seconds", "build_seconds", "n_flagged")


def _set_aside(path: Path, why: str, say: Callable[[str], None]) -> None:
    """Rename a damaged work file out of the way (kept for a post-mortem) so it is recomputed."""
    target = path.with_name(f"{path.name}.damaged")
    os.replace(path, target)
    say(f"{path.name} is damaged ({why}); moved to {target.name}, recomputing it")


def _usable_block(path: Path, n_settings: int, say: Callable[[str], None]) -> bool:
    """Whether a finished ``solve-*.npz`` block reads back whole (a truncated or otherwise
    damaged one is set aside and solved again instead of failing every resume)."""
    if not path.exists():
        return False
    try:
        check_npz(path, "solve block")
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in _BLOCK_KEYS}
        rows, choices = arrays["rows"], arrays["choices"]
        if choices.ndim != 2 or choices.shape != (len(rows), n_settings) or rows.ndim != 1:
            raise ValueError(f"arrays of shapes {rows.shape} and {choices.shape}")
        for key in _BLOCK_KEYS[2:]:
            arrays[key].item()
    except Exception as err:  # any failure to read it back means: solve it again
        _set_aside(path, " ".join(str(err).split())[:120] or type(err).__name__, say)
        return False
    return True


def _usable_json(path: Path, say: Callable[[str], None]) -> bool:
    """Whether a finished ``point-*.json``/``truth-*.json`` reads back as an object."""
    if not path.exists():
        return False
    try:
        ok = isinstance(json.loads(path.read_text(encoding="utf-8")), dict)
    except (OSError, ValueError, RecursionError):
        ok = False
    if not ok:
        _set_aside(path, "not a JSON object", say)
    return ok


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def _write_json(path: Path, data: Any) -> None:
    def write(p: Path) -> None:
        p.write_text(json.dumps(data, indent=1, sort_keys=True))

    _atomic_write(path, write)


def _save_point_replicates(path: Path, replicates: Any) -> None:
    reps = np.asarray(replicates, dtype=np.float64)

    def write(p: Path) -> None:
        with open(p, "wb") as f:
            np.save(f, reps, allow_pickle=False)

    _atomic_write(path, write)


def _save_block(path: Path, result: BlockResult) -> None:
    def write(p: Path) -> None:
        with open(p, "wb") as fh:
            np.savez(
                fh, rows=result.rows, choices=result.choices, n_solves=result.n_solves,
                solve_seconds=result.solve_seconds, build_seconds=result.build_seconds,
                n_flagged=result.n_flagged,
            )

    _atomic_write(path, write)


# the solve step is looked up here at run time (so that a test can interrupt it)
def _solve_block(block: PageBlock, settings: Sequence[Setting], config: SolverConfig) -> BlockResult:
    return solve_block(block, settings, config)


# ====================================================================== the sweep
def _library_version() -> str:
    from slate._internal.version import VERSION

    return VERSION


def _solver_config(experiment: Experiment, prep: Prepared) -> SolverConfig:
    s = experiment.solver
    return SolverConfig(
        name=s.name,
        options=tuple(sorted(s.options.items())),
        time_limit_ms=s.time_limit_ms,
        relative=experiment.search.weights == "relative",
        layout=prep.layout,
        seed=experiment.seed,
    )


def _read_manifest(manifest_path: Path, say: Callable[[str], None]) -> dict[str, Any] | None:
    """The manifest of a results folder, or None when there is none or it is damaged. A damaged
    one cannot say whose results the work files are, so they are set aside with it and the
    sweep starts afresh (recomputed, never mixed with another experiment's work)."""
    if not manifest_path.exists():
        return None
    try:
        old = json.loads(manifest_path.read_text(encoding="utf-8"))
        if isinstance(old, dict) and isinstance(old.get("config_hash"), str):
            return old
    except (OSError, ValueError, RecursionError):
        pass
    _set_aside(manifest_path, "not a sweep manifest", say)
    work = manifest_path.parent / "work"
    if work.is_dir():
        aside = work.with_name(f"work.damaged-{int(time.time())}")
        os.replace(work, aside)
        say(f"set the work folder aside as {aside.name}; starting afresh")
    return None


def _open_output(experiment: Experiment, out: Path, prep_info: dict[str, Any], blocking: dict[str, Any],
                 say: Callable[[str], None]) -> dict[str, Any]:
    manifest_path = out / "manifest.json"
    digest_keys = ("log_sha256", "train_sha256", "embeddings_sha256")
    old = _read_manifest(manifest_path, say)
    if old is not None:
        if old.get("config_hash") != experiment.config_hash():
            raise SweepError(
                f"The folder '{out}' holds results of experiment {old.get('config_hash')}; this experiment "
                f"is {experiment.config_hash()}. Choose another output folder (or remove that one)."
            )
        for key in digest_keys:
            if old.get("data", {}).get(key) != prep_info.get(key):
                raise SweepError(
                    f"The data changed since the results in '{out}' were started ({key} differs); "
                    f"choose another output folder."
                )
        if old.get("blocking") != blocking:
            raise SweepError(
                f"The results in '{out}' were started with compute.block_pages = "
                f"{old.get('blocking', {}).get('block_pages')}; resume with the same value."
            )
        return dict(old)
    manifest = {
        "schema": RESULTS_SCHEMA,
        "config_hash": experiment.config_hash(),
        "slate_version": _library_version(),
        "seed": experiment.seed,
        "experiment": experiment.model_dump(mode="json"),
        "data": prep_info,
        "blocking": blocking,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "work").mkdir(exist_ok=True)
    _write_json(manifest_path, manifest)
    return manifest


def _solve_dir(experiment: Experiment, prep: Prepared, blocking: dict[str, Any], work: Path,
               base_dir: Path) -> Path:
    """Where the solve blocks live: the run's work folder, or a shared, content-keyed cache."""
    cache = experiment.compute.solve_cache
    if cache is None:
        return work
    keyed = {
        "solve_hash": experiment.solve_hash(),
        "data": {k: v for k, v in prep.info.items() if k.endswith("sha256")},
        "blocking": blocking,
        "slate_version": _library_version(),
    }
    key = hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:16]
    folder = base_dir / cache / f"solves-{key}"
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "key.json").exists():
        _write_json(folder / "key.json", keyed)
    return folder


def _where_to_run(compute: Any, scheduler: str | None, n_workers: int | None,
                  allow_remote: bool) -> tuple[str, int]:
    """The scheduler and worker count of a run; a remote address from the file needs consent."""
    sched = scheduler or compute.scheduler
    if scheduler is None and "://" in sched and not allow_remote:
        raise InvalidExperimentError(
            f"The experiment's compute.scheduler names a remote dask scheduler ({sched!r}); a "
            "remote scheduler is used only when given on the command line (--scheduler ADDRESS) or "
            "enabled with --allow-remote-scheduler (allow_remote_scheduler=True)."
        )
    if n_workers is not None and not 1 <= n_workers <= 1024:
        raise InvalidExperimentError(
            f"The 'n_workers' parameter (--workers) must be an integer in [1, 1024]; got {n_workers!r}."
        )
    return sched, int(n_workers or compute.n_workers)


def run_sweep(
    experiment: Experiment,
    output: str | os.PathLike[str] | None = None,
    *,
    base_dir: str | os.PathLike[str] = ".",
    scheduler: str | None = None,
    n_workers: int | None = None,
    progress: bool | None = None,
    plots: bool = True,
    log: Callable[[str], None] | None = None,
    allow_remote_scheduler: bool = False,
    rule: str = "best_estimate",
) -> SweepResults:
    """Evaluate every point of ``experiment``; resume whatever an earlier run left unfinished.

    Parameters
    ----------
    experiment : Experiment
    output : path, optional
        Results folder (default ``<base_dir>/<name>-<config hash>``).
    base_dir : path, default "."
        Where the experiment's relative paths start (the experiment file's folder).
    scheduler, n_workers, progress
        Override ``experiment.compute`` (they do not change the numbers).
    plots : bool, default True
        Also draw the plots (PNG and SVG) into ``<output>/plots``.
    log : callable, optional
        Receives one-line progress messages.
    allow_remote_scheduler : bool, default False
        Use a scheduler address (``tcp://...``) taken from ``experiment.compute``. Without it
        such an address is refused: dask's protocol can carry pickled code, so a remote scheduler
        is used only when named in ``scheduler`` (``slate sweep --scheduler``) or enabled here
        (``--allow-remote-scheduler``), never taken silently from a shared experiment file.
    rule : {"best_estimate", "lower_bound", "simplest"}, default "best_estimate"
        How the recommendation chooses among the eligible points (:func:`slate.tune.recommend`).

    Returns
    -------
    SweepResults

    Raises
    ------
    InvalidExperimentError
        The data cannot be read as the experiment says.
    SweepError
        The output folder holds another experiment's results.
    """
    say = log or (lambda _msg: None)
    compute = experiment.compute
    sched, workers = _where_to_run(compute, scheduler, n_workers, allow_remote_scheduler)
    out = Path(output) if output is not None else Path(base_dir) / f"{experiment.name}-{experiment.config_hash()}"
    t_start = time.perf_counter()
    prep = prepare(experiment, Path(base_dir))
    t_prepared = time.perf_counter()
    say(f"prepared {prep.log.n_pages} pages ({prep.log.n_rows} rows) in {t_prepared - t_start:.1f} s")
    run = _plan_run(experiment, prep, out, Path(base_dir), say)
    run.show = compute.progress if progress is None else progress
    with _Executor(sched, workers) as ex:
        n_solved = _solve_stage(run, ex)
        t_solved = time.perf_counter()
        say(f"solved {n_solved} of {len(run.blocks)} blocks x {len(run.settings)} settings in "
            f"{t_solved - t_prepared:.1f} s")
        want_truth = _truth_stage(run, ex)
        t_truth = time.perf_counter()
        choices, totals = _evaluate_stage(run, ex)
    t_evaluated = time.perf_counter()
    table = _write_outputs(run, want_truth, choices)
    ms = 1000.0 * totals["solve_seconds"] / max(totals["n_solves"], 1)
    summary: dict[str, Any] = {
        "config_hash": run.manifest["config_hash"],
        "slate_version": run.manifest["slate_version"],
        "seed": experiment.seed,
        "n_points": len(run.points),
        "n_settings": len(run.settings),
        "estimator": run.estimator.name,
        "estimator_reason": run.estimator.reason,
        "base_dir": str(Path(base_dir).resolve()),
        "n_pages": prep.log.n_pages,
        "n_rows": prep.log.n_rows,
        "logged": prep.logged,
        "data": prep.info,
        "timing": {
            "ms_per_solve": ms,
            "ms_per_page_build": 1000.0 * totals["build_seconds"] / max(prep.log.n_pages, 1),
            "n_solves": totals["n_solves"],
            "n_blocks": len(run.blocks),
            "n_blocks_solved_this_run": n_solved,
            "solve_folder": str(run.solve_dir.resolve()),
            "n_flagged_solves": totals["n_flagged"],
            "seconds_prepare": t_prepared - t_start,
            "seconds_solve": t_solved - t_prepared,
            "seconds_truth": t_truth - t_solved,
            "seconds_evaluate": t_evaluated - t_truth,
            "scheduler": sched,
            "n_workers": workers if sched in ("local", "threads") else None,
        },
    }
    results = SweepResults(path=out, table=table, experiment=experiment, summary=summary)
    _recommend_and_draw(results, rule, plots)
    summary["timing"]["seconds_total"] = time.perf_counter() - t_start
    _write_json(out / "summary.json", summary)
    say(f"{len(run.points)} points, {ms:.2f} ms per page solve, results in {out}")
    return results


@dataclass(eq=False)
class _Run:
    """What the stages of one :func:`run_sweep` share."""

    experiment: Experiment
    prep: Prepared
    out: Path
    points: list[SweepPoint]
    settings: list[Setting]
    setting_of: dict[tuple[Any, ...], int]
    blocks: list[NDArray[np.int64]]
    manifest: dict[str, Any]
    work: Path
    solve_dir: Path
    config: SolverConfig
    say: Callable[[str], None]
    estimator: EstimatorChoice
    show: bool = False

    def truth_path(self, p: SweepPoint) -> Path:
        if self.solve_dir == self.work:
            return self.work / f"truth-{p.point:05d}.json"
        # in the shared cache a point's truth is keyed by its setting and exploration rate
        key = json.dumps([p.solve_key, p.exploration, *_sticky_key(p)])
        return self.solve_dir / f"truth-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


def _plan_run(experiment: Experiment, prep: Prepared, out: Path, base_dir: Path,
              say: Callable[[str], None]) -> _Run:
    """The points, their distinct solver settings, the page blocks and the folders of a run."""
    points = experiment.points()
    settings: list[Setting] = []
    setting_of: dict[tuple[Any, ...], int] = {}
    for pt in points:
        if pt.solve_key not in setting_of:
            setting_of[pt.solve_key] = len(settings)
            settings.append(pt.solve_key)
    blocks = plan_blocks(prep.log, experiment.compute.block_pages)
    blocking = {"block_pages": experiment.compute.block_pages, "n_blocks": len(blocks)}
    manifest = _open_output(experiment, out, prep.info, blocking, say)
    work = out / "work"
    solve_dir = _solve_dir(experiment, prep, blocking, work, base_dir)
    choice = choose_estimator(experiment, prep)
    say(f"estimator: {choice.name} ({choice.reason})")
    return _Run(experiment, prep, out, points, settings, setting_of, blocks, manifest, work, solve_dir,
                _solver_config(experiment, prep), say, choice)


def _run_tasks(ex: _Executor, fn: Callable[..., Any], tasks: Sequence[tuple[Any, tuple[Any, ...]]],
               desc: str, show: bool, keep: Callable[[Any, Any], None]) -> None:
    """Run ``tasks`` on the executor, ``keep(key, value)`` each result, with a progress bar."""
    bar = _progress(len(tasks), desc, show)
    for key, value in ex.run(fn, tasks):
        keep(key, value)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()


def _solve_stage(run: _Run, ex: _Executor) -> int:
    """Stage 1: solve every page block not already stored at every setting; returns how many."""
    todo = [b for b in range(len(run.blocks))
            if not _usable_block(run.solve_dir / f"solve-{b:05d}.npz", len(run.settings), run.say)]
    tasks = [(b, (_make_block(run.prep, run.blocks[b]), run.settings, run.config)) for b in todo]
    _run_tasks(ex, _solve_block, tasks, "solve", run.show,
               lambda b, result: _save_block(run.solve_dir / f"solve-{b:05d}.npz", result))
    return len(todo)


def _truth_stage(run: _Run, ex: _Executor) -> bool:
    """Stage 2 (simulated data with ``truth = "all"``): simulate every point on-policy."""
    prep = run.prep
    want_truth = prep.sim is not None and getattr(run.experiment.data, "truth", "none") == "all"
    if not want_truth:
        return False
    missing = [p for p in run.points if not _usable_json(run.truth_path(p), run.say)]
    shared = ex.share(prep.sim) if missing else None
    by_point = {p.point: p for p in run.points}
    tasks = [(p.point, (shared, p.solve_key, p.exploration, run.config, (p.sticky_sessions, p.sticky_days)))
             for p in missing]
    _run_tasks(ex, _true_point, tasks, "truth", run.show,
               lambda key, value: _write_json(run.truth_path(by_point[key]), value))
    return True


def _evaluate_stage(run: _Run, ex: _Executor) -> tuple[NDArray[np.int16], dict[str, Any]]:
    """Stage 3: gather the stored choices, estimate every point not already estimated; returns
    the choices (rows x settings) and the solve totals."""
    prep, experiment, work = run.prep, run.experiment, run.work
    choices = np.full((prep.log.n_rows, len(run.settings)), -1, dtype=np.int16)
    totals = {"n_solves": 0, "solve_seconds": 0.0, "build_seconds": 0.0, "n_flagged": 0}
    for b in range(len(run.blocks)):
        with np.load(run.solve_dir / f"solve-{b:05d}.npz", allow_pickle=False) as z:
            choices[z["rows"]] = z["choices"]
            for key in totals:
                totals[key] += z[key].item()
    if (choices < 0).any():  # pragma: no cover - every row belongs to one block
        raise SweepError("Some rows were not solved; remove the work folder and run again.")
    missing = [p for p in run.points if not _usable_json(work / f"point-{p.point:05d}.json", run.say)]
    if not missing:
        return choices, totals
    need_explore = any(p.exploration > 0 for p in missing)
    ctx = EvalContext(
        log=prep.log, vectors=prep.vectors, pair_i=prep.pair_i, pair_j=prep.pair_j,
        pair_w=prep.pair_w, pair_page=prep.pair_page, truth_table=prep.truth_table,
        replay=_point_replay_options(run.estimator, experiment),
        exploration=ExplorationSimilarity(prep.log.candidates, prep.vectors, prep.pair_i, prep.pair_j)
        if need_explore else None,
    )
    shared_ctx = ex.share(ctx)
    tasks = [(p.point, (shared_ctx, p, choices[:, run.setting_of[p.solve_key]])) for p in missing]

    def keep(key: int, value: dict[str, Any]) -> None:
        _save_point_replicates(work / f"reps-{key:05d}.npy", value.pop("replicates"))
        _write_json(work / f"point-{key:05d}.json", value)

    _run_tasks(ex, evaluate_point, tasks, "evaluate", run.show, keep)
    return choices, totals


def _write_outputs(run: _Run, want_truth: bool, choices: NDArray[np.int16]) -> pa.Table:
    """Stage 4: the table (with the paired columns), the replicates and the plot examples."""
    experiment = run.experiment
    logged_value, logged_reps = logging_replicates(run.prep.log, experiment.estimator.n_bootstrap, experiment.seed)
    reps = _load_replicates(run.work, run.points, experiment.estimator.n_bootstrap)
    table = _assemble(experiment, run.points, run.work, want_truth, run.manifest, run.truth_path,
                      (logged_value, logged_reps, reps), estimator_name=run.estimator.name)
    _write_table(run.out, table, run.manifest)
    _atomic_write(run.out / "replicates.npz", lambda p: _save_replicates(p, reps, logged_reps))
    examples = _examples(run.prep, run.points, run.settings, run.setting_of, choices)
    np.savez(run.out / "examples.npz", **examples)
    return table


def _recommend_and_draw(results: SweepResults, rule: str, plots: bool) -> None:
    """Stage 5: the recommendation and its paired facts into the summary, and the plots."""
    summary = results.summary
    rec = results.recommendation(rule=rule)
    summary["recommended"] = None if rec.index is None else results.rows()[rec.index]
    summary["recommendation"] = rec.reason
    summary["paired"] = _paired_summary(results, rec)
    summary["separation"] = separation_summary(results, rec.index)
    if plots:
        from slate.tune.plots import draw_all

        summary["plots"] = [str(p.relative_to(results.path)) for p in draw_all(results)]


def _paired_summary(results: SweepResults, rec: Recommendation) -> dict[str, Any]:
    """The recommendation's paired facts for ``summary.json``."""
    out: dict[str, Any] = {
        "rule": rec.rule, "n_tied_with_best": len(rec.tied),
        "tied_points": [int(results.column("point")[i]) for i in rec.tied],
        "prob_best": rec.prob_best, "selection_bias": rec.selection_bias,
        "n_indistinguishable": len(rec.indistinguishable),
        "indistinguishable_points": [int(results.column("point")[i]) for i in rec.indistinguishable],
        "n_front_plain": int(results.column("pareto").sum()),
        "n_front_paired": int(results.column("front_paired").sum()),
    }
    if rec.index is not None:
        value = float(results.column("take_fraction")[rec.index])
        out["take_fraction_corrected"] = value - rec.selection_bias if rec.index == _best_of(results, rec) else value
    return out


def separation_summary(results: SweepResults, index: int | None) -> dict[str, Any] | None:
    """Point ``index``'s comparison with the logging policy (for ``summary.json`` and the
    report): the estimate's ``separated`` and sentence and the paired difference with its
    interval (null where unknown); None without a point.

    Examples
    --------
    >>> separation_summary(None, None) is None
    True
    """
    if index is None:
        return None
    names = results.table.column_names
    row = results.rows()[index]

    def number(key: str) -> float | None:
        v = row.get(key)
        return float(v) if v is not None and np.isfinite(v) else None

    return {"point": int(row["point"]), "separated": row.get("separated") if "separated" in names else None,
            "separation": row.get("separation") if "separation" in names else None,
            "diff_logged": number("diff_logged"),
            "diff_logged_interval": [number("diff_logged_low"), number("diff_logged_high")]}


def _best_of(results: SweepResults, rec: Recommendation) -> int | None:
    """The best estimate among the tied points (the best eligible one), if known."""
    if not rec.tied:
        return rec.index
    take = results.column("take_fraction")
    return int(max(rec.tied, key=lambda i: take[i]))


def _load_replicates(work: Path, points: list[SweepPoint], n_bootstrap: int) -> NDArray[np.float64]:
    """(n_points, n_bootstrap) replicates of every point (NaN rows where none were stored)."""
    out = np.full((len(points), n_bootstrap), np.nan)
    for i, p in enumerate(points):
        path = work / f"reps-{p.point:05d}.npy"
        if path.exists():
            r = np.load(path, allow_pickle=False)
            if r.shape == (n_bootstrap,):
                out[i] = r
    return out


def _save_replicates(path: Path, reps: NDArray[np.float64], logged: NDArray[np.float64]) -> None:
    with open(path, "wb") as f:
        np.savez(f, points=reps, logged=logged)


def _assemble(experiment: Experiment, points: list[SweepPoint], work: Path, truth: bool,
              manifest: dict[str, Any], truth_path: Callable[[SweepPoint], Path],
              paired: tuple[float, NDArray[np.float64], NDArray[np.float64]] | None = None,
              estimator_name: str | None = None) -> pa.Table:
    rows: list[dict[str, Any]] = []
    for p in points:
        row: dict[str, Any] = {
            "point": p.point, "w_diversity": p.diversity, "w_churn": p.churn,
            "max_changes": p.max_changes, "exploration": p.exploration,
            **{name: getattr(p, name) for name in RULE_COLUMNS},
        }
        row.update(json.loads((work / f"point-{p.point:05d}.json").read_text()))
        if truth:
            row.update(json.loads(truth_path(p).read_text()))
        rows.append(row)
    cols: dict[str, Any] = {}
    for name in SETTING_COLUMNS + RULE_COLUMNS + ESTIMATE_COLUMNS:
        cols[name] = [r[name] for r in rows]
    for name in TRUTH_COLUMNS:
        cols[name] = [r.get(name, float("nan")) for r in rows]
    for name in SEPARATION_COLUMNS:
        cols[name] = [r.get(name) for r in rows]
    take = np.asarray(cols["take_fraction"], dtype=np.float64)
    # diversity or churn is NaN for every point alike when the pages have no layout pairs or
    # no member comes back; they then do not separate points
    div = np.nan_to_num(np.asarray(cols["diversity"], dtype=np.float64), nan=0.0)
    churn = np.nan_to_num(np.asarray(cols["churn"], dtype=np.float64), nan=0.0)
    lo = np.asarray(cols["take_fraction_low"], dtype=np.float64)
    hi = np.asarray(cols["take_fraction_high"], dtype=np.float64)
    ok = ~np.isnan(take) & ~np.isnan(lo) & ~np.isnan(hi)
    plain = np.zeros(len(rows), bool)
    near = np.zeros(len(rows), bool)
    if ok.any():
        plain[ok] = pareto_mask(take[ok], div[ok], churn[ok])
        near[ok] = near_front_mask(take[ok], lo[ok], hi[ok], div[ok], churn[ok], plain[ok])
    cols["pareto"] = plain.tolist()
    cols["near_front"] = near.tolist()
    n = len(rows)
    exploded = np.asarray(cols["weights_exploded"], dtype=bool)
    if paired is not None:
        # "the best" is the best point with trustworthy weights, or the best of all points when
        # every point's weights exploded (e.g. neighbourhood estimators on wide pages)
        eligible = ok & ~exploded if (ok & ~exploded).any() else ok
        pc = paired_comparison(take, paired[2], paired[0], paired[1],
                               level=experiment.estimator.level, eligible=eligible)
        for name in PAIRED_COLUMNS:
            cols[name] = pc.columns[name].tolist()
        cols["front_paired"] = _front_of(cols, paired[2], None, experiment.estimator.level).tolist()
    else:
        for name in PAIRED_COLUMNS:
            cols[name] = [False if name == "tied_best" else float("nan")] * n
        cols["front_paired"] = plain.tolist()
    cols["estimator"] = [estimator_name or experiment.estimator.name] * n
    cols["config_hash"] = [manifest["config_hash"]] * n
    cols["slate_version"] = [manifest["slate_version"]] * n
    cols["seed"] = [experiment.seed] * n
    types = {
        "point": pa.int64(), "max_changes": pa.int64(), "n_matched": pa.int64(), "seed": pa.int64(),
        "dwell_sessions": pa.int64(), "sticky_sessions": pa.int64(),
        "weights_exploded": pa.bool_(), "pareto": pa.bool_(), "near_front": pa.bool_(),
        "separated": pa.bool_(), "separation": pa.string(),
        "tied_best": pa.bool_(), "front_paired": pa.bool_(),
        "estimator": pa.string(), "config_hash": pa.string(), "slate_version": pa.string(),
    }
    arrays = {k: pa.array(v, type=types.get(k, pa.float64())) for k, v in cols.items()}
    meta = {
        b"slate.schema": RESULTS_SCHEMA.encode(),
        b"slate.config_hash": str(manifest["config_hash"]).encode(),
        b"slate.version": str(manifest["slate_version"]).encode(),
        b"slate.seed": str(experiment.seed).encode(),
        b"slate.experiment": json.dumps(manifest["experiment"], sort_keys=True).encode(),
    }
    return pa.table(arrays).replace_schema_metadata(meta)


def _write_table(out: Path, table: pa.Table, manifest: dict[str, Any]) -> None:
    _atomic_write(out / "results.parquet", lambda p: pq.write_table(table, p, write_page_checksum=True))
    _atomic_write(out / "results.csv", lambda p: pacsv.write_csv(table, p))


# ====================================================================== examples for plots
def _baseline_point(points: list[SweepPoint]) -> int:
    """The least constrained point: smallest diversity and churn weights, no (or the largest)
    budget, least exploration."""
    def key(p: SweepPoint) -> tuple[float, float, float, float, int]:
        budget = float("inf") if p.max_changes is None else float(p.max_changes)
        return (p.diversity, p.churn, -budget, p.exploration, p.point)

    return min(points, key=key).point


def _examples(prep: Prepared, points: list[SweepPoint], settings: list[Setting],
              setting_of: dict[tuple[Any, ...], int], choices: NDArray[np.int16]) -> dict[str, Any]:
    """Decisions of every point on one member's pages (for the page and session plots)."""
    log = prep.log
    rank, member = _page_ranks(log)
    counts: dict[int, int] = {}
    for m in member.tolist():
        counts[m] = counts.get(m, 0) + 1
    top = max(sorted(counts), key=lambda m: counts[m])
    pages = [p for p in rank.tolist() if member[p] == top]
    order, starts = log.page_order, log.page_starts
    col_of_point = np.array([setting_of[p.solve_key] for p in points], dtype=np.int64)
    base_col = setting_of[points[_baseline_point(points)].solve_key]
    # the member's page where the baseline's neighbours look most alike
    base_images = log.candidates[np.arange(log.n_rows), choices[:, base_col].astype(np.int64)].astype(np.int64)

    def similarity(rows: NDArray[np.int64], images: NDArray[np.int64]) -> float:
        sel = np.isin(prep.pair_i, rows)
        if not sel.any():
            return float("nan")
        s = pair_similarity(images[prep.pair_i[sel]], images[prep.pair_j[sel]], prep.vectors)
        return float((s * prep.pair_w[sel]).sum() / prep.pair_w[sel].sum())

    best_page, best_sim = pages[0], -1.0
    for p in pages:
        val = similarity(order[starts[p] : starts[p + 1]], base_images)
        if val > best_sim:
            best_page, best_sim = p, val
    page_rows = order[starts[best_page] : starts[best_page + 1]]
    page_choice = choices[page_rows][:, col_of_point].T.astype(np.int64)  # (n_points, n_titles)
    page_images = log.candidates[page_rows[None, :], page_choice]
    page_similarity = []
    for i in range(len(points)):
        images = base_images.copy()
        images[page_rows] = page_images[i]
        page_similarity.append(similarity(page_rows, images))
    # sessions x titles of the member (the titles seen most often)
    title_count: dict[int, int] = {}
    for p in pages:
        for t in log.title[order[starts[p] : starts[p + 1]]].tolist():
            title_count[t] = title_count.get(t, 0) + 1
    titles = sorted(title_count, key=lambda t: (-title_count[t], t))[:12]
    sess_images = np.full((len(points), len(pages), len(titles)), -1, dtype=np.int64)
    for si, p in enumerate(pages):
        rows = order[starts[p] : starts[p + 1]]
        for ti, t in enumerate(titles):
            hit = rows[log.title[rows] == t]
            if len(hit):
                r = int(hit[0])
                sess_images[:, si, ti] = log.candidates[r, choices[r, col_of_point].astype(np.int64)]
    return {
        "style_names": np.asarray(prep.style_names, dtype=str),
        "image_styles": prep.styles,
        "page_row": log.row[page_rows].astype(np.int64),
        "page_col": log.col[page_rows].astype(np.int64),
        "page_images": page_images.astype(np.int64),
        "page_logged": log.image[page_rows].astype(np.int64),
        "page_similarity": np.asarray(page_similarity, dtype=np.float64),
        "member": np.int64(top),
        "session_time": log.timestamp[order[starts[np.asarray(pages)]]].astype(np.int64),
        "session_titles": np.asarray([log.title_ids[t] for t in titles], dtype=str),
        "session_images": sess_images,
        "baseline_point": np.int64(_baseline_point(points)),
        "n_settings": np.int64(len(settings)),
    }
