"""Near-duplicate retrieval and throughput of ``slate embed`` on posters from real photographs.

Run::

    python benchmarks/embed.py                    # 18 photographs x 12 edited copies, 3 repeats
    python benchmarks/embed.py --per-photo 4      # quicker

The photographs are the ones scikit-image ships (:data:`slate.visual.posters.PHOTOGRAPHS`), each
made into a 2:3 poster at 512x768 and edited copies with two or three of: crop (80-95 % of each
side), brightness (x0.6-0.8 or x1.2-1.45), a title band with text, down-scaling (35-60 %),
heavy JPEG (quality 8-20) (:func:`slate.visual.posters.make_posters`). The files are written to a
temporary folder and every method reads them from disk.

AUC: pairs (original, edited copy of it) are positives, (original, edited copy of another
photograph) negatives; the ROC AUC of cosine similarity (:func:`slate.visual.posters.retrieval_auc`).
Throughput: posters per CPU-second, decoding included, measured with ``time.process_time``
over this process and its workers (:attr:`slate.visual.EmbedReport.cpu_seconds`); medians of
``--repeats`` runs. Two naive references in the same run: an 8x12 grey thumbnail (minus its mean)
and an HSV histogram (8x4x4 bins), both from a full decode with Pillow.

Tables printed: methods (AUC, posters per CPU-second), each block alone, AUC per edit, the
issue's bars marked PASS or FAIL.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from slate.visual import VisualOptions, embed_files
from slate.visual.posters import EDITS, PHOTOGRAPHS, PosterSet, make_posters, pair_auc, retrieval_auc


def grey_thumbnail(data: bytes) -> np.ndarray:
    a = np.asarray(Image.open(io.BytesIO(data)).convert("L").resize((8, 12), Image.Resampling.BILINEAR),
                   dtype=np.float64).ravel()
    return a - a.mean()


def hsv_histogram(data: bytes) -> np.ndarray:
    hsv = np.asarray(Image.open(io.BytesIO(data)).convert("HSV")).reshape(-1, 3).astype(np.int64)
    index = (hsv[:, 0] * 8 // 256) * 16 + (hsv[:, 1] * 4 // 256) * 4 + hsv[:, 2] * 4 // 256
    return np.bincount(index, minlength=128).astype(np.float64)


def reference(files: list[Path], f: Callable[[bytes], np.ndarray], repeats: int) -> tuple[np.ndarray, float]:
    rates = []
    for _ in range(repeats):
        start = time.process_time()
        vectors = np.stack([f(p.read_bytes()) for p in files])
        rates.append(len(files) / (time.process_time() - start))
    return vectors, statistics.median(rates)


def split(vectors: np.ndarray, n_orig: int) -> tuple[np.ndarray, np.ndarray]:
    return vectors[:n_orig], vectors[n_orig:]


def per_edit_auc(orig: np.ndarray, edit: np.ndarray, posters: PosterSet) -> dict[str, float]:
    def unit(x: np.ndarray) -> np.ndarray:
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    sim = unit(edit) @ unit(orig).T
    same = posters.source[:, None] == np.arange(len(orig))[None, :]
    negative = sim[~same]
    out = {}
    for name in EDITS:
        rows = np.array([name in e for e in posters.edits])
        out[name] = pair_auc(sim[rows][same[rows]], negative)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-photo", type=int, default=12, help="edited copies per photograph")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1, help="processes for slate (CPU time summed)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    posters = make_posters(PHOTOGRAPHS, per_photo=args.per_photo, seed=args.seed)
    n_orig = len(posters.originals)
    with tempfile.TemporaryDirectory() as tmp:
        orig_files, edit_files = posters.write(tmp)
        files = orig_files + edit_files
        print(f"# {n_orig} photographs x {args.per_photo} edited copies = {len(files)} posters (512x768 JPEG); "
              f"{n_orig * len(posters.edited) - len(posters.edited)} negative and {len(posters.edited)} "
              f"positive pairs; machine: {platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; workers {args.workers}")
        rates, vectors = [], None
        for _ in range(args.repeats):
            report = embed_files(files, VisualOptions(), workers=args.workers)
            assert report.image_ids == tuple(p.stem for p in files), report.summary()
            rates.append(len(files) / report.cpu_seconds)
            vectors = report.vectors
        assert vectors is not None
        slate_auc = retrieval_auc(*split(vectors, n_orig), posters.source)
        rows = [("slate embed (all blocks)", slate_auc, statistics.median(rates))]
        for name, f in (("8x12 grey thumbnail", grey_thumbnail), ("HSV histogram 8x4x4", hsv_histogram)):
            ref, rate = reference(files, f, args.repeats)
            rows.append((name, retrieval_auc(*split(ref, n_orig), posters.source), rate))

        print("\n| method | AUC | posters / CPU-s |\n|---|---|---|")
        for name, auc, rate in rows:
            print(f"| {name} | {auc:.4f} | {rate:,.0f} |")

        print("\n| block alone | AUC |\n|---|---|")
        for block in VisualOptions().active_blocks:
            only = VisualOptions(weights={b: (1.0 if b == block else 0.0) for b in VisualOptions().active_blocks})
            rep = embed_files(files, only)
            vec = np.asarray(rep.vectors, dtype=np.float64) + 1e-9  # faces: zero without a face
            print(f"| {block} | {retrieval_auc(*split(vec, n_orig), posters.source):.4f} |")

        print("\n| edited copies with | slate AUC | grey thumbnail AUC |\n|---|---|---|")
        grey, _ = reference(files, grey_thumbnail, 1)
        mine, theirs = per_edit_auc(*split(vectors, n_orig), posters), per_edit_auc(*split(grey, n_orig), posters)
        for name in EDITS:
            print(f"| {name} | {mine[name]:.4f} | {theirs[name]:.4f} |")

    throughput = rows[0][2]
    print("\n| bar | value | |\n|---|---|---|")
    print(f"| near-duplicate AUC >= 0.99 | {slate_auc:.4f} | {'PASS' if slate_auc >= 0.99 else 'FAIL'} |")
    print(f"| >= 200 posters per CPU-second (decoding included) | {throughput:,.0f} | "
          f"{'PASS' if throughput >= 200 else 'FAIL'} |")
    return 0 if slate_auc >= 0.99 and throughput >= 200 else 1


if __name__ == "__main__":
    sys.exit(main())
