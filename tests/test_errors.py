"""One home for exceptions: every public exception class slate defines lives in ``slate.errors``
(private control-flow exceptions inside one module excepted)."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import slate.errors as errors

PACKAGE = Path(errors.__file__).parent


def _exception_classes_defined_outside_errors() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "errors.py" and path.parent == PACKAGE:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_") and any(
                isinstance(b, ast.Name) and (b.id.endswith("Error") or b.id.endswith("Exception"))
                for b in node.bases
            ):
                found.append(f"{path.relative_to(PACKAGE.parent)}: {node.name}")
    return found


def test_every_exception_class_is_defined_in_errors():
    assert _exception_classes_defined_outside_errors() == []


def test_every_public_exception_is_a_slate_error_and_listed():
    classes = {n: c for n, c in inspect.getmembers(errors, inspect.isclass) if c.__module__ == errors.__name__}
    assert set(classes) == set(errors.__all__)
    assert all(issubclass(c, errors.SlateError) for c in classes.values())


@pytest.mark.parametrize(
    ("lookup", "error"),
    [
        (lambda: __import__("slate.solvers", fromlist=["get_solver"]).get_solver("nope"), errors.UnknownSolverError),
        (lambda: __import__("slate.replay", fromlist=["get_estimator"]).get_estimator("nope"), errors.UnknownEstimatorError),
        (lambda: __import__("slate.bandit", fromlist=["make_policy"]).make_policy("nope"), errors.UnknownPolicyError),
        (lambda: __import__("slate.stability", fromlist=["make_store"]).make_store("nope"), errors.UnknownStoreError),
    ],
    ids=["solver", "estimator", "policy", "store"],
)
def test_unknown_names_raise_one_family_with_a_readable_message(lookup, error):
    with pytest.raises(errors.UnknownNameError) as info:
        lookup()
    assert isinstance(info.value, error) and isinstance(info.value, KeyError)
    text = str(info.value)
    assert "nope" in text and not text.startswith(("'", '"'))  # not KeyError's quoted repr


def test_moved_exceptions_are_still_importable_from_their_modules():
    from slate.bandit.base import UnknownPolicyError
    from slate.logs.parquet import InvalidLogError
    from slate.replay.estimators import UnknownEstimatorError
    from slate.replay.metrics import InvalidEmbeddingsError
    from slate.replay.policy import InvalidReplayInputError
    from slate.serve.request import InvalidRequestError
    from slate.sim.config import InvalidConfigError
    from slate.tune.config import InvalidExperimentError
    from slate.tune.sweep import SweepError

    assert {UnknownPolicyError, InvalidLogError, UnknownEstimatorError, InvalidEmbeddingsError,
            InvalidReplayInputError, InvalidRequestError, InvalidConfigError, InvalidExperimentError,
            SweepError} <= {getattr(errors, n) for n in errors.__all__}


@pytest.mark.parametrize(
    ("make", "kind"),
    [
        (lambda: __import__("slate.solvers", fromlist=["x"]).get_solver("fast", sede=1), "solver 'fast'"),
        (lambda: __import__("slate.bandit", fromlist=["x"]).make_policy("linucb", sede=1), "policy 'linucb'"),
        (lambda: __import__("slate.replay", fromlist=["x"]).get_estimator("snips", sede=1), "estimator 'snips'"),
        (lambda: __import__("slate.stability", fromlist=["x"]).make_store("memory", sede=1), "store 'memory'"),
    ],
    ids=["solver", "policy", "estimator", "store"],
)
def test_a_misspelt_option_is_named_in_one_dialect_for_every_registry(make, kind):
    with pytest.raises(errors.UnknownOptionError, match=rf"^Unknown option 'sede' for {kind}; its options are ") as info:
        make()
    assert isinstance(info.value, TypeError)  # still what a bad keyword argument raises


def test_registries_say_publicly_what_a_factory_takes():
    from slate.bandit import POLICIES
    from slate.replay import ESTIMATORS
    from slate.solvers import SOLVERS
    from slate.stability import STORES

    assert SOLVERS.takes("fast", "seed") and not SOLVERS.takes("exact", "patience")
    assert "alpha" in POLICIES.parameters("linucb")
    assert ESTIMATORS.canonical("SelfNormalizedIPS") == "snips"
    assert "path" in STORES.parameters("sqlite")
