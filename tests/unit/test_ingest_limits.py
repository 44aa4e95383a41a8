"""`bfsdata.ingest.ingest` against input made to hurt (issue 22): a stray file beside valid runs,
strip ids that differ only by case, headers that claim more pixels than exist, files that are no
regular files, frames that do not decode in a new store. Each is refused by name, holds back
nothing that is not broken, and leaves the workspace as it was.

The PNG files are written byte by byte (tests/hostile_files.py).
"""

from __future__ import annotations

import dataclasses
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hostile_files import png_claiming

from bfsdata.ingest import IngestError, ingest
from bfsdata.workspace import manifest
from bfsdata.workspace.manifest import ACQUISITIONS, REJECTED
from bfsdata.workspace.paths import LOCK_NAME
from tests.unit.ingest_checks import check_workspace


@contextmanager
def _within(seconds: int) -> Iterator[None]:
    """Fail instead of hanging: a FIFO read blocks, /dev/zero reads for ever."""

    def fail(*_: object) -> None:
        raise TimeoutError(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _listing(folder: Path, snapshot) -> tuple[list[str], dict]:
    """Every entry's path (folders too) and every file's bytes and mtime."""
    entries = sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))
    return entries, snapshot(folder)


def test_a_stray_file_in_a_strip_folder_refuses_only_itself(
    tmp_path: Path, make_raw, tiny_pipe, read_run
) -> None:
    raw = make_raw(tmp_path / "raw")
    (raw / "A1" / "stray.txt").write_text("x\n")
    ws = tmp_path / "ws"
    with pytest.raises(IngestError, match=r"stray\.txt: unexpected entry .*\[rule: raw-layout\]"):
        ingest(raw, ws, tiny_pipe)
    s = ingest(raw, ws, tiny_pipe, skip_bad=True)
    assert (s.found, s.ingested, s.rejected, s.total) == (4, 4, 1, 4)  # both runs of A1 too
    check_workspace(ws, raw, tiny_pipe, read_run)
    rej = manifest.read(ws, REJECTED)
    assert list(rej["source"]) == [str(raw / "A1" / "stray.txt")]
    assert rej["strip"].isna().all() and rej["run"].isna().all()  # it refuses no acquisition


def test_strip_ids_that_differ_only_by_case_are_refused(
    tmp_path: Path, make_raw, tiny_pipe
) -> None:
    strips = {"S0002": "unknown", "s0002": "unknown", "A1": "unknown"}
    raw = make_raw(tmp_path / "raw", strips=strips, labels=False)
    ws = tmp_path / "ws"
    with pytest.raises(IngestError) as e:
        ingest(raw, ws, tiny_pipe)
    lines = [ln for ln in str(e.value).splitlines() if "[rule: unique-strip]" in ln]
    assert len(lines) == 2
    for line in lines:  # each names both folders
        assert str(raw / "S0002") in line and str(raw / "s0002") in line, line
    assert not ws.exists()

    s = ingest(raw, ws, tiny_pipe, skip_bad=True)
    assert set(manifest.read(ws, ACQUISITIONS)["strip"]) == {"A1"}
    rej = manifest.read(ws, REJECTED)
    runs = rej[rej["run"].notna()]  # a row for each acquisition left out
    assert sorted(zip(runs["strip"], runs["run"], strict=True)) == [
        ("S0002", 1),
        ("S0002", 2),
        ("s0002", 1),
        ("s0002", 2),
    ]
    assert (rej["rule"] == "unique-strip").all() and s.rejected == 2


@pytest.mark.parametrize(("width", "height"), [(20_000, 20_000), (2**31, 1)])
def test_a_header_bomb_is_refused_from_its_header(
    tmp_path: Path, make_raw, tiny_pipe, snapshot, width: int, height: int
) -> None:
    ws = tmp_path / "ws"
    ingest(make_raw(tmp_path / "first", strips={"G1": "good"}), ws, tiny_pipe)
    before = _listing(ws, snapshot)
    raw = make_raw(tmp_path / "raw")
    bomb = png_claiming(raw / "A1" / "run_1" / "frame_1.png", width, height)
    for target in (ws, tmp_path / "fresh"):
        with pytest.raises(IngestError) as e:
            ingest(raw, target, tiny_pipe)
        (line,) = str(e.value).splitlines()
        assert line.startswith(f"{bomb}: declares {height}x{width}"), line
        assert "acquisition.max_pixels" in line and "[rule: max-pixels]" in line
    assert _listing(ws, snapshot) == before  # no array, lock or manifest changed
    assert not (tmp_path / "fresh").exists()


def test_max_pixels_is_the_pipelines(tmp_path: Path, make_raw, tiny_pipe) -> None:
    raw = make_raw(tmp_path / "raw")  # 32x40 frames
    acq = tiny_pipe.acquisition
    small = dataclasses.replace(tiny_pipe, acquisition=dataclasses.replace(acq, max_pixels=1279))
    with pytest.raises(IngestError, match=r"1,280 pixels; frames may have at most 1,279"):
        ingest(raw, tmp_path / "ws", small)
    just = dataclasses.replace(tiny_pipe, acquisition=dataclasses.replace(acq, max_pixels=1280))
    assert ingest(raw, tmp_path / "ws", just).ingested == 4


def test_a_new_store_gets_no_arrays_from_frames_that_do_not_decode(
    tmp_path: Path, make_raw, tiny_pipe, read_run
) -> None:
    raw = make_raw(tmp_path / "raw", strips={"A1": "good"}, runs=1)
    for f in range(4):  # the headers agree (64x80, in the limit); the data is a row
        png_claiming(raw / "A1" / "run_1" / f"frame_{f}.png", 80, 64)
    ws = tmp_path / "ws"
    with pytest.raises(IngestError, match=r"\[rule: valid-image\]"):
        ingest(raw, ws, tiny_pipe)
    assert not (ws / "bfsdata.zarr" / "frames").exists()
    assert manifest.read(ws, REJECTED)["rule"].tolist() == ["valid-image"]
    # The real data, of another size, is taken: no array of the lying size stands in its way.
    good = make_raw(tmp_path / "good", strips={"B2": "defect"}, runs=1)
    assert ingest(good, ws, tiny_pipe).ingested == 1
    check_workspace(ws, good, tiny_pipe, read_run)


def _dev_zero(path: Path) -> None:
    path.symlink_to("/dev/zero")


@pytest.mark.parametrize("make", [_dev_zero, os.mkfifo], ids=["dev-zero", "fifo"])
@pytest.mark.parametrize("what", ["frame", "labels.csv"])
def test_only_regular_files_are_read_and_the_lock_is_released(
    tmp_path: Path, make_raw, tiny_pipe, snapshot, make, what: str
) -> None:
    raw = make_raw(tmp_path / "raw")
    path = raw / "A1" / "run_1" / "frame_1.png" if what == "frame" else raw / "labels.csv"
    path.unlink()
    make(path)
    ws = tmp_path / "ws"
    ingest(make_raw(tmp_path / "first", strips={"G1": "good"}), ws, tiny_pipe)
    before = _listing(ws, snapshot)
    with _within(30), pytest.raises(IngestError) as e:
        ingest(raw, ws, tiny_pipe)
    (problem,) = e.value.problems
    assert (problem.source, problem.rule) == (str(path), "regular-file")
    assert str(e.value).startswith(f"{path}: is ") and "not a regular file" in str(e.value)
    assert problem.fatal is (what == "labels.csv")  # no label can be trusted without the file
    assert _listing(ws, snapshot) == before
    assert not (ws / LOCK_NAME).exists()


def test_a_frame_refused_as_no_regular_file_leaves_the_rest(
    tmp_path: Path, make_raw, tiny_pipe
) -> None:
    raw = make_raw(tmp_path / "raw")
    fifo = raw / "A1" / "run_1" / "frame_1.png"
    fifo.unlink()
    os.mkfifo(fifo)
    ws = tmp_path / "ws"
    with _within(30):
        s = ingest(raw, ws, tiny_pipe, skip_bad=True)
    assert (s.ingested, s.rejected) == (3, 1)
    assert manifest.read(ws, REJECTED)["rule"].tolist() == ["regular-file"]
    assert not (ws / LOCK_NAME).exists()
