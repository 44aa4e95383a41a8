"""scan_raw: acquisitions, labels and layout problems, from names and folders only."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from bfsdata.sources.strip_folders import scan_raw


def _rules(scan) -> list[tuple[str, str]]:
    return sorted((Path(p.source).name, p.rule) for p in scan.problems)


def test_good_layout_with_labels_csv(tmp_path: Path, make_raw) -> None:
    raw = make_raw(tmp_path / "raw", strips={"B2": "defect", "A1": "good", "C3": "unknown"})
    scan = scan_raw(raw, 4)
    assert scan.problems == []
    assert scan.label_source == "labels.csv"
    assert [(a.strip, a.run, a.label) for a in scan.acquisitions] == [
        ("A1", 1, "good"),
        ("A1", 2, "good"),
        ("B2", 1, "defect"),
        ("B2", 2, "defect"),
        ("C3", 1, "unknown"),
        ("C3", 2, "unknown"),
    ]
    a = scan.acquisitions[0]
    assert a.folder == raw / "A1" / "run_1"
    assert a.frames == tuple(raw / "A1" / "run_1" / f"frame_{i}.png" for i in range(4))
    assert scan.strips == {"A1", "B2", "C3"}
    ann = scan.annotations.set_index("strip")
    assert ann.loc["B2", "label"] == "defect"
    assert (ann.loc["B2", "defect"], ann.loc["B2", "vial"], ann.loc["B2", "region"]) == (
        "scratch",
        2,
        1,
    )
    assert ann.loc["A1", "label"] == "good"


def test_frames_are_in_numeric_index_order(tmp_path: Path, make_raw) -> None:
    # frame_10 sorts before frame_2 by name; the scan must order by index.
    raw = make_raw(tmp_path / "raw", strips={"A1": "good"}, runs=1, frames=12)
    (acq,) = scan_raw(raw, 12).acquisitions
    assert [int(p.stem.split("_")[1]) for p in acq.frames] == list(range(12))


def test_runs_are_sorted_numerically_and_hidden_files_ignored(tmp_path: Path, make_raw) -> None:
    raw = make_raw(tmp_path / "raw", strips={"A1": "good"}, runs=10)
    (raw / "A1" / "run_3" / ".DS_Store").write_text("x")
    (raw / ".hidden").write_text("x")
    scan = scan_raw(raw, 4)
    assert scan.problems == []
    assert [a.run for a in scan.acquisitions] == list(range(1, 11))


def test_no_labels_means_unknown(tmp_path: Path, make_raw) -> None:
    raw = make_raw(tmp_path / "raw", labels=False)
    scan = scan_raw(raw, 4)
    assert scan.problems == []
    assert scan.label_source == "unknown"
    assert {a.label for a in scan.acquisitions} == {"unknown"}
    assert scan.annotations.empty


def test_labels_from_good_and_defect_folders(tmp_path: Path, make_raw) -> None:
    make_raw(tmp_path / "raw" / "good", strips={"A1": "unknown"}, runs=1)
    make_raw(tmp_path / "raw" / "defect", strips={"B2": "unknown", "C3": "unknown"}, runs=1)
    scan = scan_raw(tmp_path / "raw", 4)
    assert scan.problems == []
    assert scan.label_source == "folders"
    assert [(a.strip, a.label) for a in scan.acquisitions] == [
        ("A1", "good"),
        ("B2", "defect"),
        ("C3", "defect"),
    ]
    assert sorted(scan.annotations["strip"]) == ["A1", "B2", "C3"]


def test_strip_outside_label_folders(tmp_path: Path, make_raw) -> None:
    make_raw(tmp_path / "raw" / "good", strips={"A1": "unknown"}, runs=1)
    make_raw(tmp_path / "raw", strips={"Z9": "unknown"}, runs=1)
    scan = scan_raw(tmp_path / "raw", 4)
    assert _rules(scan) == [("Z9", "raw-layout")]
    assert "outside good/ and defect/" in scan.problems[0].message


def test_raw_must_be_a_folder(tmp_path: Path) -> None:
    scan = scan_raw(tmp_path / "nope", 4)
    (p,) = scan.problems
    assert (p.rule, p.fatal) == ("raw-folder", True)


@pytest.mark.parametrize("name", ["bad strip!", "a.b", "ü1"])
def test_strip_id_pattern(tmp_path: Path, make_raw, name: str) -> None:
    raw = make_raw(tmp_path / "raw", strips={"A1": "good", name: "unknown"}, runs=1)
    scan = scan_raw(raw, 4)
    assert _rules(scan) == [(name, "strip-id")]
    assert "[A-Za-z0-9_-]+" in scan.problems[0].message
    assert [a.strip for a in scan.acquisitions] == ["A1"]


def test_duplicate_acquisition(tmp_path: Path, make_raw) -> None:
    raw = make_raw(tmp_path / "raw", strips={"A1": "good"}, runs=1)
    shutil.copytree(raw / "A1" / "run_1", raw / "A1" / "run_01")
    scan = scan_raw(raw, 4)
    (p,) = scan.problems
    assert p.rule == "unique-acquisition"
    assert (p.strip, p.run) == ("A1", 1)
    assert "run_01" in p.source or "run_01" in p.message
    assert len(scan.acquisitions) == 1


@pytest.mark.parametrize(
    ("where", "name"),
    [(("A1", "run_1"), "notes.txt"), (("A1",), "README"), ((), "stray.png")],
)
def test_unexpected_files(tmp_path: Path, make_raw, where, name: str) -> None:
    raw = make_raw(tmp_path / "raw", strips={"A1": "good"}, runs=1)
    raw.joinpath(*where, name).write_text("x")
    scan = scan_raw(raw, 4)
    assert _rules(scan) == [(name, "raw-layout")]
    assert "unexpected" in scan.problems[0].message


def test_missing_frame_index(tmp_path: Path, make_raw) -> None:
    raw = make_raw(tmp_path / "raw", strips={"A1": "good"}, runs=2)
    (raw / "A1" / "run_2" / "frame_2.png").unlink()
    scan = scan_raw(raw, 4)
    (p,) = scan.problems
    assert (p.rule, p.strip, p.run) == ("frame-count", "A1", 2)
    assert "missing 2" in p.message and "found 3" in p.message
    assert [a.run for a in scan.acquisitions] == [1]


def test_wrong_frame_count(tmp_path: Path, make_raw) -> None:
    raw = make_raw(tmp_path / "raw", strips={"A1": "good"}, runs=1, frames=6)
    (p,) = scan_raw(raw, 4).problems
    assert p.rule == "frame-count"
    assert "expected frames 0..3 (4 frames), found 6: unexpected 4, 5" in p.message


def test_duplicate_frame_index(tmp_path: Path, make_raw) -> None:
    raw = make_raw(tmp_path / "raw", strips={"A1": "good"}, runs=1)
    shutil.copy(raw / "A1" / "run_1" / "frame_1.png", raw / "A1" / "run_1" / "frame_01.png")
    scan = scan_raw(raw, 4)
    assert [p.rule for p in scan.problems] == ["unique-frame"]
    assert scan.acquisitions == []


def test_empty_run_and_empty_strip(tmp_path: Path, make_raw) -> None:
    raw = make_raw(tmp_path / "raw", strips={"A1": "good"}, runs=1)
    (raw / "A1" / "run_2").mkdir()
    (raw / "E5").mkdir()
    scan = scan_raw(raw, 4)
    assert _rules(scan) == [("E5", "raw-layout"), ("run_2", "frame-count")]


@pytest.mark.parametrize(
    ("csv", "fatal", "match"),
    [
        ("strip,defect\nA1,\n", True, "missing column\\(s\\) label"),
        ("strip,label,colour\nA1,good,red\n", True, "unknown column\\(s\\) colour"),
        ("strip,label\nA1,good\nB2,broken\n", False, "label 'broken' must be good or defect"),
        ("strip,label\nA1,good\nB2,defect\nZ9,good\n", False, "names strip Z9, which has no"),
        ("strip,label\nA1,good\nA1,defect\nB2,defect\n", False, "labelled both good and defect"),
        ("strip,label\nA1,good\nA1,good\nB2,defect\n", False, "duplicate row for strip A1"),
        ("strip,label,vial\nA1,good,\nB2,defect,6\n", False, "vial '6' must be 1..5"),
        ("strip,label,region\nA1,good,\nB2,defect,x\n", False, "region 'x' must be 0..3"),
        ("strip,label,defect\nA1,good,scratch\nB2,defect,\n", False, "good strip cannot carry"),
        ("strip,label\nA 1,good\n", False, "strip 'A 1' must match"),
        # issue 22: a defect name a spreadsheet would run as a formula
        ("strip,label,defect\nA1,good,\nB2,defect,=cmd()\n", False, "defect '=cmd\\(\\)' starts"),
        ("strip,label,defect\nA1,good,\nB2,defect,@SUM(A1)\n", False, "runs as a formula"),
    ],
)
def test_labels_csv_rules(tmp_path: Path, make_raw, csv: str, fatal: bool, match: str) -> None:
    raw = make_raw(tmp_path / "raw", labels=False)
    (raw / "labels.csv").write_text(csv)
    scan = scan_raw(raw, 4)
    assert scan.problems, "expected a labels-csv problem"
    (p,) = [p for p in scan.problems if p.rule == "labels-csv"]
    assert p.fatal is fatal
    assert "labels.csv" in p.source
    assert re.search(match, p.message), p.message


def test_several_annotations_for_one_defect_strip(tmp_path: Path, make_raw) -> None:
    raw = make_raw(tmp_path / "raw", labels=False)
    (raw / "labels.csv").write_text(
        "strip,label,defect,vial,region\nA1,good,,,\nB2,defect,scratch,2,1\nB2,defect,drop,5,3\n"
    )
    scan = scan_raw(raw, 4)
    assert scan.problems == []
    ann = scan.annotations[scan.annotations["strip"] == "B2"]
    assert sorted(zip(ann["defect"], ann["vial"], ann["region"], strict=True)) == [
        ("drop", 5, 3),
        ("scratch", 2, 1),
    ]


def test_a_stray_file_in_a_strip_folder_refuses_only_itself(tmp_path: Path, make_raw) -> None:
    raw = make_raw(tmp_path / "raw", strips={"A1": "good"}, runs=2)
    (raw / "A1" / "stray.txt").write_text("x")
    scan = scan_raw(raw, 4)
    (p,) = scan.problems
    assert (Path(p.source).name, p.rule, p.strip, p.run) == ("stray.txt", "raw-layout", None, None)
    assert [(a.strip, a.run) for a in scan.acquisitions] == [("A1", 1), ("A1", 2)]


def test_strip_ids_that_differ_only_by_case_refuse_each_other(tmp_path: Path, make_raw) -> None:
    strips = {"S0002": "unknown", "s0002": "unknown", "A1": "unknown"}
    raw = make_raw(tmp_path / "raw", strips=strips, runs=1, labels=False)
    scan = scan_raw(raw, 4)
    assert sorted((p.strip, p.rule) for p in scan.problems) == [
        ("S0002", "unique-strip"),
        ("s0002", "unique-strip"),
    ]
    for p in scan.problems:  # the message names the other folder, the source this one
        other = raw / ("s0002" if p.strip == "S0002" else "S0002")
        assert p.source == str(raw / p.strip) and str(other) in p.message


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_labels_csv_must_be_a_regular_file(tmp_path: Path, make_raw, kind: str) -> None:
    raw = make_raw(tmp_path / "raw")
    (raw / "labels.csv").unlink()
    if kind == "fifo":
        os.mkfifo(raw / "labels.csv")
    else:
        (raw / "labels.csv").symlink_to("/dev/zero")
    (p,) = scan_raw(raw, 4).problems
    assert (p.rule, p.fatal) == ("regular-file", True)
    assert "not a regular file" in p.message
