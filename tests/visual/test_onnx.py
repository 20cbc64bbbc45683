"""slate.visual.onnx_block: a user's ONNX image model as one more block (a tiny model built here)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from slate.errors import InvalidEmbedInputError
from slate.visual.assemble import VisualOptions, embed_pixels
from slate.visual.blocks import make_views
from slate.visual.onnx_block import OnnxBlock
from slate.visual.run import embed_files


def mean_colour_model(path, height=None, width=None, channels_last=False):
    """(1, 3, H, W) -> (1, 3): the mean of each colour channel (GlobalAveragePool + Flatten)."""
    h, w = height or "H", width or "W"
    shape = [1, h, w, 3] if channels_last else [1, 3, h, w]
    nodes = []
    name = "pixels"
    if channels_last:
        nodes.append(helper.make_node("Transpose", [name], ["nchw"], perm=[0, 3, 1, 2]))
        name = "nchw"
    nodes += [helper.make_node("GlobalAveragePool", [name], ["pooled"]),
              helper.make_node("Flatten", ["pooled"], ["features"], axis=1)]
    graph = helper.make_graph(
        nodes, "mean_colour",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("size", [(None, None), (24, 16)])
def test_the_model_output_is_the_block(tmp_path, channels_last, size):
    path = mean_colour_model(tmp_path / "m.onnx", *size, channels_last=channels_last)
    block = OnnxBlock(path)
    pixels = np.zeros((96, 64, 3), np.uint8)
    pixels[..., 0] = 255
    pixels[:, :32, 2] = 255
    out = block(make_views(pixels))
    np.testing.assert_allclose(out, [1.0, 0.0, 0.5], atol=1e-5)
    assert block.size == ((64, 96) if size[0] is None else (16, 24))


def test_onnx_block_joins_the_embedding_with_its_weight(tmp_path):
    path = mean_colour_model(tmp_path / "m.onnx")
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (96, 64, 3), dtype=np.uint8)
    plain = embed_pixels(pixels, VisualOptions())
    options = VisualOptions(onnx_model=str(path), weights={"onnx": 2.0})
    assert options.active_blocks[-1] == "onnx"
    report = embed_files([_write_png(tmp_path, pixels)], options)
    e = report.vectors[0]
    assert e.size == plain.size + 3 and abs(float(np.linalg.norm(e)) - 1) < 1e-5
    # the ONNX part is the unit model output times its weight, over the total norm
    tail = e[-3:] / np.linalg.norm(e[-3:])
    means = pixels.reshape(-1, 3).mean(axis=0)
    np.testing.assert_allclose(tail, means / np.linalg.norm(means), atol=2e-2)
    assert options.fingerprint() != VisualOptions().fingerprint()


def _write_png(folder, pixels):
    from PIL import Image

    path = folder / "noise.png"
    Image.fromarray(pixels).save(path)
    return path


def test_a_model_that_is_not_an_image_model_is_one_clear_error(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "flat",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 10])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "flat.onnx"))
    with pytest.raises(InvalidEmbedInputError, match=r"must take an image batch"):
        OnnxBlock(tmp_path / "flat.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(InvalidEmbedInputError, match=r"cannot be loaded"):
        OnnxBlock(tmp_path / "junk.onnx")


def test_a_model_giving_nan_or_zeros_rejects_the_files_as_degenerate(tmp_path):
    for name, op in (("zeros.onnx", "Sub"), ("nan.onnx", "Div")):
        # features = x - x (zeros) or x / x on a black image (0 / 0 = NaN)
        graph = helper.make_graph(
            [helper.make_node("GlobalAveragePool", ["pixels"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
             helper.make_node(op, ["flat", "flat"], ["features"])], "degenerate",
            [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [1, 3, "H", "W"])],
            [helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, 3])],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 8
        onnx.save(model, str(tmp_path / name))
        only_onnx = {"colour": 0, "tone": 0, "layout": 0, "texture": 0, "hash": 0, "faces": 0}
        options = VisualOptions(onnx_model=str(tmp_path / name), weights=only_onnx)
        report = embed_files([_write_png(tmp_path, np.zeros((96, 64, 3), np.uint8))], options)
        assert report.image_ids == () and report.reasons == {"degenerate": 1}, name
