"""What `synth` is asked to make (`SynthConfig`) and what it made (`SynthSummary`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bfsdata.config.pipeline import MAX_FRAMES
from bfsdata.synth.geometry import (
    REF_HEIGHT,
    REF_WIDTH,
    REFERENCE_SHAPE,
    STRIP_X0,
    STRIP_Y0,
    VIAL_PITCH,
    Geometry,
    VialShape,
)
from bfsdata.synth.primitives import RIMS

TRANSFORM_COLUMNS = ("strip", "run", "dx", "dy", "angle_deg", "gain")
MIN_SIDE = 64  # px: below this the 12 px web between vials is a fraction of a pixel
MAX_SIDE = 8192  # px: 8192 x 8192 is the most pixels a pipeline takes by default (max_pixels)
MAX_GAIN = 1.25  # brightest product (~205 grey) times this still fits in 8 bits
BIT_DEPTHS = (8, 12, 16)  # 12: 12 significant bits in uint16 PNGs (patch.input_bits: 12)
# Ranges of the look knobs: (lo, hi, unit). Within them every defect fits its region and
# registration with `layout_for`'s layout finds the strip, except in the upper part of the
# gradient's range: registration's level between background and product is one for the whole
# image, so strong gradients shift its boxes or refuse the strip (docs/synth-looks.md).
LOOK_RANGES = {
    "clutter": (0.0, 10.0, "(factor)"),
    "body_width": (0.7, REFERENCE_SHAPE.body_width, "(share of the vial pitch)"),
    "flag_width": (0.6, 1.0, "(share of the vial pitch)"),
    "neck_length": (10.0, 100.0, "px"),
    "strip_scale": (0.6, 1.0, "(factor)"),  # > 1 leaves the re-grip no margin
    "gradient": (0.0, 0.8, "(share of brightness lost)"),
    "gradient_deg": (-360.0, 360.0, "degrees"),
}
MAX_GAP = 40.0  # px at reference scale: the widest vial_gap, whatever the web allows


@dataclass(frozen=True)
class SynthConfig:
    """What `synth` makes. The look knobs (rims to defect_size) vary the product, the liquid and
    the camera along the axes in which real BFS lines differ; at their defaults they give the
    reference strip, byte for byte. `bfsdata.synth.looks` names sets of them and
    docs/synth-looks.md describes each; `layout_for(cfg)` gives the pipeline layout that crops
    the strips of a config. Lengths marked "px" are px of the 1024 x 1280 reference image.
    """

    strips: int = 4  # strips written (S0000, S0001, ...)
    runs: int = 10  # acquisitions (re-grips) per strip
    frames: int = 16  # frames per run
    height: int = 1024  # px, image rows; geometry scales with height / 1024
    width: int = 1280  # px, image columns; geometry scales with width / 1280
    defect_fraction: float = 0.5  # share of strips with >= 1 defect (rounded half up)
    seed: int = 0  # root of every random draw: same seed, same bytes
    bit_depth: int = 8  # bits per pixel of the PNGs: 8 or 16
    workers: int = 2  # threads rendering (strip, run) pairs in parallel
    shift_px: float = 16.0  # px at reference scale: max |dx|, |dy| of a re-grip
    rotation_deg: float = 0.3  # degrees: max |angle| of a re-grip, about the strip centre
    gain: tuple[float, float] = (0.92, 1.08)  # illumination gain range of a re-grip (factor)
    noise_sigma: float = 2.0  # grey levels (8-bit scale): gaussian sensor noise per frame
    # Share (lo, hi) of each defect kind's size and contrast log ranges that defects are drawn
    # from: (0, 1) everything from barely visible to obvious; (0.5, 1) the more visible half,
    # which small frames need (at 1/4 scale the smallest marks are under a pixel).
    severity: tuple[float, float] = (0.0, 1.0)
    # Share (lo, hi) of each defect kind's size log range alone (contrast keeps `severity`);
    # None: the size follows `severity` too.
    defect_size: tuple[float, float] | None = None
    # Moving clutter. rims: polarity of the rims of moving bubbles and drops, and of foam's
    # bubbles: dark (transmitted light), bright (a ring that catches the light: it survives in
    # the max rank image), or both (each bubble either, at even odds).
    rims: str = "dark"
    clutter: float = 1.0  # factor on the mean number of moving bubbles and drops per vial and run
    # Vial geometry, in the same 240 px vial columns (the layout's pitch does not change):
    # body_width, share of the pitch the body takes (the rest is web); flag_width, share of the
    # pitch the flag takes (1: the flags join into one tab); vial_gap, px of background between
    # neighbouring vials (0: a joined strip); neck_length, px from the flag to the shoulder.
    body_width: float = REFERENCE_SHAPE.body_width
    flag_width: float = REFERENCE_SHAPE.flag_width
    vial_gap: float = REFERENCE_SHAPE.gap
    neck_length: float = REFERENCE_SHAPE.neck
    strip_scale: float = 1.0  # strip size about the image centre (factor): < 1 wider margins
    # Lighting fixed to the camera, on top of each re-grip's gain: brightness falls linearly by
    # this share from the brightest image corner to the opposite one.
    gradient: float = 0.0  # share of brightness lost at the dim side (0: even lighting)
    gradient_deg: float = 0.0  # degrees: direction the light grows (0 right, 90 down)

    def __post_init__(self) -> None:
        for name in ("strips", "runs", "frames", "workers"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ValueError(f"synth {name} must be a whole number >= 1, got {value!r}")
        for name in ("height", "width"):
            value = getattr(self, name)
            if not _is_int(value) or value < MIN_SIDE:
                raise ValueError(
                    f"synth {name} must be a whole number of pixels >= {MIN_SIDE}, got {value!r};"
                    " the strip geometry does not resolve below that"
                )
            if value > MAX_SIDE:
                raise ValueError(
                    f"synth {name} must be <= {MAX_SIDE} px, got {value}: larger frames exceed "
                    "the pixels a pipeline takes (acquisition.max_pixels)"
                )
        if self.frames > MAX_FRAMES:
            raise ValueError(f"synth frames must be <= {MAX_FRAMES}, got {self.frames}")
        if not 0.0 <= self.defect_fraction <= 1.0:
            raise ValueError(
                f"synth defect_fraction must be a share in [0, 1], got {self.defect_fraction!r}"
            )
        if not _is_int(self.seed) or self.seed < 0:
            raise ValueError(f"synth seed must be a whole number >= 0, got {self.seed!r}")
        if self.bit_depth not in BIT_DEPTHS:
            raise ValueError(f"synth bit_depth must be 8, 12 or 16, got {self.bit_depth!r}")
        self._check_looks()
        self._check_regrip()
        for name in ("severity", "defect_size"):
            share = getattr(self, name)
            if name == "defect_size" and share is None:
                continue
            if len(share) != 2 or not 0.0 <= share[0] <= share[1] <= 1.0:
                raise ValueError(
                    f"synth {name} must be a range (lo, hi) with 0 <= lo <= hi <= 1, got {share!r}"
                )
        if len(self.gain) != 2 or not 0.0 < self.gain[0] <= self.gain[1] <= MAX_GAIN:
            raise ValueError(
                f"synth gain must be a range (low, high) with 0 < low <= high <= {MAX_GAIN}, "
                f"got {self.gain!r}; a higher gain saturates the brightest product"
            )
        if not 0.0 <= self.noise_sigma <= 50.0:
            raise ValueError(
                f"synth noise_sigma must be in [0, 50] grey levels, got {self.noise_sigma!r}"
            )

    @property
    def shape(self) -> VialShape:
        """The vial design the geometry knobs describe."""
        return VialShape(self.body_width, self.flag_width, self.vial_gap, self.neck_length)

    def geometry(self) -> Geometry:
        """Where the strip is drawn in the written images."""
        return Geometry(self.height, self.width, self.shape, self.strip_scale)

    def _check_looks(self) -> None:
        if self.rims not in RIMS:
            raise ValueError(f"synth rims must be one of {', '.join(RIMS)}, got {self.rims!r}")
        for name, (lo, hi, unit) in LOOK_RANGES.items():
            value = getattr(self, name)
            if not _is_number(value) or not lo <= value <= hi:
                raise ValueError(f"synth {name} must be in [{lo}, {hi}] {unit}, got {value!r}")
        # The gap is cut from the web between two bodies: it cannot be wider than the web.
        widest = min(MAX_GAP, (1.0 - self.body_width) * VIAL_PITCH)
        if not _is_number(self.vial_gap) or not 0.0 <= self.vial_gap <= widest:
            raise ValueError(
                f"synth vial_gap must be in [0, {widest:g}] px with body_width="
                f"{self.body_width} (the web between two bodies, at most {MAX_GAP:g}), "
                f"got {self.vial_gap!r}; lower body_width for a wider gap"
            )

    def _check_regrip(self) -> None:
        if self.shift_px < 0 or self.rotation_deg < 0:
            raise ValueError(
                f"synth shift_px and rotation_deg are maxima and must be >= 0, "
                f"got shift_px={self.shift_px!r}, rotation_deg={self.rotation_deg!r}"
            )
        # The strip's margin to the image border is 40 px left/right and 32 px top/bottom at
        # reference scale (more at strip_scale < 1); a re-grip beyond that cuts the edges the
        # patch stage registers on.
        half_w = (REF_WIDTH / 2 - STRIP_X0) * self.strip_scale
        margin = REF_HEIGHT / 2 - (REF_HEIGHT / 2 - STRIP_Y0) * self.strip_scale
        corner_dy = half_w * math.sin(math.radians(self.rotation_deg))
        if self.shift_px + corner_dy > margin:
            raise ValueError(
                f"synth shift_px={self.shift_px} with rotation_deg={self.rotation_deg} moves the "
                f"strip corners up to {self.shift_px + corner_dy:.1f} px, more than the "
                f"{margin:.0f} px margin to the image border; lower shift_px or rotation_deg"
            )


@dataclass(frozen=True)
class SynthSummary:
    out: Path  # folder written
    strips: int  # strip folders written
    runs: int  # runs per strip
    frames: int  # frames per run
    defective: int  # strips labelled defect
    seconds: float  # wall time of the whole call
    # True re-grip of every (strip, run), in pixels of the written image: a product point p goes
    # to R(angle_deg) (p - c) + c + (dx, dy), with c the image centre ((W - 1) / 2, (H - 1) / 2)
    # in pixel-index coordinates and the angle as in cv2.getRotationMatrix2D (counter-clockwise
    # on screen); gain multiplies the whole image before noise.
    transforms: pd.DataFrame = field(repr=False, compare=False)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
