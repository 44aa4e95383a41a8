"""Where the vials and regions are in one acquisition (pure kernels, no I/O).

The pipeline's layout says where the strip sits nominally; the strip is re-gripped for every
run, so each acquisition is registered: the strip's outline is found in the intensity profiles
of its max rank image (moving liquid vanishes there, the plastic stays) and every crop box is
shifted by the offset. The same boxes then serve all frames and rank images of the acquisition.

Limits of registration (documented in the README): the background must be clearly darker (or,
with `background: bright`, brighter) than the plastic over the strip's rows and columns; all
vials must be in view; rotation is not corrected (at 0.3 degrees the far vial edges move by a
few pixels, which the crops tolerate); a strip that is wider or narrower than the layout by more
than `max_size_error`, or shifted by more than `max_shift`, is refused rather than cropped wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bfsdata.config import LayoutConfig


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

    @property
    def shift(self) -> tuple[float, float]:
        """(fy, fx): the offset's sub-pixel remainder that the whole-pixel boxes leave out."""
        return subpixel(self.dy, self.dx)


def subpixel(dy: float, dx: float) -> tuple[float, float]:
    """What `boxes_at` rounds away: (dy - round(dy), dx - round(dx)), each in [-0.5, 0.5]."""
    return float(dy - round(dy)), float(dx - round(dx))


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
    geo: Geometry, dy: float, dx: float, columns: tuple[tuple[float, float], ...] | None = None
) -> np.ndarray:
    """(V, R, 4) integer crop boxes for a strip offset by (dy, dx).

    The offset is rounded once and added to rounded nominal boxes, so every acquisition's crop of
    one region has the same size (no one-pixel jitter between runs).
    """
    cols = columns if columns is not None else geo.columns
    iy, ix = round(dy), round(dx)
    out = np.empty((len(cols), len(geo.bands), 4), dtype=np.int64)
    for v, (cx0, cx1) in enumerate(cols):
        for r, (by0, by1) in enumerate(geo.bands):
            out[v, r] = (round(by0) + iy, round(cx0) + ix, round(by1) + iy, round(cx1) + ix)
    return out


def register(image: np.ndarray, geo: Geometry) -> Registration:
    """Find the strip in a (H, W) image (the max rank image) and return its crop boxes."""
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
    boxes = boxes_at(geo, dy, dx, columns)
    if boxes.min() < 0 or boxes[..., 2].max() > geo.height or boxes[..., 3].max() > geo.width:
        raise RegistrationError(
            f"after the offset ({dy:+.1f}, {dx:+.1f}) px the crop boxes leave the image"
        )
    return Registration(dy=float(dy), dx=float(dx), boxes=boxes)


def _edges(profile: np.ndarray, what: str) -> tuple[float, float]:
    """First and last sub-pixel crossings of the level halfway between background and product."""
    lo, hi = np.percentile(profile, [5, 95])
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
