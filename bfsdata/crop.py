"""Cut crop boxes out of an image into square uint8 patches (pure kernel).

Resizing: `auto` uses INTER_AREA when a box is shrunk (it averages, no aliasing) and
INTER_LINEAR when it is enlarged; `native` cuts `size` x `size` pixels around the box centre
with no resampling at all.

Sub-pixel shift and rotation: boxes are whole pixels, registration is not. `shift` = (fy, fx),
the window offset's remainder in [-0.5, 0.5] (one pair for all boxes, or one per box), moves a
window by that fraction, and `angle` turns it about its centre with the strip (layout.py), so a
region's crop lands on the same point of the product in every run (measured at 1/4 scale:
half-pixel jumps of the strip's edges were the largest good-patch 1 - SSIM in R0, R1 and R3).
Then an enlarged or native window is sampled by one bilinear warp on the same pixel-centre grid
as INTER_LINEAR resizing; a shrunk one is warped bilinearly at its own size, then INTER_AREA
resized. Bilinear weights are the same for a frame and its rank images, so
rank_min <= frame <= rank_max survives (to rounding).

Cost, 240 -> 256 px: the warp takes 166 us where a resize takes 55, turning included (patch end
to end 2,000-3,900 against 3,900-5,100 patches/s on 2 cores; `patch.subpixel: false` for the
whole-pixel cut). Shifting the image once and then resizing is as cheap as the whole-pixel cut,
but its second interpolation blurs: on the demo (1/4 scale, 1-3 px defects) strip-wise accuracy
was 0.54 against 0.74 (one run each), so one interpolation per window it is.

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
    image: np.ndarray,
    boxes: np.ndarray,
    size: int,
    resize: str = "auto",
    input_bits: int = 0,
    shift: tuple[float, float] | np.ndarray = (0.0, 0.0),
    angle: float = 0.0,
) -> np.ndarray:
    """(H, W) uint8/uint16 image, (N, 4) boxes (y0, x0, y1, x1) -> (N, size, size) uint8.

    shift: (fy, fx) px added to a box's origin, |fy|, |fx| <= 0.5: one pair, or (N, 2), one per
    box; angle: degrees counter-clockwise on screen about each window's centre (module docstring).
    """
    out = np.empty((len(boxes), size, size), dtype=np.uint8)
    shifts = np.broadcast_to(np.asarray(shift, dtype=np.float64), (len(boxes), 2))
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
        box = (y0, x0, y1, x1)
        warp = angle != 0.0 or shifts[i].any()
        crop = _warped(image, box, size, shifts[i], angle) if warp else image[y0:y1, x0:x1]
        if crop.shape != (size, size):
            shrink = crop.shape[0] >= size and crop.shape[1] >= size
            crop = cv2.resize(
                crop, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
            )
        out[i] = to_uint8(crop, input_bits) if crop.dtype != np.uint8 else crop
    return out


def _warped(
    image: np.ndarray,
    box: tuple[int, int, int, int],
    size: int,
    shift: np.ndarray,
    angle: float,
) -> np.ndarray:
    """The box moved by `shift` and turned by `angle` about its centre: (size, size) when it is
    enlarged or native, else its own size (then INTER_AREA resized by the caller). Pixel centres
    map as in INTER_LINEAR resizing."""
    y0, x0, y1, x1 = box
    fy, fx = shift
    h, w = y1 - y0, x1 - x0
    shrink = h >= size and w >= size and (h, w) != (size, size)  # as cut_patches decides
    out_h, out_w = (h, w) if shrink else (size, size)
    sy, sx = h / out_h, w / out_w
    # Output pixel (u, v) -> source: c + A (S (u, v) + b - c), with b the unrotated grid's origin,
    # c the window centre and A the rotation of cv2.getRotationMatrix2D (image axes, y down).
    b = np.array([x0 + fx + sx / 2 - 0.5, y0 + fy + sy / 2 - 0.5])
    c = np.array([x0 + fx + w / 2 - 0.5, y0 + fy + h / 2 - 0.5])
    cos, sin = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    a = np.array([[cos, sin], [-sin, cos]])
    m = np.hstack([a * [sx, sy], (c + a @ (b - c))[:, None]])
    return cv2.warpAffine(
        image,
        m,
        (out_w, out_h),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )


def to_uint8(img: np.ndarray, input_bits: int = 0) -> np.ndarray:
    """The module's 16-bit rule: round(v * 255 / (2**bits - 1)), clipped."""
    if img.dtype == np.uint8:
        return img
    bits = input_bits or 8 * img.dtype.itemsize
    top = (1 << bits) - 1
    v = img.astype(np.uint32) * 255 + top // 2
    return np.minimum(v // top, 255).astype(np.uint8)
