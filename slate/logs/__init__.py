"""Impression logs: the versioned Parquet schema, writing, and validated reading.

>>> from slate.logs import SCHEMA_VERSION
>>> SCHEMA_VERSION
1
"""

from slate.logs.log import ImpressionLog, RejectionReport
from slate.logs.parquet import (
    DEFAULT_ROW_GROUP_SIZE,
    ImpressionWriter,
    InvalidLogError,
    impressions_table,
    read_impressions,
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
    RejectionReason,
    impressions_schema,
)

__all__ = [
    "DEFAULT_ROW_GROUP_SIZE",
    "LABEL_SET",
    "OPTIONAL_COLUMNS",
    "REQUIRED_COLUMNS",
    "SCHEMA",
    "SCHEMA_NAME",
    "SCHEMA_VERSION",
    "ImpressionLog",
    "ImpressionWriter",
    "InvalidLogError",
    "RejectionReason",
    "RejectionReport",
    "impressions_schema",
    "impressions_table",
    "read_impressions",
    "validate_impressions",
    "write_impressions",
]
