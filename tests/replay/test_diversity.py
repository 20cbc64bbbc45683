"""Page diversity in replay: hand-computed pages, brute-force expectations of stochastic targets,
invariants (hypothesis), agreement with the simulator's truth and with slate.tune, the streaming
and dask paths (bit-identical), the CLI, and clear errors for bad embeddings."""

from __future__ import annotations

import argparse
import itertools
import json
import pickle

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slate.logs import impressions_table, read_impressions, write_impressions
from slate.page.layout import GridLayout
from slate.replay import ActionDistribution, DecisionTable, InvalidReplayInputError, UniformPolicy, evaluate
from slate.replay.cli import add_replay_parser
from slate.replay.distributed import ReplaySpec, evaluate_dask, evaluate_stream, file_partials
from slate.replay.estimators import get_estimator
from slate.replay.metrics import (
    DEFAULT_DIVERSITY_LAYOUT,
    ImageEmbeddings,
    InvalidEmbeddingsError,
    as_image_embeddings,
    diversity_pairs,
    diversity_sums,
    layout_diversity,
    logged_distribution,
    page_diversity,
)


# ---------------------------------------------------------------------- helpers
def make_log(pages, seed=0):
    """A log of ``pages``: each a list of ``(row, col, n_candidates)`` titles; candidate ``k`` of
    title ``t`` on page ``p`` is image ``"p{p}t{t}i{k}"``; the shown image is random."""
    rng = np.random.default_rng(seed)
    cols = {k: [] for k in ("page", "title", "row", "col", "cands", "shown")}
    for p, titles in enumerate(pages):
        for t, (r, c, k) in enumerate(titles):
            cols["page"].append(p)
            cols["title"].append(f"T{t}")
            cols["row"].append(r)
            cols["col"].append(c)
            cols["cands"].append([f"p{p}t{t}i{i}" for i in range(k)])
            cols["shown"].append(int(rng.integers(k)))
    n = len(cols["page"])
    page = np.array(cols["page"])
    n_cand = np.array([len(c) for c in cols["cands"]])
    table = impressions_table(
        member_id=page, session_id=page, page_id=page, timestamp=page * 1_000_000,
        title_id=np.array(cols["title"], dtype=object), row=np.array(cols["row"]),
        col=np.array(cols["col"]),
        image_id=np.array([c[s] for c, s in zip(cols["cands"], cols["shown"], strict=True)], dtype=object),
        candidate_ids=cols["cands"], propensity=1.0 / n_cand, explored=np.ones(n, bool),
        reward=rng.integers(0, 2, n),
    )
    log, report = read_impressions(table)
    assert report.n_rejected == 0
    return log


def random_embeddings(log, dim, seed):
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(len(log.image_ids), dim))
    v[np.linalg.norm(v, axis=1) < 1e-3] += 1.0
    return dict(zip(log.image_ids, v, strict=True))


def random_probs(log, seed):
    rng = np.random.default_rng(seed)
    raw = rng.random(log.candidates.shape) * (log.candidates >= 0)
    raw[np.arange(log.n_rows), 0] += 1e-3
    return raw / raw.sum(axis=1, keepdims=True)


def unit(v):
    v = np.asarray(v, dtype=float)
    return v / np.linalg.norm(v)


def brute_force_diversity(log, probs, emb, layout=DEFAULT_DIVERSITY_LAYOUT):
    """Enumerate every joint choice of every page: E[page similarity], then 1 - mean."""
    sims = []
    for p in range(log.n_pages):
        rows = np.flatnonzero(log.page_index == p)
        pairs, w = layout.pairs(log.row[rows], log.col[rows])
        if len(pairs) == 0:
            continue
        options = [range(int(log.n_candidates[r])) for r in rows]
        expected = 0.0
        for joint in itertools.product(*options):
            prob = np.prod([probs[r, k] for r, k in zip(rows, joint, strict=True)])
            if prob == 0:
                continue
            img = [log.image_ids[log.candidates[r, k]] for r, k in zip(rows, joint, strict=True)]
            s = [max(0.0, float(unit(emb[img[a]]) @ unit(emb[img[b]]))) for a, b in pairs]
            expected += prob * float(np.dot(w, s) / w.sum())
        sims.append(expected)
    return 1.0 - float(np.mean(sims))


# ---------------------------------------------------------------------- hand-computed
def test_hand_computed_two_by_two_page():
    # a 2x2 page: T0 (0,0), T1 (0,1), T2 (1,0), T3 (1,1); GridLayout weights: row neighbours 1,
    # above/below 0.5 (no titles two apart in a row) -> pairs 0-1, 2-3 (w 1), 0-2, 1-3 (w 0.5)
    log = make_log([[(0, 0, 1), (0, 1, 1), (1, 0, 1), (1, 1, 1)]])
    emb = {"p0t0i0": [1, 0], "p0t1i0": [1, 0], "p0t2i0": [0, 1], "p0t3i0": [-1, 0]}
    logged = logged_distribution(log)
    # sims: 0-1 = 1, 2-3 = 0, 0-2 = 0, 1-3 = max(0, -1) = 0 -> page sim = 1 / 3
    assert layout_diversity(log, logged, emb) == pytest.approx(1 - 1 / 3, abs=1e-15)
    # row neighbours only, weight 1: pairs 0-1 (1), 2-3 (0) -> 1/2
    assert layout_diversity(log, logged, emb, layout="row") == pytest.approx(0.5, abs=1e-15)
    # grid neighbours, weight 1 each: 1 / 4
    assert layout_diversity(log, logged, emb, layout="grid") == pytest.approx(0.75, abs=1e-15)
    # explicit offsets in either direction mean the same pairs
    assert layout_diversity(log, logged, emb, layout=[(0, -1), (-1, 0), (1, 0)]) == \
        layout_diversity(log, logged, emb, layout="grid")


def test_hand_computed_row_with_decay_and_a_lonely_page():
    # page 0: one row of 3 (distance-2 pair weighs same_row * decay^0 = 0.2); page 1 has a single
    # title (no interacting positions: left out of the mean)
    log = make_log([[(0, 0, 1), (0, 1, 1), (0, 2, 1)], [(0, 0, 1)]])
    emb = {"p0t0i0": [1, 0], "p0t1i0": [0, 1], "p0t2i0": [1, 0], "p1t0i0": [1, 1]}
    layout = GridLayout(rows=1, cols=3, neighbour=1.0, same_row=0.2, vertical=0.0)
    # pairs: 0-1 (w 1, s 0), 1-2 (w 1, s 0), 0-2 (w 0.2, s 1) -> 0.2 / 2.2
    got = diversity_sums(log, logged_distribution(log), emb, layout=layout)
    assert got.n_pages == 1 and got.n_pairs == 3
    assert got.value == pytest.approx(1 - 0.2 / 2.2, abs=1e-15)


def test_stochastic_target_pair_expectation_by_hand():
    # two titles side by side, two candidates each; p = (0.25, 0.75) and (0.5, 0.5)
    log = make_log([[(0, 0, 2), (0, 1, 2)]])
    emb = {"p0t0i0": [1, 0], "p0t0i1": [0, 1], "p0t1i0": [1, 0], "p0t1i1": [1, 1]}
    probs = np.array([[0.25, 0.75], [0.5, 0.5]])
    target = ActionDistribution.from_probs(probs, log.shown)
    # S = [[1, 1/sqrt2], [0, 1/sqrt2]]; p_i^T S p_j = .25*(.5 + .5/sqrt2) + .75*(.5/sqrt2)
    expected = 0.25 * (0.5 + 0.5 / np.sqrt(2)) + 0.75 * (0.5 / np.sqrt(2))
    assert layout_diversity(log, target, emb) == pytest.approx(1 - expected, abs=1e-15)


@pytest.mark.parametrize("decay", [0.5, 0.7])
def test_diversity_pairs_match_the_grid_layout_on_sparse_pages(decay):
    """Replay's pair weights are the page optimizer's, bit for bit (one definition:
    GridLayout.offset_weights), also for a decay whose powers are not exact in binary."""
    rng = np.random.default_rng(5)
    pages = []
    for _ in range(12):
        cells = rng.choice(3 * 5, size=int(rng.integers(1, 9)), replace=False)
        pages.append([(int(c // 5), int(c % 5), 1) for c in cells])
    log = make_log(pages)
    layout = GridLayout(rows=3, cols=5, neighbour=1.0, same_row=0.3, same_row_decay=decay, vertical=0.7)
    i, j, w, pg = diversity_pairs(log, layout)
    assert (log.page_index[i] == pg).all() and (log.page_index[j] == pg).all()
    for p in range(log.n_pages):
        rows = np.flatnonzero(log.page_index == p)
        pairs, weights = layout.pairs(log.row[rows], log.col[rows])
        want = {frozenset((rows[a], rows[b])): x for (a, b), x in zip(pairs, weights, strict=True)}
        mine = {frozenset((a, b)): x for a, b, x, q in zip(i, j, w, pg, strict=True) if q == p}
        assert mine.keys() == want.keys()
        assert all(mine[k] == want[k] for k in want)


# ---------------------------------------------------------------------- brute force
@pytest.mark.parametrize("seed", range(4))
def test_stochastic_target_equals_brute_force_over_joint_choices(seed):
    rng = np.random.default_rng(seed)
    pages = []
    for _ in range(3):
        cells = rng.choice(2 * 3, size=int(rng.integers(2, 5)), replace=False)
        pages.append([(int(c // 3), int(c % 3), int(rng.integers(1, 4))) for c in cells])
    log = make_log(pages, seed=seed)
    emb = random_embeddings(log, dim=3, seed=seed)
    probs = random_probs(log, seed)
    target = ActionDistribution.from_probs(probs, log.shown)
    for layout in (DEFAULT_DIVERSITY_LAYOUT, GridLayout(rows=1, cols=1, same_row=0.4, same_row_decay=0.5)):
        assert layout_diversity(log, target, emb, layout=layout) == pytest.approx(
            brute_force_diversity(log, probs, emb, layout), abs=1e-12)


def test_skip_missing_embeddings_is_the_conditional_expectation_and_is_counted():
    log = make_log([[(0, 0, 2), (0, 1, 3), (1, 0, 2)], [(0, 0, 2), (0, 1, 2)]], seed=2)
    emb = random_embeddings(log, dim=3, seed=2)
    gone = ["p0t1i2", "p1t0i1"]
    partial = {k: v for k, v in emb.items() if k not in gone}
    probs = random_probs(log, 3)
    target = ActionDistribution.from_probs(probs, log.shown)
    with pytest.raises(InvalidEmbeddingsError, match=r"no vector for 2 images.*'p0t1i2', 'p1t0i1'"):
        layout_diversity(log, target, partial)
    sums = diversity_sums(log, target, partial, missing="skip")
    assert sums.missing_images == frozenset(gone)
    # brute force: condition every page on the joint choices whose images all have embeddings
    # (per pair: E[s 1{both}] / P(both), weights scaled by P(both))
    i, j, w, pg = diversity_pairs(log)
    has = np.array([iid not in gone for iid in log.image_ids])
    page_num, page_den, skipped = np.zeros(2), np.zeros(2), 0.0
    for a, b, x, p in zip(i, j, w, pg, strict=True):
        e = both = 0.0
        for ka, kb in itertools.product(range(log.n_candidates[a]), range(log.n_candidates[b])):
            ca, cb = log.candidates[a, ka], log.candidates[b, kb]
            if has[ca] and has[cb]:
                pr = probs[a, ka] * probs[b, kb]
                ea, eb = unit(emb[log.image_ids[ca]]), unit(emb[log.image_ids[cb]])
                e += pr * max(0.0, float(ea @ eb))
                both += pr
        page_num[p] += x * e
        page_den[p] += x * both
        skipped += 1 - both
    assert sums.value == pytest.approx(1 - np.mean(page_num / page_den), abs=1e-12)
    assert sums.skipped_pairs == pytest.approx(skipped, abs=1e-12)
    # a deterministic target leaves out exactly the pairs touching a missing image
    choice = np.zeros(log.n_rows, np.int32)
    choice[(log.page_index == 0) & (log.n_candidates == 3)] = 2  # p0t1i2, beside p0t0 only
    det = ActionDistribution.deterministic(choice, log.shown, log.k_max)
    d = diversity_sums(log, det, partial, missing="skip")
    assert d.skipped_pairs == 1.0 and d.missing_images == frozenset({"p0t1i2"})
    assert d.n_pages == 2 and d.n_pairs == 3  # page 0 keeps its vertical pair p0t0-p0t2
    vec = {k: unit(v) for k, v in emb.items()}
    page0 = max(0.0, float(vec["p0t0i0"] @ vec["p0t2i0"]))
    page1 = max(0.0, float(vec["p1t0i0"] @ vec["p1t1i0"]))
    assert d.value == pytest.approx(1 - (page0 + page1) / 2, abs=1e-15)


# ---------------------------------------------------------------------- invariants
page_strategy = st.lists(
    st.lists(st.tuples(st.integers(0, 2), st.integers(0, 3), st.integers(1, 3)), min_size=1,
             max_size=6, unique_by=lambda t: (t[0], t[1])),
    min_size=1, max_size=4,
)


@settings(max_examples=40, deadline=None)
@given(pages=page_strategy, seed=st.integers(0, 2**16), dim=st.integers(1, 4))
def test_diversity_is_within_unit_interval_and_logged_equals_tune(pages, seed, dim):
    from slate.tune.data import page_pairs

    log = make_log(pages, seed=seed)
    emb = random_embeddings(log, dim, seed)
    logged = logged_distribution(log)
    probs = random_probs(log, seed + 1)
    stochastic = ActionDistribution.from_probs(probs, log.shown)
    values = [layout_diversity(log, t, emb, layout=lay) for t in (logged, stochastic)
              for lay in (None, "row", "grid")]
    for v in values:
        assert np.isnan(v) or 0.0 <= v <= 1.0
    # slate.tune's computation on the same pages (its own pair enumeration, via GridLayout.pairs)
    vectors = as_image_embeddings(emb).vectors
    pairs = page_pairs(log, GridLayout(rows=3, cols=4))
    shown = log.candidates[np.arange(log.n_rows), log.shown].astype(np.int64)
    tune = page_diversity(shown, vectors, *pairs, log.n_pages)
    mine = layout_diversity(log, logged, emb)
    assert (np.isnan(tune) and np.isnan(mine)) or mine == pytest.approx(tune, abs=1e-12)
    # a one-hot distribution gives the deterministic value
    onehot = ActionDistribution.from_probs(np.eye(log.k_max)[log.shown], log.shown)
    assert np.isnan(mine) or layout_diversity(log, onehot, emb) == pytest.approx(mine, abs=1e-12)


def test_tune_keeps_its_public_names():
    import slate.replay.metrics as replay_metrics
    import slate.tune.metrics as tune_metrics

    assert tune_metrics.page_diversity is replay_metrics.page_diversity
    assert tune_metrics.pair_similarity is replay_metrics.pair_similarity
    assert hasattr(tune_metrics, "ExplorationSimilarity")


# ---------------------------------------------------------------------- the simulator's truth
@pytest.fixture(scope="module")
def sim():
    from slate.sim import (
        ArgmaxPolicy,
        UniformRandomLogging,
        make_schedule,
        make_world,
        oracle_scorer,
        simulate,
    )

    world = make_world(n_members=60, n_titles=60, seed=3)
    schedule = make_schedule(world, n_days=2, seed=1)
    deployed = simulate(schedule, ArgmaxPolicy(oracle_scorer()))
    uniform = simulate(schedule, UniformRandomLogging(seed=1))
    return world, deployed, uniform


def test_logged_and_replayed_diversity_equal_the_simulators_truth(sim):
    world, deployed, uniform = sim
    emb = (world.image_ids, world.embeddings)
    truth = deployed.value().diversity
    dep_log, _ = read_impressions(deployed.to_table())
    report = evaluate(dep_log, UniformPolicy(), "snips", n_bootstrap=0, image_embeddings=emb,
                      diversity_layout=world.layout)
    assert report.metrics["logged_diversity"] == pytest.approx(truth, abs=1e-12)
    # the deployed (deterministic, state-free) policy's decisions as a decision table, replayed on
    # the uniformly logged pages of the same schedule: its diversity is the deployed truth
    table = DecisionTable.from_arrays(
        member_id=dep_log.member_id, session_id=dep_log.session_id,
        title_id=np.asarray(dep_log.title_ids, dtype=object)[dep_log.title],
        image_id=np.asarray(dep_log.image_ids, dtype=object)[dep_log.image])
    uni_log, _ = read_impressions(uniform.to_table())
    replayed = evaluate(uni_log, table, "snips", n_bootstrap=0, image_embeddings=emb)
    assert replayed.metrics["diversity"] == pytest.approx(truth, abs=1e-12)
    assert replayed.metrics["logged_diversity"] == pytest.approx(uniform.value().diversity, abs=1e-12)
    assert truth < uniform.value().diversity  # the argmax shows look-alike images side by side
    # the uniform policy's expected diversity is not the uniform run's realization, but close
    expected = evaluate(uni_log, UniformPolicy(), "snips", n_bootstrap=0, image_embeddings=emb)
    assert abs(expected.metrics["diversity"] - uniform.value().diversity) < 0.02


# ---------------------------------------------------------------------- streaming and dask
@pytest.fixture(scope="module")
def files(sim, tmp_path_factory):
    world, deployed, uniform = sim
    root = tmp_path_factory.mktemp("diversity")
    table = uniform.to_table()
    write_impressions(root / "one.parquet", table, version=2, row_group_size=400)
    (root / "three").mkdir()
    cuts = [0, 12 * 40, 30 * 40, table.num_rows]  # whole pages of 40 titles
    for k in range(3):
        write_impressions(root / "three" / f"part-{k}.parquet",
                          table.slice(cuts[k], cuts[k + 1] - cuts[k]), version=1, row_group_size=200)
    pq.write_table(pa.table({"image_id": list(world.image_ids),
                             "embedding": [list(v) for v in world.embeddings]}), root / "emb.parquet")
    log, _ = read_impressions(root / "one.parquet")
    dep_log, _ = read_impressions(deployed.to_table())
    table_policy = DecisionTable.from_arrays(
        member_id=dep_log.member_id, session_id=dep_log.session_id,
        title_id=np.asarray(dep_log.title_ids, dtype=object)[dep_log.title],
        image_id=np.asarray(dep_log.image_ids, dtype=object)[dep_log.image])
    return root, log, table_policy, (world.image_ids, world.embeddings)


@pytest.mark.parametrize("target", ["table", "uniform"])
def test_stream_is_bit_identical_to_memory_whatever_the_partitioning(files, target):
    root, log, table_policy, emb = files
    policy = table_policy if target == "table" else UniformPolicy()
    memory = evaluate(log, policy, "snips", n_bootstrap=0, image_embeddings=emb)
    keys = ("diversity", "logged_diversity")
    for source, chunk in ((root / "one.parquet", 131_072), (root / "one.parquet", 1),
                          (root / "three", 500)):
        streamed = evaluate_stream(source, policy, "snips", image_embeddings=emb, chunk_rows=chunk)
        assert {k: streamed.metrics[k] for k in keys} == {k: memory.metrics[k] for k in keys}


def test_dask_gives_the_stream_diversity_and_partials_pickle(files):
    from distributed import Client, LocalCluster

    root, _, table_policy, emb = files
    stream = evaluate_stream(root / "three", table_policy, "snips", image_embeddings=emb,
                             diversity_layout="grid")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        spread = evaluate_dask(root / "three", table_policy, "snips", client=client,
                               image_embeddings=emb, diversity_layout="grid")
    assert spread.metrics == stream.metrics and len(stream.metrics) == 2
    spec = ReplaySpec(table_policy, (get_estimator("snips"),),
                      embeddings=as_image_embeddings(emb))
    part = file_partials(0, sorted((root / "three").iterdir())[0], spec)
    back = pickle.loads(pickle.dumps(part))
    assert back.diversity is not None and part.diversity is not None
    assert back.diversity.value == part.diversity.value and back.diversity.n_pages == 12
    # the spec (with its embeddings) travels to worker processes
    spec_back = pickle.loads(pickle.dumps(spec))
    assert spec_back.embeddings is not None and spec.embeddings is not None
    assert np.array_equal(spec_back.embeddings.vectors, spec.embeddings.vectors)
    assert spec_back.embeddings.lookup(["img-does-not-exist"])[1].tolist() == [False]
    again = file_partials(0, sorted((root / "three").iterdir())[0], spec_back)
    assert again.diversity is not None and again.diversity.value == part.diversity.value


def test_cli_embeddings_add_diversity_to_the_json(files, capsys):
    root, log, _, emb = files
    parser = argparse.ArgumentParser(prog="slate")
    add_replay_parser(parser.add_subparsers(dest="command", required=True))
    out = root / "out.json"
    for engine in ("memory", "stream"):
        args = parser.parse_args(["replay", str(root / "one.parquet"), "--embeddings",
                                  str(root / "emb.parquet"), "--bootstrap", "0", "--engine", engine,
                                  "--output", str(out)])
        assert args.func(args) == 0
        assert "logged_diversity" in capsys.readouterr().out
        saved = json.loads(out.read_text())["metrics"]
        memory = evaluate(log, UniformPolicy(), "snips", n_bootstrap=0, image_embeddings=emb)
        assert saved["diversity"] == memory.metrics["diversity"]
        assert saved["logged_diversity"] == memory.metrics["logged_diversity"]
    args = parser.parse_args(["replay", str(root / "one.parquet"), "--embeddings",
                              str(root / "missing.parquet"), "--output", str(out)])
    with pytest.raises(InvalidEmbeddingsError, match="must exist"):
        args.func(args)


# ---------------------------------------------------------------------- embeddings and errors
def test_every_embedding_format_gives_the_same_vectors(tmp_path):
    ids = ["a", "b", "c"]
    v = np.array([[1.0, 2.0], [0.0, -3.0], [4.0, 4.0]])
    np.savez(tmp_path / "e.npz", image_id=np.array(ids), embedding=v)
    pq.write_table(pa.table({"image_id": ids, "embedding": [list(x) for x in v],
                             "style": ["x", "y", "z"]}), tmp_path / "e.parquet")
    forms = [dict(zip(ids, v, strict=True)), (ids, v), tmp_path / "e.npz", str(tmp_path / "e.parquet"),
             pa.table({"image_id": ids, "embedding": [list(x) for x in v]})]
    ref = as_image_embeddings(forms[0])
    for form in forms[1:]:
        got = as_image_embeddings(form)
        assert got.image_ids == tuple(ids) and np.array_equal(got.vectors, ref.vectors)
    assert np.allclose(np.linalg.norm(ref.vectors, axis=1), 1.0)
    assert not ref.vectors.flags.writeable


BAD_EMBEDDINGS = [
    ({"a": [1.0, 0.0], "b": [1.0, 0.0, 0.0]}, r"one length; got lengths \[2, 3\].*'b'"),
    ({"a": [[1.0, 0.0]], "b": [1.0]}, r"1-D and all of one length"),
    ((["a", "b"], np.ones((3, 2))), r"shape \(2, dim\).*got shape \(3, 2\)"),
    ((["a", "b"], np.ones(2)), r"shape \(2, dim\).*got shape \(2,\)"),
    ((["a", "b"], [[1.0, np.nan], [1.0, 0.0]]), r"finite; got NaN or infinite values for 1 images, e.g. 'a'"),
    ((["a", "b"], [[1.0, 0.0], [0.0, 0.0]]), r"non-zero vectors.*'b'"),
    ((["a", "a"], [[1.0, 0.0], [0.0, 1.0]]), r"repeated ids, e.g. 'a'"),
    (pa.table({"image_id": ["a"], "vector": [[1.0]]}), r"must have a column 'embedding'"),
    (pa.table({"image_id": ["a"], "embedding": [1.0]}), r"must be a list of floats"),
    (pa.table({"image_id": ["a", "b"], "embedding": [[1.0], None]}), r"1 nulls, e.g. for 'b'"),
    (pa.table({"image_id": ["a", "b"], "embedding": [[1.0], [1.0, 2.0]]}), r"one length.*'b'"),
    (42, r"must be a mapping .* got int"),
    ("no/such/file.parquet", r"file must exist"),
]


@pytest.mark.parametrize(("embeddings", "message"), BAD_EMBEDDINGS)
def test_bad_embeddings_raise_naming_what_is_wrong(embeddings, message):
    with pytest.raises(InvalidEmbeddingsError, match=message):
        as_image_embeddings(embeddings)


def test_bad_files_and_options_raise(tmp_path, files):
    np.savez(tmp_path / "bad.npz", ids=np.array(["a"]), embedding=np.ones((1, 2)))
    with pytest.raises(InvalidEmbeddingsError, match="arrays 'image_id' and 'embedding'"):
        ImageEmbeddings.load(tmp_path / "bad.npz")
    (tmp_path / "junk.parquet").write_text("not parquet")
    with pytest.raises(InvalidEmbeddingsError, match=r"must be Parquet or \.npz"):
        ImageEmbeddings.load(tmp_path / "junk.parquet")
    root, log, policy, emb = files
    assert issubclass(InvalidEmbeddingsError, InvalidReplayInputError)
    assert issubclass(InvalidEmbeddingsError, ValueError)
    with pytest.raises(InvalidReplayInputError, match="'diversity_layout' must be a GridLayout"):
        evaluate(log, policy, "snips", n_bootstrap=0, image_embeddings=emb, diversity_layout="diag")
    with pytest.raises(InvalidReplayInputError, match=r"must not include \(0, 0\)"):
        layout_diversity(log, logged_distribution(log), emb, layout=[(0, 0)])
    with pytest.raises(InvalidReplayInputError, match="'missing_embeddings' option"):
        evaluate(log, policy, "snips", n_bootstrap=0, image_embeddings=emb,
                 missing_embeddings="drop")  # type: ignore[arg-type]
    with pytest.raises(InvalidReplayInputError, match="'diversity_layout' must be a GridLayout"):
        evaluate_stream(root / "three", policy, image_embeddings=emb, diversity_layout="diag")
    # a log image without an embedding: named, or skipped and counted in the report
    ids, vectors = emb
    keep = np.array([not i.startswith(log.image_ids[log.image[0]]) for i in ids])
    short = (tuple(np.asarray(ids)[keep]), vectors[keep])
    with pytest.raises(InvalidEmbeddingsError, match=f"'{log.image_ids[log.image[0]]}'"):
        evaluate(log, policy, "snips", n_bootstrap=0, image_embeddings=short)
    skipped = evaluate(log, policy, "snips", n_bootstrap=0, image_embeddings=short,
                       missing_embeddings="skip")
    assert skipped.metrics["diversity_missing_images"] == 1.0
    assert skipped.metrics["logged_diversity_skipped_pairs"] >= 1.0
    streamed = evaluate_stream(root / "three", policy, image_embeddings=short, missing_embeddings="skip")
    assert len(streamed.metrics) == 5
    assert streamed.metrics == {k: skipped.metrics[k] for k in streamed.metrics}


def test_undecided_rows_leave_their_pairs_out():
    log = make_log([[(0, 0, 1), (0, 1, 1), (0, 2, 1)]])
    emb = {"p0t0i0": [1, 0], "p0t1i0": [1, 0], "p0t2i0": [0, 1]}
    decided = np.array([True, True, False])
    target = ActionDistribution.deterministic(np.zeros(3), log.shown, log.k_max, decided=decided)
    sums = diversity_sums(log, target, emb, layout="row")
    assert sums.n_pairs == 1 and sums.value == 0.0  # only T0-T1, identical images
    no_info = ActionDistribution(prob_logged=np.ones(3))
    assert np.isnan(layout_diversity(log, no_info, emb))
