"""Thread helpers shared by background workers (state-store checkpointer, decision-log writer)."""

from __future__ import annotations

import os
import sys
import threading


def lower_thread_priority(increment: int = 10) -> None:
    """Lower the calling thread's CPU priority (Linux: per-thread nice), best effort.

    Background workers (the SQLite store's checkpointer, :class:`slate.serve.DecisionLogger`'s
    writer) call it on themselves so that, on a busy core, the scheduler runs request threads
    first.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + increment))
    except (AttributeError, OSError):  # pragma: no cover - not permitted or not supported
        pass
