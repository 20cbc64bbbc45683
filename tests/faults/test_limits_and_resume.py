"""Size limits (refused before allocating, with a message naming the limit, raisable), compose's
up-front refusal of pages too large for its budget, state stores that cannot be opened, and
sweeps that resume over damaged work files."""

from __future__ import annotations

import json
import sqlite3
import time
import tracemalloc

import numpy as np
import pytest

from slate.errors import ResourceLimitError, StoreOpenError
from slate.limits import LIMITS, check_limit, check_npz, limit, raised_limits, read_text_file

from .conftest import Files


# ---------------------------------------------------------------------- limits
def test_every_limit_is_documented_and_raisable_by_environment(monkeypatch):
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "reliability.md").read_text()
    for name, default in LIMITS.items():
        assert f"`{name}`" in doc and f"SLATE_{name.upper()}" in doc, name
        assert limit(name) == default
        monkeypatch.setenv(f"SLATE_{name.upper()}", str(default + 1))
        assert limit(name) == default + 1
    monkeypatch.setenv("SLATE_MAX_TITLES", "lots")
    with pytest.raises(ResourceLimitError, match="SLATE_MAX_TITLES must be an integer; got 'lots'"):
        limit("max_titles")


def _grid_experiment(n: int) -> dict:
    span = {"min": 0.0, "max": 1.0, "n": n}
    return {"data": {"kind": "sim"}, "policy": {"kind": "oracle"},
            "search": {"diversity": span, "churn": span, "exploration": span}}


def _request(n_titles: int, n_images: int, cols: int = 10) -> dict:
    return {"member_id": 1, "session_id": 1, "titles": [
        {"title_id": f"T{t}", "image_ids": [f"T{t}-I{k}" for k in range(n_images)], "row": t // cols,
         "col": t % cols} for t in range(n_titles)]}


def _exceed_grid() -> None:
    from slate.tune import experiment_from_dict

    experiment_from_dict(_grid_experiment(50))  # 125,000 points


def _exceed_titles() -> None:
    from slate.serve import PageRequest

    PageRequest.model_validate(_request(2001, 1))


def _exceed_page_cells() -> None:
    from slate.page import PageProblem

    PageProblem.from_arrays(np.zeros((1000, 101)))


def _exceed_padded_page_cells() -> None:
    from slate.page import PageProblem

    n, k = 1000, 101
    PageProblem.from_padded(
        scores=np.zeros((n, k)), candidates=np.ones((n, k), bool), title_ids=[f"T{t}" for t in range(n)],
        image_ids=[[f"T{t}-{j}" for j in range(k)] for t in range(n)], pairs=np.zeros((0, 2), np.int64),
        pair_weights=np.zeros(0), similarity=np.zeros((0, k, k)), previous=np.full(n, -1),
        locked=np.zeros(n, bool), rows=np.zeros(n, np.int64), cols=np.arange(n),
    )


def _exceed_bootstrap() -> None:
    from slate.replay.estimators import _check_options

    _check_options(100_001, 0.95)


LIMIT_CASES = [
    ("max_grid_points", _exceed_grid, 125_000, r"125,000 grid points exceed the limit max_grid_points"),
    ("max_titles", _exceed_titles, 2001, r"2,001 titles in one page request exceed the limit max_titles"),
    ("max_page_cells", _exceed_page_cells, 101_000, r"101,000 title x image cells in one page exceed"),
    ("max_page_cells", _exceed_padded_page_cells, 101_000, r"101,000 title x image cells in one page exceed"),
    ("max_bootstrap", _exceed_bootstrap, 100_001, r"100,001 bootstrap replicates exceed the limit max_bootstrap"),
]


@pytest.mark.parametrize(("name", "exceed", "needed", "pattern"), LIMIT_CASES, ids=[c[1].__name__ for c in LIMIT_CASES])
def test_a_limit_refuses_with_its_name_and_passes_once_raised(name, exceed, needed, pattern):
    with pytest.raises(ValueError, match=pattern) as info:
        exceed()
    assert f"SLATE_{name.upper()}=N" in str(info.value)
    with raised_limits(**{name: needed}):
        exceed()  # the same input is accepted under a raised limit


def test_a_large_grid_is_refused_before_any_point_is_built():
    from slate.errors import SlateError
    from slate.tune import experiment_from_dict

    tracemalloc.start()
    started = time.perf_counter()
    with pytest.raises(SlateError, match=r"1,000,000,000,000 grid points"):
        experiment_from_dict(_grid_experiment(10_000))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert time.perf_counter() - started < 5.0 and peak < 50 * 2**20


def test_an_npz_declaring_a_huge_array_is_refused_from_its_header(files: Files):
    import io
    import zipfile

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (60_000, 30_000)})
    path = files.root / "declared.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("weights.npy", header.getvalue() + b"\0" * 300_000)
    assert path.stat().st_size < 400_000
    tracemalloc.start()
    with pytest.raises(ResourceLimitError, match=r"14,400,000,000 bytes\), more than the limit max_array_bytes"):
        check_npz(path, "policy file")
    assert tracemalloc.get_traced_memory()[1] < 50 * 2**20
    tracemalloc.stop()
    with raised_limits(max_array_bytes=100):
        with pytest.raises(ResourceLimitError, match="max_array_bytes = 100"):
            check_npz(files.weights, "policy file")


def test_a_file_over_the_size_limit_is_refused_before_reading(files: Files):
    with raised_limits(max_file_bytes=100):
        with pytest.raises(ResourceLimitError, match=r"page\.json' has [\d,]+ bytes, more than the limit max_file_bytes"):
            read_text_file(files.page, "page-problem file")
    assert read_text_file(files.page, "page-problem file").startswith("{")


def test_check_limit_counts_non_integers_too():
    with raised_limits(max_bootstrap=1):
        with pytest.raises(ResourceLimitError, match=r"2\.5 things exceed"):
            check_limit("max_bootstrap", 2.5, "things")


# ---------------------------------------------------------------------- compose
def test_a_500_by_50_page_is_refused_up_front_within_the_budget():
    from slate.page.embeddings import ImageEmbeddings
    from slate.serve import Composer, InvalidRequestError
    from slate.stability import InMemoryStore

    n, k = 500, 50
    ids = [f"T{t}-I{i}" for t in range(n) for i in range(k)]
    catalog = ImageEmbeddings(ids, np.random.default_rng(0).normal(size=(len(ids), 8)))
    calls = []
    composer = Composer(lambda request: calls.append(1) or np.zeros((n, k)), InMemoryStore(), catalog=catalog)
    tracemalloc.start()
    started = time.thread_time()  # CPU of this thread: a busy machine does not stretch it
    with pytest.raises(InvalidRequestError, match=r"too large to compose: 6,850,000 pair x image x image cells "
                                                  r"\(2740 interacting pairs, 50 images\) exceed the limit max_pair_cells"):
        composer.compose(_request(n, k))
    cpu_ms = (time.thread_time() - started) * 1000
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert calls == []  # refused before scoring
    # the refusal allocates nothing page-sized and costs a fraction of composing the page (~1 s)
    assert cpu_ms < 800 and peak < 100 * 2**20, (cpu_ms, peak)


def test_a_page_within_the_limit_is_composed():
    from slate.page.embeddings import ImageEmbeddings
    from slate.serve import Composer
    from slate.stability import InMemoryStore

    n, k = 40, 10
    ids = [f"T{t}-I{i}" for t in range(n) for i in range(k)]
    catalog = ImageEmbeddings(ids, np.random.default_rng(0).normal(size=(len(ids), 8)))
    scores = np.random.default_rng(1).uniform(0, 0.2, (n, k))
    decision = Composer(lambda request: scores, InMemoryStore(), catalog=catalog).compose(_request(n, k))
    assert decision.n_titles == n and decision.status in ("ok", "degraded")


# ---------------------------------------------------------------------- state stores
def _read_only_connect(monkeypatch):
    import slate.stability.store as store_module

    real = sqlite3.connect

    def connect(path, *args, **kwargs):
        return real(f"file:{path}?mode=ro", *args, uri=True, **kwargs)

    monkeypatch.setattr(store_module.sqlite3, "connect", connect)


STORE_CASES = [
    ("folder", lambda f, mp: f.root / "as-folder", r"'.*as-folder': it is a folder"),
    ("not-a-database", lambda f, mp: f.write("text.db", "hello " * 200), r"'.*text\.db': it is not an SQLite database"),
    ("truncated-header", lambda f, mp: f.write("half.db", b"SQLite format 3\0" + b"\xff" * 84),
     r"'.*half\.db': it is not an SQLite database"),
    ("read-only", lambda f, mp: (f.write("ro.db", b""), _read_only_connect(mp))[0], r"'.*ro\.db': it is read-only"),
]


@pytest.mark.parametrize(("build", "pattern"), [c[1:] for c in STORE_CASES], ids=[c[0] for c in STORE_CASES])
def test_a_state_store_that_cannot_open_says_which_file_and_why(files: Files, monkeypatch, build, pattern):
    from slate.stability import SQLiteStore

    path = build(files, monkeypatch)
    if path.name == "as-folder":
        path.mkdir(exist_ok=True)
    with pytest.raises(StoreOpenError, match=pattern) as info:
        SQLiteStore(path)
    assert isinstance(info.value, OSError) and "\n" not in str(info.value)


# ---------------------------------------------------------------------- resume
@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory):
    from slate.tune import experiment_from_dict, run_sweep

    experiment = experiment_from_dict({
        "name": "tiny", "seed": 1,
        "data": {"kind": "sim", "world": {"n_members": 20, "n_titles": 30, "max_images": 4, "seed": 3,
                                          "page": {"rows": 2, "cols": 4}},
                 "n_days": 2, "schedule_seed": 2, "truth": "none"},
        "policy": {"kind": "oracle"},
        "estimator": {"name": "snips", "n_bootstrap": 20},
        "search": {"diversity": [0.0, 1.0]},
        "compute": {"scheduler": "sync", "block_pages": 12, "progress": False},
    })
    out = tmp_path_factory.mktemp("sweep") / "results"
    return experiment, out, run_sweep(experiment, out, plots=False)


def _same(a, b) -> None:
    assert a.column_names == b.column_names
    for name in a.column_names:
        x, y = a.column(name).to_pylist(), b.column(name).to_pylist()
        assert json.dumps(x, default=str) == json.dumps(y, default=str), name


DAMAGE = [
    ("solve-truncated", "work/solve-00000.npz", lambda b: b[: len(b) // 2]),
    ("solve-empty", "work/solve-00001.npz", lambda b: b""),
    ("solve-not-zip", "work/solve-00000.npz", lambda b: b"hello"),
    ("point-truncated", "work/point-00001.json", lambda b: b[: len(b) // 2]),
    ("point-not-object", "work/point-00000.json", lambda b: b"[1, 2]"),
    ("manifest-truncated", "manifest.json", lambda b: b[:10]),
    ("manifest-not-utf8", "manifest.json", lambda b: b"\xff\xfe"),
]


@pytest.mark.parametrize(("where", "damage"), [c[1:] for c in DAMAGE], ids=[c[0] for c in DAMAGE])
def test_resume_recomputes_a_damaged_work_file(tiny_sweep, tmp_path, where, damage):
    import shutil

    from slate.tune import run_sweep

    experiment, out, first = tiny_sweep
    copy = tmp_path / "results"
    shutil.copytree(out, copy)
    target = copy / where
    target.write_bytes(damage(target.read_bytes()))
    messages: list[str] = []
    again = run_sweep(experiment, copy, plots=False, log=messages.append)
    _same(first.table, again.table)
    assert any("damaged" in m for m in messages), messages
    assert (copy / where).exists()  # rewritten whole
    third = run_sweep(experiment, copy, plots=False, log=messages.append)  # and resumes cleanly after
    _same(first.table, third.table)
