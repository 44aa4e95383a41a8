"""Shared by the `bfsdata.patch.stage.patch` tests: the tiny pipeline, the synthetic raw data and
ways to read a patched workspace back.

Raw strips come from `bfsdata.synth` at 128x160 px (the default layout / 8: vial x region boxes
of 30x30 px, enlarged to 32 px patches with INTER_LINEAR), 4 frames per run.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from bfsdata.config.pipeline import AcquisitionConfig, LayoutConfig, PatchConfig, Pipeline
from bfsdata.store import location as store
from bfsdata.synth import SynthConfig, synth
from bfsdata.workspace import manifest

FRAMES, SIZE, H, W = 4, 32, 128, 160
VIALS, REGIONS = 5, 4
PER_ACQ = (FRAMES + 2) * VIALS * REGIONS  # (frames + rank min/max) x vials x regions
KEY = ["acq", "kind", "frame", "vial", "region"]


def patch_pipe(layout: LayoutConfig | None = None, **patch_cfg: object) -> Pipeline:
    acq = AcquisitionConfig(frames=FRAMES, ranks=(1, FRAMES), test_frames=(0, FRAMES - 1))
    return dataclasses.replace(
        Pipeline(),
        acquisition=acq,
        layout=layout or LayoutConfig(),
        patch=PatchConfig(size=SIZE, **{"acq_per_task": 8, **patch_cfg}),
    )


def synth_raw(out: Path, **cfg: object):
    base = {"strips": 2, "runs": 2, "frames": FRAMES, "height": H, "width": W, "seed": 0}
    return synth(out, SynthConfig(**{**base, **cfg}))


def patch_rows(ws: Path) -> pd.DataFrame:
    return manifest.read(ws, manifest.PATCHES)


def patches_by_key(ws: Path) -> dict[tuple, np.ndarray]:
    """{(acq, kind, frame, vial, region): patch} read back from the store."""
    rows = patch_rows(ws)
    arr = store.open_root(ws, mode="r")["patches"]
    data = arr.get_orthogonal_selection((rows["patch"].to_numpy(),))
    keys = rows[KEY].itertuples(index=False, name=None)
    return {k: p for k, p in zip(keys, data, strict=True)}


class Sources:
    """The (H, W) image a manifest row was cut from: frames and rank images read once with
    zarr-python (tiny workspaces)."""

    def __init__(self, root) -> None:
        self.frames, self.rank = root["frames"][:], root["rank"][:]
        self.ranks = [int(r) for r in root.attrs["ranks"]]

    def __call__(self, row) -> np.ndarray:
        if row.kind == "frame":
            return self.frames[row.acq, row.frame]
        rank = 1 if row.kind == "rank_min" else self.frames.shape[1]
        return self.rank[row.acq, self.ranks.index(rank)]


def uint8_rule(v: np.ndarray, bits: int) -> np.ndarray:
    """The documented 16-bit rule, round(v * 255 / (2**bits - 1)) clipped, in integers."""
    top = 2**bits - 1
    return np.minimum((2 * v.astype(np.int64) * 255 + top) // (2 * top), 255).astype(np.uint8)


def snapshot_patches(ws: Path, snapshot) -> dict:
    snap = snapshot(store.store_path(ws) / "patches")
    snap["manifest"] = snapshot(ws / "manifests").get("patches.parquet")
    return snap


def assert_close(got: np.ndarray, want: np.ndarray, tol: float = 0.6, msg: str = "") -> None:
    """uint8 patch vs the float expectation: equal to rounding (0.5) and OpenCV's fixed-point
    weights (a little more)."""
    np.testing.assert_array_less(np.abs(got - want), tol + 1e-6, err_msg=msg)
