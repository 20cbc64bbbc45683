"""Shared helpers of the validation scripts: the Open Bandit Dataset sample and its BTS prior,
slate's inputs built from an obp bandit-feedback dict, and obp (optional) behind one import.

The Open Bandit Dataset sample (10,000 rows per logging policy and campaign) and the ZOZOTOWN
production prior of the Bernoulli-TS policy ship inside obp's wheel. ``fetch_open_bandit_dataset``
downloads that wheel with ``pip download obp==0.4.1 --no-deps`` (nothing is installed), checks
its SHA-256 and extracts ``obp/dataset/obd/**`` and ``obp/policy/conf/prior_bts.yaml``.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from slate.logs import ImpressionLog, from_obp, read_impressions

OBP_WHEEL = "obp-0.4.1-py3-none-any.whl"
OBP_WHEEL_SHA256 = "87dec9caf4283c25ab13036532e0a24566f1c7bdcad1653a8ded43b2f5ef8208"
CAMPAIGNS = ("all", "men", "women")
POLICIES = ("random", "bts")
ESTIMATORS = ("ips", "snips", "dm", "dr")
"""slate's aliases of the four estimators obp also has (IPW, SNIPW, DM, DR)."""


def default_cache() -> Path:
    """``$XDG_CACHE_HOME/slate/obp-0.4.1`` (``~/.cache/...`` without XDG_CACHE_HOME)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "slate" / "obp-0.4.1"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_open_bandit_dataset(cache: Path | None = None) -> tuple[Path, Path]:
    """The dataset folder (``.../obd``, holding ``random/`` and ``bts/``) and the prior file,
    downloaded and extracted into ``cache`` on first use."""
    cache = default_cache() if cache is None else Path(cache)
    root, prior = cache / "obd", cache / "prior_bts.yaml"
    if (root / "random" / "all" / "all.csv").is_file() and prior.is_file():
        return root, prior
    cache.mkdir(parents=True, exist_ok=True)
    wheel = cache / OBP_WHEEL
    if not wheel.is_file():
        print(f"downloading {OBP_WHEEL} into {cache} (pip download, not installed)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "pip", "download", "obp==0.4.1", "--no-deps",
                        "--only-binary=:all:", "-q", "-d", str(cache)], check=True)
    digest = _sha256(wheel)
    if digest != OBP_WHEEL_SHA256:
        raise SystemExit(f"{wheel} has SHA-256 {digest}, expected {OBP_WHEEL_SHA256}; delete it and retry.")
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            if name.startswith("obp/dataset/obd/") and name.endswith(".csv"):
                target = root / name.removeprefix("obp/dataset/obd/")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(z.read(name))
        prior.write_bytes(z.read("obp/policy/conf/prior_bts.yaml"))
    return root, prior


def dataset_paths(data: str | None, prior: str | None, cache: str | None) -> tuple[Path, Path]:
    """``--data``/``--prior`` when given, else the cached download."""
    if data is not None and prior is not None:
        return Path(data), Path(prior)
    root, prior_path = fetch_open_bandit_dataset(None if cache is None else Path(cache))
    return (Path(data) if data else root), (Path(prior) if prior else prior_path)


def read_prior(path: Path, campaign: str) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """``alpha``, ``beta`` of the campaign from ``prior_bts.yaml`` (data, read with pyyaml)."""
    import yaml

    with path.open() as fh:
        prior = yaml.safe_load(fh)
    return (np.asarray(prior[campaign]["alpha"], dtype=np.float64),
            np.asarray(prior[campaign]["beta"], dtype=np.float64))


def slate_log(feedback: Mapping[str, Any], **kwargs: Any) -> ImpressionLog:
    """The feedback dict as a validated slate log (one page per round), checked to keep the
    rounds in order and candidate ``k`` = action ``k`` (so ``(n, n_actions)`` arrays line up)."""
    log, report = read_impressions(from_obp(feedback, **kwargs))
    n, n_actions = int(feedback["n_rounds"]), int(feedback["n_actions"])
    if report.n_rejected or log.n_rows != n or log.k_max != n_actions:
        raise SystemExit(f"slate rejected {report.n_rejected} rows of the feedback dict: {report}")
    if not np.array_equal(log.shown, np.asarray(feedback["action"])):
        raise SystemExit("slate's log does not keep the feedback's rounds and actions in order")
    return log


def at_position(array3: NDArray[np.float64], position: NDArray[np.int64] | None) -> NDArray[np.float64]:
    """``array3[i, :, position[i]]``: obp's (n, n_actions, len_list) array at each round's position."""
    n = array3.shape[0]
    pos = np.zeros(n, np.int64) if position is None else np.asarray(position, np.int64)
    return np.ascontiguousarray(array3[np.arange(n), :, pos])


def obp_or_none() -> Any:
    """The ``obp`` module, or None when it is not installed (the scripts then skip obp's side)."""
    try:
        import obp
        import obp.ope
    except ImportError:
        return None
    return obp


def versions() -> str:
    """Versions of the libraries involved, for the record."""
    import importlib.metadata as md
    import platform

    out = [f"python {platform.python_version()}"]
    for name in ("slate-artwork", "obp", "numpy", "pandas", "scikit-learn", "torch", "pyarrow"):
        try:
            out.append(f"{name} {md.version(name)}")
        except md.PackageNotFoundError:
            out.append(f"{name} -")
    return ", ".join(out)
