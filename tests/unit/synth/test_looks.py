"""The look knobs of SynthConfig: each moves the images the way it says, defaults change nothing.

Renders are tiny (256 x 320, a few frames) and go through `synth` itself, so the knobs are
checked as the writer wires them. "Still" renders (no re-grip, unit gain, no noise) put every
nominal position at a known pixel: nominal x, y -> column x / 4, row y / 4.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from bfsdata.synth import LOOKS, SynthConfig, look_config, synth
from bfsdata.synth.defects import DEFECT_SPECS, place_defect
from bfsdata.synth.geometry import Geometry, VialShape
from bfsdata.synth.motion import BUBBLES_PER_VIAL, DROP_CHANCE, plan_motion
from bfsdata.synth.plan import plan_dataset
from bfsdata.synth.product import render_product
from tests.cli_helpers import invoke, ok, refused

BASE: dict[str, Any] = {
    "strips": 1,
    "runs": 1,
    "frames": 8,
    "height": 256,
    "width": 320,
    "defect_fraction": 0.0,
}
STILL: dict[str, Any] = {"shift_px": 0.0, "rotation_deg": 0.0, "gain": (1.0, 1.0)}
BODY_ROWS = slice(150, 175)  # nominal y 600..700: liquid, below every meniscus
FLAG_ROWS = slice(25, 50)  # nominal y 100..200
BOUNDARY_23 = 130  # column of the nominal boundary x = 520 between vials 2 and 3
# Array digests of two renders by the code before the look knobs existed (numpy and OpenCV as
# locked): `a` holds every defect kind but the scratch, on 8 bits; `b` is 16 bits.
REFERENCE = {
    "a": (
        {"strips": 6, "runs": 2, "frames": 3, "height": 128, "width": 160, "seed": 9},
        "4d69e66e1921fd3b2b86435e02005d3ce06bba0daad0809c4ac78eb46e4a55bd",
    ),
    "b": (
        {"strips": 2, "runs": 1, "frames": 2, "height": 256, "width": 320, "seed": 3},
        "bb1f02f95b57afe09beb30295d37ec66b8b9c3b6b6f5b920b7930db65b83c0c2",
    ),
}
AT_DEFAULT: dict[str, Any] = {
    "defect_size": None,
    "rims": "dark",
    "clutter": 1.0,
    "body_width": 0.95,
    "flag_width": 1.0,
    "vial_gap": 0.0,
    "neck_length": 38.0,
    "strip_scale": 1.0,
    "gradient": 0.0,
    "gradient_deg": 0.0,
}


def _read(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert img is not None, path
    return img


def _render(tmp_path: Path, **knobs: Any) -> np.ndarray:
    """(runs, frames, H, W) of strip S0000 of a fresh dataset."""
    cfg = SynthConfig(**{**BASE, **knobs})
    out = tmp_path / f"r{len(list(tmp_path.iterdir()))}"
    synth(out, cfg)
    return np.stack(
        [
            [_read(out / "S0000" / f"run_{r}" / f"frame_{f}.png") for f in range(cfg.frames)]
            for r in range(1, cfg.runs + 1)
        ]
    )


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.suffix == ".png":
            a = _read(p)
            h.update(str(p.relative_to(root)).encode() + str(a.dtype).encode() + a.tobytes())
        elif p.suffix == ".csv":
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_new_knobs_at_their_defaults_render_the_reference_bytes(tmp_path: Path, name: str) -> None:
    sizes, expected = REFERENCE[name]
    depth = 16 if name == "b" else 8
    for i, extra in enumerate(({}, AT_DEFAULT)):
        cfg = SynthConfig(**sizes, defect_fraction=1.0, bit_depth=depth, **extra)
        synth(tmp_path / str(i), cfg)
        assert _digest(tmp_path / str(i)) == expected


def test_bright_rims_raise_the_max_rank_image_and_change_nothing_else(tmp_path: Path) -> None:
    dark, bright, both = (
        _render(tmp_path, runs=2, rims=r, clutter=2.0).astype(int)
        for r in ("dark", "bright", "both")
    )
    moved = np.abs(bright - dark).max(axis=(0, 1))  # (H, W)
    assert not moved[: FLAG_ROWS.stop].any()  # flag: the noise is the same stream
    liquid = np.s_[:, 125:187]  # nominal y 500..748: where bubbles live
    assert (bright.max(axis=1) - dark.max(axis=1))[liquid].max() >= 15
    assert (bright.min(axis=1) - dark.min(axis=1))[liquid].max() >= 15  # no dark rim left
    # both: some bubbles bright (max rank above dark's), some dark (min rank below bright's)
    assert (both.max(axis=1) - dark.max(axis=1))[liquid].max() >= 15
    assert (both.min(axis=1) - bright.min(axis=1))[liquid].min() <= -15


def test_foam_defect_follows_the_rim_polarity() -> None:
    geom = Geometry(256, 320)
    foam = place_defect(np.random.default_rng(0), "foam", 3, 2, severity=(1.0, 1.0))

    def mark(rims: str) -> np.ndarray:
        with_foam = render_product(geom, (foam,), np.random.default_rng(1), rims)
        return with_foam - render_product(geom, (), np.random.default_rng(1))

    dark, bright, both = mark("dark"), mark("bright"), mark("both")
    assert dark.min() <= -10 and np.allclose(bright, -dark, atol=1e-3)
    assert both.max() >= 10 and both.min() <= -10


def test_clutter_multiplies_the_moving_bubbles(tmp_path: Path) -> None:
    def moving(clutter: float) -> int:
        frames = _render(tmp_path, strips=2, runs=2, noise_sigma=0.0, clutter=clutter)
        return int((np.ptp(frames[:, :, BODY_ROWS], axis=1) > 10).sum())

    none, normal, many = moving(0.0), moving(1.0), moving(4.0)
    assert none == 0 < normal  # below the meniscus only bubbles move
    assert many > 1.5 * normal  # fewer than 4x the pixels: tracks overlap, many burst early


@pytest.mark.parametrize("clutter", [0.5, 1.0, 4.0, 7.5])
def test_clutter_scales_the_mean_number_of_bubbles_and_drops(clutter: float) -> None:
    runs, found = 600, np.zeros(2)  # (bubbles, drops) over all runs
    for seed in range(runs):
        motion = plan_motion(np.random.default_rng(seed), 8, VialShape(), clutter)
        found += [sum(not f.drop for f in motion.floaters), sum(f.drop for f in motion.floaters)]
    per_vial = found / (runs * 5)
    assert per_vial[0] == pytest.approx(BUBBLES_PER_VIAL * clutter, rel=0.1)
    assert per_vial[1] == pytest.approx(DROP_CHANCE * clutter, rel=0.25)


def test_separate_vials_cut_background_gaps_and_nothing_else(tmp_path: Path) -> None:
    joined, apart = (
        _render(tmp_path, **STILL, body_width=0.85, vial_gap=gap)[0, 0].astype(int)
        for gap in (0.0, 24.0)
    )
    gap = slice(BOUNDARY_23 - 2, BOUNDARY_23 + 2)  # nominal 512..528: inside the 24 px gap
    for rows in (FLAG_ROWS, BODY_ROWS):
        assert joined[rows, gap].min() >= 80  # web or flag
        assert apart[rows, gap].max() <= 30  # background
    changed = np.flatnonzero(np.abs(apart - joined).max(axis=0))
    for boundary in (70, 130, 190, 250):  # every gap, 6 px wide, and its soft edges
        near = changed[np.abs(changed + 0.5 - boundary) <= 4]
        assert near.size >= 6
    assert np.all(np.min(np.abs(changed[:, None] + 0.5 - [70, 130, 190, 250]), axis=1) <= 4)


def test_narrow_flags_show_background_between_them(tmp_path: Path) -> None:
    wide, narrow = (
        _render(tmp_path, **STILL, noise_sigma=0.0, flag_width=w)[0, 0].astype(int)
        for w in (1.0, 0.7)
    )
    between = slice(BOUNDARY_23 - 4, BOUNDARY_23 + 4)  # 84 px flag half: 36 px apart
    assert wide[FLAG_ROWS, between].min() >= 120
    assert narrow[FLAG_ROWS, between].max() <= 30
    assert np.array_equal(wide[68:], narrow[68:])  # below the flag (nominal 272): the same


def test_narrow_bodies_leave_web_beside_them(tmp_path: Path) -> None:
    wide, narrow = (
        _render(tmp_path, **STILL, noise_sigma=0.0, body_width=w)[0, 0].astype(float)
        for w in (0.95, 0.78)
    )
    col = round((640 + 106) / 4)  # vial 3: inside a 114 px half body, outside 93.6
    assert narrow[BODY_ROWS, col].mean() < wide[BODY_ROWS, col].mean() - 30
    assert narrow[BODY_ROWS, col].mean() == pytest.approx(90, abs=10)  # the web


def test_a_longer_neck_moves_the_shoulder_down(tmp_path: Path) -> None:
    short, long = (
        _render(tmp_path, **STILL, noise_sigma=0.0, neck_length=n)[0, 0].astype(float)
        for n in (38.0, 80.0)
    )
    at = np.s_[79:81, 174:176]  # nominal y 320, x 700: 60 px off vial 3's axis
    assert short[at].min() >= 140  # the shoulder has widened past 60 px
    assert long[at].max() <= 100  # still the 30 px neck: web beside it


def test_strip_scale_widens_the_margins(tmp_path: Path) -> None:
    full, small = (
        _render(tmp_path, **STILL, noise_sigma=0.0, strip_scale=s)[0, 0].astype(float)
        for s in (1.0, 0.8)
    )
    row = full[BODY_ROWS].mean(axis=0)
    row_small = small[BODY_ROWS].mean(axis=0)
    # First product column: nominal 40 -> px 10; at 0.8 about the centre, 160 -> px 40.
    assert int(np.argmax(row > 60)) == 10
    assert int(np.argmax(row_small > 60)) == 40
    assert int(np.flatnonzero(row_small > 60)[-1]) == 279


@pytest.mark.parametrize(("deg", "axis"), [(0.0, 1), (90.0, 0), (180.0, 1)])
def test_gradient_makes_one_side_brighter(tmp_path: Path, deg: float, axis: int) -> None:
    plain, lit = (
        _render(tmp_path, noise_sigma=0.0, gradient=g, gradient_deg=deg)[0, 0].astype(float)
        for g in (0.0, 0.5)
    )
    ratio = (lit.mean(axis=1 - axis) + 1) / (plain.mean(axis=1 - axis) + 1)  # along the axis
    if deg == 180.0:
        ratio = ratio[::-1]
    assert ratio[:8].mean() == pytest.approx(0.5, abs=0.05)
    assert ratio[-8:].mean() == pytest.approx(1.0, abs=0.03)
    assert np.all(np.diff(np.convolve(ratio, np.ones(9) / 9, mode="valid")) > -0.01)


def test_12_bit_frames_fill_12_bits_of_uint16(tmp_path: Path) -> None:
    eight, twelve = (_render(tmp_path, bit_depth=b)[0] for b in (8, 12))
    assert twelve.dtype == np.uint16
    assert 255 < twelve.max() < 4096
    # Same image, finer steps: half an 8-bit step plus half a 12-bit one apart at most.
    assert np.abs(twelve / (4095 / 255) - eight).max() <= 0.5 + 0.5 * 255 / 4095 + 1e-6


def test_defect_size_is_drawn_apart_from_the_contrast() -> None:
    cfg = SynthConfig(
        strips=30, runs=1, defect_fraction=1.0, severity=(0.0, 0.25), defect_size=(0.75, 1.0)
    )
    defects = [d for p in plan_dataset(cfg) for d in p.defects]
    assert len(defects) >= 30
    for d in defects:
        spec = DEFECT_SPECS[d.kind]
        if d.kind != "scratch":  # placement may shorten a scratch to fit its band
            lo, hi = np.log(spec.size)
            assert (np.log(d.size) - lo) / (hi - lo) >= 0.75 - 1e-9, d
        if spec.contrast[1] > 0:
            lo, hi = np.log(spec.contrast)
            assert (np.log(d.contrast) - lo) / (hi - lo) <= 0.25 + 1e-9, d


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"rims": "grey"}, "synth rims must be one of dark, bright, both"),
        ({"clutter": -1.0}, r"synth clutter must be in \[0.0, 10.0\]"),
        ({"body_width": 0.5}, r"synth body_width must be in \[0.7, 0.95\]"),
        ({"flag_width": 1.2}, r"synth flag_width must be in \[0.6, 1.0\]"),
        ({"vial_gap": 20.0}, r"synth vial_gap must be in \[0, 12\] px with body_width=0.95"),
        ({"vial_gap": 50.0, "body_width": 0.7}, r"synth vial_gap must be in \[0, 40\] px"),
        ({"neck_length": 200.0}, r"synth neck_length must be in \[10.0, 100.0\] px"),
        ({"strip_scale": 1.2}, r"synth strip_scale must be in \[0.6, 1.0\]"),
        ({"gradient": 0.9}, r"synth gradient must be in \[0.0, 0.8\]"),
        ({"gradient_deg": "left"}, r"synth gradient_deg must be in \[-360.0, 360.0\] degrees"),
        ({"bit_depth": 10}, "synth bit_depth must be 8, 12 or 16"),
        ({"defect_size": (0.6, 0.2)}, r"synth defect_size must be a range \(lo, hi\)"),
        ({"clutter": True}, "synth clutter must be in"),
    ],
)
def test_config_rejects_bad_look_knobs_naming_the_field(change: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SynthConfig(**change)


def test_looks_are_valid_and_move_along_different_axes() -> None:
    assert LOOKS["default"] == {}
    changed = [frozenset(knobs) for name, knobs in LOOKS.items() if name != "default"]
    assert len(changed) >= 6 and len(set(changed)) == len(changed)
    for name in LOOKS:
        cfg = look_config(name, strips=2)
        assert cfg.strips == 2
        for key, value in LOOKS[name].items():
            assert getattr(cfg, key) == value and value != getattr(SynthConfig(), key), name
    with pytest.raises(ValueError, match="unknown synth look 'foggy'; known looks: default"):
        look_config("foggy")


def test_cli_look_and_overrides(tmp_path: Path) -> None:
    small = ["--strips", "1", "--runs", "1", "--frames", "2", "--height", "128", "--width", "160"]
    ok(invoke("synth", tmp_path / "12", *small, "--look", "12bit"))
    img = _read(tmp_path / "12" / "S0000" / "run_1" / "frame_0.png")
    assert img.dtype == np.uint16 and 255 < img.max() < 4096
    # An option overrides its look: bright-bubbles with dark rims is the default look.
    ok(invoke("synth", tmp_path / "a", *small, "--look", "bright-bubbles", "--rims", "dark"))
    ok(invoke("synth", tmp_path / "b", *small))
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    ok(invoke("synth", tmp_path / "c", *small, "--vial-gap", "8", "--gain", "0.9,1.0"))
    assert _digest(tmp_path / "c") != _digest(tmp_path / "b")
    assert "unknown synth look 'foggy'" in refused(
        invoke("synth", tmp_path / "d", "--look", "foggy")
    )
    assert "synth vial_gap must be in" in refused(
        invoke("synth", tmp_path / "e", *small, "--vial-gap", "30")
    )
    assert "--gain '1'" in refused(invoke("synth", tmp_path / "f", *small, "--gain", "1"))
