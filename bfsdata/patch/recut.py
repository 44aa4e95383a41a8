"""Patches cut again from their manifest rows: each window placed as its row says (box, offset,
angle), by `bfsdata.imaging.cut.cut` with the recipe the patches manifest records. `bfsdata
verify` compares them with the store bit for bit; `bfsdata repair` writes them back into a
damaged shard. A row holds everything its patch was cut with, so no registration runs again.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bfsdata.config.pipeline import kind_rank
from bfsdata.imaging.cut import CutRecipe, Windows, cut


class RecutError(ValueError):
    """A row names an image the store does not hold."""


def recut(
    rows: pd.DataFrame,
    frames: np.ndarray,
    rank: np.ndarray | None,
    ranks: list[int],
    recipe: CutRecipe,
) -> np.ndarray:
    """(len(rows), P, P) uint8 patches, in the order of `rows`: patches.parquet rows of one
    acquisition, whose frames (F, H, W) and rank images (R, H, W) are given (`rank` None for
    image folders; `ranks` the ranks the store's rank images are)."""
    rows = rows.reset_index(drop=True)
    out = np.empty((len(rows), recipe.size, recipe.size), dtype=np.uint8)
    for (kind, frame), group in rows.groupby(["kind", "frame"], sort=False):
        if kind == "frame":
            image = frames[int(frame)]
        elif rank is not None and ranks:
            image = rank[ranks.index(kind_rank(kind, ranks))]
        else:
            acq = int(group["acq"].iloc[0])
            raise RecutError(f"rank: {kind} patches of acquisition {acq}, but no rank images")
        windows = Windows(
            group[["y0", "x0", "y1", "x1"]].to_numpy(),
            group[["dy", "dx"]].to_numpy(),
            float(group["angle"].iloc[0]),
        )
        out[group.index.to_numpy()] = cut([image], windows, recipe)
    return out
