"""Replay ``compose()`` with other weights: :class:`ComposePolicy`, the ``kind = "compose"`` policy.

The target re-runs :class:`slate.serve.Composer` offline on every logged page, in time order,
with the team's scorer, a :class:`~slate.serve.ComposeConfig` (the weights to evaluate), the
image embeddings, no exploration (a config's ``exploration`` is set aside: the target is the
page optimiser's choice), and an in-memory stability store that holds the target's *own*
previous decisions (so dwell, churn and the change budget act as they would if the target had
served). Each page's request is rebuilt from the log: member, session, page id, time, the titles
with their candidates in logged order and positions, and, when the log is a decision log on disk,
each title's ``locked`` flag and the request ``context`` (the :data:`slate.logs.schema.DECISION_COLUMNS`
read beside the log). With exploration off, the pages it picks are the pages ``compose()``
serves online for the same requests and weights, row for row, provided the solver is not cut
short by its time budget (a time-limited solve depends on the machine's load: give
``solver_time_ms`` room, or use a solver that always finishes, to compare row for row).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from slate.logs.log import ImpressionLog
from slate.replay.policy import ActionDistribution, InvalidReplayInputError

__all__ = ["ComposePolicy"]


class ComposePolicy:
    """The decisions ``compose()`` would make with ``config`` (see the module docstring): a
    :class:`slate.policy.Policy` (a replay ``TargetPolicy``) made from a
    :class:`slate.policy.Scorer` by the page optimiser (read through :func:`slate.policy.as_scorer`).

    Parameters
    ----------
    scorer : callable
        ``f(request) -> (n_titles, n_images)`` scores (e.g. :func:`slate.serve.load_scorer`).
    config : ComposeConfig
    catalog : ImageEmbeddings, optional
        Image embeddings (required when ``config.diversity`` was set above 0).
    name : str, optional
    stateful : bool, default True
        Keep the target's stability state across a member's pages (as serving does).

    Examples
    --------
    >>> import numpy as np
    >>> from slate.logs import read_impressions
    >>> from slate.logs.parquet import example_table
    >>> from slate.serve import ComposeConfig
    >>> log, _ = read_impressions(example_table())
    >>> policy = ComposePolicy(lambda r: np.array([[0.1, 0.9], [0.8, 0.2]]),
    ...                        ComposeConfig(solver="independent", diversity=0.0))
    >>> policy.action_distribution(log).choice.tolist()
    [1, 0, 1, 0]
    """

    def __init__(
        self,
        scorer: Callable[..., Any],
        config: Any,
        catalog: Any = None,
        *,
        name: str | None = None,
        stateful: bool = True,
    ) -> None:
        self.scorer = scorer
        self.config = config
        self.catalog = catalog
        self.name = name or "compose"
        self.stateful = stateful

    def _extras(self, log: ImpressionLog) -> tuple[NDArray[np.bool_], list[str | None]]:
        """``locked`` per row and ``context`` per row, read beside the log when it is on disk."""
        locked = np.zeros(log.n_rows, dtype=bool)
        context: list[str | None] = [None] * log.n_rows
        source = Path(log.rejections.source)
        if not source.exists():
            return locked, context
        import pyarrow.parquet as pq

        names = pq.read_schema(next(iter(sorted(source.rglob("*.parquet")))) if source.is_dir()
                               else source).names
        wanted = [c for c in ("locked", "context") if c in names]
        if not wanted:
            return locked, context
        table = pq.read_table(source, columns=wanted, partitioning="hive" if source.is_dir() else None)
        rows = log.source_row  # rows of the file or folder read (a streamed chunk: of its file)
        if len(rows) and int(rows.max()) >= table.num_rows:
            raise InvalidReplayInputError(
                f"The log's rows do not line up with the decision columns read from {source}; "
                "replay the log as read from that path."
            )
        if "locked" in wanted:
            flags = table.column("locked").to_numpy(zero_copy_only=False)
            locked = np.asarray([bool(x) for x in flags[rows]], dtype=bool)
        if "context" in wanted:
            values = table.column("context").to_pylist()
            context = [values[r] for r in rows.tolist()]
        return locked, context

    def action_distribution(self, log: ImpressionLog) -> ActionDistribution:
        """Compose every logged page again with the target config; one-hot on its choices."""
        from slate.serve import Composer
        from slate.stability import InMemoryStore

        locked, context = self._extras(log)
        config = self.config
        if config is not None and config.exploration is not None:
            config = config.model_copy(update={"exploration": None})  # the target's decisions, not its draws
        composer = Composer(self.scorer, InMemoryStore() if self.stateful else None, None,
                            config=config, catalog=self.catalog)
        # rows grouped by page, pages in time order (then page id), titles in logged order
        by_page = np.lexsort((np.arange(log.n_rows), log.page_id, log.timestamp))
        page_of = log.page_id[by_page]
        cuts = np.flatnonzero(np.r_[True, page_of[1:] != page_of[:-1], True])
        choice = np.zeros(log.n_rows, dtype=np.int32)
        title_ids, image_ids = log.title_ids, log.image_ids
        for a, b in itertools.pairwise(cuts.tolist()):
            rows = by_page[a:b]
            request = logged_request(log, rows, title_ids, image_ids, locked, context)
            decision = composer.compose(request)
            for j, (r, shown) in enumerate(zip(rows.tolist(), decision.image_ids, strict=True)):
                choice[r] = request["titles"][j]["image_ids"].index(shown)
        return ActionDistribution.deterministic(choice, log.shown, log.k_max, name=self.name)


def logged_request(
    log: ImpressionLog,
    rows: NDArray[np.int64],
    title_ids: tuple[str, ...],
    image_ids: tuple[str, ...],
    locked: NDArray[np.bool_],
    context: list[str | None],
) -> dict[str, Any]:
    first = int(rows[0])
    titles = []
    for r in rows.tolist():
        k = int(log.n_candidates[r])
        titles.append({
            "title_id": title_ids[log.title[r]],
            "image_ids": [image_ids[c] for c in log.candidates[r, :k].tolist()],
            "row": int(log.row[r]),
            "col": int(log.col[r]),
            "locked": bool(locked[r]),
        })
    from datetime import datetime, timezone

    raw = context[first]
    try:
        ctx = json.loads(raw) if raw else {}
    except json.JSONDecodeError as err:
        raise InvalidReplayInputError(f"The logged context of page {int(log.page_id[first])} is not JSON ({err}).") from None
    return {
        "member_id": int(log.member_id[first]),
        "session_id": int(log.session_id[first]),
        "page_id": int(log.page_id[first]),
        "timestamp": datetime.fromtimestamp(int(log.timestamp[first]) / 1e6, tz=timezone.utc),
        "titles": titles,
        "context": ctx if isinstance(ctx, dict) else {},
    }
