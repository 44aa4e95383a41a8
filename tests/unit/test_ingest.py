"""ingest(raw, ws, pipe): real PNG files in, real zarr store and parquet manifests out; a clean
ingest and re-runs (bad input: test_ingest_refusals.py, SIGKILL: test_ingest_resume.py).

Every expectation is computed from the source files themselves (decoded with cv2), never from
what ingest wrote, so a bug in decode, rank or row bookkeeping cannot hide behind itself
(`check_workspace` and the other checks are in ingest_checks.py).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import zarr

from bfsdata.config.pipeline import AcquisitionConfig, Pipeline
from bfsdata.ingest import ingest
from bfsdata.workspace import manifest
from bfsdata.workspace.manifest import ACQUISITIONS, ANNOTATIONS
from tests.unit.ingest_checks import STRIPS, check_workspace, store_arrays

# --- a clean ingest --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_ingest_writes_exact_frames_rank_and_manifest(
    tmp_path: Path, make_raw, tiny_pipe, read_run, dtype
) -> None:
    raw = make_raw(tmp_path / "raw", dtype=dtype)
    ws = tmp_path / "ws"
    s = ingest(raw, ws, tiny_pipe, workers=2)
    files = sorted(raw.rglob("frame_*.png"))
    assert (s.found, s.already, s.ingested, s.rejected, s.total) == (4, 0, 4, 0, 4)
    assert s.frames == 16 == len(files)
    assert s.bytes_read == sum(p.stat().st_size for p in files)
    assert s.label_source == "labels.csv"
    assert s.workspace == ws

    rows = manifest.read(ws, ACQUISITIONS)
    assert sorted(zip(rows["strip"], rows["run"], rows["label"], strict=True)) == [
        ("A1", 1, "good"),
        ("A1", 2, "good"),
        ("B2", 1, "defect"),
        ("B2", 2, "defect"),
    ]
    assert sorted(rows["acq"]) == [0, 1, 2, 3]
    assert set(rows["dtype"]) == {np.dtype(dtype).name}
    assert str(rows["ingested_at"].dtype) == "datetime64[us, UTC]"
    frames, rank = store_arrays(ws)
    assert frames.shape == (4, 4, 32, 40) and rank.shape == (4, 2, 32, 40)
    assert frames.dtype == dtype and rank.dtype == dtype
    check_workspace(ws, raw, tiny_pipe, read_run)

    root = zarr.open_group(str(ws / "bfsdata.zarr"), mode="r")
    assert root.attrs["ranks"] == [1, 4]
    ann = manifest.read(ws, ANNOTATIONS).set_index("strip")
    assert ann.loc["B2", "defect"] == "scratch"
    assert (ann.loc["B2", "vial"], ann.loc["B2", "region"]) == (2, 1)
    assert ann.loc["A1", "label"] == "good"


def test_middle_rank_is_the_sorted_stack(tmp_path: Path, make_raw, read_run) -> None:
    pipe = dataclasses.replace(
        Pipeline(), acquisition=AcquisitionConfig(frames=5, ranks=(1, 3, 2, 5), test_frames=(0,))
    )
    raw = make_raw(tmp_path / "raw", frames=5, dtype=np.uint16)
    ingest(raw, tmp_path / "ws", pipe, workers=2)
    _, rank = store_arrays(tmp_path / "ws")
    assert rank.shape[1] == 4
    check_workspace(tmp_path / "ws", raw, pipe, read_run)


def test_frame_order_is_numeric(tmp_path: Path, make_raw, read_run) -> None:
    pipe = dataclasses.replace(
        Pipeline(), acquisition=AcquisitionConfig(frames=12, ranks=(1, 12), test_frames=(0,))
    )
    raw = make_raw(tmp_path / "raw", strips={"A1": "good"}, runs=1, frames=12)
    ingest(raw, tmp_path / "ws", pipe, workers=1)
    frames, _ = store_arrays(tmp_path / "ws")
    for i in range(12):
        img = cv2.imread(str(raw / "A1" / "run_1" / f"frame_{i}.png"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(frames[0, i], img, err_msg=f"frame {i}")


def test_labels_from_folders_and_unlabelled_data(tmp_path: Path, make_raw, tiny_pipe) -> None:
    make_raw(tmp_path / "raw" / "good", strips={"G1": "unknown"}, runs=1)
    make_raw(tmp_path / "raw" / "defect", strips={"D1": "unknown"}, runs=1)
    s = ingest(tmp_path / "raw", tmp_path / "ws", tiny_pipe)
    assert s.label_source == "folders"
    rows = manifest.read(tmp_path / "ws", ACQUISITIONS).set_index("strip")
    assert rows.loc["G1", "label"] == "good" and rows.loc["D1", "label"] == "defect"

    raw2 = make_raw(tmp_path / "raw2", labels=False)
    s = ingest(raw2, tmp_path / "ws2", tiny_pipe)
    assert s.label_source == "unknown"
    assert set(manifest.read(tmp_path / "ws2", ACQUISITIONS)["label"]) == {"unknown"}
    assert not (tmp_path / "ws2" / "manifests" / "annotations.parquet").exists()


def test_source_is_the_absolute_run_folder(tmp_path: Path, make_raw, tiny_pipe) -> None:
    # Absolute on purpose: a report must trace back to its raw frames wherever it is read.
    raw = make_raw(tmp_path / "raw")
    ingest(raw, tmp_path / "ws", tiny_pipe)
    rows = manifest.read(tmp_path / "ws", ACQUISITIONS)
    expected = [str((raw / s / r).resolve()) for s in ("A1", "B2") for r in ("run_1", "run_2")]
    assert sorted(rows["source"]) == expected


# --- re-runs -----------------------------------------------------------------------------------


def test_rerun_is_a_no_op_for_store_and_acquisitions(
    tmp_path: Path, make_raw, tiny_pipe, snapshot
) -> None:
    raw = make_raw(tmp_path / "raw")
    ws = tmp_path / "ws"
    ingest(raw, ws, tiny_pipe)
    before = snapshot(ws)
    time.sleep(0.01)  # mtimes are ns; make any rewrite visible
    s = ingest(raw, ws, tiny_pipe)
    assert (s.found, s.already, s.ingested, s.rejected, s.frames, s.total) == (4, 4, 0, 0, 0, 4)
    after = snapshot(ws)
    assert set(after) == set(before)
    for key in before:
        if key.startswith("bfsdata.zarr/") or key == "manifests/acquisitions.parquet":
            assert after[key] == before[key], f"{key} was rewritten"
    assert after["manifests/annotations.parquet"][0] == before["manifests/annotations.parquet"][0]


def test_rerun_touches_no_file_at_all(tmp_path: Path, make_raw, tiny_pipe, snapshot) -> None:
    raw = make_raw(tmp_path / "raw")
    ingest(raw, tmp_path / "ws", tiny_pipe)
    before = snapshot(tmp_path / "ws")
    time.sleep(0.01)
    ingest(raw, tmp_path / "ws", tiny_pipe)
    assert snapshot(tmp_path / "ws") == before


def test_new_acquisitions_are_appended(
    tmp_path: Path, make_raw, tiny_pipe, read_run, snapshot
) -> None:
    raw = make_raw(tmp_path / "raw")
    ws = tmp_path / "ws"
    ingest(raw, ws, tiny_pipe)
    old = manifest.read(ws, ACQUISITIONS)
    old_store = {k: v for k, v in snapshot(ws).items() if "/c/" in k}

    make_raw(raw, strips={**STRIPS, "C3": "good"}, runs=3)  # old files rewritten byte-identical
    s = ingest(raw, ws, tiny_pipe, workers=2)
    assert (s.found, s.already, s.ingested, s.total) == (9, 4, 5, 9)
    rows = manifest.read(ws, ACQUISITIONS)
    assert sorted(rows["acq"]) == list(range(9))
    kept = rows.merge(old, on=["strip", "run"], suffixes=("", "_old"))
    assert len(kept) == 4
    assert (kept["acq"] == kept["acq_old"]).all()
    assert (kept["sha256"] == kept["sha256_old"]).all()
    assert (kept["ingested_at"] == kept["ingested_at_old"]).all()
    new_store = snapshot(ws)
    for key, value in old_store.items():
        assert new_store[key] == value, f"old shard {key} was rewritten"
    check_workspace(ws, raw, tiny_pipe, read_run)
