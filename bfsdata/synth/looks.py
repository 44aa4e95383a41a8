"""Named looks: sets of `SynthConfig` knobs along which real BFS lines differ.

The chain is judged on strips rendered by programs it never sees; a benchmark renders each look
with the same seed and measures the chain on each, with `layout_for(cfg)` as the only change to
its pipeline profile. Each look moves along its own axis (docs/synth-looks.md shows them):

    default             the reference strip: dark-rimmed bubbles, joined vials, even light, 8 bit
    bright-bubbles      moving bubbles and drops with bright rims: they stay in the max rank image
    bubbly              four times the moving bubbles and drops, rims of both polarities
    narrow-flag         flags narrower than the bodies: background between the tabs
    wide-flag           bodies narrower than the flags: a wide web between the vials
    separate-vials      background gaps between the vials, from the flag's top to the bottom
    long-neck           necks twice as long: the shoulder sits lower in R1
    wide-margins        the strip smaller in the image: wider background margins
    dim-gradient-noisy  darker, light falling off across the image, three times the noise
    12bit               12 significant bits in 16-bit PNGs (`patch.input_bits: 12`)
"""

from __future__ import annotations

from typing import Any

from bfsdata.synth.config import SynthConfig

LOOKS: dict[str, dict[str, Any]] = {
    "default": {},
    "bright-bubbles": {"rims": "bright"},
    "bubbly": {"rims": "both", "clutter": 4.0},
    "narrow-flag": {"flag_width": 0.7},
    "wide-flag": {"body_width": 0.78},
    "separate-vials": {"body_width": 0.85, "vial_gap": 24.0},
    "long-neck": {"neck_length": 80.0},
    "wide-margins": {"strip_scale": 0.85},
    "dim-gradient-noisy": {
        "gain": (0.6, 0.75),
        "gradient": 0.35,
        "gradient_deg": 30.0,
        "noise_sigma": 6.0,
    },
    "12bit": {"bit_depth": 12},
}


def look_config(name: str, **overrides: Any) -> SynthConfig:
    """The SynthConfig of look `name`, with `overrides` (any SynthConfig field) on top."""
    if name not in LOOKS:
        raise ValueError(f"unknown synth look {name!r}; known looks: {', '.join(LOOKS)}")
    return SynthConfig(**{**LOOKS[name], **overrides})
