"""Decision logging: batches, partitions, the impressions schema, crash safety."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import timedelta

import numpy as np
import pyarrow.parquet as pq
import pytest

from slate.errors import InvalidProblemError
from slate.logs import read_impressions
from slate.serve import Composer, DecisionLogger, DecisionLogOptions, Fault, StickyEpsilon, decisions_table
from slate.serve import decision_log as decision_log_module
from slate.stability import InMemoryStore, StabilityRules
from tests.serve.test_compose import T0, TableScorer, cfg, make_request


def run_pages(logger, n_pages, *, members=5, every=timedelta(hours=1), n_titles=6):
    composer = Composer(TableScorer(drift=0.05), InMemoryStore(),
                        StickyEpsilon(0.3, max_explored=2, sticky_sessions=2, seed=0),
                        config=cfg(solver="independent", stability=StabilityRules(max_changes=3)), logger=logger)
    return [composer.compose(make_request(n_titles=n_titles, member=i % members, session=i, when=T0 + i * every,
                                          ragged=True, seed=i % members))
            for i in range(n_pages)]


def test_batches_become_files_that_read_back_exactly(tmp_path):
    logger = DecisionLogger(tmp_path, batch_pages=4)
    decisions = run_pages(logger, 10)
    logger.wait()  # full batches are written by the writer thread
    assert len(logger.files_) == 2 and len(logger) == 2  # two full batches written, two pages buffered
    logger.close()
    assert len(logger.files_) == 3 and logger.pages_written_ == 10 and logger.rows_written_ == 60
    log, report = read_impressions(tmp_path)
    assert log.n_rows == 0 and report.n_rejected == 60
    assert set(report.counts.items()) >= {("missing_reward", 60)}  # outcomes are not known yet
    table = pq.read_table(tmp_path, columns=["page_id", "title_id", "image_id", "propensity", "explored",
                                             "previous_image_id", "candidate_ids", "row", "col"])
    rows = table.to_pylist()
    i = 0
    for d in decisions:
        for t in range(d.n_titles):
            r = rows[i]
            assert (r["page_id"], r["title_id"], r["image_id"]) == (d.page_id, d.title_ids[t], d.image_ids[t])
            assert r["propensity"] == d.propensity[t] and r["explored"] == bool(d.explored[t])
            assert r["previous_image_id"] == d.previous_image_ids[t]
            assert tuple(r["candidate_ids"]) == d.candidate_ids[t]
            assert (r["row"], r["col"]) == (d.rows[t], d.cols[t])
            i += 1
    assert i == len(rows)


def test_rows_with_rewards_pass_the_reader(tmp_path):
    decisions = run_pages(None, 6)
    rng = np.random.default_rng(0)
    with DecisionLogger(tmp_path, batch_pages=100) as logger:
        for d in decisions:
            logger.append(d, rewards=rng.integers(0, 2, d.n_titles), engagement=rng.uniform(0, 50, d.n_titles))
    log, report = read_impressions(tmp_path)
    assert report.n_rejected == 0 and log.n_rows == 36
    assert log.n_pages == 6


def test_partitions_by_day_and_hour(tmp_path):
    day = DecisionLogger(tmp_path / "d", batch_pages=100)
    run_pages(day, 5, every=timedelta(hours=3))  # 20:00 .. 08:00 next day
    day.close()
    assert sorted(p.parent.name for p in day.files_) == ["date=2024-05-01", "date=2024-05-02"]
    hour = DecisionLogger(tmp_path / "h", batch_pages=100, partition="hour")
    run_pages(hour, 2)
    hour.close()
    assert [p.parent.name for p in hour.files_] == ["hour=20", "hour=21"]
    flat = DecisionLogger(tmp_path / "f", batch_pages=100, partition=None)
    run_pages(flat, 2)
    flat.close()
    assert [p.parent for p in flat.files_] == [tmp_path / "f"]


def test_old_batches_are_flushed_on_the_next_append(tmp_path):
    logger = DecisionLogger(tmp_path, DecisionLogOptions(flush_seconds=0.05), batch_pages=1000)
    run_pages(logger, 1)
    assert logger.files_ == []
    time.sleep(0.08)
    run_pages(logger, 1)
    logger.wait()
    assert len(logger.files_) == 1 and len(logger) == 0


def test_file_metadata_counts_faults(tmp_path):
    decisions = run_pages(None, 3)
    broken = dataclasses.replace(decisions[0], faults=(Fault.SOLVER_LATE,), fault_details=("late",))
    assert broken.status == "degraded"
    with DecisionLogger(tmp_path) as logger:
        for d in (broken, *decisions[1:]):
            logger.append(d)
    meta = pq.read_schema(logger.files_[0]).metadata
    assert json.loads(meta[b"slate.faults"]) == {"solver_late": 1}
    assert meta[b"slate.pages"] == b"3" and meta[b"slate.schema"] == b"slate.impressions/1"


def test_a_failed_write_keeps_the_batch_and_leaves_no_final_file(tmp_path, monkeypatch):
    logger = DecisionLogger(tmp_path, DecisionLogOptions(max_buffer_pages=4), batch_pages=3)
    from slate.logs import parquet

    real = parquet.write_impressions

    def half_then_crash(path, table, **kw):
        with open(path, "wb") as f:
            f.write(b"PAR1 partial")  # a torn temporary file
        raise OSError("disk full")

    monkeypatch.setattr(parquet, "write_impressions", half_then_crash)
    decisions = run_pages(None, 5)
    for d in decisions[:3]:
        logger.append(d)  # the batch is full: handed to the writer, whose write fails
    logger.wait()
    assert logger.failed_flushes_ == 1 and len(logger) == 3 and logger.files_ == []
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []  # the torn temporary was removed
    with pytest.raises(OSError, match="disk full"):
        logger.append(decisions[3])  # the failure is raised by the next call; the page is kept
    logger.wait()
    with pytest.raises(OSError):
        logger.flush()
    assert list(tmp_path.rglob("*.parquet")) == []
    with pytest.raises(OSError):  # a failing logger reports the fault on every page until a write succeeds
        logger.append(decisions[4])  # 5 buffered > max 4: the oldest is dropped and counted
    logger.wait()
    assert logger.dropped_pages_ == 1 and len(logger) == 4
    with pytest.raises(OSError, match="disk full"):
        logger.flush()
    monkeypatch.setattr(parquet, "write_impressions", real)
    logger.close()
    assert logger.pages_written_ == 4
    table = pq.read_table(tmp_path)  # the torn temporaries are skipped by the reader
    assert table.num_rows == 4 * 6


def test_compose_reports_a_logger_that_fails(tmp_path, monkeypatch):
    logger = DecisionLogger(tmp_path, batch_pages=1)
    monkeypatch.setattr(decision_log_module.DecisionLogger, "_publish",
                        lambda self, *a, **k: (_ for _ in ()).throw(OSError("read-only file system")))
    run_pages(logger, 1)
    logger.wait()  # the writer thread's failure is reported by the pages that follow
    decisions = run_pages(logger, 2)
    assert all(d.status == "degraded" and d.faults[-1].value == "log_failed" for d in decisions)


WRITER = textwrap.dedent(
    """
    import sys, numpy as np
    sys.path.insert(0, sys.argv[2])
    from datetime import timedelta
    from tests.serve.test_compose import T0, TableScorer, cfg, make_request
    from slate.serve import Composer, DecisionLogger
    logger = DecisionLogger(sys.argv[1], batch_pages=7)
    composer = Composer(TableScorer(), None, config=cfg(solver="independent"), logger=logger)
    i = 0
    said = False
    while True:
        composer.compose(make_request(n_titles=5, session=i, when=T0 + timedelta(seconds=i)))
        i += 1
        if not said and len(logger.files_) >= 3:  # the writer thread may publish two between checks
            print("three files", flush=True)
            said = True
    """
)


def test_a_killed_process_loses_at_most_the_unflushed_batch(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path / "log"), os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "three files"
        time.sleep(0.2)  # let it write more, then kill it wherever it is
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
    files = sorted((tmp_path / "log").rglob("*.parquet"))
    assert len(files) >= 3
    for f in files:  # every file with a final name is complete: 7 pages of 5 titles
        assert pq.read_table(f).num_rows == 35
    assert pq.read_table(tmp_path / "log").num_rows == 35 * len(files)


def test_decisions_table_without_decisions_is_empty_and_typed():
    table = decisions_table(run_pages(None, 1))
    assert table.schema.field("reward").type == "int8" and table.column("reward").null_count == 6


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_pages": 0}, "'batch_pages' parameter of DecisionLogger"),
        ({"flush_seconds": 0}, "'flush_seconds'"),
        ({"partition": "week"}, "'partition'"),
        ({"prefix": ".hidden"}, "'prefix'"),
        ({"batch_pages": 10, "max_buffer_pages": 5}, "'max_buffer_pages'"),
    ],
)
def test_bad_parameters(tmp_path, kwargs, message):
    with pytest.raises(InvalidProblemError, match=message):
        DecisionLogger(tmp_path, DecisionLogOptions(**kwargs))


def test_background_writer_writes_every_page_and_reports_failures(tmp_path, monkeypatch):
    decisions = run_pages(None, 25)
    logger = DecisionLogger(tmp_path / "ok", batch_pages=4, background=True)
    for d in decisions:
        logger.append(d)
    logger.close()
    assert logger.pages_written_ == 25 and len(logger) == 0
    assert pq.read_table(tmp_path / "ok").num_rows == sum(d.n_titles for d in decisions)

    failing = DecisionLogger(tmp_path / "bad", batch_pages=2, background=True)
    from slate.logs import parquet

    monkeypatch.setattr(parquet, "write_impressions", lambda *a, **k: (_ for _ in ()).throw(OSError("EIO")))
    failing.append(decisions[0])
    failing.append(decisions[1])  # starts a background write that fails
    failing.wait()
    with pytest.raises(OSError, match="EIO"):
        failing.append(decisions[2])
    assert failing.failed_flushes_ == 1 and len(failing) == 3  # nothing lost


def test_pages_are_encoded_on_append_and_not_kept(tmp_path):
    """append() encodes the page's rows at once: the buffer holds no PageDecision (so Python's
    garbage collector has nothing of it to traverse), and ids of any script round-trip exactly."""
    import gc
    import weakref

    decision = run_pages(None, 1)[0]
    titles = tuple(f"Ti\u0308tel-{i}-\u6620\u753b" if i % 2 else f"T{i}" for i in range(decision.n_titles))
    previous = tuple(None if i % 3 == 0 else f"\u00e9-{i}" for i in range(decision.n_titles))
    odd = dataclasses.replace(decision, title_ids=titles, previous_image_ids=previous)
    ref = weakref.ref(odd)
    logger = DecisionLogger(tmp_path, batch_pages=10)
    logger.append(odd, rewards=[1, 0] * (odd.n_titles // 2))
    del odd
    gc.collect()
    assert ref() is None and len(logger) == 1
    logger.close()
    table = pq.read_table(tmp_path)
    assert table.column("title_id").to_pylist() == list(titles)
    assert table.column("previous_image_id").to_pylist() == list(previous)
    assert table.column("reward").to_pylist() == [1, 0] * (decision.n_titles // 2)
    assert [tuple(c) for c in table.column("candidate_ids").to_pylist()] == list(decision.candidate_ids)


@pytest.mark.parametrize("rewards", [[1, 0], np.ones((6, 2)), ["a"] * 6])
def test_rewards_of_the_wrong_shape_are_refused(tmp_path, rewards):
    decision = run_pages(None, 1)[0]
    logger = DecisionLogger(tmp_path)
    with pytest.raises(InvalidProblemError, match="'rewards' of a logged page must be 6 numbers"):
        logger.append(decision, rewards=rewards)
    assert len(logger) == 0


def test_options_object_and_the_deprecated_keywords_give_the_same_logger(tmp_path):
    opts = DecisionLogOptions(batch_pages=7, flush_seconds=5.0, prefix="p", fsync=False, max_buffer_pages=70)
    new = DecisionLogger(tmp_path / "a", opts, partition="hour", durable=True)
    assert new.options == DecisionLogOptions(batch_pages=7, flush_seconds=5.0, partition="hour", prefix="p",
                                             fsync=False, max_buffer_pages=70, durable=True)
    with pytest.warns(DeprecationWarning, match=r"DecisionLogger\(flush_seconds=..., prefix=..., fsync=..., max_buffer_pages=...\) is deprecated"):
        old = DecisionLogger(tmp_path / "b", batch_pages=7, flush_seconds=5.0, prefix="p", fsync=False,
                             max_buffer_pages=70, partition="hour", durable=True)
    assert old.options == new.options
    assert (old.batch_pages, old.flush_seconds, old.prefix, old.fsync, old.durable) == (7, 5.0, "p", False, True)
    new.close()
    old.close()
    with pytest.raises(TypeError, match="unexpected keyword argument 'batch_page'"):
        DecisionLogger(tmp_path / "c", batch_page=3)
    with pytest.raises(InvalidProblemError, match="'options' parameter of DecisionLogger must be a DecisionLogOptions"):
        DecisionLogger(tmp_path / "c", {"batch_pages": 3})
