"""What the importers share: the import report, stable integer ids, validated writing.

An importer (:mod:`slate.logs.dsjson`, :mod:`slate.logs.mapping`) turns another system's log
into ``slate.impressions`` rows batch by batch. Input units it cannot convert (a malformed JSON
line, an unparsable timestamp) are counted by reason in the :class:`ImportReport` and skipped;
converted rows then go through the validating reader (:func:`~slate.logs.validate_impressions`),
and only the rows it accepts are written, its rejections counted in the same report. Nothing
stops the import but an unreadable input file.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from slate.logs.parquet import ImpressionWriter, validate_impressions

__all__ = ["ImportReport", "stable_id", "stable_ids", "write_validated"]

_EXAMPLES = 3  # messages kept per reason


def stable_id(value: object) -> int:
    """A signed 64-bit id for an external id: integers pass through, anything else is hashed
    (BLAKE2b of its string, the same on every machine and run).

    Examples
    --------
    >>> stable_id(42), stable_id("42") == stable_id("42"), stable_id("a") != stable_id("b")
    (42, True, True)
    """
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and -(2**63) <= value < 2**63:
        return int(value)
    digest = hashlib.blake2b(str(value).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def stable_ids(values: Any) -> NDArray[np.int64]:
    """:func:`stable_id` of each value (each distinct value hashed once)."""
    arr = np.asarray(values, dtype=object)
    if arr.size == 0:
        return np.zeros(0, np.int64)
    uniq, inverse = np.unique(arr.astype(str), return_inverse=True)
    hashed = np.fromiter((stable_id(u) for u in uniq), np.int64, len(uniq))
    return hashed[inverse.reshape(-1)]


@dataclass
class ImportReport:
    """Counts of an import: input units read and rejected by reason, rows written.

    Attributes
    ----------
    source : str
    unit : str
        What ``n_read`` counts (``"lines"`` of DSJSON, ``"rows"`` of a CSV/Parquet file).
    n_read : int
        Input units read.
    rejected : Counter
        Input units not converted, by reason (``malformed_json``, ``missing_field``, ...).
    reader_rejected : Counter
        Converted impression rows the validating reader rejected, by
        :class:`~slate.logs.RejectionReason`.
    n_written : int
        Impression rows written.
    examples : dict
        Up to three messages per reason (with the line or row number), for the printout.
    """

    source: str
    unit: str = "rows"
    n_read: int = 0
    n_written: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    reader_rejected: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def reject(self, reason: str, message: str, count: int = 1) -> None:
        """Count ``count`` input units rejected for ``reason`` (``message`` names where)."""
        self.rejected[reason] += count
        kept = self.examples.setdefault(reason, [])
        if len(kept) < _EXAMPLES:
            kept.append(message)

    @property
    def n_rejected(self) -> int:
        """Input units rejected before conversion."""
        return sum(self.rejected.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready counts."""
        return {"source": self.source, "unit": self.unit, "read": self.n_read,
                "rejected": dict(self.rejected), "reader_rejected": dict(self.reader_rejected),
                "written": self.n_written, "examples": self.examples}

    def __str__(self) -> str:
        lines = [f"{self.source}: {self.n_read} {self.unit} read, {self.n_rejected} rejected, "
                 f"{self.n_written} impression rows written"]
        for reason, n in sorted(self.rejected.items()):
            lines.append(f"  rejected {reason:<24} {n}  e.g. {self.examples.get(reason, [''])[0]}")
        for reason, n in sorted(self.reader_rejected.items()):
            lines.append(f"  reader rejected {reason:<17} {n} rows")
        return "\n".join(lines)


def write_validated(writer: ImpressionWriter, table: pa.Table, report: ImportReport) -> None:
    """Validate converted rows, write the accepted ones, count the reader's rejections."""
    if table.num_rows == 0:
        return
    log, rejections = validate_impressions(table, source=report.source)
    for reason, n in rejections.counts.items():
        if n:
            report.reader_rejected[reason] += n
    accepted = table if log.n_rows == table.num_rows else table.take(pa.array(log.source_row))
    if accepted.num_rows:
        writer.write(accepted)
        report.n_written += accepted.num_rows
