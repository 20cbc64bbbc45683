"""Synthetic contextual-bandit logs for the training tests (seeded, small, with known structure)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from slate.logs import impressions_table, write_impressions


def make_table(n_pages: int = 300, *, n_titles: int = 4, n_images: int = 3, d: int = 3,
               seed: int = 0, page_offset: int = 0, epsilon: float = 1.0) -> pa.Table:
    """Pages of ``n_titles`` titles with ``n_images`` candidates each; context features ``d``;
    image ``k`` of a title earns more when feature ``k % d`` is high. Logging: uniform with
    probability ``epsilon``, else image 0 (propensities exact)."""
    rng = np.random.default_rng(seed)
    n = n_pages * n_titles
    page = np.repeat(np.arange(page_offset, page_offset + n_pages), n_titles)
    title = np.tile(np.arange(n_titles), n_pages)
    x = rng.random((n, d)).astype(np.float32)
    explore = rng.random(n) < epsilon
    local = np.where(explore, rng.integers(0, n_images, n), 0)
    prop = np.where(local == 0, epsilon / n_images + (1 - epsilon), epsilon / n_images)
    logit = -2.0 + 3.0 * x[np.arange(n), local % d] - 0.3 * local
    reward = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    cands = [[f"T{t}-i{k}" for k in range(n_images)] for t in title]
    return impressions_table(
        member_id=page % 97, session_id=page, page_id=page,
        timestamp=(1_700_000_000_000_000 + page * 1_000_000).astype(np.int64),
        title_id=[f"T{t}" for t in title], row=np.zeros(n, np.int32), col=title.astype(np.int32),
        image_id=[f"T{t}-i{k}" for t, k in zip(title, local, strict=True)], candidate_ids=cands,
        propensity=prop, explored=explore, reward=reward, features=x,
    )


def write_log(folder: Path, n_files: int = 3, *, version: int = 1, row_group_size: int = 50,
              n_pages: int = 200, seed: int = 0, **kw: object) -> Path:
    """``n_files`` files of ``n_pages`` pages each (small row groups: many chunks)."""
    folder.mkdir(parents=True, exist_ok=True)
    for f in range(n_files):
        table = make_table(n_pages, seed=seed + f, page_offset=f * n_pages, **kw)  # type: ignore[arg-type]
        write_impressions(folder / f"part-{f}.parquet", table, version=version,
                          row_group_size=row_group_size)
    return folder
