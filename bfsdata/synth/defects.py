"""Which defects exist, how big and how strong they may be, and where one is placed.

A defect is fixed to the product: it is placed here once per strip, in nominal coordinates, drawn
into the static product image (`marks.py`) and so appears in every frame and run of its strip,
moving with the re-grip. Every defect lies inside the box of its declared vial and region.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from bfsdata.synth.geometry import (
    BOTTOM_START,
    FLAG_BOTTOM,
    MENISCUS_Y,
    N_VIALS,
    REFERENCE_SHAPE,
    STRIP_Y0,
    VIAL_PITCH,
    VialShape,
    region_box,
    vial_centre,
)


@dataclass(frozen=True)
class DefectSpec:
    regions: tuple[int, ...]  # regions (0..3) the defect may occur in
    size: tuple[float, float]  # px at reference scale, log-uniform; meaning per kind below
    contrast: tuple[float, float]  # grey levels (8-bit), log-uniform; meaning per kind below


# Ranges run from barely visible (a few px, ~10 grey levels) to obvious. Meaning of size and
# contrast: particle/black_spot diameter and darkening; scratch length and brightening or
# darkening; deformation length along the wall and the crease shadow (the wall moves by 8-20 %
# of the length); burn blotch diameter and darkening; foam cluster width and bubble rim
# contrast; flag_cut notch width (depth 30-90 % of it, the cut shows background) and unused.
DEFECT_SPECS: dict[str, DefectSpec] = {
    "particle": DefectSpec((1, 2), (3.0, 14.0), (10.0, 90.0)),
    "black_spot": DefectSpec((1, 2, 3), (2.0, 10.0), (15.0, 130.0)),
    "scratch": DefectSpec((1, 2, 3), (15.0, 120.0), (10.0, 50.0)),
    "deformation": DefectSpec((1, 3), (16.0, 60.0), (10.0, 40.0)),
    "burn": DefectSpec((0, 1, 2, 3), (8.0, 60.0), (10.0, 60.0)),
    "foam": DefectSpec((2,), (12.0, 60.0), (10.0, 40.0)),
    "flag_cut": DefectSpec((0,), (4.0, 40.0), (0.0, 0.0)),
}
DEFECT_KINDS = tuple(DEFECT_SPECS)

# Nominal rows where the centre of a mark may sit, per region, keeping clear of band edges and
# of the shoulder (R1 starts with the neck: `_zone`) and of the rounded bottom's tip.
_ZONES = {0: (STRIP_Y0 + 6, FLAG_BOTTOM - 6), 2: (516.0, 748.0), 3: (756.0, 962.0)}
_R1_END = 508.0
_FOAM_TOP = (MENISCUS_Y + 13, MENISCUS_Y + 20)  # px: just under the lowest meniscus wave
_BODY_USE = 0.8  # share of the body half width a mark may use (walls stay clean)
_MAX_BULGE = 5.0  # px: outward bulge stays inside the 6 px half web


@dataclass(frozen=True)
class Defect:
    kind: str  # a key of DEFECT_SPECS
    vial: int  # 1..5, as in labels.csv
    region: int  # 0..3, as in labels.csv
    x: float  # nominal centre, px
    y: float
    size: float  # px at reference scale, see DEFECT_SPECS
    contrast: float  # grey levels
    depth: float = 0.0  # px the outline moves (deformation: > 0 dent, < 0 bulge; flag_cut)
    angle: float = 0.0  # radians (scratch direction)
    side: int = 0  # -1 left wall, +1 right wall (deformation)
    seed: int = 0  # shape details (lobes, bubbles, jagged cuts) are drawn from this
    box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)  # nominal (x0, y0, x1, y1)


def sample_defects(
    rng: np.random.Generator,
    n: int,
    severity: tuple[float, float] = (0.0, 1.0),
    shape: VialShape = REFERENCE_SHAPE,
    size_share: tuple[float, float] | None = None,
) -> tuple[Defect, ...]:
    """n defects of random kinds at distinct (vial, region) places of one strip (`place_defect`
    says what severity, shape and size_share do)."""
    out: list[Defect] = []
    used: set[tuple[int, int]] = set()
    while len(out) < n:
        kind = DEFECT_KINDS[int(rng.integers(len(DEFECT_KINDS)))]
        vial = int(rng.integers(1, N_VIALS + 1))
        regions = DEFECT_SPECS[kind].regions
        region = regions[int(rng.integers(len(regions)))]
        if (vial, region) in used:
            continue
        used.add((vial, region))
        out.append(place_defect(rng, kind, vial, region, severity, shape, size_share))
    return tuple(out)


def place_defect(
    rng: np.random.Generator,
    kind: str,
    vial: int,
    region: int,
    severity: tuple[float, float] = (0.0, 1.0),
    shape: VialShape = REFERENCE_SHAPE,
    size_share: tuple[float, float] | None = None,
) -> Defect:
    """Draw size, contrast and position of one defect inside (vial, region) of a strip of vials
    of `shape`.

    `severity` (lo, hi) in [0, 1] keeps the draws within that share of each log range: (0, 1) is
    the whole range, (0.5, 1) its more visible half. `size_share` does the same for the size
    alone (None: severity's share).
    """
    spec = DEFECT_SPECS[kind]
    if region not in spec.regions:
        raise ValueError(f"{kind} cannot occur in region {region}; allowed: {spec.regions}")
    size = _loguniform(rng, *spec.size, severity if size_share is None else size_share)
    contrast = _loguniform(rng, *spec.contrast, severity) if spec.contrast[1] > 0 else 0.0
    seed = int(rng.integers(2**31))
    base = Defect(kind, vial, region, 0.0, 0.0, size, contrast, seed=seed)
    if kind == "deformation":
        d = _deformation(rng, base, shape)
    elif kind == "flag_cut":
        d = _flag_cut(rng, base, shape)
    elif kind == "foam":
        d = _foam(rng, base, shape)
    else:
        d = _mark(rng, base, shape)
    bx0, by0, bx1, by1 = region_box(vial, region)
    x0, y0, x1, y1 = d.box
    assert bx0 <= x0 < x1 <= bx1 and by0 <= y0 < y1 <= by1, (d, region_box(vial, region))
    return d


def _loguniform(
    rng: np.random.Generator, lo: float, hi: float, severity: tuple[float, float]
) -> float:
    # Log-uniform: small, faint defects are as common as large ones per octave.
    u = rng.uniform(*severity)
    return float(np.exp(np.log(lo) + u * (np.log(hi) - np.log(lo))))


def _mark(rng: np.random.Generator, d: Defect, shape: VialShape) -> Defect:
    """Round-ish marks (particle, black_spot, burn) and scratches, inside the body or flag."""
    radius = d.size / 2 + 1.0
    angle = float(rng.uniform(0, np.pi))
    for _ in range(200):
        x, y = _point_in(rng, d.vial, d.region, radius, shape)
        if x is not None:
            break
        radius *= 0.9  # a long scratch may not fit a narrow bottom: shorten it
    else:  # pragma: no cover - the zones are far larger than the largest defect
        raise AssertionError(f"no room for {d.kind} in vial {d.vial} region {d.region}")
    size = min(d.size, 2 * (radius - 1.0))
    if d.kind == "scratch":
        hx, hy = np.cos(angle) * size / 2 + 2, np.sin(angle) * size / 2 + 2
        box = (x - abs(hx), y - abs(hy), x + abs(hx), y + abs(hy))
    else:
        box = (x - radius, y - radius, x + radius, y + radius)
    return replace(d, x=x, y=y, size=size, angle=angle, box=box)


def _zone(region: int, shape: VialShape) -> tuple[float, float]:
    """Nominal rows (lo, hi) where a mark's centre may sit in a region."""
    return (shape.shoulder_end + 4, _R1_END) if region == 1 else _ZONES[region]


def _point_in(
    rng: np.random.Generator, vial: int, region: int, radius: float, shape: VialShape
) -> tuple[float, float] | tuple[None, None]:
    """A centre whose circle of `radius` lies on clean product in (vial, region), or None."""
    lo, hi = _zone(region, shape)
    if hi - lo < 2 * radius:
        return None, None
    cx = vial_centre(vial)
    y = float(rng.uniform(lo + radius, hi - radius))
    if region == 0:
        half = shape.flag_half - 8.0  # the flag is flat across its width
    else:
        half = _BODY_USE * float(shape.body_halfwidth(np.array([y - radius, y + radius])).min())
    if half < radius + 1:
        return None, None
    return float(rng.uniform(cx - half + radius, cx + half - radius)), y


def _deformation(rng: np.random.Generator, d: Defect, shape: VialShape) -> Defect:
    side = 1 if rng.random() < 0.5 else -1
    depth = d.size * float(rng.uniform(0.08, 0.2))
    if rng.random() < 0.4:
        depth = -min(depth, _MAX_BULGE)
    lo, hi = _zone(1, shape) if d.region == 1 else (756.0, BOTTOM_START + 5)
    y = float(rng.uniform(lo + d.size / 2, hi - d.size / 2))
    wall = float(shape.side_halfwidth(np.array([y]), d.vial, side)[0])
    if wall > shape.body_half:
        depth = abs(depth)  # an outer wall is the strip's edge: it can only dent inwards
    x = vial_centre(d.vial) + side * wall
    # The bulged outline, inside the web (a gap between vials is background).
    outer = min(max(-depth, 0.0) + 1.0, VIAL_PITCH / 2 - shape.gap / 2 - wall)
    inner = max(depth, 0.0) + 9.0  # the dented outline and the crease shadow inside it
    x0, x1 = (x - inner, x + outer) if side > 0 else (x - outer, x + inner)
    box = (x0, y - d.size / 2, x1, y + d.size / 2)
    return replace(d, x=x, y=y, depth=depth, side=side, box=box)


def _flag_cut(rng: np.random.Generator, d: Defect, shape: VialShape) -> Defect:
    depth = max(2.0, d.size * float(rng.uniform(0.3, 0.9)))
    x0, x1 = vial_centre(d.vial) - shape.flag_half, vial_centre(d.vial) + shape.flag_half
    x = float(rng.uniform(x0 + d.size / 2 + 8, x1 - d.size / 2 - 8))
    # The bright cut face follows the new edge down: the box reaches 6 px below the notch.
    box = (x - d.size / 2, STRIP_Y0, x + d.size / 2, STRIP_Y0 + depth + 6)
    return replace(d, x=x, y=STRIP_Y0, depth=depth, box=box)


def _foam(rng: np.random.Generator, d: Defect, shape: VialShape) -> Defect:
    top = float(rng.uniform(*_FOAM_TOP))
    height = d.size / 3 + 4.0
    half = _BODY_USE * shape.body_half - d.size / 2
    cx = vial_centre(d.vial)
    x = float(rng.uniform(cx - half, cx + half))
    box = (x - d.size / 2, top, x + d.size / 2, top + height)
    return replace(d, x=x, y=top + height / 2, box=box)
