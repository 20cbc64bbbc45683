"""Numba kernels behind :mod:`slate.solvers.fast` (inherently sequential loops).

Everything works on flat arrays:

* ``unary`` (T, K) float64, ``-inf`` where an image is not allowed;
* ``cost`` (P, K, K) float64, ``cost[p, k, q]``: penalty when ``pairs[p, 0]`` shows ``k`` and
  ``pairs[p, 1]`` shows ``q``;
* an adjacency in CSR form (``ptr``, ``nbr``, ``pid``, ``side``): the incident pairs of title
  ``t`` are ``e in range(ptr[t], ptr[t + 1])``, the neighbour is ``nbr[e]``, the pair ``pid[e]``
  and ``side[e]`` is 0 when ``t`` is the pair's first title, 1 otherwise;
* ``dcost`` (2P, K, K): the pair costs per *directed* edge ``e`` (from ``t`` to ``nbr[e]``),
  ``dcost[e, k_t, k_nbr]``, so that the row a move needs is contiguous in memory;
* ``field`` (T, K): ``unary[t, k]`` minus the pair costs title ``t`` would pay with image ``k``
  against its neighbours' current images. Moving ``t`` from ``a[t]`` to ``k`` changes the
  objective by exactly ``field[t, k] - field[t, a[t]]``;
* ``change`` (T, K) uint8 (choosing ``k`` counts as a change), ``prev`` (T,), ``budget``
  (a large number when there is none);
* ``tags`` (G, T, K) uint8 and ``tag_max`` (G,) for style quotas, ``counts`` (G,) the current
  number of titles showing each tag.

The kernels are compiled on first use and cached on disk (``cache=True``): about 25 s of CPU
once per machine (see :func:`slate.solvers.fast.warm_up`), then a fraction of a second to load.
"""

from __future__ import annotations

import numpy as np
from numba import njit

NEG_INF = -np.inf


# ----------------------------------------------------------------------------- helpers
@njit(cache=True)
def build_adjacency(n_titles, pairs):
    """CSR adjacency of titles to their incident pairs: ``(ptr, nbr, pid, side)``."""
    n_pairs = pairs.shape[0]
    deg = np.zeros(n_titles + 1, np.int64)
    for p in range(n_pairs):
        deg[pairs[p, 0] + 1] += 1
        deg[pairs[p, 1] + 1] += 1
    ptr = np.cumsum(deg)
    fill = ptr[:-1].copy()
    nbr = np.empty(2 * n_pairs, np.int64)
    pid = np.empty(2 * n_pairs, np.int64)
    side = np.empty(2 * n_pairs, np.int64)
    for p in range(n_pairs):
        i = pairs[p, 0]
        j = pairs[p, 1]
        e = fill[i]
        fill[i] += 1
        nbr[e] = j
        pid[e] = p
        side[e] = 0
        e = fill[j]
        fill[j] += 1
        nbr[e] = i
        pid[e] = p
        side[e] = 1
    return ptr, nbr, pid, side


@njit(cache=True)
def directed_costs(cost, pid, side):
    """``(dcost, cmax)``: costs per directed edge and the largest cost of each edge."""
    n_edges = pid.shape[0]
    n_images = cost.shape[1]
    dcost = np.empty((n_edges, n_images, n_images))
    cmax = np.zeros(n_edges)
    for e in range(n_edges):
        p = pid[e]
        m = 0.0
        if side[e] == 0:
            for k in range(n_images):
                for q in range(n_images):
                    c = cost[p, k, q]
                    dcost[e, k, q] = c
                    m = max(m, c)
        else:
            for q in range(n_images):
                for k in range(n_images):
                    c = cost[p, q, k]
                    dcost[e, k, q] = c
                    m = max(m, c)
        cmax[e] = m
    return dcost, cmax


@njit(cache=True)
def compute_field(unary, dcost, ptr, nbr, a, field):
    """Fill ``field`` for assignment ``a`` (see the module docstring)."""
    n_titles, n_images = unary.shape
    for t in range(n_titles):
        for k in range(n_images):
            field[t, k] = unary[t, k]
    # walk the edges from the neighbour's side, so each read is a contiguous row of dcost
    for j in range(n_titles):
        aj = a[j]
        for e in range(ptr[j], ptr[j + 1]):
            t = nbr[e]
            for k in range(n_images):
                field[t, k] -= dcost[e, aj, k]


@njit(cache=True)
def objective_of(unary, cost, pairs, a):
    """Objective of ``a`` (``-inf`` when an image is not allowed)."""
    total = 0.0
    for t in range(unary.shape[0]):
        total += unary[t, a[t]]
    for p in range(pairs.shape[0]):
        total -= cost[p, a[pairs[p, 0]], a[pairs[p, 1]]]
    return total


# ----------------------------------------------------------------------------- moves
# ``prob`` = (dcost, ptr, nbr, change, prev, locked, tags, tag_max, cmax, max_cost): the page
# (``cmax[e]``: the largest cost on directed edge ``e``; ``max_cost``: the largest of all).
# ``st`` = (a, field, counts, dirty, rgain, ggain, gk): the current page and its bookkeeping;
# ``dirty[t]`` flags titles whose field row or image moved since ``rgain``/``ggain``/``gk``
# (revert gain of a changed title, best change gain of a kept one) were last refreshed.


@njit(cache=True)
def _argsort(values, n):
    """Indices of ``values[:n]`` in increasing order (Shell sort; compiles far faster than
    numba's ``np.argsort`` and the arrays here are short)."""
    order = np.arange(n)
    gap = 1
    while gap < n // 3:
        gap = 3 * gap + 1
    while gap > 0:
        for i in range(gap, n):
            item = order[i]
            v = values[item]
            j = i
            while j >= gap and values[order[j - gap]] > v:
                order[j] = order[j - gap]
                j -= gap
            order[j] = item
        gap //= 3
    return order


@njit(cache=True, inline="always")
def apply_move(t, k, prob, st):
    """Move title ``t`` to image ``k``; returns the change in the number of changed titles."""
    dcost, ptr, nbr, change, _prev, _locked, tags, _tag_max, _cmax, _max_cost = prob
    a, field, counts, dirty, _rgain, _ggain, _gk = st
    old = a[t]
    n_images = field.shape[1]
    for e in range(ptr[t], ptr[t + 1]):
        j = nbr[e]
        dirty[j] = 1
        for kj in range(n_images):
            field[j, kj] += dcost[e, old, kj] - dcost[e, k, kj]
    for g in range(tags.shape[0]):
        counts[g] += np.int64(tags[g, t, k]) - np.int64(tags[g, t, old])
    a[t] = k
    dirty[t] = 1
    return np.int64(change[t, k]) - np.int64(change[t, old])


@njit(cache=True, inline="always")
def _quota_ok(t, old, k, tags, tag_max, counts):
    for g in range(tags.shape[0]):
        d = np.int64(tags[g, t, k]) - np.int64(tags[g, t, old])
        if d > 0 and counts[g] + d > tag_max[g]:
            return False
    return True


@njit(cache=True, inline="always")
def _best_move(t, prob, st, n_changes, budget, tol):
    """Best feasible image for title ``t`` given the others: ``(k, gain)``, ``k = -1`` if none."""
    change = prob[3]
    tags = prob[6]
    tag_max = prob[7]
    a = st[0]
    field = st[1]
    counts = st[2]
    old = a[t]
    base = field[t, old]
    best_k = -1
    best_gain = tol
    at_budget = n_changes >= budget
    for k in range(field.shape[1]):
        gain = field[t, k] - base
        if gain <= best_gain or k == old:
            continue
        if at_budget and change[t, k] > change[t, old]:
            continue
        if not _quota_ok(t, old, k, tags, tag_max, counts):
            continue
        best_k = k
        best_gain = gain
    return best_k, best_gain


@njit(cache=True, inline="always")
def _swap_quota_ok(s, ks, t, kt, a, tags, tag_max, counts):
    """Whether moving ``s`` to ``ks`` and ``t`` to ``kt`` together raises no count over its quota."""
    for g in range(tags.shape[0]):
        d = np.int64(tags[g, s, ks]) - np.int64(tags[g, s, a[s]])
        d += np.int64(tags[g, t, kt]) - np.int64(tags[g, t, a[t]])
        if d > 0 and counts[g] + d > tag_max[g]:
            return False
    return True


@njit(cache=True)
def _refresh(prob, st):
    prev = prob[4]
    locked = prob[5]
    a, field, _counts, dirty, rgain, ggain, gk = st
    n_titles, n_images = field.shape
    for t in range(n_titles):
        if dirty[t] == 0:
            continue
        dirty[t] = 0
        rgain[t] = NEG_INF
        ggain[t] = NEG_INF
        gk[t] = -1
        if prev[t] < 0 or locked[t]:
            continue
        base = field[t, a[t]]
        if a[t] != prev[t]:
            rgain[t] = field[t, prev[t]] - base
            continue
        best = NEG_INF
        for k in range(n_images):
            if k != a[t] and field[t, k] - base > best:
                best = field[t, k] - base
                gk[t] = k
        ggain[t] = best


@njit(cache=True, inline="always")
def _swap_gain_exact(s, t, e, k, prob, st):
    """Gain of reverting changed ``s`` and moving ``t`` to ``k`` (``e``: edge s->t or -1)."""
    dcost = prob[0]
    prev = prob[4]
    a = st[0]
    field = st[1]
    ps = prev[s]
    old_s = a[s]
    old_t = a[t]
    gain = field[s, ps] - field[s, old_s] + field[t, k] - field[t, old_t]
    if e >= 0:  # t's field moves with s
        gain += dcost[e, old_s, k] - dcost[e, ps, k]
        gain -= dcost[e, old_s, old_t] - dcost[e, ps, old_t]
    return gain


@njit(cache=True)
def _best_swap_quotas(prob, st, tol, mark):
    """:func:`_best_swap` on a page with quotas: every (s, t, k) whose joint move keeps the
    quotas, pruned by the bound ``rgain[s] + ggain[t] + 2 * max pair cost`` (partners in
    decreasing order of change gain, so the first failure ends the scan for ``s``)."""
    ptr, nbr, prev = prob[1], prob[2], prob[4]
    tags, tag_max, cmax, max_cost = prob[6], prob[7], prob[8], prob[9]
    a, field, counts, rgain, ggain = st[0], st[1], st[2], st[4], st[5]
    n_titles, n_images = field.shape
    kept_by_gain = _argsort(ggain, n_titles)[::-1]  # titles without a change gain come last
    changed_by_gain = _argsort(rgain, n_titles)[::-1]
    best_s = -1
    best_t = -1
    best_k = -1
    best_gain = tol
    top_g = ggain[kept_by_gain[0]]
    if top_g == NEG_INF:
        return best_s, best_t, best_k, best_gain
    for s in changed_by_gain:
        r = rgain[s]
        if r == NEG_INF or r + top_g + 2.0 * max_cost <= best_gain:
            break
        for e in range(ptr[s], ptr[s + 1]):
            mark[nbr[e]] = 1
        for t in kept_by_gain:  # partners that are not neighbours of s: the gains simply add up
            if r + ggain[t] <= best_gain:
                break
            if mark[t]:
                continue
            for k in range(n_images):
                gain = r + field[t, k] - field[t, a[t]]
                if gain > best_gain and k != a[t]:
                    if _swap_quota_ok(s, prev[s], t, k, a, tags, tag_max, counts):
                        best_gain = gain
                        best_s = int(s)
                        best_t = int(t)
                        best_k = k
        for e in range(ptr[s], ptr[s + 1]):  # neighbours: exact
            t = nbr[e]
            mark[t] = 0
            if ggain[t] == NEG_INF or r + ggain[t] + 2.0 * cmax[e] <= best_gain:
                continue
            for k in range(n_images):
                if k == a[t] or field[t, k] == NEG_INF:
                    continue
                gain = _swap_gain_exact(s, t, e, k, prob, st)
                if gain > best_gain and _swap_quota_ok(s, prev[s], t, k, a, tags, tag_max, counts):
                    best_gain = gain
                    best_s = int(s)
                    best_t = int(t)
                    best_k = k
    return best_s, best_t, best_k, best_gain


@njit(cache=True)
def _best_swap(prob, st, tol, mark, top):
    """Best budget-neutral pair move: revert a changed title ``s``, change a kept title ``t``.

    Returns ``(s, t, k, gain)`` with ``s = -1`` when no such move gains more than ``tol``.
    Without quotas the search is separable except for adjacent ``(s, t)``: the best
    non-adjacent partner comes from a short list of the largest change gains, adjacent pairs
    are checked exactly unless a bound (``2 * cmax[p]``) rules them out.
    """
    dcost, ptr, nbr, prev = prob[0], prob[1], prob[2], prob[4]
    tags, cmax, max_cost = prob[6], prob[8], prob[9]
    a, field, rgain, ggain, gk = st[0], st[1], st[4], st[5], st[6]
    n_titles, n_images = field.shape
    _refresh(prob, st)
    best_s = -1
    best_t = -1
    best_k = -1
    best_gain = tol
    if tags.shape[0] > 0:
        return _best_swap_quotas(prob, st, tol, mark)
    # short list of the kept titles with the largest change gains, best first
    n_top = 0
    cap = top.shape[0]
    max_r = NEG_INF
    for t in range(n_titles):
        if rgain[t] > max_r:
            max_r = rgain[t]
        g = ggain[t]
        if g == NEG_INF or (n_top == cap and g <= ggain[top[n_top - 1]]):
            continue
        i = n_top if n_top < cap else cap - 1
        while i > 0 and ggain[top[i - 1]] < g:
            top[i] = top[i - 1]
            i -= 1
        top[i] = t
        if n_top < cap:
            n_top += 1
    if n_top == 0 or max_r == NEG_INF:
        return best_s, best_t, best_k, best_gain
    g0 = ggain[top[0]]
    if max_r + g0 + 2.0 * max_cost <= best_gain:
        return best_s, best_t, best_k, best_gain
    for s in range(n_titles):
        r = rgain[s]
        if r == NEG_INF or r + g0 + 2.0 * max_cost <= best_gain:
            continue
        for e in range(ptr[s], ptr[s + 1]):
            mark[nbr[e]] = 1
        for i in range(n_top):
            t = top[i]
            if mark[t] == 0:
                if r + ggain[t] > best_gain:
                    best_gain = r + ggain[t]
                    best_s = s
                    best_t = t
                    best_k = gk[t]
                break
        ps = prev[s]
        old_s = a[s]
        for e in range(ptr[s], ptr[s + 1]):
            t = nbr[e]
            mark[t] = 0
            if ggain[t] == NEG_INF or r + ggain[t] + 2.0 * cmax[e] <= best_gain:
                continue
            # exact: t's field moves with s (its pair cost against s's image changes)
            old_t = a[t]
            base = r - field[t, old_t] - dcost[e, old_s, old_t] + dcost[e, ps, old_t]
            for k in range(n_images):
                gain = base + field[t, k] + dcost[e, old_s, k] - dcost[e, ps, k]
                if gain > best_gain and k != old_t:
                    best_gain = gain
                    best_s = s
                    best_t = t
                    best_k = k
    return best_s, best_t, best_k, best_gain


@njit(cache=True, inline="always")
def _push_around(u, ptr, nbr, queue, inq, tail, size, n_titles):
    for e in range(ptr[u], ptr[u + 1]):
        j = nbr[e]
        if inq[j] == 0:
            inq[j] = 1
            queue[tail] = j
            tail = (tail + 1) % n_titles
            size += 1
    return tail, size


@njit(cache=True)
def descend(prob, st, n_changes, budget, tol, inq, work):
    """Local search to a page where no single move and no budget swap gains more than ``tol``.

    Titles flagged in ``inq`` are examined first (all of them for a full descent); a title's
    neighbours are re-examined when it moves. ``work`` is (queue, mark, top) scratch space.
    Returns ``(n_changes, total_gain)``.
    """
    n_changes, total, _ = descend_limited(prob, st, n_changes, budget, tol, inq, work, -1)
    return n_changes, total


@njit(cache=True)
def descend_limited(prob, st, n_changes, budget, tol, inq, work, max_moves):
    """:func:`descend` that stops after ``max_moves`` moves (``-1``: no limit).

    Titles still waiting stay flagged in ``inq``, so a later call continues the same descent.
    Returns ``(n_changes, total_gain, finished)``.
    """
    ptr = prob[1]
    nbr = prob[2]
    prev = prob[4]
    locked = prob[5]
    queue, mark, top = work
    n_titles = st[1].shape[0]
    total = 0.0
    size = 0
    for t in range(n_titles):
        if inq[t]:
            queue[size] = t
            size += 1
    head = 0
    tail = size % n_titles
    moves = 0
    while True:
        while size > 0:
            if max_moves >= 0 and moves >= max_moves:
                return n_changes, total, False
            t = queue[head]
            head = (head + 1) % n_titles
            size -= 1
            inq[t] = 0
            if locked[t]:
                continue
            k, gain = _best_move(t, prob, st, n_changes, budget, tol)
            if k < 0:
                continue
            n_changes += apply_move(t, k, prob, st)
            total += gain
            moves += 1
            tail, size = _push_around(t, ptr, nbr, queue, inq, tail, size, n_titles)
        if n_changes < budget:
            break
        if max_moves >= 0 and moves >= max_moves:
            return n_changes, total, False
        s, t, k, gain = _best_swap(prob, st, tol, mark, top)
        if s < 0:
            break
        n_changes += apply_move(s, prev[s], prob, st)
        n_changes += apply_move(t, k, prob, st)
        total += gain
        moves += 1
        for u in (s, t):
            if inq[u] == 0:
                inq[u] = 1
                queue[tail] = u
                tail = (tail + 1) % n_titles
                size += 1
            tail, size = _push_around(u, ptr, nbr, queue, inq, tail, size, n_titles)
    return n_changes, total, True


# ----------------------------------------------------------------------------- start
@njit(cache=True)
def greedy_start(unary, prob, st, budget):
    """Greedy page in title order, each title taking its best image given the titles placed
    before it; then, over the budget, the changes with the smallest gains are reverted.

    Fills ``st``'s assignment and field (exact on return); returns the number of changes.
    """
    dcost, ptr, nbr, change, prev = prob[0], prob[1], prob[2], prob[3], prob[4]
    a, field = st[0], st[1]
    n_titles, n_images = unary.shape
    for t in range(n_titles):
        for k in range(n_images):
            field[t, k] = unary[t, k]
    n_changes = 0
    for t in range(n_titles):
        best = 0
        for k in range(1, n_images):
            if field[t, k] > field[t, best]:
                best = k
        a[t] = best
        n_changes += change[t, best]
        for e in range(ptr[t], ptr[t + 1]):  # neighbours placed later now see t's image
            j = nbr[e]
            if j > t:
                for kj in range(n_images):
                    field[j, kj] -= dcost[e, best, kj]
    # titles placed before a neighbour did not see it: complete their fields
    for j in range(n_titles):  # from the later title's side: contiguous rows of dcost
        aj = a[j]
        for e in range(ptr[j], ptr[j + 1]):
            t = nbr[e]
            if t < j:
                for k in range(n_images):
                    field[t, k] -= dcost[e, aj, k]
    if n_changes > budget:
        gains = np.empty(n_titles)
        for t in range(n_titles):
            gains[t] = np.inf
            if change[t, a[t]]:
                gains[t] = field[t, a[t]] - field[t, prev[t]]
        order = _argsort(gains, n_titles)
        for i in range(n_changes - budget):
            t = order[i]
            n_changes += apply_move(t, prev[t], prob, st)
    return n_changes


# ----------------------------------------------------------------------------- quota repair
@njit(cache=True)
def _excess(tags, tag_max, counts):
    total = 0
    for g in range(tags.shape[0]):
        if counts[g] > tag_max[g]:
            total += counts[g] - tag_max[g]
    return total


@njit(cache=True)
def _best_repair_move(prob, st, n_changes, budget, skip):
    """Best single move (not of title ``skip``) that lowers the quota excess and breaks no new
    quota, within the budget: ``(t, k, gain)`` with ``t = -1`` when there is none."""
    change = prob[3]
    locked = prob[5]
    tags = prob[6]
    tag_max = prob[7]
    a, field, counts = st[0], st[1], st[2]
    n_titles, n_images = field.shape
    best_t = -1
    best_k = -1
    best_gain = NEG_INF
    for t in range(n_titles):
        if locked[t] or t == skip:
            continue
        old = a[t]
        shows_over = False  # only a title showing an over-quota tag can lower the excess
        for g in range(tags.shape[0]):
            if tags[g, t, old] and counts[g] > tag_max[g]:
                shows_over = True
        if not shows_over:
            continue
        for k in range(n_images):
            if k == old or field[t, k] == NEG_INF:
                continue
            if n_changes + np.int64(change[t, k]) - np.int64(change[t, old]) > budget:
                continue
            lower = False
            ok = True
            for g in range(tags.shape[0]):
                d = np.int64(tags[g, t, k]) - np.int64(tags[g, t, old])
                if d < 0 and counts[g] > tag_max[g]:
                    lower = True
                elif d > 0 and counts[g] + d > tag_max[g]:
                    ok = False
                    break
            if not (ok and lower):
                continue
            gain = field[t, k] - field[t, old]
            if gain > best_gain:
                best_gain = gain
                best_t = t
                best_k = k
    return best_t, best_k, best_gain


@njit(cache=True)
def repair_quotas(prob, st, n_changes, budget):
    """Bring every style quota under its maximum, keeping locks and the budget.

    Repeats the cheapest move that lowers the total excess (titles over a quota) without
    breaking another quota; when the budget blocks every such move, a changed title is reverted
    to its previous image to pay for it (a budget swap). Returns ``(n_changes, gain, ok)``;
    ``ok`` is False when no move or swap lowers the excess any more (the greedy repair can fail
    where the exact solver succeeds).
    """
    prev = prob[4]
    tags = prob[6]
    tag_max = prob[7]
    a, field, counts = st[0], st[1], st[2]
    n_titles = field.shape[0]
    total = 0.0
    while _excess(tags, tag_max, counts) > 0:
        t, k, gain = _best_repair_move(prob, st, n_changes, budget, -1)
        if t >= 0:
            total += gain
            n_changes += apply_move(t, k, prob, st)
            continue
        best_s = -1
        best_t = -1
        best_k = -1
        best_gain = NEG_INF
        for s in range(n_titles):  # swap: revert s to pay for the move of another title
            if prev[s] < 0 or a[s] == prev[s]:
                continue
            old_s = a[s]
            if not _quota_ok(s, old_s, prev[s], tags, tag_max, counts):
                continue  # the revert itself must not break a quota
            revert = field[s, prev[s]] - field[s, old_s]
            dch = apply_move(s, prev[s], prob, st)
            t, k, gain = _best_repair_move(prob, st, n_changes + dch, budget, s)
            if t >= 0 and revert + gain > best_gain:
                best_gain = revert + gain
                best_s = s
                best_t = t
                best_k = k
            apply_move(s, old_s, prob, st)
        if best_s < 0:
            return n_changes, total, False
        total += best_gain
        n_changes += apply_move(best_s, prev[best_s], prob, st)
        n_changes += apply_move(best_t, best_k, prob, st)
    return n_changes, total, True


# ----------------------------------------------------------------------------- random numbers
@njit(cache=True, inline="always")
def _rand(state):
    """xorshift64* (Vigna 2016); ``state`` is a one-element uint64 array, never 0."""
    x = state[0]
    x ^= x >> np.uint64(12)
    x ^= x << np.uint64(25)
    x ^= x >> np.uint64(27)
    state[0] = x
    return x * np.uint64(2685821657736338717)


@njit(cache=True, inline="always")
def _randint(state, n):
    return np.int64((_rand(state) >> np.uint64(11)) % np.uint64(n))


# ----------------------------------------------------------------------------- iterated local search
@njit(cache=True, inline="always")
def _flag(u, ptr, nbr, inq):
    inq[u] = 1
    for e in range(ptr[u], ptr[u + 1]):
        inq[nbr[e]] = 1


@njit(cache=True)
def iterated_local_search(
    prob, st, n_changes, budget, tol, value, rng, n_rounds, patience, strength, stale, inq, work, save_a
):
    """Perturb a few neighbouring titles at random, descend again, keep the page if not worse.

    ``st`` must hold a local optimum (see :func:`descend`) of objective ``value``; on return it
    holds the best page found. Stops after ``n_rounds`` rounds or when ``stale`` (rounds in a
    row without improvement, carried across calls) reaches ``patience``.
    Returns ``(value, n_changes, rounds_done, stale)``.
    """
    ptr = prob[1]
    nbr = prob[2]
    change = prob[3]
    prev = prob[4]
    locked = prob[5]
    tags = prob[6]
    tag_max = prob[7]
    a = st[0]
    field = st[1]
    counts = st[2]
    n_titles, n_images = field.shape
    movable = np.empty(n_titles, np.int64)
    n_movable = 0
    for t in range(n_titles):
        if locked[t]:
            continue
        n_allowed = 0
        for k in range(n_images):
            if field[t, k] != NEG_INF:
                n_allowed += 1
        if n_allowed > 1:
            movable[n_movable] = t
            n_movable += 1
    rounds = 0
    if n_movable == 0:
        return value, n_changes, rounds, patience
    # a page that keeps its quotas may break them in a perturbation (then they are repaired);
    # one that does not (a failed repair) is only ever moved within them
    strict = _excess(tags, tag_max, counts) > 0
    while rounds < n_rounds and stale < patience:
        rounds += 1
        save_a[:] = a
        current = value
        t0 = movable[_randint(rng, n_movable)]
        deg = ptr[t0 + 1] - ptr[t0]
        moved = False
        for step in range(strength):
            u = t0 if (step == 0 or deg == 0) else nbr[ptr[t0] + _randint(rng, deg)]
            if locked[u]:
                continue
            k = _randint(rng, n_images)
            if k == a[u] or field[u, k] == NEG_INF:
                continue
            if strict and not _quota_ok(u, a[u], k, tags, tag_max, counts):
                continue
            if change[u, k] > change[u, a[u]] and n_changes >= budget:
                # pay for the new change by reverting another changed title
                start = _randint(rng, n_titles)
                r = -1
                for off in range(n_titles):
                    s = (start + off) % n_titles
                    if s != u and prev[s] >= 0 and a[s] != prev[s]:
                        if not strict or _quota_ok(s, a[s], prev[s], tags, tag_max, counts):
                            r = s
                            break
                if r < 0:
                    continue
                current += field[r, prev[r]] - field[r, a[r]]
                n_changes += apply_move(r, prev[r], prob, st)
                _flag(r, ptr, nbr, inq)
                moved = True
                if strict and not _quota_ok(u, a[u], k, tags, tag_max, counts):
                    continue
            current += field[u, k] - field[u, a[u]]
            n_changes += apply_move(u, k, prob, st)
            _flag(u, ptr, nbr, inq)
            moved = True
        if not moved:
            stale += 1
            continue
        if not strict and _excess(tags, tag_max, counts) > 0:
            # the perturbation broke a quota: repair it (cheapest moves first)
            n_changes, gain, ok = repair_quotas(prob, st, n_changes, budget)
            current += gain
            if not ok:
                for t in range(n_titles):
                    if a[t] != save_a[t]:
                        n_changes += apply_move(t, save_a[t], prob, st)
                inq[:] = 0
                stale += 1
                continue
            for t in range(n_titles):
                if a[t] != save_a[t]:
                    _flag(t, ptr, nbr, inq)
        n_changes, gain = descend(prob, st, n_changes, budget, tol, inq, work)
        current += gain
        if current > value + tol:
            value = current
            stale = 0
            continue
        stale += 1
        if current >= value - tol:
            value = current
            continue
        for t in range(n_titles):  # worse: go back to the saved page
            if a[t] != save_a[t]:
                n_changes += apply_move(t, save_a[t], prob, st)
    return value, n_changes, rounds, stale


# ----------------------------------------------------------------------------- upper bound
@njit(cache=True)
def budgeted_max(theta, change, budget):
    """``max_a sum_t theta[t, a_t]`` subject to at most ``budget`` changes (exact).

    Each title keeps its best image; when that makes more than ``budget`` changes, the changes
    with the smallest gain over the best unchanged image are given up.
    """
    n_titles, n_images = theta.shape
    total = 0.0
    gains = np.empty(n_titles)
    n_gains = 0
    for t in range(n_titles):
        best_keep = NEG_INF
        best_change = NEG_INF
        for k in range(n_images):
            v = theta[t, k]
            if change[t, k]:
                if v > best_change:
                    best_change = v
            elif v > best_keep:
                best_keep = v
        if best_change > best_keep:
            total += best_keep
            gains[n_gains] = best_change - best_keep
            n_gains += 1
        else:
            total += best_keep
    if n_gains <= budget:
        for i in range(n_gains):
            total += gains[i]
        return total
    order = _argsort(gains, n_gains)
    for i in range(n_gains - budget, n_gains):
        total += gains[order[i]]
    return total


_FLOOR = -1e100  # stands for "not allowed" inside the bound's sweeps (keeps the loops branch-free)


@njit(cache=True, fastmath=True)
def mplp_sweeps(theta, cost, pairs, change, budget, lam, n_sweeps, mu):
    """``n_sweeps`` sweeps of MPLP edge updates (Globerson & Jaakkola, 2007) on ``lam``.

    ``theta`` (T, K) holds the unaries plus the messages ``lam`` (P, 2, K) received, with
    ``_FLOOR`` on images that are not allowed; both are updated in place. The budget enters
    through the multiplier ``mu`` on changes, re-set before every sweep to the value that is
    optimal for the current unaries (the (budget+1)-th largest gain of a change, or 0).
    Returns the last multiplier.
    """
    n_titles, n_images = theta.shape
    n_pairs = pairs.shape[0]
    bi = np.empty(n_images)
    bj = np.empty(n_images)
    row = np.empty(n_images)
    col = np.empty(n_images)
    gains = np.empty(n_titles)
    for _ in range(n_sweeps):
        n_g = 0
        for t in range(n_titles):
            keep = _FLOOR
            chg = _FLOOR
            for k in range(n_images):
                v = theta[t, k]
                if change[t, k]:
                    chg = max(chg, v)
                else:
                    keep = max(keep, v)
            if chg > 0.5 * _FLOOR:
                gains[n_g] = chg - keep
                n_g += 1
        mu = 0.0
        if n_g > budget:
            order = _argsort(gains, n_g)
            mu = max(0.0, gains[order[n_g - budget - 1]])
        for p in range(n_pairs):
            i = pairs[p, 0]
            j = pairs[p, 1]
            for k in range(n_images):
                bi[k] = theta[i, k] - lam[p, 0, k] - mu * change[i, k]
                bj[k] = theta[j, k] - lam[p, 1, k] - mu * change[j, k]
                col[k] = 2.0 * _FLOOR
            for k in range(n_images):
                r = 2.0 * _FLOOR
                b = bi[k]
                for q in range(n_images):
                    c = cost[p, k, q]
                    r = max(r, bj[q] - c)
                    col[q] = max(col[q], b - c)
                row[k] = r
            for k in range(n_images):
                new = 0.5 * (row[k] - bi[k])
                theta[i, k] += new - lam[p, 0, k]
                lam[p, 0, k] = new
                new = 0.5 * (col[k] - bj[k])
                theta[j, k] += new - lam[p, 1, k]
                lam[p, 1, k] = new
    return mu


@njit(cache=True)
def dual_value(unary, cost, pairs, change, budget, lam):
    """The bound for messages ``lam`` (P, 2, K), evaluated exactly (valid for any ``lam``)::

        max over pages within the budget of sum_t (unary[t] + messages to t)
          + sum_p max over allowed (k, q) of (-cost[p, k, q] - lam[p, 0, k] - lam[p, 1, q])

    For every page the two sums add up to its objective (the messages cancel), so their
    separate maxima bound it from above; quotas are relaxed.
    """
    n_images = unary.shape[1]
    theta = unary.copy()
    for p in range(pairs.shape[0]):
        for side in range(2):
            t = pairs[p, side]
            for k in range(n_images):
                theta[t, k] += lam[p, side, k]  # -inf stays -inf
    total = budgeted_max(theta, change, budget)
    for p in range(pairs.shape[0]):
        i = pairs[p, 0]
        j = pairs[p, 1]
        m = NEG_INF
        for k in range(n_images):
            if unary[i, k] == NEG_INF:
                continue
            for q in range(n_images):
                if unary[j, q] == NEG_INF:
                    continue
                v = -cost[p, k, q] - lam[p, 0, k] - lam[p, 1, q]
                if v > m:
                    m = v
        total += m
    return total
