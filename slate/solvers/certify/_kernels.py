"""Numba kernels of :mod:`slate.solvers.certify` (dual evaluation and exact completion).

Notation as in :mod:`slate.solvers._fast_kernels`: ``unary`` (T, K) with ``-inf`` on images
that are not allowed, ``cost`` (P, K, K), ``pairs`` (P, 2), messages ``lam`` (P, 2, K) and the
CSR adjacency ``(ptr, nbr, pid, side)``. For any messages, every allowed page ``a`` satisfies::

    objective(a) = sum_t theta[t, a_t] + sum_p theta_p(a_i, a_j)
    theta[t, k]       = unary[t, k] + sum of lam[p, side, k] over the pairs p of t
    theta_p(k, q)     = -cost[p, k, q] - lam[p, 0, k] - lam[p, 1, q]

(the messages cancel), which is what every bound here relies on.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from slate.solvers._fast_kernels import _argsort, budgeted_max

NEG_INF = -np.inf


@njit(cache=True)
def reparametrised_unary(unary, pairs, lam):
    """``theta`` of the module docstring (``-inf`` stays ``-inf``)."""
    theta = unary.copy()
    n_images = unary.shape[1]
    for p in range(pairs.shape[0]):
        for s in range(2):
            t = pairs[p, s]
            for k in range(n_images):
                theta[t, k] += lam[p, s, k]
    return theta


@njit(cache=True)
def pair_maxima(unary, cost, pairs, lam, a):
    """Per pair: the largest ``theta_p`` over allowed image pairs and ``theta_p`` at page ``a``."""
    n_pairs = pairs.shape[0]
    n_images = unary.shape[1]
    top = np.empty(n_pairs)
    at = np.empty(n_pairs)
    for p in range(n_pairs):
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
        top[p] = m
        at[p] = -cost[p, a[i], a[j]] - lam[p, 0, a[i]] - lam[p, 1, a[j]]
    return top, at


@njit(cache=True)
def _sort_desc(values, n):
    """Indices of ``values[:n]`` in decreasing order (insertion sort; ``n`` is small)."""
    order = np.arange(n)
    for i in range(1, n):
        item = order[i]
        v = values[item]
        j = i
        while j > 0 and values[order[j - 1]] < v:
            order[j] = order[j - 1]
            j -= 1
        order[j] = item
    return order


@njit(cache=True)
def budget_curve(theta, change, in_rest, n_r):
    """``F[r]`` for ``r = 0 .. n_r - 1``: the best ``sum theta[t, a_t]`` over the titles with
    ``in_rest[t]``, with at most ``r`` changes among them (exact: keep the best unchanged image,
    then take the ``r`` largest gains of a change)."""
    n_titles, n_images = theta.shape
    base = 0.0
    gains = np.empty(n_titles)
    n_g = 0
    for t in range(n_titles):
        if not in_rest[t]:
            continue
        keep = NEG_INF
        chg = NEG_INF
        for k in range(n_images):
            v = theta[t, k]
            if change[t, k]:
                chg = max(chg, v)
            else:
                keep = max(keep, v)
        base += keep
        if chg > keep:
            gains[n_g] = chg - keep
            n_g += 1
    order = _sort_desc(gains, n_g)
    out = np.empty(n_r)
    total = base
    for r in range(n_r):
        out[r] = total
        if r < n_g:
            total += gains[order[r]]
    return out


@njit(cache=True)
def _order_labels(w, i, n_images, labels):
    """Allowed labels of row ``i`` of ``w`` in decreasing order; returns their count."""
    n = 0
    for k in range(n_images):
        if w[i, k] != NEG_INF:
            labels[n] = k
            n += 1
    for x in range(1, n):  # insertion sort, best first
        item = labels[x]
        v = w[i, item]
        y = x
        while y > 0 and w[i, labels[y - 1]] < v:
            labels[y] = labels[y - 1]
            y -= 1
        labels[y] = item
    return n


@njit(cache=True, inline="always")
def _theta_pair(cost, lam, p, s, k, q):
    """``theta_p`` with the title on side ``s`` of pair ``p`` at image ``k``, the other at ``q``."""
    c = cost[p, k, q] if s == 0 else cost[p, q, k]
    return -c - lam[p, s, k] - lam[p, 1 - s, q]


@njit(cache=True)
def _completion_fields(theta, unary, cost, lam, adjacency, order, pos):
    """Initial fields of the kept titles: ``theta`` plus crossing pairs maximised over the
    outside title, plus pairs to *earlier* kept titles maximised over the earlier title (they are
    made exact when that title is placed)."""
    ptr, nbr, pid, side = adjacency
    m = order.shape[0]
    n_images = theta.shape[1]
    field = np.empty((m, n_images))
    for i in range(m):
        t = order[i]
        for k in range(n_images):
            field[i, k] = theta[t, k]
        for e in range(ptr[t], ptr[t + 1]):
            o = nbr[e]
            if pos[o] >= 0 and pos[o] > i:
                continue  # charged to the later title
            p = pid[e]
            s = side[e]
            for k in range(n_images):
                if unary[t, k] == NEG_INF:
                    continue
                best = NEG_INF
                for q in range(n_images):
                    if unary[o, q] != NEG_INF:
                        best = max(best, _theta_pair(cost, lam, p, s, k, q))
                field[i, k] += best
    return field


@njit(cache=True)
def _edge_best(unary, cost, lam, adjacency, order, pos):
    """``best[e, q]``: the largest ``theta_p`` over the images of the earlier kept title of
    directed edge ``e`` when the later kept title shows ``q`` (edges between kept titles)."""
    ptr, nbr, pid, side = adjacency
    n_images = unary.shape[1]
    best = np.full((nbr.shape[0], n_images), NEG_INF)
    for i in range(order.shape[0]):
        t = order[i]
        for e in range(ptr[t], ptr[t + 1]):
            o = nbr[e]
            if pos[o] <= i:
                continue
            p = pid[e]
            s = side[e]
            for q in range(n_images):
                if unary[o, q] == NEG_INF:
                    continue
                for x in range(n_images):
                    if unary[t, x] != NEG_INF:
                        best[e, q] = max(best[e, q], _theta_pair(cost, lam, p, s, x, q))
    return best


@njit(cache=True, inline="always")
def _split_max(field, i, t, change, keep, chg):
    """Best image of row ``i`` (title ``t``) without a change and with one."""
    best_keep = NEG_INF
    best_chg = NEG_INF
    for k in range(field.shape[1]):
        if change[t, k]:
            best_chg = max(best_chg, field[i, k])
        else:
            best_keep = max(best_keep, field[i, k])
    keep[i] = best_keep
    chg[i] = best_chg


@njit(cache=True, inline="always")
def _place(d, k, sign, order, pos, unary, cost, lam, adjacency, edge_best, field, change, keep, chg):
    """Make the pairs from the title at depth ``d`` (image ``k``) to later kept titles exact
    (``sign`` 1) or undo it (``sign`` -1), refreshing those titles' best values."""
    ptr, nbr, pid, side = adjacency
    n_images = field.shape[1]
    t = order[d]
    for e in range(ptr[t], ptr[t + 1]):
        o = nbr[e]
        j = pos[o]
        if j <= d:
            continue
        p = pid[e]
        s = side[e]
        for q in range(n_images):
            if unary[o, q] != NEG_INF:
                field[j, q] += sign * (_theta_pair(cost, lam, p, s, k, q) - edge_best[e, q])
        _split_max(field, j, o, change, keep, chg)


@njit(cache=True)
def _rest_bound(d, keep, chg, outside_gains, n_left, gains):
    """Upper bound of the titles after depth ``d`` and the outside titles together with at most
    ``n_left`` more changes: every title's best unchanged value plus the ``n_left`` largest gains
    of a change among them all (``outside_gains``: the outside titles', decreasing)."""
    m = keep.shape[0]
    total = 0.0
    n_g = 0
    for j in range(d + 1, m):
        total += keep[j]
        g = chg[j] - keep[j]
        if g > 0.0:
            gains[n_g] = g
            n_g += 1
    if n_left <= 0:
        return total
    order = _sort_desc(gains, n_g)
    i = 0  # merge the two decreasing lists
    o = 0
    n_out = outside_gains.shape[0]
    for _ in range(n_left):
        a = gains[order[i]] if i < n_g else 0.0
        b = outside_gains[o] if o < n_out else 0.0
        if a <= 0.0 and b <= 0.0:
            break
        if a >= b:
            total += a
            i += 1
        else:
            total += b
            o += 1
    return total


@njit(cache=True)
def complete(theta, unary, cost, lam, adjacency, change, order, curve, budget, threshold, max_nodes):
    """Whether the bound with the titles in ``order`` kept jointly exceeds ``threshold``.

    The bound is ``max over the kept titles' images of [their theta + pairs among them +
    crossing pairs maximised over the outside title] + curve[changes left]``, where ``curve`` is
    :func:`budget_curve` of the outside titles (index: changes left of ``budget``, capped at
    its length). Depth-first branch and bound with forward checking (every later title's field
    holds the exact pair values against the titles placed so far) and a budget-aware bound of
    the rest (the largest gains of a change among the later and the outside titles).

    Returns ``(status, nodes, assignment)``: status 0 when no page of the relaxation exceeds
    ``threshold`` (a proof), 1 when one does (its images of ``order`` are returned), 2 when
    ``max_nodes`` ran out.
    """
    n_titles, n_images = theta.shape
    m = order.shape[0]
    pos = np.full(n_titles, -1, np.int64)
    for i in range(m):
        pos[order[i]] = i
    field = _completion_fields(theta, unary, cost, lam, adjacency, order, pos)
    edge_best = _edge_best(unary, cost, lam, adjacency, order, pos)
    keep = np.empty(m)
    chg = np.empty(m)
    for i in range(m):
        _split_max(field, i, order[i], change, keep, chg)
    n_r = curve.shape[0]
    outside_gains = np.empty(max(0, n_r - 1))
    for r in range(n_r - 1):
        outside_gains[r] = curve[r + 1] - curve[r]
    gains = np.empty(m)
    labels = np.empty((m, n_images), np.int64)
    n_labels = np.empty(m, np.int64)
    for i in range(m):
        n_labels[i] = _order_labels(field, i, n_images, labels[i])
    cursor = np.zeros(m, np.int64)
    placed = np.full(m, -1, np.int64)
    value = np.zeros(m + 1)
    used = np.zeros(m + 1, np.int64)
    nodes = 0
    depth = 0
    while depth >= 0:
        if placed[depth] >= 0:  # undo the previous image of this depth
            _place(
                depth,
                placed[depth],
                -1.0,
                order,
                pos,
                unary,
                cost,
                lam,
                adjacency,
                edge_best,
                field,
                change,
                keep,
                chg,
            )
            placed[depth] = -1
        if cursor[depth] >= n_labels[depth]:
            cursor[depth] = 0
            depth -= 1
            continue
        k = labels[depth, cursor[depth]]
        cursor[depth] += 1
        nodes += 1
        if nodes > max_nodes:
            return 2, nodes, placed
        t = order[depth]
        u = used[depth] + np.int64(change[t, k])
        if u > budget:
            continue
        v = value[depth] + field[depth, k]
        if v + _rest_bound(depth, keep, chg, outside_gains, budget - u, gains) + curve[0] <= threshold:
            continue
        _place(depth, k, 1.0, order, pos, unary, cost, lam, adjacency, edge_best, field, change, keep, chg)
        placed[depth] = k
        if v + _rest_bound(depth, keep, chg, outside_gains, budget - u, gains) + curve[0] <= threshold:
            continue
        if depth == m - 1:
            return 1, nodes, placed
        value[depth + 1] = v
        used[depth + 1] = u
        depth += 1
    return 0, nodes, placed


# Reassociation and contraction let the dot products vectorise (about 5x on 64 dimensions);
# no "nnan"/"ninf": -inf marks images that are not allowed. A reordered sum differs from the
# sequential one by rounding only (1e-16 relative), as every floating-point bound here does.
_FASTMATH = {"reassoc", "contract", "nsz", "arcp"}
_DROP = 40.0  # smoothed weights below exp(-_DROP) of a title's largest are left out


@njit(cache=True, fastmath=_FASTMATH)
def embedding_dual_step(ut, emb, m, change, mu, tau, budget, grad_m, theta):
    """One evaluation of the embedding bound: smoothed value and gradient, and the exact value.

    Fills ``theta[t, k] = ut[t, k] - emb[t, k] . m[t]`` (``-inf`` kept where ``ut`` is ``-inf``)
    and ``grad_m`` (T, D) with the gradient in ``m`` of the entropy-smoothed inner maximum with
    the budget priced by ``mu``::

        sum_t tau * log sum_k exp((theta[t, k] - mu * change[t, k]) / tau)

    (an upper bound of that maximum; weights below ``exp(-40)`` of a title's largest are left
    out of the value and the gradient). Returns ``(smoothed, d smoothed / d mu, exact)`` where
    ``exact`` is ``max_a sum_t theta[t, a_t]`` with at most ``budget`` changes, computed exactly.
    """
    n_titles, n_images, dim = emb.shape
    w = np.empty(n_images)
    total = 0.0
    dmu = 0.0
    cut = _DROP * tau
    for t in range(n_titles):
        top = -np.inf
        for k in range(n_images):
            if ut[t, k] == -np.inf:
                theta[t, k] = -np.inf
                w[k] = -np.inf
                continue
            s = 0.0
            for d in range(dim):
                s += emb[t, k, d] * m[t, d]
            v = ut[t, k] - s
            theta[t, k] = v
            v -= mu * change[t, k]
            w[k] = v
            if v > top:
                top = v
        z = 0.0
        for k in range(n_images):
            x = w[k] - top
            if x < -cut:
                w[k] = 0.0
            else:
                w[k] = np.exp(x / tau)
                z += w[k]
        total += top + tau * np.log(z)
        for d in range(dim):
            grad_m[t, d] = 0.0
        for k in range(n_images):
            if w[k] == 0.0:
                continue
            wk = w[k] / z
            dmu -= wk * change[t, k]
            for d in range(dim):
                grad_m[t, d] -= wk * emb[t, k, d]
    return total, dmu, budgeted_max(theta, change, budget)


@njit(cache=True, fastmath=_FASTMATH)
def embedding_theta(ut, emb, m):
    """``ut[t, k] - emb[t, k] . m[t]`` (``-inf`` kept where ``ut`` is ``-inf``)."""
    n_titles, n_images, dim = emb.shape
    out = np.empty((n_titles, n_images))
    for t in range(n_titles):
        for k in range(n_images):
            if ut[t, k] == -np.inf:
                out[t, k] = -np.inf
                continue
            s = 0.0
            for d in range(dim):
                s += emb[t, k, d] * m[t, d]
            out[t, k] = ut[t, k] - s
    return out


@njit(cache=True)
def budgeted_argmax(theta, change, budget):
    """A page attaining :func:`budgeted_max`: each title's best image, then the changes with the
    smallest gain over the best unchanged image given up until at most ``budget`` remain."""
    n_titles, n_images = theta.shape
    a = np.empty(n_titles, np.int64)
    keep_at = np.empty(n_titles, np.int64)
    gains = np.empty(n_titles)
    who = np.empty(n_titles, np.int64)
    n_gains = 0
    for t in range(n_titles):
        best_keep = -np.inf
        best_change = -np.inf
        k_keep = -1
        k_change = -1
        for k in range(n_images):
            v = theta[t, k]
            if change[t, k]:
                if v > best_change:
                    best_change = v
                    k_change = k
            elif v > best_keep:
                best_keep = v
                k_keep = k
        keep_at[t] = k_keep
        if best_change > best_keep:
            a[t] = k_change
            gains[n_gains] = best_change - best_keep
            who[n_gains] = t
            n_gains += 1
        else:
            a[t] = k_keep
    if n_gains > budget:
        order = _argsort(gains, n_gains)
        for i in range(n_gains - budget):
            t = who[order[i]]
            a[t] = keep_at[t]
    return a


@njit(cache=True, fastmath=_FASTMATH)
def embedding_penalty(emb, pairs, weights, a):
    """``sum_p weights[p] max(0, emb[i, a_i] . emb[j, a_j])`` over the pairs ``(i, j)``: a
    page's diversity penalty from unit embeddings (the problem's, up to rounding)."""
    n_titles = a.shape[0]
    dim = emb.shape[2]
    picked = np.empty((n_titles, dim))
    for t in range(n_titles):
        for d in range(dim):
            picked[t, d] = emb[t, a[t], d]
    penalty = 0.0
    for p in range(pairs.shape[0]):
        i = pairs[p, 0]
        j = pairs[p, 1]
        s = 0.0
        for d in range(dim):
            s += picked[i, d] * picked[j, d]
        if s > 0.0:
            penalty += weights[p] * s
    return penalty
