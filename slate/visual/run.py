"""Embed many files: cache look-up by content, decoding and blocks over processes, a report.

A file that cannot be embedded is counted under its reason (those of
:data:`~slate.visual.decode.DECODE_REASONS`, ``error`` for an unexpected exception on that
file, ``degenerate`` for a zero or non-finite vector, ``crashed`` for a file that killed its
worker process, which is then replaced) and the run
goes on; the report's
:meth:`EmbedReport.summary` says how many were embedded, taken from the cache and rejected by
reason. The output file is the embeddings format every reader of slate takes: Parquet with
``image_id`` (string) and ``embedding`` (list of float32), as
:meth:`slate.replay.ImageEmbeddings.load` reads it.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import NDArray

from slate.errors import ImageDecodeError, InvalidEmbedInputError
from slate.visual.assemble import VisualOptions, embed_pixels
from slate.visual.cache import EmbeddingCache, content_hash
from slate.visual.decode import decode_image
from slate.visual.inputs import collect_inputs

__all__ = ["EmbedReport", "default_cache_path", "embed_bytes", "embed_files", "write_embeddings"]

_CHUNK = 16


def embed_bytes(data: bytes, options: VisualOptions) -> NDArray[np.float32]:
    """The embedding of one file's content (raises :class:`~slate.errors.ImageDecodeError`).

    Examples
    --------
    >>> import io
    >>> from PIL import Image
    >>> buf = io.BytesIO()
    >>> Image.new("RGB", (200, 300), (250, 200, 40)).save(buf, "PNG")
    >>> embed_bytes(buf.getvalue(), VisualOptions()).shape
    (800,)
    """
    onnx = None
    if options.onnx_model is not None and "onnx" in options.active_blocks:
        from slate.visual.onnx_block import load_onnx_block

        onnx = load_onnx_block(options.onnx_model, options.frame)
    pixels = decode_image(data, options.frame, options.max_pixels)
    return embed_pixels(pixels, options, onnx)


Outcome = tuple[int, NDArray[np.float32] | None, str, str]


def _embed_chunk(items: Sequence[tuple[int, str]], options: VisualOptions) -> tuple[list[Outcome], int, float]:
    """Embed ``(index, path)`` items; returns ``(index, vector or None, reason, message)`` each,
    this process's id and the CPU seconds it has spent since it started (start-up included)."""
    out: list[Outcome] = []
    for index, path in items:
        try:
            vector = embed_bytes(Path(path).read_bytes(), options)
            if not np.isfinite(vector).all() or not vector.any():
                out.append((index, None, "degenerate", "the vector is zero or not finite (an ONNX model's output?)"))
                continue
            out.append((index, vector, "", ""))
        except OSError as err:
            out.append((index, None, "unreadable", f"cannot read it ({err.strerror or err})"))
        except ImageDecodeError as err:
            out.append((index, None, err.reason, str(err)))
        except Exception as err:  # a bug or a library failure on one file: counted, the run goes on
            out.append((index, None, "error", f"{type(err).__name__}: {err}"))
    return out, os.getpid(), time.process_time()


def _init_worker() -> None:
    import cv2

    cv2.setNumThreads(1)


@dataclass(frozen=True)
class EmbedReport:
    """What an embedding run did.

    Attributes
    ----------
    image_ids : tuple of str
    vectors : ndarray (n_embedded, dim), float32, unit rows
    paths : tuple of str
        The file of each embedded image.
    n_new, n_cached : int
        Embedded in this run / taken from the cache.
    rejected : tuple of (path, reason, message)
    ignored : int
        Non-image files in the folders.
    wall_seconds, cpu_seconds : float
        Wall time, and CPU time of this process plus its workers' whole lives (their start-up,
        imports and model loading included).
    """

    image_ids: tuple[str, ...]
    vectors: NDArray[np.float32]
    paths: tuple[str, ...]
    n_new: int
    n_cached: int
    rejected: tuple[tuple[str, str, str], ...]
    ignored: int
    wall_seconds: float
    cpu_seconds: float

    @property
    def reasons(self) -> dict[str, int]:
        """Rejected files by reason, most frequent first."""
        return dict(Counter(r[1] for r in self.rejected).most_common())

    def summary(self) -> str:
        """One line: embedded (new, cached), rejected by reason, ignored, time."""
        rejected = ", ".join(f"{k}: {v}" for k, v in self.reasons.items())
        parts = [f"{len(self.image_ids)} images embedded ({self.n_new} new, {self.n_cached} from cache)",
                 f"{len(self.rejected)} rejected" + (f" ({rejected})" if rejected else "")]
        if self.ignored:
            parts.append(f"{self.ignored} non-image files ignored")
        parts.append(f"{self.wall_seconds:.1f} s")
        return ", ".join(parts)


def write_embeddings(path: str | Path, image_ids: Sequence[str], vectors: NDArray[np.floating]) -> Path:
    """Write ``image_id`` (string) and ``embedding`` (list of float32) to a Parquet file.

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np
    >>> from slate.replay import ImageEmbeddings
    >>> p = write_embeddings(pathlib.Path(tempfile.mkdtemp()) / "e.parquet", ["a"], np.array([[3.0, 4.0]]))
    >>> ImageEmbeddings.load(p).vectors.tolist()
    [[0.6, 0.8]]
    """
    v = np.asarray(vectors, dtype=np.float32)
    dim = v.shape[1] if v.ndim == 2 and v.shape[0] else 1
    offsets = pa.array(np.arange(0, v.size + 1, dim, dtype=np.int32)[: len(image_ids) + 1])
    table = pa.table({
        "image_id": pa.array([str(i) for i in image_ids], pa.string()),
        "embedding": pa.ListArray.from_arrays(offsets, pa.array(v.reshape(-1), pa.float32())),
    })
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, p)
    return p


def default_cache_path(output: str | Path) -> Path:
    """The cache beside an output file: ``EMBEDDINGS.parquet`` -> ``EMBEDDINGS.cache.parquet``.

    Examples
    --------
    >>> default_cache_path("out/images.parquet").as_posix()
    'out/images.cache.parquet'
    """
    out = Path(output)
    return out.with_name(out.stem + ".cache.parquet")


def _progress(total: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="embedding", unit="img", file=sys.stderr, leave=False,
                disable=not enabled or not sys.stderr.isatty())


ChunkFunc = Callable[[Sequence[tuple[int, str]], VisualOptions], tuple[list[Outcome], int, float]]


def _run_pending(pending: list[tuple[int, str]], options: VisualOptions, workers: int,
                 bar: Any, func: ChunkFunc = _embed_chunk) -> tuple[list[Outcome], float]:
    """Embed the files not in the cache, serially or over ``workers`` processes."""
    chunks = [pending[i:i + _CHUNK] for i in range(0, len(pending), _CHUNK)]
    outcomes: list[Outcome] = []
    if workers <= 1 or len(chunks) <= 1:
        for chunk in chunks:
            outcomes += func(chunk, options)[0]
            bar.update(len(chunk))
        return outcomes, 0.0
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # no fork of a threaded parent (Arrow, OpenCV)
    cpu: dict[int, float] = {}
    leftover: list[tuple[int, str]] = []
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker) as pool:
        futures = {pool.submit(func, chunk, options): chunk for chunk in chunks}
        for future in as_completed(futures):
            try:
                done, pid, seconds = future.result()
            except BrokenProcessPool:  # a worker died (a native decoder crash): retried below
                leftover += futures[future]
                continue
            outcomes += done
            cpu[pid] = max(cpu.get(pid, 0.0), seconds)
            bar.update(len(done))
    if leftover:
        outcomes += _isolate(sorted(leftover), options, context, bar, func)
    return outcomes, sum(cpu.values())


def _isolate(items: list[tuple[int, str]], options: VisualOptions, context: Any, bar: Any,
             func: ChunkFunc) -> list[Outcome]:
    """Files left by a dead worker, one at a time in one fresh process: the first file that kills
    it is rejected as ``crashed``, the others go on in the next process."""
    out: list[Outcome] = []
    while items:
        rest: list[tuple[int, str]] = []
        crashed = False
        with ProcessPoolExecutor(max_workers=1, mp_context=context, initializer=_init_worker) as pool:
            futures = [pool.submit(func, [item], options) for item in items]
            for item, future in zip(items, futures, strict=True):
                try:
                    out += future.result()[0]
                except BrokenProcessPool:
                    if crashed:
                        rest.append(item)
                        continue
                    crashed = True
                    out.append((item[0], None, "crashed", "decoding it killed the worker process"))
                bar.update(1)
        items = rest
    return out


def embed_files(
    inputs: Sequence[str | Path],
    options: VisualOptions | None = None,
    *,
    mapping: str | Path | None = None,
    workers: int = 1,
    cache: str | Path | None = None,
    progress: bool = False,
) -> EmbedReport:
    """Embed the images under ``inputs`` (folders and files).

    Parameters
    ----------
    inputs : sequence of paths
    options : VisualOptions, optional
    mapping : path, optional
        CSV/Parquet ``path`` -> ``image_id`` (default: ids are file names without extension).
    workers : int
        Processes (1: this process). Vectors are the same, bit for bit, for any count.
    cache : path, optional
        A cache file (:class:`~slate.visual.cache.EmbeddingCache`); None for no cache.
    progress : bool
        A progress bar on stderr (only when it is a terminal).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from PIL import Image
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> Image.new("RGB", (40, 60), (20, 90, 200)).save(d / "blue.png")
    >>> _ = (d / "broken.jpg").write_bytes(b"\\xff\\xd8 not really")
    >>> report = embed_files([d])
    >>> report.image_ids, report.reasons
    (('blue',), {'not-an-image': 1})
    """
    options = options or VisualOptions()
    if int(workers) < 1:
        raise InvalidEmbedInputError(f"The 'workers' option must be >= 1; got {workers!r} instead.")
    wall, cpu = time.perf_counter(), time.process_time()
    found = collect_inputs(inputs, mapping)
    store = EmbeddingCache(cache, options.fingerprint()) if cache is not None else None
    vectors: list[NDArray[np.float32] | None] = [None] * len(found.paths)
    hashes: list[str] = [""] * len(found.paths)
    rejected = list(found.rejected)
    failed: dict[int, tuple[str, str]] = {}
    pending: list[tuple[int, str]] = []
    for i, path in enumerate(found.paths):
        if store is not None:
            try:
                hashes[i] = content_hash(path.read_bytes())
            except OSError as err:
                failed[i] = ("unreadable", f"cannot read it ({err.strerror or err})")
                continue
            vectors[i] = store.get(hashes[i])
        if vectors[i] is None:
            pending.append((i, str(path)))
    n_cached = len(found.paths) - len(pending) - len(failed)
    with _progress(len(pending), progress) as bar:
        outcomes, worker_cpu = _run_pending(pending, options, int(workers), bar)
    for index, vector, reason, message in outcomes:
        if vector is None:
            failed[index] = (reason, message)
        else:
            vectors[index] = vector
            if store is not None:
                store.put(hashes[index], vector)
    if store is not None:
        store.save()
    rejected += [(str(found.paths[i]), *failed[i]) for i in sorted(failed)]
    keep = [i for i, v in enumerate(vectors) if v is not None]
    kept = [v for v in vectors if v is not None]
    matrix = np.stack(kept) if kept else np.zeros((0, 1), np.float32)
    matrix.flags.writeable = False
    return EmbedReport(
        image_ids=tuple(found.image_ids[i] for i in keep), vectors=matrix,
        paths=tuple(str(found.paths[i]) for i in keep), n_new=len(keep) - n_cached, n_cached=n_cached,
        rejected=tuple(rejected), ignored=found.ignored, wall_seconds=time.perf_counter() - wall,
        cpu_seconds=time.process_time() - cpu + worker_cpu,
    )
