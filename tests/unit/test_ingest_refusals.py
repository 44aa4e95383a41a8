"""`bfsdata.ingest.ingest` on bad input: refused before anything is written, naming the file and
the rule; failures found only while decoding keep the rest; `skip_bad` ingests the rest and
records each refusal.

The checks (`check_workspace`, ...) are in ingest_checks.py.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from bfsdata.ingest import IngestError, ingest
from bfsdata.workspace import manifest
from bfsdata.workspace.manifest import ACQUISITIONS, REJECTED
from tests.unit.ingest_checks import STRIPS, check_workspace

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
    (_unreadable, "regular-file"),  # a folder where a frame file should be
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
    decoding finds it (a truncated file is refused with the headers, system/test_hostile.py)."""
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
    check_workspace(ws, raw, tiny_pipe, read_run)  # also: no shard for the bad row
    old = rows.set_index(["strip", "run"])["acq"]

    make_raw(raw)  # rewrites the corrupt file with its original bytes
    s = ingest(raw, ws, tiny_pipe, workers=2)
    assert (s.already, s.ingested, s.rejected, s.total) == (3, 1, 0, 4)
    rows = manifest.read(ws, ACQUISITIONS)
    assert sorted(rows["acq"]) == [0, 1, 2, 3]  # the free row is reused, no gap
    assert rows.set_index(["strip", "run"])["acq"].loc[old.index].equals(old)
    check_workspace(ws, raw, tiny_pipe, read_run)


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
        check_workspace(ws, raw2, tiny_pipe, read_run)


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
    check_workspace(ws, raw, tiny_pipe, read_run)

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
    whole = rej[rej["run"].isna()]  # the labels.csv rows
    assert sorted(whole["strip"]) == ["A1", "Z9"]
    # and a row for each acquisition the conflict left out, naming its run folder
    each = rej[rej["run"].notna()]
    assert sorted(zip(each["strip"], each["run"], strict=True)) == [("A1", 1), ("A1", 2)]
    assert all(src.startswith(str(raw / "A1" / "run_")) for src in each["source"])
    assert (each["rule"] == "labels-csv").all()
