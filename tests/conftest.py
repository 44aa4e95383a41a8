"""Shared fixtures: tiny raw folders in the raw layout of docs/design.md and a tiny pipeline.

Everything is built in `tmp_path`; no test depends on files outside it. Helpers that tests call
with arguments are fixtures returning a function (`make_raw`, `snapshot`, `read_run`), so test
modules never import this file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path

import cv2
import numpy as np
import pytest

from bfsdata.config.pipeline import AcquisitionConfig, Pipeline

DEFECT_ROW = ("scratch", 2, 1)  # defect, vial, region written for every defect strip


def _make_raw(
    root: Path,
    strips: Mapping[str, str] | None = None,
    runs: int = 2,
    frames: int = 4,
    shape: tuple[int, int] = (32, 40),
    dtype: type = np.uint8,
    labels: bool = True,
    seed: int = 0,
) -> Path:
    """Write `root/<strip>/run_<r>/frame_<f>.png` (r = 1..runs, f = 0..frames-1) and labels.csv.

    Pixels are uniform noise over the dtype's full range, drawn from a generator seeded by
    (seed, strip, run): calling again with more strips or runs rewrites the existing files with
    identical bytes, which is how tests "add acquisitions later". `strips` maps strip id ->
    good | defect | unknown; a defect strip gets the row `defect,vial,region` = scratch,2,1.
    With `labels=False` (or only unknown strips) no labels.csv is written.
    """
    strips = {"A1": "good", "B2": "defect"} if strips is None else dict(strips)
    root = Path(root)
    hi = np.iinfo(dtype).max
    for strip in strips:
        for run in range(1, runs + 1):
            rng = np.random.default_rng([seed, zlib.crc32(strip.encode()), run])
            run_dir = root / strip / f"run_{run}"
            run_dir.mkdir(parents=True, exist_ok=True)
            for f in range(frames):
                img = rng.integers(0, hi, size=shape, dtype=dtype, endpoint=True)  # (H, W)
                assert cv2.imwrite(str(run_dir / f"frame_{f}.png"), img)
    labelled = {s: lab for s, lab in strips.items() if lab != "unknown"}
    if labels and labelled:
        lines = ["strip,label,defect,vial,region"]
        for strip, lab in labelled.items():
            extra = ",".join(map(str, DEFECT_ROW)) if lab == "defect" else ",,"
            lines.append(f"{strip},{lab},{extra}")
        (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def make_raw() -> Callable[..., Path]:
    """`make_raw(root, strips=..., runs=2, frames=4, shape=(32, 40), dtype=np.uint8,
    labels=True, seed=0) -> root`: see `_make_raw`."""
    return _make_raw


@pytest.fixture
def tiny_pipe() -> Pipeline:
    """The default pipeline with 4 frames per acquisition and min/max ranks."""
    acq = AcquisitionConfig(frames=4, ranks=(1, 4), test_frames=(0, 3))
    return dataclasses.replace(Pipeline(), acquisition=acq)


def _read_run(run_dir: Path) -> np.ndarray:
    """Decoded frames of a run folder, in frame-index order: (F, H, W), file dtype."""
    files = sorted(Path(run_dir).glob("frame_*.png"), key=lambda p: int(p.stem.split("_")[1]))
    return np.stack([cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in files])


@pytest.fixture
def read_run() -> Callable[[Path], np.ndarray]:
    """`read_run(run_dir) -> (F, H, W)` array decoded with cv2.IMREAD_UNCHANGED."""
    return _read_run


def _snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """{relative path: (sha256 of bytes, mtime_ns)} of every file below `folder`."""
    folder = Path(folder)
    if not folder.exists():
        return {}
    return {
        str(p.relative_to(folder)): (
            hashlib.sha256(p.read_bytes()).hexdigest(),
            p.stat().st_mtime_ns,
        )
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def snapshot() -> Callable[[Path], dict[str, tuple[str, int]]]:
    """`snapshot(folder)`: bytes and mtimes of every file, to prove a call changed nothing."""
    return _snapshot
