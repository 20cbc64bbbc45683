"""Descriptor blocks: what an image looks like, in a few hundred numbers, without a model.

Each block maps the analysis frame (``(height, width, 3)`` uint8 RGB, see
:func:`slate.visual.decode.decode_image`) to a 1-D float32 vector; blocks are centred where a
raw histogram would make every pair of images look alike (a histogram's bins minus their
mean), then :mod:`slate.visual.assemble` scales each to unit length, weights it and joins
them. What each block captures and why it matters for a page: ``docs/visual.md``.

============  ====  ==========================================================================
block         dim   content
============  ====  ==========================================================================
``colour``    133   CIELAB a*b* histogram (8×8, square-root, centred), dominant colours, moments
``tone``      12    brightness, contrast, dark/bright percentiles, L* histogram
``layout``    36    6×4 grid of L* (minus its mean, over its spread) and 3×2 grid of a*, b*
``texture``   550   HOG of the grey frame (9 orientations, 16-pixel cells) and an LBP histogram
``hash``      63    DCT perceptual hash (pHash): signs of 63 low frequencies around their median
``faces``     6     faces found by scikit-image's shipped LBP frontal-face cascade
============  ====  ==========================================================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

__all__ = ["BLOCKS", "BLOCK_NAMES", "Views", "block_dims", "hog", "make_views"]

FloatVector = NDArray[np.float32]


@dataclass(frozen=True)
class Views:
    """The analysis frame in the forms the blocks read (computed once per image).

    Attributes
    ----------
    rgb : ndarray (height, width, 3), float32 in [0, 1]
    grey : ndarray (height, width), float32 in [0, 1] (Rec. 601 luma)
    lab : ndarray (height, width, 3), float32: L* in [0, 100], a* and b* in about [-128, 127]
    """

    rgb: NDArray[np.float32]
    grey: NDArray[np.float32]
    lab: NDArray[np.float32]


def make_views(pixels: NDArray[np.uint8]) -> Views:
    """:class:`Views` of a ``(height, width, 3)`` uint8 RGB frame.

    Examples
    --------
    >>> import numpy as np
    >>> v = make_views(np.full((96, 64, 3), 255, np.uint8))
    >>> round(float(v.lab[0, 0, 0]), 1), round(float(v.grey.max()), 3)
    (100.0, 1.0)
    """
    rgb = pixels.astype(np.float32) * np.float32(1.0 / 255.0)
    grey = np.asarray(cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY), dtype=np.float32) * np.float32(1.0 / 255.0)
    # 8-bit CIELAB (OpenCV's lookup tables; within 2 units of the float conversion, 3x faster)
    lab = np.asarray(cv2.cvtColor(pixels, cv2.COLOR_RGB2Lab), dtype=np.float32) - _LAB_OFFSET
    lab *= _LAB_SCALE
    return Views(rgb, grey, lab)


_LAB_OFFSET = np.array([0.0, 128.0, 128.0], dtype=np.float32)
_LAB_SCALE = np.array([100.0 / 255.0, 1.0, 1.0], dtype=np.float32)


def _sqrt_hist(index: NDArray[np.intp], n_bins: int) -> FloatVector:
    """Square-root (Hellinger) histogram of bin indices, minus its mean."""
    h = np.sqrt(np.bincount(index.ravel(), minlength=n_bins)[:n_bins] / max(index.size, 1))
    return (h - h.mean()).astype(np.float32)


def _bins(values: NDArray[np.float32], low: float, high: float, n: int) -> NDArray[np.intp]:
    scaled = (values - low) * (n / (high - low))
    return np.clip(scaled, 0, n - 1).astype(np.intp)


def _palette(lab: NDArray[np.float32], n_colours: int = 3) -> FloatVector:
    """Dominant colours: the ``n_colours`` most populated cells of a 4×4×4 CIELAB grid, as the
    square roots of their shares (other cells zero): two images share a dominant colour when
    their vectors overlap."""
    cells = (_bins(lab[..., 0], 0.0, 100.0, 4) * 16 + _bins(lab[..., 1], -50.0, 50.0, 4) * 4
             + _bins(lab[..., 2], -50.0, 50.0, 4))
    shares = np.bincount(cells.ravel(), minlength=64) / max(cells.size, 1)
    top = np.argsort(-shares, kind="stable")[:n_colours]
    out = np.zeros(64, dtype=np.float32)
    out[top] = np.sqrt(shares[top])
    return out


def colour(v: Views) -> FloatVector:
    """CIELAB colour: an 8×8 a*b* histogram (square-root, centred), the dominant colours
    (:func:`_palette`) and chroma moments."""
    a, b = v.lab[..., 1], v.lab[..., 2]
    hist = _sqrt_hist(_bins(a, -60.0, 60.0, 8) * 8 + _bins(b, -60.0, 60.0, 8), 64)
    chroma = np.hypot(a, b)
    moments = np.array([a.mean() / 60, b.mean() / 60, a.std() / 40, b.std() / 40, chroma.mean() / 60],
                       dtype=np.float32)
    return np.concatenate([hist, 0.5 * _palette(v.lab), 0.5 * moments])


def tone(v: Views) -> FloatVector:
    """Brightness (mean L*), contrast (spread), 10th/90th percentiles and an 8-bin L* histogram."""
    lum = v.lab[..., 0] * np.float32(0.01)
    p10, p90 = np.percentile(lum, [10, 90])
    stats = np.array([2 * (lum.mean() - 0.5), 2 * (p10 - 0.5), 2 * (p90 - 0.5), 4 * (lum.std() - 0.2)],
                     dtype=np.float32)
    return np.concatenate([stats, _sqrt_hist(_bins(lum, 0.0, 1.0, 8), 8)])


def _grid(channel: NDArray[np.float32], rows: int, cols: int) -> NDArray[np.float32]:
    h, w = channel.shape
    if h % rows or w % cols:
        return np.asarray(cv2.resize(channel, (cols, rows), interpolation=cv2.INTER_AREA), dtype=np.float32)
    return channel.reshape(rows, h // rows, cols, w // cols).mean(axis=(1, 3), dtype=np.float32)


def layout(v: Views) -> FloatVector:
    """Where light, dark and colour sit: a 6×4 grid of L* relative to the image's own mean and
    spread (so a brighter copy keeps its layout) and a 3×2 grid of a*, b*."""
    lum = _grid(v.lab[..., 0], 6, 4)
    lum = (lum - lum.mean()) / (lum.std() + 5.0)
    a, b = _grid(v.lab[..., 1], 3, 2) / 60.0, _grid(v.lab[..., 2], 3, 2) / 60.0
    return np.concatenate([lum.ravel(), a.ravel(), b.ravel()]).astype(np.float32)


# uniform LBP: patterns with <= 2 transitions are labelled by their number of set bits, others 9
_LBP_LUT = np.array(
    [bin(c).count("1") if bin((c ^ ((c << 1) | (c >> 7))) & 0xFF).count("1") <= 2 else 9 for c in range(256)],
    dtype=np.intp,
)


def _lbp_hist(grey: NDArray[np.float32]) -> FloatVector:
    centre = grey[1:-1, 1:-1]
    h, w = grey.shape
    code = np.zeros(centre.shape, dtype=np.uint8)
    for bit, (dy, dx) in enumerate(((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1))):
        code |= (grey[1 + dy:h - 1 + dy, 1 + dx:w - 1 + dx] >= centre).astype(np.uint8) << bit
    return _sqrt_hist(_LBP_LUT[code], 10)


def hog(grey: NDArray[np.float32], cell: int = 16, n_bins: int = 9) -> FloatVector:
    """Histogram of oriented gradients (Dalal & Triggs): unsigned orientations in ``n_bins``
    bins (linear vote between the two nearest), ``cell``-pixel cells, 2×2-cell blocks
    normalised L2-Hys (clip at 0.2). Vectorised: one ``bincount`` per vote.

    References
    ----------
    N. Dalal and B. Triggs, "Histograms of oriented gradients for human detection", CVPR 2005.

    Examples
    --------
    >>> import numpy as np
    >>> hog(np.zeros((96, 64), np.float32)).shape
    (540,)
    """
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=1)
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=1)
    magnitude, angle = cv2.cartToPolar(gx, gy, angleInDegrees=True)
    cy, cx = max(grey.shape[0] // cell, 2), max(grey.shape[1] // cell, 2)
    magnitude, angle = magnitude[:cy * cell, :cx * cell], angle[:cy * cell, :cx * cell]
    pos = np.mod(angle, 180.0) * (n_bins / 180.0) - 0.5
    low = np.floor(pos).astype(np.intp)
    frac = (pos - low).astype(np.float32)
    cells = ((np.arange(magnitude.shape[0]) // cell)[:, None] * cx
             + (np.arange(magnitude.shape[1]) // cell)[None, :]) * n_bins
    size = cy * cx * n_bins
    hist = np.bincount((cells + np.mod(low, n_bins)).ravel(), (magnitude * (1 - frac)).ravel(), minlength=size)
    hist += np.bincount((cells + np.mod(low + 1, n_bins)).ravel(), (magnitude * frac).ravel(), minlength=size)
    hist = hist.reshape(cy, cx, n_bins)
    blocks = np.concatenate([hist[:-1, :-1], hist[:-1, 1:], hist[1:, :-1], hist[1:, 1:]], axis=-1)

    def l2(b: NDArray[np.float64]) -> NDArray[np.float64]:
        return b / np.sqrt((b * b).sum(axis=-1, keepdims=True) + 1e-6)

    return l2(np.minimum(l2(blocks), 0.2)).ravel().astype(np.float32)


def texture(v: Views) -> FloatVector:
    """Edges and texture: HOG (9 orientations, 16-pixel cells, 2×2 blocks, centred) and a
    uniform LBP histogram (8 neighbours, radius 1)."""
    g = v.grey
    h = hog(g, cell=max(4, min(g.shape) // 4))
    h -= h.mean()
    h /= np.linalg.norm(h) + 1e-6
    return np.concatenate([h, 0.5 * _lbp_hist(g)])


def phash(v: Views) -> FloatVector:
    """Perceptual hash: the grey frame at 32×32, its DCT, and the sign of each of the 63 lowest
    non-constant frequencies around their median, as ±1."""
    small = cv2.resize(v.grey, (32, 32), interpolation=cv2.INTER_AREA)
    low = cv2.dct(small)[:8, :8].ravel()[1:]
    return np.where(low > np.median(low), 1.0, -1.0).astype(np.float32)


@lru_cache(maxsize=1)
def _face_cascade() -> Any:
    from skimage.data import lbp_frontal_face_cascade_filename
    from skimage.feature import Cascade

    return Cascade(lbp_frontal_face_cascade_filename())


def faces(v: Views) -> FloatVector:
    """Faces at least a quarter of the frame wide: presence, count, size and position of the
    largest, total area; zeros without a face. The cascade runs on the grey frame at 48 pixels
    wide (faces that size are found as well, several times faster than at 64)."""
    g = v.grey
    if g.shape[1] > 48:
        g = np.asarray(cv2.resize(g, (48, max(1, round(g.shape[0] * 48 / g.shape[1]))),
                                  interpolation=cv2.INTER_AREA), dtype=np.float32)
    h, w = g.shape
    side = max(8, w // 4)
    found = _face_cascade().detect_multi_scale(img=g.astype(np.float64), scale_factor=1.5, step_ratio=1,
                                               min_size=(side, side), max_size=(w, w))
    if not found:
        return np.zeros(6, dtype=np.float32)
    areas = np.array([f["width"] * f["height"] for f in found], dtype=np.float64)
    big = found[int(np.argmax(areas))]
    return np.array([
        1.0, min(len(found), 4) / 4, big["width"] / w,
        (big["c"] + big["width"] / 2) / w - 0.5, (big["r"] + big["height"] / 2) / h - 0.5,
        min(areas.sum() / (w * h), 1.0),
    ], dtype=np.float32)


BLOCKS: dict[str, Callable[[Views], FloatVector]] = {
    "colour": colour,
    "tone": tone,
    "layout": layout,
    "texture": texture,
    "hash": phash,
    "faces": faces,
}
"""Block name -> function of :class:`Views`; the order of the embedding."""

BLOCK_NAMES = tuple(BLOCKS)


def block_dims(frame: tuple[int, int] = (64, 96)) -> dict[str, int]:
    """Length of each block for an analysis frame ``(width, height)``.

    Examples
    --------
    >>> block_dims()
    {'colour': 133, 'tone': 12, 'layout': 36, 'texture': 550, 'hash': 63, 'faces': 6}
    """
    views = make_views(np.zeros((frame[1], frame[0], 3), np.uint8))
    return {name: int(f(views).size) for name, f in BLOCKS.items()}
