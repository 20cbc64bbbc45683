"""Start-up of a serving process: compile and cache everything once, then freeze the heap.

After :func:`warm_up` the first real pages cost what later ones do (numba kernels loaded, pydantic
validators built, layout and solver caches filled, the store's connection open), and the objects
alive at that point — modules, caches, the catalog, the policy — are moved out of the garbage
collector's reach with :func:`gc.freeze`: a full (generation-2) collection, which otherwise
traverses every one of them and stalls a page for tens of milliseconds on a large heap, then
only walks the objects created since.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from slate.serve.request import PageRequest

__all__ = ["warm_up"]


class _Composer(Protocol):
    """What :func:`warm_up` uses of a :class:`~slate.serve.Composer` (this module sits below
    ``slate.serve.composer``, whose ``Composer.warm_up`` calls it)."""

    policy: Any
    exploration: Any
    config: Any
    catalog: Any
    store: Any
    logger: Any

    def compose(self, request: Any) -> Any: ...


def _synthetic(n_titles: int, n_images: int, session: int) -> dict[str, Any]:
    cols = 8
    return {
        "member_id": -1,
        "session_id": session,
        "titles": [
            {"title_id": f"warm-{t}", "image_ids": [f"warm-{t}-{k}" for k in range(n_images)],
             "row": t // cols, "col": t % cols}
            for t in range(n_titles)
        ],
    }


def warm_up(
    composer: _Composer,
    requests: Iterable[PageRequest | Mapping[str, Any]] | None = None,
    *,
    pages: int = 50,
    freeze_gc: bool = True,
) -> float:
    """Compose warm-up pages without saving or logging them, open the store, run the decision
    logger's write path once (into a throw-away file), then ``gc.freeze()``.

    Parameters
    ----------
    composer : Composer
    requests : iterable of requests, optional
        Pages like the ones the process will serve (best: recent real ones); by default
        ``pages`` synthetic 40 x 10 pages. They are composed statelessly: no store write, no
        decision logged, no counter updated.
    pages : int, default 50
        Synthetic pages when ``requests`` is None.
    freeze_gc : bool, default True
        Collect, then :func:`gc.freeze` what is alive (call it once, after loading everything).

    Returns
    -------
    float
        Seconds spent.

    Examples
    --------
    >>> import numpy as np
    >>> from slate.serve import Composer, ComposeConfig
    >>> composer = Composer(lambda r: np.ones((r.n_titles, r.n_images)), None,
    ...                     config=ComposeConfig(solver="independent"))
    >>> composer.warm_up(pages=3, freeze_gc=False) >= 0, composer.stats_.pages
    (True, 0)
    """
    started = time.perf_counter()
    if composer.config.solver == "fast":
        from slate.solvers.fast import warm_up as warm_kernels

        warm_kernels()
    make: Any = type(composer)
    shadow = make(  # a stateless twin: no store, so nothing saved or logged
        composer.policy, None, composer.exploration, config=composer.config, catalog=composer.catalog
    )
    todo = requests if requests is not None else (_synthetic(40, 10, s) for s in range(pages))
    decisions = [shadow.compose(request) for request in todo]
    logger = composer.logger
    if logger is not None and hasattr(logger, "warm_up"):  # the writer's imports, paid now
        logger.warm_up(decisions[:8])
    store = composer.store
    if store is not None:  # open this thread's connection; a member that does not exist
        try:
            store.get(-1, ["warm-0"])
        except Exception:  # a store that is down now is reported by the pages, not here
            pass
    if freeze_gc:
        gc.collect()
        gc.freeze()
    return time.perf_counter() - started
