"""Cut crop boxes out of an image into square uint8 patches (pure kernel).

Resizing: `auto` uses INTER_AREA when a box is shrunk (it averages, no aliasing) and
INTER_LINEAR when it is enlarged; `native` cuts `size` x `size` pixels around the box centre
with no resampling at all.

Sub-pixel shift and rotation: boxes are whole pixels, registration is not. `shift` = (fy, fx),
the window offset's remainder in [-0.5, 0.5] (one pair for all boxes, or one per box), moves a
window by that fraction, and `angle` turns it about its centre with the strip (registration.py),
so a region's crop lands on the same point of the product in every run (measured at 1/4 scale:
half-pixel jumps of the strip's edges were the largest good-patch 1 - SSIM in R0, R1 and R3;
docs/performance.md, Registration and crops).
Then an enlarged or native window is sampled by one bilinear warp on the same pixel-centre grid
as INTER_LINEAR resizing; a shrunk one is warped bilinearly at its own size, then INTER_AREA
resized. Bilinear weights are the same for a frame and its rank images, so
rank_min <= frame <= rank_max survives (to rounding).

Cost: the warp, turning included, costs more than a plain resize; `patch.subpixel: false` for
the whole-pixel cut. Shifting the image once and then resizing is as cheap as the whole-pixel
cut, but its second interpolation blurs small defects away and cost demo accuracy, so one
interpolation per window it is (docs/performance.md, Patch and Accuracy on the demo). The
warped window is rounded once, at the end.

16-bit input becomes 8-bit once, after resizing, by one fixed rule:
    u8 = round(v * 255 / (2**bits - 1)), clipped to 255,
with `bits` = 16, or `patch.input_bits` for cameras that fill only the low bits (12-bit data in
16-bit PNGs). A fixed rule keeps grey levels comparable across acquisitions, which a per-image
stretch would not.
"""

from __future__ import annotations

import functools
import math

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
    out: np.ndarray | None = None,
) -> np.ndarray:
    """(H, W) uint8/uint16 image, (N, 4) boxes (y0, x0, y1, x1) -> (N, size, size) uint8.

    shift: (fy, fx) px added to a box's origin, |fy|, |fx| <= 0.5: one pair, or (N, 2), one per
    box; angle: degrees counter-clockwise on screen about each window's centre (module docstring).
    out: a C-contiguous (N, size, size) uint8 array to fill (and return) instead of a new one.
    """
    if out is None:
        out = np.empty((len(boxes), size, size), dtype=np.uint8)
    elif out.shape != (len(boxes), size, size) or out.dtype != np.uint8:
        raise ValueError(f"out must be ({len(boxes)}, {size}, {size}) uint8, got {out.shape}")
    elif not out.flags.c_contiguous:
        raise ValueError("out must be C-contiguous: OpenCV writes each patch into it in place")
    shifts = np.broadcast_to(np.asarray(shift, dtype=np.float64), (len(boxes), 2)).tolist()
    for i, (y0, x0, y1, x1) in enumerate(boxes.tolist()):
        if resize == "native":
            cy, cx = (y0 + y1) // 2, (x0 + x1) // 2
            y0, x0 = cy - size // 2, cx - size // 2
            y1, x1 = y0 + size, x0 + size
            if y0 < 0 or x0 < 0 or y1 > image.shape[0] or x1 > image.shape[1]:
                raise ValueError(
                    f"native {size}x{size} cut at ({cy}, {cx}) leaves the "
                    f"{image.shape[0]}x{image.shape[1]} image; use patch.resize: auto"
                )
        fy, fx = shifts[i]
        if angle != 0.0 or fy or fx:
            crop = _warped(image, (y0, x0, y1, x1), size, fy, fx, angle)
        else:
            crop = image[y0:y1, x0:x1]
        if crop.shape != (size, size):
            shrink = crop.shape[0] >= size and crop.shape[1] >= size
            crop = cv2.resize(
                crop, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
            )
        if crop.dtype == np.float32:  # warped: round once, at the end
            if image.dtype == np.uint8:
                cv2.convertScaleAbs(crop, dst=out[i])  # to nearest, clipped to 0..255, in place
                continue
            crop = np.rint(crop).astype(image.dtype)
        out[i] = to_uint8(crop, input_bits)
    return out


def _warped(
    image: np.ndarray, box: tuple[int, int, int, int], size: int, fy: float, fx: float, angle: float
) -> np.ndarray:
    """The box moved by (fy, fx) and turned by `angle` about its centre, float32: (size, size)
    when it is enlarged or native, else its own size (then INTER_AREA resized by the caller).

    Only the window's footprint is converted to float: OpenCV 5 warps float32 faster than 8-bit,
    more than paying for the conversion (docs/performance.md, Patch)."""
    m, dsize, (ya, yb, xa, xb) = _window(box, size, fy, fx, angle, image.shape[:2])
    return cv2.warpAffine(
        image[ya:yb, xa:xb].astype(np.float32),
        m,
        dsize,
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )


@functools.lru_cache(maxsize=4096)
def _window(
    box: tuple[int, int, int, int],
    size: int,
    fy: float,
    fx: float,
    angle: float,
    shape: tuple[int, int],
) -> tuple[np.ndarray, tuple[int, int], tuple[int, int, int, int]]:
    """Inverse affine map (2, 3), output (w, h) and source footprint (y0, y1, x0, x1) of a
    window; the map is relative to the footprint's corner. Pixel centres map as in INTER_LINEAR
    resizing.

    Cached: an acquisition's frames and rank images share their windows, so each map is worked
    out once per acquisition, not once per image (plain floats: no numpy overhead per window).
    """
    y0, x0, y1, x1 = box
    h, w = y1 - y0, x1 - x0
    shrink = h >= size and w >= size and (h, w) != (size, size)  # as cut_patches decides
    out_h, out_w = (h, w) if shrink else (size, size)
    sy, sx = h / out_h, w / out_w
    # Output pixel (u, v) -> source: c + A (S (u, v) + b - c), with b the unrotated grid's origin,
    # c the window centre and A the rotation of cv2.getRotationMatrix2D (image axes, y down).
    bx, by = x0 + fx + sx / 2 - 0.5, y0 + fy + sy / 2 - 0.5
    cx, cy = x0 + fx + w / 2 - 0.5, y0 + fy + h / 2 - 0.5
    cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    m = [
        [cos * sx, sin * sy, cx + cos * (bx - cx) + sin * (by - cy)],
        [-sin * sx, cos * sy, cy - sin * (bx - cx) + cos * (by - cy)],
    ]
    # Footprint: every source pixel a bilinear sample of the corners' hull touches, plus one of
    # slack for rounding. Clipped to the image, where BORDER_REPLICATE then repeats its edge;
    # elsewhere no sample reaches the footprint's edge, so the crop changes no value.
    corners = [(u, v) for u in (0, out_w - 1) for v in (0, out_h - 1)]
    xs = [m[0][0] * u + m[0][1] * v + m[0][2] for u, v in corners]
    ys = [m[1][0] * u + m[1][1] * v + m[1][2] for u, v in corners]
    fy0, fx0 = max(0, math.floor(min(ys)) - 1), max(0, math.floor(min(xs)) - 1)
    fy1, fx1 = min(shape[0], math.floor(max(ys)) + 3), min(shape[1], math.floor(max(xs)) + 3)
    m[0][2] -= fx0
    m[1][2] -= fy0
    arr = np.array(m)
    arr.flags.writeable = False  # shared by every caller of the cache
    return arr, (out_w, out_h), (fy0, fy1, fx0, fx1)


def to_uint8(img: np.ndarray, input_bits: int = 0) -> np.ndarray:
    """The module's 16-bit rule: round(v * 255 / (2**bits - 1)), clipped."""
    if img.dtype == np.uint8:
        return img
    bits = input_bits or 8 * img.dtype.itemsize
    top = (1 << bits) - 1
    v = img.astype(np.uint32) * 255 + top // 2
    return np.minimum(v // top, 255).astype(np.uint8)
