"""A chunk function for worker processes that dies (``os._exit``) on files named ``*crash*``:
stands for a native decoder crash in tests/visual/test_run.py (importable by spawned workers)."""

from __future__ import annotations

import os
from pathlib import Path

from slate.visual.run import _embed_chunk


def crash_on_name(items, options):
    if any("crash" in Path(path).name for _, path in items):
        os._exit(3)
    return _embed_chunk(items, options)
