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
def bfs_order(ptr, nbr, kept, roots):
    """The kept titles in breadth-first order over the adjacency ``(ptr, nbr)``, starting from
    each of ``roots`` in turn that is kept and not reached yet (neighbours close in a search)."""
    n_titles = kept.shape[0]
    seen = np.empty(n_titles, np.bool_)
    n_kept = 0
    for t in range(n_titles):
        seen[t] = not kept[t]
        n_kept += kept[t]
    order = np.empty(n_kept, np.int64)
    head = 0
    tail = 0
    for root in roots:
        if seen[root]:
            continue
        seen[root] = True
        order[tail] = root
        tail += 1
        while head < tail:
            t = order[head]
            head += 1
            for e in range(ptr[t], ptr[t + 1]):
                o = nbr[e]
                if not seen[o]:
                    seen[o] = True
                    order[tail] = o
                    tail += 1
    return order


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
    of a change among them all (``outside_gains``: the outside titles', decreasing).

    ``gains`` is scratch: it keeps the (at most ``n_left``) largest positive gains of the later
    titles in decreasing order, by insertion, so that nothing is allocated or fully sorted."""
    m = keep.shape[0]
    total = 0.0
    n_g = 0
    for j in range(d + 1, m):
        total += keep[j]
        g = chg[j] - keep[j]
        if not g > 0.0 or n_left <= 0 or (n_g == n_left and g <= gains[n_g - 1]):
            continue
        x = n_g if n_g < n_left else n_left - 1  # the slot it displaces (the smallest when full)
        while x > 0 and gains[x - 1] < g:
            gains[x] = gains[x - 1]
            x -= 1
        gains[x] = g
        if n_g < n_left:
            n_g += 1
    if n_left <= 0:
        return total
    i = 0  # merge the two decreasing lists
    o = 0
    n_out = outside_gains.shape[0]
    for _ in range(n_left):
        a = gains[i] if i < n_g else 0.0
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
def embedding_dual_eval(data, x, par, theta, grad, buf):
    """One evaluation of the embedding bound at ``x`` (the multipliers ``y`` (rank, dim)
    flattened, then the budget price ``mu``): returns ``(smoothed, exact)`` and fills ``grad``
    with the smoothed value's gradient and ``theta`` with the Lagrangian.

    ``data = (ut, emb, factor, change, ...)``; ``par = (tau, 1 / d, budget, priced, ...)``.
    With ``m[t] = sum_r factor[t, r] y[r]`` and ``theta[t, k] = ut[t, k] - emb[t, k] . m[t]``
    (``-inf`` kept where ``ut`` is ``-inf``)::

        exact    = max_a sum_t theta[t, a_t] (at most ``budget`` changes) + ||y||^2 / (2 d)
        smoothed = sum_t tau log sum_k exp((theta[t, k] - mu change[t, k]) / tau)
                   + ||y||^2 / (2 d) + mu budget

    (the exact value is the bound; the smoothed one, with the budget priced by ``mu`` instead
    of kept, is above it and is what the minimisation follows). Weights below ``exp(-40)`` of a title's
    largest are left out of the smoothed value and its gradient. ``buf``: (3, max(dim, n_images)).
    """
    ut, emb, factor, change = data[0], data[1], data[2], data[3]
    tau, inv_d, budget, priced = par[0], par[1], par[2], par[3] > 0.0
    n_titles, n_images, dim = emb.shape
    rank = factor.shape[1]
    n = x.shape[0]
    mu = x[n - 1] if priced else 0.0
    m = buf[0]
    gm = buf[1]
    w = buf[2]
    for i in range(n):
        grad[i] = 0.0
    total = 0.0
    dmu = 0.0
    cut = _DROP * tau
    for t in range(n_titles):
        for d in range(dim):
            s = 0.0
            for r in range(rank):
                s += factor[t, r] * x[r * dim + d]
            m[d] = s
        top = -np.inf
        for k in range(n_images):
            if ut[t, k] == -np.inf:
                theta[t, k] = -np.inf
                w[k] = -np.inf
                continue
            s = 0.0
            for d in range(dim):
                s += emb[t, k, d] * m[d]
            v = ut[t, k] - s
            theta[t, k] = v
            v -= mu * change[t, k]
            w[k] = v
            if v > top:
                top = v
        z = 0.0
        for k in range(n_images):
            v = w[k] - top
            if v < -cut:
                w[k] = 0.0
            else:
                w[k] = np.exp(v / tau)
                z += w[k]
        total += top + tau * np.log(z)
        for d in range(dim):
            gm[d] = 0.0
        for k in range(n_images):
            if w[k] == 0.0:
                continue
            wk = w[k] / z
            dmu -= wk * change[t, k]
            for d in range(dim):
                gm[d] -= wk * emb[t, k, d]
        for r in range(rank):
            f = factor[t, r]
            if f != 0.0:
                for d in range(dim):
                    grad[r * dim + d] += f * gm[d]
    norm = 0.0
    for i in range(n - 1):
        norm += x[i] * x[i]
        grad[i] += x[i] * inv_d
    norm *= 0.5 * inv_d
    exact = budgeted_max(theta, change, np.int64(budget)) + norm
    if priced:
        grad[n - 1] = dmu + budget
        total += mu * budget
    else:
        grad[n - 1] = 0.0
    return total + norm, exact


# Slots of the minimisation's state (``fs``: floats, ``ints``: integers), see embedding_lbfgs.
_VALUE, _BEST, _OBJECTIVE, _STEP, _LAST = 0, 1, 2, 3, 4
_STORED, _HEAD, _EVALS, _PAGES, _HAS_PAGE, _PHASE, _ITERS = 0, 1, 2, 3, 4, 5, 6


@njit(cache=True)
def _met(fs, par):
    """The best bound meets the best page within ``rtol`` (relative to the bound) or proves it."""
    best = fs[_BEST]
    obj = fs[_OBJECTIVE]
    if obj == -np.inf:
        return False
    slack = best - obj
    return slack <= par[5] * max(abs(best), 1e-9) or slack <= par[6] * max(1.0, abs(obj)) * (1.0 + 1e-9)


@njit(cache=True)
def _record(data, par, st, point, exact):
    """Keep the best exact bound and its multipliers; when tracking pages, score the page the
    multipliers point at (``theta`` holds their Lagrangian) and keep the best."""
    fs, ints, best_x, page, theta = st[5], st[6], st[7], st[8], st[12]
    if exact >= fs[_BEST]:
        return
    fs[_BEST] = exact
    best_x[:] = point
    if par[4] <= 0.0 or _met(fs, par):
        return
    unary, pairs, weights = data[4], data[5], data[6]
    a = budgeted_argmax(theta, data[3], np.int64(par[2]))
    ints[_PAGES] += 1
    last = st[16]
    fs[_LAST] = embedding_penalty_moved(
        data[1], pairs, weights, (data[7], data[8], data[9]), last, a, fs[_LAST]
    )
    value = -fs[_LAST]
    for t in range(a.shape[0]):
        value += unary[t, a[t]]
    if value > fs[_OBJECTIVE]:
        fs[_OBJECTIVE] = value
        page[:] = a
        ints[_HAS_PAGE] = 1


@njit(cache=True)
def _direction(g, s_mem, y_mem, rho, alpha, stored, head, first, q):
    """L-BFGS two-loop recursion over the ``stored`` newest pairs (ring buffer ending before
    ``head``); without pairs the first step is ``first * g`` (``first[0] < 0``: ``g`` over its
    largest entry)."""
    n = g.shape[0]
    size = s_mem.shape[0]
    for i in range(n):
        q[i] = g[i]
    for j in range(stored):
        i = (head - 1 - j) % size
        a = 0.0
        for c in range(n):
            a += s_mem[i, c] * q[c]
        a *= rho[i]
        alpha[i] = a
        for c in range(n):
            q[c] -= a * y_mem[i, c]
    if stored:
        i = (head - 1) % size
        sy = 0.0
        yy = 0.0
        for c in range(n):
            sy += s_mem[i, c] * y_mem[i, c]
            yy += y_mem[i, c] * y_mem[i, c]
        for c in range(n):
            q[c] *= sy / yy
    elif first[0] >= 0.0:
        for c in range(n):
            q[c] *= first[c]
    else:
        top = 1.0
        for c in range(n):
            top = max(top, abs(g[c]))
        for c in range(n):
            q[c] /= top
    for j in range(stored):
        i = (head - stored + j) % size
        b = 0.0
        for c in range(n):
            b += y_mem[i, c] * q[c]
        b *= rho[i]
        for c in range(n):
            q[c] += (alpha[i] - b) * s_mem[i, c]


@njit(cache=True)
def embedding_lbfgs(data, par, st, max_evals):
    """Minimise the smoothed embedding bound by L-BFGS (backtracking, the budget price kept
    >= 0), as a resumable state machine: at most ``max_evals`` evaluations per call.

    ``st = (x, g, s_mem, y_mem, rho, fs, ints, best_x, page, trial, q, tgrad, theta, buf,
    first, alpha, last)`` (``last``: the last page scored, ``fs[_LAST]`` its penalty); ``ints[_PHASE]`` 0 starts at this temperature (``par[0]``) from ``x``.
    Every evaluation's exact bound is recorded (:func:`_record`). ``par = (tau, 1 / d, budget,
    priced, track, rtol, proof_rtol, iterations)``. Returns 1 when the bound meets the best
    page (:func:`_met`), 2 when this temperature is done (no decrease, or ``iterations``
    iterations), 0 when ``max_evals`` ran out.
    """
    x, g, s_mem, y_mem, rho, fs, ints = st[0], st[1], st[2], st[3], st[4], st[5], st[6]
    trial, q, tgrad, theta, buf, first, alpha = st[9], st[10], st[11], st[12], st[13], st[14], st[15]
    n = x.shape[0]
    size = s_mem.shape[0]
    evals = 0
    if ints[_PHASE] == 0:
        value, exact = embedding_dual_eval(data, x, par, theta, g, buf)
        evals += 1
        ints[_EVALS] += 1
        _record(data, par, st, x, exact)
        fs[_VALUE] = value
        ints[_STORED] = 0
        ints[_HEAD] = 0
        ints[_ITERS] = 0
        ints[_PHASE] = 1
        if _met(fs, par):
            return 1
    while evals < max_evals:
        if ints[_PHASE] == 1:
            if ints[_ITERS] >= par[7]:
                return 2
            _direction(g, s_mem, y_mem, rho, alpha, ints[_STORED], ints[_HEAD], first, q)
            fs[_STEP] = 1.0
            ints[_PHASE] = 2
        step = fs[_STEP]
        for c in range(n):
            trial[c] = x[c] - step * q[c]
        trial[n - 1] = max(0.0, trial[n - 1])
        t_value, exact = embedding_dual_eval(data, trial, par, theta, tgrad, buf)
        evals += 1
        ints[_EVALS] += 1
        _record(data, par, st, trial, exact)
        if _met(fs, par):
            return 1
        decrease = 0.0
        for c in range(n):
            decrease += g[c] * (x[c] - trial[c])
        if t_value > fs[_VALUE] - 1e-4 * decrease and step >= 1e-8:
            fs[_STEP] = 0.5 * step
            continue
        ints[_PHASE] = 1
        if t_value >= fs[_VALUE]:
            return 2
        i = ints[_HEAD]
        sy = 0.0
        for c in range(n):
            s_mem[i, c] = trial[c] - x[c]
            y_mem[i, c] = tgrad[c] - g[c]
            sy += s_mem[i, c] * y_mem[i, c]
        if sy > 1e-12:
            rho[i] = 1.0 / sy
            ints[_HEAD] = (i + 1) % size
            ints[_STORED] = min(ints[_STORED] + 1, size)
        x[:] = trial
        g[:] = tgrad
        fs[_VALUE] = t_value
        ints[_ITERS] += 1
    return 0


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


@njit(cache=True, fastmath=_FASTMATH)
def embedding_penalty_moved(emb, pairs, weights, adjacency, last, a, penalty):
    """The penalty of page ``a`` (:func:`embedding_penalty`) from ``penalty``, that of page
    ``last``, moving the titles where they differ one at a time over their pairs (CSR
    ``adjacency = (ptr, nbr, pid)``); ``last`` becomes ``a``. Recomputed from scratch when
    ``penalty`` is NaN or more than a quarter of the titles moved."""
    ptr, nbr, pid = adjacency
    n_titles = a.shape[0]
    dim = emb.shape[2]
    moved = 0
    for t in range(n_titles):
        if a[t] != last[t]:
            moved += 1
    if penalty != penalty or 4 * moved > n_titles:
        last[:] = a
        return embedding_penalty(emb, pairs, weights, a)
    for t in range(n_titles):
        old = last[t]
        new = a[t]
        if old == new:
            continue
        for e in range(ptr[t], ptr[t + 1]):
            j = nbr[e]
            b = last[j]
            s_old = 0.0
            s_new = 0.0
            for d in range(dim):
                s_old += emb[t, old, d] * emb[j, b, d]
                s_new += emb[t, new, d] * emb[j, b, d]
            penalty += weights[pid[e]] * (max(0.0, s_new) - max(0.0, s_old))
        last[t] = new
    return penalty
