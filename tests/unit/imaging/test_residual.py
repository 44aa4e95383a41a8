"""The normalised residual score (bfsdata.imaging.residual) on hand-made arrays: known answers."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from bfsdata.imaging.residual import ResidualNorm, residual_maps

P = 16
KEYS = (("rank_max", 1, 0), ("rank_max", 1, 2))


def norm(mean: float = 0.1, std: float = 0.05, floor: float = 0.01, share: float = 9 / P**2):
    shape = (len(KEYS), P, P)
    return ResidualNorm(
        KEYS, np.full(shape, mean, np.float32), np.full(shape, std, np.float32), 0.0, floor, share
    )


def test_residual_maps_are_the_absolute_difference_then_the_blur() -> None:
    x = np.zeros((1, P, P), np.uint8)
    x[0, 8, 8] = 255
    recon = np.full((1, P, P), 0.5, np.float32)
    r = residual_maps(x, recon, 0.0)
    assert r[0, 8, 8] == pytest.approx(0.5) and r[0, 0, 0] == pytest.approx(0.5)
    blurred = residual_maps(x, np.zeros((1, P, P), np.float32), 1.5)
    want = cv2.GaussianBlur(
        x[0].astype(np.float32) / 255, (0, 0), 1.5, borderType=cv2.BORDER_REPLICATE
    )
    np.testing.assert_allclose(blurred[0], want, atol=1e-6)
    assert blurred[0, 8, 8] < 1.0 and blurred.sum() == pytest.approx(1.0, rel=1e-3)


def test_deviation_counts_only_the_excess_in_good_standard_deviations() -> None:
    r = np.full((2, P, P), 0.1, np.float32)  # the good mean everywhere: d 0
    r[0, 2, 2] = 0.2  # two std above
    r[0, 3, 3] = 0.0  # better than good: no defect
    d = norm().deviation(r, list(KEYS))
    assert d[0, 2, 2] == pytest.approx(2.0) and d[0, 3, 3] == 0.0
    assert d[1].max() == 0.0 and d[0].sum() == pytest.approx(2.0)


def test_a_flat_position_divides_by_the_floor_not_by_nothing() -> None:
    r = np.full((1, P, P), 0.1, np.float32)
    r[0, 5, 5] = 0.15
    d = norm(std=0.0, floor=0.01).deviation(r, [KEYS[0]])
    assert d[0, 5, 5] == pytest.approx(5.0) and np.isfinite(d).all()


def test_score_is_the_mean_of_the_worst_share_and_the_heatmap_its_peak() -> None:
    x = np.full((2, P, P), 51, np.uint8)  # 0.2 in [0, 1]
    recon = np.full((2, P, P), 0.1, np.float32)  # residual 0.1 = the good mean: d 0
    x[0, 4:7, 4:7] = 102  # 0.4: residual 0.3, four std over the mean
    out = norm()(x, recon, list(KEYS))
    # share 9 / 256 px: exactly the 3 x 3 blob, each d = (0.3 - 0.1) / 0.05
    np.testing.assert_allclose(out["score"], [4.0, 0.0], atol=1e-4)
    assert out["heatmap"].shape == (2, P, P, 1)
    assert out["heatmap"][0].max() == pytest.approx(1.0) and out["heatmap"][1].max() == 0.0


def test_it_round_trips_through_plain_arrays_and_names_an_unknown_position() -> None:
    n = norm()
    back = ResidualNorm.from_arrays(n.to_arrays())
    assert back.keys == n.keys and (back.sigma, back.floor, back.share) == (0.0, 0.01, n.share)
    np.testing.assert_array_equal(back.std, n.std)
    with pytest.raises(ValueError, match="kind frame, vial 3, region 1"):
        n.deviation(np.zeros((1, P, P), np.float32), [("frame", 3, 1)])
    with pytest.raises(ValueError, match="one \\(P, P\\) mean and std image per key"):
        ResidualNorm(KEYS, np.zeros((1, P, P)), np.zeros((1, P, P)), 0.0, 0.01, 0.01)
