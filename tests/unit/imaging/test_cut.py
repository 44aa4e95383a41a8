"""The cut recipe (bfsdata.imaging.cut): built from the pipeline in one place, recorded as a plain
dict and read back strictly, compared key by key; and `cut`, the one function that turns an
acquisition's images into patches."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from bfsdata.config.pipeline import LayoutConfig, Pipeline
from bfsdata.imaging.crop import cut_patches
from bfsdata.imaging.cut import CutRecipe, RecipeError, Windows, cut
from bfsdata.imaging.registration import window_warp


def _pipe(layout: LayoutConfig | None = None, **patch: object) -> Pipeline:
    base = Pipeline()
    return dataclasses.replace(
        base,
        layout=layout or base.layout,
        patch=dataclasses.replace(base.patch, **patch),
    )


STRIP = _pipe(
    LayoutConfig(mode="auto", vials=4, tile=64, stride=32, background="bright"),
    size=64,
    resize="native",
    input_bits=12,
    subpixel=False,
    rotation=True,
)
GRID = _pipe(LayoutConfig(mode="grid", tile=48, stride=40), size=32)


def _json(doc: dict) -> dict:
    return json.loads(json.dumps(doc))  # as thresholds.json and the manifest record keep it


# --- the recipe of a pipeline ---------------------------------------------------------------


def test_the_recipe_holds_the_pipelines_cut_settings() -> None:
    r = CutRecipe.of(STRIP)
    assert (r.size, r.resize, r.input_bits, r.subpixel, r.rotation) == (
        64,
        "native",
        12,
        False,
        True,
    )
    # strips: the layout as given, but tile and stride (image folders only) at their defaults
    assert r.layout == dataclasses.replace(STRIP.layout, tile=256, stride=256)
    assert not r.tiles


def test_image_folder_recipes_never_move_or_turn_tiles() -> None:
    r = CutRecipe.of(GRID)  # the pipeline keeps patch.subpixel and rotation on (defaults)
    assert GRID.patch.subpixel and GRID.patch.rotation
    assert (r.subpixel, r.rotation, r.tiles) == (False, False, True)
    assert (r.layout.tile, r.layout.stride) == (48, 40)


def test_settings_outside_the_cut_do_not_change_the_recipe() -> None:
    """Which images are cut (frames, kinds) and how tasks are sized select patches; they never
    change a pixel of one."""
    patch = dataclasses.replace(STRIP.patch, frames="0,3", kinds=("frame",), acq_per_task=9)
    other = dataclasses.replace(STRIP, patch=patch, acquisition=dataclasses.replace(
        STRIP.acquisition, test_frames=(1,)
    ))  # fmt: skip
    assert CutRecipe.of(other) == CutRecipe.of(STRIP)


# --- recorded as a dict ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "pipe",
    [Pipeline(), STRIP, GRID, _pipe(LayoutConfig(mode="resize"), size=16)],
    ids=["default", "auto", "grid", "resize"],
)
def test_dict_round_trip(pipe: Pipeline) -> None:
    r = CutRecipe.of(pipe)
    doc = _json(r.to_dict())
    assert doc == r.to_dict()  # plain JSON types already: lists, not tuples
    assert CutRecipe.from_dict(doc) == r


def test_strip_recipes_record_the_layout_as_the_store_settings_do() -> None:
    """The store's `settings` attribute has recorded the layout without tile and stride for
    strips since before tiles existed: the recipe records the same, so older stores match."""
    layout = dataclasses.asdict(STRIP.layout)
    del layout["tile"], layout["stride"]
    assert CutRecipe.of(STRIP).to_dict()["layout"] == _json(layout)
    assert CutRecipe.of(GRID).to_dict()["layout"] == _json(dataclasses.asdict(GRID.layout))


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda d: d | {"sharpen": 1}, r"cut: unknown key\(s\) sharpen; this bfsdata knows size"),
        (lambda d: d | {"layout": d["layout"] | {"tilt": 0}}, r"cut.layout: unknown key\(s\) tilt"),
        (lambda d: {k: v for k, v in d.items() if k != "rotation"}, r"missing key\(s\) rotation"),
        (lambda d: d | {"layout": d["layout"] | {"tile": 8}}, r"cut.layout: unknown key\(s\) tile"),
        (lambda d: d | {"subpixel": 1}, "cut.subpixel: must be true or false, got 1"),
        (lambda d: d | {"size": 32.0}, "cut.size: must be an integer, got 32.0"),
        (lambda d: d | {"resize": "cubic"}, "cut: patch.resize: must be auto or native"),
        (lambda d: d | {"layout": d["layout"] | {"vials": 0}}, "cut: layout.vials: must be >= 1"),
        (lambda d: d | {"layout": d["layout"] | {"mode": "spiral"}}, "'spiral' is not fixed"),
        (lambda d: d | {"layout": [1, 2]}, "cut.layout: expected a mapping"),
        (lambda d: [d], "cut: expected a mapping of size, resize"),
    ],
    ids=[
        "unknown", "unknown-layout", "missing", "tile-for-strips", "bool", "int", "resize",
        "vials", "mode", "layout-type", "type",
    ],
)  # fmt: skip
def test_a_recipe_that_cannot_be_read_is_refused(change, match: str) -> None:
    doc = _json(CutRecipe.of(Pipeline()).to_dict())
    with pytest.raises(RecipeError, match=match):
        CutRecipe.from_dict(change(doc))


# --- compared ------------------------------------------------------------------------------


def test_differences_name_every_differing_setting_with_both_values() -> None:
    a = CutRecipe.of(Pipeline())
    assert a.differences(CutRecipe.of(Pipeline())) == {}
    b = CutRecipe.of(_pipe(dataclasses.replace(Pipeline().layout, vials=4), subpixel=False))
    assert a.differences(b) == {"subpixel": (True, False), "layout.vials": (5, 4)}
    # modes with other layout keys: the keys only one side has are listed too
    diff = a.differences(CutRecipe.of(GRID))
    assert diff["layout.mode"] == ("fixed", "grid") and diff["layout.tile"] == (None, 48)
    assert diff["size"] == (256, 32) and diff["rotation"] == (True, False)


# --- cut ---------------------------------------------------------------------------------


@pytest.fixture
def acquisition() -> tuple[np.ndarray, Windows]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 4096, (3, 60, 70), dtype=np.uint16)  # (I, H, W) 12-bit frames
    boxes = np.array([[5, 6, 29, 30], [20, 30, 50, 64], [2, 40, 18, 56]])  # (N, 4)
    offsets = np.array([[0.3, -1.4], [2.2, 0.45], [-0.6, 3.0]])  # (N, 2) window centre moves
    return images, Windows(boxes, offsets, angle=0.7)


@pytest.mark.parametrize("subpixel", [True, False])
def test_cut_is_the_crop_kernel_with_the_recipes_settings(acquisition, subpixel: bool) -> None:
    images, windows = acquisition
    recipe = dataclasses.replace(CutRecipe.of(STRIP), size=24, resize="auto", subpixel=subpixel)
    warp = window_warp(windows.offsets, windows.angle, subpixel)
    want = np.concatenate([cut_patches(im, windows.boxes, 24, "auto", 12, **warp) for im in images])
    got = cut(images, windows, recipe)
    assert got.shape == (3 * 3, 24, 24) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, want)
    if subpixel:  # the windows moved: not the whole-pixel cut
        plain = cut(images, Windows(windows.boxes), recipe)
        assert not np.array_equal(got, plain)


def test_cut_fills_the_callers_buffer_from_a_generator(acquisition) -> None:
    images, windows = acquisition
    recipe = dataclasses.replace(CutRecipe.of(STRIP), size=16, resize="auto")
    out = np.zeros((9, 16, 16), np.uint8)
    seen = []

    def each():
        for im in images:
            seen.append(len(seen))
            yield im

    assert cut(each(), windows, recipe, out=out) is out
    assert seen == [0, 1, 2]
    np.testing.assert_array_equal(out, cut(images, windows, recipe))
    with pytest.raises(ValueError, match="out holds 9 patches; 2 images x 3 windows cut"):
        cut(images[:2], windows, recipe, out=out)
    with pytest.raises(ValueError, match=r"out must be \(3, 16, 16\) uint8"):
        cut(images, windows, recipe, out=out[:8])
