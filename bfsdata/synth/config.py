"""What `synth` is asked to make (`SynthConfig`) and what it made (`SynthSummary`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bfsdata.synth.geometry import REF_WIDTH, STRIP_X0, STRIP_Y0

TRANSFORM_COLUMNS = ("strip", "run", "dx", "dy", "angle_deg", "gain")
MIN_SIDE = 64  # px: below this the 12 px web between vials is a fraction of a pixel
MAX_GAIN = 1.25  # brightest product (~205 grey) times this still fits in 8 bits


@dataclass(frozen=True)
class SynthConfig:
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
        if not 0.0 <= self.defect_fraction <= 1.0:
            raise ValueError(
                f"synth defect_fraction must be a share in [0, 1], got {self.defect_fraction!r}"
            )
        if not _is_int(self.seed) or self.seed < 0:
            raise ValueError(f"synth seed must be a whole number >= 0, got {self.seed!r}")
        if self.bit_depth not in (8, 16):
            raise ValueError(f"synth bit_depth must be 8 or 16, got {self.bit_depth!r}")
        self._check_regrip()
        if len(self.severity) != 2 or not 0.0 <= self.severity[0] <= self.severity[1] <= 1.0:
            raise ValueError(
                f"synth severity must be a range (lo, hi) with 0 <= lo <= hi <= 1, "
                f"got {self.severity!r}"
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

    def _check_regrip(self) -> None:
        if self.shift_px < 0 or self.rotation_deg < 0:
            raise ValueError(
                f"synth shift_px and rotation_deg are maxima and must be >= 0, "
                f"got shift_px={self.shift_px!r}, rotation_deg={self.rotation_deg!r}"
            )
        # The strip's margin to the image border is 40 px left/right and 32 px top/bottom at
        # reference scale; a re-grip beyond that cuts the edges the patch stage registers on.
        half_w = REF_WIDTH / 2 - STRIP_X0
        corner_dy = half_w * math.sin(math.radians(self.rotation_deg))
        if self.shift_px + corner_dy > STRIP_Y0:
            raise ValueError(
                f"synth shift_px={self.shift_px} with rotation_deg={self.rotation_deg} moves the "
                f"strip corners up to {self.shift_px + corner_dy:.1f} px, more than the "
                f"{STRIP_Y0:.0f} px margin to the image border; lower shift_px or rotation_deg"
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
