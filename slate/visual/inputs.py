"""Which files to embed and the image id of each.

Folders are searched recursively for image files (by extension, :data:`IMAGE_SUFFIXES`;
other files are counted as ignored); files named on their own are always tried. The image id
is the file name without its extension, or comes from a mapping file (CSV or Parquet with
columns ``path`` and ``image_id``; relative paths are relative to the mapping file's folder).
Files whose id repeats one already taken (``duplicate-id``) or that a mapping leaves out
(``unmapped``) are rejected with that reason, never dropped silently.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from slate.errors import InvalidEmbedInputError

__all__ = ["IMAGE_SUFFIXES", "InputFiles", "collect_inputs", "read_mapping"]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".ppm", ".pgm"})


@dataclass(frozen=True)
class InputFiles:
    """Files to embed with their ids, and the files left out.

    Attributes
    ----------
    paths : tuple of Path
    image_ids : tuple of str
        One per path.
    rejected : tuple of (path, reason, message)
        ``duplicate-id``, ``unmapped`` or ``unreadable`` (a named file that does not exist).
    ignored : int
        Files in the folders without an image extension.
    """

    paths: tuple[Path, ...]
    image_ids: tuple[str, ...]
    rejected: tuple[tuple[str, str, str], ...]
    ignored: int


def read_mapping(path: str | Path) -> dict[Path, str]:
    """``{resolved file path: image_id}`` from a CSV or Parquet file with ``path`` and ``image_id``.

    Raises
    ------
    InvalidEmbedInputError
        The file is missing or unreadable, lacks a column, has an empty value or maps one file twice.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "map.csv").write_text("path,image_id\\nart/p1.jpg,title-7-v2\\n")
    >>> {k.relative_to(d.resolve()).as_posix(): v for k, v in read_mapping(d / "map.csv").items()}
    {'art/p1.jpg': 'title-7-v2'}
    """
    p = Path(path)
    if not p.is_file():
        raise InvalidEmbedInputError(f"The 'mapping' file must exist; got '{p}' instead.")
    try:
        if p.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(p)
            cols = {name: [None if v is None else str(v) for v in table.column(name).to_pylist()]
                    for name in table.column_names}
        else:
            with open(p, newline="", encoding="utf-8") as fh:
                rows = list(csv.DictReader(fh))
            names = list(rows[0]) if rows else []
            cols = {name: [r.get(name) for r in rows] for name in names}
    except Exception as err:  # pyarrow/csv errors of many kinds: one message
        raise InvalidEmbedInputError(f"The 'mapping' file '{p}' cannot be read ({err}).") from None
    for name in ("path", "image_id"):
        if name not in cols:
            raise InvalidEmbedInputError(
                f"The 'mapping' file '{p}' must have columns 'path' and 'image_id'; got {sorted(cols)}.")
    out: dict[Path, str] = {}
    for n, (file, image_id) in enumerate(zip(cols["path"], cols["image_id"], strict=True), start=1):
        if not file or not image_id:
            raise InvalidEmbedInputError(f"The 'mapping' file '{p}' has an empty path or image_id in row {n}.")
        key = (p.parent / file).resolve()
        if key in out:
            raise InvalidEmbedInputError(f"The 'mapping' file '{p}' maps '{file}' twice (row {n}).")
        out[key] = image_id
    return out


def _list(inputs: Sequence[str | Path]) -> tuple[list[Path], list[tuple[str, str, str]], int]:
    files: list[Path] = []
    missing: list[tuple[str, str, str]] = []
    ignored = 0
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            for f in sorted(x for x in p.rglob("*") if x.is_file()):
                if f.suffix.lower() in IMAGE_SUFFIXES:
                    files.append(f)
                else:
                    ignored += 1
        elif p.exists():
            files.append(p)
        else:
            missing.append((str(p), "unreadable", "no such file or folder"))
    return files, missing, ignored


def collect_inputs(inputs: Sequence[str | Path], mapping: str | Path | None = None) -> InputFiles:
    """Files under ``inputs`` (folders and files) with their image ids.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> for name in ("a.jpg", "sub/a.png", "b.png", "notes.txt"):
    ...     (d / name).parent.mkdir(exist_ok=True); _ = (d / name).write_bytes(b"x")
    >>> found = collect_inputs([d])
    >>> found.image_ids, [r[1] for r in found.rejected], found.ignored
    (('a', 'b'), ['duplicate-id'], 1)
    """
    if not inputs:
        raise InvalidEmbedInputError("slate embed needs at least one folder or image file.")
    files, rejected, ignored = _list(inputs)
    table = read_mapping(mapping) if mapping is not None else None
    paths: list[Path] = []
    ids: list[str] = []
    owner: dict[str, Path] = {}
    seen: set[Path] = set()
    for f in files:
        resolved = f.resolve()
        if resolved in seen:
            continue  # named twice (a folder and a file in it): one file
        seen.add(resolved)
        if table is not None:
            if resolved not in table:
                rejected.append((str(f), "unmapped", "not in the mapping file"))
                continue
            image_id = table[resolved]
        else:
            image_id = f.stem
        if image_id in owner:
            rejected.append((str(f), "duplicate-id", f"image id '{image_id}' is already taken by '{owner[image_id]}'"))
            continue
        owner[image_id] = f
        paths.append(f)
        ids.append(image_id)
    return InputFiles(tuple(paths), tuple(ids), tuple(rejected), ignored)
