"""`bfsdata patch` through typer's CliRunner, and resume after `kill -9` of a real process.

The workspace: 2 synthetic strips x 1 run of 9 frames at 128x160 px (so first-eighth-last is
frames 0, 7 and 8), ingested with the CLI; its pipeline.yaml sets 32 px patches.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from cli_helpers import invoke, ok, refused
from workspace_fixtures import write_pipeline

from bfsdata.config.pipeline import AcquisitionConfig, PatchConfig, Pipeline, StoreConfig
from bfsdata.ingest import ingest
from bfsdata.patch.stage import patch
from bfsdata.show import contact_sheet
from bfsdata.store import arrays as store_io
from bfsdata.store import location as store
from bfsdata.synth import SynthConfig, synth
from bfsdata.verify import verify
from bfsdata.workspace import manifest

FRAMES, SIZE = 9, 32
CELLS = 5 * 4  # vials x regions


def _pipe(frames: int = FRAMES, **patch_cfg: object) -> Pipeline:
    acq = AcquisitionConfig(frames=frames, ranks=(1, frames), test_frames=(0, frames - 1))
    return dataclasses.replace(
        Pipeline(name="tiny"), acquisition=acq, patch=PatchConfig(size=SIZE, **patch_cfg)
    )


def _rows(ws: Path):
    return manifest.read(ws, manifest.PATCHES)


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("raw") / "raw"
    synth(out, SynthConfig(strips=2, runs=1, frames=FRAMES, height=128, width=160, seed=1))
    return out


@pytest.fixture(scope="module")
def ingested(raw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    ws = tmp_path_factory.mktemp("ingested") / "ws"
    ws.mkdir()
    write_pipeline(ws / "pipeline.yaml", _pipe())
    ok(invoke("ingest", raw, "-w", ws, "--workers", "2"))
    return ws


@pytest.fixture
def ws(ingested: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(ingested, tmp_path / "ws"))


# --- the command ------------------------------------------------------------------------------


def test_patch_help_shows_an_example() -> None:
    out = ok(invoke("patch", "--help"))
    assert "Example: bfsdata patch" in out
    for opt in ("--regions", "--vials", "--layout", "--frames", "--kinds", "--skip-bad"):
        assert opt in out, opt
    for opt in ("--preview", "--workers", "--scheduler", "--workspace", "--pipeline"):
        assert opt in out, opt


def test_patch_summary_then_rerun_does_nothing(ws: Path) -> None:
    per_acq = (FRAMES + 2) * CELLS
    out = ok(invoke("patch", "-w", ws))
    assert f"patched now           2 x {per_acq} = {2 * per_acq} patches" in out
    assert f"patches in workspace  {2 * per_acq}" in out
    assert len(_rows(ws)) == 2 * per_acq
    again = ok(invoke("patch", "-w", ws))
    assert "2 (2 patched before)" in again
    assert "nothing to do: every acquisition is already patched" in again


MIN, MAX = ("rank_min", -1), ("rank_max", -1)


@pytest.mark.parametrize(
    ("args", "images"),
    [
        (["--frames", "first-eighth-last"], {("frame", 0), ("frame", 7), ("frame", 8), MIN, MAX}),
        (["--frames", "0,3"], {("frame", 0), ("frame", 3), MIN, MAX}),
        (["--kinds", "rank_max"], {MAX}),
        (["--frames", "0,3", "--kinds", "frame,rank_min"], {("frame", 0), ("frame", 3), MIN}),
    ],
)
def test_frames_and_kinds_options(ws: Path, args: list[str], images: set) -> None:
    out = ok(invoke("patch", "-w", ws, *args))
    rows = _rows(ws)
    assert len(rows) == 2 * len(images) * CELLS
    assert f"2 x {len(images) * CELLS} = {len(rows)} patches" in out
    for _, g in rows.groupby("acq"):
        assert set(zip(g["kind"], g["frame"], strict=True)) == images


def test_regions_and_vials_options(ws: Path) -> None:
    ok(invoke("patch", "-w", ws, "--regions", "3", "--vials", "4", "--kinds", "rank_max"))
    rows = _rows(ws)
    assert sorted(set(rows["region"])) == [0, 1, 2] and sorted(set(rows["vial"])) == [1, 2, 3, 4]
    assert len(rows) == 2 * 3 * 4
    heights = (rows["y1"] - rows["y0"]).unique()
    assert len(heights) == 1 and heights[0] == 40  # the strip's 120 rows in 3 bands


def test_auto_layout_option(ws: Path) -> None:
    ok(invoke("patch", "-w", ws, "--layout", "auto", "--kinds", "rank_max"))
    assert len(_rows(ws)) == 2 * CELLS
    assert verify(ws, sample=None).ok


def test_changed_settings_are_refused(ws: Path) -> None:
    ok(invoke("patch", "-w", ws, "--kinds", "rank_max"))
    before = _rows(ws)
    err = refused(invoke("patch", "-w", ws, "--kinds", "rank_max", "--frames", "0,3"))
    assert "patched with other settings (frames differ)" in err
    assert "Use a new workspace" in err
    assert _rows(ws).equals(before)


def test_patch_without_ingest_says_to_run_ingest(tmp_path: Path) -> None:
    err = refused(invoke("patch", "-w", tmp_path))
    assert "no ingested acquisitions; run `bfsdata ingest RAW" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--layout", "diagonal"], "layout.mode: must be fixed or auto, got 'diagonal'"),
        (["--vials", "0"], "layout.vials: must be >= 1, got 0"),
        (["--regions", "-1"], "layout.regions: needs at least one band"),
        (["--kinds", "frames"], "patch.kinds: unknown kind 'frames'"),
        (["--frames", "0,99"], "frames: '0,99' must name frames in 0..8"),
        (["--frames", "odd"], "is not all, first-eighth-last or a comma list"),
        (["--regions", "0"], "layout.regions: needs at least one band"),
    ],
)
def test_bad_layouts_and_selections_are_refused(ws: Path, args: list[str], message: str) -> None:
    err = refused(invoke("patch", "-w", ws, *args))
    assert message in err
    assert _rows(ws).empty


def _blank_workspace(raw: Path, tmp_path: Path) -> Path:
    """S0000 plus strip BLANK whose frames are all background: BLANK cannot be registered."""
    src = tmp_path / "raw"
    shutil.copytree(raw / "S0000", src / "S0000")
    folder = src / "BLANK" / "run_1"
    folder.mkdir(parents=True)
    for f in range(FRAMES):
        assert cv2.imwrite(str(folder / f"frame_{f}.png"), np.full((128, 160), 20, np.uint8))
    (src / "labels.csv").write_text("strip,label\nS0000,good\nBLANK,good\n")
    ws = tmp_path / "ws"
    ws.mkdir()
    write_pipeline(ws / "pipeline.yaml", _pipe())
    ok(invoke("ingest", src, "-w", ws))
    return ws


def test_registration_failure_and_skip_bad(raw: Path, tmp_path: Path) -> None:
    ws = _blank_workspace(raw, tmp_path)
    acqs = manifest.read(ws, manifest.ACQUISITIONS).set_index("strip")["acq"]
    err = refused(invoke("patch", "-w", ws, "--kinds", "rank_max"))
    assert "1 acquisition(s) could not be patched (the other 1 were)" in err
    assert f"acquisition {acqs['BLANK']}" in err and "--skip-bad" in err
    assert set(_rows(ws)["strip"]) == {"S0000"}

    out = ok(invoke("patch", "-w", ws, "--kinds", "rank_max", "--skip-bad"))
    assert "refused               1 (see manifests/rejected.parquet)" in out
    rej = manifest.read(ws, manifest.REJECTED)
    assert rej["source"].tolist() == [f"acquisition {acqs['BLANK']}"]
    assert rej["rule"].tolist() == ["registration"]


def test_preview_option_writes_a_contact_sheet(ws: Path) -> None:
    out = ok(invoke("patch", "-w", ws, "--frames", "0", "--preview"))
    png = ws / "previews" / "acq-0.png"
    assert str(png) in out.replace("\n", "")
    img = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
    assert img is not None and img.ndim == 3 and img.shape[2] == 3


def test_preview_option_follows_the_selection(ws: Path) -> None:
    """Only rank_max patches were cut, so the preview is their sheet (a frame sheet would have
    nothing to show)."""
    out = ok(invoke("patch", "-w", ws, "--kinds", "rank_max", "--preview"))
    png = ws / "previews" / "acq-0.png"
    assert str(png) in out.replace("\n", "")
    first = _rows(ws).iloc[0]
    assert (first.kind, int(first.acq)) == ("rank_max", 0)
    img = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(img, contact_sheet(ws, 0, "rank_max"))


# --- resume after kill -9 ---------------------------------------------------------------------


def _kill_workspace(tmp_path: Path) -> tuple[Path, Pipeline]:
    """36 acquisitions (synthetic runs copied under new strip names) of 8 frames, 128 px
    patches in shards of 32: 7,200 patches, about two seconds of patching on 2 cores."""
    frames = 8
    src = tmp_path / "synth"
    synth(src, SynthConfig(strips=2, runs=2, frames=frames, height=128, width=160, seed=2))
    raw = tmp_path / "raw"
    lines = ["strip,label"]
    for i in range(9):
        for origin in ("S0000", "S0001"):
            strip = f"K{i}{origin[-1]}"
            shutil.copytree(src / origin, raw / strip)
            lines.append(f"{strip},good")
    (raw / "labels.csv").write_text("\n".join(lines) + "\n")
    pipe = dataclasses.replace(
        _pipe(frames, acq_per_task=1),
        patch=PatchConfig(size=128, acq_per_task=1),
        store=StoreConfig(patch_shard=32),
    )
    ws = tmp_path / "ws"
    ws.mkdir()
    pipe = write_pipeline(ws / "pipeline.yaml", pipe)
    ingest(raw, ws, pipe, workers=2)
    return ws, pipe


def _by_key(ws: Path) -> dict[tuple, np.ndarray]:
    """{(acq, kind, frame, vial, region): patch}, read with tensorstore (zarr-python takes
    seconds for these 7,200 patches)."""
    rows = _rows(ws)
    arr = store_io.ts_array(store.store_path(ws), "patches")
    data = arr[rows["patch"].to_numpy()].read().result()  # (N, 128, 128)
    keys = rows[["acq", "kind", "frame", "vial", "region"]].itertuples(index=False, name=None)
    return dict(zip(keys, data, strict=True))


def test_resume_after_kill(tmp_path: Path) -> None:
    """`bfsdata patch` is killed with SIGKILL once it has written a few shards; the next run
    gives the same patches as an uninterrupted run, with no debris. If the first run finished
    before the kill, the assertions hold all the same."""
    ws, pipe = _kill_workspace(tmp_path)
    ref = Path(shutil.copytree(ws, tmp_path / "ref"))
    patch(ref, pipe, workers=2)

    shards = store.store_path(ws) / "patches" / "c"
    cmd = [str(Path(sys.executable).parent / "bfsdata"), "patch", "-w", str(ws), "--workers", "2"]
    with open(tmp_path / "log.txt", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
        try:
            deadline = time.monotonic() + 120
            while proc.poll() is None and time.monotonic() < deadline:
                if shards.is_dir() and sum(p.is_file() for p in shards.rglob("*")) >= 3:
                    break  # a few shards written
                time.sleep(0.005)
            killed_mid_run = proc.poll() is None
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait(timeout=30)
    if not killed_mid_run:
        assert proc.returncode == 0, (tmp_path / "log.txt").read_text()

    s = patch(ws, pipe, workers=2)
    assert s.total == 36 * (8 + 2) * CELLS
    got, want = _by_key(ws), _by_key(ref)
    assert got.keys() == want.keys()
    for k, v in want.items():
        assert np.array_equal(got[k], v), k
    rep = verify(ws, sample=2)
    assert rep.ok and rep.orphans == 0, rep.problems
    left = [*store.store_path(ws).rglob("*.partial"), *store.store_path(ws).rglob("*.__lock")]
    assert not left, left
