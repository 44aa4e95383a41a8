"""The GAN's residual, normalised per position by good patches: a score that means the same in
dark, bright, flat and cluttered areas (issue #20, item 2; `train.loss.score: residual`).

1 - SSIM over a patch's worst pixels is unstable where the patch is dark, flat and noisy (local
SSIM divides by a near-zero variance) and it is blind where good patches already reconstruct
badly (moving clutter that the rank image keeps). Patches are registered, so every pixel of
every position (kind, vial, region) has a distribution of residuals over good patches: how far
a pixel is from what the model usually misses there is what says "defect", in any look.

    r = G_sigma * |x - x^|                       (blurred absolute residual, [0, 1] units)
    d = max(r - mean, 0) / max(std, floor)       (excess over good, in good standard deviations)
    score = mean of the worst `share` of d       (bfsdata.imaging.variation.worst_share)

mean and std per pixel and position come from the val split's good patches (never calib or
test) through the exported model (bfsdata.train.residual). Only an excess counts: a pixel the
model reconstructs better than usual is no defect. The blur makes a defect of a few pixels one
blob and a single noisy pixel small; `floor` keeps a position whose good residual hardly varies
(a flat background) from dividing by nearly nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from bfsdata.imaging.variation import Key, array_keys, key_arrays, slot, worst_share


def residual_maps(x: np.ndarray, recon: np.ndarray, sigma: float) -> np.ndarray:
    """(B, P, P) float32: |x / 255 - recon| blurred (Gaussian, sigma px; 0: not blurred).

    x: (B, P, P) uint8 patches; recon: (B, P, P) the reconstructions in [0, 1]."""
    r = np.abs(np.asarray(x, np.float32) / np.float32(255) - np.asarray(recon, np.float32))
    if sigma > 0:
        for i in range(len(r)):  # OpenCV blurs one 2-D image at a time, in place
            cv2.GaussianBlur(r[i], (0, 0), sigma, dst=r[i], borderType=cv2.BORDER_REPLICATE)
    return r


@dataclass(frozen=True, eq=False)
class ResidualNorm:
    """Per position the mean and standard deviation of good residual maps, and the score."""

    keys: tuple[Key, ...]
    mean: np.ndarray  # (K, P, P) float32
    std: np.ndarray  # (K, P, P) float32
    sigma: float  # px, the blur of the residual (must be the one the statistics were taken with)
    floor: float  # the smallest std divided by, [0, 1] units
    share: float  # the worst share of d averaged into the score
    _index: dict = field(init=False, repr=False, compare=False)
    _scale: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.mean.shape != self.std.shape or len(self.keys) != len(self.mean):
            raise ValueError(
                f"{len(self.keys)} keys, mean {self.mean.shape}, std {self.std.shape}: one "
                "(P, P) mean and std image per key"
            )
        if not 0 < self.share <= 1 or self.floor <= 0 or self.sigma < 0:
            raise ValueError(
                f"share {self.share} must be in (0, 1], floor {self.floor} > 0 and "
                f"sigma {self.sigma} >= 0"
            )
        object.__setattr__(self, "_index", {k: i for i, k in enumerate(self.keys)})
        object.__setattr__(self, "_scale", np.maximum(self.std, np.float32(self.floor)))

    def deviation(self, r: np.ndarray, where: list[Key]) -> np.ndarray:
        """d (B, P, P) float32 of residual maps r (`residual_maps`) at their positions."""
        if len(where) != len(r):
            raise ValueError(f"{len(r)} residual maps but {len(where)} keys")
        idx = np.array([self._slot(k) for k in where], np.intp)
        if r.shape[1:] != self.mean.shape[1:]:
            raise ValueError(
                f"patches of {r.shape[1:]} px; the statistics' are {self.mean.shape[1:]}"
            )
        d = np.subtract(r, self.mean[idx], dtype=np.float32)
        np.maximum(d, 0, out=d)
        return np.divide(d, self._scale[idx], out=d)

    def __call__(self, x: np.ndarray, recon: np.ndarray, where: list[Key]) -> dict[str, np.ndarray]:
        """Score (B,) and heatmap (B, P, P, 1), d scaled to [0, 1] per patch, of uint8 patches
        x (B, P, P) and their reconstructions recon (B, P, P) in [0, 1]."""
        d = self.deviation(residual_maps(x, recon, self.sigma), where)
        top = d.reshape(len(d), -1).max(axis=1).reshape(-1, 1, 1) if len(d) else 1.0
        heat = d / np.maximum(top, np.float32(1e-12))
        return {"score": worst_share(d, self.share), "heatmap": heat[..., None]}

    def _slot(self, key: Key) -> int:
        return slot(
            self._index,
            key,
            "no good-residual statistics for {where}: they were taken on the val patches of "
            "{kinds}; score the kinds the model was trained and validated on",
        )

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays (for an npz file) from which `from_arrays` rebuilds it."""
        return {
            **key_arrays(self.keys),
            "mean": self.mean.astype(np.float32),
            "std": self.std.astype(np.float32),
            "sigma": np.float64(self.sigma),
            "floor": np.float64(self.floor),
            "share": np.float64(self.share),
        }

    @classmethod
    def from_arrays(cls, arrays) -> ResidualNorm:
        return cls(
            array_keys(arrays),
            np.asarray(arrays["mean"], np.float32),
            np.asarray(arrays["std"], np.float32),
            float(arrays["sigma"]),
            float(arrays["floor"]),
            float(arrays["share"]),
        )
