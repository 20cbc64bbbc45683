"""Import from and export to the Open Bandit Pipeline (obp) and the Open Bandit Dataset (OBD).

obp describes logged bandit feedback as a dict (its ``BanditFeedback``): ``n_rounds``,
``n_actions``, ``action`` (n,), ``position`` (n,), ``reward`` (n,), ``pscore`` (n,), ``context``
(n, d) and ``action_context`` (n_actions, d_a), optionally ``pi_b`` (n, n_actions, len_list),
the logging policy's distribution. One round is one action shown at one position, chosen among
all ``n_actions``.

In ``slate.impressions`` terms a round is a page of one title, the position's slot
(``title_id = "position-<p>"``, ``col = p``), whose candidates are all the actions
(``image_id = "action-<a>"``, or the names given). obp has no members or sessions: each round
is its own page, session and member (ids = the round number) unless ids are given.

The Open Bandit Dataset's files (``<policy>/<campaign>/<campaign>.csv`` and
``item_context.csv``, as shipped with obp) are read the way obp's ``OpenBanditDataset`` reads
them: rows sorted by time, positions ranked densely from 0, the context one-hot encoding the
``user_feature_*`` columns (categories sorted, the first dropped), the action context the
label-encoded item feature columns but ``item_id`` followed by ``item_feature_0`` (obp 0.5;
obp 0.4 also kept ``item_id`` as a feature). No pandas or obp is needed.

The dataset's evaluation policy, Bernoulli Thompson sampling with ZOZOTOWN's production prior,
is context-free: :func:`bernoulli_ts_distribution` estimates which item it puts at each position
by Monte Carlo over its Beta prior, the distribution obp's OBD examples evaluate.

References
----------
Saito, Y., Aihara, S., Matsutani, M. & Narita, Y. (2021). Open Bandit Dataset and Pipeline:
towards realistic and reproducible off-policy evaluation. NeurIPS Datasets and Benchmarks.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from numpy.typing import ArrayLike, NDArray

from slate.logs.log import ImpressionLog
from slate.logs.parquet import InvalidLogError, impressions_table

__all__ = [
    "OBP_KEYS",
    "bernoulli_ts_distribution",
    "from_obp",
    "open_bandit_feedback",
    "read_open_bandit_dataset",
    "to_obp",
]

OBP_KEYS = ("n_rounds", "n_actions", "action", "position", "reward", "pscore", "context",
            "action_context")
"""Keys of obp's bandit-feedback dict read and written here."""


def _array(feedback: Mapping[str, Any], key: str, n: int, dtype: Any) -> NDArray[Any]:
    try:
        raw = feedback[key]
    except KeyError:
        raise InvalidLogError(
            f"An obp bandit-feedback dict must have the key '{key}'; got keys {sorted(feedback)}."
        ) from None
    value = np.asarray(raw)
    if value.shape[:1] != (n,):
        raise InvalidLogError(
            f"The '{key}' of an obp bandit-feedback dict must have {n} (n_rounds) entries; got "
            f"shape {value.shape} instead."
        )
    try:
        return value.astype(dtype)
    except (TypeError, ValueError):
        raise InvalidLogError(
            f"The '{key}' of an obp bandit-feedback dict must be numeric; got {value.dtype}."
        ) from None


def from_obp(
    feedback: Mapping[str, Any],
    *,
    action_ids: Sequence[str] | None = None,
    member_id: ArrayLike | None = None,
    session_id: ArrayLike | None = None,
    page_id: ArrayLike | None = None,
    timestamp: ArrayLike | None = None,
    explored: bool | ArrayLike = True,
) -> pa.Table:
    """A ``slate.impressions/1`` table from obp's bandit-feedback dict.

    Parameters
    ----------
    feedback : mapping
        With ``n_rounds``, ``n_actions``, ``action``, ``reward``, ``pscore`` and optionally
        ``position`` (None: position 0), ``context`` (stored as ``features``), ``pi_b``
        (n, n_actions[, len_list]: stored as ``propensities`` at each round's position) and
        ``action_ids`` (names of the actions, as :func:`to_obp` writes).
    action_ids : sequence of str, optional
        Image id of each action (default ``feedback["action_ids"]``, else ``"action-<a>"``).
    member_id, session_id, page_id : array_like (n,), optional
        Default: the round number.
    timestamp : array_like (n,), optional
        ``datetime64`` or microseconds since the epoch (default: the round number, in µs).
    explored : bool or array_like (n,), default True

    Returns
    -------
    pyarrow.Table
        Rows are not validated (read it with :func:`slate.logs.read_impressions`).

    Raises
    ------
    InvalidLogError
        A key is missing, an array has the wrong length, an action is outside
        ``[0, n_actions)``, or a reward is not 0 or 1 (the schema's label set).

    Examples
    --------
    >>> import numpy as np
    >>> from slate.logs import read_impressions
    >>> feedback = {"n_rounds": 3, "n_actions": 2, "action": np.array([0, 1, 1]),
    ...             "position": np.array([0, 0, 1]), "reward": np.array([1, 0, 1]),
    ...             "pscore": np.full(3, 0.5), "context": np.zeros((3, 2))}
    >>> log, report = read_impressions(from_obp(feedback))
    >>> log.n_rows, report.n_rejected, log.title_ids, log.image_ids
    (3, 0, ('position-0', 'position-1'), ('action-0', 'action-1'))
    """
    if not isinstance(feedback, Mapping):
        raise InvalidLogError(
            f"The 'feedback' parameter of from_obp must be obp's bandit-feedback dict; got "
            f"{type(feedback).__name__} instead."
        )
    for key in ("n_rounds", "n_actions"):
        if key not in feedback:
            raise InvalidLogError(
                f"An obp bandit-feedback dict must have the key '{key}'; got keys {sorted(feedback)}."
            )
    n, n_actions = int(feedback["n_rounds"]), int(feedback["n_actions"])
    action = _array(feedback, "action", n, np.int64)
    if n and (action.min() < 0 or action.max() >= n_actions):
        raise InvalidLogError(
            f"The 'action' of an obp bandit-feedback dict must lie in [0, {n_actions}); got values "
            f"from {action.min()} to {action.max()} instead."
        )
    raw_reward = _array(feedback, "reward", n, np.float64)
    if not np.isin(raw_reward, (0.0, 1.0)).all():
        bad = raw_reward[~np.isin(raw_reward, (0.0, 1.0))]
        raise InvalidLogError(
            f"The 'reward' of an obp bandit-feedback dict must be 0 or 1 (the label set of "
            f"slate.impressions); got {len(bad)} other values, e.g. {float(bad[0])!r}."
        )
    pscore = _array(feedback, "pscore", n, np.float64)
    position = (np.zeros(n, np.int64) if feedback.get("position") is None
                else _array(feedback, "position", n, np.int64))
    names = action_ids if action_ids is not None else feedback.get("action_ids")
    ids = (np.array([f"action-{a}" for a in range(n_actions)], dtype=object) if names is None
           else np.asarray([str(x) for x in names], dtype=object))
    if len(ids) != n_actions:
        raise InvalidLogError(
            f"The 'action_ids' must name the {n_actions} actions; got {len(ids)} names instead."
        )
    rounds = np.arange(n, dtype=np.int64)
    ts = rounds if timestamp is None else np.asarray(timestamp)
    candidates = pa.ListArray.from_arrays(
        pa.array(np.arange(0, n * n_actions + 1, n_actions, dtype=np.int32)),
        pa.array(np.tile(ids, n), pa.string()),
    )
    propensities = None
    if feedback.get("pi_b") is not None:
        pi_b = np.asarray(feedback["pi_b"], dtype=np.float64)
        if pi_b.ndim == 3:
            pi_b = pi_b[rounds, :, position]
        if pi_b.shape != (n, n_actions):
            raise InvalidLogError(
                f"The 'pi_b' of an obp bandit-feedback dict must have shape ({n}, {n_actions}"
                f"[, len_list]); got {np.shape(feedback['pi_b'])} instead."
            )
        propensities = pi_b
    context = feedback.get("context")
    features = None
    if context is not None:
        features = np.asarray(context, dtype=np.float32)
        if features.ndim != 2 or features.shape[0] != n:
            raise InvalidLogError(
                f"The 'context' of an obp bandit-feedback dict must have shape ({n}, d); got "
                f"{features.shape} instead."
            )
    return impressions_table(
        member_id=rounds if member_id is None else member_id,
        session_id=rounds if session_id is None else session_id,
        page_id=rounds if page_id is None else page_id,
        timestamp=ts,
        title_id=np.array([f"position-{p}" for p in position], dtype=object),
        row=np.zeros(n, np.int32), col=position.astype(np.int32),
        image_id=ids[action], candidate_ids=candidates, propensity=pscore,
        explored=np.broadcast_to(np.asarray(explored, dtype=bool), (n,)),
        reward=raw_reward.astype(np.int8), propensities=propensities, features=features,
    )


def to_obp(
    log: ImpressionLog,
    *,
    action_ids: Sequence[str] | None = None,
    action_context: ArrayLike | None = None,
    include_pi_b: bool = False,
) -> dict[str, Any]:
    """obp's bandit-feedback dict from a validated log.

    Actions are the log's images (``log.image_ids``, in that order; the dict's extra key
    ``action_ids`` names them), ``position`` the dense rank of each row's ``(row, col)`` slot,
    ``context`` the log's features (a column of ones without features). obp assumes every
    action is available in every round; a row whose candidates are fewer still has its logged
    propensity as ``pscore``.

    Parameters
    ----------
    log : ImpressionLog
    action_ids : sequence of str, optional
        The actions, in order (default ``log.image_ids``); every image of the log must be one.
    action_context : array_like (n_actions, d_a), optional
        Default: the identity (one-hot actions), as obp's synthetic data.
    include_pi_b : bool, default False
        Also export the logging distribution ``pi_b`` (n, n_actions, len_list), 0 outside the
        candidates and the row's position (needs the log's ``propensities``).

    Returns
    -------
    dict
        ``n_rounds``, ``n_actions``, ``action``, ``position``, ``reward``, ``pscore``,
        ``context``, ``action_context``, ``action_ids`` (and ``pi_b``).

    Examples
    --------
    >>> from slate.logs import read_impressions
    >>> from slate.logs.parquet import example_table
    >>> log, _ = read_impressions(example_table())
    >>> feedback = to_obp(log)
    >>> feedback["action"].tolist(), feedback["position"].tolist(), feedback["action_ids"]
    ([0, 3, 1, 2], [0, 1, 0, 1], ('T1-a', 'T1-b', 'T2-a', 'T2-b'))
    """
    n = log.n_rows
    ids = tuple(log.image_ids) if action_ids is None else tuple(str(a) for a in action_ids)
    n_actions = len(ids)
    index = {a: i for i, a in enumerate(ids)}
    to_action = np.array([index.get(image, -1) for image in log.image_ids] + [-1], dtype=np.int64)
    used = np.unique(np.r_[log.image, log.candidates[log.candidates >= 0]])
    if (to_action[used] < 0).any():
        first = log.image_ids[int(used[to_action[used] < 0][0])]
        raise InvalidLogError(
            f"The 'action_ids' must include every image of the log; got none for '{first}'."
        )
    slot = log.row.astype(np.int64) * (int(log.col.max(initial=0)) + 1) + log.col
    _, position = np.unique(slot, return_inverse=True)
    context = (log.features.astype(np.float64) if log.features is not None
               else np.ones((n, 1)))
    if action_context is None:
        a_ctx = np.eye(n_actions)
    else:
        a_ctx = np.asarray(action_context, dtype=np.float64)
        if a_ctx.ndim != 2 or a_ctx.shape[0] != n_actions:
            raise InvalidLogError(
                f"The 'action_context' must have shape ({n_actions}, d_a) (one row per image of "
                f"the log); got {a_ctx.shape} instead."
            )
    out: dict[str, Any] = {
        "n_rounds": n, "n_actions": n_actions,
        "action": to_action[log.image], "position": position.astype(np.int64),
        "reward": log.reward.astype(np.int64), "pscore": log.propensity.astype(np.float64),
        "context": context, "action_context": a_ctx, "action_ids": ids,
    }
    if include_pi_b:
        if log.propensities is None:
            raise InvalidLogError(
                "The log must have a 'propensities' column to export pi_b; got none."
            )
        len_list = int(position.max(initial=0)) + 1
        pi_b = np.zeros((n, n_actions, len_list))
        rows = np.repeat(np.arange(n), log.k_max)
        cands = to_action[log.candidates.ravel()]
        real = log.candidates.ravel() >= 0
        pi_b[rows[real], cands[real], np.repeat(position, log.k_max)[real]] = log.propensities.ravel()[real]
        out["pi_b"] = pi_b
    return out


def _one_hot_drop_first(columns: list[pa.ChunkedArray]) -> NDArray[np.float64]:
    """pandas.get_dummies(drop_first=True) of string columns: per column, the sorted categories
    but the first, in order."""
    parts = []
    for column in columns:
        values = column.cast(pa.string()).to_numpy(zero_copy_only=False).astype(str)
        categories, codes = np.unique(values, return_inverse=True)
        parts.append(np.eye(len(categories))[codes][:, 1:])
    return np.hstack(parts) if parts else np.zeros((0, 0))


def open_bandit_feedback(path: str | os.PathLike[str]) -> dict[str, Any]:
    """obp's bandit-feedback dict from Open Bandit Dataset files, preprocessed as obp's
    ``OpenBanditDataset`` does (see the module docstring).

    Parameters
    ----------
    path : str or path-like
        A campaign folder (``.../random/men``, holding ``men.csv`` and ``item_context.csv``) or
        the campaign's CSV file (``item_context.csv`` is then read beside it, if there).

    Returns
    -------
    dict
        The keys of :data:`OBP_KEYS` (``action_context`` None without ``item_context.csv``),
        plus ``timestamp`` (datetime64[us], UTC) and ``action_ids`` (``"item-<id>"``).
        ``n_actions`` counts the items of ``item_context.csv`` (obp counts up to the largest
        logged item; the same on the published files), else up to the largest logged item.

    Raises
    ------
    InvalidLogError
        No such file, a required column missing, or the CSV unreadable.
    """
    p = Path(path)
    csv = p / f"{p.name}.csv" if p.is_dir() else p
    if not csv.is_file():
        raise InvalidLogError(
            f"The Open Bandit Dataset path must be a campaign folder holding <campaign>.csv, or "
            f"that CSV file; got '{path}' instead."
        )
    try:
        table = pacsv.read_csv(csv, convert_options=pacsv.ConvertOptions(
            column_types={"timestamp": pa.timestamp("us", tz="UTC")}))
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise InvalidLogError(f"The Open Bandit Dataset file {csv} could not be read ({exc}).") from None
    needed = ["timestamp", "item_id", "position", "click", "propensity_score"]
    missing = [c for c in needed if c not in table.column_names]
    if missing:
        raise InvalidLogError(
            f"The Open Bandit Dataset file {csv} must have the column(s) {missing}; got "
            f"{table.column_names} instead."
        )
    order = np.argsort(table.column("timestamp").cast(pa.int64()).to_numpy(), kind="stable")
    table = table.take(pa.array(order))
    action = table.column("item_id").to_numpy().astype(np.int64)
    _, position = np.unique(table.column("position").to_numpy(), return_inverse=True)
    users = [table.column(c) for c in table.column_names if "user_feature" in c]
    n_actions = int(action.max()) + 1 if len(action) else 0
    action_context = None
    items = csv.parent / "item_context.csv"
    if items.is_file():
        item_table = pacsv.read_csv(items)
        item_table = item_table.drop_columns([c for c in item_table.column_names
                                              if c == "" or c.startswith("Unnamed")])
        categorical = []
        for name in item_table.column_names:
            if name in ("item_id", "item_feature_0"):
                continue
            values = item_table.column(name).to_numpy(zero_copy_only=False)
            categorical.append(np.unique(values, return_inverse=True)[1].astype(np.float64))
        numeric = item_table.column("item_feature_0").to_numpy().astype(np.float64)
        action_context = np.column_stack([*categorical, numeric])
        # every item of the campaign is an action, logged or not (obp counts to the largest
        # logged item only, the same on the published files)
        n_actions = max(n_actions, item_table.num_rows)
    return {
        "n_rounds": table.num_rows,
        "n_actions": n_actions,
        "action": action,
        "position": position.astype(np.int64),
        "reward": table.column("click").to_numpy().astype(np.int64),
        "pscore": table.column("propensity_score").to_numpy().astype(np.float64),
        "context": _one_hot_drop_first(users) if users else np.ones((table.num_rows, 1)),
        "action_context": action_context,
        "timestamp": pc.cast(table.column("timestamp"), pa.int64()).to_numpy().astype("datetime64[us]"),
        "action_ids": tuple(f"item-{a}" for a in range(n_actions)),
    }


def read_open_bandit_dataset(
    path: str | os.PathLike[str], *, explored: bool | None = None
) -> pa.Table:
    """A ``slate.impressions/1`` table from Open Bandit Dataset files.

    Each CSV row becomes a page of one title (its position's slot) whose candidates are all
    the items (``"item-<id>"``), with the logged ``propensity_score``, ``click`` as the reward,
    the one-hot user features as ``features`` and the CSV's timestamps.

    Parameters
    ----------
    path : str or path-like
        See :func:`open_bandit_feedback`.
    explored : bool, optional
        Default: True for the uniformly random logging policy (the campaign folder sits in a
        folder named ``random``, as in ``obd/random/all``), else False.
    """
    feedback = open_bandit_feedback(path)
    if explored is None:
        p = Path(path).resolve()
        campaign_folder = p if p.is_dir() else p.parent
        explored = campaign_folder.parent.name == "random"
    return from_obp(feedback, timestamp=feedback["timestamp"], explored=explored)


def bernoulli_ts_distribution(
    alpha: ArrayLike,
    beta: ArrayLike,
    *,
    len_list: int = 3,
    n_sim: int = 100_000,
    seed: int | None = 0,
    batch_size: int = 10_000,
) -> NDArray[np.float64]:
    """Which item Bernoulli Thompson sampling puts at each position, by Monte Carlo.

    Each simulated page draws ``theta[a] ~ Beta(alpha[a], beta[a])`` for every item, ranks the
    items by ``theta`` (largest first) and shows the first ``len_list``; the result is the share
    of the ``n_sim`` pages with item ``a`` at position ``p``. This is the (context-free)
    evaluation policy of the Open Bandit Dataset (Saito et al. 2021), whose production prior per
    campaign ships with obp as ``obp/policy/conf/prior_bts.yaml`` (``{campaign: {alpha: [...],
    beta: [...]}}``).

    Parameters
    ----------
    alpha, beta : array_like (n_actions,)
        Positive Beta parameters of each item.
    len_list : int, default 3
        Positions per page (at most ``n_actions``).
    n_sim : int, default 100000
        Simulated pages. Each share has standard error at most ``0.5 / sqrt(n_sim)``.
    seed : int, optional
        Seeds the draws (same seed, same numbers).
    batch_size : int, default 10000
        Pages drawn at once (bounds memory to ``batch_size * n_actions`` floats); the result
        does not depend on it.

    Returns
    -------
    ndarray (n_actions, len_list)
        Each column sums to 1 (a position shows one item), each row to at most 1 (an item is
        shown once per page). obp's ``action_dist`` for ``n`` rounds is this array repeated:
        ``np.broadcast_to(dist, (n, *dist.shape))``.

    Raises
    ------
    InvalidLogError
        ``alpha``/``beta`` not positive, finite and of the same length, ``len_list`` not in
        ``[1, n_actions]``, or ``n_sim``/``batch_size`` not a positive integer.

    References
    ----------
    Saito, Y., Aihara, S., Matsutani, M. & Narita, Y. (2021). Open Bandit Dataset and Pipeline:
    towards realistic and reproducible off-policy evaluation. NeurIPS Datasets and Benchmarks.

    Examples
    --------
    >>> dist = bernoulli_ts_distribution([90, 10], [10, 90], len_list=2, n_sim=1000, seed=0)
    >>> dist.tolist()  # item 0 (mean 0.9) is first on every simulated page
    [[1.0, 0.0], [0.0, 1.0]]
    """
    a = np.asarray(alpha, dtype=np.float64)
    b = np.asarray(beta, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape or len(a) == 0:
        raise InvalidLogError(
            f"The 'alpha' and 'beta' of bernoulli_ts_distribution must be 1-d arrays of the same "
            f"length (one per item); got shapes {a.shape} and {b.shape} instead."
        )
    for name, param in (("alpha", a), ("beta", b)):
        if not (np.isfinite(param).all() and (param > 0).all()):
            bad = param[~(np.isfinite(param) & (param > 0))]
            raise InvalidLogError(
                f"The '{name}' of bernoulli_ts_distribution must be positive and finite; got "
                f"{len(bad)} other values, e.g. {float(bad[0])!r}."
            )
    n_actions = len(a)
    for name, value, high in (("len_list", len_list, n_actions), ("n_sim", n_sim, None),
                              ("batch_size", batch_size, None)):
        if (not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1
                or (high is not None and value > high)):
            bound = f"in [1, {high}] (n_actions)" if high is not None else ">= 1"
            raise InvalidLogError(
                f"The '{name}' parameter of bernoulli_ts_distribution must be an integer "
                f"{bound}; got {value!r} instead."
            )
    L = int(len_list)
    rng = np.random.default_rng(seed)
    counts = np.zeros(n_actions * L, dtype=np.int64)
    slot = np.arange(L)
    done = 0
    while done < n_sim:
        size = min(int(batch_size), int(n_sim) - done)
        theta = rng.beta(a, b, size=(size, n_actions))
        if L < n_actions:
            top = np.argpartition(-theta, L - 1, axis=1)[:, :L]
        else:
            top = np.broadcast_to(np.arange(n_actions), (size, n_actions))
        order = np.argsort(-np.take_along_axis(theta, top, axis=1), axis=1, kind="stable")
        ranked = np.take_along_axis(top, order, axis=1)  # (size, L): item at each position
        counts += np.bincount((ranked * L + slot).ravel(), minlength=n_actions * L)
        done += size
    return counts.reshape(n_actions, L) / float(n_sim)
