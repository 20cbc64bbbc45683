"""The simulated world: configuration, generation, determinism, and the response model checked
against a brute-force re-implementation of its formula."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slate.errors import InvalidProblemError
from slate.sim import (
    DAYPARTS,
    InvalidConfigError,
    PageBatch,
    candidate_probabilities,
    initial_state,
    make_config,
    make_schedule,
    make_world,
    respond,
)

SMALL = {"n_members": 60, "n_titles": 70, "seed": 3}


@pytest.fixture(scope="module")
def world():
    return make_world(**SMALL)


@pytest.fixture(scope="module")
def schedule(world):
    return make_schedule(world, n_days=3, seed=1)


# ---------------------------------------------------------------------- configuration
BAD_CONFIGS = [
    ({"n_members": 0}, r"'n_members' field of WorldConfig must be greater than or equal to 1; got 0"),
    ({"n_titles": "many"}, r"'n_titles' field .* got 'many'"),
    ({"min_images": 5, "max_images": 4}, r"min_images must be <= max_images; got 5 > 4"),
    ({"genres": ("comedy", "comedy")}, r"genres must be at least 2 distinct names"),
    ({"genres": ("action", "horror"), "include_example": True}, r"include_example needs genres"),
    ({"aesthetics": ("dark",)}, r"aesthetics must be at least 2 distinct names"),
    ({"response": {"crowding": -1.0}}, r"'response.crowding' field .* greater than or equal to 0; got -1.0"),
    ({"response": {"familiarity_damping": 2}}, r"'response.familiarity_damping' .* less than or equal to 1"),
    ({"page": {"rows": 0}}, r"'page.rows' field"),
    ({"drift": {"launch_share": 1.5}}, r"'drift.launch_share'"),
    ({"unknown_knob": 1}, r"WorldConfig has no field 'unknown_knob'; got unknown_knob=1"),
    ({"response": {"crowd": 1}}, r"WorldConfig has no field 'response.crowd'"),
    ({"activity": (0.0, 1.0)}, r"activity must be two positive Beta parameters"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD_CONFIGS)
def test_bad_configs_raise_naming_the_field(overrides, message):
    with pytest.raises(InvalidConfigError, match=message):
        make_config(**overrides)


def test_config_errors_are_value_errors_and_frozen():
    with pytest.raises(ValueError):
        make_config(n_days=0)
    config = make_config()
    with pytest.raises(Exception, match="frozen"):
        config.n_members = 5  # type: ignore[misc]


def test_world_too_small_for_a_page():
    with pytest.raises(InvalidConfigError, match="needs at least 40 titles available on day 0"):
        make_world(n_titles=41, n_members=5)


def test_make_world_rejects_config_plus_overrides():
    with pytest.raises(InvalidConfigError, match="either a config or keyword overrides"):
        make_world(make_config(), n_members=3)


# ---------------------------------------------------------------------- generation
def test_world_invariants(world):
    cfg = world.config
    assert world.n_members == cfg.n_members and world.n_titles == cfg.n_titles
    assert cfg.min_images <= world.n_images.min() and world.n_images.max() <= cfg.max_images
    assert len(set(world.image_ids)) == world.n_images_total == int(world.n_images.sum())
    assert np.allclose(np.linalg.norm(world.embeddings, axis=1), 1.0)
    assert np.allclose(world.title_genres.sum(axis=1), 1.0)
    for t in range(world.n_titles):
        images = world.title_images[t, : world.n_images[t]]
        assert (world.image_title[images] == t).all()
        assert (world.title_images[t, world.n_images[t] :] == -1).all()
        cast = world.title_cast[t][world.title_cast[t] >= 0]
        cast_images = images[world.image_highlight_kind[images] == 1]
        assert np.isin(world.image_highlight[cast_images], cast).all()
        theme_images = images[world.image_highlight_kind[images] == 0]
        assert (world.title_genres[t, world.image_highlight[theme_images]] > 0).all()
    assert 0.0 < world.image_clickbait.mean() < 0.3
    assert (world.launch_day > 0).sum() == round(cfg.drift.launch_share * cfg.n_titles)
    for arr in (world.embeddings, world.title_images, world.taste_knots):
        assert not arr.flags.writeable


def test_images_with_the_same_tags_look_alike(world):
    """The visual embedding reflects the tags: same aesthetic => more similar on average."""
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, world.n_images_total, size=(2, 20_000))
    sim = (world.embeddings[a] * world.embeddings[b]).sum(axis=1)
    same = world.image_aesthetic[a] == world.image_aesthetic[b]
    assert sim[same].mean() > sim[~same].mean() + 0.4


def test_same_seed_same_world_and_different_seed_different():
    w1, w2, w3 = make_world(**SMALL), make_world(**SMALL), make_world(**{**SMALL, "seed": 4})
    for name in ("embeddings", "taste_knots", "image_appeal", "image_clickbait", "title_cast", "launch_day"):
        assert np.array_equal(getattr(w1, name), getattr(w2, name)), name
    assert w1.image_ids == w2.image_ids
    assert not np.array_equal(w1.embeddings[5:], w3.embeddings[5:]) or w1.n_images_total != w3.n_images_total


def test_seed_example_is_the_netflix_post_example(world):
    ex = world.example
    assert world.title_names[ex.title] == "Good Will Hunting"
    comedian = int(world.title_images[ex.title, ex.comedian_image])
    couple = int(world.title_images[ex.title, ex.couple_image])
    assert world.image_tags(comedian)["highlight"] == "cast: Robin Williams"
    assert world.image_tags(couple)["highlight"] == "theme: romance"
    genre = {g: i for i, g in enumerate(world.genres)}
    assert world.cast_genres[world.image_highlight[comedian], genre["comedy"]] > 0.5
    # true probabilities for the two example profiles: each prefers "their" image
    members = np.array([ex.comedy_member, ex.romance_member])
    batch = _single_title_batch(world, members, ex.title)
    p = candidate_probabilities(batch)[:, 0]
    assert p[0, ex.comedian_image] > p[0, ex.couple_image]  # comedy-inclined: Robin Williams
    assert p[1, ex.couple_image] > p[1, ex.comedian_image]  # romance-inclined: the couple


def _single_title_batch(world, members, title, *, known=False, previous=-1, device=0, hour=20.0, day=0):
    members = np.asarray(members)
    b = len(members)
    titles = np.full((b, world.n_slots), title, dtype=np.int64)
    # fill the other slots with distinct other titles so the page is a real page
    others = [t for t in range(world.n_titles) if t != title][: world.n_slots - 1]
    titles[:, 1:] = others
    return PageBatch(
        world=world,
        member=members.astype(np.int64),
        day=np.full(b, day, dtype=np.int64),
        hour=np.full(b, hour),
        device=np.full(b, device, dtype=np.int64),
        titles=titles,
        previous=np.full((b, world.n_slots), previous, dtype=np.int64),
        known=np.full((b, world.n_slots), known),
        session_id=np.arange(b, dtype=np.int64),
        page_id=np.arange(b, dtype=np.int64),
        timestamp=np.zeros(b, dtype=np.int64),
    )


@settings(max_examples=8, deadline=None)
@given(
    n_members=st.integers(2, 25),
    extra_titles=st.integers(0, 30),
    lo=st.integers(1, 5),
    span=st.integers(0, 10),
    rows=st.integers(1, 3),
    cols=st.integers(2, 5),
    seed=st.integers(0, 10_000),
    example=st.booleans(),
)
def test_random_small_worlds_are_well_formed(n_members, extra_titles, lo, span, rows, cols, seed, example):
    lo = max(lo, 3) if example else lo
    world = make_world(
        n_members=n_members,
        n_titles=rows * cols + 2 + extra_titles,
        min_images=lo,
        max_images=lo + span,
        page={"rows": rows, "cols": cols},
        drift={"launch_share": 0.0},
        include_example=example,
        seed=seed,
    )
    assert lo <= world.n_images.min() and world.n_images.max() <= lo + span
    assert world.n_slots == rows * cols
    sched = make_schedule(world, n_days=2, seed=seed)
    assert sched.titles.shape[1] == rows * cols
    assert all(len(set(row)) == rows * cols for row in sched.titles.tolist())  # no title twice on a page
    state = initial_state(world)
    for day in sched.days:
        batch = sched.batch(day, state)
        r = respond(batch, np.zeros(batch.titles.shape, dtype=np.int64))
        assert ((r.probability > 0) & (r.probability < 1)).all()


# ---------------------------------------------------------------------- schedule
def test_schedule_invariants(world, schedule):
    assert (np.diff(schedule.day) >= 0).all()
    assert len(np.unique(schedule.page_id)) == schedule.n_sessions
    for day in schedule.days:
        s = schedule.sessions_of(day)
        assert len(np.unique(schedule.member[s])) == s.stop - s.start  # at most one visit a day
        assert (np.diff(schedule.hour[s]) >= 0).all()
        assert world.available(day)[schedule.titles[s]].all()  # nothing before its launch
    with pytest.raises(InvalidProblemError, match="'day' parameter"):
        schedule.sessions_of(99)


def test_schedule_is_deterministic_and_day_independent(world, schedule):
    again = make_schedule(world, n_days=3, seed=1)
    assert np.array_equal(again.titles, schedule.titles) and np.array_equal(again.hour, schedule.hour)
    tail = make_schedule(world, n_days=1, first_day=2, seed=1)
    assert np.array_equal(tail.titles, schedule.titles[schedule.sessions_of(2)])
    other = make_schedule(world, n_days=3, seed=2)
    assert not np.array_equal(other.member, schedule.member) or not np.array_equal(other.titles, schedule.titles)


def test_titles_launch_during_the_run_and_tastes_drift():
    world = make_world(n_members=300, n_titles=80, n_days=21, seed=5, drift={"launch_share": 0.2})
    sched = make_schedule(world, seed=0)
    launching = np.flatnonzero((world.launch_day > 0) & (world.launch_day < 18))
    assert len(launching)
    shown_after = [
        t for t in launching if np.isin(t, sched.titles[sched.day >= world.launch_day[t]]).any()
    ]
    assert shown_after, "new titles reach pages after launch (cold start)"
    for t in launching:
        assert not np.isin(t, sched.titles[sched.day < world.launch_day[t]]).any()
    m = np.arange(world.n_members)
    assert np.abs(world.taste(m, 21) - world.taste(m, 0)).mean() > 0.05
    still = make_world(n_members=30, n_titles=80, n_days=21, seed=5, drift={"taste_drift": 0.0})
    assert np.array_equal(still.taste(np.arange(30), 21), still.taste(np.arange(30), 0))
    # images' appeal drifts with the title's age
    g = np.arange(world.n_images_total)
    assert not np.allclose(world.image_appeal_at(g, 0), world.image_appeal_at(g, 20))


def test_member_profile_tracks_taste(world):
    m = np.arange(world.n_members)
    profile = world.member_profile(m, 0)
    assert np.allclose(profile.sum(axis=1), 1.0)
    taste = world.taste(m, 0)
    corr = np.mean([np.corrcoef(profile[i], taste[i])[0, 1] for i in range(world.n_members)])
    assert corr > 0.6


# ---------------------------------------------------------------------- the response model
def _sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


def brute_force_probability(world, batch, images, noticed, cfg):
    """The response model's formula, impression by impression, in plain Python."""
    out = np.zeros(batch.titles.shape)
    start_date = world.config.drift
    for b in range(batch.n_pages):
        m, d = int(batch.member[b]), int(batch.day[b])
        knots = world.taste_knots
        pos = min(max(d / 7.0, 0.0), knots.shape[0] - 1.0)
        lo = min(int(pos), knots.shape[0] - 2)
        taste = (1 - (pos - lo)) * knots[lo, m] + (pos - lo) * knots[lo + 1, m]
        hour = batch.hour[b]
        daypart = 0 if 5 <= hour < 12 else 1 if 12 <= hour < 17 else 2 if 17 <= hour < 22 else 3
        assert DAYPARTS[daypart]
        for s in range(batch.n_slots):
            t = int(batch.titles[b, s])
            g = int(world.image_offset[t] + images[b, s])
            age = d - world.launch_day[t]
            boost = start_date.launch_boost * 0.5 ** (age / start_date.launch_half_life) if age >= 0 else 0.0
            rel = float(taste @ world.title_genres[t]) + world.title_popularity[t] + boost
            rel += cfg.language_bonus * (world.title_language[t] == world.member_language[m])
            match = float(taste @ world.image_genre_vector[g])
            if world.image_highlight_kind[g] == 1:
                for c, strength in zip(world.favourite_cast[m], world.favourite_strength[m], strict=True):
                    if c == world.image_highlight[g]:
                        match += cfg.cast_weight * strength
            a = world.image_aesthetic[g]
            aest = world.aesthetic_taste[m, a]
            if cfg.context_effects:
                aest += world.device_aesthetic[batch.device[b], a] + world.daypart_aesthetic[daypart, a]
            match += cfg.aesthetic_weight * aest
            appeal = world.image_appeal[g] + world.image_appeal_slope[g] * math.log1p(max(age, 0) / 30.0)
            match += cfg.appeal_weight * appeal
            damp = 1.0 - cfg.familiarity_damping * batch.known[b, s] if cfg.familiarity_effects else 1.0
            bait = float(world.image_clickbait[g])
            start = cfg.base_logit + cfg.relevance_weight * rel + damp * cfg.image_weight * match
            start += cfg.clickbait_start * bait
            prev = batch.previous[b, s]
            if cfg.session_effects and prev >= 0 and prev != images[b, s]:
                start += cfg.change_noticed if noticed[b, s] else cfg.change_unnoticed
            quality = cfg.quality_base + cfg.quality_relevance * rel - cfg.clickbait_quality * bait
            crowd = 0.0
            for (i, j), w in zip(world.pairs, world.pair_weights, strict=True):
                if s in (i, j):
                    other = j if s == i else i
                    h = int(world.image_offset[batch.titles[b, other]] + images[b, other])
                    crowd += w * max(0.0, float(world.embeddings[g] @ world.embeddings[h]))
            attention = math.exp(-cfg.row_decay * world.slot_rows[s] - cfg.col_decay * world.slot_cols[s])
            if cfg.page_effects:
                attention *= math.exp(-cfg.crowding * crowd)
            out[b, s] = attention * _sigmoid(start) * _sigmoid(quality)
    return out


@pytest.mark.parametrize(
    "switches",
    [{}, {"page_effects": False}, {"session_effects": False, "context_effects": False},
     {"familiarity_effects": False, "crowding": 1.0}],
    ids=["all-on", "no-page", "no-session-context", "no-familiarity"],
)  # fmt: skip
def test_respond_matches_brute_force(world, schedule, switches):
    cfg = world.config.response.model_copy(update=switches)
    rng = np.random.default_rng(1)
    state = initial_state(world)
    day = schedule.first_day + 1
    batch = schedule.batch(day, state).take(np.arange(4))
    n = batch.n_candidates
    batch = PageBatch(**{**{k: getattr(batch, k) for k in (
        "world", "member", "day", "hour", "device", "titles", "session_id", "page_id", "timestamp")},
        "previous": np.where(rng.random(n.shape) < 0.6, (rng.random(n.shape) * n).astype(np.int64), -1),
        "known": rng.random(n.shape) < 0.3})  # fmt: skip
    images = (rng.random(n.shape) * n).astype(np.int64)
    noticed = rng.random(n.shape) < 0.5
    fast = respond(batch, images, noticed, config=cfg).probability
    slow = brute_force_probability(world, batch, images, noticed, cfg)
    np.testing.assert_allclose(fast, slow, rtol=1e-10, atol=1e-14)


def test_candidate_probabilities_agree_with_respond_without_page_effects(world, schedule):
    cfg = world.config.response.model_copy(update={"page_effects": False})
    batch = schedule.batch(schedule.first_day, initial_state(world))
    cand = candidate_probabilities(batch, config=cfg)
    assert np.isnan(cand[~batch.candidates]).all() and np.isfinite(cand[batch.candidates]).all()
    for k in range(3):
        images = np.minimum(k, batch.n_candidates - 1)
        direct = respond(batch, images, config=cfg).probability
        np.testing.assert_allclose(np.take_along_axis(cand, images[..., None], axis=2)[..., 0], direct, rtol=1e-12)


def test_respond_rejects_images_outside_the_candidates(world, schedule):
    batch = schedule.batch(schedule.first_day, initial_state(world))
    images = np.zeros(batch.titles.shape, dtype=np.int64)
    images[0, 0] = 99
    with pytest.raises(InvalidProblemError, match=r"must name a candidate of each title; got 99"):
        respond(batch, images)
    with pytest.raises(InvalidProblemError, match=r"must be integers of shape"):
        respond(batch, images.astype(float))


# ---------------------------------------------------------------------- effects, one at a time
def test_page_effect_lowers_attention_of_images_like_their_neighbours(world, schedule):
    batch = schedule.batch(schedule.first_day, initial_state(world)).take(np.arange(6))
    n = batch.n_candidates
    rng = np.random.default_rng(0)
    images = (rng.random(n.shape) * n).astype(np.int64)
    base = respond(batch, images)
    # slot 9 (row 1, col 1) has 4 direct neighbours; give it, per page, its most and its least
    # crowded candidate and compare
    emb = batch.candidate_embeddings()
    slot = 9
    best_gap = []
    for b in range(batch.n_pages):
        cands = np.arange(n[b, slot])
        crowd = []
        for k in cands:
            trial = images.copy()
            trial[b, slot] = k
            crowd.append(respond(batch.take([b]), trial[[b]]).crowd[0, slot])
        lo_k, hi_k = cands[int(np.argmin(crowd))], cands[int(np.argmax(crowd))]
        if hi_k == lo_k:
            continue
        att = []
        for k in (lo_k, hi_k):
            trial = images[[b]].copy()
            trial[0, slot] = k
            att.append(respond(batch.take([b]), trial).attention[0, slot])
        assert att[0] > att[1]  # less alike its neighbours: more attention
        best_gap.append(att[0] - att[1])
    assert best_gap and emb.shape[-1] == world.config.embedding_dim
    off = respond(batch, images, config=world.config.response.model_copy(update={"page_effects": False}))
    assert (off.attention >= base.attention).all()
    np.testing.assert_allclose(off.attention, np.broadcast_to(world.position_bias, off.attention.shape))


@pytest.mark.parametrize(
    ("noticed_shift", "unnoticed_shift"), [(-0.8, 0.0), (0.8, 0.0), (0.0, -0.8), (0.0, 0.8), (-0.5, 0.5)]
)
def test_session_effects_move_in_the_configured_direction(world, noticed_shift, unnoticed_shift):
    cfg = world.config.response.model_copy(
        update={"change_noticed": noticed_shift, "change_unnoticed": unnoticed_shift}
    )
    members = np.arange(8)
    title = 5
    stay = _single_title_batch(world, members, title, previous=0)
    images = np.zeros(stay.titles.shape, dtype=np.int64)
    changed = images.copy()
    changed[:, 0] = 1
    for noticed_flag, shift in ((True, noticed_shift), (False, unnoticed_shift)):
        noticed = np.full(images.shape, noticed_flag)
        # compare the start probability of image 1 shown fresh vs. replacing image 0
        fresh = _single_title_batch(world, members, title, previous=-1)
        p_new = respond(fresh, changed, noticed, config=cfg).p_start[:, 0]
        p_changed = respond(stay, changed, noticed, config=cfg).p_start[:, 0]
        if shift < 0:
            assert (p_changed < p_new).all()
        elif shift > 0:
            assert (p_changed > p_new).all()
        else:
            np.testing.assert_allclose(p_changed, p_new)
    off = cfg.model_copy(update={"session_effects": False})
    fresh = _single_title_batch(world, members, title, previous=-1)
    np.testing.assert_allclose(
        respond(stay, changed, config=off).probability, respond(fresh, changed, config=off).probability
    )


def test_artwork_matters_less_for_known_titles(world):
    members = np.arange(world.n_members)
    title = int(np.argmax(world.n_images))
    unknown = candidate_probabilities(_single_title_batch(world, members, title, known=False))[:, 0]
    known = candidate_probabilities(_single_title_batch(world, members, title, known=True))[:, 0]
    n = world.n_images[title]
    spread = lambda p: np.log(p[:, :n] / (1 - p[:, :n])).std(axis=1)  # noqa: E731
    assert (spread(known) < spread(unknown)).all()
    cfg = world.config.response.model_copy(update={"familiarity_effects": False})
    np.testing.assert_allclose(
        candidate_probabilities(_single_title_batch(world, members, title, known=True), config=cfg),
        candidate_probabilities(_single_title_batch(world, members, title, known=False), config=cfg),
    )


def test_clickbait_raises_starts_and_lowers_quality(world):
    neutral = world.config.response.model_copy(update={"clickbait_start": 0.0, "clickbait_quality": 0.0})
    members = np.arange(world.n_members)
    net = []
    for g in np.flatnonzero(world.image_clickbait)[:8]:
        title = int(world.image_title[g])
        batch = _single_title_batch(world, members, title)
        images = np.zeros(batch.titles.shape, dtype=np.int64)
        images[:, 0] = int(g - world.image_offset[title])
        with_bait = respond(batch, images)
        without = respond(batch, images, config=neutral)
        assert (with_bait.p_start[:, 0] > without.p_start[:, 0]).all()
        assert (with_bait.p_quality[:, 0] < without.p_quality[:, 0]).all()
        plain = ~world.image_clickbait[batch.global_images(images)]
        np.testing.assert_allclose(with_bait.probability[plain], without.probability[plain])
        net.append(with_bait.probability[:, 0].mean() / without.probability[:, 0].mean())
    # with the default strengths click-bait images lose quality plays on average
    assert np.mean(net) < 0.9


def test_context_effects_depend_on_device_and_hour(world):
    title = int(np.argmax(world.n_images))
    members = np.arange(10)
    tv_evening = candidate_probabilities(_single_title_batch(world, members, title, device=0, hour=20.0))
    phone_morning = candidate_probabilities(_single_title_batch(world, members, title, device=1, hour=8.0))
    assert not np.allclose(tv_evening, phone_morning, equal_nan=True)
    off = world.config.response.model_copy(update={"context_effects": False})
    np.testing.assert_allclose(
        candidate_probabilities(_single_title_batch(world, members, title, device=0, hour=20.0), config=off),
        candidate_probabilities(_single_title_batch(world, members, title, device=1, hour=8.0), config=off),
    )


def test_restricted_schedule_keeps_those_members_pages(world, schedule):
    members = np.unique(schedule.member)[::3]
    sub = schedule.restrict(members)
    assert np.isin(sub.member, members).all() and sub.n_sessions == np.isin(schedule.member, members).sum()
    keep = np.isin(schedule.member, members)
    assert np.array_equal(sub.titles, schedule.titles[keep])
    assert np.array_equal(sub.page_id, schedule.page_id[keep])
    for day in sub.days:
        assert (sub.day[sub.sessions_of(day)] == day).all()
    only = make_schedule(world, n_days=3, seed=1, members=members)
    assert np.isin(only.member, members).all()
    with pytest.raises(InvalidProblemError, match="'members' parameter"):
        make_schedule(world, n_days=1, members=[world.n_members])
