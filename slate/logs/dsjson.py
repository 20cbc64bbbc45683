"""Import Vowpal Wabbit decision-service JSON (DSJSON) logs into ``slate.impressions``.

DSJSON (Vowpal Wabbit's ``--dsjson`` input, also written by Azure Personalizer) holds one JSON
event per line. Three variants are read, told apart by their fields:

* **contextual bandit** (``_label_cost`` / ``_labelIndex`` at the top level): one decision among
  the actions of ``c._multi``; ``_labelIndex`` is the 0-based index of the chosen action
  (``_label_Action`` the 1-based one), ``_label_probability`` its probability, ``a`` the
  1-based action ids in the order the policy ranked them (chosen first) and ``p`` their
  probabilities. One impression row, title :attr:`DsjsonOptions.title_id`.
* **conditional contextual bandit** (``_outcomes`` and ``c._slots``, actions without
  ``_slot_id``): one decision per slot, each slot's outcome holding its ``_id``,
  ``_label_cost``, ``_a`` (0-based indices into ``c._multi``, chosen first: the actions still
  available to that slot) and ``_p``. One row per slot, title = the slot's ``_id``; image ids
  are ``"<slot>:<action>"`` (an action offered to several slots is a different image of each).
* **slates** (``_outcomes`` and actions with ``_slot_id``): every slot chooses among its own
  actions (``_a``: indices among that slot's actions, chosen first), and the whole slate has
  one ``_label_cost`` at the top level, given to every slot's row.

Conventions (VW's): cost = -reward. The row's ``engagement`` is the raw reward ``-cost``; its
``reward`` (the quality-play label) is ``1`` when ``-cost > reward_threshold`` (default 0),
else ``0``. ``EventId`` becomes the page id (hashed to 64 bits), ``Timestamp`` the timestamp
(ISO 8601, 7 fractional digits allowed, UTC without an offset); ``explored`` is true when the
chosen action was not the most probable one. An action's id is its ``_tag``, else the value at
:attr:`DsjsonOptions.action_id_path` (e.g. ``"i.id"``), else its 0-based index. Action features
(``_multi``) and slot features stay behind: ``slate.impressions`` carries one context vector per
row, taken from :attr:`DsjsonOptions.feature_paths` (numbers in ``c``).

A line that cannot be converted (malformed JSON, a missing or malformed field, an unlabeled
event, an action index or probability out of range, a bad timestamp) is counted by reason and
skipped; the import never stops on one bad line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from slate.errors import RecordRejectedError
from slate.logs.imports import ImportReport, stable_id, write_validated
from slate.logs.parquet import ImpressionWriter, InvalidLogError, impressions_table

__all__ = ["DsjsonOptions", "import_dsjson", "parse_timestamp"]

_TS = re.compile(r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:?\d{2})?$")


def parse_timestamp(text: object) -> int:
    """Microseconds since the epoch (UTC) of an ISO 8601 timestamp as DSJSON writes it.

    Examples
    --------
    >>> parse_timestamp("1970-01-01T00:00:01.5000000Z"), parse_timestamp("1970-01-01T01:00:00+01:00")
    (1500000, 0)
    """
    m = _TS.match(str(text)) if isinstance(text, str) else None
    if m is None:
        raise RecordRejectedError("bad_timestamp", f"'Timestamp' must be ISO 8601; got {text!r}")
    day, clock, frac, zone = m.groups()
    try:
        us = int(np.datetime64(f"{day}T{clock}", "us").astype(np.int64))
    except ValueError:
        raise RecordRejectedError("bad_timestamp", f"'Timestamp' is not a valid date; got {text!r}") from None
    if frac:
        us += int((frac + "000000")[:6])
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        hh, mm = int(zone[1:3]), int(zone[-2:])
        us -= sign * (hh * 3600 + mm * 60) * 1_000_000
    return us


@dataclass(frozen=True)
class DsjsonOptions:
    """How DSJSON events become impression rows.

    Attributes
    ----------
    title_id : str
        Title of a contextual-bandit decision (CCB and slates use their slots).
    action_id_path : str, optional
        Dotted path in an action of ``_multi`` to its id when it has no ``_tag`` (e.g. ``"i.id"``).
    member_id_path : str, optional
        Dotted path in ``c`` to the member id (e.g. ``"User.id"``; list items by index:
        ``"FromUrl.0.name"``). Default: each event is its own member.
    feature_paths : tuple of str
        Dotted paths in ``c`` to numeric context features, in order.
    reward_threshold : float
        ``reward = 1`` when ``-cost > reward_threshold``.
    """

    title_id: str = "decision"
    action_id_path: str | None = None
    member_id_path: str | None = None
    feature_paths: tuple[str, ...] = field(default_factory=tuple)
    reward_threshold: float = 0.0


def _get(obj: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(obj, list) and part.isdigit() and int(part) < len(obj):
            obj = obj[int(part)]
        elif isinstance(obj, dict) and part in obj:
            obj = obj[part]
        else:
            return None
    return obj


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RecordRejectedError("missing_field", f"'{what}' must be a number; got {value!r}")
    return float(value)


def _probability(value: Any, what: str) -> float:
    p = _number(value, what)
    if not 0.0 < p <= 1.0:
        raise RecordRejectedError("bad_probability", f"'{what}' must be in (0, 1]; got {p!r}")
    return p


def _actions(event: dict[str, Any], opts: DsjsonOptions) -> list[dict[str, Any]]:
    c = event.get("c")
    multi = c.get("_multi") if isinstance(c, dict) else None
    if not isinstance(multi, list) or not multi or not all(isinstance(a, dict) for a in multi):
        raise RecordRejectedError("missing_field", "'c._multi' must be a non-empty list of actions")
    return multi


def _action_id(action: dict[str, Any], index: int, opts: DsjsonOptions) -> str:
    tag = action.get("_tag")
    if tag is None and opts.action_id_path:
        tag = _get(action, opts.action_id_path)
    return str(index) if tag is None else str(tag)


def _context(event: dict[str, Any], opts: DsjsonOptions) -> tuple[int, list[float]]:
    page = stable_id(event["EventId"])
    member = page
    if opts.member_id_path:
        value = _get(event.get("c"), opts.member_id_path)
        if value is None:
            raise RecordRejectedError("missing_field", f"member id 'c.{opts.member_id_path}' is missing")
        member = stable_id(value)
    feats = []
    for path in opts.feature_paths:
        value = _get(event.get("c"), path)
        feats.append(float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else float("nan"))
    return member, feats


def _row(member: int, page: int, ts: int, title: str, col: int, shown: str, cands: list[str],
         probs: list[float], cost: float, feats: list[float], opts: DsjsonOptions) -> dict[str, Any]:
    p = probs[cands.index(shown)]
    return {"member_id": member, "session_id": page, "page_id": page, "timestamp": ts,
            "title_id": title, "row": 0, "col": col, "image_id": shown, "candidate_ids": cands,
            "propensity": p, "propensities": probs, "explored": p < max(probs),
            "reward": int(-cost > opts.reward_threshold), "engagement": -cost, "features": feats}


def _cb(event: dict[str, Any], opts: DsjsonOptions, head: tuple[int, int, int, list[float]]) -> list[dict[str, Any]]:
    member, page, ts, feats = head
    multi = _actions(event, opts)
    ids = [_action_id(a, i, opts) for i, a in enumerate(multi)]
    if "_label_cost" not in event:
        raise RecordRejectedError("unlabeled", "no '_label_cost' (an event without an outcome)")
    cost = _number(event["_label_cost"], "_label_cost")
    index = event.get("_labelIndex")
    if index is None and event.get("_label_Action") is not None:
        index = int(_number(event["_label_Action"], "_label_Action")) - 1
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(multi):
        raise RecordRejectedError("bad_action", f"'_labelIndex' must index c._multi (0..{len(multi) - 1}); got {index!r}")
    prob = _probability(event.get("_label_probability"), "_label_probability")
    probs = [0.0] * len(multi)
    a, p = event.get("a"), event.get("p")
    if isinstance(a, list) and isinstance(p, list) and len(a) == len(p) == len(multi):
        for action, q in zip(a, p, strict=True):
            if isinstance(action, bool) or not isinstance(action, int) or not 1 <= action <= len(multi):
                raise RecordRejectedError("bad_action", f"'a' must hold 1-based action ids; got {action!r}")
            probs[action - 1] = _number(q, "p")
        if abs(probs[index] - prob) > 1e-5:
            raise RecordRejectedError("bad_probability", f"'_label_probability' {prob} disagrees with 'p' ({probs[index]})")
        probs[index] = prob
    else:
        rest = (1.0 - prob) / (len(multi) - 1) if len(multi) > 1 else 0.0
        probs = [rest] * len(multi)  # unknown: spread the rest evenly (the full vector is not used)
        probs[index] = prob
    return [_row(member, page, ts, opts.title_id, 0, ids[index], ids, probs, cost, feats, opts)]


def _slot_probs(outcome: dict[str, Any], k: int, n_actions: int, where: str) -> tuple[list[int], list[float]]:
    a, p = outcome.get("_a"), outcome.get("_p")
    if not isinstance(a, list) or not isinstance(p, list) or not a or len(p) not in (1, len(a)):
        raise RecordRejectedError("missing_field", f"{where}: '_a' and '_p' must be lists of one length (or '_p' "
                      "the chosen action's probability alone)")
    for x in a:
        if isinstance(x, bool) or not isinstance(x, int) or not 0 <= x < n_actions:
            raise RecordRejectedError("bad_action", f"{where}: '_a' must hold action indices in 0..{n_actions - 1}; got {x!r}")
    if len(set(a)) != len(a):
        raise RecordRejectedError("bad_action", f"{where}: '_a' repeats an action")
    probs = [_number(q, "_p") for q in p]
    _probability(probs[0], f"{where} _p[0]")
    if len(probs) == 1 and len(a) > 1:  # only the chosen action's: spread the rest evenly
        probs += [(1.0 - probs[0]) / (len(a) - 1)] * (len(a) - 1)
    return a, probs


def _ccb(event: dict[str, Any], opts: DsjsonOptions, head: tuple[int, int, int, list[float]],
         slates: bool) -> list[dict[str, Any]]:
    member, page, ts, feats = head
    multi = _actions(event, opts)
    outcomes = event.get("_outcomes")
    slots = event["c"].get("_slots") if isinstance(event["c"].get("_slots"), list) else []
    if not isinstance(outcomes, list) or not outcomes:
        raise RecordRejectedError("missing_field", "'_outcomes' must be a non-empty list")
    if slates:
        if "_label_cost" not in event:
            raise RecordRejectedError("unlabeled", "no top-level '_label_cost' for the slate")
        slate_cost = _number(event["_label_cost"], "_label_cost")
    rows = []
    for k, outcome in enumerate(outcomes):
        where = f"_outcomes[{k}]"
        if not isinstance(outcome, dict):
            raise RecordRejectedError("missing_field", f"{where} must be an object")
        slot = slots[k] if k < len(slots) and isinstance(slots[k], dict) else {}
        title = str(outcome.get("_id", slot.get("_id", f"slot_{k}")))
        if slates:
            members = [i for i, a in enumerate(multi) if a.get("_slot_id") == k]
            if not members:
                raise RecordRejectedError("bad_action", f"{where}: no action of c._multi has _slot_id {k}")
            a_idx, probs = _slot_probs(outcome, k, len(members), where)
            ids = [f"{title}:{_action_id(multi[i], i, opts)}" for i in members]
            cands = [ids[i] for i in a_idx]
            cost = slate_cost
        else:
            if "_label_cost" not in outcome:
                raise RecordRejectedError("unlabeled", f"{where} has no '_label_cost'")
            cost = _number(outcome["_label_cost"], f"{where}._label_cost")
            a_idx, probs = _slot_probs(outcome, k, len(multi), where)
            cands = [f"{title}:{_action_id(multi[i], i, opts)}" for i in a_idx]
        rows.append(_row(member, page, ts, title, k, cands[0], cands, probs, cost, feats, opts))
    return rows


def _convert(line: str, opts: DsjsonOptions) -> list[dict[str, Any]]:
    try:
        event = json.loads(line)
    except json.JSONDecodeError as exc:
        raise RecordRejectedError("malformed_json", f"not JSON ({exc.msg})") from None
    if not isinstance(event, dict):
        raise RecordRejectedError("malformed_json", "a line must hold a JSON object")
    if "EventId" not in event:
        raise RecordRejectedError("missing_field", "no 'EventId'")
    if not isinstance(event.get("c"), dict):
        raise RecordRejectedError("missing_field", "no context object 'c'")
    ts = parse_timestamp(event.get("Timestamp"))
    member, feats = _context(event, opts)
    head = (member, stable_id(event["EventId"]), ts, feats)
    if "_outcomes" in event:
        multi = _actions(event, opts)
        return _ccb(event, opts, head, slates=any("_slot_id" in a for a in multi))
    return _cb(event, opts, head)


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    with open(path, encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, start=1):
            if line.strip():
                yield number, line


def _table(rows: list[dict[str, Any]], n_features: int) -> Any:
    col = {k: [r[k] for r in rows] for k in rows[0]}
    return impressions_table(
        member_id=np.array(col["member_id"], np.int64), session_id=np.array(col["session_id"], np.int64),
        page_id=np.array(col["page_id"], np.int64), timestamp=np.array(col["timestamp"], np.int64),
        title_id=col["title_id"], row=np.array(col["row"], np.int32), col=np.array(col["col"], np.int32),
        image_id=col["image_id"], candidate_ids=col["candidate_ids"],
        propensity=np.array(col["propensity"]), propensities=col["propensities"],
        explored=np.array(col["explored"], bool), reward=np.array(col["reward"], np.int8),
        engagement=np.array(col["engagement"], np.float64),
        features=np.array(col["features"], np.float32).reshape(len(rows), n_features) if n_features else None,
    )


def import_dsjson(
    source: str | Path,
    output: str | Path,
    options: DsjsonOptions | None = None,
    *,
    version: int = 1,
    batch_lines: int = 50_000,
) -> ImportReport:
    """Convert a DSJSON file into a ``slate.impressions`` Parquet file; returns the counts.

    Examples
    --------
    >>> import tempfile, os
    >>> folder = tempfile.mkdtemp()
    >>> src = os.path.join(folder, "log.dsjson")
    >>> with open(src, "w") as fh:
    ...     _ = fh.write('{"_label_cost": -1.0, "_label_probability": 0.8, "_labelIndex": 0, '
    ...                  '"EventId": "e1", "Timestamp": "2021-02-04T16:31:29.2460000Z", "a": [1, 2], '
    ...                  '"p": [0.8, 0.2], "c": {"_multi": [{"_tag": "x"}, {"_tag": "y"}]}}\\n{oops\\n')
    >>> report = import_dsjson(src, os.path.join(folder, "log.parquet"))
    >>> report.n_read, report.n_written, dict(report.rejected)
    (2, 1, {'malformed_json': 1})
    """
    path = Path(source)
    if not path.is_file():
        raise InvalidLogError(f"The DSJSON source must be an existing file; got '{path}' instead.")
    opts = options or DsjsonOptions()
    report = ImportReport(source=str(path), unit="lines")
    n_features = len(opts.feature_paths)
    columns: Sequence[str] = ["propensities", "engagement", *(["features"] if n_features else [])]
    with ImpressionWriter(output, columns=columns, version=version,
                          n_features=n_features if version == 2 and n_features else None) as writer:
        rows: list[dict[str, Any]] = []
        for number, line in _lines(path):
            report.n_read += 1
            try:
                rows += _convert(line, opts)
            except RecordRejectedError as bad:
                report.reject(bad.reason, f"line {number}: {bad}")
            if len(rows) >= batch_lines:
                write_validated(writer, _table(rows, n_features), report)
                rows = []
        if rows:
            write_validated(writer, _table(rows, n_features), report)
    return report
