"""The workspace lock (bfsdata/lock.py): one ingest or patch at a time per workspace.

Holders are real: this process, or a sleeping Python process that took the lock and is then
killed with SIGKILL. Records that only a file system without working flock (or another host)
could leave are written by hand.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cli_helpers import invoke, ok, refused
from workspace_fixtures import FRAMES, draw_run, tiny_pipeline, write_pipeline

from bfsdata.workspace.lock import LOCK_NAME, LockError, workspace_lock

_HOLD = """
import sys, time
from bfsdata.workspace.lock import workspace_lock
with workspace_lock(sys.argv[1], "patch"):
    print("held", flush=True)
    time.sleep(600)
"""


@contextmanager
def _held_elsewhere(ws: Path) -> Iterator[subprocess.Popen]:
    """Another process holding the lock of `ws` until the block ends (or it is killed)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(ws)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


LOGGER = "bfsdata.workspace.lock"


def _take(ws: Path) -> None:
    """Take the lock and give it back."""
    with workspace_lock(ws, "ingest"):
        pass


def _dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write_record(ws: Path, **record: object) -> Path:
    ws.mkdir(parents=True, exist_ok=True)
    doc = {"pid": 1, "host": socket.gethostname(), "command": "ingest", "started": "then"}
    path = ws / LOCK_NAME
    path.write_text(json.dumps({**doc, **record}))
    return path


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    """One strip, one run, with the tiny pipeline beside it: enough for a real ingest."""
    raw = tmp_path / "raw"
    draw_run(raw / "S1" / "run_1", (0, 1))
    return raw


@pytest.fixture
def pipeline(tmp_path: Path) -> Path:
    write_pipeline(tmp_path / "pipeline.yaml", tiny_pipeline())
    return tmp_path / "pipeline.yaml"


# --- refusals ---------------------------------------------------------------------------------


def test_second_ingest_is_refused_naming_the_holder(
    tmp_path: Path, raw: Path, pipeline: Path
) -> None:
    ws = tmp_path / "ws"
    with workspace_lock(ws, "patch") as me:
        err = refused(invoke("ingest", raw, "-w", ws, "-p", pipeline))
        record = (ws / LOCK_NAME).read_text()
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err
    for part in (f"workspace {ws}", "`bfsdata patch`", f"pid {os.getpid()}", me.host, me.started):
        assert part in lines[0], part
    assert json.loads(record)["pid"] == os.getpid(), "the refused run left the holder's record"
    assert not (ws / "bfsdata.zarr").exists() and not (ws / "manifests").exists()


def test_lock_of_another_process_refused_then_taken_over_once_it_is_killed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ws = tmp_path / "ws"
    with _held_elsewhere(ws) as holder:
        with pytest.raises(LockError, match=rf"`bfsdata patch` \(pid {holder.pid} on "):
            _take(ws)
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert json.loads((ws / LOCK_NAME).read_text())["pid"] == holder.pid, "a kill leaves it"
    with (
        caplog.at_level(logging.WARNING, logger=LOGGER),
        workspace_lock(ws, "ingest"),
    ):
        record = json.loads((ws / LOCK_NAME).read_text())
    assert record["pid"] == os.getpid() and record["command"] == "ingest"
    assert f"stale lock of `bfsdata patch` (pid {holder.pid} " in caplog.text
    assert not (ws / LOCK_NAME).exists()


def test_record_of_a_dead_pid_on_this_host_is_taken_over(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ws = tmp_path / "ws"
    dead = _dead_pid()
    _write_record(ws, pid=dead)
    with (
        caplog.at_level(logging.WARNING, logger=LOGGER),
        workspace_lock(ws, "patch"),
    ):
        assert json.loads((ws / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert f"(pid {dead} on {socket.gethostname()}" in caplog.text
    assert "no longer running" in caplog.text


@pytest.mark.parametrize(
    "record",
    [
        pytest.param({"host": "other-host", "pid": 4242}, id="another-host"),
        # A live pid of this host whose flock did not hold: a file system without flock.
        pytest.param({"pid": os.getppid()}, id="live-pid-here"),
    ],
)
def test_record_that_may_be_alive_is_refused(tmp_path: Path, record: dict) -> None:
    ws = tmp_path / "ws"
    path = _write_record(ws, **record)
    before = path.read_text()
    with pytest.raises(LockError, match=rf"pid {record['pid']} on .*delete {re.escape(str(path))}"):
        _take(ws)
    assert path.read_text() == before


def test_workspace_that_is_a_file_is_refused(tmp_path: Path, pipeline: Path) -> None:
    ws = tmp_path / "ws"
    ws.write_text("not a folder")
    assert "is a file; a workspace is a folder" in refused(
        invoke("patch", "-w", ws, "-p", pipeline)
    )
    assert ws.read_text() == "not a folder"


def test_unreadable_record_is_refused_with_the_file_to_delete(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / LOCK_NAME).write_text("not json")
    with pytest.raises(LockError, match=rf"delete {re.escape(str(ws / LOCK_NAME))} and run"):
        _take(ws)


# --- release ----------------------------------------------------------------------------------


def test_released_after_success(tmp_path: Path, raw: Path, pipeline: Path) -> None:
    ws = tmp_path / "ws"
    ok(invoke("ingest", raw, "-w", ws, "-p", pipeline))
    ok(invoke("patch", "-w", ws))
    assert not (ws / LOCK_NAME).exists()
    _take(ws)


def test_released_after_an_error_and_a_refused_first_run_leaves_no_workspace(
    tmp_path: Path, pipeline: Path
) -> None:
    bad = tmp_path / "bad"
    draw_run(bad / "S1" / "run_1", (0, 1))
    (bad / "S1" / "run_1" / f"frame_{FRAMES - 1}.png").unlink()  # an incomplete run
    ws = tmp_path / "deep" / "ws"
    refused(invoke("ingest", bad, "-w", ws, "-p", pipeline))
    assert not (tmp_path / "deep").exists()
    refused(invoke("patch", "-w", ws, "-p", pipeline))  # nothing ingested
    assert not (tmp_path / "deep").exists()


def test_released_when_the_block_raises(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    with pytest.raises(RuntimeError), workspace_lock(ws, "patch"):
        raise RuntimeError("the stage failed")
    assert not (ws / LOCK_NAME).exists() and ws.is_dir()
    _take(ws)


def test_temp_files_of_dead_writers_are_removed(tmp_path: Path) -> None:
    """A kill between write and rename leaves `.<manifest>.<pid>.tmp`; a live writer's stays."""
    folder = tmp_path / "ws" / "manifests"
    folder.mkdir(parents=True)
    dead = folder / f".acquisitions.parquet.{_dead_pid()}.tmp"
    live = folder / f".splits.parquet.{os.getppid()}.tmp"
    other = folder / ".notes.tmp"  # not named by a bfsdata writer: not ours to remove
    for p in (dead, live, other):
        p.write_bytes(b"partial")
    with workspace_lock(tmp_path / "ws", "ingest"):
        assert not dead.exists() and live.exists() and other.exists()
