"""One scorer notion for serving, replay and sweeps: a ``"module:function"`` name or a score table.

A *scorer* is what :func:`slate.serve.compose` is given as its policy: ``f(request)`` returning
scores of shape ``(request.n_titles, request.n_images)``. Offline tools name it in their config
files in one of two ways:

* ``"module:function"`` (``"package.module:object.attribute"`` too): resolved the way uvicorn
  and gunicorn resolve an app, from the folder of the config file that names it and the working
  directory first, then the installed packages (:func:`resolve_scorer`). :class:`NamedScorer`
  keeps the *name* and resolves it on first use, so it pickles to dask workers and resolves
  there (with the same folders first).
* a score table: a Parquet file with ``member_id``, ``title_id``, ``image_id``, ``score`` and an
  optional ``session_id`` (:class:`ScoreTable`). A page's scores are looked up by
  ``(member, session, image)`` when the table has sessions, else ``(member, image)``; a score
  missing from the table is ``default`` (NaN by default: compose then serves a fallback page and
  counts ``scores_not_finite``).

:func:`load_scorer` takes either (a path ending in ``.parquet``, or an existing file or folder, is
a table).
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from slate.errors import ScorerResolutionError

__all__ = ["NamedScorer", "ScoreTable", "load_scorer", "resolve_scorer"]

_IMPORT_LOCK = threading.Lock()


@contextmanager
def _search_first(folders: list[str]) -> Iterator[None]:
    """Put ``folders`` at the front of ``sys.path`` for the duration (then restore it)."""
    added = [f for f in folders if f not in sys.path]
    sys.path[:0] = added
    try:
        yield
    finally:
        for f in added:
            try:
                sys.path.remove(f)
            except ValueError:  # pragma: no cover - someone else removed it
                pass


def resolve_scorer(name: str, base: str | os.PathLike[str] | None = None) -> Callable[..., Any]:
    """The object named ``"module:attribute"``, imported as uvicorn imports an app.

    Parameters
    ----------
    name : str
        ``"module:function"``; the module may be dotted (``"pkg.models:score"``) and the
        attribute too (``"models:Ranker.score"``).
    base : path, optional
        Folder searched first (the folder of the config file that names the scorer); then the
        working directory; then ``sys.path`` (installed packages).

    Raises
    ------
    ScorerResolutionError
        The name is not ``module:attribute``, the module cannot be imported, it has no such
        attribute, or the attribute is not callable. The message names the folders searched.

    Examples
    --------
    >>> import os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with open(os.path.join(folder, "team_scorer_doc.py"), "w") as fh:
    ...     _ = fh.write("def score(request):\\n    return [[0.5]]\\n")
    >>> resolve_scorer("team_scorer_doc:score", folder)(None)
    [[0.5]]
    >>> resolve_scorer("team_scorer_doc:nope", folder)
    Traceback (most recent call last):
    ...
    slate.errors.ScorerResolutionError: The scorer 'team_scorer_doc:nope' names no attribute 'nope' of module 'team_scorer_doc'.
    """
    if not isinstance(name, str) or name.count(":") != 1 or not all(name.split(":")):
        raise ScorerResolutionError(
            f"A scorer must be named 'module:function' (e.g. 'my_team.scoring:score'); got {name!r} instead."
        )
    module_name, attribute = name.split(":")
    folders = [str(Path(base).resolve())] if base is not None else []
    folders.append(str(Path.cwd()))
    with _IMPORT_LOCK, _search_first(folders):
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            searched = ", ".join(folders) + ", then the installed packages"
            raise ScorerResolutionError(
                f"The scorer {name!r}: module {module_name!r} could not be imported ({err}); "
                f"searched {searched}."
            ) from None
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ScorerResolutionError(
                f"The scorer {name!r} names no attribute {part!r} of module {module_name!r}."
            )
        target = getattr(target, part)
    if not callable(target) and not callable(getattr(target, "score_page", None)):
        raise ScorerResolutionError(
            f"The scorer {name!r} must be callable (or have score_page); got {type(target).__name__}."
        )
    return target


class NamedScorer:
    """A ``"module:function"`` scorer, resolved on first use (picklable: dask workers resolve it).

    Parameters
    ----------
    name : str
    base : path, optional
        Folder searched first (see :func:`resolve_scorer`).

    Examples
    --------
    >>> import os, pickle, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with open(os.path.join(folder, "team_scorer_named.py"), "w") as fh:
    ...     _ = fh.write("def score(request):\\n    return [[0.25]]\\n")
    >>> scorer = pickle.loads(pickle.dumps(NamedScorer("team_scorer_named:score", folder)))
    >>> scorer(None)
    [[0.25]]
    """

    def __init__(self, name: str, base: str | os.PathLike[str] | None = None) -> None:
        self.name = name
        self.base = None if base is None else str(Path(base).resolve())
        self._fn: Callable[..., Any] | None = None

    def resolve(self) -> Callable[..., Any]:
        """The function (imported once)."""
        if self._fn is None:
            fn = resolve_scorer(self.name, self.base)
            score_page = getattr(fn, "score_page", None)
            self._fn = score_page if score_page is not None else fn
        return self._fn

    def __call__(self, request: Any) -> Any:
        return self.resolve()(request)

    def __getstate__(self) -> dict[str, Any]:
        return {"name": self.name, "base": self.base}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.name = state["name"]
        self.base = state["base"]
        self._fn = None

    def __repr__(self) -> str:
        return f"NamedScorer({self.name!r})"


class ScoreTable:
    """Scores looked up in a table: ``member_id``, ``title_id``, ``image_id``, ``score``
    (optional ``session_id``).

    Parameters
    ----------
    member_id, image_id, score : array_like (n,)
    session_id : array_like (n,), optional
    default : float, default NaN
        Score of an image the table has no row for.

    Examples
    --------
    >>> from types import SimpleNamespace as NS
    >>> table = ScoreTable(member_id=[1, 1], image_id=["a", "b"], score=[0.1, 0.3])
    >>> request = NS(member_id=1, session_id=9, titles=[NS(image_ids=("a", "b"))], n_titles=1, n_images=2)
    >>> table(request).tolist()
    [[0.1, 0.3]]
    """

    def __init__(
        self,
        *,
        member_id: Any,
        image_id: Any,
        score: Any,
        session_id: Any = None,
        default: float = float("nan"),
        name: str = "score table",
    ) -> None:
        members = np.asarray(member_id, dtype=np.int64)
        scores = np.asarray(score, dtype=np.float64)
        images = [str(x) for x in image_id]
        if not (len(members) == len(scores) == len(images)):
            raise ScorerResolutionError(
                f"The score table must have one member, image and score per row; got "
                f"{len(members)}, {len(images)} and {len(scores)}."
            )
        self.default = float(default)
        self.name = name
        self.by_session = session_id is not None
        if self.by_session:
            sessions = np.asarray(session_id, dtype=np.int64)
            self._scores: dict[tuple[Any, ...], float] = dict(
                zip(zip(members.tolist(), sessions.tolist(), images, strict=True), scores.tolist(), strict=True)
            )
        else:
            self._scores = dict(zip(zip(members.tolist(), images, strict=True), scores.tolist(), strict=True))

    @classmethod
    def from_parquet(cls, path: str | os.PathLike[str], default: float = float("nan")) -> ScoreTable:
        """Read a score table (Parquet file or folder)."""
        import pyarrow.parquet as pq

        p = Path(path)
        if not p.exists():
            raise ScorerResolutionError(f"The score table must be an existing Parquet file or folder; got '{p}'.")
        table = pq.read_table(p)
        missing = [c for c in ("member_id", "title_id", "image_id", "score") if c not in table.column_names]
        if missing:
            raise ScorerResolutionError(
                f"The score table {p} must have the column(s) {missing}; got {table.column_names}."
            )
        session = table.column("session_id").to_numpy() if "session_id" in table.column_names else None
        return cls(member_id=table.column("member_id").to_numpy(),
                   image_id=table.column("image_id").to_pylist(),
                   score=table.column("score").to_numpy(zero_copy_only=False),
                   session_id=session, default=default, name=p.name)

    def __call__(self, request: Any) -> NDArray[np.float64]:
        out = np.full((request.n_titles, request.n_images), np.nan)
        get = self._scores.get
        d = self.default
        prefix: tuple[Any, ...] = (
            (int(request.member_id), int(request.session_id)) if self.by_session else (int(request.member_id),)
        )
        for t, title in enumerate(request.titles):
            out[t, : len(title.image_ids)] = [get((*prefix, i), d) for i in title.image_ids]
        return out

    def __repr__(self) -> str:
        return f"ScoreTable({self.name!r}, {len(self._scores)} scores)"


def load_scorer(spec: str, base: str | os.PathLike[str] | None = None) -> Callable[..., Any]:
    """A scorer from a config value: ``"module:function"`` or a score table path.

    Relative table paths are relative to ``base`` (the config file's folder).

    Examples
    --------
    >>> load_scorer("math:prod")
    NamedScorer('math:prod')
    """
    if not isinstance(spec, str) or not spec:
        raise ScorerResolutionError(f"A scorer must be 'module:function' or a Parquet score table; got {spec!r}.")
    path = Path(spec)
    if base is not None and not path.is_absolute():
        path = Path(base) / path
    if spec.endswith(".parquet") or (":" not in spec and path.exists()):
        return ScoreTable.from_parquet(path)
    return NamedScorer(spec, base)
