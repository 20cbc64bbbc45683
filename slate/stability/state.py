"""What slate remembers about one member and one title between sessions.

One :class:`TitleState` per (member, title): the image the member was last shown for the title,
since when and for how many sessions, whether it was actually seen, and the *draw* — the last
randomized choice made for the title (its propensity, whether it explored, when it was made),
which sticky exploration keeps for a period.

Times are Unix seconds (float, UTC).
"""

from __future__ import annotations

import math
from typing import NamedTuple

__all__ = ["NO_DRAW", "TitleState"]

NO_DRAW = math.nan
"""Value of :attr:`TitleState.draw_at` when no randomized choice is held for the title."""


class TitleState(NamedTuple):
    """Stability state of one (member, title).

    Attributes
    ----------
    image_id : str
        The image shown for the title on the member's last page.
    shown_since : float
        When this image was first shown to the member (Unix seconds).
    sessions : int
        Number of distinct sessions in which this image was shown (>= 1).
    last_session_id : int
        Session of the last page that showed the title.
    updated_at : float
        When the title was last shown (Unix seconds); state older than the store's time to live
        is ignored and can be purged.
    seen : bool
        Whether the member actually saw this image (on screen), at least once.
    draw_at : float
        When the randomized choice now held for the title was made; NaN when none is held.
    draw_sessions : int
        Sessions served under that choice (>= 1 when a choice is held).
    draw_propensity : float
        Probability with which that choice showed ``image_id`` (logged for every session it holds).
    draw_explored : bool
        Whether that choice was an exploration.

    Examples
    --------
    >>> s = TitleState("T1-a", shown_since=0.0, sessions=1, last_session_id=7, updated_at=0.0,
    ...                seen=True)
    >>> s.has_draw, s._replace(draw_at=0.0, draw_sessions=1, draw_propensity=0.2).has_draw
    (False, True)
    """

    image_id: str
    shown_since: float
    sessions: int
    last_session_id: int
    updated_at: float
    seen: bool
    draw_at: float = NO_DRAW
    draw_sessions: int = 0
    draw_propensity: float = 1.0
    draw_explored: bool = False

    @property
    def has_draw(self) -> bool:
        """Whether a randomized choice is recorded for the title."""
        return not math.isnan(self.draw_at)
