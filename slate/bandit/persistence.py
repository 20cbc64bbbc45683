"""Save and load fitted policies without pickle: one ``.npz`` with arrays and JSON metadata.

The file holds the policy's arrays (statistics, inverses, coefficients) under ``state.<name>``
and a UTF-8 JSON document under ``__metadata__``::

    {"format": "slate.bandit-policy/1", "policy": "<registry name>", "params": {...},
     "state": {... scalars and random-generator states ...}, "arrays": [...]}

Loading re-creates the policy from the registry with the saved hyperparameters and restores
every array and random-generator state, so a loaded policy scores (and samples) exactly as the
saved one would have.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from slate.bandit.base import ScoringPolicy, make_policy
from slate.errors import InputFileError, InvalidProblemError
from slate.limits import check_npz

__all__ = ["FORMAT", "load_policy", "save_policy"]

FORMAT = "slate.bandit-policy/1"


def save_policy(policy: ScoringPolicy, path: str | Path) -> Path:
    """Write a policy to ``path`` (``.npz`` is appended when missing); returns the path written.

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np
    >>> from slate.bandit import LinUCB, save_policy, load_policy
    >>> policy = LinUCB(seed=0).fit(np.eye(3), [0, 1, 2], [1.0, 0.0, 1.0])
    >>> path = save_policy(policy, pathlib.Path(tempfile.mkdtemp()) / "linucb")
    >>> path.name, np.array_equal(load_policy(path).theta_, policy.theta_)
    ('linucb.npz', True)
    """
    state = getattr(policy, "_state", None)
    if state is None:
        raise InvalidProblemError(f"The policy {type(policy).__name__} does not support saving (no _state method).")
    arrays, meta = state()
    metadata: dict[str, Any] = {
        "format": FORMAT,
        "policy": policy.name,
        "params": policy.get_params(),
        "state": meta,
        "arrays": sorted(arrays),
    }
    blob = np.frombuffer(json.dumps(metadata).encode("utf-8"), dtype=np.uint8)
    out = Path(path)
    if out.suffix != ".npz":
        out = out.with_name(out.name + ".npz")
    payload = {f"state.{k}": np.asarray(v) for k, v in arrays.items()}
    with out.open("wb") as fh:
        np.savez(fh, __metadata__=blob, **payload)  # type: ignore[arg-type]
    return out


def load_policy(path: str | Path) -> ScoringPolicy:
    """Read a policy written by :func:`save_policy`.

    Raises
    ------
    InvalidProblemError
        The file is not a slate policy file, or has another format version.
    """
    p = Path(path)
    try:
        check_npz(p, "file")  # declared array sizes, before anything is loaded
    except InputFileError as exc:
        raise InvalidProblemError(f"Cannot read a slate policy from '{p}': {exc}") from None
    try:
        with np.load(p, allow_pickle=False) as data:
            if "__metadata__" not in data.files:
                raise InvalidProblemError(f"The file '{p}' is not a slate policy file (no __metadata__ entry).")
            metadata = json.loads(bytes(data["__metadata__"]).decode("utf-8"))
            arrays = {name: data[f"state.{name}"] for name in metadata.get("arrays", [])}
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as exc:
        if isinstance(exc, InvalidProblemError):
            raise
        raise InvalidProblemError(f"Cannot read a slate policy from '{p}': {exc}") from None
    fmt = metadata.get("format")
    if fmt != FORMAT:
        raise InvalidProblemError(f"The 'format' field of '{p}' must be '{FORMAT}'; got {fmt!r} instead.")
    policy = make_policy(metadata["policy"], **metadata["params"])
    policy._load(arrays, metadata["state"])  # type: ignore[attr-defined]
    return policy
