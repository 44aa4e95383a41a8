"""The pipeline's `layout:` section that crops the strips a `SynthConfig` draws.

A benchmark across looks keeps one pipeline profile and swaps only this section. The vial
columns and region bands are the nominal ones of `geometry` (R0 flag, R1 upper body, R2 liquid,
R3 bottom); only `strip_scale` moves them, about the image centre. The vial shape knobs change
what is drawn inside each column, not where the columns are, so they keep the default layout.
"""

from __future__ import annotations

import itertools
from typing import Any

from bfsdata.config.files import coerce
from bfsdata.config.pipeline import LayoutConfig
from bfsdata.synth.config import SynthConfig
from bfsdata.synth.geometry import (
    N_VIALS,
    REF_HEIGHT,
    REF_WIDTH,
    REGION_EDGES,
    STRIP_X0,
    STRIP_X1,
    STRIP_Y0,
    STRIP_Y1,
)

# The keys of a pipeline's `layout:` section for raw strips (pipelines/demo.yaml lists them).
LAYOUT_KEYS = (
    "mode",
    "reference_size",
    "strip_box",
    "vials",
    "regions",
    "max_shift",
    "max_size_error",
    "background",
)


def layout_for(cfg: SynthConfig) -> dict[str, Any]:
    """The `layout:` section (plain lists, as in the YAML) whose boxes fall on the vials and
    regions of the strips `cfg` draws; for the default config, pipelines/demo.yaml's.

    Positions are px of the 1024 x 1280 reference image, rounded to whole pixels as the pipeline
    takes them (half a reference pixel at most: under a pixel of any smaller image).
    """
    s = cfg.strip_scale

    def y(v: float) -> int:
        return round(REF_HEIGHT / 2 + (v - REF_HEIGHT / 2) * s)

    def x(v: float) -> int:
        return round(REF_WIDTH / 2 + (v - REF_WIDTH / 2) * s)

    bands = itertools.pairwise(REGION_EDGES)
    section: dict[str, Any] = {
        "mode": "fixed",
        "reference_size": [REF_HEIGHT, REF_WIDTH],
        "strip_box": [y(STRIP_Y0), x(STRIP_X0), y(STRIP_Y1), x(STRIP_X1)],
        "vials": N_VIALS,
        "regions": [[y(top), y(bottom)] for top, bottom in bands],
    }
    # Tolerances and background as LayoutConfig has them: built the way the YAML loader does,
    # which also checks the section.
    layout = coerce(LayoutConfig, section, "layout")
    return {key: _plain(getattr(layout, key)) for key in LAYOUT_KEYS}


def _plain(value: Any) -> Any:
    """Tuples as lists, as a YAML section holds them."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value
