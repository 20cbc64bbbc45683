"""Requests, features, labels, and bad inputs; the planted comedy/romance preference."""

from __future__ import annotations

import json

import numpy as np
import pydantic
import pytest

from slate.bandit import (
    ArmIndex,
    FeatureBuilder,
    FeatureConfig,
    FeatureRequest,
    HybridLinUCB,
    ImageCandidate,
    ImpressionOutcome,
    LinUCB,
    MemberContext,
    PageFeatures,
    PendingImpressions,
    QualityPlayLabel,
    TitleCandidate,
    UnknownPolicyError,
    check_log,
    load_policy,
    make_policy,
    save_policy,
)
from slate.errors import InvalidProblemError, SlateError

GENRES = ("comedy", "romance", "drama", "action")
CONFIG = FeatureConfig(
    genres=GENRES,
    aesthetics=("close-up", "ensemble", "dark", "bright"),
    countries=("US", "BR"),
    languages=("en", "pt"),
    devices=("tv", "phone"),
    embedding_dim=3,
)

# The seed example of artwork personalization (Good Will Hunting): a comedian's image and a
# couple's image of the same title, plus other titles so the model sees many images.
CATALOGUE = {
    "good-will-hunting": [("gwh-comedian", ("comedy",), ("Robin Williams",)), ("gwh-couple", ("romance",), ("Matt Damon", "Minnie Driver")), ("gwh-ensemble", ("drama",), ())],
    "mrs-doubtfire": [("md-comedy", ("comedy",), ("Robin Williams",)), ("md-family", ("drama",), ())],
    "notebook": [("nb-kiss", ("romance",), ()), ("nb-storm", ("drama", "action"), ())],
    "speed": [("sp-bus", ("action",), ()), ("sp-couple", ("romance", "action"), ())],
}


def _request(member: MemberContext, titles=None, embedding=(0.1, 0.2, 0.3)) -> FeatureRequest:
    titles = titles or list(CATALOGUE)
    return FeatureRequest(
        member=member,
        titles=[
            TitleCandidate(
                title_id=t,
                recommender_score=0.5,
                images=[ImageCandidate(image_id=i, themes=th, cast=c, embedding=embedding) for i, th, c in CATALOGUE[t]],
            )
            for t in titles
        ],
    )


def test_feature_layout_and_values_from_a_request():
    builder = FeatureBuilder(CONFIG)
    member = MemberContext(
        member_id="m", genre_affinity={"comedy": 0.8, "romance": 0.1}, cast_affinity={"Robin Williams": 0.6},
        country="BR", language="fr", device="tv", hour=6, day_of_week=3,
    )
    page = builder.build(_request(member, ["good-will-hunting", "speed"]))
    names = builder.feature_names
    assert page.x.shape == (2, 3, builder.n_features) and len(names) == builder.n_features
    assert page.mask.tolist() == [[True, True, True], [True, True, False]]
    assert page.image_ids[0] == ("gwh-comedian", "gwh-couple", "gwh-ensemble")
    v = dict(zip(names, page.x[0, 0], strict=True))
    assert v["bias"] == 1 and v["genre:comedy"] == pytest.approx(0.8)
    assert v["country:BR"] == 1 and v["country:US"] == 0
    assert v["language:<other>"] == 1 and v["device:tv"] == 1
    assert v["hour_sin"] == pytest.approx(1.0) and v["hour_cos"] == pytest.approx(0.0, abs=1e-12)
    assert v["theme:comedy"] == 1 and v["affinity_x_theme:comedy"] == pytest.approx(0.8)
    assert v["cast_match"] == pytest.approx(0.6) and v["new_x_cast_match"] == pytest.approx(0.6)
    assert v["embedding:2"] == pytest.approx(0.3) and v["recommender_score"] == 0.5
    couple = dict(zip(names, page.x[0, 1], strict=True))
    assert couple["cast_match"] == 0 and couple["theme_match"] == pytest.approx(0.1)
    assert (page.x[1, 2] == 0).all()  # padding
    # the array-level core gives the same tensor
    again = builder.build(_request(member, ["good-will-hunting", "speed"]))
    np.testing.assert_array_equal(again.x, page.x)
    np.testing.assert_array_equal(again.arms, page.arms)


def test_blocks_cover_every_column_once():
    builder = FeatureBuilder(CONFIG.model_copy(update={"embedding_interactions": True}))
    cols = builder.columns("bias", "member", "member_title", "image", "interaction")
    assert cols.tolist() == list(range(builder.n_features))
    assert sum(n.startswith("affinity_x_embedding:") for n in builder.feature_names) == 4 * 3


def test_requests_are_frozen_and_forbid_extra_fields():
    member = MemberContext(member_id="m")
    with pytest.raises(pydantic.ValidationError):
        member.hour = 3  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError, match="extra"):
        MemberContext(member_id="m", mood="happy")  # type: ignore[call-arg]
    with pytest.raises(pydantic.ValidationError, match="hour"):
        MemberContext(member_id="m", hour=24)
    with pytest.raises(pydantic.ValidationError, match="genre_affinity"):
        MemberContext(member_id="m", genre_affinity={"comedy": 1.5})
    with pytest.raises(pydantic.ValidationError, match="twice"):
        TitleCandidate(title_id="t", images=[ImageCandidate(image_id="a"), ImageCandidate(image_id="a")])
    with pytest.raises(pydantic.ValidationError, match="recommender_score"):
        TitleCandidate(title_id="t", images=[ImageCandidate(image_id="a")], recommender_score=float("nan"))
    # a request round-trips through JSON (what the serving path and the simulator exchange)
    req = _request(MemberContext(member_id="m"), ["notebook"])
    assert FeatureRequest.model_validate(json.loads(req.model_dump_json())) == req


def test_quality_play_label_is_a_threshold_not_a_click():
    label = QualityPlayLabel(min_minutes=10, min_fraction=0.8)
    outcomes = [ImpressionOutcome(impression_id=str(i), minutes_played=m, fraction_completed=f)
                for i, (m, f) in enumerate([(0.5, 0.01), (12.0, 0.1), (5.0, 0.9), (0.0, 0.0)])]
    assert label.label_outcomes(outcomes).tolist() == [0.0, 1.0, 1.0, 0.0]


# ---------------------------------------------------------------------------- planted preferences
def _simulated_log(builder: FeatureBuilder, n: int, seed: int):
    """Uniformly logged impressions; quality-play probability rises with theme match."""
    rng = np.random.default_rng(seed)
    titles = list(CATALOGUE)
    aff = rng.dirichlet(np.full(len(GENRES), 0.4), size=n)
    t_idx = rng.integers(0, len(titles), n)
    xs, arms, rewards = [], [], []
    for title in range(len(titles)):
        rows = np.flatnonzero(t_idx == title)
        images = CATALOGUE[titles[title]]
        k = len(images)
        themes = np.zeros((len(rows), k, len(GENRES)))
        cast = np.zeros((len(rows), k))
        for j, (_, th, c) in enumerate(images):
            for g in th:
                themes[:, j, GENRES.index(g)] = 1
            cast[:, j] = 0.3 * aff[rows, 0] * ("Robin Williams" in c)  # comedy fans like the comedian
        x = builder.encode(
            genre_affinity=aff[rows], themes=themes, cast_match=cast,
            embedding=np.zeros((len(rows), k, 3)), recommender_score=np.full(len(rows), 0.5),
        )
        shown = rng.integers(0, k, len(rows))
        chosen_x = x[np.arange(len(rows)), shown]
        match = (aff[rows][:, None, :] * themes).sum(axis=2) / np.maximum(themes.sum(axis=2), 1)
        p = 0.05 + 0.6 * match[np.arange(len(rows)), shown]
        ids = builder.arms.index([images[j][0] for j in shown])
        xs.append(chosen_x)
        arms.append(ids)
        rewards.append((rng.random(len(rows)) < p).astype(float))
    return np.concatenate(xs), np.concatenate(arms), np.concatenate(rewards)


@pytest.mark.parametrize("name", ["linucb", "linear_ts", "logistic_ts", "epsilon_greedy", "hybrid_linucb"])
def test_planted_preferences_are_recovered(name):
    builder = FeatureBuilder(CONFIG)
    x, arms, rewards = _simulated_log(builder, 12_000, seed=0)
    params = {"hybrid_linucb": {"shared_columns": builder.columns("bias", "member", "interaction"),
                                "arm_columns": builder.columns("bias", "member")}}.get(name, {})
    policy = make_policy(name, seed=0, **params).fit(x, arms, rewards)
    comedy_fan = MemberContext(member_id="c", genre_affinity={"comedy": 0.85, "romance": 0.05, "drama": 0.1})
    romantic = MemberContext(member_id="r", genre_affinity={"comedy": 0.05, "romance": 0.85, "drama": 0.1})
    for member, preferred, other in ((comedy_fan, "gwh-comedian", "gwh-couple"), (romantic, "gwh-couple", "gwh-comedian")):
        page = builder.build(_request(member, ["good-will-hunting"], embedding=(0.0, 0.0, 0.0)), grow=False)
        scores = policy.score(page).mean[0]
        ids = page.image_ids[0]
        assert scores[ids.index(preferred)] > scores[ids.index(other)] + 0.05, (member.member_id, scores)


# ---------------------------------------------------------------------------- bad inputs
GOOD_X = np.ones((2, 3, 4))
GOOD_ARMS = np.array([[0, 1, 2], [3, 4, -1]])
NAN_X = GOOD_X.copy()
NAN_X[1, 0, 2] = np.nan

BAD_PAGES = [
    ({"x": NAN_X, "arms": GOOD_ARMS}, r"'features'.*finite.*nan at row 1 image 0 feature 2"),
    ({"x": np.ones((2, 2, 4)), "arms": GOOD_ARMS}, r"'features'.*shape.*\(2, 3, n_features"),
    ({"x": GOOD_X, "arms": np.array([[0, 1, 1], [3, 4, -1]])}, r"'arms'.*distinct.*arm 1 twice in row 0"),
    ({"x": GOOD_X, "arms": GOOD_ARMS.astype(float)}, r"'arms'.*integer"),
    ({"x": GOOD_X, "arms": np.array([[0, 1, 2], [-1, -1, -1]])}, r"'mask'.*at least one image.*row 1"),
    ({"x": GOOD_X, "arms": GOOD_ARMS, "mask": np.ones((2, 3), bool)}, r"'arms'.*>= 0.*-1 at row 1 image 2"),
    ({"x": GOOD_X, "arms": GOOD_ARMS, "mask": np.ones((3, 3), bool)}, r"'mask'.*shape"),
    ({"x": np.array(["a"]), "arms": GOOD_ARMS}, r"'features'.*numeric"),
    ({"x": GOOD_X, "arms": GOOD_ARMS, "feature_names": ["a"]}, r"'feature_names'.*one name per feature"),
    ({"x": GOOD_X, "arms": GOOD_ARMS, "dtype": "float16"}, r"'dtype'.*float32 or float64"),
]


@pytest.mark.parametrize(("kwargs", "message"), BAD_PAGES)
def test_bad_pages_fail_with_clear_messages(kwargs, message):
    with pytest.raises(InvalidProblemError, match=message):
        PageFeatures.from_arrays(**kwargs)


BAD_LOGS = [
    ((np.array([[1.0, np.inf]]), [0], [1.0]), r"'x'.*finite.*inf at row 0 feature 1"),
    ((np.ones((2, 2)), [0], [1.0]), r"'x'.*shape.*\(1, n_features\)"),
    ((np.ones((1, 2)), [0.5], [1.0]), r"'arms'.*integer"),
    ((np.ones((1, 2)), [-2], [1.0]), r"'arms'.*>= 0.*-2"),
    ((np.ones((1, 2)), [0], [2.0]), r"'rewards'.*\[0, 1\].*quality-play.*2.0"),
    ((np.ones((1, 2)), [0], [np.nan]), r"'rewards'.*nan"),
    ((np.ones((2, 2)), [0, 1], [1.0]), r"'rewards'.*one value per impression \(2\)"),
]


@pytest.mark.parametrize(("args", "message"), BAD_LOGS)
def test_bad_logs_fail_with_clear_messages(args, message):
    with pytest.raises(InvalidProblemError, match=message):
        check_log(*args)
    with pytest.raises(InvalidProblemError, match=message):
        LinUCB().fit(*args)


def test_bad_single_impressions_fall_back_to_the_full_checks():
    policy = LinUCB().fit(np.ones((3, 2)), [0, 1, 0], [1.0, 0.0, 1.0])
    with pytest.raises(InvalidProblemError, match=r"'x'.*finite"):
        policy.update(np.array([np.nan, 1.0]), 0, 1.0)
    with pytest.raises(InvalidProblemError, match=r"'x'.*2 features"):
        policy.update(np.ones(3), 0, 1.0)
    with pytest.raises(InvalidProblemError, match=r"'rewards'"):
        policy.update(np.ones(2), 0, 1.5)
    with pytest.raises(InvalidProblemError, match=r"'sample_weight'.*>= 0"):
        policy.update(np.ones(2), 0, 1.0, sample_weight=[-1.0])
    with pytest.raises(InvalidProblemError, match="fitted with 2"):
        policy.score(PageFeatures.from_arrays(np.ones((1, 3)), [[0, 1]]))


BAD_PARAMS = [
    ("linucb", {"alpha": -1.0}, r"'alpha' parameter of LinUCB.*>= 0.*-1.0"),
    ("linucb", {"ridge": 0.0}, r"'ridge' parameter of LinUCB.*> 0"),
    ("linucb", {"forgetting": 0.0}, r"'forgetting' parameter of LinUCB.*\(0, 1\]"),
    ("linucb", {"dtype": "float16"}, r"'dtype' parameter of LinUCB"),
    ("linucb", {"prior": 3}, r"'prior' parameter of LinUCB"),
    ("linear_ts", {"n_draws": 0}, r"'n_draws' parameter of LinearThompson"),
    ("linear_ts", {"seed": -3}, r"'seed' parameter"),
    ("epsilon_greedy", {"epsilon": 1.5}, r"'epsilon' parameter of EpsilonGreedy.*\[0, 1\]"),
    ("take_rate", {"prior_alpha": float("nan")}, r"'prior_alpha' parameter of TakeRateBandit"),
    ("logistic_ts", {"max_iter": 0}, r"'max_iter' parameter of LogisticThompson"),
]


@pytest.mark.parametrize(("name", "params", "message"), BAD_PARAMS)
def test_bad_hyperparameters_fail_with_clear_messages(name, params, message):
    with pytest.raises(InvalidProblemError, match=message):
        make_policy(name, **params)


def test_bad_hybrid_columns():
    with pytest.raises(InvalidProblemError, match=r"'shared_columns'.*0\.\.3"):
        HybridLinUCB(shared_columns=[0, 9]).fit(np.ones((2, 4)), [0, 1], [0.0, 1.0])


def test_unknown_policy_name():
    with pytest.raises(UnknownPolicyError, match="Unknown policy 'lin_ucb'; available policies are epsilon_greedy"):
        make_policy("lin_ucb")
    assert issubclass(UnknownPolicyError, SlateError) and issubclass(UnknownPolicyError, KeyError)


def test_builder_rejects_what_it_cannot_encode():
    builder = FeatureBuilder(CONFIG, arms=ArmIndex(["gwh-comedian"]))
    member = MemberContext(member_id="m")
    with pytest.raises(InvalidProblemError, match=r"Unknown image id 'gwh-couple'"):
        builder.build(_request(member, ["good-will-hunting"]), grow=False)
    with pytest.raises(InvalidProblemError, match=r"'member.genre_affinity'.*'horror'"):
        builder.build(_request(MemberContext(member_id="m", genre_affinity={"horror": 0.5}), ["notebook"]))
    bad_theme = FeatureRequest(member=member, titles=[TitleCandidate(title_id="t", images=[
        ImageCandidate(image_id="x", themes=("western",), embedding=(0, 0, 0))])])
    with pytest.raises(InvalidProblemError, match=r"'titles\[0\].images\[0\].themes'.*'western'"):
        builder.build(bad_theme)
    lenient = FeatureBuilder(CONFIG.model_copy(update={"unknown_tags": "ignore"}))
    assert lenient.build(bad_theme).x[0, 0, lenient.columns("image")][:4].tolist() == [0, 0, 0, 0]
    with pytest.raises(InvalidProblemError, match=r"'titles\[0\].images\[0\].embedding'.*length 3.*length 2"):
        builder.build(_request(member, ["notebook"], embedding=(0.0, 1.0)))
    with pytest.raises(InvalidProblemError, match=r"'themes'.*shape"):
        builder.encode(genre_affinity=np.zeros((2, 4)), themes=np.zeros((2, 3, 5)), embedding=np.zeros((2, 3, 3)))
    with pytest.raises(InvalidProblemError, match=r"'genre_affinity'.*\[0, 1\]"):
        builder.encode(genre_affinity=np.full((1, 4), 2.0), themes=np.zeros((1, 1, 4)), embedding=np.zeros((1, 1, 3)))
    with pytest.raises(InvalidProblemError, match=r"'embedding'.*be given"):
        builder.encode(genre_affinity=np.zeros((1, 4)), themes=np.zeros((1, 1, 4)))
    with pytest.raises(InvalidProblemError, match=r"'hour'.*0\.\.23"):
        builder.encode(genre_affinity=np.zeros((1, 4)), themes=np.zeros((1, 1, 4)), embedding=np.zeros((1, 1, 3)), hour=[30])
    with pytest.raises(InvalidProblemError, match="Unknown feature block 'images'"):
        builder.columns("images")


def test_pending_impressions_reject_unknown_and_duplicate_ids():
    pending = PendingImpressions()
    pending.add(["a", "b"], np.ones((2, 3)), [0, 1])
    with pytest.raises(InvalidProblemError, match="Impression id 'a' is already pending"):
        pending.add(["a"], np.ones((1, 3)), [0])
    with pytest.raises(InvalidProblemError, match="Unknown impression id 'zz'"):
        pending.resolve(LinUCB(), ["zz"], [1.0])
    with pytest.raises(InvalidProblemError, match="twice"):
        pending.resolve(LinUCB(), ["a", "a"], [1.0, 1.0])
    assert len(pending) == 2  # nothing was consumed by the failed calls


def test_merge_and_load_refuse_mismatches(tmp_path):
    a = LinUCB().fit(np.ones((2, 3)), [0, 1], [0.0, 1.0])
    with pytest.raises(InvalidProblemError, match="different hyperparameters"):
        a.merge(LinUCB(alpha=2.0).fit(np.ones((2, 3)), [0, 1], [0.0, 1.0]))
    with pytest.raises(InvalidProblemError, match="a model with 4 features into one with 3"):
        a.merge(LinUCB().fit(np.ones((2, 4)), [0, 1], [0.0, 1.0]))
    with pytest.raises(InvalidProblemError, match="Cannot merge a LinUCB into a TakeRateBandit"):
        make_policy("take_rate").merge(a)
    bogus = tmp_path / "bogus.npz"
    np.savez(bogus, __metadata__=np.frombuffer(json.dumps({"format": "other/9"}).encode(), np.uint8))
    with pytest.raises(InvalidProblemError, match=r"'format'.*slate.bandit-policy/1.*'other/9'"):
        load_policy(bogus)
    np.savez(tmp_path / "plain.npz", a=np.ones(2))
    with pytest.raises(InvalidProblemError, match="not a slate policy file"):
        load_policy(tmp_path / "plain.npz")
    with pytest.raises(InvalidProblemError, match="Cannot read a slate policy"):
        load_policy(tmp_path / "missing.npz")
    path = save_policy(a, tmp_path / "ok")
    with np.load(path, allow_pickle=False) as data:  # no pickled objects anywhere in the file
        assert all(data[k].dtype != object for k in data.files)
