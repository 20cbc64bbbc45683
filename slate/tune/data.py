"""Preparing a sweep: the evaluated log, its scores, image embeddings and styles, ground truth.

Everything a sweep shares between its points is computed here once: the log is read and
validated, the scoring policy is fitted and scores every candidate of every evaluated row
(once per page, not once per point), embeddings are aligned with the log's image codes, the
layout pairs of every page are listed, and on simulated data the per-candidate true values
replay estimates are tabulated.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import NDArray

from slate.logs.log import ImpressionLog
from slate.logs.parquet import read_impressions
from slate.page.layout import GridLayout
from slate.page.similarity import unit_vectors
from slate.tune.config import Experiment, InvalidExperimentError, LogData, SimData

__all__ = [
    "Prepared",
    "SimContext",
    "file_digest",
    "prepare",
    "read_embeddings",
    "write_embeddings",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

_SCORE_CHUNK = 50_000


@dataclass(frozen=True, eq=False)
class SimContext:
    """What the on-policy ground truth of a point needs (simulated data only)."""

    world: Any
    schedule: Any
    state: Any
    scorer: Any


@dataclass(frozen=True, eq=False)
class Prepared:
    """The shared inputs of every point of a sweep.

    Attributes
    ----------
    log : ImpressionLog
        The evaluated rows.
    scores : ndarray (n, k_max)
        Score of every candidate of every row (0 on padding).
    vectors : ndarray (n_image_codes, dim)
        Unit embeddings by image code of ``log``.
    styles : ndarray (n_image_codes,), int64
        Style index of every image (for the page plots); ``style_names`` names them.
    layout : GridLayout
    pair_i, pair_j : ndarray (n_pairs,), int64
        Interacting rows (same page) by the layout; ``pair_w`` their weights, ``pair_page``
        their page index.
    truth_table : ndarray (n, k_max) or None
        Simulated data: the true P(quality play) of each candidate with the rest of the page and
        the session state as logged (per-title replay's estimand), NaN on padding.
    sim : SimContext or None
    logged : dict
        The logging policy's own take fraction, diversity and churn on the evaluated rows.
    info : dict
        Sizes, split and sources, for the manifest.
    """

    log: ImpressionLog
    scores: FloatArray
    vectors: FloatArray
    styles: IntArray
    style_names: tuple[str, ...]
    layout: GridLayout
    pair_i: IntArray
    pair_j: IntArray
    pair_w: FloatArray
    pair_page: IntArray
    truth_table: FloatArray | None = None
    sim: SimContext | None = None
    logged: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes (or of every file in a folder, in name order)."""
    p = Path(path)
    h = hashlib.sha256()
    files = sorted(p.rglob("*")) if p.is_dir() else [p]
    for f in files:
        if f.is_file():
            h.update(f.name.encode())
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------------- embeddings
def read_embeddings(path: str | Path, image_ids: tuple[str, ...], seed: int = 0) -> tuple[FloatArray, IntArray, tuple[str, ...]]:
    """Embeddings (unit rows) and styles aligned with ``image_ids`` from a Parquet file.

    The file has ``image_id`` (string), ``embedding`` (list of floats, one length) and optionally
    ``style`` (string). Without ``style``, styles are 6 k-means clusters of the embeddings.

    Raises
    ------
    InvalidExperimentError
        A column is missing or malformed, or an image of the log has no embedding.
    """
    from slate.replay.metrics import ImageEmbeddings, InvalidEmbeddingsError

    p = Path(path)
    try:
        embeddings = ImageEmbeddings.load(p)  # the one reader of embeddings files, with its checks
    except InvalidEmbeddingsError as exc:
        raise InvalidExperimentError(f"The 'data.embeddings' file is not usable: {exc}") from exc
    found, has = embeddings.lookup(image_ids)
    if not has.all():
        missing = [i for i, ok in zip(image_ids, has.tolist(), strict=True) if not ok]
        raise InvalidExperimentError(
            f"The 'data.embeddings' file '{p}' must have an embedding for every image of the log; "
            f"got none for {len(missing)} images, e.g. '{missing[0]}'."
        )
    vectors = _unit(found)
    parquet = p.suffix.lower() != ".npz"
    table = pq.read_table(p, columns=["image_id", "style"]) if parquet and "style" in pq.read_schema(p).names else None
    if table is not None:
        position = {str(i): n for n, i in enumerate(table.column("image_id").to_pylist())}
        index = np.array([position[i] for i in image_ids], dtype=np.int64)
        raw = np.asarray(table.column("style").to_pylist(), dtype=object)[index]
        names, styles = np.unique(raw.astype(str), return_inverse=True)
        return vectors, styles.astype(np.int64), tuple(str(n) for n in names)
    styles, names_t = cluster_styles(vectors, seed=seed)
    return vectors, styles, names_t


def write_embeddings(
    path: str | Path,
    image_ids: Any,
    embeddings: Any,
    styles: Any = None,
) -> Path:
    """Write an embeddings file for ``data.embeddings``: ``image_id``, ``embedding`` [, ``style``].

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np
    >>> path = write_embeddings(pathlib.Path(tempfile.mkdtemp()) / "images.parquet",
    ...                         ["a", "b"], np.eye(2), styles=["close-up", "scenic"])
    >>> vectors, styles, names = read_embeddings(path, ("b", "a"))
    >>> vectors.tolist(), styles.tolist(), names
    ([[0.0, 1.0], [1.0, 0.0]], [1, 0], ('close-up', 'scenic'))
    """
    emb = np.asarray(embeddings, dtype=np.float32)
    ids = [str(i) for i in image_ids]
    if emb.ndim != 2 or emb.shape[0] != len(ids):
        raise InvalidExperimentError(
            f"The embeddings must be an array (n_images, dim) with one row per image id ({len(ids)}); "
            f"got shape {emb.shape} instead."
        )
    offsets = pa.array(np.arange(0, emb.size + 1, max(emb.shape[1], 1), dtype=np.int32))
    columns = {
        "image_id": pa.array(ids, pa.string()),
        "embedding": pa.ListArray.from_arrays(offsets, pa.array(emb.reshape(-1), pa.float32())),
    }
    if styles is not None:
        columns["style"] = pa.array([str(s) for s in styles], pa.string())
    p = Path(path)
    pq.write_table(pa.table(columns), p, write_page_checksum=True)
    return p


def cluster_styles(vectors: FloatArray, n_styles: int = 6, seed: int = 0) -> tuple[IntArray, tuple[str, ...]]:
    """Styles as k-means clusters of unit embeddings (seeded; for plots only)."""
    from scipy.cluster.vq import kmeans2

    k = max(1, min(n_styles, len(vectors)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "one of the clusters is empty" is harmless here
        _, labels = kmeans2(vectors, k, seed=np.random.default_rng(seed), minit="++")
    return labels.astype(np.int64), tuple(f"cluster {i}" for i in range(k))


def _unit(x: FloatArray) -> FloatArray:
    return unit_vectors(x)


# ---------------------------------------------------------------------- layout pairs
def page_pairs(log: ImpressionLog, layout: GridLayout) -> tuple[IntArray, IntArray, FloatArray, IntArray]:
    """Interacting row pairs of every page: ``(i, j, weight, page index)``.

    Pages with the same positions share one call to the layout.
    """
    order = log.page_order
    starts = log.page_starts
    cache: dict[bytes, tuple[IntArray, FloatArray]] = {}
    parts_i, parts_j, parts_w, parts_p = [], [], [], []
    for p in range(log.n_pages):
        rows = order[starts[p] : starts[p + 1]]
        r = log.row[rows].astype(np.int64)
        c = log.col[rows].astype(np.int64)
        key = r.tobytes() + b"|" + c.tobytes()
        hit = cache.get(key)
        if hit is None:
            hit = layout.pairs(r, c)
            cache[key] = hit
        pairs, w = hit
        if len(pairs) == 0:
            continue
        parts_i.append(rows[pairs[:, 0]])
        parts_j.append(rows[pairs[:, 1]])
        parts_w.append(w)
        parts_p.append(np.full(len(pairs), p, dtype=np.int64))
    if not parts_i:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0), empty
    return (
        np.concatenate(parts_i).astype(np.int64),
        np.concatenate(parts_j).astype(np.int64),
        np.concatenate(parts_w).astype(np.float64),
        np.concatenate(parts_p),
    )


# ---------------------------------------------------------------------- scoring
def _make_bandit(experiment: Experiment) -> Any:
    from slate.bandit import make_policy
    from slate.bandit.base import POLICIES

    params = dict(experiment.policy.params)
    if POLICIES.takes(experiment.policy.name, "seed"):
        params.setdefault("seed", experiment.seed)
    try:
        return make_policy(experiment.policy.name, **params)
    except TypeError as err:
        raise InvalidExperimentError(
            f"The 'policy.params' of policy '{experiment.policy.name}' are invalid: {err}."
        ) from None


def _features(log: ImpressionLog) -> NDArray[np.float64]:
    if log.features is None:
        return np.ones((log.n_rows, 1))
    return np.asarray(log.features, dtype=np.float64)


def fit_bandit(experiment: Experiment, train: ImpressionLog) -> tuple[Any, dict[str, int]]:
    """Fit the experiment's bandit policy on ``train``; returns it and ``{image id: arm}``."""
    policy = _make_bandit(experiment)
    x = _features(train)
    arms = train.image.astype(np.int64)
    policy.fit(x, arms, train.reward.astype(np.float64))
    arm_of = {iid: i for i, iid in enumerate(train.image_ids)}
    return policy, arm_of


def arms_for(image_ids: tuple[str, ...] | list[str], arm_of: dict[str, int]) -> IntArray:
    """Arm of each image id; images the policy never saw get new arms (they score at its prior)."""
    out = np.empty(len(image_ids), dtype=np.int64)
    extra = len(arm_of)
    for n, iid in enumerate(image_ids):
        a = arm_of.get(iid)
        if a is None:
            a = extra
            extra += 1
        out[n] = a
    return out


def score_rows(policy: Any, x: NDArray[np.float64], arms: IntArray) -> FloatArray:
    """``policy``'s predicted quality-play probability of every candidate (0 on padding)."""
    from slate.bandit import PageFeatures

    out = np.zeros(arms.shape)
    for lo in range(0, len(arms), _SCORE_CHUNK):
        hi = min(lo + _SCORE_CHUNK, len(arms))
        page = PageFeatures.from_arrays(x[lo:hi], arms[lo:hi], arms[lo:hi] >= 0)
        out[lo:hi] = policy.score(page, propensities=False).mean
    return np.where(arms >= 0, out, 0.0)


def _check_features(train: ImpressionLog, evaluated: ImpressionLog) -> None:
    if train.n_features != evaluated.n_features:
        raise InvalidExperimentError(
            f"The training log and the evaluated log must have the same number of features; got "
            f"{train.n_features} and {evaluated.n_features}."
        )


# ---------------------------------------------------------------------- logs
def _split_by_time(log: ImpressionLog, fraction: float) -> tuple[ImpressionLog, ImpressionLog]:
    order = log.page_order
    starts = log.page_starts
    first_row = order[starts[:-1]]
    page_time = log.timestamp[first_row]
    page_rank = np.lexsort((log.page_id[first_row], page_time))
    n_train = int(np.floor(fraction * log.n_pages))
    if n_train == 0 or n_train == log.n_pages:
        raise InvalidExperimentError(
            f"The 'policy.train_fraction' of {fraction} leaves no pages to "
            f"{'train on' if n_train == 0 else 'evaluate'} (the log has {log.n_pages} pages)."
        )
    is_train_page = np.zeros(log.n_pages, bool)
    is_train_page[page_rank[:n_train]] = True
    train_row = is_train_page[log.page_index]
    return log.take(train_row), log.take(~train_row)


def _logged_metrics(
    log: ImpressionLog, vectors: FloatArray, pairs: tuple[IntArray, IntArray, FloatArray, IntArray]
) -> dict[str, float]:
    from slate.replay.metrics import churn_rate, logged_distribution
    from slate.tune.metrics import page_diversity

    i, j, w, pg = pairs
    shown = log.candidates[np.arange(log.n_rows), log.shown].astype(np.int64)
    div = page_diversity(shown, vectors, i, j, w, pg, log.n_pages)
    return {
        "take_fraction": float(log.reward.mean()),
        "diversity": div,
        "churn": churn_rate(log, logged_distribution(log)),
    }


def _prepare_log(experiment: Experiment, data: LogData, base: Path) -> Prepared:
    path = base / data.path
    if not path.exists():
        raise InvalidExperimentError(f"The 'data.path' log '{path}' does not exist.")
    full, report = read_impressions(path)
    info: dict[str, Any] = {
        "source": "log",
        "log": str(path),
        "log_sha256": file_digest(path),
        "rejected_rows": report.n_rejected,
        "embeddings_sha256": file_digest(base / data.embeddings) if (base / data.embeddings).exists() else None,
    }
    spec = experiment.policy
    if spec.kind == "scorer":
        evaluated = full
        scores = scorer_rows(spec.scorer or spec.scores or "", evaluated, base)
        info["scorer"] = spec.scorer or spec.scores
        if spec.scores is not None:
            info["scores_sha256"] = file_digest(base / spec.scores)
        return _finish_log(experiment, data, base, evaluated, evaluated, scores, info)
    if spec.train_path is not None:
        tpath = base / spec.train_path
        if not tpath.exists():
            raise InvalidExperimentError(f"The 'policy.train_path' log '{tpath}' does not exist.")
        train, _ = read_impressions(tpath)
        evaluated = full
        info["train_log"] = str(tpath)
        info["train_sha256"] = file_digest(tpath)
    elif spec.train_fraction > 0:
        train, evaluated = _split_by_time(full, spec.train_fraction)
    else:
        train, evaluated = full, full
        info["in_sample"] = True
    _check_features(train, evaluated)
    policy, arm_of = fit_bandit(experiment, train)
    arm_map = arms_for(evaluated.image_ids, arm_of)
    cand = evaluated.candidates.astype(np.int64)
    arms = np.where(cand >= 0, arm_map[np.maximum(cand, 0)], -1)
    scores = score_rows(policy, _features(evaluated), arms)
    return _finish_log(experiment, data, base, train, evaluated, scores, info)


def scorer_rows(spec: str, log: ImpressionLog, base: Path) -> FloatArray:
    """Scores ``(n, k_max)`` of every candidate of every row from the team's scorer
    (``"module:function"`` or a score table), each page rebuilt as a compose request."""
    from slate.serve import parse_request
    from slate.serve.offline import ComposePolicy, logged_request
    from slate.serve.scorer import load_scorer

    scorer = load_scorer(spec, base)
    locked, context = ComposePolicy(scorer, None)._extras(log)
    out = np.zeros((log.n_rows, log.k_max))
    order = np.lexsort((np.arange(log.n_rows), log.page_id))
    page_of = log.page_id[order]
    cuts = np.flatnonzero(np.r_[True, page_of[1:] != page_of[:-1], True])
    for a, b in zip(cuts[:-1].tolist(), cuts[1:].tolist(), strict=True):
        rows = order[a:b]
        request = parse_request(logged_request(log, rows, log.title_ids, log.image_ids, locked, context))
        got = np.asarray(scorer(request), dtype=np.float64)
        if got.shape != (request.n_titles, request.n_images):
            raise InvalidExperimentError(
                f"The scorer {spec!r} must return scores of shape {(request.n_titles, request.n_images)} "
                f"for page {int(log.page_id[rows[0]])}; got {got.shape}."
            )
        width = log.n_candidates[rows]
        mask = np.arange(got.shape[1])[None, :] < width[:, None]
        if not np.isfinite(got[mask]).all():
            raise InvalidExperimentError(
                f"The scorer {spec!r} returned non-finite scores for page {int(log.page_id[rows[0]])} "
                "(a score table missing some image?)."
            )
        out[rows, : got.shape[1]] = np.where(mask, got, 0.0)
    return out


def _finish_log(
    experiment: Experiment, data: LogData, base: Path, train: ImpressionLog, evaluated: ImpressionLog,
    scores: FloatArray, info: dict[str, Any],
) -> Prepared:
    vectors, styles, names = read_embeddings(base / data.embeddings, evaluated.image_ids, seed=experiment.seed)
    lay = experiment.layout
    layout = _grid(evaluated, lay.model_dump() if lay is not None else {})
    pairs = page_pairs(evaluated, layout)
    info.update(n_train_rows=train.n_rows, n_rows=evaluated.n_rows, n_pages=evaluated.n_pages,
                k_max=evaluated.k_max, n_members=len(np.unique(evaluated.member_id)))
    return Prepared(
        log=evaluated, scores=scores, vectors=vectors, styles=styles, style_names=names,
        layout=layout, pair_i=pairs[0], pair_j=pairs[1], pair_w=pairs[2], pair_page=pairs[3],
        logged=_logged_metrics(evaluated, vectors, pairs), info=info,
    )


def _grid(log: ImpressionLog, weights: dict[str, float]) -> GridLayout:
    rows = int(log.row.max()) + 1 if log.n_rows else 1
    cols = int(log.col.max()) + 1 if log.n_rows else 1
    return GridLayout(rows=rows, cols=cols, **weights)


# ---------------------------------------------------------------------- simulated data
class BanditSimScorer:
    """Scores of simulated pages from a fitted context-free bandit (picklable, for dask)."""

    def __init__(self, policy: Any, arm_of_global: IntArray) -> None:
        self.policy = policy
        self.arm_of_global = arm_of_global

    def __call__(self, batch: Any) -> FloatArray:
        world = batch.world
        k = int(batch.n_candidates.max())
        g = world.title_images[batch.titles.reshape(-1), :k]
        arms = np.where(g >= 0, self.arm_of_global[np.maximum(g, 0)], -1)
        scores = score_rows(self.policy, np.ones((len(arms), 1)), arms)
        out = np.full((*batch.titles.shape, world.max_images), np.nan)
        out[:, :, :k] = np.where(arms >= 0, scores, np.nan).reshape(*batch.titles.shape, k)
        return out


class OracleSimScorer:
    """The world's true page-blind P(quality play) (picklable, for dask)."""

    def __call__(self, batch: Any) -> FloatArray:
        from slate.sim import candidate_probabilities

        return np.asarray(candidate_probabilities(batch, include_position=False))


def _logging_policy(data: SimData) -> Any:
    from slate.sim import ArgmaxPolicy, EpsilonGreedyLogging, UniformRandomLogging, oracle_scorer

    if data.logging == "uniform":
        return UniformRandomLogging(seed=data.logging_seed)
    return EpsilonGreedyLogging(ArgmaxPolicy(oracle_scorer()), epsilon=data.logging_epsilon, seed=data.logging_seed)


def _prepare_sim(experiment: Experiment, data: SimData) -> Prepared:
    from slate.sim import initial_state, make_config, make_schedule, make_world, respond, simulate

    world = make_world(make_config(**data.world))
    logging_policy = _logging_policy(data)
    state = initial_state(world)
    train_log = None
    if data.train_days:
        train_sched = make_schedule(world, n_days=data.train_days, first_day=0, seed=data.schedule_seed)
        train_run = simulate(train_sched, logging_policy)
        state = train_run.final_state
        train_log, _ = read_impressions(train_run.to_table())
    sched = make_schedule(world, n_days=data.n_days, first_day=data.train_days, seed=data.schedule_seed)
    run = simulate(sched, logging_policy, state=state)
    log, report = read_impressions(run.to_table())
    S, P = sched.titles.shape
    if log.n_rows != S * P or report.n_rejected:
        raise InvalidExperimentError(  # pragma: no cover - the simulator writes valid logs
            f"The simulated log has {log.n_rows} valid rows for {S * P} impressions."
        )
    k = log.k_max
    global_of = {iid: n for n, iid in enumerate(world.image_ids)}
    g_index = np.array([global_of[i] for i in log.image_ids], dtype=np.int64)
    vectors = _unit(np.asarray(world.embeddings, dtype=np.float64)[g_index])
    styles = np.asarray(world.image_aesthetic, dtype=np.int64)[g_index]
    scorer: Any
    if experiment.policy.kind == "oracle":
        scorer = OracleSimScorer()
    else:
        assert train_log is not None
        policy, arm_of = fit_bandit(experiment, train_log)
        scorer = BanditSimScorer(policy, arms_for(list(world.image_ids), arm_of))
    scores = np.zeros((log.n_rows, k))
    truth = np.full((log.n_rows, k), np.nan)
    for s, batch in run.batches():
        rows = np.arange(s.start * P, s.stop * P)
        sc = np.asarray(scorer(batch))[:, :, :k].reshape(-1, k)
        scores[rows] = np.nan_to_num(sc, nan=0.0)
        shown = run.images[s].astype(np.int64)
        noticed = run.noticed_before[s]
        n = batch.n_candidates
        for j in range(k):
            live = j < n
            if not live.any():
                continue
            trial = np.minimum(j, n - 1)
            p = respond(batch, trial, noticed, neighbours=shown).probability
            truth[rows, j] = np.where(live, p, np.nan).reshape(-1)
    scores = np.where(log.candidates >= 0, scores, 0.0)
    pc = world.config.page
    weights = (experiment.layout.model_dump() if experiment.layout is not None else
               {"neighbour": pc.neighbour, "same_row": pc.same_row, "vertical": pc.vertical})
    layout = GridLayout(rows=pc.rows, cols=pc.cols, **weights)
    pairs = page_pairs(log, layout)
    info = {
        "source": "sim", "world_seed": world.config.seed, "schedule_seed": data.schedule_seed,
        "n_rows": log.n_rows, "n_pages": log.n_pages, "k_max": k,
        "n_members": len(np.unique(log.member_id)),
        "n_train_rows": 0 if train_log is None else train_log.n_rows,
    }
    logged = _logged_metrics(log, vectors, pairs)
    logged["true_take_fraction"] = float(run.value().take_fraction)
    return Prepared(
        log=log, scores=scores, vectors=vectors, styles=styles, style_names=tuple(world.aesthetics),
        layout=layout, pair_i=pairs[0], pair_j=pairs[1], pair_w=pairs[2], pair_page=pairs[3],
        truth_table=truth, sim=SimContext(world=world, schedule=sched, state=state, scorer=scorer),
        logged=logged, info=info,
    )


def prepare(experiment: Experiment, base_dir: str | Path = ".") -> Prepared:
    """Read (or simulate) the data of ``experiment`` and compute everything its points share.

    Raises
    ------
    InvalidExperimentError
        A file is missing or malformed (the message names the field of the experiment).
    """
    data = experiment.data
    if isinstance(data, LogData):
        return _prepare_log(experiment, data, Path(base_dir))
    return _prepare_sim(experiment, data)
