"""Cut crop boxes out of an image into square uint8 patches (pure kernel).

Resizing: `auto` uses INTER_AREA when a box is shrunk (it averages, no aliasing) and
INTER_LINEAR when it is enlarged; `native` cuts `size` x `size` pixels around the box centre
with no resampling at all.

16-bit input becomes 8-bit once, after resizing, by one fixed rule:
    u8 = round(v * 255 / (2**bits - 1)), clipped to 255,
with `bits` = 16, or `patch.input_bits` for cameras that fill only the low bits (12-bit data in
16-bit PNGs). A fixed rule keeps grey levels comparable across acquisitions, which a per-image
stretch would not.
"""

from __future__ import annotations

import cv2
import numpy as np


def cut_patches(
    image: np.ndarray, boxes: np.ndarray, size: int, resize: str = "auto", input_bits: int = 0
) -> np.ndarray:
    """(H, W) uint8/uint16 image, (N, 4) boxes (y0, x0, y1, x1) -> (N, size, size) uint8."""
    out = np.empty((len(boxes), size, size), dtype=np.uint8)
    for i, (y0, x0, y1, x1) in enumerate(boxes):
        if resize == "native":
            cy, cx = (y0 + y1) // 2, (x0 + x1) // 2
            y0, x0 = cy - size // 2, cx - size // 2
            y1, x1 = y0 + size, x0 + size
            if y0 < 0 or x0 < 0 or y1 > image.shape[0] or x1 > image.shape[1]:
                raise ValueError(
                    f"native {size}x{size} cut at ({cy}, {cx}) leaves the "
                    f"{image.shape[0]}x{image.shape[1]} image; use patch.resize: auto"
                )
        crop = image[y0:y1, x0:x1]
        if crop.shape != (size, size):
            shrink = crop.shape[0] >= size and crop.shape[1] >= size
            crop = cv2.resize(
                crop, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
            )
        out[i] = to_uint8(crop, input_bits) if crop.dtype != np.uint8 else crop
    return out


def to_uint8(img: np.ndarray, input_bits: int = 0) -> np.ndarray:
    """The module's 16-bit rule: round(v * 255 / (2**bits - 1)), clipped."""
    if img.dtype == np.uint8:
        return img
    bits = input_bits or 8 * img.dtype.itemsize
    top = (1 << bits) - 1
    v = img.astype(np.uint32) * 255 + top // 2
    return np.minimum(v // top, 255).astype(np.uint8)
