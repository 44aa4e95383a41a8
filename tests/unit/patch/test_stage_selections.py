"""`bfsdata.patch.stage.patch`, selections: `frames` and `kinds` pick the images cut, and
`defect_here` marks exactly the annotated (vial, region) cells.

The workspaces (`raw`, `ingested`, `patched`, `fresh`, `done`) are fixtures in this folder's
conftest.py; the helpers that read them back are in stage_helpers.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from subpixel_crop import expected_crop, row_shift

from bfsdata.config.pipeline import KINDS
from bfsdata.ingest import ingest
from bfsdata.patch.stage import patch
from bfsdata.store import location as store
from tests.unit.patch.stage_helpers import (
    REGIONS,
    SIZE,
    VIALS,
    Sources,
    assert_close,
    patch_pipe,
    patch_rows,
)

# --- selections -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frames", "kinds", "images"),
    [
        ("0,3", KINDS, [("frame", 0), ("frame", 3), ("rank_min", -1), ("rank_max", -1)]),
        ("first-eighth-last", ("frame",), [("frame", 0), ("frame", 3)]),  # 4 frames: 0 and 3
        ("all", ("rank_max",), [("rank_max", -1)]),
        ("2", ("frame", "rank_min"), [("frame", 2), ("rank_min", -1)]),
    ],
)
def test_frames_and_kinds_select_the_images(fresh: Path, frames, kinds, images) -> None:
    s = patch(fresh, patch_pipe(frames=frames, kinds=kinds), workers=1)
    rows = patch_rows(fresh)
    assert s.per_acquisition == len(images) * VIALS * REGIONS
    assert len(rows) == s.total == 4 * s.per_acquisition
    for _, g in rows.groupby("acq"):
        assert sorted(set(zip(g["kind"], g["frame"], strict=True))) == sorted(images)
    # the frame column names the frame that was cut
    root = store.open_root(fresh, mode="r")
    row = rows.sort_values("patch").iloc[-1]
    box = (row.y0, row.x0, row.y1, row.x1)
    want = expected_crop(Sources(root)(row), box, SIZE, row_shift(row), row.angle)
    assert_close(root["patches"][int(row.patch)], want)


def test_defect_here_marks_the_annotated_cells(raw, tmp_path: Path) -> None:
    """True exactly at annotated (vial, region) cells, False elsewhere; null where the label is
    unknown or an annotation does not say where."""
    src = raw[0]
    labels = pd.read_csv(src / "labels.csv")
    synth_cells = {
        (int(v), int(r))
        for v, r in labels.loc[labels["strip"] == "S0001", ["vial", "region"]].itertuples(
            index=False
        )
    }
    copies = {"S0000": "S0000", "S0001": "S0001", "U0": "S0000", "D0": "S0001", "D1": "S0000"}
    copies["D2"] = "S0001"
    for strip, origin in copies.items():
        shutil.copytree(src / origin / "run_1", tmp_path / "raw" / strip / "run_1")
    lines = ["strip,label,defect,vial,region", "S0000,good,,,"]
    lines += [f"S0001,defect,x,{v},{r}" for v, r in sorted(synth_cells)]
    lines += ["D0,defect,scratch,,", "D1,defect,a,1,0", "D1,defect,b,5,2"]
    lines += ["D2,defect,a,2,1", "D2,defect,b,,"]  # U0 has no row: label unknown
    (tmp_path / "raw" / "labels.csv").write_text("\n".join(lines) + "\n")
    ws = tmp_path / "ws"
    ingest(tmp_path / "raw", ws, patch_pipe(), workers=1)
    patch(ws, patch_pipe(frames="0", kinds=("frame", "rank_max")), workers=1)
    rows = patch_rows(ws)

    def cells(strip: str, value: object) -> set[tuple[int, int]]:
        g = rows[rows["strip"] == strip]
        hit = g["defect_here"].isna() if value is None else g["defect_here"].eq(value).fillna(False)
        return set(zip(g.loc[hit, "vial"], g.loc[hit, "region"], strict=True))

    every = {(v, r) for v in range(1, VIALS + 1) for r in range(REGIONS)}
    assert len(synth_cells) >= 1
    expected = {  # strip: (True cells, null cells); the rest False
        "S0000": (set(), set()),
        "S0001": (synth_cells, set()),
        "D1": ({(1, 0), (5, 2)}, set()),
        "U0": (set(), every),
        "D0": (set(), every),
        "D2": ({(2, 1)}, every - {(2, 1)}),
    }
    for strip, (true, null) in expected.items():
        assert cells(strip, True) == true, strip
        assert cells(strip, None) == null, strip
        assert cells(strip, False) == every - true - null, strip
    assert set(rows.loc[rows["strip"] == "U0", "label"]) == {"unknown"}
