"""Which replay estimator a sweep uses when its experiment says ``estimator.name = "auto"`` (the
default), and why.

The rule: whenever page effects are configured (a simulated world with
``response.page_effects``) or detected in the log (:func:`slate.replay.detect_page_effects`,
false-positive rate 5%), ``snips-crowding`` (per-title SNIPS with the page effect moved by a
crowding model fitted on the log, the sweep's image embeddings as its vectors; on the sweep
benchmark's simulated worlds its recommendation's regret was 0.3% against 1.0% for the
row-neighbourhood estimator, docs/tuning.md), or ``page-aware`` (the images' styles as its
visual ``groups``) when there are no embeddings; per-title ``snips`` otherwise, or when the log
lacks the full logging distributions both need. A named estimator is used as configured
(``snips-crowding`` gets the sweep's embeddings unless its options give them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

AUTO = "auto"
"""The estimator name that lets the sweep choose."""

NEEDS_EMBEDDINGS = frozenset({"snips-crowding"})
"""Estimators given the sweep's image embeddings (its ``images`` file) when configured by name."""

DETECTION_ALPHA = 0.05
"""False-positive rate of the page-effect detection behind the choice."""


@dataclass(frozen=True)
class EstimatorChoice:
    """The estimator a sweep evaluates with: registry ``name``, ``options`` (sorted items; the
    sweep builds the estimator from them into its :class:`~slate.replay.ReplayOptions`) and the
    ``reason`` in words."""

    name: str
    options: tuple[tuple[str, Any], ...]
    reason: str


def choose_estimator(experiment: Any, prep: Any) -> EstimatorChoice:
    """The estimator for ``experiment`` on the prepared data ``prep`` (see the module docstring).

    Examples
    --------
    >>> from types import SimpleNamespace as NS
    >>> exp = NS(estimator=NS(name="ips", options={}))
    >>> choose_estimator(exp, None).reason
    'configured: ips'
    """
    spec = experiment.estimator
    if spec.name != AUTO:
        options = dict(spec.options)
        if spec.name in NEEDS_EMBEDDINGS and "embeddings" not in options:
            options["embeddings"] = (tuple(prep.log.image_ids), prep.vectors)  # the sweep's own
        return EstimatorChoice(spec.name, tuple(sorted(options.items(), key=lambda kv: kv[0])),
                               f"configured: {spec.name}")
    log = prep.log
    why = _page_effects(prep)
    if why is None:
        return EstimatorChoice("snips", (), "auto: per-title snips, "
                               + _no_effect_reason(prep))
    if log.propensities is None:
        return EstimatorChoice("snips", (), f"auto: {why}, but the log has no full logging "
                               "distributions for the page-aware estimator; per-title snips")
    vectors = getattr(prep, "vectors", None)
    if vectors is not None and len(vectors):
        return EstimatorChoice("snips-crowding", (("embeddings", (tuple(log.image_ids), vectors)),),
                               f"auto: snips-crowding (the page effect moved by a crowding model fitted "
                               f"on the log), {why}")
    groups = [int(g) for g in prep.styles]
    return EstimatorChoice("page-aware", (("groups", groups),), f"auto: page-aware, {why}")


def _page_effects(prep: Any) -> str | None:
    """Why page effects are expected (configured or detected), or None."""
    sim = getattr(prep, "sim", None)
    if sim is not None and bool(sim.world.config.response.page_effects):
        return "page effects are configured in the simulated world"
    test = _detect(prep)
    return test.reason if test is not None and test.detected else None


def _detect(prep: Any) -> Any:
    from slate.replay.detect import detect_page_effects

    try:
        return detect_page_effects(prep.log, prep.styles, alpha=DETECTION_ALPHA)
    except Exception:  # e.g. styles not aligned with the log: no detection
        return None


def _no_effect_reason(prep: Any) -> str:
    sim = getattr(prep, "sim", None)
    if sim is not None:
        return "page effects are switched off in the simulated world"
    test = _detect(prep)
    return test.reason if test is not None else "page effects could not be tested"
