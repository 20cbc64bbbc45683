"""Size limits checked before anything is allocated, and safe readers of small input files.

Every limit has a default that is generous for real use and small enough that a hostile or
mistaken input fails at once with a clear message instead of exhausting memory or time. A limit is
raised by setting the environment variable named in its message (and in :data:`LIMITS`), e.g.
``SLATE_MAX_GRID_POINTS=1000000 slate sweep exp.toml``, or for one block of code with
:func:`raised_limits`.

==========================  ==============  ======================================================
limit                       default         guards
==========================  ==============  ======================================================
``max_file_bytes``          64 MiB          JSON/TOML/YAML files (page problems, configs)
``max_array_bytes``         2 GiB           one array declared in an ``.npz`` file
``max_grid_points``         100,000         points of a sweep's grid
``max_titles``              2,000           titles of one page problem or page request
``max_page_cells``          100,000         titles x candidate images of one page
``max_pair_cells``          1,000,000       interacting pairs x images² of one composed page
``max_bootstrap``           100,000         bootstrap replicates of one replay
``max_nesting``             100             nesting depth of a JSON/TOML/YAML document
``max_containers``          2,000,000       lists and tables in one JSON/TOML/YAML document
==========================  ==============  ======================================================

Examples
--------
>>> limit("max_bootstrap")
100000
>>> with raised_limits(max_bootstrap=10):
...     check_limit("max_bootstrap", 5, "bootstrap replicates")
>>> with raised_limits(max_bootstrap=10):
...     check_limit("max_bootstrap", 50, "bootstrap replicates")
Traceback (most recent call last):
...
slate.errors.ResourceLimitError: 50 bootstrap replicates exceed the limit max_bootstrap = 10 (raise it with SLATE_MAX_BOOTSTRAP=N).
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from slate.errors import InputFileError, ResourceLimitError

__all__ = [
    "LIMITS",
    "check_limit",
    "check_nesting",
    "check_npz",
    "limit",
    "load_json_file",
    "raised_limits",
    "read_text_file",
    "require_regular_file",
]

LIMITS: dict[str, int] = {
    "max_file_bytes": 64 * 2**20,
    "max_array_bytes": 2 * 2**30,
    "max_grid_points": 100_000,
    "max_titles": 2_000,
    "max_page_cells": 100_000,
    "max_pair_cells": 1_000_000,
    "max_bootstrap": 100_000,
    "max_nesting": 100,
    "max_containers": 2_000_000,
}
"""The defaults; the environment variable ``SLATE_<NAME>`` (upper case) overrides each."""

_OVERRIDES: dict[str, int] = {}


def _env_name(name: str) -> str:
    return f"SLATE_{name.upper()}"


def limit(name: str) -> int:
    """The current value of the limit ``name`` (an override, else ``SLATE_<NAME>``, else the default)."""
    if name not in LIMITS:
        raise KeyError(f"Unknown limit '{name}'; limits are {', '.join(sorted(LIMITS))}.")
    if name in _OVERRIDES:
        return _OVERRIDES[name]
    raw = os.environ.get(_env_name(name))
    if raw is None or not raw.strip():
        return LIMITS[name]
    try:
        value = int(raw)
    except ValueError:
        raise ResourceLimitError(
            f"The environment variable {_env_name(name)} must be an integer; got {raw!r}."
        ) from None
    if value < 0:
        raise ResourceLimitError(f"The environment variable {_env_name(name)} must be >= 0; got {value}.")
    return value


@contextlib.contextmanager
def raised_limits(**values: int) -> Iterator[None]:
    """Set limits for the duration of a ``with`` block (not thread-local; for scripts and tests)."""
    for name in values:
        limit(name)  # unknown names fail here
    saved = dict(_OVERRIDES)
    _OVERRIDES.update(values)
    try:
        yield
    finally:
        _OVERRIDES.clear()
        _OVERRIDES.update(saved)


def check_limit(name: str, value: float, what: str) -> None:
    """Raise :class:`ResourceLimitError` when ``value`` (a count of ``what``) exceeds the limit."""
    cap = limit(name)
    if value > cap:
        shown = f"{int(value):,}" if float(value).is_integer() else f"{value:.4g}"
        raise ResourceLimitError(
            f"{shown} {what} exceed the limit {name} = {cap:,} (raise it with {_env_name(name)}=N)."
        )


def require_regular_file(path: str | os.PathLike[str], what: str) -> int:
    """Check that ``path`` is an existing regular file within ``max_file_bytes``; its size.

    A FIFO, a device (``/dev/zero``) or a folder is refused before it is opened, so reading
    never blocks or runs without end.
    """
    p = Path(path)
    try:
        st = os.stat(p)
    except OSError as err:
        raise InputFileError(f"Cannot read {what} '{p}': {err.strerror or err}.") from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise InputFileError(f"The {what} '{p}' is {kind}; give a regular file.")
    cap = limit("max_file_bytes")
    if st.st_size > cap:
        raise ResourceLimitError(
            f"The {what} '{p}' has {st.st_size:,} bytes, more than the limit max_file_bytes = "
            f"{cap:,} (raise it with SLATE_MAX_FILE_BYTES=N)."
        )
    return int(st.st_size)


def read_text_file(path: str | os.PathLike[str], what: str) -> str:
    """The UTF-8 text of a regular file, with one clear error for every way it can fail."""
    p = Path(path)
    require_regular_file(p, what)
    cap = limit("max_file_bytes")
    try:
        with open(p, "rb") as fh:
            data = fh.read(cap + 1)  # never more, even if the file grew since the check
    except OSError as err:
        raise InputFileError(f"Cannot read {what} '{p}': {err.strerror or err}.") from None
    if len(data) > cap:
        check_limit("max_file_bytes", len(data), f"bytes in {what} '{p}'")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputFileError(
            f"The {what} '{p}' is not UTF-8 text (byte {err.start}: {err.reason})."
        ) from None


def check_nesting(value: Any, where: str) -> None:
    """Refuse documents nested deeper than ``max_nesting`` or holding more than
    ``max_containers`` lists and tables (YAML aliases can make a small file expand to billions
    of nodes); iterative, without recursion."""
    cap = limit("max_nesting")
    most = limit("max_containers")
    stack: list[tuple[Any, int]] = [(value, 1)] if isinstance(value, (dict, list)) else []
    seen = 0
    while stack:
        item, depth = stack.pop()
        seen += 1
        if depth > cap:
            raise InputFileError(
                f"The {where} is nested more than {cap} levels deep (limit max_nesting; raise it "
                f"with SLATE_MAX_NESTING=N)."
            )
        if seen > most:
            raise ResourceLimitError(
                f"The {where} holds more than {most:,} lists and tables (limit max_containers; "
                f"raise it with SLATE_MAX_CONTAINERS=N)."
            )
        children = item.values() if isinstance(item, dict) else item
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))


def load_json_file(path: str | os.PathLike[str], what: str) -> Any:
    """Parse a JSON file read by :func:`read_text_file`; one clear error for bad or deep JSON.

    Examples
    --------
    >>> import os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "deep.json")
    >>> with open(p, "w") as fh:
    ...     _ = fh.write("[" * 100000 + "]" * 100000)
    >>> load_json_file(p, "page-problem file")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    slate.errors.InputFileError: The page-problem file '...deep.json' is nested too deeply to be read.
    """
    p = Path(path)
    text = read_text_file(p, what)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputFileError(
            f"The {what} '{p}' is not valid JSON: {err.msg} at line {err.lineno} column {err.colno}."
        ) from None
    except RecursionError:
        raise InputFileError(f"The {what} '{p}' is nested too deeply to be read.") from None
    except ValueError as err:  # e.g. an integer literal with more than 4300 digits
        raise InputFileError(f"The {what} '{p}' cannot be read as JSON: {err}.") from None
    check_nesting(data, f"{what} '{p}'")
    return data


def check_npz(path: str | os.PathLike[str], what: str) -> None:
    """Check an ``.npz`` file before loading it: a regular file, a zip archive whose arrays are
    plain ``.npy`` members, each declaring at most ``max_array_bytes`` bytes.

    The declared shape of every array is read from its header, so a small file claiming a huge
    array is refused without allocating it.
    """
    p = Path(path)
    try:
        st = os.stat(p)
    except OSError as err:
        raise InputFileError(f"The {what} '{p}' could not be read as .npz ({err.strerror or err}).") from None
    if not stat.S_ISREG(st.st_mode):
        raise InputFileError(f"The {what} '{p}' could not be read as .npz (not a regular file).")
    cap = limit("max_array_bytes")
    try:
        with zipfile.ZipFile(p) as archive:
            for member in archive.infolist():
                with archive.open(member) as fh:
                    version = np.lib.format.read_magic(fh)
                    if version == (1, 0):
                        shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
                    else:
                        shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
                nbytes = int(np.prod(shape, dtype=object)) * int(dtype.itemsize)
                if nbytes > cap:
                    raise ResourceLimitError(
                        f"The {what} '{p}' declares an array '{member.filename}' of shape "
                        f"{tuple(shape)} ({nbytes:,} bytes), more than the limit max_array_bytes = "
                        f"{cap:,} (raise it with SLATE_MAX_ARRAY_BYTES=N)."
                    )
    except ResourceLimitError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as err:
        raise InputFileError(f"The {what} '{p}' could not be read as .npz ({err}).") from None
