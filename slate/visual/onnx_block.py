"""A user-supplied ONNX image model as one more block (``--onnx MODEL.onnx``).

The model's first input must be a float32 image batch, NCHW ``(1, 3, H, W)`` or NHWC
``(1, H, W, 3)``; dynamic ``H``/``W`` take the analysis frame's size. Pixels are RGB in
[0, 1]: bake any other normalisation (ImageNet mean/std) into the graph. The first output,
flattened, is the block; it is scaled to unit length and weighted like the others.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from slate.errors import InvalidEmbedInputError
from slate.visual.blocks import Views

__all__ = ["OnnxBlock", "load_onnx_block"]

_LOADED: dict[str, OnnxBlock] = {}


def _dim(value: Any, default: int) -> int:
    return int(value) if isinstance(value, (int, np.integer)) and int(value) > 0 else default


class OnnxBlock:
    """An ONNX image model run by onnxruntime on one CPU thread.

    Parameters
    ----------
    path : path
        The ``.onnx`` file.
    frame : (width, height)
        Used for dynamic input sizes.

    Raises
    ------
    InvalidEmbedInputError
        The file is not a loadable model, or its first input is not an image batch.
    """

    def __init__(self, path: str | Path, frame: tuple[int, int] = (64, 96)) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own, unexported exception types
            raise InvalidEmbedInputError(f"The 'onnx' model '{path}' cannot be loaded: {err}") from None
        first = self.session.get_inputs()[0]
        shape = list(first.shape)
        if len(shape) != 4 or not (shape[1] == 3 or shape[3] == 3):
            raise InvalidEmbedInputError(
                f"The 'onnx' model '{path}' must take an image batch (1, 3, H, W) or (1, H, W, 3) as its "
                f"first input; got '{first.name}' with shape {shape} instead."
            )
        if "float" not in first.type or "16" in first.type:
            raise InvalidEmbedInputError(
                f"The 'onnx' model '{path}' must take float32 pixels; got {first.type} instead.")
        self.channels_first = shape[1] == 3
        h_dim, w_dim = (shape[2], shape[3]) if self.channels_first else (shape[1], shape[2])
        self.size = (_dim(w_dim, frame[0]), _dim(h_dim, frame[1]))
        self.input_name = first.name

    def __call__(self, views: Views) -> NDArray[np.float32]:
        """The model's first output for the frame, flattened."""
        rgb = views.rgb
        if (rgb.shape[1], rgb.shape[0]) != self.size:
            rgb = np.asarray(cv2.resize(rgb, self.size, interpolation=cv2.INTER_LINEAR), dtype=np.float32)
        batch = (rgb.transpose(2, 0, 1) if self.channels_first else rgb)[None].astype(np.float32)
        out = self.session.run(None, {self.input_name: np.ascontiguousarray(batch)})[0]
        return np.asarray(out, dtype=np.float32).ravel()


def load_onnx_block(path: str | Path, frame: tuple[int, int] = (64, 96)) -> OnnxBlock:
    """The model at ``path``, loaded once per process (an :class:`OnnxBlock`; the tests build a
    tiny model with ``onnx.helper`` and run it through this)."""
    key = f"{Path(path).resolve()}:{frame}"
    if key not in _LOADED:
        _LOADED[key] = OnnxBlock(path, frame)
    return _LOADED[key]
