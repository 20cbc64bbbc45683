"""Sweeps centred on page effects estimated from the logs (``slate sweep --centre-on``)."""

from __future__ import annotations

from typing import Any

from slate.replay.effects import PageEffects
from slate.tune.config import Span

__all__ = ["centre_on_effects"]


def centre_on_effects(experiment: Any, effects: PageEffects, n: int = 5) -> Any:
    """The experiment with its diversity (and churn) search spanning the effects' 95% intervals.

    ``slate sweep EXPERIMENT --centre-on effects.json``. The weights follow the experiment's
    ``search.weights``: relative weights use :attr:`PageEffects.diversity_relative` and
    :attr:`PageEffects.churn_relative`, absolute ones :attr:`PageEffects.diversity` and
    :attr:`PageEffects.churn`. A grid gets ``n`` values (or as many as the axis had, if more)
    from the interval's low end (clipped at 0) to its high end; a random search samples the
    interval. An effect that could not be estimated, or whose interval lies below 0, leaves the
    axis as it was.

    Examples
    --------
    >>> from slate.replay.effects import Effect, PageEffects
    >>> from slate.tune.config import Experiment
    >>> exp = Experiment.model_validate({"name": "x", "data": {"kind": "sim"}, "policy": {"kind": "oracle"},
    ...                                  "search": {"diversity": [0.0, 0.5]}})
    >>> e = Effect("diversity", 0.04, 0.03, 0.05, 0.005, 1000)
    >>> none = Effect("churn", None, None, None, None, 0, "too few rows")
    >>> eff = PageEffects((), e, none, none, e, none, e, none, 0.05, 1, 1, 1, 1)
    >>> [round(v, 4) for v in centre_on_effects(exp, eff, n=3).search.diversity.grid()]
    [0.03, 0.04, 0.05]
    """
    search = experiment.search
    relative = search.weights == "relative"
    update: dict[str, Any] = {}
    for axis, effect in (("diversity", effects.diversity_relative if relative else effects.diversity),
                         ("churn", effects.churn_relative if relative else effects.churn)):  # fmt: skip
        if effect.low is None or effect.high is None or effect.high <= 0:
            continue
        old = getattr(search, axis)
        size = max(n, len(old) if isinstance(old, list) else (old.n or 0))
        lo, hi = max(0.0, effect.low), effect.high
        update[axis] = Span(min=lo, max=hi, n=size if search.kind == "grid" else None)
    return experiment.model_copy(update={"search": search.model_copy(update=update)})
