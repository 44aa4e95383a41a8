"""`bfsdata` command line: the app, and `bfsdata ingest` through typer's CliRunner."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import zarr
from cli_helpers import invoke, ok, refused

from bfsdata import __version__
from bfsdata.cli import app
from bfsdata.workspace import manifest
from bfsdata.workspace.manifest import ACQUISITIONS, REJECTED

# --- the app ----------------------------------------------------------------------------------


def test_help_lists_the_commands() -> None:
    out = ok(invoke("--help"))
    assert "ingest" in out
    for cmd in app.registered_commands:
        assert cmd.name in out
    assert "--version" in out and "--verbose" in out


def test_version() -> None:
    out = ok(invoke("--version"))
    assert out.strip() == f"bfsdata {__version__}"


def test_ingest_help_shows_an_example() -> None:
    out = ok(invoke("ingest", "--help"))
    assert "Example: bfsdata ingest raw/" in out
    for opt in ("--workspace", "--pipeline", "--frames", "--ranks", "--skip-bad", "--workers"):
        assert opt in out, opt


def test_unknown_command_is_a_usage_error() -> None:
    result = invoke("ingets")
    assert result.exit_code == 2
    assert "No such command" in result.output


# --- bfsdata ingest -----------------------------------------------------------------------------


def test_ingest_prints_a_summary_and_reruns_as_a_no_op(tmp_path: Path, make_raw) -> None:
    raw = make_raw(tmp_path / "raw")
    ws = tmp_path / "ws"
    out = ok(invoke("ingest", raw, "-w", ws, "--frames", "4", "--workers", "2"))
    assert " -> " in out  # (rich wraps the long tmp paths, so not compared whole)
    assert "acquisitions found    4 (labels from labels.csv)" in out
    assert "already ingested      0" in out
    assert "ingested now          4 (16 frames, " in out
    assert "in workspace          4 acquisitions" in out
    assert "refused" not in out
    rows = manifest.read(ws, ACQUISITIONS)
    assert len(rows) == 4 and set(rows["n_frames"]) == {4}
    root = zarr.open_group(str(ws / "bfsdata.zarr"), mode="r")
    assert root["rank"].shape == (4, 2, 32, 40)  # --frames 4 alone: ranks 1 and 4

    out = ok(invoke("ingest", raw, "-w", ws, "--frames", "4"))
    assert "already ingested      4" in out
    assert "ingested now          0" in out
    assert "nothing to do" in out


def test_ingest_ranks_option(tmp_path: Path, make_raw, read_run) -> None:
    raw = make_raw(tmp_path / "raw", strips={"A1": "good"}, runs=1)
    ws = tmp_path / "ws"
    ok(invoke("ingest", raw, "-w", ws, "--frames", "4", "--ranks", "1,2,4"))
    rank = zarr.open_group(str(ws / "bfsdata.zarr"), mode="r")["rank"]
    src = np.sort(read_run(raw / "A1" / "run_1"), axis=0)
    np.testing.assert_array_equal(rank[0], src[[0, 1, 3]])


def test_workspace_defaults_to_the_current_folder(tmp_path: Path, make_raw, monkeypatch) -> None:
    raw = make_raw(tmp_path / "raw", labels=False)
    ws = tmp_path / "here"
    ws.mkdir()
    monkeypatch.chdir(ws)
    out = ok(invoke("ingest", raw, "--frames", "4"))
    assert "labels from unknown" in out
    assert (ws / "bfsdata.zarr").is_dir()
    assert len(manifest.read(ws, ACQUISITIONS)) == 4


def test_pipeline_option_is_kept_in_the_workspace(tmp_path: Path, make_raw) -> None:
    raw = make_raw(tmp_path / "raw", frames=16, runs=1)
    ws = tmp_path / "ws"
    ok(invoke("ingest", raw, "-w", ws, "--pipeline", "demo"))
    saved = ws / "pipeline.yaml"
    assert "name: demo" in saved.read_text()
    # A later run without --pipeline uses the saved one (and finds nothing to do).
    assert "nothing to do" in ok(invoke("ingest", raw, "-w", ws))


def test_bad_input_exits_1_naming_file_and_rule(tmp_path: Path, make_raw) -> None:
    raw = make_raw(tmp_path / "raw")
    (raw / "B2" / "run_2" / "frame_3.png").write_bytes(b"")
    ws = tmp_path / "ws"
    err = refused(invoke("ingest", raw, "-w", ws, "--frames", "4"))
    assert "frame_3.png: is an empty (zero-byte) file [rule: not-empty]" in err
    assert "--skip-bad" in err
    assert not ws.exists()


def test_bad_input_leaves_an_existing_workspace_unchanged(
    tmp_path: Path, make_raw, snapshot
) -> None:
    raw = make_raw(tmp_path / "raw")
    ws = tmp_path / "ws"
    ok(invoke("ingest", raw, "-w", ws, "--frames", "4"))
    before = snapshot(ws)
    make_raw(raw, strips={"A1": "good", "B2": "defect", "C3": "good"})
    (raw / "C3" / "run_1" / "frame_0.png").unlink()
    err = refused(invoke("ingest", raw, "-w", ws, "--frames", "4"))
    assert "run_1: expected frames 0..3 (4 frames), found 3: missing 0 [rule: frame-count]" in err
    assert snapshot(ws) == before


def test_corrupt_frame_exits_1_after_ingesting_the_rest(tmp_path: Path, make_raw) -> None:
    raw = make_raw(tmp_path / "raw")
    path = raw / "A1" / "run_1" / "frame_0.png"
    data = bytearray(path.read_bytes())
    data[200:216] = bytes(16)  # inside the pixel data: only decoding finds it
    path.write_bytes(bytes(data))
    ws = tmp_path / "ws"
    err = refused(invoke("ingest", raw, "-w", ws, "--frames", "4"))
    assert "frame_0.png: cannot be decoded" in err and "[rule: valid-image]" in err
    assert "3 acquisition(s) were ingested" in err
    assert len(manifest.read(ws, ACQUISITIONS)) == 3


def test_skip_bad_ingests_the_rest(tmp_path: Path, make_raw) -> None:
    raw = make_raw(tmp_path / "raw")
    (raw / "A1" / "run_2" / "notes.txt").write_text("x")
    ws = tmp_path / "ws"
    out = ok(invoke("ingest", raw, "-w", ws, "--frames", "4", "--skip-bad"))
    assert "ingested now          3" in out
    assert "refused               1 (see manifests/rejected.parquet)" in out
    rej = manifest.read(ws, REJECTED)
    assert [(Path(s).name, r) for s, r in zip(rej["source"], rej["rule"], strict=True)] == [
        ("notes.txt", "raw-layout")
    ]


def test_missing_raw_folder(tmp_path: Path) -> None:
    err = refused(invoke("ingest", tmp_path / "nope", "-w", tmp_path / "ws"))
    assert "nope: is not a folder [rule: raw-folder]" in err


def test_unknown_pipeline(tmp_path: Path, make_raw) -> None:
    raw = make_raw(tmp_path / "raw")
    err = refused(invoke("ingest", raw, "-w", tmp_path / "ws", "--pipeline", "nope"))
    assert "no such pipeline file" in err


def test_bad_ranks_option_is_a_user_error(tmp_path: Path, make_raw) -> None:
    raw = make_raw(tmp_path / "raw")
    err = refused(invoke("ingest", raw, "-w", tmp_path / "ws", "--frames", "4", "--ranks", "1,9"))
    assert "acquisition.ranks: rank 9 not in 1..4" in err
    refused(invoke("ingest", raw, "-w", tmp_path / "ws", "--ranks", "1,max"))


def test_bad_ranks_message_names_the_option(tmp_path: Path, make_raw) -> None:
    raw = make_raw(tmp_path / "raw")
    err = refused(invoke("ingest", raw, "-w", tmp_path / "ws", "--ranks", "1,max"))
    assert "--ranks" in err


def test_refused_ingest_with_pipeline_option_creates_nothing(tmp_path: Path, make_raw) -> None:
    raw = make_raw(tmp_path / "raw", frames=16)
    (raw / "A1" / "run_1" / "frame_0.png").write_bytes(b"")
    ws = tmp_path / "ws"
    refused(invoke("ingest", raw, "-w", ws, "--pipeline", "demo"))
    assert not ws.exists()


def test_console_script_exit_code_and_no_traceback(tmp_path: Path, make_raw) -> None:
    raw = make_raw(tmp_path / "raw")
    (raw / "stray.txt").write_text("x")
    exe = Path(sys.executable).parent / "bfsdata"
    res = subprocess.run(
        [str(exe), "ingest", str(raw), "-w", str(tmp_path / "ws"), "--frames", "4"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 1
    assert "stray.txt: unexpected file at the top of the raw folder" in res.stderr
    assert "[rule: raw-layout]" in res.stderr
    assert "Traceback" not in res.stderr + res.stdout
    assert not (tmp_path / "ws").exists()
