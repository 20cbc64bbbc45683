"""Options objects of the functions that had many parameters: the object and the old keyword
calls give the same result; an unknown keyword is named."""

from __future__ import annotations

import numpy as np
import pytest

from slate.bandit import FeatureBuilder, FeatureInputs
from slate.bandit.requests import FeatureConfig
from slate.errors import InvalidProblemError, UnknownOptionError
from slate.logs import ImpressionArrays, impressions_table
from slate.page.random import RandomProblemOptions, random_problem
from slate.sim.demo import DemoOptions, run_demo

COLUMNS = dict(
    member_id=[1, 2], session_id=[1, 2], page_id=[7, 8], timestamp=[0, 5], title_id=["T1", "T1"],
    row=[0, 0], col=[0, 0], image_id=["T1-a", "T1-b"], candidate_ids=np.array([["T1-a", "T1-b"]] * 2),
    propensity=[0.5, 0.5], explored=[True, True], reward=[1, 0], engagement=[0.5, 1.0],
)


def test_impressions_table_takes_an_impression_arrays_or_the_same_keywords():
    assert impressions_table(ImpressionArrays(**COLUMNS)).equals(impressions_table(**COLUMNS))
    with pytest.raises(TypeError, match="not both"):
        impressions_table(ImpressionArrays(**COLUMNS), reward=[0, 0])
    with pytest.raises(TypeError, match=r"impressions_table: .*'rewards'"):
        impressions_table(**{**COLUMNS, "rewards": [1, 1]})
    with pytest.raises(TypeError, match=r"impressions_table: .*'reward'"):
        impressions_table(**{k: v for k, v in COLUMNS.items() if k != "reward"})


def test_encode_takes_feature_inputs_or_the_same_keywords():
    builder = FeatureBuilder(FeatureConfig(genres=("a", "b"), aesthetics=("x",), embedding_dim=0))
    rng = np.random.default_rng(0)
    arrays = dict(genre_affinity=rng.random((3, 2)), themes=rng.random((3, 4, 2)) < 0.5, hour=np.array([1.0, 5.0, 23.0]),
                  country=np.array([0, -1, 3]))
    by_keywords = builder.encode(**arrays)
    assert np.array_equal(builder.encode(FeatureInputs(**arrays)), by_keywords)
    assert builder.encode(FeatureInputs(**arrays), dtype=np.float32).dtype == np.float32
    with pytest.raises(TypeError, match=r"encode: .*'hours'"):
        builder.encode(**arrays, hours=np.zeros(3))
    with pytest.raises(TypeError, match="not both"):
        builder.encode(FeatureInputs(**arrays), hour=np.zeros(3))
    with pytest.raises(InvalidProblemError, match=r"'hour' field must be in 0..23"):
        builder.encode(**{**arrays, "hour": np.array([1.0, 2.0, 24.0])})


def test_random_problem_options_and_keyword_overrides_agree():
    a = random_problem(8, 3, "chain", seed=2, max_changes=None, locked_share=0.5)
    b = random_problem(8, 3, "chain", seed=2, options=RandomProblemOptions(max_changes=None, locked_share=0.5))
    c = random_problem(8, 3, "chain", seed=2, options=RandomProblemOptions(max_changes=None), locked_share=0.5)
    for other in (b, c):
        assert np.array_equal(a.scores, other.scores) and np.array_equal(a.locked, other.locked)
        assert a.max_changes is None and other.max_changes is None
    with pytest.raises(UnknownOptionError, match="Unknown option 'budget' for random_problem; its options are dim"):
        random_problem(8, 3, budget=2)


def test_run_demo_refuses_unknown_options_and_bad_heldout_days_before_doing_anything(tmp_path):
    with pytest.raises(UnknownOptionError, match="Unknown option 'n_member' for run_demo"):
        run_demo(tmp_path / "out", n_member=10)
    with pytest.raises(InvalidProblemError, match=r"'heldout_days' parameter of run_demo must be in 1..3; got 4"):
        run_demo(tmp_path / "out", options=DemoOptions(n_days=4), heldout_days=4)
    assert not (tmp_path / "out").exists()
