"""The variation model's kernels against numpy: streamed statistics, the robust sample, the band
test on hand-made patches, and the model as `report` and `infer` call it."""

from __future__ import annotations

import numpy as np
import pytest

from bfsdata.imaging.variation import (
    MAD_TO_STD,
    Moments,
    Reservoir,
    VariationModel,
    band_score,
    deviation,
    largest_area,
    smooth,
    tolerance,
    worst_share,
)


@pytest.fixture
def stack() -> np.ndarray:
    """(37, 9, 11) uint8: an uneven count, so batches differ in size."""
    rng = np.random.default_rng(3)
    base = rng.integers(40, 200, (9, 11))
    return np.clip(base + rng.normal(0, 12, (37, 9, 11)), 0, 255).astype(np.uint8)


# --- mean and variance --------------------------------------------------------------------


@pytest.mark.parametrize("cuts", [[], [1], [5, 6, 20], list(range(1, 37))])
def test_moments_in_batches_equal_numpy(stack: np.ndarray, cuts: list[int]) -> None:
    m = Moments(stack.shape[1:])
    for batch in np.split(stack, cuts):
        m.update(batch)
    x = stack.astype(np.float64)
    assert m.n == len(stack)
    np.testing.assert_allclose(m.mean, x.mean(axis=0), rtol=0, atol=1e-10)
    np.testing.assert_allclose(m.std(), x.std(axis=0, ddof=1), rtol=0, atol=1e-10)


def test_moments_merged_from_parts_equal_one_stream(stack: np.ndarray) -> None:
    """Chan's merge: partial results of separate workers combine into the whole's."""
    parts = [Moments(stack.shape[1:]).update(b) for b in np.split(stack, [4, 19, 30])]
    merged = Moments(stack.shape[1:])
    for p in reversed(parts):  # any order
        merged.merge(p)
    whole = Moments(stack.shape[1:]).update(stack)
    assert merged.n == whole.n
    np.testing.assert_allclose(merged.mean, whole.mean, atol=1e-10)
    np.testing.assert_allclose(merged.m2, whole.m2, atol=1e-8)


def test_moments_of_one_patch_have_no_variation(stack: np.ndarray) -> None:
    m = Moments(stack.shape[1:]).update(stack[:1]).update(stack[:0])
    np.testing.assert_array_equal(m.mean, stack[0])
    assert not m.std().any()


def test_moments_stay_exact_on_a_large_offset() -> None:
    """float64 accumulators and the merge keep a small spread on a large level exact."""
    rng = np.random.default_rng(0)
    x = 1e6 + rng.normal(0, 0.5, (2000, 2, 2))
    m = Moments((2, 2))
    for b in np.array_split(x, 50):
        m.update(b)
    np.testing.assert_allclose(m.std(), x.std(axis=0, ddof=1), rtol=1e-8)


# --- the robust option --------------------------------------------------------------------


def test_reservoir_holding_everything_gives_numpy_median_and_mad(stack: np.ndarray) -> None:
    r = Reservoir(size=64, seed=5)
    for ids, batch in zip(
        np.split(np.arange(37), [10, 11]), np.split(stack, [10, 11]), strict=True
    ):
        r.update(batch, ids)
    med, mad = r.median_mad()
    x = stack.astype(np.float64)
    want = np.median(x, axis=0)
    np.testing.assert_array_equal(med, want)
    np.testing.assert_allclose(mad, MAD_TO_STD * np.median(np.abs(x - want), axis=0))
    # match_mean: the same of the patches less their own mean
    c = x - x.mean(axis=(1, 2), keepdims=True)
    med_c, mad_c = r.median_mad(match_mean=True)
    np.testing.assert_allclose(med_c, np.median(c, axis=0))
    np.testing.assert_allclose(mad_c, MAD_TO_STD * np.median(np.abs(c - med_c), axis=0))


def test_reservoir_is_bounded_and_independent_of_order_and_partition(stack: np.ndarray) -> None:
    ids = np.arange(100, 137)

    def sample(order: np.ndarray, cuts: list[int]) -> np.ndarray:
        r = Reservoir(size=8, seed=1)
        for part in np.split(order, cuts):
            r.update(stack[part - 100], part)
        assert len(r.items) == 8 and r.n == 37
        return np.sort(r.ids)

    one = sample(ids, [])
    np.testing.assert_array_equal(one, sample(ids[::-1], [3, 30]))
    np.testing.assert_array_equal(one, sample(np.random.default_rng(2).permutation(ids), [17]))
    # two workers' reservoirs merge into the single stream's sample
    a, b = (
        Reservoir(8, 1).update(stack[:20], ids[:20]),
        Reservoir(8, 1).update(stack[20:], ids[20:]),
    )
    np.testing.assert_array_equal(np.sort(b.merge(a).ids), one)
    assert not np.array_equal(one, np.sort(Reservoir(8, 2).update(stack, ids).ids))  # the seed


def test_reservoir_refuses_mismatched_ids_and_no_size(stack: np.ndarray) -> None:
    with pytest.raises(ValueError, match="3 patches but 2 ids"):
        Reservoir(4, 0).update(stack[:3], np.arange(2))
    with pytest.raises(ValueError, match="at least 1 patch"):
        Reservoir(0, 0)
    with pytest.raises(ValueError, match="empty reservoir"):
        Reservoir(4, 0).median_mad()


# --- smoothing and the band test ----------------------------------------------------------


def test_smooth_keeps_a_flat_image_and_spreads_a_peak() -> None:
    flat = np.full((16, 16), 3.0)
    np.testing.assert_allclose(smooth(flat, 2.0), flat)
    peak = np.zeros((16, 16))
    peak[8, 8] = 1.0
    out = smooth(peak, 1.0)
    assert out[8, 8] < 0.2 and out[8, 9] > 0 and out.sum() == pytest.approx(1.0)
    assert smooth(peak, 0) is peak


def _band() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ideal 100, variation 2 (4 on the right half), a = 5, k = 3: tolerance 6, 12."""
    ideal = np.full((1, 20, 20), 100.0, np.float32)
    var = np.full((1, 20, 20), 2.0, np.float32)
    var[:, :, 10:] = 4.0
    return ideal, var, tolerance(var, a=5.0, k=3.0)


def test_band_test_finds_a_known_defect_area() -> None:
    ideal, _, tol = _band()
    assert set(np.unique(tol)) == {6.0, 12.0}
    assert tolerance(np.zeros((2, 2)), 5.0, 3.0).min() == 5.0  # a: the narrowest band
    x = np.full((1, 20, 20), 100, np.uint8)
    x[0, 2:5, 2:6] = 90  # 12 px, 10 below the ideal: out of a 6 band
    x[0, 5, 6] = 80  # touches the block corner to corner: 8-connected, 13 px
    x[0, 12:14, 12:14] = 90  # 4 px, 10 off but inside the 12 band on the right
    x[0, 15, 2] = 107  # 1 px just out, apart
    x[0, 17, 2] = 106  # on the edge: in band (d = 1)
    d = deviation(x, ideal, tol)
    assert d[0, 17, 2] == 1.0 and d[0, 15, 2] > 1 and d[0, 12, 12] < 1
    np.testing.assert_allclose(d[0, 2, 2], 10 / 6)
    assert (d > 1).sum() == 14
    assert largest_area(d > 1).tolist() == [13.0]
    assert band_score(d, "area").tolist() == [13.0]
    want = np.sort(d.ravel())[-4:].mean()  # 1 % of 400 px = 4 px
    np.testing.assert_allclose(worst_share(d, 0.01), [want], rtol=1e-6)
    np.testing.assert_allclose(band_score(d, "share", 0.01), [want], rtol=1e-6)
    with pytest.raises(ValueError, match="unknown variation score 'max'"):
        band_score(d, "max")


def test_largest_area_patch_by_patch() -> None:
    mask = np.zeros((4, 8, 8), bool)
    mask[0, 0:2, 0:3] = True  # 6
    mask[0, 5:7, 5] = True  # 2
    mask[2, 7, 7] = True
    mask[3] = True  # the whole patch: one region
    assert largest_area(mask).tolist() == [6.0, 0.0, 1.0, 64.0]


@pytest.mark.parametrize("share", [1e-4, 0.01, 0.3, 1.0])
def test_worst_share_is_the_mean_of_the_largest_values(share: float) -> None:
    rng = np.random.default_rng(1)
    d = rng.gamma(2.0, 1.0, (5, 64, 64)).astype(np.float32)
    d[1] = 1.0  # all ties
    d[2, :3, :3] = 50.0  # a few large values: the sample bound must not lose them
    n = max(1, int(np.ceil(share * 64 * 64)))
    want = np.sort(d.reshape(5, -1), axis=1)[:, -n:].mean(axis=1)
    np.testing.assert_allclose(worst_share(d, share), want, rtol=1e-6)


# --- the model as report and infer call it --------------------------------------------------


def _model(score: str = "area", match_mean: bool = False) -> VariationModel:
    ideal, var, _ = _band()
    ideal = np.concatenate([ideal, ideal + 50])  # two positions
    var = np.concatenate([var, var])
    keys = (("frame", 1, 0), ("rank_max", 2, 3))
    return VariationModel(keys, ideal, var, 5.0, 3.0, score, 0.01, match_mean)


def test_model_scores_each_patch_at_its_position() -> None:
    model = _model()
    x = np.full((3, 20, 20), 100, np.uint8)
    x[2, 5:8, 5:8] = 160  # 9 px out of band at either position
    out = model(x, [("frame", 1, 0), ("rank_max", 2, 3), ("frame", 1, 0)])
    # patch 1 is 100 where its position's ideal is 150: the whole patch is out of band
    assert out["score"].tolist() == [0.0, 400.0, 9.0]
    assert out["heatmap"].shape == (3, 20, 20, 1) and out["heatmap"].dtype == np.float32
    assert out["heatmap"][2, ..., 0].sum() == 9 and not out["heatmap"][0].any()
    np.testing.assert_allclose(out["reconstruction"][1], 150 / 255, rtol=1e-6)
    np.testing.assert_array_equal(
        model(x[..., None], [("frame", 1, 0)] * 3)["score"][[0, 2]], [0, 9]
    )


def test_model_equals_the_band_test_on_a_stack() -> None:
    rng = np.random.default_rng(4)
    model = _model("share")
    x = np.clip(100 + rng.normal(0, 6, (6, 20, 20)), 0, 255).astype(np.uint8)
    ideal, _, tol = _band()
    d = deviation(x, ideal, tol)
    out = model(x, [("frame", 1, 0)] * 6)
    np.testing.assert_allclose(out["score"], band_score(d, "share", 0.01), rtol=1e-6)
    np.testing.assert_array_equal(out["heatmap"][..., 0], d > 1)


def test_match_mean_ignores_a_change_of_brightness_but_not_a_defect() -> None:
    x = np.full((2, 20, 20), 130, np.uint8)  # 30 brighter than the ideal everywhere
    x[1, 5:8, 5:8] = 200
    where = [("frame", 1, 0)] * 2
    assert _model().__call__(x, where)["score"].tolist() == [400.0, 400.0]
    out = _model(match_mean=True)(x, where)
    assert out["score"].tolist() == [0.0, 9.0]
    np.testing.assert_allclose(out["reconstruction"][0], 130 / 255, rtol=1e-6)  # the ideal, lit


def test_model_round_trips_through_plain_arrays() -> None:
    model = _model("share", match_mean=True)
    again = VariationModel.from_arrays(model.to_arrays())
    assert again.keys == model.keys and again.score == "share" and again.match_mean
    assert (again.a, again.k, again.share) == (5.0, 3.0, 0.01)
    x = np.random.default_rng(0).integers(80, 170, (2, 20, 20)).astype(np.uint8)
    where = [("rank_max", 2, 3), ("frame", 1, 0)]
    np.testing.assert_array_equal(again(x, where)["score"], model(x, where)["score"])


def test_model_refuses_unknown_positions_and_wrong_shapes() -> None:
    model = _model()
    x = np.zeros((1, 20, 20), np.uint8)
    with pytest.raises(ValueError, match="no ideal for kind frame, vial 3, region 0"):
        model(x, [("frame", 3, 0)])
    with pytest.raises(ValueError, match="1 patches but 2 keys"):
        model(x, [("frame", 1, 0)] * 2)
    with pytest.raises(ValueError, match=r"patches of \(8, 8\) px"):
        model(np.zeros((1, 8, 8), np.uint8), [("frame", 1, 0)])
    with pytest.raises(ValueError, match="one \\(P, P\\) ideal and variation image per key"):
        VariationModel((("frame", 1, 0),), np.zeros((2, 4, 4)), np.zeros((2, 4, 4)), 1, 1)
    with pytest.raises(ValueError, match="unknown variation score"):
        VariationModel((("frame", 1, 0),), np.zeros((1, 4, 4)), np.zeros((1, 4, 4)), 1, 1, "max")
