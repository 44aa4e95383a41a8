"""How each defect changes the product image: outline changes and additive marks.

Pure array kernels over the static product, in nominal coordinates. Nothing is drawn outside a
defect's `box`, so a defect never leaks into a neighbouring vial or region.
"""

from __future__ import annotations

import numpy as np

from bfsdata.synth.defects import Defect
from bfsdata.synth.geometry import N_VIALS, STRIP_Y0, Geometry
from bfsdata.synth.primitives import (
    blob,
    bubble,
    disc,
    line_profile,
    rim_signs,
    segment_distance,
)


def outline_bumps(geom: Geometry, defects: tuple[Defect, ...]) -> np.ndarray:
    """Change of body half width per (vial 1..5 as index 0..4, side left/right, row): (5, 2, H).

    Nominal px; negative is a dent, positive a bulge.
    """
    out = np.zeros((N_VIALS, 2, geom.height))
    y = geom.rows()
    for d in defects:
        if d.kind != "deformation":
            continue
        # sigma = length / 6: the bump has faded to 1 % where the box ends, so the cut is invisible.
        g = np.exp(-0.5 * ((y - d.y) / (d.size / 6)) ** 2) * (np.abs(y - d.y) <= d.size / 2)
        out[d.vial - 1, int(d.side > 0)] -= d.depth * g
    return out


def flag_top(geom: Geometry, defects: tuple[Defect, ...]) -> np.ndarray:
    """Nominal y of the flag's cut edge over every pixel column, (W,): 32 unless cut."""
    x = geom.cols()
    top = np.full(geom.width, STRIP_Y0)
    for d in defects:
        if d.kind != "flag_cut":
            continue
        rng = np.random.default_rng(d.seed)
        t = (x - d.x) / (d.size / 2)  # -1..1 across the notch
        inside = np.abs(t) < 1
        style = int(rng.integers(3))
        if style == 0:  # V notch
            notch = 1 - np.abs(t)
        elif style == 1:  # round bite
            notch = np.sqrt(np.clip(1 - t * t, 0, None))
        else:  # irregular, torn cut
            knots = np.r_[0.0, rng.uniform(0.2, 1.0, max(3, int(d.size / 4))), 0.0]
            notch = np.interp(t, np.linspace(-1, 1, knots.size), knots)
        top = np.maximum(top, np.where(inside, STRIP_Y0 + d.depth * notch, STRIP_Y0))
    return top


def draw_marks(
    img: np.ndarray, geom: Geometry, defects: tuple[Defect, ...], rims: str = "dark"
) -> None:
    """Add every defect's visible mark to the product image (H, W), in place.

    rims: polarity of foam bubbles' rims, `primitives.RIMS`.
    """
    for d in defects:
        rows, cols = geom.window(*d.box)
        if rows.stop <= rows.start or cols.stop <= cols.start:
            continue
        x, y = geom.grid(rows, cols)
        dx, dy = (x - d.x) * geom.sx, (y - d.y) * geom.sy  # px from the centre
        if d.kind == "foam":
            img[rows, cols] += _foam(d, geom, x, y, dx, dy, rims)
        else:
            img[rows, cols] += _MARKS[d.kind](d, geom, x, y, dx, dy)


def _particle(d: Defect, geom: Geometry, x, y, dx, dy) -> np.ndarray:
    # An irregular dark blob: the union of 2-4 overlapping round lobes.
    rng = np.random.default_rng(d.seed)
    cover = np.zeros(np.broadcast_shapes(dx.shape, dy.shape))
    for _ in range(int(rng.integers(2, 5))):
        r = d.size / 2 * rng.uniform(0.45, 0.75)
        off = (d.size / 2 - r) * rng.uniform(0, 1)
        a = rng.uniform(0, 2 * np.pi)
        ox, oy = off * np.cos(a) * geom.sx, off * np.sin(a) * geom.sy
        cover = np.maximum(cover, disc(dx - ox, dy - oy, r * geom.sx, r * geom.sy))
    return -d.contrast * cover


def _black_spot(d: Defect, geom: Geometry, x, y, dx, dy) -> np.ndarray:
    r = d.size / 2
    return -d.contrast * disc(dx, dy, r * geom.sx, r * geom.sy)


def _scratch(d: Defect, geom: Geometry, x, y, dx, dy) -> np.ndarray:
    rng = np.random.default_rng(d.seed)
    width = rng.uniform(0.8, 2.5)  # px at reference scale
    sign = 1.0 if rng.random() < 0.6 else -1.0  # scratches mostly scatter light: brighter
    vx, vy = np.cos(d.angle) * geom.sx, np.sin(d.angle) * geom.sy
    norm = np.hypot(vx, vy)
    dist = segment_distance(dx, dy, vx / norm, vy / norm, d.size / 2 * norm)
    return sign * d.contrast * line_profile(dist, width * geom.scale)


def _burn(d: Defect, geom: Geometry, x, y, dx, dy) -> np.ndarray:
    # A diffuse dark blotch: a main lobe and two weaker ones, tails inside the box.
    rng = np.random.default_rng(d.seed)
    field = np.zeros(np.broadcast_shapes(dx.shape, dy.shape))
    for weight in (0.6, 0.25, 0.15):
        s = d.size / 8 * rng.uniform(0.7, 1.0)
        off = d.size / 10 * rng.uniform(-1, 1, 2)
        field += weight * blob(
            dx - off[0] * geom.sx, dy - off[1] * geom.sy, s * geom.sx, s * geom.sy
        )
    return -d.contrast * field  # weights sum to 1: peak darkening 0.6..1 x contrast


def _foam(d: Defect, geom: Geometry, x, y, dx, dy, rims: str = "dark") -> np.ndarray:
    rng = np.random.default_rng(d.seed)
    x0, y0, x1, y1 = d.box
    out = np.zeros(np.broadcast_shapes(dx.shape, dy.shape))
    n = int(np.clip(d.size * rng.uniform(0.5, 1.0), 12, 60))
    # Polarities from their own stream: the shapes above stay the same whatever `rims` is.
    signs = rim_signs(rims, n, np.random.default_rng([d.seed, 1]))
    for sign in signs:
        r = min(float(np.exp(rng.uniform(np.log(0.8), np.log(4.0)))), (y1 - y0) / 2 - 0.5)
        bx, by = rng.uniform(x0 + r, x1 - r), rng.uniform(y0 + r, y1 - r)
        strength = sign * d.contrast * rng.uniform(0.6, 1.0)
        b = strength * bubble((x - bx) * geom.sx, (y - by) * geom.sy, r * geom.scale)
        out = np.where(np.abs(b) > np.abs(out), b, out)  # touching bubbles do not stack up
    return out


def _deformation(d: Defect, geom: Geometry, x, y, dx, dy) -> np.ndarray:
    # The outline itself moves (outline_bumps); a dent also throws a shadow along the wall.
    g = np.exp(-0.5 * ((y - d.y) / (d.size / 6)) ** 2)
    wall = d.x - d.side * (d.depth * g + 4.0)  # d.x: the undeformed wall
    return -d.contrast * g * line_profile((x - wall) * geom.sx, 5.0 * geom.sx)


def _flag_cut(d: Defect, geom: Geometry, x, y, dx, dy) -> np.ndarray:
    return np.zeros(np.broadcast_shapes(dx.shape, dy.shape))  # all in flag_top


_MARKS = {
    "particle": _particle,
    "black_spot": _black_spot,
    "scratch": _scratch,
    "burn": _burn,
    "foam": _foam,
    "deformation": _deformation,
    "flag_cut": _flag_cut,
}
