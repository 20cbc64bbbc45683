"""Experiments as files: a TOML file validated once, at the boundary, by frozen pydantic models.

An experiment names where the pages come from (an impression log with image embeddings, or a
simulated world), the scoring policy, the solver, the replay estimator, the search over the
fields of :class:`slate.serve.ComposeConfig` (diversity, churn, change budget, dwell, ``min_gain``,
exploration rate and its stickiness; same names and meaning) and the user's constraints::

    name = "diversity-vs-churn"
    seed = 0

    [data]
    kind = "log"                       # or "sim"
    path = "exploration.parquet"       # slate.impressions/1
    embeddings = "images.parquet"      # image_id, embedding (list of floats) [, style]

    [policy]
    kind = "bandit"
    name = "take_rate"
    train_fraction = 0.5               # fit on the first half of the log (by time), evaluate the rest

    [search]
    kind = "grid"
    diversity = { min = 0.0, max = 2.0, n = 10 }
    churn = [0.0, 0.05, 0.1, 0.2, 0.4]
    dwell_sessions = ["none", 3]       # "none": the rule is off
    min_gain = ["none", 0.01]

    [constraints]
    max_churn = 0.10

Relative paths are read from the experiment file's folder. :func:`load_experiment` turns any
validation error into an :class:`InvalidExperimentError` whose message names the field (dotted
path) and what was received.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path, PurePath, PureWindowsPath
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from slate.errors import InputFileError, InvalidExperimentError, ResourceLimitError
from slate.limits import check_limit, check_nesting, read_text_file

if TYPE_CHECKING:
    from slate.replay.options import ReplayOptions

__all__ = [
    "Axis",
    "ComputeSpec",
    "Constraints",
    "EstimatorSpec",
    "Experiment",
    "GridSearch",
    "InvalidExperimentError",
    "LayoutSpec",
    "LogData",
    "PolicySpec",
    "RandomSearch",
    "SimData",
    "SolverSpec",
    "Span",
    "SweepPoint",
    "check_paths_inside",
    "experiment_from_dict",
    "load_experiment",
]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# ---------------------------------------------------------------------- search axes
class Span(_Frozen):
    """A range of a weight: ``n`` evenly spaced values for a grid, or a sampling range.

    ``scale = "log"`` spaces (or samples) the values evenly in log space and needs ``min > 0``.
    """

    min: float = Field(ge=0, allow_inf_nan=False)
    max: float = Field(ge=0, allow_inf_nan=False)
    n: int | None = Field(default=None, ge=1, le=10_000)
    scale: Literal["linear", "log"] = "linear"

    @model_validator(mode="after")
    def _check(self) -> Span:
        if self.max < self.min:
            raise ValueError(f"max must be >= min; got min={self.min}, max={self.max}")
        if self.scale == "log" and self.min <= 0:
            raise ValueError(f"a log scale needs min > 0; got min={self.min}")
        return self

    def grid(self) -> list[float]:
        """The ``n`` grid values (``n`` is required for a grid)."""
        if self.n is None:
            raise ValueError("a range on a grid needs n (the number of values)")
        if self.scale == "log":
            values = np.geomspace(self.min, self.max, self.n)
        else:
            values = np.linspace(self.min, self.max, self.n)
        return [float(v) for v in values]

    def sample(self, rng: np.random.Generator, size: int) -> list[float]:
        """``size`` values drawn uniformly (in log space for ``scale = "log"``)."""
        if self.scale == "log":
            values = np.exp(rng.uniform(np.log(self.min), np.log(self.max), size))
        else:
            values = rng.uniform(self.min, self.max, size)
        return [float(v) for v in values]


NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Budget = int | Literal["none"]
MaybeOff = float | Literal["none"]
"""A value of a rule that can be off: a number, or ``"none"`` (the rule is off, ``None`` in
:class:`slate.serve.ComposeConfig`)."""

# the stability and stickiness axes: (minimum, whether the minimum is allowed, must be an integer)
_OPTIONAL_AXES: dict[str, tuple[float, bool, bool]] = {
    "dwell_sessions": (1, True, True),
    "dwell_days": (0, False, False),
    "min_gain": (0, True, False),
    "sticky_sessions": (1, True, True),
    "sticky_days": (0, True, False),
}

Axis = Annotated[list[NonNegative], Field(min_length=1)] | Span
"""A weight axis: an explicit list of values, or a :class:`Span`."""


def _budget_values(values: list[Budget]) -> list[Budget]:
    for v in values:
        if isinstance(v, int) and v < 0:
            raise ValueError(f"a change budget must be an integer >= 0 or \"none\"; got {v}")
        if isinstance(v, int) and v > 2**31 - 1:
            raise ValueError(f"a change budget must be at most 2**31 - 1 (or \"none\"); got {v}")
    if not values:
        raise ValueError("at least one change budget is needed (\"none\" for no budget)")
    return values


def _optional_values(name: str, values: list[MaybeOff]) -> list[MaybeOff]:
    low, inclusive, integer = _OPTIONAL_AXES[name]
    if not values:
        raise ValueError("at least one value is needed (\"none\" to turn the rule off)")
    for v in values:
        if v == "none":
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"a value must be a number or \"none\"; got {v!r}")
        if integer and float(v) != int(v):
            raise ValueError(f"a value must be an integer or \"none\"; got {v!r}")
        if v < low or (v == low and not inclusive):
            sign = ">=" if inclusive else ">"
            raise ValueError(f"a value must be {sign} {low:g} or \"none\"; got {v!r}")
    return [v if v == "none" else (int(v) if integer else float(v)) for v in values]


class _SearchBase(_Frozen):
    weights: Literal["relative", "absolute"] = Field(
        default="absolute",
        description="relative: a weight is multiplied, page by page, by the mean best score of the page",
    )
    dwell_sessions: list[MaybeOff] = Field(
        default=["none"], description="ComposeConfig.stability.dwell_sessions (an integer >= 1, or \"none\")")
    dwell_days: list[MaybeOff] = Field(
        default=["none"], description="ComposeConfig.stability.dwell_days (a number > 0, or \"none\")")
    min_gain: list[MaybeOff] = Field(
        default=["none"], description="ComposeConfig.stability.min_gain (a number >= 0, or \"none\")")
    sticky_sessions: list[MaybeOff] = Field(
        default=[1], description="ComposeConfig.exploration.sticky_sessions (an integer >= 1, or \"none\"); "
        "the default 1 re-draws every session")
    sticky_days: list[MaybeOff] = Field(
        default=["none"], description="ComposeConfig.exploration.sticky_days (a number >= 0, or \"none\")")

    @field_validator(*_OPTIONAL_AXES, mode="before")
    @classmethod
    def _optional_axis(cls, value: Any, info: Any) -> Any:
        if not isinstance(value, list):
            raise ValueError(f"must be a list of values (\"none\" turns the rule off); got {value!r}")
        return _optional_values(info.field_name, value)

    def optional_sizes(self) -> list[int]:
        """Number of values of each stability and stickiness axis."""
        return [len(getattr(self, name)) for name in _OPTIONAL_AXES]

    @field_validator("exploration", check_fields=False)
    @classmethod
    def _exploration_range(cls, value: Any) -> Any:
        values = value.grid() if isinstance(value, Span) and value.n is not None else (
            [value.min, value.max] if isinstance(value, Span) else value
        )
        bad = [v for v in values if not 0.0 <= v <= 1.0]
        if bad:
            raise ValueError(f"an exploration rate must be in [0, 1]; got {bad[0]}")
        return value


class GridSearch(_SearchBase):
    """Every combination of the listed values (ranges need ``n``)."""

    kind: Literal["grid"] = "grid"
    diversity: Axis = [0.0]
    churn: Axis = [0.0]
    max_changes: list[Budget] = ["none"]
    exploration: Axis = [0.0]

    @field_validator("max_changes")
    @classmethod
    def _budgets(cls, value: list[Budget]) -> list[Budget]:
        return _budget_values(value)

    @model_validator(mode="after")
    def _spans_have_n(self) -> GridSearch:
        for name in ("diversity", "churn", "exploration"):
            axis = getattr(self, name)
            if isinstance(axis, Span) and axis.n is None:
                raise ValueError(f"search.{name} is a range on a grid and needs n (the number of values)")
        sizes: list[int] = [int(axis.n or 0) if isinstance(axis, Span) else len(axis)
                            for axis in (self.diversity, self.churn, self.exploration)]
        # checked before any point is built: 10,000^3 points would be 10^12 tuples
        check_limit("max_grid_points", math.prod([*sizes, len(self.max_changes), *self.optional_sizes()]),
                    "grid points")
        return self


class RandomSearch(_SearchBase):
    """``n_points`` settings drawn at random (seeded by the experiment's seed).

    A list axis is sampled uniformly among its values; a :class:`Span` uniformly in its range.
    """

    kind: Literal["random"] = "random"
    n_points: int = Field(ge=1, le=100_000)

    @field_validator("n_points")
    @classmethod
    def _n_points(cls, value: int) -> int:
        check_limit("max_grid_points", value, "random search points")
        return value
    diversity: Axis = [0.0]
    churn: Axis = [0.0]
    max_changes: list[Budget] = ["none"]
    exploration: Axis = [0.0]

    @field_validator("max_changes")
    @classmethod
    def _budgets(cls, value: list[Budget]) -> list[Budget]:
        return _budget_values(value)


# ---------------------------------------------------------------------- data, policy, solver
class LogData(_Frozen):
    """Pages from an impression log (``slate.impressions/1``) plus the images' embeddings.

    ``embeddings`` is a Parquet file with a string column ``image_id``, a list-of-floats column
    ``embedding`` (one length) and optionally a string column ``style`` used to colour the page
    plots (without it, styles are k-means clusters of the embeddings).
    """

    kind: Literal["log"] = "log"
    path: str = Field(min_length=1)
    embeddings: str = Field(min_length=1)


class SimData(_Frozen):
    """Pages from a simulated world (:mod:`slate.sim`): an exploration log plus ground truth.

    The logging policy runs for ``train_days`` days (the policy's training log, when it learns)
    and then ``n_days`` days whose pages are re-optimised and evaluated. ``truth = "all"``
    simulates every point on-policy on those days (its true take fraction, diversity and churn if
    deployed); ``"none"`` skips it.
    """

    kind: Literal["sim"] = "sim"
    world: dict[str, Any] = Field(default_factory=dict, description="fields of slate.sim.WorldConfig")
    n_days: int = Field(default=7, ge=1, le=3650)
    train_days: int = Field(default=0, ge=0, le=3650)
    schedule_seed: int = Field(default=0, ge=0, le=2**63 - 1)
    logging: Literal["uniform", "epsilon_greedy"] = "uniform"
    logging_epsilon: float = Field(default=0.2, ge=0, le=1)
    logging_seed: int = Field(default=0, ge=0, le=2**63 - 1)
    truth: Literal["all", "none"] = "all"

    @field_validator("world")
    @classmethod
    def _world(cls, value: dict[str, Any]) -> dict[str, Any]:
        from slate.sim.config import WorldConfig, make_config

        unknown = sorted(set(value) - set(WorldConfig.model_fields))
        if unknown:
            raise ValueError(
                f"unknown field '{unknown[0]}' of the simulated world; known fields: "
                f"{', '.join(sorted(WorldConfig.model_fields))}"
            )
        config = make_config(**value)  # raises InvalidConfigError (a ValueError) naming the field
        if config.n_days < 1:  # pragma: no cover - guarded by WorldConfig itself
            raise ValueError("the world needs at least one day")
        return value


class PolicySpec(_Frozen):
    """Where the scores of every (page, title, image) come from.

    ``kind = "bandit"``: a :mod:`slate.bandit` policy by registry name, fitted on a training log
    (``train_path``, or the first ``train_fraction`` of the log's pages by time; for simulated
    data, the ``train_days``). Its predicted quality-play probability (``PageScores.mean``) is
    the score; the log's inline ``features`` are the context (a constant feature without them).
    ``kind = "oracle"`` (simulated data only): the world's true page-blind probabilities.
    ``kind = "scorer"`` (logged data): the team's own scorer, the one ``compose()`` serves with:
    ``scorer = "module:function"`` (resolved from the experiment's folder and the working
    directory first, then the installed packages; see :mod:`slate.serve.scorer`) called on each
    logged page rebuilt as a request, or ``scores = "FILE.parquet"`` (``member_id``,
    ``title_id``, ``image_id``, ``score`` [, ``session_id``]).
    """

    kind: Literal["bandit", "oracle", "scorer"] = "bandit"
    name: str = "take_rate"
    params: dict[str, float | int | str | bool] = Field(default_factory=dict)
    train_path: str | None = None
    train_fraction: float = Field(default=0.0, ge=0, lt=1)
    scorer: str | None = None
    scores: str | None = None

    @model_validator(mode="after")
    def _scorer_source(self) -> PolicySpec:
        if self.kind == "scorer" and (self.scorer is None) == (self.scores is None):
            raise ValueError("a 'scorer' policy needs exactly one of scorer = \"module:function\" "
                             "or scores = \"FILE.parquet\"")
        if self.kind != "scorer" and (self.scorer is not None or self.scores is not None):
            raise ValueError("'scorer' and 'scores' apply to kind = \"scorer\" only")
        return self

    @field_validator("name")
    @classmethod
    def _known_policy(cls, value: str) -> str:
        from slate.bandit import available_policies

        if value not in available_policies():
            raise ValueError(f"unknown policy {value!r}; available: {', '.join(available_policies())}")
        return value


class LayoutSpec(_Frozen):
    """Weights of layout pairs (see :class:`slate.page.GridLayout`); positions come from the pages."""

    neighbour: float = Field(default=1.0, ge=0, allow_inf_nan=False)
    same_row: float = Field(default=0.1, ge=0, allow_inf_nan=False)
    same_row_decay: float = Field(default=1.0, ge=0, allow_inf_nan=False)
    vertical: float = Field(default=0.5, ge=0, allow_inf_nan=False)


class SolverSpec(_Frozen):
    """The page solver (a :func:`slate.solvers.available_solvers` name) and its options.

    For ``fast`` the sweep turns the upper bound off unless ``options`` say otherwise (a sweep
    needs pages, not optimality certificates).
    """

    name: str = "fast"
    options: dict[str, float | int | str | bool] = Field(default_factory=dict)
    time_limit_ms: float | None = Field(default=None, gt=0, allow_inf_nan=False)

    @field_validator("name")
    @classmethod
    def _known_solver(cls, value: str) -> str:
        from slate.errors import UnknownSolverError
        from slate.tune.engine import ensure_solver

        try:
            ensure_solver(value)
        except UnknownSolverError as err:
            raise ValueError(str(err)) from None
        return value


    @model_validator(mode="after")
    def _options(self) -> SolverSpec:
        from slate.errors import InvalidProblemError
        from slate.solvers import get_solver

        try:
            get_solver(self.name, **self.options)
        except InvalidProblemError as err:
            raise ValueError(str(err)) from None
        return self


class EstimatorSpec(_Frozen):
    """The replay estimator (a :func:`slate.replay.available_estimators` name, or ``"auto"``), its
    options (e.g. ``{neighbours = "grid", self_normalized = true}`` for ``neighbourhood``) and its
    interval.

    ``"auto"`` (the default) lets the sweep choose: ``page-aware`` when page effects are
    configured (simulator) or detected in the log, per-title ``snips`` otherwise
    (:mod:`slate.tune.estimator_choice`); the sweep says which it used and why."""

    name: str = "auto"
    options: dict[str, str | float | int | bool] = Field(default_factory=dict)
    n_bootstrap: int = Field(default=1000, ge=0, le=1_000_000)
    level: float = Field(default=0.95, gt=0, lt=1)

    @field_validator("name")
    @classmethod
    def _known_estimator(cls, value: str) -> str:
        from slate.replay import available_estimators

        if value != "auto" and value not in available_estimators():
            raise ValueError(f"unknown estimator {value!r}; available: {', '.join(available_estimators())}")
        return value

    @model_validator(mode="after")
    def _options(self) -> EstimatorSpec:
        from slate.replay import get_estimator

        if self.name == "auto":
            if self.options:
                raise ValueError("the 'auto' estimator takes no options; name the estimator to pass them")
            return self
        from slate.tune.estimator_choice import NEEDS_EMBEDDINGS

        options: dict[str, Any] = dict(self.options)
        if self.name in NEEDS_EMBEDDINGS:
            options.setdefault("embeddings", "the sweep's images")  # given by the sweep, from its data
        try:
            get_estimator(self.name, **options)
        except (TypeError, ValueError) as err:
            raise ValueError(f"invalid options {dict(self.options)} for estimator {self.name!r}: {err}") from None
        return self

    def replay_options(self, seed: int | None = 0, **overrides: Any) -> ReplayOptions:
        """These settings as the :class:`~slate.replay.ReplayOptions` a sweep replays with
        (the estimator built with its options; ``overrides`` are further fields)."""
        from slate.replay import ReplayOptions, get_estimator

        return ReplayOptions(estimator=get_estimator(self.name, **self.options),
                             n_bootstrap=self.n_bootstrap, seed=seed,
                             level=self.level).with_overrides("EstimatorSpec", **overrides)


class Constraints(_Frozen):
    """What the user requires of a recommended setting (point estimates; churn and diversity
    are exact properties of the decisions on the logged pages)."""

    max_churn: float | None = Field(default=None, ge=0, le=1)
    min_diversity: float | None = Field(default=None, le=1, allow_inf_nan=False)
    min_take_fraction: float | None = Field(default=None, ge=0, le=1)
    allow_unproven: bool = Field(
        default=False,
        description="recommend the best point even when its weights exploded or its interval does "
        "not lie above the logging policy's take fraction",
    )


class ComputeSpec(_Frozen):
    """Where the work runs. Does not change any number (it is not part of the config hash).

    ``scheduler``: ``"local"`` (a dask ``LocalCluster`` of ``n_workers`` processes), ``"threads"``
    (a ``LocalCluster`` of threads in this process), ``"sync"`` (no dask, in this process), or
    the address of a running dask scheduler (``"tcp://host:8786"``).
    """

    scheduler: str = "local"
    n_workers: int = Field(default=2, ge=1, le=1024)
    block_pages: int = Field(default=250, ge=1, le=10_000_000, description="pages per solve task (whole members)")
    progress: bool = True
    solve_cache: str | None = Field(
        default=None,
        description="folder (relative to the experiment file) where page solves are kept by content "
        "hash, so experiments that differ only in estimator, exploration or constraints reuse them",
    )

    @field_validator("solve_cache")
    @classmethod
    def _cache_inside(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = PurePath(value).parts
        if not value.strip() or PurePath(value).is_absolute() or PureWindowsPath(value).is_absolute() or ".." in parts:
            raise ValueError(
                f"compute.solve_cache must be a folder inside the experiment's folder (a relative "
                f"path without '..'); got {value!r}"
            )
        return value

    @field_validator("scheduler")
    @classmethod
    def _scheduler(cls, value: str) -> str:
        if value in ("local", "threads", "sync") or "://" in value:
            return value
        raise ValueError(
            f"scheduler must be 'local', 'threads', 'sync' or a scheduler address like "
            f"'tcp://host:8786'; got {value!r}"
        )


# ---------------------------------------------------------------------- the experiment
class SweepPoint(_Frozen):
    """One setting of the weights: the fields of :class:`slate.serve.ComposeConfig` a sweep varies
    (``None``: the rule is off)."""

    point: int
    diversity: float
    churn: float
    max_changes: int | None
    exploration: float
    dwell_sessions: int | None = None
    dwell_days: float | None = None
    min_gain: float | None = None
    sticky_sessions: int | None = 1
    sticky_days: float | None = None

    @property
    def solve_key(self) -> tuple[float, float, int | None, int | None, float | None, float | None]:
        """What the page solver sees: ``(diversity, churn, max_changes, dwell_sessions,
        dwell_days, min_gain)`` (exploration and its stickiness are applied after solving)."""
        return (self.diversity, self.churn, self.max_changes, self.dwell_sessions, self.dwell_days,
                self.min_gain)


def _kind(default: str | None) -> Any:
    def get(value: Any) -> str | None:
        kind = value.get("kind", default) if isinstance(value, dict) else getattr(value, "kind", default)
        return kind if isinstance(kind, str) else None

    return get


_PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,99}")

_HASHED = ("data", "policy", "layout", "solver", "estimator", "search", "seed")


class Experiment(_Frozen):
    """A whole experiment, validated.

    Examples
    --------
    >>> exp = experiment_from_dict({
    ...     "data": {"kind": "sim", "world": {"n_members": 40, "n_titles": 60}},
    ...     "policy": {"kind": "oracle"},
    ...     "search": {"diversity": [0.0, 0.5], "churn": [0.0, 0.2]},
    ... })
    >>> len(exp.points()), exp.points()[3].diversity, exp.points()[3].churn
    (4, 0.5, 0.2)
    >>> len(exp.config_hash())
    16
    """

    name: str = "sweep"
    seed: int = Field(default=0, ge=0, le=2**63 - 1)
    data: Annotated[
        Annotated[LogData, Tag("log")] | Annotated[SimData, Tag("sim")], Discriminator(_kind(None))
    ]
    policy: PolicySpec = PolicySpec()
    layout: LayoutSpec | None = None
    solver: SolverSpec = SolverSpec()
    estimator: EstimatorSpec = EstimatorSpec()
    search: Annotated[
        Annotated[GridSearch, Tag("grid")] | Annotated[RandomSearch, Tag("random")], Discriminator(_kind("grid"))
    ] = GridSearch()
    constraints: Constraints = Constraints()
    compute: ComputeSpec = ComputeSpec()
    compose: dict[str, Any] | None = Field(
        default=None,
        description="the ComposeConfig served today: the fields a sweep does not vary (dwell, "
        "min_gain, layout, budgets, solver time) of recommended-compose.json; not hashed",
    )

    @field_validator("compose")
    @classmethod
    def _compose_config(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            from slate.serve import ComposeConfig

            ComposeConfig.model_validate(value)  # a ValidationError names the field
        return value

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if not _PLAIN_NAME.fullmatch(value):
            raise ValueError(
                "name must be a plain name (letters, digits, '.', '_', '-'; 1-100 characters, not "
                f"starting with '.' or '-'): it names the results folder; got {value!r}"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Experiment:
        if self.policy.kind == "oracle" and self.data.kind != "sim":
            raise ValueError("policy.kind = 'oracle' needs simulated data (data.kind = 'sim')")
        if self.policy.kind == "scorer" and self.data.kind != "log":
            raise ValueError("policy.kind = 'scorer' scores logged pages (data.kind = 'log')")
        if self.data.kind == "sim" and self.policy.train_path is not None:
            raise ValueError("policy.train_path is for logs; simulated data trains on data.train_days")
        if self.data.kind == "sim" and self.policy.kind == "bandit" and self.data.train_days == 0:
            raise ValueError("a bandit policy on simulated data needs data.train_days >= 1 to learn from")
        return self

    def points(self) -> list[SweepPoint]:
        """The settings to evaluate, in a fixed order (grid: diversity, churn, budget, dwell
        sessions, dwell days, min_gain, exploration, sticky sessions, sticky days nested with
        the last fastest; random: seeded draws)."""
        s = self.search
        budgets: list[int | None] = [None if b == "none" else int(b) for b in s.max_changes]
        optional = [[None if v == "none" else v for v in getattr(s, name)] for name in _OPTIONAL_AXES]
        dwell_s, dwell_d, gain, sticky_s, sticky_d = optional
        if isinstance(s, GridSearch):
            combos: list[tuple[Any, ...]] = [
                (d, c, b, e, ds, dd, g, ss, sd)
                for d, c, b, ds, dd, g, e, ss, sd in itertools.product(
                    _values(s.diversity), _values(s.churn), budgets, dwell_s, dwell_d, gain,
                    _values(s.exploration), sticky_s, sticky_d)
            ]
        else:
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, 7]))
            n = s.n_points
            cols: list[list[Any]] = []
            for axis in (s.diversity, s.churn):
                cols.append(axis.sample(rng, n) if isinstance(axis, Span) else _choose(rng, axis, n))
            cols.append(_choose(rng, budgets, n))
            cols.append(
                s.exploration.sample(rng, n) if isinstance(s.exploration, Span) else _choose(rng, s.exploration, n)
            )
            # drawn after the original axes, so adding them leaves earlier experiments' points as they were
            cols += [values * n if len(values) == 1 else _choose(rng, values, n) for values in optional]
            combos = list(zip(*cols, strict=True))
        return [
            SweepPoint(point=i, diversity=float(d), churn=float(c), max_changes=b, exploration=float(e),
                       dwell_sessions=ds, dwell_days=dd, min_gain=g, sticky_sessions=ss, sticky_days=sd)
            for i, (d, c, b, e, ds, dd, g, ss, sd) in enumerate(combos)
        ]

    def hashed_dict(self) -> dict[str, Any]:
        """The fields that determine the numbers of the results table (JSON-ready)."""
        dumped = self.model_dump(mode="json")
        return {k: dumped[k] for k in _HASHED}

    def solve_hash(self) -> str:
        """First 16 hex digits of the SHA-256 of what determines the page *solves*: data, policy,
        layout, solver, seed, the distinct solver settings and whether weights are relative.

        Two experiments with the same solve hash (e.g. differing only in estimator, exploration
        rates or constraints) make the same decisions, so ``compute.solve_cache`` lets them share
        the solves.

        Examples
        --------
        >>> base = {"data": {"kind": "sim", "world": {"n_members": 40, "n_titles": 60}},
        ...         "policy": {"kind": "oracle"}, "search": {"diversity": [0.0, 0.5]}}
        >>> a = experiment_from_dict(base)
        >>> b = experiment_from_dict({**base, "estimator": {"name": "ips"}})
        >>> a.config_hash() == b.config_hash(), a.solve_hash() == b.solve_hash()
        (False, True)
        """
        hashed = self.hashed_dict()
        keyed = {k: hashed[k] for k in ("data", "policy", "layout", "solver", "seed")}
        keyed["settings"] = list(dict.fromkeys(p.solve_key for p in self.points()))
        keyed["relative"] = self.search.weights == "relative"
        text = json.dumps(keyed, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def config_hash(self) -> str:
        """First 16 hex digits of the SHA-256 of :meth:`hashed_dict` as canonical JSON.

        Where the work runs (``compute``), the constraints (applied to the finished table) and
        the name do not enter the hash.
        """
        text = json.dumps(self.hashed_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _values(axis: Any) -> list[float]:
    return axis.grid() if isinstance(axis, Span) else [float(v) for v in axis]


def _choose(rng: np.random.Generator, values: list[Any], n: int) -> list[Any]:
    idx = rng.integers(0, len(values), n)
    return [values[int(i)] for i in idx]


# ---------------------------------------------------------------------- loading
_BRANCH_ERRORS = ("model_type", "dict_type", "list_type", "model_attributes_type")


def _where(loc: tuple[Any, ...], what: str) -> str:
    parts = [str(p) for p in loc]
    # drop the tags and branch names pydantic puts in the location of union members
    parts = [p for p in parts if p not in ("log", "sim", "grid", "random", "Span")]
    parts = [p for p in parts if not p.startswith(("list[", "function-after[", "int", "literal["))]
    return ".".join(parts) or what


def _message(err: ValidationError, what: str) -> str:
    errors = err.errors()
    # an input of one union branch also fails the other branches with a type error: skip those
    real = [e for e in errors if e["type"] not in _BRANCH_ERRORS] or errors
    first = real[0]
    where = _where(first["loc"], what)
    got = first.get("input")
    msg = str(first["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    msg = msg.rstrip(".")
    if first["type"] == "extra_forbidden":
        return f"The experiment has an unknown field '{where}' (got {got!r}); check its spelling."
    if first["type"] == "missing":
        return f"The experiment is missing the required field '{where}'."
    if first["type"] in ("union_tag_invalid", "union_tag_not_found"):
        kinds = "'log' or 'sim'" if where.startswith("data") else "'grid' or 'random'"
        got_kind = got.get("kind") if isinstance(got, dict) else got
        return f"The '{where}.kind' field of the experiment must be {kinds}; got {got_kind!r} instead."
    others = {_where(e["loc"], what) for e in real} - {where}
    extra = f" (and {len(others)} more fields)" if others else ""
    if not first["loc"]:
        return f"The experiment is invalid: {msg}.{extra}"
    shown = "" if isinstance(got, dict) or "; got " in msg else f"; got {got!r} instead"
    return f"The '{where}' field of the experiment is invalid: {msg}{shown}.{extra}"


def experiment_from_dict(data: Mapping[str, Any]) -> Experiment:
    """Validate a mapping (e.g. parsed TOML) into an :class:`Experiment`.

    Raises
    ------
    InvalidExperimentError
        Naming the first invalid field (dotted path) and what it received.

    Examples
    --------
    >>> experiment_from_dict({"data": {"kind": "log", "path": "a.parquet", "embeddings": "e.parquet"},
    ...                       "search": {"diversity": [-1.0]}})
    Traceback (most recent call last):
    ...
    slate.errors.InvalidExperimentError: The 'search.diversity.0' field of the experiment is invalid: Input should be greater than or equal to 0; got -1.0 instead.
    """
    if not isinstance(data, Mapping):
        raise InvalidExperimentError(f"An experiment must be a mapping of fields; got {type(data).__name__}.")
    try:
        return Experiment.model_validate(dict(data))
    except ValidationError as err:
        raise InvalidExperimentError(_message(err, "experiment")) from None


def _read_toml(text: str, source: str) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        return dict(tomllib.loads(text))
    except tomllib.TOMLDecodeError as err:
        raise InvalidExperimentError(f"The experiment file '{source}' is not valid TOML: {err}.") from None


def _read_yaml(text: str, source: str) -> dict[str, Any]:
    try:
        import yaml
    except ModuleNotFoundError:
        raise InvalidExperimentError(
            f"Reading the YAML experiment '{source}' needs PyYAML (pip install pyyaml, or the "
            "'all' extra); TOML experiments need nothing."
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise InvalidExperimentError(f"The experiment file '{source}' is not valid YAML: {err}.") from None
    if not isinstance(data, dict):
        raise InvalidExperimentError(
            f"The experiment file '{source}' must hold a mapping at its top; got {type(data).__name__}."
        )
    return data


def check_paths_inside(experiment: Experiment, base: str | os.PathLike[str]) -> None:
    """Refuse an experiment whose files (``data.path``, ``data.embeddings``,
    ``policy.train_path``) lie outside its folder ``base`` (an absolute path, or ``..`` leading
    out): an experiment file shared with others must not read arbitrary files. ``slate sweep``
    calls it unless ``--allow-outside-paths``.

    Examples
    --------
    >>> exp = experiment_from_dict({"data": {"kind": "log", "path": "/etc/passwd", "embeddings": "e.parquet"}})
    >>> check_paths_inside(exp, ".")
    Traceback (most recent call last):
    ...
    slate.errors.InvalidExperimentError: The experiment's data.path '/etc/passwd' is outside the experiment's folder; move the file there or pass --allow-outside-paths.
    """
    root = Path(base).resolve()
    named: list[tuple[str, str | None]] = [("policy.train_path", experiment.policy.train_path)]
    if isinstance(experiment.data, LogData):
        named += [("data.path", experiment.data.path), ("data.embeddings", experiment.data.embeddings)]
    for key, value in named:
        if value is None:
            continue
        full = (root / value).resolve()
        if full != root and root not in full.parents:
            raise InvalidExperimentError(
                f"The experiment's {key} '{value}' is outside the experiment's folder; move the file "
                "there or pass --allow-outside-paths."
            )


def load_experiment(path: str | os.PathLike[str]) -> tuple[Experiment, Path]:
    r"""Read and validate an experiment file (TOML, or YAML with the same fields); returns it and
    the folder relative paths start from.

    Raises
    ------
    InvalidExperimentError
        The file is missing, neither TOML nor YAML, or a field is invalid (the message names it).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "a.toml").write_text(
    ...     'data = { kind = "sim" }\npolicy = { kind = "oracle" }\nsearch = { diversity = [0.0, 0.5] }\n')
    >>> _ = (folder / "a.yaml").write_text(
    ...     "data: {kind: sim}\npolicy: {kind: oracle}\nsearch: {diversity: [0.0, 0.5]}\n")
    >>> load_experiment(folder / "a.toml")[0] == load_experiment(folder / "a.yaml")[0]
    True
    """
    p = Path(path)
    if not p.exists():
        raise InvalidExperimentError(f"The experiment file '{p}' does not exist.")
    suffix = p.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml"):
        raise InvalidExperimentError(
            f"An experiment file must be TOML (*.toml) or YAML (*.yaml, *.yml); got '{p.name}'."
        )
    try:
        text = read_text_file(p, "experiment file")
        raw = _read_toml(text, str(p)) if suffix == ".toml" else _read_yaml(text, str(p))
        check_nesting(raw, f"experiment file '{p}'")
    except RecursionError:
        raise InvalidExperimentError(f"The experiment file '{p}' is nested too deeply to be read.") from None
    except (InputFileError, ResourceLimitError) as err:
        raise InvalidExperimentError(str(err)) from None
    try:
        return experiment_from_dict(raw), p.resolve().parent
    except InvalidExperimentError as err:
        raise InvalidExperimentError(f"{p}: {err}") from None
