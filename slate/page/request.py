"""The page request at the boundary: one member's homepage as a validated pydantic model.

Every stage starts from a :class:`PageRequest` (serving validates it once, when it comes in:
frozen, ``extra="forbid"``); :class:`slate.page.Page` is its array form. A malformed request
raises :class:`~slate.errors.InvalidRequestError`, naming the field and what was received.
(:class:`slate.bandit.FeatureRequest` is a different thing: the signals from which a bandit
builds feature vectors.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

from slate.errors import InvalidRequestError
from slate.limits import check_limit

__all__ = ["INT64_MAX", "INT64_MIN", "InvalidRequestError", "Page", "PageRequest", "TitleRequest", "parse_request"]

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


class TitleRequest(BaseModel):
    """One title on the requested page.

    Attributes
    ----------
    title_id : str
    image_ids : tuple of str
        The title's candidate images (at least one). Image ids are unique across the page.
    row, col : int
        Position on the page (row 0 is the top; col 0 the left).
    locked : bool
        The member is engaged with the title (continue watching, my list): keep its image.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    title_id: str = Field(min_length=1)
    image_ids: tuple[str, ...] = Field(min_length=1)
    row: int = Field(ge=0, le=100_000)
    col: int = Field(ge=0, le=100_000)
    locked: bool = False


class PageRequest(BaseModel):
    """A member's homepage request.

    Attributes
    ----------
    member_id, session_id : int
        64-bit integer ids (map external string ids with a 64-bit hash).
    titles : tuple of TitleRequest
        The page's titles (unique ids, unique positions, unique image ids).
    page_id : int, optional
        Id of the page impression in the log (default: derived from member, session and time).
    timestamp : datetime with a time zone, optional
        When the page is served (default: now).
    seen_title_ids : tuple of str
        Titles of this page whose current image the member saw since the last page (viewport
        events); matters when the stability rules do not assume shown means seen.
    context : dict
        Member context passed untouched to the scoring policy (it validates it).

    Examples
    --------
    >>> request = PageRequest(member_id=1, session_id=1, titles=[
    ...     {"title_id": "T1", "image_ids": ["T1-a", "T1-b"], "row": 0, "col": 0},
    ...     {"title_id": "T2", "image_ids": ["T2-a"], "row": 0, "col": 1, "locked": True}])
    >>> request.n_titles, request.n_images
    (2, 2)
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    member_id: int = Field(ge=INT64_MIN, le=INT64_MAX)
    session_id: int = Field(ge=INT64_MIN, le=INT64_MAX)
    titles: tuple[TitleRequest, ...] = Field(min_length=1)
    page_id: int | None = Field(default=None, ge=INT64_MIN, le=INT64_MAX)
    timestamp: AwareDatetime | None = None
    seen_title_ids: tuple[str, ...] = ()
    context: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _unique(self) -> PageRequest:
        n = len(self.titles)
        check_limit("max_titles", n, "titles in one page request")
        check_limit("max_page_cells", n * max(len(t.image_ids) for t in self.titles),
                    "title x image cells in one page request")
        titles = {t.title_id for t in self.titles}
        image_lists = [t.image_ids for t in self.titles]
        if (
            len(titles) < n
            or len({(t.row, t.col) for t in self.titles}) < n
            or len(set(chain.from_iterable(image_lists))) < sum(map(len, image_lists))
        ):
            self._name_the_duplicate()  # the slow path, only for a bad request
        unknown = [t for t in self.seen_title_ids if t not in titles]
        if unknown:
            raise ValueError(f"seen_title_ids: '{unknown[0]}' is not a title of the page")
        return self

    def _name_the_duplicate(self) -> None:
        """Raise the error naming the first repeated title, position or image."""
        titles: set[str] = set()
        images: set[str] = set()
        positions: set[tuple[int, int]] = set()
        for i, title in enumerate(self.titles):
            if title.title_id in titles:
                raise ValueError(f"titles.{i}.title_id: '{title.title_id}' appears twice on the page")
            titles.add(title.title_id)
            pos = (title.row, title.col)
            if pos in positions:
                raise ValueError(f"titles.{i}: position (row={pos[0]}, col={pos[1]}) is taken twice")
            positions.add(pos)
            for image in title.image_ids:
                if image in images:
                    raise ValueError(f"titles.{i}.image_ids: image '{image}' appears twice on the page")
                images.add(image)

    @property
    def n_titles(self) -> int:
        """Number of titles on the page."""
        return len(self.titles)

    @property
    def n_images(self) -> int:
        """Largest number of candidate images of a title (the padded width)."""
        return max(len(t.image_ids) for t in self.titles)


def _format_error(err: ValidationError, what: str) -> str:
    first = err.errors(include_url=False)[0]
    loc = ".".join(str(x) for x in first["loc"]) or "(root)"
    msg = first["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
        return f"The {what} is invalid: {msg}."
    got = first.get("input")
    shown = repr(got)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return f"The '{loc}' field of the {what} is invalid ({msg}); got {shown} instead."


def parse_request(data: PageRequest | Mapping[str, Any]) -> PageRequest:
    """Validate a page request (a mapping, e.g. parsed JSON) into a :class:`PageRequest`.

    Raises
    ------
    InvalidRequestError
        Naming the first bad field and what was received.

    Examples
    --------
    >>> parse_request({"member_id": 1, "session_id": 2, "titles": []})
    Traceback (most recent call last):
    ...
    slate.errors.InvalidRequestError: The 'titles' field of the page request is invalid (Tuple should have at least 1 item after validation, not 0); got [] instead.
    """
    if isinstance(data, PageRequest):
        return data
    if not isinstance(data, Mapping):
        raise InvalidRequestError(
            f"The page request must be a PageRequest or a mapping; got {type(data).__name__} instead."
        )
    try:
        return PageRequest.model_validate(data)
    except ValidationError as err:
        raise InvalidRequestError(_format_error(err, "page request")) from None


def _ro(array: NDArray[Any]) -> NDArray[Any]:
    array.flags.writeable = False
    return array


@dataclass(frozen=True, eq=False)
class Page:
    """A page request as arrays, built once (:meth:`of`) and passed along by every stage.

    Attributes
    ----------
    title_ids : tuple of str
    image_ids : tuple of tuple of str
        Each title's candidate images (ragged).
    candidates : ndarray (n_titles, n_images), bool
        ``candidates[t, k]``: title ``t`` has a ``k``-th image (the padded mask).
    rows, cols : ndarray (n_titles,), int64
        Positions on the page.
    locked : ndarray (n_titles,), bool
        Titles whose image the member is engaged with.

    The arrays are read-only.

    Examples
    --------
    >>> request = PageRequest(member_id=1, session_id=1, titles=[
    ...     {"title_id": "T1", "image_ids": ["T1-a", "T1-b"], "row": 0, "col": 0},
    ...     {"title_id": "T2", "image_ids": ["T2-a"], "row": 0, "col": 1, "locked": True}])
    >>> page = Page.of(request)
    >>> page.n_titles, page.n_images, page.candidates.tolist(), page.locked.tolist()
    (2, 2, [[True, True], [True, False]], [False, True])
    """

    title_ids: tuple[str, ...]
    image_ids: tuple[tuple[str, ...], ...]
    candidates: NDArray[np.bool_]
    rows: NDArray[np.int64]
    cols: NDArray[np.int64]
    locked: NDArray[np.bool_]

    @property
    def n_titles(self) -> int:
        """Number of titles."""
        return len(self.title_ids)

    @property
    def n_images(self) -> int:
        """Padded width: the largest number of candidate images of a title."""
        return int(self.candidates.shape[1])

    @classmethod
    def of(cls, request: PageRequest) -> Page:
        """The page of a validated request."""
        titles = request.titles
        n = len(titles)
        # one pass over the titles, then one array per field
        title_ids, image_ids, rows, cols, locked = zip(
            *[(t.title_id, t.image_ids, t.row, t.col, t.locked) for t in titles], strict=True
        )
        counts = np.fromiter(map(len, image_ids), dtype=np.int64, count=n)
        candidates = np.arange(int(counts.max()))[None, :] < counts[:, None]
        return cls(
            title_ids=title_ids,
            image_ids=image_ids,
            candidates=_ro(candidates),
            rows=_ro(np.array(rows, dtype=np.int64)),
            cols=_ro(np.array(cols, dtype=np.int64)),
            locked=_ro(np.array(locked, dtype=bool)),
        )
