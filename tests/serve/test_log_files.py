"""Decision-log file mechanics: unique names, no overwrites, orphans, the durable journal.

Several loggers (threads, re-created loggers, processes, even two processes with the same PID)
share one folder: every page a logger reports written is on disk, and every file reads back.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import timedelta

import pyarrow.parquet as pq
import pytest

from slate.serve import DecisionLogger, DecisionLogOptions, _logfiles
from tests.serve.test_log import run_pages

HERE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository root


def pages_on_disk(folder):
    """(pages, rows) in the published files, every file read in full (raises if one is damaged)."""
    files = sorted(p for p in folder.rglob("*.parquet") if not p.name.startswith("."))
    pages = rows = 0
    for f in files:
        table = pq.read_table(f)
        pages += int(pq.read_schema(f).metadata[b"slate.pages"])
        rows += table.num_rows
        assert table.column("page_id").null_count == 0
    return pages, rows


@pytest.fixture(scope="module")
def decisions():
    return run_pages(None, 60, every=timedelta(0))  # one timestamp: the old names would collide


def test_two_threads_with_two_loggers_lose_nothing(tmp_path, decisions):
    loggers = [DecisionLogger(tmp_path, batch_pages=3) for _ in range(2)]

    def serve(logger):
        for d in decisions:
            logger.append(d)
        logger.close()

    threads = [threading.Thread(target=serve, args=(lg,)) for lg in loggers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    reported = sum(lg.pages_written_ for lg in loggers)
    assert reported == 2 * len(decisions)
    assert pages_on_disk(tmp_path) == (reported, 2 * sum(d.n_titles for d in decisions))
    assert not [p for p in tmp_path.rglob(".*")]  # no temporary left behind


def test_a_recreated_logger_does_not_overwrite_the_first_ones_files(tmp_path, decisions):
    reported = 0
    for _ in range(3):  # same process, same PID, the sequence numbers start again each time
        with DecisionLogger(tmp_path, batch_pages=4) as logger:
            for d in decisions[:20]:
                logger.append(d)
        reported += logger.pages_written_
    assert reported == 60 and pages_on_disk(tmp_path)[0] == 60


SAME_PID = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, sys.argv[2])
    os.getpid = lambda: 1  # two containers: both are PID 1
    from datetime import timedelta
    from tests.serve.test_log import run_pages
    from slate.serve import DecisionLogger
    decisions = run_pages(None, 40, every=timedelta(0))
    with DecisionLogger(sys.argv[1], batch_pages=2) as logger:
        for d in decisions:
            logger.append(d)
    print(logger.pages_written_, [f.name.split("-")[2] for f in logger.files_][:1])
    """
)


def test_two_processes_with_the_same_pid_lose_nothing(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", SAME_PID, str(tmp_path), HERE],
                              stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    reported = [int(o.split()[0]) for o in outs]
    assert all("'1'" in o for o in outs)  # the PID in the names is the same
    assert reported == [40, 40] and pages_on_disk(tmp_path)[0] == 80


def test_publish_never_replaces_an_existing_file(tmp_path, monkeypatch):
    target = tmp_path / "x.parquet"
    target.write_bytes(b"first")
    names = iter(["x.parquet", "x.parquet", "y.parquet"])
    final = _logfiles.publish(tmp_path, lambda p: p.write_bytes(b"second"), lambda: next(names),
                              hidden_prefix="d")
    assert final.name == "y.parquet" and target.read_bytes() == b"first"
    assert final.read_bytes() == b"second" and sorted(p.name for p in tmp_path.iterdir()) == [
        "x.parquet", "y.parquet"]


def test_a_failed_write_removes_its_temporary(tmp_path):
    def torn(path):
        path.write_bytes(b"PAR1 partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        _logfiles.publish(tmp_path, torn, lambda: "x.parquet", hidden_prefix="d")
    assert list(tmp_path.iterdir()) == []


def test_orphaned_temporaries_are_removed_at_start_up_when_old(tmp_path):
    part = tmp_path / "date=2024-05-01"
    part.mkdir()
    old, fresh, other = part / ".decisions-aa.tmp", part / ".decisions-bb.tmp", part / ".other-cc.tmp"
    for p in (old, fresh, other):
        p.write_bytes(b"PAR1")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    os.utime(other, (time.time() - 7200, time.time() - 7200))
    logger = DecisionLogger(tmp_path, DecisionLogOptions(orphan_seconds=3600))
    assert logger.orphans_removed_ == [old]
    assert not old.exists() and fresh.exists() and other.exists()  # young or not ours: kept


DURABLE = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[2])
    from datetime import timedelta
    from tests.serve.test_log import run_pages
    from slate.serve import DecisionLogger
    decisions = run_pages(None, 50)
    logger = DecisionLogger(sys.argv[1], batch_pages=8, durable=True)
    acked = 0
    while True:
        for d in decisions:
            logger.append(d)
            acked += 1
            print(acked, flush=True)
    """
)


def test_durable_mode_loses_no_acknowledged_page_on_kill_9(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", DURABLE, str(tmp_path), HERE],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    acked = 0
    try:
        while acked < 45:  # kill it mid-batch, with pages in the journal and maybe a file half-written
            acked = int(proc.stdout.readline())
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        # read through the text wrapper: acks it has already buffered are not in the pipe any
        # more, and communicate(timeout=...) reads the pipe's descriptor directly
        rest = proc.stdout.read().split()
        proc.stdout.close()
    acked = max([acked, *map(int, rest)])
    on_disk = pages_on_disk(tmp_path)[0]
    assert on_disk < acked  # some acknowledged pages were only in the journal
    recovering = DecisionLogger(tmp_path, batch_pages=8, durable=True)
    assert recovering.recovered_pages_ >= acked - on_disk
    pages, _ = pages_on_disk(tmp_path)
    assert pages >= acked  # nothing acknowledged is lost
    assert pages <= acked + 1  # at most the page being appended at the kill (journaled, not acked)
    assert not list(tmp_path.glob(".*.journal")) and recovering.pages_written_ == 0
    recovering.close()


def test_a_live_loggers_journal_is_not_replayed_by_another(tmp_path, decisions):
    first = DecisionLogger(tmp_path, batch_pages=100, durable=True)
    for d in decisions[:5]:
        first.append(d)
    second = DecisionLogger(tmp_path, durable=True)  # starts while the first one is alive
    assert second.recovered_pages_ == 0 and len(list(tmp_path.glob(".*.journal"))) == 1
    first.close()
    assert pages_on_disk(tmp_path)[0] == 5 and not list(tmp_path.glob(".*.journal"))
    second.close()


def test_a_journal_published_before_the_crash_is_not_replayed_twice(tmp_path, decisions):
    logger = DecisionLogger(tmp_path, batch_pages=100, durable=True, partition=None)
    for d in decisions[:5]:
        logger.append(d)
    journal = logger._journal
    assert journal is not None
    kept = journal.path.read_bytes()
    logger.close()  # published, then the segment deleted; put it back as if the crash came between
    journal.path.write_bytes(kept)
    again = DecisionLogger(tmp_path, durable=True, partition=None)
    assert again.recovered_pages_ == 0 and pages_on_disk(tmp_path)[0] == 5
    assert not journal.path.exists()


def test_a_torn_journal_record_is_ignored(tmp_path, decisions):
    logger = DecisionLogger(tmp_path, batch_pages=100, durable=True, partition=None)
    for d in decisions[:3]:
        logger.append(d)
    assert logger._journal is not None
    path = logger._journal.path
    data = path.read_bytes()
    logger._journal.close()  # a crash: the segment is left, unlocked
    logger._journal = None
    path.write_bytes(data[:-10])  # the last record torn
    records, torn = _logfiles.read_journal(path)
    assert len(records) == 2 and torn > 0
    assert json.loads(json.dumps(records[0][0]))["folder"] == ""
    again = DecisionLogger(tmp_path, durable=True, partition=None)
    assert again.recovered_pages_ == 2 and pages_on_disk(tmp_path)[0] == 2


EXIT_WITHOUT_CLOSE = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[2])
    from tests.serve.test_log import run_pages
    from slate.serve import DecisionLogger
    logger = DecisionLogger(sys.argv[1], batch_pages=2)
    for d in run_pages(None, 5):
        logger.append(d)
    """
)


def test_batches_handed_to_the_writer_are_written_before_the_interpreter_exits(tmp_path):
    subprocess.run([sys.executable, "-c", EXIT_WITHOUT_CLOSE, str(tmp_path), HERE], check=True, timeout=120)
    assert pages_on_disk(tmp_path)[0] == 4  # two full batches; the fifth page needed close()
