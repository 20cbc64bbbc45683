"""What a certifier returns: a proven upper bound, how it was obtained, and its duals."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["OPTIMAL_RTOL", "Certificate", "meets"]

OPTIMAL_RTOL = 1e-6
"""A bound within this relative distance of a page's objective proves the page optimal (the
tolerance the shared instances are certified to; HiGHS's default MIP gap is 1e-4)."""


def meets(bound: float, objective: float) -> bool:
    """Whether ``bound`` proves ``objective`` optimal (within :data:`OPTIMAL_RTOL`).

    Examples
    --------
    >>> meets(1.0, 1.0), meets(1.1, 1.0)
    (True, False)
    """
    return bound - objective <= OPTIMAL_RTOL * max(1.0, abs(objective)) * (1.0 + 1e-9)


@dataclass(frozen=True, eq=False)
class Certificate:
    """A proven upper bound on a page problem's optimum, next to the page it certifies.

    Attributes
    ----------
    bound : float
        At least the optimal objective of the problem (every feasible page scores at most this).
    objective : float
        Objective of the certified page.
    method : str
        How the bound was obtained: ``"page-blind"``, ``"mplp"`` (dual block-coordinate ascent
        on the local polytope), ``"mplp+completion"`` (the non-tight titles solved exactly),
        ``"embedding"`` (Lagrangian embedding-sum bound).
    duals : ndarray or None
        The dual variables behind the bound (messages or embedding multipliers), to warm-start
        the next certification of the same member's page (``warm_start=``).
    info : dict
        Sweeps, iterations, completion size and timings.
    assignment : ndarray or None
        The certified page when the certifier found a better page than the one it was given
        (the exact completion searches as it proves); None means the given page.
    """

    bound: float
    objective: float
    method: str
    duals: NDArray[np.float64] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    assignment: NDArray[np.int64] | None = None

    def __post_init__(self) -> None:
        # a bound evaluated in floating point may sit a rounding error below the page it
        # proves optimal: clamp only that (as make_result does)
        if self.objective - 1e-9 * max(1.0, abs(self.objective)) <= self.bound < self.objective:
            object.__setattr__(self, "bound", float(self.objective))

    @property
    def gap(self) -> float:
        """Relative gap ``(bound - objective) / max(|bound|, 1e-9)`` (as :attr:`SolveResult.gap`)."""
        return max(0.0, self.bound - self.objective) / max(abs(self.bound), 1e-9)

    @property
    def optimal(self) -> bool:
        """Whether the bound proves the page optimal."""
        return meets(self.bound, self.objective)
