"""Crop boxes of image-folder data: a grid of square tiles, or the whole image (pure kernels).

`layout.mode: grid` cuts tiles of `tile` px every `stride` px from the top left; where the
steps stop short of the right or bottom edge, one more tile is laid flush with that edge, so
every pixel is in a tile (that last tile overlaps its neighbour). Every image of a grid
workspace must have one size, so that tile (column c, row r) is the same place in each image:
the report fits one threshold per tile row, as per region of a strip.
`layout.mode: resize` takes the whole image as one box, whatever its size.

Boxes use the strip layout's shape (V, R, 4) = (columns, rows, (y0, x0, y1, x1)): tile column
c (left to right) is `vial` c + 1 and tile row r (top to bottom) is `region` r in the patches
manifest, and `crop.cut_patches` resizes each box to patch.size x patch.size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from bfsdata.config.pipeline import LayoutConfig

MAX_CELLS = 127  # vial and region are int8 columns of the patches manifest


class TilingError(ValueError):
    """The images cannot be cut as the layout asks; the message says why and what to do."""


def starts(length: int, tile: int, stride: int) -> list[int]:
    """Tile origins along one axis: every `stride` px, then one flush with the far edge."""
    if tile > length:
        raise TilingError(f"a {tile} px tile does not fit in {length} px (layout.tile)")
    out = list(range(0, length - tile + 1, stride))
    if out[-1] + tile < length:
        out.append(length - tile)
    return out


@dataclass(frozen=True)
class Tiling:
    mode: str  # grid | resize
    tile: int = 0  # px, grid
    stride: int = 0  # px, grid
    height: int = 0  # px, grid: the size of every image
    width: int = 0

    def boxes(self, height: int, width: int) -> np.ndarray:
        """(V, R, 4) int boxes (y0, x0, y1, x1), end-exclusive, of a height x width image."""
        if self.mode == "resize":
            return np.array([[[0, 0, height, width]]], dtype=np.int64)
        ys = starts(height, self.tile, self.stride)
        xs = starts(width, self.tile, self.stride)
        t = self.tile
        return np.array([[(y, x, y + t, x + t) for y in ys] for x in xs], dtype=np.int64)

    @property
    def cells(self) -> tuple[int, int]:
        """(V, R): tile columns and rows of every image."""
        if self.mode == "resize":
            return 1, 1
        v, r, _ = self.boxes(self.height, self.width).shape
        return v, r


def tiling_of(layout: LayoutConfig, height: int, width: int, where: str = "") -> Tiling:
    """The layout's tiling of a height x width image; refuse tiles that do not fit."""
    if layout.mode == "resize":
        return Tiling("resize")
    if layout.tile > min(height, width):
        raise TilingError(
            f"layout.tile {layout.tile} px is larger than the {height}x{width} images{where}; "
            "use a smaller tile, or layout.mode resize"
        )
    tiling = Tiling("grid", layout.tile, layout.stride, int(height), int(width))
    v, r = tiling.cells
    if max(v, r) > MAX_CELLS:
        raise TilingError(
            f"layout.tile {layout.tile} px every {layout.stride} px gives {v} x {r} tiles per "
            f"{height}x{width} image; at most {MAX_CELLS} per row and column: raise tile or stride"
        )
    return tiling


def plan_tiling(layout: LayoutConfig, acqs: pd.DataFrame) -> Tiling:
    """The tiling of the acquisitions (height, width, source columns); refuse what cannot be
    cut the same way in every image."""
    if layout.mode == "resize":
        return Tiling("resize")
    sizes = acqs.groupby(["height", "width"], sort=True)["source"].first()
    if len(sizes) > 1:
        seen = ", ".join(f"{h}x{w} ({src})" for (h, w), src in sizes.head(3).items())
        raise TilingError(
            f"layout.mode grid needs images of one size, so that a tile is the same place in "
            f"every image; these are {len(sizes)} sizes, e.g. {seen}. Resize the images to one "
            "size before ingest, or use layout.mode resize (one patch per image)."
        )
    (h, w), src = next(iter(sizes.items()))
    return tiling_of(layout, h, w, f" (e.g. {src})")
