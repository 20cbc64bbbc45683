"""The three-objective front on paired differences, under constraints, and the indistinguishable set."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slate.tune import Constraints, front, pareto_mask, recommend
from slate.tune.pareto import feasible_mask

B = 200


def replicates(take, noise, seed):
    """Paired replicates: a shared page effect plus each point's own noise of scale ``noise``."""
    rng = np.random.default_rng(seed)
    page = rng.normal(0.0, 1.0, B)
    own = rng.normal(0.0, 1.0, (len(take), B)) * np.asarray(noise)[:, None]
    return np.asarray(take)[:, None] + page[None, :] + own


def clearly_dominates(j, i, t, d, c, R, level=0.95):
    """The definition, one pair at a time."""
    if not (t[j] >= t[i] and d[j] >= d[i] and c[j] <= c[i]):
        return False
    clear_take = np.quantile(R[j] - R[i], (1 - level) / 2) > 0
    return bool(clear_take or d[j] > d[i] or c[j] < c[i])


grid = st.integers(0, 3).map(lambda v: v / 3)          # few values: ties are common
point = st.tuples(st.integers(0, 6).map(lambda v: v / 100), grid, grid, st.sampled_from([0.0, 0.002, 0.05]))


@settings(max_examples=60, deadline=None)
@given(st.lists(point, min_size=1, max_size=8), st.integers(0, 2**16),
       st.sampled_from([None, 0.34, 0.67]))
def test_paired_front_matches_the_definition(points, seed, max_churn):
    t, d, c, noise = (np.array(x, dtype=np.float64) for x in zip(*points, strict=True))
    R = replicates(t, noise, seed)
    cons = Constraints(max_churn=max_churn)
    mask = front(t, d, c, replicates=R, constraints=cons)
    ok, _ = feasible_mask(t, d, c, cons)
    n = len(t)
    for i in range(n):
        if not ok[i]:
            assert not mask[i]                                     # constraints filter first
            continue
        beaten = any(clearly_dominates(j, i, t, d, c, R) for j in range(n) if j != i and ok[j])
        # no marked point is clearly dominated; every unmarked feasible point is
        assert mask[i] == (not beaten)
    # the plain front of the feasible points is inside the paired front
    plain = front(t, d, c, replicates=R, paired=False, constraints=cons)
    assert (mask | ~plain).all()
    if ok.any():
        assert plain[ok].tolist() == pareto_mask(t[ok], d[ok], c[ok]).tolist()


def test_paired_is_the_default_with_replicates_and_needs_them():
    t, d, c = [0.10, 0.099], [0.3, 0.3], [0.1, 0.1]
    R = replicates(t, [0.05, 0.05], 0)
    assert front(t, d, c).tolist() == [True, False]                      # plain: 0.10 > 0.099
    assert front(t, d, c, replicates=R).tolist() == [True, True]         # noise: both stay
    assert front(t, d, c, replicates=R, paired=False).tolist() == [True, False]
    with pytest.raises(ValueError, match="paired bootstrap replicates"):
        front(t, d, c, paired=True)


def test_a_point_without_replicates_is_compared_on_estimates():
    t, d, c = [0.10, 0.099, 0.05], [0.3, 0.3, 0.3], [0.1, 0.1, 0.1]
    R = replicates(t, [0.05, 0.05, 0.05], 1)
    R[1] = np.nan
    assert front(t, d, c, replicates=R).tolist() == [True, False, False]


def test_constraints_filter_before_the_front():
    # point 0 beats point 1 everywhere, but breaks churn <= 0.2: point 1 is then on the front
    t, d, c = [0.20, 0.10, 0.05], [0.5, 0.4, 0.3], [0.3, 0.2, 0.1]
    R = replicates(t, [0.001] * 3, 2)
    assert front(t, d, c, replicates=R).tolist() == [True, True, True]     # churn trades off
    d2 = [0.5, 0.4, 0.4]
    c2 = [0.1, 0.1, 0.1]
    assert front(t, d2, c2, replicates=R).tolist() == [True, False, False]
    cons = Constraints(max_churn=0.2, min_diversity=0.35)
    assert front(t, d, c, replicates=R, constraints=cons).tolist() == [False, True, False]


def test_indistinguishable_from_the_recommended_point():
    rng = np.random.default_rng(3)
    page = rng.normal(0.0, 1.0, 500)
    take = np.array([0.100, 0.099, 0.098, 0.050, 0.099])
    own = rng.normal(0.0, 0.01, (5, 500))
    R = take[:, None] + page[None, :] + own
    cols = {"take_fraction": take, "diversity": [0.3] * 5, "churn": [0.05, 0.05, 0.05, 0.05, 0.4]}
    rec = recommend(cols, Constraints(max_churn=0.1), replicates=R)
    assert rec.index == 0
    # 1 and 2 are within noise, 3 is clearly worse, 4 breaks the constraint
    assert rec.indistinguishable == (1, 2)
    lo = np.quantile(R[[1, 2]] - R[0], 0.025, axis=1)
    hi = np.quantile(R[[1, 2]] - R[0], 0.975, axis=1)
    assert (lo <= 0).all() and (hi >= 0).all()
    assert np.quantile(R[3] - R[0], 0.975) < 0
    assert recommend(cols, Constraints(max_churn=0.1)).indistinguishable == ()     # no replicates
