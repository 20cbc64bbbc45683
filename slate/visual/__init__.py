"""Visual embeddings of artwork files without a model download (``slate embed``).

Image files are decoded to a small analysis frame (:mod:`~slate.visual.decode`), described by
blocks of colour, tone, layout, texture, a perceptual hash and faces
(:mod:`~slate.visual.blocks`), each normalised and weighted into one unit vector
(:mod:`~slate.visual.assemble`), optionally with a user's ONNX model
(:mod:`~slate.visual.onnx_block`). :func:`embed_files` runs it over folders with a
content-keyed cache and worker processes and writes the embeddings file that
:class:`slate.replay.ImageEmbeddings`, ``compose()`` catalogs and sweeps read.
"""

from slate.visual.assemble import DEFAULT_WEIGHTS, VisualOptions, embed_pixels, parse_weights
from slate.visual.blocks import BLOCK_NAMES, BLOCKS, block_dims
from slate.visual.decode import DECODE_REASONS, decode_image
from slate.visual.run import EmbedReport, embed_bytes, embed_files, write_embeddings

__all__ = [
    "BLOCKS",
    "BLOCK_NAMES",
    "DECODE_REASONS",
    "DEFAULT_WEIGHTS",
    "EmbedReport",
    "VisualOptions",
    "block_dims",
    "decode_image",
    "embed_bytes",
    "embed_files",
    "embed_pixels",
    "parse_weights",
    "write_embeddings",
]
