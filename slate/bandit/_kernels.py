"""Sequential update kernels (numba): one rank-one update per impression, in log order.

Online learning is inherently sequential (each impression updates the inverse the next one
uses), so these loops are compiled instead of vectorised. Without forgetting every update is a
Sherman-Morrison rank-one update of the stored inverse (no re-inversion); with forgetting the
discounted Gram matrix is no longer a rank-one change of the previous one and the arm's inverse is
recomputed.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["gram_update", "gram_update_one", "logistic_update"]


@njit(cache=True)
def _spd_inverse(M: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """Inverse of a symmetric positive definite matrix by Cholesky, in plain loops."""
    d = M.shape[0]
    L = np.zeros((d, d))
    for j in range(d):
        s = M[j, j]
        for k in range(j):
            s -= L[j, k] * L[j, k]
        L[j, j] = np.sqrt(s)
        for i in range(j + 1, d):
            s = M[i, j]
            for k in range(j):
                s -= L[i, k] * L[j, k]
            L[i, j] = s / L[j, j]
    Linv = np.zeros((d, d))  # L^-1 (lower triangular)
    for i in range(d):
        Linv[i, i] = 1.0 / L[i, i]
        for j in range(i):
            s = 0.0
            for k in range(j, i):
                s -= L[i, k] * Linv[k, j]
            Linv[i, j] = s / L[i, i]
    out = np.empty((d, d))  # M^-1 = L^-T L^-1
    for i in range(d):
        for j in range(i, d):
            s = 0.0
            for k in range(j, d):
                s += Linv[k, i] * Linv[k, j]
            out[i, j] = s
            out[j, i] = s
    return out


@njit(cache=True)
def _reinvert(A: np.ndarray, lam: float) -> np.ndarray:  # pragma: no cover - compiled
    M = A.copy()
    for p in range(A.shape[0]):
        M[p, p] += lam
    return _spd_inverse(M)


@njit(cache=True)
def _rank_one_downdate(P: np.ndarray, xi: np.ndarray, c: float, u: np.ndarray) -> None:  # pragma: no cover - compiled
    """Sherman-Morrison in place: ``P <- (P^-1 + c x x^T)^-1`` for ``c > 0`` (``u`` is scratch)."""
    d = xi.shape[0]
    denom = 1.0 / c
    for p in range(d):
        s = 0.0
        for q in range(d):
            s += P[p, q] * xi[q]
        u[p] = s
        denom += xi[p] * s
    for p in range(d):
        up = u[p] / denom
        for q in range(d):
            P[p, q] -= up * u[q]


@njit(cache=True)
def _add_one(  # pragma: no cover - compiled
    A: np.ndarray,
    b: np.ndarray,
    n: np.ndarray,
    events: np.ndarray,
    Ainv: np.ndarray,
    theta: np.ndarray,
    a: int,
    xi: np.ndarray,
    ri: float,
    wi: float,
    lam: float,
    mu0: np.ndarray,
    gamma: float,
    with_theta: bool,
    u: np.ndarray,
) -> None:
    d = xi.shape[0]
    if gamma < 1.0:
        for p in range(d):
            b[a, p] *= gamma
            for q in range(d):
                A[a, p, q] *= gamma
        n[a] *= gamma
    for p in range(d):
        wxp = wi * xi[p]
        b[a, p] += wxp * ri
        for q in range(d):
            A[a, p, q] += wxp * xi[q]
    n[a] += wi
    events[a] += 1
    if gamma < 1.0:
        Ainv[a] = _reinvert(A[a], lam)
    else:
        _rank_one_downdate(Ainv[a], xi, wi, u)
    if with_theta:
        for p in range(d):
            s = 0.0
            for q in range(d):
                s += Ainv[a, p, q] * (b[a, q] + lam * mu0[q])
            theta[a, p] = s


@njit(cache=True)
def gram_update(  # pragma: no cover - compiled
    A: np.ndarray,
    b: np.ndarray,
    n: np.ndarray,
    events: np.ndarray,
    Ainv: np.ndarray,
    theta: np.ndarray,
    x: np.ndarray,
    arms: np.ndarray,
    r: np.ndarray,
    w: np.ndarray,
    lam: float,
    mu0: np.ndarray,
    gamma: float,
    with_theta: bool,
) -> None:
    """Add impressions one by one to per-arm ridge statistics and their inverses, in place.

    ``A[a] = sum w x x^T`` and ``b[a] = sum w r x`` (data only, the prior ``lam * I`` is not in
    ``A``); ``Ainv[a] = (lam I + A[a])^-1``; ``theta[a] = Ainv[a] (lam mu0 + b[a])``.
    """
    u = np.empty(x.shape[1])
    for i in range(x.shape[0]):
        if w[i] > 0.0:
            _add_one(A, b, n, events, Ainv, theta, arms[i], x[i], r[i], w[i], lam, mu0, gamma, with_theta, u)


@njit(cache=True)
def gram_update_one(  # pragma: no cover - compiled
    A: np.ndarray,
    b: np.ndarray,
    n: np.ndarray,
    events: np.ndarray,
    Ainv: np.ndarray,
    theta: np.ndarray,
    dirty: np.ndarray,
    x: np.ndarray,
    arm: int,
    r: float,
    lam: float,
    mu0: np.ndarray,
    gamma: float,
) -> bool:
    """One impression of an existing arm, validated inside the kernel.

    Returns False (changing nothing) when ``x`` is not finite or ``r`` is outside [0, 1], so that
    the caller can fall back to the checks that name the problem.
    """
    if not (r >= 0.0 and r <= 1.0):
        return False
    for p in range(x.shape[0]):
        if not np.isfinite(x[p]):
            return False
    u = np.empty(x.shape[0])
    _add_one(A, b, n, events, Ainv, theta, arm, x, r, 1.0, lam, mu0, gamma, True, u)
    dirty[arm] = True
    return True


@njit(cache=True)
def logistic_update(  # pragma: no cover - compiled
    H: np.ndarray,
    P: np.ndarray,
    m: np.ndarray,
    n: np.ndarray,
    events: np.ndarray,
    x: np.ndarray,
    arms: np.ndarray,
    r: np.ndarray,
    w: np.ndarray,
    lam: float,
    gamma: float,
) -> None:
    """Online Laplace update of per-arm Bayesian logistic regression, in place.

    One Newton step from the current mean per impression: with ``p = sigmoid(x . m)``,
    ``H += w p (1 - p) x x^T`` (``P = H^-1`` by Sherman-Morrison) and ``m += w P x (r - p)``.
    With forgetting, the data part of the precision is discounted: ``H = lam I + gamma (H - lam I)``.
    """
    d = x.shape[1]
    u = np.empty(d)
    for i in range(x.shape[0]):
        a = arms[i]
        wi = w[i]
        if wi <= 0.0:
            continue
        xi = x[i]
        z = 0.0
        for p in range(d):
            z += xi[p] * m[a, p]
        prob = 1.0 / (1.0 + np.exp(-z))
        c = wi * prob * (1.0 - prob)
        if gamma < 1.0:
            for p in range(d):
                for q in range(d):
                    H[a, p, q] *= gamma
                H[a, p, p] += (1.0 - gamma) * lam
            n[a] *= gamma
        for p in range(d):
            cxp = c * xi[p]
            for q in range(d):
                H[a, p, q] += cxp * xi[q]
        n[a] += wi
        events[a] += 1
        if gamma < 1.0:
            P[a] = _spd_inverse(H[a])
        elif c > 0.0:
            _rank_one_downdate(P[a], xi, c, u)
        g = wi * (r[i] - prob)
        for p in range(d):
            s = 0.0
            for q in range(d):
                s += P[a, p, q] * xi[q]
            m[a, p] += g * s
