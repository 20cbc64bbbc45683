"""``slate embed``: exit codes, the summary line, per-file rejections, cache, preview."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from slate.cli import main
from slate.replay import ImageEmbeddings
from slate.visual.posters import make_posters


@pytest.fixture(scope="module")
def posters(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli-posters")
    make_posters(["coffee", "camera", "rocket"], per_photo=2, seed=5).write(folder)
    return folder


def test_embed_writes_the_file_and_one_summary_line(posters, tmp_path, capsys):
    out = tmp_path / "e.parquet"
    assert main(["embed", str(posters), "--output", str(out), "--quiet"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "9 images embedded (9 new, 0 from cache), 0 rejected" in err[0]
    assert len(ImageEmbeddings.load(out)) == 9
    assert (tmp_path / "e.cache.parquet").is_file()
    assert main(["embed", str(posters), "--output", str(out), "-q"]) == 0
    assert "(0 new, 9 from cache)" in capsys.readouterr().err


def test_rejected_files_are_listed_with_reasons_and_the_run_goes_on(posters, tmp_path, capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    Image.new("RGB", (60, 90), (200, 10, 10)).save(folder / "red.png")
    (folder / "zero.jpg").write_bytes(b"")
    (folder / "notes.jpg").write_text("hello")
    out = tmp_path / "e.parquet"
    assert main(["embed", str(folder), "--output", str(out), "--no-cache", "-q", "--show-rejected", "1"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("slate embed: ") and ("empty" in err[0] or "not-an-image" in err[0])
    assert err[1] == "slate embed: ... and 1 more rejected files"
    assert "1 images embedded" in err[2] and "2 rejected (" in err[2]
    assert not (tmp_path / "e.cache.parquet").exists()


def test_exit_2_when_nothing_could_be_embedded(tmp_path, capsys):
    (tmp_path / "a.jpg").write_bytes(b"")
    out = tmp_path / "e.parquet"
    assert main(["embed", str(tmp_path / "a.jpg"), "--output", str(out), "-q"]) == 2
    assert "no image could be embedded" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(("argv", "match"), [
    (["--weights", "colour=-1"], "'weights' option must be finite"),
    (["--weights", "colour"], "NAME=NUMBER"),
    (["--frame", "64"], "WIDTHxHEIGHT"),
    (["--onnx", "missing.onnx"], "'onnx' model file must exist"),
    (["--workers", "0"], "'workers' option must be >= 1"),
    (["--mapping", "missing.csv"], "'mapping' file must exist"),
])
def test_bad_options_are_one_line_and_exit_2(posters, tmp_path, capsys, argv, match):
    assert main(["embed", str(posters), "--output", str(tmp_path / "e.parquet"), "-q", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and match in err[0]


def test_preview_draws_neighbours(posters, tmp_path, capsys):
    preview = tmp_path / "preview.png"
    assert main(["embed", str(posters), "--output", str(tmp_path / "e.parquet"), "-q",
                 "--preview", str(preview), "--preview-sample", "3", "--preview-k", "2"]) == 0
    image = np.asarray(Image.open(preview))
    assert image.shape[0] > 300 and image.shape[1] > 300 and image.std() > 10


def test_command_line_process_has_no_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "slate", "embed", str(tmp_path), "--output", str(tmp_path / "e.parquet"), "-q"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "no image could be embedded" in proc.stderr


def test_progress_bar_stays_off_when_stderr_is_not_a_terminal(posters, tmp_path, capsys):
    assert main(["embed", str(posters), "--output", str(tmp_path / "e.parquet"), "--no-cache"]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "embedding" not in err and "\r" not in err
