"""Training augmentation: the paper's geometric augmentation, then the Perlin perturbation P_q.

Batched and stateless, in TensorFlow but for the resampling (OpenCV, see below): every random
draw comes from `tf.random.stateless_*` (Philox, fixed rather than auto-selected) keyed by
(seed, step), so the batch of step k is augmented identically whether training runs straight
through or resumes at step k.

Shapes: B patches per batch, P patch side, c = (P - 1) / 2 the patch centre.
`x` is (B, P, P, 1) float32 in [0, 1]; every output is (B, P, P, 1) float32.

Geometric (paper section 6.2), per sample b: angle theta_b ~ U[-r, r] (r = cfg.rotation) and
sigma_b = -1 (vertical flip, probability cfg.vflip) or +1. Output pixel (x, y) reads the input at

    x_in = c + cos(theta) (x - c) - sin(theta) sigma (y - c)
    y_in = c + sin(theta) (x - c) + cos(theta) sigma (y - c)

bilinear, REFLECT outside (d c b a | a b c d | d c b a): flip and rotation are one resampling.
These are the numbers of `tf.raw_ops.ImageProjectiveTransformV3(..., "BILINEAR", "REFLECT")`
with that transform (checked to 1e-4 in tests/unit/train/test_augment.py); `rotate_flip`
resamples with OpenCV's `warpAffine` (BORDER_REFLECT is the same rule), which costs less CPU
than the op or an XLA gather formulation (docs/performance.md, Training). theta = 0,
sigma = -1 is exactly x[:, ::-1] (rows reversed); there is never a horizontal flip (a mirrored
vial is an anomaly). The result is the target "x".

Perlin noise (classic gradient noise, as DRAEM's `rand_perlin_2d`), per sample: R_y = 2**k_y
and R_x = 2**k_x cells, k_y and k_x drawn independently and uniformly from
[perlin_min_scale, perlin_max_scale], clamped so that 2**k divides P and cells keep >= 4 px
(`perlin_levels`). Unit gradients g_ij = (sin phi_ij, cos phi_ij), phi_ij ~ U[0, 2 pi), on
the (R_y + 1) x (R_x + 1) lattice. Pixel y sits at t = y R_y / P lattice units,
i = floor(t), f = t - i (likewise x, j, f_x):

    s(f)  = 6 f^5 - 15 f^4 + 10 f^3                     (quintic fade)
    w0(f) = 1 - s(f),   w1(f) = s(f)
    n(y, x) = sqrt(2) * sum_{a, b in {0, 1}} w_a(f_y) w_b(f_x) <g_{i+a, j+b}, (f_y - a, f_x - b)>

n is in [-1, 1] (std 0.30) and exactly 0 at lattice points. It is separable per gradient
component, n = Dy GY Wx^T + Wy GX Dx^T with W[p, i + a] = w_a(f_p), D[p, i + a] =
w_a(f_p) (f_p - a), so a batch costs small gathers along y and, per x resolution, one matmul
over the samples drawn with it (they are grouped, and pay only for their own lattice).

Perturbation P_q (paper section 6.1, eq. 1), per sample: gate z_b ~ Bernoulli(q) and opacity
beta_b ~ U[blend]. With u = (n + 1) / 2 in [0, 1] the Perlin values rescaled:

    M   = z_b * [u > threshold]              "mask": {0, 1}, 1 where the image is perturbed
    N   = beta_b * M * u                     "noise": P_q applied to a black image (eq. 6's N)
    X_n = (1 - beta_b * M) * X + N           "x_noisy": in [0, 1]; X_n = X where M = 0

so X_n - X = beta_b * M * (u - X), and a sample with z_b = 0 has M = 0, N = 0, X_n = X.
The higher `threshold`, the smaller the perturbed share of a patch, and the more often the mask
is empty: the areas by threshold are in docs/performance.md, Training.
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np
import tensorflow as tf

from bfsdata.config.training import AugmentConfig

_ALG = "philox"  # fixed, not auto_select: the same (seed, step) draws the same on CPU and GPU
_DRAWS = ("angle", "flip", "gate", "beta", "res_y", "res_x", "grad")


def augment(x: tf.Tensor, step: tf.Tensor, cfg: AugmentConfig, seed: int) -> dict[str, tf.Tensor]:
    """Geometric augmentation and Perlin perturbation of one batch; see the module docstring.

    x: (B, P, P, 1) float32 in [0, 1]; step: int64 scalar, the global training step.
    Returns {"x", "x_noisy", "mask", "noise"}, each (B, P, P, 1) float32.
    """
    x = tf.convert_to_tensor(x, tf.float32)
    size = x.shape[1]
    if size is None or x.shape[2] != size or x.shape[3] != 1:
        raise ValueError(f"augment needs square (B, P, P, 1) patches with static P, got {x.shape}")
    keys = _keys(seed, step)
    b = tf.shape(x)[0]
    theta = _uniform(keys["angle"], b, -cfg.rotation, cfg.rotation)  # (B,) rad
    sigma = tf.where(_uniform(keys["flip"], b) < cfg.vflip, -1.0, 1.0)  # (B,) -1 = flipped

    levels = perlin_levels(size, cfg.perlin_min_scale, cfg.perlin_max_scale)
    lev_y = _uniform_int(keys["res_y"], b, len(levels))  # (B,) index into levels
    lev_x = _uniform_int(keys["res_x"], b, len(levels))
    n_max = levels[-1] + 1
    phi = tf.random.stateless_uniform((b, n_max, n_max), keys["grad"], 0.0, 2 * math.pi, alg=_ALG)
    u = _perlin(phi, lev_y, lev_x, (size, size), levels, scale=0.5, offset=0.5)  # (B, P, P)

    gate = tf.cast(_uniform(keys["gate"], b) < cfg.q, tf.float32)  # (B,) z_b
    beta = _uniform(keys["beta"], b, *cfg.blend)  # (B,)
    x = rotate_flip(tf.squeeze(x, -1), theta, sigma)  # (B, P, P)
    out = (x, *_apply(x, u, gate, beta * gate, tf.constant(cfg.threshold)))
    names = ("x", "x_noisy", "mask", "noise")
    return {k: tf.expand_dims(v, -1) for k, v in zip(names, out, strict=True)}


def perlin_noise(shape_hw: tuple[int, int], res_hw: tuple[int, int], seed) -> tf.Tensor:
    """One (H, W) float32 Perlin field in [-1, 1] with res_hw = (R_y, R_x) cells.

    `seed` is a stateless seed (two integers). R_y must divide H and R_x divide W, so lattice
    points fall on pixels, where the field is exactly 0.
    """
    (h, w), (ry, rx) = shape_hw, res_hw
    if ry < 1 or rx < 1 or h % ry or w % rx:
        raise ValueError(f"Perlin resolution {res_hw} must divide the shape {shape_hw}")
    n = max(ry, rx) + 1
    phi = tf.random.stateless_uniform((1, n, n), seed, 0.0, 2 * math.pi, alg=_ALG)
    zero = tf.zeros((1,), tf.int32)
    return _perlin(phi, zero, zero, (h, w), (ry, rx), 1.0, 0.0, per_axis=True)[0]


def perlin_levels(size: int, min_scale: int, max_scale: int) -> tuple[int, ...]:
    """Resolutions 2**k for k in [min_scale, max_scale], clamped so that 2**k divides `size`
    and cells keep at least 4 px (1-px cells put every pixel on the lattice: n = 0)."""
    top = 0
    while size % (2 ** (top + 1)) == 0 and 2 ** (top + 1) * 4 <= size:
        top += 1
    hi = min(max_scale, top)
    return tuple(2**k for k in range(min(min_scale, hi), hi + 1))


def _keys(seed: int, step: tf.Tensor) -> dict[str, tf.Tensor]:
    """One stateless seed per kind of draw, all derived from (seed, step)."""
    base = tf.stack([tf.constant(seed, tf.int64), tf.cast(step, tf.int64)])
    keys = tf.random.experimental.stateless_split(base, num=len(_DRAWS), alg=_ALG)  # (K, 2)
    return {name: keys[i] for i, name in enumerate(_DRAWS)}


def _uniform(key: tf.Tensor, b: tf.Tensor, lo: float = 0.0, hi: float = 1.0) -> tf.Tensor:
    return tf.random.stateless_uniform((b,), key, lo, hi, alg=_ALG)


def _uniform_int(key: tf.Tensor, b: tf.Tensor, n: int) -> tf.Tensor:
    return tf.random.stateless_uniform((b,), key, 0, n, dtype=tf.int32, alg=_ALG)


def rotate_flip(x: tf.Tensor, theta: tf.Tensor, sigma: tf.Tensor) -> tf.Tensor:
    """Rotate by theta about the centre after flipping rows where sigma = -1: (B, P, P).

    x: (B, P, P) float32; theta, sigma: (B,). Bilinear, REFLECT outside: the numbers of
    `ImageProjectiveTransformV3(..., "BILINEAR", "REFLECT")` with the module's transform (to
    float rounding, see tests), computed by OpenCV outside the graph (it releases the GIL, so
    tf.data's parallel calls run side by side).
    """
    out = tf.numpy_function(_rotate_flip_np, [x, theta, sigma], tf.float32, stateful=False)
    return tf.ensure_shape(out, x.shape)


def _rotate_flip_np(x: np.ndarray, theta: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    size = x.shape[1]
    c = (size - 1) / 2
    out = np.empty_like(x)
    for b in range(len(x)):
        cos, sin, s = math.cos(theta[b]), math.sin(theta[b]), float(sigma[b])
        # Output pixel (col, row) reads the input at m @ (col, row, 1): the module's map.
        m = np.array(
            [[cos, -sin * s, c - cos * c + sin * s * c], [sin, cos * s, c - sin * c - cos * s * c]]
        )
        out[b] = cv2.warpAffine(
            x[b],
            m,
            (size, size),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REFLECT,
        )
    return out


def _perlin(
    phi: tf.Tensor,
    lev_y: tf.Tensor,
    lev_x: tf.Tensor,
    shape_hw: tuple[int, int],
    levels: tuple[int, ...],
    scale: float,
    offset: float,
    per_axis: bool = False,
) -> tf.Tensor:
    """offset + scale * n for a batch: (B, H, W) float32; see the module docstring for n.

    phi: (B, L, L) gradient angles, L >= max(levels) + 1; lev_y, lev_x: (B,) int32 indices
    into `levels` (cells per axis). With per_axis=True, levels is (R_y, R_x) and both indices
    are 0 (one resolution per axis, any H and W).
    """
    h, w = shape_hw
    res_y = levels[:1] if per_axis else levels
    res_x = levels[1:] if per_axis else levels
    idx, wts = _axis_table(h, res_y)  # (Ly, H) int32, (Ly, 4, H) float32
    i0 = tf.gather(tf.constant(idx), lev_y)  # (B, H) lattice row above each pixel row
    wy = tf.gather(tf.constant(wts), lev_y)[..., None]  # (B, 4, H, 1): w0, w1, d0, d1

    # Samples are grouped by x resolution r, so that each group interpolates only its r + 1
    # lattice columns along y, and expands them along x with one matmul by its own basis.
    n = len(res_x)
    where = tf.dynamic_partition(tf.range(tf.shape(phi)[0]), lev_x, n)
    phis = tf.dynamic_partition(phi, lev_x, n)
    i0s = tf.dynamic_partition(i0, lev_x, n)
    wys = tf.dynamic_partition(wy, lev_x, n)
    outs = []
    for k, r in enumerate(res_x):
        cols = phis[k][:, :, : r + 1]  # (b_k, L, r + 1) angles
        grad = tf.concat([tf.sin(cols), tf.cos(cols)], axis=-1)  # (b_k, L, 2 (r + 1)): GY, GX
        g0 = tf.gather(grad, i0s[k], batch_dims=1)  # (b_k, H, 2 (r + 1)) lattice row i
        g1 = tf.gather(grad, i0s[k] + 1, batch_dims=1)  # lattice row i + 1
        w0, w1, d0, d1 = tf.unstack(wys[k], axis=1)  # (b_k, H, 1) each
        rows = tf.concat(
            [
                tf.ones_like(d0),
                d0 * g0[..., : r + 1] + d1 * g1[..., : r + 1],  # Dy GY
                w0 * g0[..., r + 1 :] + w1 * g1[..., r + 1 :],  # Wy GX
            ],
            axis=-1,
        )  # (b_k, H, 1 + 2 (r + 1))
        basis = tf.constant(_x_basis(w, r, scale, offset))  # (1 + 2 (r + 1), W)
        flat = tf.matmul(tf.reshape(rows, (-1, basis.shape[0])), basis)  # (b_k H, W)
        outs.append(tf.reshape(flat, (-1, h, w)))
    return tf.ensure_shape(tf.dynamic_stitch(where, outs), (None, h, w))


@functools.cache
def _axis_weights(size: int, res: int) -> tuple[np.ndarray, np.ndarray]:
    """Lattice index i (size,) and weights (4, size): w0, w1, d0 = w0 f, d1 = w1 (f - 1)."""
    t = np.arange(size, dtype=np.float64) * res / size
    i = np.floor(t)
    f = t - i
    s = f * f * f * (f * (f * 6 - 15) + 10)
    return i.astype(np.int32), np.stack([1 - s, s, (1 - s) * f, s * (f - 1)]).astype(np.float32)


@functools.cache
def _axis_table(size: int, res: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """_axis_weights of every resolution, stacked: (L, size) and (L, 4, size)."""
    pairs = [_axis_weights(size, r) for r in res]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


@functools.cache
def _x_basis(size: int, res: int, scale: float, offset: float) -> np.ndarray:
    """(1 + 2 (res + 1), size): the offset row, then Wx^T and Dx^T times sqrt(2) * scale."""
    i, wts = _axis_weights(size, res)
    cols = np.arange(size)
    wx = np.zeros((res + 1, size), np.float64)
    dx = np.zeros((res + 1, size), np.float64)
    for a in (0, 1):
        np.add.at(wx, (i + a, cols), wts[a])
        np.add.at(dx, (i + a, cols), wts[2 + a])
    gain = math.sqrt(2) * scale  # classic 2-D Perlin spans [-1/sqrt(2), 1/sqrt(2)]
    out = np.concatenate([np.full((1, size), offset), gain * wx, gain * dx])
    return out.astype(np.float32)


@tf.function(jit_compile=True)
def _apply(x, u, gate, strength, threshold):
    """P_q in one XLA computation: x_noisy, mask, noise (B, P, P).

    x (already rotated and flipped), u: (B, P, P); gate = z_b, strength = beta_b z_b: (B,).
    """
    inside = tf.cast(u > threshold, tf.float32)
    mask = inside * gate[:, None, None]
    bm = inside * strength[:, None, None]  # beta M
    noisy = tf.clip_by_value(x + bm * (u - x), 0.0, 1.0)  # (1 - beta M) X + N; clip: rounding
    return noisy, mask, bm * u
