"""The cut recipe: how the images of one acquisition become its patches, defined once (pure kernel).

`bfsdata patch` cuts the store's patches, `bfsdata verify` recomputes them and `bfsdata infer`
cuts new acquisitions for the model: all three take their settings from one `CutRecipe`, built
from the pipeline in one place (`CutRecipe.of`), find the windows with `locate` (strips) or a
tiling (image folders), and cut with one function, `cut`. So a patch cut at inference is the
patch the model was trained and validated on, bit for bit (tests/system/test_infer_cut.py).

A recipe holds every setting that changes a pixel of a patch:
    size, resize, input_bits   `crop.cut_patches`: output side, resampling, the 16-bit rule
    subpixel, rotation         windows follow the offset's sub-pixel remainder / the strip's tilt
                               (registration.py); always off for image folders, whose tiles are
                               never moved
    layout                     where the windows are: the pipeline's layout section, for strips
                               without `tile` and `stride` (image folders only)
Which images of an acquisition are cut (patch.frames and patch.kinds; infer's test images) is a
selection, not part of the recipe: it decides which patches exist, never a pixel of one.

`to_dict` is the recorded form: `bfsdata patch` writes it into the patches manifest's
provenance (`cut`), `train` into the exported model.json, `report` into thresholds.json, and
infer cuts with the one thresholds.json records. `from_dict` refuses unknown and missing keys,
so a recipe is never read half-understood.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from bfsdata.config.errors import ConfigError
from bfsdata.config.pipeline import IMAGE_LAYOUTS, LayoutConfig, PatchConfig, Pipeline
from bfsdata.imaging.crop import cut_patches
from bfsdata.imaging.registration import (
    Geometry,
    Registration,
    register,
    scale_layout,
    window_warp,
)
from bfsdata.imaging.tiling import Tiling, tiling_of

_KEYS = ("size", "resize", "input_bits", "subpixel", "rotation", "layout")
_LAYOUT_KEYS = tuple(f.name for f in dataclasses.fields(LayoutConfig))
_TILE_KEYS = ("tile", "stride")  # used by image folders only; not recorded for strips
_DEFAULT_LAYOUT = LayoutConfig()


class RecipeError(ValueError):
    """A recorded cut recipe that cannot be read; the message says which key and why."""


@dataclass(frozen=True)
class CutRecipe:
    size: int  # px, patches are size x size (patch.size)
    resize: str  # auto | native (patch.resize, crop.py)
    input_bits: int  # significant bits of 16-bit input, 0 = the dtype's range (patch.input_bits)
    subpixel: bool  # windows sample the offset's sub-pixel remainder (patch.subpixel)
    rotation: bool  # registration measures the tilt; windows follow it (patch.rotation)
    layout: LayoutConfig  # where the windows are (strips: tile and stride at their defaults)

    @classmethod
    def of(cls, pipe: Pipeline) -> CutRecipe:
        """The pipeline's recipe: the one place its settings are read for cutting."""
        p, layout = pipe.patch, pipe.layout
        tiles = layout.mode in IMAGE_LAYOUTS
        defaults = {k: getattr(_DEFAULT_LAYOUT, k) for k in _TILE_KEYS}
        if not tiles and any(getattr(layout, k) != v for k, v in defaults.items()):
            layout = dataclasses.replace(layout, **defaults)  # unused by strips, not recorded
        return cls(
            size=p.size,
            resize=p.resize,
            input_bits=p.input_bits,
            subpixel=p.subpixel and not tiles,
            rotation=p.rotation and not tiles,
            layout=layout,
        )

    @property
    def tiles(self) -> bool:
        """Image folders: windows from a tiling, not from a registration."""
        return self.layout.mode in IMAGE_LAYOUTS

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (lists, not tuples): what is recorded and compared."""
        layout = {k: _plain(getattr(self.layout, k)) for k in _layout_keys(self.layout.mode)}
        out = {k: getattr(self, k) for k in _KEYS[:-1]}
        return {**out, "layout": layout}

    @classmethod
    def from_dict(cls, doc: Any) -> CutRecipe:
        """The recipe `to_dict` wrote; RecipeError on unknown or missing keys or bad values."""
        _check_keys(doc, _KEYS, "cut")
        layout = doc["layout"]
        if not isinstance(layout, dict):
            raise RecipeError(
                f"cut.layout: expected a mapping of the layout's keys, got {layout!r}"
            )
        mode = layout.get("mode")
        if mode not in ("fixed", "auto", *IMAGE_LAYOUTS):
            raise RecipeError(f"cut.layout.mode: {mode!r} is not fixed, auto, grid or resize")
        _check_keys(layout, _layout_keys(mode), "cut.layout")
        for key in ("subpixel", "rotation"):
            if not isinstance(doc[key], bool):
                raise RecipeError(f"cut.{key}: must be true or false, got {doc[key]!r}")
        for key in ("size", "input_bits"):
            if isinstance(doc[key], bool) or not isinstance(doc[key], int):
                raise RecipeError(f"cut.{key}: must be an integer, got {doc[key]!r}")
        try:  # the pipeline's own rules for valid values
            PatchConfig(**{k: doc[k] for k in _KEYS[:-1]})
            config = LayoutConfig(**{k: _tuples(v) for k, v in layout.items()})
        except (ConfigError, TypeError) as e:
            raise RecipeError(f"cut: {e}") from None
        return cls(**{k: doc[k] for k in _KEYS[:-1]}, layout=config)

    def differences(self, other: CutRecipe) -> dict[str, tuple[Any, Any]]:
        """{key: (this value, other value)} of every setting that differs; `layout.vials` style
        keys, in recorded order. Empty: the same recipe."""
        mine, theirs = _flat(self.to_dict()), _flat(other.to_dict())
        keys = [*mine, *(k for k in theirs if k not in mine)]
        return {k: (mine.get(k), theirs.get(k)) for k in keys if mine.get(k) != theirs.get(k)}

    def geometry(self, height: int, width: int) -> Geometry:
        """The strip layout scaled to a height x width image (registration.scale_layout)."""
        return scale_layout(self.layout, height, width)

    def tiling(self, height: int, width: int, where: str = "") -> Tiling:
        """The image-folder tiling of a height x width image (tiling.tiling_of)."""
        return tiling_of(self.layout, height, width, where)


@dataclass(frozen=True)
class Windows:
    """Where one acquisition is cut; the same windows serve all its frames and rank images."""

    boxes: np.ndarray  # (N, 4) int (y0, x0, y1, x1), end-exclusive, vial-major
    offsets: np.ndarray | None = None  # (N, 2) (dy, dx) px of each window's centre; None: tiles
    angle: float = 0.0  # degrees, counter-clockwise on screen (registration.py)

    @classmethod
    def of(cls, reg: Registration) -> Windows:
        return cls(reg.boxes.reshape(-1, 4), reg.flat_offsets, reg.angle)

    def warp(self, recipe: CutRecipe) -> dict:
        """`crop.cut_patches` keywords: the sub-pixel remainder and the angle when the recipe
        follows them (registration.window_warp), none for whole-pixel windows."""
        if self.offsets is None:
            return {}
        return window_warp(self.offsets, self.angle, recipe.subpixel)


def locate(rank_max: np.ndarray, geo: Geometry, recipe: CutRecipe) -> Registration:
    """Register a strip acquisition on its (H, W) max rank image as the recipe says."""
    return register(rank_max, geo, recipe.rotation)


def cut(
    images: Iterable[np.ndarray],
    windows: Windows,
    recipe: CutRecipe,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """(H, W) images of one acquisition -> (I * N, size, size) uint8 patches, image-major:
    image i's N windows are rows i * N .. (i + 1) * N - 1.

    images: any iterable, consumed one image at a time (patch passes a generator that waits
    for each frame's read, so cutting starts before the last frame is decoded).
    out: a C-contiguous (I * N, size, size) uint8 array to fill and return (patch's reused
    buffer); None: a new one.
    """
    n = len(windows.boxes)
    if out is None:
        images = list(images)
        out = np.empty((len(images) * n, recipe.size, recipe.size), dtype=np.uint8)
    warp = windows.warp(recipe)  # once per acquisition: every image shares the windows
    count = 0
    for i, image in enumerate(images):
        part = out[i * n : (i + 1) * n]
        cut_patches(
            image, windows.boxes, recipe.size, recipe.resize, recipe.input_bits, **warp, out=part
        )
        count = i + 1
    if count * n != len(out):
        raise ValueError(f"out holds {len(out)} patches; {count} images x {n} windows cut")
    return out


def _layout_keys(mode: str) -> tuple[str, ...]:
    if mode in IMAGE_LAYOUTS:
        return _LAYOUT_KEYS
    return tuple(k for k in _LAYOUT_KEYS if k not in _TILE_KEYS)


def _check_keys(doc: Any, keys: tuple[str, ...], where: str) -> None:
    if not isinstance(doc, dict):
        raise RecipeError(f"{where}: expected a mapping of {', '.join(keys)}, got {doc!r}")
    unknown = sorted(set(doc) - set(keys))
    if unknown:
        raise RecipeError(
            f"{where}: unknown key(s) {', '.join(unknown)}; this bfsdata knows {', '.join(keys)} "
            "(a recipe written by a newer bfsdata?)"
        )
    missing = [k for k in keys if k not in doc]
    if missing:
        raise RecipeError(f"{where}: missing key(s) {', '.join(missing)}")


def _plain(v: Any) -> Any:
    return [_plain(x) for x in v] if isinstance(v, tuple | list) else v


def _tuples(v: Any) -> Any:
    return tuple(_tuples(x) for x in v) if isinstance(v, list | tuple) else v


def _flat(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in doc.items():
        if isinstance(v, dict):
            out |= _flat(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out
