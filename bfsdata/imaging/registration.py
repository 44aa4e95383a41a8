"""Where the vials and regions are in one acquisition (pure kernels, no I/O).

The pipeline's layout says where the strip sits nominally; the strip is re-gripped for every
run, so each acquisition is registered: the strip's outline is found in the intensity profiles
of its max rank image (moving liquid vanishes there, the plastic stays) and every crop box is
shifted by the offset. The same boxes then serve all frames and rank images of the acquisition.

Rotation: a re-grip also tilts the strip a little. At 0.3 degrees the outer vials of a 1,200 px
strip move up or down by 3 px against the centre, and on the demo data the good-strip 1 - SSIM of
R0, R1 and R3 followed |angle| closely (docs/performance.md, Registration and crops): the tilt
was the largest normal variation left. So registration also measures the tilt, from the top
(cut) edge of the flag in two column slabs per vial (a robust line fit: the median of the
pairwise slopes, so a flag-cut notch in one slab does not tilt the answer), and every window
follows its own centre:

    image point = R(angle) (p - c) + c + (dx, dy)     for a nominal point p,

with c the nominal strip centre and R the rotation of cv2.getRotationMatrix2D (counter-clockwise
on screen for angle > 0). A window's offset is that displacement of its centre; its box is the
nominal box moved by the rounded offset, and the crop (`crop.cut_patches`) samples the remainder
and the rotation about the window centre.

Limits of registration (documented in docs/patching.md): the background must be clearly darker (or,
with `background: bright`, brighter) than the plastic over the strip's rows and columns, and
above the strip's top edge; all vials must be in view; a strip that is wider or narrower than
the layout by more than `max_size_error`, or shifted (rotation included, at any window) by more
than `max_shift`, is refused rather than cropped wrong.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import numpy as np

from bfsdata.config.pipeline import LayoutConfig


class RegistrationError(ValueError):
    """The strip could not be found where the layout allows; the crop would be wrong."""


@dataclass(frozen=True)
class Geometry:
    """The layout scaled to one image size, in pixels (floats: nominal positions)."""

    height: int
    width: int
    strip_box: tuple[float, float, float, float]  # (y0, x0, y1, x1)
    columns: tuple[tuple[float, float], ...]  # (x0, x1) per vial
    bands: tuple[tuple[float, float], ...]  # (y0, y1) per region
    max_shift: float  # px
    max_size_error: float  # relative
    bright_background: bool
    auto: bool


@dataclass(frozen=True)
class Registration:
    dy: float  # px, found strip top minus nominal
    dx: float  # px, found strip centre minus nominal
    boxes: np.ndarray  # (V, R, 4) int: (y0, x0, y1, x1), end-exclusive
    angle: float = 0.0  # degrees, counter-clockwise on screen, about the nominal strip centre
    offsets: np.ndarray | None = None  # (V, R, 2) (dy, dx) of each window's centre; None: (dy, dx)

    @property
    def flat_offsets(self) -> np.ndarray:
        """(V * R, 2) (dy, dx) per window, vial-major like `boxes.reshape(-1, 4)`."""
        if self.offsets is None:
            return np.tile([self.dy, self.dx], (self.boxes.shape[0] * self.boxes.shape[1], 1))
        return self.offsets.reshape(-1, 2)

    def warp(self, exact: bool) -> dict:
        """`window_warp` of this registration's windows."""
        return window_warp(self.flat_offsets, self.angle, exact)


def window_warp(offsets: np.ndarray, angle: float, exact: bool) -> dict:
    """`crop.cut_patches` keywords that make whole-pixel boxes follow the product: each window's
    sub-pixel remainder of its (N, 2) offset and the strip's angle; none when `exact` is off
    (`patch.subpixel: false`: the boxes are cut as they are).

    Both are taken at the float32 precision the patch manifest records them with, so that a
    patch recomputed from its manifest row (`bfsdata verify`) is the same bit for bit: OpenCV
    rounds sample positions to 1/32 px, and a position on such a boundary rounded one way from
    the float64 offset and the other from its float32 record."""
    if not exact:
        return {}
    recorded = np.asarray(offsets, dtype=np.float32)
    return {"shift": subpixel(recorded), "angle": float(np.float32(angle))}


def subpixel(offsets: np.ndarray) -> np.ndarray:
    """What `boxes_at` rounds away: offset - round(offset), each in [-0.5, 0.5]."""
    offsets = np.asarray(offsets, dtype=np.float64)
    return offsets - np.round(offsets)


def scale_layout(layout: LayoutConfig, height: int, width: int) -> Geometry:
    """Scale the reference-size layout to `height` x `width`; refuse what does not fit."""
    ref_h, ref_w = layout.reference_size
    sy, sx = height / ref_h, width / ref_w
    y0, x0, y1, x1 = layout.strip_box
    pitch = (x1 - x0) / layout.vials
    columns = tuple(
        ((x0 + v * pitch) * sx, (x0 + (v + 1) * pitch) * sx) for v in range(layout.vials)
    )
    bands = tuple((top * sy, bottom * sy) for top, bottom in layout.regions)
    geo = Geometry(
        height=height,
        width=width,
        strip_box=(y0 * sy, x0 * sx, y1 * sy, x1 * sx),
        columns=columns,
        bands=bands,
        max_shift=layout.max_shift * max(sx, sy),
        max_size_error=layout.max_size_error,
        bright_background=layout.background == "bright",
        auto=layout.mode == "auto",
    )
    nominal = boxes_at(geo, 0, 0)
    if nominal.min() < 0 or nominal[..., 2].max() > height or nominal[..., 3].max() > width:
        raise RegistrationError(
            f"the layout's regions leave the {height}x{width} image; check layout.strip_box, "
            "layout.regions and layout.reference_size in the pipeline"
        )
    return geo


def boxes_at(
    geo: Geometry,
    dy: float | np.ndarray,
    dx: float | np.ndarray,
    columns: tuple[tuple[float, float], ...] | None = None,
) -> np.ndarray:
    """(V, R, 4) integer crop boxes for a strip offset by (dy, dx): scalars, or (V, R) arrays of
    per-window offsets (`window_offsets`).

    Each offset is rounded and added to the rounded nominal box, so every acquisition's crop of
    one region has the same size (no one-pixel jitter between runs).
    """
    cols = columns if columns is not None else geo.columns
    shape = (len(cols), len(geo.bands))
    iy = np.round(np.broadcast_to(dy, shape)).astype(np.int64)
    ix = np.round(np.broadcast_to(dx, shape)).astype(np.int64)
    out = np.empty((*shape, 4), dtype=np.int64)
    for v, (cx0, cx1) in enumerate(cols):
        for r, (by0, by1) in enumerate(geo.bands):
            out[v, r] = (round(by0), round(cx0), round(by1), round(cx1))
    out += np.stack([iy, ix, iy, ix], axis=-1)
    return out


def window_offsets(
    geo: Geometry,
    dy: float,
    dx: float,
    angle: float,
    columns: tuple[tuple[float, float], ...] | None = None,
) -> np.ndarray:
    """(V, R, 2) (dy, dx) that moves each window's nominal centre onto the product, for a strip
    offset by (dy, dx) and rotated by `angle` degrees about its nominal centre."""
    cols = columns if columns is not None else geo.columns
    y0, x0, y1, x1 = geo.strip_box
    qx = np.array([(a + b) / 2 for a, b in cols])[:, None] - (x0 + x1) / 2  # (V, 1)
    qy = np.array([(a + b) / 2 for a, b in geo.bands])[None, :] - (y0 + y1) / 2  # (1, R)
    cos, sin = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    oy = -sin * qx + (cos - 1.0) * qy + dy
    ox = (cos - 1.0) * qx + sin * qy + dx
    return np.stack(np.broadcast_arrays(oy, ox), axis=-1)


def register(image: np.ndarray, geo: Geometry, rotation: bool = True) -> Registration:
    """Find the strip in a (H, W) image (the max rank image) and return its crop boxes.

    rotation: also measure the strip's tilt and let every window follow it (module docstring);
    False: one offset for all windows, as before rotation was measured.
    """
    img = image.astype(np.float32)
    if geo.bright_background:
        img = img.max() - img
    y0, x0, y1, x1 = geo.strip_box
    m = geo.max_shift
    # Profiles over the strip's middle half, which stays inside the strip whatever the shift.
    ry = slice(max(0, round(y0 + (y1 - y0) * 0.25)), round(y0 + (y1 - y0) * 0.75))
    rx = slice(max(0, round(x0 + (x1 - x0) * 0.25)), round(x0 + (x1 - x0) * 0.75))
    col = img[ry].mean(axis=0)  # (W,)
    row = img[:, rx].mean(axis=1)  # (H,)
    left, right = _edges(col, "columns")
    top, bottom = _edges(row, "rows")
    for what, found, expected in (("wide", right - left, x1 - x0), ("tall", bottom - top, y1 - y0)):
        if abs(found - expected) > geo.max_size_error * expected:
            raise RegistrationError(
                f"strip found {found:.0f} px {what}, the layout expects {expected:.0f} px "
                f"(tolerance {geo.max_size_error:.0%}): wrong layout, or strip not fully in view"
            )
    dx = (left + right) / 2 - (x0 + x1) / 2
    dy = top - y0
    if abs(dx) > m or abs(dy) > m:
        raise RegistrationError(
            f"strip offset ({dy:+.1f}, {dx:+.1f}) px (rows, columns) exceeds the tolerance of "
            f"{m:.0f} px (layout.max_shift): the product is not where the layout expects it"
        )
    columns = _find_columns(col, geo, dx) if geo.auto else None
    angle = _tilt(img, geo, dy, dx) if rotation else 0.0
    offsets = window_offsets(geo, dy, dx, angle, columns)
    worst = float(np.abs(offsets).max())
    if worst > m:
        raise RegistrationError(
            f"strip offset ({dy:+.1f}, {dx:+.1f}) px and rotation {angle:+.2f} degrees move a "
            f"crop window by {worst:.1f} px, more than the tolerance of {m:.0f} px "
            "(layout.max_shift): the product is not where the layout expects it"
        )
    boxes = boxes_at(geo, offsets[..., 0], offsets[..., 1], columns)
    if boxes.min() < 0 or boxes[..., 2].max() > geo.height or boxes[..., 3].max() > geo.width:
        raise RegistrationError(
            f"after the offset ({dy:+.1f}, {dx:+.1f}) px and rotation {angle:+.2f} degrees "
            "the crop boxes leave the image"
        )
    return Registration(float(dy), float(dx), boxes, float(angle), offsets)


def _tilt(img: np.ndarray, geo: Geometry, dy: float, dx: float) -> float:
    """Degrees (counter-clockwise on screen) of the strip's top edge: the median of the pairwise
    slopes of the edge found in two column slabs per vial."""
    y0, _, y1, _ = geo.strip_box
    rows = slice(0, min(geo.height, round(y0 + dy + (y1 - y0) * 0.25)))  # background, flag
    xs, tops = [], []
    for c0, c1 in geo.columns:
        w = c1 - c0
        for a in (0.1, 0.55):  # clear of the webs between vials, where the flag is grooved
            s0, s1 = round(c0 + dx + a * w), round(c0 + dx + (a + 0.35) * w)
            top = _step(img[rows, s0 : max(s1, s0 + 1)].mean(axis=1))
            if top is not None:
                xs.append((s0 + s1) / 2)
                tops.append(top)
    if len(xs) < 3:
        raise RegistrationError(
            f"the strip's top edge was found in {len(xs)} of {2 * len(geo.columns)} column "
            "slabs: its rotation cannot be measured (is background visible above the strip?)"
        )
    x, t = np.array(xs), np.array(tops)
    i, j = np.triu_indices(len(x), k=1)
    slope = float(np.median((t[j] - t[i]) / (x[j] - x[i])))
    return float(-np.degrees(np.arctan(slope)))


def _step(profile: np.ndarray, k: int = 2) -> float | None:
    """Position of the first dark-to-bright step of a profile, or None where there is none.

    Area, not a level crossing: over 2k samples around the crossing, the share of each sample
    still at the level before the step, summed. That moves exactly with the step under linear
    resampling, where a crossing interpolated on a sharp edge is off by a fraction of a pixel
    depending on where the edge falls between samples, enough to misread the tilt
    (docs/performance.md, Registration and crops). A step closer than 2k samples to the
    profile's start (tiny images) falls back to the crossing.
    """
    lo, hi = _levels(profile)
    if hi - lo < 10:
        return None
    i = int(np.argmax(profile >= (lo + hi) / 2))
    if i == 0 or i + 2 * k > len(profile):
        return None  # the strip touches the image's edge: no step to see
    if i < 2 * k:
        return _edges(profile, "rows")[0]
    before = statistics.median(profile[i - 2 * k : i - k].tolist())
    after = statistics.median(profile[i + k : i + 2 * k].tolist())
    if after - before < 10:
        return None
    # +0.5: box coordinates, as `_edges` (a pixel i spans [i, i + 1))
    return i - k + 0.5 + float(np.sum((after - profile[i - k : i + k]) / (after - before)))


def _levels(profile: np.ndarray) -> tuple[float, float]:
    """Background and product levels of a profile: its 5th and 95th percentiles, interpolated
    linearly as np.percentile does, from one sort. np.percentile's general path is slow on
    these few hundred samples, and a registration makes a dozen calls holding the GIL that the
    other task thread then waits for (docs/performance.md, Patch)."""
    s = np.sort(profile).tolist()

    def at(q: float) -> float:
        i, t = divmod(q * (len(s) - 1), 1.0)
        lo = s[int(i)]
        return lo + (s[min(int(i) + 1, len(s) - 1)] - lo) * t

    return at(0.05), at(0.95)


def _edges(profile: np.ndarray, what: str) -> tuple[float, float]:
    """First and last sub-pixel crossings of the level halfway between background and product."""
    lo, hi = _levels(profile)
    if hi - lo < 10:
        raise RegistrationError(
            f"no strip found: the {what} profile has no contrast ({hi - lo:.1f} grey levels) "
            "between background and product"
        )
    level = (lo + hi) / 2
    above = profile >= level
    idx = np.flatnonzero(above)
    first, last = int(idx[0]), int(idx[-1])

    def cross(i: int, j: int) -> float:  # linear interpolation between samples i and j
        a, b = profile[i], profile[j]
        return i + (level - a) / (b - a) * (j - i) if b != a else float(i)

    # +0.5: a crossing between pixel centres i-1 and i is the boundary at i in box coordinates,
    # where a box (x0, x1) holds pixels x0..x1-1.
    start = cross(first - 1, first) + 0.5 if first > 0 else 0.0
    end = cross(last, last + 1) + 0.5 if last + 1 < len(profile) else float(len(profile))
    return start, end


def _find_columns(col: np.ndarray, geo: Geometry, dx: float) -> tuple[tuple[float, float], ...]:
    """Vial boundaries at the darkest column near each nominal boundary (the web between vials)."""
    nominal = [geo.columns[0][0] + dx] + [c[1] + dx for c in geo.columns]
    pitch = geo.columns[0][1] - geo.columns[0][0]
    smooth = np.convolve(col, np.ones(5) / 5, mode="same")
    bounds = [nominal[0]]
    for b in nominal[1:-1]:
        lo, hi = max(0, round(b - pitch / 4)), min(len(col), round(b + pitch / 4))
        bounds.append(float(lo + np.argmin(smooth[lo:hi])))
    bounds.append(nominal[-1])
    return tuple((bounds[i] - dx, bounds[i + 1] - dx) for i in range(len(bounds) - 1))
