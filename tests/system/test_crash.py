"""`bfsdata ingest` and `bfsdata patch` killed with SIGKILL at chosen moments, then run again.

Each case runs the real command in a subprocess and kills it: at a fault-injection point
(`BFSDATA_CRASH_AT`, bfsdata/faults.py), for moments timing cannot hit, or once the store shows
some shards, for a moment nobody chose (maybe inside a tensorstore write). Then the same command
runs again, in-process. The re-run must exit 0, pass `bfsdata verify --all` (which also finds
orphan shards), leave no temp file, lock or orphan, and give a store and manifests equal, file
for file and array for array, to an uninterrupted run on the same raw data.

The raw data: 12 strips x 2 runs of 4 frames at 128x160 px, drawn where the default layout
looks (workspace_fixtures.draw_run), so patch registers them. Patches of 32 px in shards of 64,
2 acquisitions per task: a task writes 4 shards, the last one partly filled.
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
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zarr
from cli_helpers import invoke, ok
from workspace_fixtures import ENV, draw_run, tiny_pipeline, write_pipeline

from bfsdata.config.pipeline import StoreConfig
from bfsdata.store import location as store
from bfsdata.workspace import faults, manifest
from bfsdata.workspace.lock import LOCK_NAME

BFSDATA = str(Path(sys.executable).parent / "bfsdata")
N_STRIPS, RUNS = 12, 2
SHARD, PER_TASK = 64, 2
PER_ACQ = (4 + 2) * 5 * 4  # (frames + rank images) x vials x regions
TIMESTAMPS = ("ingested_at", "rejected_at")
DEBRIS = ("*.partial", "*.__lock", ".*.tmp", LOCK_NAME)

# `bfsdata` with the Committer's 5 s spacing, which these short runs never reach, set to 0: the
# first finished task is committed at once, the next commit comes some tasks later (10x the
# cost of a commit) or at the end. A kill in the 2nd commit finds some rows committed, not all.
EVERY_TASK_COMMITS = """
import sys
from functools import partialmethod
from bfsdata.workspace.writes import Committer
Committer.__init__ = partialmethod(Committer.__init__, interval=0.0)
from bfsdata.cli import main
sys.argv[0] = "bfsdata"
main()
"""


@dataclasses.dataclass(frozen=True)
class Data:
    raw: Path
    pipeline: Path  # one YAML for every run: its path is recorded in the store's attributes
    ingested: Path  # reference workspace after an uninterrupted ingest
    patched: Path  # ... and after an uninterrupted patch


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Data:
    root = tmp_path_factory.mktemp("crash")
    raw = root / "raw"
    lines = ["strip,label,defect,vial,region"]
    for i in range(N_STRIPS):
        strip, defect = f"S{i:02d}", i % 4 == 3
        for run in range(1, RUNS + 1):
            draw_run(raw / strip / f"run_{run}", (i, run), defect=defect)
        lines.append(f"{strip}," + ("defect,scratch,2,1" if defect else "good,,,"))
    (raw / "labels.csv").write_text("\n".join(lines) + "\n")
    pipe = tiny_pipeline()
    pipe = dataclasses.replace(
        pipe,
        store=StoreConfig(patch_shard=SHARD),
        patch=dataclasses.replace(pipe.patch, acq_per_task=PER_TASK),
    )
    yaml = root / "pipeline.yaml"
    write_pipeline(yaml, pipe)
    ingested, patched = root / "ingested", root / "patched"
    ok(invoke("ingest", raw, "-w", ingested, "-p", yaml))
    shutil.copytree(ingested, patched)
    ok(invoke("patch", "-w", patched, "-p", yaml))
    return Data(raw, yaml, ingested, patched)


# --- the harness ------------------------------------------------------------------------------


def _kill(cmd: list[str], log: Path, crash: str | None, shards: Path, at_least: int) -> str:
    """Run `cmd` until it dies by SIGKILL: from `crash` (a faults point), or, without one, from
    here once `shards` holds `at_least` files. Fails unless it died by SIGKILL; its log."""
    env = {**os.environ, **ENV}
    env.pop(faults.ENV, None)
    if crash:
        env[faults.ENV] = crash
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            if crash is None:
                while proc.poll() is None and _count(shards) < at_least:
                    time.sleep(0.002)
                proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    text = log.read_text(errors="replace")
    assert proc.returncode == -signal.SIGKILL, f"exit {proc.returncode}, not SIGKILL:\n{text}"
    if crash:
        name, _, n = crash.partition(":")
        assert f"SIGKILL at {name} (call {n or 1})" in text, text
    return text


def _launcher(every_task_commits: bool) -> list[str]:
    return [sys.executable, "-c", EVERY_TASK_COMMITS] if every_task_commits else [BFSDATA]


def _check_killed(
    ws: Path, shards: Path, schema: manifest.Schema, total: int, crash: str | None, commits: bool
) -> None:
    """The killed run left the state its crash point names, so the re-run has work to do."""
    assert (ws / LOCK_NAME).exists(), "the killed run held the lock"
    assert _count(shards) >= 1, "the kill came after some data was written"
    rows = len(manifest.read(ws, schema))
    assert (0 < rows < total) if commits else rows < total, rows
    if crash and crash.startswith("manifest."):
        assert list((ws / "manifests").glob(f".{schema.name}.parquet.*.tmp"))


def _count(folder: Path) -> int:
    return sum(p.is_file() for p in folder.rglob("*")) if folder.is_dir() else 0


def _check_resumed(ws: Path, reference: Path) -> None:
    """`ws` after its re-run: verified, clean, and equal to `reference`."""
    ok(invoke("verify", "-w", ws, "--all"))
    debris = sorted(str(p.relative_to(ws)) for pat in DEBRIS for p in ws.rglob(pat))
    assert debris == [], "left behind by the killed run"
    assert _files(store.store_path(ws)) == _files(store.store_path(reference))
    got, want = _arrays(ws), _arrays(reference)
    assert got.keys() == want.keys()
    for name, arr in want.items():
        np.testing.assert_array_equal(got[name], arr, err_msg=name)
    got, want = _manifests(ws), _manifests(reference)
    assert got.keys() == want.keys()
    for name, df in want.items():
        pd.testing.assert_frame_equal(got[name], df, obj=name)


def _files(folder: Path) -> dict[str, str]:
    """{relative path: sha256} of every file: metadata and every shard, byte for byte."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _arrays(ws: Path) -> dict[str, np.ndarray]:
    root = zarr.open_group(str(store.store_path(ws)), mode="r", zarr_format=3)
    return {name: root[name][...] for name in sorted(root.array_keys())}


def _manifests(ws: Path) -> dict[str, pd.DataFrame]:
    """Every manifest present, timestamps dropped (they say when, not what)."""
    out = {}
    for schema in manifest.ALL:
        if manifest.path_of(ws, schema).exists():
            df = manifest.read(ws, schema)
            out[schema.name] = df.drop(columns=[c for c in TIMESTAMPS if c in df.columns])
    return out


def _lock_taken_over(output: str) -> None:
    assert "taking over the stale lock" in output, output


# --- ingest -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("crash", "commits"),
    [
        pytest.param("ingest.frames:1", False, id="first-frames-shard-no-rank"),
        pytest.param("ingest.rank:5", False, id="five-acquisitions-written-no-row"),
        pytest.param("commit.acquisitions:2", True, id="in-the-2nd-commit"),
        pytest.param("manifest.acquisitions:2", True, id="2nd-manifest-temp-not-renamed"),
        pytest.param(None, False, id="timing-first-shard-on-disk"),
    ],
)
def test_killed_ingest_resumes_to_the_uninterrupted_result(
    data: Data, tmp_path: Path, crash: str | None, commits: bool
) -> None:
    ws = tmp_path / "ws"
    cmd = ["ingest", str(data.raw), "-w", str(ws), "-p", str(data.pipeline)]
    shards = store.store_path(ws) / "frames" / "c"
    _kill(_launcher(commits) + cmd, tmp_path / "log.txt", crash, shards, at_least=1)

    _check_killed(ws, shards, manifest.ACQUISITIONS, N_STRIPS * RUNS, crash, commits)

    res = invoke(*cmd)
    _lock_taken_over(ok(res) + res.stderr)
    _check_resumed(ws, data.ingested)


# --- patch ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("crash", "commits"),
    [
        pytest.param("patch.shard:1", False, id="first-shard-of-a-task"),
        pytest.param("patch.unit:2", False, id="two-tasks-written-no-row"),
        pytest.param("commit.patches:2", True, id="in-the-2nd-commit"),
        pytest.param("manifest.patches:2", True, id="2nd-manifest-temp-not-renamed"),
        pytest.param(None, False, id="timing-three-shards-on-disk"),
    ],
)
def test_killed_patch_resumes_to_the_uninterrupted_result(
    data: Data, tmp_path: Path, crash: str | None, commits: bool
) -> None:
    ws = Path(shutil.copytree(data.ingested, tmp_path / "ws"))
    cmd = ["patch", "-w", str(ws), "-p", str(data.pipeline)]
    shards = store.store_path(ws) / "patches" / "c"
    _kill(_launcher(commits) + cmd, tmp_path / "log.txt", crash, shards, at_least=3)

    _check_killed(ws, shards, manifest.PATCHES, N_STRIPS * RUNS * PER_ACQ, crash, commits)

    res = invoke(*cmd)
    _lock_taken_over(ok(res) + res.stderr)
    _check_resumed(ws, data.patched)


# --- the fault points themselves --------------------------------------------------------------


@pytest.mark.parametrize("spec", ["", "ingest.rank", "ingest.rank:1", "manifest.patches:12"])
def test_crash_spec_is_read(spec: str) -> None:
    name, _, n = spec.partition(":")
    assert faults._parse(spec) == ((name, int(n or 1)) if spec else None)


@pytest.mark.parametrize("spec", [":3", "ingest.rank:0", "ingest.rank:x", "ingest.rank:-1"])
def test_bad_crash_spec_is_refused(spec: str) -> None:
    with pytest.raises(ValueError, match=r"BFSDATA_CRASH_AT=.*expected NAME or NAME:N with N >= 1"):
        faults._parse(spec)
