"""Image embeddings: the one type every stage uses for visual vectors keyed by image id.

Replay's diversity metrics, the page optimizer's similarity, ``compose()``'s catalog and the
tuning engine all take an :class:`ImageEmbeddings`; files written by ``slate embed`` load with
:meth:`ImageEmbeddings.load`. Rows are scaled to unit length once, here, so cosine similarity is
a dot product everywhere. Serving reads it through :meth:`ImageEmbeddings.page_units` (float32
rows with a per-title cache); ``slate.serve.ImageCatalog`` is a deprecated alias of this class.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from operator import itemgetter
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

_BLOCK_CACHE_SIZE = 4096  # titles whose padded float32 rows page_units keeps (a few MB)


@dataclass(frozen=True, eq=False)
class ImageEmbeddings:
    """Visual embeddings of images, keyed by ``image_id``; rows scaled to unit length.

    Build it with :func:`as_image_embeddings` from a mapping ``{image_id: vector}``, an
    ``(image_ids, array)`` pair, a pyarrow table or a file: Parquet with columns ``image_id``
    (string) and ``embedding`` (list of floats; the format of :func:`slate.tune.data.write_embeddings`,
    other columns ignored) or ``.npz`` with arrays ``image_id`` and ``embedding``.

    It is also ``compose()``'s catalog: :attr:`unit`, :meth:`rows` and :meth:`page_units` are the
    serving view (float32 unit rows plus a zero row for padding and unknown images, an index by
    id, a bounded per-title cache of padded blocks), built on first use.

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
    >>> emb.rows(["b", "zz", "a"]).tolist(), emb.unit[0].tolist()
    ([1, 2, 0], [0.6000000238418579, 0.800000011920929])
    """

    image_ids: tuple[str, ...]
    vectors: FloatArray
    source: str = "<arrays>"
    _ids: pa.Array = field(init=False, repr=False)
    # a title's image list -> its rows of `unit` and how many are missing (derived data, bounded:
    # a serving catalog repeats titles across members' pages)
    _blocks: dict[tuple[str, ...], tuple[NDArray[np.float32], int]] = field(
        init=False, repr=False, default_factory=dict
    )

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

    # ------------------------------------------------------------------ serving view
    @cached_property
    def index(self) -> dict[str, int]:
        """Row of each image id."""
        return {image: i for i, image in enumerate(self.image_ids)}

    @cached_property
    def unit(self) -> NDArray[np.float32]:
        """The unit rows in float32, plus one zero row (at :attr:`missing_row`): the embedding
        of padding and of unknown images. Read-only."""
        unit = np.vstack([self.vectors, np.zeros((1, self.dim))]).astype(np.float32)
        unit.flags.writeable = False
        return unit

    @property
    def missing_row(self) -> int:
        """The zero row of :attr:`unit`."""
        return len(self.image_ids)

    @property
    def embeddings(self) -> ImageEmbeddings:
        """This object (the attribute ``ImageCatalog`` had; kept for code written against it)."""
        return self

    def rows(self, image_ids: Any) -> NDArray[np.int64]:
        """Row of each image in :attr:`unit` (the zero row for an unknown image)."""
        ids = image_ids if isinstance(image_ids, (list, tuple)) else list(image_ids)
        if not ids:
            return np.zeros(0, dtype=np.int64)
        index = self.index
        try:
            found = itemgetter(*ids)(index)
        except KeyError:
            get = index.get
            missing = self.missing_row
            return np.array([get(i, missing) for i in ids], dtype=np.int64)
        return np.array(found if len(ids) > 1 else (found,), dtype=np.int64)

    def page_units(self, image_ids: Sequence[Sequence[str]], n_images: int) -> tuple[NDArray[np.float32], int]:
        """Unit embeddings of a page's candidates, padded, and how many images are unknown.

        Parameters
        ----------
        image_ids : sequence of sequences of str
            Each title's candidate images (at most ``n_images`` per title).
        n_images : int
            Padded width.

        Returns
        -------
        units : ndarray (n_titles, n_images, dim), float32
            ``unit[rows(image_ids[t])]`` padded with the zero row (the row of unknown images).
        n_missing : int
            Images without an embedding.

        Examples
        --------
        >>> emb = ImageEmbeddings(("a", "b"), np.array([[3.0, 4.0], [0.0, 2.0]]))
        >>> units, n_missing = emb.page_units([("b", "zz"), ("a",)], 2)
        >>> units.shape, n_missing, units[1, 1].tolist()
        ((2, 2, 2), 1, [0.0, 0.0])
        """
        get = self._blocks.get
        try:
            hits = [get(ids) for ids in image_ids]  # type: ignore[call-overload]  # tuples from a PageRequest
        except TypeError:  # lists: unhashable
            image_ids = [tuple(ids) for ids in image_ids]
            hits = [get(ids) for ids in image_ids]  # type: ignore[call-overload]
        found = [
            hit if hit is not None else self._block(tuple(ids))
            for hit, ids in zip(hits, image_ids, strict=True)
        ]
        blocks = [h[0] for h in found]
        n_missing = sum([h[1] for h in found])
        if blocks and all([len(b) == n_images for b in blocks]):
            return np.concatenate(blocks).reshape(len(blocks), n_images, -1), n_missing
        unit = self.unit
        units = np.zeros((len(blocks), n_images, unit.shape[1]), dtype=unit.dtype)
        for t, block in enumerate(blocks):
            units[t, : len(block)] = block
        return units, n_missing

    def _block(self, ids: tuple[str, ...]) -> tuple[NDArray[np.float32], int]:
        """A title's rows of :attr:`unit` and its number of unknown images (cached)."""
        rows = self.rows(ids)
        block = self.unit[rows]
        block.flags.writeable = False
        hit = (block, int((rows == self.missing_row).sum()))
        if len(self._blocks) >= _BLOCK_CACHE_SIZE:
            self._blocks.clear()
        self._blocks[ids] = hit
        return hit

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
