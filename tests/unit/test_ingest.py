"""ingest(raw, ws, pipe): real PNG files in, real zarr store and parquet manifests out.

Every expectation is computed from the source files themselves (decoded with cv2), never from
what ingest wrote, so a bug in decode, rank or row bookkeeping cannot hide behind itself.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
import zarr

from bfsdata.config.pipeline import AcquisitionConfig, Pipeline
from bfsdata.ingest import IngestError, ingest
from bfsdata.workspace import manifest
from bfsdata.workspace.manifest import ACQUISITIONS, ANNOTATIONS, REJECTED

STRIPS = {"A1": "good", "B2": "defect"}


# --- helpers -------------------------------------------------------------------------------


def _arrays(ws: Path) -> tuple[zarr.Array, zarr.Array]:
    root = zarr.open_group(str(ws / "bfsdata.zarr"), mode="r", zarr_format=3)
    return root["frames"], root["rank"]


def _sha_of_run(run_dir: Path, n_frames: int) -> str:
    """The manifest's definition: sha256 over the raw sha256 digests of the files, in order."""
    outer = hashlib.sha256()
    for i in range(n_frames):
        outer.update(hashlib.sha256((run_dir / f"frame_{i}.png").read_bytes()).digest())
    return outer.hexdigest()


def _shards(ws: Path, name: str) -> set[int]:
    """Rows (= shards, one acquisition per shard) that have a file in the store."""
    folder = ws / "bfsdata.zarr" / name / "c"
    if not folder.exists():
        return set()
    return {int(p.name) for p in folder.iterdir() if any(f.is_file() for f in p.rglob("*"))}


def _is_shard(rel: Path) -> bool:
    """`frames/c/<row>/0/0/0`: the one file of a row's shard (4-D arrays, one shard per row)."""
    parts = rel.parts
    return len(parts) == 6 and parts[1] == "c" and parts[2].isdigit() and parts[3:] == ("0",) * 3


def _check_workspace(ws: Path, raw: Path, pipe: Pipeline, read_run: Callable) -> None:
    """Every manifest row points at data equal to its decoded source files; nothing else."""
    rows = manifest.read(ws, ACQUISITIONS)
    frames, rank = _arrays(ws)
    assert rows["acq"].is_unique
    assert _shards(ws, "frames") == set(rows["acq"]) == _shards(ws, "rank")
    for r in rows.itertuples():
        run_dir = raw / r.strip / f"run_{r.run}"
        src = read_run(run_dir)  # (F, H, W)
        assert Path(r.source).resolve() == run_dir.resolve()
        assert (r.n_frames, r.height, r.width, r.dtype) == (*src.shape, str(src.dtype))
        assert r.sha256 == _sha_of_run(run_dir, r.n_frames)
        got = frames[r.acq]
        assert got.dtype == src.dtype
        np.testing.assert_array_equal(got, src, err_msg=f"frames of {r.strip}/{r.run}")
        ordered = np.sort(src, axis=0)
        want = np.stack([ordered[k - 1] for k in pipe.acquisition.ranks])
        np.testing.assert_array_equal(rank[r.acq], want, err_msg=f"rank of {r.strip}/{r.run}")
        for i, k in enumerate(pipe.acquisition.ranks):  # and plainly: rank 1 = min, F = max
            if k in (1, len(src)):
                plain = src.min(axis=0) if k == 1 else src.max(axis=0)
                np.testing.assert_array_equal(rank[r.acq][i], plain)


def _content(ws: Path) -> dict[tuple[str, int], tuple[str, bytes, bytes]]:
    """(strip, run) -> (sha256, frames bytes, rank bytes): store content independent of rows."""
    rows = manifest.read(ws, ACQUISITIONS)
    frames, rank = _arrays(ws)
    return {
        (r.strip, int(r.run)): (r.sha256, frames[r.acq].tobytes(), rank[r.acq].tobytes())
        for r in rows.itertuples()
    }


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
    frames, rank = _arrays(ws)
    assert frames.shape == (4, 4, 32, 40) and rank.shape == (4, 2, 32, 40)
    assert frames.dtype == dtype and rank.dtype == dtype
    _check_workspace(ws, raw, tiny_pipe, read_run)

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
    _, rank = _arrays(tmp_path / "ws")
    assert rank.shape[1] == 4
    _check_workspace(tmp_path / "ws", raw, pipe, read_run)


def test_frame_order_is_numeric(tmp_path: Path, make_raw, read_run) -> None:
    pipe = dataclasses.replace(
        Pipeline(), acquisition=AcquisitionConfig(frames=12, ranks=(1, 12), test_frames=(0,))
    )
    raw = make_raw(tmp_path / "raw", strips={"A1": "good"}, runs=1, frames=12)
    ingest(raw, tmp_path / "ws", pipe, workers=1)
    frames, _ = _arrays(tmp_path / "ws")
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
    _check_workspace(ws, raw, tiny_pipe, read_run)


# --- bad input: refused before anything is written --------------------------------------------


def _frame(run_dir: Path, i: int = 1) -> Path:
    return run_dir / f"frame_{i}.png"


def _noise(shape, dtype=np.uint8) -> np.ndarray:
    return np.random.default_rng(7).integers(0, 200, size=shape, dtype=dtype)


def _zero_bytes(run_dir: Path) -> str:
    _frame(run_dir).write_bytes(b"")
    return "frame_1.png"


def _unreadable(run_dir: Path) -> str:
    _frame(run_dir).unlink()
    _frame(run_dir).mkdir()  # cannot be opened as a file, even by root
    return "frame_1.png"


def _text_as_png(run_dir: Path) -> str:
    _frame(run_dir).write_text("strip,label\nA1,good\n")
    return "frame_1.png"


def _extra_frame(run_dir: Path) -> str:
    shutil.copy(_frame(run_dir), _frame(run_dir, 4))
    return run_dir.name


def _missing_frame(run_dir: Path) -> str:
    _frame(run_dir, 2).unlink()
    return run_dir.name


def _mixed_shapes(run_dir: Path) -> str:
    cv2.imwrite(str(_frame(run_dir, 3)), _noise((32, 41)))
    return "frame_3.png"


def _rgb(run_dir: Path) -> str:
    cv2.imwrite(str(_frame(run_dir)), _noise((32, 40, 3)))
    return "frame_1.png"


def _mixed_depth(run_dir: Path) -> str:
    cv2.imwrite(str(_frame(run_dir, 2)), _noise((32, 40), np.uint16))
    return "frame_2.png"


def _stray_file(run_dir: Path) -> str:
    (run_dir / "notes.txt").write_text("operator note")
    return "notes.txt"


def _duplicate_run(run_dir: Path) -> str:
    twin = run_dir.with_name(run_dir.name.replace("run_", "run_0"))  # run_2 -> run_02
    shutil.copytree(run_dir, twin)
    return twin.name


RUN_BREAKAGES = [
    (_unreadable, "readable"),
    (_zero_bytes, "not-empty"),
    (_text_as_png, "valid-image"),
    (_extra_frame, "frame-count"),
    (_missing_frame, "frame-count"),
    (_mixed_shapes, "same-format"),
    (_rgb, "single-channel"),
    (_mixed_depth, "same-format"),
    (_stray_file, "raw-layout"),
    (_duplicate_run, "unique-acquisition"),
]


def _assert_refused(err: IngestError, name: str, rule: str) -> None:
    text = str(err)
    assert f"[rule: {rule}]" in text, text
    line = next(ln for ln in text.splitlines() if f"[rule: {rule}]" in ln)
    assert name in line, f"{name!r} not named in {line!r}"
    assert "--skip-bad" in text
    assert any(p.rule == rule for p in err.problems)


@pytest.mark.parametrize(
    ("breakage", "rule"), RUN_BREAKAGES, ids=lambda v: getattr(v, "__name__", v)
)
def test_bad_run_in_a_fresh_workspace(
    tmp_path: Path, make_raw, tiny_pipe, breakage, rule: str
) -> None:
    raw = make_raw(tmp_path / "raw")
    name = breakage(raw / "B2" / "run_2")
    ws = tmp_path / "ws"
    with pytest.raises(IngestError) as e:
        ingest(raw, ws, tiny_pipe)
    _assert_refused(e.value, name, rule)
    assert not ws.exists(), "a refused ingest must not create the workspace"


@pytest.mark.parametrize(
    ("breakage", "rule"), RUN_BREAKAGES, ids=lambda v: getattr(v, "__name__", v)
)
def test_bad_new_run_leaves_an_existing_workspace_unchanged(
    tmp_path: Path, make_raw, tiny_pipe, snapshot, breakage, rule: str
) -> None:
    raw = make_raw(tmp_path / "raw")
    ws = tmp_path / "ws"
    ingest(raw, ws, tiny_pipe)
    before = snapshot(ws)
    make_raw(raw, strips={**STRIPS, "C3": "good"})
    name = breakage(raw / "C3" / "run_1")
    with pytest.raises(IngestError) as e:
        ingest(raw, ws, tiny_pipe)
    _assert_refused(e.value, name, rule)
    assert snapshot(ws) == before


def _bad_strip_id(raw: Path) -> tuple[str, str]:
    shutil.copytree(raw / "A1", raw / "bad strip!")
    return "bad strip!", "strip-id"


def _csv(text: str) -> Callable[[Path], tuple[str, str]]:
    def write(raw: Path) -> tuple[str, str]:
        (raw / "labels.csv").write_text(text)
        return "labels.csv", "labels-csv"

    return write


STRIP_BREAKAGES = [
    _bad_strip_id,
    _csv("strip,defect\nA1,\nB2,scratch\n"),  # missing column label
    _csv("strip,label\nA1,good\nB2,cracked\n"),  # unknown label
    _csv("strip,label\nA1,good\nB2,defect\nZ9,good\n"),  # strip not on disk
    _csv("strip,label\nA1,good\nB2,defect\nA1,defect\n"),  # conflicting labels
]
STRIP_IDS = ["strip-id", "missing-column", "unknown-label", "strip-not-on-disk", "conflict"]


@pytest.mark.parametrize("breakage", STRIP_BREAKAGES, ids=STRIP_IDS)
def test_bad_strip_or_labels_are_refused(
    tmp_path: Path, make_raw, tiny_pipe, snapshot, breakage
) -> None:
    raw = make_raw(tmp_path / "raw")
    ws = tmp_path / "ws"
    name, rule = breakage(raw)
    with pytest.raises(IngestError) as e:
        ingest(raw, ws, tiny_pipe)
    _assert_refused(e.value, name, rule)
    assert not ws.exists()

    # Against a workspace that already holds the good acquisitions, nothing changes either.
    ingest(make_raw(tmp_path / "raw2"), ws, tiny_pipe)  # same strips, runs and pixels
    before = snapshot(ws)
    with pytest.raises(IngestError):
        ingest(raw, ws, tiny_pipe)
    assert snapshot(ws) == before


@pytest.mark.parametrize(
    ("shape", "dtype", "found"),
    [
        ((32, 48), np.uint8, "frames are uint8 32x48"),
        ((32, 40), np.uint16, "frames are uint16 32x40"),
    ],
)
def test_frames_unlike_the_workspace_are_refused(
    tmp_path: Path, make_raw, tiny_pipe, snapshot, shape, dtype, found: str
) -> None:
    raw = make_raw(tmp_path / "raw")
    ws = tmp_path / "ws"
    ingest(raw, ws, tiny_pipe)
    before = snapshot(ws)
    make_raw(tmp_path / "more", strips={"C3": "good"}, shape=shape, dtype=dtype, labels=False)
    shutil.move(tmp_path / "more" / "C3", raw / "C3")
    with pytest.raises(IngestError, match="this workspace holds uint8 32x40") as e:
        ingest(raw, ws, tiny_pipe)
    _assert_refused(e.value, "C3", "same-format")
    assert found in str(e.value)
    assert snapshot(ws) == before


def test_fatal_problems_are_refused_even_with_skip_bad(tmp_path: Path, make_raw, tiny_pipe) -> None:
    raw = make_raw(tmp_path / "raw")
    (raw / "labels.csv").write_text("strip\nA1\n")
    with pytest.raises(IngestError, match=r"missing column\(s\) label"):
        ingest(raw, tmp_path / "ws", tiny_pipe, skip_bad=True)
    assert not (tmp_path / "ws").exists()


def test_missing_raw_folder(tmp_path: Path, tiny_pipe) -> None:
    with pytest.raises(IngestError, match=r"nope: is not a folder \[rule: raw-folder\]"):
        ingest(tmp_path / "nope", tmp_path / "ws", tiny_pipe, skip_bad=True)


# --- failures found while decoding --------------------------------------------------------------


def _corrupt(path: Path) -> None:
    """Zero 16 bytes inside the pixel data: the header and the file's end are intact, so only
    decoding finds it (a truncated file is refused with the headers, test_hostile.py)."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 16] = bytes(16)
    path.write_bytes(bytes(data))


def test_corrupt_png_fails_at_decode_and_the_rest_is_kept(
    tmp_path: Path, make_raw, tiny_pipe, read_run
) -> None:
    raw = make_raw(tmp_path / "raw")
    _corrupt(raw / "A1" / "run_2" / "frame_2.png")
    ws = tmp_path / "ws"
    with pytest.raises(IngestError) as e:
        ingest(raw, ws, tiny_pipe, workers=2)
    _assert_refused(e.value, "frame_2.png", "valid-image")
    assert "3 acquisition(s) were ingested" in str(e.value)
    rows = manifest.read(ws, ACQUISITIONS)
    assert sorted(zip(rows["strip"], rows["run"], strict=True)) == [("A1", 1), ("B2", 1), ("B2", 2)]
    _check_workspace(ws, raw, tiny_pipe, read_run)  # also: no shard for the bad row
    old = rows.set_index(["strip", "run"])["acq"]

    make_raw(raw)  # rewrites the corrupt file with its original bytes
    s = ingest(raw, ws, tiny_pipe, workers=2)
    assert (s.already, s.ingested, s.rejected, s.total) == (3, 1, 0, 4)
    rows = manifest.read(ws, ACQUISITIONS)
    assert sorted(rows["acq"]) == [0, 1, 2, 3]  # the free row is reused, no gap
    assert rows.set_index(["strip", "run"])["acq"].loc[old.index].equals(old)
    _check_workspace(ws, raw, tiny_pipe, read_run)


def test_store_without_rows_and_another_format(
    tmp_path: Path, make_raw, tiny_pipe, read_run, snapshot
) -> None:
    raw = make_raw(tmp_path / "raw", strips={"A1": "good"}, runs=1)
    _corrupt(raw / "A1" / "run_1" / "frame_0.png")
    ws = tmp_path / "ws"
    with pytest.raises(IngestError):
        ingest(raw, ws, tiny_pipe)  # creates the arrays, commits no row
    assert manifest.read(ws, ACQUISITIONS).empty
    before = snapshot(ws)
    raw2 = make_raw(tmp_path / "raw2", strips={"B2": "defect"}, runs=1, shape=(32, 48))
    try:
        ingest(raw2, ws, tiny_pipe)
    except ValueError:  # refusing is fine, if nothing changed
        assert snapshot(ws) == before
    else:  # so is taking the new format, as the store holds no acquisition
        _check_workspace(ws, raw2, tiny_pipe, read_run)


def test_skip_bad_ingests_the_rest_and_records_each_refusal(
    tmp_path: Path, make_raw, tiny_pipe, read_run
) -> None:
    strips = {"A1": "good", "B2": "defect", "C3": "good", "D4": "good", "E5": "good"}
    raw = make_raw(tmp_path / "raw", strips=strips, runs=2)
    _zero_bytes(raw / "A1" / "run_1")
    _rgb(raw / "B2" / "run_2")
    _stray_file(raw / "C3" / "run_1")
    _corrupt(raw / "D4" / "run_2" / "frame_0.png")  # found only at decode
    shutil.copytree(raw / "E5", raw / "bad strip!")
    ws = tmp_path / "ws"
    s = ingest(raw, ws, tiny_pipe, skip_bad=True, workers=2)
    assert (s.ingested, s.rejected, s.total) == (6, 5, 6)

    rows = manifest.read(ws, ACQUISITIONS)
    assert sorted(zip(rows["strip"], rows["run"], strict=True)) == [
        ("A1", 2),
        ("B2", 1),
        ("C3", 2),
        ("D4", 1),
        ("E5", 1),
        ("E5", 2),
    ]
    _check_workspace(ws, raw, tiny_pipe, read_run)

    rej = manifest.read(ws, REJECTED)
    got = sorted(
        (Path(src).relative_to(raw).as_posix(), rule)
        for src, rule in zip(rej["source"], rej["rule"], strict=True)
    )
    assert got == [
        ("A1/run_1/frame_1.png", "not-empty"),
        ("B2/run_2/frame_1.png", "single-channel"),
        ("C3/run_1/notes.txt", "raw-layout"),
        ("D4/run_2/frame_0.png", "valid-image"),
        ("bad strip!", "strip-id"),
    ]
    assert rej["message"].str.len().min() > 10
    by_rule = rej.set_index("rule")
    assert (by_rule.loc["not-empty", "strip"], by_rule.loc["not-empty", "run"]) == ("A1", 1)

    # Re-running with --skip-bad neither re-ingests nor duplicates refusals.
    s = ingest(raw, ws, tiny_pipe, skip_bad=True)
    assert (s.ingested, s.already) == (0, 6)
    assert len(manifest.read(ws, REJECTED)) == 5


def test_skip_bad_records_every_labels_csv_refusal(tmp_path: Path, make_raw, tiny_pipe) -> None:
    raw = make_raw(tmp_path / "raw")
    (raw / "labels.csv").write_text(
        "strip,label,defect\nA1,good,\nA1,defect,scratch\nB2,defect,drop\nZ9,good,\n"
    )
    s = ingest(raw, tmp_path / "ws", tiny_pipe, skip_bad=True)
    assert s.ingested == 2 and s.rejected == 2  # A1 refused (conflict), Z9 has no folder
    rej = manifest.read(tmp_path / "ws", REJECTED)
    assert sorted(rej["strip"]) == ["A1", "Z9"]


# --- interrupted runs ----------------------------------------------------------------------------


# Runs `bfsdata ingest` with the manifest committed after every acquisition instead of every 5 s,
# so that a kill leaves both committed rows and shards without rows (the worst case to resume).
FAST_COMMITS = """
import sys
import bfsdata.workspace.writes as w
init = w.Committer.__init__
def fast(self, *a, **k):
    k["interval"] = 0.0
    init(self, *a, **k)
w.Committer.__init__ = fast
from bfsdata.cli import main
sys.argv[0] = "bfsdata"
main()
"""


def _run_and_kill(cmd: list[str], wait_for: Callable[[], bool], deadline: float = 60) -> bool:
    """Start `cmd`; SIGKILL it once `wait_for()` holds. True if it was killed, False if it
    finished first (then the test is still valid, just less interesting)."""
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    t0 = time.monotonic()
    try:
        while proc.poll() is None and not wait_for() and time.monotonic() - t0 < deadline:
            time.sleep(0.005)
        if proc.poll() is not None:
            return False
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        return True
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _interrupted_then_resumed(
    tmp_path: Path, make_raw, read_run, launcher: list[str], wait_for: Callable[[Path], bool]
) -> tuple[bool, int]:
    n_strips = 12  # 24 acquisitions of 16 frames of 256x320: about 1 s of ingest on 2 cores
    pipe = Pipeline()  # the CLI's default: 16 frames, ranks 1 and 16
    raw = make_raw(
        tmp_path / "raw",
        strips={f"S{i:03d}": "good" for i in range(n_strips)},
        runs=2,
        frames=16,
        shape=(256, 320),
    )
    ws = tmp_path / "ws"
    cmd = [*launcher, "ingest", str(raw), "-w", str(ws), "--workers", "2"]
    killed = _run_and_kill(cmd, lambda: wait_for(ws))

    # Whatever the moment of the kill, the workspace is valid: every row's data is there.
    rows = manifest.read(ws, ACQUISITIONS)
    if len(rows):
        frames, rank = _arrays(ws)
        for r in rows.itertuples():
            src = read_run(raw / r.strip / f"run_{r.run}")
            np.testing.assert_array_equal(frames[r.acq], src)
            np.testing.assert_array_equal(rank[r.acq], np.stack([src.min(0), src.max(0)]))

    # The re-run finishes the job, and the result equals an uninterrupted run.
    s = ingest(raw, ws, pipe, workers=2)
    assert s.already == len(rows) and s.total == 2 * n_strips
    store = ws / "bfsdata.zarr"
    debris = [
        str(p.relative_to(store))
        for p in store.rglob("*")
        if p.is_file() and p.name != "zarr.json" and not _is_shard(p.relative_to(store))
    ]
    assert debris == [], "temp/lock files of the killed run were left in the store"
    reference = tmp_path / "reference"
    ingest(raw, reference, pipe, workers=2)
    assert _content(ws) == _content(reference)
    _check_workspace(ws, raw, pipe, read_run)  # also: no orphan shard survived
    return killed, len(rows)


def test_killed_ingest_resumes(tmp_path: Path, make_raw, read_run) -> None:
    """The real command, killed once 6 of its 24 shards are on disk (no row committed yet)."""
    bfsdata = str(Path(sys.executable).parent / "bfsdata")
    _interrupted_then_resumed(
        tmp_path, make_raw, read_run, [bfsdata], lambda ws: len(_shards(ws, "frames")) >= 6
    )


def test_killed_ingest_resumes_after_some_rows_were_committed(
    tmp_path: Path, make_raw, read_run
) -> None:
    """Killed once 8 rows are committed: committed rows plus shards without rows."""

    def eight_rows(ws: Path) -> bool:
        path = ws / "manifests" / "acquisitions.parquet"
        return path.exists() and pq.read_metadata(path).num_rows >= 8

    killed, done = _interrupted_then_resumed(
        tmp_path, make_raw, read_run, [sys.executable, "-c", FAST_COMMITS], eight_rows
    )
    if killed:
        # Usually some of 24; the last commit may land between the check and the kill.
        assert done >= 8
