"""Text pieces of error messages shared by several subpackages."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def examples(ids: Iterable[Any], n: int = 5) -> str:
    """The first ``n`` of ``ids``, quoted and comma-separated, for an error message.

    Examples
    --------
    >>> examples(["a", 1, "c"], n=2)
    "'a', '1'"
    """
    shown = [repr(str(x)) for x in list(ids)[:n]]
    return ", ".join(shown)
