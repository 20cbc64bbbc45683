"""slate.visual.blocks and assembly: what each block responds to, and how blocks combine."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageEnhance

from slate.errors import InvalidEmbedInputError
from slate.visual.assemble import VisualOptions, embed_pixels, parse_weights
from slate.visual.blocks import BLOCKS, block_dims, make_views
from slate.visual.decode import decode_image
from slate.visual.posters import _photo, poster


def cos(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(scope="module")
def coffee():
    return poster(_photo("coffee"))


@pytest.fixture(scope="module")
def photos():
    return [poster(_photo(n)) for n in ("camera", "chelsea", "astronaut")]


def frame(im: Image.Image) -> np.ndarray:
    return np.asarray(im.resize((64, 96), Image.Resampling.BILINEAR).convert("RGB"))


def blocks_of(pixels):
    views = make_views(pixels)
    return {name: f(views) for name, f in BLOCKS.items()}


def mean_block_cos(photos, edit, names=("colour", "tone", "layout", "texture", "hash")):
    out = {n: [] for n in names}
    for p in photos:
        base, other = blocks_of(frame(p)), blocks_of(frame(edit(p)))
        for n in names:
            out[n].append(cos(base[n], other[n]))
    return {n: float(np.mean(v)) for n, v in out.items()}


def test_darkening_moves_the_tone_block_and_not_the_hash_layout_or_texture(photos):
    c = mean_block_cos(photos, lambda p: ImageEnhance.Brightness(p).enhance(0.6))
    assert c["tone"] < 0.75  # measured 0.53
    assert c["hash"] > 0.9 and c["layout"] > 0.98 and c["texture"] > 0.98


def test_a_mirrored_poster_keeps_colour_and_tone_but_not_layout_texture_or_hash(photos):
    c = mean_block_cos(photos, lambda p: p.transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    assert c["colour"] > 0.99 and c["tone"] > 0.99
    assert c["layout"] < 0.5 and c["texture"] < 0.5 and abs(c["hash"]) < 0.3


def test_hue_change_moves_the_colour_block_not_texture(coffee):
    a = np.asarray(frame(coffee))
    swapped = np.ascontiguousarray(a[..., ::-1])  # RGB -> BGR: a strong hue change
    base, other = blocks_of(a), blocks_of(swapped)
    assert cos(base["colour"], other["colour"]) < 0.5
    assert cos(base["texture"], other["texture"]) > 0.9


def test_texture_tells_fine_from_coarse_patterns():
    _, x = np.mgrid[0:96, 0:64]
    stripes = {p: (((x // p) % 2) * 255).astype(np.uint8) for p in (2, 3, 16)}
    t = {p: blocks_of(np.repeat(s[..., None], 3, axis=2))["texture"] for p, s in stripes.items()}
    assert cos(t[2], t[3]) > cos(t[2], t[16])


def test_faces_block_sees_a_face_and_not_noise():
    import skimage.data

    faces = skimage.data.lfw_subset()[:40]  # 25x25 face crops shipped with scikit-image
    found = 0
    for f in faces:
        canvas = np.full((96, 64), 0.5)
        face = np.asarray(Image.fromarray((f * 255).astype(np.uint8)).resize((40, 40)), float) / 255
        canvas[20:60, 12:52] = face
        pixels = np.repeat((canvas * 255).astype(np.uint8)[..., None], 3, axis=2)
        vec = BLOCKS["faces"](make_views(pixels))
        if vec[0] == 1.0:
            found += 1
            assert 0.2 < vec[2] < 1.0 and abs(vec[3]) < 0.25  # size and centred position
    assert found >= 20  # the cascade finds most of these faces (measured: 27 of 40)
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (96, 64, 3), dtype=np.uint8)
    assert not BLOCKS["faces"](make_views(noise)).any()


def test_block_dims_match_the_vector_and_weights_leave_blocks_out():
    dims = block_dims()
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (96, 64, 3), dtype=np.uint8)
    assert embed_pixels(pixels, VisualOptions()).size == sum(dims.values())
    without = VisualOptions(weights={"texture": 0, "faces": 0})
    assert embed_pixels(pixels, without).size == sum(dims.values()) - dims["texture"] - dims["faces"]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1),
       weights=st.lists(st.floats(0.1, 4.0), min_size=5, max_size=5))
def test_cosine_is_the_weighted_mean_of_block_cosines(seed, weights):
    """With every block non-zero, cos(e1, e2) = sum w_b^2 cos_b / sum w_b^2."""
    names = ("colour", "tone", "layout", "texture", "hash")
    options = VisualOptions(weights={**dict(zip(names, weights, strict=True)), "faces": 0})
    rng = np.random.default_rng(seed)
    p1, p2 = (rng.integers(0, 256, (96, 64, 3), dtype=np.uint8) for _ in range(2))
    e1, e2 = embed_pixels(p1, options), embed_pixels(p2, options)
    assert np.isfinite(e1).all() and abs(np.linalg.norm(e1) - 1) < 1e-5
    b1, b2 = blocks_of(p1), blocks_of(p2)
    w2 = np.array(weights) ** 2
    expected = sum(w * cos(b1[n], b2[n]) for w, n in zip(w2, names, strict=True)) / w2.sum()
    assert float(e1 @ e2) == pytest.approx(expected, abs=1e-4)


def test_embedding_is_deterministic_and_depends_on_the_frame(tmp_path, coffee):
    path = tmp_path / "c.jpg"
    coffee.save(path, quality=85)
    a = embed_pixels(decode_image(path), VisualOptions())
    b = embed_pixels(decode_image(path), VisualOptions())
    assert a.tobytes() == b.tobytes()
    assert VisualOptions().fingerprint() != VisualOptions(frame=(48, 72)).fingerprint()
    assert VisualOptions().fingerprint() != VisualOptions(weights={"hash": 2}).fingerprint()
    assert VisualOptions().fingerprint() == VisualOptions(weights={"hash": 1.0}).fingerprint()


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"weights": {"nope": 1}}, r"must name blocks"),
    ({"weights": {"tone": float("nan")}}, r"finite and >= 0"),
    ({"weights": dict.fromkeys(BLOCKS, 0)}, r"at least one block"),
    ({"frame": (8, 8)}, r"between 16 and 1024"),
    ({"frame": "big"}, r"\(width, height\)"),
    ({"onnx_model": "missing.onnx"}, r"'onnx' model file must exist"),
    ({"max_pixels": 0}, r"max_pixels"),
])
def test_bad_options_name_the_field(kwargs, match):
    with pytest.raises(InvalidEmbedInputError, match=match):
        VisualOptions(**kwargs)


@pytest.mark.parametrize("text", ["colour", "colour=x", "=1,"])
def test_bad_weights_text(text):
    with pytest.raises(InvalidEmbedInputError, match="NAME=NUMBER"):
        parse_weights(text)


def test_dominant_colours_overlap_when_images_share_one():
    from slate.visual.blocks import _palette

    def two_colours(left, right):
        pixels = np.zeros((96, 64, 3), np.uint8)
        pixels[:, :32], pixels[:, 32:] = left, right
        return _palette(make_views(pixels).lab)

    red, blue, green = (200, 30, 30), (30, 40, 200), (30, 180, 40)
    red_blue, red_green, green_only = two_colours(red, blue), two_colours(red, green), two_colours(green, green)
    assert cos(red_blue, red_green) == pytest.approx(0.5, abs=0.01)  # one of two colours shared
    assert cos(red_blue, green_only) == 0.0
    assert cos(red_green, green_only) == pytest.approx(np.sqrt(0.5), abs=0.01)


@settings(max_examples=20, deadline=None)
@given(width=st.integers(16, 120), height=st.integers(16, 120), seed=st.integers(0, 1000),
       flat=st.booleans())
def test_any_frame_gives_a_finite_unit_vector(width, height, seed, flat):
    rng = np.random.default_rng(seed)
    pixels = (np.full((height, width, 3), rng.integers(0, 256), np.uint8) if flat
              else rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    e = embed_pixels(pixels, VisualOptions(frame=(width, height)))
    assert np.isfinite(e).all() and abs(float(np.linalg.norm(e)) - 1) < 1e-5
