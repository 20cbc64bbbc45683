"""The impression-log schema ``slate.impressions/1``: one row per (page impression, title).

A page impression is one homepage shown to one member in one session. Every title on that page
gets one row saying where it was (``row``, ``col``), which images could have been shown
(``candidate_ids``), which one was shown (``image_id``) and with what probability the logging
policy chose it (``propensity``), and what the member did (``reward``, ``engagement``).

The schema is versioned: files carry ``slate.schema = "slate.impressions/1"`` in their Parquet
key-value metadata. A reader refuses files of an unknown major version. Columns may appear in
any order; optional columns may be absent; unknown extra columns are ignored (and reported).

Columns
-------
=====================  ===========================  ========  =================================
name                   Arrow type                   required  meaning
=====================  ===========================  ========  =================================
member_id              int64                        yes       member (surrogate key)
session_id             int64                        yes       session of that member
page_id                int64                        yes       page impression, unique in the log
timestamp              timestamp[us, UTC]           yes       when the page was shown
title_id               string                       yes       title on the page
row                    int32                        yes       layout row (0 = top)
col                    int32                        yes       position in the row (0 = left)
image_id               string                       yes       image shown for the title
candidate_ids          list<string>                 yes       images the policy chose among
propensity             float64                      yes       P(logging policy shows image_id)
propensities           list<float64>                no        full distribution over candidates
explored               bool                         yes       chosen by exploration
reward                 int8                         yes       quality play (label set {0, 1})
engagement             float64                      no        raw engagement (e.g. minutes)
previous_image_id      string                       no        image this member saw last time
features               list<float32>                no        context features, inline
features_ref           string                       no        key into an external store
=====================  ===========================  ========  =================================

Ids of members, sessions and pages are integers so that large logs group and join fast; map
external string ids to int64 (e.g. with a 64-bit hash) before writing. Image ids are global
strings (the same image id never names images of two titles).
"""

from __future__ import annotations

from enum import Enum

import pyarrow as pa

__all__ = [
    "LABEL_SET",
    "OPTIONAL_COLUMNS",
    "REQUIRED_COLUMNS",
    "SCHEMA",
    "SCHEMA_KEY",
    "SCHEMA_NAME",
    "SCHEMA_VERSION",
    "RejectionReason",
    "impressions_schema",
]

SCHEMA_NAME = "slate.impressions"
"""Name of the schema, without its version."""

SCHEMA_VERSION = 1
"""Major version. Readers accept files of this version only."""

SCHEMA_KEY = b"slate.schema"
"""Parquet key-value metadata key holding ``f"{SCHEMA_NAME}/{SCHEMA_VERSION}"``."""

LABEL_SET: tuple[int, ...] = (0, 1)
"""Allowed values of ``reward`` (quality play: 0 no, 1 yes)."""

_FIELDS: tuple[tuple[str, pa.DataType, bool, str], ...] = (
    ("member_id", pa.int64(), True, "member (surrogate key)"),
    ("session_id", pa.int64(), True, "session of the member"),
    ("page_id", pa.int64(), True, "page impression, unique in the log"),
    ("timestamp", pa.timestamp("us", tz="UTC"), True, "when the page was shown"),
    ("title_id", pa.string(), True, "title on the page"),
    ("row", pa.int32(), True, "layout row, 0 = top"),
    ("col", pa.int32(), True, "position in the row, 0 = left"),
    ("image_id", pa.string(), True, "image shown for the title"),
    ("candidate_ids", pa.list_(pa.string()), True, "images the logging policy chose among"),
    ("propensity", pa.float64(), True, "probability the logging policy showed image_id"),
    ("propensities", pa.list_(pa.float64()), False, "logging distribution over candidate_ids"),
    ("explored", pa.bool_(), True, "image chosen by exploration"),
    ("reward", pa.int8(), True, "quality play, in LABEL_SET"),
    ("engagement", pa.float64(), False, "raw engagement, e.g. minutes or fraction played"),
    ("previous_image_id", pa.string(), False, "image this member saw for the title last time"),
    ("features", pa.list_(pa.float32()), False, "context features, inline"),
    ("features_ref", pa.string(), False, "key of the features in an external store"),
)

REQUIRED_COLUMNS: tuple[str, ...] = tuple(name for name, _, req, _ in _FIELDS if req)
"""Columns every file must have (values may still be null in bad rows: those are rejected)."""

OPTIONAL_COLUMNS: tuple[str, ...] = tuple(name for name, _, req, _ in _FIELDS if not req)
"""Columns a file may omit."""


def impressions_schema(columns: tuple[str, ...] | None = None) -> pa.Schema:
    """The Arrow schema of ``slate.impressions/1`` (all columns, or the named ones in order).

    Every field is nullable at the Arrow level so that a bad row can be read and counted
    rather than failing the whole file; the reader rejects nulls in required columns.

    Examples
    --------
    >>> schema = impressions_schema()
    >>> schema.field("candidate_ids").type
    ListType(list<item: string>)
    >>> schema.metadata[SCHEMA_KEY]
    b'slate.impressions/1'
    """
    by_name = {name: (typ, doc) for name, typ, _, doc in _FIELDS}
    names = tuple(by_name) if columns is None else columns
    fields = []
    for name in names:
        if name not in by_name:
            raise KeyError(f"'{name}' is not a column of {SCHEMA_NAME}/{SCHEMA_VERSION}")
        typ, doc = by_name[name]
        fields.append(pa.field(name, typ, nullable=True, metadata={b"doc": doc.encode()}))
    return pa.schema(fields, metadata={SCHEMA_KEY: f"{SCHEMA_NAME}/{SCHEMA_VERSION}".encode()})


SCHEMA: pa.Schema = impressions_schema()
"""The full schema (every column, in canonical order)."""


class RejectionReason(str, Enum):
    """Why a log row was rejected. Each rejected row is counted under its first reason in this
    order (the order of checks), so the counts add up to the number of rejected rows."""

    MISSING_FIELD = "missing_field"
    """A required value is null (ids, timestamp, position, image, candidates, explored)."""
    MALFORMED_CANDIDATES = "malformed_candidates"
    """Empty candidate list, a null or repeated candidate id."""
    BAD_POSITION = "bad_position"
    """``row`` or ``col`` negative."""
    MISSING_PROPENSITY = "missing_propensity"
    """``propensity`` is null."""
    PROPENSITY_OUT_OF_RANGE = "propensity_out_of_range"
    """``propensity`` is not a finite number in (0, 1]."""
    SHOWN_NOT_CANDIDATE = "shown_not_candidate"
    """``image_id`` is not among ``candidate_ids``."""
    UNKNOWN_IMAGE = "unknown_image"
    """An image (shown, candidate or previous) is not in the catalog given to the reader."""
    BAD_PROPENSITY_VECTOR = "bad_propensity_vector"
    """``propensities`` has the wrong length, entries outside [0, 1], does not sum to 1, or
    disagrees with ``propensity`` for the shown image."""
    MISSING_REWARD = "missing_reward"
    """``reward`` is null."""
    REWARD_OUT_OF_LABEL_SET = "reward_out_of_label_set"
    """``reward`` is not in :data:`LABEL_SET`."""
    BAD_ENGAGEMENT = "bad_engagement"
    """``engagement`` is NaN, infinite or negative (null is allowed: not measured)."""
    BAD_FEATURES = "bad_features"
    """``features`` null or of another length than the other rows, or not finite."""
    DUPLICATE_IMPRESSION = "duplicate_impression"
    """A second row for the same ``(page_id, title_id)``; the first row in file order is kept."""
    DUPLICATE_POSITION = "duplicate_position"
    """A second title at the same ``(page_id, row, col)``; the first row in file order is kept."""

    def __str__(self) -> str:
        return self.value
