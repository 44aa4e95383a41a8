"""Image-folder datasets: scan (bfsdata.sources.image_folders), tiles (bfsdata.imaging.tiling),
ingest and patch of them.

Real folders of PNG files made in tmp_path, real stores, the real CLI; no model here (the whole
chain with a tiny model is tests/test_images_chain.py).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import zarr
from cli_helpers import invoke, ok, refused
from image_folders import BLOB, SIDE, TILE, draw, image_pipeline, write_image_folder
from workspace_fixtures import tiny_pipeline, write_pipeline

from bfsdata.config.pipeline import ConfigError, LayoutConfig
from bfsdata.imaging.tiling import Tiling, TilingError, plan_tiling, starts
from bfsdata.sources.image_decode import DEFECT, UNANNOTATED
from bfsdata.sources.image_folders import check_headers, scan_images
from bfsdata.workspace import manifest


def _workspace(tmp_path: Path, mode: str = "grid") -> Path:
    """An empty workspace whose pipeline.yaml is the tiny image pipeline (the CLI reads it)."""
    ws = tmp_path / "ws"
    ws.mkdir()
    write_pipeline(ws / "pipeline.yaml", image_pipeline(tiny_pipeline(), mode))
    return ws


def _ingest(raw: Path, ws: Path) -> str:
    return ok(invoke("ingest", "--format", "images", raw, "-w", ws))


# --- tiles --------------------------------------------------------------------------------------


def test_starts_cover_every_pixel_with_a_last_tile_flush_with_the_edge() -> None:
    assert starts(64, 32, 32) == [0, 32]
    assert starts(64, 32, 16) == [0, 16, 32]
    assert starts(70, 32, 32) == [0, 32, 38]  # 38 + 32 = 70: the edge, overlapping by 26 px
    with pytest.raises(TilingError, match="32 px tile does not fit in 20 px"):
        starts(20, 32, 32)


def test_grid_boxes_are_columns_by_rows_like_vials_by_regions() -> None:
    boxes = Tiling("grid", 32, 32, 64, 96).boxes(64, 96)
    assert boxes.shape == (3, 2, 4)  # 3 tile columns (vials), 2 tile rows (regions)
    assert boxes[2, 1].tolist() == [32, 64, 64, 96]  # (y0, x0, y1, x1)
    assert Tiling("resize").boxes(50, 70).tolist() == [[[0, 0, 50, 70]]]


def test_layout_refuses_a_stride_that_leaves_pixels_out() -> None:
    with pytest.raises(ConfigError, match=r"layout\.stride: must be 1\.\.tile \(32\)"):
        LayoutConfig(mode="grid", tile=32, stride=40)
    with pytest.raises(ConfigError, match=r"layout\.mode: must be fixed or auto, got 'tiles'"):
        LayoutConfig(mode="tiles")


def test_plan_refuses_tiles_larger_than_the_images_or_too_many() -> None:
    acqs = pd.DataFrame({"height": [64], "width": [64], "source": ["a.png"]})
    with pytest.raises(TilingError, match=r"layout.tile 128 px is larger than the 64x64 images"):
        plan_tiling(LayoutConfig(mode="grid", tile=128, stride=128), acqs)
    big = pd.DataFrame({"height": [64], "width": [4000], "source": ["a.png"]})
    with pytest.raises(TilingError, match="at most 127 per row and column"):
        plan_tiling(LayoutConfig(mode="grid", tile=16, stride=16), big)


# --- scan ---------------------------------------------------------------------------------------


def test_scan_maps_images_onto_strips_labels_defect_types_and_masks(tmp_path: Path) -> None:
    raw = write_image_folder(tmp_path / "raw", train=2, test_good=1, defects={"blob": 2})
    scan = scan_images(raw)
    assert scan.problems == []
    ids = [a.strip for a in scan.acquisitions]
    tests = ["test-blob-000", "test-blob-001", "test-good-000"]
    assert ids == [*tests, "train-good-000", "train-good-001"]
    by_id = {a.strip: a for a in scan.acquisitions}
    assert {a.run for a in scan.acquisitions} == {1}
    assert by_id["test-good-000"].label == "good" and by_id["test-blob-001"].label == "defect"
    assert by_id["test-blob-001"].mask == raw / "ground_truth/blob/001_mask.png"
    assert by_id["train-good-000"].mask is None
    ann = scan.annotations.set_index("strip")
    assert ann.loc["test-blob-000", "defect"] == "blob"
    assert pd.isna(ann.loc["train-good-000", "defect"])


@pytest.mark.parametrize(
    ("mess", "rule", "words"),
    [
        (lambda r: (r / "train/good").rename(r / "train/ok"), "images-layout", "train/good"),
        (
            lambda r: cv2.imwrite(str(r / "ground_truth/blob/007_mask.png"), np.zeros((4, 4))),
            "mask-without-image",
            "has no image test/blob/007.png",
        ),
        (lambda r: (r / "notes.txt").write_text("x"), "images-layout", "unexpected entry"),
        (lambda r: (r / "train/blob").mkdir(), "images-layout", "train/ holds good/ only"),
        (lambda r: (r / "ground_truth/good").mkdir(), "images-layout", "good images have no"),
        (lambda r: (r / "test/blob/x y.png").write_bytes(b""), "strip-id", "must match"),
    ],
)
def test_bad_layouts_are_refused_naming_file_and_rule(tmp_path, mess, rule, words) -> None:
    raw = write_image_folder(tmp_path / "raw")
    mess(raw)
    ws = _workspace(tmp_path)
    before = sorted(p.name for p in ws.iterdir())
    err = refused(invoke("ingest", "--format", "images", raw, "-w", ws))
    assert f"[rule: {rule}]" in err and words in err, err
    assert sorted(p.name for p in ws.iterdir()) == before  # nothing written


def test_a_mask_of_another_size_is_refused(tmp_path: Path) -> None:
    raw = write_image_folder(tmp_path / "raw")
    cv2.imwrite(str(raw / "ground_truth/blob/000_mask.png"), np.zeros((SIDE, 40), np.uint8))
    err = refused(invoke("ingest", "--format", "images", raw, "-w", _workspace(tmp_path)))
    assert "000_mask.png: is 64x40, its image 64x64" in err and "[rule: mask-size]" in err


def test_images_need_an_image_layout_and_no_frame_options(tmp_path: Path) -> None:
    raw = write_image_folder(tmp_path / "raw")
    err = refused(invoke("ingest", "--format", "images", raw, "-w", tmp_path / "a", "-p", "demo"))
    assert "layout.mode is fixed; image folders need layout.mode grid or resize" in err
    err = refused(
        invoke("ingest", "--format", "images", raw, "-w", tmp_path / "b", "--frames", "4")
    )
    assert "--frames and --ranks do not apply to --format images" in err
    err = refused(invoke("ingest", "--format", "movies", raw, "-w", tmp_path / "c"))
    assert "--format 'movies': expected strips or images" in err


def test_the_default_pipeline_for_images_is_images_yaml(tmp_path: Path) -> None:
    """Without --pipeline in a new workspace, `--format images` takes pipelines/images.yaml."""
    raw = write_image_folder(tmp_path / "raw", train=1, test_good=0, defects={})
    ws = tmp_path / "ws"
    out = _ingest(raw, ws)
    assert "acquisitions found    1 (labels from image folders)" in out
    assert "name: images" in (ws / "pipeline.yaml").read_text()


# --- ingest and patch ---------------------------------------------------------------------------


def test_ingest_stores_frames_and_masks_and_patch_labels_follow_the_masks(tmp_path: Path) -> None:
    raw = write_image_folder(tmp_path / "raw", train=3, test_good=1, defects={"blob": 2, "dent": 1})
    (raw / "ground_truth/dent/000_mask.png").unlink()  # a defect without its mask
    ws = _workspace(tmp_path)
    _ingest(raw, ws)
    acqs = manifest.read(ws, manifest.ACQUISITIONS).set_index("strip")
    assert len(acqs) == 7 and set(acqs["n_frames"]) == {1} and set(acqs["run"]) == {1}
    assert acqs.loc["test-dent-000", "source"] == str((raw / "test/dent/000.png").resolve())
    root = zarr.open_group(str(ws / "bfsdata.zarr"), mode="r")
    assert "rank" not in root and root.attrs["ranks"] == []
    assert root["frames"].shape == (7, 1, SIDE, SIDE)
    row = int(acqs.loc["test-blob-001", "acq"])
    assert np.array_equal(
        root["frames"][row, 0], cv2.imread(str(raw / "test/blob/001.png"), cv2.IMREAD_UNCHANGED)
    )
    labels = root["masks"][row]
    assert set(np.unique(labels[BLOB])) == {DEFECT} and int(labels.sum()) == labels[BLOB].size
    assert set(np.unique(root["masks"][int(acqs.loc["test-dent-000", "acq"])])) == {UNANNOTATED}
    kit = (ws / "manifests/test_kit.txt").read_text().split("\n")[1:-1]
    assert kit == ["test-blob-000", "test-blob-001", "test-dent-000", "test-good-000"]

    ok(invoke("patch", "-w", ws))
    p = manifest.read(ws, manifest.PATCHES)
    assert len(p) == 7 * 4 and set(p["kind"]) == {"frame"} and set(p["frame"]) == {0}
    assert p[["y0", "x0", "y1", "x1"]].drop_duplicates().shape[0] == 4  # the 2 x 2 grid
    blob = p[p["strip"].str.startswith("test-blob")]
    hit = (blob["vial"] == 1) & (blob["region"] == 0)  # BLOB lies in the top-left tile
    assert blob.loc[hit, "defect_here"].tolist() == [True, True]
    assert not blob.loc[~hit, "defect_here"].any() and blob["defect_here"].notna().all()
    assert p.loc[p["label"] == "good", "defect_here"].eq(False).all()
    assert p.loc[p["strip"] == "test-dent-000", "defect_here"].isna().all()


def test_rgb_and_16_bit_images_become_grayscale_by_the_documented_rule(tmp_path: Path) -> None:
    raw = write_image_folder(tmp_path / "raw", train=1, test_good=0, defects={})
    rgb = np.random.default_rng(0).integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)  # B, G, R
    cv2.imwrite(str(raw / "train/good/000.png"), rgb)
    ws = _workspace(tmp_path)
    _ingest(raw, ws)
    stored = zarr.open_group(str(ws / "bfsdata.zarr"), mode="r")["frames"][0, 0]
    b, g, r = (rgb[..., i].astype(float) for i in range(3))
    luma = 0.299 * r + 0.587 * g + 0.114 * b  # ITU-R BT.601
    assert np.abs(stored.astype(float) - luma).max() <= 1.0

    raw16 = write_image_folder(tmp_path / "raw16", train=1, test_good=0, defects={})
    img16 = (draw(3).astype(np.uint16) * 257)[..., None].repeat(3, axis=2)  # RGB, 16-bit
    cv2.imwrite(str(raw16 / "train/good/000.png"), img16)
    ws16 = tmp_path / "ws16"
    _ingest(raw16, ws16)
    frames = zarr.open_group(str(ws16 / "bfsdata.zarr"), mode="r")["frames"]
    assert frames.dtype == np.uint16 and np.array_equal(frames[0, 0], img16[..., 0])


def test_grid_refuses_mixed_sizes_and_resize_takes_them(tmp_path: Path) -> None:
    raw = write_image_folder(tmp_path / "raw", train=2, test_good=0, defects={"blob": 1})
    cv2.imwrite(str(raw / "train/good/001.png"), draw(9, size=(48, SIDE)))
    ws = _workspace(tmp_path)
    _ingest(raw, ws)
    err = refused(invoke("patch", "-w", ws))
    assert "acquisitions.parquet: layout.mode grid needs images of one size" in err
    assert "2 sizes, e.g. 48x64 (" in err and "use layout.mode resize" in err
    assert manifest.read(ws, manifest.PATCHES).empty

    resize = tmp_path / "resize.yaml"
    write_pipeline(resize, image_pipeline(tiny_pipeline(), "resize"))
    ok(invoke("patch", "-w", ws, "-p", resize))
    p = manifest.read(ws, manifest.PATCHES).set_index("strip")
    assert len(p) == 3  # one patch per image
    assert p.loc["train-good-001", ["y1", "x1"]].tolist() == [48, SIDE]  # its own size
    assert p.loc["test-blob-000", "defect_here"] and not p.loc["train-good-000", "defect_here"]
    store = zarr.open_group(str(ws / "bfsdata.zarr"), mode="r")
    assert store["frames"].shape[2:] == (SIDE, SIDE)  # the largest image; the other is padded
    assert store["patches"].shape[1:] == (TILE, TILE)


def test_ingest_again_is_a_no_op_and_adds_new_images(tmp_path: Path, snapshot) -> None:
    raw = write_image_folder(tmp_path / "raw", train=2, test_good=1, defects={"blob": 1})
    ws = _workspace(tmp_path)
    _ingest(raw, ws)
    before = snapshot(ws / "manifests")
    assert "nothing to do" in _ingest(raw, ws)
    assert snapshot(ws / "manifests") == before
    cv2.imwrite(str(raw / "test/good/009.png"), draw(42))
    assert "ingested now          1 (1 frames" in _ingest(raw, ws)
    assert "test-good-009" in (ws / "manifests/test_kit.txt").read_text()


def test_an_image_folder_is_refused_in_a_strip_workspace(tmp_path: Path, make_raw) -> None:
    ws = tmp_path / "ws"
    ok(invoke("ingest", make_raw(tmp_path / "strips"), "-w", ws, "--frames", "4"))
    images = tmp_path / "images.yaml"
    write_pipeline(images, image_pipeline(tiny_pipeline()))
    raw = write_image_folder(tmp_path / "raw")
    err = refused(invoke("ingest", "--format", "images", raw, "-w", ws, "-p", images))
    assert "bfsdata.zarr holds strip acquisitions; an image folder needs a workspace" in err
    assert len(manifest.read(ws, manifest.ACQUISITIONS)) == 4
    assert set(manifest.read(ws, manifest.ANNOTATIONS)["strip"]) == {"A1", "B2"}


def test_image_ids_that_differ_only_by_case_refuse_each_other(tmp_path: Path) -> None:
    raw = write_image_folder(tmp_path / "raw", train=2, test_good=0, defects={})
    good = raw / "train" / "good"
    (good / "000.png").rename(good / "Img.png")
    (good / "001.png").rename(good / "img.png")  # one file on a case-insensitive file system
    scan = scan_images(raw)
    assert sorted((p.strip, p.rule) for p in scan.problems) == [
        ("train-good-Img", "unique-strip"),
        ("train-good-img", "unique-strip"),
    ]
    assert all(str(good / "Img.png") in f"{p.source} {p.message}" for p in scan.problems)


def test_max_pixels_bounds_each_image_and_the_store_they_size(tmp_path: Path) -> None:
    good = tmp_path / "raw" / "train" / "good"
    good.mkdir(parents=True)
    cv2.imwrite(str(good / "a.png"), np.zeros((32, 100), np.uint8))
    cv2.imwrite(str(good / "b.png"), np.zeros((100, 32), np.uint8))  # the store: 100x100
    scan = scan_images(tmp_path / "raw")
    problems: list = []
    heads = check_headers(scan.acquisitions, None, problems, max_pixels=3200)
    assert list(heads) == [("train-good-a", 1)]
    (p,) = problems
    assert (p.rule, Path(p.source).name) == ("max-pixels", "b.png")
    assert "would be 100x100" in p.message and "acquisition.max_pixels" in p.message
    problems.clear()
    check_headers(scan.acquisitions, None, problems, max_pixels=10_000)
    assert problems == []
