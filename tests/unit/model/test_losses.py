"""GRD-Net losses and SSIM against independent numpy formulas and scikit-image."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["CUDA_VISIBLE_DEVICES"] = ""  # CPU only: tests must not depend on a GPU

import keras
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from skimage.metrics import structural_similarity

from bfsdata.config.errors import ConfigError
from bfsdata.config.training import LossConfig
from bfsdata.model import losses

CFG = LossConfig(wa=1.5, wb=0.7, w1=2.0, w2=3.0, w3=5.0, w4=2.5, huber_delta=0.2)


def np_(t) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(t), dtype=np.float64)


def rand(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def sk_ssim(a: np.ndarray, b: np.ndarray) -> float:
    return structural_similarity(
        a, b, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )


def np_huber(x: np.ndarray, y: np.ndarray, delta: float) -> float:
    d = np.abs(x.astype(np.float64) - y)
    return float(np.mean(np.where(d <= delta, 0.5 * d**2, delta * d - 0.5 * delta**2)))


def image_pairs() -> list[tuple[np.ndarray, np.ndarray]]:
    """Random, structured and near-identical (H, W) pairs in [0, 1]."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:48, 0:40] / 48.0
    grad = np.clip(0.2 + 0.6 * xx * yy + 0.05 * rng.standard_normal((48, 40)), 0, 1)
    stripes = 0.5 + 0.4 * np.sin(xx * 20) * np.cos(yy * 9)
    noise_a, noise_b = rng.random((48, 40)), rng.random((48, 40))
    return [
        (noise_a, noise_b),  # unrelated noise: SSIM near 0
        (grad, gaussian_filter(grad, 1.2)),  # smooth gradient plus noise vs a blurred copy
        (stripes, np.clip(stripes + 0.1 * rng.standard_normal(stripes.shape), 0, 1)),
        (stripes, np.roll(stripes, 3, axis=1)),  # shifted texture
        (grad, np.clip(grad * 0.7 + 0.2, 0, 1)),  # contrast and brightness change
        (np.full((48, 40), 0.3), np.full((48, 40), 0.3)),  # flat and equal: SSIM 1
    ]


def test_ssim_matches_skimage() -> None:
    pairs = image_pairs()
    x = np.stack([a for a, _ in pairs])[..., None].astype(np.float32)  # (6, 48, 40, 1)
    y = np.stack([b for _, b in pairs])[..., None].astype(np.float32)
    got = np_(losses.ssim(x, y))
    want = np.array([sk_ssim(a.astype(np.float32), b.astype(np.float32)) for a, b in pairs])
    assert got.shape == (6,)
    np.testing.assert_allclose(got, want, atol=1e-3)
    assert want.min() < 0.2 and want.max() > 0.99  # the pairs span the SSIM range


def test_ssim_of_unknown_size_images_equals_known_size() -> None:
    """Images whose H and W are known only when run (a traced function with a free signature)
    are blurred by depthwise convolution instead of banded matrices: the same SSIM."""
    import tensorflow as tf

    pairs = image_pairs()
    x = np.stack([a for a, _ in pairs])[..., None].astype(np.float32)
    y = np.stack([b for _, b in pairs])[..., None].astype(np.float32)
    free = tf.TensorSpec((None, None, None, 1), tf.float32)
    traced = tf.function(losses.ssim, input_signature=[free, free])
    np.testing.assert_allclose(np_(traced(x, y)), np_(losses.ssim(x, y)), atol=1e-6)


def test_ssim_map_is_valid_region() -> None:
    m = np_(losses.ssim_map(rand(2, 30, 20, 1), rand(2, 30, 20, 1, seed=1)))
    assert m.shape == (2, 20, 10)  # 11-px window, no padding: H - 10, W - 10
    m7 = losses.ssim_map(rand(1, 30, 20, 1), rand(1, 30, 20, 1), window=7, sigma=1.0)
    assert tuple(m7.shape) == (1, 24, 14)


def test_ssim_errors() -> None:
    with pytest.raises(ValueError, match="larger than the 8x8 image"):
        losses.ssim(rand(1, 8, 8, 1), rand(1, 8, 8, 1))
    with pytest.raises(ValueError, match="one shape"):
        losses.ssim(rand(1, 16, 16, 1), rand(1, 16, 12, 1))
    with pytest.raises(ValueError, match="odd number"):
        losses.ssim(rand(1, 16, 16, 1), rand(1, 16, 16, 1), window=10)
    with pytest.raises(ValueError, match="sigma must be > 0"):
        losses.gaussian_window(11, 0.0)


def test_huber() -> None:
    x, y = rand(3, 8, 8, 1), rand(3, 8, 8, 1, seed=1)  # |x - y| spans both sides of 0.2
    assert float(np_(losses.huber(x, y, 0.2))) == pytest.approx(np_huber(x, y, 0.2), rel=1e-5)
    assert float(np_(losses.huber(x, y))) == pytest.approx(np_huber(x, y, 1.0), rel=1e-5)


def test_l1_l2_losses() -> None:
    z, z_hat = rand(4, 8) * 4 - 2, rand(4, 8, seed=1) * 4 - 2
    want = np.mean(np.abs(z.astype(np.float64) - z_hat))
    assert float(np_(losses.encoder_loss(z, z_hat))) == pytest.approx(want, rel=1e-5)
    f, g = rand(2, 4, 4, 6), rand(2, 4, 4, 6, seed=1)
    want = np.mean((f.astype(np.float64) - g) ** 2)
    assert float(np_(losses.adversarial_loss(f, g))) == pytest.approx(want, rel=1e-5)


def test_discriminator_loss_is_bce_from_logits() -> None:
    real = np.array([[3.0], [-1.0], [0.0], [60.0]], np.float32)
    fake = np.array([[-2.0], [0.5], [-80.0]], np.float32)
    sig = lambda v: 1 / (1 + np.exp(-v.astype(np.float64)))  # noqa: E731
    bce_real = -np.log(sig(real[:3]))  # the saturated logits are checked by their limit below
    bce_fake = -np.log(1 - sig(fake[:2]))
    want = 0.5 * (np.sum(bce_real) / 4 + np.sum(bce_fake) / 3)  # +60 and -80 add ~0
    got = float(np_(losses.discriminator_loss(real, fake)))
    assert np.isfinite(got) and got == pytest.approx(want, rel=1e-5)
    # A confidently wrong critic gets a large, finite loss (no overflow).
    assert float(np_(losses.discriminator_loss(-real[3:], -fake[2:]))) == pytest.approx(70.0)


def test_noise_loss() -> None:
    x_noisy, x_hat, noise = rand(2, 8, 8, 1), rand(2, 8, 8, 1, seed=1), rand(2, 8, 8, 1, seed=2)
    want = 2.5 * np.mean(np.abs(np.abs(x_noisy.astype(np.float64) - x_hat) - noise))
    got = float(np_(losses.noise_loss(x_noisy, x_hat, noise, CFG)))
    assert got == pytest.approx(want, rel=1e-5)


def test_contextual_loss() -> None:
    x = rand(3, 24, 24, 1)
    x_hat = np.clip(x + 0.1 * rand(3, 24, 24, 1, seed=1) - 0.05, 0, 1).astype(np.float32)
    mean_ssim = np.mean([sk_ssim(a[..., 0], b[..., 0]) for a, b in zip(x, x_hat, strict=True)])
    want = 1.5 * np_huber(x, x_hat, 0.2) + 0.7 * (1 - mean_ssim)
    got = float(np_(losses.contextual_loss(x, x_hat, CFG)))
    assert got == pytest.approx(want, abs=1e-3)


def test_generator_loss_weights_each_part() -> None:
    parts = {"adv": 0.3, "con": 0.11, "enc": 0.07, "nse": 0.5}
    # Distinct weights and parts: dropping or swapping any weight changes the total.
    want = 2.0 * 0.3 + 3.0 * 0.11 + 5.0 * 0.07 + 0.5
    assert float(np_(losses.generator_loss(parts, CFG))) == pytest.approx(want, rel=1e-6)
    paper = LossConfig()
    assert float(np_(losses.generator_loss(parts, paper))) == pytest.approx(
        0.3 + 50 * 0.11 + 0.07 + 0.5, rel=1e-6
    )
    with pytest.raises(ValueError, match="missing enc, nse"):
        losses.generator_loss({"adv": 0.3, "con": 0.1}, CFG)


def test_anomaly_score() -> None:
    x = rand(3, 32, 32, 1)
    same = np_(losses.anomaly_score(x, x, LossConfig()))
    assert same.shape == (3,) and np.all(np.abs(same) < 1e-5)
    other = np_(losses.anomaly_score(x, rand(3, 32, 32, 1, seed=1), LossConfig()))
    assert np.all(other > 0.5)


@pytest.mark.parametrize("share", [1.0, 0.25, 0.01])
def test_anomaly_score_share_is_the_mean_of_the_worst_local_losses(share: float) -> None:
    """The worst `share` of the local 1 - SSIM map, checked against scikit-image's map."""
    x = rand(2, 32, 32, 1)
    y = x.copy()
    y[:, 10:14, 12:16] = 1.0 - y[:, 10:14, 12:16]  # a small defect
    got = np_(losses.anomaly_score(x, y, LossConfig(score_share=share)))
    for i in range(2):
        _, full = structural_similarity(
            x[i, ..., 0].astype(np.float64),
            y[i, ..., 0].astype(np.float64),
            data_range=1.0,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            full=True,
        )
        valid = 1.0 - full[5:-5, 5:-5]  # the 11 px window's valid map, as losses.ssim_map
        k = max(1, round(share * valid.size))
        assert got[i] == pytest.approx(np.sort(valid.ravel())[-k:].mean(), abs=1e-4)


def test_a_small_defect_moves_the_worst_share_far_more_than_the_mean() -> None:
    x = rand(1, 64, 64, 1)
    x = np.asarray(gaussian_filter(x, (0, 3, 3, 0)), dtype=np.float32)
    y = x.copy()
    y[0, 30:33, 30:33] = 0.0  # a dark 3 px spot
    mean = float(np_(losses.anomaly_score(x, y, LossConfig()))[0])
    worst = float(np_(losses.anomaly_score(x, y, LossConfig(score_share=0.01)))[0])
    assert worst > 10 * mean


def test_patch_range_is_the_1st_to_99th_percentile_span_with_a_floor() -> None:
    ramp = np.linspace(0.0, 1.0, 100, dtype=np.float32).reshape(1, 10, 10, 1)
    flat = np.full((1, 10, 10, 1), 0.4, np.float32)
    got = np_(losses.patch_range(np.concatenate([ramp, flat])))
    assert got.shape == (2, 1, 1, 1)
    # nearest rank: values 1 and 98 of 0..99 (in 99ths); a flat patch gets the floor
    assert got.ravel() == pytest.approx([97 / 99, losses.RANGE_FLOOR])


def test_score_at_the_patch_range_judges_a_dim_patch_as_a_bright_one() -> None:
    """With score_range patch the constants scale with the patch: a copy of a pair at a quarter
    of the contrast scores the same, where the full range's constants wash its defect out."""
    x = np.asarray(gaussian_filter(rand(1, 48, 48, 1), (0, 2, 2, 0)), dtype=np.float32)
    x = (x - x.min()) / (x.max() - x.min())
    y = x.copy()
    y[0, 20:24, 20:24] = 0.0  # a dark spot
    patch = LossConfig(score_share=0.01, score_range="patch")
    full = LossConfig(score_share=0.01)
    bright, dim = (np_(losses.anomaly_score(a * x, a * y, patch))[0] for a in (1.0, 0.25))
    assert dim == pytest.approx(bright, rel=1e-3)
    assert np_(losses.anomaly_score(0.25 * x, 0.25 * y, full))[0] < 0.9 * bright
    with pytest.raises(ConfigError, match=r"train\.loss\.score_range: must be full or patch"):
        LossConfig(score_range="local")


def test_score_share_must_be_a_share() -> None:
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ConfigError, match="score_share"):
            LossConfig(score_share=bad)


def test_heatmap_min_max_per_sample() -> None:
    x, x_hat = rand(3, 16, 16, 1), rand(3, 16, 16, 1, seed=1)
    x_hat[2] = x[2]  # a perfect reconstruction: max == min, must not divide by zero
    h = np_(losses.heatmap(x, x_hat))
    assert h.shape == (3, 16, 16, 1) and np.all(np.isfinite(h))
    assert h.min() >= 0.0 and h.max() <= 1.0
    for i in range(2):
        d = np.abs(x[i].astype(np.float64) - x_hat[i])
        want = (d - d.min()) / (d.max() - d.min())
        np.testing.assert_allclose(h[i], want, atol=1e-5)
        assert h[i].min() == 0.0 and h[i].max() == pytest.approx(1.0)
    assert np.all(h[2] == 0.0)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="uses a TF gradient tape")
def test_losses_have_gradients() -> None:
    import tensorflow as tf

    x = tf.constant(rand(2, 24, 24, 1))
    x_hat = tf.Variable(rand(2, 24, 24, 1, seed=1))
    with tf.GradientTape() as tape:
        loss = losses.contextual_loss(x, x_hat, CFG) + losses.noise_loss(x, x_hat, x * 0, CFG)
    grad = tape.gradient(loss, x_hat).numpy()
    assert np.all(np.isfinite(grad)) and np.abs(grad).sum() > 0
