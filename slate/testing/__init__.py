"""The conformance kit: the contracts of slate's pluggable parts as runnable checks, for the
built-in implementations and for a third party's (compare scikit-learn's ``check_estimator`` and
cvxpy's solver test helpers). See ``docs/plugins.md``.

One shape for the three kits: ``check_<part>(factory, **traits)`` runs every check of
``<PART>_CHECKS`` on objects made by ``factory`` (a fresh one per check) and returns the names of
the checks it ran; each check is a function ``check_<what>(factory, ...)`` raising
:class:`AssertionError` that names what broke, so a test suite can run them one by one
(``pytest.mark.parametrize("check", SOLVER_CHECKS)``).

- :func:`check_solver` -- :mod:`slate.testing.solvers` (valid pages, true objective, brute force,
  determinism, errors for bad input); :func:`~slate.testing.solvers.check_instances` adds
  certified instances;
- :func:`check_estimator` -- :mod:`slate.testing.estimators` (honest estimates, row-order
  invariance, on-policy mean, determinism, registry round-trip, documented options);
- :func:`check_store` -- :mod:`slate.testing.stores` (the state-store contract).

Examples
--------
>>> from slate.testing import ESTIMATOR_CHECKS, SOLVER_CHECKS, STORE_CHECKS
>>> "no_lost_updates_under_threads" in [check.__name__.removeprefix("check_") for check in STORE_CHECKS]
True
>>> len(SOLVER_CHECKS), len(ESTIMATOR_CHECKS)
(5, 6)
"""

from slate.testing.estimators import ESTIMATOR_CHECKS, check_estimator
from slate.testing.solvers import SOLVER_CHECKS, SolverTraits, check_instances, check_solver
from slate.testing.stores import STORE_CHECKS, check_store

__all__ = [
    "ESTIMATOR_CHECKS",
    "SOLVER_CHECKS",
    "STORE_CHECKS",
    "SolverTraits",
    "check_estimator",
    "check_instances",
    "check_solver",
    "check_store",
]
