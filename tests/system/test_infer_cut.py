"""infer cuts as patch cut: the recipe recorded with the patches, cut from the raw files by
infer's own code path (`cut_run`, `cut_image`), gives every stored patch of the same ingested
acquisition bit for bit; a pipeline that would cut otherwise, or thresholds without a recipe,
are refused before anything is cut.

No model is trained here: cutting is compared, not scoring (tests/unit/test_infer.py scores).
The strips are drawn moved by sub-pixel offsets and turned, so the sub-pixel windows and the
rotation really change the patches (checked), for a fixed and an auto layout; image folders
(a grid of tiles) are cut the same way.
"""

from __future__ import annotations

import os

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # CPU only: tests must not depend on a GPU
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import dataclasses
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from image_folders import image_pipeline, write_image_folder
from workspace_fixtures import (
    FRAMES,
    SHAPE,
    build_workspace,
    draw_run,
    shared_run,
    tiny_pipeline,
    write_pipeline,
)

from bfsdata.config.pipeline import Pipeline, images_of, parse_frames
from bfsdata.imaging.cut import CutRecipe
from bfsdata.infer import InferError, infer
from bfsdata.infer.inputs import cut_image, cut_run, thresholds_recipe
from bfsdata.ingest import ingest
from bfsdata.patch.stage import patch
from bfsdata.report import report
from bfsdata.score import ScoreError
from bfsdata.store import location as store
from bfsdata.verify import verify
from bfsdata.workspace import manifest, provenance

# (strip, run): the strip moved by (dy, dx) px and turned by degrees, as a re-grip does
MOVES = {("S1", 1): (1.3, -0.6, 0.4), ("S1", 2): (-0.7, 1.45, -0.3), ("S2", 1): (0.2, 0.5, 0.0)}
CASES = [("fixed", True), ("fixed", False), ("auto", True), ("auto", False)]


def _move(folder: Path, dy: float, dx: float, angle: float) -> None:
    """Turn every frame of `folder` by `angle` about its centre, then shift it by (dy, dx)."""
    h, w = SHAPE
    m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), angle, 1.0)
    m[:, 2] += (dx, dy)
    for p in folder.glob("frame_*.png"):
        img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        moved = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=25)
        assert cv2.imwrite(str(p), moved)


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("raw")
    for i, ((strip, run), move) in enumerate(MOVES.items()):
        _move(draw_run(root / strip / f"run_{run}", (i, run)), *move)
    (root / "labels.csv").write_text("strip,label,defect,vial,region\nS1,good,,,\nS2,good,,,\n")
    return root


def _pipe(mode: str, subpixel: bool) -> Pipeline:
    base = tiny_pipeline()
    return dataclasses.replace(
        base,
        layout=dataclasses.replace(base.layout, mode=mode),
        patch=dataclasses.replace(base.patch, subpixel=subpixel),
    )


@pytest.fixture(scope="module")
def workspaces(raw: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """(mode, subpixel) -> (workspace, pipeline): the raw strips ingested and patched."""
    out = {}
    for mode, subpixel in CASES:
        ws = tmp_path_factory.mktemp(f"{mode}-{subpixel}")
        pipe = write_pipeline(ws / "pipeline.yaml", _pipe(mode, subpixel))
        ingest(raw, ws, pipe, workers=1)
        patch(ws, pipe, workers=1)
        out[mode, subpixel] = ws, pipe
    return out


def _stored(ws: Path) -> dict[int, tuple[list[tuple], np.ndarray]]:
    """acq -> ((kind, frame, vial, region) per stored patch, the patches), in patch order."""
    rows = manifest.read(ws, manifest.PATCHES).sort_values("patch")
    arr = store.open_root(ws, mode="r")["patches"]
    out = {}
    for acq, mine in rows.groupby("acq"):
        keys = list(zip(mine["kind"], mine["frame"], mine["vial"], mine["region"], strict=True))
        out[int(acq)] = keys, arr.oindex[mine["patch"].to_numpy()]
    return out


@pytest.mark.parametrize(("mode", "subpixel"), CASES)
def test_infer_cuts_every_stored_patch_bit_for_bit(workspaces, mode: str, subpixel: bool) -> None:
    ws, pipe = workspaces[mode, subpixel]
    recipe = provenance.patch_recipe(ws)
    assert recipe == CutRecipe.of(pipe) and recipe.subpixel is subpixel
    acqs = manifest.read(ws, manifest.ACQUISITIONS)
    assert len(acqs) == len(MOVES)
    images = images_of(pipe.patch.kinds, parse_frames(pipe.patch.frames, FRAMES))
    stored = _stored(ws)
    for acq in acqs.itertuples(index=False):
        _, boxes, patches, meta = cut_run(Path(acq.source), recipe, pipe.acquisition, images)
        n_v, n_r = boxes.shape[:2]
        keys, want = stored[acq.acq]
        assert keys == [(k, f, v + 1, r) for k, f in images for v in range(n_v) for r in range(n_r)]
        assert patches.shape == want.shape == (len(images) * n_v * n_r, recipe.size, recipe.size)
        np.testing.assert_array_equal(patches, want, err_msg=f"{mode} {acq.strip} run {acq.run}")
        assert abs(meta["angle"]) > 0.1 or (acq.strip, acq.run) == ("S2", 1)  # turned strips


def test_the_sub_pixel_setting_changes_the_stored_patches(workspaces) -> None:
    """Else the comparisons above could not tell the two recipes apart."""
    for mode in ("fixed", "auto"):
        on, off = _stored(workspaces[mode, True][0]), _stored(workspaces[mode, False][0])
        assert on.keys() == off.keys()
        assert all(not np.array_equal(on[a][1], off[a][1]) for a in on), mode


def test_infer_cuts_image_folder_tiles_as_patch_did(tmp_path: Path) -> None:
    raw = write_image_folder(tmp_path / "raw", train=2, test_good=1, defects={"blob": 1})
    ws = tmp_path / "ws"
    ws.mkdir()
    pipe = write_pipeline(ws / "pipeline.yaml", image_pipeline(tiny_pipeline()))
    ingest(raw, ws, pipe, raw_format="images", workers=1)
    patch(ws, pipe, workers=1)
    recipe = provenance.patch_recipe(ws)
    assert recipe == CutRecipe.of(pipe) and recipe.tiles
    stored = _stored(ws)
    acqs = manifest.read(ws, manifest.ACQUISITIONS)
    assert len(acqs) == 4
    for acq in acqs.itertuples(index=False):
        keys, want = stored[acq.acq]
        cells = {"vials": max(k[2] for k in keys), "regions": sorted({k[3] for k in keys})}
        _, _, patches, _ = cut_image(Path(acq.source), recipe, cells)
        np.testing.assert_array_equal(patches, want, err_msg=acq.source)


# --- refusals -------------------------------------------------------------------------------


def test_a_pipeline_that_cuts_otherwise_is_refused_naming_the_settings(tmp_path: Path) -> None:
    path = tmp_path / "thresholds.json"
    pipe = _pipe("fixed", True)
    th = {"cut": CutRecipe.of(pipe).to_dict()}
    assert thresholds_recipe(th, path, pipe) == CutRecipe.of(pipe)
    other = _pipe("auto", False)
    with pytest.raises(InferError) as e:
        thresholds_recipe(th, path, other)
    msg = str(e.value)
    assert msg.startswith(f"{path}: the model's patches were cut with other settings")
    assert "subpixel True recorded, False in the pipeline" in msg
    assert "layout.mode 'fixed' recorded, 'auto' in the pipeline" in msg
    assert "Infer with the pipeline the workspace was patched with" in msg


def test_thresholds_without_a_recipe_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "thresholds.json"
    with pytest.raises(InferError, match=r"records no cut recipe .* run `bfsdata report` again"):
        thresholds_recipe({"patch_size": 32}, path, tiny_pipeline())
    with pytest.raises(InferError, match=r"thresholds.json: cut: unknown key\(s\) blur"):
        thresholds_recipe({"cut": {"blur": 1}}, path, tiny_pipeline())


def test_a_workspace_patched_before_the_recipe_is_told_to_patch_again(
    tmp_path: Path, snapshot
) -> None:
    """Its patches manifest records no recipe: verify says so, report refuses (infer would have
    nothing to cut with), and a `bfsdata patch` run records it without cutting anything."""
    ws = tmp_path / "ws"
    pipe = build_workspace(ws)
    rec = manifest.read_provenance(ws, manifest.PATCHES)
    rows = manifest.read(ws, manifest.PATCHES)
    old = {k: v for k, v in rec.items() if k != "cut"}
    manifest.write(ws, manifest.PATCHES, rows, sort=("patch",), provenance=old)
    assert provenance.patch_recipe(ws) is None
    assert verify(ws, sample=1).problems == [
        "patches.parquet: no cut recipe recorded (patched by an older bfsdata, or the manifest "
        "was rewritten); patches not recomputed: run `bfsdata patch` again, which records it "
        "and cuts nothing"
    ]
    with pytest.raises(ScoreError, match=r"no cut recipe recorded .* run `bfsdata patch -w"):
        report(ws, pipe, run="none")
    before = snapshot(ws / store.STORE_NAME)
    assert patch(ws, pipe, workers=1).patches == 0
    assert snapshot(ws / store.STORE_NAME) == before
    assert provenance.patch_recipe(ws) == CutRecipe.of(pipe)
    assert verify(ws, sample=1).ok


# --- recorded with the model: the tiny trained run ------------------------------------------


def test_the_model_and_its_thresholds_record_the_patches_recipe(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    run = shared_run(tmp_path_factory)
    want = CutRecipe.of(run.pipe).to_dict()
    assert provenance.patch_recipe(run.ws).to_dict() == want
    thresholds = run.report_dir / "thresholds.json"
    assert json.loads(thresholds.read_text())["cut"] == want
    assert json.loads((run.run_dir / "export" / "model.json").read_text())["cut"] == want
    raw = run.ws / "raw" / "G3" / "run_1"
    turned = dataclasses.replace(run.pipe.patch, rotation=False)
    with pytest.raises(InferError, match="rotation True recorded, False in the pipeline"):
        infer([raw], run.run_dir, thresholds, dataclasses.replace(run.pipe, patch=turned), tmp_path)
    # a model trained on patches cut otherwise than the thresholds' patches
    other = Path(shutil.copytree(run.run_dir / "export", tmp_path / "run" / "export"))
    model = json.loads((other / "model.json").read_text())
    model["cut"]["subpixel"] = False
    (other / "model.json").write_text(json.dumps(model))
    with pytest.raises(InferError, match="their `cut` recipes differ"):
        infer([raw], other.parent, thresholds, run.pipe, tmp_path / "out")
    assert not (tmp_path / "out").exists()
