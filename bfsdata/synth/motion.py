"""The liquid during handling: meniscus waves, moving bubbles and drops. Normal, not defects.

A run's movement is drawn once (`plan_motion`) and then turned, frame by frame, into sprites:
small float32 patches in product coordinates holding the difference to the static product
(`frame_sprites`). The camera warps and adds them, so only these few pixels cost work per frame.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from bfsdata.synth.geometry import (
    MENISCUS_Y,
    N_VIALS,
    REFERENCE_SHAPE,
    Geometry,
    VialShape,
    vial_centre,
)
from bfsdata.synth.primitives import bubble, line_profile, rim_signs, soft_step
from bfsdata.synth.product import air_shade, liquid_shade, meniscus_at_rest

Sprite = tuple[np.ndarray, int, int]  # (patch (h, w) float32, first row, first column)

MAX_LEVEL = 6.0  # px at reference: largest rise or fall of the surface at the vial axis
MAX_TILT = 4.0  # px at reference: largest surface tilt, at the wall
MENISCUS_BAND = (510.0, 562.0)  # nominal rows that hold every meniscus the waves can make
LIQUID_BOTTOM = 748.0  # px: bubbles stay in R2
DROP_ZONE = (300.0, 480.0)  # px: drops cling to the neck and the upper body
BUBBLES_PER_VIAL = 2.5  # mean bubbles per vial and run (Poisson), times SynthConfig.clutter
DROP_CHANCE = 0.2  # mean drops in the upper body per vial and run, times SynthConfig.clutter


@dataclass(frozen=True)
class Floater:
    """A bubble (rises in the liquid) or a drop (slides down the upper wall)."""

    vial: int  # 1..5
    x: float  # nominal px at frame `birth`
    y: float
    vx: float  # px per frame
    vy: float
    r: float  # px radius at reference scale
    contrast: float  # grey levels
    birth: int  # first frame it is there (may be < 0: it was there before the run)
    death: int  # first frame it is gone
    drop: bool
    rim: float = 1.0  # factor on the profile: +1 dark rim, -1 bright (primitives.rim_signs)


@dataclass(frozen=True)
class RunMotion:
    level: np.ndarray  # (F, 5) px: surface offset at the axis, + = lower
    tilt: np.ndarray  # (F, 5) px: surface offset at the right wall, - at the left wall
    ripple: np.ndarray  # (F, 5) px: ripple amplitude
    phase: np.ndarray  # (F, 5) rad: ripple phase
    wavenumber: np.ndarray  # (5,) rad per px
    floaters: tuple[Floater, ...]


def plan_motion(
    rng: np.random.Generator,
    frames: int,
    shape: VialShape = REFERENCE_SHAPE,
    clutter: float = 1.0,
    rims: str = "dark",
    rim_rng: np.random.Generator | None = None,
) -> RunMotion:
    """Draw one run's liquid movement: sloshing surface, bubbles, drops.

    clutter multiplies the mean number of bubbles and drops; rims sets their polarity
    (`primitives.RIMS`), drawn from rim_rng for `both` so that rng's stream stays the same.
    """
    f = np.arange(frames)[:, None]
    # Sloshing after the pick-up: a decaying oscillation with a little jitter on top.
    period = rng.uniform(5.0, 12.0, N_VIALS)
    amp = rng.uniform(1.0, MAX_LEVEL - 1.0, N_VIALS)
    decay = np.exp(-f / rng.uniform(8.0, 30.0, N_VIALS))
    level = amp * decay * np.cos(2 * np.pi * f / period + rng.uniform(0, 2 * np.pi, N_VIALS))
    level = np.clip(level + rng.normal(0.0, 0.6, (frames, N_VIALS)), -MAX_LEVEL, MAX_LEVEL)
    tilt_period = rng.uniform(4.0, 10.0, N_VIALS)
    tilt = rng.uniform(0.0, MAX_TILT, N_VIALS) * np.sin(
        2 * np.pi * f / tilt_period + rng.uniform(0, 2 * np.pi, N_VIALS)
    )
    ripple = rng.uniform(0.0, 1.5, N_VIALS) * decay
    phase = rng.uniform(0, 2 * np.pi, N_VIALS) + f * rng.uniform(0.5, 2.0, N_VIALS)
    wavenumber = 2 * np.pi / rng.uniform(40.0, 100.0, N_VIALS)
    floaters = [
        fl for v in range(1, N_VIALS + 1) for fl in _floaters(rng, v, frames, shape, clutter)
    ]
    if rims != "dark":
        signs = rim_signs(rims, len(floaters), rim_rng)
        floaters = [replace(fl, rim=float(s)) for fl, s in zip(floaters, signs, strict=True)]
    return RunMotion(level, tilt, ripple, phase, wavenumber, tuple(floaters))


def _floaters(
    rng: np.random.Generator, vial: int, frames: int, shape: VialShape, clutter: float
) -> list[Floater]:
    out = []
    cx = vial_centre(vial)
    for _ in range(int(rng.poisson(BUBBLES_PER_VIAL * clutter))):
        birth = int(rng.integers(-frames // 2, frames))
        death = birth + int(rng.integers(2, max(frames, 2) + 1))
        # Most bubbles are caught just under the surface; some rise from deeper.
        y = rng.uniform(552.0, 590.0) if rng.random() < 0.7 else rng.uniform(590.0, 740.0)
        x = cx + rng.uniform(-0.7, 0.7) * shape.body_half
        r = float(np.exp(rng.uniform(np.log(1.5), np.log(8.0))))
        vx, vy = rng.uniform(-1.5, 1.5), rng.uniform(-5.0, -0.5)
        out.append(Floater(vial, x, y, vx, vy, r, rng.uniform(15.0, 45.0), birth, death, False))
    # Whole drops of the mean, then one more with the chance of its fraction: one draw from
    # rng at any clutter, as many as with the plain chance.
    mean = DROP_CHANCE * clutter
    for _ in range(int(mean) + int(rng.random() < mean - int(mean))):
        birth = int(rng.integers(-frames // 2, frames))
        death = birth + int(rng.integers(2, max(frames, 2) + 1))
        y = rng.uniform(*DROP_ZONE)
        x = cx + rng.uniform(-0.6, 0.6) * float(shape.body_halfwidth(np.array([y]))[0])
        r = rng.uniform(1.5, 4.0)
        vy = rng.uniform(0.0, 3.0)  # drops slide down the wall, or cling
        out.append(Floater(vial, x, y, 0.0, vy, r, rng.uniform(15.0, 40.0), birth, death, True))
    return out


def frame_sprites(motion: RunMotion, frame: int, geom: Geometry) -> list[Sprite]:
    """Differences to the static product at one frame: one per meniscus, one per floater."""
    sprites = [_meniscus(motion, frame, v, geom) for v in range(1, N_VIALS + 1)]
    for fl in motion.floaters:
        if fl.birth <= frame < fl.death:
            sprite = _floater(motion, fl, frame, geom)
            if sprite is not None:
                sprites.append(sprite)
    return sprites


def surface(
    motion: RunMotion, frame: int, vial: int, x: np.ndarray, shape: VialShape = REFERENCE_SHAPE
) -> np.ndarray:
    """Nominal y of the liquid surface of a vial at columns x (nominal), one frame."""
    v = vial - 1
    u = np.clip((x - vial_centre(vial)) / shape.body_half, -1.0, 1.0)
    wave = motion.ripple[frame, v] * np.sin(motion.wavenumber[v] * x + motion.phase[frame, v])
    return meniscus_at_rest(u) + motion.level[frame, v] + motion.tilt[frame, v] * u + wave


def _meniscus(motion: RunMotion, frame: int, vial: int, geom: Geometry) -> Sprite:
    """Liquid/air change between the surface at rest and now, plus the meniscus line."""
    shape = geom.shape
    cx = vial_centre(vial)
    reach = shape.body_half + shape.web_half + 1  # outer vials reach the strip edge
    rows, cols = geom.window(cx - reach, MENISCUS_BAND[0], cx + reach, MENISCUS_BAND[1])
    x, y = geom.grid(rows, cols)
    u = np.clip((x - cx) / shape.body_half, -1.0, 1.0)
    rest = np.array([MENISCUS_Y])
    half = np.where(
        x < cx, shape.side_halfwidth(rest, vial, -1), shape.side_halfwidth(rest, vial, 1)
    )
    inside = soft_step((half - np.abs(x - cx)) * geom.sx)
    now = surface(motion, frame, vial, x, shape)
    d_px = (y - now) * geom.sy  # + below the surface
    fill = soft_step(d_px) - soft_step((y - meniscus_at_rest(u)) * geom.sy)
    # Bright reflection just above the surface, dark refraction band just below it.
    line = 22.0 * line_profile(d_px + 2.5 * geom.sy, 2.0 * geom.sy)
    line -= 40.0 * line_profile(d_px - 1.5 * geom.sy, 3.0 * geom.sy)
    patch = inside * (fill * (liquid_shade(u) - air_shade(u)) + line * np.sqrt(1 - 0.8 * u * u))
    return patch.astype(np.float32), rows.start, cols.start


def _floater(motion: RunMotion, fl: Floater, frame: int, geom: Geometry) -> Sprite | None:
    age = frame - fl.birth
    x, y = fl.x + fl.vx * age, fl.y + fl.vy * age
    cx = vial_centre(fl.vial)
    shape = geom.shape
    if fl.drop:
        room = 0.8 * float(shape.body_halfwidth(np.array([y - fl.r, y + fl.r])).min())
        if y + fl.r > DROP_ZONE[1] + 20 or abs(x - cx) + fl.r > room:
            return None  # slid into the liquid, or off the wall
    else:
        top = float(surface(motion, frame, fl.vial, np.array([x]), shape)[0])
        if (
            y - fl.r < top + 2.0
            or y + fl.r > LIQUID_BOTTOM
            or abs(x - cx) + fl.r > 0.85 * shape.body_half
        ):
            return None  # burst at the surface, or left the liquid body
    pad = fl.r + 3.0
    rows, cols = geom.window(x - pad, y - pad, x + pad, y + pad)
    if rows.stop <= rows.start or cols.stop <= cols.start:
        return None
    gx, gy = geom.grid(rows, cols)
    patch = fl.rim * fl.contrast * bubble((gx - x) * geom.sx, (gy - y) * geom.sy, fl.r * geom.scale)
    return patch.astype(np.float32), rows.start, cols.start
