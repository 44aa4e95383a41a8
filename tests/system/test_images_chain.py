"""An image-folder dataset through the whole chain with the real commands: ingest --format images,
patch, split, train (a tiny model), report and infer; then the store and manifests read by
xarray, dask, pandas and DuckDB in a Python process that never imports bfsdata."""

from __future__ import annotations

import os

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # CPU only: tests must not depend on a GPU
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from cli_helpers import invoke, ok, refused
from image_folders import SIDE, TILE, image_pipeline, write_image_folder
from workspace_fixtures import tiny_pipeline, write_pipeline

from bfsdata.workspace import manifest

TRAIN, TEST_GOOD, DEFECTS = 8, 4, {"blob": 4}


@dataclass(frozen=True)
class Chain:
    ws: Path
    raw: Path
    out: dict[str, str]  # command -> its printed summary


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Chain:
    ws = tmp_path_factory.mktemp("images") / "ws"
    ws.mkdir()
    raw = write_image_folder(ws / "raw", train=TRAIN, test_good=TEST_GOOD, defects=DEFECTS)
    # one short epoch: the chain is what is tested here, not the model (unit/train/test_stage.py)
    pipe = image_pipeline(tiny_pipeline(epochs=1, steps_per_epoch=6))
    write_pipeline(ws / "pipeline.yaml", pipe)
    out = {
        "ingest": ok(invoke("ingest", "--format", "images", raw, "-w", ws)),
        "patch": ok(invoke("patch", "-w", ws)),
        "split": ok(invoke("split", "-w", ws)),
        "train": ok(invoke("train", "-w", ws, "--name", "tiny", "--no-preview")),
        "report": ok(invoke("report", "-w", ws, "--run", "tiny")),
        "infer": ok(invoke("infer", raw / "test" / "blob", "-w", ws, "--run", "tiny")),
    }
    return Chain(ws, raw, out)


def test_the_folder_test_set_is_the_test_kit(chain: Chain) -> None:
    splits = manifest.read(chain.ws, manifest.SPLITS_SCHEMA).set_index("strip")["split"]
    test_ids = {s for s in splits.index if s.startswith("test-")}
    assert len(test_ids) == TEST_GOOD + sum(DEFECTS.values())
    assert set(splits[list(test_ids)]) == {"calib", "test"}
    assert set(splits.drop(list(test_ids))) == {"train", "val"}
    assert "test_kit.txt" in chain.out["split"]


def test_training_saw_only_train_tiles(chain: Chain) -> None:
    assert "patches               " in chain.out["train"]
    train_tiles = (TRAIN - 2) * 4  # val 0.2 of 8 good training images: 2 held out
    assert f"{train_tiles} train, 8 val" in chain.out["train"]
    assert "steps                 6" in chain.out["train"]
    assert (chain.ws / "runs/tiny/export/saved_model").is_dir()


def test_report_is_per_image_without_run_wise_or_knapp(chain: Chain) -> None:
    report = chain.ws / "reports" / "tiny"
    m = json.loads((report / "metrics.json").read_text())
    assert m["item"] == "image"
    assert m["run_wise"] is None and m["knapp"] is None
    assert "one run each" in m["single_run"] and m["single_run"] in m["notes"]
    assert sorted(m["headline"]) == [
        "image-wise accuracy",
        "image-wise escape rate",
        "image-wise false reject rate",
    ]
    assert [r["name"] for r in m["region_wise"]["regions"].values()] == ["tile row 0", "tile row 1"]
    assert set(m["val"]) == {"patch", "strip"}
    counts = m["counts"]["test"]
    assert counts["acquisitions"] == counts["good_strips"] + counts["defect_strips"]
    html = (report / "report.html").read_text()
    assert "Table 2 image-wise" in html and "Run-wise and Knapp sections left out" in html
    assert 'id="run-wise"' not in html and 'id="knapp"' not in html
    th = json.loads((report / "thresholds.json").read_text())
    assert th["vials"] == 2 and th["regions"] == [0, 1]
    assert "a strip is judged" not in th["rule"]
    assert "run-wise and Knapp: left out (one run per item)" in chain.out["report"]
    assert "image-wise: accuracy" in chain.out["report"]


def test_infer_decides_each_image_with_the_report_thresholds(chain: Chain) -> None:
    out = chain.ws / "infer" / "tiny"
    summary = json.loads((out / "summary.json").read_text())
    ids = [f"test-blob-{i:03d}" for i in range(DEFECTS["blob"])]  # the ids ingest gave them
    assert [a["strip"] for a in summary["acquisitions"]] == ids
    th = json.loads((chain.ws / "reports/tiny/thresholds.json").read_text())
    rec = json.loads((out / "test-blob-000_run1.json").read_text())
    assert len(rec["patches"]) == 4  # 2 x 2 tiles, frame 0
    over = [p["score"] > th["strip"][str(p["region"])] for p in rec["patches"]]
    assert rec["rejected"] == any(over)
    assert (out / "test-blob-000_run1.png").is_file()
    # the same image as ingested (in calib or test: both are scored) gets the same scores
    scores = pd.read_parquet(chain.ws / "reports/tiny/scores.parquet")
    mine = scores[scores["strip"] == "test-blob-000"].sort_values(["vial", "region"])
    got = sorted((p["vial"], p["region"], p["score"]) for p in rec["patches"])
    assert np.allclose([s for *_, s in got], mine["score"].to_numpy(), atol=1e-5)


def test_infer_refuses_an_image_of_another_grid(chain: Chain, tmp_path: Path) -> None:
    wide = tmp_path / "new" / "wide.png"
    wide.parent.mkdir()
    cv2.imwrite(str(wide), np.full((SIDE, 2 * SIDE), 128, np.uint8))
    err = refused(invoke("infer", wide, "-w", chain.ws, "--run", "tiny"))
    assert "wide.png: 64x128 px gives 4 x 2 tiles, the thresholds are for 2 x 2" in err


READER = textwrap.dedent(
    """
    import json, sys
    import dask.array as da
    import duckdb
    import pandas as pd
    import xarray as xr

    ws = sys.argv[1]
    ds = xr.open_zarr(f"{ws}/bfsdata.zarr", consolidated=False)
    patches = da.from_zarr(f"{ws}/bfsdata.zarr", component="patches")
    acq = pd.read_parquet(f"{ws}/manifests/acquisitions.parquet")
    row = int(acq.loc[acq["strip"] == "test-blob-000", "acq"].iloc[0])
    per_label = duckdb.sql(
        f"select label, count(*) as n from '{ws}/manifests/patches.parquet' "
        "group by label order by label"
    ).fetchall()
    print(json.dumps({
        "bfsdata_loaded": "bfsdata" in sys.modules,
        "dims": {k: list(v.dims) for k, v in ds.data_vars.items()},
        "frame": ds["frames"].isel(acq=row, frame=0).values.tolist(),
        "mask_sum": int(ds["masks"].isel(acq=row).sum()),
        "patches": list(patches.shape),
        "per_label": per_label,
    }))
    """
)


def test_store_and_manifests_open_without_bfsdata(chain: Chain) -> None:
    res = subprocess.run(
        [sys.executable, "-c", READER, str(chain.ws)],
        capture_output=True,
        text=True,
        cwd=chain.ws.parent,  # READER imports xarray, dask, pandas, duckdb only: checked below
        timeout=120,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert not got["bfsdata_loaded"]
    assert got["dims"] == {
        "frames": ["acq", "frame", "y", "x"],
        "masks": ["acq", "y", "x"],
        "patches": ["patch", "patch_y", "patch_x"],
    }
    image = cv2.imread(str(chain.raw / "test/blob/000.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(np.array(got["frame"], dtype=np.uint8), image)
    assert got["mask_sum"] > 0
    assert got["patches"][1:] == [TILE, TILE] and got["patches"][0] >= 4 * (SIDE // TILE) ** 2
    n_good = (TRAIN + TEST_GOOD) * 4
    assert got["per_label"] == [["defect", sum(DEFECTS.values()) * 4], ["good", n_good]]


def test_verify_accepts_an_image_folder_workspace(chain: Chain) -> None:
    out = " ".join(ok(invoke("verify", "-w", chain.ws)).split())
    n_acq = len(manifest.read(chain.ws, manifest.ACQUISITIONS))
    n_patches = len(manifest.read(chain.ws, manifest.PATCHES))
    assert f"manifest rows {n_acq} acquisitions, {n_patches} patches" in out
    assert "ok: every row points at its data, and nothing else is stored" in out
