"""Blocks to one embedding: each block scaled to unit length, weighted, joined, unit-normalised.

With every block non-zero, the cosine of two embeddings is the weighted mean of the blocks'
cosines, ``sum_b w_b² cos_b / sum_b w_b²``: a weight says how much a block counts in
"similar". A block that is all zeros (``faces`` without a face) stays zero.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from slate.errors import InvalidEmbedInputError
from slate.visual.blocks import BLOCK_NAMES, BLOCKS, make_views
from slate.visual.decode import DEFAULT_MAX_PIXELS

__all__ = ["DEFAULT_WEIGHTS", "FORMAT_VERSION", "VisualOptions", "embed_pixels", "parse_weights"]

FORMAT_VERSION = "slate.visual/1"
"""Changes whenever a block's computation changes (it keys the cache)."""

DEFAULT_WEIGHTS: Mapping[str, float] = {
    "colour": 1.0, "tone": 0.6, "layout": 1.0, "texture": 1.0, "hash": 1.0, "faces": 0.5, "onnx": 1.0,
}
"""Default block weights (``onnx`` counts only with a model)."""


def _check_frame(frame: Any) -> tuple[int, int]:
    try:
        w, h = (int(x) for x in frame)
    except (TypeError, ValueError):
        raise InvalidEmbedInputError(f"The 'frame' option must be (width, height); got {frame!r} instead.") from None
    if not (16 <= w <= 1024 and 16 <= h <= 1024):
        raise InvalidEmbedInputError(
            f"The 'frame' option must be between 16 and 1024 pixels a side; got {w}x{h} instead.")
    return w, h


@dataclass(frozen=True)
class VisualOptions:
    """How images become embeddings.

    Parameters
    ----------
    frame : (width, height), default (64, 96)
        Analysis size (a 2:3 poster); images are resized to it.
    weights : mapping block -> float, optional
        Overrides of :data:`DEFAULT_WEIGHTS`; a weight of 0 leaves the block out.
    onnx_model : path, optional
        An ONNX image model whose first output becomes the ``onnx`` block
        (see :mod:`slate.visual.onnx_block`).
    max_pixels : int
        Larger images are rejected as ``too-large``.

    Examples
    --------
    >>> options = VisualOptions(weights={"faces": 0})
    >>> options.active_blocks
    ('colour', 'tone', 'layout', 'texture', 'hash')
    >>> VisualOptions(weights={"colour": -1})
    Traceback (most recent call last):
    ...
    slate.errors.InvalidEmbedInputError: The 'weights' option must be finite and >= 0; got colour=-1 instead.
    """

    frame: tuple[int, int] = (64, 96)
    weights: Mapping[str, float] = field(default_factory=dict)
    onnx_model: str | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS

    def __post_init__(self) -> None:
        object.__setattr__(self, "frame", _check_frame(self.frame))
        known = (*BLOCK_NAMES, "onnx")
        merged = dict(DEFAULT_WEIGHTS)
        for name, value in dict(self.weights).items():
            if name not in known:
                raise InvalidEmbedInputError(
                    f"The 'weights' option must name blocks among {list(known)}; got {name!r} instead.")
            try:
                w = float(value)
            except (TypeError, ValueError):
                w = float("nan")
            if not np.isfinite(w) or w < 0:
                raise InvalidEmbedInputError(
                    f"The 'weights' option must be finite and >= 0; got {name}={value!r} instead.")
            merged[name] = w
        if self.onnx_model is not None:
            path = Path(self.onnx_model)
            if not path.is_file():
                raise InvalidEmbedInputError(f"The 'onnx' model file must exist; got '{path}' instead.")
            object.__setattr__(self, "onnx_model", str(path))
        object.__setattr__(self, "weights", merged)
        if not self.active_blocks:
            raise InvalidEmbedInputError("The 'weights' option must leave at least one block with a weight > 0.")
        if int(self.max_pixels) < 1:
            raise InvalidEmbedInputError(f"The 'max_pixels' option must be >= 1; got {self.max_pixels!r} instead.")

    @property
    def active_blocks(self) -> tuple[str, ...]:
        """Blocks in the embedding, in order (``onnx`` last, with a model)."""
        names = [n for n in BLOCK_NAMES if self.weights[n] > 0]
        if self.onnx_model is not None and self.weights["onnx"] > 0:
            names.append("onnx")
        return tuple(names)

    def fingerprint(self) -> str:
        """A key of everything that changes the vectors (format version, frame, weights, the
        ONNX model's bytes): cached vectors are reused only under the same key."""
        model = None
        if self.onnx_model is not None:
            model = hashlib.blake2b(Path(self.onnx_model).read_bytes(), digest_size=16).hexdigest()
        spec = {"format": FORMAT_VERSION, "frame": list(self.frame), "model": model,
                "weights": {n: self.weights[n] for n in self.active_blocks}}
        return hashlib.blake2b(json.dumps(spec, sort_keys=True).encode(), digest_size=16).hexdigest()


def parse_weights(text: str) -> dict[str, float]:
    """``"colour=1,faces=0"`` -> ``{"colour": 1.0, "faces": 0.0}`` (the CLI's ``--weights``).

    Examples
    --------
    >>> parse_weights("colour=2, faces=0")
    {'colour': 2.0, 'faces': 0.0}
    """
    out: dict[str, float] = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, sep, value = item.partition("=")
        try:
            if not sep or not name.strip():
                raise ValueError
            out[name.strip()] = float(value)
        except ValueError:
            raise InvalidEmbedInputError(
                f"The 'weights' option must be NAME=NUMBER pairs separated by commas; got {item!r}.") from None
    return out


def embed_pixels(pixels: NDArray[np.uint8], options: VisualOptions, onnx_block: Any = None) -> NDArray[np.float32]:
    """The unit embedding of one analysis frame.

    Parameters
    ----------
    pixels : ndarray (height, width, 3), uint8
        From :func:`~slate.visual.decode.decode_image` with ``options.frame``.
    options : VisualOptions
    onnx_block : callable, optional
        The loaded model (:class:`~slate.visual.onnx_block.OnnxBlock`) when
        ``options.onnx_model`` is set.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> e = embed_pixels(rng.integers(0, 256, (96, 64, 3), dtype=np.uint8), VisualOptions())
    >>> e.dtype.name, e.shape, round(float(np.linalg.norm(e)), 5)
    ('float32', (800,), 1.0)
    """
    views = make_views(pixels)
    parts = []
    for name in options.active_blocks:
        block = onnx_block(views) if name == "onnx" else BLOCKS[name](views)
        block = np.asarray(block, dtype=np.float32).ravel()
        norm = float(np.linalg.norm(block))
        if norm > 0:
            block = block * np.float32(options.weights[name] / norm)
        parts.append(block)
    vector = np.concatenate(parts)
    norm = float(np.linalg.norm(vector))
    if norm > 0:
        vector /= np.float32(norm)
    return vector.astype(np.float32, copy=False)
