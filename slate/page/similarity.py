"""Pair similarity, defined once: unit-normalised embeddings and ``max(0, cosine)``.

The page problem, serving (:func:`slate.serve.compose`), tuning and the offline metrics all
measure how alike two images look with these functions, so a page scores the same everywhere.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["cosine_similarity_pairs", "positive_cosine", "unit_vectors"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]


def positive_cosine(cosines: NDArray[Any], out: NDArray[Any] | None = None) -> NDArray[Any]:
    """Similarity of images from their cosines: ``max(0, cos)`` (looks pointing opposite ways
    earn no bonus; they are just unalike). ``out`` (e.g. ``cosines`` itself) is filled in place.

    Examples
    --------
    >>> import numpy as np
    >>> positive_cosine(np.array([0.5, -0.2, 1.0])).tolist()
    [0.5, 0.0, 1.0]
    """
    if out is None:
        return np.maximum(cosines, 0.0)
    return np.maximum(cosines, 0.0, out=out)


def unit_vectors(x: FloatArray) -> FloatArray:
    """``x`` scaled to unit length along its last axis (zero vectors stay zero).

    Each vector is first divided by its largest absolute entry, so the norm neither overflows
    (entries near 1e155 and beyond) nor underflows (entries near 1e-160): the direction, and so
    the cosine similarity, is that of the vector whatever its magnitude.

    Examples
    --------
    >>> import numpy as np
    >>> unit_vectors(np.array([[3e200, 4e200], [0.0, 0.0], [3e-170, -4e-170]])).tolist()
    [[0.6, 0.8], [0.0, 0.0], [0.6, -0.8]]
    """
    x = np.asarray(x, dtype=np.float64)
    scale = np.max(np.abs(x), axis=-1, keepdims=True) if x.shape[-1] else np.zeros((*x.shape[:-1], 1))
    scaled = np.divide(x, scale, out=np.zeros_like(x), where=scale > 0)
    norms = np.linalg.norm(scaled, axis=-1, keepdims=True)
    return np.divide(scaled, norms, out=np.zeros_like(x), where=norms > 0)


def cosine_similarity_pairs(embeddings: FloatArray, pairs: IntArray, candidates: BoolArray) -> FloatArray:
    """``max(0, cosine)`` between every image of title ``a`` and every image of title ``b``.

    Parameters
    ----------
    embeddings : ndarray of shape (n_titles, n_images, dim)
    pairs : ndarray of shape (n_pairs, 2)
    candidates : ndarray of shape (n_titles, n_images), bool

    Returns
    -------
    ndarray of shape (n_pairs, n_images, n_images)
        Zero wherever either image is padding.

    Examples
    --------
    >>> import numpy as np
    >>> emb = np.array([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 1.0], [-1.0, 0.0]]])
    >>> sim = cosine_similarity_pairs(emb, np.array([[0, 1]]), np.ones((2, 2), bool))
    >>> np.round(sim[0], 3).tolist()
    [[0.707, 0.0], [0.707, 0.0]]
    """
    unit = unit_vectors(embeddings) * candidates[:, :, None]
    if len(pairs) == 0:
        k = embeddings.shape[1]
        return np.zeros((0, k, k))
    return positive_cosine(np.matmul(unit[pairs[:, 0]], unit[pairs[:, 1]].transpose(0, 2, 1)))
