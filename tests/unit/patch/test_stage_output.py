"""`bfsdata.patch.stage.patch`, what is written: one patch per acquisition x image x vial x
region, each equal to a direct crop and resize of its source frame or rank image, 16-bit input
brought to uint8 by the documented rule.

The workspaces (`raw`, `ingested`, `patched`, `fresh`, `done`) are fixtures in this folder's
conftest.py; the helpers that read them back are in stage_helpers.py.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import cv2
import numpy as np
from subpixel_crop import expected_crop, row_shift

from bfsdata.config.pipeline import PatchConfig
from bfsdata.ingest import ingest
from bfsdata.patch.stage import patch
from bfsdata.store import location as store
from bfsdata.verify import verify
from bfsdata.workspace import manifest
from tests.unit.patch.stage_helpers import (
    FRAMES,
    KEY,
    PER_ACQ,
    REGIONS,
    SIZE,
    VIALS,
    Sources,
    assert_close,
    patch_pipe,
    patch_rows,
    patches_by_key,
    synth_raw,
    uint8_rule,
)

# --- what is written --------------------------------------------------------------------------


def test_patch_count_is_acquisitions_x_images_x_vials_x_regions(patched) -> None:
    ws, s = patched
    rows = patch_rows(ws)
    n_acq = 4
    assert len(rows) == n_acq * PER_ACQ == s.total == s.patches
    assert (s.acquisitions, s.already, s.patched, s.per_acquisition, s.rejected) == (
        n_acq,
        0,
        n_acq,
        PER_ACQ,
        0,
    )
    for _, g in rows.groupby("acq"):
        images = set(zip(g["kind"], g["frame"], strict=True))
        assert images == {("frame", f) for f in range(FRAMES)} | {
            ("rank_min", -1),
            ("rank_max", -1),
        }
        assert len(g) == len(images) * VIALS * REGIONS
        assert set(g["vial"]) == {1, 2, 3, 4, 5} and set(g["region"]) == {0, 1, 2, 3}
    assert not rows.duplicated(KEY).any() and rows["patch"].is_unique


def test_every_manifest_row_points_at_a_written_patch(patched) -> None:
    ws, _ = patched
    rows = patch_rows(ws)
    arr = store.open_root(ws, mode="r")["patches"]
    assert arr.dtype == np.uint8 and arr.shape[1:] == (SIZE, SIZE)
    assert (rows["patch"] >= 0).all() and (rows["patch"] < arr.shape[0]).all()
    shards = store.written_shards(arr)
    assert set(rows["patch"] // store.shard_rows(arr)) == shards  # no missing, no orphan
    data = arr.get_orthogonal_selection((rows["patch"].to_numpy(),))
    assert (data.std(axis=(1, 2)) > 0).all()  # real crops of the strip, not fill values
    rep = verify(ws, sample=None)
    assert rep.ok, rep.problems
    assert rep.patches_recomputed == len(rows)


def test_rank_min_le_frames_le_rank_max(patched) -> None:
    """Per pixel the min rank image is <= every frame <= the max; resizing keeps that up to
    one grey level of rounding."""
    by_key = patches_by_key(patched[0])
    rows = patch_rows(patched[0])
    for (acq, vial, region), _ in rows.groupby(["acq", "vial", "region"]):
        lo = by_key[(acq, "rank_min", -1, vial, region)].astype(int)
        hi = by_key[(acq, "rank_max", -1, vial, region)].astype(int)
        assert (lo <= hi).all()
        for f in range(FRAMES):
            p = by_key[(acq, "frame", f, vial, region)].astype(int)
            assert (p >= lo - 1).all() and (p <= hi + 1).all(), (acq, f, vial, region)
        assert (hi - lo).max() > 0  # the liquid moved: the test is not trivial


def test_patch_equals_direct_crop_and_resize_of_its_source(patched) -> None:
    """The box moved by its window offset's sub-pixel remainder and turned with the strip, then
    enlarged 30 -> 32 px."""
    ws, _ = patched
    root = store.open_root(ws, mode="r")
    arr, src = root["patches"][:], Sources(root)
    rows = patch_rows(ws)
    assert (rows["y1"] - rows["y0"]).eq(30).all() and (rows["x1"] - rows["x0"]).eq(30).all()
    assert rows.drop_duplicates("acq").apply(row_shift, axis=1).map(any).all()  # shifts tested
    assert (rows.drop_duplicates("acq")["angle"].abs() > 0.01).all()  # and rotations
    for row in rows.itertuples(index=False):
        box = (row.y0, row.x0, row.y1, row.x1)
        want = expected_crop(src(row), box, SIZE, row_shift(row), row.angle)
        assert_close(arr[row.patch], want, msg=str(row))


def test_subpixel_off_cuts_whole_pixel_boxes(ingested, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    shutil.copytree(ingested, ws)
    patch(ws, patch_pipe(subpixel=False), workers=1)
    root = store.open_root(ws, mode="r")
    arr, src = root["patches"][:], Sources(root)
    for row in patch_rows(ws).itertuples(index=False):
        crop = src(row)[row.y0 : row.y1, row.x0 : row.x1]
        want = cv2.resize(crop, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
        np.testing.assert_array_equal(arr[row.patch], want, err_msg=str(row))


def test_rotation_off_moves_every_window_by_the_strip_offset(ingested, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    shutil.copytree(ingested, ws)
    patch(ws, patch_pipe(rotation=False), workers=1)
    rows = patch_rows(ws)
    assert (rows["angle"] == 0).all()
    assert (rows.groupby("acq")[["dy", "dx"]].nunique() == 1).all().all()
    root = store.open_root(ws, mode="r")
    arr, src = root["patches"][:], Sources(root)
    for row in rows.itertuples(index=False):
        box = (row.y0, row.x0, row.y1, row.x1)
        assert_close(
            arr[row.patch], expected_crop(src(row), box, SIZE, row_shift(row)), msg=str(row)
        )


# --- 16-bit input -----------------------------------------------------------------------------


def test_16_bit_input_gives_uint8_patches_by_the_rule(tmp_path: Path) -> None:
    synth_raw(tmp_path / "raw", strips=1, runs=1, bit_depth=16)
    ws = tmp_path / "ws"
    # 30 -> 16 px: INTER_AREA; whole-pixel boxes, so the rule is checked exactly
    pipe = dataclasses.replace(patch_pipe(), patch=PatchConfig(size=16, subpixel=False))
    ingest(tmp_path / "raw", ws, pipe, workers=1)
    patch(ws, pipe, workers=1)
    assert manifest.read(ws, manifest.ACQUISITIONS)["dtype"].tolist() == ["uint16"]
    root = store.open_root(ws, mode="r")
    assert root["frames"].dtype == np.uint16 and root["patches"].dtype == np.uint8
    arr, src = root["patches"][:], Sources(root)
    for row in patch_rows(ws).itertuples(index=False):
        crop = src(row)[row.y0 : row.y1, row.x0 : row.x1]
        resized = cv2.resize(crop, (16, 16), interpolation=cv2.INTER_AREA)  # uint16
        np.testing.assert_array_equal(arr[row.patch], uint8_rule(resized, 16))


def test_12_bit_input_in_16_bit_files_uses_input_bits(raw, read_run, tmp_path: Path) -> None:
    """8-bit frames rescaled to 12 bits and patched with input_bits 12 give the 8-bit patches
    back, within one grey level."""
    for run in (1, 2):
        frames = read_run(raw[0] / "S0000" / f"run_{run}").astype(np.float64)
        folder = tmp_path / "raw" / "S0000" / f"run_{run}"
        folder.mkdir(parents=True)
        for f, img in enumerate(frames):
            v12 = np.round(img * 4095 / 255).astype(np.uint16)
            assert cv2.imwrite(str(folder / f"frame_{f}.png"), v12)
    (tmp_path / "raw" / "labels.csv").write_text("strip,label\nS0000,good\n")
    ws8, ws12 = tmp_path / "ws8", tmp_path / "ws12"
    shutil.copytree(raw[0] / "S0000", tmp_path / "raw8" / "S0000")
    ingest(tmp_path / "raw8", ws8, patch_pipe(), workers=1)
    patch(ws8, patch_pipe(subpixel=False), workers=1)  # whole-pixel boxes: the rule checked exactly
    ingest(tmp_path / "raw", ws12, patch_pipe(), workers=1)
    patch(ws12, patch_pipe(input_bits=12, subpixel=False), workers=1)

    root = store.open_root(ws12, mode="r")
    assert root["frames"].dtype == np.uint16
    arr, src = root["patches"][:], Sources(root)
    for row in patch_rows(ws12).itertuples(index=False):
        crop = src(row)[row.y0 : row.y1, row.x0 : row.x1]
        resized = cv2.resize(crop, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
        np.testing.assert_array_equal(arr[row.patch], uint8_rule(resized, 12))
    a, b = patches_by_key(ws8), patches_by_key(ws12)
    assert a.keys() == b.keys()
    for k in a:
        assert np.abs(a[k].astype(int) - b[k].astype(int)).max() <= 1, k
