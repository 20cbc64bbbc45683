"""Training scoring policies from impression logs: in memory, streaming, or on dask.

>>> from slate.train import ENGINES
>>> ENGINES
('memory', 'stream', 'dask')

See :func:`train` and the ``slate train`` command (:mod:`slate.train.cli`).
"""

from slate.train.diagnostics import TrainDiagnostics
from slate.train.features import FeatureStore, load_feature_store
from slate.train.statistics import FileFold, Layout, LogStatistics
from slate.train.training import ENGINES, TrainResult, TrainSpec, file_statistics, train

__all__ = [
    "ENGINES",
    "FeatureStore",
    "FileFold",
    "Layout",
    "LogStatistics",
    "TrainDiagnostics",
    "TrainResult",
    "TrainSpec",
    "file_statistics",
    "load_feature_store",
    "train",
]
