"""The import rules of ``docs/architecture.md``, checked on the code.

The package table's "depends on" column says which ``slate.X`` each ``slate/Y`` may import
("—": none; "everything above": every package in a row above; "everything": any package; an
entry with a note "(`Y.module` only ...)" may be imported by that module only). Every
``import``/``from ... import`` of ``slate.X`` inside ``slate/Y`` is checked, at module level and
inside functions, ``TYPE_CHECKING`` blocks included (found with ``ast``, nothing is imported).
Also: no module imports a private name (a leading underscore, or a module whose name starts
with one) of another subpackage (``slate._internal`` is the home of shared helpers), and the
module import graph has no cycle.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import networkx as nx

REPO = Path(__file__).resolve().parents[1]
ARCHITECTURE = REPO / "docs" / "architecture.md"


@dataclass(frozen=True)
class Rules:
    order: tuple[str, ...]
    """Packages in table order (``"slate"`` for the root, else ``"errors"``, ``"page"``, ...)."""
    allowed: dict[str, frozenset[str]]
    """Packages each package may import (besides itself)."""
    only: dict[tuple[str, str], frozenset[str]]
    """(importer, imported) -> the only modules of the importer allowed that import."""


def parse_rules(markdown: str) -> Rules:
    """The rules of the package table of an architecture page."""
    rows: list[tuple[str, str]] = []
    in_table = False
    for line in markdown.splitlines():
        if line.startswith("| package |"):
            in_table = True
            continue
        if in_table and not line.startswith("|"):
            break
        if in_table and not line.startswith("|---"):
            cells = line.strip().strip("|").split("|")
            rows.append((cells[0].strip(), cells[-1].strip()))
    order: list[str] = []
    allowed: dict[str, frozenset[str]] = {}
    only: dict[tuple[str, str], frozenset[str]] = {}
    for name_cell, deps_cell in rows:
        first = re.search(r"`slate(?:\.(\w+))?`", name_cell)
        assert first, f"cannot read the package of the row {name_cell!r}"
        pkg = first.group(1) or "slate"
        if deps_cell in ("—", "-", ""):
            deps: set[str] = set()
        elif deps_cell.startswith("everything above"):
            deps = set(order)
        elif deps_cell.startswith("everything"):
            deps = {"*"}
        else:
            deps = set()
            for entry in _split_top_level(deps_cell):
                m = re.match(r"`?([\w.]+)`?\s*(\((.*)\))?", entry.strip())
                assert m, f"cannot read the dependency {entry!r} of {pkg}"
                dep = m.group(1).removeprefix("slate.")
                deps.add(dep)
                note = m.group(3) or ""
                if " only" in note:
                    only[(pkg, dep)] = frozenset(
                        "slate." + x.removeprefix("slate.") for x in re.findall(r"`([\w.]+)`", note.split(" only")[0]))
        order.append(pkg)
        allowed[pkg] = frozenset(deps)
    return Rules(tuple(order), allowed, only)


def _split_top_level(text: str) -> list[str]:
    """``text`` split at commas and semicolons outside parentheses."""
    out, depth, cur = [], 0, ""
    for ch in text:
        depth += ch == "("
        depth -= ch == ")"
        if ch in ",;" and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    return [x for x in (*out, cur) if x.strip()]


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def package_of(module: str) -> str:
    """``"slate"`` for the root package, ``"cli"`` for ``slate.__main__``, else ``slate.<X>``'s X."""
    parts = module.split(".")
    if len(parts) == 1:
        return "slate"
    return "cli" if parts[1] == "__main__" else parts[1]


def imports_of(path: Path, module: str, is_package: bool) -> Iterator[tuple[str, str | None, int]]:
    """``(imported module, imported name or None, line)`` of every ``slate`` import in a file,
    wherever it is (module level, functions, ``TYPE_CHECKING`` blocks)."""
    here = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                yield target, alias.name, node.lineno


def check(root: Path, rules: Rules) -> list[str]:
    """Every broken rule in the package at ``root`` (a folder named ``slate``), one line each."""
    files = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    graph = nx.DiGraph()
    graph.add_nodes_from(files)
    problems: list[str] = []
    for module, path in files.items():
        src = package_of(module)
        for target, name, line in imports_of(path, module, path.name == "__init__.py"):
            if target != "slate" and not target.startswith("slate."):
                continue
            full = f"{target}.{name}" if name and f"{target}.{name}" in files else target
            if full not in files:
                problems.append(f"{module}:{line}: imports {full}, which does not exist")
                continue
            if full != module:
                graph.add_edge(module, full)
            dst = package_of(full)
            where = f"{module}:{line}: imports {full}{'' if full != target else f' ({name})' if name else ''}"
            if dst != src:
                ok = dst in rules.allowed.get(src, frozenset()) or "*" in rules.allowed.get(src, frozenset())
                if not ok:
                    problems.append(f"{where}: {src} may not import {dst} (docs/architecture.md)")
                elif (src, dst) in rules.only and module not in rules.only[(src, dst)]:
                    problems.append(f"{where}: only {sorted(rules.only[(src, dst)])} of {src} may import {dst}")
                private = [x for x in full.split(".") if x.startswith("_") and not x.startswith("__")]
                if name and name.startswith("_") and not name.startswith("__"):
                    private.append(name)
                if private and dst != "_internal":
                    problems.append(f"{where}: private name {private[0]!r} of another package")
    for cycle in nx.simple_cycles(graph):
        problems.append("import cycle: " + " -> ".join([*cycle, cycle[0]]))
    return problems


def test_the_architecture_page_lists_every_package():
    rules = parse_rules(ARCHITECTURE.read_text(encoding="utf-8"))
    root = REPO / "slate"
    packages = {package_of(module_name(p, root)) for p in root.rglob("*.py")}
    assert packages <= set(rules.order), f"not in the table of docs/architecture.md: {sorted(packages - set(rules.order))}"
    assert rules.allowed["errors"] == frozenset() and rules.allowed["tune"] >= {"serve", "replay", "sim"}


def test_imports_follow_the_architecture_page():
    problems = check(REPO / "slate", parse_rules(ARCHITECTURE.read_text(encoding="utf-8")))
    assert not problems, "\n".join(problems)


TABLE = """
| package | owns | depends on |
|---|---|---|
| `slate.errors` | errors | — |
| `slate._internal` | helpers | — |
| `slate.low` | low things | errors, _internal |
| `slate.mid` | middle | low, errors (`mid.b` only, for a reason) |
| `slate.top` | top | everything above |

after the table
"""


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "slate"
    for rel, text in {"__init__.py": "", "errors.py": "", "_internal/__init__.py": "",
                      "_internal/util.py": "def helper(): pass\n", "low/__init__.py": "",
                      "low/a.py": "def _private(): pass\n", "mid/__init__.py": "", "mid/a.py": "",
                      "mid/b.py": "", "top/__init__.py": "", "top/a.py": "", **files}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_the_table_is_read_as_written():
    rules = parse_rules(TABLE)
    assert rules.order == ("errors", "_internal", "low", "mid", "top")
    assert rules.allowed["low"] == {"errors", "_internal"}
    assert rules.allowed["top"] == {"errors", "_internal", "low", "mid"}
    assert rules.only == {("mid", "errors"): frozenset({"slate.mid.b"})}


def test_a_clean_tree_passes(tmp_path):
    root = _tree(tmp_path, {"mid/b.py": "from slate import errors\nfrom slate.low.a import x\n",
                            "low/a.py": "from slate._internal.util import helper\n",
                            "top/a.py": "import slate.mid.a\n"})
    assert check(root, parse_rules(TABLE)) == []


def test_the_checker_catches_planted_violations(tmp_path):
    root = _tree(tmp_path, {
        "low/b.py": "def f():\n    from slate.top.a import x\n",   # upward, lazily
        "mid/a.py": "from slate.errors import E\n",                   # only mid.b may
        "top/b.py": "from slate.low.a import _private\n",             # private, other package
        "top/c.py": "from slate.low import _hidden\n",
        "low/_hidden.py": "",
        "mid/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from slate.mid import c\n",
        "mid/c.py": "from slate.mid.b import y\n",                       # cycle b <-> c
    })
    found = check(root, parse_rules(TABLE))
    text = "\n".join(found)
    assert "slate.low.b:2: imports slate.top.a (x): low may not import top" in text
    assert "slate.mid.a:1: imports slate.errors (E): only ['slate.mid.b'] of mid may import errors" in text
    assert "slate.top.b:1: imports slate.low.a (_private): private name '_private'" in text
    assert "slate.top.c:1: imports slate.low._hidden: private name '_hidden'" in text
    assert any(p.startswith("import cycle: ") and "slate.mid.b" in p and "slate.mid.c" in p for p in found)
    assert len(found) == 5, text
