"""Page layouts: which titles on a page interact visually, and how strongly.

A layout turns the positions of titles on a homepage grid into weighted title pairs. The weight
of a pair scales the visual-similarity penalty between the two images chosen for them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from slate.errors import InvalidProblemError

__all__ = ["DenseLayout", "ExplicitPairs", "GridLayout", "Layout", "grid_positions"]


def grid_positions(n_titles: int, cols: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Row-major grid positions for ``n_titles`` titles in rows of ``cols``.

    Examples
    --------
    >>> rows, cols = grid_positions(5, cols=2)
    >>> rows.tolist(), cols.tolist()
    ([0, 0, 1, 1, 2], [0, 1, 0, 1, 0])
    """
    if cols < 1:
        raise InvalidProblemError(f"The 'cols' parameter must be >= 1; got {cols} instead.")
    index = np.arange(n_titles, dtype=np.int64)
    return index // cols, index % cols


class Layout:
    """Base class: a layout maps title positions to weighted pairs ``(a, b, weight)``, ``a < b``."""

    def pairs(
        self, rows: NDArray[np.int64], cols: NDArray[np.int64]
    ) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        """Return ``(pairs, weights)``: an ``(n_pairs, 2)`` index array and ``(n_pairs,)`` weights."""
        raise NotImplementedError


def _check_weight(name: str, value: float) -> float:
    if not np.isfinite(value) or value < 0:
        raise InvalidProblemError(
            f"The '{name}' parameter of the layout must be a finite number >= 0; got {value!r} instead."
        )
    return float(value)


@dataclass(frozen=True)
class GridLayout(Layout):
    """Titles in rows (as on a homepage): row neighbours, farther titles in a row, titles above/below.

    Parameters
    ----------
    rows, cols : int
        Size of the grid. Titles are placed row-major unless positions are given to the problem.
    neighbour : float, default 1.0
        Weight of two titles next to each other in a row.
    same_row : float, default 0.1
        Weight of two titles in the same row at distance 2.
    same_row_decay : float, default 1.0
        Each further step of distance in a row multiplies ``same_row`` by this factor
        (1.0: every farther title in the row weighs ``same_row``; 0.5 halves per step).
    vertical : float, default 0.5
        Weight of a title and the title directly above or below it.

    Examples
    --------
    >>> import numpy as np
    >>> layout = GridLayout(rows=2, cols=3)
    >>> pairs, weights = layout.pairs(*grid_positions(6, cols=3))
    >>> len(pairs), float(weights.sum())
    (9, 5.7)

    A chain layout (only row neighbours interact):

    >>> chain = GridLayout.chain(rows=2, cols=3)
    >>> chain.pairs(*grid_positions(6, cols=3))[0].tolist()
    [[0, 1], [1, 2], [3, 4], [4, 5]]
    """

    rows: int
    cols: int
    neighbour: float = 1.0
    same_row: float = 0.1
    same_row_decay: float = 1.0
    vertical: float = 0.5

    def __post_init__(self) -> None:
        for name in ("rows", "cols"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise InvalidProblemError(
                    f"The '{name}' parameter of GridLayout must be an integer >= 1; got {value!r} instead."
                )
        for name in ("neighbour", "same_row", "same_row_decay", "vertical"):
            _check_weight(name, getattr(self, name))

    @classmethod
    def chain(cls, rows: int, cols: int, neighbour: float = 1.0) -> GridLayout:
        """A layout in which only left/right neighbours in a row interact."""
        return cls(rows=rows, cols=cols, neighbour=neighbour, same_row=0.0, vertical=0.0)

    def offset_weights(self, d_row: ArrayLike, d_col: ArrayLike) -> NDArray[np.float64]:
        """Weight of two titles ``d_row`` rows and ``d_col`` columns apart (signs ignored): the one
        definition of the grid's weights, used by :meth:`pairs` (the page optimizer) and by
        :meth:`offsets` (replay's page diversity).

        Examples
        --------
        >>> GridLayout(rows=2, cols=5, same_row_decay=0.5).offset_weights([0, 0, 0, 1, 1], [1, -3, 4, 0, 1]).tolist()
        [1.0, 0.05, 0.025, 0.5, 0.0]
        """
        d_row = np.abs(np.asarray(d_row, dtype=np.int64))
        distance = np.abs(np.asarray(d_col, dtype=np.int64))
        same_row = d_row == 0
        weight = np.zeros(distance.shape)
        weight[same_row & (distance == 1)] = self.neighbour
        far = same_row & (distance >= 2)
        weight[far] = self.same_row * self.same_row_decay ** (distance[far] - 2).astype(float)
        weight[(d_row == 1) & (distance == 0)] = self.vertical
        return weight

    def offsets(self, max_col: int) -> list[tuple[int, int, float]]:
        """``(d_row, d_col, weight)`` of every interacting offset on a grid whose columns are at
        most ``max_col`` apart, each unordered offset once, in a fixed order: ``(0, 1)``,
        ``(0, 2)``, ..., ``(0, max_col)``, ``(1, 0)`` (zero weights left out).

        Examples
        --------
        >>> GridLayout(rows=1, cols=1).offsets(3)
        [(0, 1, 1.0), (0, 2, 0.1), (0, 3, 0.1), (1, 0, 0.5)]
        """
        d_col = np.r_[np.arange(1, max(int(max_col), 1) + 1), 0]
        d_row = np.r_[np.zeros(len(d_col) - 1, dtype=np.int64), 1]
        weight = self.offset_weights(d_row, d_col)
        return [(int(r), int(c), float(w)) for r, c, w in zip(d_row, d_col, weight, strict=True) if w > 0]

    def pairs(
        self, rows: NDArray[np.int64], cols: NDArray[np.int64]
    ) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        rows = np.asarray(rows, dtype=np.int64)
        cols = np.asarray(cols, dtype=np.int64)
        a, b = np.triu_indices(len(rows), k=1)
        weight = self.offset_weights(rows[a] - rows[b], cols[a] - cols[b])
        keep = weight > 0
        return np.stack([a[keep], b[keep]], axis=1).astype(np.int64), weight[keep]


@dataclass(frozen=True)
class DenseLayout(Layout):
    """Every pair of titles interacts with the same weight (a small page seen at a glance)."""

    weight: float = 1.0

    def __post_init__(self) -> None:
        _check_weight("weight", self.weight)

    def pairs(
        self, rows: NDArray[np.int64], cols: NDArray[np.int64]
    ) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        a, b = np.triu_indices(len(rows), k=1)
        return np.stack([a, b], axis=1).astype(np.int64), np.full(len(a), self.weight)


@dataclass(frozen=True)
class ExplicitPairs(Layout):
    """Pairs given by the caller: ``pairs`` is a sequence of ``(a, b)`` title indices."""

    pair_index: tuple[tuple[int, int], ...]
    weights: tuple[float, ...]

    def pairs(
        self, rows: NDArray[np.int64], cols: NDArray[np.int64]
    ) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        return (
            np.asarray(self.pair_index, dtype=np.int64).reshape(-1, 2),
            np.asarray(self.weights, dtype=np.float64),
        )
