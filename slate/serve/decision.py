"""What :func:`slate.serve.compose` returns: a frozen :class:`PageDecision`, and fault counters."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np
from numpy.typing import NDArray

from slate.page.problem import ObjectiveParts
from slate.stability.rules import Reason

__all__ = ["ExplorationParams", "Fault", "PageDecision", "ServeStats"]


class Fault(str, Enum):
    """Something that went wrong while composing a page. The page is still valid."""

    SCORING_FAILED = "scoring_failed"
    """The scoring policy raised or returned scores of the wrong shape."""
    SCORES_NOT_FINITE = "scores_not_finite"
    """The scoring policy returned NaN or infinite scores for candidate images."""
    STORE_READ_FAILED = "store_read_failed"
    """The state store could not be read: the page was built without the member's state."""
    STORE_WRITE_FAILED = "store_write_failed"
    """The state store could not be written: the next page will not know about this one."""
    STORE_LATE = "store_late"
    """A store read or write took longer than ``store_budget_ms`` (its result was used), or timed out."""
    STORE_CONFLICT = "store_conflict"
    """Another page for the member was saved between this page's read and write: the page was
    re-planned against the fresh state (or, after a second conflict, showed the stored images
    and was not saved). No update is lost."""
    STORE_REPLACED = "store_replaced"
    """The state database was deleted or replaced while in use: the page was built without state."""
    SCORING_LATE = "scoring_late"
    """Scoring took longer than ``scoring_budget_ms`` (its scores were used)."""
    SOLVER_FAILED = "solver_failed"
    """The solver raised or returned an invalid page."""
    SOLVER_LATE = "solver_late"
    """The solver returned a valid page, but later than its budget plus grace."""
    EMBEDDINGS_MISSING = "embeddings_missing"
    """Some images have no embedding in the catalog; they count as unlike every other image."""
    LOG_FAILED = "log_failed"
    """The decision could not be handed to the decision logger."""
    INTERNAL_ERROR = "internal_error"
    """An unexpected error in compose itself; a last-resort page was served."""

    def __str__(self) -> str:
        return self.value


_FALLBACK = frozenset(
    {Fault.SCORING_FAILED, Fault.SCORES_NOT_FINITE, Fault.SOLVER_FAILED, Fault.INTERNAL_ERROR}
)


@dataclass(frozen=True)
class ExplorationParams:
    """A page's exploration draw: what makes its joint propensities exact.

    Attributes
    ----------
    rate : float
        Per-title coin probability (``StickyEpsilon.epsilon``).
    cap : int or None
        At most this many titles explored on the page, held draws included (None: no cap).
    probability : float
        ``q``: the marginal probability that an eligible title was explored on this page.
    n_eligible : int
        Titles in the draw.
    n_held_explored : int
        Held draws that were explored (they use up the cap).
    """

    rate: float
    cap: int | None
    probability: float
    n_eligible: int
    n_held_explored: int = 0


@dataclass(frozen=True, eq=False)
class PageDecision:
    """One composed page: an image per title, with its propensity, and how the page was made.

    Attributes
    ----------
    member_id, session_id, page_id : int
    timestamp : float
        When the page was composed (Unix seconds, UTC).
    title_ids : tuple of str
    image_ids : tuple of str
        The image shown per title.
    propensity : ndarray (n_titles,), read-only
        Probability that the page's randomization showed this image (1 when deterministic).
    explored : ndarray (n_titles,), bool, read-only
        The image was chosen by exploration.
    changed : ndarray (n_titles,), bool, read-only
        The member saw another image for the title last session.
    reason : ndarray (n_titles,), int8, read-only
        Which stability rule decided the title (:class:`slate.stability.Reason`).
    previous_image_ids : tuple of (str or None)
    objective : ObjectiveParts or None
        Relevance, diversity and churn penalties of the page as shown (None without scores).
    solver : str
    solver_status : str
        The solver's status (``optimal``, ``feasible``, ``time_limit``), or ``failed`` / ``skipped``.
    faults : tuple of Fault
        What went wrong (empty on a healthy page).
    status : str
        ``ok``; ``degraded`` (a fault, but the optimiser's page was served); or ``fallback``
        (previous images where allowed, else the best-scored image).
    fault_details : tuple of str
        One message per fault.
    timings_ms : dict of str -> float
        Wall time of each stage.
    candidate_ids : tuple of tuple of str
        Candidate images per title (padded columns in order).
    propensities : ndarray (n_titles, n_images), read-only
        Distribution the image was drawn from, per title; NaN rows where a held draw's full
        distribution is not kept.
    rows, cols : ndarray (n_titles,), int
    locked : ndarray (n_titles,), bool, read-only
        The request locked the title (``TitleRequest.locked``).
    explore_eligible : ndarray (n_titles,), bool, read-only
        The title took part in this page's exploration draw (not held, two or more images).
    explore_held : ndarray (n_titles,), bool, read-only
        The title shows a held (sticky) draw of an earlier page, with that draw's propensity.
    exploration : ExplorationParams or None
        The page's exploration parameters (rate, cap, probability; None: no exploration).
        With ``explore_eligible`` and ``explore_held`` they give the joint probability of any
        set of titles' choices exactly (see :mod:`slate.bandit.exploration`).
    config_json : str
        The :class:`~slate.serve.ComposeConfig` the page was composed with, as JSON.
    context_json : str
        The request's ``context`` as JSON (``""`` when empty): what rebuilds the page offline.
    """

    member_id: int
    session_id: int
    page_id: int
    timestamp: float
    title_ids: tuple[str, ...]
    image_ids: tuple[str, ...]
    propensity: NDArray[np.float64]
    explored: NDArray[np.bool_]
    changed: NDArray[np.bool_]
    reason: NDArray[np.int8]
    previous_image_ids: tuple[str | None, ...]
    objective: ObjectiveParts | None
    solver: str
    solver_status: str
    faults: tuple[Fault, ...]
    fault_details: tuple[str, ...]
    timings_ms: dict[str, float]
    candidate_ids: tuple[tuple[str, ...], ...]
    propensities: NDArray[np.float64]
    rows: NDArray[np.int64]
    cols: NDArray[np.int64]
    locked: NDArray[np.bool_] | None = None
    explore_eligible: NDArray[np.bool_] | None = None
    explore_held: NDArray[np.bool_] | None = None
    exploration: ExplorationParams | None = None
    config_json: str = ""
    context_json: str = ""
    status: str = field(init=False)

    def __post_init__(self) -> None:
        n = len(self.title_ids)
        for name in ("locked", "explore_eligible", "explore_held"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, np.zeros(n, dtype=bool))
        for name in ("propensity", "explored", "changed", "reason", "propensities", "rows", "cols",
                     "locked", "explore_eligible", "explore_held"):
            getattr(self, name).flags.writeable = False
        if not self.faults:
            status = "ok"
        elif _FALLBACK.intersection(self.faults):
            status = "fallback"
        else:
            status = "degraded"
        object.__setattr__(self, "status", status)

    @property
    def n_titles(self) -> int:
        """Number of titles on the page."""
        return len(self.title_ids)

    @property
    def images(self) -> dict[str, str]:
        """``{title id: image id}``."""
        return dict(zip(self.title_ids, self.image_ids, strict=True))

    @property
    def n_explored(self) -> int:
        """Number of titles whose image was chosen by exploration."""
        return int(self.explored.sum())

    @property
    def n_changed(self) -> int:
        """Number of titles whose image changed since the member's last page."""
        return int(self.changed.sum())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (per title: image, propensity, explored, changed, rule)."""
        return {
            "member_id": self.member_id,
            "session_id": self.session_id,
            "page_id": self.page_id,
            "timestamp": self.timestamp,
            "status": self.status,
            "faults": [f.value for f in self.faults],
            "solver": self.solver,
            "solver_status": self.solver_status,
            "objective": None if self.objective is None else vars(self.objective),
            "titles": [
                {
                    "title_id": t,
                    "image_id": self.image_ids[i],
                    "propensity": float(self.propensity[i]),
                    "explored": bool(self.explored[i]),
                    "changed": bool(self.changed[i]),
                    "rule": Reason(int(self.reason[i])).name.lower(),
                }
                for i, t in enumerate(self.title_ids)
            ],
        }


class ServeStats:
    """Counters over many composed pages (thread-safe): pages, faults, statuses, solver statuses.

    Examples
    --------
    >>> stats = ServeStats()
    >>> stats.snapshot()["pages"]
    0
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.pages = 0
        self.titles = 0
        self.explored = 0
        self.changed = 0
        self.faults: Counter[str] = Counter()
        self.statuses: Counter[str] = Counter()
        self.solver_statuses: Counter[str] = Counter()

    def record(self, decision: PageDecision) -> None:
        """Count one decision."""
        n_explored = decision.n_explored
        n_changed = decision.n_changed
        with self._lock:
            self.pages += 1
            self.titles += decision.n_titles
            self.explored += n_explored
            self.changed += n_changed
            self.statuses[decision.status] += 1
            self.solver_statuses[decision.solver_status] += 1
            for fault in decision.faults:
                self.faults[fault.value] += 1

    def snapshot(self) -> dict[str, Any]:
        """The counters as plain values."""
        with self._lock:
            return {
                "pages": self.pages,
                "titles": self.titles,
                "explored": self.explored,
                "changed": self.changed,
                "faults": dict(self.faults),
                "statuses": dict(self.statuses),
                "solver_statuses": dict(self.solver_statuses),
            }
