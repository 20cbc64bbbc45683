"""The impression-log schemas ``slate.impressions/1`` and ``/2``: one row per (page impression, title).

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

Version 2
---------
``slate.impressions/2`` holds the same information in a layout that decodes several times
faster (nested list columns are slow to decode). It differs from version 1 in two columns:

=====================  ===========================  ========  =================================
name                   Arrow type                   required  meaning
=====================  ===========================  ========  =================================
candidate_set          string                       yes       candidate ids joined by U+001F
feature_0 ... _{d-1}   float32, not nullable        no        context features, one column each
=====================  ===========================  ========  =================================

``candidate_set`` replaces ``candidate_ids``: the ids in candidate order, joined by the unit
separator :data:`CANDIDATE_SEPARATOR` (so ids must not contain it, nor be empty). Few distinct
sets exist (one per title, typically), so the column is dictionary-encoded and decodes as a few
integers per row. ``feature_0``, ..., ``feature_{d-1}`` replace ``features``: ``d`` consecutive
float32 columns, NaN for a missing value. Every other column is as in version 1.
"""

from __future__ import annotations

from enum import Enum

import pyarrow as pa

__all__ = [
    "CANDIDATE_SEPARATOR",
    "DECISION_COLUMNS",
    "LABEL_SET",
    "OPTIONAL_COLUMNS",
    "REQUIRED_COLUMNS",
    "REQUIRED_COLUMNS_V2",
    "SCHEMA",
    "SCHEMA_KEY",
    "SCHEMA_NAME",
    "SCHEMA_VERSION",
    "SCHEMA_VERSIONS",
    "RejectionReason",
    "decision_field",
    "feature_columns",
    "impressions_schema",
]

SCHEMA_NAME = "slate.impressions"
"""Name of the schema, without its version."""

SCHEMA_VERSION = 1
"""Major version written by default (the writers of :mod:`slate.sim` and :mod:`slate.serve`)."""

SCHEMA_VERSIONS: tuple[int, ...] = (1, 2)
"""Major versions readers accept; writers write either (``version=2`` is faster to read)."""

CANDIDATE_SEPARATOR = "\x1f"
"""Separator of the ids in a version-2 ``candidate_set`` (U+001F, the ASCII unit separator)."""

FEATURE_PREFIX = "feature_"
"""Version 2 stores feature ``j`` in the column ``f"{FEATURE_PREFIX}{j}"``."""

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

_DECISION_FIELDS: tuple[tuple[str, pa.DataType, str], ...] = (
    ("locked", pa.bool_(), "the request locked the title"),
    ("explore_eligible", pa.bool_(), "the title took part in the page's exploration draw"),
    ("explore_held", pa.bool_(), "the title shows a held (sticky) draw of an earlier page"),
    ("explore_rate", pa.float64(), "per-title exploration coin probability (null: none)"),
    ("explore_cap", pa.int32(), "most titles a new draw could explore (null: no cap)"),
    ("explore_probability", pa.float64(), "probability that an eligible title was explored"),
    ("compose_config", pa.dictionary(pa.int32(), pa.string()), "the ComposeConfig, as JSON"),
    ("context", pa.dictionary(pa.int32(), pa.string()), "the request's context, as JSON"),
)

DECISION_COLUMNS: tuple[str, ...] = tuple(name for name, _, _ in _DECISION_FIELDS)
"""Columns a :class:`slate.serve.DecisionLogger` adds to rebuild and replay a page exactly:
``locked``, ``explore_eligible``, ``explore_held`` (per title); ``explore_rate``,
``explore_cap``, ``explore_probability``, ``compose_config``, ``context`` (per page, repeated on
its rows). Writers accept them in either version; readers skip them (neither read nor reported
as ignored). With the eligible titles, the rate and the cap of a page, the joint probability
of any set of its titles being explored is exact (:mod:`slate.bandit.exploration`)."""


def decision_field(name: str) -> pa.Field:
    """The Arrow field of a :data:`DECISION_COLUMNS` column.

    Examples
    --------
    >>> decision_field("explore_cap").type
    DataType(int32)
    """
    for n, typ, doc in _DECISION_FIELDS:
        if n == name:
            return pa.field(n, typ, nullable=True, metadata={b"doc": doc.encode()})
    raise KeyError(f"'{name}' is not a decision column; they are {DECISION_COLUMNS}")


REQUIRED_COLUMNS: tuple[str, ...] = tuple(name for name, _, req, _ in _FIELDS if req)
"""Columns every file must have (values may still be null in bad rows: those are rejected)."""

OPTIONAL_COLUMNS: tuple[str, ...] = tuple(name for name, _, req, _ in _FIELDS if not req)
"""Columns a file may omit."""

REQUIRED_COLUMNS_V2: tuple[str, ...] = tuple(
    "candidate_set" if name == "candidate_ids" else name for name in REQUIRED_COLUMNS
)
"""Required columns of version 2."""


def feature_columns(n_features: int) -> list[str]:
    """Names of the version-2 feature columns.

    Examples
    --------
    >>> feature_columns(3)
    ['feature_0', 'feature_1', 'feature_2']
    """
    return [f"{FEATURE_PREFIX}{j}" for j in range(int(n_features))]


def impressions_schema(
    columns: tuple[str, ...] | None = None, *, version: int = SCHEMA_VERSION, n_features: int = 0
) -> pa.Schema:
    """The Arrow schema of ``slate.impressions/<version>`` (all columns, or the named ones in order).

    Every field but the version-2 feature columns is nullable at the Arrow level so that a bad
    row can be read and counted rather than failing the whole file; the reader rejects nulls in
    required columns. Version-2 feature columns hold NaN for a missing value.

    Parameters
    ----------
    columns : tuple of str, optional
        Names of the columns (version 2: ``"features"`` stands for all ``n_features`` columns).
    version : 1 or 2, default 1
    n_features : int, default 0
        Number of feature columns (version 2 only).

    Examples
    --------
    >>> schema = impressions_schema()
    >>> schema.field("candidate_ids").type
    ListType(list<item: string>)
    >>> schema.metadata[SCHEMA_KEY]
    b'slate.impressions/1'
    >>> v2 = impressions_schema(version=2, n_features=2)
    >>> v2.field("candidate_set").type, v2.names[-3:]
    (DataType(string), ['feature_0', 'feature_1', 'features_ref'])
    """
    if version not in SCHEMA_VERSIONS:
        raise KeyError(f"'{version}' is not a version of {SCHEMA_NAME}; versions are {SCHEMA_VERSIONS}")
    by_name = {name: (typ, doc) for name, typ, _, doc in _FIELDS}
    if version == 2:
        by_name = {
            ("candidate_set" if k == "candidate_ids" else k): v for k, v in by_name.items()
        }
        by_name["candidate_set"] = (pa.string(), "candidate ids joined by U+001F")
    names = tuple(by_name) if columns is None else columns
    fields = []
    for name in names:
        if version == 2 and name == "features":
            fields += [
                pa.field(c, pa.float32(), nullable=False, metadata={b"doc": f"feature {j}".encode()})
                for j, c in enumerate(feature_columns(n_features))
            ]
            continue
        if version == 2 and name.startswith(FEATURE_PREFIX) and name[len(FEATURE_PREFIX):].isdigit():
            fields.append(pa.field(name, pa.float32(), nullable=False))
            continue
        if name not in by_name:
            raise KeyError(f"'{name}' is not a column of {SCHEMA_NAME}/{version}")
        typ, doc = by_name[name]
        fields.append(pa.field(name, typ, nullable=True, metadata={b"doc": doc.encode()}))
    return pa.schema(fields, metadata={SCHEMA_KEY: f"{SCHEMA_NAME}/{version}".encode()})


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
    """``row`` or ``col`` negative or beyond int32 (``2**31 - 1``)."""
    MISSING_PROPENSITY = "missing_propensity"
    """``propensity`` is null."""
    PROPENSITY_OUT_OF_RANGE = "propensity_out_of_range"
    """``propensity`` is not a finite number in [1e-12, 1] (``MIN_PROPENSITY``)."""
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
    CORRUPT_ROW_GROUP = "corrupt_row_group"
    """The row's Parquet row group could not be read: a page checksum did not match, or the
    page could not be decoded (the file and row group are listed in the report's ``damaged``)."""
    PAGE_ID_SHARED = "page_id_shared"
    """A row whose ``member_id`` differs from that of the first row of its ``page_id``: two
    members' pages under one id (ids from uncoordinated writers that collided). Appended after
    ``corrupt_row_group`` to keep the codes stable; no row can have both reasons."""

    def __str__(self) -> str:
        return self.value
