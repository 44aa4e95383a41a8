"""Strip-level splits: shares, the test kit, determinism, stability, refusals.

`split` reads manifests only, so these workspaces are manifests written directly: no images.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pandas as pd
import pytest

from bfsdata.config.pipeline import ConfigError, SplitConfig
from bfsdata.split import SplitError, read_strip_list, split
from bfsdata.workspace import manifest

RUNS = 2


def _strips(good: int, defect: int, unknown: int = 0, first: int = 0) -> dict[str, str]:
    """{strip: label}; numbering from `first` so later batches get new ids."""
    out = {f"G{i:03d}": "good" for i in range(first, first + good)}
    out |= {f"D{i:03d}": "defect" for i in range(first, first + defect)}
    out |= {f"U{i:03d}": "unknown" for i in range(first, first + unknown)}
    return out


def _write(ws: Path, strips: Mapping[str, str], types: tuple[str, ...] = ("scratch", "drop")):
    """Acquisitions (RUNS per strip) and annotations; defect types cycle through `types`."""
    acq = [
        {
            "acq": i * RUNS + r,
            "strip": s,
            "run": r + 1,
            "label": lab,
            "n_frames": 4,
            "height": 8,
            "width": 8,
            "dtype": "uint8",
            "source": f"{s}/run_{r + 1}",
            "sha256": "0" * 64,
            "ingested_at": pd.Timestamp("2025-01-01", tz="UTC"),
        }
        for i, (s, lab) in enumerate(strips.items())
        for r in range(RUNS)
    ]
    manifest.write(ws, manifest.ACQUISITIONS, pd.DataFrame(acq))
    ann = pd.DataFrame(
        [
            {
                "strip": s,
                "label": lab,
                "defect": types[i % len(types)] if lab == "defect" else None,
                "vial": 2 if lab == "defect" else None,
                "region": 1 if lab == "defect" else None,
            }
            for i, (s, lab) in enumerate(strips.items())
            if lab != "unknown"
        ]
    ).astype({"vial": "Int8", "region": "Int8"})
    manifest.write(ws, manifest.ANNOTATIONS, ann)


def _splits(ws: Path) -> dict[str, str]:
    df = manifest.read(ws, manifest.SPLITS_SCHEMA)
    return dict(zip(df["strip"], df["split"], strict=True))


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    strips = _strips(good=40, defect=12, unknown=2)
    _write(tmp_path, strips)
    return tmp_path


def test_every_labelled_strip_is_in_exactly_one_split(ws: Path) -> None:
    s = split(ws, SplitConfig(test_good=4))
    df = manifest.read(ws, manifest.SPLITS_SCHEMA)
    assert not df["strip"].duplicated().any()
    assert set(df["strip"]) == set(_strips(good=40, defect=12))  # unknown strips: nowhere
    assert s.unknown == 2
    assert any("2 strip(s) labelled unknown" in n for n in s.notes)
    assert (df["seed"] == 0).all()
    assert s.assigned == 52 and s.new == 52 and s.kept == 0 and s.written


@pytest.mark.parametrize("good", [10, 37, 40, 95])
def test_val_is_a_tenth_of_the_training_good_strips(tmp_path: Path, good: int) -> None:
    _write(tmp_path, _strips(good=good, defect=3))
    split(tmp_path, SplitConfig(val=0.1))
    got = pd.Series(_splits(tmp_path))
    pool = got[got.index.str.startswith("G")]
    assert set(pool) == {"train", "val"}  # test_good 0: every good strip trains or validates
    assert abs((pool == "val").sum() - 0.1 * good) <= 1


def test_defective_strips_only_in_calib_or_test(ws: Path) -> None:
    split(ws, SplitConfig(test_good=4))
    got = _splits(ws)
    assert {got[s] for s in got if s.startswith("D")} == {"calib", "test"}
    held = [s for s in got if s.startswith("G") and got[s] in ("calib", "test")]
    assert len(held) == 4


def test_kit_is_stratified_by_defect_type(ws: Path) -> None:
    split(ws, SplitConfig(test_good=4, calib=0.5))
    got = _splits(ws)
    for parity in (0, 1):  # scratch on even, drop on odd defect strips: 6 each
        kind = [got[f"D{i:03d}"] for i in range(12) if i % 2 == parity]
        assert kind.count("calib") == 3 and kind.count("test") == 3
    good = [got[s] for s in got if s.startswith("G") and got[s] in ("calib", "test")]
    assert good.count("calib") == 2


def test_calib_zero_puts_the_kit_in_test_and_says_so(ws: Path) -> None:
    s = split(ws, SplitConfig(test_good=2, calib=0.0))
    got = _splits(ws)
    assert "calib" not in got.values()
    assert sum(v == "test" for v in got.values()) == 12 + 2
    assert any("in-sample" in n for n in s.notes)


def test_same_arguments_give_the_same_split(tmp_path: Path) -> None:
    strips = _strips(good=30, defect=8)
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for w in (a, b, c):
        _write(w, strips)
    split(a, SplitConfig(test_good=3, seed=7))
    split(b, SplitConfig(test_good=3, seed=7))
    split(c, SplitConfig(test_good=3, seed=8))
    assert _splits(a) == _splits(b)
    assert _splits(a) != _splits(c)


def test_rerun_with_same_arguments_changes_nothing(ws: Path, snapshot) -> None:
    cfg = SplitConfig(test_good=4, seed=3)
    split(ws, cfg)
    before = snapshot(ws / "manifests")
    s = split(ws, cfg)
    assert snapshot(ws / "manifests") == before
    assert not s.written and s.new == 0 and s.kept == 52


def test_new_strips_are_assigned_and_old_ones_stay(tmp_path: Path) -> None:
    first = _strips(good=40, defect=10)
    _write(tmp_path, first)
    cfg = SplitConfig(test_good=4, seed=1)
    split(tmp_path, cfg)
    before = _splits(tmp_path)
    more = first | _strips(good=20, defect=6, first=100)
    _write(tmp_path, more)
    s = split(tmp_path, cfg)
    after = _splits(tmp_path)
    assert {k: after[k] for k in before} == before
    assert set(after) == set(more)
    assert s.new == 26 and s.kept == 50
    pool = [v for k, v in after.items() if k.startswith("G") and v in ("train", "val")]
    assert abs(pool.count("val") - 0.1 * len(pool)) <= 1
    assert sum(k.startswith("G") and v in ("calib", "test") for k, v in after.items()) == 4
    assert {after[k] for k in more if k.startswith("D")} <= {"calib", "test"}


def test_test_strips_name_the_held_out_good_strips(ws: Path) -> None:
    named = ["G001", "G002", "G003", "D000"]
    s = split(ws, SplitConfig(test_good=9), test_strips=named)  # test_good is ignored
    got = _splits(ws)
    held = sorted(k for k, v in got.items() if k.startswith("G") and v in ("calib", "test"))
    assert held == ["G001", "G002", "G003"]
    assert s.args["test_strips"] == held and s.args["test_good"] is None
    assert any("11 defective strip(s) not in the test-strip list" in n for n in s.notes)


def test_read_strip_list_plain_and_csv(tmp_path: Path) -> None:
    plain = tmp_path / "kit.txt"
    plain.write_text("# the test kit\nG001\n\nD002\n")
    assert read_strip_list(plain) == ["G001", "D002"]
    csv = tmp_path / "kit.csv"
    csv.write_text("strip,label\nG001,good\nD002,defect\n")
    assert read_strip_list(csv) == ["G001", "D002"]


def test_changed_arguments_are_refused_unless_forced(ws: Path) -> None:
    split(ws, SplitConfig(test_good=4, seed=0))
    with pytest.raises(SplitError, match=r"seed was 0, now 5.*--force"):
        split(ws, SplitConfig(test_good=4, seed=5))
    s = split(ws, SplitConfig(test_good=4, seed=5), force=True)
    assert s.written and s.new == 52 and s.kept == 0
    assert (manifest.read(ws, manifest.SPLITS_SCHEMA)["seed"] == 5).all()


def test_split_without_recorded_arguments_is_refused(ws: Path) -> None:
    split(ws, SplitConfig())
    (ws / "manifests" / "splits.json").unlink()
    with pytest.raises(SplitError, match=r"splits.json is missing"):
        split(ws, SplitConfig())


def test_patch_counts_per_split_label_and_region(ws: Path) -> None:
    acqs = manifest.read(ws, manifest.ACQUISITIONS)
    rows = [
        {
            "patch": a * 8 + v * 4 + r,
            "acq": a,
            "strip": strip,
            "run": run,
            "frame": 0,
            "kind": "frame",
            "vial": v + 1,
            "region": r,
            "label": lab,
            "defect_here": False if lab == "good" else None,
            "y0": 0,
            "x0": 0,
            "y1": 4,
            "x1": 4,
            "dy": 0.0,
            "dx": 0.0,
            "angle": 0.0,
        }
        for a, strip, run, lab in acqs[["acq", "strip", "run", "label"]].itertuples(index=False)
        if lab != "unknown"
        for v in range(2)
        for r in range(4)
    ]
    manifest.write(ws, manifest.PATCHES, pd.DataFrame(rows))
    s = split(ws, SplitConfig(test_good=4))
    got = _splits(ws)
    train = sum(v == "train" for v in got.values())
    row = s.strips.set_index(["split", "label"]).loc[("train", "good")]
    assert row["strips"] == train and row["acquisitions"] == train * RUNS
    assert row["patches"] == train * RUNS * 8
    assert s.strips["patches"].sum() == len(rows)
    per_region = s.regions[s.regions["split"] == "train"].set_index("region")["patches"]
    assert per_region.to_dict() == {r: train * RUNS * 2 for r in range(4)}
    assert list(s.strips["split"].unique()) == ["train", "val", "calib", "test"]


def test_no_patches_is_a_note_not_an_error(ws: Path) -> None:
    s = split(ws, SplitConfig())
    assert s.regions.empty
    assert any("no patches yet" in n for n in s.notes)


def test_refuses_an_empty_workspace(tmp_path: Path) -> None:
    with pytest.raises(SplitError, match="no ingested acquisitions"):
        split(tmp_path, SplitConfig())


def test_refuses_without_good_strips(tmp_path: Path) -> None:
    _write(tmp_path, _strips(good=0, defect=4, unknown=1))
    with pytest.raises(SplitError, match="no good strips"):
        split(tmp_path, SplitConfig())


def test_refuses_to_hold_out_every_good_strip(tmp_path: Path) -> None:
    _write(tmp_path, _strips(good=3, defect=2))
    with pytest.raises(SplitError, match="--test-good 3 holds out every good strip"):
        split(tmp_path, SplitConfig(test_good=3))
    with pytest.raises(SplitError, match="test-strip list names every good strip"):
        split(tmp_path, SplitConfig(), test_strips=["G000", "G001", "G002"])


def test_refuses_unknown_or_unlabelled_test_strips(ws: Path) -> None:
    with pytest.raises(SplitError, match=r"names 2 strip\(s\) that are not ingested.*NOPE"):
        split(ws, SplitConfig(), test_strips=["G001", "NOPE", "ZZZ"])
    with pytest.raises(SplitError, match="labelled unknown"):
        split(ws, SplitConfig(), test_strips=["U000"])


def test_refuses_fractions_outside_zero_to_one() -> None:
    with pytest.raises(ConfigError, match=r"split\.val"):
        SplitConfig(val=1.5)
    with pytest.raises(ConfigError, match=r"split\.calib"):
        SplitConfig(calib=-0.1)


def test_refuses_bad_test_strip_files(tmp_path: Path) -> None:
    with pytest.raises(SplitError, match="no such test-strip file"):
        read_strip_list(tmp_path / "missing.txt")
    csv = tmp_path / "kit.csv"
    csv.write_text("id,label\nG001,good\n")
    with pytest.raises(SplitError, match="needs a 'strip' column"):
        read_strip_list(csv)
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    with pytest.raises(SplitError, match="names no strips"):
        read_strip_list(empty)


def test_a_folder_or_a_fifo_is_not_a_test_strip_file(tmp_path: Path) -> None:
    # issue 22: a folder said "no such test-strip file"; a FIFO blocked for ever
    (tmp_path / "kit").mkdir()
    with pytest.raises(SplitError, match=r"kit: is a folder; --test-strips takes a file"):
        read_strip_list(tmp_path / "kit")
    os.mkfifo(tmp_path / "kit.txt")
    with pytest.raises(SplitError, match=r"kit\.txt: is a FIFO .*\[rule: regular-file\]"):
        read_strip_list(tmp_path / "kit.txt")


def test_refuses_strips_with_two_labels(tmp_path: Path) -> None:
    _write(tmp_path, _strips(good=3, defect=1))
    acqs = manifest.read(tmp_path, manifest.ACQUISITIONS)
    acqs.loc[acqs["strip"].eq("G000") & acqs["run"].eq(2), "label"] = "defect"
    manifest.write(tmp_path, manifest.ACQUISITIONS, acqs)
    with pytest.raises(SplitError, match="carry two labels"):
        split(tmp_path, SplitConfig())
