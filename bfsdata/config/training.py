"""The training sections of a pipeline: model sizes, loss weights, augmentation, optimiser.

Paper sections 6.1-6.2 and 7.2-7.3 give the defaults (the paper-size profile); pipelines/demo.yaml
shrinks them for a CPU. `config.TrainConfig` bundles them with the kinds trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

from bfsdata.config.errors import check as _check
from bfsdata.config.errors import check_int

MAX_WIDTH = 16384  # filters of the widest stage (the paper's widest: 1024)
SCORES = ("ssim", "residual")  # train.loss.score: what the GAN's anomaly score is taken of
SSIM_RANGES = ("full", "patch")  # train.loss.score_range: the data range of the score's SSIM


@dataclass(frozen=True)
class ModelConfig:
    """GRD-Net generator (encoder, dense bottleneck, decoder, second encoder) and critic."""

    patch_size: int = 256  # px, input (B, P, P, 1) in [0, 1]; the pipeline sets it from patch.size
    base_width: int = 128  # filters of stage 1; doubled per stage (paper: 128..1024)
    stages: int = 4  # residual stages, each halving H and W (256 -> 16 after 4)
    latent: int = 64  # features of the dense bottleneck z
    merge: str = "add"  # add | concat: how a residual block merges branch and shortcut
    norm: str = "batch"  # batch | layer | none (pre-activation normalisation, ResNet v2)
    disc_base_width: int = 64  # filters of the critic's first conv; doubled per stage
    disc_stages: int = 4  # critic conv stages, each halving H and W

    def __post_init__(self) -> None:
        # 2**stages is computed below: bound the stage counts by the patch's bits first (a huge
        # count from a pipeline file would take all memory, or fail to print)
        for key in ("stages", "disc_stages"):
            n, bits = getattr(self, key), max(2, self.patch_size.bit_length())
            why = f"each stage halves the {self.patch_size} px patch"
            _check(1 <= n < bits, f"train.model.{key}", f"must be 1..{bits - 1}: {why}")
        _check(
            self.patch_size % (2**self.stages) == 0,
            "train.model.patch_size",
            f"{self.patch_size} must be divisible by 2**stages = {2**self.stages}",
        )
        _check(
            self.patch_size % (2**self.disc_stages) == 0,
            "train.model.disc_stages",
            f"2**disc_stages must divide patch_size {self.patch_size}",
        )
        for key in ("base_width", "stages", "latent", "disc_base_width", "disc_stages"):
            check_int(getattr(self, key), f"train.model.{key}", 1, MAX_WIDTH)
        for key, n in (("base_width", self.stages), ("disc_base_width", self.disc_stages)):
            widest = getattr(self, key) * 2 ** (n - 1)
            why = f"widths double per stage: {widest} filters at stage {n}"
            _check(widest <= MAX_WIDTH, f"train.model.{key}", f"too wide ({why}; max {MAX_WIDTH})")
        _check(self.merge in ("add", "concat"), "train.model.merge", "must be add or concat")
        _check(self.norm in ("batch", "layer", "none"), "train.model.norm", "batch|layer|none")


@dataclass(frozen=True)
class LossConfig:
    """Paper eqs. 2-8: L_gen = w1 L_adv + w2 L_con + w3 L_enc + L_nse."""

    wa: float = 2.0  # Huber term of L_con
    wb: float = 1.0  # 1 - SSIM term of L_con
    w1: float = 1.0  # adversarial (feature matching on the critic's last conv)
    w2: float = 50.0  # contextual
    w3: float = 1.0  # encoder (L1 between z and z-hat)
    w4: float = 3.0  # noise loss
    huber_delta: float = 1.0  # Huber transition point, in [0, 1] intensity units
    ssim_window: int = 11  # px, Gaussian SSIM window
    ssim_sigma: float = 1.5  # px, Gaussian SSIM sigma
    # Share of the 1 - SSIM map averaged into the exported anomaly score, worst pixels first:
    # 1 = the whole map, the paper's phi (eq. 9); 0.01 = its worst 1 %, for defects that cover
    # a small part of a patch (see losses.anomaly_score).
    score_share: float = 1.0
    # What the share is taken of: `ssim`, the 1 - SSIM map (the paper's); `residual`, the
    # residual normalised per pixel and position by good val patches (bfsdata.imaging.residual).
    score: str = "ssim"
    # The data range R of the score's SSIM constants (C1 = (K1 R)^2, C2 = (K2 R)^2): `full`, 1,
    # the paper's; `patch`, each patch's own 1st-99th percentile span (losses.patch_range), so
    # a dim or low-contrast product is judged at the contrast it has. The training loss keeps
    # the paper's constants. Not the default: benchmarks/scores.py (docs/performance.md).
    score_range: str = "full"
    residual_sigma: float = 2.0  # px, Gaussian blur of the residual before it is normalised
    residual_floor: float = 0.01  # the smallest good std divided by, [0, 1] grey units

    def __post_init__(self) -> None:
        for key in ("wa", "wb", "w1", "w2", "w3", "w4", "huber_delta", "ssim_sigma"):
            _check(getattr(self, key) >= 0, f"train.loss.{key}", "must be >= 0")
        check_int(self.ssim_window, "train.loss.ssim_window", 1, 255)
        _check(self.ssim_window % 2 == 1, "train.loss.ssim_window", "must be odd")
        _check(0 < self.score_share <= 1, "train.loss.score_share", "must be in (0, 1]")
        _check(self.score in SCORES, "train.loss.score", f"must be {' or '.join(SCORES)}")
        _check(
            self.score_range in SSIM_RANGES,
            "train.loss.score_range",
            f"must be {' or '.join(SSIM_RANGES)}",
        )
        _check(0 <= self.residual_sigma <= 64, "train.loss.residual_sigma", "must be in [0, 64]")
        _check(0 < self.residual_floor <= 1, "train.loss.residual_floor", "must be in (0, 1]")


@dataclass(frozen=True)
class AugmentConfig:
    """Perlin perturbation P_q (DRAEM-style) plus the paper's geometric augmentation."""

    q: float = 0.75  # probability that a sample gets Perlin noise
    perlin_min_scale: int = 0  # log2 of the coarsest Perlin grid (2**0 = 1 cell)
    perlin_max_scale: int = 6  # log2 of the finest Perlin grid (2**6 = 64 cells)
    threshold: float = 0.5  # Perlin values above this form the mask M
    blend: tuple[float, float] = (0.1, 1.0)  # opacity range of the noise inside M
    rotation: float = 0.39269908169872414  # rad, max |angle| (pi/8)
    vflip: float = 0.5  # probability of a vertical flip (no horizontal flip: an anomaly)

    def __post_init__(self) -> None:
        _check(0 <= self.q <= 1, "train.augment.q", "must be in [0, 1]")
        for key in ("perlin_min_scale", "perlin_max_scale"):
            check_int(getattr(self, key), f"train.augment.{key}", 0, 12, "2**12 grid cells")
        _check(
            0 <= self.perlin_min_scale <= self.perlin_max_scale,
            "train.augment.perlin_*",
            "need 0 <= perlin_min_scale <= perlin_max_scale",
        )
        _check(0 < self.threshold < 1, "train.augment.threshold", "must be in (0, 1)")
        lo, hi = self.blend
        _check(0 <= lo <= hi <= 1, "train.augment.blend", "must be 0 <= low <= high <= 1")
        _check(0 <= self.rotation <= 3.1416, "train.augment.rotation", "must be in [0, pi]")
        _check(0 <= self.vflip <= 1, "train.augment.vflip", "must be in [0, 1]")


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 1.5e-4  # Adam learning rate at step 0
    first_decay_steps: int = 2_533_680  # cosine decay with restarts: length of the first cycle
    t_mul: float = 2.0  # each cycle this many times longer than the last
    m_mul: float = 1.0 / 3.0  # each restart at this share of the last maximum
    alpha: float = 0.0  # floor of the decay, as a share of lr
    beta_1: float = 0.9  # Adam
    batch: int = 32  # patches per step
    epochs: int = 10  # paper: 10
    steps_per_epoch: int = 0  # 0 = one pass over the train split
    checkpoint_every: int = 0  # steps between checkpoints (and log rows); 0 = once per epoch
    val_patches: int = 2048  # val patches scored after each epoch: a fixed, seeded sample
    jit_compile: bool = True  # XLA: faster steps after a compile (docs/performance.md, Training)

    def __post_init__(self) -> None:
        _check(self.lr > 0, "train.optim.lr", "must be > 0")
        check_int(self.first_decay_steps, "train.optim.first_decay_steps", 1, 10**12)
        check_int(self.batch, "train.optim.batch", 1, 4096)
        check_int(self.epochs, "train.optim.epochs", 1, 10**5)
        check_int(self.steps_per_epoch, "train.optim.steps_per_epoch", 0, 10**9)
        check_int(self.checkpoint_every, "train.optim.checkpoint_every", 0, 10**9)
        check_int(self.val_patches, "train.optim.val_patches", 0, 10**7)


@dataclass(frozen=True)
class VariationConfig:
    """The variation model (`train.method: variation`, bfsdata.imaging.variation): an ideal and
    a variation image per (kind, vial, region); a pixel is out of band when it leaves
    ideal +- max(abs_threshold, var_threshold * variation)."""

    # Compare each patch less its mean grey level: strips and runs differ in brightness as a
    # whole, which would otherwise make the variation image wide everywhere.
    match_mean: bool = True
    robust: bool = False  # median and MAD of a bounded sample, instead of mean and std
    sample: int = 64  # patches per (kind, vial, region) the robust option keeps (P*P bytes each)
    # The band and the score as chosen on the demo data (benchmarks/variation.py --quality;
    # docs/performance.md, The variation model).
    abs_threshold: float = 10.0  # grey levels (0..255): the band's narrowest half-width (a)
    var_threshold: float = 5.0  # the band's half-width in variation units (k)
    sigma: float = 0.0  # px, Gaussian smoothing of the variation image; 0 = none
    score: str = "area"  # area: largest out-of-band region, px | share: worst share of d
    score_share: float = 0.01  # with score `share`: the share of the patch averaged
    batch: int = 256  # patches per store read of the training pass

    def __post_init__(self) -> None:
        check_int(self.sample, "train.variation.sample", 1, 1024, "kept in memory per position")
        # grey levels of 8-bit patches: a band wider than 255 passes everything
        _check(
            0 < self.abs_threshold <= 255, "train.variation.abs_threshold", "must be in (0, 255]"
        )
        _check(0 <= self.var_threshold <= 1000, "train.variation.var_threshold", "must be 0..1000")
        _check(0 <= self.sigma <= 64, "train.variation.sigma", "must be in [0, 64] px")
        _check(self.score in ("area", "share"), "train.variation.score", "must be area or share")
        _check(0 < self.score_share <= 1, "train.variation.score_share", "must be in (0, 1]")
        check_int(self.batch, "train.variation.batch", 1, 65536)
