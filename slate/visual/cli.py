"""``slate embed DIR|FILES --output EMBEDDINGS.parquet``: visual embeddings of artwork files.

::

    slate embed INPUTS... --output EMBEDDINGS.parquet [--mapping MAP.csv|.parquet]
                [--workers N] [--cache DIR|FILE | --no-cache] [--weights colour=1,faces=0,...]
                [--frame 64x96] [--onnx MODEL.onnx] [--max-pixels N] [--quiet]
                [--preview OUT.png [--preview-sample 8] [--preview-k 5] [--seed 0]]

writes ``image_id`` and ``embedding`` (the file ``slate replay --embeddings``, sweeps and
:class:`slate.replay.ImageEmbeddings` read), prints each rejected file with its reason (the
first ``--show-rejected``), then one summary line on stderr. The cache (default
``EMBEDDINGS.cache.parquet`` beside the output; ``--cache DIR`` puts
``slate-embed-cache.parquet`` there) keys vectors by file content, so a re-run embeds only new
or changed files. Exit status 2 when no image could be embedded or an option is wrong.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from slate.errors import InvalidEmbedInputError

__all__ = ["add_embed_parser", "cmd_embed"]


def _frame(text: str) -> tuple[int, int]:
    w, sep, h = text.lower().partition("x")
    try:
        if not sep:
            raise ValueError
        return int(w), int(h)
    except ValueError:
        raise InvalidEmbedInputError(f"The '--frame' option must be WIDTHxHEIGHT, e.g. 64x96; got {text!r}.") from None


def _cache_path(args: argparse.Namespace) -> Path | None:
    if args.no_cache:
        return None
    if args.cache is None:
        from slate.visual.run import default_cache_path

        return default_cache_path(args.output)
    p = Path(args.cache)
    return p if p.suffix.lower() == ".parquet" else p / "slate-embed-cache.parquet"


def cmd_embed(args: argparse.Namespace) -> int:
    """Run ``slate embed``; returns the exit status."""
    from slate.visual.assemble import VisualOptions, parse_weights
    from slate.visual.run import embed_files, write_embeddings

    options = VisualOptions(frame=_frame(args.frame), weights=parse_weights(args.weights or ""),
                            onnx_model=args.onnx, max_pixels=args.max_pixels)
    report = embed_files(args.inputs, options, mapping=args.mapping, workers=args.workers,
                         cache=_cache_path(args), progress=not args.quiet)
    for path, reason, message in report.rejected[: args.show_rejected]:
        print(f"slate embed: {path}: {reason}: {message}", file=sys.stderr)
    if len(report.rejected) > args.show_rejected:
        print(f"slate embed: ... and {len(report.rejected) - args.show_rejected} more rejected files",
              file=sys.stderr)
    if not report.image_ids:
        print(f"slate embed: no image could be embedded; {report.summary()}", file=sys.stderr)
        return 2
    out = write_embeddings(args.output, report.image_ids, report.vectors)
    print(f"slate embed: {report.summary()} -> {out}", file=sys.stderr)
    if args.preview:
        from slate.visual.preview import plot_neighbours, save_figure

        fig = plot_neighbours(report.image_ids, report.vectors, report.paths, sample=args.preview_sample,
                              k=args.preview_k, seed=args.seed)
        print(f"slate embed: preview -> {save_figure(fig, args.preview)}", file=sys.stderr)
    return 0


def add_embed_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``slate embed`` to ``subparsers`` (from ``add_subparsers``).

    Examples
    --------
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="slate")
    >>> _ = add_embed_parser(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["embed", "posters/", "--output", "e.parquet", "--workers", "2"])
    >>> args.inputs, args.workers, args.frame
    (['posters/'], 2, '64x96')
    """
    p = subparsers.add_parser(
        "embed", help="visual embeddings of image files (colour, tone, layout, texture, hash, faces)",
        description="Embed artwork files into the image_id/embedding Parquet file that replay, "
        "compose() catalogs and sweeps read.",
    )
    p.add_argument("inputs", nargs="+", help="folders (searched recursively) and image files")
    p.add_argument("--output", "-o", required=True, help="the embeddings Parquet file to write")
    p.add_argument("--mapping", help="CSV or Parquet with columns path, image_id (default: ids are file stems)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    cache = p.add_mutually_exclusive_group()
    cache.add_argument("--cache", help="cache folder or .parquet file (default: beside the output)")
    cache.add_argument("--no-cache", action="store_true", help="embed every file, keep no cache")
    p.add_argument("--weights", help="block weights, e.g. colour=1,tone=0.6,faces=0 (0 leaves a block out)")
    p.add_argument("--frame", default="64x96", help="analysis size WIDTHxHEIGHT (default 64x96)")
    p.add_argument("--onnx", help="an ONNX image model whose first output is one more block")
    p.add_argument("--max-pixels", type=int, default=89_478_485,
                   help="larger images are rejected before decoding (default: Pillow's limit)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.add_argument("--show-rejected", type=int, default=20, help="rejected files listed (default 20)")
    p.add_argument("--preview", help="also draw nearest neighbours of a sample of images to this PNG")
    p.add_argument("--preview-sample", type=int, default=8, help="images in the preview (default 8)")
    p.add_argument("--preview-k", type=int, default=5, help="neighbours per image (default 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the preview sample")
    p.set_defaults(func=cmd_embed)
    return p
