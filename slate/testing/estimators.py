"""The off-policy estimator contract as runnable checks (in the spirit of scikit-learn's
``check_estimator``).

Every estimator slate ships passes :func:`check_estimator`; a third-party
:class:`~slate.replay.Estimator` can be checked the same way::

    from slate.testing import check_estimator
    check_estimator(lambda: MyEstimator())

Each check takes a factory returning a fresh estimator and raises :class:`AssertionError` naming
what broke. They run on a small seeded log (:func:`example_log`: uniform-random logging with full
propensities on a 2x3 grid, ids ``T<t>`` and ``T<t>-I<k>``) and three targets defined by image
ids, so they do not depend on row order: a deterministic one (each title's first candidate), the
logging policy itself (on-policy) and one that never shows the logged image (no match). An
estimator that needs a reward model (``needs_reward_model``) gets each image's mean reward. The
checks, in :data:`ESTIMATOR_CHECKS`:

- the estimator follows the :class:`~slate.replay.Estimator` protocol; a registered one comes back
  from the registry under its name, and every option of its factory is documented;
- an estimate is an :class:`~slate.replay.Estimate` with status ``"ok"``, a finite value, a
  non-negative standard error, a finite interval containing the value and at least one matched
  row; or a status other than ``"ok"`` with a reason and a NaN value (never a silent 0);
- it is the same when the log's rows are shuffled (value and standard error);
- on the on-policy target, an estimator that needs no reward model gives the logged mean reward
  (its importance weights are all 1);
- the same seed gives the same estimate;
- a bad ``n_bootstrap`` or ``level`` raises a :class:`ValueError` (slate's estimators:
  :class:`~slate.replay.InvalidReplayInputError`).

Examples
--------
>>> from slate.replay import SelfNormalizedIPS
>>> check_estimator(SelfNormalizedIPS)
['estimator_follows_the_protocol', 'estimate_is_honest', 'invariant_to_row_order', 'on_policy_gives_the_logged_mean', 'is_deterministic', 'refuses_bad_options']
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np
from numpy.typing import NDArray

from slate.logs.log import ImpressionLog
from slate.logs.parquet import impressions_table, validate_impressions
from slate.replay.estimators import ESTIMATORS, Estimate, Estimator, ReplayData
from slate.replay.policy import ActionDistribution

__all__ = ["ESTIMATOR_CHECKS", "check_estimator", "example_log", "targets"]

EstimatorFactory = Callable[[], Any]

_ROWS, _COLS = 2, 3


@cache
def example_log(seed: int = 0, n_pages: int = 80, shuffled: bool = False) -> ImpressionLog:
    """A small seeded impressions log: ``n_pages`` pages of a 2x3 grid, titles ``T0..T5``, 2-4
    candidates ``T<t>-I<k>`` each, uniform-random logging with full propensities, Bernoulli
    rewards whose rate depends on the image. ``shuffled`` permutes its rows (same content)."""
    rng = np.random.default_rng(seed)
    n_titles = _ROWS * _COLS
    n_cand = 2 + np.arange(n_titles) % 3
    rate = 0.05 + 0.3 * rng.random((n_titles, 4))
    n = n_pages * n_titles
    title = np.tile(np.arange(n_titles), n_pages)
    k = n_cand[title]
    shown = (rng.random(n) * k).astype(np.int64)
    reward = (rng.random(n) < rate[title, shown]).astype(np.int8)
    order = rng.permutation(n) if shuffled else np.arange(n)
    cands = [[f"T{t}-I{j}" for j in range(n_cand[t])] for t in range(n_titles)]
    table = impressions_table(
        member_id=(np.repeat(np.arange(n_pages), n_titles) % 17)[order],
        session_id=np.repeat(np.arange(n_pages), n_titles)[order],
        page_id=np.repeat(np.arange(n_pages), n_titles)[order] + 1000,
        timestamp=np.repeat(np.arange(n_pages), n_titles)[order] * 1_000_000,
        title_id=[f"T{t}" for t in title[order]],
        row=(title // _COLS)[order],
        col=(title % _COLS)[order],
        image_id=[cands[t][s] for t, s in zip(title[order], shown[order], strict=True)],
        candidate_ids=[cands[t] for t in title[order]],
        propensity=(1.0 / k)[order],
        propensities=[[1.0 / n_cand[t]] * n_cand[t] for t in title[order]],
        explored=np.ones(n, dtype=bool),
        reward=reward[order],
    )
    log, report = validate_impressions(table, source="<slate.testing example log>")
    assert report.n_rejected == 0, report
    return log


def _image_names(log: ImpressionLog) -> NDArray[np.str_]:
    return np.asarray(log.image_ids, dtype=str)


def targets(log: ImpressionLog) -> dict[str, ActionDistribution]:
    """The checks' targets on ``log``: ``"first"`` (each title's first candidate), ``"on_policy"``
    (the logging distribution) and ``"no_match"`` (never the logged image)."""
    assert log.propensities is not None, "the log needs full propensities"
    n = log.n_rows
    shown = np.asarray(log.shown, dtype=np.int64)
    k = np.asarray(log.n_candidates, dtype=np.int64)
    k_max = log.candidates.shape[1]

    def one_hot(choice: NDArray[np.int64], name: str) -> ActionDistribution:
        probs = np.zeros((n, k_max))
        probs[np.arange(n), choice] = 1.0
        return ActionDistribution.from_probs(probs, shown, name=name, n_candidates=k)

    return {
        "first": one_hot(np.zeros(n, dtype=np.int64), "first candidate"),
        "on_policy": ActionDistribution.from_probs(log.propensities, shown, name="logging policy", n_candidates=k),
        "no_match": one_hot((shown + 1) % k, "never the logged image"),
    }


def _reward_model(log: ImpressionLog) -> NDArray[np.float64]:
    """Each candidate's mean logged reward (by image id: independent of row order)."""
    names = _image_names(log)
    shown_names = names[log.image]
    means = {name: float(log.reward[shown_names == name].mean()) for name in np.unique(shown_names)}
    q = np.zeros(log.candidates.shape)
    for (r, j), code in np.ndenumerate(log.candidates):
        if code >= 0:
            q[r, j] = means.get(str(names[code]), 0.0)
    return q


def _estimate(estimator: Any, log: ImpressionLog, target: str, **options: Any) -> Estimate:
    model = _reward_model(log) if getattr(estimator, "needs_reward_model", False) else None
    data = ReplayData.build(log, targets(log)[target], model)
    result: Estimate = estimator.estimate(data, **options)
    return result


def _same(a: float, b: float, rel: float = 1e-9) -> bool:
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=rel, abs_tol=1e-12)


def check_estimator_follows_the_protocol(factory: EstimatorFactory) -> None:
    """An :class:`~slate.replay.Estimator`; a registered one round-trips through the registry and
    documents every option of its factory."""
    est = factory()
    assert isinstance(est, Estimator), f"{type(est).__name__} lacks name/estimate"
    assert isinstance(est.name, str) and est.name, f"the estimator's name is {est.name!r}"
    if est.name not in ESTIMATORS:
        return
    assert ESTIMATORS.canonical(est.name) == est.name, f"{est.name!r} is not the registry's short name"
    registered = ESTIMATORS.factory(est.name)
    if isinstance(registered, type):
        assert isinstance(est, registered), f"the registry's {est.name!r} builds {registered.__name__}"
    doc = inspect.getdoc(registered) or ""
    init_doc = inspect.getdoc(getattr(registered, "__init__", None)) or ""
    for option in ESTIMATORS.parameters(est.name):
        assert option in doc or option in init_doc, f"{est.name!r}: option {option!r} is not documented"


def check_estimate_is_honest(factory: EstimatorFactory) -> None:
    """Status "ok" with a finite value inside a finite interval, or another status with a reason
    and a NaN value."""
    log = example_log()
    for target in ("first", "on_policy", "no_match"):
        for n_bootstrap in (0, 200):
            e = _estimate(factory(), log, target, n_bootstrap=n_bootstrap, seed=0, level=0.9)
            who = f"target {target!r}, n_bootstrap={n_bootstrap}"
            assert isinstance(e, Estimate), f"{who}: estimate returned {type(e).__name__}"
            if e.status == "ok":
                lo, hi = e.interval
                assert math.isfinite(e.value) and math.isfinite(lo) and math.isfinite(hi), f"{who}: {e}"
                assert e.se >= 0 and lo <= e.value <= hi, f"{who}: value {e.value} outside [{lo}, {hi}]"
                assert e.level == 0.9 and e.n_bootstrap == n_bootstrap, f"{who}: level/n_bootstrap not kept"
                assert e.n_matched > 0, f"{who}: status 'ok' but no row matches the target (say so instead)"
            else:
                assert e.reason, f"{who}: status {e.status!r} without a reason"
                assert math.isnan(e.value), f"{who}: status {e.status!r} with a value {e.value} (not NaN)"


def check_invariant_to_row_order(factory: EstimatorFactory) -> None:
    """Shuffling the log's rows changes neither the value nor the standard error."""
    for target in ("first", "on_policy"):
        a = _estimate(factory(), example_log(), target, n_bootstrap=0, seed=0)
        b = _estimate(factory(), example_log(shuffled=True), target, n_bootstrap=0, seed=0)
        assert a.status == b.status, f"target {target!r}: status {a.status} vs {b.status} after shuffling"
        assert _same(a.value, b.value) and _same(a.se, b.se), (
            f"target {target!r}: {a.value} ± {a.se} in order, {b.value} ± {b.se} shuffled"
        )


def check_on_policy_gives_the_logged_mean(factory: EstimatorFactory) -> None:
    """With the logging policy as target, an estimator without a reward model estimates the
    logged mean reward (its weights are all 1). Estimators with a reward model, given
    (``needs_reward_model``) or fitted on the log (``fits_reward_model``, e.g. page-aware DR), are
    exempt: their direct-method part equals the logged mean only in expectation."""
    est = factory()
    if getattr(est, "needs_reward_model", False) or getattr(est, "fits_reward_model", False):
        return
    log = example_log()
    e = _estimate(est, log, "on_policy", n_bootstrap=0, seed=0)
    mean = float(log.reward.mean())
    assert e.status == "ok" and _same(e.value, mean), f"on-policy estimate {e.value}, logged mean {mean}"


def check_is_deterministic(factory: EstimatorFactory) -> None:
    """The same seed gives the same estimate, bootstrap interval included."""
    a = _estimate(factory(), example_log(), "first", n_bootstrap=100, seed=3)
    b = _estimate(factory(), example_log(), "first", n_bootstrap=100, seed=3)
    for key, x in a.to_dict().items():
        y = b.to_dict()[key]
        same = all(_same(float(u), float(v), 0.0) for u, v in zip(x, y, strict=True)) if isinstance(x, list) else (
            _same(float(x), float(y), 0.0) if isinstance(x, float) else x == y
        )
        assert same, f"{key}: {x} then {y} with the same seed"


def check_refuses_bad_options(factory: EstimatorFactory) -> None:
    """A negative ``n_bootstrap`` or a ``level`` outside (0, 1) raises a ValueError."""
    for options in ({"n_bootstrap": -1}, {"level": 1.5}, {"level": 0.0}):
        try:
            _estimate(factory(), example_log(), "first", **{"n_bootstrap": 0, **options})
        except ValueError:
            continue
        raise AssertionError(f"{options} was accepted")


ESTIMATOR_CHECKS: tuple[Callable[[EstimatorFactory], None], ...] = (
    check_estimator_follows_the_protocol,
    check_estimate_is_honest,
    check_invariant_to_row_order,
    check_on_policy_gives_the_logged_mean,
    check_is_deterministic,
    check_refuses_bad_options,
)
"""Every check of the estimator contract, in order."""


def check_estimator(factory: EstimatorFactory) -> list[str]:
    """Run every check of :data:`ESTIMATOR_CHECKS` on estimators made by ``factory``; return
    their names.

    Parameters
    ----------
    factory : callable() -> Estimator
        Returns a fresh estimator (an estimator class without required options will do).

    Raises
    ------
    AssertionError
        The first check that fails, naming what broke.
    """
    for check in ESTIMATOR_CHECKS:
        check(factory)
    return [check.__name__.removeprefix("check_") for check in ESTIMATOR_CHECKS]
