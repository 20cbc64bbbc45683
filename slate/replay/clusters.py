"""Clusters of the standard errors and bootstrap: pages, or hash buckets of members.

Every estimator is a ratio of sums ``sum_c U_c / sum_c V_c`` over independent *clusters*
``c``. By default the clusters are pages (``cluster="page"``): rows of one page share a member
and a moment. When a member's rows on *different* pages are correlated too -- exploration
draws held for a member across sessions (sticky exploration), a member's taste -- pages are
not independent, and page-clustered standard errors and intervals are too narrow (on
``compose()`` logs with sticky exploration, 95% intervals covered 0.85-0.89; clustering on
members restored 0.94-0.98; ``docs/serving.md``).

``cluster="member"`` clusters on *hash buckets* of the member ids::

    bucket = splitmix64(member_id XOR MEMBER_SALT) mod n_buckets

with SplitMix64 (Steele, Lea & Flood 2014) and ``n_buckets = 65536`` by default. A bucket is a
union of members, and buckets are independent of each other whenever members are, so the
cluster-robust variance with buckets as clusters is valid; with many more members than buckets
it stays consistent (65,536 clusters). Buckets, not exact members, because a member's rows span
files and chunks: the partitioned path keeps per-bucket exact sums, ``O(n_buckets)`` memory
whatever the size of the log, where per-member state would grow with the number of members.
The Poisson bootstrap under member clustering draws the count of every page of a bucket from a
hash of ``(seed, bucket, replicate)``, so a bucket is resampled as a whole.

Every path uses these functions, so the buckets (and the estimates) agree between the
in-memory and the partitioned paths.

References
----------
Steele, G. L., Lea, D. & Flood, C. H. (2014). Fast splittable pseudorandom number generators.
OOPSLA 2014.
Cameron, A. C. & Miller, D. L. (2015). A practitioner's guide to cluster-robust inference.
Journal of Human Resources 50(2).
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
from numpy.typing import ArrayLike, NDArray

from slate.replay._exact import _mix
from slate.replay.policy import InvalidReplayInputError

__all__ = [
    "CLUSTER_CHOICES",
    "DEFAULT_N_BUCKETS",
    "MAX_N_BUCKETS",
    "MEMBER_SALT",
    "check_cluster",
    "check_n_buckets",
    "cluster_sums",
    "member_buckets",
    "page_buckets",
]

CLUSTER_CHOICES = ("page", "member")
"""The values of the ``cluster`` parameter."""
DEFAULT_N_BUCKETS = 65536
"""Member buckets by default (2**16)."""
MAX_N_BUCKETS = 2**24
"""Largest ``n_buckets`` accepted (the partitioned path keeps exact sums per bucket)."""
MEMBER_SALT = 0x6A09E667F3BCC908
"""Fixed salt of the member hash (the first 64 bits of the fractional part of sqrt(2))."""


def check_cluster(cluster: Any, who: str = "evaluate") -> str:
    """``cluster`` if it is one of :data:`CLUSTER_CHOICES`, else a clear error.

    Examples
    --------
    >>> check_cluster("member")
    'member'
    >>> check_cluster("session")
    Traceback (most recent call last):
    ...
    slate.errors.InvalidReplayInputError: The 'cluster' parameter of evaluate must be \
'page' or 'member'; got 'session' instead.
    """
    if not isinstance(cluster, str) or cluster not in CLUSTER_CHOICES:
        raise InvalidReplayInputError(
            f"The 'cluster' parameter of {who} must be 'page' or 'member'; got {cluster!r} "
            f"instead."
        )
    return cluster


def check_n_buckets(n_buckets: Any, who: str = "evaluate") -> int:
    """``n_buckets`` as an int if it is an integer in ``[2, MAX_N_BUCKETS]``, else a clear error.

    Examples
    --------
    >>> check_n_buckets(1024)
    1024
    >>> check_n_buckets(1)
    Traceback (most recent call last):
    ...
    slate.errors.InvalidReplayInputError: The 'n_buckets' parameter of evaluate must be \
an integer in [2, 16777216]; got 1 instead.
    """
    if (
        isinstance(n_buckets, (bool, np.bool_))
        or not isinstance(n_buckets, (int, np.integer))
        or not 2 <= int(n_buckets) <= MAX_N_BUCKETS
    ):
        raise InvalidReplayInputError(
            f"The 'n_buckets' parameter of {who} must be an integer in [2, {MAX_N_BUCKETS}]; got "
            f"{n_buckets!r} instead."
        )
    return int(n_buckets)


@numba.njit(cache=True, nogil=True)
def _buckets(
    member_id: NDArray[np.int64], salt: np.uint64, n_buckets: np.uint64
) -> NDArray[np.int64]:  # pragma: no cover - compiled
    out = np.empty(len(member_id), dtype=np.int64)
    for i in range(len(member_id)):
        out[i] = np.int64(_mix(np.uint64(member_id[i]) ^ salt) % n_buckets)
    return out


def member_buckets(member_id: ArrayLike, n_buckets: int = DEFAULT_N_BUCKETS) -> NDArray[np.int64]:
    """The bucket of each member id: ``splitmix64(member_id XOR MEMBER_SALT) mod n_buckets``.

    Parameters
    ----------
    member_id : array_like (n,) of int
        Member ids (int64; negative ids are hashed as their two's complement).
    n_buckets : int, default 65536
        Number of buckets, in ``[2, MAX_N_BUCKETS]``.

    Returns
    -------
    ndarray (n,), int64
        Buckets in ``[0, n_buckets)``; the same member always gets the same bucket.

    Raises
    ------
    InvalidReplayInputError
        When ``n_buckets`` is out of range or ``member_id`` is not a 1-d array of integers.

    Examples
    --------
    >>> import numpy as np
    >>> b = member_buckets(np.array([7, 8, 7]), n_buckets=16)
    >>> b.dtype, bool(b[0] == b[2]), bool(np.all((0 <= b) & (b < 16)))
    (dtype('int64'), True, True)
    """
    n = check_n_buckets(n_buckets, "member_buckets")
    ids = np.asarray(member_id)
    if ids.ndim != 1 or not (ids.size == 0 or np.issubdtype(ids.dtype, np.integer)):
        raise InvalidReplayInputError(
            f"The 'member_id' of member_buckets must be a 1-d array of integers; got "
            f"{ids.dtype} of shape {ids.shape} instead."
        )
    if ids.dtype == np.uint64:
        ids = ids.view(np.int64)
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    return _buckets(ids, np.uint64(MEMBER_SALT), np.uint64(n))


def page_buckets(log: Any, n_buckets: int = DEFAULT_N_BUCKETS) -> NDArray[np.int64]:
    """The member bucket of each page of an :class:`~slate.logs.ImpressionLog`, in
    ``log.page_index`` order (the order of the estimators' per-page sums ``U``, ``V``).

    Raises
    ------
    InvalidReplayInputError
        When a page has rows of two members (member clustering needs one member per page).

    Examples
    --------
    >>> from slate.logs import read_impressions
    >>> from slate.logs.parquet import example_table
    >>> log, _ = read_impressions(example_table())
    >>> bool(np.all(page_buckets(log) == member_buckets([1, 2])))
    True
    """
    first = log.page_order[log.page_starts[:-1]]
    member = np.asarray(log.member_id[first], dtype=np.int64)
    odd = np.flatnonzero(np.asarray(log.member_id) != member[log.page_index])
    if len(odd):
        row = int(odd[0])
        raise InvalidReplayInputError(
            f"Member clustering needs one member per page; got page_id {int(log.page_id[row])} "
            f"with member_ids {int(member[log.page_index[row]])} and "
            f"{int(log.member_id[row])} ({len(odd)} rows differ from their page's first row)."
        )
    return member_buckets(member, n_buckets)


def cluster_sums(
    cluster: ArrayLike, *values: ArrayLike
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Per-cluster sums of per-row (or per-page) terms: what the cluster-robust standard error
    (:func:`slate.replay.stats.ratio_se`) and the cluster bootstrap
    (:func:`slate.replay.stats.bootstrap_ratio`) take.

    Parameters
    ----------
    cluster : array_like (n,) of int
        Cluster of each term (e.g. :func:`page_buckets`, or :func:`member_buckets` of the
        rows' member ids).
    *values : array_like (n,) of float
        The terms, e.g. ``U`` and ``V`` of an estimator.

    Returns
    -------
    ids : ndarray (n_clusters,), int64
        The clusters present, sorted.
    sums : ndarray (len(values), n_clusters), float64
        ``sums[j, c]``: sum of ``values[j]`` over the terms of cluster ``ids[c]``.

    Examples
    --------
    >>> import numpy as np
    >>> from slate.replay.stats import ratio_se
    >>> U, V = np.array([1.0, 0.0, 1.0, 1.0]), np.ones(4)
    >>> ids, (Uc, Vc) = cluster_sums(np.array([5, 5, 9, 9]), U, V)
    >>> ids.tolist(), Uc.tolist(), Vc.tolist()
    ([5, 9], [1.0, 2.0], [2.0, 2.0])
    >>> ratio_se(Uc, Vc)  # two clusters: sqrt(2 * ((1 - 1.5)**2 + (2 - 1.5)**2)) / 4
    0.25
    """
    c = np.asarray(cluster)
    if c.ndim != 1 or not (c.size == 0 or np.issubdtype(c.dtype, np.integer)):
        raise InvalidReplayInputError(
            f"The 'cluster' ids of cluster_sums must be a 1-d array of integers; got {c.dtype} "
            f"of shape {c.shape} instead."
        )
    ids, inverse = np.unique(c, return_inverse=True)
    sums = np.zeros((len(values), len(ids)), dtype=np.float64)
    for j, v in enumerate(values):
        x = np.asarray(v, dtype=np.float64)
        if x.shape != c.shape:
            raise InvalidReplayInputError(
                f"The values of cluster_sums must have the shape of 'cluster' {c.shape}; got "
                f"{x.shape} for values[{j}] instead."
            )
        sums[j] = np.bincount(inverse.reshape(-1), x, len(ids))
    return ids.astype(np.int64), sums
