"""kind = "compose": replaying compose() with a team's scorer equals compose() online, row for row."""

from __future__ import annotations

import json
import pickle
import textwrap
from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from slate.cli import main
from slate.errors import ScorerResolutionError
from slate.logs import join_outcomes, read_impressions
from slate.page.embeddings import ImageEmbeddings
from slate.replay.cli import load_policy_config
from slate.serve import ComposeConfig, Composer, DecisionLogger
from slate.serve.scorer import NamedScorer, ScoreTable, load_scorer, resolve_scorer
from slate.stability import InMemoryStore, StabilityRules

T0 = datetime(2024, 6, 1, 18, tzinfo=timezone.utc)
SCORER = textwrap.dedent('''
    import zlib
    import numpy as np

    def score(request):
        boost = float(request.context.get("boost", 0.0))
        out = np.zeros((request.n_titles, request.n_images))
        for t, title in enumerate(request.titles):
            for k, image in enumerate(title.image_ids):
                h = zlib.crc32(f"{request.member_id}/{image}".encode()) % 1000
                out[t, k] = 0.02 + h / 10000.0 + (boost if k == 0 else 0.0)
        return out
''')


def _world(tmp_path, module: str):
    (tmp_path / f"{module}.py").write_text(SCORER)
    rng = np.random.default_rng(3)
    n_titles = 14
    titles = [(f"T{t:02d}", [f"T{t:02d}-{k}" for k in range(2 + t % 4)]) for t in range(n_titles)]
    images = [i for _, ids in titles for i in ids]
    vectors = rng.normal(size=(len(images), 8)).astype(np.float32)
    pq.write_table(pa.table({"image_id": images, "embedding": [v.tolist() for v in vectors]}),
                   tmp_path / "embeddings.parquet")
    requests = []
    for s in range(60):
        member = s % 9
        chosen = rng.choice(n_titles, size=10, replace=False)
        requests.append({
            "member_id": member, "session_id": s, "timestamp": (T0 + timedelta(hours=s)).isoformat(),
            "context": {"boost": float(rng.choice([0.0, 0.05]))},
            "titles": [{"title_id": titles[t][0], "image_ids": titles[t][1], "row": j // 5, "col": j % 5,
                        "locked": bool(j == 0 and s % 4 == 0)} for j, t in enumerate(chosen)],
        })
    return requests, ImageEmbeddings(images, vectors)


def _config(diversity: float, churn: float) -> dict:
    # a solver run to optimality (not cut by its time budget) decides the same page every time
    return {"solver": "exact", "solver_time_ms": 10_000, "solver_grace_ms": 10_000, "diversity": diversity,
            "stability": {"churn": churn, "dwell_sessions": 2, "min_gain": 0.001}}


@pytest.mark.parametrize("target", [(0.1, 0.02), (0.6, 0.0)])
def test_compose_policy_equals_compose_online_row_for_row(tmp_path, monkeypatch, target):
    monkeypatch.chdir(tmp_path)  # the module is found in the config folder, not the cwd
    (tmp_path / "cfg").mkdir()
    module = f"team_scorer_{int(target[0] * 10)}"
    requests, catalog = _world(tmp_path / "cfg", module)
    scorer = NamedScorer(f"{module}:score", tmp_path / "cfg")
    logging_cfg = ComposeConfig.model_validate(_config(0.1, 0.02))
    with DecisionLogger(tmp_path / "decisions", batch_pages=16) as logger:
        composer = Composer(scorer, InMemoryStore(), config=logging_cfg, catalog=catalog, logger=logger)
        for r in requests:
            composer.compose(r)
    # the target's online decisions on the same requests (a fresh store: its own history)
    online = Composer(scorer, InMemoryStore(), config=ComposeConfig.model_validate(_config(*target)),
                      catalog=catalog)
    truth = {}
    for r in requests:
        d = online.compose(r)
        truth.update({(r["session_id"], t): i for t, i in d.images.items()})
    events = pa.table({"member_id": [0, 1], "title_id": ["T00", "T01"],
                       "timestamp": pa.array([T0 + timedelta(days=1)] * 2, pa.timestamp("us", tz="UTC")),
                       "reward": [1, 1]})
    join_outcomes(tmp_path / "decisions", events, tmp_path / "joined")
    (tmp_path / "cfg" / "policy.toml").write_text(textwrap.dedent(f'''
        kind = "compose"
        scorer = "{module}:score"
        embeddings = "../cfg/embeddings.parquet"
        [compose]
        solver = "exact"
        solver_time_ms = 10000
        solver_grace_ms = 10000
        diversity = {target[0]}
        stability = {{ churn = {target[1]}, dwell_sessions = 2, min_gain = 0.001 }}
    '''))
    policy = load_policy_config(tmp_path / "cfg" / "policy.toml")
    log, report = read_impressions(tmp_path / "joined")
    assert report.n_rejected == 0
    dist = policy.action_distribution(log)
    chosen = [log.image_ids[log.candidates[r, dist.choice[r]]] for r in range(log.n_rows)]
    expected = [truth[(int(log.session_id[r]), log.title_ids[log.title[r]])] for r in range(log.n_rows)]
    assert chosen == expected
    same_as_logged = float(dist.prob_logged.mean())
    assert (same_as_logged == 1.0) == (target == (0.1, 0.02))  # a different target differs somewhere


def test_slate_replay_with_a_compose_policy(tmp_path, capsys):
    requests, catalog = _world(tmp_path, "team_scorer_cli")
    cfg = ComposeConfig.model_validate(_config(0.1, 0.02))
    with DecisionLogger(tmp_path / "decisions", batch_pages=16) as logger:
        composer = Composer(NamedScorer("team_scorer_cli:score", tmp_path), InMemoryStore(), config=cfg,
                            catalog=catalog, logger=logger)
        for r in requests:
            composer.compose(r)
    events = pa.table({"member_id": list(range(9)), "title_id": ["T03"] * 9,
                       "timestamp": pa.array([T0 + timedelta(hours=70)] * 9, pa.timestamp("us", tz="UTC")),
                       "reward": [1] * 9})
    pq.write_table(events, tmp_path / "events.parquet")
    assert main(["join", str(tmp_path / "decisions"), str(tmp_path / "events.parquet"),
                 "-o", str(tmp_path / "joined")]) == 0
    (tmp_path / "same.json").write_text(json.dumps({
        "kind": "compose", "scorer": "team_scorer_cli:score", "embeddings": "embeddings.parquet",
        "compose": _config(0.1, 0.02)}))
    assert main(["replay", str(tmp_path / "joined"), "--policy", str(tmp_path / "same.json"),
                 "--bootstrap", "0", "-o", str(tmp_path / "r.json")]) == 0
    out = json.loads((tmp_path / "r.json").read_text())
    log, _ = read_impressions(tmp_path / "joined")
    assert out["estimates"]["snips"]["value"] == pytest.approx(log.reward.mean())  # target = logging
    assert out["rejections"]["n_rejected"] == 0


def test_scorer_resolution_and_tables(tmp_path):
    (tmp_path / "scorer_pkg_mod.py").write_text("class Ranker:\n    @staticmethod\n    def score(r):\n        return 1\n")
    assert resolve_scorer("scorer_pkg_mod:Ranker.score", tmp_path)(None) == 1
    with pytest.raises(ScorerResolutionError, match="could not be imported"):
        resolve_scorer("no_such_module_xyz:score", tmp_path)
    with pytest.raises(ScorerResolutionError, match="'module:function'"):
        resolve_scorer("just_a_name")
    assert pickle.loads(pickle.dumps(NamedScorer("scorer_pkg_mod:Ranker.score", tmp_path)))(None) == 1
    pq.write_table(pa.table({"member_id": [1, 1], "title_id": ["T", "T"], "image_id": ["a", "b"],
                             "score": [0.2, 0.4]}), tmp_path / "scores.parquet")
    table = load_scorer("scores.parquet", tmp_path)
    assert isinstance(table, ScoreTable)
    from slate.serve import parse_request

    req = parse_request({"member_id": 1, "session_id": 1,
                         "titles": [{"title_id": "T", "image_ids": ["a", "b", "c"], "row": 0, "col": 0}]})
    got = table(req)
    assert got[0, :2].tolist() == [0.2, 0.4] and np.isnan(got[0, 2])
    with pytest.raises(ScorerResolutionError, match="score table"):
        load_scorer("missing.parquet", tmp_path)


def test_compose_config_errors_name_the_field(tmp_path, capsys):
    (tmp_path / "p.toml").write_text('kind = "compose"\nscorer = "m:f"\n[compose]\ndiversity = -1\n')
    (tmp_path / "log.parquet").write_bytes(b"")
    code = main(["replay", str(tmp_path / "log.parquet"), "--policy", str(tmp_path / "p.toml")])
    assert code == 2
    assert "at 'diversity'" in capsys.readouterr().err
    assert StabilityRules  # imported for the config shape above


def test_named_scorer_resolves_in_a_fresh_worker_process(tmp_path):
    """A dask worker process has neither the config folder on sys.path nor the function: the
    name travels and resolves there, from the folder first."""
    import dask

    (tmp_path / "team_scorer_worker.py").write_text("import os\ndef score(r):\n    return os.getpid()\n")
    scorer = NamedScorer("team_scorer_worker:score", tmp_path)
    pid = dask.compute(dask.delayed(scorer)(None), scheduler="processes", num_workers=1)[0]
    import os

    assert isinstance(pid, int) and pid != os.getpid()
