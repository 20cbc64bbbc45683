"""Import from / export to obp's bandit-feedback dict and the Open Bandit Dataset's files."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import integrate
from scipy import stats as sps

from slate.logs import (
    InvalidLogError,
    from_obp,
    open_bandit_feedback,
    read_impressions,
    read_open_bandit_dataset,
    to_obp,
    write_impressions,
)
from slate.logs.obp import bernoulli_ts_distribution
from slate.replay import UniformPolicy, evaluate


def random_feedback(seed: int = 0, n: int = 200, n_actions: int = 12, len_list: int = 3, d: int = 4) -> dict:
    rng = np.random.default_rng(seed)
    pi_b = rng.dirichlet(np.ones(n_actions), size=(n, len_list)).transpose(0, 2, 1)  # (n, A, L)
    position = rng.integers(0, len_list, n)
    action = np.array([rng.choice(n_actions, p=pi_b[i, :, position[i]]) for i in range(n)])
    return {
        "n_rounds": n, "n_actions": n_actions, "action": action, "position": position,
        "reward": rng.integers(0, 2, n), "pscore": pi_b[np.arange(n), action, position],
        "context": rng.normal(size=(n, d)), "action_context": rng.normal(size=(n_actions, 2)),
        "pi_b": pi_b,
    }


def test_obp_dict_round_trips_through_a_parquet_log(tmp_path):
    feedback = random_feedback()
    path = write_impressions(tmp_path / "obp.parquet", from_obp(feedback), version=2)
    log, report = read_impressions(path)
    assert report.n_rejected == 0 and log.n_rows == 200 and log.k_max == 12
    ids = [f"action-{a}" for a in range(12)]
    back = to_obp(log, action_ids=ids, action_context=feedback["action_context"], include_pi_b=True)
    for key in ("n_rounds", "n_actions", "action", "position", "reward"):
        assert np.array_equal(back[key], feedback[key]), key
    assert np.allclose(back["pscore"], feedback["pscore"], rtol=0, atol=1e-15)
    assert np.allclose(back["context"], feedback["context"], atol=1e-6)  # stored as float32
    assert np.array_equal(back["action_context"], feedback["action_context"])
    at_position = feedback["pi_b"][np.arange(200), :, feedback["position"]]
    assert np.allclose(back["pi_b"][np.arange(200), :, feedback["position"]], at_position)
    # the other positions are 0: a round has one position
    assert np.isclose(back["pi_b"].sum(), 200.0)
    again = from_obp(back)  # the exported dict names its actions
    assert again.column("image_id").equals(from_obp(feedback).column("image_id"))


def test_slate_log_exports_images_as_actions():
    from slate.logs.parquet import example_table

    log, _ = read_impressions(example_table())
    out = to_obp(log)
    assert out["n_actions"] == 4 and out["context"].shape == (4, 1)
    assert np.array_equal(out["action_context"], np.eye(4))
    assert [out["action_ids"][a] for a in out["action"]] == ["T1-a", "T2-b", "T1-b", "T2-a"]
    assert out["pscore"].tolist() == [0.5] * 4
    with pytest.raises(InvalidLogError, match=r"'action_ids' must include every image .* 'T2-a'"):
        to_obp(log, action_ids=["T1-a", "T1-b", "T2-b"])
    with pytest.raises(InvalidLogError, match=r"'action_context' must have shape \(4, d_a\)"):
        to_obp(log, action_context=np.zeros((3, 2)))
    with pytest.raises(InvalidLogError, match="'propensities' column to export pi_b"):
        to_obp(log, include_pi_b=True)


def _without(key):
    def change(f):
        del f[key]
    return change


def _set(key, value):
    def change(f):
        f[key] = value
    return change


BAD_FEEDBACK = [
    (_without("pscore"), r"must have the key 'pscore'"),
    (_without("n_actions"), r"must have the key 'n_actions'"),
    (_set("reward", np.full(200, 0.5)), r"'reward' .* must be 0 or 1 .* got 200 other values, e.g. 0.5"),
    (_set("action", np.full(200, 12)), r"'action' .* must lie in \[0, 12\); got values from 12 to 12"),
    (_set("pscore", np.ones(3)), r"'pscore' .* must have 200 \(n_rounds\) entries; got shape \(3,\)"),
    (_set("pi_b", np.ones((200, 5))), r"'pi_b' .* must have shape \(200, 12\[, len_list\]\)"),
    (_set("context", np.ones(200)), r"'context' .* must have shape \(200, d\); got \(200,\)"),
    (_set("action_ids", ["a", "b"]), r"'action_ids' must name the 12 actions; got 2"),
]


@pytest.mark.parametrize(("change", "message"), BAD_FEEDBACK)
def test_bad_obp_dicts_raise_naming_the_key(change, message):
    feedback = random_feedback()
    change(feedback)
    with pytest.raises(InvalidLogError, match=message):
        from_obp(feedback)


def test_bad_probabilities_are_counted_by_the_reader_not_dropped():
    feedback = random_feedback(n=50)
    feedback["pscore"] = feedback["pscore"].copy()
    feedback["pscore"][[3, 7]] = [0.0, 1.5]
    _, report = read_impressions(from_obp(feedback))
    assert report.rows_for("propensity_out_of_range").tolist() == [3, 7]


# ---------------------------------------------------------------------------- Open Bandit Dataset
USER = ["user_feature_0", "user_feature_1"]
AFFINITY = [f"user-item_affinity_{i}" for i in range(3)]
ROWS = [  # the obp CSV layout: unnamed index, time, item, position (1-based), click, propensity
    (0, "2019-11-24 00:00:03.000001+00:00", 2, 1, 0, "b", "x"),
    (1, "2019-11-24 00:00:01.500000+00:00", 0, 3, 1, "a", "x"),
    (2, "2019-11-24 00:00:02+00:00", 1, 2, 0, "c", "y"),
    (3, "2019-11-24 00:00:05+00:00", 2, 3, 1, "a", "y"),
    (4, "2019-11-24 00:00:04+00:00", 0, 1, 0, "b", "x"),
]


@pytest.fixture()
def obd(tmp_path):
    folder = tmp_path / "obd" / "random" / "men"
    folder.mkdir(parents=True)
    lines = [",timestamp,item_id,position,click,propensity_score," + ",".join(USER + AFFINITY)]
    for i, ts, item, pos, click, u0, u1 in ROWS:
        lines.append(f"{i},{ts},{item},{pos},{click},{1 / 3!r},{u0},{u1},0.0,{float(i)},0.0")
    (folder / "men.csv").write_text("\n".join(lines) + "\n")
    (folder / "item_context.csv").write_text(
        ",item_id,item_feature_0,item_feature_1,item_feature_2\n"
        "0,0,-0.5,h2,g1\n1,1,0.25,h1,g1\n2,2,1.5,h2,g0\n")
    return folder


def test_open_bandit_files_are_preprocessed_as_obp_does(obd):
    f = open_bandit_feedback(obd)
    # sorted by time: CSV rows 1, 2, 0, 4, 3
    assert f["n_rounds"] == 5 and f["n_actions"] == 3
    assert f["action"].tolist() == [0, 1, 2, 0, 2]
    assert f["position"].tolist() == [2, 1, 0, 0, 2]  # dense rank of 3, 2, 1, 1, 3, from 0
    assert f["reward"].tolist() == [1, 0, 0, 0, 1]
    assert np.allclose(f["pscore"], 1 / 3)
    # one-hot, sorted categories, first dropped: user_feature_0 -> (b, c), user_feature_1 -> (y)
    assert f["context"].tolist() == [[0, 0, 0], [0, 1, 1], [1, 0, 0], [1, 0, 0], [0, 0, 1]]
    # label-encoded item feature columns (not item_id, as obp 0.5), then item_feature_0
    assert f["action_context"].tolist() == [[1, 1, -0.5], [0, 1, 0.25], [1, 0, 1.5]]
    assert str(f["timestamp"][0]) == "2019-11-24T00:00:01.500000"
    assert open_bandit_feedback(obd / "men.csv")["action"].tolist() == f["action"].tolist()


def test_open_bandit_files_become_a_valid_log(obd, tmp_path):
    table = read_open_bandit_dataset(obd)
    path = write_impressions(tmp_path / "obd.parquet", table)
    log, report = read_impressions(path)
    assert report.n_rejected == 0 and log.n_rows == 5 and log.n_pages == 5
    assert log.image_ids == ("item-0", "item-1", "item-2") and log.k_max == 3
    assert log.title_ids == ("position-0", "position-1", "position-2")
    assert log.explored.all() and log.features.shape == (5, 3)
    assert np.all(np.diff(log.timestamp) > 0)
    # the uniform logging policy evaluated on its own log: the mean click
    assert evaluate(log, UniformPolicy(), "snips", n_bootstrap=0).estimate.value == pytest.approx(0.4)


def test_bad_open_bandit_paths_raise(obd, tmp_path):
    with pytest.raises(InvalidLogError, match=r"campaign folder holding <campaign>\.csv"):
        open_bandit_feedback(tmp_path / "nowhere")
    bad = tmp_path / "bad.csv"
    bad.write_text(",timestamp,item_id,click\n0,2019-11-24 00:00:01+00:00,1,0\n")
    with pytest.raises(InvalidLogError, match=r"must have the column\(s\) \['position', 'propensity_score'\]"):
        open_bandit_feedback(bad)


def test_open_bandit_items_never_logged_are_still_actions(obd):
    # item 3 is in the campaign's item_context.csv but was never shown
    with (obd / "item_context.csv").open("a") as fh:
        fh.write("3,3,0.75,h1,g0\n")
    f = open_bandit_feedback(obd)
    assert f["n_actions"] == 4 and f["action_context"].shape == (4, 3)
    assert f["action_ids"] == ("item-0", "item-1", "item-2", "item-3")
    log, report = read_impressions(read_open_bandit_dataset(obd))
    assert report.n_rejected == 0 and log.k_max == 4


def test_explored_follows_the_policy_folder_not_the_whole_path(tmp_path, obd):
    # a bts campaign stored under a folder that happens to be called "random"
    bts = tmp_path / "random" / "cache" / "obd" / "bts" / "men"
    bts.mkdir(parents=True)
    for name in ("men.csv", "item_context.csv"):
        (bts / name).write_text((obd / name).read_text())
    assert not read_open_bandit_dataset(bts).column("explored").to_numpy().any()
    assert not read_open_bandit_dataset(bts / "men.csv").column("explored").to_numpy().any()
    assert read_open_bandit_dataset(obd / "men.csv").column("explored").to_numpy().all()
    assert read_open_bandit_dataset(bts, explored=True).column("explored").to_numpy().all()


# ---------------------------------------------------------------------------- Bernoulli TS policy
def _exact_rank_probabilities(alpha, beta):
    """P(item a at position 0) and P(item a at position 1), by numerical integration over the
    value of theta_a (independent Beta draws)."""
    dists = [sps.beta(a, b) for a, b in zip(alpha, beta, strict=True)]
    n = len(dists)
    out = np.zeros((n, 2))
    for a in range(n):
        others = [d for i, d in enumerate(dists) if i != a]
        out[a, 0] = integrate.quad(
            lambda x, a=a, others=others: dists[a].pdf(x) * np.prod([d.cdf(x) for d in others]),
            0, 1, limit=200)[0]
        for c in range(len(others)):  # exactly one other item above theta_a
            rest = [d for i, d in enumerate(others) if i != c]
            out[a, 1] += integrate.quad(
                lambda x, a=a, above=others[c], rest=rest: dists[a].pdf(x) * above.sf(x)
                * np.prod([d.cdf(x) for d in rest]), 0, 1, limit=200)[0]
    return out


def test_bernoulli_ts_matches_exact_rank_probabilities():
    alpha, beta = [3.0, 5.0, 2.0, 8.0], [9.0, 10.0, 3.0, 30.0]
    exact = _exact_rank_probabilities(alpha, beta)
    n_sim = 200_000
    dist = bernoulli_ts_distribution(alpha, beta, len_list=2, n_sim=n_sim, seed=3)
    se = np.sqrt(exact * (1 - exact) / n_sim)
    # a multinomial share is within 5 standard errors (+1e-9 for cells of probability ~0)
    assert np.all(np.abs(dist - exact) <= 5 * se + 1e-9), np.abs(dist - exact) / se
    assert np.allclose(exact.sum(axis=0), 1.0, atol=1e-6)  # the integration itself is sound


def test_bernoulli_ts_is_seeded_and_does_not_depend_on_the_batch_size():
    alpha, beta = np.arange(1.0, 11.0), np.arange(20.0, 10.0, -1.0)
    a = bernoulli_ts_distribution(alpha, beta, n_sim=5000, seed=1)
    assert np.array_equal(a, bernoulli_ts_distribution(alpha, beta, n_sim=5000, seed=1, batch_size=333))
    assert not np.array_equal(a, bernoulli_ts_distribution(alpha, beta, n_sim=5000, seed=2))


@given(n_actions=st.integers(1, 12), len_list=st.integers(1, 12), n_sim=st.integers(1, 300),
       seed=st.integers(0, 2**32 - 1))
def test_bernoulli_ts_shows_one_item_per_position_and_each_item_once(n_actions, len_list, n_sim, seed):
    len_list = min(len_list, n_actions)
    rng = np.random.default_rng(seed)
    alpha, beta = rng.uniform(0.1, 50, n_actions), rng.uniform(0.1, 50, n_actions)
    dist = bernoulli_ts_distribution(alpha, beta, len_list=len_list, n_sim=n_sim, seed=seed,
                                     batch_size=64)
    assert dist.shape == (n_actions, len_list)
    assert np.allclose(dist.sum(axis=0), 1.0)
    assert np.all(dist.sum(axis=1) <= 1.0 + 1e-12) and np.all(dist >= 0)
    assert np.allclose(dist * n_sim, np.rint(dist * n_sim))  # shares of whole pages


BAD_PRIORS = [
    (dict(alpha=[1.0, 2.0], beta=[1.0]), r"'alpha' and 'beta' .* same length .* got shapes \(2,\) and \(1,\)"),
    (dict(alpha=[], beta=[]), r"'alpha' and 'beta' .* same length"),
    (dict(alpha=[1.0, 0.0], beta=[1.0, 1.0]), r"'alpha' .* must be positive and finite; got 1 other values, e.g. 0.0"),
    (dict(alpha=[1.0, 1.0], beta=[np.nan, 1.0]), r"'beta' .* must be positive and finite; got 1 other values, e.g. nan"),
    (dict(alpha=[1.0, 1.0], beta=[1.0, 1.0], len_list=3), r"'len_list' .* integer in \[1, 2\] \(n_actions\); got 3"),
    (dict(alpha=[1.0, 1.0], beta=[1.0, 1.0], n_sim=0), r"'n_sim' .* integer >= 1; got 0"),
    (dict(alpha=[1.0, 1.0], beta=[1.0, 1.0], n_sim=1.5), r"'n_sim' .* integer >= 1; got 1.5"),
    (dict(alpha=[1.0, 1.0], beta=[1.0, 1.0], batch_size=-1), r"'batch_size' .* integer >= 1; got -1"),
]


@pytest.mark.parametrize(("kwargs", "message"), BAD_PRIORS)
def test_bad_bernoulli_ts_arguments_raise(kwargs, message):
    kwargs = {"len_list": 1, **kwargs}
    with pytest.raises(InvalidLogError, match=message):
        bernoulli_ts_distribution(**kwargs)


def test_open_bandit_rows_with_equal_timestamps_keep_their_file_order(obd):
    csv = obd / "men.csv"
    lines = csv.read_text().splitlines()
    # rows 2 and 4 (items 1 and 0) get row 0's timestamp: file order 0, 2, 4 among the tie
    stamp = lines[1].split(",")[1]
    for i in (3, 5):
        parts = lines[i].split(",")
        parts[1] = stamp
        lines[i] = ",".join(parts)
    csv.write_text("\n".join(lines) + "\n")
    f = open_bandit_feedback(obd)
    # CSV rows sorted by time: 1 (00:00:01.5), then the tie 0, 2, 4 in file order, then 3
    assert f["action"].tolist() == [0, 2, 1, 0, 2]
    assert f["position"].tolist() == [2, 0, 1, 0, 2]
