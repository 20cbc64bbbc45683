"""slate.visual.run: files to an embeddings file that every reader of slate takes; cache; workers."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from slate.errors import InvalidEmbedInputError
from slate.replay import ImageEmbeddings
from slate.tune.data import read_embeddings
from slate.visual.posters import make_posters
from slate.visual.run import embed_files, write_embeddings


@pytest.fixture(scope="module")
def poster_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("posters")
    make_posters(["coffee", "camera", "chelsea", "rocket"], per_photo=3, seed=3).write(folder)
    (folder / "broken.jpg").write_bytes((folder / "orig-coffee.jpg").read_bytes()[:900])
    (folder / "empty.png").write_bytes(b"")
    (folder / "README.txt").write_text("not an image")
    return folder


def test_output_loads_through_every_embeddings_reader(poster_dir, tmp_path):
    report = embed_files([poster_dir])
    assert len(report.image_ids) == 16 and report.reasons == {"truncated": 1, "empty": 1}
    assert report.ignored == 1
    out = write_embeddings(tmp_path / "e.parquet", report.image_ids, report.vectors)
    schema = pq.read_schema(out)
    assert schema.field("image_id").type == pa.string()
    assert schema.field("embedding").type == pa.list_(pa.float32())
    loaded = ImageEmbeddings.load(out)  # replay's reader (used by sweeps too)
    assert loaded.image_ids == report.image_ids
    np.testing.assert_allclose(loaded.vectors, report.vectors, atol=1e-6)
    vectors, styles, _ = read_embeddings(out, tuple(reversed(report.image_ids)))  # sweeps' reader
    np.testing.assert_allclose(vectors[::-1], report.vectors, atol=1e-6)
    assert len(styles) == 16
    catalog = ImageEmbeddings(loaded.image_ids, loaded.vectors)  # compose()'s catalog
    assert catalog.rows(["orig-coffee"]).tolist() == [report.image_ids.index("orig-coffee")]


def test_rerun_embeds_only_new_or_changed_files(poster_dir, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    files = sorted(poster_dir.glob("*-c*.jpg"))[:5]
    for f in files:
        (folder / f.name).write_bytes(f.read_bytes())
    cache = tmp_path / "cache.parquet"
    first = embed_files([folder], cache=cache)
    assert (first.n_new, first.n_cached) == (5, 0)
    again = embed_files([folder], cache=cache)
    assert (again.n_new, again.n_cached) == (0, 5)
    assert again.vectors.tobytes() == first.vectors.tobytes()
    (folder / "new.jpg").write_bytes((poster_dir / "orig-rocket.jpg").read_bytes())
    (folder / files[0].name).write_bytes((poster_dir / "orig-camera.jpg").read_bytes())  # changed
    (folder / files[1].name).rename(folder / "renamed.jpg")  # same content, new name
    third = embed_files([folder], cache=cache)
    assert (third.n_new, third.n_cached) == (2, 4)


def test_cache_keeps_other_options_apart(poster_dir, tmp_path):
    from slate.visual.assemble import VisualOptions

    cache = tmp_path / "cache.parquet"
    files = sorted(poster_dir.glob("orig-*.jpg"))
    embed_files(files, cache=cache)
    no_faces = embed_files(files, VisualOptions(weights={"faces": 0}), cache=cache)
    assert no_faces.n_new == len(files)  # other weights: nothing reused
    assert embed_files(files, cache=cache).n_cached == len(files)  # the first options' rows kept


def test_parallel_is_bit_identical_to_serial(poster_dir):
    serial = embed_files([poster_dir])
    parallel = embed_files([poster_dir], workers=2)
    assert parallel.image_ids == serial.image_ids
    assert parallel.vectors.tobytes() == serial.vectors.tobytes()
    assert parallel.rejected == serial.rejected
    assert parallel.cpu_seconds > 0


def test_mapping_file_gives_ids_and_rejects_unmapped_files(poster_dir, tmp_path):
    files = sorted(poster_dir.glob("orig-*.jpg"))
    rel = [f.relative_to(poster_dir).as_posix() for f in files[:3]]
    csv = poster_dir / "map.csv"
    csv.write_text("path,image_id\n" + "".join(f"{p},img-{i}\n" for i, p in enumerate(rel)))
    parquet = tmp_path / "map.parquet"
    pq.write_table(pa.table({"path": [str(f) for f in files[:3]], "image_id": ["a", "b", "b"]}), parquet)
    try:
        by_csv = embed_files(files, mapping=csv)
        assert by_csv.image_ids == ("img-0", "img-1", "img-2")
        assert by_csv.reasons == {"unmapped": len(files) - 3}
        by_parquet = embed_files(files[:3], mapping=parquet)
        assert by_parquet.image_ids == ("a", "b") and by_parquet.reasons == {"duplicate-id": 1}
    finally:
        csv.unlink()


@pytest.mark.parametrize(("content", "match"), [
    ("file,id\nx.jpg,a\n", r"columns 'path' and 'image_id'"),
    ("path,image_id\nx.jpg,\n", r"empty path or image_id in row 1"),
    ("path,image_id\nx.jpg,a\nx.jpg,b\n", r"maps 'x.jpg' twice"),
])
def test_bad_mapping_files_are_one_clear_error(content, match, tmp_path):
    mapping = tmp_path / "m.csv"
    mapping.write_text(content)
    with pytest.raises(InvalidEmbedInputError, match=match):
        embed_files([tmp_path], mapping=mapping)


def test_missing_inputs_and_bad_workers(tmp_path):
    report = embed_files([tmp_path / "nope"])
    assert report.image_ids == () and report.reasons == {"unreadable": 1}
    with pytest.raises(InvalidEmbedInputError, match="workers"):
        embed_files([tmp_path], workers=0)
    with pytest.raises(InvalidEmbedInputError, match="at least one"):
        embed_files([])
    bad_cache = tmp_path / "cache.parquet"
    bad_cache.write_text("not parquet")
    with pytest.raises(InvalidEmbedInputError, match="not an embedding cache"):
        embed_files([tmp_path], cache=bad_cache)


def test_a_file_that_kills_its_worker_is_rejected_and_the_run_goes_on(poster_dir, tmp_path):
    from slate.visual.assemble import VisualOptions
    from slate.visual.run import _run_pending
    from tests.visual_crash import crash_on_name

    files = sorted(poster_dir.glob("edit-*.jpg"))[:6]
    names = [f"{i}.jpg" for i in range(6)]
    names[2], names[4] = "crash-a.jpg", "crash-b.jpg"
    pending = []
    for i, (f, name) in enumerate(zip(files, names, strict=True)):
        (tmp_path / name).write_bytes(f.read_bytes())
        pending.append((i, str(tmp_path / name)))

    class Bar:
        n = 0

        def update(self, k):
            self.n += k

    bar = Bar()
    import slate.visual.run as run

    chunk = run._CHUNK
    run._CHUNK = 2  # three chunks over two workers
    try:
        outcomes, _ = _run_pending(pending, VisualOptions(), 2, bar, func=crash_on_name)
    finally:
        run._CHUNK = chunk
    by_index = {o[0]: o for o in outcomes}
    assert sorted(by_index) == list(range(6)) and bar.n == 6
    assert {i for i, o in by_index.items() if o[2] == "crashed"} == {2, 4}
    assert all(by_index[i][1] is not None for i in (0, 1, 3, 5))


def test_an_unexpected_exception_on_one_file_is_counted_as_error(poster_dir, monkeypatch):
    import slate.visual.run as run

    real = run.embed_bytes

    def flaky(data, options):
        if data == (poster_dir / "orig-camera.jpg").read_bytes():
            raise RuntimeError("library failure")
        return real(data, options)

    monkeypatch.setattr(run, "embed_bytes", flaky)
    report = embed_files(sorted(poster_dir.glob("orig-*.jpg")))
    assert report.reasons == {"error": 1} and len(report.image_ids) == 3
    assert report.rejected[0][2] == "RuntimeError: library failure"


def test_progress_bar_only_on_a_terminal_and_not_when_quiet(monkeypatch):
    import io
    import sys

    from slate.visual.run import _progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with _progress(3, True) as bar:
        bar.update(3)
    assert "embedding" in terminal.getvalue()
    quiet = Terminal()
    monkeypatch.setattr(sys, "stderr", quiet)
    with _progress(3, False) as bar:
        bar.update(3)
    assert quiet.getvalue() == ""
