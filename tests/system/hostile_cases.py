"""The table of hostile inputs for test_hostile.py: ways to break a good raw folder, one per
row, each with the rule its refusal must name and the acquisitions `--skip-bad` leaves out.

The good raw folder: strips A1 good and B2 defect, runs 1..2, 4 frames of 32x40 uint8 PNG.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from hostile_files import padded_png, png_claiming

from bfsdata.config.files import PIPELINES_DIR

STRIPS = {"A1": "good", "B2": "defect"}
RUNS, FRAMES, SHAPE = 2, 4, (32, 40)
ALL = frozenset((s, r) for s in STRIPS for r in range(1, RUNS + 1))
ARGS = ("--frames", str(FRAMES))  # threads: --workers N would start N worker processes


# --- ways to break a raw folder: each breaks one thing and returns the offending path ----------


def _frame(raw: Path, strip: str = "A1", run: int = 1, f: int = 1) -> Path:
    return raw / strip / f"run_{run}" / f"frame_{f}.png"


def write_png(path: Path, img: np.ndarray) -> Path:
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
    return write_png(_frame(raw), np.zeros((*SHAPE, 3), np.uint8))


def rgba(raw: Path) -> Path:
    return write_png(_frame(raw), np.zeros((*SHAPE, 4), np.uint8))


def sixteen_next_to_eight_bit(raw: Path) -> Path:
    return write_png(_frame(raw, f=3), np.zeros(SHAPE, np.uint16))


def another_size(raw: Path) -> Path:
    return write_png(_frame(raw, f=3), np.zeros((SHAPE[0], SHAPE[1] + 8), np.uint8))


def missing_frame(raw: Path) -> Path:
    _frame(raw, f=2).unlink()
    return raw / "A1" / "run_1"


def extra_frame_index(raw: Path) -> Path:
    write_png(_frame(raw, f=FRAMES), np.zeros(SHAPE, np.uint8))
    return raw / "A1" / "run_1"


def unknown_file_in_run(raw: Path) -> Path:
    path = raw / "A1" / "run_1" / "notes.txt"
    path.write_text("operator: shift 2\n")
    return path


def unknown_file_in_strip(raw: Path) -> Path:
    path = raw / "A1" / "stray.txt"  # beside the runs: they stay valid (issue 22)
    path.write_text("x\n")
    return path


def header_bomb(raw: Path) -> Path:
    return png_claiming(_frame(raw), 20_000, 20_000)  # 400 Mpx claimed by a few dozen bytes


def header_of_two_to_the_31(raw: Path) -> Path:
    return png_claiming(_frame(raw), 2**31, 1)


def padded_frame(raw: Path) -> Path:
    return padded_png(_frame(raw), 2**21)  # 2 MiB of a private chunk in a 32x40 frame


def frame_links_to_dev_zero(raw: Path) -> Path:
    path = _frame(raw)
    path.unlink()
    path.symlink_to("/dev/zero")  # reads for ever
    return path


def frame_is_a_fifo(raw: Path) -> Path:
    path = _frame(raw)
    path.unlink()
    os.mkfifo(path)  # blocks a reader until a writer comes
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


def labels_defect_is_a_formula(raw: Path) -> Path:
    return _labels(raw, GOOD_ROWS[0], "B2,defect,=cmd(),2,1")


def labels_is_a_fifo(raw: Path) -> Path:
    path = raw / "labels.csv"
    path.unlink()
    os.mkfifo(path)
    return path


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


def pipeline_patch_size_huge(raw: Path) -> Path:
    return _pipeline(raw, "  size: 64", "  size: 20000")  # a 134 GiB allocation in patch


def pipeline_patch_size_enormous(raw: Path) -> Path:
    return _pipeline(raw, "  size: 64", "  size: 100000000000000000000")


def pipeline_shard_too_large(raw: Path) -> Path:
    return _pipeline(raw, "  patch_shard: 256", "  patch_shard: 1000000")


def pipeline_batch_too_large(raw: Path) -> Path:
    return _pipeline(raw, "    batch: 16", "    batch: 10000000")


def pipeline_is_a_fifo(raw: Path) -> Path:
    path = raw.parent / "pipeline fifo.yaml"
    os.mkfifo(path)
    return path


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
    Case(unknown_file_in_strip, "raw-layout"),  # refuses itself only: A1's runs are kept
    Case(header_bomb, "max-pixels", A1_1),
    Case(header_of_two_to_the_31, "max-pixels", A1_1),
    Case(padded_frame, "file-size", A1_1),
    Case(frame_links_to_dev_zero, "regular-file", A1_1),
    Case(frame_is_a_fifo, "regular-file", A1_1),
    Case(run_without_frames, "frame-count"),
    Case(strip_without_runs, "raw-layout"),
    Case(unicode_strip, "strip-id"),
    Case(space_in_strip, "strip-id"),
    Case(non_ascii_run_digit, "raw-layout", B2_2),  # not a run: B2 keeps run_1
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
    Case(labels_defect_is_a_formula, "labels-csv", B2),
    Case(labels_is_a_fifo, "regular-file", fatal=True),
    Case(pipeline_unknown_key, "unknown key store.'colour'", pipeline=True, fatal=True),
    Case(pipeline_out_of_range, "store.clevel", pipeline=True, fatal=True),
    Case(pipeline_wrong_type, "acquisition.frames", pipeline=True, fatal=True),
    Case(pipeline_not_finite, "report.slot_ms", pipeline=True, fatal=True),
    Case(pipeline_sections_disagree, "patch.size", pipeline=True, fatal=True),
    Case(pipeline_duplicate_key, "key 'clevel' given twice", pipeline=True, fatal=True),
    Case(pipeline_not_yaml, "not valid YAML", pipeline=True, fatal=True),
    Case(pipeline_patch_size_huge, "patch.size: must be <= 2048", pipeline=True, fatal=True),
    Case(pipeline_patch_size_enormous, "patch.size: must be <=", pipeline=True, fatal=True),
    Case(pipeline_shard_too_large, "store.patch_shard", pipeline=True, fatal=True),
    Case(pipeline_batch_too_large, "train.optim.batch", pipeline=True, fatal=True),
    Case(pipeline_is_a_fifo, "[rule: regular-file]", pipeline=True, fatal=True),
]
