"""From the product to the frames of one run: re-grip warp, illumination gain, liquid,
lighting gradient, noise.

Cost per run: one full-image warp of the static product; per frame a copy, a few small sprite
warps (the liquid) and the sensor noise. Warping is linear, so warping the product and the liquid
sprites separately and adding them equals warping their sum.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import cv2
import numpy as np

from bfsdata.synth.geometry import Geometry
from bfsdata.synth.motion import Sprite, frame_sprites, plan_motion
from bfsdata.synth.product import BACKGROUND


@dataclass(frozen=True)
class Regrip:
    """Where the strip sits in one run, in pixels of the written image."""

    dx: float  # px, shift right
    dy: float  # px, shift down
    angle_deg: float  # degrees about the image centre, as cv2.getRotationMatrix2D
    gain: float  # illumination factor


@dataclass(frozen=True, eq=False)
class Scene:
    """What every run of a dataset shares besides the product: the camera's view of it."""

    geom: Geometry  # where the strip is drawn; must match the product's size
    clutter: float = 1.0  # factor on the mean number of moving bubbles and drops
    rims: str = "dark"  # their polarity, primitives.RIMS
    light: np.ndarray | None = field(default=None, repr=False)  # (H, W) factor, `light_field`


def light_field(geom: Geometry, strength: float, direction_deg: float) -> np.ndarray | None:
    """(H, W) float32 illumination factor fixed to the camera: 1 at the brightest corner,
    1 - strength at the opposite one, linear along direction_deg (0: brighter to the right,
    90: brighter downwards); None for no gradient."""
    if strength == 0:
        return None
    a = math.radians(direction_deg)
    x = np.arange(geom.width) + 0.5
    y = np.arange(geom.height) + 0.5
    p = x[None, :] * math.cos(a) + y[:, None] * math.sin(a)  # (H, W) along the direction
    t = (p - p.min()) / max(float(p.max() - p.min()), 1e-9)
    return (1.0 - strength * (1.0 - t)).astype(np.float32)


def regrip_matrix(grip: Regrip, geom: Geometry) -> np.ndarray:
    """2x3 affine map from product pixels to image pixels (cv2 index coordinates)."""
    m = cv2.getRotationMatrix2D(geom.centre, grip.angle_deg, 1.0)
    m[0, 2] += grip.dx
    m[1, 2] += grip.dy
    return m


def render_run(
    product: np.ndarray,
    grip: Regrip,
    rng: np.random.Generator,
    frames: int,
    noise_sigma: float,
    bit_depth: int,
    scene: Scene | None = None,
    rim_rng: np.random.Generator | None = None,
) -> Iterator[np.ndarray]:
    """Yield the frames of one run, (H, W) uint8 or uint16 each.

    rng draws the liquid's movement first, then the noise frame by frame, so frame f depends
    only on the seed, never on how many frames were consumed elsewhere. scene: the dataset's
    geometry, clutter and lighting (None: the reference strip in the product's size);
    rim_rng draws the polarity of each bubble when `scene.rims` is `both`.
    """
    scene = scene or Scene(Geometry(*product.shape))
    geom = scene.geom
    assert product.shape == (geom.height, geom.width), (product.shape, geom)
    m = regrip_matrix(grip, geom)
    static = cv2.warpAffine(
        product,
        m,
        (geom.width, geom.height),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=BACKGROUND,
    )
    static *= grip.gain
    motion = plan_motion(rng, frames, geom.shape, scene.clutter, scene.rims, rim_rng)
    for f in range(frames):
        frame = static.copy()
        for sprite in frame_sprites(motion, f, geom):
            add_warped(frame, sprite, m, grip.gain)
        if scene.light is not None:
            frame *= scene.light
        if noise_sigma > 0:
            noise = rng.standard_normal(frame.shape, dtype=np.float32)
            noise *= noise_sigma
            frame += noise
        yield quantize(frame, bit_depth)


def add_warped(frame: np.ndarray, sprite: Sprite, m: np.ndarray, gain: float) -> None:
    """frame += gain * (sprite warped by m), touching only the sprite's footprint."""
    patch, r0, c0 = sprite
    h, w = patch.shape
    corners = np.array(
        [[c0 - 1, r0 - 1, 1], [c0 + w, r0 - 1, 1], [c0 - 1, r0 + h, 1], [c0 + w, r0 + h, 1]]
    )
    dst = corners @ m.T  # (4, 2) where the patch corners land
    x0, y0 = np.floor(dst.min(axis=0)).astype(int)
    x1, y1 = np.ceil(dst.max(axis=0)).astype(int) + 1
    x0, y0 = max(x0, 0), max(y0, 0)
    x1, y1 = min(x1, frame.shape[1]), min(y1, frame.shape[0])
    if x1 <= x0 or y1 <= y0:
        return
    # Same map, with the patch's and the destination's origins moved to their corners.
    local = m.copy()
    local[:, 2] = m[:, :2] @ np.array([c0, r0]) + m[:, 2] - np.array([x0, y0])
    warped = cv2.warpAffine(
        patch,
        local,
        (x1 - x0, y1 - y0),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0.0,
    )
    warped *= gain
    frame[y0:y1, x0:x1] += warped


def quantize(frame: np.ndarray, bit_depth: int) -> np.ndarray:
    """Round float grey levels (8-bit scale) to the output dtype; 12 and 16 bit keep the
    fractions. 12 bit is a camera that fills the low 12 bits of uint16 (`patch.input_bits`)."""
    if bit_depth == 16:
        frame *= 257.0  # 255 -> 65535: the 16-bit image is the 8-bit one with finer steps
        top, dtype = 65535.0, np.uint16
    elif bit_depth == 12:
        frame *= 4095.0 / 255.0  # 255 -> 4095
        top, dtype = 4095.0, np.uint16
    else:
        top, dtype = 255.0, np.uint8
    np.clip(frame, 0.0, top, out=frame)
    np.rint(frame, out=frame)
    return frame.astype(dtype)
