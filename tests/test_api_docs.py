"""docs/api.md is generated from the code; it must match what docs/gen_api.py writes today."""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
API_PAGE = ROOT / "docs" / "api.md"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("slate_docs_gen_api", ROOT / "docs" / "gen_api.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


GEN = _generator()


def test_api_page_is_current():
    expected = GEN.generate()
    current = API_PAGE.read_text()
    if current != expected:
        diff = "\n".join(
            list(difflib.unified_diff(current.splitlines(), expected.splitlines(), "docs/api.md",
                                      "generated", lineterm=""))[:40]
        )
        raise AssertionError(f"docs/api.md is out of date; regenerate it with: {GEN.COMMAND}\n{diff}")


def test_every_public_name_has_an_entry():
    text = API_PAGE.read_text()
    headings = set(re.findall(r"^### `([\w.]+)`$", text, flags=re.MULTILINE))
    expected = {
        f"{package}.{name}" for package in GEN.PACKAGES for name in importlib.import_module(package).__all__
    }
    assert expected - headings == set(), "public names missing from docs/api.md"
    assert headings - expected == set(), "docs/api.md documents names that are no longer public"


def test_links_resolve_to_anchors():
    text = API_PAGE.read_text()
    anchors = set(re.findall(r'<a id="([^"]+)"></a>', text))
    targets = set(re.findall(r"\]\(#([^)]+)\)", text))
    assert targets and targets <= anchors, f"links without an anchor: {sorted(targets - anchors)[:5]}"


def test_generation_is_deterministic_and_check_mode_agrees(capsys):
    text = GEN.generate()
    assert text == GEN.generate()
    assert " at 0x" not in text  # no memory addresses in signatures or values
    current = API_PAGE.read_text() == text
    assert GEN.main(["--check"]) == (0 if current else 1)
    assert ("out of date" in capsys.readouterr().err) is not current


def test_entries_carry_signature_and_summary():
    text = API_PAGE.read_text()
    entry = text.split("### `slate.page.random_problem`", 1)[1].split("### ", 1)[0]
    assert "function — " in entry and "random_problem(n_titles" in entry
    entry = text.split("### `slate.solvers.Status`", 1)[1].split("### ", 1)[0]
    assert "`OPTIMAL` = 'optimal'" in entry
    entry = text.split("### `slate.PageProblem`", 1)[1].split("### ", 1)[0]
    assert "Re-exported: see [`slate.page.PageProblem`](#slate-page-pageproblem)" in entry
