"""Near-duplicate posters from real photographs, to measure what "similar" means.

The photographs are the ones scikit-image ships inside its package (no download): each
becomes a 2:3 poster (512×768), and edited copies of it are made with crops, brightness
changes, a title band, down-scaling and heavy JPEG compression. Retrieval quality is the ROC
AUC of cosine similarity over pairs: (original, edited copy of it) are positives, (original,
edited copy of another photograph) negatives. ``benchmarks/embed.py`` runs it at full size; the
test-suite runs a small seeded version.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageEnhance, ImageFont

__all__ = ["EDITS", "PHOTOGRAPHS", "PosterSet", "make_posters", "pair_auc", "retrieval_auc"]

PHOTOGRAPHS = (
    "astronaut", "brick", "camera", "cell", "chelsea", "clock", "coffee", "coins", "grass", "gravel",
    "hubble_deep_field", "immunohistochemistry", "microaneurysms", "moon", "page", "retina", "rocket",
    "text",
)
"""The photographs of ``skimage.data`` available offline (synthetic images such as
``checkerboard``, ``colorwheel``, ``logo`` and ``binary_blobs`` left out; ``cat`` is ``chelsea``)."""

POSTER_SIZE = (512, 768)
EDITS = ("crop", "brightness", "title", "downscale", "jpeg")


def _photo(name: str) -> Image.Image:
    import skimage.data

    a = np.asarray(getattr(skimage.data, name)())
    if a.dtype != np.uint8:
        a = (255 * (a - a.min()) / max(float(np.ptp(a)), 1e-9)).astype(np.uint8)
    return Image.fromarray(a).convert("RGB")


def poster(photo: Image.Image) -> Image.Image:
    """The centred 2:3 crop of a photograph, at 512×768."""
    w, h = photo.size
    if w / h > 2 / 3:
        cw = round(h * 2 / 3)
        box = ((w - cw) // 2, 0, (w - cw) // 2 + cw, h)
    else:
        ch = round(w * 3 / 2)
        box = (0, (h - ch) // 2, w, (h - ch) // 2 + ch)
    return photo.crop(box).resize(POSTER_SIZE, Image.Resampling.LANCZOS)


def _crop(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    keep = rng.uniform(0.80, 0.95)
    w, h = im.size
    cw, ch = int(w * keep), int(h * keep)
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    return im.crop((x, y, x + cw, y + ch)).resize(im.size, Image.Resampling.BILINEAR)


def _brightness(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    factor = rng.uniform(0.6, 0.8) if rng.random() < 0.5 else rng.uniform(1.2, 1.45)
    return ImageEnhance.Brightness(im).enhance(factor)


def _title(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    im = im.copy()
    w, h = im.size
    band = int(h * rng.uniform(0.10, 0.18))
    top = 0 if rng.random() < 0.5 else h - band
    draw = ImageDraw.Draw(im)
    fill = tuple(int(c) for c in rng.integers(0, 256, 3))
    draw.rectangle((0, top, w, top + band), fill=fill)
    ink = (255, 255, 255) if sum(fill) < 384 else (0, 0, 0)
    font = ImageFont.load_default(size=max(10, band // 2))
    draw.text((w // 12, top + band // 4), "THE TITLE " + str(int(rng.integers(1, 99))), fill=ink, font=font)
    return im


def _downscale(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    f = rng.uniform(0.35, 0.6)
    return im.resize((int(im.width * f), int(im.height * f)), Image.Resampling.BILINEAR)


_EDIT_FUNCS: dict[str, Callable[[Image.Image, np.random.Generator], Image.Image]] = {
    "crop": _crop, "brightness": _brightness, "title": _title, "downscale": _downscale,
}


def _jpeg(im: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


@dataclass(frozen=True)
class PosterSet:
    """Poster files: ``originals[i]`` of photograph ``i`` and its edited copies.

    Attributes
    ----------
    names : tuple of str
        One photograph per original.
    originals : tuple of bytes
        JPEG (quality 90) of each original poster.
    edited : tuple of bytes
        JPEG of each edited copy.
    source : ndarray (n_edited,), int
        Index of the original each copy was made from.
    edits : tuple of tuple of str
        Edits applied to each copy.
    """

    names: tuple[str, ...]
    originals: tuple[bytes, ...]
    edited: tuple[bytes, ...]
    source: NDArray[np.int64]
    edits: tuple[tuple[str, ...], ...]

    def write(self, folder: str | Path) -> tuple[list[Path], list[Path]]:
        """Write ``orig-<name>.jpg`` and ``edit-<name>-<k>.jpg`` files; returns both lists."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        orig = [out / f"orig-{n}.jpg" for n in self.names]
        counts = np.zeros(len(self.names), dtype=np.int64)
        edit = []
        for s in self.source.tolist():
            edit.append(out / f"edit-{self.names[s]}-{counts[s]}.jpg")
            counts[s] += 1
        for path, data in zip(orig + edit, self.originals + self.edited, strict=True):
            path.write_bytes(data)
        return orig, edit


def make_posters(names: Sequence[str] = PHOTOGRAPHS, per_photo: int = 8, seed: int = 0) -> PosterSet:
    """Original posters of ``names`` and ``per_photo`` edited copies of each (seeded).

    Each copy gets two or three of :data:`EDITS` at random: a crop keeping 80–95 % of each side,
    brightness ×0.6–0.8 or ×1.2–1.45, a coloured title band with text over 10–18 % of the
    height, down-scaling to 35–60 %, JPEG at quality 8–20 (otherwise 85).

    Examples
    --------
    >>> posters = make_posters(["coffee", "camera"], per_photo=2, seed=1)
    >>> len(posters.originals), len(posters.edited), posters.source.tolist()
    (2, 4, [0, 0, 1, 1])
    """
    rng = np.random.default_rng(seed)
    originals, edited, source, edits = [], [], [], []
    for i, name in enumerate(names):
        base = poster(_photo(name))
        originals.append(_jpeg(base, 90))
        for _ in range(per_photo):
            chosen = sorted(rng.choice(len(EDITS), size=int(rng.integers(2, 4)), replace=False).tolist())
            applied = tuple(EDITS[c] for c in chosen)
            im = base
            for edit in applied:
                if edit != "jpeg":
                    im = _EDIT_FUNCS[edit](im, rng)
            quality = int(rng.integers(8, 21)) if "jpeg" in applied else 85
            edited.append(_jpeg(im, quality))
            source.append(i)
            edits.append(applied)
    return PosterSet(tuple(names), tuple(originals), tuple(edited), np.array(source, dtype=np.int64), tuple(edits))


def pair_auc(positive: NDArray[np.float64], negative: NDArray[np.float64]) -> float:
    """ROC AUC: the probability that a positive pair scores above a negative one (ties 1/2).

    Examples
    --------
    >>> import numpy as np
    >>> pair_auc(np.array([0.9, 0.8]), np.array([0.1, 0.85]))
    0.75
    """
    from scipy.stats import rankdata

    scores = np.concatenate([positive, negative])
    ranks = rankdata(scores)
    n_pos, n_neg = len(positive), len(negative)
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def retrieval_auc(original_vectors: NDArray[np.floating], edited_vectors: NDArray[np.floating],
                  source: NDArray[np.int64]) -> float:
    """Near-duplicate AUC of cosine similarity: each edited copy against every original.

    Rows need not be unit length (they are normalised here).
    """
    def unit(x: NDArray[np.floating]) -> NDArray[np.float64]:
        x = np.asarray(x, dtype=np.float64)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    sim = unit(edited_vectors) @ unit(original_vectors).T  # (n_edited, n_originals)
    same = source[:, None] == np.arange(sim.shape[1])[None, :]
    return pair_auc(sim[same], sim[~same])
