"""slate.visual.decode: every pixel mode to RGB, and one rejection reason per kind of bad file."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image
from PIL.JpegImagePlugin import JpegImageFile

from slate.errors import ImageDecodeError
from slate.visual.decode import DECODE_REASONS, decode_image, to_rgb


def encode(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def gradient(w: int = 120, h: int = 180) -> Image.Image:
    y, x = np.mgrid[0:h, 0:w]
    a = np.stack([x * 255 // w, y * 255 // h, np.full_like(x, 90)], axis=-1).astype(np.uint8)
    return Image.fromarray(a)


def png_claiming(width: int, height: int) -> bytes:
    """A valid 1x1 PNG whose header says ``width`` x ``height`` (a decompression bomb)."""
    data = bytearray(encode(Image.new("L", (1, 1)), "PNG"))
    ihdr = 8 + 8  # signature, then length + b"IHDR"
    data[ihdr:ihdr + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[12:ihdr + 13]))
    data[ihdr + 13:ihdr + 17] = struct.pack(">I", crc)
    return bytes(data)


BAD_FILES = [
    ("empty", lambda tmp: b"", {}),
    ("not-an-image", lambda tmp: b"this is a text file, not a poster\n" * 10, {}),
    ("truncated", lambda tmp: encode(gradient(), "JPEG", quality=90)[:1500], {}),
    ("truncated", lambda tmp: encode(gradient(), "PNG")[:400], {}),
    ("too-large", lambda tmp: encode(gradient(), "PNG"), {"max_pixels": 10_000}),
    ("too-large", lambda tmp: png_claiming(200_000, 200_000), {}),
    ("unreadable", lambda tmp: tmp, {}),  # a folder
    ("unreadable", lambda tmp: tmp / "missing.jpg", {}),
]


@pytest.mark.parametrize(("reason", "make", "kw"), BAD_FILES,
                         ids=[f"{r}-{i}" for i, (r, _, _) in enumerate(BAD_FILES)])
def test_each_kind_of_bad_file_is_rejected_with_its_reason(reason, make, kw, tmp_path):
    content = make(tmp_path)
    source = content
    if isinstance(content, bytes):
        source = tmp_path / "file.bin"
        source.write_bytes(content)
    with pytest.raises(ImageDecodeError) as exc:
        decode_image(source, **kw)
    assert exc.value.reason == reason
    assert reason in DECODE_REASONS and str(exc.value)


def test_a_mode_without_rgb_conversion_is_unsupported_mode():
    with pytest.raises(ImageDecodeError) as exc:
        to_rgb(Image.new("La", (2, 2)))
    assert exc.value.reason == "unsupported-mode"


def test_sixteen_bit_greyscale_is_scaled_from_its_full_range_not_clipped():
    a = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (96, 1))
    im = Image.open(io.BytesIO(encode(Image.fromarray(a), "PNG")))
    assert im.mode.startswith("I")
    pixels = decode_image(encode(Image.fromarray(a), "PNG"))
    row = pixels[48, :, 0].astype(int)
    assert row[0] <= 2 and row[-1] >= 253
    assert (np.diff(row) >= 0).all() and len(np.unique(row)) > 40  # a ramp, not clipped to white


def test_cmyk_jpeg_and_tiff_keep_their_colours():
    red = Image.new("CMYK", (64, 96), (0, 255, 255, 0))
    for fmt in ("JPEG", "TIFF"):
        pixels = decode_image(encode(red, fmt, **({"quality": 95} if fmt == "JPEG" else {})))
        r, g, b = pixels.reshape(-1, 3).mean(axis=0)
        assert r > 230 and g < 25 and b < 25, (fmt, r, g, b)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_transparent_pixels_are_composited_over_white(mode):
    im = Image.new("RGBA", (64, 96), (10, 10, 10, 255))
    im.paste((0, 0, 0, 0), (0, 0, 32, 96))  # left half transparent
    if mode == "LA":
        im = im.convert("LA")
    elif mode == "P":
        im = im.convert("P", palette=Image.Palette.ADAPTIVE)
        im.info["transparency"] = im.getpixel((0, 0))
    data = encode(im, "PNG", **({"transparency": im.info["transparency"]} if mode == "P" else {}))
    pixels = decode_image(data)
    assert pixels[:, :28].min() >= 250  # white where transparent
    assert pixels[:, 36:].max() <= 20  # the opaque dark half


def test_palette_and_binary_images_decode():
    grey = decode_image(encode(gradient().convert("P"), "GIF"))
    binary = decode_image(encode(gradient().convert("1"), "PNG"))
    assert grey.shape == binary.shape == (96, 64, 3)
    assert set(np.unique(binary)) <= set(range(256))


def test_jpeg_is_reduced_while_decoding(monkeypatch):
    calls = []
    original = JpegImageFile.draft

    def spy(self, mode, size):
        out = original(self, mode, size)
        calls.append((size, self.size))
        return out

    monkeypatch.setattr(JpegImageFile, "draft", spy)
    pixels = decode_image(encode(gradient(1024, 1536), "JPEG"))
    assert pixels.shape == (96, 64, 3)
    assert calls == [((64, 96), (128, 192))]  # libjpeg decoded at 1/8 scale


def test_frame_and_content_are_kept():
    pixels = decode_image(encode(gradient(), "PNG"), frame=(32, 48))
    assert pixels.shape == (48, 32, 3) and pixels.dtype == np.uint8
    assert pixels[0, -1, 0] > pixels[0, 0, 0] + 150  # red grows left to right
    assert pixels[-1, 0, 1] > pixels[0, 0, 1] + 150  # green grows downwards


def test_exif_rotation_is_applied():
    im = gradient(180, 120)  # stored landscape; EXIF says "rotate 90° clockwise to view"
    exif = Image.Exif()
    exif[0x0112] = 6
    upright = decode_image(encode(im, "JPEG", quality=95, exif=exif.tobytes()))
    expected = decode_image(encode(im.transpose(Image.Transpose.ROTATE_270), "JPEG", quality=95))
    assert np.abs(upright.astype(int) - expected.astype(int)).mean() < 6
    plain = decode_image(encode(im, "JPEG", quality=95))
    assert np.abs(plain.astype(int) - expected.astype(int)).mean() > 30
