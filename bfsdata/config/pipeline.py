"""Typed pipeline configuration, loaded once from `pipelines/*.yaml`.

One frozen dataclass per concern (the training sections in bfsdata.config.training). Every value
is validated when the dataclass is built, so a bad YAML fails before any work starts, with the
file and the key in the message.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

from bfsdata.config.errors import ConfigError, check_int
from bfsdata.config.errors import check as _check
from bfsdata.config.policy import parse_policy
from bfsdata.config.training import (
    AugmentConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    VariationConfig,
)

KINDS = ("frame", "rank_min", "rank_max")
KIND_CHOICES = ("auto", "all", "pooled")  # report.kind_choice
IMAGE_LAYOUTS = ("grid", "resize")  # layout modes of image-folder data (bfsdata.imaging.tiling)

# Upper bounds of the sizes a pipeline sets: far above any inspection line, low enough that no
# file can ask for an allocation that fails with a traceback instead of a message naming the key.
MAX_FRAMES = 1024  # frames per acquisition
MAX_PIXELS_LIMIT = 2**30  # acquisition.max_pixels: OpenCV decodes no larger image
MAX_PATCH = 2048  # px, side of a patch
MAX_TILE = 16384  # px, side of a grid tile
MAX_SHARD_BYTES = 2**30  # one patch shard, written whole from memory


def kind_rank(kind: str, ranks: Sequence[int]) -> int:
    """HALCON rank of a rank-image kind among the computed `ranks` (acquisition.ranks):
    rank_min the lowest (1, the minimum, by default), rank_max the highest (the maximum).

    A trimmed pair such as (3, 14) keeps what lay dark or bright at a pixel in at least 3 of
    the frames: moving clutter that passes a pixel in fewer frames drops out of both images,
    while everything that stays put (the product and its defects) remains."""
    if not ranks:
        raise ValueError(f"{kind} needs rank images; acquisition.ranks is empty")
    return min(ranks) if kind == "rank_min" else max(ranks)


def images_of(kinds: tuple[str, ...], frames: tuple[int, ...]) -> list[tuple[str, int]]:
    """(kind, frame) of the images of an acquisition that `kinds` and `frames` select, in the
    patches' row order: the frames first, then the rank images (frame -1, as in the manifest)."""
    out = [("frame", f) for f in frames] if "frame" in kinds else []
    return out + [(k, -1) for k in KINDS[1:] if k in kinds]


def image_name(kind: str, frame: int) -> str:
    """How reports name one image of an acquisition: `frame 7`, or the rank kind."""
    return f"frame {int(frame)}" if kind == "frame" else kind


@dataclass(frozen=True)
class AcquisitionConfig:
    frames: int = 16  # frames per acquisition (the paper acquires 16)
    # HALCON ranks over the frame stack (1 = min, frames = max): the lowest is the rank_min
    # image, the highest rank_max (kind_rank).
    ranks: tuple[int, ...] = (1, 16)
    test_frames: tuple[int, ...] = (
        0,
        7,
        15,
    )  # frame indices scored at test time (first, 8th, last)
    # Images scored at test time: `frame` is the test_frames (the paper's protocol); a rank
    # image (rank_max: only what stayed put through the 16 frames) is one more image each.
    test_kinds: tuple[str, ...] = ("frame",)
    # Pixels per frame (H x W) a file's header may declare: a larger one is refused from its
    # header, naming the file, before anything is allocated or written (64 Mpx by default,
    # about fifty times a 1024x1280 camera frame).
    max_pixels: int = 64 * 2**20

    def __post_init__(self) -> None:
        check_int(self.frames, "acquisition.frames", 1, MAX_FRAMES)
        check_int(self.max_pixels, "acquisition.max_pixels", 1, MAX_PIXELS_LIMIT, "OpenCV's limit")
        # one frame (image folders): a rank image would only repeat it
        ranks_ok = len(self.ranks) >= 1 or self.frames == 1
        _check(ranks_ok, "acquisition.ranks", "needs at least one rank (with frames > 1)")
        for r in self.ranks:
            _check(1 <= r <= self.frames, "acquisition.ranks", f"rank {r} not in 1..{self.frames}")
        _check(len(set(self.ranks)) == len(self.ranks), "acquisition.ranks", "has duplicates")
        for f in self.test_frames:
            _check(
                0 <= f < self.frames, "acquisition.test_frames", f"{f} not in 0..{self.frames - 1}"
            )
        _check(len(self.test_kinds) >= 1, "acquisition.test_kinds", "needs at least one kind")
        for k in self.test_kinds:
            _check(k in KINDS, "acquisition.test_kinds", f"{k!r} is not one of {', '.join(KINDS)}")
            _check(
                k == "frame" or bool(self.ranks),
                "acquisition.test_kinds",
                f"{k} needs a rank image; acquisition.ranks is empty",
            )

    def test_images(self) -> list[tuple[str, int]]:
        """(kind, frame) of every image scored at test time, frames first; rank images have
        frame -1, as in the patches manifest."""
        return images_of(self.test_kinds, self.test_frames)


@dataclass(frozen=True)
class LayoutConfig:
    """Where the product sits, in pixels of an image of `reference_size`.

    Numbers are scaled linearly to the ingested image size, so one layout serves the full-size
    camera frames and the small synthetic frames of the demo. Image folders (mode grid or
    resize, bfsdata.imaging.tiling) use only `mode`, `tile` and `stride`.
    """

    mode: str = "fixed"  # fixed | auto (vial columns from the data) | grid | resize (images)
    reference_size: tuple[int, int] = (1024, 1280)  # (H, W) px the numbers below refer to
    strip_box: tuple[int, int, int, int] = (32, 40, 992, 1240)  # (y0, x0, y1, x1) px, nominal
    vials: int = 5  # vials per strip, equal columns across strip_box
    regions: tuple[tuple[int, int], ...] = (
        (32, 272),
        (272, 512),
        (512, 752),
        (752, 992),
    )  # (y0, y1)
    max_shift: float = 48.0  # px at reference size: larger registration offsets are refused
    max_size_error: float = 0.04  # relative: found strip width/height vs strip_box
    background: str = "dark"  # dark | bright: which side of the product the background is
    tile: int = 256  # px, mode grid: side of the square tiles cut from each image
    stride: int = 256  # px, mode grid: step between tiles (< tile: overlapping tiles)

    def __post_init__(self) -> None:
        h, w = self.reference_size
        y0, x0, y1, x1 = self.strip_box
        _check(
            self.mode in ("fixed", "auto", *IMAGE_LAYOUTS),
            "layout.mode",
            f"must be fixed or auto, got {self.mode!r} (or grid or resize for image folders)",
        )
        check_int(self.tile, "layout.tile", 1, MAX_TILE)
        check_int(self.stride, "layout.stride", 1, MAX_TILE)
        _check(
            self.stride <= self.tile,
            "layout.stride",
            f"must be 1..tile ({self.tile}): a longer step leaves pixels in no tile",
        )
        _check(self.background in ("dark", "bright"), "layout.background", "must be dark or bright")
        _check(h > 0 and w > 0, "layout.reference_size", "must be positive")
        for side in (h, w):
            check_int(side, "layout.reference_size", 1, 2**16)
        _check(
            0 <= y0 < y1 <= h and 0 <= x0 < x1 <= w,
            "layout.strip_box",
            f"{self.strip_box} leaves the {h}x{w} reference image",
        )
        check_int(self.vials, "layout.vials", 1, 64)
        _check(len(self.regions) >= 1, "layout.regions", "needs at least one band")
        last = -1
        for i, (top, bottom) in enumerate(self.regions):
            _check(top < bottom, "layout.regions", f"band R{i} {top}..{bottom} is empty")
            _check(top >= last, "layout.regions", f"band R{i} {top}..{bottom} overlaps R{i - 1}")
            _check(top >= 0 and bottom <= h, "layout.regions", f"band R{i} leaves the image")
            last = bottom
        _check(self.max_shift >= 0, "layout.max_shift", "must be >= 0")
        _check(0 < self.max_size_error < 1, "layout.max_size_error", "must be in (0, 1)")

    def with_counts(self, vials: int | None, regions: int | None) -> LayoutConfig:
        """Override vial and region counts; other counts split the strip into equal bands."""
        out = self
        if vials is not None and vials != self.vials:
            out = dataclasses.replace(out, vials=vials)
        _check(vials is None or vials >= 1, "layout.vials", f"must be >= 1, got {vials}")
        _check(
            regions is None or regions >= 1,
            "layout.regions",
            f"needs at least one band, got {regions}",
        )
        if regions is not None and regions != len(self.regions):
            y0, _, y1, _ = self.strip_box
            edges = [round(y0 + (y1 - y0) * i / regions) for i in range(regions + 1)]
            bands = tuple((edges[i], edges[i + 1]) for i in range(regions))
            out = dataclasses.replace(out, regions=bands)
        return out


@dataclass(frozen=True)
class PatchConfig:
    size: int = 256  # px, output patches are size x size
    resize: str = (
        "auto"  # auto: INTER_AREA shrinking, INTER_LINEAR enlarging; native: cut, no resampling
    )
    frames: str = "all"  # all | first-eighth-last | comma list such as "0,7,15"
    kinds: tuple[str, ...] = KINDS  # which images are cut
    input_bits: int = 0  # significant bits of 16-bit input (e.g. 12); 0 = the dtype's full range
    subpixel: bool = True  # crops follow the registration's sub-pixel remainder (crop.py)
    rotation: bool = True  # registration measures the strip's tilt; windows follow it (layout.py)
    acq_per_task: int = 2  # per parallel task; small, so that the last tasks end together

    def __post_init__(self) -> None:
        check_int(self.size, "patch.size", 8, MAX_PATCH)
        _check(self.resize in ("auto", "native"), "patch.resize", "must be auto or native")
        _check(len(self.kinds) >= 1, "patch.kinds", "needs at least one kind")
        for k in self.kinds:
            _check(k in KINDS, "patch.kinds", f"unknown kind {k!r}; known: {', '.join(KINDS)}")
        _check(self.input_bits == 0 or 8 < self.input_bits <= 16, "patch.input_bits", "0 or 9..16")
        check_int(self.acq_per_task, "patch.acq_per_task", 1, 1024)
        try:
            parse_frames(self.frames, 10_000)
        except ConfigError as e:
            raise ConfigError(f"patch.{e}") from None


@dataclass(frozen=True)
class StoreConfig:
    cname: str = "lz4"  # blosc compressor (lossless); choice measured in benchmarks/codecs.py
    clevel: int = 5  # blosc compression level 0..9
    shuffle: str = "bitshuffle"  # blosc shuffle: noshuffle | shuffle | bitshuffle
    patch_shard: int = 256  # patches per shard file: the unit of writing and of ownership

    def __post_init__(self) -> None:
        _check(self.cname in ("zstd", "lz4", "lz4hc", "zlib", "blosclz"), "store.cname", "unknown")
        _check(0 <= self.clevel <= 9, "store.clevel", f"must be 0..9, got {self.clevel}")
        _check(self.shuffle in ("noshuffle", "shuffle", "bitshuffle"), "store.shuffle", "unknown")
        check_int(self.patch_shard, "store.patch_shard", 1, 2**16)


@dataclass(frozen=True)
class SplitConfig:
    val: float = 0.1  # share of training good strips held out for validation
    calib: float = 0.5  # share of the test kit used to fit thresholds (0 = in-sample, as the paper)
    test_good: int = 0  # good strips held out of training for the test kit
    seed: int = 0  # seed of the strip shuffle

    def __post_init__(self) -> None:
        _check(0 <= self.val < 1, "split.val", f"must be in [0, 1), got {self.val}")
        _check(0 <= self.calib < 1, "split.calib", f"must be in [0, 1), got {self.calib}")
        check_int(self.test_good, "split.test_good", 0, 10**6)


@dataclass(frozen=True)
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    kinds: tuple[str, ...] = KINDS  # which patch kinds train on
    seed: int = 0  # every random draw of training (shuffle, augmentation, init)
    method: str = "gan"  # gan (GRD-Net) | variation (per-position band, no TensorFlow)
    variation: VariationConfig = field(default_factory=VariationConfig)

    def __post_init__(self) -> None:
        for k in self.kinds:
            _check(k in KINDS, "train.kinds", f"unknown kind {k!r}")
        _check(self.method in ("gan", "variation"), "train.method", "must be gan or variation")


@dataclass(frozen=True)
class ReportConfig:
    policy: str = "accuracy"  # threshold policy: accuracy | balanced | frr:X | escape:X
    min_agree: int = 7  # runs of 10 that must confirm a strip's label (Knapp reject zone)
    alpha: float = 0.05  # Clopper-Pearson intervals are (1 - alpha), two-sided
    slot_ms: float = 500.0  # ms, acquisition slot the inference of one strip must fit
    gallery: int = 12  # most anomalous strips shown (misclassified ones are always shown)
    batch: int = 60  # patches per inference batch: one acquisition (3 frames x 5 x 4)
    # With several test kinds: auto = one threshold per (kind, region), each region judged by
    # the kinds that see its defects on calib (bfsdata.judging.kinds); all = every kind with
    # its own thresholds; pooled = one threshold per region over every kind's patches.
    kind_choice: str = "auto"
    kind_min_auroc: float = 0.75  # calib patch AUROC under which `auto` drops a kind there
    kind_margin: float = 0.0  # `auto` also drops a kind more than this under the region's best

    def __post_init__(self) -> None:
        _check(
            self.kind_choice in KIND_CHOICES,
            "report.kind_choice",
            f"{self.kind_choice!r} is not one of {', '.join(KIND_CHOICES)}",
        )
        _check(0.5 <= self.kind_min_auroc <= 1, "report.kind_min_auroc", "must be in [0.5, 1]")
        _check(0 <= self.kind_margin <= 0.5, "report.kind_margin", "must be in [0, 0.5]")
        try:
            parse_policy(self.policy)
        except ValueError as e:
            raise ConfigError(f"report.policy: {e}") from None
        _check(6 <= self.min_agree <= 10, "report.min_agree", "must be 6..10 (of 10 runs)")
        _check(0 < self.alpha < 1, "report.alpha", "must be in (0, 1)")
        _check(self.slot_ms > 0, "report.slot_ms", "must be > 0")
        check_int(self.gallery, "report.gallery", 0, 10_000)
        check_int(self.batch, "report.batch", 1, 2**16)


@dataclass(frozen=True)
class Pipeline:
    name: str = "bfs-5vial"
    acquisition: AcquisitionConfig = field(default_factory=AcquisitionConfig)
    layout: LayoutConfig = field(default_factory=LayoutConfig)
    patch: PatchConfig = field(default_factory=PatchConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    source: str = ""  # file the pipeline was read from
    sha256: str = ""  # of that file's bytes: provenance of every output

    def __post_init__(self) -> None:
        size, shard = self.patch.size, self.store.patch_shard
        _check(
            shard * size * size <= MAX_SHARD_BYTES,
            "store.patch_shard",
            f"{shard} patches of {size}x{size} px make shards over {MAX_SHARD_BYTES >> 20} MiB, "
            "each written whole from memory; use fewer patches per shard",
        )

    @property
    def model(self) -> ModelConfig:
        """The model config with its patch size taken from `patch.size` (stated once)."""
        return dataclasses.replace(self.train.model, patch_size=self.patch.size)


def parse_frames(spec: str, n_frames: int) -> tuple[int, ...]:
    """Frame selection `all`, `first-eighth-last` or `0,7,15` -> sorted frame indices."""
    spec = spec.strip()
    if spec == "all":
        return tuple(range(n_frames))
    if spec == "first-eighth-last":
        return tuple(sorted({0, min(7, n_frames - 1), n_frames - 1}))
    try:
        idx = sorted({int(s) for s in spec.split(",") if s.strip()})
    except ValueError:
        raise ConfigError(
            f"frames: {spec!r} is not all, first-eighth-last or a comma list of integers"
        ) from None
    if not idx or idx[0] < 0 or idx[-1] >= n_frames:
        raise ConfigError(f"frames: {spec!r} must name frames in 0..{n_frames - 1}")
    return tuple(idx)
