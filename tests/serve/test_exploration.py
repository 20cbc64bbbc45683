"""Exploration: exact propensities under an exploration budget, checked by enumeration and by sampling."""

from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from slate.errors import InvalidProblemError
from slate.serve import NoExploration, StickyEpsilon, explore_probability


def brute_force_q(n: int, eps: Fraction, m: int | None) -> Fraction:
    """P(title 0 explored), enumerating every coin outcome and the uniform choice of m of them."""
    total = Fraction(0)
    for coins in itertools.product((0, 1), repeat=n):
        if not coins[0]:
            continue
        k = sum(coins)
        p = eps**k * (1 - eps) ** (n - k)
        total += p * (Fraction(1) if m is None or k <= m else Fraction(m, k))
    return total


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
@pytest.mark.parametrize("m", [None, 0, 1, 2, 4])
@pytest.mark.parametrize("eps", [Fraction(1, 20), Fraction(1, 3), Fraction(1)])
def test_explore_probability_matches_enumeration(n, m, eps):
    assert explore_probability(n, float(eps), m) == pytest.approx(float(brute_force_q(n, eps, m)), abs=1e-12)


def test_explore_probability_edge_cases():
    assert explore_probability(0, 0.5, 2) == 0.0
    assert explore_probability(10, 0.0, 2) == 0.0
    assert explore_probability(10, 1.0, 3) == pytest.approx(0.3)  # every coin comes up: 3 of 10 kept


def _page(n=6, k=4, seed=0):
    rng = np.random.default_rng(seed)
    candidates = np.arange(k)[None, :] < rng.integers(1, k + 1, size=n)[:, None]
    exploit = (rng.random(n) * candidates.sum(axis=1)).astype(np.int64)
    eligible = (candidates.sum(axis=1) >= 2) & (rng.random(n) < 0.8)
    return exploit, candidates, eligible


@given(st.integers(0, 10_000), st.floats(0.0, 1.0), st.one_of(st.none(), st.integers(0, 4)))
def test_draw_invariants(seed, eps, m):
    exploit, cand, eligible = _page(seed=seed % 50)
    d = StickyEpsilon(eps, max_explored=m, seed=1).draw(exploit, cand, eligible, max_changes=None, key=(seed, 3))
    n = len(exploit)
    assert cand[np.arange(n), d.shown].all()
    assert (d.shown[~eligible] == exploit[~eligible]).all()
    assert not d.explored[~eligible].any()
    assert (d.drawn == (eligible if eps > 0 else False)).all()
    if m is not None:
        assert d.explored.sum() <= m
    assert np.allclose(d.propensities.sum(axis=1), 1.0)
    assert ((d.propensities > 0) <= cand).all()  # support inside the candidates
    assert np.allclose(d.propensity, d.propensities[np.arange(n), d.shown])
    assert ((d.propensity > 0) & (d.propensity <= 1)).all()


def test_draw_is_reproducible_and_keyed():
    exploit, cand, eligible = _page(n=30, k=5)
    e = StickyEpsilon(0.4, max_explored=None, seed=2)
    a = e.draw(exploit, cand, eligible, max_changes=None, key=(1, 2))
    b = e.draw(exploit, cand, eligible, max_changes=None, key=(1, 2))
    c = e.draw(exploit, cand, eligible, max_changes=None, key=(1, 3))
    assert (a.shown == b.shown).all() and (a.explored == b.explored).all()
    assert not ((a.shown == c.shown).all() and (a.explored == c.explored).all())
    negative = e.draw(exploit, cand, eligible, max_changes=None, key=(-(2**63), 2))  # int64 ids
    assert negative.shown.shape == exploit.shape


def test_shown_frequencies_match_logged_propensities():
    """Over 8k pages (different members), how often each image is shown matches the logged
    propensity: every cell within 4.5 standard errors, and a chi-square test per title."""
    from scipy.stats import chi2

    exploit, cand, eligible = _page(n=8, k=4, seed=3)
    explore = StickyEpsilon(0.3, max_explored=2, seed=11)
    n_pages = 8_000
    counts = np.zeros(cand.shape)
    expected = None
    for member in range(n_pages):
        d = explore.draw(exploit, cand, eligible, max_changes=None, key=(member, 1))
        counts[np.arange(len(exploit)), d.shown] += 1
        expected = d.propensities
    assert expected is not None
    freq = counts / n_pages
    se = np.sqrt(expected * (1 - expected) / n_pages) + 1e-12
    assert (np.abs(freq - expected) <= 4.5 * se + 1e-9).all()
    for t in np.flatnonzero(eligible):
        e = expected[t][cand[t]] * n_pages
        stat = (((counts[t][cand[t]] - e) ** 2) / e).sum()
        assert stat < chi2.ppf(0.9999, df=int(cand[t].sum()) - 1)


def test_budget_shares_the_change_budget():
    e = StickyEpsilon(0.1, max_explored=3)
    assert e.page_budget(None) == 3 and e.page_budget(2) == 2
    assert e.reserve(10, None) == 0  # no change budget: nothing to reserve
    assert e.reserve(10, 8) == 3 and e.reserve(1, 8) == 1 and e.reserve(10, 2) == 2
    assert StickyEpsilon(0.0).reserve(10, 8) == 0
    assert StickyEpsilon(0.1, max_explored=None).reserve(10, 4) == 4
    assert NoExploration().reserve(10, 4) == 0 and NoExploration().sticky is None


def test_explored_titles_respect_the_page_change_budget():
    exploit, cand, eligible = _page(n=12, k=3, seed=5)
    e = StickyEpsilon(1.0, max_explored=None)
    d = e.draw(exploit, cand, eligible, max_changes=2, key=(0, 0))
    assert d.explored.sum() == min(2, eligible.sum())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"epsilon": 1.5}, "'epsilon' parameter of StickyEpsilon must be a number in"),
        ({"epsilon": True}, "'epsilon'"),
        ({"max_explored": -1}, "'max_explored'"),
        ({"sticky_sessions": 0}, "'sticky_sessions'"),
        ({"sticky_days": -1.0}, "'sticky_days'"),
        ({"seed": -3}, "'seed'"),
    ],
)
def test_bad_parameters(kwargs, message):
    with pytest.raises(InvalidProblemError, match=message):
        StickyEpsilon(**kwargs)
