"""``ReplayOptions``: one set of options and defaults for evaluate, evaluate_stream and
evaluate_dask; keyword calls give what the options object gives; unknown keywords are named."""

from __future__ import annotations

import dataclasses

import pytest

from slate.errors import UnknownOptionError
from slate.logs import write_impressions
from slate.logs.parquet import example_table
from slate.replay import ReplayOptions, UniformPolicy, evaluate, evaluate_dask, evaluate_stream
from slate.tune.config import EstimatorSpec


def test_options_are_frozen_and_share_one_set_of_defaults():
    o = ReplayOptions()
    assert o.n_bootstrap == 1000 and o.estimator == "snips" and o.seed == 0 and o.level == 0.95
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.n_bootstrap = 0  # type: ignore[misc]


@pytest.mark.parametrize("fn", [evaluate, evaluate_stream])
def test_an_options_object_gives_what_the_keywords_give(fn, tmp_path):
    path = write_impressions(tmp_path / "log.parquet", example_table())
    by_keywords = fn(path, UniformPolicy(), ["snips", "ips"], n_bootstrap=20, seed=3, level=0.9)
    opts = ReplayOptions(estimator=("snips", "ips"), n_bootstrap=20, seed=3, level=0.9)
    assert fn(path, UniformPolicy(), options=opts).to_dict() == by_keywords.to_dict()
    mixed = fn(path, UniformPolicy(), "ips", options=dataclasses.replace(opts, seed=1), seed=3)
    assert mixed.to_dict()["estimates"]["ips"] == by_keywords.to_dict()["estimates"]["ips"]
    # one default everywhere: n_bootstrap=1000 unless asked otherwise
    assert fn(path, UniformPolicy()).options["n_bootstrap"] == 1000


@pytest.mark.parametrize("fn", [evaluate, evaluate_stream, evaluate_dask])
def test_an_unknown_keyword_is_named(fn, tmp_path):
    path = write_impressions(tmp_path / "log.parquet", example_table())
    with pytest.raises(UnknownOptionError, match=rf"'n_bootstraps' for {fn.__name__}; its options are estimator, "):
        fn(path, UniformPolicy(), n_bootstraps=5)
    with pytest.raises(UnknownOptionError, match="must be a ReplayOptions"):
        fn(path, UniformPolicy(), options={"n_bootstrap": 5})


def test_a_sweep_estimator_spec_is_a_thin_adapter_onto_replay_options():
    spec = EstimatorSpec(name="ips", n_bootstrap=30, level=0.9)
    o = spec.replay_options(seed=4, metrics=False)
    assert (o.estimator.name, o.n_bootstrap, o.level, o.seed, o.metrics) == ("ips", 30, 0.9, 4, False)
    assert evaluate(example_table(), UniformPolicy(), options=o).estimate.interval_method == "bootstrap"
