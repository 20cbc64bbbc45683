"""Every command-line case of issue 12: one line on stderr naming the file and what is wrong,
the expected exit status, never a traceback.

Each case is ``(id, build, exit status, message pattern)``; ``build(files)`` writes what the case
needs and returns the argument list of ``slate``. The cases run in-process through
:func:`slate.cli.main` (an exception escaping ``main`` is a traceback and fails the case); the few
that could hang (FIFOs) or that need a fresh process run through ``python -m slate`` with a
timeout.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from slate.cli import main

from .conftest import Files

ROOT = Path(__file__).resolve().parents[2]


def _page(f: Files, name: str, edit) -> list[str]:
    return ["solve", str(f.page_with(name, edit))]


def _set_row(d, value):
    d["titles"][0]["row"] = value


def _huge_scores(d):
    for t in d["titles"][:2]:
        t["images"][0]["score"] = 1e308


def _many_titles(n):
    def edit(d):
        base = d["titles"][0]
        d["titles"] = [{**base, "id": f"T{i}", "row": i, "col": 0, "previous": None,
                        "images": [{"id": f"T{i}-I0", "score": 0.1}]} for i in range(n)]
        d["layout"] = {"rows": n, "cols": 1}
    return edit


def _deep_json(depth: int = 100_000) -> str:
    return "[" * depth + "]" * depth


def _toml_experiment(f: Files, name: str, body: str) -> list[str]:
    head = 'name = "x"\n' if "name =" not in body else ""
    return ["sweep", str(f.write(name, head + body + '\n[data]\nkind = "sim"\n[policy]\nkind = "oracle"\n'))]


def _policy(f: Files, name: str, config: dict) -> list[str]:
    return ["replay", str(f.log), "--policy", str(f.json(name, config)), "-o", str(f.root / "o.json")]


def _npz_bomb(f: Files) -> Path:
    """A small .npz whose header declares a 13.4 GiB float64 array."""
    import io
    import zipfile

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False,
                                                  "shape": (60_000, 30_000)})
    path = f.root / "bomb" / "weights.npz"
    path.parent.mkdir(exist_ok=True)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("weights.npy", header.getvalue() + b"\0" * 1000)
        z.writestr("image_ids.npy", b"")
    return path


def _replay(f: Files, *extra: str) -> list[str]:
    return ["replay", str(f.log), "-o", str(f.root / "o.json"), "--bootstrap", "0", *extra]


SOLVE_CASES = [
    ("solve-nan-limit", lambda f: ["solve", str(f.page), "--time-limit-ms", "nan"], 2, r"time_limit_ms.*got nan"),
    ("solve-negative-limit", lambda f: ["solve", str(f.page), "--time-limit-ms", "-5"], 2, r"time_limit_ms.*-5"),
    ("solve-nan-limit-fast", lambda f: ["solve", str(f.page), "--solver", "fast", "--time-limit-ms", "nan"], 2,
     r"time_limit_ms"),
    ("solve-missing", lambda f: ["solve", str(f.root / "nope.json")], 2, r"Cannot read page-problem file '.*nope\.json'"),
    ("solve-folder", lambda f: ["solve", str(f.root)], 2, r"page-problem file '.*' is a folder"),
    ("solve-dev-zero", lambda f: ["solve", "/dev/zero"], 2, r"'/dev/zero' is not a regular file"),
    ("solve-not-utf8", lambda f: ["solve", str(f.write("latin1.json", b'{"name": "caf\xe9"}'))], 2,
     r"latin1\.json' is not UTF-8"),
    ("solve-nested-json", lambda f: ["solve", str(f.write("deep.json", _deep_json()))], 2,
     r"deep\.json' is nested too deeply"),
    ("solve-nested-json-shallow", lambda f: ["solve", str(f.write("deep2.json", _deep_json(500)))], 2,
     r"deep2\.json' is nested more than 100 levels"),
    ("solve-bad-json", lambda f: ["solve", str(f.write("bad.json", "{"))], 2, r"bad\.json' is not valid JSON"),
    ("solve-empty", lambda f: ["solve", str(f.write("empty.json", ""))], 2, r"empty\.json' is not valid JSON"),
    ("solve-array", lambda f: ["solve", str(f.write("array.json", "[1, 2]"))], 2, r"array\.json.*must be a JSON object"),
    ("solve-row-2^40", lambda f: _page(f, "row.json", lambda d: _set_row(d, 2**40)), 2,
     r"row\.json.*titles\.0\.row.*less than or equal to 2147483647"),
    ("solve-int-beyond-int64", lambda f: _page(f, "bigint.json", lambda d: d.update(max_changes=2**70)), 2,
     r"bigint\.json.*max_changes"),
    ("solve-score-overflow", lambda f: _page(f, "overflow.json", _huge_scores), 2,
     r"overflow\.json.*'scores'.*objective is finite"),
    ("solve-score-huge-int", lambda f: ["solve", str(f.write(
        "hugeint.json", f.page.read_text().replace('"score": 0.', '"score": 1' + "0" * 400 + ".", 1)))], 2,
     r"hugeint\.json.*'scores'.*finite"),
    ("solve-too-many-titles", lambda f: _page(f, "many.json", _many_titles(2001)), 2,
     r"2,001 titles in one page problem exceed the limit max_titles = 2,000 \(raise it with SLATE_MAX_TITLES"),
    ("solve-title-outside-layout", lambda f: _page(f, "outside.json", lambda d: _set_row(d, 7)), 2,
     r"outside\.json.*places title 'T0' outside the layout"),
    ("solve-unknown-pair", lambda f: _page(f, "pair.json", lambda d: d.update(pairs=[{"a": "T0", "b": "ZZ"}])), 2,
     r"pair\.json.*unknown title 'ZZ'"),
    ("solve-ok", lambda f: ["solve", str(f.page)], 0, r"^$"),
    ("solve-inf-fast", lambda f: ["solve", str(f.page), "--solver", "fast", "--time-limit-ms", "inf"], 0, r"^$"),
    ("solve-1e308-fast", lambda f: ["solve", str(f.dense_page), "--solver", "fast", "--time-limit-ms", "1e308"], 0,
     r"^$"),
    ("solve-1e308-exact", lambda f: ["solve", str(f.page), "--solver", "exact", "--time-limit-ms", "1e308"], 0, r"^$"),
    ("solve-1e-300-fast", lambda f: ["solve", str(f.page), "--solver", "fast", "--time-limit-ms", "1e-300"], 0, r"^$"),
]

LOG_CASES = [
    ("replay-log-csv", lambda f: ["replay", str(f.write("log.csv.parquet", "a,b\n1,2\n")), "-o", str(f.root / "o.json")],
     2, r"log (file )?'.*log\.csv\.parquet' cannot be read as Parquet"),
    ("replay-log-empty", lambda f: ["replay", str(f.write("empty.parquet", b"")), "-o", str(f.root / "o.json")],
     2, r"empty\.parquet' cannot be read as Parquet: Parquet file size is 0 bytes"),
    ("replay-log-truncated", lambda f: ["replay", str(f.write("trunc.parquet", f.log.read_bytes()[:500])),
                                        "-o", str(f.root / "o.json")], 2, r"trunc\.parquet' cannot be read as Parquet"),
    ("replay-log-dev-zero", lambda f: ["replay", "/dev/zero", "-o", str(f.root / "o.json")], 2,
     r"'/dev/zero' is not a regular file"),
    ("replay-log-missing", lambda f: ["replay", str(f.root / "nolog.parquet"), "-o", str(f.root / "o.json")], 2,
     r"existing Parquet file or folder; got '.*nolog\.parquet'"),
]

TABLE_CASES = [
    ("table-csv", lambda f: _replay(f, "--table", str(f.write("t.csv.parquet", "member_id\n1\n"))), 2,
     r"decision table '.*t\.csv\.parquet' cannot be read as Parquet"),
    ("table-empty", lambda f: _replay(f, "--table", str(f.write("t-empty.parquet", b""))), 2,
     r"t-empty\.parquet' cannot be read as Parquet"),
    ("table-truncated", lambda f: _replay(f, "--table", str(f.write("t-trunc.parquet",
                                                                    f.decisions.read_bytes()[:-40]))), 2,
     r"t-trunc\.parquet' cannot be read as Parquet"),
    ("table-folder", lambda f: _replay(f, "--table", str(f.root)), 2, r"must name an existing Parquet file; got '.*faults"),
]


def _typed_table(f: Files) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = f.root / "t-types.parquet"
    pq.write_table(pa.table({"member_id": ["x"], "session_id": [1.5], "title_id": [1], "image_id": [2]}), path)
    return _replay(f, "--table", str(path))


def _table_without_column(f: Files) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = f.root / "t-cols.parquet"
    pq.write_table(pa.table({"member_id": [1], "title_id": ["a"], "image_id": ["b"]}), path)
    return _replay(f, "--table", str(path))


TABLE_CASES += [
    ("table-wrong-types", _typed_table, 2, r"t-types\.parquet' cannot be read as Parquet with integer member_id"),
    ("table-missing-column", _table_without_column, 2, r"t-cols\.parquet' must have the columns .* lacks \['session_id'\]"),
]

REPLAY_CASES = [
    ("replay-bootstrap-huge", lambda f: _replay(f, "--bootstrap", "1000000000"),
     2, r"1,000,000,000 bootstrap replicates .* exceed the limit max_bootstrap = 100,000 \(raise it with "
        r"SLATE_MAX_BOOTSTRAP"),
    ("replay-bootstrap-negative", lambda f: _replay(f, "--bootstrap", "-1"), 2, r"n_bootstrap.*>= 0"),
    ("replay-output-missing-folder", lambda f: ["replay", str(f.log), "-o", str(f.root / "no" / "o.json")], 2,
     r"--output file '.*no/o\.json' cannot be written: its folder '.*no' does not exist"),
    ("replay-output-is-folder", lambda f: ["replay", str(f.log), "-o", str(f.root)], 2,
     r"--output file '.*' cannot be written: it is a folder"),
    ("replay-level", lambda f: _replay(f, "--level", "5"), 2, r"'level' parameter must be in \(0, 1\)"),
    ("replay-workers-huge", lambda f: _replay(f, "--engine", "dask", "--workers", str(10**30)), 2,
     r"'n_workers' parameter of evaluate_dask must be an integer in \[1, 1024\]"),
    ("replay-buckets-huge", lambda f: _replay(f, "--engine", "stream", "--cluster", "member", "--buckets",
                                              str(10**30)), 2, r"n_buckets"),
    ("replay-no-match", lambda f: _replay(f, "--table", str(f.mismatch), "-e", "ips,snips,dr"), 3,
     r"no estimate for ips, snips, dr: no logged row of \d+ matches"),
    ("replay-no-match-page", lambda f: _replay(f, "--table", str(f.mismatch), "-e", "page"), 3,
     r"no estimate for page"),
    ("replay-no-match-stream", lambda f: _replay(f, "--table", str(f.mismatch), "--engine", "stream"), 3,
     r"no estimate for snips"),
    ("replay-ok", lambda f: _replay(f, "--table", str(f.decisions)), 0, r"^$"),
    ("policy-not-utf8", lambda f: ["replay", str(f.log), "--policy", str(f.write("p-latin.json", b'{"name": "\xe9"}')),
                                   "-o", str(f.root / "o.json")], 2, r"policy config '.*p-latin\.json' is not UTF-8"),
    ("policy-nested-json", lambda f: ["replay", str(f.log), "--policy", str(f.write("p-deep.json", _deep_json())),
                                      "-o", str(f.root / "o.json")], 2, r"p-deep\.json' could not be parsed \(nested too deeply\)"),
    ("policy-nested-toml", lambda f: ["replay", str(f.log), "--policy",
                                      str(f.write("p-deep.toml", "a = " + _deep_json(5000))),
                                      "-o", str(f.root / "o.json")], 2, r"p-deep\.toml' (could not be parsed|is nested)"),
    ("policy-absolute-path", lambda f: _policy(f, "p-abs.json", {"weights": "/etc/passwd"}), 2,
     r"names the file '/etc/passwd', which is outside the config's folder"),
    ("policy-dotdot-path", lambda f: _policy(f, "sub/p-up.json", {"weights": "../weights.npz"}), 2,
     r"names the file '\.\./weights\.npz', which is outside"),
    ("policy-nan-weights", lambda f: (
        np.savez(f.root / "nanw.npz", image_ids=np.array(["a", "b"]), weights=np.full((2, 3), np.nan)),
        _policy(f, "p-nan.json", {"weights": "nanw.npz"}))[-1], 2,
     r"linear-policy file '.*nanw\.npz'.*'weights' of LinearPolicy must be finite"),
    ("policy-npz-bomb", lambda f: (_npz_bomb(f), ["replay", str(f.log), "--policy",
                                                  str(f.json("bomb/p.json", {"weights": "weights.npz"})),
                                                  "-o", str(f.root / "o.json")])[-1], 2,
     r"declares an array 'weights\.npy' of shape \(60000, 30000\) \(14,400,000,000 bytes\), more than the limit "
     r"max_array_bytes"),
    ("policy-npz-truncated", lambda f: (f.write("trunc/w.npz", f.weights.read_bytes()[:100]),
                                        _policy(f, "trunc/p.json", {"weights": "w.npz"}))[-1], 2,
     r"linear-policy file '.*w\.npz' could not be read as \.npz"),
    ("policy-epsilon", lambda f: _policy(f, "p-eps.json", {"weights": "weights.npz", "epsilon": 2}), 2,
     r"invalid at 'epsilon'"),
]

SWEEP_CASES = [
    ("sweep-name-escape", lambda f: _toml_experiment(f, "e-name.toml", 'name = "../../../x"'), 2,
     r"e-name\.toml.*name must be a plain name.*got '\.\./\.\./\.\./x'"),
    ("sweep-name-absolute", lambda f: _toml_experiment(f, "e-name2.toml", 'name = "/tmp/x"'), 2,
     r"name must be a plain name"),
    ("sweep-cache-absolute", lambda f: _toml_experiment(f, "e-cache.toml", '[compute]\nsolve_cache = "/tmp/c"'), 2,
     r"solve_cache must be a folder inside the experiment's folder"),
    ("sweep-cache-dotdot", lambda f: _toml_experiment(f, "e-cache2.toml", '[compute]\nsolve_cache = "a/../../c"'), 2,
     r"solve_cache must be a folder inside"),
    ("sweep-remote-scheduler", lambda f: _toml_experiment(
        f, "e-tcp.toml", '[compute]\nscheduler = "tcp://203.0.113.9:8786"'), 2,
     r"compute\.scheduler names a remote dask scheduler \('tcp://203\.0\.113\.9:8786'\).*--allow-remote-scheduler"),
    ("sweep-grid-10000^3", lambda f: _toml_experiment(f, "e-grid.toml", (
        "[search]\ndiversity = {min = 0.0, max = 1.0, n = 10000}\nchurn = {min = 0.0, max = 1.0, n = 10000}\n"
        "exploration = {min = 0.0, max = 1.0, n = 10000}")), 2,
     r"1,000,000,000,000 grid points exceed the limit max_grid_points = 100,000 \(raise it with "
     r"SLATE_MAX_GRID_POINTS"),
    ("sweep-solver-option-typo", lambda f: _toml_experiment(f, "e-opt.toml", '[solver]\nname = "fast"\n'
                                                            'options = {restartz = 3}'), 2,
     r"Unknown option 'restartz' for solver 'fast'; its options are seed"),
    ("sweep-seed-beyond-int64", lambda f: _toml_experiment(f, "e-seed.toml", "seed = 99999999999999999999999"), 2,
     r"'seed' field .* less than or equal to 9223372036854775807"),
    ("sweep-not-utf8", lambda f: ["sweep", str(f.write("e-latin.toml", b'name = "caf\xe9"\n'))], 2,
     r"experiment file '.*e-latin\.toml' is not UTF-8"),
    ("sweep-nested-toml", lambda f: ["sweep", str(f.write("e-deep.toml", "a = " + _deep_json(5000)))], 2,
     r"e-deep\.toml' is nested too deeply"),
    ("sweep-bad-toml", lambda f: ["sweep", str(f.write("e-bad.toml", "name = "))], 2,
     r"e-bad\.toml' is not valid TOML"),
    ("sweep-yaml-alias-bomb", lambda f: ["sweep", str(f.write("e-bomb.yaml", "\n".join(
        ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
        + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
        + ["data: {kind: sim}", "policy: {kind: oracle}"])))], 2,
     r"e-bomb\.yaml' holds more than 2,000,000 lists and tables"),
    ("sweep-missing", lambda f: ["sweep", str(f.root / "none.toml")], 2, r"none\.toml' does not exist"),
    ("sweep-data-outside", lambda f: ["sweep", str(f.write("e-out.toml", (
        'name = "x"\n[data]\nkind = "log"\npath = "/etc/passwd"\nembeddings = "e.parquet"\n')))], 2,
     r"data\.path '/etc/passwd' is outside the experiment's folder.*--allow-outside-paths"),
    ("sweep-data-dotdot", lambda f: ["sweep", str(f.write("sub/e-up.toml", (
        'name = "x"\n[data]\nkind = "log"\npath = "../log.parquet"\nembeddings = "e.parquet"\n')))], 2,
     r"data\.path '\.\./log\.parquet' is outside"),
    ("sweep-workers-huge", lambda f: [*_toml_experiment(f, "e-w.toml", ""), "--workers", str(10**30)], 2,
     r"--workers\) must be an integer in \[1, 1024\]"),
    ("sweep-output-is-a-file", lambda f: [*_toml_experiment(f, "e-o.toml", ""), "--output", str(f.page / "x")], 2,
     r"--output folder '.*page\.json/x' cannot be made: '.*page\.json' is a file"),
    ("report-output-is-a-file", lambda f: ["report", str(f.root / "res2"), "--output", str(f.page)], 2,
     r"--output folder '.*page\.json' cannot be made"),
    ("report-constraint", lambda f: ["report", str(f.root), "--max-churn", "5"], 2,
     r"Invalid constraint --max-churn: Input should be less than or equal to 1; got 5\.0"),
    ("report-missing", lambda f: ["report", str(f.root / "none")], 2, r"is not a finished sweep"),
    ("report-damaged-manifest", lambda f: (
        f.write("res/results.parquet", f.log.read_bytes()), f.write("res/manifest.json", '{"experiment": '),
        ["report", str(f.root / "res")])[-1], 2, r"results in '.*res' are damaged \(JSONDecodeError"),
]

CASES = SOLVE_CASES + LOG_CASES + TABLE_CASES + REPLAY_CASES + SWEEP_CASES


@pytest.mark.parametrize(("build", "status", "pattern"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_command_line_case(files, capsys, build, status, pattern):
    argv = build(files)
    assert main(argv) == status  # an exception escaping main() would be a traceback
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    if status == 0:
        assert lines == []
        return
    assert len(lines) == 1, err
    assert lines[0].startswith(f"slate {argv[0]}: ")
    assert "Traceback" not in err
    assert re.search(pattern, lines[0]), lines[0]


def test_the_table_covers_every_command(files):
    assert {c[0].split("-")[0] for c in CASES} >= {"solve", "replay", "table", "policy", "sweep", "report"}
    assert len({c[0] for c in CASES}) == len(CASES)


def _run(argv: list[str], timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "slate", *argv], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.mark.parametrize("command", ["solve", "replay"])
def test_a_fifo_is_refused_at_once_in_a_fresh_process(files, command):
    fifo = files.fifo(f"{command}.fifo")
    argv = ["solve", str(fifo)] if command == "solve" else ["replay", str(fifo), "-o", str(files.root / "o.json")]
    proc = _run(argv, timeout=60)  # a hang raises TimeoutExpired
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert "is not a regular file" in proc.stderr and str(fifo) in proc.stderr
    assert "Traceback" not in proc.stderr


def test_dev_zero_in_a_fresh_process_gives_one_line(files):
    proc = _run(["solve", "/dev/zero"], timeout=60)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_output_is_checked_before_the_replay_runs(files, monkeypatch):
    evaluate_module = sys.modules["slate.replay.evaluate"]

    def never(*args, **kwargs):
        raise AssertionError("the replay ran before --output was checked")

    monkeypatch.setattr(evaluate_module, "evaluate", never)
    assert main(["replay", str(files.log), "-o", str(files.root / "missing" / "o.json")]) == 2


def test_no_match_json_has_null_values_and_the_status(files, capsys):
    out = files.root / "nomatch.json"
    assert main(["replay", str(files.log), "--table", str(files.mismatch), "-e", "ips,dr", "--bootstrap", "0",
                 "-o", str(out)]) == 3
    saved = json.loads(out.read_text())
    for name in ("ips", "dr"):
        e = saved["estimates"][name]
        assert e["value"] is None and e["interval"] == [None, None] and e["n_matched"] == 0
        assert e["status"] == "no_match" and "matches" in e["reason"]
    assert "no estimate" in capsys.readouterr().out


def test_outside_paths_are_allowed_with_the_flag(files, capsys):
    config = files.json("sub2/p.json", {"weights": str(files.weights)})
    argv = ["replay", str(files.log), "--policy", str(config), "--bootstrap", "0", "-o", str(files.root / "o.json")]
    assert main(argv) == 2
    assert main([*argv, "--allow-outside-paths"]) == 0
    capsys.readouterr()


@pytest.mark.parametrize("engine", ["memory", "stream", "dask"])
def test_replay_reads_around_an_unreadable_file_in_a_log_folder_and_says_so(files, capsys, engine):
    folder = files.root / f"logdir-{engine}"
    files.write(f"logdir-{engine}/a.parquet", files.log.read_bytes())
    files.write(f"logdir-{engine}/b.parquet", "hello")
    argv = ["replay", str(folder), "--engine", engine, "-o", str(files.root / f"o-{engine}.json")]
    if engine == "dask":
        argv += ["--workers", "1"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    damaged = [line for line in out.splitlines() if "damaged:" in line]
    assert len(damaged) == 1 and "b.parquet" in damaged[0], out
    report = json.loads((files.root / f"o-{engine}.json").read_text())
    assert any("b.parquet" in d for d in report["rejections"]["damaged"])
