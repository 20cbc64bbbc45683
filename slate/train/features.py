"""A feature store for logs that reference their features (``features_ref``) instead of inlining them.

:class:`FeatureStore` reads a Parquet file with a string ``key`` column and the features, either
a ``features`` list column or ``feature_0 .. feature_{d-1}`` columns, and looks up a log's
``features_ref`` values in a sorted key array (vectorised). :func:`slate.train.train` uses it
when the log has no inline features; a row whose reference is null or not in the store is left
out of the fit and counted (``missing_features_ref``, ``unknown_features_ref``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import NDArray

from slate.logs.parquet import InvalidLogError
from slate.logs.schema import FEATURE_PREFIX

__all__ = ["FeatureStore", "load_feature_store"]


@dataclass(frozen=True, eq=False)
class FeatureStore:
    """Features by key.

    Attributes
    ----------
    keys : ndarray (n,), str
        Sorted, distinct.
    values : ndarray (n, d), float32
    source : str

    Examples
    --------
    >>> import numpy as np
    >>> store = FeatureStore.from_arrays(["b", "a"], [[2.0], [1.0]])
    >>> x, present, found = store.lookup(np.array(["a", "zz", None], dtype=object), 3)
    >>> x[:, 0].tolist(), present.tolist(), found.tolist()
    ([1.0, 0.0, 0.0], [True, True, False], [True, False, False])
    """

    keys: NDArray[np.str_]
    values: NDArray[np.float32]
    source: str = "<arrays>"

    @classmethod
    def from_arrays(cls, keys: object, values: object, source: str = "<arrays>") -> FeatureStore:
        """From keys and a ``(n, d)`` array (sorted here; repeated keys are an error)."""
        k = np.asarray(keys, dtype=str)
        v = np.asarray(values, dtype=np.float32)
        if v.ndim != 2 or v.shape[0] != len(k):
            raise InvalidLogError(f"The feature store '{source}' must have one feature row per key; got "
                                  f"{v.shape} for {len(k)} keys.")
        order = np.argsort(k, kind="stable")
        k, v = k[order], v[order]
        if len(k) > 1 and bool((k[1:] == k[:-1]).any()):
            dup = k[1:][k[1:] == k[:-1]][0]
            raise InvalidLogError(f"The feature store '{source}' repeats the key '{dup}'.")
        if not np.isfinite(v).all():
            raise InvalidLogError(f"The feature store '{source}' holds non-finite features.")
        return cls(k, np.ascontiguousarray(v), source)

    @property
    def n_features(self) -> int:
        """Features per key."""
        return int(self.values.shape[1])

    def lookup(self, refs: NDArray[np.object_] | None, n_rows: int) -> tuple[NDArray[np.float32], NDArray[np.bool_], NDArray[np.bool_]]:
        """Features of each reference (zeros where not found), whether the row has a reference,
        and whether it was found (``refs`` None: no row has one)."""
        x = np.zeros((n_rows, self.n_features), np.float32)
        if refs is None:
            return x, np.zeros(n_rows, bool), np.zeros(n_rows, bool)
        present = np.array([r is not None for r in refs], bool)
        if len(self.keys) == 0:
            return x, present, np.zeros(n_rows, bool)
        text = np.where(present, refs, "").astype(str)
        pos = np.minimum(np.searchsorted(self.keys, text), len(self.keys) - 1)
        found = present & (self.keys[pos] == text)
        x[found] = self.values[pos[found]]
        return x, present, found


@lru_cache(maxsize=4)
def _load(path: str, mtime: float) -> FeatureStore:
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise InvalidLogError(f"The feature store '{path}' cannot be read as Parquet ({exc}).") from None
    names = table.column_names
    if "key" not in names:
        raise InvalidLogError(f"The feature store '{path}' must have a 'key' column; got {names}.")
    keys = table.column("key").cast(pa.string())
    if keys.null_count:
        raise InvalidLogError(f"The 'key' column of the feature store '{path}' has {keys.null_count} nulls.")
    flat = sorted((c for c in names if c.startswith(FEATURE_PREFIX) and c[len(FEATURE_PREFIX):].isdigit()),
                  key=lambda c: int(c[len(FEATURE_PREFIX):]))
    if flat:
        values = np.stack([table.column(c).to_numpy(zero_copy_only=False) for c in flat], axis=1)
    elif "features" in names:
        column = table.column("features").combine_chunks()
        lengths = column.value_lengths().to_numpy(zero_copy_only=False)
        if column.null_count or len(set(lengths.tolist())) > 1:
            raise InvalidLogError(f"The 'features' of the feature store '{path}' must be lists of one length.")
        d = int(lengths[0]) if len(lengths) else 0
        values = np.asarray(column.flatten().to_numpy(zero_copy_only=False), np.float32).reshape(-1, d)
    else:
        raise InvalidLogError(f"The feature store '{path}' must have 'features' or 'feature_j' columns; got {names}.")
    return FeatureStore.from_arrays(keys.to_numpy(zero_copy_only=False), values, source=path)


def load_feature_store(path: str | os.PathLike[str]) -> FeatureStore:
    """Read a feature store (cached per process and file version: dask workers read it once)."""
    p = Path(path)
    if not p.is_file():
        raise InvalidLogError(f"The feature store must be an existing Parquet file; got '{path}' instead.")
    return _load(str(p.resolve()), p.stat().st_mtime)
