"""What a fit from a log used and what it could not: rows, rejections, images, weights."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from slate.logs.stream import merge_reports
from slate.train.statistics import LogStatistics

__all__ = ["TrainDiagnostics"]

_SHOW = 8  # images named in the printed summary


@dataclass(frozen=True, eq=False)
class TrainDiagnostics:
    """Fit diagnostics of :func:`slate.train.train`.

    Attributes
    ----------
    n_files, n_read, n_accepted : int
        Files and rows of the log; rows accepted by the reader.
    rejected_by_reason : dict
        Rejected rows by :class:`slate.logs.RejectionReason` (only reasons that occurred).
    ignored_columns : tuple of str
    image_ids : tuple of str
        Every image of the log (shown or candidate), sorted.
    impressions, explored, plays, offered : ndarray (n_images,)
        Per image: rows that showed it (used for the fit), of which chosen by exploration, of
        which quality plays; rows that offered it as a candidate.
    weight_sum, weight_sq_sum : float
        Sum of the row weights (rows when not IPS-weighted) and of their squares.
    left_out : dict
        Accepted rows the fit could not use, by reason (features not found in the store).
    """

    n_files: int
    n_read: int
    n_accepted: int
    rejected_by_reason: dict[str, int]
    ignored_columns: tuple[str, ...]
    image_ids: tuple[str, ...]
    impressions: NDArray[np.int64]
    explored: NDArray[np.int64]
    plays: NDArray[np.int64]
    offered: NDArray[np.int64]
    weight_sum: float
    weight_sq_sum: float
    ips: bool
    left_out: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_statistics(cls, stats: LogStatistics, *, n_files: int) -> TrainDiagnostics:
        """Diagnostics of merged statistics."""
        report = merge_reports(stats.reports)
        stats.trim()
        return cls(
            n_files=n_files, n_read=report.n_read, n_accepted=report.n_accepted,
            rejected_by_reason={k: v for k, v in report.counts.items() if v},
            ignored_columns=report.ignored_columns, image_ids=tuple(stats.image_ids),
            impressions=stats.events.copy(), explored=stats.counts[:, 4].astype(np.int64),
            plays=stats.counts[:, 5].astype(np.int64), offered=stats.offered.astype(np.int64),
            weight_sum=float(stats.totals[0]), weight_sq_sum=float(stats.totals[2]),
            ips=stats.layout.ips, left_out={k: v for k, v in stats.left_out.items() if v},
        )

    @property
    def n_used(self) -> int:
        """Rows the fit used (accepted rows, less those left out)."""
        return int(self.impressions.sum())

    @property
    def n_rejected(self) -> int:
        """Rows the reader rejected."""
        return self.n_read - self.n_accepted

    @property
    def never_shown(self) -> tuple[str, ...]:
        """Candidate images that no row showed: the model has only its prior for them."""
        return tuple(np.asarray(self.image_ids, dtype=object)[self.impressions == 0].tolist())

    @property
    def never_explored(self) -> tuple[str, ...]:
        """Images shown on no explored row (only by the logging policy's greedy choice, or never)."""
        return tuple(np.asarray(self.image_ids, dtype=object)[self.explored == 0].tolist())

    @property
    def effective_sample_size(self) -> float:
        """``(sum w)^2 / sum w^2`` (the rows when unweighted)."""
        return self.weight_sum**2 / self.weight_sq_sum if self.weight_sq_sum > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        """A JSON-ready summary (no per-image arrays)."""
        imp = self.impressions
        return {
            "files": self.n_files, "rows_read": self.n_read, "rows_used": self.n_used,
            "rows_rejected": self.n_rejected, "rejected_by_reason": self.rejected_by_reason,
            "rows_left_out_by_reason": self.left_out,
            "ignored_columns": list(self.ignored_columns), "images": len(self.image_ids),
            "images_never_shown": len(self.never_shown),
            "images_never_explored": len(self.never_explored),
            "impressions_per_image": {
                "min": int(imp.min()) if len(imp) else 0,
                "median": float(np.median(imp)) if len(imp) else 0.0,
                "max": int(imp.max()) if len(imp) else 0,
            },
            "ips_weighted": self.ips, "effective_sample_size": self.effective_sample_size,
        }

    def write(self, directory: Path) -> None:
        """``diagnostics.json`` (summary plus the images never shown) and ``image_counts.csv``."""
        data = {**self.summary(), "never_shown": list(self.never_shown),
                "never_explored": list(self.never_explored)}
        (directory / "diagnostics.json").write_text(json.dumps(data, indent=1))
        with open(directory / "image_counts.csv", "w", newline="") as fh:
            out = csv.writer(fh)
            out.writerow(["image_id", "impressions", "explored", "plays", "offered"])
            for row in zip(self.image_ids, self.impressions.tolist(), self.explored.tolist(),
                           self.plays.tolist(), self.offered.tolist(), strict=True):
                out.writerow(row)

    def __str__(self) -> str:
        s = self.summary()
        per = s["impressions_per_image"]
        lines = [
            f"rows: {self.n_read} read in {self.n_files} file(s), {self.n_used} used, "
            f"{self.n_rejected} rejected",
        ]
        lines += [f"  rejected {k:<26} {v}" for k, v in self.rejected_by_reason.items()]
        lines += [f"  left out {k:<26} {v}" for k, v in self.left_out.items()]
        if self.ignored_columns:
            lines.append(f"  ignored columns: {', '.join(self.ignored_columns)}")
        lines.append(
            f"images: {len(self.image_ids)}; impressions per image min {per['min']}, median "
            f"{per['median']:g}, max {per['max']}"
        )
        shown = np.flatnonzero(self.impressions > 0)
        if len(shown):
            few = shown[np.argsort(self.impressions[shown], kind="stable")[:5]]
            lines.append("  fewest impressions: " + ", ".join(
                f"{self.image_ids[i]} ({int(self.impressions[i])}, {int(self.explored[i])} explored)" for i in few))
        for label, ids in (("never shown (prior only)", self.never_shown),
                           ("never explored", self.never_explored)):
            more = f" ... (+{len(ids) - _SHOW})" if len(ids) > _SHOW else ""
            names = ", ".join(ids[:_SHOW])
            lines.append(f"  {label}: {len(ids)}" + (f": {names}{more}" if ids else ""))
        weights = "inverse-propensity weighted" if self.ips else "unweighted"
        lines.append(f"rows {weights}; effective sample size {self.effective_sample_size:.1f}")
        return "\n".join(lines)
