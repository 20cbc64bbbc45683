"""Shape of the code in ``slate/``: no function over 120 lines, no public function over 10 parameters.

A function that long is several stages in one body; split it into one call per stage. A public
function with that many parameters takes an options object instead (a frozen dataclass, with
keyword overrides so existing keyword calls keep working).

Parameters are counted without ``self``/``cls``; ``*args`` and ``**kwargs`` count one each. A
function is public when neither it, its class nor its module's name starts with ``_``. Exempt
from the parameter rule: numba kernels in private ``_kernels.py`` / ``_*_kernels.py`` modules
(compiled kernels take arrays, not objects). The line rule applies everywhere.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "slate"
MAX_LINES = 120
MAX_PARAMETERS = 10

# Functions exempt from the rules: none (issue 17 emptied it). Keep it empty: split a long
# function by stage, give a long signature an options object. The test below fails on an entry
# that no longer breaks a rule, so a stale entry cannot stay.
ALLOWLIST: set[str] = set()


def _is_kernel_module(path: Path) -> bool:
    return path.name.startswith("_") and path.name.endswith("kernels.py")


def _functions(path: Path, root: Path):
    """``(qualified name, node, public)`` for every function of a module, nested ones included."""
    module_private = any(part.startswith("_") and part != "__init__.py" for part in path.relative_to(root).parts)

    def walk(node: ast.AST, prefix: str, private: bool):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = prefix + child.name
                hidden = private or (child.name.startswith("_") and not child.name.startswith("__"))
                yield name, child, not hidden
                yield from walk(child, name + ".", True)  # a nested function is never public
            elif isinstance(child, ast.ClassDef):
                yield from walk(child, prefix + child.name + ".", private or child.name.startswith("_"))
            else:
                yield from walk(child, prefix, private)

    yield from walk(ast.parse(path.read_text()), "", module_private)


def _n_parameters(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    a = node.args
    named = [p.arg for p in (*a.posonlyargs, *a.args, *a.kwonlyargs) if p.arg not in ("self", "cls")]
    return len(named) + (a.vararg is not None) + (a.kwarg is not None)


@functools.cache
def _violations(root: Path = ROOT) -> dict[str, str]:
    found: dict[str, str] = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).as_posix()
        for name, node, public in _functions(path, root):
            n_lines = (node.end_lineno or node.lineno) - node.lineno + 1
            n_params = _n_parameters(node)
            problems = []
            if n_lines > MAX_LINES:
                problems.append(f"{n_lines} lines (over {MAX_LINES})")
            if public and n_params > MAX_PARAMETERS and not _is_kernel_module(path):
                problems.append(f"{n_params} parameters (over {MAX_PARAMETERS})")
            if problems:
                found[f"{rel}:{name}"] = ", ".join(problems)
    return found


def test_no_long_functions_and_no_public_function_with_many_parameters():
    violations = _violations()
    new = {k: v for k, v in violations.items() if k not in ALLOWLIST}
    assert not new, "split these by stage or give them an options object:\n" + "\n".join(
        f"  {k}: {v}" for k, v in sorted(new.items())
    )


def test_the_allowlist_only_names_functions_that_still_break_a_rule():
    stale = sorted(ALLOWLIST - set(_violations()))
    assert not stale, f"fixed (or renamed): remove from ALLOWLIST: {stale}"


def _shape_of(source: str, tmp_path: Path, name: str = "mod.py") -> dict[str, str]:
    pkg = tmp_path / "slate"
    pkg.mkdir()
    (pkg / name).write_text(source)
    return _violations(pkg)


@pytest.mark.parametrize(
    ("source", "name", "expected"),
    [
        ("def f(a, b, c, d, e, f, g, h, i, j, k):\n    pass\n", "mod.py", {"slate/mod.py:f": "11 parameters (over 10)"}),
        ("def f(a, b, c, d, e, f, g, h, i, *, j, **k):\n    pass\n", "mod.py", {"slate/mod.py:f": "11 parameters (over 10)"}),
        ("class A:\n    def f(self, a, b, c, d, e, f, g, h, i, j):\n        pass\n", "mod.py", {}),
        ("def _f(a, b, c, d, e, f, g, h, i, j, k):\n    pass\n", "mod.py", {}),
        ("def f(a, b, c, d, e, f, g, h, i, j, k):\n    pass\n", "_kernels.py", {}),
        ("def f():\n" + "    x = 1\n" * 120, "_kernels.py", {"slate/_kernels.py:f": "121 lines (over 120)"}),
        ("def f():\n" + "    x = 1\n" * 119, "mod.py", {}),
    ],
)
def test_the_rules_count_what_they_say(source, name, expected, tmp_path):
    assert _shape_of(source, tmp_path, name) == expected
