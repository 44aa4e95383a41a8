"""GRD-Net losses (paper eqs. 2-11) and SSIM, written with `keras.ops` only (any backend).

Images are (B, H, W, C) float32 in [0, 1]; every loss returns a scalar mean, scores return (B,).

    L_adv = L2(F_C(X), F_C(X^))                    eq. 2, feature matching on the critic
    L_con = wa Huber(X, X^) + wb (1 - SSIM(X, X^))  eq. 7 (Huber replaces eq. 3's L1)
    L_enc = L1(z, z^)                               eq. 4
    L_nse = w4 L1(|X_n - X^|, N)                    eq. 6
    L_gen = w1 L_adv + w2 L_con + w3 L_enc + L_nse  eq. 5 plus the noise loss, weights of eq. 8
    phi   = 1 - SSIM(X, X^)                         eq. 9, the anomaly score
    H     = minmax(|X - X^|) per sample             eqs. 10-11, the heatmap

SSIM used here, everywhere (training loss and anomaly score alike): Wang et al. 2004 with a
Gaussian window of 11 px and sigma 1.5 px (normalised to sum 1), on [0, 1] images (data range
1), 'valid' filtering (no padding: only positions where the whole window lies inside the
image), constants K1 = 0.01 and K2 = 0.03 (C1 = (K1 R)^2, C2 = (K2 R)^2), population
(biased) variances, and the mean over the valid map; with C channels the per-channel maps are
averaged. This equals `skimage.metrics.structural_similarity(a, b, data_range=1.0,
gaussian_weights=True, sigma=1.5, use_sample_covariance=False)`, which filters with padding
but then averages only the map cropped by (win_size - 1) // 2 = 5 px per side: the valid
region. `tf.image.ssim` computes the same quantity but is TensorFlow-only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from keras import ops

from bfsdata.config.training import LossConfig

Tensor = Any  # a backend tensor or numpy array; Keras ops accept either

K1 = 0.01  # SSIM luminance constant, times the data range
K2 = 0.03  # SSIM contrast constant, times the data range
# losses.patch_range: the percentiles of a patch's span, and the least span taken. The floor
# keeps a flat patch (its span is its noise) from shrinking the constants without bound.
RANGE_PERCENTILES = (0.01, 0.99)
RANGE_FLOOR = 1.0 / 16
GEN_PARTS = ("adv", "con", "enc", "nse")  # keys of generator_loss's `parts`


def gaussian_window(window: int, sigma: float) -> np.ndarray:
    """1-D Gaussian taps (window,), summing to 1; the 2-D window is its outer product."""
    if window < 1 or window % 2 == 0:
        raise ValueError(f"SSIM window must be an odd number of pixels, got {window}")
    if sigma <= 0:
        raise ValueError(f"SSIM sigma must be > 0 px, got {sigma}")
    r = np.arange(window, dtype=np.float64) - (window - 1) / 2
    g = np.exp(-0.5 * (r / sigma) ** 2)
    return (g / g.sum()).astype(np.float32)


def _blur_valid(v: Tensor, taps: np.ndarray) -> Tensor:
    """Separable Gaussian blur per channel, no padding: (B, H, W, C) -> (B, H-k+1, W-k+1, C).

    With H and W known, each pass is one matrix product with a banded (H-k+1, H) matrix of the
    taps: the same sums, but XLA on a CPU runs a training step's blur, forward and backward,
    far faster than as a depthwise convolution (docs/performance.md, Training).
    """
    k, (h, w, c) = taps.shape[0], v.shape[1:]
    if h is None or w is None:
        # depthwise kernels (kh, kw, C, 1): one copy of the taps per channel, channels never mix
        col = np.tile(taps.reshape(k, 1, 1, 1), (1, 1, c, 1))
        row = np.tile(taps.reshape(1, k, 1, 1), (1, 1, c, 1))
        v = ops.depthwise_conv(v, ops.convert_to_tensor(col), strides=1, padding="valid")
        return ops.depthwise_conv(v, ops.convert_to_tensor(row), strides=1, padding="valid")
    v = ops.einsum("ph,bhwc->bpwc", ops.convert_to_tensor(_band(h, taps)), v)
    return ops.einsum("qw,bpwc->bpqc", ops.convert_to_tensor(_band(w, taps)), v)


def _band(n: int, taps: np.ndarray) -> np.ndarray:
    """(n - k + 1, n): row i holds the taps at columns i..i+k-1, a valid 1-D filter as a matrix."""
    k = taps.shape[0]
    out = np.zeros((n - k + 1, n), np.float32)
    for i in range(n - k + 1):
        out[i, i : i + k] = taps
    return out


def ssim_map(
    x: Tensor, y: Tensor, *, window: int = 11, sigma: float = 1.5, max_val: float | Tensor = 1.0
) -> Tensor:
    """Local SSIM of x and y (B, H, W, C) -> (B, H - window + 1, W - window + 1). max_val, the
    data range R of the constants: a number, or (B, 1, 1, 1) one per sample."""
    x = ops.cast(x, "float32")
    y = ops.cast(y, "float32")
    if len(x.shape) != 4 or tuple(x.shape) != tuple(y.shape):
        raise ValueError(
            f"SSIM needs two (B, H, W, C) images of one shape, got {x.shape}, {y.shape}"
        )
    h, w = x.shape[1], x.shape[2]
    if (h is not None and h < window) or (w is not None and w < window):
        raise ValueError(f"SSIM window {window} px is larger than the {h}x{w} image")
    c = x.shape[-1]
    taps = gaussian_window(window, sigma)
    # One blur pass over the five moments stacked on channels: (B, H, W, 5C) -> (B, H', W', 5C).
    moments = _blur_valid(ops.concatenate([x, y, x * x, y * y, x * y], axis=-1), taps)
    mu_x, mu_y, e_xx, e_yy, e_xy = (moments[..., i * c : (i + 1) * c] for i in range(5))
    var_x = e_xx - mu_x * mu_x  # population variances: skimage's use_sample_covariance=False
    var_y = e_yy - mu_y * mu_y
    cov = e_xy - mu_x * mu_y
    c1 = (K1 * max_val) ** 2
    c2 = (K2 * max_val) ** 2
    num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    den = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    return ops.mean(num / den, axis=-1)  # (B, H', W'): channels averaged


def ssim(
    x: Tensor, y: Tensor, *, window: int = 11, sigma: float = 1.5, max_val: float | Tensor = 1.0
) -> Tensor:
    """Mean SSIM per sample over the valid map: (B, H, W, C) x2 -> (B,), 1 for equal images."""
    return ops.mean(ssim_map(x, y, window=window, sigma=sigma, max_val=max_val), axis=(1, 2))


def huber(x: Tensor, y: Tensor, delta: float = 1.0) -> Tensor:
    """Huber loss, mean over all elements: quadratic below `delta`, linear above."""
    d = ops.abs(ops.cast(x, "float32") - ops.cast(y, "float32"))
    quad = ops.minimum(d, delta)
    return ops.mean(0.5 * quad * quad + delta * (d - quad))


def adversarial_loss(f_real: Tensor, f_fake: Tensor) -> Tensor:
    """Eq. 2: mean squared difference of the critic's last-conv features F_C, (B, h, w, c)."""
    d = ops.cast(f_real, "float32") - ops.cast(f_fake, "float32")
    return ops.mean(d * d)


def contextual_loss(x: Tensor, x_hat: Tensor, cfg: LossConfig) -> Tensor:
    """Eq. 7: wa Huber(X, X^) + wb (1 - mean SSIM(X, X^)), images (B, H, W, 1) in [0, 1]."""
    s = ssim(x, x_hat, window=cfg.ssim_window, sigma=cfg.ssim_sigma)
    return cfg.wa * huber(x, x_hat, cfg.huber_delta) + cfg.wb * (1.0 - ops.mean(s))


def encoder_loss(z: Tensor, z_hat: Tensor) -> Tensor:
    """Eq. 4: mean absolute difference of the codes z and z^, (B, latent)."""
    return ops.mean(ops.abs(ops.cast(z, "float32") - ops.cast(z_hat, "float32")))


def noise_loss(x_noisy: Tensor, x_hat: Tensor, noise: Tensor, cfg: LossConfig) -> Tensor:
    """Eq. 6: w4 mean| |X_n - X^| - N |. What X^ removed from X_n should be the noise N.

    All (B, H, W, 1); N is the Perlin noise drawn on a black image (zero where unperturbed).
    """
    x_noisy = ops.cast(x_noisy, "float32")
    removed = ops.abs(x_noisy - ops.cast(x_hat, "float32"))
    return cfg.w4 * ops.mean(ops.abs(removed - ops.cast(noise, "float32")))


def generator_loss(parts: dict[str, Tensor], cfg: LossConfig) -> Tensor:
    """Eq. 5 plus eq. 6: w1 adv + w2 con + w3 enc + nse (nse already carries w4).

    `parts` holds the scalar losses under the keys "adv", "con", "enc", "nse".
    """
    missing = [k for k in GEN_PARTS if k not in parts]
    if missing:
        raise ValueError(
            f"generator_loss needs parts {', '.join(GEN_PARTS)}; missing {', '.join(missing)}"
        )
    return cfg.w1 * parts["adv"] + cfg.w2 * parts["con"] + cfg.w3 * parts["enc"] + parts["nse"]


def discriminator_loss(logits_real: Tensor, logits_fake: Tensor) -> Tensor:
    """Binary cross-entropy from logits (B, 1): originals are real (1), reconstructions fake (0).

    The two halves are averaged with equal weight, as in GANomaly, whatever their batch sizes.
    softplus(-l) = -log sigmoid(l) and softplus(l) = -log(1 - sigmoid(l)), without overflow.
    """
    real = ops.mean(ops.softplus(-ops.cast(logits_real, "float32")))
    fake = ops.mean(ops.softplus(ops.cast(logits_fake, "float32")))
    return 0.5 * (real + fake)


def patch_range(x: Tensor) -> Tensor:
    """(B, 1, 1, 1): each sample's 1st-to-99th percentile span (nearest rank) of (B, H, W, C)
    values, at least RANGE_FLOOR: the data range of an SSIM judged at the patch's own contrast."""
    flat = ops.sort(ops.reshape(ops.cast(x, "float32"), (-1, int(np.prod(x.shape[1:])))), axis=-1)
    n = flat.shape[-1]
    lo, hi = (round(q * (n - 1)) for q in RANGE_PERCENTILES)
    span = flat[:, hi] - flat[:, lo]
    return ops.reshape(ops.maximum(span, RANGE_FLOOR), (-1, 1, 1, 1))


def anomaly_score(x: Tensor, x_hat: Tensor, cfg: LossConfig) -> Tensor:
    """Eq. 9: phi = 1 - SSIM(X, X^) per sample, (B,); 0 for a perfect reconstruction.

    With `cfg.score_share` s < 1, the mean of the worst share s of the local 1 - SSIM map
    instead of the whole map. Why: the mean dilutes a defect by the share of the patch it
    covers. On the demo (64 px patches) a wall dent or a 2 px spot moves the mean no more than a
    good patch's noise, while its worst 1 % stands out (demo strip-wise accuracy with each, over
    three seeds: docs/performance.md, Accuracy on the demo).

    `cfg.score_range` `patch`: the SSIM constants scale with each patch's own span
    (patch_range) instead of the full data range.
    """
    window, sigma = cfg.ssim_window, cfg.ssim_sigma
    r = patch_range(x) if cfg.score_range == "patch" else 1.0
    if cfg.score_share >= 1.0:
        return 1.0 - ssim(x, x_hat, window=window, sigma=sigma, max_val=r)
    loss = 1.0 - ssim_map(x, x_hat, window=window, sigma=sigma, max_val=r)  # (B, H', W')
    n = loss.shape[1] * loss.shape[2]
    worst, _ = ops.top_k(ops.reshape(loss, (-1, n)), max(1, round(cfg.score_share * n)))
    return ops.mean(worst, axis=-1)


def heatmap(x: Tensor, x_hat: Tensor) -> Tensor:
    """Eqs. 10-11: |X - X^| min-max normalised per sample to [0, 1], (B, H, W, 1).

    A sample whose difference is constant (max == min, e.g. a perfect reconstruction) maps to 0
    everywhere instead of dividing by zero.
    """
    d = ops.abs(ops.cast(x, "float32") - ops.cast(x_hat, "float32"))
    lo = ops.min(d, axis=(1, 2, 3), keepdims=True)  # (B, 1, 1, 1)
    span = ops.max(d, axis=(1, 2, 3), keepdims=True) - lo
    return (d - lo) / ops.where(span > 0, span, ops.ones_like(span))
