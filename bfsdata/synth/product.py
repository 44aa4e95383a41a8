"""The static product: one strip of 5 translucent vials on a dark background, before re-grip.

Rendered once per strip in nominal coordinates scaled to the image size, as float32 grey levels
on the 8-bit scale. Everything that does not move between frames is here: flag with embossed
marks, necks, bodies with cylindrical shading, the liquid at rest, the web and the defects.
The liquid's movement is added per frame by `motion.py` as a difference to this image, using the
same shading functions.
"""

from __future__ import annotations

import cv2
import numpy as np

from bfsdata.synth.defects import Defect
from bfsdata.synth.geometry import (
    FLAG_BOTTOM,
    MENISCUS_Y,
    N_VIALS,
    STRIP_X0,
    STRIP_X1,
    STRIP_Y0,
    STRIP_Y1,
    VIAL_PITCH,
    Geometry,
    vial_centre,
)
from bfsdata.synth.marks import draw_marks, flag_top, outline_bumps
from bfsdata.synth.primitives import line_profile, segment_distance, soft_step

# Grey levels (8-bit scale) of the product at unit gain.
BACKGROUND = 25.0  # dark field behind the strip
WEB = 90.0  # thin flat plastic between and around the vials
FLAG = 168.0  # flat flag/tab
CUT_EDGE = 212.0  # cut face along the top of the flag catches the light
GROOVE = 14.0  # darkening of the separation line between neighbouring flags
RELIEF = 120.0  # shading per unit height slope of the embossed mark (peaks at ~ +-25)
WALL = 45.0  # darkening of the wall seen edge-on
TEXTURE = 2.0  # grey levels: low-frequency non-uniformity of the plastic, per strip
VIAL_SPREAD = 2.0  # grey levels: brightness difference between vials of a strip


def air_shade(u: np.ndarray) -> np.ndarray:
    """Body above the liquid, u = -1..1 across the vial: bright centre, darker walls."""
    return 150.0 + 45.0 * np.sqrt(np.clip(1.0 - u * u, 0.0, 1.0))


def liquid_shade(u: np.ndarray) -> np.ndarray:
    """Body filled with liquid: a little darker and flatter than air."""
    return 138.0 + 40.0 * np.sqrt(np.clip(1.0 - u * u, 0.0, 1.0))


def meniscus_at_rest(u: np.ndarray) -> np.ndarray:
    """Nominal y of the liquid surface at rest: concave, 10 px higher at the walls."""
    return MENISCUS_Y - 10.0 * u * u


def render_product(
    geom: Geometry, defects: tuple[Defect, ...], rng: np.random.Generator, rims: str = "dark"
) -> np.ndarray:
    """The static strip, (H, W) float32 grey levels; rng draws its texture only.

    rims: polarity of the foam defect's bubble rims (`primitives.RIMS`), as the moving ones.
    """
    x = geom.cols()[None, :]  # (1, W) nominal
    y = geom.rows()[:, None]  # (H, 1) nominal
    top = flag_top(geom, defects)[None, :]  # (1, W)
    sheet = (
        soft_step((x - STRIP_X0) * geom.sx)
        * soft_step((STRIP_X1 - x) * geom.sx)
        * soft_step((y - top) * geom.sy)
        * soft_step((STRIP_Y1 - y) * geom.sy)
    )
    flag_cover = soft_step((FLAG_BOTTOM - y) * geom.sy)  # (H, 1)
    cut = _cut_out(geom, x, flag_cover)
    if cut is not None:
        sheet = sheet * cut
    body_cover, body = _bodies(geom, x, y, defects)
    body += _vial_offsets(geom, x, rng)
    plastic = WEB + flag_cover * (_flag(geom, x, y, top) - WEB)
    plastic += (1.0 - flag_cover) * body_cover * (body - WEB)
    plastic += TEXTURE * _low_frequency(geom, rng)
    img = BACKGROUND + sheet * (plastic - BACKGROUND)
    _emboss(img, geom, None if cut is None else sheet)
    draw_marks(img, geom, defects, rims)
    return img.astype(np.float32)


def _cut_out(geom: Geometry, x: np.ndarray, flag_cover: np.ndarray) -> np.ndarray | None:
    """Share of plastic left (H, W) where the strip is cut: the gaps between separate vials
    and beside flags narrower than the pitch; None for a joined strip (nothing cut)."""
    shape = geom.shape
    if shape.joined:
        return None
    bounds = STRIP_X0 + VIAL_PITCH * np.arange(1, N_VIALS)
    near = np.min(np.abs(x[..., None] - bounds), axis=-1)  # (1, W) to the nearest boundary
    cut = soft_step((near - shape.gap / 2) * geom.sx) if shape.gap > 0 else np.ones_like(near)
    if shape.flag_width < 1.0:
        off_axis = np.abs(x - vial_centre(_vial_of(x) + 1))
        tab = soft_step((VIAL_PITCH / 2 * shape.flag_width - off_axis) * geom.sx)  # (1, W)
        cut = cut * (1.0 - flag_cover + flag_cover * tab)
    return cut


def _vial_of(x: np.ndarray) -> np.ndarray:
    """Vial - 1 (0..4) whose column holds each nominal x."""
    return np.clip(((x - STRIP_X0) // VIAL_PITCH).astype(int), 0, N_VIALS - 1)


def _bodies(
    geom: Geometry, x: np.ndarray, y: np.ndarray, defects: tuple[Defect, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Coverage (H, W) and shading (H, W) of the vial bodies, necks included."""
    v = _vial_of(x)  # (1, W)
    cx = vial_centre(v + 1)
    side = (x >= cx).astype(int)
    rows = np.arange(geom.height)[:, None]
    y_rows = geom.rows()
    shape = geom.shape
    nominal = shape.body_halfwidth(y_rows)  # (H,)
    table = np.stack(
        [
            [shape.side_halfwidth(y_rows, vial, side) for side in (-1, 1)]
            for vial in range(1, N_VIALS + 1)
        ]
    )  # (5, 2, H)
    table += outline_bumps(geom, defects)
    half = table[v, side, rows]  # (H, W): half width at each pixel's row, vial and side
    dist = half - np.abs(x - cx)  # nominal px inside the (possibly deformed) wall
    cover = soft_step(dist * geom.sx) * (half > 0)
    # Shading follows the undeformed cylinder: a dent changes the wall, not the whole row.
    u = np.clip((x - cx) / np.maximum(nominal[:, None], 1e-6), -1.0, 1.0)
    air = air_shade(u)
    liquid = soft_step((y - meniscus_at_rest(u)) * geom.sy)
    shade = air + liquid * (liquid_shade(u) - air)
    shade -= WALL * np.exp(-((np.maximum(dist, 0.0) / 3.0) ** 2))
    return cover, shade


def _flag(geom: Geometry, x: np.ndarray, y: np.ndarray, top: np.ndarray) -> np.ndarray:
    """Flat tab: slightly brighter towards the cut edge, grooves where the vials part."""
    flag = FLAG + 8.0 * np.clip(1.0 - (y - STRIP_Y0) / (FLAG_BOTTOM - STRIP_Y0), 0.0, 1.0)
    flag = flag + (CUT_EDGE - FLAG) * line_profile((y - top - 1.5) * geom.sy, 2.5 * geom.sy)
    bounds = STRIP_X0 + VIAL_PITCH * np.arange(1, N_VIALS)
    near = np.min(np.abs(x[..., None] - bounds), axis=-1)  # (1, W) to nearest boundary
    return flag - GROOVE * line_profile(near * geom.sx, 3.0 * geom.sx)


def _emboss(img: np.ndarray, geom: Geometry, cover: np.ndarray | None) -> None:
    """Raised ring with a letter-like mark on every flag, lit from the top left; only on the
    plastic (`cover`, (H, W)) where a flag is narrower than its ring."""
    for vial in range(1, N_VIALS + 1):
        cx, cy = vial_centre(vial), 142.0
        rows, cols = geom.window(cx - 56, cy - 56, cx + 56, cy + 56)
        x, y = geom.grid(rows, cols)
        # Height h = sum of gaussian ridges (sigma 4 px); slope dh/dp = -(p - nearest)/s^2 h.
        s2 = 16.0
        r = np.hypot(x - cx, y - cy)
        h = np.exp(-0.5 * (r - 44.0) ** 2 / s2)
        k = -(r - 44.0) / s2 * h / np.maximum(r, 1e-6)
        gx, gy = k * (x - cx), k * (y - cy)
        for (ax, ay), (bx, by) in (
            ((-12, -24), (-12, 24)),
            ((-12, -24), (14, -24)),
            ((-12, 0), (8, 0)),
        ):
            ux, uy = bx - ax, by - ay
            length = float(np.hypot(ux, uy))
            mx, my = cx + (ax + bx) / 2, cy + (ay + by) / 2
            d = segment_distance(x - mx, y - my, ux / length, uy / length, length / 2)
            hb = np.exp(-0.5 * d * d / s2)
            along = np.clip(
                (x - mx) * ux / length + (y - my) * uy / length, -length / 2, length / 2
            )
            px, py = mx + along * ux / length, my + along * uy / length  # nearest axis point
            gx, gy = gx - (x - px) / s2 * hb, gy - (y - py) / s2 * hb
        relief = RELIEF * -(gx + gy) / np.sqrt(2.0)
        img[rows, cols] += relief if cover is None else relief * cover[rows, cols]


def _vial_offsets(geom: Geometry, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each vial a little brighter or darker: wall thickness varies from cavity to cavity."""
    offsets = rng.normal(0.0, VIAL_SPREAD, N_VIALS)
    return offsets[_vial_of(x)]


def _low_frequency(geom: Geometry, rng: np.random.Generator) -> np.ndarray:
    """Smooth unit-scale random field over the image, (H, W)."""
    coarse = rng.standard_normal((6, 8)).astype(np.float32)
    return cv2.resize(coarse, (geom.width, geom.height), interpolation=cv2.INTER_CUBIC)
