"""`bfsdata.show.contact_sheet` and `bfsdata show` on a tiny patched workspace.

2 synthetic strips x 1 run of 4 frames at 128x160 px, frames 0 and 3 and both rank images cut
into 32 px patches. The sheet: the strip scaled to 640 px high (x5) with its crop boxes, 16 px
of gap, then the patches as 128 px tiles, regions down and vials across.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from bfsdata.cli import app
from bfsdata.config.pipeline import AcquisitionConfig, PatchConfig, Pipeline
from bfsdata.ingest import ingest
from bfsdata.patch.stage import patch
from bfsdata.show import REGION_BGR, STRIP_HEIGHT, TILE, contact_sheet, write_contact_sheet
from bfsdata.store import location as store
from bfsdata.synth import SynthConfig, synth
from bfsdata.workspace import manifest

FRAMES, SIZE, H, W = 4, 32, 128, 160
SCALE = STRIP_HEIGHT // H  # 5
LEFT = W * SCALE  # px, width of the strip picture
runner = CliRunner()


def _build(tmp: Path, bit_depth: int = 8, shape: tuple[int, int] = (H, W)) -> Path:
    synth(
        tmp / "raw",
        SynthConfig(
            strips=2, runs=1, frames=FRAMES, height=shape[0], width=shape[1], bit_depth=bit_depth
        ),
    )
    acq = AcquisitionConfig(frames=FRAMES, ranks=(1, FRAMES), test_frames=(0, FRAMES - 1))
    pipe = dataclasses.replace(
        Pipeline(), acquisition=acq, patch=PatchConfig(size=SIZE, frames="0,3")
    )
    ws = tmp / "ws"
    ingest(tmp / "raw", ws, pipe, workers=1)
    patch(ws, pipe, workers=1)
    return ws


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(tmp_path_factory.mktemp("preview"))


def _cells(ws: Path, acq: int, kind: str, frame: int):
    rows = manifest.read(ws, manifest.PATCHES)
    rows = rows[(rows["acq"] == acq) & (rows["kind"] == kind) & (rows["frame"] == frame)]
    return rows.sort_values(["vial", "region"])


def test_contact_sheet_shape_and_dtype(ws: Path) -> None:
    sheet = contact_sheet(ws, 0)
    assert sheet.dtype == np.uint8 and sheet.ndim == 3 and sheet.shape[2] == 3
    grid_w = 5 * (TILE + 4)
    assert sheet.shape == (max(STRIP_HEIGHT, 4 * (TILE + 4)), LEFT + 16 + grid_w, 3)


@pytest.mark.parametrize(("acq", "kind", "frame"), [(0, "frame", 0), (1, "frame", 3)])
def test_contact_sheet_shows_the_strip_with_its_boxes(ws: Path, acq, kind, frame) -> None:
    sheet = contact_sheet(ws, acq, kind, frame)
    left = sheet[:STRIP_HEIGHT, :LEFT].astype(int)
    image = store.open_root(ws, mode="r")["frames"][acq, frame]
    grey = cv2.resize(image, None, fx=SCALE, fy=SCALE, interpolation=cv2.INTER_AREA)
    # away from boxes and labels the picture is the frame itself, in grey
    same = (left == grey[..., None]).all(axis=2)
    assert same.mean() > 0.8
    for r in _cells(ws, acq, kind, frame).itertuples(index=False):
        # middle of each box's left edge is drawn in the region's colour
        y, x = round((r.y0 + r.y1) / 2 * SCALE), round(r.x0 * SCALE)
        assert tuple(sheet[y, x]) == REGION_BGR[r.region], (r.vial, r.region)


@pytest.mark.parametrize(("kind", "frame"), [("frame", 3), ("rank_min", -1), ("rank_max", -1)])
def test_contact_sheet_grid_holds_the_patches(ws: Path, kind: str, frame: int) -> None:
    sheet = contact_sheet(ws, 1, kind, max(frame, 0))
    grid = sheet[:, LEFT + 16 :]
    arr = store.open_root(ws, mode="r")["patches"]
    cells = _cells(ws, 1, kind, frame)
    assert len(cells) == 20
    for r in cells.itertuples(index=False):
        y, x = r.region * (TILE + 4), (r.vial - 1) * (TILE + 4)
        tile = grid[y : y + TILE, x : x + TILE]
        big = cv2.resize(arr[r.patch], (TILE, TILE), interpolation=cv2.INTER_NEAREST)
        inner = (slice(20, TILE - 4), slice(4, TILE - 4))  # inside the frame, below the label
        for c in range(3):
            np.testing.assert_array_equal(tile[..., c][inner], big[inner])
        assert tuple(tile[TILE // 2, 0]) == REGION_BGR[r.region]  # framed in its colour


def test_contact_sheet_of_16_bit_frames(tmp_path: Path) -> None:
    ws = _build(tmp_path, bit_depth=16, shape=(64, 80))
    sheet = contact_sheet(ws, 0)
    assert sheet.dtype == np.uint8 and sheet.shape[2] == 3
    assert sheet[:STRIP_HEIGHT, : 80 * (STRIP_HEIGHT // 64)].max() > 100  # scaled, not dark


@pytest.mark.parametrize(
    ("acq", "kind", "frame", "message"),
    [
        (9, "frame", 0, "no frame patches for acquisition 9 frame 0"),
        (0, "frame", 1, "no frame patches for acquisition 0 frame 1"),  # frame 1 was not cut
        (9, "rank_max", 0, "no rank_max patches for acquisition 9 in"),
    ],
)
def test_contact_sheet_of_what_was_not_patched_is_refused(ws, acq, kind, frame, message) -> None:
    with pytest.raises(ValueError, match=message) as e:
        contact_sheet(ws, acq, kind, frame)
    assert "run `bfsdata patch` first, or pick another --acq/--kind/--frame" in str(e.value)


def test_contact_sheet_of_an_empty_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no frame patches for acquisition 0"):
        contact_sheet(tmp_path, 0)


def test_write_contact_sheet_writes_a_png_atomically(ws: Path, tmp_path: Path) -> None:
    out = write_contact_sheet(ws, tmp_path / "a" / "b" / "sheet.png", acq=1, kind="rank_max")
    assert out == tmp_path / "a" / "b" / "sheet.png"
    np.testing.assert_array_equal(cv2.imread(str(out)), contact_sheet(ws, 1, "rank_max"))
    assert [p.name for p in out.parent.iterdir()] == ["sheet.png"]  # no temp file left


# --- bfsdata show -----------------------------------------------------------------------------


def test_show_writes_a_png_that_decodes(ws: Path) -> None:
    res = runner.invoke(app, ["show", "-w", str(ws), "--acq", "1", "--frame", "3"])
    assert res.exit_code == 0, res.output
    png = ws / "previews" / "acq-1-frame.png"
    assert "contact sheet:" in res.output and png.name in res.output
    img = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
    assert img is not None and img.dtype == np.uint8 and img.ndim == 3
    np.testing.assert_array_equal(img, contact_sheet(ws, 1, "frame", 3))


def test_show_rank_image_to_a_chosen_path(ws: Path, tmp_path: Path) -> None:
    out = tmp_path / "sheets" / "max.png"
    args = ["show", "-w", str(ws), "--kind", "rank_max", "--acq", "0", "--out", str(out)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert cv2.imread(str(out)).shape == contact_sheet(ws, 0, "rank_max").shape


@pytest.mark.parametrize(
    ("args", "message", "target"),
    [
        (["--acq", "7"], "no frame patches for acquisition 7 frame 0", "acq-7-frame.png"),
        (["--kind", "rank_mid"], "no rank_mid patches for acquisition 0", "acq-0-rank_mid.png"),
    ],
)
def test_show_refuses_an_acquisition_without_patches(ws: Path, args, message, target) -> None:
    res = runner.invoke(app, ["show", "-w", str(ws), *args])
    assert res.exit_code == 1, res.output
    assert isinstance(res.exception, SystemExit)
    assert f"error: {message}" in res.stderr
    assert "run `bfsdata patch` first" in res.stderr
    assert not (ws / "previews" / target).exists()
