"""Hostile input through the real `bfsdata ingest` (issue #7): one table, one way to break per row.

Every row starts from the same good raw folder (strips A1 good and B2 defect, runs 1..2, 4 frames
of 32x40 uint8 PNG), breaks it in exactly one way and runs the command three times:

- on a workspace that already holds a good ingest, and on an empty one: exit 1, one problem,
  told in one line that names the offending file and the rule, and the workspace byte for byte
  as it was (no file, no folder, no mtime changed);
- on a fresh workspace with `--skip-bad`: the acquisitions the breakage does not touch are
  ingested, and `manifests/rejected.parquet` has a row naming the file and the rule. Breakages
  that leave nothing to ingest (an unreadable labels.csv, a bad pipeline) are refused the same
  way with `--skip-bad`.

Names follow DESIGN.md's raw layout: strip ids are [A-Za-z0-9_-]+ and run and frame indices
are ASCII digits, so unicode and spaces in a strip, run or frame name are refused, with the
name in the message. Unicode and spaces above the raw folder (its own path, the workspace's)
are fine, end to end.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from cli_helpers import invoke, ok, refused

from bfsdata.config.files import PIPELINES_DIR
from bfsdata.workspace import manifest
from bfsdata.workspace.manifest import ACQUISITIONS, REJECTED
from bfsdata.workspace.problems import printable

STRIPS = {"A1": "good", "B2": "defect"}
RUNS, FRAMES, SHAPE = 2, 4, (32, 40)
ALL = frozenset((s, r) for s in STRIPS for r in range(1, RUNS + 1))
ARGS = ("--frames", str(FRAMES))  # threads: --workers N would start N worker processes


# --- ways to break a raw folder: each breaks one thing and returns the offending path ----------


def _frame(raw: Path, strip: str = "A1", run: int = 1, f: int = 1) -> Path:
    return raw / strip / f"run_{run}" / f"frame_{f}.png"


def _write_png(path: Path, img: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), img)
    return path


def zero_bytes(raw: Path) -> Path:
    path = _frame(raw)
    path.write_bytes(b"")
    return path


def truncated(raw: Path) -> Path:
    path = _frame(raw)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # an interrupted copy
    return path


def text_named_png(raw: Path) -> Path:
    path = _frame(raw)
    path.write_text("frame 1 was lost, see the shift log\n")
    return path


def rgb(raw: Path) -> Path:
    return _write_png(_frame(raw), np.zeros((*SHAPE, 3), np.uint8))


def rgba(raw: Path) -> Path:
    return _write_png(_frame(raw), np.zeros((*SHAPE, 4), np.uint8))


def sixteen_next_to_eight_bit(raw: Path) -> Path:
    return _write_png(_frame(raw, f=3), np.zeros(SHAPE, np.uint16))


def another_size(raw: Path) -> Path:
    return _write_png(_frame(raw, f=3), np.zeros((SHAPE[0], SHAPE[1] + 8), np.uint8))


def missing_frame(raw: Path) -> Path:
    _frame(raw, f=2).unlink()
    return raw / "A1" / "run_1"


def extra_frame_index(raw: Path) -> Path:
    _write_png(_frame(raw, f=FRAMES), np.zeros(SHAPE, np.uint8))
    return raw / "A1" / "run_1"


def unknown_file_in_run(raw: Path) -> Path:
    path = raw / "A1" / "run_1" / "notes.txt"
    path.write_text("operator: shift 2\n")
    return path


def unknown_file_at_top(raw: Path) -> Path:
    path = raw / "README.txt"
    path.write_text("camera 2\n")
    return path


def run_without_frames(raw: Path) -> Path:
    path = raw / "A1" / "run_3"
    path.mkdir()
    return path


def strip_without_runs(raw: Path) -> Path:
    path = raw / "C3"
    path.mkdir()
    return path


def unicode_strip(raw: Path) -> Path:
    path = raw / "Ström"
    shutil.copytree(raw / "A1", path)
    return path


def space_in_strip(raw: Path) -> Path:
    path = raw / "A 1"
    shutil.copytree(raw / "A1", path)
    return path


def non_ascii_run_digit(raw: Path) -> Path:
    path = raw / "B2" / "run_\u0662"  # ARABIC-INDIC DIGIT TWO: \d matches it, int() reads 2
    (raw / "B2" / "run_2").rename(path)
    return path


def unicode_and_space_in_a_file(raw: Path) -> Path:
    path = raw / "B2" / "run_2" / "Notiz für später.txt"
    path.write_text("x")
    return path


def newline_after_a_frame_name(raw: Path) -> Path:
    path = raw / "A1" / "run_1" / "frame_1.png\n"  # `$` matches before it; a copy of frame 1
    path.write_bytes(_frame(raw).read_bytes())
    return path


def undecodable_name(raw: Path) -> Path:
    # Linux names are bytes: b"Str\xf6m" is latin-1, not UTF-8, and reaches Python as a lone
    # surrogate that neither the terminal nor parquet can take as it is.
    name = os.fsdecode(b"Str\xf6m")
    path = raw / name
    shutil.copytree(raw / "A1", path)
    return path


def symlink_loop_at_top(raw: Path) -> Path:
    path = raw / "L1"
    path.symlink_to("L1")
    return path


def symlink_loop_as_frame(raw: Path) -> Path:
    path = _frame(raw)
    path.unlink()
    path.symlink_to(path.name)
    return path


def symlink_cycle_as_run(raw: Path) -> Path:
    path = raw / "A1" / "run_3"
    path.symlink_to(".")  # the strip folder again: a walk that followed it would never end
    return path


def symlink_cycle_as_strip(raw: Path) -> Path:
    path = raw / "S1"
    path.symlink_to(".")  # the raw folder again
    return path


def unreadable_frame(raw: Path) -> Path:
    path = _frame(raw)
    path.chmod(0)
    return path


def unreadable_run(raw: Path) -> Path:
    path = raw / "A1" / "run_1"
    path.chmod(0)
    return path


def _labels(raw: Path, *lines: str, header: str = "strip,label,defect,vial,region") -> Path:
    path = raw / "labels.csv"
    path.write_text("\n".join([header, *lines]) + "\n")
    return path


GOOD_ROWS = ("A1,good,,,", "B2,defect,scratch,2,1")


def labels_missing_column(raw: Path) -> Path:
    return _labels(raw, "A1", "B2", header="strip")


def labels_not_utf8(raw: Path) -> Path:
    path = raw / "labels.csv"
    path.write_bytes("strip,label\nA1,good\n".encode("utf-16"))
    return path


def labels_unknown_label(raw: Path) -> Path:
    return _labels(raw, "A1,okay,,,", GOOD_ROWS[1])


def labels_strip_not_there(raw: Path) -> Path:
    return _labels(raw, *GOOD_ROWS, "Z9,good,,,")


def labels_duplicate_row(raw: Path) -> Path:
    return _labels(raw, *GOOD_ROWS, GOOD_ROWS[1])


def labels_conflicting(raw: Path) -> Path:
    return _labels(raw, *GOOD_ROWS, "A1,defect,burn,1,0")


def labels_vial_out_of_range(raw: Path) -> Path:
    return _labels(raw, GOOD_ROWS[0], "B2,defect,scratch,6,1")


def labels_unicode_strip(raw: Path) -> Path:
    return _labels(raw, *GOOD_ROWS, "Ström,good,,,")


def _pipeline(raw: Path, old: str, new: str) -> Path:
    path = raw.parent / "bad pipeline.yaml"  # beside the raw folder: a file inside would be a case
    text = (PIPELINES_DIR / "demo.yaml").read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return path


def pipeline_unknown_key(raw: Path) -> Path:
    return _pipeline(raw, "  clevel: 5", "  clevel: 5\n  colour: blue")


def pipeline_out_of_range(raw: Path) -> Path:
    return _pipeline(raw, "  clevel: 5", "  clevel: 12")


def pipeline_wrong_type(raw: Path) -> Path:
    return _pipeline(raw, "  frames: 16", "  frames: sixteen")


def pipeline_not_finite(raw: Path) -> Path:
    return _pipeline(raw, "slot_ms: 500.0", "slot_ms: .nan")


def pipeline_sections_disagree(raw: Path) -> Path:
    return _pipeline(raw, "  size: 64", "  size: 60")  # 3 model stages need a multiple of 8


def pipeline_duplicate_key(raw: Path) -> Path:
    return _pipeline(raw, "  clevel: 5", "  clevel: 5\n  clevel: 9")


def pipeline_not_yaml(raw: Path) -> Path:
    return _pipeline(raw, "name: demo", "name: [demo")


@dataclass(frozen=True)
class Case:
    breaks: Callable[[Path], Path]
    rule: str  # raw input: the rule printed as [rule: ...]; a pipeline: the key named
    lost: frozenset[tuple[str, int]] = frozenset()  # acquisitions --skip-bad leaves out
    fatal: bool = False  # nothing can be ingested, --skip-bad or not
    pipeline: bool = False  # `breaks` writes a pipeline file, given with --pipeline
    needs_user: bool = False  # permissions do not apply to root

    @property
    def id(self) -> str:
        return self.breaks.__name__


A1_1, B2_2 = frozenset({("A1", 1)}), frozenset({("B2", 2)})
A1, B2 = frozenset({("A1", 1), ("A1", 2)}), frozenset({("B2", 1), ("B2", 2)})

CASES = [
    Case(zero_bytes, "not-empty", A1_1),
    Case(truncated, "complete", A1_1),
    Case(text_named_png, "valid-image", A1_1),
    Case(rgb, "single-channel", A1_1),
    Case(rgba, "single-channel", A1_1),
    Case(sixteen_next_to_eight_bit, "same-format", A1_1),
    Case(another_size, "same-format", A1_1),
    Case(missing_frame, "frame-count", A1_1),
    Case(extra_frame_index, "frame-count", A1_1),
    Case(unknown_file_in_run, "raw-layout", A1_1),
    Case(unknown_file_at_top, "raw-layout"),
    Case(run_without_frames, "frame-count"),
    Case(strip_without_runs, "raw-layout"),
    Case(unicode_strip, "strip-id"),
    Case(space_in_strip, "strip-id"),
    Case(non_ascii_run_digit, "raw-layout", B2),  # an entry of the strip folder: all of B2
    Case(unicode_and_space_in_a_file, "raw-layout", B2_2),
    Case(newline_after_a_frame_name, "raw-layout", A1_1),
    Case(undecodable_name, "strip-id"),
    Case(symlink_loop_at_top, "symlink-loop"),
    Case(symlink_loop_as_frame, "symlink-loop", A1_1),
    Case(symlink_cycle_as_run, "symlink-loop"),
    Case(symlink_cycle_as_strip, "symlink-loop"),
    Case(unreadable_frame, "readable", A1_1, needs_user=True),
    Case(unreadable_run, "readable", A1_1, needs_user=True),
    Case(labels_missing_column, "labels-csv", fatal=True),
    Case(labels_not_utf8, "labels-csv", fatal=True),
    Case(labels_unknown_label, "labels-csv", A1),
    Case(labels_strip_not_there, "labels-csv"),
    Case(labels_duplicate_row, "labels-csv", B2),
    Case(labels_conflicting, "labels-csv", A1),
    Case(labels_vial_out_of_range, "labels-csv", B2),
    Case(labels_unicode_strip, "labels-csv"),
    Case(pipeline_unknown_key, "unknown key store.'colour'", pipeline=True, fatal=True),
    Case(pipeline_out_of_range, "store.clevel", pipeline=True, fatal=True),
    Case(pipeline_wrong_type, "acquisition.frames", pipeline=True, fatal=True),
    Case(pipeline_not_finite, "report.slot_ms", pipeline=True, fatal=True),
    Case(pipeline_sections_disagree, "patch.size", pipeline=True, fatal=True),
    Case(pipeline_duplicate_key, "key 'clevel' given twice", pipeline=True, fatal=True),
    Case(pipeline_not_yaml, "not valid YAML", pipeline=True, fatal=True),
]


# --- running a case -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ingested_ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace holding a good ingest of another strip (G1), made once and copied per test."""
    root = tmp_path_factory.mktemp("ingested")
    run = root / "raw" / "G1" / "run_1"
    run.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for f in range(FRAMES):
        _write_png(run / f"frame_{f}.png", rng.integers(0, 256, SHAPE, dtype=np.uint8))
    ok(invoke("ingest", root / "raw", "-w", root / "ws", *ARGS))
    return root / "ws"


def _permissions_apply(tmp_path: Path) -> bool:
    """False for root (os.geteuid() == 0), unless it runs without CAP_DAC_OVERRIDE: asked of
    the kernel rather than guessed from the user id."""
    probe = tmp_path / "probe"
    probe.write_bytes(b"x")
    probe.chmod(0)
    try:
        probe.read_bytes()
    except PermissionError:
        return True
    finally:
        probe.unlink()
    return False


def _broken_raw(tmp_path: Path, make_raw, case: Case) -> tuple[Path, Path, tuple[str, ...]]:
    if case.needs_user and not _permissions_apply(tmp_path):
        pytest.skip(f"permissions do not apply to this user (uid {os.geteuid()})")
    raw = make_raw(tmp_path / "raw", strips=STRIPS, runs=RUNS, frames=FRAMES, shape=SHAPE)
    offending = case.breaks(raw)
    extra = ("--pipeline", str(offending)) if case.pipeline else ()
    return raw, offending, extra


def _tree(ws: Path, snapshot) -> tuple[dict, list[str]]:
    """Every file's bytes and mtime, and every folder: what 'unchanged' means here."""
    dirs = (
        sorted(str(p.relative_to(ws)) for p in ws.rglob("*") if p.is_dir()) if ws.exists() else []
    )
    return snapshot(ws), dirs


def _assert_told_once(err: str, offending: Path, case: Case) -> None:
    """One problem, told in one line that names the file (its path) and the rule."""
    shown = printable(str(offending))  # a name that is not UTF-8 shows its bytes as \xNN
    lines = [line for line in err.splitlines() if shown in line]
    assert len(lines) == 1, err
    assert err.strip() == lines[0], err  # the whole refusal is that line
    assert (case.rule if case.pipeline else f"[rule: {case.rule}]") in lines[0], err


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_refused_and_nothing_changes(
    tmp_path: Path, make_raw, snapshot, ingested_ws: Path, case: Case
) -> None:
    raw, offending, extra = _broken_raw(tmp_path, make_raw, case)
    full = shutil.copytree(ingested_ws, tmp_path / "full")
    empty = tmp_path / "empty"
    empty.mkdir()
    for ws in (full, empty):
        before = _tree(ws, snapshot)
        err = refused(invoke("ingest", raw, "-w", ws, *ARGS, *extra))
        _assert_told_once(err, offending, case)
        assert _tree(ws, snapshot) == before


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_skip_bad_ingests_the_rest_and_records_the_refusal(
    tmp_path: Path, make_raw, snapshot, case: Case
) -> None:
    raw, offending, extra = _broken_raw(tmp_path, make_raw, case)
    ws = tmp_path / "ws"
    result = invoke("ingest", raw, "-w", ws, *ARGS, "--skip-bad", *extra)
    if case.fatal:
        _assert_told_once(refused(result), offending, case)
        assert not ws.exists()
        return
    ok(result)
    rows = manifest.read(ws, ACQUISITIONS)
    assert set(zip(rows["strip"], rows["run"].astype(int), strict=True)) == ALL - case.lost
    rej = manifest.read(ws, REJECTED)
    shown = printable(str(offending))
    named = [
        rule
        for source, rule in zip(rej["source"], rej["rule"], strict=True)
        if source == shown or source.startswith(f"{shown}:")  # labels.csv:<line>
    ]
    assert named == [case.rule], rej.to_string()
    assert len(rej) == 1, rej.to_string()


def test_unicode_and_spaces_above_the_raw_folder_are_fine(tmp_path: Path, make_raw) -> None:
    raw = make_raw(tmp_path / "Rohdaten für Linie 2 ✓", strips=STRIPS, runs=RUNS, frames=FRAMES)
    ws = tmp_path / "área de trabajo"
    out = ok(invoke("ingest", raw, "-w", ws, *ARGS))
    assert "refused" not in out
    rows = manifest.read(ws, ACQUISITIONS)
    assert set(zip(rows["strip"], rows["run"].astype(int), strict=True)) == ALL
    assert all(src.startswith(str(raw.resolve())) for src in rows["source"])
    assert "nothing to do" in ok(invoke("ingest", raw, "-w", ws, *ARGS))


def test_a_raw_folder_whose_path_is_not_utf8_is_refused(tmp_path: Path, make_raw) -> None:
    # The manifests record each acquisition's folder as text: a path that is not UTF-8 would
    # fail there, after the frames were written.
    raw = make_raw(tmp_path / "raw", strips=STRIPS, runs=RUNS, frames=FRAMES, shape=SHAPE)
    odd = raw.rename(tmp_path / os.fsdecode(b"Rohdaten-\xf6"))
    ws = tmp_path / "ws"
    err = refused(invoke("ingest", odd, "-w", ws, *ARGS))
    assert "Rohdaten-\\xf6: has a path that is not UTF-8" in err
    assert "[rule: raw-folder]" in err
    assert not ws.exists()
