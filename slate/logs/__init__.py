"""Impression logs: the versioned Parquet schema, writing, and validated reading.

>>> from slate.logs import SCHEMA_VERSION
>>> SCHEMA_VERSION
1
"""

from slate.logs.join import JoinReport, join_outcomes
from slate.logs.log import ImpressionLog, RejectionReport
from slate.logs.obp import (
    bernoulli_ts_distribution,
    from_obp,
    open_bandit_feedback,
    read_open_bandit_dataset,
    to_obp,
)
from slate.logs.parquet import (
    DEFAULT_ROW_GROUP_SIZE,
    ImpressionArrays,
    ImpressionWriter,
    InvalidLogError,
    impressions_table,
    read_impressions,
    to_version2,
    validate_impressions,
    write_impressions,
)
from slate.logs.schema import (
    LABEL_SET,
    OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
    SCHEMA,
    SCHEMA_NAME,
    SCHEMA_VERSION,
    SCHEMA_VERSIONS,
    RejectionReason,
    impressions_schema,
)
from slate.logs.stream import list_log_files, merge_reports, scan_impressions

__all__ = [
    "DEFAULT_ROW_GROUP_SIZE",
    "LABEL_SET",
    "OPTIONAL_COLUMNS",
    "REQUIRED_COLUMNS",
    "SCHEMA",
    "SCHEMA_NAME",
    "SCHEMA_VERSION",
    "SCHEMA_VERSIONS",
    "ImpressionArrays",
    "ImpressionLog",
    "ImpressionWriter",
    "InvalidLogError",
    "JoinReport",
    "RejectionReason",
    "RejectionReport",
    "bernoulli_ts_distribution",
    "from_obp",
    "impressions_schema",
    "impressions_table",
    "join_outcomes",
    "list_log_files",
    "merge_reports",
    "open_bandit_feedback",
    "read_impressions",
    "read_open_bandit_dataset",
    "scan_impressions",
    "to_obp",
    "to_version2",
    "validate_impressions",
    "write_impressions",
]
