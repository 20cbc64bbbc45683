"""Replay across a member's sessions: stability policies and policies that learn.

Two questions need the order of events, not just the events:

* **Stability.** A policy that keeps the image a member saw last time (unless another is much
  better) decides according to the member's history. :func:`previous_shown` recovers, for
  every row, the image the member *actually saw* for the title in their previous session, and
  :class:`StickyPolicy` decides on top of that real history (``history="logged"``): it is then
  an ordinary target policy, evaluated by every estimator of :func:`slate.replay.evaluate`
  (the history is part of the context, so the estimators' assumptions are unchanged), and its
  churn against what the member saw is ``churn_vs_previous``.
* **State that the policy's own choices create.** A policy that learns from what it showed, or
  that is sticky to what *it* showed, changes its state only through the events it produces.
  :func:`sequential_replay` is the replay method of Li et al. (2011) for such policies: events
  are visited in time order, the policy decides with its current state, an event is accepted
  with probability ``pi(a|x) / (M mu(a|x))`` (with uniform logging and a deterministic
  policy: when it picks the logged image), and only accepted events update the state (for a
  learner: its model; for a sticky policy: what it showed the member). The accepted events are
  distributed as the policy's own online trajectory, so their mean reward estimates its online
  take fraction, and their running mean its learning curve.

References
----------
Li, L., Chu, W., Langford, J. & Wang, X. (2011). Unbiased offline evaluation of
contextual-bandit-based news article recommendation algorithms. WSDM.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numba
import numpy as np
from numpy.typing import NDArray
from scipy import stats as sps

from slate.logs.log import ImpressionLog
from slate.replay.estimators import row_uniforms
from slate.replay.policy import ActionDistribution, InvalidReplayInputError

__all__ = [
    "BanditLearner",
    "SequentialReplayResult",
    "SequentialTarget",
    "StickyPolicy",
    "event_order",
    "previous_shown",
    "sequential_replay",
]


@numba.njit(cache=True, nogil=True)
def _previous_in_order(
    order: NDArray[np.int64], member: NDArray[np.int64], title: NDArray[np.int32],
    session: NDArray[np.int64], image: NDArray[np.int32],
) -> NDArray[np.int32]:  # pragma: no cover - compiled
    """Visit rows grouped by (member, title), in time order; each row gets the image of the
    last row of the group's previous session."""
    out = np.full(len(member), -1, dtype=np.int32)
    prev_image = -1
    last_image = -1
    current = np.int64(0)
    for t in range(len(order)):
        i = order[t]
        new_group = t == 0 or member[i] != member[order[t - 1]] or title[i] != title[order[t - 1]]
        if new_group:
            prev_image = -1
            last_image = -1
            current = session[i]
        elif session[i] != current:
            prev_image = last_image
            current = session[i]
        out[i] = prev_image
        last_image = image[i]
    return out


def previous_shown(log: ImpressionLog) -> NDArray[np.int32]:
    """For every row, the image (code) the member was shown for the same title in their
    previous session, ``-1`` when none: the last row of the previous session of that member
    and title, sessions ordered by time.

    Examples
    --------
    >>> import pyarrow as pa
    >>> from slate.logs import read_impressions
    >>> from slate.logs.parquet import example_table
    >>> log, _ = read_impressions(example_table().set_column(0, "member_id", pa.array([1] * 4)))
    >>> [log.image_ids[i] if i >= 0 else None for i in previous_shown(log)]
    [None, None, 'T1-a', 'T2-b']
    """
    order = np.lexsort((log.page_id, log.session_id, log.timestamp, log.title, log.member_id))
    return _previous_in_order(order.astype(np.int64), log.member_id, log.title, log.session_id,
                              log.image)


def event_order(log: ImpressionLog) -> NDArray[np.int64]:
    """Rows in time order: pages by timestamp (then page id), a page's rows by layout position."""
    return np.lexsort((log.col, log.row, log.page_id, log.timestamp)).astype(np.int64)


def _candidate_scores(policy: Any, log: ImpressionLog) -> NDArray[np.float64]:
    if not hasattr(policy, "scores"):
        raise InvalidReplayInputError(
            f"The 'base' policy of StickyPolicy must have scores(log) (e.g. a LinearPolicy); got "
            f"{type(policy).__name__} instead."
        )
    scores = np.asarray(policy.scores(log), dtype=np.float64)
    if scores.shape != (log.n_rows, log.k_max):
        raise InvalidReplayInputError(
            f"The scores of the 'base' policy must have shape ({log.n_rows}, {log.k_max}); got "
            f"{scores.shape} instead."
        )
    return scores


@dataclass(frozen=True, eq=False)
class StickyPolicy:
    """A stability policy: the base policy's scores, plus ``stickiness`` for the image the member
    saw last time; the argmax is shown (ties: the first candidate).

    As a target of :func:`slate.replay.evaluate`, "last time" is what the member actually saw:
    ``history="logged"`` derives it from the log (:func:`previous_shown`), ``"column"`` reads
    the log's ``previous_image_id`` (also available when the log is read in chunks), ``"auto"``
    uses the column when the log has it. Under :func:`sequential_replay`, "last time" is what
    this policy showed at the member's last accepted event.

    Parameters
    ----------
    base : LinearPolicy or any object with ``scores(log) -> (n, k_max)``
    stickiness : float, default 0.0
        Added to the previous image's score (``inf``: never change an image).
    history : "auto", "logged" or "column", default "auto"
    name : str, default "sticky"

    Examples
    --------
    >>> import numpy as np, pyarrow as pa
    >>> from slate.logs import read_impressions
    >>> from slate.logs.parquet import example_table
    >>> from slate.replay import LinearPolicy
    >>> log, _ = read_impressions(example_table().set_column(0, "member_id", pa.array([1] * 4)))
    >>> base = LinearPolicy(log.image_ids, np.zeros((4, 0)), bias=[0.0, 1.0, 1.0, 0.0])
    >>> StickyPolicy(base, 0.0).action_distribution(log).choice.tolist()  # the base: b, a, b, a
    [1, 0, 1, 0]
    >>> StickyPolicy(base, 2.0).action_distribution(log).choice.tolist()  # keeps T1-a, T2-b
    [1, 0, 0, 1]
    """

    base: Any
    stickiness: float = 0.0
    history: str = "auto"
    name: str = "sticky"
    _state: dict[tuple[int, int], int] = field(default_factory=dict, repr=False, compare=False)
    _memo: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.history not in ("auto", "logged", "column"):
            raise InvalidReplayInputError(
                f"The 'history' parameter of StickyPolicy must be 'auto', 'logged' or 'column'; "
                f"got {self.history!r} instead."
            )
        if np.isnan(self.stickiness):
            raise InvalidReplayInputError("The 'stickiness' of StickyPolicy must not be NaN.")

    def previous(self, log: ImpressionLog) -> NDArray[np.int32]:
        """The image code each row's member saw last time (-1: none), per ``history``."""
        use_column = self.history == "column" or (
            self.history == "auto" and log.previous_image is not None)
        if use_column:
            if log.previous_image is None:
                raise InvalidReplayInputError(
                    "StickyPolicy(history='column') needs the log's 'previous_image_id' column; "
                    "got a log without it."
                )
            return log.previous_image
        return previous_shown(log)

    def choose_given(self, log: ImpressionLog, previous: NDArray[np.int32],
                     rows: NDArray[np.int64] | None = None,
                     scores: NDArray[np.float64] | None = None) -> NDArray[np.int32]:
        """The argmax of the base scores (of ``rows``; computed unless given) plus
        ``stickiness`` at ``previous`` (image codes, one per row)."""
        if scores is None:
            scores = _candidate_scores(self.base, log if rows is None else log.take(rows))
        cands = log.candidates if rows is None else log.candidates[rows]
        bonus = (cands == previous[:, None]) & (previous[:, None] >= 0)
        with np.errstate(invalid="ignore"):
            scores = np.where(bonus, scores + self.stickiness, scores)
        scores = np.where(cands >= 0, scores, -np.inf)
        return np.argmax(scores, axis=1).astype(np.int32)

    def action_distribution(self, log: ImpressionLog) -> ActionDistribution:
        """Deterministic: the sticky argmax on every row, given what the member saw last time."""
        choice = self.choose_given(log, self.previous(log))
        return ActionDistribution.deterministic(choice, log.shown, log.k_max, name=self.name)

    # ------------------------------------------------------------------ SequentialTarget
    def start(self, log: ImpressionLog) -> None:
        """Forget what was shown (a new replay; the state is keyed by the log's codes) and
        score the log's candidates once."""
        self._state.clear()
        self._memo["scores"] = _candidate_scores(self.base, log)

    def probabilities(self, log: ImpressionLog, rows: NDArray[np.int64]) -> NDArray[np.float64]:
        """One-hot on the sticky choice, "last time" being this policy's last accepted event."""
        state = self._state
        previous = np.array([state.get((int(m), int(t)), -1) for m, t in
                             zip(log.member_id[rows], log.title[rows], strict=True)], dtype=np.int32)
        scores = self._memo.get("scores")
        choice = self.choose_given(log, previous, rows,
                                   None if scores is None else scores[rows])
        probs = np.zeros((len(rows), log.k_max))
        probs[np.arange(len(rows)), choice] = 1.0
        return probs

    def observe(self, log: ImpressionLog, rows: NDArray[np.int64]) -> None:
        """The accepted events happened: the member saw their (logged) images."""
        for m, t, image in zip(log.member_id[rows], log.title[rows], log.image[rows], strict=True):
            self._state[(int(m), int(t))] = int(image)


@runtime_checkable
class SequentialTarget(Protocol):
    """A target whose decisions depend on the events it produced (see :func:`sequential_replay`)."""

    def start(self, log: ImpressionLog) -> None:
        """Reset the state before a replay."""
        ...

    def probabilities(self, log: ImpressionLog, rows: NDArray[np.int64]) -> NDArray[np.float64]:
        """``(len(rows), k_max)`` distribution over the candidates of ``rows``, given the state."""
        ...

    def observe(self, log: ImpressionLog, rows: NDArray[np.int64]) -> None:
        """Update the state with accepted events (their logged images and rewards happened)."""
        ...


class BanditLearner:
    """Adapter that replays a learning bandit (:mod:`slate.bandit`: anything with
    ``score(PageFeatures, propensities=True)`` and ``update(x, arms, rewards)``).

    The rows' context features are shared by every candidate image; arms are the log's image
    codes. The policy is updated, in time order, with the accepted events only.

    Parameters
    ----------
    policy : slate.bandit.ScoringPolicy
        Used in place (it learns during the replay; pass a fresh one).
    """

    def __init__(self, policy: Any) -> None:
        if not (hasattr(policy, "score") and hasattr(policy, "update")):
            raise InvalidReplayInputError(
                f"The 'policy' of BanditLearner must have score(page) and update(x, arms, "
                f"rewards) (a slate.bandit policy); got {type(policy).__name__} instead."
            )
        self.policy = policy
        self.name = str(getattr(policy, "name", type(policy).__name__))

    def start(self, log: ImpressionLog) -> None:
        """Check that the log has context features."""
        if log.features is None:
            raise InvalidReplayInputError("A BanditLearner needs a log with context features; got none.")

    def probabilities(self, log: ImpressionLog, rows: NDArray[np.int64]) -> NDArray[np.float64]:
        """The policy's propensities on the rows (one draw, one-hot, when it gives none)."""
        from slate.bandit import PageFeatures

        assert log.features is not None
        page = PageFeatures.from_arrays(np.asarray(log.features[rows], dtype=np.float64),
                                        log.candidates[rows].astype(np.int64))
        scores = self.policy.score(page, propensities=True)
        if scores.propensity is not None:
            return np.asarray(scores.propensity, dtype=np.float64)
        probs = np.zeros((len(rows), log.k_max))
        probs[np.arange(len(rows)), np.asarray(scores.choice)] = 1.0
        return probs

    def observe(self, log: ImpressionLog, rows: NDArray[np.int64]) -> None:
        """Learn from the accepted events."""
        assert log.features is not None
        self.policy.update(np.asarray(log.features[rows], dtype=np.float64),
                           log.image[rows].astype(np.int64), log.reward[rows].astype(np.float64))


@dataclass(frozen=True, eq=False)
class SequentialReplayResult:
    """What :func:`sequential_replay` returns.

    Attributes
    ----------
    value : float
        Mean reward of the accepted events: the policy's online take fraction.
    se : float
        Its standard error (accepted events as independent draws).
    interval : (float, float)
        Normal interval at ``level``.
    level : float
    n_events, n_accepted : int
    accepted : ndarray (n_accepted,), int64
        Log rows of the accepted events, in replay order.
    curve : ndarray (n_accepted,)
        Running mean reward after each accepted event (the learning curve).
    max_weight : float
        ``M`` of the acceptance probability.
    policy : str
    """

    value: float
    se: float
    interval: tuple[float, float]
    level: float
    n_events: int
    n_accepted: int
    accepted: NDArray[np.int64]
    curve: NDArray[np.float64]
    max_weight: float
    policy: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the curve at up to 100 points)."""
        idx = np.unique(np.linspace(0, max(self.n_accepted - 1, 0), 100).astype(np.int64))
        return {
            "estimator": "sequential_replay", "policy": self.policy, "value": self.value,
            "se": self.se, "interval": list(self.interval), "level": self.level,
            "n_events": self.n_events, "n_accepted": self.n_accepted,
            "max_weight": self.max_weight,
            "curve": {"accepted": (idx + 1).tolist() if self.n_accepted else [],
                      "mean_reward": self.curve[idx].tolist() if self.n_accepted else []},
        }


def sequential_replay(
    log: ImpressionLog,
    policy: SequentialTarget | Any,
    *,
    batch_pages: int = 1,
    max_weight: float | None = None,
    seed: int | None = 0,
    level: float = 0.95,
) -> SequentialReplayResult:
    """Replay a stateful policy over the log in time order (Li et al. 2011); see the module
    docstring.

    Parameters
    ----------
    log : ImpressionLog
    policy : SequentialTarget or slate.bandit policy
        A bandit policy (``score``/``update``) is wrapped in :class:`BanditLearner`.
    batch_pages : int, default 1
        Pages decided with the same state (1: the state changes after every page; more pages
        per step replay a policy updated in batches, and run faster).
    max_weight : float, optional
        ``M`` (default ``1 / min(propensity)``: with uniform logging, an event counts exactly
        when a deterministic policy picks the logged image).
    seed : int, optional
        Seeds the acceptance draws (counter-based, as :class:`~slate.replay.ReplayMethod`'s).
    level : float, default 0.95

    Returns
    -------
    SequentialReplayResult

    Examples
    --------
    >>> import numpy as np
    >>> from slate.logs import read_impressions
    >>> from slate.logs.parquet import example_table
    >>> from slate.replay import LinearPolicy
    >>> log, _ = read_impressions(example_table())
    >>> base = LinearPolicy(log.image_ids, np.zeros((4, 0)), bias=[1.0, 0.0, 1.0, 0.0])
    >>> result = sequential_replay(log, StickyPolicy(base, 0.0))
    >>> result.n_accepted, result.value   # picks T1-a and T2-a: rows 0 and 3 match, both played
    (2, 1.0)
    """
    if not isinstance(batch_pages, (int, np.integer)) or batch_pages < 1:
        raise InvalidReplayInputError(
            f"The 'batch_pages' parameter of sequential_replay must be an integer >= 1; got "
            f"{batch_pages!r} instead."
        )
    if not 0.0 < float(level) < 1.0:
        raise InvalidReplayInputError(f"The 'level' parameter must be in (0, 1); got {level!r}.")
    target: Any = policy
    if not isinstance(policy, SequentialTarget):
        target = BanditLearner(policy)
    if log.n_rows == 0:
        raise InvalidReplayInputError("The log of sequential_replay must have at least one row; got 0.")
    M = float(max_weight) if max_weight is not None else float(1.0 / log.propensity.min())
    if not (np.isfinite(M) and M > 0):
        raise InvalidReplayInputError(
            f"The 'max_weight' of sequential_replay must be a positive number; got {max_weight!r}."
        )
    target.start(log)
    order = event_order(log)
    page_of = log.page_index[order]
    breaks = np.flatnonzero(np.r_[True, page_of[1:] != page_of[:-1]])  # first row of each page
    starts = np.r_[breaks[::batch_pages], len(order)]
    u = row_uniforms(log, seed, 2)
    accepted_parts: list[NDArray[np.int64]] = []
    for a, b in itertools.pairwise(starts):
        rows = order[a:b]
        probs = np.asarray(target.probabilities(log, rows), dtype=np.float64)
        if probs.shape != (len(rows), log.k_max):
            raise InvalidReplayInputError(
                f"The policy's probabilities must have shape ({len(rows)}, {log.k_max}); got "
                f"{probs.shape} instead."
            )
        p = probs[np.arange(len(rows)), log.shown[rows]] / (M * log.propensity[rows])
        if (p > 1 + 1e-9).any():
            raise InvalidReplayInputError(
                f"The 'max_weight' {M!r} of sequential_replay must bound every weight; got "
                f"{float(p.max() * M)!r}."
            )
        take = rows[u[rows] < p]
        if len(take):
            target.observe(log, take)
            accepted_parts.append(take)
    accepted = np.concatenate(accepted_parts) if accepted_parts else np.zeros(0, np.int64)
    r = log.reward[accepted].astype(np.float64)
    n_acc = len(accepted)
    value = float(r.mean()) if n_acc else float("nan")
    se = float(r.std(ddof=1) / np.sqrt(n_acc)) if n_acc > 1 else float("nan")
    z = float(sps.norm.ppf(0.5 + float(level) / 2))
    curve = np.cumsum(r) / np.arange(1, n_acc + 1) if n_acc else np.zeros(0)
    return SequentialReplayResult(
        value=value, se=se, interval=(value - z * se, value + z * se), level=float(level),
        n_events=log.n_rows, n_accepted=n_acc, accepted=accepted, curve=curve, max_weight=M,
        policy=str(getattr(target, "name", type(target).__name__)),
    )
