"""One image of an image folder (bfsdata.sources.image_folders): decoded to grayscale, its mask
a label image.

Pixels: RGB becomes grayscale by the ITU-R BT.601 luma rule Y = 0.299 R + 0.587 G + 0.114 B,
rounded, in the input dtype (OpenCV COLOR_BGR2GRAY), 8- or 16-bit as the file is. Images of
different sizes are stored at the top left of `frames` (A, 1, H, W) sized to the largest one;
the padding is 0 and never cut (the acquisitions manifest keeps each image's size).

Masks: any nonzero pixel marks the defect. Each acquisition has a label image in `masks`
(A, H, W): 0 no defect, 1 defect, 2 not annotated (a defective image without a mask), from
which `patch` derives `defect_here` for each tile.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np
import zarr

from bfsdata.config.pipeline import StoreConfig
from bfsdata.sources.image_file import FrameError, FrameHeader, read_bytes, read_header
from bfsdata.sources.image_folders import ImageAcquisition
from bfsdata.store import location as store
from bfsdata.workspace import provenance

CLEAN, DEFECT, UNANNOTATED = 0, 1, 2  # values of the `masks` label images


def require_arrays(
    root: zarr.Group, headers: Iterable[FrameHeader], cfg: StoreConfig
) -> tuple[zarr.Array, zarr.Array]:
    """`frames` (A, 1, H, W) and `masks` (A, H, W), created at the largest image size."""
    if "frames" in root:
        return root["frames"], root["masks"]
    heads = list(headers)
    h, w = max(x.height for x in heads), max(x.width for x in heads)
    frames = root.create_array(
        "frames",
        shape=(0, 1, h, w),
        shards=(1, 1, h, w),
        chunks=(1, 1, h, w),
        dtype=heads[0].dtype,
        compressors=store.codec(cfg),
        fill_value=0,
        dimension_names=("acq", "frame", "y", "x"),
    )
    masks = root.create_array(
        "masks",
        shape=(0, h, w),
        shards=(1, h, w),
        chunks=(1, h, w),
        dtype="uint8",
        compressors=store.codec(cfg),
        fill_value=CLEAN,
        dimension_names=("acq", "y", "x"),
    )
    return frames, masks


def load(
    acq: ImageAcquisition, header: FrameHeader, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, str, int]:
    """Decode one image and its mask once: frame (1, H, W) and label image (H, W), both padded
    to the store's `shape`, the sha256 over the image's and mask's digests, and bytes read."""
    digests, n_bytes = [], 0
    frame = np.zeros((1, *shape), dtype=header.dtype)
    labels = np.zeros(shape, dtype=np.uint8)
    h, w = header.height, header.width
    for path in (acq.frames[0], acq.mask):
        if path is None:
            continue
        data = read_bytes(path, header)
        n_bytes += len(data)
        digests.append(hashlib.sha256(data).digest())
        if path == acq.mask:
            labels[:h, :w] = np.where(_decode(path, data, (h, w)) > 0, DEFECT, CLEAN)
        else:
            frame[0, :h, :w] = _decode(path, data, (h, w), header.dtype)
    if acq.mask is None and acq.label == "defect":
        labels[:h, :w] = UNANNOTATED
    return frame, labels, provenance.frames_sha256(digests), n_bytes


def read_image(path: Path) -> np.ndarray:
    """One image file as (H, W) grayscale, by the rules of this module (for `infer`)."""
    h = read_header(path)
    if h.channels not in (1, 3) or h.dtype not in ("uint8", "uint16"):
        raise FrameError(path, "image-format", "images must be 8- or 16-bit grayscale or RGB")
    return _decode(path, read_bytes(path, h), (h.height, h.width), h.dtype)


def _decode(path: Path, data: bytes, size: tuple[int, int], dtype: str | None = None) -> np.ndarray:
    """(H, W) grayscale; RGB by BT.601 luma (OpenCV decodes colour as BGR)."""
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise FrameError(path, "valid-image", "cannot be decoded (truncated or corrupt image)")
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    if img.ndim != 2 or img.shape != size or (dtype is not None and str(img.dtype) != dtype):
        raise FrameError(
            path,
            "valid-image",
            f"decodes to {img.dtype} {img.shape}, but its header says {dtype or ''} {size}: "
            "the file is corrupt",
        )
    return img


def mask_cells(labels: np.ndarray, boxes: np.ndarray) -> dict[str, object]:
    """`defects` (vial, region) cells whose box holds a defect pixel, and `located`: whether
    the label image says where the defect is (no pixel left unannotated); for `patch`."""
    v_r = [
        (v + 1, r)
        for v in range(boxes.shape[0])
        for r in range(boxes.shape[1])
        if (labels[_box(boxes[v, r])] == DEFECT).any()
    ]
    return {"defects": tuple(v_r), "located": not (labels == UNANNOTATED).any()}


def _box(b: np.ndarray) -> tuple[slice, slice]:
    y0, x0, y1, x1 = (int(v) for v in b)
    return slice(y0, y1), slice(x0, x1)
