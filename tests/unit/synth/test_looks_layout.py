"""`layout_for`: the pipeline layout under which registration crops every look's strips right."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from bfsdata.config.files import coerce
from bfsdata.config.pipeline import LayoutConfig
from bfsdata.imaging.registration import register, scale_layout
from bfsdata.synth import LOOKS, SynthConfig, layout_for, look_config, synth
from bfsdata.synth.camera import Regrip, regrip_matrix
from bfsdata.synth.geometry import region_box

DEMO = Path(__file__).resolve().parents[3] / "pipelines" / "demo.yaml"


def test_default_layout_is_the_demo_pipelines() -> None:
    demo = yaml.safe_load(DEMO.read_text())["layout"]
    assert layout_for(SynthConfig()) == demo


def test_strip_scale_scales_the_layout_about_the_image_centre() -> None:
    layout = layout_for(SynthConfig(strip_scale=0.75))
    assert layout["strip_box"] == [152, 190, 872, 1090]  # 512 -+ 360, 640 -+ 450
    assert layout["regions"] == [[152, 332], [332, 512], [512, 692], [692, 872]]
    shaped = SynthConfig(body_width=0.8, vial_gap=30.0, flag_width=0.6, neck_length=90.0)
    assert layout_for(shaped) == layout_for(SynthConfig())  # shapes stay in their columns


@pytest.mark.parametrize("look", sorted(LOOKS))
def test_registration_puts_every_window_on_its_vial_and_region(tmp_path: Path, look: str) -> None:
    """Each run's max rank image registers under layout_for's layout, and every crop window's
    centre lands within a pixel of where the re-grip put that (vial, region)'s nominal centre."""
    cfg = look_config(look, strips=1, runs=3, frames=8, height=256, width=320, defect_fraction=1)
    summary = synth(tmp_path / "raw", cfg)
    geo = scale_layout(coerce(LayoutConfig, layout_for(cfg), "layout"), cfg.height, cfg.width)
    geom = cfg.geometry()
    for t in summary.transforms.itertuples():
        folder = tmp_path / "raw" / t.strip / f"run_{t.run}"
        frames = [
            cv2.imread(str(folder / f"frame_{f}.png"), cv2.IMREAD_UNCHANGED) for f in range(8)
        ]
        reg = register(np.max(frames, axis=0), geo)
        m = regrip_matrix(Regrip(t.dx, t.dy, t.angle_deg, t.gain), geom)
        for v in range(5):
            for r in range(4):
                x0, y0, x1, y1 = region_box(v + 1, r)
                # nominal centre -> pixel-index coordinates of the product -> re-gripped
                px = (x0 + x1) / 2 * geom.sx + geom.ox - 0.5
                py = (y0 + y1) / 2 * geom.sy + geom.oy - 0.5
                want = m @ np.array([px, py, 1.0])
                dy, dx = reg.offsets[v, r]
                got_x = sum(geo.columns[v]) / 2 + dx - 0.5
                got_y = sum(geo.bands[r]) / 2 + dy - 0.5
                assert abs(got_x - want[0]) < 1.0 and abs(got_y - want[1]) < 1.0, (v, r, t)
