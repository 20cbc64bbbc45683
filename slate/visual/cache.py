"""A cache of embeddings keyed by file content, so a re-run embeds only new or changed files.

One Parquet file with columns ``content_hash`` (BLAKE2b-128 of the file's bytes),
``fingerprint`` (:meth:`~slate.visual.assemble.VisualOptions.fingerprint`: format version,
frame, weights, ONNX model) and ``embedding`` (list of float32). Vectors are reused only
under the same fingerprint; rows of other fingerprints are kept when the cache is saved. A
renamed or moved file is found by its content; an edited file gets a new hash.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import NDArray

from slate.errors import InvalidEmbedInputError

__all__ = ["EmbeddingCache", "content_hash"]


def content_hash(data: bytes) -> str:
    """BLAKE2b-128 hex digest of a file's bytes.

    Examples
    --------
    >>> content_hash(b"poster")[:12]
    'ac79a52d0d11'
    """
    return hashlib.blake2b(data, digest_size=16).hexdigest()


class EmbeddingCache:
    """Embeddings by content hash for one options fingerprint, read from and saved to ``path``.

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "cache.parquet"
    >>> cache = EmbeddingCache(path, "opts-1")
    >>> cache.put("abc", np.array([0.6, 0.8], np.float32))
    >>> cache.save()
    >>> EmbeddingCache(path, "opts-1").get("abc").tolist(), EmbeddingCache(path, "opts-2").get("abc")
    ([0.6000000238418579, 0.800000011920929], None)
    """

    def __init__(self, path: str | Path, fingerprint: str) -> None:
        self.path = Path(path)
        self.fingerprint = fingerprint
        self._vectors: dict[str, NDArray[np.float32]] = {}
        self._others: pa.Table | None = None
        self._dirty = False
        if self.path.is_file():
            self._load()

    def _load(self) -> None:
        try:
            table = pq.read_table(self.path)
            hashes = table.column("content_hash").to_pylist()
            prints = np.asarray(table.column("fingerprint").to_pylist(), dtype=object)
            column = table.column("embedding").combine_chunks()
        except (pa.ArrowException, OSError, KeyError) as err:
            raise InvalidEmbedInputError(
                f"The 'cache' file '{self.path}' is not an embedding cache ({err}); remove it or pass "
                "another --cache."
            ) from None
        mine = prints == self.fingerprint
        if mine.any():
            lengths = np.asarray(column.value_lengths().to_numpy(zero_copy_only=False))
            flat = np.asarray(column.flatten().to_numpy(zero_copy_only=False), dtype=np.float32)
            starts = np.concatenate([[0], np.cumsum(lengths)])
            for i in np.flatnonzero(mine).tolist():
                self._vectors[hashes[i]] = flat[starts[i]:starts[i + 1]]
        self._others = table.filter(pa.array(~mine)) if (~mine).any() else None

    def __len__(self) -> int:
        return len(self._vectors)

    def get(self, key: str) -> NDArray[np.float32] | None:
        """The cached vector of a content hash, or None."""
        return self._vectors.get(key)

    def put(self, key: str, vector: NDArray[np.float32]) -> None:
        """Remember a vector (saved by :meth:`save`)."""
        self._vectors[key] = np.asarray(vector, dtype=np.float32)
        self._dirty = True

    def save(self) -> None:
        """Write the cache atomically (a temporary file renamed over the old one)."""
        if not self._dirty:
            return
        keys = list(self._vectors)
        vectors = [self._vectors[k] for k in keys]
        flat = np.concatenate(vectors) if vectors else np.zeros(0, np.float32)
        offsets = np.concatenate([[0], np.cumsum([len(v) for v in vectors])]).astype(np.int32)
        table = pa.table({
            "content_hash": pa.array(keys, pa.string()),
            "fingerprint": pa.array([self.fingerprint] * len(keys), pa.string()),
            "embedding": pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, pa.float32())),
        })
        if self._others is not None:
            table = pa.concat_tables([self._others.cast(table.schema), table])
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + f".tmp-{os.getpid()}")
        pq.write_table(table, tmp)
        os.replace(tmp, self.path)
        self._dirty = False
