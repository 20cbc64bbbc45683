"""Page effects estimated from exploration logs, in the page objective's units.

:func:`estimate_effects` fits, from an impression log with exact propensities and the images'
visual embeddings, how the probability of a take changes with

* a neighbour's visual similarity, by layout relation (``adjacent``: next to it in the row,
  ``farther``: farther in the same row, ``vertical``: directly above or below), and pooled over
  the relations with the page layout's pair weights (the *strength*, comparable to the
  simulator's ``crowding``);
* an image change since the member's last impression of the title (``change``: changed vs the
  same image again);
* repeated exposure (``repeat``: the same image again vs a first impression of the title);

and translates them into the page objective's weights (:class:`PageEffects.diversity`,
:class:`PageEffects.churn`), each with a 95% interval.

The model
---------
A Poisson (log-link) quasi-likelihood with one fixed effect per shown image::

    log E[take] = alpha_image + sum_r b_r * D_r + sum_r c_r * C_r + d * changed + e * repeat
                  + row and column effects

``D_r = S_r - C_r`` where ``S_r`` is the summed similarity ``max(0, cos)`` of the image to its
``r``-neighbours' images and ``C_r`` its expectation over the neighbours' *logged* exploration
distributions (the propensities). ``D_r`` is therefore the part of the similarity that the
randomization of the neighbours' images created: it is independent of who the member is and
which titles the page holds, and ``b_r`` is causal. ``C_r`` (which depends on the titles the
recommender placed together) is a control only. The image fixed effects absorb each image's
appeal, so ``changed`` (drawn by the exploration of the row's own image) is compared with the
same images shown unchanged. A log link is the simulator's form (attention multiplies the take
probability by ``exp(-crowding * similarity)``), so ``-b`` is the attention lost per unit of
layout-weighted similarity.

Intervals are Wald intervals with a sandwich covariance **clustered on member** (a member's
pages and sessions share unobserved taste). The change effect uses only rows whose own image
was explored and that have a previous image; the similarity effects use only neighbour pairs
whose neighbour image was explored. The repeat effect compares rows with and without a previous
impression, which exploration does not randomize (which titles return to a member's page is the
title recommender's choice): it is reported as an association, not a causal effect.

Translation
-----------
The objective (:mod:`slate.page.problem`) is ``sum scores - diversity * sum_pairs w * sim -
churn * changes`` with scores in take-probability units. A pair ``(i, j)`` of weight ``w``
at similarity ``sim`` costs both titles attention: ``p_i * s * w * sim + p_j * s * w * sim``
to first order for strength ``s``, so ``diversity = 2 * s * p`` with ``p`` the take rate per
impression; a change multiplies a take probability by ``exp(d)``: ``churn = -d * p``. Relative
weights (:class:`slate.sim.PageOptimizerPolicy` with ``relative=True``, which scales by the
page's mean best score) are ``2 * s`` and ``-d``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from slate.errors import InvalidEmbeddingsError, InvalidReplayInputError, NoEstimateError

__all__ = [
    "ASSUMPTION", "Effect", "EffectsOptions", "PageEffects", "estimate_effects", "load_effects",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

RELATIONS: tuple[str, ...] = ("adjacent", "farther", "vertical")
"""Layout relations of a neighbour: next in the row, farther in the row, directly above/below."""

ASSUMPTION = (
    "Causal under the exploration design: neighbour images and the row's own image were drawn by "
    "the logged exploration with the logged propensities, independently of the member's outcome; "
    "similarity effects use only the exploration-made part of the similarity (observed minus its "
    "expectation under the neighbours' propensities); the change effect compares explored images "
    "with image fixed effects, on rows of titles the member has not taken earlier in the log (the "
    "history the response conditions on). Intervals: Poisson quasi-likelihood, 95% Wald, clustered "
    "on member. "
    "The repeat effect is an association (exposure history is not randomized)."
)

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Effect:
    """One estimated effect with its 95% interval; ``estimate`` is None when it cannot be estimated.

    Attributes
    ----------
    name : str
    estimate, low, high, se : float or None
    n : int
        Rows (or pairs) the effect rests on.
    note : str
        Units, or why it cannot be estimated.
    """

    name: str
    estimate: float | None
    low: float | None
    high: float | None
    se: float | None
    n: int
    note: str = ""

    @property
    def estimated(self) -> bool:
        """An estimate exists."""
        return self.estimate is not None

    def covers(self, value: float) -> bool:
        """The interval contains ``value`` (False when not estimated)."""
        return self.low is not None and self.high is not None and self.low <= value <= self.high

    def scaled(self, name: str, factor: float, note: str) -> Effect:
        """The effect times ``factor`` (a negative factor swaps the ends)."""
        if self.estimate is None or self.low is None or self.high is None or self.se is None:
            return Effect(name, None, None, None, None, self.n, self.note)
        lo, hi = sorted((self.low * factor, self.high * factor))
        return Effect(name, self.estimate * factor, lo, hi, self.se * abs(factor), self.n, note)

    def __str__(self) -> str:
        if self.estimate is None or self.low is None or self.high is None:
            return f"{self.name:<12} cannot be estimated: {self.note}"
        return f"{self.name:<12} {self.estimate:+.4f}  [{self.low:+.4f}, {self.high:+.4f}]  n={self.n}  {self.note}"


@dataclass(frozen=True)
class EffectsOptions:
    """Options of :func:`estimate_effects`.

    Attributes
    ----------
    neighbour, same_row, vertical : float, default 1.0, 0.1, 0.5
        Pair weights of the page layout (as :class:`~slate.page.GridLayout`): the strength and the
        diversity weight are in units of this layout's weighted similarity.
    min_rows : int, default 200
        Fewest explored rows (or explored neighbour pairs) an effect needs; fewer: not estimated.
    max_iter : int, default 50
    """

    neighbour: float = 1.0
    same_row: float = 0.1
    vertical: float = 0.5
    min_rows: int = 200
    max_iter: int = 50

    def weights(self) -> FloatArray:
        return np.array([self.neighbour, self.same_row, self.vertical], dtype=np.float64)


@dataclass(frozen=True)
class PageEffects:
    """Page effects estimated from an exploration log (:func:`estimate_effects`).

    Attributes
    ----------
    relations : tuple of Effect
        Log take-probability change per unit similarity ``max(0, cos)`` to one neighbour, by
        relation (``adjacent``, ``farther``, ``vertical``); negative = similarity costs takes.
    strength : Effect
        Attention lost per unit of layout-weighted similarity (``-`` the pooled log effect; the
        simulator's ``crowding``).
    change, repeat : Effect
        Log take-probability change of a changed image (vs the same image again) and of the same
        image again (vs a first impression; an association).
    diversity, churn : Effect
        Weights of the page objective in take-probability units (``ComposeConfig.diversity``,
        ``StabilityRules.churn``).
    diversity_relative, churn_relative : Effect
        The same as rates (``PageOptimizerPolicy(relative=True)``): ``2 * strength`` and ``-change``.
    take_rate : float
        Takes per title impression in the log.
    n_rows, n_explored, n_pages, n_members : int
    cluster : str
        What the intervals are clustered on ("member").
    layout_weights : dict
        The pair weights the strength is measured in.
    assumption : str
    source : str
    """

    relations: tuple[Effect, ...]
    strength: Effect
    change: Effect
    repeat: Effect
    diversity: Effect
    churn: Effect
    diversity_relative: Effect
    churn_relative: Effect
    take_rate: float
    n_rows: int
    n_explored: int
    n_pages: int
    n_members: int
    cluster: str = "member"
    layout_weights: dict[str, float] = field(default_factory=dict)
    assumption: str = ASSUMPTION
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``format: slate.effects/1``)."""
        out = asdict(self)
        out["relations"] = [asdict(r) for r in self.relations]
        return {"format": "slate.effects/1", **out}

    def to_json(self, path: str | Path | None = None) -> str:
        """The JSON text; written to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=2, allow_nan=False)
        if path is not None:
            Path(path).write_text(text + "\n", encoding="utf-8")
        return text

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> PageEffects:
        """Back from :meth:`to_dict`.

        Raises
        ------
        InvalidReplayInputError
            Not a ``slate.effects/1`` document.
        """
        if not isinstance(data, dict) or data.get("format") != "slate.effects/1":
            raise InvalidReplayInputError(
                f"The effects file '{source}' must be a slate.effects/1 JSON document (from `slate effects`)."
            )
        try:
            kw = {k: v for k, v in data.items() if k != "format"}
            effects = {k: Effect(**kw[k]) for k in ("strength", "change", "repeat", "diversity", "churn",
                                                     "diversity_relative", "churn_relative")}  # fmt: skip
            kw.update(effects)
            kw["relations"] = tuple(Effect(**r) for r in kw["relations"])
            return cls(**kw)
        except (KeyError, TypeError) as err:
            raise InvalidReplayInputError(f"The effects file '{source}' is missing or has a bad field: {err}.") from None

    def __str__(self) -> str:
        lines = [
            f"page effects from {self.source or 'a log'}: {self.n_rows} rows ({self.n_explored} explored), "
            f"{self.n_pages} pages, {self.n_members} members; take rate {self.take_rate:.4f}",
            "log take-probability effects, 95% intervals clustered on member:",
            *(f"  {r}" for r in self.relations),
            f"  {self.strength}",
            f"  {self.change}",
            f"  {self.repeat}",
            "page objective weights (take-probability units; relative = per unit of mean best score):",
            f"  {self.diversity}",
            f"  {self.churn}",
            f"  {self.diversity_relative}",
            f"  {self.churn_relative}",
            f"assumption: {self.assumption}",
        ]
        return "\n".join(lines)


def load_effects(path: str | Path) -> PageEffects:
    """Read a ``slate effects --out`` file.

    Raises
    ------
    InvalidReplayInputError
        Missing, not JSON, or not an effects document (the message names the file).
    """
    p = Path(path)
    if not p.is_file():
        raise InvalidReplayInputError(f"The effects file '{p}' must exist.")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise InvalidReplayInputError(f"The effects file '{p}' is not JSON: {err}.") from None
    return PageEffects.from_dict(data, source=str(p))


# ---------------------------------------------------------------------- neighbour similarity
def _unit_vectors(log: Any, embeddings: Any) -> FloatArray:
    """``(n_images + 1, D)`` unit vectors by image code (last row: zeros, for padding)."""
    from slate.page.embeddings import as_image_embeddings

    emb = as_image_embeddings(embeddings)
    vectors, has = emb.lookup(tuple(log.image_ids))
    used = np.zeros(len(log.image_ids), dtype=bool)
    used[log.image] = True
    cand = log.candidates[log.candidates >= 0]
    used[cand] = True
    missing = np.flatnonzero(used & ~np.asarray(has))
    if missing.size:
        raise InvalidEmbeddingsError(
            f"The embeddings '{emb.source}' have no vector for image '{log.image_ids[int(missing[0])]}' "
            f"({missing.size} logged images missing); the 'image_id' column must cover every logged image."
        )
    out = np.zeros((len(log.image_ids) + 1, vectors.shape[1]))
    out[:-1] = np.where(np.asarray(has)[:, None], vectors, 0.0)
    return out


def _pairs(log: Any) -> tuple[IntArray, IntArray, IntArray]:
    """Unordered neighbour pairs ``(i, j, relation)`` of rows on the same page."""
    page = np.unique(log.page_id, return_inverse=True)[1].astype(np.int64)
    row, col = log.row.astype(np.int64), log.col.astype(np.int64)
    out_i, out_j, out_r = [], [], []
    order = np.lexsort((col, row, page))
    p, r, c = page[order], row[order], col[order]
    for d in range(1, int(c.max(initial=0)) + 1 if len(c) else 1):
        same = (p[d:] == p[:-d]) & (r[d:] == r[:-d])
        if not same.any():
            break
        far = (c[d:] - c[:-d])[same]
        out_i.append(order[:-d][same])
        out_j.append(order[d:][same])
        out_r.append(np.where(far == 1, 0, 1))
    order = np.lexsort((row, col, page))
    p, r, c = page[order], row[order], col[order]
    vert = (p[1:] == p[:-1]) & (c[1:] == c[:-1]) & (r[1:] - r[:-1] == 1)
    out_i.append(order[:-1][vert])
    out_j.append(order[1:][vert])
    out_r.append(np.full(int(vert.sum()), 2))
    return (np.concatenate(out_i).astype(np.int64), np.concatenate(out_j).astype(np.int64),
            np.concatenate(out_r).astype(np.int64))  # fmt: skip


def _distribution(log: Any) -> FloatArray:
    """``(n, k_max)`` exploration distribution over each row's candidates (uniform when the log
    has no ``propensities``)."""
    if log.propensities is not None:
        return np.asarray(log.propensities, dtype=np.float64)
    k = log.candidates.shape[1]
    n_c = np.maximum(log.n_candidates, 1)[:, None]
    return np.asarray(np.where(np.arange(k)[None, :] < n_c, 1.0 / n_c, 0.0))


def _similarity_features(log: Any, vectors: FloatArray) -> tuple[FloatArray, FloatArray, IntArray]:
    """Per row and relation: observed similarity sum ``S`` and its expectation ``C`` over explored
    neighbours' propensities, and the number of explored neighbour pairs per relation."""
    n = len(log.reward)
    i, j, rel = _pairs(log)
    a = np.concatenate([i, j])  # directed: a's image against b's
    b = np.concatenate([j, i])
    rel2 = np.concatenate([rel, rel])
    img = log.image.astype(np.int64)
    s_obs = np.maximum(0.0, np.einsum("nd,nd->n", vectors[img[a]], vectors[img[b]]))
    s_exp = s_obs.copy()
    explored = log.explored[b]
    dist = _distribution(log)
    cand = np.where(log.candidates >= 0, log.candidates, len(vectors) - 1).astype(np.int64)
    idx = np.flatnonzero(explored)
    for start in range(0, idx.size, 200_000):
        chunk = idx[start : start + 200_000]
        sims = np.einsum("nd,nkd->nk", vectors[img[a[chunk]]], vectors[cand[b[chunk]]])
        s_exp[chunk] = (np.maximum(sims, 0.0) * dist[b[chunk]]).sum(axis=1)
    S = np.zeros((n, 3))
    C = np.zeros((n, 3))
    np.add.at(S, (a, rel2), s_obs)
    np.add.at(C, (a, rel2), s_exp)
    counts = np.bincount(rel2[explored], minlength=3).astype(np.int64)
    return S, C, counts


# ---------------------------------------------------------------------- Poisson with image effects
def _poisson_fe(
    y: FloatArray, x: FloatArray, group: IntArray, cluster: IntArray, max_iter: int
) -> tuple[FloatArray, FloatArray] | None:
    """Poisson quasi-likelihood with one fixed effect per ``group`` (profiled out), and the
    cluster-robust covariance. None when singular. Groups without a take carry no information
    and are dropped."""
    _, group = np.unique(group, return_inverse=True)
    ysum = np.bincount(group, y)
    keep = ysum[group] > 0
    y, x, cluster = y[keep], x[keep], cluster[keep]
    _, group = np.unique(group[keep], return_inverse=True)
    ysum = np.bincount(group, y)
    p = x.shape[1]
    beta = np.zeros(p)
    hess = np.eye(p)
    xc = x
    mu = y
    for _ in range(max_iter):
        e = np.exp(np.clip(x @ beta, -30, 30))
        mu = e * (ysum / np.bincount(group, e, minlength=len(ysum)))[group]
        musum = np.bincount(group, mu, minlength=len(ysum))
        xbar = np.stack([np.bincount(group, mu * x[:, k], minlength=len(ysum)) for k in range(p)], axis=1)
        xc = x - (xbar / np.maximum(musum, 1e-300)[:, None])[group]
        hess = (xc * mu[:, None]).T @ xc
        score = xc.T @ (y - mu)
        try:
            step = np.linalg.solve(hess, score)
        except np.linalg.LinAlgError:
            return None
        beta = beta + step
        if np.max(np.abs(step)) < 1e-9:
            break
    if not np.all(np.isfinite(beta)) or np.linalg.cond(hess) > 1e12:
        return None
    u = xc * (y - mu)[:, None]
    _, cl = np.unique(cluster, return_inverse=True)
    g = int(cl.max()) + 1 if cl.size else 0
    if g < 2:
        return None
    uc = np.zeros((g, p))
    np.add.at(uc, cl, u)
    hinv = np.linalg.inv(hess)
    cov = hinv @ (uc.T @ uc) @ hinv * (g / (g - 1.0))
    return beta, cov


def _effect(name: str, fit: tuple[FloatArray, FloatArray] | None, k: int, n: int, min_rows: int,
            note: str, why: str, sign: float = 1.0) -> Effect:  # fmt: skip
    if n < min_rows:
        return Effect(name, None, None, None, None, n, f"only {n} {why} (need at least {min_rows})")
    if fit is None:
        return Effect(name, None, None, None, None, n, f"the fit is singular on {n} {why} (no variation)")
    b, se = sign * float(fit[0][k]), float(math.sqrt(max(fit[1][k, k], 0.0)))
    if not math.isfinite(se) or se == 0.0:
        return Effect(name, None, None, None, None, n, f"no variation in {n} {why}")
    return Effect(name, b, b - Z95 * se, b + Z95 * se, se, n, note)


def _took_before(log: Any) -> NDArray[np.bool_]:
    """The member had a take of the row's title earlier in the log (their history with the title,
    which the response conditions on: a member who played a title responds less to its artwork)."""
    order = np.lexsort((log.page_id, log.timestamp, log.title, log.member_id))
    m, t, y = log.member_id[order], log.title[order], log.reward[order].astype(np.int64)
    start = np.ones(len(order), dtype=bool)
    start[1:] = (m[1:] != m[:-1]) | (t[1:] != t[:-1])
    cum = np.cumsum(y) - y  # takes strictly before, over the whole sorted log
    base = np.maximum.accumulate(np.where(start, cum, 0))  # takes before each group's first row
    out = np.empty(len(order), dtype=bool)
    out[order] = (cum - base) > 0
    return out


def _position_dummies(log: Any) -> FloatArray:
    cols: list[FloatArray] = []
    for v in (log.row, log.col):
        levels = np.unique(v)
        cols.extend((v == lv).astype(np.float64) for lv in levels[1:])
    return np.stack(cols, axis=1) if cols else np.zeros((len(log.row), 0))


def estimate_effects(
    log: Any, embeddings: Any, options: EffectsOptions | None = None, *, source: str = ""
) -> PageEffects:
    """Estimate page and session effects from an exploration log (see the module docstring).

    Parameters
    ----------
    log : ImpressionLog or path
        Read with :func:`slate.logs.read_impressions` when a path.
    embeddings : ImageEmbeddings, path or anything :func:`~slate.page.embeddings.as_image_embeddings` takes
    options : EffectsOptions, optional

    Returns
    -------
    PageEffects

    Raises
    ------
    InvalidEmbeddingsError
        A logged image has no embedding.
    NoEstimateError
        Neither the page effect nor the change effect can be estimated (too few explored rows).
    """
    o = options if options is not None else EffectsOptions()
    if not hasattr(log, "reward"):
        from slate.logs import read_impressions

        source = source or str(log)
        log = read_impressions(log)[0]
    vectors = _unit_vectors(log, embeddings)
    S, C, pair_counts = _similarity_features(log, vectors)
    y = log.reward.astype(np.float64)
    prev = log.previous_image if log.previous_image is not None else np.full(len(y), -1)
    has_prev = prev >= 0
    changed = (has_prev & (prev != log.image)).astype(np.float64)
    repeat = (has_prev & (prev == log.image)).astype(np.float64)
    pos = _position_dummies(log)
    w = o.weights()
    D = S - C
    group, cluster = log.image.astype(np.int64), log.member_id
    # per relation (+ changed/repeat as controls, over all rows)
    x_rel = np.column_stack([D, C, changed, repeat, pos])
    fit_rel = _poisson_fe(y, x_rel, group, cluster, o.max_iter)
    # pooled: layout-weighted similarity
    x_pool = np.column_stack([D @ w, C @ w, changed, repeat, pos])
    fit_pool = _poisson_fe(y, x_pool, group, cluster, o.max_iter)
    # change: explored rows with a previous image
    sel = has_prev & log.explored & ~_took_before(log)
    x_chg = np.column_stack([changed, D @ w, C @ w, pos])[sel]
    fit_chg = _poisson_fe(y[sel], x_chg, group[sel], cluster[sel], o.max_iter) if sel.any() else None
    n_pairs = int(pair_counts.sum())
    unit = "log take prob per unit similarity"
    relations = tuple(
        _effect(r, fit_rel, k, int(pair_counts[k]), o.min_rows, unit, f"explored {r} neighbour pairs")
        for k, r in enumerate(RELATIONS)
    )
    strength = _effect("strength", fit_pool, 0, n_pairs, o.min_rows,
                       "attention lost per unit layout-weighted similarity", "explored neighbour pairs", -1.0)
    n_changed = int(sel.sum())
    change = _effect("change", fit_chg, 0, n_changed, o.min_rows, "log take prob, changed vs same image",
                     "explored rows with a previous image and no earlier take")
    repeat_e = _effect("repeat", fit_rel, 7, int(has_prev.sum()), o.min_rows,
                       "log take prob, same image again vs first (association)", "rows with a previous image")
    if not strength.estimated and not change.estimated:
        raise NoEstimateError(
            f"The page effects cannot be estimated from {source or 'the log'}: {strength.note}; {change.note}."
        )
    p = float(y.mean()) if y.size else 0.0
    return PageEffects(
        relations=relations,
        strength=strength,
        change=change,
        repeat=repeat_e,
        diversity=strength.scaled("diversity", 2.0 * p, "ComposeConfig.diversity = 2 * strength * take rate"),
        churn=change.scaled("churn", -p, "StabilityRules.churn = -change * take rate"),
        diversity_relative=strength.scaled("div. (rel.)", 2.0, "PageOptimizerPolicy diversity = 2 * strength"),
        churn_relative=change.scaled("churn (rel.)", -1.0, "PageOptimizerPolicy churn = -change"),
        take_rate=p,
        n_rows=int(y.size),
        n_explored=int(log.explored.sum()),
        n_pages=int(np.unique(log.page_id).size),
        n_members=int(np.unique(log.member_id).size),
        layout_weights={"neighbour": o.neighbour, "same_row": o.same_row, "vertical": o.vertical},
        source=source,
    )


# ---------------------------------------------------------------------- command line
def _cmd_effects(args: Any) -> int:
    from slate.page.embeddings import ImageEmbeddings

    log_path = Path(args.log)
    if not log_path.exists():
        raise InvalidReplayInputError(f"The log '{log_path}' must exist.")
    options = EffectsOptions(min_rows=args.min_rows)
    result = estimate_effects(str(log_path), ImageEmbeddings.load(args.embeddings), options, source=str(log_path))
    print(result)
    if args.out:
        result.to_json(args.out)
        print(f"wrote {args.out}")
    return 0


def add_effects_parser(sub: Any) -> None:
    """Add ``slate effects LOG --embeddings E.parquet [--out effects.json]``."""
    p = sub.add_parser(
        "effects",
        help="estimate page effects (neighbour similarity, image change) from an exploration log, "
        "with 95%% intervals, as diversity and churn weights",
    )
    p.add_argument("log", help="a slate.impressions Parquet log with exploration and propensities")
    p.add_argument("--embeddings", required=True, help="Parquet (image_id, embedding) or .npz of the images")
    p.add_argument("--out", default=None, help="write the result as JSON (for --centre-on and from_effects)")
    p.add_argument("--min-rows", type=int, default=200, help="fewest explored rows/pairs an effect needs")
    p.set_defaults(func=_cmd_effects)

