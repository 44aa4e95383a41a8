"""bfsdata.synth: layout, labels, determinism, ground-truth re-grip, defects, liquid, errors."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from bfsdata.synth import SynthConfig, SynthSummary, synth
from bfsdata.synth.camera import regrip_matrix, render_run
from bfsdata.synth.defects import DEFECT_SPECS, place_defect
from bfsdata.synth.geometry import Geometry, region_box
from bfsdata.synth.plan import n_defective, plan_dataset
from bfsdata.synth.product import render_product

SMALL = {"height": 128, "width": 160}
MEDIUM = {"height": 256, "width": 320}  # 1/4 scale: the 40 px margin is 10 px


def _read(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert img is not None, path
    return img


def _stack(out: Path, strip: str, run: int, frames: int) -> np.ndarray:
    return np.stack([_read(out / strip / f"run_{run}" / f"frame_{f}.png") for f in range(frames)])


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_layout_labels_and_summary(tmp_path: Path) -> None:
    cfg = SynthConfig(strips=3, runs=2, frames=3, **SMALL)
    summary = synth(tmp_path / "raw", cfg)

    assert isinstance(summary, SynthSummary)
    assert (summary.strips, summary.runs, summary.frames, summary.defective) == (3, 2, 3, 2)
    expected = {"labels.csv"} | {
        f"S{s:04d}/run_{r}/frame_{f}.png" for s in range(3) for r in (1, 2) for f in range(3)
    }
    assert set(_files(tmp_path / "raw")) == expected  # no .tmp files left behind
    img = _read(tmp_path / "raw" / "S0000" / "run_1" / "frame_0.png")
    assert img.dtype == np.uint8 and img.shape == (128, 160)

    text = (tmp_path / "raw" / "labels.csv").read_text()
    assert text.splitlines()[0] == "strip,label,defect,vial,region"
    assert ".0" not in text
    labels = pd.read_csv(tmp_path / "raw" / "labels.csv", dtype={"strip": str})
    assert set(labels["strip"]) == {"S0000", "S0001", "S0002"}
    good = labels[labels["label"] == "good"]
    assert len(good) == 1 and good[["defect", "vial", "region"]].isna().all().all()
    bad = labels[labels["label"] == "defect"]
    assert bad["strip"].nunique() == 2
    for row in bad.itertuples():
        assert row.defect in DEFECT_SPECS
        assert 1 <= row.vial <= 5 and row.region in DEFECT_SPECS[row.defect].regions

    t = summary.transforms
    assert list(t.columns) == ["strip", "run", "dx", "dy", "angle_deg", "gain"]
    assert len(t) == 6
    assert (t["dx"].abs() <= cfg.shift_px * 160 / 1280).all()
    assert t["gain"].between(*cfg.gain).all()


def test_same_config_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    cfg = SynthConfig(strips=2, runs=2, frames=3, workers=2, **SMALL)
    synth(tmp_path / "a", cfg)
    synth(tmp_path / "b", replace(cfg, workers=1))  # thread count must not matter
    synth(tmp_path / "c", replace(cfg, seed=1))
    a, b, c = (_files(tmp_path / name) for name in "abc")
    assert a == b
    assert a.keys() == c.keys()
    assert a["S0000/run_1/frame_0.png"] != c["S0000/run_1/frame_0.png"]


def test_16_bit_is_the_8_bit_image_scaled(tmp_path: Path) -> None:
    cfg = SynthConfig(strips=1, runs=1, frames=2, **SMALL)
    synth(tmp_path / "8", cfg)
    synth(tmp_path / "16", replace(cfg, bit_depth=16))
    a8 = _read(tmp_path / "8" / "S0000" / "run_1" / "frame_1.png")
    a16 = _read(tmp_path / "16" / "S0000" / "run_1" / "frame_1.png")
    assert a16.dtype == np.uint16
    assert np.abs(a16 / 257.0 - a8).max() <= 0.51
    assert len(np.unique(a16 % 257)) > 100  # the noise keeps its 16-bit fractions


def test_transforms_match_the_image(tmp_path: Path) -> None:
    cfg = SynthConfig(strips=1, runs=5, frames=1, defect_fraction=0.0, **MEDIUM)
    summary = synth(tmp_path / "raw", cfg)
    for row in summary.transforms.itertuples():
        img = _read(tmp_path / "raw" / row.strip / f"run_{row.run}" / "frame_0.png")
        img = img.astype(float) / row.gain
        # Rows/columns symmetric about the centre cancel the small rotation's tilt.
        left = _crossing(img[96:160].mean(axis=0), (25 + 90) / 2)
        top = _crossing(img[:, 120:200].mean(axis=1), (25 + 168) / 2)
        # Nominal x = 40, y = 32 at 1/4 scale, in pixel-index coordinates: 9.5 and 7.5.
        assert left == pytest.approx(9.5 + row.dx, abs=0.75)
        assert top == pytest.approx(7.5 + row.dy, abs=0.75)


def _crossing(profile: np.ndarray, level: float) -> float:
    """First index where the profile rises through level, interpolated."""
    i = int(np.argmax(profile > level))
    a, b = profile[i - 1], profile[i]
    return i - 1 + (level - a) / (b - a)


def test_liquid_moves_flag_stays(tmp_path: Path) -> None:
    cfg = SynthConfig(strips=1, runs=2, frames=8, defect_fraction=0.0, noise_sigma=0.0, **MEDIUM)
    synth(tmp_path / "still", cfg)
    synth(tmp_path / "noisy", replace(cfg, noise_sigma=2.0))
    flag = np.s_[:, 16:56, 16:304]  # R0 (nominal y 32..272 -> px 8..68) inside any re-grip
    liquid = np.s_[:, 128:188, 16:304]  # R2 (nominal y 512..752)
    for run in (1, 2):
        still = _stack(tmp_path / "still", "S0000", run, 8).astype(int)
        assert np.ptp(still[flag], axis=0).max() == 0
        assert np.ptp(still[liquid], axis=0).max() >= 20
        noisy = _stack(tmp_path / "noisy", "S0000", run, 8).astype(float)
        assert np.std(noisy[flag] - still[flag].mean(axis=0), axis=0).mean() == pytest.approx(
            2.0, abs=0.3
        )


def test_defects_show_in_every_frame_at_their_place(tmp_path: Path) -> None:
    cfg = SynthConfig(strips=2, runs=2, frames=4, defect_fraction=1.0, seed=3, **MEDIUM)
    synth(tmp_path / "raw", cfg)
    geom = Geometry(cfg.height, cfg.width)
    checked = 0
    for plan in plan_dataset(cfg):
        assert plan.defects
        with_d = render_product(geom, plan.defects, np.random.default_rng(plan.texture_seed))
        without = render_product(geom, (), np.random.default_rng(plan.texture_seed))
        for run in plan.runs:
            frames = [
                np.stack(list(render_run(p, run.grip, np.random.default_rng(run.seed), 4, 2.0, 8)))
                for p in (with_d, without)
            ]
            written = _stack(tmp_path / "raw", plan.strip, run.run, 4)
            assert np.array_equal(written, frames[0])
            diff = frames[0].astype(int) - frames[1]  # same noise: zero wherever no defect is
            allowed = np.zeros(diff.shape[1:], bool)
            for d in plan.defects:
                box = _warped_box(region_box(d.vial, d.region), geom, regrip_matrix(run.grip, geom))
                allowed[box] = True
                product_diff = np.abs(with_d - without)[geom.window(*region_box(d.vial, d.region))]
                if product_diff.max() >= 4.0:  # big enough to survive warp and rounding
                    checked += 1
                    assert all(np.abs(f[box]).max() >= 2 for f in diff), d
            assert not diff[:, ~allowed].any()
    assert checked >= 2


def _warped_box(box: tuple[float, ...], geom: Geometry, m: np.ndarray) -> tuple[slice, slice]:
    rows, cols = geom.window(*box)
    corners = np.array(
        [[c, r, 1.0] for c in (cols.start, cols.stop) for r in (rows.start, rows.stop)]
    )
    xy = corners @ m.T
    x0, y0 = np.floor(xy.min(axis=0)).astype(int) - 2
    x1, y1 = np.ceil(xy.max(axis=0)).astype(int) + 2
    return slice(max(y0, 0), y1), slice(max(x0, 0), x1)


@pytest.mark.parametrize("kind", sorted(DEFECT_SPECS))
def test_each_defect_kind_marks_only_its_box(kind: str) -> None:
    geom = Geometry(512, 640)
    spec = DEFECT_SPECS[kind]
    rng = np.random.default_rng(0)
    base = render_product(geom, (), np.random.default_rng(1))
    for region in spec.regions:
        d = place_defect(rng, kind, 4, region)
        strong = replace(d, contrast=spec.contrast[1])
        diff = np.abs(render_product(geom, (strong,), np.random.default_rng(1)) - base)
        inside = np.zeros(diff.shape, bool)
        inside[geom.window(*region_box(4, region))] = True
        assert not diff[~inside].any()
        assert diff[inside].max() >= 8.0


def test_severity_keeps_draws_in_the_upper_share_of_each_range() -> None:
    """(0.75, 1): every size and contrast lies in the top quarter of its log range."""
    rng = np.random.default_rng(0)
    for kind, spec in DEFECT_SPECS.items():
        for _ in range(20):
            d = place_defect(rng, kind, 4, spec.regions[0], severity=(0.75, 1.0))
            lo, hi = np.log(spec.size)
            # Placement may shorten a long scratch to fit its band; the draw itself never shrinks.
            if kind != "scratch":
                assert (np.log(d.size) - lo) / (hi - lo) >= 0.75 - 1e-9, (kind, d.size)
            if spec.contrast[1] > 0:
                c_lo, c_hi = np.log(spec.contrast)
                assert (np.log(d.contrast) - c_lo) / (c_hi - c_lo) >= 0.75 - 1e-9, (kind, d)


def test_n_defective_rounds_half_up_and_keeps_one() -> None:
    assert n_defective(4, 0.5) == 2
    assert n_defective(3, 0.5) == 2
    assert n_defective(10, 0.04) == 1  # asked for some: at least one
    assert n_defective(1, 0.4) == 0
    assert n_defective(5, 0.0) == 0
    assert n_defective(3, 1.0) == 3


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"strips": 0}, "strips must be a whole number >= 1"),
        ({"frames": 2.5}, "frames must be a whole number"),
        ({"height": 32}, "height must be a whole number of pixels >= 64"),
        ({"width": 20_000}, "width must be <= 8192 px, got 20000"),  # issue 22: upper bounds
        ({"frames": 5000}, "frames must be <= 1024, got 5000"),
        ({"defect_fraction": 1.5}, r"defect_fraction must be a share in \[0, 1\]"),
        ({"seed": -1}, "seed must be a whole number >= 0"),
        ({"bit_depth": 10}, "bit_depth must be 8, 12 or 16"),
        ({"shift_px": -1.0}, "must be >= 0"),
        ({"shift_px": 40.0}, "more than the 32 px margin"),
        ({"gain": (1.1, 0.9)}, "0 < low <= high"),
        ({"gain": (1.0,)}, "must be a range"),
        ({"noise_sigma": -0.5}, r"noise_sigma must be in \[0, 50\]"),
        ({"severity": (0.8, 0.2)}, r"0 <= lo <= hi <= 1"),
        ({"severity": (0.5, 1.5)}, r"0 <= lo <= hi <= 1"),
    ],
)
def test_config_rejects_bad_values(change: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SynthConfig(**change)


def test_refuses_to_mix_datasets(tmp_path: Path) -> None:
    cfg = SynthConfig(strips=1, runs=1, frames=1, **SMALL)
    (tmp_path / "empty").mkdir()
    synth(tmp_path / "empty", cfg)  # an empty folder is fine
    with pytest.raises(ValueError, match="already holds a dataset"):
        synth(tmp_path / "empty", cfg)
    (tmp_path / "partial" / "S0000").mkdir(parents=True)
    with pytest.raises(ValueError, match="already holds folders"):
        synth(tmp_path / "partial", cfg)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        synth(tmp_path / "file", cfg)
