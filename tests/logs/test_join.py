"""join_outcomes: attribution against a brute-force reference, files, folders, dask, the CLI."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slate.cli import main
from slate.logs import InvalidLogError, read_impressions, write_impressions
from slate.logs.join import UNMATCHED_REASONS, join_outcomes

T0 = datetime(2024, 5, 1, tzinfo=timezone.utc)


def _decisions(n_pages: int, n_members: int, n_titles: int, seed: int) -> pa.Table:
    """A valid log with null rewards: pages of 3 titles among n_titles, time-ordered."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_pages):
        member = int(rng.integers(n_members))
        when = T0 + timedelta(minutes=int(p * 7 + rng.integers(3)))
        for pos, t in enumerate(rng.choice(n_titles, size=min(3, n_titles), replace=False)):
            rows.append({
                "member_id": member, "session_id": p, "page_id": 1000 + p,
                "timestamp": round(when.timestamp() * 1e6),
                "title_id": f"T{t}", "row": 0, "col": pos, "image_id": f"T{t}-a",
                "candidate_ids": [f"T{t}-a", f"T{t}-b"], "propensity": 1.0, "explored": False,
                "reward": None,
            })
    from slate.logs import impressions_table

    cols = {k: [r[k] for r in rows] for k in rows[0]}
    return impressions_table(**cols)


def _events(decisions: pa.Table, n: int, seed: int, n_members: int, n_titles: int,
            with_pages: bool = False) -> pa.Table:
    rng = np.random.default_rng(seed + 1)
    members = rng.integers(n_members, size=n)
    titles = [f"T{t}" for t in rng.integers(n_titles, size=n)]
    offsets = rng.integers(0, 60 * 60 * 8, size=n)
    times = [T0 + timedelta(seconds=int(s)) for s in offsets]
    cols = {
        "member_id": pa.array(members, pa.int64()),
        "title_id": pa.array(titles),
        "timestamp": pa.array(times, pa.timestamp("ms", tz="UTC")),
        "engagement": pa.array(rng.exponential(20.0, size=n)),
    }
    if with_pages:
        pages = decisions.column("page_id").to_numpy()
        pick = np.where(rng.random(n) < 0.3, rng.choice(pages, size=n), -1)
        cols["page_id"] = pa.array(np.where(pick < 0, None, pick).tolist(), pa.int64())
    return pa.table(cols)


def _reference(decisions: pa.Table, events: pa.Table, window_s: float, threshold: float):
    d = decisions.to_pylist()
    reward = [0] * len(d)
    engagement = [0.0] * len(d)
    reasons = dict.fromkeys(UNMATCHED_REASONS, 0)
    for e in events.to_pylist():
        page = e.get("page_id")
        if page is not None:
            hits = [i for i, r in enumerate(d) if r["page_id"] == page and r["title_id"] == e["title_id"]]
            if not hits:
                reasons["unknown_page"] += 1
                continue
            best = hits[-1]
        else:
            prior = [i for i, r in enumerate(d) if r["member_id"] == e["member_id"]
                     and r["title_id"] == e["title_id"] and r["timestamp"] <= e["timestamp"]]
            if not prior:
                reasons["no_impression"] += 1
                continue
            best = max(prior, key=lambda i: (d[i]["timestamp"], i))
            if (e["timestamp"] - d[best]["timestamp"]).total_seconds() > window_s:
                reasons["outside_window"] += 1
                continue
        reward[best] = max(reward[best], int(e["engagement"] >= threshold))
        engagement[best] += e["engagement"]
    return reward, engagement, {k: v for k, v in reasons.items() if v}


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n_pages=st.integers(1, 40), n_events=st.integers(0, 60),
       window_h=st.sampled_from([0.5, 2.0, 24.0]), with_pages=st.booleans(),
       partitions=st.sampled_from([1, 3]))
def test_join_equals_the_brute_force_attribution(seed, n_pages, n_events, window_h, with_pages,
                                                 partitions):
    decisions = _decisions(n_pages, 5, 6, seed)
    events = _events(decisions, n_events, seed, 6, 7, with_pages)
    joined, report = join_outcomes(decisions, events, window=window_h * 3600, quality_threshold=15.0,
                                   partitions=partitions)
    reward, engagement, reasons = _reference(decisions, events, window_h * 3600, 15.0)
    assert joined.column("reward").to_pylist() == reward
    np.testing.assert_allclose(joined.column("engagement").to_numpy(), engagement)
    assert report.unmatched == reasons
    assert report.n_matched + report.n_unmatched == n_events
    assert report.n_rewarded == sum(reward)


def test_join_files_folders_and_dask_agree(tmp_path):
    decisions = _decisions(300, 20, 10, 1)
    events = _events(decisions, 400, 1, 22, 11)
    expected, ref = join_outcomes(decisions, events, quality_threshold=15.0)
    folder = tmp_path / "decisions"
    for k, part in enumerate((decisions.slice(0, 450), decisions.slice(450))):
        (folder / f"date=2024-05-0{k + 1}").mkdir(parents=True)
        write_impressions(folder / f"date=2024-05-0{k + 1}" / "part.parquet", part, row_group_size=100)
    pq.write_table(events, tmp_path / "events.parquet")
    for engine, partitions in (("local", 1), ("local", 4), ("dask", 3)):
        out = tmp_path / f"joined-{engine}-{partitions}"
        none, report = join_outcomes(folder, tmp_path / "events.parquet", out, quality_threshold=15.0,
                                     engine=engine, partitions=partitions,
                                     scheduler="processes" if engine == "dask" else None)
        assert none is None and report.to_dict()["unmatched_by_reason"] == ref.unmatched
        assert sorted(p.split("/")[-2] for p in report.outputs) == ["date=2024-05-01", "date=2024-05-02"]
        log, rejected = read_impressions(out)
        assert rejected.n_rejected == 0 and log.n_rows == decisions.num_rows
        got = pa.concat_tables(pq.read_table(p) for p in sorted(report.outputs))
        assert got.column("reward").to_pylist() == expected.column("reward").to_pylist()


def test_join_of_a_served_log_is_accepted_in_full(tmp_path):
    from slate.serve import ComposeConfig, DecisionLogger, compose

    titles = [{"title_id": f"T{t}", "image_ids": [f"T{t}-{k}" for k in range(3)], "row": 0, "col": t}
              for t in range(4)]
    with DecisionLogger(tmp_path / "decisions", batch_pages=7) as logger:
        for s in range(20):
            compose({"member_id": s % 5, "session_id": s, "titles": titles,
                     "timestamp": (T0 + timedelta(minutes=s)).isoformat()},
                    lambda r: np.full((4, 3), 0.1), None, logger=logger,
                    config=ComposeConfig(solver="independent", diversity=0.0))
    assert read_impressions(tmp_path / "decisions")[1].counts["missing_reward"] == 80
    events = pa.table({"member_id": [0, 1, 77], "title_id": ["T0", "T3", "T1"],
                       "timestamp": pa.array([T0 + timedelta(minutes=30)] * 3, pa.timestamp("s", tz="UTC")),
                       "reward": pa.array([1, 0, 1], pa.int8())})
    pq.write_table(events, tmp_path / "events.parquet")
    code = main(["join", str(tmp_path / "decisions"), str(tmp_path / "events.parquet"),
                 "--output", str(tmp_path / "joined"), "--report", str(tmp_path / "join.json")])
    assert code == 0
    log, report = read_impressions(tmp_path / "joined")
    assert report.n_rejected == 0 and log.n_rows == 80
    assert int(log.reward.sum()) == 1
    summary = json.loads((tmp_path / "join.json").read_text())
    assert summary["n_matched"] == 2 and summary["unmatched_by_reason"] == {"no_impression": 1}


def test_bad_outcomes_name_the_problem(tmp_path, capsys):
    decisions = _decisions(3, 2, 3, 0)
    with pytest.raises(InvalidLogError, match="quality threshold"):
        join_outcomes(decisions, pa.table({"member_id": [1], "title_id": ["T1"],
                                           "timestamp": pa.array([T0]), "engagement": [1.0]}))
    with pytest.raises(InvalidLogError, match="'title_id'"):
        join_outcomes(decisions, pa.table({"member_id": [1], "title_id": [3],
                                           "timestamp": pa.array([T0]), "reward": [1]}))
    with pytest.raises(InvalidLogError, match="window"):
        join_outcomes(decisions, pa.table({"member_id": [1], "title_id": ["a"],
                                           "timestamp": pa.array([T0]), "reward": [1]}), window="1w")
    bad = pa.table({"member_id": pa.array([1, None], pa.int64()), "title_id": ["T1", "T1"],
                    "timestamp": pa.array([T0, T0]), "reward": [3, 1]})
    _, report = join_outcomes(decisions, bad)
    assert report.unmatched == {"bad_event": 2}
    write_impressions(tmp_path / "d.parquet", decisions)
    code = main(["join", str(tmp_path / "d.parquet"), str(tmp_path / "missing.parquet"),
                 "--output", str(tmp_path / "o.parquet")])
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing.parquet" in err
