"""The session (bfsdata/workspace/session.py): lock, store place and cluster, held by the stage
functions themselves, so `ingest(...)` and `patch(...)` called from Python hold the workspace
exactly as the CLI does. The lock is real: a lock file and `workspace_lock` refusing a second
holder. To look while ingest runs, the test holds ingest's scan of the raw folder until it has
looked (a named pipe as labels.csv did this once; ingest now refuses any file that is not a
regular file).
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
from workspace_fixtures import draw_run, tiny_pipeline, write_pipeline

from bfsdata.config.pipeline import Pipeline
from bfsdata.ingest import ingest
from bfsdata.patch.stage import patch
from bfsdata.sources.strip_folders import scan_raw
from bfsdata.store import location as store
from bfsdata.workspace import manifest, paths
from bfsdata.workspace.lock import LockError, workspace_lock
from bfsdata.workspace.session import session


@pytest.fixture
def pipe(tmp_path: Path) -> Pipeline:
    """The tiny pipeline, from a YAML file outside the workspace."""
    return write_pipeline(tmp_path / "tiny.yaml", tiny_pipeline())


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    raw = tmp_path / "raw"
    draw_run(raw / "S1" / "run_1", (0, 1))
    return raw


def _holder(ws: Path, alive: threading.Thread, timeout: float = 60) -> dict:
    """The lock record of `ws` once one is written; fails if the stage ended without one."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and alive.is_alive():
        try:
            return json.loads(paths.lock_file(ws).read_text())
        except (FileNotFoundError, ValueError):  # not taken yet, or its record not written
            time.sleep(0.01)
    pytest.fail(f"no lock record in {ws} while the stage ran")


def test_python_ingest_holds_the_lock_while_it_runs(
    tmp_path: Path, raw: Path, pipe: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    go = threading.Event()

    def held_scan(*args: object, **kwargs: object) -> object:
        go.wait(120)  # inside the session: the lock is held
        return scan_raw(*args, **kwargs)

    monkeypatch.setattr("bfsdata.ingest.scan_raw", held_scan)
    ws = tmp_path / "ws"
    out: dict = {}

    def run() -> None:
        try:
            out["summary"] = ingest(raw, ws, pipe, workers=1)
        except BaseException as e:  # handed to the test thread
            out["error"] = e

    stage = threading.Thread(target=run)
    stage.start()
    try:
        record = _holder(ws, stage)
        assert record["command"] == "ingest" and record["pid"] == os.getpid()
        with (
            pytest.raises(LockError, match=r"in use by `bfsdata ingest` \(pid "),
            workspace_lock(ws, "patch"),
        ):
            pytest.fail("a second holder took the lock")
        assert paths.lock_file(ws).exists(), "the refused attempt left the holder's lock"
    finally:
        go.set()
        stage.join(120)
    assert "error" not in out, out.get("error")
    assert out["summary"].ingested == 1
    assert not paths.lock_file(ws).exists(), "released once ingest returned"
    with workspace_lock(ws, "patch"):  # and free for the next stage
        pass


def test_python_ingest_is_refused_while_another_holds_the_workspace(
    tmp_path: Path, raw: Path, pipe: Pipeline
) -> None:
    ws = tmp_path / "ws"
    with workspace_lock(ws, "patch"):
        with pytest.raises(LockError, match=r"in use by `bfsdata patch`"):
            ingest(raw, ws, pipe, workers=1)
        assert sorted(p.name for p in ws.iterdir()) == [paths.LOCK_NAME]  # nothing written


def test_python_patch_is_refused_while_another_holds_the_workspace(
    tmp_path: Path, raw: Path, pipe: Pipeline
) -> None:
    ws = tmp_path / "ws"
    ingest(raw, ws, pipe, workers=1)
    with workspace_lock(ws, "ingest"), pytest.raises(LockError, match="`bfsdata ingest`"):
        patch(ws, pipe, workers=1)
    assert not manifest.exists(ws, manifest.PATCHES)
    assert patch(ws, pipe, workers=1).patched == 1  # once free, it runs


def test_a_successful_stage_makes_its_pipeline_the_workspace_default(
    tmp_path: Path, raw: Path, pipe: Pipeline
) -> None:
    ws = tmp_path / "ws"
    ingest(raw, ws, pipe, workers=1)
    saved = paths.pipeline_file(ws)
    assert saved.read_bytes() == Path(pipe.source).read_bytes()
    other = write_pipeline(tmp_path / "other.yaml", tiny_pipeline(batch=4))
    patch(ws, other, workers=1)
    assert saved.read_bytes() == Path(pipe.source).read_bytes(), "the first one stays"


def test_session_without_cluster_options_runs_on_threads_and_holds_the_lock(
    tmp_path: Path,
) -> None:
    ws = tmp_path / "ws"
    with session(ws, "ingest") as address:
        assert address is None
        assert json.loads(paths.lock_file(ws).read_text())["command"] == "ingest"
    assert not ws.exists(), "an empty workspace it created is removed again"
    with session(ws, "report", lock=False, scheduler="tcp://127.0.0.1:1") as address:
        assert address == "tcp://127.0.0.1:1"  # an existing cluster is passed on as it is
        assert not paths.lock_file(ws).exists()


def test_sessions_on_one_workspace_do_not_nest(tmp_path: Path) -> None:
    with (
        session(tmp_path, "ingest"),
        pytest.raises(LockError, match="in use by `bfsdata ingest`"),
        session(tmp_path, "patch"),
    ):
        pytest.fail("a session inside another one on the same workspace")


def test_a_refused_cluster_leaves_no_lock_and_no_store_record(tmp_path: Path) -> None:
    ws, data = tmp_path / "ws", tmp_path / "data"
    with (
        pytest.raises(ValueError, match="give one of the two"),
        session(ws, "ingest", store=str(data), processes=2, scheduler="tcp://x:1"),
    ):
        pytest.fail("the session started")
    assert not ws.exists() and not data.exists()
    assert store.data_root(ws) == ws
