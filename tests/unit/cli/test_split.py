"""`bfsdata split` through the command line: summary table, options, refusals."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from bfsdata.cli import app
from bfsdata.workspace import manifest


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    """20 good and 6 defective strips, one acquisition each, manifests only."""
    strips = {f"G{i:02d}": "good" for i in range(20)} | {f"D{i:02d}": "defect" for i in range(6)}
    acq = pd.DataFrame(
        {
            "acq": range(len(strips)),
            "strip": list(strips),
            "run": 1,
            "label": list(strips.values()),
            "n_frames": 4,
            "height": 8,
            "width": 8,
            "dtype": "uint8",
            "source": [f"{s}/run_1" for s in strips],
            "sha256": "0" * 64,
            "ingested_at": pd.Timestamp("2025-01-01", tz="UTC"),
        }
    )
    manifest.write(tmp_path, manifest.ACQUISITIONS, acq)
    return tmp_path


def _run(*args: str) -> tuple[int, str]:
    """Exit code and output with whitespace collapsed (rich wraps at the terminal width)."""
    res = CliRunner().invoke(app, ["split", *args])
    return res.exit_code, " ".join(res.output.split())


def test_split_prints_the_table_and_writes_the_manifest(ws: Path) -> None:
    code, out = _run("-w", str(ws), "--test-good", "2", "--seed", "4")
    assert code == 0, out
    for word in ("train", "val", "calib", "test", "26 (26 new, 0 kept)", "no patches yet"):
        assert word in out
    df = manifest.read(ws, manifest.SPLITS_SCHEMA)
    assert len(df) == 26 and (df["seed"] == 4).all()
    code, out = _run("-w", str(ws), "--test-good", "2", "--seed", "4")
    assert code == 0 and "26 (0 new, 26 kept)" in out and "nothing to do" in out


def test_test_strips_file(ws: Path, tmp_path: Path) -> None:
    kit = tmp_path / "kit.txt"
    kit.write_text("G03\nG07\n")
    code, out = _run("-w", str(ws), "--test-strips", str(kit), "--calib", "0")
    assert code == 0, out
    assert "2 named in the list" in out and "in-sample" in out
    df = manifest.read(ws, manifest.SPLITS_SCHEMA).set_index("strip")["split"]
    assert df["G03"] == "test" and df["G07"] == "test"


def test_changed_arguments_need_force(ws: Path) -> None:
    assert _run("-w", str(ws))[0] == 0
    code, out = _run("-w", str(ws), "--val", "0.2")
    assert code == 1 and "val was 0.1, now 0.2" in out
    assert _run("-w", str(ws), "--val", "0.2", "--force")[0] == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--val", "1.5"], "split.val"),
        (["--calib", "-0.2"], "split.calib"),
        (["--test-strips", "missing.txt"], "no such test-strip file"),
        (["--test-good", "20"], "holds out every good strip"),
    ],
)
def test_impossible_requests_exit_1_with_a_message(ws: Path, args, message: str) -> None:
    code, out = _run("-w", str(ws), *args)
    assert code == 1 and message in out


def test_unknown_strips_in_the_test_file(ws: Path, tmp_path: Path) -> None:
    kit = tmp_path / "kit.csv"
    kit.write_text("strip\nG01\nX99\n")
    code, out = _run("-w", str(ws), "--test-strips", str(kit))
    assert code == 1 and "X99" in out and "not ingested" in out
