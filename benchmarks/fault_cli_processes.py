"""Every command-line case of tests/faults/test_cli_cases.py in a fresh ``python -m slate``
process (the suite runs them in-process): counts tracebacks, hangs, wrong exit statuses and
message mismatches. About two minutes on two cores.

    python benchmarks/fault_cli_processes.py
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from tests.faults import conftest  # noqa: E402
from tests.faults.test_cli_cases import CASES  # noqa: E402


class _Folders:
    def mktemp(self, name: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=name))


def main() -> None:
    files = conftest.files._fixture_function(_Folders())  # type: ignore[attr-defined]
    counts = {"tracebacks": 0, "hangs": 0, "wrong exit status": 0, "message mismatches": 0}
    started = time.time()
    for case, build, status, pattern in CASES:
        argv = build(files)
        try:
            proc = subprocess.run([sys.executable, "-m", "slate", *argv], capture_output=True, text=True,
                                  timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
        except subprocess.TimeoutExpired:
            counts["hangs"] += 1
            print("hang:", case)
            continue
        err = proc.stderr.strip()
        if "Traceback" in err:
            counts["tracebacks"] += 1
            print("traceback:", case)
        if proc.returncode != status:
            counts["wrong exit status"] += 1
            print("exit status:", case, proc.returncode)
        if status and (len(err.splitlines()) != 1 or not re.search(pattern, err)):
            counts["message mismatches"] += 1
            print("message:", case, err[-200:])
    summary = ", ".join(f"{v} {k}" for k, v in counts.items())
    print(f"{len(CASES)} cases in fresh processes: {summary}; {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
