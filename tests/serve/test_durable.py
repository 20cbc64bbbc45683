"""Durable serving: with a durable decision logger the page is in the log before its state is
committed, so after a crash every committed state has its page in the log."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from datetime import timedelta

import pyarrow.parquet as pq

from slate.serve import Composer, DecisionLogger, Fault
from slate.stability import InMemoryStore, SQLiteStore
from tests.serve.test_compose import T0, TableScorer, cfg, make_request

HERE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository root


class RecordingStore(InMemoryStore):
    def __init__(self, events):
        super().__init__()
        self.events = events

    def put(self, member_id, states):
        self.events.append("put")
        super().put(member_id, states)


def serve(logger, events, n=3):
    composer = Composer(TableScorer(), RecordingStore(events), config=cfg(solver="independent"), logger=logger)
    append = logger.append

    def recording_append(decision, *a, **k):
        events.append("log")
        append(decision, *a, **k)

    logger.append = recording_append
    return composer, [composer.compose(make_request(n_titles=4, session=i, when=T0 + timedelta(hours=i)))
                      for i in range(n)]


def test_a_durable_logger_logs_the_page_before_the_state_commit(tmp_path):
    events: list[str] = []
    _, decisions = serve(DecisionLogger(tmp_path / "durable", durable=True), events)
    assert events == ["log", "put"] * 3
    assert all(d.status == "ok" and d.timings_ms["store_put"] >= 0 for d in decisions)
    events.clear()
    serve(DecisionLogger(tmp_path / "default"), events)
    assert events == ["put", "log"] * 3  # the default order: state first, the log batched


def test_a_page_the_durable_log_refuses_is_not_committed(tmp_path):
    events: list[str] = []
    logger = DecisionLogger(tmp_path, durable=True)
    composer, _ = serve(logger, events, n=1)

    def broken(*a, **k):
        raise OSError("journal: no space left on device")

    logger.append = broken
    request = make_request(n_titles=4, session=7, when=T0 + timedelta(days=3))
    before = composer.store.get(1, [t.title_id for t in request.titles])
    decision = composer.compose(request)
    assert Fault.LOG_FAILED in decision.faults and decision.status == "degraded"
    assert composer.store.get(1, [t.title_id for t in request.titles]) == before  # not committed
    assert events == ["log", "put"]


def test_a_failed_state_commit_after_the_log_is_a_fault(tmp_path):
    class Failing(InMemoryStore):
        def put(self, member_id, states):
            raise ConnectionError("store down")

    logger = DecisionLogger(tmp_path, durable=True)
    composer = Composer(TableScorer(), Failing(), config=cfg(solver="independent"), logger=logger)
    decision = composer.compose(make_request(n_titles=4))
    assert Fault.STORE_WRITE_FAILED in decision.faults
    assert any("store down" in d for d in decision.fault_details)
    logger.close()
    assert logger.pages_written_ == 1  # logged: shown to the member, its state not saved


SERVER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[2])
    from datetime import timedelta
    from tests.serve.test_compose import T0, TableScorer, cfg, make_request
    from slate.serve import Composer, DecisionLogger
    from slate.stability import SQLiteStore
    logger = DecisionLogger(sys.argv[1] + "/log", batch_pages=8, durable=True)
    store = SQLiteStore(sys.argv[1] + "/state.db")
    composer = Composer(TableScorer(), store, config=cfg(solver="independent"), logger=logger)
    i = 0
    while True:
        composer.compose(make_request(n_titles=4, member=i % 7, session=i, when=T0 + timedelta(minutes=i)))
        print(i, flush=True)
        i += 1
    """
)


def test_kill_9_in_durable_mode_loses_no_served_page_and_state_agrees_with_the_log(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(tmp_path), HERE], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    served = 0
    try:
        while served < 21:  # mid-batch: pages 16-21 are only in the journal
            served = int(proc.stdout.readline())
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        rest = proc.stdout.read().split()  # through the wrapper, which may hold buffered lines
        proc.stdout.close()
    served = max([served, *map(int, rest)]) + 1
    DecisionLogger(tmp_path / "log", durable=True).close()  # start-up replays the journal
    table = pq.read_table(tmp_path / "log", columns=["member_id", "timestamp"])
    logged = set(zip(table.column("member_id").to_pylist(), table.column("timestamp").to_pylist(), strict=True))
    wanted = {(i % 7, T0 + timedelta(minutes=i)) for i in range(served)}
    assert wanted <= logged and len(logged) <= served + 1  # + the page in flight at the kill
    store = SQLiteStore(tmp_path / "state.db")
    states = [(m, s) for m in range(7) for s in store.get(m, [f"T{t}" for t in range(4)]).values()]
    assert len(states) == 28
    stamps = {(m, ts.timestamp()) for m, ts in logged}
    assert all((m, s.updated_at) in stamps for m, s in states)  # every committed state: its page logged
    store.close()


class LosingStore(InMemoryStore):
    """A versioned store whose conditional write loses the race once (another page was saved)."""

    def __init__(self):
        super().__init__()
        self.lost = 0

    def write(self, member_id, states, version):
        if self.lost == 0:
            self.lost += 1
            return False
        return super().write(member_id, states, version)


def test_a_logged_page_whose_write_loses_the_race_is_served_as_logged_and_says_so(tmp_path):
    logger = DecisionLogger(tmp_path, durable=True)
    store = LosingStore()
    composer = Composer(TableScorer(), store, config=cfg(solver="independent"), logger=logger)
    first = composer.compose(make_request(n_titles=4, session=0, when=T0))
    assert store.lost == 1
    assert Fault.STORE_CONFLICT in first.faults and first.status == "degraded"
    assert "already in the durable log" in " ".join(first.fault_details)
    second = composer.compose(make_request(n_titles=4, session=1, when=T0 + timedelta(hours=1)))
    assert Fault.STORE_CONFLICT not in second.faults
    logger.close()
    logged = pq.read_table(tmp_path).column("page_id").to_pylist()
    assert sorted(logged) == sorted([first.page_id] * 4 + [second.page_id] * 4)  # one copy of each page
    assert store.read(first.member_id, first.title_ids)[1] == 1  # only the second page was committed
