"""Nominal strip geometry and its scaling to the image that is written.

Every position in `bfsdata.synth` is nominal: pixels of the 1024 x 1280 reference image, x to the
right, y down, as continuous coordinates (pixel i covers [i, i + 1)). These numbers are the
contract with the patch stage, which crops the same boxes; `Geometry` maps them onto an image of
any size by scaling x and y independently, and may draw the strip smaller about the image centre
(`strip_scale`: `layout.layout_for` scales the boxes alike). `VialShape` is the outline drawn in
each vial's column; the constants below are the reference strip's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

REF_HEIGHT, REF_WIDTH = 1024, 1280  # px, reference image
STRIP_X0, STRIP_X1 = 40.0, 1240.0  # px, strip bounding box, columns
STRIP_Y0, STRIP_Y1 = 32.0, 992.0  # px, strip bounding box, rows (flag cut edge .. bottom)
N_VIALS = 5
VIAL_PITCH = 240.0  # px: vial v (1..5) spans x 40 + 240 (v - 1) .. 280 + 240 (v - 1)
REGION_EDGES = (
    32.0,
    272.0,
    512.0,
    752.0,
    992.0,
)  # px: R0 flag, R1 upper body, R2 liquid, R3 bottom

# Vial outline, in px at reference scale.
WEB_HALF = 6.0  # half the dark web between two vial bodies (web ~12 px)
BODY_HALF = VIAL_PITCH / 2 - WEB_HALF  # 114: half width of the cylindrical body (VialShape)
NECK_HALF = 30.0  # half width of the neck (~1/4 of the vial)
FLAG_BOTTOM = 252.0  # lower edge of the flat flag; the neck starts here
NECK_END = 290.0  # shoulder starts widening
SHOULDER_END = 340.0  # body at full width
BOTTOM_START = 900.0  # rounded bottom starts
BODY_END = 986.0  # lowest point of the body; the web closes the strip at STRIP_Y1
MENISCUS_Y = 540.0  # liquid level at the vial axis, at rest


def vial_centre(vial: int) -> float:
    """Nominal x of the axis of vial 1..5."""
    return STRIP_X0 + VIAL_PITCH * (vial - 0.5)


def region_box(vial: int, region: int) -> tuple[float, float, float, float]:
    """Nominal (x0, y0, x1, y1) of vial 1..5, region 0..3: the box the patch stage crops."""
    x0 = STRIP_X0 + VIAL_PITCH * (vial - 1)
    return x0, REGION_EDGES[region], x0 + VIAL_PITCH, REGION_EDGES[region + 1]


@dataclass(frozen=True)
class VialShape:
    """The outline of one vial design, in nominal px; the defaults are the joined strip above.

    The pitch, the strip's bounding box and the region bands stay as they are: a shape changes
    what is drawn inside each vial's column, so the layout's columns still hold one vial each.
    """

    body_width: float = 2 * BODY_HALF / VIAL_PITCH  # share of the pitch (0.95); the rest is web
    flag_width: float = 1.0  # share of the pitch; 1: the flags join into one tab
    gap: float = 0.0  # px: background between neighbouring vials, cut from the web; 0: joined
    neck: float = NECK_END - FLAG_BOTTOM  # px from the flag's lower edge to the shoulder

    @property
    def body_half(self) -> float:
        """Half width of the cylindrical body."""
        return VIAL_PITCH / 2 * self.body_width

    @property
    def web_half(self) -> float:
        """Half the web between two bodies: what is left of the pitch."""
        return VIAL_PITCH / 2 - self.body_half

    @property
    def flag_half(self) -> float:
        """Half width of the plastic of one flag about its vial's axis (the gap cuts it too)."""
        return min(VIAL_PITCH / 2 * self.flag_width, VIAL_PITCH / 2 - self.gap / 2)

    @property
    def neck_end(self) -> float:
        """Nominal y where the shoulder starts widening."""
        return FLAG_BOTTOM + self.neck

    @property
    def shoulder_end(self) -> float:
        """Nominal y where the body reaches its full width."""
        return self.neck_end + (SHOULDER_END - NECK_END)

    @property
    def joined(self) -> bool:
        """True: flags and webs run across the strip unbroken (nothing to cut out)."""
        return self.gap == 0 and self.flag_width >= 1.0

    def body_halfwidth(self, y: np.ndarray) -> np.ndarray:
        """Half width of a vial (neck, shoulder, body, rounded bottom) at nominal rows y; 0 =
        none."""
        y = np.asarray(y, dtype=np.float64)
        t = np.clip((y - self.neck_end) / (SHOULDER_END - NECK_END), 0.0, 1.0)
        w = NECK_HALF + (self.body_half - NECK_HALF) * (1.0 - np.cos(np.pi * t)) / 2.0
        b = np.clip((y - BOTTOM_START) / (BODY_END - BOTTOM_START), 0.0, 1.0)
        w = w * np.sqrt(1.0 - b * b)  # quarter ellipse: the rounded bottom
        return np.where((y >= FLAG_BOTTOM) & (y < BODY_END), w, 0.0)

    def side_halfwidth(self, y: np.ndarray, vial: int, side: int) -> np.ndarray:
        """Half width of vial 1..5 towards side -1 (left) or +1 (right) at nominal rows y.

        The outer walls of vials 1 and 5 are the strip's edge (x = 40 and 1240) along the body:
        there is no web outside them, so the step from background to product is a strong one
        (registration finds the strip's width there).
        """
        w = self.body_halfwidth(y)
        if (vial == 1 and side < 0) or (vial == N_VIALS and side > 0):
            grow = np.clip((w - NECK_HALF) / (self.body_half - NECK_HALF), 0.0, 1.0)
            w = w + self.web_half * grow
        return w


REFERENCE_SHAPE = VialShape()  # the joined strip of the reference layout


@dataclass(frozen=True)
class Geometry:
    """The nominal layout drawn into an image of height x width pixels.

    `strip_scale` < 1 draws the strip smaller about the image centre (wider margins), > 1
    larger; `shape` is the vial design.
    """

    height: int
    width: int
    shape: VialShape = REFERENCE_SHAPE
    strip_scale: float = 1.0

    @property
    def sx(self) -> float:
        """Image px per nominal px, columns."""
        return self.width / REF_WIDTH * self.strip_scale

    @property
    def sy(self) -> float:
        """Image px per nominal px, rows."""
        return self.height / REF_HEIGHT * self.strip_scale

    @property
    def ox(self) -> float:
        """Image x of nominal x = 0: the scaled strip stays centred (0 at strip_scale 1)."""
        return self.width / 2 * (1.0 - self.strip_scale)

    @property
    def oy(self) -> float:
        """Image y of nominal y = 0."""
        return self.height / 2 * (1.0 - self.strip_scale)

    @property
    def scale(self) -> float:
        """One length for round things (bubbles, spots): geometric mean of sx and sy."""
        return math.sqrt(self.sx * self.sy)

    @property
    def centre(self) -> tuple[float, float]:
        """Strip centre in pixel-index coordinates (cv2's convention): the re-grip pivot."""
        return (self.width - 1) / 2.0, (self.height - 1) / 2.0

    def cols(self) -> np.ndarray:
        """Nominal x of every pixel-column centre, (W,)."""
        return (np.arange(self.width) + 0.5 - self.ox) / self.sx

    def rows(self) -> np.ndarray:
        """Nominal y of every pixel-row centre, (H,)."""
        return (np.arange(self.height) + 0.5 - self.oy) / self.sy

    def window(self, x0: float, y0: float, x1: float, y1: float) -> tuple[slice, slice]:
        """Pixel (rows, cols) slices covering the nominal box, clipped to the image."""
        r0 = max(0, math.floor(y0 * self.sy + self.oy))
        r1 = min(self.height, math.ceil(y1 * self.sy + self.oy))
        c0 = max(0, math.floor(x0 * self.sx + self.ox))
        c1 = min(self.width, math.ceil(x1 * self.sx + self.ox))
        return slice(r0, max(r0, r1)), slice(c0, max(c0, c1))

    def grid(self, rows: slice, cols: slice) -> tuple[np.ndarray, np.ndarray]:
        """Nominal (x (1, w), y (h, 1)) of the pixel centres in a window, for broadcasting."""
        x = (np.arange(cols.start, cols.stop) + 0.5 - self.ox) / self.sx
        y = (np.arange(rows.start, rows.stop) + 0.5 - self.oy) / self.sy
        return x[None, :], y[:, None]
