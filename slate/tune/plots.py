"""Plots of a sweep (matplotlib, written as PNG and SVG).

* :func:`plot_take_vs_weight` -- estimated take fraction (with intervals) against the diversity
  weight, one line per setting of the other weights (and the simulator's truth when known);
* :func:`plot_front` -- take fraction against diversity, coloured by churn, the front (paired
  differences when the sweep kept replicates) outlined, points near it hollow, the recommended
  point starred;
* :func:`plot_front_by_churn` -- the same in one panel per churn band (the third objective
  shown, not only coloured), the points breaking the constraints greyed, the constraints drawn,
  the paired front ringed and the plain front dotted;
* :func:`plot_paired` -- every point's paired difference against the logging policy and
  against the best point, with the marginal interval beside it for scale;
* :func:`plot_page` -- one page as a grid of tiles coloured by image style, before and after
  diversification;
* :func:`plot_sessions` -- one member's images across sessions, before and after the stability
  terms (changed images marked).

Figures are built with :class:`matplotlib.figure.Figure` (no pyplot, no global state, no
display): they render with the Agg backend whatever the session's backend is.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from slate.tune.results import SweepResults

__all__ = [
    "churn_bands",
    "draw_all",
    "front_by_churn_figure",
    "plot_front",
    "plot_front_by_churn",
    "plot_page",
    "plot_paired",
    "plot_sessions",
    "plot_take_vs_weight",
]

_FORMATS = ("png", "svg")


def _figure(width: float, height: float) -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError as err:  # pragma: no cover - matplotlib is in the plots extra
        raise ImportError("Plots need matplotlib (pip install 'slate-artwork[plots]').") from err
    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _save(fig: Any, stem: Path) -> list[Path]:
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in _FORMATS:
        path = stem.with_suffix(f".{fmt}")
        meta = {"Date": None} if fmt == "svg" else {"Software": None}
        fig.savefig(path, format=fmt, metadata=meta)
        paths.append(path)
    return paths


def _label(max_changes: float, exploration: float, churn: float) -> str:
    budget = "no budget" if np.isnan(max_changes) else f"budget {int(max_changes)}"
    return f"churn w {churn:g}, {budget}, explore {exploration:g}"


def plot_take_vs_weight(results: SweepResults, stem: Path) -> list[Path]:
    """Take fraction (estimate and interval) against the diversity weight."""
    wd = results.column("w_diversity")
    wc = results.column("w_churn")
    mc = np.asarray(results.column("max_changes"), dtype=np.float64)
    ex = results.column("exploration")
    take = results.column("take_fraction")
    lo, hi = results.column("take_fraction_low"), results.column("take_fraction_high")
    truth = results.column("true_take_fraction")
    fig = _figure(7.5, 4.6)
    ax = fig.add_subplot()
    keys = sorted({(float(c), float(m) if not np.isnan(m) else np.inf, float(e)) for c, m, e in zip(wc, mc, ex, strict=True)})
    colours = _palette(len(keys))
    span = float(np.ptp(wd)) if len(wd) else 0.0
    step = 0.012 * span if len(keys) > 1 else 0.0  # dodge the lines so that intervals do not overlap
    for n, (c, m, e) in enumerate(keys):
        sel = (wc == c) & (np.where(np.isnan(mc), np.inf, mc) == m) & (ex == e)
        order = np.argsort(wd[sel])
        x = wd[sel][order] + (n - (len(keys) - 1) / 2) * step
        y = take[sel][order]
        err = np.vstack([y - lo[sel][order], hi[sel][order] - y])
        label = _label(np.nan if np.isinf(m) else m, e, c) if len(keys) <= 10 else None
        ax.errorbar(x, y, yerr=err, marker="o", ms=4, capsize=3, lw=1.2, color=colours[n], label=label)
        if np.isfinite(truth[sel]).any():
            ax.plot(x, truth[sel][order], ls="--", lw=1, color=colours[n], alpha=0.8)
    if np.isfinite(truth).any():
        ax.plot([], [], ls="--", color="0.3", label="simulator truth (deployed)")
    ax.set_xlabel("diversity weight")
    ax.set_ylabel("take fraction (replay estimate, interval)")
    ax.set_title(f"{results.experiment.name}: take fraction vs diversity weight")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="best")
    return _save(fig, stem)


def plot_front(results: SweepResults, stem: Path, recommended: int | None = None) -> list[Path]:
    """Take fraction vs diversity coloured by churn, with the front (the paired one when the sweep
    kept replicates, else the plain Pareto front) and the recommendation."""
    take = results.column("take_fraction")
    lo, hi = results.column("take_fraction_low"), results.column("take_fraction_high")
    div = results.column("diversity")
    churn = results.column("churn")
    paired = "front_paired" in results.table.column_names
    front = results.column("front_paired" if paired else "pareto").astype(bool)
    near = results.column("near_front").astype(bool) & ~front
    rec = results.recommended() if recommended is None else recommended
    fig = _figure(7.5, 5.0)
    ax = fig.add_subplot()
    ax.errorbar(div, take, yerr=np.vstack([take - lo, hi - take]), fmt="none", ecolor="0.75", lw=0.8, zorder=1)
    vmin, vmax = float(np.nanmin(churn)), float(np.nanmax(churn))
    if not vmax > vmin:
        vmax = vmin + 1e-9
    other = ~front & ~near
    sc = ax.scatter(div[other], take[other], c=churn[other], cmap="viridis", vmin=vmin, vmax=vmax, s=22,
                    alpha=0.6, zorder=2, label="dominated")
    ax.scatter(div[near], take[near], facecolors="none", edgecolors=_cmap_colours(churn[near], vmin, vmax),
               s=40, lw=1.4, zorder=3, label="near the front (intervals overlap)")
    ax.scatter(div[front], take[front], c=churn[front], cmap="viridis", vmin=vmin, vmax=vmax, s=55,
               edgecolors="black", lw=1.0, zorder=4,
               label="not clearly dominated (paired differences)" if paired else "Pareto front")
    cons = results.experiment.constraints
    if cons.max_churn is not None and (churn > cons.max_churn).any():
        out = churn > cons.max_churn
        ax.scatter(div[out], take[out], marker="x", c="0.35", s=30, lw=1.0, zorder=5,
                   label=f"breaks churn <= {cons.max_churn:g}")
    if front.any():
        f = np.flatnonzero(front)
        f = f[np.argsort(div[f])]
        ax.plot(div[f], take[f], color="black", lw=0.6, alpha=0.5, zorder=3)
    if rec is not None:
        ax.scatter([div[rec]], [take[rec]], marker="*", s=260, c="crimson", edgecolors="black", zorder=5,
                   label=f"recommended (point {rec})")
    fig.colorbar(sc, ax=ax, label="churn (share of titles whose image changed)")
    ax.set_xlabel("page diversity (1 - layout-weighted neighbour similarity)")
    ax.set_ylabel("take fraction (replay estimate)")
    note = f", churn <= {cons.max_churn:g}" if cons.max_churn is not None else ""
    kind = "Front on paired differences" if paired else "Pareto front"
    ax.set_title(f"{kind}: take fraction up, diversity up, churn down{note}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return _save(fig, stem)


def churn_bands(churn: NDArray[np.float64], max_churn: float | None = None, n_bands: int = 3) -> NDArray[np.float64]:
    """Edges of the churn bands of :func:`front_by_churn_figure`: ``n_bands`` quantile bands,
    with the constraint ``max_churn`` as an edge when it falls inside the range (so that a band
    never straddles it). Bands are ``[e[k], e[k + 1]]`` for the first, ``(e[k], e[k + 1]]`` after.

    Examples
    --------
    >>> import numpy as np
    >>> churn_bands(np.array([0.0, 0.05, 0.2, 0.4, 0.6]), max_churn=0.1).round(3).tolist()
    [0.0, 0.1, 0.333, 0.6]
    """
    c = np.asarray(churn, dtype=np.float64)
    c = c[np.isfinite(c)]
    if not len(c):
        return np.array([0.0, 0.0])
    edges = set(np.quantile(c, np.linspace(0.0, 1.0, n_bands + 1)).tolist())
    if max_churn is not None and c.min() < max_churn < c.max():
        edges.add(float(max_churn))
    return np.array(sorted(edges)) if len(edges) > 1 else np.array([c.min(), c.max()])


def front_by_churn_figure(results: SweepResults, constraints: Any = None, recommended: int | None = None) -> Any:
    """The figure of :func:`plot_front_by_churn` (a :class:`matplotlib.figure.Figure`).

    One panel per churn band (:func:`churn_bands`), take fraction against diversity. In each
    panel the points of other bands are faint grey context; the band's points that break the
    constraints are grey crosses (gid ``"filtered"``), the others coloured dots (``"feasible"``);
    the front under the constraints on paired differences (:meth:`SweepResults.front`) is ringed
    in black (``"front_paired"``), the plain Pareto front of the feasible points marked with a
    small black dot (``"front_plain"``), the recommended point starred (``"recommended"``).
    ``min_diversity`` and ``min_take_fraction`` are drawn as dashed lines (gids
    ``"min_diversity"``, ``"min_take_fraction"``); a band above ``max_churn`` is shaded and
    titled as breaking it.
    """
    from matplotlib import colormaps

    cons = results.experiment.constraints if constraints is None else constraints
    take, div = results.column("take_fraction"), results.column("diversity")
    churn = np.asarray(results.column("churn"), dtype=np.float64)
    c0 = np.nan_to_num(churn, nan=0.0)
    from slate.tune.pareto import feasible_mask

    ok, where = feasible_mask(np.nan_to_num(take, nan=-np.inf), np.nan_to_num(div, nan=0.0), c0, cons)
    paired_front = np.zeros(len(take), dtype=bool)
    paired_front[results.front(cons)] = True
    plain_front = np.zeros(len(take), dtype=bool)
    plain_front[results.front(cons, paired=False)] = True
    rec = results.recommendation(cons).index if recommended is None else recommended
    edges = churn_bands(c0, cons.max_churn)
    n = len(edges) - 1
    fig = _figure(3.4 * n + 1.0, 4.2)
    axes = fig.subplots(1, n, sharex=True, sharey=True, squeeze=False)[0]
    cmap = colormaps["viridis"]
    for k, ax in enumerate(axes):
        lo, hi = edges[k], edges[k + 1]
        band = (c0 <= hi) & ((c0 >= lo) if k == 0 else (c0 > lo))
        ax.scatter(div[~band], take[~band], s=10, c="0.85", zorder=1, gid="context")
        sel = band & ok
        ax.scatter(div[sel], take[sel], s=22, color=cmap(np.full(int(sel.sum()), k / max(n - 1, 1))),
                   zorder=2, gid="feasible", label="meets the constraints")
        out = band & ~ok
        ax.scatter(div[out], take[out], marker="x", s=26, c="0.5", lw=1.0, zorder=2, gid="filtered",
                   label=f"breaks {where}")
        pf = band & paired_front
        ax.scatter(div[pf], take[pf], s=80, facecolors="none", edgecolors="black", lw=1.3, zorder=3,
                   gid="front_paired", label="front: not clearly dominated (paired)")
        lf = band & plain_front
        ax.scatter(div[lf], take[lf], s=6, c="black", zorder=4, gid="front_plain", label="plain Pareto front")
        if rec is not None and band[rec]:
            ax.scatter([div[rec]], [take[rec]], marker="*", s=240, c="crimson", edgecolors="black", zorder=5,
                       gid="recommended", label=f"recommended (point {rec})")
        if cons.min_diversity is not None:
            ax.axvline(cons.min_diversity, ls="--", color="crimson", lw=0.9, gid="min_diversity")
        if cons.min_take_fraction is not None:
            ax.axhline(cons.min_take_fraction, ls="--", color="crimson", lw=0.9, gid="min_take_fraction")
        broken = cons.max_churn is not None and lo >= cons.max_churn
        if broken:
            ax.set_facecolor("0.95")
        ax.set_title(f"churn {'[' if k == 0 else '('}{lo:.3g}, {hi:.3g}]: {int(band.sum())} points"
                     + (f"\nbreaks churn <= {cons.max_churn:g}" if broken else ""), fontsize=8)
        ax.set_xlabel("page diversity")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("take fraction (replay estimate)")
    handles: dict[str, Any] = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(lab, h)
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncols=min(len(handles), 3),
               fontsize=7)
    fig.suptitle(f"Front by churn band under {where}: {int(paired_front.sum())} points not clearly dominated "
                 f"(paired), {int(plain_front.sum())} on the plain front", fontsize=9)
    return fig


def plot_front_by_churn(results: SweepResults, stem: Path, constraints: Any = None,
                        recommended: int | None = None) -> list[Path]:
    """Take fraction vs diversity in one panel per churn band, the constraints and the paired
    front drawn (see :func:`front_by_churn_figure`)."""
    return _save(front_by_churn_figure(results, constraints, recommended), stem)


def plot_paired(results: SweepResults, stem: Path) -> list[Path]:
    """Paired differences (vs the logging policy, vs the best point), points by estimate."""
    take = results.column("take_fraction")
    order = np.argsort(-np.where(np.isnan(take), -np.inf, take))
    pts = results.column("point")[order]
    x = np.arange(len(order))
    lo, hi = results.column("take_fraction_low")[order], results.column("take_fraction_high")[order]
    tied = results.column("tied_best").astype(bool)[order]
    fig = _figure(9.0, 4.6)
    panels = (("diff_logged", "against the logging policy"), ("diff_best", "against the best point"))
    for k, (name, what) in enumerate(panels):
        ax = fig.add_subplot(1, 2, k + 1)
        d = results.column(name)[order]
        dl, dh = results.column(f"{name}_low")[order], results.column(f"{name}_high")[order]
        t = take[order]
        ax.errorbar(x - 0.15, d, yerr=np.vstack([t - lo, hi - t]), fmt="none", ecolor="0.8", lw=3,
                    label="marginal interval (for scale)")
        colour = np.where(tied, "crimson", "0.2") if name == "diff_best" else np.full(len(x), "0.2")
        for c in np.unique(colour):
            sel = colour == c
            lab = ("cannot be told from the best" if c == "crimson" else "paired interval")
            # drawn as a segment and a dot: an interval shifted for the winner's optimism need not
            # contain the point estimate, so it is not an error bar around it
            ax.vlines(x[sel] + 0.15, dl[sel], dh[sel], lw=1.2, color=str(c), label=lab)
            ax.plot(x[sel] + 0.15, d[sel], "o", ms=3, color=str(c))
        ax.axhline(0.0, color="black", lw=0.8)
        ax.set_xticks(x, [str(int(p)) for p in pts], fontsize=6, rotation=90)
        ax.set_xlabel("point (best estimate first)")
        ax.set_ylabel("difference in take fraction")
        ax.set_title(f"Paired difference {what}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    return _save(fig, stem)


def _palette(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "viridis"]
    return [cmap(i if n <= 10 else i / max(n - 1, 1)) for i in range(n)]


def _cmap_colours(values: NDArray[np.float64], vmin: float, vmax: float) -> Any:
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    return cmap((np.asarray(values) - vmin) / (vmax - vmin))


def _style_colours(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _examples(results: SweepResults) -> dict[str, Any]:
    with np.load(results.path / "examples.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _default_pair(
    results: SweepResults, ex: dict[str, Any], before: int | None, after: int | None, vary: tuple[str, ...]
) -> tuple[int, int]:
    """``after``: the recommended point (or the most diverse front point); ``before``: the point
    that differs from it only by the smallest values of the ``vary`` weights (falling back to
    the sweep's least constrained point)."""
    a = results.recommended() if after is None else after
    if a is None:  # no point meets the constraints: show the most diverse point of the front
        front = results.front()
        a = int(front[np.argmax(results.column("diversity")[front])]) if len(front) else int(ex["baseline_point"])
    if before is not None:
        return before, int(a)
    cols = {k: np.asarray(results.column(k), dtype=np.float64)
            for k in ("w_diversity", "w_churn", "max_changes", "exploration")}
    cols["max_changes"] = np.where(np.isnan(cols["max_changes"]), np.inf, cols["max_changes"])
    same = np.ones(results.n_points, dtype=bool)
    for k, v in cols.items():
        if k not in vary:
            same &= v == v[a]
    cand = np.flatnonzero(same)
    if len(cand) > 1:
        keys = [cols[k][cand] if k != "max_changes" else -cols[k][cand] for k in reversed(vary)]
        b = int(cand[np.lexsort(keys)[0]])
        if b != a:
            return b, int(a)
    return int(ex["baseline_point"]), int(a)


def _tile_code(style: int) -> str:
    """A tile's label: a letter per style (A, B, ..., then numbers), named in full in the legend
    (a style name cut to fit a tile is not readable).

    Examples
    --------
    >>> _tile_code(0), _tile_code(25), _tile_code(26)
    ('A', 'Z', '27')
    """
    return chr(65 + style) if 0 <= style < 26 else str(style + 1)


def _setting_text(results: SweepResults, i: int) -> str:
    r = results.rows()[i]
    budget = "none" if r["max_changes"] is None else r["max_changes"]
    return f"point {i}: diversity w {r['w_diversity']:g}, churn w {r['w_churn']:g}, budget {budget}"


def plot_page(results: SweepResults, stem: Path, before: int | None = None, after: int | None = None) -> list[Path]:
    """One page as tiles coloured by the chosen images' styles, before and after."""
    from matplotlib.patches import Patch, Rectangle

    ex = _examples(results)
    b, a = _default_pair(results, ex, before, after, ("w_diversity",))
    styles = ex["image_styles"]
    names = [str(s) for s in ex["style_names"]]
    colours = _style_colours(len(names))
    rows, cols = ex["page_row"], ex["page_col"]
    n_rows, n_cols = int(rows.max()) + 1, int(cols.max()) + 1
    fig = _figure(max(7.0, 0.55 * n_cols * 2 + 1.0), 0.55 * n_rows + 1.6)
    axes = fig.subplots(1, 2)
    for ax, point in zip(axes, (b, a), strict=True):
        imgs = ex["page_images"][point]
        for r, c, img in zip(rows, cols, imgs, strict=True):
            s = int(styles[img])
            ax.add_patch(Rectangle((c, n_rows - 1 - r), 0.92, 0.92, facecolor=colours[s], edgecolor="white"))
            ax.text(c + 0.46, n_rows - 1 - r + 0.46, _tile_code(s), ha="center", va="center", fontsize=7,
                    fontweight="bold")
        ax.set_xlim(-0.1, n_cols)
        ax.set_ylim(-0.1, n_rows)
        ax.set_aspect("equal")
        ax.axis("off")
        sim = float(ex["page_similarity"][point])
        ax.set_title(f"{_setting_text(results, point)}\nthis page: neighbour similarity {sim:.3f}", fontsize=8)
    used = sorted({int(styles[i]) for i in np.unique(ex["page_images"][[b, a]])})
    fig.legend(handles=[Patch(color=colours[s], label=f"{_tile_code(s)}: {names[s]}") for s in used],
               loc="outside lower center",
               ncols=min(len(used), 6), fontsize=7)
    fig.suptitle(f"One page of member {int(ex['member'])}: image styles before / after diversification", fontsize=10)
    return _save(fig, stem)


def plot_sessions(results: SweepResults, stem: Path, before: int | None = None, after: int | None = None) -> list[Path]:
    """A member's images across sessions (rows) for the titles seen most (columns)."""
    from matplotlib.patches import Patch, Rectangle

    ex = _examples(results)
    b, a = _default_pair(results, ex, before, after, ("w_churn", "max_changes"))
    styles = ex["image_styles"]
    names = [str(s) for s in ex["style_names"]]
    colours = _style_colours(len(names))
    titles = [str(t) for t in ex["session_titles"]]
    n_s, n_t = ex["session_images"].shape[1:]
    fig = _figure(max(7.0, 0.55 * n_t * 2 + 1), 0.32 * n_s + 2.2)
    axes = fig.subplots(1, 2)
    for ax, point in zip(axes, (b, a), strict=True):
        grid = ex["session_images"][point]
        changes = 0
        for t in range(n_t):
            last = -1
            for s in range(n_s):
                img = int(grid[s, t])
                y = n_s - 1 - s
                if img < 0:
                    ax.add_patch(Rectangle((t, y), 0.9, 0.9, facecolor="0.95", edgecolor="white"))
                    continue
                ax.add_patch(Rectangle((t, y), 0.9, 0.9, facecolor=colours[int(styles[img])], edgecolor="white"))
                if last >= 0 and img != last:
                    changes += 1
                    ax.plot([t + 0.45], [y + 0.45], marker="o", ms=3.5, color="black")
                last = img
        ax.set_xlim(-0.1, n_t)
        ax.set_ylim(-0.1, n_s)
        ax.set_xticks(np.arange(n_t) + 0.45, [t[:10] for t in titles], rotation=70, fontsize=6)
        ax.set_yticks([])
        for side in ("top", "right", "left", "bottom"):
            ax.spines[side].set_visible(False)
        ax.set_ylabel("sessions (first at the top)", fontsize=7)
        ax.set_title(f"{_setting_text(results, point)}\n{changes} image changes (dots)", fontsize=8)
    present = np.unique(ex["session_images"][[b, a]])
    used = sorted({int(styles[i]) for i in present if i >= 0})
    fig.legend(handles=[Patch(color=colours[s], label=f"{_tile_code(s)}: {names[s]}") for s in used],
               loc="outside lower center",
               ncols=min(len(used), 6), fontsize=7)
    fig.suptitle(f"Member {int(ex['member'])} across sessions: before / after the stability terms", fontsize=10)
    return _save(fig, stem)


def draw_all(results: SweepResults, folder: Path | None = None) -> list[Path]:
    """Every plot of a sweep into ``folder`` (default ``<results>/plots``); returns the files."""
    out = results.path / "plots" if folder is None else Path(folder)
    paths = []
    paths += plot_take_vs_weight(results, out / "take_vs_diversity_weight")
    paths += plot_front(results, out / "front")
    paths += plot_front_by_churn(results, out / "front_by_churn")
    if "diff_logged_low" in results.table.column_names and np.isfinite(results.column("diff_logged_low")).any():
        paths += plot_paired(results, out / "paired")
    paths += plot_page(results, out / "page_before_after")
    paths += plot_sessions(results, out / "sessions_before_after")
    return paths
