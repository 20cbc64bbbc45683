"""Exact dynamic programming for pages whose interaction graph is a forest (chains, trees).

When only row neighbours interact (a *chain* layout), or more generally when the titles that
interact form no cycle, the page problem is solved exactly by max-plus dynamic programming from
the leaves of each tree to its root (Viterbi on a path; belief propagation is exact on trees,
Pearl 1988). The change budget is handled exactly by adding the number of changes used so far
to the state (the usual resource-constrained DP, as for a knapsack): a title's table holds, for
each of its images ``k`` and each count ``b = 0..B``, the best value of its subtree when it shows
``k`` and the subtree makes exactly ``b`` changes. Components (rows) are independent except
through the budget; their best-value-per-count vectors are combined by max-plus (knapsack)
convolution, and the assignment is recovered by backtracking.

The work is vectorised in numpy over (images, counts) and over all titles at the same depth of
their trees (with the same rank among their siblings), so the Python loop runs once per depth
level, not once per title; each tree is rooted at its title of median index, which for a
row-major chain is the middle of the row. A subtree of ``s`` titles needs only the counts
``0..min(s, B)``, so deep levels work on narrow tables. Without a budget (or when it cannot
bind) the count dimension has size one and the DP is plain Viterbi. The rooted forest is cached
per problem (problems are immutable), so :func:`supports` followed by a solve builds it once.

Cost: ``O(n_titles * n_images**2 * (B + 1))`` for the messages plus
``O(n_images * (B + 1)**2)`` per extra child of a tree node and per component.

References
----------
.. [1] J. Pearl, *Probabilistic Reasoning in Intelligent Systems*, Morgan Kaufmann, 1988
   (max-product message passing is exact on trees).
.. [2] G. D. Forney, "The Viterbi algorithm", Proc. IEEE 61(3), 1973.
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise

import networkx as nx
import numpy as np
from numpy.typing import NDArray
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components, dijkstra

from slate.errors import InvalidProblemError
from slate.page.problem import PageProblem
from slate.solvers.base import register_solver
from slate.solvers.result import SolveResult, Status, check_problem, make_result, normalize_time_limit

__all__ = ["ChainSolver", "supports"]

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]


# ---------------------------------------------------------------------------- structure
def _active_pairs(problem: PageProblem) -> IntArray:
    """Indices of the pairs whose cost is nonzero somewhere (the others never matter)."""
    if problem.n_pairs == 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(problem.pair_cost.reshape(problem.n_pairs, -1).any(axis=1))


def _adjacency(n: int, edges: IntArray) -> csr_matrix:
    """Symmetric CSR adjacency of ``n`` nodes (edge data: 1)."""
    src = np.concatenate([edges[:, 0], edges[:, 1]])
    dst = np.concatenate([edges[:, 1], edges[:, 0]])
    order = np.argsort(src, kind="stable")
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(src, minlength=n), out=indptr[1:])
    return csr_matrix((np.ones(len(src)), dst[order], indptr), shape=(n, n))


@dataclass(frozen=True)
class _Step:
    """Titles at one depth with one sibling rank: every parent appears at most once."""

    nodes: IntArray
    parents: IntArray
    later: bool  # rank > 0: the parent already holds the messages of earlier siblings
    size: int  # largest subtree (in titles) among ``nodes``
    prior: int  # largest number of titles under the parents' earlier siblings
    cost: FloatArray  # (m, K, K): cost[i, l, k] for child image l, parent image k


@dataclass(frozen=True)
class _Forest:
    """A rooted spanning forest of the active interaction graph, as batched DP steps.

    ``steps`` run leaves-to-roots (deepest first, lower sibling ranks first); the backtrack runs
    them in reverse.
    """

    roots: IntArray
    steps: tuple[_Step, ...]
    depth: int


_FORESTS: weakref.WeakKeyDictionary[PageProblem, _Forest | None] = weakref.WeakKeyDictionary()


def _forest(problem: PageProblem) -> _Forest | None:
    """The rooted forest of ``problem`` (cached per problem); None when there is a cycle."""
    try:
        return _FORESTS[problem]
    except KeyError:
        pass
    forest = _build_forest(problem)
    _FORESTS[problem] = forest
    return forest


def _build_forest(problem: PageProblem) -> _Forest | None:
    """Find the components (scipy.sparse.csgraph), root them, and group titles into DP steps."""
    n = problem.n_titles
    active = _active_pairs(problem)
    edges = problem.pairs[active]
    if len(edges) == 0:
        return _Forest(roots=np.arange(n, dtype=np.int64), steps=(), depth=0)
    # the adjacency is symmetric, so the (cheaper) directed routines see the undirected graph
    graph = _adjacency(n, edges)
    n_comp, labels = connected_components(graph, directed=True, connection="weak")
    if len(edges) != n - n_comp:  # a forest has exactly n - (#components) edges
        return None
    # Root each tree at its title of median index: any root is exact, and for a row-major
    # chain this is the middle of the row, which halves the number of depth levels.
    sizes = np.bincount(labels, minlength=n_comp)
    starts = np.cumsum(sizes) - sizes
    roots = np.argsort(labels, kind="stable")[starts + (sizes - 1) // 2].astype(np.int64)
    depth_f, pred = dijkstra(
        graph, directed=True, indices=roots, unweighted=True, return_predecessors=True, min_only=True
    )[:2]
    depth = depth_f.astype(np.int64)
    parent = pred.astype(np.int64)
    parent[roots] = -1
    child = np.flatnonzero(parent >= 0)
    # which pair joins each child to its parent, and in which orientation
    key_pairs = edges[:, 0] * n + edges[:, 1]  # pairs are canonical: pairs[:, 0] < pairs[:, 1]
    order = np.argsort(key_pairs)
    lo = np.minimum(child, parent[child])
    hi = np.maximum(child, parent[child])
    pair_idx = active[order[np.searchsorted(key_pairs, lo * n + hi, sorter=order)]]
    k = problem.n_images
    cost = np.zeros((n, k, k))
    child_first = problem.pairs[pair_idx, 0] == child
    cost[child[child_first]] = problem.pair_cost[pair_idx[child_first]]
    cost[child[~child_first]] = problem.pair_cost[pair_idx[~child_first]].transpose(0, 2, 1)
    # rank among siblings
    rank = np.zeros(n, dtype=np.int64)
    by_parent = child[np.argsort(parent[child], kind="stable")]
    sp = parent[by_parent]
    position = np.arange(len(sp))
    new_parent = np.concatenate([[True], sp[1:] != sp[:-1]])
    rank[by_parent] = position - np.maximum.accumulate(np.where(new_parent, position, 0))
    # steps: deepest first, then by rank; subtree sizes accumulate along the way
    key = (int(depth.max()) - depth) * n + rank
    nodes = child[np.argsort(key[child], kind="stable")]
    k_sorted = key[nodes]
    cuts = [0, *(np.flatnonzero(k_sorted[1:] != k_sorted[:-1]) + 1).tolist(), len(nodes)]
    size = np.ones(n, dtype=np.int64)
    steps = []
    for lo_, hi_ in pairwise(cuts):
        chunk = nodes[lo_:hi_]
        parents = parent[chunk]
        later = bool(rank[chunk[0]] > 0)
        prior = int(size[parents].max()) - 1 if later else 0
        steps.append(_Step(chunk, parents, later, int(size[chunk].max()), prior, cost[chunk]))
        size[parents] += size[chunk]
    return _Forest(roots=roots, steps=tuple(steps), depth=int(depth.max()))


def _cycle_error(problem: PageProblem) -> InvalidProblemError:
    g = nx.Graph()
    g.add_edges_from(map(tuple, problem.pairs[_active_pairs(problem)].tolist()))
    cycle = nx.find_cycle(g)
    names = [problem.title_ids[a] for a, _ in cycle]
    shown = ", ".join(f"'{t}'" for t in names[:6]) + (", ..." if len(names) > 6 else "")
    return InvalidProblemError(
        "The chain solver needs a chain/forest layout; this page has a cycle between titles "
        f"{shown} (interacting titles must form chains or trees); use 'exact' or 'fast'."
    )


def supports(problem: PageProblem) -> bool:
    """Whether :class:`ChainSolver` can solve ``problem``: no quotas, no cycle of interacting titles.

    Pairs whose penalty is zero for every two images do not count as interacting. The rooted
    forest found here is cached with the problem, so a following solve does not redo it.

    Examples
    --------
    >>> from slate.page import random_problem
    >>> supports(random_problem(16, 4, "chain", seed=0)), supports(random_problem(16, 4, "local", seed=0))
    (True, False)
    """
    return not problem.has_quotas and _forest(problem) is not None


# ---------------------------------------------------------------------------- max-plus kernels
@lru_cache(maxsize=256)
def _shift_index(wx: int, wy: int, wo: int) -> IntArray:
    """``idx[b1, b] = b - b1`` where ``0 <= b - b1 < wy``, else ``wy`` (a ``-inf`` pad column)."""
    b1 = np.arange(wx)[:, None]
    b = np.arange(wo)[None, :]
    idx = np.where((b >= b1) & (b - b1 < wy), b - b1, wy)
    idx.flags.writeable = False
    return idx


def _maxplus_convolve(x: FloatArray, y: FloatArray, wo: int) -> FloatArray:
    """``out[..., b] = max_{b1} x[..., b1] + y[..., b - b1]`` for ``b < wo`` (max-plus product)."""
    wx, wy = x.shape[-1], y.shape[-1]
    padded = np.empty((*y.shape[:-1], wy + 1))
    padded[..., :wy] = y
    padded[..., wy] = -np.inf
    return (x[..., :, None] + padded[..., _shift_index(wx, wy, wo)]).max(axis=-2)


def _best_split(x: FloatArray, y: FloatArray, b: IntArray) -> IntArray:
    """Per row ``i``, the ``b1 <= b[i]`` maximising ``x[i, b1] + y[i, b[i] - b1]``."""
    wy = y.shape[1]
    padded = np.empty((len(y), wy + 1))
    padded[:, :wy] = y
    padded[:, wy] = -np.inf
    j = b[:, None] - np.arange(x.shape[1])[None, :]
    j = np.where((j >= 0) & (j < wy), j, wy)
    return (x + padded[np.arange(len(y))[:, None], j]).argmax(axis=1)


def _add_own(acc: FloatArray, unary: FloatArray, change: BoolArray | None) -> FloatArray:
    """``acc[..., k, b - change[k]] + unary[k]`` (a change moves the count up by one)."""
    own = acc + unary[..., None]
    if change is not None:
        if own.shape[-1] > 1:
            own[..., 1:] = np.where(change[..., None], own[..., :-1], own[..., 1:])
        own[..., 0] = np.where(change, -np.inf, own[..., 0])
    return own


# ---------------------------------------------------------------------------- the DP
def _solve_forest(problem: PageProblem, forest: _Forest, budget: int | None) -> tuple[IntArray, float]:
    """Exact optimum over the forest; ``budget=None`` drops the count dimension (Viterbi).

    Tables are indexed ``[title, image, count]``. A subtree of ``s`` titles needs counts
    ``0..min(s, budget)`` only, so each step works on that many columns. The forward pass
    keeps only maxima; the backtrack recomputes the maximisers it needs.
    """
    n, k = problem.n_titles, problem.n_images
    top = 0 if budget is None else budget
    width = top + 1
    unary = problem.unary
    change = None if budget is None else problem.changes

    def own_change(nodes: IntArray) -> BoolArray | None:
        return None if change is None else change[nodes]

    # acc[v]: max-plus convolution of the messages of v's children so far (identity: 0 at b=0)
    acc = np.full((n, k, width), -np.inf)
    acc[:, :, 0] = 0.0
    table = np.full((n, k, width), -np.inf)  # table[v, k, b]: best of v's subtree, v shows k
    # for a child of rank > 0: its message and its parent's acc before it (for the backtrack)
    message: dict[int, FloatArray] = {}
    before: dict[int, FloatArray] = {}
    for i, step in enumerate(forest.steps):
        nodes, parents = step.nodes, step.parents
        w = min(top, step.size) + 1
        own = _add_own(acc[nodes, :, :w], unary[nodes], own_change(nodes))
        table[nodes, :, :w] = own
        # message to the parent: best over the child's image of its table minus the pair cost
        # (reducing an outer axis keeps numpy's inner loop on contiguous (kp, b) blocks)
        msg = (own[:, :, None, :] - step.cost[:, :, :, None]).max(axis=1)  # (m, kp, b)
        if not step.later:
            acc[parents, :, :w] = msg
        else:
            wp = min(top, step.prior) + 1
            wo = min(width, wp + w - 1)
            prior = acc[parents, :, :wp]
            before[i], message[i] = prior, msg
            acc[parents, :, :wo] = _maxplus_convolve(prior, msg, wo)
    roots = forest.roots
    root_table = _add_own(acc[roots], unary[roots], own_change(roots))  # (n_comp, k, width)

    # combine the components' best-per-count vectors by a pairwise knapsack reduction
    values = root_table.max(axis=1)  # (n_comp, width)
    rounds: list[tuple[int, FloatArray, FloatArray]] = []
    if width == 1:
        values = values.sum(axis=0, keepdims=True)
    while len(values) > 1:
        size = len(values)
        if size % 2:
            identity = np.full((1, width), -np.inf)
            identity[0, 0] = 0.0
            values = np.concatenate([values, identity])
        left, right = values[0::2], values[1::2]
        rounds.append((size, left, right))
        values = _maxplus_convolve(left, right, width)
    total = values[0]
    b_best = int(np.argmax(total))
    value = float(total[b_best])

    # backtrack: split the count among components, then walk each tree from its root
    if width == 1:
        counts = np.zeros(len(roots), dtype=np.int64)
    else:
        counts = np.array([b_best], dtype=np.int64)
        for size, left, right in reversed(rounds):
            kept = _best_split(left, right, counts)
            both = np.empty(2 * len(counts), dtype=np.int64)
            both[0::2] = kept
            both[1::2] = counts - kept
            counts = both[:size]
    assignment = np.zeros(n, dtype=np.int64)
    remaining = np.zeros(n, dtype=np.int64)  # count left for the children not yet visited
    assignment[roots] = root_table[np.arange(len(roots)), :, counts].argmax(axis=1)
    if change is not None:
        remaining[roots] = counts - change[roots, assignment[roots]]
    for i in range(len(forest.steps) - 1, -1, -1):
        step = forest.steps[i]
        nodes, parents = step.nodes, step.parents
        pk = assignment[parents]
        b = remaining[parents]
        rows = np.arange(len(nodes))
        if step.later:
            kept = _best_split(before[i][rows, pk], message[i][rows, pk], b)
            remaining[parents] = kept
            b = b - kept
        img = (table[nodes, :, b] - step.cost[rows, :, pk]).argmax(axis=1)
        assignment[nodes] = img
        if change is not None:
            remaining[nodes] = b - change[nodes, img]
    return assignment, value


@dataclass(frozen=True)
class ChainSolver:
    """Exact dynamic programming for chain and tree (forest) layouts, change budget included.

    Solves the page exactly when the titles that interact form no cycle, e.g. a
    ``GridLayout.chain`` page where only row neighbours interact. Each row is a path solved by
    Viterbi; rows share only the change budget, which enters the state exactly (see the module
    notes). Style quotas are not supported.

    The DP always runs to completion (its cost is polynomial and small), so ``time_limit_ms``
    is accepted for the interface but not used; the status is always ``optimal`` with
    ``bound`` equal to the optimum.

    Raises
    ------
    InvalidProblemError
        From :meth:`solve`, when the page has style quotas or its layout has a cycle (see
        :func:`supports`).

    Examples
    --------
    >>> from slate.page import random_problem
    >>> problem = random_problem(40, 8, "chain", seed=2)
    >>> result = ChainSolver().solve(problem)
    >>> result.status.value, result.n_changes <= problem.max_changes
    ('optimal', True)
    >>> abs(result.bound - result.objective) < 1e-9
    True
    """

    name: str = "chain"

    def solve(self, problem: PageProblem, time_limit_ms: float | None = None) -> SolveResult:
        """Solve ``problem`` exactly; see the class notes."""
        started = time.perf_counter()
        check_problem(problem, self.name)
        normalize_time_limit(time_limit_ms)  # refused when NaN or negative, even though unused
        if problem.has_quotas:
            raise InvalidProblemError(
                "The chain solver does not support style quotas; this page has quotas on "
                f"{', '.join(repr(t) for t in problem.tag_names)}; use 'exact' or 'fast'."
            )
        forest = _forest(problem)
        if forest is None:
            raise _cycle_error(problem)
        budget = problem.max_changes if problem.budget_binding_possible else None
        assignment, value = _solve_forest(problem, forest, budget)
        return make_result(
            problem,
            assignment,
            status=Status.OPTIMAL,
            solver=self.name,
            started=started,
            bound=value,
            info={
                "budget_in_state": budget is not None,
                "n_components": len(forest.roots),
                "depth": forest.depth,
            },
        )


register_solver("chain", ChainSolver)
