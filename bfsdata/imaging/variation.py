"""The variation model's kernels: a per-pixel ideal and tolerance band, and the band test.

HALCON's variation model (`train_variation_model`, `compare_variation_model`) on registered
patches: from good patches of one position (kind, vial, region) learn an ideal image m and a
variation image v; a pixel of a new patch x leaves the band when

    d = |x - m| / max(a, k * v) > 1

a: the narrowest half-width of the band, grey levels; k: the half-width in variation units.

Statistics, streamed one batch (B, P, P) at a time and mergeable, so partial results of threads
or dask tasks combine into the same model:
- `Moments`: mean and variance by Chan's parallel update of (n, mean, M2), float64 accumulators;
  the variation is the sample standard deviation (ddof 1; 0 from a single patch).
- `Reservoir` (the robust option): median and MAD (scaled by 1.4826, the standard deviation of
  normal data) of a bounded sample: the `size` patches with the smallest seeded hash of their
  id, so the sample depends on the ids and the seed only, not on batch order or partition.
  With no more patches than `size` it holds them all, and the result is exact.
`smooth` blurs the variation image (Gaussian, sigma in px): registration leaves the edges of
the product a fraction of a pixel apart from patch to patch, and smoothing spreads their high
variation over the pixels beside them. With `match_mean` a patch is compared less its mean grey
level (the ideal is brought to the patch's level): strips and runs differ in brightness as a
whole, and without it that spread is the variation image, everywhere.

The per-patch score, from the normalised deviation d:
- `area`: the largest 8-connected area of out-of-band pixels (d > 1), px: HALCON's way (regions
  filtered by area).
- `share`: the mean of the worst `share` of d (e.g. 1 %), like the GAN's `score_share`.
`area` is the default, chosen by measurement on the demo data of two seeds, thresholds fitted
on calib and judged on test (benchmarks/variation.py --quality; docs/performance.md, The
variation model): with a band wide enough that good patches rarely leave it (k 4-5) it judged
the strips better than `share` on one seed and as well on the other, and it says what a client
can check: how many pixels left the band. `share` needs no band (with a small a, k only
rescales d) and was steadier over bands, but no better at its best. The heatmap is the
out-of-band map, (d > 1) as 0 or 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

MAD_TO_STD = 1.4826  # MAD x this = the standard deviation, for normally distributed data
SCORES = ("area", "share")
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


class Moments:
    """Per-pixel count, mean and sum of squared deviations (M2) of a stream of patches."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.n = 0
        self.mean = np.zeros(shape, np.float64)
        self.m2 = np.zeros(shape, np.float64)

    def update(self, batch: np.ndarray) -> Moments:
        """Add a batch (B, *shape); returns self."""
        x = np.asarray(batch, np.float64)
        if len(x) == 0:
            return self
        part = Moments(x.shape[1:])
        part.n, part.mean = len(x), x.mean(axis=0)
        part.m2 = ((x - part.mean) ** 2).sum(axis=0)
        return self.merge(part)

    def merge(self, other: Moments) -> Moments:
        """Chan et al.'s combination of two partial results, into self; returns self."""
        n = self.n + other.n
        if other.n == 0:
            return self
        delta = other.mean - self.mean
        self.m2 = self.m2 + other.m2 + delta**2 * (self.n * other.n / n)
        self.mean = self.mean + delta * (other.n / n)
        self.n = n
        return self

    def std(self) -> np.ndarray:
        """Sample standard deviation per pixel (ddof 1), 0 from fewer than two patches."""
        if self.n < 2:
            return np.zeros_like(self.m2)
        return np.sqrt(self.m2 / (self.n - 1))


class Reservoir:
    """A bounded, seeded sample of a stream of patches, for the median and MAD per pixel."""

    def __init__(self, size: int, seed: int) -> None:
        if size < 1:
            raise ValueError(f"a reservoir holds at least 1 patch, got size {size}")
        self.size, self.seed = size, seed
        self.items: np.ndarray | None = None  # (<= size, P, P), as given
        self.keys = np.empty(0, np.uint64)  # their priorities: the smallest are kept
        self.ids = np.empty(0, np.int64)
        self.n = 0  # patches seen

    def update(self, batch: np.ndarray, ids: np.ndarray) -> Reservoir:
        """Offer a batch (B, P, P) with a unique id per patch (e.g. its store row)."""
        ids = np.asarray(ids, np.int64)
        if len(ids) != len(batch):
            raise ValueError(f"{len(batch)} patches but {len(ids)} ids")
        part = Reservoir(self.size, self.seed)
        part.items, part.ids, part.keys, part.n = (
            np.asarray(batch),
            ids,
            priority(ids, self.seed),
            len(ids),
        )
        return self.merge(part)

    def merge(self, other: Reservoir) -> Reservoir:
        """Keep the `size` smallest priorities of both (ties by id); returns self."""
        if other.items is None or len(other.ids) == 0:
            return self
        if self.items is None:
            items, keys, ids = other.items, other.keys, other.ids
        else:
            items = np.concatenate([self.items, other.items])
            keys = np.concatenate([self.keys, other.keys])
            ids = np.concatenate([self.ids, other.ids])
        keep = np.lexsort((ids, keys))[: self.size]
        self.items, self.keys, self.ids = items[keep], keys[keep], ids[keep]
        self.n += other.n
        return self

    def median_mad(self, match_mean: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(median, MAD x 1.4826) per pixel of the sample, float64; with match_mean, of the
        patches less their own mean (as `VariationModel.match_mean` compares them)."""
        if self.items is None:
            raise ValueError("an empty reservoir has no median")
        s = np.asarray(self.items, np.float64)
        if match_mean:
            s = s - s.mean(axis=(1, 2), keepdims=True)
        med = np.median(s, axis=0)
        return med, MAD_TO_STD * np.median(np.abs(s - med), axis=0)


def priority(ids: np.ndarray, seed: int) -> np.ndarray:
    """splitmix64 of (id, seed): a seeded pseudo-random uint64 per id, same on every machine."""
    with np.errstate(over="ignore"):
        z = np.asarray(ids).astype(np.uint64) + np.uint64(seed) * _GOLDEN + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def smooth(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of a (P, P) image, sigma px, edges repeated; sigma 0 returns it unchanged."""
    if sigma <= 0:
        return image
    from scipy import ndimage  # training only: scoring needs no scipy

    return ndimage.gaussian_filter(np.asarray(image, np.float64), sigma, mode="nearest")


def tolerance(variation: np.ndarray, a: float, k: float) -> np.ndarray:
    """The band's half-width per pixel, max(a, k * v), float32."""
    return np.maximum(np.float32(a), np.float32(k) * np.asarray(variation, np.float32))


def deviation(x: np.ndarray, ideal: np.ndarray, tol: np.ndarray) -> np.ndarray:
    """d = |x - ideal| / tol, float32, shapes broadcast ((B, P, P) against (B or 1, P, P))."""
    diff = np.subtract(x, ideal, dtype=np.float32)
    return np.divide(np.abs(diff, out=diff), tol, out=diff)


def largest_area(mask: np.ndarray) -> np.ndarray:
    """(B,) float32: px of the largest 8-connected true region of each (P, P) mask."""
    return np.array([_largest_area(m) for m in mask], np.float32)


def worst_share(d: np.ndarray, share: float) -> np.ndarray:
    """(B,) float32: mean of the largest `share` of each patch's values (at least one)."""
    n = max(1, math.ceil(share * d[0].size)) if len(d) else 1
    return np.array([_top_mean(p.ravel(), n) for p in d], np.float32)


def band_score(d: np.ndarray, how: str, share: float = 0.01) -> np.ndarray:
    """The per-patch score of d (B, P, P): `area` or `share` (see the module docstring)."""
    if how == "area":
        return largest_area(d > 1)
    if how == "share":
        return worst_share(d, share)
    raise ValueError(f"unknown variation score {how!r}; known: {', '.join(SCORES)}")


def _largest_area(mask: np.ndarray) -> float:
    """OpenCV's labelling without statistics, and a count of the labels under the mask only: a
    good patch has few out-of-band pixels, so this is a small part of the per-patch time."""
    if not mask.any():
        return 0.0
    _, labels = cv2.connectedComponents(mask.view(np.uint8), connectivity=8)
    return float(np.bincount(labels[mask]).max())


def _top_mean(flat: np.ndarray, n: int) -> float:
    """Mean of the n largest values, exactly, without partitioning the whole patch: a strided
    sample gives a bound that at least n values reach (else the whole patch is partitioned)."""
    sample = flat[::16]
    q = len(sample) - n // 16 - 8
    if q > 0:
        cand = flat[flat >= np.partition(sample, q)[q]]
        flat = cand if len(cand) >= n else flat
    return float(np.partition(flat, len(flat) - n)[-n:].mean(dtype=np.float64))


Key = tuple[str, int, int]  # (kind, vial, region) of a patch, as in the patches manifest


def key_arrays(keys: tuple[Key, ...]) -> dict[str, np.ndarray]:
    """Keys as plain arrays (kind, vial, region) for an npz file; `array_keys` reads them."""
    kinds, vials, regions = zip(*keys, strict=True) if keys else ((), (), ())
    return {
        "kind": np.array(kinds, dtype=str),
        "vial": np.array(vials, np.int64),
        "region": np.array(regions, np.int64),
    }


def array_keys(arrays) -> tuple[Key, ...]:
    cols = (arrays["kind"], arrays["vial"], arrays["region"])
    return tuple((str(k), int(v), int(r)) for k, v, r in zip(*cols, strict=True))


def slot(index: dict[Key, int], key: Key, missing: str) -> int:
    """index[key] of a patch's key; else ValueError `missing`, formatted with {where} (the
    position in words) and {kinds} (the kinds the index holds)."""
    kind, vial, region = key
    try:
        return index[(str(kind), int(vial), int(region))]
    except KeyError:
        where = f"kind {kind}, vial {vial}, region {region}"
        kinds = sorted({k[0] for k in index})
        raise ValueError(missing.format(where=where, kinds=kinds)) from None


@dataclass(frozen=True, eq=False)
class VariationModel:
    """Ideal and variation images per key, and how to compare: a, k, the score (and share)."""

    keys: tuple[Key, ...]
    ideal: np.ndarray  # (K, P, P) float32, grey levels 0..255
    variation: np.ndarray  # (K, P, P) float32, after smoothing
    a: float
    k: float
    score: str = "area"
    share: float = 0.01
    match_mean: bool = False  # each patch is shifted to the ideal's mean grey level first
    _tol: np.ndarray = field(init=False, repr=False, compare=False)
    _index: dict = field(init=False, repr=False, compare=False)
    _level: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.ideal.shape != self.variation.shape or len(self.keys) != len(self.ideal):
            raise ValueError(
                f"{len(self.keys)} keys, ideal {self.ideal.shape}, variation "
                f"{self.variation.shape}: one (P, P) ideal and variation image per key"
            )
        band_score(np.zeros((1, 1, 1), np.float32), self.score, self.share)  # a known score
        object.__setattr__(self, "_tol", tolerance(self.variation, self.a, self.k))
        object.__setattr__(self, "_index", {k: i for i, k in enumerate(self.keys)})
        object.__setattr__(self, "_level", self.ideal.mean(axis=(1, 2), dtype=np.float64))

    def __call__(self, x: np.ndarray, where: list[Key]) -> dict[str, np.ndarray]:
        """x (B, P, P) (or (B, P, P, 1)) grey levels 0..255, where: each patch's key ->
        score (B,), heatmap (B, P, P, 1) out-of-band map, reconstruction (B, P, P, 1) the ideal
        in [0, 1]: the shapes the GAN's exported model serves."""
        x = x[..., 0] if x.ndim == 4 else x
        if len(where) != len(x):
            raise ValueError(f"{len(x)} patches but {len(where)} keys")
        idx = np.array([self._slot(k) for k in where], np.intp)
        if x.shape[1:] != self.ideal.shape[1:]:
            raise ValueError(f"patches of {x.shape[1:]} px; the model's are {self.ideal.shape[1:]}")
        score = np.empty(len(x), np.float32)
        heat = np.empty((*x.shape, 1), np.float32)
        recon = np.empty((*x.shape, 1), np.float32)
        n = max(1, math.ceil(self.share * x[0].size)) if len(x) else 1
        for i, j in enumerate(idx):  # patch by patch: its arrays stay in the cache
            ideal = self.ideal[j]  # (P, P), brought to the patch's mean grey level:
            if self.match_mean:
                ideal = ideal + np.float32(x[i].mean(dtype=np.float64) - self._level[j])
            d = deviation(x[i], ideal, self._tol[j])  # (P, P)
            out = d > 1
            heat[i, ..., 0] = out
            recon[i, ..., 0] = ideal / np.float32(255)
            score[i] = _largest_area(out) if self.score == "area" else _top_mean(d.ravel(), n)
        return {"score": score, "heatmap": heat, "reconstruction": recon}

    def _slot(self, key: Key) -> int:
        return slot(
            self._index,
            key,
            "the variation model has no ideal for {where}: it was trained on {kinds}; train it on "
            "the kinds that are scored (train.kinds, acquisition.test_kinds)",
        )

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays (for an npz file) from which `from_arrays` rebuilds the model."""
        return {
            **key_arrays(self.keys),
            "ideal": self.ideal.astype(np.float32),
            "variation": self.variation.astype(np.float32),
            "a": np.float64(self.a),
            "k": np.float64(self.k),
            "score": np.array(self.score),
            "share": np.float64(self.share),
            "match_mean": np.bool_(self.match_mean),
        }

    @classmethod
    def from_arrays(cls, arrays) -> VariationModel:
        return cls(
            array_keys(arrays),
            np.asarray(arrays["ideal"], np.float32),
            np.asarray(arrays["variation"], np.float32),
            float(arrays["a"]),
            float(arrays["k"]),
            str(arrays["score"]),
            float(arrays["share"]),
            bool(arrays["match_mean"]),
        )
