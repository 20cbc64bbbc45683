"""Target policies for replay: what the policy to evaluate would have done on each logged row.

Every policy is turned into an :class:`ActionDistribution` over the row's candidate images:
the target's probability of the *logged* image (enough for replay, IPS and SNIPS) and, when it
is known, the full distribution over the candidates (needed by the direct method and doubly
robust). Deterministic targets (an argmax policy, or a :class:`DecisionTable` from another
system) are one-hot distributions and also carry their choice per row.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numba
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import ArrayLike, NDArray

from slate.errors import InputFileError, InvalidReplayInputError
from slate.limits import check_npz
from slate.logs.log import ImpressionLog
from slate.policy import Policy, as_policy, mix_uniform

__all__ = [
    "ActionDistribution",
    "DecisionTable",
    "InvalidReplayInputError",
    "LinearPolicy",
    "TargetPolicy",
    "UniformPolicy",
    "as_action_distribution",
]


def _readonly(array: NDArray[Any]) -> NDArray[Any]:
    array = np.ascontiguousarray(array)
    array.flags.writeable = False
    return array


@dataclass(frozen=True, eq=False)
class ActionDistribution:
    """The target policy's behaviour on every row of one log.

    Attributes
    ----------
    prob_logged : ndarray (n,), float64
        Target probability of the logged (shown) image.
    probs : ndarray (n, k_max), float64 or None
        Target distribution over ``log.candidates`` (0 on padding), when known.
    choice : ndarray (n,), int32 or None
        For a deterministic target, the candidate position it picks on each row.
    decided : ndarray (n,), bool or None
        Rows the target has a decision for (None: all). Estimators use only decided rows.
    name : str
        A description of the policy, for reports.

    Examples
    --------
    >>> import numpy as np
    >>> d = ActionDistribution.from_probs(np.array([[0.2, 0.8], [1.0, 0.0]]), shown=np.array([1, 1]))
    >>> d.prob_logged.tolist(), d.is_deterministic
    ([0.8, 0.0], False)
    """

    prob_logged: NDArray[np.float64]
    probs: NDArray[np.float64] | None = None
    choice: NDArray[np.int32] | None = None
    decided: NDArray[np.bool_] | None = None
    name: str = "policy"
    k_max: int = 0
    _cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        for key in ("prob_logged", "probs", "choice", "decided"):
            value = getattr(self, key)
            if value is not None:
                object.__setattr__(self, key, _readonly(value))

    @property
    def n_rows(self) -> int:
        """Number of log rows described."""
        return len(self.prob_logged)

    def probabilities(self) -> NDArray[np.float64] | None:
        """The full ``(n, k_max)`` distribution: ``probs`` when given, else one-hot on
        ``choice`` (built on first use and kept), else None."""
        if self.probs is not None:
            return self.probs
        if self.choice is None:
            return None
        if "probs" not in self._cache:
            n = len(self.choice)
            probs = np.zeros((n, max(self.k_max, int(self.choice.max(initial=0)) + 1)))
            probs[np.arange(n), self.choice] = 1.0
            if self.decided is not None:
                probs[~self.decided] = 0.0
            self._cache["probs"] = _readonly(probs)
        cached: NDArray[np.float64] = self._cache["probs"]
        return cached

    @property
    def is_deterministic(self) -> bool:
        """True when the target picks one image per row (``choice`` is set)."""
        return self.choice is not None

    @classmethod
    def from_probs(
        cls, probs: ArrayLike, shown: ArrayLike, *, name: str = "policy",
        n_candidates: ArrayLike | None = None,
    ) -> ActionDistribution:
        """From a full ``(n, k_max)`` distribution over the candidates and the logged positions.

        Rows must sum to 1 (±1e-6) over the real candidates; padding (past ``n_candidates``)
        must be 0.
        """
        p = np.asarray(probs, dtype=np.float64)
        a = np.asarray(shown, dtype=np.int64)
        if p.ndim != 2 or a.shape != (p.shape[0],):
            raise InvalidReplayInputError(
                f"The 'probs' of a target policy must have shape (n_rows, k_max) matching "
                f"'shown' {a.shape}; got {p.shape} instead."
            )
        if not np.all(np.isfinite(p)) or (p < 0).any() or (p > 1 + 1e-12).any():
            bad = p[~(np.isfinite(p) & (p >= 0) & (p <= 1 + 1e-12))]
            raise InvalidReplayInputError(
                "The 'probs' of a target policy must be finite and within [0, 1]; got "
                f"{len(bad)} entries outside, e.g. {float(bad[0])!r}, instead."
            )
        if n_candidates is not None:
            pad = np.arange(p.shape[1])[None, :] >= np.asarray(n_candidates)[:, None]
            if (p[pad] != 0).any():
                raise InvalidReplayInputError(
                    "The 'probs' of a target policy must be 0 on padding (past n_candidates); "
                    f"got non-zero mass on {int((pad & (p != 0)).any(axis=1).sum())} rows instead."
                )
        sums = p.sum(axis=1)
        off = np.flatnonzero(np.abs(sums - 1.0) > 1e-6)
        if len(off):
            raise InvalidReplayInputError(
                f"The 'probs' of a target policy must sum to 1 on every row; got {float(sums[off[0]])!r} "
                f"on row {off[0]} ({len(off)} rows off) instead."
            )
        return cls(prob_logged=p[np.arange(len(a)), a], probs=p, name=name)

    @classmethod
    def deterministic(
        cls, choice: ArrayLike, shown: ArrayLike, k_max: int, *, name: str = "policy",
        decided: ArrayLike | None = None,
    ) -> ActionDistribution:
        """From the candidate position a deterministic target picks on each row."""
        c = np.asarray(choice, dtype=np.int32)
        a = np.asarray(shown, dtype=np.int32)
        if c.shape != a.shape or c.ndim != 1:
            raise InvalidReplayInputError(
                f"The 'choice' of a deterministic target must have shape {a.shape}; "
                f"got {c.shape} instead."
            )
        d = None if decided is None else np.asarray(decided, dtype=bool)
        live = np.ones(len(c), bool) if d is None else d
        out_of_range = (c < 0) | (c >= k_max)
        if (out_of_range & live).any():
            raise InvalidReplayInputError(
                f"The 'choice' of a deterministic target must be a candidate position in "
                f"[0, {k_max}); got values from {c[live].min()} to {c[live].max()} instead."
            )
        if d is not None:
            c = np.where(live, c, 0).astype(np.int32)
        prob_logged: NDArray[np.float64] = (c == a).astype(np.float64)
        if d is not None:
            prob_logged[~d] = 0.0
        return cls(prob_logged=prob_logged, choice=c, decided=d, name=name, k_max=int(k_max))

    def check_log(self, log: ImpressionLog) -> None:
        """Raise unless this distribution describes ``log`` (same rows, same candidate width)."""
        if self.n_rows != log.n_rows:
            raise InvalidReplayInputError(
                f"The target policy '{self.name}' must describe the {log.n_rows} rows of the log; "
                f"got {self.n_rows} rows instead."
            )
        if self.choice is not None and self.k_max != log.k_max:
            raise InvalidReplayInputError(
                f"The choices of target policy '{self.name}' must be positions among "
                f"{log.k_max} candidate slots; got k_max={self.k_max} instead."
            )
        if self.probs is not None and self.probs.shape != (log.n_rows, log.k_max):
            raise InvalidReplayInputError(
                f"The 'probs' of target policy '{self.name}' must have shape "
                f"({log.n_rows}, {log.k_max}); got {self.probs.shape} instead."
            )
        if not np.all((self.prob_logged >= 0) & (self.prob_logged <= 1 + 1e-12)):
            raise InvalidReplayInputError(
                f"The 'prob_logged' of target policy '{self.name}' must lie in [0, 1]; got values "
                f"from {self.prob_logged.min()} to {self.prob_logged.max()} instead."
            )


@runtime_checkable
class TargetPolicy(Policy, Protocol):
    """A :class:`slate.policy.Policy` whose context is a log: says what it would have done on
    each row, as an :class:`ActionDistribution` (or an ``(n_rows, k_max)`` probability array,
    e.g. :func:`slate.policy.greedy` of a scorer ``log -> (n_rows, k_max)`` scores)."""

    def action_distribution(self, log: ImpressionLog) -> ActionDistribution:
        """The target's distribution over ``log.candidates`` on every row."""
        ...


@dataclass(frozen=True)
class UniformPolicy:
    """Pick uniformly among each row's candidates (a baseline, and the usual logging policy).

    Examples
    --------
    >>> from slate.logs import read_impressions
    >>> from slate.logs.parquet import example_table
    >>> log, _ = read_impressions(example_table())
    >>> UniformPolicy().action_distribution(log).prob_logged.tolist()
    [0.5, 0.5, 0.5, 0.5]
    """

    name: str = "uniform"

    def action_distribution(self, log: ImpressionLog) -> ActionDistribution:
        """Uniform over the real candidates of each row."""
        probs = (log.candidates >= 0) / log.n_candidates[:, None].astype(np.float64)
        return ActionDistribution(
            prob_logged=1.0 / log.n_candidates.astype(np.float64), probs=probs, name=self.name
        )


@numba.njit(cache=True, nogil=True, fastmath=True)
def _linear_argmax(
    features: NDArray[np.float32],
    candidates: NDArray[np.int32],
    weights: NDArray[np.float32],
    bias: NDArray[np.float32],
) -> NDArray[np.int32]:  # pragma: no cover - compiled
    n, k_max = candidates.shape
    d = features.shape[1]
    out = np.zeros(n, dtype=np.int32)
    for i in range(n):
        best = -np.inf
        arg = 0
        for k in range(k_max):
            c = candidates[i, k]
            if c < 0:
                break
            s = bias[c]
            for j in range(d):
                s += weights[c, j] * features[i, j]
            if s > best:
                best = s
                arg = k
        out[i] = arg
    return out


@numba.njit(cache=True, nogil=True)
def _linear_scores(
    features: NDArray[np.float32],
    candidates: NDArray[np.int32],
    weights: NDArray[np.float32],
    bias: NDArray[np.float32],
) -> NDArray[np.float64]:  # pragma: no cover - compiled
    n, k_max = candidates.shape
    d = features.shape[1]
    out = np.full((n, k_max), -np.inf)
    for i in range(n):
        for k in range(k_max):
            c = candidates[i, k]
            if c < 0:
                break
            s = bias[c]
            for j in range(d):
                s += weights[c, j] * features[i, j]
            out[i, k] = s
    return out


def _finite_float32(values: Any, name: str) -> NDArray[np.float32]:
    """``values`` as float32, refused unless every entry is a finite number within float32
    (NaN weights would make every score NaN and the argmax always the first candidate)."""
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            out = np.asarray(values, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InvalidReplayInputError(
            f"The '{name}' of LinearPolicy must be numbers; got {exc}."
        ) from None
    bad = ~np.isfinite(out)
    if bad.any():
        raise InvalidReplayInputError(
            f"The '{name}' of LinearPolicy must be finite float32 numbers; got {int(bad.sum())} "
            f"NaN or infinite (or beyond float32) entries."
        )
    return out


@dataclass(frozen=True, eq=False)
class LinearPolicy:
    """Score each candidate image linearly in the context features; show the best one.

    ``score(row, image) = features[row] @ weights[image] + bias[image]``; the target shows the
    argmax (ties: the first candidate), or explores with ``epsilon``: with probability
    ``epsilon`` a uniformly random candidate.

    Parameters
    ----------
    image_ids : sequence of str
        Images the weights are for.
    weights : array_like (n_images, n_features)
    bias : array_like (n_images,), optional
    epsilon : float, default 0.0
    name : str, default "linear"

    Examples
    --------
    >>> import numpy as np
    >>> from slate.logs import read_impressions
    >>> from slate.logs.parquet import example_table
    >>> log, _ = read_impressions(example_table())
    >>> policy = LinearPolicy(["T1-a", "T1-b", "T2-a", "T2-b"], np.zeros((4, 0)),
    ...                       bias=[0.0, 1.0, 1.0, 0.0])
    >>> policy.action_distribution(log).choice.tolist()
    [1, 0, 1, 0]
    """

    image_ids: Sequence[str]
    weights: ArrayLike
    bias: ArrayLike | None = None
    epsilon: float = 0.0
    name: str = "linear"

    def __post_init__(self) -> None:
        w = _finite_float32(self.weights, "weights")
        ids = tuple(str(x) for x in self.image_ids)
        if w.ndim != 2 or w.shape[0] != len(ids):
            raise InvalidReplayInputError(
                f"The 'weights' of LinearPolicy must have shape (n_images={len(ids)}, "
                f"n_features); got {w.shape} instead."
            )
        b = np.zeros(len(ids), np.float32) if self.bias is None else _finite_float32(self.bias, "bias")
        if b.shape != (len(ids),):
            raise InvalidReplayInputError(
                f"The 'bias' of LinearPolicy must have shape ({len(ids)},); got {b.shape} instead."
            )
        if not isinstance(self.epsilon, (int, float, np.integer, np.floating)) or not 0.0 <= float(self.epsilon) <= 1.0:
            raise InvalidReplayInputError(
                f"The 'epsilon' of LinearPolicy must be in [0, 1]; got {self.epsilon!r} instead."
            )
        object.__setattr__(self, "image_ids", ids)
        object.__setattr__(self, "weights", _readonly(w))
        object.__setattr__(self, "bias", _readonly(b))
        object.__setattr__(self, "_cache", {})

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the weights to an ``.npz`` file (arrays ``image_ids``, ``weights``, ``bias``,
        ``epsilon``), the format :meth:`load` and ``slate replay --policy`` read."""
        np.savez(path, image_ids=np.asarray(self.image_ids, dtype=str),
                 weights=np.asarray(self.weights), bias=np.asarray(self.bias),
                 epsilon=np.float64(self.epsilon))

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, epsilon: float | None = None, name: str | None = None
    ) -> LinearPolicy:
        """Read a policy written by :meth:`save` (``bias`` and ``epsilon`` optional in the
        file; ``epsilon`` given here wins).

        Examples
        --------
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "w.npz")
        >>> LinearPolicy(["a", "b"], [[1.0], [2.0]], epsilon=0.1).save(path)
        >>> p = LinearPolicy.load(path)
        >>> p.image_ids, p.weights.tolist(), p.epsilon
        (('a', 'b'), [[1.0], [2.0]], 0.1)
        """
        try:
            check_npz(path, "linear-policy file")
        except InputFileError as exc:
            raise InvalidReplayInputError(str(exc)) from None
        try:
            with np.load(path, allow_pickle=False) as data:
                missing = [k for k in ("image_ids", "weights") if k not in data.files]
                if missing:
                    raise InvalidReplayInputError(
                        f"A linear-policy file must hold the arrays 'image_ids' and 'weights'; "
                        f"'{path}' lacks {missing} (it has {sorted(data.files)})."
                    )
                ids = [str(x) for x in data["image_ids"]]
                weights = np.asarray(data["weights"])
                bias = np.asarray(data["bias"]) if "bias" in data.files else None
                eps = float(data["epsilon"]) if "epsilon" in data.files else 0.0
        except (OSError, ValueError, TypeError, EOFError, zipfile.BadZipFile) as exc:
            if isinstance(exc, InvalidReplayInputError):
                raise
            raise InvalidReplayInputError(
                f"The linear-policy file '{path}' could not be read as .npz ({exc})."
            ) from None
        try:
            return cls(ids, weights, bias=bias, epsilon=eps if epsilon is None else float(epsilon),
                       name=name or os.path.basename(os.fspath(path)))
        except InvalidReplayInputError as exc:
            raise InvalidReplayInputError(f"The linear-policy file '{path}': {exc}") from None

    def _aligned(self, log: ImpressionLog) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """Weights and bias re-indexed to the log's image vocabulary (unknown images: error).

        The re-indexing of the last vocabulary seen is kept: the chunks of a streamed log
        usually share one (the same tuple object)."""
        if log.n_features != np.shape(self.weights)[1]:
            raise InvalidReplayInputError(
                f"The log must have {np.shape(self.weights)[1]} inline features for LinearPolicy "
                f"'{self.name}'; got {log.n_features} instead."
            )
        cache = self._cache  # type: ignore[attr-defined]
        last = cache.get("vocabulary")
        if last is not None and (last[0] is log.image_ids or last[0] == log.image_ids):
            index, w, b = last[1:]
        else:
            own = {image: i for i, image in enumerate(self.image_ids)}
            index = np.fromiter((own.get(image, -1) for image in log.image_ids), np.int64,
                                len(log.image_ids))
            w = np.ascontiguousarray(np.asarray(self.weights, np.float32)[np.maximum(index, 0)])
            b = np.ascontiguousarray(np.asarray(self.bias, np.float32)[np.maximum(index, 0)])
            cache["vocabulary"] = (log.image_ids, index, w, b)
        missing = np.zeros(0, np.int64)
        if (index < 0).any():  # only then look for the images the candidates use
            used = np.zeros(len(log.image_ids) + 1, bool)
            used[log.candidates.ravel()] = True  # -1 padding lands on the extra last slot
            missing = np.flatnonzero((index < 0) & used[:-1])
        if len(missing):
            raise InvalidReplayInputError(
                f"LinearPolicy '{self.name}' must have weights for every candidate image; got none "
                f"for {len(missing)} images, e.g. '{log.image_ids[missing[0]]}'."
            )
        return w, b

    def choose(self, log: ImpressionLog) -> NDArray[np.int32]:
        """The greedy choice (candidate position) on every row, scored in a compiled loop."""
        w, b = self._aligned(log)
        features = log.features if log.features is not None else np.zeros((log.n_rows, 0), np.float32)
        return _linear_argmax(features, log.candidates, w, b)

    def scores(self, log: ImpressionLog) -> NDArray[np.float64]:
        """``(n, k_max)`` scores of the candidates (``-inf`` on padding)."""
        w, b = self._aligned(log)
        features = log.features if log.features is not None else np.zeros((log.n_rows, 0), np.float32)
        return _linear_scores(features, log.candidates, w, b)

    def action_distribution(self, log: ImpressionLog) -> ActionDistribution:
        """One-hot on the argmax, mixed with uniform exploration when ``epsilon > 0``."""
        choice = self.choose(log)
        if self.epsilon == 0.0:
            return ActionDistribution.deterministic(choice, log.shown, log.k_max, name=self.name)
        onehot = np.zeros(log.candidates.shape)
        onehot[np.arange(log.n_rows), choice] = 1.0
        probs = mix_uniform(onehot, float(self.epsilon), log.candidates >= 0)
        return ActionDistribution(
            prob_logged=probs[np.arange(log.n_rows), log.shown], probs=probs, name=self.name
        )


@dataclass(frozen=True, eq=False)
class DecisionTable:
    """Decisions produced by another system: ``(member, session, title) -> image``.

    Each log row is matched to the decision for its member, session and title. Rows without a
    decision are an error by default (``missing="error"``) or left out of the estimate
    (``missing="skip"``, counted in the report); a decided image that is not among the row's
    candidates is always an error.

    Examples
    --------
    >>> from slate.logs import read_impressions
    >>> from slate.logs.parquet import example_table
    >>> log, _ = read_impressions(example_table())
    >>> table = DecisionTable.from_arrays(member_id=[1, 1, 2, 2], session_id=[10, 10, 20, 20],
    ...                                   title_id=["T1", "T2", "T1", "T2"],
    ...                                   image_id=["T1-a", "T2-a", "T1-a", "T2-a"])
    >>> d = table.action_distribution(log)
    >>> d.choice.tolist(), d.prob_logged.tolist()
    ([0, 0, 0, 0], [1.0, 0.0, 0.0, 1.0])
    """

    table: pa.Table
    missing: str = "error"
    name: str = "decision table"

    COLUMNS = ("member_id", "session_id", "title_id", "image_id")

    def __post_init__(self) -> None:
        if self.missing not in ("error", "skip"):
            raise InvalidReplayInputError(
                f"The 'missing' parameter of DecisionTable must be 'error' or 'skip'; "
                f"got {self.missing!r} instead."
            )
        absent = [c for c in self.COLUMNS if c not in self.table.column_names]
        if absent:
            raise InvalidReplayInputError(
                f"A decision table must have the columns {list(self.COLUMNS)}; missing {absent} "
                f"(got {self.table.column_names})."
            )
        for c in self.COLUMNS:
            nulls = self.table.column(c).null_count
            if nulls:
                raise InvalidReplayInputError(
                    f"The '{c}' column of a decision table must have no nulls; got {nulls}."
                )

    @classmethod
    def from_arrays(
        cls, *, member_id: ArrayLike, session_id: ArrayLike, title_id: ArrayLike,
        image_id: ArrayLike, missing: str = "error", name: str = "decision table",
    ) -> DecisionTable:
        """From four equal-length arrays."""
        def strings(x: ArrayLike) -> pa.Array:
            raw = np.asarray(x)
            return pa.array(raw.astype(object) if raw.dtype.kind == "U" else raw, pa.string())

        try:
            table = pa.table({
                "member_id": pa.array(np.asarray(member_id), pa.int64()),
                "session_id": pa.array(np.asarray(session_id), pa.int64()),
                "title_id": strings(title_id),
                "image_id": strings(image_id),
            })
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise InvalidReplayInputError(
                f"A decision table needs int member/session ids and string title/image ids of "
                f"equal length ({exc})."
            ) from None
        return cls(table, missing=missing, name=name)

    @classmethod
    def from_parquet(
        cls, path: str | os.PathLike[str], *, missing: str = "error", name: str | None = None
    ) -> DecisionTable:
        """Read the four columns from a Parquet file.

        Raises
        ------
        InvalidReplayInputError
            Naming the file: not a regular file, not Parquet (truncated, empty, CSV), a column
            missing or of a type that does not convert (ids must be integers, titles and images
            strings).
        """
        p = os.fspath(path)
        if not os.path.isfile(p):
            raise InvalidReplayInputError(
                f"The decision table '{p}' must be an existing Parquet file; it is "
                f"{'a folder' if os.path.isdir(p) else 'missing or not a regular file'}."
            )
        try:
            schema = pq.read_schema(p)
            absent = [c for c in cls.COLUMNS if c not in schema.names]
            if absent:
                raise InvalidReplayInputError(
                    f"The decision table '{p}' must have the columns {list(cls.COLUMNS)}; it lacks "
                    f"{absent} (it has {schema.names})."
                )
            table = pq.read_table(p, columns=list(cls.COLUMNS))
            table = table.cast(pa.schema([
                ("member_id", pa.int64()), ("session_id", pa.int64()),
                ("title_id", pa.string()), ("image_id", pa.string()),
            ]))
        except (pa.ArrowException, OSError, ValueError) as exc:
            if isinstance(exc, InvalidReplayInputError):
                raise
            detail = " ".join(str(exc).split())[:200]
            raise InvalidReplayInputError(
                f"The decision table '{p}' cannot be read as Parquet with integer member_id and "
                f"session_id and string title_id and image_id columns ({detail})."
            ) from None
        return cls(table, missing=missing, name=name or p)

    def action_distribution(self, log: ImpressionLog) -> ActionDistribution:
        """Join the decisions to the log rows (a hash join in Arrow) and one-hot them."""
        t = self.table
        t_title = log.codes(t.column("title_id").to_numpy(zero_copy_only=False), kind="title")
        t_image = log.codes(t.column("image_id").to_numpy(zero_copy_only=False), kind="image")
        decisions = pa.table({
            "m": t.column("member_id"), "s": t.column("session_id"),
            "t": pa.array(t_title), "img": pa.array(t_image),
            "src": pa.array(np.arange(t.num_rows, dtype=np.int64)),
        })
        counted = decisions.group_by(["m", "s", "t"]).aggregate([("img", "count")])
        if counted.num_rows != decisions.num_rows:
            raise InvalidReplayInputError(
                f"A decision table must have one row per (member_id, session_id, title_id); got "
                f"{decisions.num_rows - counted.num_rows} repeated keys in '{self.name}'."
            )
        rows = pa.table({
            "m": log.member_id, "s": log.session_id, "t": log.title,
            "row": np.arange(log.n_rows, dtype=np.int64),
        })
        joined = rows.join(decisions, keys=["m", "s", "t"], join_type="inner")
        row_index = joined.column("row").to_numpy()
        image = np.full(log.n_rows, -2, dtype=np.int64)
        image[row_index] = joined.column("img").to_numpy()
        source = np.full(log.n_rows, -1, dtype=np.int64)
        source[row_index] = joined.column("src").to_numpy()
        decided = image != -2
        n_missing = int((~decided).sum())
        if n_missing and self.missing == "error":
            first = int(np.flatnonzero(~decided)[0])
            raise InvalidReplayInputError(
                f"The decision table '{self.name}' must decide every log row; got no decision "
                f"for {n_missing} rows, e.g. member {log.member_id[first]}, session "
                f"{log.session_id[first]}, title '{log.title_ids[log.title[first]]}' "
                f"(pass missing='skip' to leave them out)."
            )
        hit = (log.candidates == image[:, None]) & (image[:, None] >= 0)
        ok = hit.any(axis=1)
        bad = decided & ~ok
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            got = t.column("image_id")[int(source[first])].as_py()
            raise InvalidReplayInputError(
                f"The decision table '{self.name}' must pick one of each row's candidate images; "
                f"got {int(bad.sum())} rows outside them, e.g. '{got}' for title "
                f"'{log.title_ids[log.title[first]]}' (member {log.member_id[first]}, session "
                f"{log.session_id[first]})."
            )
        choice = hit.argmax(axis=1).astype(np.int32)
        return ActionDistribution.deterministic(
            choice, log.shown, log.k_max, name=self.name, decided=None if decided.all() else decided
        )


def _from_probs(probs: Any, log: ImpressionLog, name: str) -> ActionDistribution:
    shape = np.shape(probs)
    if shape != (log.n_rows, log.k_max):
        raise InvalidReplayInputError(
            f"The 'probs' of a target policy must have shape ({log.n_rows}, {log.k_max}); "
            f"got {shape} instead."
        )
    return ActionDistribution.from_probs(probs, log.shown, n_candidates=log.n_candidates, name=name)


def as_action_distribution(policy: Any, log: ImpressionLog) -> ActionDistribution:
    """Turn what :func:`slate.replay.evaluate` accepts as a policy into an ActionDistribution.

    Accepted: an :class:`ActionDistribution`; a :class:`slate.policy.Policy`, i.e. anything
    with ``action_distribution(log)`` (:class:`TargetPolicy`: :class:`LinearPolicy`,
    :class:`DecisionTable`, ...; or :func:`slate.policy.greedy` of a scorer of the log) returning
    an ActionDistribution or ``(n_rows, k_max)`` probabilities; a mapping ``{"probs": (n, k_max)}``
    or ``{"choice": (n,)}``; a Parquet path to a decision table. Anything else is refused by
    :func:`slate.policy.as_policy`, naming what it lacks.
    """
    if isinstance(policy, ActionDistribution):
        dist = policy
    elif isinstance(policy, (str, os.PathLike)):
        dist = DecisionTable.from_parquet(policy).action_distribution(log)
    elif isinstance(policy, Mapping) and ("probs" in policy or "choice" in policy):
        if "probs" in policy:
            dist = _from_probs(policy["probs"], log, str(policy.get("name", "probs")))
        else:
            dist = ActionDistribution.deterministic(
                policy["choice"], log.shown, log.k_max, name=str(policy.get("name", "choice"))
            )
    else:
        target = as_policy(
            policy, what="The 'policy' parameter of evaluate", error=InvalidReplayInputError,
            also="an ActionDistribution, a decision-table path, a mapping with 'probs' or 'choice', ",
        )
        if not isinstance(target, Policy):
            raise InvalidReplayInputError(
                f"The 'policy' parameter of evaluate must say what it would do on each logged row "
                f"(action_distribution(log)); {type(policy).__name__} only samples pages (decide)."
            )
        result = target.action_distribution(log)
        dist = result if isinstance(result, ActionDistribution) else _from_probs(
            result, log, str(getattr(target, "name", type(target).__name__)))
    dist.check_log(log)
    return dist
