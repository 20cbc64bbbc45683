"""A model trained from a log, as a folder: the policy, its images, and the replay target.

:func:`save_trained_model` writes ``DIR``::

    DIR/model.npz      the policy (slate.bandit-policy/1: arrays + JSON metadata, no pickle)
    DIR/model.json     slate.trained-model/1: policy, image ids (arm i = image_ids[i]),
                       feature layout (bias column, number of log features), training facts
    DIR/weights.npz    greedy linear weights per image (image_ids, weights, bias, epsilon): the
                       file ``slate replay --policy`` reads through a policy config
    DIR/policy.toml    the policy config for ``slate replay --policy DIR/policy.toml``

and :class:`TrainedModel` loads it back for serving: :meth:`TrainedModel.page_features` turns a
page request (``slate.serve.PageRequest``) into :class:`~slate.bandit.PageFeatures`, with the
context features the model was trained on taken from ``request.context["features"]``: one
list of ``n_log_features`` numbers shared by every title, or a mapping ``{title_id: list}``.
``slate.serve.PolicyScorer.load(DIR)`` wraps both into a scorer for ``compose()``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from slate.bandit.base import ScoringPolicy
from slate.bandit.batch import PageFeatures
from slate.bandit.persistence import load_policy, save_policy
from slate.bandit.statistics import linear_weights
from slate.errors import InvalidProblemError

__all__ = ["TRAINED_FORMAT", "TrainedModel", "load_trained_model", "save_trained_model"]

TRAINED_FORMAT = "slate.trained-model/1"


def _toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


@dataclass(frozen=True, eq=False)
class TrainedModel:
    """A fitted policy with its image vocabulary and feature layout.

    Attributes
    ----------
    policy : ScoringPolicy
    image_ids : tuple of str
        Arm ``i`` is ``image_ids[i]`` (sorted).
    bias : bool
        Feature 0 of the policy is a constant 1 prepended to the log's features.
    n_log_features : int
        Context features per row in the log (and in ``request.context["features"]``).
    info : dict
        Training facts (engine, log, diagnostics summary), as written.
    """

    policy: ScoringPolicy
    image_ids: tuple[str, ...]
    bias: bool
    n_log_features: int
    info: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_arm", {image: i for i, image in enumerate(self.image_ids)})

    @property
    def n_features(self) -> int:
        """Features per row as the policy sees them (bias included)."""
        return self.n_log_features + int(self.bias)

    def arms(self, image_ids: Sequence[str]) -> NDArray[np.int64]:
        """Arm of each image; an image the log never offered gets a fresh arm past the known
        ones (``n_images + its position``), so it scores at the policy's prior."""
        arm: dict[str, int] = self._arm  # type: ignore[attr-defined]
        n = len(self.image_ids)
        return np.array([arm.get(image, n + k) for k, image in enumerate(image_ids)], np.int64)

    def context(self, request: Any) -> NDArray[np.float64]:
        """``(n_titles, n_features)`` features of the request's titles (bias column included)."""
        ctx = getattr(request, "context", None) or {}
        raw = ctx.get("features") if isinstance(ctx, Mapping) else None
        titles = request.titles
        d = self.n_log_features
        if d == 0 or self.policy.name in ("take_rate", "uniform"):  # features unused: zeros
            rows = np.zeros((len(titles), d))
        elif raw is None:
            raise InvalidProblemError(
                f"The request's 'context.features' must hold the {d} context features the model "
                "was trained on (a list, or a mapping title id -> list); got none."
            )
        elif isinstance(raw, Mapping):
            missing = [t.title_id for t in titles if t.title_id not in raw]
            if missing:
                raise InvalidProblemError(
                    f"The request's 'context.features' has no features for title '{missing[0]}'."
                )
            rows = np.array([np.asarray(raw[t.title_id], np.float64) for t in titles])
        else:
            rows = np.tile(np.asarray(raw, np.float64), (len(titles), 1))
        if rows.shape != (len(titles), d) or not np.isfinite(rows).all():
            raise InvalidProblemError(
                f"The request's 'context.features' must be {d} finite numbers per title; got an "
                f"array of shape {rows.shape[1:] if rows.ndim == 2 else rows.shape}."
            )
        if self.bias:
            rows = np.c_[np.ones(len(titles)), rows]
        return rows

    def page_features(self, request: Any) -> PageFeatures:
        """The page's :class:`PageFeatures` (rows in the order of ``request.titles``)."""
        titles = request.titles
        width = max(len(t.image_ids) for t in titles)
        arms = np.full((len(titles), width), -1, np.int64)
        for i, t in enumerate(titles):
            arms[i, : len(t.image_ids)] = self.arms(t.image_ids)
        return PageFeatures.from_arrays(self.context(request), arms,
                                        image_ids=[tuple(t.image_ids) for t in titles])

    @classmethod
    def load(cls, directory: str | Path) -> TrainedModel:
        """Same as :func:`load_trained_model`."""
        return load_trained_model(directory)


def save_trained_model(
    directory: str | Path,
    policy: ScoringPolicy,
    image_ids: Sequence[str],
    *,
    bias: bool,
    n_log_features: int,
    info: Mapping[str, Any] | None = None,
) -> Path:
    """Write the model folder (see the module docstring); returns ``DIR``.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from slate.bandit import LinUCB
    >>> policy = LinUCB(seed=0).fit(np.c_[np.ones(4), [0.0, 1.0, 0.0, 1.0]], [0, 0, 1, 1], [0, 1, 1, 0])
    >>> out = save_trained_model(tempfile.mkdtemp(), policy, ["a", "b"], bias=True, n_log_features=1)
    >>> sorted(p.name for p in out.iterdir())
    ['model.json', 'model.npz', 'policy.toml', 'weights.npz']
    >>> load_trained_model(out).image_ids
    ('a', 'b')
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    ids = [str(x) for x in image_ids]
    if len(set(ids)) != len(ids):
        raise InvalidProblemError("The 'image_ids' of a trained model must be distinct.")
    save_policy(policy, out / "model.npz")
    meta = {
        "format": TRAINED_FORMAT,
        "policy": policy.name,
        "params": policy.get_params(),
        "image_ids": ids,
        "bias": bool(bias),
        "n_log_features": int(n_log_features),
        "info": dict(info or {}),
    }
    (out / "model.json").write_text(json.dumps(meta, indent=1, default=float))
    d = int(n_log_features) + int(bias)
    if policy.name in ("take_rate", "uniform"):  # no features: the take rate is the offset
        offset = linear_weights(policy, len(ids), 1)[:, 0]
        w = np.zeros((len(ids), d))
    else:
        w = linear_weights(policy, len(ids), d)
        offset = w[:, 0] if bias else np.zeros(len(ids))
    epsilon = float(getattr(policy, "epsilon", 0.0)) if policy.name == "epsilon_greedy" else 0.0
    np.savez(out / "weights.npz", image_ids=np.asarray(ids, dtype=str),
             weights=np.ascontiguousarray(w[:, int(bias):]), bias=offset, epsilon=np.float64(epsilon))
    name = _toml_string(f"{policy.name} trained from a log")
    if policy.name == "uniform":
        toml = f'[policy]\nkind = "uniform"\nname = {name}\n'
    else:
        toml = f'[policy]\nkind = "linear"\nweights = "weights.npz"\nname = {name}\n'
    (out / "policy.toml").write_text(
        "# written by slate train: the greedy policy of the model in this folder\n" + toml
    )
    return out


def load_trained_model(directory: str | Path) -> TrainedModel:
    """Read a folder written by :func:`save_trained_model`.

    Raises
    ------
    InvalidProblemError
        The folder lacks ``model.json``/``model.npz`` or they have another format.
    """
    root = Path(directory)
    meta_path = root / "model.json"
    if not meta_path.is_file() or not (root / "model.npz").is_file():
        raise InvalidProblemError(
            f"The folder '{root}' must hold model.json and model.npz (written by slate train)."
        )
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise InvalidProblemError(f"The file '{meta_path}' is not valid JSON ({exc}).") from None
    if not isinstance(meta, dict) or meta.get("format") != TRAINED_FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else None
        raise InvalidProblemError(f"The 'format' field of '{meta_path}' must be '{TRAINED_FORMAT}'; got {got!r} instead.")
    policy = load_policy(root / "model.npz")
    return TrainedModel(policy=policy, image_ids=tuple(meta["image_ids"]), bias=bool(meta["bias"]),
                        n_log_features=int(meta["n_log_features"]), info=meta.get("info", {}))
