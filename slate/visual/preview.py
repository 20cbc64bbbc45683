"""Similarity you can look at: nearest-neighbour grids and a page's tiles with pair similarities.

Both return a matplotlib :class:`~matplotlib.figure.Figure` (no pyplot state); save it with
``fig.savefig(path)``. ``slate embed --preview OUT.png`` draws :func:`plot_neighbours`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from slate.errors import ImageDecodeError, InvalidEmbedInputError
from slate.visual.decode import decode_image

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from slate.page import PageProblem

__all__ = ["nearest_neighbours", "plot_neighbours", "plot_page", "save_figure"]

_THUMB = (64, 96)


def nearest_neighbours(vectors: ArrayLike, k: int = 5) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """The ``k`` most similar other rows of each row, by cosine: indices and similarities.

    Examples
    --------
    >>> idx, sim = nearest_neighbours([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]], k=1)
    >>> idx.ravel().tolist(), sim.round(3).ravel().tolist()
    ([1, 0, 1], [0.994, 0.994, 0.11])
    """
    v = np.asarray(vectors, dtype=np.float64)
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    sim = v @ v.T
    np.fill_diagonal(sim, -np.inf)
    k = max(0, min(int(k), len(v) - 1))
    order = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    return order.astype(np.int64), np.take_along_axis(sim, order, axis=1)


def _thumbnail(source: Any) -> NDArray[np.uint8]:
    if isinstance(source, np.ndarray):
        return source
    try:
        return decode_image(source, _THUMB)
    except ImageDecodeError:
        return np.full((_THUMB[1], _THUMB[0], 3), 200, np.uint8)


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100)


def plot_neighbours(
    image_ids: Sequence[str],
    vectors: ArrayLike,
    images: Sequence[Any],
    *,
    sample: int = 8,
    k: int = 5,
    seed: int = 0,
) -> Figure:
    """A grid: each row a sampled image and its ``k`` nearest neighbours, with cosine similarities.

    Parameters
    ----------
    image_ids : sequence of str
    vectors : array_like (n_images, dim)
    images : sequence of paths, bytes or (h, w, 3) uint8 arrays
        What to draw for each image (unreadable files are grey tiles).
    sample, k : int
        Rows drawn (a seeded sample) and neighbours per row.
    seed : int

    Examples
    --------
    >>> import numpy as np
    >>> tiles = [np.full((96, 64, 3), c, np.uint8) for c in (0, 120, 250)]
    >>> fig = plot_neighbours(["a", "b", "c"], np.eye(3) + 0.1, tiles, sample=2, k=2)
    >>> len(fig.axes)
    6
    """
    ids = [str(i) for i in image_ids]
    v = np.asarray(vectors, dtype=np.float64)
    if v.ndim != 2 or len(v) != len(ids) or len(images) != len(ids) or not ids:
        raise InvalidEmbedInputError(
            f"plot_neighbours needs one vector and one image per id; got {len(ids)} ids, vectors of "
            f"shape {v.shape} and {len(images)} images.")
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(ids), size=min(int(sample), len(ids)), replace=False))
    idx, sim = nearest_neighbours(v, k)
    cols = 1 + idx.shape[1]
    fig = _figure(1.3 * cols, 2.0 * len(rows))
    axes = fig.subplots(len(rows), cols, squeeze=False)
    for r, i in enumerate(rows.tolist()):
        shown = [(i, None), *zip(idx[i].tolist(), sim[i].tolist(), strict=True)]
        for c, (j, s) in enumerate(shown):
            ax = axes[r, c]
            ax.imshow(_thumbnail(images[j]))
            ax.set_xticks([])
            ax.set_yticks([])
            name = ids[j] if len(ids[j]) <= 18 else ids[j][:17] + "…"
            label = name if s is None else f"{name}\ncos {s:.2f}"
            ax.set_title(label, fontsize=7, color="black" if s is None else "tab:blue")
    fig.suptitle("each row: an image, then its nearest neighbours (cosine similarity)", fontsize=9)
    fig.tight_layout()
    return fig


def plot_page(problem: PageProblem, assignment: ArrayLike, images: Mapping[str, Any] | None = None) -> Figure:
    """A page's tiles at their grid positions, a line for each interacting pair labelled with the
    similarity the page problem uses (``max(0, cos)``; line width: the pair's layout weight).

    Parameters
    ----------
    problem : PageProblem
        Its ``pairs``, ``pair_weights``, ``similarity``, ``rows`` and ``cols``.
    assignment : array_like (n_titles,), int
        Image index per title.
    images : mapping image_id -> path, bytes or array, optional
        What to draw (grey tiles otherwise).

    Examples
    --------
    >>> import numpy as np
    >>> from slate.page import PageProblem, GridLayout
    >>> rng = np.random.default_rng(0)
    >>> problem = PageProblem.from_arrays(rng.uniform(size=(4, 2)), rng.normal(size=(4, 2, 3)),
    ...                                   layout=GridLayout(rows=2, cols=2), diversity=0.1)
    >>> fig = plot_page(problem, [0, 1, 0, 1])
    >>> len(fig.axes[0].texts) == problem.n_pairs + problem.n_titles
    True
    """
    a = np.asarray(assignment, dtype=np.int64)
    if a.shape != (problem.n_titles,) or (a < 0).any() or (a >= problem.n_images).any():
        raise InvalidEmbedInputError(
            f"plot_page needs one image index per title ({problem.n_titles}) in [0, {problem.n_images}); "
            f"got {a.tolist()!r}.")
    images = images or {}
    rows, cols = np.asarray(problem.rows), np.asarray(problem.cols)
    n_rows, n_cols = int(rows.max()) + 1, int(cols.max()) + 1
    fig = _figure(1.4 * n_cols + 0.5, 2.0 * n_rows + 0.5)
    ax = fig.add_axes((0.02, 0.02, 0.96, 0.9))
    for t in range(problem.n_titles):
        x, y = float(cols[t]) * 1.2, -float(rows[t]) * 1.7
        image_id = problem.image_id(t, int(a[t]))
        ax.imshow(_thumbnail(images.get(image_id, b"")), extent=(x - 0.45, x + 0.45, y - 0.7, y + 0.7), zorder=1)
        ax.text(x, y - 0.78, f"{problem.title_ids[t]}: {image_id}"[:24], ha="center", va="top", fontsize=6)
    weights = np.asarray(problem.pair_weights, dtype=np.float64)
    top = max(float(weights.max()), 1e-9) if len(weights) else 1.0
    for p, (i, j) in enumerate(np.asarray(problem.pairs).tolist()):
        s = float(problem.similarity[p, a[i], a[j]])
        xi, yi = float(cols[i]) * 1.2, -float(rows[i]) * 1.7
        xj, yj = float(cols[j]) * 1.2, -float(rows[j]) * 1.7
        colour = (min(1.0, s), 0.2, max(0.0, 1.0 - s))
        ax.plot([xi, xj], [yi, yj], color=colour, lw=0.5 + 3 * weights[p] / top, alpha=0.8, zorder=2)
        ax.text((xi + xj) / 2, (yi + yj) / 2, f"{s:.2f}", fontsize=7, ha="center", va="center", zorder=3,
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": colour, "lw": 0.8})
    ax.set_xlim(-0.6, (n_cols - 1) * 1.2 + 0.6)
    ax.set_ylim(-(n_rows - 1) * 1.7 - 1.0, 0.8)
    ax.set_aspect("equal")
    ax.axis("off")
    parts = problem.evaluate(a)
    ax.set_title(f"{problem.name or 'page'}: similarity max(0, cos) of interacting pairs\n"
                 f"(line width: layout weight); diversity penalty {parts.diversity_penalty:.3f}", fontsize=7)
    return fig


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Save a figure as PNG (folders created).

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np
    >>> fig = plot_neighbours(["a", "b"], np.eye(2), [np.zeros((96, 64, 3), np.uint8)] * 2, k=1)
    >>> save_figure(fig, pathlib.Path(tempfile.mkdtemp()) / "sub" / "n.png").stat().st_size > 0
    True
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=100)
    return p
