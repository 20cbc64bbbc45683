"""Delayed rewards: remember what was shown, learn when (and in whatever order) outcomes arrive."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from slate.bandit.base import ScoringPolicy, check_log
from slate.errors import InvalidProblemError

__all__ = ["PendingImpressions"]


class PendingImpressions:
    """Impressions waiting for their outcome, keyed by impression id.

    At decision time :meth:`add` stores the features and arm of the shown image. When outcomes
    arrive (later, in any order) :meth:`resolve` updates the policy with them as one mini-batch
    and forgets them. :meth:`expire` labels impressions whose outcome never came (no quality play)
    after a time limit. For the models without forgetting the order of arrival does not change the
    fitted model.

    Examples
    --------
    >>> import numpy as np
    >>> from slate.bandit import LinUCB, PendingImpressions
    >>> policy, pending = LinUCB(), PendingImpressions()
    >>> pending.add(["imp-1", "imp-2"], np.eye(2), [0, 1], timestamps=[0.0, 1.0])
    >>> _ = pending.resolve(policy, ["imp-2"], [1.0])
    >>> len(pending), policy.n_[:2].tolist()
    (1, [0.0, 1.0])
    """

    def __init__(self) -> None:
        self._rows: dict[str, tuple[NDArray[np.float64], int, float]] = {}
        self.n_features_: int | None = None

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, impression_id: object) -> bool:
        return impression_id in self._rows

    def add(
        self, impression_ids: Sequence[str], x: ArrayLike, arms: ArrayLike, *, timestamps: ArrayLike | None = None
    ) -> None:
        """Remember shown impressions (features of the shown image and its arm).

        Raises
        ------
        InvalidProblemError
            An id already pending or repeated, or malformed features.
        """
        n = len(impression_ids)
        batch = check_log(x, arms, np.zeros(n), n_features=self.n_features_)
        ts = np.zeros(n) if timestamps is None else np.asarray(timestamps, dtype=np.float64).reshape(-1)
        if ts.shape != (n,) or not np.isfinite(ts).all():
            raise InvalidProblemError(f"The 'timestamps' field must be {n} finite numbers; got shape {ts.shape} instead.")
        seen: set[str] = set()
        for iid in impression_ids:
            if iid in self._rows or iid in seen:
                raise InvalidProblemError(f"Impression id '{iid}' is already pending.")
            seen.add(iid)
        self.n_features_ = batch.x.shape[1]
        for i, iid in enumerate(impression_ids):
            self._rows[str(iid)] = (batch.x[i], int(batch.arms[i]), float(ts[i]))

    def _take(self, impression_ids: Sequence[str]) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
        missing = [iid for iid in impression_ids if iid not in self._rows]
        if missing:
            raise InvalidProblemError(f"Unknown impression id '{missing[0]}' (not pending: never added, or already resolved).")
        if len(set(impression_ids)) != len(impression_ids):
            raise InvalidProblemError("The same impression id appears twice in one resolve call.")
        rows = [self._rows[iid] for iid in impression_ids]
        x = np.stack([r[0] for r in rows]) if rows else np.zeros((0, self.n_features_ or 0))
        return x, np.array([r[1] for r in rows], dtype=np.int64)

    def resolve(
        self, policy: ScoringPolicy, impression_ids: Sequence[str], rewards: ArrayLike, sample_weight: ArrayLike | None = None
    ) -> Any:
        """Update ``policy`` with the outcomes of pending impressions; returns the policy."""
        x, arms = self._take(impression_ids)
        policy.update(x, arms, rewards, sample_weight)
        for iid in impression_ids:
            del self._rows[iid]
        return policy

    def expire(self, policy: ScoringPolicy, now: float, max_age: float) -> int:
        """Label impressions older than ``max_age`` as "no quality play" (0) and learn from them.

        Returns the number of impressions expired.
        """
        old = [iid for iid, (_, _, t) in self._rows.items() if now - t > max_age]
        if old:
            self.resolve(policy, old, np.zeros(len(old)))
        return len(old)
