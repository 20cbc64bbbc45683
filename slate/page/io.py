"""Reading and writing page problems in the ``slate.page-problem/1`` interchange format.

The format is a JSON object (see ``docs/page-problem-format.md``)::

    {"format": "slate.page-problem/1", "name": ..., "layout": {"rows": R, "cols": C},
     "weights": {"diversity": ..., "churn": ...}, "max_changes": B or null,
     "titles": [{"id", "row", "col", "previous", "locked",
                 "images": [{"id", "score", "embedding", "tags"?}]}],
     "pairs": [{"a", "b", "weight"}], "quotas"?: {"tag": max_count},
     "optimum"?: {"objective", "status", "bound", "assignment", "certified_by"}}

``tags`` and ``quotas`` are optional extensions; files without them are plain page problems.
``optimum`` is carried through untouched (it is how certified instances state their value).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from slate.errors import InvalidProblemError, ResourceLimitError
from slate.limits import load_json_file
from slate.page.format import FORMAT
from slate.page.problem import PageProblem

__all__ = ["FORMAT", "problem_from_dict", "problem_to_dict", "read_optimum", "read_problem", "write_problem"]


def problem_from_dict(data: Mapping[str, Any]) -> PageProblem:
    """Validate a ``slate.page-problem/1`` mapping and build the :class:`PageProblem`.

    Raises
    ------
    InvalidProblemError
        Naming the field and the value that was received.
    """
    return PageProblem.from_dict(data)


def problem_to_dict(problem: PageProblem) -> dict[str, Any]:
    """The ``slate.page-problem/1`` mapping of a problem (round-trips through :func:`problem_from_dict`)."""
    return problem.to_dict()


def _load_json(path: str | Path) -> Any:
    return load_json_file(path, "page-problem file")


def read_problem(path: str | Path) -> PageProblem:
    """Read and validate a ``slate.page-problem/1`` JSON file.

    Raises
    ------
    InvalidProblemError
        Naming the file (missing, not a regular file, not UTF-8, not JSON, nested too deeply)
        or the field that is wrong.
    ResourceLimitError
        The file or the page exceeds a limit of :mod:`slate.limits`.
    """
    data = _load_json(path)
    try:
        return problem_from_dict(data)
    except (InvalidProblemError, ResourceLimitError) as err:
        raise type(err)(f"{path}: {err}") from None


def read_optimum(path: str | Path) -> dict[str, Any] | None:
    """The ``optimum`` block of a page-problem file (certified value), or None."""
    data = _load_json(path)
    return data.get("optimum") if isinstance(data, dict) else None


def write_problem(problem: PageProblem, path: str | Path, optimum: Mapping[str, Any] | None = None) -> None:
    """Write a problem as ``slate.page-problem/1`` JSON (with an optional ``optimum`` block)."""
    data = problem_to_dict(problem)
    if optimum is not None:
        data["optimum"] = dict(optimum)
    Path(path).write_text(json.dumps(data, separators=(",", ":")), encoding="utf-8")
