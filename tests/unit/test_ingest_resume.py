"""`bfsdata ingest` killed with SIGKILL mid-run, then run again: the workspace is valid at any
moment and the re-run equals an uninterrupted run.

The checks (`check_workspace`, ...) are in ingest_checks.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from bfsdata.config.pipeline import Pipeline
from bfsdata.ingest import ingest
from bfsdata.workspace import manifest
from bfsdata.workspace.manifest import ACQUISITIONS
from tests.unit.ingest_checks import (
    check_workspace,
    is_shard,
    rows_with_shards,
    store_arrays,
    store_content,
)

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
        frames, rank = store_arrays(ws)
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
        if p.is_file() and p.name != "zarr.json" and not is_shard(p.relative_to(store))
    ]
    assert debris == [], "temp/lock files of the killed run were left in the store"
    reference = tmp_path / "reference"
    ingest(raw, reference, pipe, workers=2)
    assert store_content(ws) == store_content(reference)
    check_workspace(ws, raw, pipe, read_run)  # also: no orphan shard survived
    return killed, len(rows)


def test_killed_ingest_resumes(tmp_path: Path, make_raw, read_run) -> None:
    """The real command, killed once 6 of its 24 shards are on disk (no row committed yet)."""
    bfsdata = str(Path(sys.executable).parent / "bfsdata")
    _interrupted_then_resumed(
        tmp_path, make_raw, read_run, [bfsdata], lambda ws: len(rows_with_shards(ws, "frames")) >= 6
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
