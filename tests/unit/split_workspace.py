"""A tiny real workspace, ingested, patched and split, for the `stats` and `verify` tests.

Images that register: a bright strip on a dark background where the default layout expects
it (workspace_fixtures.write_raw).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from workspace_fixtures import FRAMES, SIZE, write_raw

from bfsdata.config.pipeline import (
    AcquisitionConfig,
    PatchConfig,
    Pipeline,
    SplitConfig,
    TrainConfig,
)
from bfsdata.config.training import ModelConfig
from bfsdata.ingest import ingest
from bfsdata.patch.stage import patch
from bfsdata.split import split

PER_ACQ = (FRAMES + 2) * 5 * 4  # (frames + rank images) x vials x regions


def build_split_workspace(ws: Path) -> Path:
    """raw -> ingest -> patch -> split in `ws` (made here); returns `ws`."""
    write_raw(ws / "raw")
    acq = AcquisitionConfig(frames=FRAMES, ranks=(1, FRAMES), test_frames=(0, FRAMES - 1))
    train = TrainConfig(model=ModelConfig(patch_size=SIZE))  # the pipeline checks they agree
    pipe = dataclasses.replace(
        Pipeline(), acquisition=acq, patch=PatchConfig(size=SIZE), train=train
    )
    ingest(ws / "raw", ws, pipe, workers=2)
    patch(ws, pipe, workers=2)
    split(ws, SplitConfig(val=0.5, test_good=1))
    return ws
