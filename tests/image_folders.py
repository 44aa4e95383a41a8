"""Tiny image-folder datasets in the benchmark layout, and a tiny pipeline to cut them.

`write_image_folder` draws a textured 64x64 grayscale product per image; a defective image gets
a dark blob in its top-left 32 px tile, and its mask marks exactly the blob. Test modules
import this file (pyproject's pytest `pythonpath` puts tests/ on the path).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np

from bfsdata.config.pipeline import (
    AcquisitionConfig,
    LayoutConfig,
    Pipeline,
    ReportConfig,
    SplitConfig,
)

SIDE = 64  # px, image height and width
TILE = 32  # px: a 2 x 2 grid of 32 px tiles, cut into 32 px patches
BLOB = (slice(8, 20), slice(6, 18))  # rows, columns of the defect: inside tile (column 1, row 0)


def draw(seed: int, defect: bool = False, size: tuple[int, int] = (SIDE, SIDE)) -> np.ndarray:
    """(H, W) uint8: a bright product with stripes and noise; a dark blob when defective."""
    rng = np.random.default_rng(seed)
    img = np.full(size, 150.0)
    img[:, ::8] = 110.0  # vertical stripes, so no patch is flat
    img += rng.normal(0, 4, size)
    if defect:
        img[BLOB] = 30.0
    return np.clip(img, 0, 255).astype(np.uint8)


def write_image_folder(
    root: Path,
    train: int = 6,
    test_good: int = 2,
    defects: dict[str, int] | None = None,
    masks: bool = True,
) -> Path:
    """root/train/good, root/test/good, root/test/<defect> and (masks) root/ground_truth."""
    defects = {"blob": 2} if defects is None else defects
    groups = [("train", "good", train), ("test", "good", test_good)]
    groups += [("test", name, n) for name, n in defects.items()]
    seed = 0
    for part, folder, n in groups:
        (root / part / folder).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            seed += 1
            img = draw(seed, defect=folder != "good")
            cv2.imwrite(str(root / part / folder / f"{i:03d}.png"), img)
            if masks and folder != "good":
                mask = np.zeros_like(img)
                mask[BLOB] = 255
                (root / "ground_truth" / folder).mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(root / "ground_truth" / folder / f"{i:03d}_mask.png"), mask)
    return root


def image_pipeline(base: Pipeline, mode: str = "grid") -> Pipeline:
    """`base` (e.g. workspace_fixtures.tiny_pipeline()) made for image folders: one frame, no
    rank images, 32 px tiles (or the whole image) cut into `base`'s patch size."""
    train = dataclasses.replace(base.train, kinds=("frame",))
    return dataclasses.replace(
        base,
        name="tiny-images",
        acquisition=AcquisitionConfig(frames=1, ranks=(), test_frames=(0,)),
        layout=LayoutConfig(mode=mode, tile=TILE, stride=TILE),
        patch=dataclasses.replace(base.patch, kinds=("frame",), frames="all"),
        split=SplitConfig(val=0.2, calib=0.5),
        train=train,
        report=ReportConfig(batch=4),
    )
