"""Sparse MILP models of the page problem (the builders behind the ``exact`` solver).

Two linearisations of the pairwise penalty ``sum_p C[p, a_i, a_j]`` are built, both with binary
``x[t, k]`` (title ``t`` shows image ``k``; only allowed images get a column) and
``sum_k x[t, k] = 1``:

``"local"`` (the local-marginal-polytope linearisation)
    One continuous ``y[p, k, l] >= 0`` per allowed image pair of an interacting pair of titles,
    tied to ``x`` by its marginals: ``sum_l y[p, k, l] = x[i, k]`` and
    ``sum_k y[p, k, l] = x[j, l]``. Its LP relaxation is the local polytope of the pairwise
    model, which is exact on forests (chains, trees) and tight in practice on grids
    (Wainwright & Jordan 2008, sec. 4.1; Werner 2007).
``"textbook"``
    One ``y[p, k, l] >= 0`` per *positive-cost* allowed image pair, with
    ``y[p, k, l] >= x[i, k] + x[j, l] - 1`` (the standard product linearisation). Fewer
    columns, but a weak LP relaxation (it is ``y = 0`` at ``x = 1/n``), so branch and bound works
    much harder.

Pairs whose cost is zero on every allowed image pair get no ``y`` at all. The change budget and
the style quotas are one sparse row each. Everything is built with vectorised numpy and
:mod:`scipy.sparse` (no per-pair Python loops).

The model minimises ``c @ z`` (HiGHS' default sense); the page objective of a solution is
``offset - c @ z``.

References
----------
.. [1] M. J. Wainwright and M. I. Jordan, "Graphical Models, Exponential Families, and
   Variational Inference", Foundations and Trends in Machine Learning 1(1-2), 2008.
.. [2] T. Werner, "A Linear Programming Approach to Max-Sum Problem: A Review", IEEE TPAMI
   29(7), 2007.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from scipy.sparse.csgraph import connected_components

from slate.errors import InvalidProblemError
from slate.page.problem import PageProblem

__all__ = [
    "FORMULATIONS",
    "MilpModel",
    "ReducedProblem",
    "build_milp",
    "reduce_arrays",
    "reduce_problem",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

ArrayLikeFloat = NDArray[np.float64] | list[float]
Formulation = Literal["local", "textbook"]
FORMULATIONS: tuple[str, ...] = ("local", "textbook")


@dataclass(frozen=True, eq=False)
class MilpModel:
    """``min c @ z  s.t.  row_lower <= A @ z <= row_upper, col_lower <= z <= col_upper``.

    Attributes
    ----------
    c : ndarray (n_cols,)
        Costs (minimised). The page objective of ``z`` is ``offset - c @ z``.
    A : scipy.sparse.csc_array (n_rows, n_cols)
    row_lower, row_upper : ndarray (n_rows,)
    col_lower, col_upper : ndarray (n_cols,)
    integrality : ndarray (n_cols,), int32
        1 for the binary ``x`` columns, 0 for the continuous ``y`` columns.
    x_index : ndarray (n_titles, n_images), int
        Column of ``x[t, k]``, ``-1`` where image ``k`` is not allowed for title ``t``.
    n_x : int
        The first ``n_x`` columns are the ``x``; the rest are the ``y``.
    y_pair, y_k, y_l : ndarray (n_cols - n_x,), int
        Pair (row of the ``pairs`` given to :func:`build_milp`) and images of each ``y`` column.
    pairs : ndarray (n_pairs, 2), int
        The title pairs given to :func:`build_milp`.
    offset : float
    formulation : str
    n_coupling_rows : int
        How many of the last rows are the budget and quota rows.
    """

    c: FloatArray
    A: sp.csc_array
    row_lower: FloatArray
    row_upper: FloatArray
    col_lower: FloatArray
    col_upper: FloatArray
    integrality: NDArray[np.int32]
    x_index: IntArray
    n_x: int
    y_pair: IntArray
    y_k: IntArray
    y_l: IntArray
    pairs: IntArray
    offset: float
    formulation: str
    n_coupling_rows: int

    @property
    def n_cols(self) -> int:
        """Number of columns (variables)."""
        return int(self.c.shape[0])

    @property
    def n_rows(self) -> int:
        """Number of rows (constraints)."""
        return int(self.A.shape[0])

    def decode(self, z: ArrayLikeFloat) -> IntArray:
        """The assignment of a solution vector: the image with the largest ``x`` per title."""
        z = np.asarray(z, dtype=np.float64)
        xs = np.where(self.x_index >= 0, z[np.maximum(self.x_index, 0)], -np.inf)
        return np.argmax(xs, axis=1).astype(np.int64)

    def encode(self, assignment: IntArray) -> FloatArray:
        """The solution vector of an assignment (``x`` and the matching ``y``); for warm starts."""
        a = np.asarray(assignment, dtype=np.int64)
        z = np.zeros(self.n_cols)
        t = np.arange(len(a))
        cols = self.x_index[t, a]
        if (cols < 0).any():
            raise InvalidProblemError(
                "The warm-start assignment names an image that is not allowed."
            )
        z[cols] = 1.0
        if self.n_cols > self.n_x and len(self.pairs):
            ai = a[self.pairs[self.y_pair, 0]]
            aj = a[self.pairs[self.y_pair, 1]]
            z[self.n_x :] = ((self.y_k == ai) & (self.y_l == aj)).astype(np.float64)
        return z

    def value(self, z: ArrayLikeFloat) -> float:
        """Page objective ``offset - c @ z`` of a solution vector."""
        return float(self.offset - self.c @ np.asarray(z, dtype=np.float64))


def _marginal_rows(mask: BoolArray, start: int) -> IntArray:
    """Row number for every True entry of ``mask`` (row-major), ``-1`` elsewhere."""
    rows = np.full(mask.shape, -1, dtype=np.int64)
    rows[mask] = start + np.arange(int(mask.sum()))
    return rows


@dataclass(frozen=True)
class _XColumns:
    """One binary column per allowed (title, image): ``index[t, k]`` (``-1`` if not allowed)."""

    index: IntArray
    n: int
    t: IntArray
    k: IntArray

    @classmethod
    def of(cls, allowed: BoolArray) -> _XColumns:
        index = np.full(allowed.shape, -1, dtype=np.int64)
        index[allowed] = np.arange(int(allowed.sum()))
        t, k = np.nonzero(allowed)
        return cls(index=index, n=int(allowed.sum()), t=t, k=k)


@dataclass(frozen=True)
class _YColumns:
    """Continuous columns of allowed image pairs of the pairs with some cost on them."""

    pairs: IntArray  # the active pairs
    cost: FloatArray  # (n_active, K, K), zero where not both allowed
    ai: BoolArray  # allowed images of each active pair's first title
    aj: BoolArray
    pair: IntArray  # per column: active pair, image of the first title, image of the second
    k: IntArray
    l: IntArray  # noqa: E741 - the formulation's index name
    cols: IntArray

    @property
    def n(self) -> int:
        return len(self.pair)

    @classmethod
    def of(cls, allowed: BoolArray, pairs: IntArray, pair_cost: FloatArray, x: _XColumns, formulation: str) -> _YColumns:
        ai = allowed[pairs[:, 0]]  # (P, K)
        aj = allowed[pairs[:, 1]]
        both = ai[:, :, None] & aj[:, None, :]
        cost = np.where(both, pair_cost, 0.0)
        active = (cost > 0).reshape(len(pairs), -1).any(axis=1) if len(pairs) else np.zeros(0, bool)
        cost, both = cost[active], both[active]
        ymask = both if formulation == "local" else cost > 0
        y_pair, y_k, y_l = (np.asarray(v, dtype=np.int64) for v in np.nonzero(ymask))
        return cls(
            pairs=pairs[active], cost=cost, ai=ai[active], aj=aj[active], pair=y_pair, k=y_k, l=y_l,
            cols=x.n + np.arange(len(y_pair)),
        )


class _Rows:
    """Constraint rows in triplet form, added block by block."""

    def __init__(self) -> None:
        self.row_parts: list[IntArray] = []
        self.col_parts: list[IntArray] = []
        self.val_parts: list[FloatArray] = []
        self.lower: list[FloatArray] = []
        self.upper: list[FloatArray] = []
        self.n = 0

    def add(self, rows: IntArray, cols: IntArray, vals: FloatArray, lower: FloatArray, upper: FloatArray) -> None:
        """Add ``len(lower)`` rows (numbered from :attr:`n` by the caller) and their entries."""
        self.row_parts.append(rows)
        self.col_parts.append(cols)
        self.val_parts.append(vals)
        self.lower.append(lower)
        self.upper.append(upper)
        self.n += len(lower)

    def matrix(self, n_cols: int) -> sp.csc_array:
        A = sp.csc_array(
            (np.concatenate(self.val_parts), (np.concatenate(self.row_parts), np.concatenate(self.col_parts))),
            shape=(self.n, n_cols),
        )
        A.sort_indices()
        return A


def _add_marginal_rows(rows: _Rows, x: _XColumns, y: _YColumns) -> None:
    """Local formulation: ``sum_l y[p, k, l] - x[i, k] = 0`` and ``sum_k y[p, k, l] - x[j, l] = 0``."""
    if not y.n:
        return
    ai, aj = y.ai, y.aj
    rows_i = _marginal_rows(ai, rows.n)
    rows_j = _marginal_rows(aj, rows.n + int(ai.sum()))
    n_marg = int(ai.sum()) + int(aj.sum())
    pi, ki = np.nonzero(ai)
    pj, lj = np.nonzero(aj)
    rows.add(
        np.concatenate([rows_i[y.pair, y.k], rows_j[y.pair, y.l], rows_i[pi, ki], rows_j[pj, lj]]),
        np.concatenate([y.cols, y.cols, x.index[y.pairs[pi, 0], ki], x.index[y.pairs[pj, 1], lj]]),
        np.concatenate([np.ones(y.n), np.ones(y.n), -np.ones(len(pi)), -np.ones(len(pj))]),
        np.zeros(n_marg),
        np.zeros(n_marg),
    )


def _add_product_rows(rows: _Rows, x: _XColumns, y: _YColumns) -> None:
    """Textbook formulation: ``y[p, k, l] - x[i, k] - x[j, l] >= -1``."""
    if not y.n:
        return
    x_of_yk = x.index[y.pairs[y.pair, 0], y.k]
    x_of_yl = x.index[y.pairs[y.pair, 1], y.l]
    r = rows.n + np.arange(y.n)
    rows.add(
        np.concatenate([r, r, r]),
        np.concatenate([y.cols, x_of_yk, x_of_yl]),
        np.concatenate([np.ones(y.n), -np.ones(y.n), -np.ones(y.n)]),
        np.full(y.n, -1.0),
        np.full(y.n, np.inf),
    )


def _add_coupling_rows(
    rows: _Rows,
    x: _XColumns,
    changes: BoolArray | None,
    max_changes: int | None,
    image_tags: BoolArray | None,
    tag_max: IntArray | None,
) -> int:
    """The change-budget row and one quota row per tag; returns how many were added."""
    n_coupling = 0
    if changes is not None and max_changes is not None:
        ch = np.asarray(changes, dtype=bool)[x.t, x.k]
        rows.add(
            np.full(int(ch.sum()), rows.n, dtype=np.int64), np.flatnonzero(ch), np.ones(int(ch.sum())),
            np.array([-np.inf]), np.array([float(max_changes)]),
        )
        n_coupling += 1
    if image_tags is not None and tag_max is not None and len(tag_max):
        tags = np.asarray(image_tags, dtype=bool)[:, x.t, x.k]  # (G, n_x)
        g, col = np.nonzero(tags)
        rows.add(
            rows.n + g.astype(np.int64), col.astype(np.int64), np.ones(len(g)),
            np.full(len(tag_max), -np.inf), np.asarray(tag_max, dtype=np.float64),
        )
        n_coupling += len(tag_max)
    return n_coupling


def build_milp(
    unary: FloatArray,
    pairs: IntArray,
    pair_cost: FloatArray,
    *,
    changes: BoolArray | None = None,
    max_changes: int | None = None,
    image_tags: BoolArray | None = None,
    tag_max: IntArray | None = None,
    formulation: Formulation = "local",
    offset: float = 0.0,
) -> MilpModel:
    """Build the sparse MILP of a page problem given as arrays.

    Parameters
    ----------
    unary : ndarray (n_titles, n_images)
        Value of each image, ``-inf`` where it is not allowed.
    pairs : ndarray (n_pairs, 2), int
        Interacting titles (indices into the rows of ``unary``).
    pair_cost : ndarray (n_pairs, n_images, n_images)
        Non-negative penalty of each image pair.
    changes : ndarray (n_titles, n_images) of bool, optional
        Change indicators; with ``max_changes`` adds the budget row.
    max_changes : int, optional
    image_tags : ndarray (n_tags, n_titles, n_images) of bool, optional
    tag_max : ndarray (n_tags,), optional
        With ``image_tags``: one quota row per tag.
    formulation : {"local", "textbook"}
    offset : float
        Added to the objective (values of titles folded out of the model).

    Returns
    -------
    MilpModel

    Examples
    --------
    >>> import numpy as np
    >>> unary = np.array([[1.0, 0.5], [1.0, 0.9]])
    >>> cost = np.array([[[0.6, 0.0], [0.0, 0.0]]])
    >>> m = build_milp(unary, np.array([[0, 1]]), cost)
    >>> m.n_x, m.n_cols - m.n_x, m.n_rows
    (4, 4, 6)
    >>> round(m.value(m.encode(np.array([0, 1]))), 3)
    1.9
    >>> build_milp(unary, np.array([[0, 1]]), cost, formulation="textbook").n_cols
    5
    """
    if formulation not in FORMULATIONS:
        raise InvalidProblemError(
            f"The 'formulation' parameter must be one of {FORMULATIONS}; "
            f"got {formulation!r} instead."
        )
    unary = np.asarray(unary, dtype=np.float64)
    n_titles, n_images = unary.shape
    allowed = np.isfinite(unary)
    if not allowed.any(axis=1).all():
        t = int(np.flatnonzero(~allowed.any(axis=1))[0])
        raise InvalidProblemError(f"Title index {t} has no allowed image in the MILP model.")
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    pair_cost = np.asarray(pair_cost, dtype=np.float64).reshape(len(pairs), n_images, n_images)
    x = _XColumns.of(allowed)
    y = _YColumns.of(allowed, pairs, pair_cost, x, formulation)
    rows = _Rows()
    rows.add(x.t.astype(np.int64), np.arange(x.n), np.ones(x.n), np.ones(n_titles), np.ones(n_titles))
    if formulation == "local":
        _add_marginal_rows(rows, x, y)
    else:
        _add_product_rows(rows, x, y)
    n_coupling = _add_coupling_rows(rows, x, changes, max_changes, image_tags, tag_max)
    n_cols = x.n + y.n
    A = rows.matrix(n_cols)
    c = np.concatenate([-unary[x.t, x.k], y.cost[y.pair, y.k, y.l]])
    integrality = np.concatenate([np.ones(x.n, np.int32), np.zeros(y.n, np.int32)])
    x_index, n_x = x.index, x.n
    y_pair, y_k, y_l, pairs_active = y.pair, y.k, y.l, y.pairs
    return MilpModel(
        c=c,
        A=A,
        row_lower=np.concatenate(rows.lower),
        row_upper=np.concatenate(rows.upper),
        col_lower=np.zeros(n_cols),
        col_upper=np.ones(n_cols),
        integrality=integrality,
        x_index=x_index,
        n_x=n_x,
        y_pair=y_pair,
        y_k=y_k,
        y_l=y_l,
        pairs=pairs_active,
        offset=float(offset),
        formulation=formulation,
        n_coupling_rows=n_coupling,
    )


@dataclass(frozen=True, eq=False)
class ReducedProblem:
    """A page problem with its single-choice titles folded out, split into components.

    Titles with one allowed image (locked titles, single-candidate titles) are fixed; their pair
    penalties become unary terms of their free neighbours, and their values a constant.

    Attributes
    ----------
    n_titles : int
        Titles of the problem that was reduced.
    free : ndarray (n_free,), int
        Titles that still have a choice.
    fixed_assignment : ndarray (n_titles,), int
        The image of every fixed title (``-1`` for free titles).
    unary : ndarray (n_free, n_images)
        Unary values of the free titles, including the penalties towards fixed neighbours;
        ``-inf`` where an image is not allowed.
    pairs : ndarray (n_free_pairs, 2), int
        Pairs of free titles with a positive cost on some allowed image pair (indices into
        ``free``).
    pair_cost : ndarray (n_free_pairs, n_images, n_images)
        Zero wherever an image is not allowed.
    changes : ndarray (n_free, n_images), bool
    image_tags : ndarray (n_tags, n_free, n_images), bool
    max_changes : int or None
        Budget left for the free titles (None: no budget).
    tag_max : ndarray (n_tags,), int
        Quotas left for the free titles.
    constant : float
        Objective contribution of the fixed titles (their values and mutual penalties).
    components : tuple of ndarray
        Connected components of the free titles (indices into ``free``), by first title.
    """

    n_titles: int
    free: IntArray
    fixed_assignment: IntArray
    unary: FloatArray
    pairs: IntArray
    pair_cost: FloatArray
    changes: BoolArray
    image_tags: BoolArray
    max_changes: int | None
    tag_max: IntArray
    constant: float
    components: tuple[IntArray, ...]

    @property
    def n_free(self) -> int:
        """Number of titles with a choice."""
        return len(self.free)

    @property
    def allowed(self) -> BoolArray:
        """``(n_free, n_images)``: images still allowed for the free titles."""
        return np.isfinite(self.unary)

    @property
    def budget_can_bind(self) -> bool:
        """Whether more free titles can change than the budget allows."""
        if self.max_changes is None:
            return False
        return int((self.changes & self.allowed).any(axis=1).sum()) > self.max_changes

    @property
    def binding_tags(self) -> IntArray:
        """Quota tags that more free titles can show than their quota allows."""
        if not len(self.tag_max):
            return np.zeros(0, dtype=np.int64)
        can_show = (self.image_tags & self.allowed[None]).any(axis=2).sum(axis=1)
        return np.flatnonzero(can_show > self.tag_max).astype(np.int64)

    @property
    def is_coupled(self) -> bool:
        """Whether a budget or quota row can bind (and so couples the components)."""
        return self.budget_can_bind or len(self.binding_tags) > 0

    def full_assignment(self, free_assignment: IntArray) -> IntArray:
        """The reduced problem's assignment from the images of the free titles."""
        a = self.fixed_assignment.copy()
        a[self.free] = free_assignment
        return a

    def model(
        self,
        titles: IntArray | None = None,
        *,
        coupled: bool = True,
        formulation: Formulation = "local",
    ) -> MilpModel:
        """The MILP over the free titles ``titles`` (default: all) and the pairs among them.

        ``coupled`` adds the budget row (when it can bind) and the quota rows that can bind;
        it is only meaningful when ``titles`` is every free title. The model's ``offset`` is
        :attr:`constant` when ``titles`` is None, else 0.
        """
        if titles is None:
            titles = np.arange(self.n_free)
            pair_sel = np.arange(len(self.pairs))
            offset = self.constant
        else:
            titles = np.asarray(titles, dtype=np.int64)
            inside = np.zeros(self.n_free, bool)
            inside[titles] = True
            pair_sel = np.flatnonzero(inside[self.pairs[:, 0]] & inside[self.pairs[:, 1]])
            offset = 0.0
        local = np.full(self.n_free, -1, dtype=np.int64)
        local[titles] = np.arange(len(titles))
        budget = coupled and self.budget_can_bind
        tags = self.binding_tags if coupled else np.zeros(0, dtype=np.int64)
        return build_milp(
            self.unary[titles],
            local[self.pairs[pair_sel]],
            self.pair_cost[pair_sel],
            changes=self.changes[titles] if budget else None,
            max_changes=self.max_changes if budget else None,
            image_tags=self.image_tags[tags][:, titles] if len(tags) else None,
            tag_max=self.tag_max[tags] if len(tags) else None,
            formulation=formulation,
            offset=offset,
        )

    def restrict(self, keep: BoolArray) -> ReducedProblem:
        """The problem over the free titles with only the images in ``keep`` allowed.

        The result is reduced again (titles left with one image are folded out); its titles
        are the free titles of ``self`` (map back with ``result.full_assignment``).
        """
        keep = np.asarray(keep, dtype=bool) & self.allowed
        return reduce_arrays(
            np.where(keep, self.unary, -np.inf),
            self.pairs,
            self.pair_cost,
            changes=self.changes,
            max_changes=self.max_changes,
            image_tags=self.image_tags,
            tag_max=self.tag_max,
            constant=self.constant,
        )


def reduce_arrays(
    unary: FloatArray,
    pairs: IntArray,
    pair_cost: FloatArray,
    *,
    changes: BoolArray,
    max_changes: int | None,
    image_tags: BoolArray,
    tag_max: IntArray,
    constant: float = 0.0,
) -> ReducedProblem:
    """Fold titles with a single allowed image into their neighbours; split the rest.

    Parameters are those of :func:`build_milp` (``unary`` is ``-inf`` where an image is not
    allowed; ``image_tags`` has shape ``(n_tags, n_titles, n_images)``); ``constant`` is carried
    into the result's objective constant.

    Raises
    ------
    InvalidProblemError
        When a title has no allowed image.
    """
    unary = np.asarray(unary, dtype=np.float64)
    n_titles, n_images = unary.shape
    allowed = np.isfinite(unary)
    n_allowed = allowed.sum(axis=1)
    if (n_allowed == 0).any():
        t = int(np.flatnonzero(n_allowed == 0)[0])
        raise InvalidProblemError(f"Title index {t} has no allowed image.")
    is_free = n_allowed > 1
    fixed_choice = np.where(is_free, -1, np.argmax(allowed, axis=1)).astype(np.int64)
    free = np.flatnonzero(is_free).astype(np.int64)
    fixed = np.flatnonzero(~is_free)
    position = np.full(n_titles, -1, dtype=np.int64)
    position[free] = np.arange(len(free))

    unary_free = np.array(unary[free], dtype=np.float64)
    constant = float(constant) + float(unary[fixed, fixed_choice[fixed]].sum())

    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    if len(pairs):
        mask = allowed[pairs[:, 0]][:, :, None] & allowed[pairs[:, 1]][:, None, :]
        cost = np.where(mask, pair_cost, 0.0)
        positive = (cost > 0).reshape(len(pairs), -1).any(axis=1)
        i, j = pairs[:, 0], pairs[:, 1]
        fi, fj = is_free[i], is_free[j]
        pb = np.flatnonzero(positive & ~fi & ~fj)  # both fixed: a constant
        constant -= float(cost[pb, fixed_choice[i[pb]], fixed_choice[j[pb]]].sum())
        p1 = np.flatnonzero(positive & fi & ~fj)  # j fixed: column a_j is a unary term of i
        np.subtract.at(unary_free, position[i[p1]], cost[p1, :, fixed_choice[j[p1]]])
        p2 = np.flatnonzero(positive & ~fi & fj)  # i fixed: row a_i is a unary term of j
        np.subtract.at(unary_free, position[j[p2]], cost[p2, fixed_choice[i[p2]], :])
        keep = np.flatnonzero(positive & fi & fj)
        free_pairs = np.stack([position[i[keep]], position[j[keep]]], axis=1)
        free_cost = cost[keep]
    else:
        free_pairs = np.zeros((0, 2), dtype=np.int64)
        free_cost = np.zeros((0, n_images, n_images))

    changes = np.asarray(changes, dtype=bool)
    fixed_changes = int(changes[fixed, fixed_choice[fixed]].sum())
    left = None if max_changes is None else int(max_changes) - fixed_changes
    tags = np.asarray(image_tags, dtype=bool).reshape(-1, n_titles, n_images)
    tag_left = np.asarray(tag_max, dtype=np.int64) - tags[:, fixed, fixed_choice[fixed]].sum(axis=1)

    n_free = len(free)
    components: tuple[IntArray, ...] = ()
    if n_free:
        graph = sp.coo_array(
            (np.ones(len(free_pairs)), (free_pairs[:, 0], free_pairs[:, 1])), shape=(n_free, n_free)
        )
        n_comp, labels = connected_components(graph, directed=False)
        order = np.argsort(labels, kind="stable")
        splits = np.cumsum(np.bincount(labels, minlength=n_comp))[:-1]
        components = tuple(np.asarray(c, dtype=np.int64) for c in np.split(order, splits))
    return ReducedProblem(
        n_titles=n_titles,
        free=free,
        fixed_assignment=fixed_choice,
        unary=unary_free,
        pairs=free_pairs.astype(np.int64),
        pair_cost=free_cost,
        changes=changes[free],
        image_tags=tags[:, free],
        max_changes=left,
        tag_max=tag_left.astype(np.int64),
        constant=constant,
        components=components,
    )


def reduce_problem(problem: PageProblem) -> ReducedProblem:
    """Fold a page's fixed titles into their neighbours and split the rest into components.

    Components are those of the free titles' interaction graph (pairs with a positive cost on
    some allowed image pair), so they refine :attr:`PageProblem.components`: a locked title no
    longer joins its neighbours.

    Examples
    --------
    >>> from slate.page import random_problem
    >>> p = random_problem(20, 5, "chain", seed=3)
    >>> r = reduce_problem(p)
    >>> r.n_free == int((p.allowed.sum(axis=1) > 1).sum()), len(r.components) >= 4
    (True, True)
    """
    return reduce_arrays(
        problem.unary,
        problem.pairs,
        problem.pair_cost,
        changes=problem.changes,
        max_changes=problem.max_changes,
        image_tags=problem.image_tags,
        tag_max=problem.tag_max,
    )
