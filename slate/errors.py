"""Exceptions raised by slate.

Outcomes (a solver that ran out of time, an infeasible page) are reported as statuses on
results; exceptions are for misuse: malformed input that cannot be turned into a valid request.
"""

from __future__ import annotations

__all__ = [
    "ImageDecodeError",
    "InfeasibleProblemError",
    "InputFileError",
    "InvalidConfigError",
    "InvalidEmbedInputError",
    "InvalidEmbeddingsError",
    "InvalidExperimentError",
    "InvalidLogError",
    "InvalidProblemError",
    "InvalidReplayInputError",
    "InvalidRequestError",
    "InvalidRuleError",
    "NoEstimateError",
    "RecordRejectedError",
    "ResourceLimitError",
    "ScorerOutputError",
    "ScorerResolutionError",
    "SlateError",
    "SolverError",
    "StoreError",
    "StoreOpenError",
    "StoreReplacedError",
    "StoreTimeoutError",
    "SweepError",
    "UnknownEstimatorError",
    "UnknownNameError",
    "UnknownOptionError",
    "UnknownPolicyError",
    "UnknownSolverError",
    "UnknownStoreError",
]


class SlateError(Exception):
    """Base class of every exception slate raises on purpose."""


class InvalidProblemError(SlateError, ValueError):
    """A page problem (or another request) is malformed; the message names the field."""


class InfeasibleProblemError(InvalidProblemError):
    """The constraints of a page problem cannot all hold (the message says which)."""


class UnknownNameError(SlateError, KeyError):
    """A name that is not in one of slate's registries (solvers, estimators, policies)."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0]) if self.args else ""


class UnknownSolverError(UnknownNameError):
    """A solver name that is not in the registry."""


class UnknownEstimatorError(UnknownNameError):
    """An estimator name that is not in the registry."""


class UnknownPolicyError(UnknownNameError):
    """A policy name that is not in the registry."""


class UnknownOptionError(InvalidProblemError, TypeError):
    """An option that a registered factory (solver, policy, estimator, store) does not take; the
    message names it and the options the factory does take. A ``TypeError`` too, as a bad
    keyword argument is."""


class UnknownStoreError(UnknownNameError, InvalidProblemError):
    """A state-store name or URL scheme that :func:`~slate.stability.make_store` does not know."""


# ---------------------------------------------------------------------- malformed inputs, by stage
class InvalidRequestError(InvalidProblemError):
    """A page request is malformed; the message names the field and what was received."""


class InvalidConfigError(InvalidProblemError):
    """A simulator configuration is malformed (the message names the field)."""


class InvalidLogError(SlateError, ValueError):
    """A log cannot be read at all (missing column, wrong type, unknown schema version).

    Bad *rows* are not errors: they are rejected and counted in the :class:`~slate.logs.RejectionReport`.
    """


class InvalidReplayInputError(SlateError, ValueError):
    """A replay input (policy, decision table, estimator option) is malformed; the message
    names the field and what was received."""


class InvalidEmbeddingsError(InvalidReplayInputError, InvalidProblemError):
    """Image embeddings are malformed (shape, non-finite or zero vectors, repeated ids) or lack
    images the diversity needs; the message names the images."""


class InvalidExperimentError(SlateError, ValueError):
    """An experiment file or mapping is malformed; the message names the field."""


class SweepError(SlateError, RuntimeError):
    """A sweep cannot run or resume (the message says why and what to do)."""


class SolverError(SlateError, RuntimeError):
    """A solver backend failed in a way that is not a status (a bug or a broken install)."""


class InvalidEmbedInputError(SlateError, ValueError):
    """``slate embed`` / :mod:`slate.visual` misuse: no input files, a bad mapping file, bad
    weights or options, a broken ONNX model; the message names the field or file."""


class ImageDecodeError(SlateError, ValueError):
    """One image file could not be turned into pixels; ``reason`` is a short key
    (``empty``, ``not-an-image``, ``truncated``, ``too-large``, ...) used to count rejections."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class RecordRejectedError(SlateError, ValueError):
    """One input record (a line of a Vowpal Wabbit DSJSON file) could not be converted;
    ``reason`` is a short key (``bad_timestamp``, ``missing_field``, ``bad_probability``,
    ``unlabeled``, ``bad_action``, ...) used to count rejections by reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class InputFileError(InvalidProblemError):
    """An input file that cannot be used as given: missing, not a regular file (a FIFO, a device,
    a folder), larger than its size limit, not UTF-8, nested too deeply or damaged. The message
    names the file and what is wrong."""


class ResourceLimitError(SlateError, ValueError):
    """A request that would exceed a size limit (grid points, titles, bootstrap replicates, array
    sizes, file sizes) before anything is allocated. The message names the limit and how to raise
    it (see :mod:`slate.limits`)."""


class NoEstimateError(SlateError, ValueError):
    """An off-policy estimate was asked for where no logged row matches the target: there is no
    estimate (rather than a value of 0)."""


class StoreError(SlateError, RuntimeError):
    """A state store cannot be opened, read or written; the message names the file or server."""


class StoreTimeoutError(StoreError):
    """A state store did not answer within its time budget (a slow or unreachable server, a held lock)."""


class StoreReplacedError(StoreError):
    """The state database was deleted or replaced by another file while the store was using it."""


class StoreOpenError(StoreError, OSError):
    """A state store cannot be opened: its file is a folder, read-only, not a database of the
    right kind, or its folder cannot be created. The message names the file."""


class ScorerOutputError(SlateError, ValueError):
    """A scorer returned output of the wrong shape (raised in strict mode; see
    :func:`slate.serve.compose`)."""


class ScorerResolutionError(SlateError, ValueError):
    """A scorer named in a config (``"module:function"`` or a score table) cannot be loaded."""


class InvalidRuleError(SlateError, ValueError):
    """A sweep recommendation rule that is not one of ``slate.tune.paired.RULES``."""
