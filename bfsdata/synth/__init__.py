"""Synthetic raw acquisitions of BFS vial strips, for tests, demos and ground truth.

`synth(out, cfg)` writes out/labels.csv and out/<strip>/run_<r>/frame_<f>.png (docs/design.md,
Raw input). Modules, in the order the data flows: `geometry` (the nominal layout the patch
stage crops), `defects` + `marks` (what is wrong and how it looks), `product` (the static strip),
`motion` (the liquid during handling), `camera` (re-grip, gain, lighting, noise), `plan` (every
random choice, seeded), `writer` (the stage: files and labels). `looks` names sets of the
config's look knobs (docs/synth-looks.md); `layout` gives the pipeline layout for a config.
"""

from bfsdata.synth.config import SynthConfig, SynthSummary
from bfsdata.synth.layout import layout_for
from bfsdata.synth.looks import LOOKS, look_config
from bfsdata.synth.writer import synth

__all__ = ["LOOKS", "SynthConfig", "SynthSummary", "layout_for", "look_config", "synth"]
