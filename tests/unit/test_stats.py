"""`bfsdata.stats` and `bfsdata stats` on a tiny real workspace: ingested, patched and split
(split_workspace.py), built once per module.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner
from workspace_fixtures import FRAMES, RUNS, SIZE, STRIPS

from bfsdata.cli import app
from bfsdata.stats import stats
from tests.unit.split_workspace import PER_ACQ, build_split_workspace


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_split_workspace(tmp_path_factory.mktemp("ws"))


# --- stats --------------------------------------------------------------------------------


def test_stats_counts_sizes_and_intensities(built: Path) -> None:
    s = stats(built, sample=100)
    n_acq = len(STRIPS) * RUNS
    assert s.image == {"height": 128, "width": 160, "dtype": "uint8", "n_frames": FRAMES}
    assert s.patch_size == SIZE
    assert s.counts["patches"].sum() == n_acq * PER_ACQ
    assert set(s.counts["split"]) <= {"train", "val", "calib", "test"}
    assert set(s.counts["kind"]) == {"frame", "rank_min", "rank_max"}
    assert s.strips["strips"].sum() == len(STRIPS)
    defect = s.strips[s.strips["label"] == "defect"]
    assert set(defect["split"]) <= {"calib", "test"}
    arrays = {a.name: a for a in s.arrays}
    assert arrays["frames"].raw_bytes == n_acq * FRAMES * 128 * 160
    assert arrays["patches"].rows == n_acq * PER_ACQ
    assert all(0 < a.stored_bytes <= s.store_bytes and a.ratio > 0 for a in s.arrays)
    assert list(s.intensity["region"]) == [0, 1, 2, 3]
    assert s.intensity["patches"].sum() == 100
    assert s.intensity["mean"].between(140, 175).all()  # the strip's grey, not the background
    json.dumps(s.to_dict())  # one JSON document


def test_stats_refuses_an_empty_workspace(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no ingested acquisitions"):
        stats(tmp_path)


# --- commands -----------------------------------------------------------------------------


def test_stats_command_table_and_json(built: Path) -> None:
    res = CliRunner().invoke(app, ["stats", "-w", str(built), "--sample", "50"])
    assert res.exit_code == 0, res.output
    assert "patches per split" in res.output and "ratio" in res.output
    res = CliRunner().invoke(app, ["stats", "-w", str(built), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["image"]["width"] == 160 and doc["arrays"][0]["name"] == "frames"
