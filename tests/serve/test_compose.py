"""compose(): the decision, request validation, stability across sessions, exploration, the problem it builds."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import slate.solvers.chain  # noqa: F401  (registers "chain")
from slate.errors import UnknownSolverError
from slate.page import Page, PageProblem
from slate.page.embeddings import ImageEmbeddings
from slate.page.layout import GridLayout
from slate.serve import (
    ComposeConfig,
    Composer,
    InvalidRequestError,
    PageDecision,
    PageRequest,
    StickyEpsilon,
    compose,
)
from slate.serve.composer import _build_problem, _layout, _similarity
from slate.stability import InMemoryStore, Reason, SQLiteStore, StabilityRules, plan_page

T0 = datetime(2024, 5, 1, 20, 0, tzinfo=timezone.utc)


def make_request(n_titles=12, n_images=4, *, member=1, session=1, when=T0, cols=4, locked=(), seed=0,
                 ragged=False, seen=()) -> PageRequest:
    rng = np.random.default_rng(seed)
    titles = []
    for t in range(n_titles):
        k = int(rng.integers(1, n_images + 1)) if ragged else n_images
        titles.append({"title_id": f"T{t}", "image_ids": [f"T{t}-I{i}" for i in range(k)],
                       "row": t // cols, "col": t % cols, "locked": t in locked})
    return PageRequest.model_validate({"member_id": member, "session_id": session, "timestamp": when,
                                       "titles": titles, "seen_title_ids": list(seen)})


class TableScorer:
    """Scores from a fixed table per title id (a stand-in for a bandit policy)."""

    def __init__(self, n_titles=200, n_images=8, seed=0, drift=0.0):
        self.table = np.random.default_rng(seed).uniform(0.01, 0.2, size=(n_titles, n_images))
        self.drift = drift
        self.calls = 0

    def score_page(self, request: PageRequest) -> np.ndarray:
        self.calls += 1
        out = np.zeros((request.n_titles, request.n_images))
        for t, title in enumerate(request.titles):
            row = int(title.title_id[1:])
            k = len(title.image_ids)
            noise = np.random.default_rng([row, request.session_id]).normal(0, self.drift, k)
            out[t, :k] = self.table[row, :k] + noise
        return out


def catalog_for(n_titles=200, n_images=8, dim=8, seed=0) -> ImageEmbeddings:
    ids = [f"T{t}-I{i}" for t in range(n_titles) for i in range(n_images)]
    return ImageEmbeddings(ids, np.random.default_rng(seed).normal(size=(len(ids), dim)))


def assert_valid(decision: PageDecision, request: PageRequest, previous: dict[str, str],
                 max_changes: int | None = None) -> None:
    """A valid page: a candidate per title, locks kept, budget kept, propensities in (0, 1]."""
    assert decision.title_ids == tuple(t.title_id for t in request.titles)
    changes = 0
    for t, title in enumerate(request.titles):
        image = decision.image_ids[t]
        assert image in title.image_ids
        prev = previous.get(title.title_id)
        if prev is not None and prev in title.image_ids:
            if title.locked:
                assert image == prev, f"locked {title.title_id} changed"
            changes += image != prev
    if max_changes is not None:
        assert changes <= max_changes
    assert ((decision.propensity > 0) & (decision.propensity <= 1)).all()
    assert decision.status in ("ok", "degraded", "fallback")
    assert (decision.status == "ok") == (not decision.faults)


def cfg(**kw) -> ComposeConfig:
    """A config with budgets no test machine misses (timing faults are tested on their own)."""
    budgets = {"solver_time_ms": 1000.0, "solver_grace_ms": 1000.0, "scoring_budget_ms": 1000.0,
               "store_budget_ms": 1000.0}
    return ComposeConfig(**{**budgets, **kw})


CONFIG = cfg(solver="independent")


def test_decision_fields_and_immutability():
    request = make_request()
    decision = compose(request, TableScorer(), InMemoryStore(), config=CONFIG)
    assert decision.status == "ok" and decision.faults == () and decision.solver_status == "feasible"
    assert decision.n_titles == 12 and len(decision.images) == 12
    assert_valid(decision, request, {})
    assert not decision.changed.any() and not decision.explored.any()
    assert (decision.propensity == 1).all()
    assert [Reason(int(r)) for r in decision.reason] == [Reason.NEW] * 12
    assert decision.objective is not None and decision.objective.n_changes == 0
    assert set(decision.timings_ms) >= {"validate", "store_get", "score", "plan", "problem", "solve",
                                        "explore", "store_put", "log", "total"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        decision.page_id = 3  # type: ignore[misc]
    with pytest.raises(ValueError, match="read-only"):
        decision.propensity[0] = 0.5
    summary = decision.to_dict()
    assert summary["titles"][0]["rule"] == "new" and summary["status"] == "ok"


def test_independent_page_is_the_argmax_of_scores():
    request = make_request(ragged=True, seed=4)
    scorer = TableScorer()
    scores = scorer.score_page(request)
    decision = compose(request, scorer, None, config=CONFIG)
    for t, title in enumerate(request.titles):
        k = len(title.image_ids)
        assert decision.image_ids[t] == title.image_ids[int(np.argmax(scores[t, :k]))]


def test_a_callable_policy_and_page_ids():
    request = make_request(n_titles=2, n_images=2)
    d1 = compose(request, lambda r: np.array([[0.1, 0.2], [0.3, 0.1]]), None, config=CONFIG)
    d2 = compose(request, lambda r: np.array([[0.1, 0.2], [0.3, 0.1]]), None, config=CONFIG)
    assert d1.image_ids == ("T0-I1", "T1-I0")
    assert d1.page_id != d2.page_id and d1.page_id >= 0
    fixed = request.model_copy(update={"page_id": 77})
    assert compose(fixed, lambda r: np.ones((2, 2)), None, config=CONFIG).page_id == 77


GOOD = {"member_id": 1, "session_id": 1, "titles": [{"title_id": "A", "image_ids": ["a1"], "row": 0, "col": 0}]}


def _with(**changes):
    data = {**GOOD, **changes}
    return data


def _title(**changes):
    return {**GOOD["titles"][0], **changes}


@pytest.mark.parametrize(
    ("request_data", "message"),
    [
        (_with(titles=[]), r"'titles' field of the page request is invalid \(Tuple should have at least 1"),
        (_with(member_id=2**63), r"'member_id' field .* got 9223372036854775808"),
        (_with(session_id="x"), r"'session_id' field"),
        (_with(extra=1), r"'extra' field .*Extra inputs are not permitted"),
        (_with(timestamp="2024-05-01T20:00:00"), r"'timestamp' field .*timezone"),
        (_with(titles=[_title(image_ids=[])]), r"'titles.0.image_ids' field"),
        (_with(titles=[_title(row=-1)]), r"'titles.0.row' field .*got -1"),
        (_with(titles=[_title(title_id="")]), r"'titles.0.title_id' field"),
        (_with(titles=[_title(), _title(col=1)]), r"titles.1.title_id: 'A' appears twice"),
        (_with(titles=[_title(), _title(title_id="B", image_ids=["b", "a1"], col=1)]),
         r"titles.1.image_ids: image 'a1' appears twice"),
        (_with(titles=[_title(image_ids=["a1", "a1"])]), r"image 'a1' appears twice"),
        (_with(titles=[_title(), _title(title_id="B", image_ids=["b"])]), r"position \(row=0, col=0\) is taken twice"),
        (_with(seen_title_ids=["Z"]), r"seen_title_ids: 'Z' is not a title of the page"),
        ([1, 2], r"must be a PageRequest or a mapping; got list"),
    ],
)
def test_malformed_requests_raise_naming_the_field(request_data, message):
    with pytest.raises(InvalidRequestError, match=message):
        compose(request_data, TableScorer(), None, config=CONFIG)


def test_misconfiguration_raises():
    with pytest.raises(UnknownSolverError, match="Unknown solver 'nope'"):
        compose(make_request(), TableScorer(), None, config=ComposeConfig(solver="nope"))
    with pytest.raises(InvalidRequestError, match="'policy' parameter of compose"):
        Composer(42, None)  # type: ignore[arg-type]


def sessions(composer: Composer, n_sessions: int, *, every=timedelta(hours=6), **request_kw):
    out = []
    for s in range(1, n_sessions + 1):
        request = make_request(session=s, when=T0 + (s - 1) * every, **request_kw)
        previous = dict(zip(out[-1].title_ids, out[-1].image_ids, strict=True)) if out else {}
        decision = composer.compose(request)
        out.append(decision)
        yield request, decision, previous


def test_dwell_holds_a_seen_image_for_n_sessions_then_frees_it():
    rules = StabilityRules(dwell_sessions=3, churn=0.0)
    composer = Composer(TableScorer(drift=0.05), InMemoryStore(),
                        config=cfg(solver="independent", stability=rules))
    history = [(r, d, p) for r, d, p in sessions(composer, 7)]
    reasons = [[Reason(int(x)).name for x in d.reason] for _, d, _ in history]
    assert set(reasons[0]) == {"NEW"}
    for _, d, p in history[1:]:
        dwell = d.reason == Reason.DWELL
        assert all(d.image_ids[t] == p[d.title_ids[t]] for t in np.flatnonzero(dwell))
        assert not d.changed[dwell].any()
    # drifting scores: some title is held in sessions 2-3 and changes image later
    assert all(set(r) == {"DWELL"} for r in reasons[1:3])
    assert "FREE" in reasons[3]
    assert sum(d.n_changed for _, d, _ in history[3:]) > 0
    for _, d, p in history:
        assert (d.changed == np.array([p.get(t) not in (None, i) for t, i in d.images.items()])).all()


def test_unseen_images_are_not_held_by_dwell():
    rules = StabilityRules(dwell_sessions=5, assume_seen=False)
    composer = Composer(TableScorer(drift=0.05), InMemoryStore(), config=cfg(solver="independent", stability=rules))
    composer.compose(make_request(session=1))
    d2 = composer.compose(make_request(session=2, seen=("T0", "T1"), when=T0 + timedelta(hours=1)))
    assert d2.reason[:2].tolist() == [Reason.DWELL] * 2
    assert set(d2.reason[2:].tolist()) == {Reason.FREE}


def test_budget_and_locks_hold_across_sessions_with_drifting_scores():
    rules = StabilityRules(max_changes=2, churn=0.0)
    store = InMemoryStore()
    composer = Composer(TableScorer(drift=0.08), store, config=cfg(solver="independent", stability=rules))
    total = 0
    for request, decision, previous in sessions(composer, 8, locked=(0, 5)):
        assert_valid(decision, request, previous, max_changes=2)
        assert decision.n_changed <= 2
        total += decision.n_changed
    assert total >= 7  # the budget binds, it does not freeze the page


def test_churn_penalty_cuts_changes():
    def changes(churn: float) -> int:
        rules = StabilityRules(churn=churn)
        c = Composer(TableScorer(drift=0.03), InMemoryStore(), config=cfg(solver="independent", stability=rules))
        return sum(d.n_changed for _, d, _ in sessions(c, 6))

    free, sticky = changes(0.0), changes(0.05)
    assert free > 10 and sticky < free / 3


def test_hysteresis_keeps_images_whose_rival_gains_little():
    def changes(min_gain: float | None) -> int:
        rules = StabilityRules(min_gain=min_gain, churn=0.0)
        c = Composer(TableScorer(drift=0.02), InMemoryStore(), config=cfg(solver="independent", stability=rules))
        return sum(d.n_changed for _, d, _ in sessions(c, 6))

    assert changes(0.03) < changes(None) / 3


def test_sticky_exploration_holds_the_draw_and_its_propensity():
    explore = StickyEpsilon(0.5, max_explored=3, sticky_sessions=3, sticky_days=None, seed=1)
    composer = Composer(TableScorer(drift=0.05), InMemoryStore(), explore,
                        config=cfg(solver="independent"))
    history = [d for _, d, _ in sessions(composer, 5)]
    first = history[0]
    assert 0 < first.n_explored <= 3
    assert (first.propensity < 1).all()  # every title was randomized (eligible)
    for later in history[1:3]:  # held for the next two sessions: same images, same propensities
        assert later.image_ids == first.image_ids
        assert np.array_equal(later.propensity, first.propensity)
        assert np.array_equal(later.explored, first.explored)
        assert (later.reason == Reason.STICKY).all()
        assert np.isnan(later.propensities).all()
    assert not (history[3].reason == Reason.STICKY).any()  # a new period: new draws
    assert history[3].n_explored <= 3


def test_exploration_never_breaks_the_budget_or_holds():
    explore = StickyEpsilon(1.0, max_explored=None, sticky_sessions=1, seed=2)
    rules = StabilityRules(max_changes=3, dwell_sessions=2, churn=0.0)
    composer = Composer(TableScorer(drift=0.05), InMemoryStore(), explore,
                        config=cfg(solver="independent", stability=rules))
    for request, decision, previous in sessions(composer, 6, locked=(1,)):
        assert_valid(decision, request, previous, max_changes=3)
        held = np.isin(decision.reason, [Reason.DWELL, Reason.LOCKED])
        assert not decision.explored[held].any() and not decision.changed[held].any()
        assert decision.n_explored <= 3


@settings(max_examples=25)
@given(st.integers(0, 10**6), st.integers(1, 14), st.integers(1, 5), st.one_of(st.none(), st.integers(0, 4)),
       st.floats(0, 1), st.booleans())
def test_random_pages_over_sessions_stay_valid(seed, n_titles, n_images, budget, eps, hysteresis):
    rules = StabilityRules(max_changes=budget, dwell_sessions=2, min_gain=0.01 if hysteresis else None)
    composer = Composer(TableScorer(drift=0.05, seed=seed % 7), InMemoryStore(),
                        StickyEpsilon(eps, max_explored=2, sticky_sessions=2, seed=seed),
                        config=cfg(solver="chain", stability=rules, layout="chain"))
    for request, decision, previous in sessions(composer, 3, n_titles=n_titles, n_images=n_images,
                                                 ragged=True, seed=seed, locked=(0,)):
        assert_valid(decision, request, previous, max_changes=budget)
        assert decision.status == "ok", decision.fault_details
        assert decision.n_explored <= 2


def test_sqlite_store_and_catalog_end_to_end(tmp_path):
    store = SQLiteStore(tmp_path / "state.db")
    catalog = catalog_for()
    config = cfg(solver="chain", layout="chain", diversity=0.1,
                           stability=StabilityRules(dwell_sessions=2))
    composer = Composer(TableScorer(), store, StickyEpsilon(0.2, seed=0), config=config, catalog=catalog)
    d1 = composer.compose(make_request(session=1))
    d2 = composer.compose(make_request(session=2, when=T0 + timedelta(days=5)))
    assert d1.status == d2.status == "ok"
    assert d1.objective is not None and d1.objective.diversity_penalty > 0
    assert (d2.reason != Reason.NEW).all()
    store.close()
    reopened = SQLiteStore(tmp_path / "state.db")
    assert reopened.get(1, list(d2.title_ids))["T0"].image_id == d2.image_ids[0]
    reopened.close()


def test_diversity_moves_neighbours_apart():
    """Two titles side by side whose best images look alike: with diversity on, one moves."""
    ids = ["T0-I0", "T0-I1", "T1-I0", "T1-I1"]
    emb = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.01], [-1.0, 1.0]])
    catalog = ImageEmbeddings(ids, emb)
    request = make_request(n_titles=2, n_images=2, cols=2)
    scores = lambda r: np.array([[0.20, 0.15], [0.20, 0.15]])  # noqa: E731
    plain = compose(request, scores, None, config=cfg(solver="chain", layout="chain"), catalog=catalog)
    assert plain.image_ids == ("T0-I0", "T1-I0")
    diverse = compose(request, scores, None, catalog=catalog,
                      config=cfg(solver="chain", layout="chain", diversity=0.2))
    assert diverse.image_ids != ("T0-I0", "T1-I0")
    assert diverse.objective is not None and diverse.objective.objective > 0.4 - 0.2 * 1.0


def test_missing_embeddings_are_reported_not_hidden():
    catalog = ImageEmbeddings(["T0-I0"], [[1.0, 0.0]])
    decision = compose(make_request(n_titles=2, n_images=2, cols=2), lambda r: np.ones((2, 2)), None,
                       config=cfg(solver="chain", layout="chain"), catalog=catalog)
    assert decision.status == "degraded" and [f.value for f in decision.faults] == ["embeddings_missing"]
    assert "3 images have no embedding" in decision.fault_details[0]


@pytest.mark.parametrize("layout", ["grid", "chain", "dense"])
def test_built_problem_equals_the_validated_constructor(layout):
    """compose() builds its PageProblem with the vectorised from_padded; it must equal from_arrays'."""
    request = make_request(n_titles=10, n_images=4, ragged=True, seed=2, locked=(3,))
    page = Page.of(request)
    scores = TableScorer().score_page(request)
    states = {}
    from slate.stability import TitleState

    for t in (1, 3, 4):
        states[f"T{t}"] = TitleState(request.titles[t].image_ids[0], 0.0, 1, 0, 0.0, True)
    rules = StabilityRules(min_gain=0.02, max_changes=2, dwell_sessions=None)
    plan = plan_page(rules, now=10.0, session_id=1, title_ids=page.title_ids, image_ids=page.image_ids,
                     candidates=page.candidates, locked=page.locked, states=states, scores=scores)
    catalog = catalog_for()
    pairs, weights = _layout(layout, page.rows, page.cols)
    sim, _ = _similarity(page, catalog, pairs, 0.1)
    built = _build_problem(page, plan, scores, pairs, weights, sim, diversity=0.1, churn=0.01,
                           max_changes=2, name="x")
    lay = {"grid": GridLayout(rows=3, cols=4), "chain": GridLayout.chain(rows=3, cols=4)}.get(layout)
    emb = catalog.unit[np.where(page.candidates, 0, 0)]  # placeholder shape, replaced below
    index = np.full(page.candidates.shape, catalog.missing_row)
    index[page.candidates] = catalog.rows([i for ids in page.image_ids for i in ids])
    emb = catalog.unit[index].astype(np.float64)
    kwargs = {"layout": lay} if lay is not None else {"pairs": pairs, "pair_weights": weights}
    reference = PageProblem.from_arrays(
        np.where(plan.solver_candidates, scores, 0.0), emb, candidates=plan.solver_candidates,
        previous=plan.previous, locked=plan.held, max_changes=2, diversity=0.1, churn=0.01,
        rows=page.rows, cols=page.cols, title_ids=page.title_ids, name="x",
        image_ids=[tuple(i for i, c in zip(ids, plan.solver_candidates[t], strict=False) if c)
                   for t, ids in enumerate(page.image_ids)],
        **kwargs,
    )
    for f in dataclasses.fields(PageProblem):
        if f.name.startswith("_") or f.name == "embeddings":
            continue
        a, b = getattr(built, f.name), getattr(reference, f.name)
        if isinstance(a, np.ndarray):
            assert a.shape == b.shape and np.allclose(a, b, atol=1e-6), f.name
        else:
            assert a == b, f.name


def test_one_composer_serves_from_several_threads(tmp_path):
    import threading

    store = SQLiteStore(tmp_path / "state.db", timeout_ms=5000)
    composer = Composer(TableScorer(drift=0.05), store, StickyEpsilon(0.2, seed=0),
                        config=cfg(solver="independent", stability=StabilityRules(max_changes=3)))
    errors: list[BaseException] = []

    def serve(worker: int) -> None:
        try:
            for s in range(30):
                d = composer.compose(make_request(member=worker, session=s, when=T0 + timedelta(hours=s)))
                assert d.status == "ok", d.fault_details
                assert d.n_changed <= 3
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=serve, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.close()
    assert not errors, errors[0]
    assert composer.stats_.pages == 120 and composer.stats_.statuses == {"ok": 120}


def test_stateless_serving_still_explores_with_exact_propensities():
    explore = StickyEpsilon(0.5, max_explored=None, seed=4)
    decisions = [compose(make_request(member=m), TableScorer(), None, explore, config=CONFIG) for m in range(20)]
    assert sum(d.n_explored for d in decisions) > 20
    for d in decisions:
        assert (d.propensity < 1).all() and np.allclose(d.propensities.sum(axis=1), 1.0)


def test_image_catalog_is_a_deprecated_alias_of_the_one_embeddings_class():
    from slate.serve import ImageCatalog

    ids, vectors = ["a", "b"], np.array([[3.0, 4.0], [0.0, 2.0]])
    with pytest.warns(DeprecationWarning, match="ImageCatalog is deprecated.*ImageEmbeddings"):
        cat = ImageCatalog(ids, vectors)
    with pytest.warns(DeprecationWarning):
        from_mapping = ImageCatalog({"a": [3.0, 4.0], "b": [0.0, 2.0]})
    emb = ImageEmbeddings(ids, vectors)
    assert type(cat) is type(from_mapping) is ImageEmbeddings
    assert isinstance(emb, ImageCatalog) and not isinstance(vectors, ImageCatalog)
    for other in (cat, from_mapping):  # the serving view, as ImageCatalog had it
        assert other.image_ids == emb.image_ids and np.array_equal(other.unit, emb.unit)
        assert other.unit.dtype == np.float32 and other.missing_row == len(other) == 2 and other.dim == 2
        assert other.rows(["b", "zz", "a"]).tolist() == [1, 2, 0] and other.embeddings is other
    units, n_missing = emb.page_units([("b", "zz"), ["a"]], 2)
    assert n_missing == 1 and units.dtype == np.float32
    np.testing.assert_array_equal(units, emb.unit[[[1, 2], [0, 2]]])
    assert not emb.unit.flags.writeable
