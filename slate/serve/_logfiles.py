"""File mechanics of the decision log: unique names, no-overwrite publishing, orphans, journals.

* :func:`publish` writes a file under a unique hidden temporary name in the target folder,
  flushes it to disk, then links it to its final name with ``os.link``, which fails instead
  of replacing an existing file (so two writers can never overwrite each other's files), and
  removes the temporary name. Final names carry a random token, so they are unique by
  construction across threads, loggers and processes (even two processes with the same PID).
* :func:`remove_orphans` deletes temporary files a crashed writer left behind (old enough that
  no live writer can still be writing them).
* :class:`Journal` is the write-ahead journal of a durable logger: one framed, checksummed
  record per page, fsync'd before the page is acknowledged. A journal segment is locked
  (``flock``) by its owner while it lives; a segment nobody holds belongs to a crashed writer
  and is replayed (:func:`orphan_journals`).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import secrets
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["Journal", "fsync_dir", "new_token", "orphan_journals", "publish", "read_journal", "remove_orphans"]

_RECORD = struct.Struct("<4sII")  # magic, payload length, crc32 of the payload
_MAGIC = b"SLJ1"
_NO_LINK = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.ENOSYS}


def new_token() -> str:
    """A random 64-bit token in hex (names unique without any shared state)."""
    return secrets.token_hex(8)


def fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (new and removed names) to disk, where the platform allows."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _rename_noreplace(source: Path, target: Path) -> None:
    """``renameat2(RENAME_NOREPLACE)`` (Linux), for filesystems without hard links."""
    libc = ctypes.CDLL(None, use_errno=True)
    rename = getattr(libc, "renameat2", None)
    if rename is None:  # pragma: no cover - old C libraries
        raise OSError(errno.ENOSYS, "no hard links and no renameat2 on this platform", str(target))
    at_fdcwd, noreplace = -100, 1
    if rename(at_fdcwd, os.fsencode(source), at_fdcwd, os.fsencode(target), noreplace) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(target))


def _link_noreplace(source: Path, target: Path) -> bool:
    """Give ``source`` the name ``target`` unless it exists; False when it exists."""
    try:
        os.link(source, target)
        return True
    except FileExistsError:
        return False
    except OSError as err:
        if err.errno not in _NO_LINK:
            raise
    try:  # pragma: no cover - filesystems without hard links
        _rename_noreplace(source, target)
        return True
    except FileExistsError:  # pragma: no cover
        return False


def publish(
    folder: Path,
    write: Callable[[Path], Any],
    name: Callable[[], str],
    *,
    hidden_prefix: str,
    fsync: bool = True,
    attempts: int = 8,
) -> Path:
    """Write a file with ``write(temporary_path)`` and publish it under ``folder / name()``.

    The final name never replaces an existing file: on a clash (which random tokens make
    astronomically rare) ``name()`` is called again. The temporary file is removed in every
    case. Returns the final path, durable on disk when ``fsync``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / f".{hidden_prefix}-{new_token()}.tmp"
    try:
        write(temporary)
        if fsync:
            _fsync_file(temporary)
        for _ in range(attempts):
            final = folder / name()
            if _link_noreplace(temporary, final):
                break
        else:
            raise FileExistsError(errno.EEXIST, f"{attempts} names taken in a row", str(folder))
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
    if fsync:
        fsync_dir(folder)
    return final


def remove_orphans(directory: Path, hidden_prefix: str, older_than: float) -> list[Path]:
    """Delete ``.<hidden_prefix>-*.tmp`` files under ``directory`` not modified for
    ``older_than`` seconds (left by a writer that crashed); return them."""
    removed = []
    cutoff = time.time() - older_than
    for path in directory.rglob(f".{hidden_prefix}-*.tmp"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed.append(path)
        except FileNotFoundError:  # another logger cleaned it first
            continue
    return removed


def _lock(fd: int) -> bool:
    """Take an exclusive ``flock`` on ``fd`` without waiting; False when someone holds it."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no journal sharing checks
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


class Journal:
    """One write-ahead journal segment: records appended and fsync'd, the file locked while open.

    Created under a temporary name, locked, then renamed to ``.<prefix>-<token>.journal`` so
    that a scanner never sees an unlocked live segment.
    """

    def __init__(self, directory: Path, hidden_prefix: str, *, fsync: bool = True) -> None:
        self.token = new_token()
        self.fsync = fsync
        self.n_records = 0
        staging = directory / f".{hidden_prefix}-{self.token}.jtmp"
        self.path = directory / f".{hidden_prefix}-{self.token}.journal"
        self._fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        _lock(self._fd)
        os.rename(staging, self.path)
        if fsync:
            fsync_dir(directory)

    def append(self, header: dict[str, Any], payload: bytes) -> None:
        """Append one record (a JSON header and bytes) and flush it to disk."""
        head = json.dumps(header, separators=(",", ":")).encode()
        body = struct.pack("<I", len(head)) + head + payload
        os.write(self._fd, _RECORD.pack(_MAGIC, len(body), zlib.crc32(body)) + body)
        if self.fsync:
            os.fdatasync(self._fd) if hasattr(os, "fdatasync") else os.fsync(self._fd)
        self.n_records += 1

    def close(self) -> None:
        """Close the file (releasing the lock); the segment stays on disk."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def discard(self) -> None:
        """Close and delete the segment (its pages are durably published)."""
        self.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def read_journal(path: Path) -> tuple[list[tuple[dict[str, Any], bytes]], int]:
    """The intact records of a journal segment, and the number of bytes after the last one
    (a torn record: a page whose append never returned)."""
    data = path.read_bytes()
    records = []
    at = 0
    while at + _RECORD.size <= len(data):
        magic, length, crc = _RECORD.unpack_from(data, at)
        body = data[at + _RECORD.size : at + _RECORD.size + length]
        if magic != _MAGIC or len(body) != length or zlib.crc32(body) != crc:
            break
        (n_head,) = struct.unpack_from("<I", body)
        records.append((json.loads(body[4 : 4 + n_head]), body[4 + n_head :]))
        at += _RECORD.size + length
    return records, len(data) - at


@contextlib.contextmanager
def _held(path: Path) -> Iterator[bool]:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        yield False
        return
    try:
        yield _lock(fd)
    finally:
        os.close(fd)


def orphan_journals(directory: Path, hidden_prefix: str) -> Iterator[Path]:
    """Journal segments under ``directory`` that no live logger holds, each yielded while this
    process holds its lock (so two loggers starting together never replay one twice)."""
    for path in sorted(directory.glob(f".{hidden_prefix}-*.journal")):
        with _held(path) as mine:
            if mine and path.exists():
                yield path
