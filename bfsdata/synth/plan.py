"""Decide everything random about a dataset before a pixel is drawn.

Seeds form a fixed tree under `np.random.SeedSequence(cfg.seed)`: which strips are defective,
then one branch per strip (defects, texture, runs) and one per (strip, run) (re-grip, liquid and
noise, rim polarities). A strip's pictures therefore depend only on the seed and its index, never
on thread scheduling, and strip S0003 looks the same whether 4 or 400 strips are written (its
label comes from the dataset-level draw). A knob of `SynthConfig` that needs draws of its own
takes them from a branch of its own, so at its default every other stream stays as it was.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bfsdata.synth.camera import Regrip
from bfsdata.synth.config import TRANSFORM_COLUMNS, SynthConfig
from bfsdata.synth.defects import Defect, sample_defects
from bfsdata.synth.geometry import Geometry

LABEL_COLUMNS = ("strip", "label", "defect", "vial", "region")
SECOND_DEFECT_CHANCE = 0.35  # a defective strip has 1 defect, sometimes 2


@dataclass(frozen=True)
class RunPlan:
    run: int  # 1..runs
    grip: Regrip
    seed: np.random.SeedSequence  # liquid movement, then noise
    rim_seed: np.random.SeedSequence  # polarity of each bubble's rim (SynthConfig.rims both)


@dataclass(frozen=True)
class StripPlan:
    strip: str  # S0000, S0001, ...
    defects: tuple[Defect, ...]  # empty: a good strip
    texture_seed: np.random.SeedSequence
    runs: tuple[RunPlan, ...]

    @property
    def label(self) -> str:
        return "defect" if self.defects else "good"


def n_defective(strips: int, fraction: float) -> int:
    """Strips that get defects: the fraction rounded half up, >= 1 if any are asked for."""
    n = math.floor(strips * fraction + 0.5)
    if fraction > 0 and strips >= 2:
        n = max(n, 1)
    return min(n, strips)


def plan_dataset(cfg: SynthConfig) -> list[StripPlan]:
    """Every strip's label, defects, re-grips and seeds."""
    geom = Geometry(cfg.height, cfg.width)
    choice_seed, strips_seed = np.random.SeedSequence(cfg.seed).spawn(2)
    chosen = np.random.default_rng(choice_seed).permutation(cfg.strips)
    defective = set(chosen[: n_defective(cfg.strips, cfg.defect_fraction)].tolist())
    plans = []
    for i, strip_seed in enumerate(strips_seed.spawn(cfg.strips)):
        defect_seed, texture_seed, runs_seed = strip_seed.spawn(3)
        defects: tuple[Defect, ...] = ()
        if i in defective:
            rng = np.random.default_rng(defect_seed)
            n = 1 + int(rng.random() < SECOND_DEFECT_CHANCE)
            defects = sample_defects(rng, n, cfg.severity, cfg.shape, cfg.defect_size)
        runs = []
        for r, run_seed in enumerate(runs_seed.spawn(cfg.runs), start=1):
            # spawn(3) begins with the very children spawn(2) gave: the first two streams are
            # the same as before the third was added.
            grip_seed, liquid_seed, rim_seed = run_seed.spawn(3)
            grip = _regrip(np.random.default_rng(grip_seed), cfg, geom)
            runs.append(RunPlan(r, grip, liquid_seed, rim_seed))
        plans.append(StripPlan(f"S{i:04d}", defects, texture_seed, tuple(runs)))
    return plans


def _regrip(rng: np.random.Generator, cfg: SynthConfig, geom: Geometry) -> Regrip:
    # geom is the image's scale (no strip_scale): shift_px is px of the reference image.
    dx = rng.uniform(-1.0, 1.0) * cfg.shift_px * geom.sx
    dy = rng.uniform(-1.0, 1.0) * cfg.shift_px * geom.sy
    angle = rng.uniform(-1.0, 1.0) * cfg.rotation_deg
    return Regrip(float(dx), float(dy), float(angle), float(rng.uniform(*cfg.gain)))


def labels_frame(plans: list[StripPlan]) -> pd.DataFrame:
    """labels.csv: one `good` row per good strip, one `defect` row per defect."""
    rows: list[dict[str, object]] = []
    for p in plans:
        if not p.defects:
            rows.append({"strip": p.strip, "label": "good"})
        for d in p.defects:
            rows.append(
                {
                    "strip": p.strip,
                    "label": "defect",
                    "defect": d.kind,
                    "vial": d.vial,
                    "region": d.region,
                }
            )
    df = pd.DataFrame(rows, columns=list(LABEL_COLUMNS))
    # Nullable integers: written as "3", and empty for good strips, never "3.0".
    return df.astype({"vial": "Int64", "region": "Int64", "defect": "string"})


def transforms_frame(plans: list[StripPlan]) -> pd.DataFrame:
    """The true re-grip of every (strip, run), see SynthSummary.transforms."""
    rows = [
        (p.strip, r.run, r.grip.dx, r.grip.dy, r.grip.angle_deg, r.grip.gain)
        for p in plans
        for r in p.runs
    ]
    return pd.DataFrame(rows, columns=list(TRANSFORM_COLUMNS))
