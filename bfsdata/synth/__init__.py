"""Synthetic raw acquisitions of BFS vial strips, for tests, demos and ground truth.

`synth(out, cfg)` writes out/labels.csv and out/<strip>/run_<r>/frame_<f>.png (DESIGN.md
section 1). Modules, in the order the data flows: `geometry` (the nominal layout the patch stage
crops), `defects` + `marks` (what is wrong and how it looks), `product` (the static strip),
`motion` (the liquid during handling), `camera` (re-grip, gain, noise), `plan` (every random
choice, seeded), `writer` (the stage: files and labels).
"""

from bfsdata.synth.config import SynthConfig, SynthSummary
from bfsdata.synth.writer import synth

__all__ = ["SynthConfig", "SynthSummary", "synth"]
