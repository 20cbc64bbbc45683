"""Exceptions raised by slate.

Outcomes (a solver that ran out of time, an infeasible page) are reported as statuses on
results; exceptions are for misuse: malformed input that cannot be turned into a valid request.
"""

from __future__ import annotations

__all__ = [
    "InfeasibleProblemError",
    "InvalidProblemError",
    "ScorerOutputError",
    "ScorerResolutionError",
    "SlateError",
    "SolverError",
    "UnknownSolverError",
]


class SlateError(Exception):
    """Base class of every exception slate raises on purpose."""


class InvalidProblemError(SlateError, ValueError):
    """A page problem (or another request) is malformed; the message names the field."""


class InfeasibleProblemError(InvalidProblemError):
    """The constraints of a page problem cannot all hold (the message says which)."""


class UnknownSolverError(SlateError, KeyError):
    """A solver name that is not in the registry."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0]) if self.args else ""


class SolverError(SlateError, RuntimeError):
    """A solver backend failed in a way that is not a status (a bug or a broken install)."""


class ScorerOutputError(SlateError, ValueError):
    """A scorer returned output of the wrong shape (raised in strict mode; see
    :func:`slate.serve.compose`)."""


class ScorerResolutionError(SlateError, ValueError):
    """A scorer named in a config (``"module:function"`` or a score table) cannot be loaded."""
