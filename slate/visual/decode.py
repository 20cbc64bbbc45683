"""Image files to fixed-size RGB pixels, with one reason per file that cannot be decoded.

Every image becomes an ``(height, width, 3)`` ``uint8`` RGB array of the analysis frame
(default 64×96, a 2:3 poster), whatever its mode: CMYK and YCbCr are converted, 16- and 32-bit
greyscale is scaled from its full range (not clipped at 255), alpha and palette transparency
are composited over white, EXIF rotations are applied, and JPEGs are decoded at reduced size (``Image.draft``: libjpeg
scales by 1/2, 1/4 or 1/8 while decoding, several times faster than a full decode).

A file that cannot be decoded raises :class:`~slate.errors.ImageDecodeError` with a
``reason`` among :data:`DECODE_REASONS`, which callers count.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps, UnidentifiedImageError

from slate.errors import ImageDecodeError

__all__ = ["DECODE_REASONS", "DEFAULT_MAX_PIXELS", "decode_image", "to_rgb"]

DECODE_REASONS = {
    "empty": "the file has zero bytes",
    "unreadable": "the file cannot be read (missing, a folder, no permission)",
    "not-an-image": "no image format recognises the bytes",
    "truncated": "the image data ends early or is corrupt",
    "too-large": "more pixels than the limit (a decompression bomb guard)",
    "unsupported-mode": "a pixel mode that has no RGB conversion",
}
"""Reasons a file is rejected, with what they mean."""

DEFAULT_MAX_PIXELS = 89_478_485
"""Largest image (width × height) decoded, Pillow's own default; larger files are rejected as
``too-large`` before decoding (beyond twice Pillow's ``Image.MAX_IMAGE_PIXELS`` Pillow refuses
them whatever this limit)."""

_WHITE = (255, 255, 255)


def _scale_wide(image: Image.Image) -> Image.Image:
    """16/32-bit integer or float greyscale to 8-bit by its full range (Pillow would clip)."""
    a = np.asarray(image)
    if image.mode == "F":
        a = np.clip(np.nan_to_num(a.astype(np.float64), nan=0.0), 0.0, 1.0) * 255.0
    else:  # I;16*, I: 16-bit data (PNG, TIFF) unless values exceed 16 bits
        top = 65535.0 if a.size == 0 or a.max() <= 65535 else float(a.max())
        a = np.clip(a.astype(np.float64), 0.0, None) * (255.0 / top)
    return Image.fromarray(np.rint(a).astype(np.uint8), mode="L")


def to_rgb(image: Image.Image) -> Image.Image:
    """An RGB image from any Pillow mode: alpha over white, wide greyscale scaled, CMYK converted.

    Raises
    ------
    ImageDecodeError
        ``unsupported-mode`` when Pillow has no conversion to RGB.

    Examples
    --------
    >>> import numpy as np
    >>> from PIL import Image
    >>> deep = Image.fromarray(np.full((2, 2), 65535, np.uint16))   # 16-bit white
    >>> to_rgb(deep).getpixel((0, 0))
    (255, 255, 255)
    >>> to_rgb(Image.new("RGBA", (2, 2), (0, 0, 0, 0))).getpixel((0, 0))   # transparent
    (255, 255, 255)
    >>> to_rgb(Image.new("CMYK", (2, 2), (0, 255, 255, 0))).getpixel((0, 0))
    (255, 0, 0)
    """
    try:
        return _convert(image)
    except (ValueError, OSError) as err:
        raise ImageDecodeError("unsupported-mode", f"mode {image.mode} has no RGB conversion ({err})") from None


def _convert(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode.startswith("I") or mode == "F":
        return _scale_wide(image).convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*_WHITE, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _open(data: bytes, max_pixels: int) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # max_pixels decides
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as err:
        raise ImageDecodeError("too-large", str(err)) from None
    except UnidentifiedImageError:
        raise ImageDecodeError("not-an-image", "no image format recognises the file") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageDecodeError("truncated", f"the header is corrupt ({err})") from None
    if image.width * image.height > max_pixels or image.width < 1 or image.height < 1:
        raise ImageDecodeError(
            "too-large" if image.width * image.height > max_pixels else "truncated",
            f"{image.width}x{image.height} pixels (limit {max_pixels:,})",
        )
    return image


_TURNED = frozenset({5, 6, 7, 8})


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation tag (1: upright; unreadable EXIF counts as upright)."""
    try:
        value = image.getexif().get(0x0112, 1)
        return int(value) if int(value) in range(1, 9) else 1
    except Exception:  # corrupt EXIF of many kinds: the pixels still decode
        return 1


def decode_image(
    source: str | Path | bytes,
    frame: tuple[int, int] = (64, 96),
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> NDArray[np.uint8]:
    """Pixels of an image file resized to ``frame``: ``(height, width, 3)`` uint8 RGB.

    Parameters
    ----------
    source : path or bytes
        The file (or its content).
    frame : (width, height)
        Analysis size; the aspect ratio is not kept (every image fills the frame).
    max_pixels : int
        Images with more pixels are rejected before decoding.

    Raises
    ------
    ImageDecodeError
        With ``reason`` in :data:`DECODE_REASONS`.

    Examples
    --------
    >>> import io
    >>> from PIL import Image
    >>> buf = io.BytesIO()
    >>> Image.new("RGB", (512, 768), (200, 30, 30)).save(buf, "JPEG")
    >>> pixels = decode_image(buf.getvalue())
    >>> pixels.shape, pixels.dtype.name
    ((96, 64, 3), 'uint8')
    >>> decode_image(b"")
    Traceback (most recent call last):
    ...
    slate.errors.ImageDecodeError: the file has zero bytes
    """
    if isinstance(source, bytes):
        data = source
    else:
        try:
            data = Path(source).read_bytes()
        except OSError as err:
            raise ImageDecodeError("unreadable", f"cannot read it ({err.strerror or err})") from None
    if not data:
        raise ImageDecodeError("empty", DECODE_REASONS["empty"])
    image = _open(data, max_pixels)
    width, height = frame
    try:
        orientation = _orientation(image)
        if image.format == "JPEG":  # libjpeg scales by 1/2, 1/4 or 1/8 while decoding
            image.draft(None, (height, width) if orientation in _TURNED else (width, height))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. palette-with-bytes-transparency notices
            image.load()
        if orientation != 1:  # a camera's EXIF rotation: show the poster upright
            image = ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise ImageDecodeError("truncated", f"decoding failed ({err})") from None
    except Image.DecompressionBombError as err:  # pragma: no cover - caught at open
        raise ImageDecodeError("too-large", str(err)) from None
    rgb = np.asarray(to_rgb(image), dtype=np.uint8)
    interpolation = cv2.INTER_AREA if rgb.shape[1] >= width and rgb.shape[0] >= height else cv2.INTER_LINEAR
    out = cv2.resize(rgb, (width, height), interpolation=interpolation)
    return np.ascontiguousarray(out, dtype=np.uint8)
