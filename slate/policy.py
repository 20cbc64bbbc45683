"""One vocabulary for policies: a *scorer* gives scores, a *policy* gives an action distribution.

Every layer of slate speaks it (scoring in :mod:`slate.bandit`, serving in :mod:`slate.serve`,
offline evaluation in :mod:`slate.replay`, the simulator in :mod:`slate.sim`), and the
conversions between the two live here, once:

:class:`Scorer`
    ``scorer(context) -> scores``: one score per candidate image, shape ``(n_titles, n_images)``
    for one page or request (``(..., n_images)`` for a batch of pages or log rows); padding and
    forbidden images are ``-inf`` (or ignored). A scorer decides nothing.
    ``slate.serve.PageScorer`` (``score_page(request)``) and ``slate.bandit.ScoringPolicy``
    (``score(features)``) are scorers with a method instead of ``__call__``: :func:`as_scorer`
    turns any of the three into a callable.
:class:`Policy`
    ``policy.action_distribution(context)``: per title, the probability of each candidate
    (an ``(..., n_images)`` array whose rows sum to 1, or a richer object such as
    ``slate.replay.ActionDistribution`` for a log). ``slate.replay.TargetPolicy`` is a Policy.
:class:`PageSampler`
    ``sampler.decide(pages)``: a policy that samples a whole page and reports the exact
    probability of what it showed (``slate.sim.LoggingPolicy``; ``compose()`` with exploration
    plays this part online).
:class:`Chooser`
    ``chooser(pages) -> images``: a deterministic policy (propensity 1) that returns its choice
    per title (``slate.sim.Policy``).

Adapters: :func:`greedy` and :func:`epsilon_greedy` make a Policy from a Scorer (ties split
uniformly, exact propensities); :func:`greedy_probabilities` and :func:`mix_uniform` are the
same on arrays; :func:`argmax_choice` samples the greedy choice; :func:`as_policy` checks that
an object is a policy and names what it lacks.

Examples
--------
>>> import numpy as np
>>> from slate.policy import epsilon_greedy
>>> scores = np.array([[0.2, 0.9, 0.9], [0.5, 0.1, -np.inf]])
>>> epsilon_greedy(lambda page: scores, 0.3).action_distribution(None).round(3).tolist()
[[0.1, 0.45, 0.45], [0.85, 0.15, 0.0]]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike, NDArray

from slate.errors import InvalidProblemError

__all__ = [
    "Chooser",
    "GreedyPolicy",
    "PageSampler",
    "Policy",
    "Scorer",
    "argmax_choice",
    "as_policy",
    "as_scorer",
    "epsilon_greedy",
    "greedy",
    "greedy_probabilities",
    "mix_uniform",
    "tie_propensity",
]


# ---------------------------------------------------------------------------- the protocols
@runtime_checkable
class Scorer(Protocol):
    """``scorer(context) -> scores``: one score per candidate image, ``(n_titles, n_images)``
    per page (``-inf`` or ignored on padding). Decides nothing; see :func:`greedy`."""

    def __call__(self, context: Any, /) -> Any:
        """Scores of the context's candidate images."""
        ...


@runtime_checkable
class Policy(Protocol):
    """``action_distribution(context)``: per title, the probability of each candidate image."""

    def action_distribution(self, context: Any, /) -> Any:
        """An ``(..., n_images)`` distribution (rows sum to 1), or a richer object for a log."""
        ...


@runtime_checkable
class PageSampler(Protocol):
    """A Policy that samples whole pages: ``decide(pages)`` returns what it showed and the
    exact probability of each shown image (``slate.sim.LoggingPolicy``)."""

    name: str

    def decide(self, pages: Any, /) -> Any:
        """The images shown, with their exact propensities."""
        ...


@runtime_checkable
class Chooser(Protocol):
    """A deterministic Policy given as ``chooser(pages) -> images``: one candidate per title,
    propensity 1 (``slate.sim.Policy``). Structurally a callable, like a :class:`Scorer`: which
    one a callable is, is said by where it is passed."""

    def __call__(self, pages: Any, /) -> Any:
        """The chosen candidate per title."""
        ...


# ---------------------------------------------------------------------------- array adapters
def argmax_choice(
    adjusted: NDArray[np.floating[Any]], mask: NDArray[np.bool_], rng: np.random.Generator
) -> tuple[NDArray[np.int64], NDArray[np.bool_], NDArray[np.int64]]:
    """Per-row argmax of ``adjusted`` over real images, ties split uniformly at random.

    Returns the choice, the boolean matrix of tied maxima and their count per row. Works on the
    transposed (images x rows) copy, where every reduction runs across rows in vector steps.
    """
    n_images = adjusted.shape[1]
    a_t = np.ascontiguousarray(adjusted.T)
    if not mask.all():
        a_t[~mask.T] = -np.inf
    top = a_t.max(axis=0)
    is_max_t = a_t == top[None, :]
    count = np.count_nonzero(is_max_t, axis=0)
    # the index of the (unique) maximum as a dot product; rows with ties are redone below
    choice = (np.arange(n_images, dtype=np.float32) @ is_max_t.astype(np.float32)).astype(np.int64)
    tied = np.flatnonzero(count > 1)
    if len(tied):
        sub = is_max_t[:, tied].T
        pick = (rng.random(len(tied)) * count[tied]).astype(np.int64)
        order = np.cumsum(sub, axis=1) - 1
        choice[tied] = np.argmax(sub & (order == pick[:, None]), axis=1)
    return choice, is_max_t.T, count.astype(np.int64)


def tie_propensity(is_max: NDArray[np.bool_], count: NDArray[np.int64]) -> NDArray[np.float64]:
    """Exact propensity of a deterministic argmax policy that splits ties uniformly."""
    return is_max / count[:, None].astype(np.float64)


def _scores_and_mask(
    scores: ArrayLike, mask: ArrayLike | None
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim < 1 or s.shape[-1] == 0:
        raise InvalidProblemError(
            f"Scores must be an array (..., n_images) with at least one image; got shape {s.shape} instead."
        )
    m = np.isfinite(s) if mask is None else np.broadcast_to(np.asarray(mask, dtype=bool), s.shape)
    if np.isnan(s[m]).any():
        raise InvalidProblemError("Scores must not be NaN on real candidates.")
    empty = ~m.any(axis=-1)
    if empty.any():
        raise InvalidProblemError(
            f"Every title must have a candidate with a finite score; {int(empty.sum())} titles have none."
        )
    return s, m


def greedy_probabilities(scores: ArrayLike, mask: ArrayLike | None = None) -> NDArray[np.float64]:
    """The greedy policy's distribution: uniform over each title's best candidates, 0 elsewhere.

    ``mask`` marks real candidates (default: finite scores). Rows sum to 1; the probability is
    positive exactly on the maxima (ties split evenly, as :func:`argmax_choice` samples).

    Examples
    --------
    >>> greedy_probabilities([[1.0, 3.0, 3.0], [2.0, 0.0, float("-inf")]]).tolist()
    [[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]]
    """
    s, m = _scores_and_mask(scores, mask)
    flat = s.reshape(-1, s.shape[-1])
    fm = m.reshape(flat.shape)
    masked = np.where(fm, flat, -np.inf)
    is_max = (masked == masked.max(axis=1, keepdims=True)) & fm
    out = tie_propensity(is_max, np.count_nonzero(is_max, axis=1).astype(np.int64))
    return out.reshape(s.shape)


def mix_uniform(probs: ArrayLike, epsilon: float | ArrayLike, mask: ArrayLike) -> NDArray[np.float64]:
    """``(1 - epsilon) * probs + epsilon * uniform``: epsilon exploration over the real
    candidates (``mask``), 0 on padding. ``epsilon`` may vary per title (broadcast on ``(...,)``).

    Examples
    --------
    >>> mix_uniform([[0.0, 1.0, 0.0]], 0.3, [[True, True, False]]).tolist()
    [[0.15, 0.85, 0.0]]
    """
    p = np.asarray(probs, dtype=np.float64)
    real = np.asarray(mask, dtype=bool)
    n = real.sum(axis=-1, keepdims=True).astype(np.float64)
    eps = np.asarray(epsilon, dtype=np.float64)
    if eps.ndim:
        eps = eps[..., None]
    if not (np.all(eps >= 0.0) and np.all(eps <= 1.0)):
        raise InvalidProblemError(f"The 'epsilon' of a policy must be in [0, 1]; got {epsilon!r} instead.")
    mixed = eps * real / n + (1.0 - eps) * p
    return np.asarray(np.where(real, mixed, 0.0))


# ---------------------------------------------------------------------------- object adapters
def as_scorer(
    obj: Any, *, what: str = "The scorer", error: type[Exception] = InvalidProblemError,
    features: Any = None, needs_features: bool = False,
) -> Any:
    """The callable ``context -> scores`` behind ``obj``.

    Accepted: a callable (a :class:`Scorer`); an object with ``score_page(request)``
    (``slate.serve.PageScorer``); an object with ``score(features)`` returning scores with a
    ``mean`` (``slate.bandit.ScoringPolicy``: its mean scores, no propensities), scoring
    ``features(context)`` when ``features`` is given, else the context itself (a
    ``PageFeatures``). With ``needs_features`` (the context is a request, as in ``compose()``),
    a ``score(features)`` object without ``features`` is refused with how to adapt it.

    Raises
    ------
    error
        Naming what ``obj`` lacks.
    """
    score_page = getattr(obj, "score_page", None)
    if callable(score_page):
        return score_page
    if callable(obj):
        return obj
    score = getattr(obj, "score", None)
    if callable(score) and features is not None:
        return lambda context: np.asarray(score(features(context), propensities=False).mean)
    if callable(score) and not needs_features:
        return lambda context: np.asarray(score(context, propensities=False).mean)
    if callable(score):
        raise error(
            f"{what} must be a Scorer of requests: {type(obj).__name__} scores page features "
            "(score(features)); adapt it with slate.serve.PolicyScorer(policy, features)."
        )
    raise error(
        f"{what} must be a Scorer: callable as scorer(context) -> scores, or with a "
        f"score_page(request) or score(features) method; got {type(obj).__name__}, which has none of these."
    )


def as_policy(
    obj: Any, *, what: str = "The policy", error: type[Exception] = InvalidProblemError, also: str = ""
) -> Any:
    """``obj`` if it is a :class:`Policy` or a :class:`PageSampler`; else an error naming what
    it lacks (and, for a scorer or a bare callable, how to make it a policy). ``also`` lists
    other forms the caller accepts, for the message.

    Examples
    --------
    >>> as_policy(object())
    Traceback (most recent call last):
    ...
    slate.errors.InvalidProblemError: The policy must be a Policy (with action_distribution(context)) or a PageSampler (with decide(pages) and a name); got object, which has neither.
    """
    if isinstance(obj, (Policy, PageSampler)):
        return obj
    hint = ""
    if callable(obj) or hasattr(obj, "score_page") or hasattr(obj, "score"):
        hint = " It looks like a Scorer: wrap it with slate.policy.greedy(...) or epsilon_greedy(...)."
    raise error(
        f"{what} must be {also}a Policy (with action_distribution(context)) or a PageSampler (with "
        f"decide(pages) and a name); got {type(obj).__name__}, which has neither.{hint}"
    )


def _context_mask(context: Any, shape: tuple[int, ...]) -> NDArray[np.bool_] | None:
    """The real candidates of a context, when it says: a ``mask`` of the scores' shape
    (``PageFeatures``), or ``n_candidates`` per title (a simulated ``PageBatch``, a log); None
    otherwise (then the finite scores are the candidates)."""
    mask = getattr(context, "mask", None)
    if isinstance(mask, np.ndarray) and mask.shape == shape:
        return np.asarray(mask, dtype=bool)
    n = getattr(context, "n_candidates", None)
    if isinstance(n, np.ndarray) and len(shape) >= 1 and n.shape == shape[:-1]:
        return np.asarray(np.arange(shape[-1]) < n[..., None])
    return None


@dataclass(frozen=True, eq=False)
class GreedyPolicy:
    """The Policy of a Scorer: its best candidate per title (ties split evenly), mixed with
    uniform exploration with probability ``epsilon``. Build it with :func:`greedy` or
    :func:`epsilon_greedy`.

    ``action_distribution(context)`` returns the ``(..., n_images)`` distribution, 0 on padding:
    past the context's ``n_candidates`` (a log, a simulated batch), off its ``mask`` (page
    features), or, when the context says neither, wherever the score is not finite.
    """

    scorer: Any
    epsilon: float = 0.0
    name: str = "greedy"

    def __post_init__(self) -> None:
        eps = self.epsilon
        if isinstance(eps, bool) or not isinstance(eps, (int, float, np.integer, np.floating)) or not 0.0 <= eps <= 1.0:
            raise InvalidProblemError(f"The 'epsilon' of a greedy policy must be in [0, 1]; got {eps!r} instead.")
        object.__setattr__(self, "scorer", as_scorer(self.scorer))

    def scores(self, context: Any) -> NDArray[np.float64]:
        """The scorer's scores for ``context``."""
        return np.asarray(self.scorer(context), dtype=np.float64)

    def action_distribution(self, context: Any) -> NDArray[np.float64]:
        """Per title, the probability of each candidate."""
        scores = self.scores(context)
        s, m = _scores_and_mask(scores, _context_mask(context, scores.shape))
        probs = greedy_probabilities(s, m)
        return probs if self.epsilon == 0.0 else mix_uniform(probs, float(self.epsilon), m)


def greedy(scorer: Any, *, name: str = "greedy") -> GreedyPolicy:
    """The argmax Policy of a Scorer (ties split evenly: exact, tie-aware propensities).

    Examples
    --------
    >>> greedy(lambda page: [[0.1, 0.7, 0.7]]).action_distribution(None).tolist()
    [[0.0, 0.5, 0.5]]
    """
    return GreedyPolicy(scorer, 0.0, name)


def epsilon_greedy(scorer: Any, epsilon: float, *, name: str | None = None) -> GreedyPolicy:
    """The argmax of a Scorer with probability ``1 - epsilon``, a uniform candidate otherwise."""
    return GreedyPolicy(scorer, epsilon, name or f"epsilon_greedy({epsilon:g})")
