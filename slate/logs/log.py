"""The in-memory, columnar impression log and the report of rejected rows.

:class:`ImpressionLog` is what :func:`slate.logs.read_impressions` returns: validated rows held as
read-only numpy arrays (ids as integer codes into vocabularies), ready for vectorised estimators.
:class:`RejectionReport` counts every row that was not accepted, by reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
from numpy.typing import NDArray

from slate.logs.schema import RejectionReason

__all__ = ["ImpressionLog", "RejectionReport"]

_REASONS: tuple[RejectionReason, ...] = tuple(RejectionReason)


def _readonly(array: NDArray[Any]) -> NDArray[Any]:
    array.flags.writeable = False
    return array


@dataclass(frozen=True, eq=False)
class RejectionReport:
    """Counts of rejected log rows by reason; nothing is dropped without being counted here.

    Attributes
    ----------
    n_read : int
        Rows in the input.
    n_accepted : int
        Rows kept in the :class:`ImpressionLog`.
    rows : ndarray (n_rejected,), int64, read-only
        Row numbers (0-based, in input order) of the rejected rows, ascending.
    reasons : ndarray (n_rejected,), int8, read-only
        For each rejected row, the index into ``tuple(RejectionReason)`` of its first reason.
    ignored_columns : tuple of str
        Columns of the input that are not part of the schema (read past, not used).
    source : str
        Where the rows came from (a path, or ``"<table>"``).
    damaged : tuple of str
        Parts of the log that could not be read, one line each naming the file and row group
        (a page checksum mismatch, an undecodable page) or the file (an unreadable footer). The
        rows of a damaged row group are counted as ``corrupt_row_group``; a file whose footer
        is unreadable has no known row count and is listed here only.

    Examples
    --------
    >>> import numpy as np
    >>> report = RejectionReport(n_read=10, n_accepted=9, rows=np.array([3]),
    ...                          reasons=np.array([4], dtype=np.int8))
    >>> report.n_rejected, report.counts["propensity_out_of_range"]
    (1, 1)
    """

    n_read: int
    n_accepted: int
    rows: NDArray[np.int64]
    reasons: NDArray[np.int8]
    ignored_columns: tuple[str, ...] = ()
    source: str = "<table>"
    damaged: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "rows", _readonly(np.asarray(self.rows, dtype=np.int64)))
        object.__setattr__(self, "reasons", _readonly(np.asarray(self.reasons, dtype=np.int8)))
        if self.n_read - self.n_accepted != len(self.rows) or len(self.rows) != len(self.reasons):
            raise ValueError(
                f"RejectionReport: {self.n_read} read - {self.n_accepted} accepted must equal the "
                f"{len(self.rows)} rejected rows with {len(self.reasons)} reasons."
            )

    @property
    def n_rejected(self) -> int:
        """Number of rejected rows."""
        return len(self.rows)

    @cached_property
    def counts(self) -> Mapping[str, int]:
        """``{reason value: number of rows}`` for every reason (zeros included), in check order."""
        tally = np.bincount(self.reasons.astype(np.int64), minlength=len(_REASONS))
        return {reason.value: int(tally[i]) for i, reason in enumerate(_REASONS)}

    def rows_for(self, reason: RejectionReason | str) -> NDArray[np.int64]:
        """Input row numbers rejected for ``reason``."""
        code = _REASONS.index(RejectionReason(reason))
        return self.rows[self.reasons == code]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (counts only, not row numbers)."""
        return {
            "source": self.source,
            "n_read": self.n_read,
            "n_accepted": self.n_accepted,
            "n_rejected": self.n_rejected,
            "rejected_by_reason": {k: v for k, v in self.counts.items() if v},
            "ignored_columns": list(self.ignored_columns),
            "damaged": list(self.damaged),
        }

    def __str__(self) -> str:
        lines = [f"{self.source}: {self.n_read} rows read, {self.n_accepted} accepted, "
                 f"{self.n_rejected} rejected"]
        lines += [f"  {k:<26} {v}" for k, v in self.counts.items() if v]
        if self.ignored_columns:
            lines.append(f"  ignored columns: {', '.join(self.ignored_columns)}")
        lines += [f"  damaged: {d}" for d in self.damaged]
        return "\n".join(lines)


@dataclass(frozen=True, eq=False)
class ImpressionLog:
    """Validated impression-log rows, columnar, as read-only numpy arrays.

    One entry per accepted (page impression, title) row, in input order. Ids of titles and
    images are integer codes into the ``title_ids`` / ``image_ids`` vocabularies (sorted, so
    the codes do not depend on how the file was chunked).

    Attributes
    ----------
    member_id, session_id, page_id : ndarray (n,), int64
    timestamp : ndarray (n,), int64
        Microseconds since the Unix epoch, UTC.
    title : ndarray (n,), int32
        Code into ``title_ids``.
    row, col : ndarray (n,), int32
        Layout position.
    image : ndarray (n,), int32
        Code into ``image_ids`` of the shown image.
    candidates : ndarray (n, k_max), int32
        Codes of the candidate images, left-aligned, ``-1`` padding.
    n_candidates : ndarray (n,), int32
    shown : ndarray (n,), int32
        Position of the shown image in ``candidates`` (the logged action).
    propensity : ndarray (n,), float64
        Logged probability of the shown image, in (0, 1].
    propensities : ndarray (n, k_max), float64 or None
        Logged distribution over candidates (0 on padding), when the log has it.
    explored : ndarray (n,), bool
    reward : ndarray (n,), int8
        In :data:`slate.logs.schema.LABEL_SET`.
    engagement : ndarray (n,), float64 or None
        NaN where not measured; None when the log has no such column.
    previous_image : ndarray (n,), int32 or None
        Code of the previously shown image, ``-1`` when none; None when the log has no column.
    features : ndarray (n, n_features), float32 or None
    features_ref : ndarray (n,), object or None
    title_ids, image_ids : tuple of str
        Vocabularies (sorted).
    source_row : ndarray (n,), int64
        Row number of each accepted row in the input.
    rejections : RejectionReport
    schema : str
        Schema name and version of the input, e.g. ``"slate.impressions/1"``.
    """

    member_id: NDArray[np.int64]
    session_id: NDArray[np.int64]
    page_id: NDArray[np.int64]
    timestamp: NDArray[np.int64]
    title: NDArray[np.int32]
    row: NDArray[np.int32]
    col: NDArray[np.int32]
    image: NDArray[np.int32]
    candidates: NDArray[np.int32]
    n_candidates: NDArray[np.int32]
    shown: NDArray[np.int32]
    propensity: NDArray[np.float64]
    propensities: NDArray[np.float64] | None
    explored: NDArray[np.bool_]
    reward: NDArray[np.int8]
    engagement: NDArray[np.float64] | None
    previous_image: NDArray[np.int32] | None
    features: NDArray[np.float32] | None
    features_ref: NDArray[np.object_] | None
    title_ids: tuple[str, ...]
    image_ids: tuple[str, ...]
    source_row: NDArray[np.int64]
    rejections: RejectionReport
    schema: str = "slate.impressions/1"
    _cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        for value in vars(self).values():
            if isinstance(value, np.ndarray):
                value.flags.writeable = False

    # ------------------------------------------------------------------ sizes
    @property
    def n_rows(self) -> int:
        """Number of accepted (page impression, title) rows."""
        return len(self.page_id)

    def __len__(self) -> int:
        return self.n_rows

    @property
    def k_max(self) -> int:
        """Largest candidate-set size (width of ``candidates``)."""
        return int(self.candidates.shape[1])

    @property
    def n_features(self) -> int:
        """Number of inline features (0 when the log has none)."""
        return 0 if self.features is None else int(self.features.shape[1])

    # ------------------------------------------------------------------ ids
    @cached_property
    def title_index(self) -> Mapping[str, int]:
        """``{title id: code}``."""
        return {t: i for i, t in enumerate(self.title_ids)}

    @cached_property
    def image_index(self) -> Mapping[str, int]:
        """``{image id: code}``."""
        return {t: i for i, t in enumerate(self.image_ids)}

    def codes(self, ids: Any, *, kind: str = "image") -> NDArray[np.int32]:
        """Codes of ``ids`` (strings) in the ``kind`` vocabulary (``"image"`` or ``"title"``),
        ``-1`` for ids the log does not know. Vectorised through a sorted vocabulary."""
        vocab = self.image_ids if kind == "image" else self.title_ids
        values = np.asarray(ids, dtype=object).astype(str)
        if len(vocab) == 0:
            return np.full(values.shape, -1, dtype=np.int32)
        sorted_vocab = np.asarray(vocab, dtype=str)
        pos = np.searchsorted(sorted_vocab, values)
        pos_c = np.minimum(pos, len(vocab) - 1)
        found = sorted_vocab[pos_c] == values
        return np.where(found, pos_c, -1).astype(np.int32)

    # ------------------------------------------------------------------ pages
    @cached_property
    def page_order(self) -> NDArray[np.int64]:
        """Row indices sorted by ``page_id`` (stable: rows of a page keep their input order)."""
        if self.n_rows == 0 or bool(np.all(self.page_id[1:] >= self.page_id[:-1])):
            order = np.arange(self.n_rows, dtype=np.int64)
        else:
            order = np.argsort(self.page_id, kind="stable").astype(np.int64)
        return _readonly(order)

    @cached_property
    def page_starts(self) -> NDArray[np.int64]:
        """Offsets into :attr:`page_order` where each page begins, plus a final ``n_rows``."""
        p = self.page_id[self.page_order]
        starts = np.flatnonzero(np.r_[True, p[1:] != p[:-1]]) if len(p) else np.zeros(0, np.int64)
        return _readonly(np.r_[starts, len(p)].astype(np.int64))

    @property
    def n_pages(self) -> int:
        """Number of distinct page impressions."""
        return len(self.page_starts) - 1

    @cached_property
    def page_index(self) -> NDArray[np.int64]:
        """For each row, the 0-based index of its page in ``page_id`` order."""
        out = np.empty(self.n_rows, dtype=np.int64)
        out[self.page_order] = np.repeat(
            np.arange(self.n_pages, dtype=np.int64), np.diff(self.page_starts)
        )
        return _readonly(out)

    # ------------------------------------------------------------------ subsets
    def take(self, index: NDArray[np.int64] | NDArray[np.bool_]) -> ImpressionLog:
        """A log of the selected rows (boolean mask or row indices), same vocabularies.

        The rejection report is kept as it was (it describes the input, not the subset).
        """
        idx = np.asarray(index)
        if idx.dtype == bool:
            if idx.shape != (self.n_rows,):
                raise ValueError(
                    f"The 'index' mask of ImpressionLog.take must have shape ({self.n_rows},); "
                    f"got {idx.shape} instead."
                )
            idx = np.flatnonzero(idx)
        values: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            if name == "_cache":
                continue
            value = getattr(self, name)
            if isinstance(value, np.ndarray):
                values[name] = value[idx]
            else:
                values[name] = value
        return ImpressionLog(**values)

    def shown_ids(self) -> NDArray[np.str_]:
        """The shown image ids as strings (for display; estimators work on codes)."""
        return np.asarray(self.image_ids, dtype=str)[self.image]
