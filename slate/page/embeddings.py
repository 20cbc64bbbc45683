"""Image embeddings: the one type every stage uses for visual vectors keyed by image id.

Replay's diversity metrics, the page optimizer's similarity, ``compose()``'s catalog
(:class:`slate.serve.ImageCatalog` is a serving view of one) and the tuning engine all take an
:class:`ImageEmbeddings`; files written by ``slate embed`` load with :meth:`ImageEmbeddings.load`.
Rows are scaled to unit length once, here, so cosine similarity is a dot product everywhere.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import ArrayLike, NDArray

from slate._internal.text import examples
from slate.errors import InvalidEmbeddingsError
from slate.page.similarity import unit_vectors

__all__ = ["ImageEmbeddings", "as_image_embeddings"]

FloatArray = NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class ImageEmbeddings:
    """Visual embeddings of images, keyed by ``image_id``; rows scaled to unit length.

    Build it with :func:`as_image_embeddings` from a mapping ``{image_id: vector}``, an
    ``(image_ids, array)`` pair, a pyarrow table or a file: Parquet with columns ``image_id``
    (string) and ``embedding`` (list of floats; the format of :func:`slate.tune.data.write_embeddings`,
    other columns ignored) or ``.npz`` with arrays ``image_id`` and ``embedding``.

    Attributes
    ----------
    image_ids : tuple of str
    vectors : ndarray (n_images, dim), float64, read-only
        Unit rows (cosine similarity is their dot product).
    source : str
        Where the vectors came from, for messages.

    Raises
    ------
    InvalidEmbeddingsError
        Not one ``dim``-vector per id, repeated ids, NaN/infinite or all-zero vectors.

    Examples
    --------
    >>> import numpy as np
    >>> emb = ImageEmbeddings(("a", "b"), np.array([[3.0, 4.0], [0.0, 2.0]]))
    >>> emb.vectors.tolist(), emb.dim
    ([[0.6, 0.8], [0.0, 1.0]], 2)
    >>> vectors, has = emb.lookup(("b", "zz"))
    >>> vectors.tolist(), has.tolist()
    ([[0.0, 1.0], [0.0, 0.0]], [True, False])
    """

    image_ids: tuple[str, ...]
    vectors: FloatArray
    source: str = "<arrays>"
    _ids: pa.Array = field(init=False, repr=False)

    def __post_init__(self) -> None:
        ids = tuple(str(i) for i in self.image_ids)
        try:
            v = np.array(self.vectors, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise InvalidEmbeddingsError(
                f"The 'image_embeddings' ({self.source}) must be numeric vectors of one length; "
                f"got {err}."
            ) from None
        if v.ndim != 2 or v.shape[0] != len(ids) or v.shape[1] < 1:
            raise InvalidEmbeddingsError(
                f"The 'image_embeddings' ({self.source}) must be one vector per image id, an array "
                f"of shape ({len(ids)}, dim) with dim >= 1; got shape {v.shape} instead."
            )
        if len(set(ids)) != len(ids):
            seen: set[str] = set()
            dup = [i for i in ids if i in seen or seen.add(i)]  # type: ignore[func-returns-value]
            raise InvalidEmbeddingsError(
                f"The 'image_embeddings' ({self.source}) must have one vector per image id; got "
                f"{len(dup)} repeated ids, e.g. {examples(dup)}."
            )
        bad = ~np.isfinite(v).all(axis=1)
        if bad.any():
            raise InvalidEmbeddingsError(
                f"The 'image_embeddings' ({self.source}) must be finite; got NaN or infinite "
                f"values for {int(bad.sum())} images, e.g. {examples(np.asarray(ids)[bad])}."
            )
        zero = ~(np.abs(v) > 0).any(axis=1)
        if zero.any():
            raise InvalidEmbeddingsError(
                f"The 'image_embeddings' ({self.source}) must be non-zero vectors (cosine "
                f"similarity is undefined otherwise); got zero vectors for {int(zero.sum())} "
                f"images, e.g. {examples(np.asarray(ids)[zero])}."
            )
        v = unit_vectors(v)  # scaled first: magnitudes near 1e155 do not overflow the norm
        v.flags.writeable = False
        object.__setattr__(self, "image_ids", ids)
        object.__setattr__(self, "vectors", v)
        object.__setattr__(self, "_ids", pa.array(ids, type=pa.string()))

    @property
    def dim(self) -> int:
        """Length of the vectors."""
        return int(self.vectors.shape[1])

    def __len__(self) -> int:
        return len(self.image_ids)

    def lookup(self, image_ids: Sequence[str]) -> tuple[FloatArray, NDArray[np.bool_]]:
        """Vectors of ``image_ids`` (zero rows for ids without one) and which ids have one."""
        pos = pc.index_in(pa.array(list(image_ids), type=pa.string()), value_set=self._ids)
        idx = np.asarray(pos.to_numpy(zero_copy_only=False), dtype=np.float64)
        has = np.isfinite(idx)
        out = np.zeros((len(idx), self.dim))
        out[has] = self.vectors[idx[has].astype(np.int64)]
        return out, has

    @classmethod
    def from_mapping(cls, mapping: Mapping[Any, ArrayLike], source: str = "<mapping>") -> ImageEmbeddings:
        """From ``{image_id: vector}``."""
        ids = [str(k) for k in mapping]
        rows = [np.asarray(v, dtype=np.float64) for v in mapping.values()]
        shapes = {r.shape for r in rows}
        if len(shapes) > 1 or any(len(s) != 1 for s in shapes):
            lengths = sorted({r.size if r.ndim == 1 else -1 for r in rows})
            odd = [i for i, r in zip(ids, rows, strict=True) if r.ndim != 1 or r.shape != rows[0].shape]
            raise InvalidEmbeddingsError(
                f"The 'image_embeddings' ({source}) vectors must be 1-D and all of one length; got "
                f"lengths {lengths} (-1: not 1-D), e.g. {examples(odd)} differ from "
                f"{ids[0]!r} ({rows[0].shape})."
            )
        dim = rows[0].size if rows else 1
        return cls(tuple(ids), np.stack(rows) if rows else np.zeros((0, dim)), source)

    @classmethod
    def from_table(cls, table: pa.Table, source: str = "<table>") -> ImageEmbeddings:
        """From a table with ``image_id`` and ``embedding`` (list of floats) columns."""
        for name in ("image_id", "embedding"):
            if name not in table.column_names:
                raise InvalidEmbeddingsError(
                    f"The 'image_embeddings' ({source}) must have a column '{name}'; got "
                    f"{table.column_names}."
                )
        ids = table.column("image_id").to_pylist()
        if any(i is None for i in ids):
            raise InvalidEmbeddingsError(f"The 'image_id' column of {source} has nulls.")
        column = table.column("embedding").combine_chunks()
        if not (pa.types.is_list(column.type) or pa.types.is_large_list(column.type)
                or pa.types.is_fixed_size_list(column.type)):
            raise InvalidEmbeddingsError(
                f"The 'embedding' column of {source} must be a list of floats; got {column.type}."
            )
        if column.null_count:
            nulls = np.asarray(column.is_null().to_numpy(zero_copy_only=False))
            raise InvalidEmbeddingsError(
                f"The 'embedding' column of {source} has {column.null_count} nulls, e.g. for "
                f"{examples(np.asarray(ids, dtype=object)[nulls])}."
            )
        lengths = np.asarray(pc.list_value_length(column).to_numpy(zero_copy_only=False))
        if len(lengths) and (lengths != lengths[0]).any():
            odd = np.asarray(ids, dtype=object)[lengths != lengths[0]]
            raise InvalidEmbeddingsError(
                f"The 'embedding' vectors of {source} must all have one length; got lengths "
                f"{sorted(set(lengths.tolist()))[:5]}, e.g. {examples(odd)} differ from "
                f"{str(ids[0])!r} ({int(lengths[0])})."
            )
        dim = int(lengths[0]) if len(lengths) else 1
        flat = pc.list_flatten(column).cast(pa.float64())
        values = np.asarray(flat.to_numpy(zero_copy_only=False), dtype=np.float64)
        return cls(tuple(str(i) for i in ids), values.reshape(len(ids), dim), source)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ImageEmbeddings:
        """From a Parquet (``image_id``, ``embedding``) or ``.npz`` (``image_id``, ``embedding``)
        file."""
        p = Path(path)
        if not p.is_file():
            raise InvalidEmbeddingsError(
                f"The 'image_embeddings' file must exist; got '{p}' instead.")
        if p.suffix.lower() == ".npz":
            from slate.limits import check_npz

            check_npz(p, "image-embeddings file")
            try:
                with np.load(p, allow_pickle=False) as data:
                    missing = [k for k in ("image_id", "embedding") if k not in data.files]
                    if missing:
                        raise InvalidEmbeddingsError(
                            f"The 'image_embeddings' file '{p}' must hold arrays 'image_id' and "
                            f"'embedding'; got {sorted(data.files)}."
                        )
                    ids, emb = data["image_id"].tolist(), data["embedding"]
            except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
                if isinstance(err, InvalidEmbeddingsError):
                    raise
                raise InvalidEmbeddingsError(
                    f"The 'image_embeddings' file '{p}' is not a readable .npz file ({err})."
                ) from None
            return cls(tuple(str(x) for x in ids), emb, str(p))
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(p)
        except (pa.ArrowException, OSError) as err:
            raise InvalidEmbeddingsError(
                f"The 'image_embeddings' file '{p}' must be Parquet or .npz; reading it failed "
                f"({err})."
            ) from None
        return cls.from_table(table, str(p))


def as_image_embeddings(obj: Any) -> ImageEmbeddings:
    """An :class:`ImageEmbeddings` from a mapping, an ``(ids, array)`` pair, a pyarrow table or
    a Parquet/``.npz`` path.

    Examples
    --------
    >>> as_image_embeddings({"a": [1.0, 0.0], "b": [0.0, 2.0]}).vectors.tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    >>> as_image_embeddings((["a"], [[1.0, 2.0, 3.0]])).dim
    3
    """
    if isinstance(obj, ImageEmbeddings):
        return obj
    if isinstance(obj, (str, os.PathLike)):
        return ImageEmbeddings.load(obj)
    if isinstance(obj, pa.Table):
        return ImageEmbeddings.from_table(obj)
    if isinstance(obj, Mapping):
        return ImageEmbeddings.from_mapping(obj)
    if isinstance(obj, (tuple, list)) and len(obj) == 2:
        ids, vectors = obj
        return ImageEmbeddings(tuple(str(i) for i in np.asarray(ids, dtype=object).ravel()),
                               vectors, "<(ids, array)>")
    raise InvalidEmbeddingsError(
        "The 'image_embeddings' must be a mapping {image_id: vector}, an (image_ids, array) "
        f"pair, a pyarrow table or a Parquet/.npz path; got {type(obj).__name__} instead."
    )
