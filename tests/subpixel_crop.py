"""What a sub-pixel crop should be, written independently of `bfsdata.imaging.crop`: bilinear
samples (scipy) on INTER_LINEAR's pixel-centre grid, turned about the window centre, border
repeated; shrinking windows are sampled at their own size and then INTER_AREA resized."""

from __future__ import annotations

import cv2
import numpy as np
from scipy.ndimage import map_coordinates


def expected_crop(
    img: np.ndarray,
    box: tuple[int, int, int, int],
    size: int,
    shift: tuple[float, float],
    angle: float = 0.0,
) -> np.ndarray:
    """(size, size) float64, before any rounding or 16-bit rule. angle: degrees, counter-
    clockwise on screen (a point right of the centre moves up), about the window centre."""
    y0, x0, y1, x1 = (int(v) for v in box)
    fy, fx = shift
    h, w = y1 - y0, x1 - x0
    shrink = h >= size and w >= size and (h, w) != (size, size)
    n_y, n_x = (h, w) if shrink else (size, size)
    ys = y0 + fy + (np.arange(n_y) + 0.5) * h / n_y - 0.5
    xs = x0 + fx + (np.arange(n_x) + 0.5) * w / n_x - 0.5
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    cy, cx = y0 + fy + h / 2 - 0.5, x0 + fx + w / 2 - 0.5
    t = np.radians(angle)
    yy, xx = (
        cy - np.sin(t) * (xx - cx) + np.cos(t) * (yy - cy),
        cx + np.cos(t) * (xx - cx) + np.sin(t) * (yy - cy),
    )
    out = map_coordinates(img.astype(np.float64), [yy, xx], order=1, mode="nearest")
    if shrink:
        out = cv2.resize(out, (size, size), interpolation=cv2.INTER_AREA)
    return out


def row_shift(row) -> tuple[float, float]:
    """The sub-pixel remainder of a manifest row's window offset."""
    return row.dy - round(row.dy), row.dx - round(row.dx)
