"""`bfsdata.patch.stage.patch`, registration and crop boxes: the offsets found match the
synthetic re-grips, the boxes follow the strip; bad layouts and strips that do not register
are refused, naming the acquisition, or set aside with `skip_bad`.

The workspaces (`raw`, `ingested`, `patched`, `fresh`, `done`) are fixtures in this folder's
conftest.py; the helpers that read them back are in stage_helpers.py.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from subpixel_crop import row_shift

from bfsdata.config.pipeline import KINDS, AcquisitionConfig, LayoutConfig
from bfsdata.imaging.rank import rank_images
from bfsdata.imaging.registration import boxes_at, scale_layout, window_offsets
from bfsdata.ingest import ingest
from bfsdata.patch.stage import PatchError, patch
from bfsdata.store import location as store
from bfsdata.verify import verify
from bfsdata.workspace import manifest
from tests.unit.patch.stage_helpers import (
    FRAMES,
    KEY,
    PER_ACQ,
    REGIONS,
    VIALS,
    H,
    W,
    patch_pipe,
    patch_rows,
    patches_by_key,
)

# --- registration and crop boxes --------------------------------------------------------------


def test_registration_matches_the_synthetic_regrips(patched, raw) -> None:
    rows = patch_rows(patched[0])
    truth = raw[1].transforms.set_index(["strip", "run"])
    per_acq = rows.drop_duplicates("acq")
    assert len(per_acq) == len(truth) == 4
    for r in per_acq.itertuples(index=False):
        t = truth.loc[(r.strip, r.run)]
        assert abs(r.dy - t.dy) < 0.5 and abs(r.dx - t.dx) < 0.5, (r, t)


def test_manifest_records_the_crop_boxes_and_offsets(patched) -> None:
    rows = patch_rows(patched[0])
    geo = scale_layout(LayoutConfig(), H, W)
    for acq, g in rows.groupby("acq"):
        assert g["angle"].nunique() == 1  # one strip, one rotation
        cell = g.groupby(["vial", "region"])[["dy", "dx"]]
        assert (cell.nunique() == 1).all().all()  # one window per cell for all its images
        off = cell.first().to_numpy().reshape(VIALS, REGIONS, 2)
        # A rigid motion: the window offsets less what the rotation alone moves each window by
        # are one strip offset.
        strip = off - window_offsets(geo, 0.0, 0.0, float(g["angle"].iloc[0]))
        assert np.ptp(strip, axis=(0, 1)).max() < 1e-4
        want = boxes_at(geo, off[..., 0], off[..., 1])  # (V, R, 4)
        for r in g.itertuples(index=False):
            assert (r.y0, r.x0, r.y1, r.x1) == tuple(want[r.vial - 1, r.region]), (acq, r)
    # one size per region, every acquisition (no one-pixel jitter)
    sizes = rows.assign(h=rows["y1"] - rows["y0"], w=rows["x1"] - rows["x0"])
    assert (sizes.groupby(["vial", "region"])[["h", "w"]].nunique() == 1).all().all()


def _shifted(img: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """`img` moved by whole pixels (dy down, dx right), the border repeated into the gap."""
    pad = ((max(dy, 0), max(-dy, 0)), (max(dx, 0), max(-dx, 0)))
    big = np.pad(img, pad, mode="edge")
    y, x = max(-dy, 0), max(-dx, 0)
    return big[y : y + img.shape[0], x : x + img.shape[1]]


def test_registration_follows_a_strip_shifted_by_a_known_offset(raw, read_run, tmp_path) -> None:
    """The same run written twice, once moved by (+3, -2) px: the offsets differ by exactly that,
    the boxes move with the strip and every patch comes out the same (to the registration's
    precision: the two offsets' sub-pixel remainders differ by a few hundredths of a pixel)."""
    src = read_run(raw[0] / "S0000" / "run_2")  # (F, H, W)
    for run, (dy, dx) in ((1, (0, 0)), (2, (3, -2))):
        folder = tmp_path / "raw" / "X" / f"run_{run}"
        folder.mkdir(parents=True)
        for f, img in enumerate(src):
            assert cv2.imwrite(str(folder / f"frame_{f}.png"), _shifted(img, dy, dx))
    (tmp_path / "raw" / "labels.csv").write_text("strip,label\nX,good\n")
    ws = tmp_path / "ws"
    ingest(tmp_path / "raw", ws, patch_pipe(), workers=1)
    patch(ws, patch_pipe(), workers=1)
    rows = patch_rows(ws)
    a, b = (rows[rows["run"] == r].sort_values(KEY[1:]) for r in (1, 2))
    assert abs((b["dy"].iloc[0] - a["dy"].iloc[0]) - 3) < 0.25
    assert abs((b["dx"].iloc[0] - a["dx"].iloc[0]) + 2) < 0.25
    moved = b[["y0", "x0", "y1", "x1"]].to_numpy() - a[["y0", "x0", "y1", "x1"]].to_numpy()
    start = moved[:, :2] + np.stack([row_shift(r) for r in b.itertuples()])
    start -= np.stack([row_shift(r) for r in a.itertuples()])
    assert np.abs(start - [3, -2]).max() < 0.25  # box origins at sub-pixel precision
    arr = store.open_root(ws, mode="r")["patches"]
    pa, pb = (arr[g["patch"].to_numpy()].astype(int) for g in (a, b))
    assert np.abs(pb - pa).max() <= 8 and np.abs(pb - pa).mean() < 0.5


# --- bad layouts and registration failures ----------------------------------------------------


def _with_blank(raw_dir: Path, dst: Path) -> Path:
    """S0000's two runs plus strip BLANK whose frames are all background (nothing to find)."""
    shutil.copytree(raw_dir / "S0000", dst / "S0000")
    folder = dst / "BLANK" / "run_1"
    folder.mkdir(parents=True)
    for f in range(FRAMES):
        assert cv2.imwrite(str(folder / f"frame_{f}.png"), np.full((H, W), 25, np.uint8))
    (dst / "labels.csv").write_text("strip,label\nBLANK,good\nS0000,good\n")
    return dst


def test_a_registration_failure_names_the_acquisition_and_the_rest_is_patched(
    raw, tmp_path: Path
) -> None:
    ws = tmp_path / "ws"
    ingest(_with_blank(raw[0], tmp_path / "raw"), ws, patch_pipe(), workers=1)
    acqs = manifest.read(ws, manifest.ACQUISITIONS)
    blank = int(acqs.loc[acqs["strip"] == "BLANK", "acq"].iloc[0])
    with pytest.raises(PatchError) as e:
        patch(ws, patch_pipe(), workers=2)
    msg = str(e.value)
    assert "1 acquisition(s) could not be patched (the other 2 were)" in msg
    assert f"acquisition {blank}" in msg and "no strip found" in msg and "--skip-bad" in msg
    rows = patch_rows(ws)
    assert set(rows["strip"]) == {"S0000"} and len(rows) == 2 * PER_ACQ
    assert verify(ws, sample=None).ok

    s = patch(ws, patch_pipe(), skip_bad=True, workers=2)
    assert (s.patched, s.rejected, s.total) == (0, 1, 2 * PER_ACQ)
    rej = manifest.read(ws, manifest.REJECTED)
    assert len(rej) == 1
    r = rej.iloc[0]
    assert (r["source"], r["strip"], int(r["run"]), r["rule"]) == (
        f"acquisition {blank}",
        "BLANK",
        1,
        "registration",
    )
    assert "no strip found" in r["message"]


def test_skip_bad_patches_the_rest_in_one_go(raw, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ingest(_with_blank(raw[0], tmp_path / "raw"), ws, patch_pipe(), workers=1)
    s = patch(ws, patch_pipe(acq_per_task=1), skip_bad=True, workers=2)
    assert (s.patched, s.rejected, s.total) == (2, 1, 2 * PER_ACQ)
    assert manifest.read(ws, manifest.REJECTED)["strip"].tolist() == ["BLANK"]
    assert verify(ws, sample=None).ok


def test_a_layout_that_does_not_fit_the_strips_is_refused(fresh: Path) -> None:
    narrow = LayoutConfig(strip_box=(32, 40, 992, 1000))  # the strips are 1200 px wide
    with pytest.raises(PatchError, match=r"4 acquisition\(s\) could not be patched") as e:
        patch(fresh, patch_pipe(layout=narrow), workers=1)
    assert "wide, the layout expects 120 px" in str(e.value)
    assert patch_rows(fresh).empty


def test_a_layout_leaving_the_image_is_refused(fresh: Path) -> None:
    bad = LayoutConfig()
    object.__setattr__(bad, "regions", ((32, 512), (512, 1100)))  # past validation
    with pytest.raises(PatchError, match="regions leave the 128x160 image"):
        patch(fresh, patch_pipe(layout=bad), workers=1)


def test_a_trimmed_rank_pair_is_cut_as_rank_min_and_rank_max(raw, tmp_path: Path) -> None:
    """acquisition.ranks (2, 3): the store's rank images are the 2nd and 3rd darkest value per
    pixel, cut as rank_min and rank_max (kind_rank): two images, not one."""
    acq = AcquisitionConfig(frames=FRAMES, ranks=(2, 3), test_frames=(0,))
    pipe = dataclasses.replace(patch_pipe(kinds=KINDS), acquisition=acq)
    shutil.copytree(raw[0] / "S0000", tmp_path / "raw" / "S0000")
    ws = tmp_path / "ws"
    ingest(tmp_path / "raw", ws, pipe, workers=1)
    patch(ws, pipe)
    root = store.open_root(ws, mode="r")
    assert list(root.attrs["ranks"]) == [2, 3]
    for a in range(root["rank"].shape[0]):
        want = rank_images(root["frames"][a], (2, 3))
        np.testing.assert_array_equal(root["rank"][a], want)
    got = patches_by_key(ws)
    low = {k[:1] + k[2:]: v for k, v in got.items() if k[1] == "rank_min"}
    high = {k[:1] + k[2:]: v for k, v in got.items() if k[1] == "rank_max"}
    assert low.keys() == high.keys() and low
    assert any(not np.array_equal(low[k], high[k]) for k in low)
