"""`bfsdata.imaging.crop`: boxes to square uint8 patches, resampling choice and the 16-bit rule."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from subpixel_crop import expected_crop

from bfsdata.imaging.crop import cut_patches, to_uint8


def _noise(shape: tuple[int, int], dtype: type = np.uint8, seed: int = 0) -> np.ndarray:
    """(H, W) noise over the dtype's full range: every resampling method gives other pixels."""
    hi = np.iinfo(dtype).max
    return np.random.default_rng(seed).integers(0, hi, size=shape, dtype=dtype, endpoint=True)


def _rule(v: np.ndarray, bits: int) -> np.ndarray:
    """round(v * 255 / (2**bits - 1)) in exact integer arithmetic, clipped to 255.

    2**bits - 1 is odd and 255 * 2 is even, so v * 255 / top is never a tie at .5.
    """
    top = 2**bits - 1
    return np.minimum((2 * v.astype(np.int64) * 255 + top) // (2 * top), 255).astype(np.uint8)


# --- auto resize ------------------------------------------------------------------------------


def test_auto_shrinks_with_inter_area() -> None:
    img = _noise((100, 120))
    box = (10, 20, 58, 68)  # 48 x 48 -> 32 x 32 (not 2:1, where both methods agree)
    got = cut_patches(img, np.array([box]), 32)
    crop = img[10:58, 20:68]
    assert got.shape == (1, 32, 32) and got.dtype == np.uint8
    np.testing.assert_array_equal(got[0], cv2.resize(crop, (32, 32), interpolation=cv2.INTER_AREA))
    linear = cv2.resize(crop, (32, 32), interpolation=cv2.INTER_LINEAR)
    assert not np.array_equal(got[0], linear)  # the test tells the two methods apart


def test_auto_enlarges_with_inter_linear() -> None:
    img = _noise((100, 120), seed=1)
    box = (5, 7, 25, 27)  # 20 x 20 -> 32 x 32
    got = cut_patches(img, np.array([box]), 32)
    crop = img[5:25, 7:27]
    np.testing.assert_array_equal(
        got[0], cv2.resize(crop, (32, 32), interpolation=cv2.INTER_LINEAR)
    )
    area = cv2.resize(crop, (32, 32), interpolation=cv2.INTER_AREA)
    assert not np.array_equal(got[0], area)


def test_auto_box_larger_on_one_side_only_is_enlarged_linearly() -> None:
    """Shrinking (INTER_AREA) needs both sides >= size; otherwise INTER_LINEAR."""
    img = _noise((100, 120), seed=2)
    got = cut_patches(img, np.array([(0, 0, 40, 20)]), 32)  # 40 rows, 20 columns
    want = cv2.resize(img[0:40, 0:20], (32, 32), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(got[0], want)


def test_auto_box_of_patch_size_is_copied_unchanged() -> None:
    img = _noise((64, 64), seed=3)
    got = cut_patches(img, np.array([(8, 4, 40, 36), (0, 0, 32, 32)]), 32)
    np.testing.assert_array_equal(got[0], img[8:40, 4:36])
    np.testing.assert_array_equal(got[1], img[0:32, 0:32])


def test_cuts_every_box_in_order() -> None:
    img = np.zeros((60, 60), np.uint8)
    boxes = np.array([(0, 0, 20, 20), (20, 20, 40, 40), (40, 40, 60, 60)])
    for i, (y0, x0, y1, x1) in enumerate(boxes):
        img[y0:y1, x0:x1] = 10 * (i + 1)
    got = cut_patches(img, boxes, 8)
    assert got.shape == (3, 8, 8)
    assert [int(p.min()) for p in got] == [10, 20, 30]
    assert [int(p.max()) for p in got] == [10, 20, 30]


# --- native -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("box", "centre"),
    [((10, 20, 50, 60), (30, 40)), ((11, 20, 30, 61), (20, 40)), ((40, 50, 41, 51), (40, 50))],
)
def test_native_cuts_size_pixels_around_the_box_centre(box, centre) -> None:
    img = _noise((100, 120), seed=4)
    got = cut_patches(img, np.array([box]), 16, resize="native")
    cy, cx = centre
    np.testing.assert_array_equal(got[0], img[cy - 8 : cy + 8, cx - 8 : cx + 8])


@pytest.mark.parametrize("box", [(0, 20, 10, 40), (90, 20, 100, 40), (40, 110, 60, 120)])
def test_native_refuses_a_cut_leaving_the_image(box) -> None:
    img = _noise((100, 120), seed=5)
    with pytest.raises(ValueError, match=r"native 16x16 cut at .* leaves the 100x120 image"):
        cut_patches(img, np.array([box]), 16, resize="native")


def test_native_converts_16_bit_by_the_rule() -> None:
    img = _noise((40, 40), np.uint16, seed=6)
    got = cut_patches(img, np.array([(4, 4, 36, 36)]), 16, resize="native")
    np.testing.assert_array_equal(got[0], _rule(img[12:28, 12:28], 16))


# --- the 16-bit rule --------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [16, 12])
def test_to_uint8_rule_over_every_value(bits: int) -> None:
    top = 2**bits - 1
    v = np.arange(top + 1, dtype=np.uint16)
    got = to_uint8(v, input_bits=0 if bits == 16 else bits)
    np.testing.assert_array_equal(got, _rule(v, bits))
    assert got.dtype == np.uint8
    assert got[0] == 0 and got[-1] == 255
    # Spot values: round(v * 255 / top).
    for value in (1, top // 2, top - 1):
        assert got[value] == round(value * 255 / top)


def test_to_uint8_16_bit_edges() -> None:
    v = np.array([0, 128, 129, 257, 385, 386, 65535], np.uint16)  # v / 257 around .5 steps
    np.testing.assert_array_equal(to_uint8(v), [0, 0, 1, 1, 1, 2, 255])


def test_to_uint8_12_bit_values_above_the_range_clip_to_255() -> None:
    v = np.array([4095, 4096, 40000, 65535], np.uint16)
    np.testing.assert_array_equal(to_uint8(v, input_bits=12), [255, 255, 255, 255])


def test_to_uint8_leaves_uint8_alone() -> None:
    v = np.arange(256, dtype=np.uint8)
    assert to_uint8(v) is v


@pytest.mark.parametrize(("bits", "size"), [(16, 16), (16, 48), (12, 16)])
def test_16_bit_patches_are_resized_first_then_converted(bits: int, size: int) -> None:
    """The rule is applied once, after resizing in 16 bits (no double rounding)."""
    img = _noise((64, 64), np.uint16, seed=7) >> (16 - bits)
    box = (8, 8, 40, 40)  # 32 x 32: shrunk to 16, enlarged to 48
    got = cut_patches(img, np.array([box]), size, input_bits=0 if bits == 16 else bits)
    method = cv2.INTER_AREA if size < 32 else cv2.INTER_LINEAR
    resized = cv2.resize(img[8:40, 8:40], (size, size), interpolation=method)  # uint16
    np.testing.assert_array_equal(got[0], _rule(resized, bits))


# --- sub-pixel shift --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("box", "size", "resize", "tol"),
    [
        ((10, 20, 40, 50), 32, "auto", 0.6),  # 30 -> 32: one bilinear warp
        ((10, 20, 58, 68), 32, "auto", 1.0),  # 48 -> 32: shifted, then INTER_AREA
        ((10, 20, 42, 52), 32, "auto", 0.6),  # 32 = 32: the shift alone
        ((10, 20, 42, 52), 16, "native", 0.6),  # 16 px around the centre, shifted
    ],
)
@pytest.mark.parametrize("shift", [(0.3, -0.45), (-0.5, 0.5), (0.02, 0.0)])
def test_shifted_cut_samples_the_moved_box(box, size, resize, tol, shift) -> None:
    img = cv2.GaussianBlur(_noise((100, 120)), (0, 0), 1.0)
    img[40:, 60:] = 250  # a sharp edge inside every box
    got = cut_patches(img, np.array([box]), size, resize, shift=shift)[0]
    if resize == "native":
        cy, cx = (box[0] + box[2]) // 2, (box[1] + box[3]) // 2
        box = (cy - size // 2, cx - size // 2, cy + size // 2, cx + size // 2)
    want = expected_crop(img, box, size, shift)
    assert np.abs(got - want).max() <= tol


@pytest.mark.parametrize(
    ("box", "size", "tol"),
    [((10, 20, 40, 50), 32, 0.6), ((10, 20, 58, 68), 32, 1.0), ((10, 20, 42, 52), 32, 0.6)],
)
@pytest.mark.parametrize(("shift", "angle"), [((0.0, 0.0), 0.7), ((0.3, -0.45), -1.5)])
def test_turned_cut_samples_the_turned_box(box, size, tol, shift, angle) -> None:
    img = cv2.GaussianBlur(_noise((100, 120)), (0, 0), 1.0)
    img[40:, 60:] = 250
    got = cut_patches(img, np.array([box]), size, shift=shift, angle=angle)[0]
    assert np.abs(got - expected_crop(img, box, size, shift, angle)).max() <= tol


def test_turn_follows_a_product_rotated_about_the_window_centre() -> None:
    """A wall and a mark drawn upright and turned by 2 degrees about the window centre: cut with
    that angle, the patch is the upright one; cut without, it is not."""
    yy, xx = np.mgrid[0:80, 0:80].astype(np.float64)

    def product(deg: float) -> np.ndarray:
        t = np.radians(deg)  # image point -> product point: undo the turn about (39.5, 39.5)
        x = 39.5 + np.cos(t) * (xx - 39.5) - np.sin(t) * (yy - 39.5)
        y = 39.5 + np.sin(t) * (xx - 39.5) + np.cos(t) * (yy - 39.5)
        edge = 1 / (1 + np.exp(-(x - 40) / 1.5))
        blob = np.exp(-((y - 20) ** 2 + (x - 25) ** 2) / 30)
        return np.round(40 + 170 * edge + 60 * blob).astype(np.uint8)

    box = np.array([(10, 10, 70, 70)])
    still = cut_patches(product(0), box, 64)[0].astype(int)
    turned = product(2.0)
    plain = cut_patches(turned, box, 64)[0].astype(int)
    fixed = cut_patches(turned, box, 64, angle=2.0)[0].astype(int)
    assert np.abs(fixed - still).mean() < np.abs(plain - still).mean() / 3
    assert np.abs(fixed - still).max() <= 4


def test_per_box_shifts_apply_to_their_own_box() -> None:
    img = cv2.GaussianBlur(_noise((60, 70)), (0, 0), 1.0)
    boxes = np.array([(5, 5, 35, 35), (10, 8, 40, 38)])
    shifts = np.array([(0.25, -0.1), (-0.4, 0.35)])
    both = cut_patches(img, boxes, 32, shift=shifts)
    for i in range(2):
        np.testing.assert_array_equal(
            both[i], cut_patches(img, boxes[i : i + 1], 32, shift=shifts[i])[0]
        )


def test_shift_follows_a_product_moved_by_a_fraction_of_a_pixel() -> None:
    """The same smooth product drawn at (0, 0) and moved by (+0.3, -0.4) px: cut with that
    shift, the patches agree far better than whole-pixel cuts do."""
    yy, xx = np.mgrid[0:80, 0:80].astype(np.float64)

    def product(dy: float, dx: float) -> np.ndarray:
        y, x = yy - dy, xx - dx
        edge = 1 / (1 + np.exp(-(x - 40) / 1.5))  # a wall
        blob = np.exp(-((y - 30) ** 2 + (x - 25) ** 2) / 30)  # a mark
        return np.round(40 + 170 * edge + 60 * blob).astype(np.uint8)

    box = np.array([(10, 10, 70, 70)])
    still = cut_patches(product(0, 0), box, 64)[0].astype(int)
    moved = product(0.3, -0.4)
    whole = cut_patches(moved, box, 64)[0].astype(int)
    sub = cut_patches(moved, box, 64, shift=(0.3, -0.4))[0].astype(int)
    assert np.abs(sub - still).mean() < np.abs(whole - still).mean() / 3
    assert np.abs(sub - still).max() <= 3


def test_shifted_rank_order_survives() -> None:
    """min <= frame <= max, pixel by pixel, holds for patches cut with the same shift."""
    frames = np.stack([cv2.GaussianBlur(_noise((60, 70), seed=s), (0, 0), 1.5) for s in range(5)])
    lo, hi = frames.min(axis=0), frames.max(axis=0)
    boxes = np.array([(5, 5, 35, 35), (10, 8, 58, 56)])  # enlarged and shrunk
    cut = [cut_patches(img, boxes, 32, shift=(-0.37, 0.21)).astype(int) for img in (lo, hi)]
    for img in frames:
        mid = cut_patches(img, boxes, 32, shift=(-0.37, 0.21)).astype(int)
        assert (cut[0] <= mid + 1).all() and (mid <= cut[1] + 1).all()


@pytest.mark.parametrize(
    ("box", "shift", "angle"),
    [
        ((0, 0, 30, 30), (-0.5, -0.5), 1.0),  # top-left corner, pushed out of the image
        ((30, 40, 60, 70), (0.5, 0.5), -1.0),  # bottom-right corner
        ((0, 10, 60, 70), (0.4, -0.3), 0.5),  # the whole height, shrunk
    ],
)
def test_window_at_the_image_edge_repeats_the_border(box, shift, angle) -> None:
    """Only a window's footprint is resampled: where it is clipped by the image, samples beyond
    the edge still repeat the edge pixel."""
    img = cv2.GaussianBlur(_noise((60, 70), seed=3), (0, 0), 1.0)
    got = cut_patches(img, np.array([box]), 32, shift=shift, angle=angle)[0]
    tol = 1.0 if box[2] - box[0] > 32 else 0.6  # INTER_AREA after the warp rounds once more
    assert np.abs(got - expected_crop(img, box, 32, shift, angle)).max() <= tol


def test_shifted_16_bit_patch_is_rounded_then_converted_by_the_rule() -> None:
    img = cv2.GaussianBlur(_noise((64, 64), np.uint16, seed=5), (0, 0), 1.0)
    box = (8, 8, 40, 40)
    got = cut_patches(img, np.array([box]), 48, shift=(0.25, -0.4), angle=0.3)[0]
    want = np.rint(expected_crop(img, box, 48, (0.25, -0.4), 0.3)).astype(np.uint16)
    assert np.abs(got.astype(int) - _rule(want, 16)).max() <= 1


def test_out_is_filled_in_place_and_returned() -> None:
    img = _noise((60, 70))
    boxes = np.array([(5, 5, 35, 35), (10, 8, 58, 56), (20, 20, 52, 52)])
    out = np.zeros((3, 32, 32), dtype=np.uint8)
    got = cut_patches(img, boxes, 32, shift=(0.2, -0.1), angle=0.4, out=out)
    assert got is out
    np.testing.assert_array_equal(out, cut_patches(img, boxes, 32, shift=(0.2, -0.1), angle=0.4))
    with pytest.raises(ValueError, match="out must be"):
        cut_patches(img, boxes, 32, out=np.zeros((2, 32, 32), dtype=np.uint8))
    with pytest.raises(ValueError, match="C-contiguous"):
        cut_patches(img, boxes, 32, out=np.zeros((3, 32, 64), dtype=np.uint8)[:, :, ::2])
