"""Augmentation: value ranges, P_q formulas and rate, mask areas, determinism, geometry, Perlin.

Small batches of 64x64 patches; one batch shape throughout so XLA compiles once per function.
"""

from __future__ import annotations

import dataclasses
import os

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import math

import numpy as np
import pytest
import tensorflow as tf

from bfsdata.config.training import AugmentConfig
from bfsdata.train.augment import _perlin, augment, perlin_levels, perlin_noise, rotate_flip

B, P = 16, 64
CFG = AugmentConfig()


def _batch(seed: int = 0) -> tf.Tensor:
    """(B, P, P, 1) smooth-ish images in [0, 1] (upsampled noise: bilinear error stays small)."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((B, P // 8, P // 8, 1)).astype(np.float32)
    return tf.image.resize(coarse, (P, P))


def _run(cfg: AugmentConfig = CFG, step: int = 0, seed: int = 0, x=None) -> dict[str, np.ndarray]:
    x = _batch() if x is None else x
    return {k: v.numpy() for k, v in augment(x, tf.constant(step, tf.int64), cfg, seed).items()}


def test_ranges_and_formulas():
    out = _run()
    assert set(out) == {"x", "x_noisy", "mask", "noise"}
    for v in out.values():
        assert v.shape == (B, P, P, 1) and v.dtype == np.float32
    assert out["x"].min() >= 0 and out["x"].max() <= 1
    assert out["x_noisy"].min() >= 0 and out["x_noisy"].max() <= 1
    assert set(np.unique(out["mask"])) <= {0.0, 1.0}
    outside = out["mask"] == 0
    assert (out["noise"][outside] == 0).all()
    assert (out["x_noisy"][outside] == out["x"][outside]).all()  # X_n = X where M = 0
    assert out["noise"].min() >= 0 and out["noise"].max() <= 1


def test_full_opacity_writes_the_noise():
    """beta = 1: X_n = (1 - M) X + M u, so inside M the perturbed image is the noise itself."""
    out = _run(dataclasses.replace(CFG, q=1.0, blend=(1.0, 1.0)))
    m = out["mask"] == 1
    assert m.any()
    np.testing.assert_allclose(out["x_noisy"][m], out["noise"][m], atol=1e-6)
    assert (out["noise"][m] > CFG.threshold).all()  # u > threshold inside M


def test_q_rate_and_mask_areas():
    """Share of perturbed samples follows q; masks are non-empty and cover a sensible area."""
    steps = 25  # 400 samples
    areas, nonempty = [], []
    for step in range(steps):
        m = _run(dataclasses.replace(CFG, q=1.0), step=step)["mask"]
        areas.extend(m.mean(axis=(1, 2, 3)))
        nonempty.extend((m.reshape(B, -1) > 0).any(axis=1))
    areas = np.array(areas)
    pct = np.percentile(areas, [5, 25, 50, 75, 95])
    print(f"mask area (q=1, {len(areas)} samples): mean {areas.mean():.3f}, 5/25/50/75/95% {pct}")
    assert np.mean(nonempty) >= 0.95
    assert 0.10 <= areas.mean() <= 0.60
    assert pct[1] > 0.05 and pct[3] < 0.95  # neither specks nor the whole patch, typically

    nonempty_q = [
        (m.reshape(B, -1) > 0).any(axis=1)
        for m in (_run(CFG, step=s)["mask"] for s in range(steps))
    ]
    rate = np.mean(nonempty_q) / np.mean(nonempty)
    assert abs(rate - CFG.q) < 0.07, rate


def test_q_zero_leaves_the_image():
    out = _run(dataclasses.replace(CFG, q=0.0))
    assert (out["x_noisy"] == out["x"]).all()
    assert not out["mask"].any() and not out["noise"].any()


def test_same_seed_and_step_same_batch():
    a, b = _run(step=7), _run(step=7)
    for k in a:
        assert (a[k] == b[k]).all(), k
    c, d = _run(step=8), _run(step=7, seed=1)
    for other in (c, d):
        assert not np.array_equal(a["x"], other["x"])
        assert not np.array_equal(a["mask"], other["mask"])


def test_no_rotation_no_flip_is_identity():
    x = _batch()
    out = _run(dataclasses.replace(CFG, rotation=0.0, vflip=0.0, q=0.0), x=x)
    assert (out["x"] == x.numpy()).all()


def test_vflip_reverses_rows_only():
    x = _batch()
    out = _run(dataclasses.replace(CFG, rotation=0.0, vflip=1.0, q=0.0), x=x)
    assert (out["x"] == x.numpy()[:, ::-1]).all()
    assert not np.array_equal(out["x"], x.numpy()[:, :, ::-1])


def test_rotation_matches_projective_transform():
    """rotate_flip reproduces ImageProjectiveTransformV3 (bilinear, REFLECT) on its transform."""
    x = tf.random.stateless_uniform((B, P, P), (1, 2))
    theta = tf.random.stateless_uniform((B,), (3, 4), -math.pi / 8, math.pi / 8)
    sigma = tf.where(tf.random.stateless_uniform((B,), (5, 6)) < 0.5, -1.0, 1.0)
    cos, sin, c, z = tf.cos(theta), tf.sin(theta), (P - 1) / 2, tf.zeros((B,))
    transforms = tf.stack(
        [cos, -sigma * sin, c - cos * c + sigma * sin * c,
         sin, sigma * cos, c - sin * c - sigma * cos * c, z, z],
        axis=1,
    )  # fmt: skip
    want = tf.raw_ops.ImageProjectiveTransformV3(
        images=x[..., None],
        transforms=transforms,
        output_shape=[P, P],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="REFLECT",
    )[..., 0]
    got = rotate_flip(x, theta, sigma)
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-4)
    assert float(tf.reduce_mean(tf.abs(got - x))) > 0.05  # it did rotate


def test_perlin_noise_lattice_and_range():
    n = perlin_noise((64, 64), (4, 8), (1, 2)).numpy()
    assert n.shape == (64, 64)
    assert np.abs(n).max() <= 1.0
    assert np.abs(n[::16, ::8]).max() == 0  # classic Perlin: 0 at every lattice point
    assert np.abs(n).mean() > 0.05
    # Cells are 16 px tall and 8 px wide: neighbours correlate more along y than along x.
    dy = np.corrcoef(n[:-4].ravel(), n[4:].ravel())[0, 1]
    dx = np.corrcoef(n[:, :-4].ravel(), n[:, 4:].ravel())[0, 1]
    assert dy > dx


def test_perlin_noise_refuses_a_resolution_that_does_not_divide():
    with pytest.raises(ValueError, match="must divide"):
        perlin_noise((64, 64), (3, 4), (1, 2))


def test_batched_perlin_equals_per_sample():
    """Grouping samples by resolution and stitching back gives each sample its own field."""
    levels = perlin_levels(P, 0, 6)
    phi = tf.random.stateless_uniform((B, levels[-1] + 1, levels[-1] + 1), (7, 8), 0, 2 * math.pi)
    lev_y = tf.random.stateless_uniform((B,), (9, 1), 0, len(levels), dtype=tf.int32)
    lev_x = tf.random.stateless_uniform((B,), (9, 2), 0, len(levels), dtype=tf.int32)
    batch = _perlin(phi, lev_y, lev_x, (P, P), levels, 1.0, 0.0).numpy()
    zero = tf.zeros((1,), tf.int32)
    for b in range(B):
        res = (levels[int(lev_y[b])], levels[int(lev_x[b])])
        one = _perlin(phi[b : b + 1], zero, zero, (P, P), res, 1.0, 0.0, per_axis=True)
        np.testing.assert_allclose(batch[b], one.numpy()[0], atol=1e-6)


def test_perlin_levels_clamp():
    assert perlin_levels(256, 0, 6) == (1, 2, 4, 8, 16, 32, 64)
    assert perlin_levels(64, 0, 6) == (1, 2, 4, 8, 16)  # cells keep >= 4 px
    assert perlin_levels(48, 1, 6) == (2, 4, 8)  # 2**k must divide 48
    assert perlin_levels(64, 5, 6) == (16,)


def test_refuses_non_square_patches():
    with pytest.raises(ValueError, match="square"):
        augment(tf.zeros((2, 8, 16, 1)), tf.constant(0, tf.int64), CFG, 0)
