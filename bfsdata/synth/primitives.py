"""Anti-aliased shape profiles, evaluated at pixel centres, in pixel units.

Shapes are drawn analytically rather than with cv2's raster functions so that they stay smooth
and keep their total contrast ("energy") at any image size: a feature thinner than a pixel is
widened to about a pixel and dimmed by the same factor instead of flickering in and out.
"""

from __future__ import annotations

import numpy as np

MIN_SIGMA = 0.5  # px: narrowest gaussian that still samples reliably at pixel centres


def soft_step(t_px: np.ndarray) -> np.ndarray:
    """Share of a pixel covered by a half-plane whose edge is t_px pixels from its centre."""
    return np.clip(np.asarray(t_px) + 0.5, 0.0, 1.0)


def line_profile(d_px: np.ndarray, width_px: float) -> np.ndarray:
    """Peak-1 cross-section of a line width_px wide, at distance d_px from its axis."""
    sigma = max(0.5 * width_px, MIN_SIGMA)
    amp = min(1.0, 0.5 * width_px / sigma)
    return amp * np.exp(-0.5 * (np.asarray(d_px) / sigma) ** 2)


def blob(dx_px: np.ndarray, dy_px: np.ndarray, rx_px: float, ry_px: float) -> np.ndarray:
    """Peak-1 gaussian blob with standard deviations rx_px, ry_px."""
    sx, sy = max(rx_px, MIN_SIGMA), max(ry_px, MIN_SIGMA)
    amp = (rx_px / sx) * (ry_px / sy)
    return amp * np.exp(-0.5 * ((dx_px / sx) ** 2 + (dy_px / sy) ** 2))


def disc(dx_px: np.ndarray, dy_px: np.ndarray, rx_px: float, ry_px: float) -> np.ndarray:
    """Coverage (0..1) of a filled ellipse with radii rx_px, ry_px."""
    r = np.sqrt(rx_px * ry_px)
    if r < 1.0:
        # Too small to have an edge: a gaussian of the same area (pi r^2 = 2 pi sigma^2 amp).
        sigma = 0.7
        return (r * r / (2 * sigma * sigma)) * np.exp(-0.5 * (dx_px**2 + dy_px**2) / sigma**2)
    rho = np.sqrt((dx_px / rx_px) ** 2 + (dy_px / ry_px) ** 2)
    return soft_step((1.0 - rho) * r)


def segment_distance(
    dx_px: np.ndarray, dy_px: np.ndarray, ux: float, uy: float, half_len_px: float
) -> np.ndarray:
    """Distance from points (dx, dy), relative to a segment's midpoint, to the segment.

    (ux, uy) is the unit direction of the segment, half_len_px half its length.
    """
    along = np.clip(dx_px * ux + dy_px * uy, -half_len_px, half_len_px)
    return np.hypot(dx_px - along * ux, dy_px - along * uy)


def bubble(dx_px: np.ndarray, dy_px: np.ndarray, r_px: float) -> np.ndarray:
    """A gas bubble or drop seen in transmitted light, peak magnitude ~1.

    Dark refracting rim (negative) around a small bright highlight up and left of the centre
    (positive). Callers multiply by a contrast in grey levels.
    """
    if r_px < 1.2:
        # Below ~2 px across only the rim's darkening survives sampling.
        return -blob(dx_px, dy_px, 0.8 * r_px, 0.8 * r_px)
    rim = line_profile(np.hypot(dx_px, dy_px) - 0.85 * r_px, max(0.35 * r_px, 1.0))
    spot = 0.35 * r_px
    glint = blob(dx_px + spot, dy_px + spot, 0.25 * r_px, 0.25 * r_px)
    return glint * 0.6 - rim


RIMS = ("dark", "bright", "both")  # polarity of bubble and drop rims, see `rim_signs`


def rim_signs(rims: str, n: int, rng: np.random.Generator | None) -> np.ndarray:
    """(n,) factors on `bubble`'s profile: +1 dark rim (transmitted light), -1 bright rim (the
    same profile turned over: a ring that catches the light around a darker centre), or, for
    `both`, each drawn from rng with even odds; rng is only drawn from (and needed) for `both`."""
    assert rims in RIMS, rims
    if rims == "both":
        assert rng is not None, "rims 'both' draws each polarity from rng"
        return np.where(rng.random(n) < 0.5, -1.0, 1.0)
    return np.full(n, -1.0 if rims == "bright" else 1.0)
