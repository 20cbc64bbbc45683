"""The ``slate`` command line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from slate.cli import main
from slate.page import read_problem
from tests.pages import instance_paths, recompute_objective


@pytest.mark.parametrize("path", instance_paths(), ids=lambda p: p.stem)
def test_slate_solve_on_every_shared_instance_is_feasible_and_reports_the_true_objective(path, capsys):
    assert main(["solve", str(path), "--time-limit-ms", "200"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) >= {"assignment", "objective", "status", "bound", "solver", "wall_ms"}
    problem = read_problem(path)
    a = problem.assignment_from_ids(out["assignment"])
    assert problem.is_feasible(a)
    assert out["objective"] == pytest.approx(recompute_objective(problem, a), abs=1e-9)
    assert out["status"] in ("optimal", "feasible", "time_limit")


def test_slate_solve_prints_exactly_one_json_object_even_with_highs():
    path = instance_paths()[0]
    proc = subprocess.run(
        [sys.executable, "-m", "slate", "solve", str(path), "--solver", "exact"], capture_output=True, text=True, check=True
    )
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["status"] == "optimal"


def test_bad_file_gives_one_line_and_nonzero_exit(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "slate.page-problem/1", "titles": [{"id": "A", "images": []}]}')
    assert main(["solve", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "titles[0].images" in err
    assert main(["solve", str(tmp_path / "missing.json")]) == 2
    assert "Cannot read" in capsys.readouterr().err


def test_unknown_solver_is_rejected_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["solve", str(instance_paths()[0]), "--solver", "nope"])
    assert exc.value.code == 2
