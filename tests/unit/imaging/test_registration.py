"""`bfsdata.imaging.registration`: scaling the layout, registering a strip, crop boxes
(pure kernels).

Strips are painted with exact area coverage, so a shift of (2.3, -3.6) px is a shift of
(2.3, -3.6) px in the image; the layout below is the image size, so no scaling is involved.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from bfsdata.config.pipeline import ConfigError, LayoutConfig
from bfsdata.imaging.registration import (
    Geometry,
    RegistrationError,
    _levels,
    boxes_at,
    register,
    scale_layout,
    subpixel,
)

H, W = 128, 160
STRIP = (16.0, 20.0, 112.0, 140.0)  # (y0, x0, y1, x1) nominal strip, px
LAYOUT = LayoutConfig(
    reference_size=(H, W),
    strip_box=(16, 20, 112, 140),  # 5 vials of 24 px
    vials=5,
    regions=((16, 40), (40, 64), (64, 88), (88, 112)),
    max_shift=8.0,
)
BG, FG = 25.0, 180.0  # grey levels of background and plastic
WEBS = (44, 68, 92, 116)  # nominal vial boundaries, px


def _cover(n: int, a: float, b: float) -> np.ndarray:
    """Share of each pixel [i, i + 1) covered by the interval [a, b)."""
    i = np.arange(n, dtype=np.float64)
    return np.clip(np.minimum(i + 1, b) - np.maximum(i, a), 0.0, 1.0)


def _paint(
    dy: float = 0.0,
    dx: float = 0.0,
    box: tuple[float, float, float, float] = STRIP,
    webs: tuple[int, ...] = (),
    noise: float = 2.0,
    seed: int = 0,
) -> np.ndarray:
    """(H, W) float image: a crisp bright strip at `box` + (dy, dx) on a dark background, with
    dark webs 3 px wide centred on the pixel columns `webs` (+ dx) and Gaussian noise."""
    y0, x0, y1, x1 = box
    rows, cols = _cover(H, y0 + dy, y1 + dy), _cover(W, x0 + dx, x1 + dx)
    img = BG + (FG - BG) * np.outer(rows, cols)
    for c in webs:
        web = _cover(W, c - 1 + dx, c + 2 + dx)  # pixels c - 1, c, c + 1
        img -= 70.0 * np.outer(rows, web)
    return img + np.random.default_rng(seed).normal(0.0, noise, img.shape)


def _geo(**changes: object) -> Geometry:
    return scale_layout(dataclasses.replace(LAYOUT, **changes), H, W)


def _sizes(boxes: np.ndarray) -> np.ndarray:
    """(V, R, 2) heights and widths of (V, R, 4) boxes."""
    return np.stack([boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]], axis=-1)


# --- scale_layout -----------------------------------------------------------------------------


def test_scale_layout_scales_the_reference_layout_to_the_image() -> None:
    geo = scale_layout(LayoutConfig(), 128, 160)  # 1024 x 1280 reference, / 8
    assert (geo.height, geo.width) == (128, 160)
    assert geo.strip_box == (4.0, 5.0, 124.0, 155.0)
    assert geo.columns == tuple((5.0 + 30 * v, 35.0 + 30 * v) for v in range(5))
    assert geo.bands == ((4.0, 34.0), (34.0, 64.0), (64.0, 94.0), (94.0, 124.0))
    assert geo.max_shift == 6.0
    assert not geo.bright_background and not geo.auto


def test_scale_layout_scales_rows_and_columns_independently() -> None:
    geo = scale_layout(LayoutConfig(), 256, 160)
    assert geo.strip_box == (8.0, 5.0, 248.0, 155.0)
    assert geo.max_shift == 12.0  # the larger of the two scales


def test_layout_config_refuses_regions_leaving_the_reference_image() -> None:
    with pytest.raises(ConfigError, match=r"layout.regions: band R1 leaves the image"):
        LayoutConfig(regions=((32, 512), (512, 1100)))


def test_scale_layout_refuses_regions_leaving_the_image() -> None:
    """LayoutConfig validates against its reference size; scale_layout checks again, on the
    scaled pixels (here a layout that skipped validation)."""
    bad = LayoutConfig()
    object.__setattr__(bad, "regions", ((32, 512), (512, 1100)))
    with pytest.raises(RegistrationError, match=r"regions leave the 128x160 image"):
        scale_layout(bad, 128, 160)


def test_nominal_boxes_follow_the_layout() -> None:
    boxes = boxes_at(_geo(), 0, 0)
    assert boxes.shape == (5, 4, 4)
    assert boxes[0, 0].tolist() == [16, 20, 40, 44]
    assert boxes[4, 3].tolist() == [88, 116, 112, 140]
    assert (_sizes(boxes) == 24).all()


# --- register ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dy", "dx"), [(0.0, 0.0), (3.0, -5.0), (-7.0, 6.0), (2.3, -3.6), (-6.5, 7.25), (0.4, -0.6)]
)
def test_register_finds_a_shifted_strip(dy: float, dx: float) -> None:
    geo = _geo()
    reg = register(_paint(dy, dx), geo)
    assert abs(reg.dy - dy) <= 0.5 and abs(reg.dx - dx) <= 0.5, (reg.dy, reg.dx)
    assert abs(reg.angle) < 0.1  # an upright strip
    off = reg.offsets
    np.testing.assert_allclose(off, np.broadcast_to([reg.dy, reg.dx], off.shape), atol=0.1)
    np.testing.assert_array_equal(reg.boxes, boxes_at(geo, off[..., 0], off[..., 1]))
    flat = register(_paint(dy, dx), geo, rotation=False)  # one offset for every window
    assert flat.angle == 0.0 and (flat.flat_offsets == [flat.dy, flat.dx]).all()
    want = boxes_at(geo, 0, 0) + np.array([round(flat.dy), round(flat.dx)] * 2)
    np.testing.assert_array_equal(flat.boxes, want)
    if dy == round(dy) and dx == round(dx):  # whole pixels: the boxes move exactly as much
        assert (reg.boxes - boxes_at(geo, 0, 0) == [dy, dx, dy, dx]).all()


def test_register_on_uint8_image() -> None:
    img = np.clip(_paint(4.0, -2.0), 0, 255).astype(np.uint8)
    reg = register(img, _geo())
    assert abs(reg.dy - 4.0) <= 0.5 and abs(reg.dx + 2.0) <= 0.5


@pytest.mark.parametrize(("dy", "dx"), [(3.0, -5.0), (-2.6, 4.3)])
def test_register_bright_background(dy: float, dx: float) -> None:
    img = 255.0 - _paint(dy, dx)  # a dark strip on a bright background
    reg = register(img, _geo(background="bright"))
    assert abs(reg.dy - dy) <= 0.5 and abs(reg.dx - dx) <= 0.5, (reg.dy, reg.dx)


@pytest.mark.parametrize(("dy", "dx"), [(10.0, 0.0), (0.0, -11.0), (-9.0, 9.0)])
def test_register_refuses_a_shift_beyond_max_shift(dy: float, dx: float) -> None:
    with pytest.raises(RegistrationError, match=r"exceeds the tolerance of 8 px.*max_shift"):
        register(_paint(dy, dx), _geo())


def test_register_max_shift_is_in_reference_pixels() -> None:
    """max_shift 4 at a reference half the image size allows 8 px in the image."""
    layout = LayoutConfig(
        reference_size=(H // 2, W // 2),
        strip_box=(8, 10, 56, 70),
        vials=5,
        regions=((8, 20), (20, 32), (32, 44), (44, 56)),
        max_shift=4.0,
    )
    geo = scale_layout(layout, H, W)
    assert abs(register(_paint(6.0, -7.0), geo).dx + 7.0) <= 0.5
    with pytest.raises(RegistrationError, match="tolerance of 8 px"):
        register(_paint(0.0, 9.0), geo)


@pytest.mark.parametrize("x1", [120.0, 150.0])  # 100 and 130 px wide; the layout says 120
def test_register_refuses_a_strip_of_the_wrong_width(x1: float) -> None:
    img = _paint(box=(16.0, 20.0, 112.0, x1))
    width = round(x1 - 20.0)
    with pytest.raises(
        RegistrationError, match=rf"strip found {width} px wide, the layout expects 120 px"
    ):
        register(img, _geo())


def test_register_accepts_a_width_error_within_tolerance() -> None:
    img = _paint(box=(16.0, 20.0, 112.0, 143.0))  # 123 px: 2.5 % wider, tolerance 4 %
    reg = register(img, _geo())
    assert abs(reg.dx - 1.5) <= 0.5


def test_register_refuses_a_strip_of_the_wrong_height() -> None:
    img = _paint(box=(16.0, 20.0, 80.0, 140.0))  # 64 px tall; the layout says 96
    with pytest.raises(RegistrationError, match=r"tall|high|height"):
        register(img, _geo())


@pytest.mark.parametrize("noise", [0.0, 2.0])
def test_register_refuses_a_flat_image(noise: float) -> None:
    img = np.full((H, W), 90.0) + np.random.default_rng(1).normal(0, noise, (H, W))
    with pytest.raises(RegistrationError, match=r"no strip found: the (columns|rows) profile"):
        register(img, _geo())


def test_register_refuses_boxes_that_leave_the_image_after_the_shift() -> None:
    """A band below the strip (allowed by the layout) slides out of the image."""
    geo = _geo(regions=((16, 64), (64, 128)))
    assert register(_paint(0.0, 0.0), geo).boxes[..., 2].max() == 128
    with pytest.raises(RegistrationError, match=r"after the offset \(\+3\.0, .*leave the image"):
        register(_paint(3.0, 0.0), geo)


def test_register_ignores_what_moves_inside_the_strip() -> None:
    """Dark liquid or marks inside the strip do not move its edges."""
    img = _paint(2.0, -3.0)
    img[60:70, 50:90] = BG  # a dark blob well inside the strip
    reg = register(img, _geo())
    assert abs(reg.dy - 2.0) <= 0.5 and abs(reg.dx + 3.0) <= 0.5


def _turned(deg: float, dy: float = 0.0, dx: float = 0.0, **paint: object) -> np.ndarray:
    """The painted strip moved by (dy, dx) and turned by `deg` about the image centre with
    cv2.getRotationMatrix2D, as the synthetic re-grip does."""
    m = cv2.getRotationMatrix2D(((W - 1) / 2, (H - 1) / 2), deg, 1.0)
    return cv2.warpAffine(_paint(dy, dx, **paint), m, (W, H), flags=cv2.INTER_LINEAR)


@pytest.mark.parametrize(
    ("deg", "dy", "dx"), [(0.8, 0.0, 0.0), (-1.2, 2.3, -1.6), (0.3, -3.0, 4.0)]
)
def test_register_measures_the_rotation_and_every_window_follows_it(deg, dy, dx) -> None:
    geo = _geo()
    reg = register(_turned(deg, dy, dx, webs=WEBS), geo)
    assert abs(reg.angle - deg) < 0.1, reg.angle
    # Where each window's nominal centre really went, by the same turn of the whole image.
    m = cv2.getRotationMatrix2D(((W - 1) / 2, (H - 1) / 2), deg, 1.0)
    nominal = boxes_at(geo, 0, 0).astype(float)
    cy, cx = (nominal[..., 0] + nominal[..., 2]) / 2, (nominal[..., 1] + nominal[..., 3]) / 2
    px, py = cx - 0.5 + dx, cy - 0.5 + dy  # pixel-index coordinates, as cv2 turns them
    true_x = m[0, 0] * px + m[0, 1] * py + m[0, 2] + 0.5 - cx
    true_y = m[1, 0] * px + m[1, 1] * py + m[1, 2] + 0.5 - cy
    np.testing.assert_allclose(reg.offsets[..., 0], true_y, atol=0.3)
    np.testing.assert_allclose(reg.offsets[..., 1], true_x, atol=0.3)
    outer = reg.offsets[[0, -1], 0, 0]  # flag of vial 1 and vial 5: turned apart
    assert np.sign(outer[0] - outer[1]) == np.sign(deg)


def test_register_rotation_ignores_a_notch_in_the_top_edge() -> None:
    img = _turned(0.5)
    img[:26, 50:56] = BG  # a flag-cut notch 10 px deep over one slab
    assert abs(register(img, _geo()).angle - 0.5) < 0.1


def test_register_refuses_a_rotation_that_moves_a_window_beyond_max_shift() -> None:
    with pytest.raises(RegistrationError, match=r"rotation \+[78]\.\d+ degrees move a crop window"):
        register(_turned(8.0), _geo(max_shift=4.0))  # the outer flags move by ~6.5 px


# --- auto mode --------------------------------------------------------------------------------


@pytest.mark.parametrize("dx", [0.0, 2.0, -3.0])
def test_auto_mode_finds_vial_boundaries_at_the_webs(dx: float) -> None:
    webs = np.array([47, 66, 96, 113])  # nominal 44, 68, 92, 116 moved by +3, -2, +4, -3 px
    img = _paint(1.0, dx, webs=tuple(webs))
    reg = register(img, _geo(mode="auto"))
    found = reg.boxes[:-1, 0, 3]  # right edge of vials 1..4
    assert (abs(found - (webs + dx)) <= 1).all(), found  # at the web (its darkest pixel column)
    np.testing.assert_array_equal(reg.boxes[1:, 0, 1], found)  # the next vial starts there
    assert reg.boxes[0, 0, 1] == 20 + round(dx) and reg.boxes[-1, 0, 3] == 140 + round(dx)
    assert (reg.boxes[:, 1:, 1] == reg.boxes[:, :1, 1]).all()  # one column per vial

    fixed = register(img, _geo())  # the fixed layout keeps the nominal columns
    np.testing.assert_array_equal(fixed.boxes[:-1, 0, 3], np.array(WEBS) + round(dx))


def test_auto_mode_on_webs_at_the_nominal_place_gives_the_fixed_boxes() -> None:
    img = _paint(-2.0, 3.0, webs=WEBS)
    auto, fixed = register(img, _geo(mode="auto")), register(img, _geo())
    # a 3 px web under the 5 px smoothing: the darkest column is found within one pixel
    assert (abs(auto.boxes - fixed.boxes) <= 1).all()
    np.testing.assert_array_equal(auto.boxes[..., [0, 2]], fixed.boxes[..., [0, 2]])


# --- no one-pixel jitter ----------------------------------------------------------------------


def test_boxes_have_one_size_per_region_whatever_the_offset() -> None:
    """Non-integer nominal positions (the default layout at 100x130) and fractional offsets."""
    geo = scale_layout(LayoutConfig(), 100, 130)
    nominal = _sizes(boxes_at(geo, 0, 0))
    rng = np.random.default_rng(0)
    for dy, dx in rng.uniform(-4, 4, size=(200, 2)):
        np.testing.assert_array_equal(_sizes(boxes_at(geo, dy, dx)), nominal)


def test_registered_acquisitions_get_boxes_of_identical_size() -> None:
    geo = _geo()
    shifts = [(0.0, 0.0), (0.5, -0.5), (1.49, 2.51), (-3.7, 4.2), (5.5, -6.5), (-0.3, 0.8)]
    sizes = [
        _sizes(register(_paint(dy, dx, seed=i), geo).boxes) for i, (dy, dx) in enumerate(shifts)
    ]
    for s in sizes:
        np.testing.assert_array_equal(s, sizes[0])


def test_subpixel_is_what_boxes_at_rounds_away() -> None:
    geo = _geo()
    for dy, dx in ((2.4, -1.6), (-0.5, 0.5), (3.0, -7.0)):
        fy, fx = subpixel(np.array([dy, dx]))
        assert abs(fy) <= 0.5 and abs(fx) <= 0.5
        start = boxes_at(geo, dy, dx)[..., :2] + [fy, fx]  # where each window really starts
        moved = start - boxes_at(geo, 0, 0)[..., :2]  # (V, R, 2)
        np.testing.assert_allclose(moved, np.broadcast_to([dy, dx], moved.shape), atol=1e-9)


@pytest.mark.parametrize("n", [1, 2, 7, 250, 1280])
def test_levels_are_the_5th_and_95th_percentiles(n: int) -> None:
    profile = np.random.default_rng(n).normal(120, 40, n).astype(np.float32)
    np.testing.assert_allclose(_levels(profile), np.percentile(profile, [5, 95]), rtol=1e-6)
