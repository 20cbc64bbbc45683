"""slate.serve.warmup: a warmed-up composer has saved, logged and counted nothing, and its
decision logger's write path has run once (the first batch no longer pays for its imports)."""

from __future__ import annotations

import numpy as np
import pytest

from slate.serve import ComposeConfig, Composer, DecisionLogger
from slate.stability import InMemoryStore
from tests.serve.test_log import run_pages


def files_in(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize("durable", [False, True])
def test_warm_up_runs_the_loggers_write_path_and_leaves_no_trace(tmp_path, monkeypatch, durable):
    seen = []
    real = DecisionLogger.warm_up

    def spy(self, decisions):
        seen.append(len(decisions))
        real(self, decisions)

    monkeypatch.setattr(DecisionLogger, "warm_up", spy)
    logger = DecisionLogger(tmp_path, batch_pages=4, durable=durable)
    store = InMemoryStore()
    composer = Composer(lambda r: np.ones((r.n_titles, r.n_images)), store,
                        config=ComposeConfig(solver="independent"), logger=logger)
    composer.warm_up(pages=12, freeze_gc=False)
    assert seen == [8]  # the write path ran on the first warm-up pages
    assert files_in(tmp_path) == []  # no file, journal or temporary in the log folder
    assert (logger.pages_written_, logger.rows_written_, len(logger), logger.files_) == (0, 0, 0, [])
    assert composer.stats_.pages == 0 and len(store) == 0
    composer.compose({"member_id": 1, "session_id": 1,
                      "titles": [{"title_id": "A", "image_ids": ["a1", "a2"], "row": 0, "col": 0}]})
    logger.close()  # the real page is logged as usual
    assert logger.pages_written_ == 1 and logger.rows_written_ == 1


def test_a_logger_warms_up_on_decisions_without_counting_them(tmp_path):
    decisions = run_pages(None, 5)
    logger = DecisionLogger(tmp_path)
    logger.warm_up([])  # nothing to do
    logger.warm_up(decisions)
    assert files_in(tmp_path) == [] and logger.pages_written_ == 0 and len(logger) == 0
    for d in decisions:
        logger.append(d)
    logger.close()
    assert logger.pages_written_ == 5
