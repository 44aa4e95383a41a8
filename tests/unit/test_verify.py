"""`bfsdata.verify` and `bfsdata verify` on a tiny real workspace: ingested, patched and split
(split_workspace.py), built once per module and copied for every test that damages it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner
from workspace_fixtures import RUNS, SIZE, STRIPS

from bfsdata.cli import app
from bfsdata.store import location as store
from bfsdata.verify import VerifyError, verify
from bfsdata.workspace import manifest
from tests.unit.split_workspace import PER_ACQ, build_split_workspace


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_split_workspace(tmp_path_factory.mktemp("ws"))


@pytest.fixture
def ws(built: Path, tmp_path: Path) -> Path:
    """A private copy that a test may damage."""
    return Path(shutil.copytree(built, tmp_path / "ws"))


def _patches(ws: Path):
    return store.open_root(ws)["patches"]


# --- verify -------------------------------------------------------------------------------


def test_verify_passes_a_sound_workspace(built: Path) -> None:
    rep = verify(built, sample=None)
    assert rep.ok, rep.problems
    n_acq = len(STRIPS) * RUNS
    assert (rep.acquisitions, rep.patches, rep.strips_split) == (n_acq, n_acq * PER_ACQ, 4)
    assert rep.ranks_recomputed == n_acq and rep.patches_recomputed == n_acq * PER_ACQ


def test_verify_samples_acquisitions(built: Path) -> None:
    rep = verify(built, sample=3, seed=1)
    assert rep.ok and rep.ranks_recomputed == 3 and rep.patches_recomputed == 3 * PER_ACQ


def test_verify_catches_a_deleted_patch_shard(ws: Path) -> None:
    store.delete_shards(_patches(ws), [1])
    rep = verify(ws, sample=None)
    assert [(d.array, d.shard, d.what) for d in rep.damage] == [("patches", 1, "missing")]
    assert "store: patches/c/1/0/0 is missing; patches.parquet rows 256-" in rep.problems[0]


def test_verify_catches_a_deleted_frames_shard(ws: Path) -> None:
    store.delete_shards(store.open_root(ws)["frames"], [2])
    rep = verify(ws, sample=None)
    assert rep.problems == [
        "store: frames/c/2/0/0/0 is missing; acquisitions.parquet: acquisition 2 (strip G1, "
        "run 1) points into it [rule: store]"
    ]


def test_verify_catches_a_row_past_the_array(ws: Path) -> None:
    rows = manifest.read(ws, manifest.PATCHES)
    end = _patches(ws).shape[0]
    rows.loc[rows.index[-1], "patch"] = end + 3
    manifest.write(ws, manifest.PATCHES, rows)
    rep = verify(ws, sample=None)
    assert any(f"outside the array's {end} rows (e.g. {end + 3})" in p for p in rep.problems)


def test_verify_catches_a_patch_overwritten_with_other_bytes(ws: Path) -> None:
    arr = _patches(ws)
    arr[17] = np.random.default_rng(0).integers(0, 256, (SIZE, SIZE), dtype=np.uint8)
    rep = verify(ws, sample=None)
    assert rep.problems == [
        "store: patches/c/0/0/0 is damaged (1 patches differ from their recomputation, e.g. "
        "17); patches.parquet rows 0-239 (240 patches of acquisition(s) 0, 1) point into it "
        "[rule: store]"
    ]


def test_verify_catches_a_changed_rank_image(ws: Path) -> None:
    rank = store.open_root(ws)["rank"]
    rank[5, 0, 10, 10] = rank[5, 0, 10, 10] ^ 1
    rep = verify(ws, sample=None)
    assert [(d.array, d.shard) for d in rep.damage] == [("rank", 5)]
    assert "its rank images differ from those its frames give" in rep.problems[0]


def test_verify_reports_orphan_shards(ws: Path) -> None:
    arr = _patches(ws)
    per = store.shard_rows(arr)
    first_free = arr.shape[0] // per
    store.grow(arr, (first_free + 1) * per)
    arr[first_free * per] = np.full((SIZE, SIZE), 7, np.uint8)
    rep = verify(ws, sample=0)
    assert rep.orphans == 1
    assert any("orphans" in p and f"(e.g. {first_free})" in p for p in rep.problems)


def test_verify_catches_manifests_naming_what_does_not_exist(ws: Path) -> None:
    splits = manifest.read(ws, manifest.SPLITS_SCHEMA)
    extra = pd.DataFrame({"strip": ["GHOST"], "split": ["train"], "seed": [0]})
    manifest.write(ws, manifest.SPLITS_SCHEMA, pd.concat([splits, extra]))
    rows = manifest.read(ws, manifest.PATCHES)
    rows.loc[rows.index[0], "acq"] = 99
    manifest.write(ws, manifest.PATCHES, rows)
    rep = verify(ws, sample=0)
    assert any(
        "splits.parquet: 1 rows name strips not ingested (e.g. GHOST)" in p for p in rep.problems
    )
    assert any("patches.parquet: 1 rows name unknown acquisitions" in p for p in rep.problems)


def test_verify_refuses_a_folder_that_is_no_workspace(tmp_path: Path) -> None:
    with pytest.raises(VerifyError, match="is this a workspace"):
        verify(tmp_path)


# --- commands -----------------------------------------------------------------------------


def test_verify_command_exit_codes(ws: Path) -> None:
    res = CliRunner().invoke(app, ["verify", "-w", str(ws), "--all"])
    assert res.exit_code == 0, res.output
    assert "ok" in res.output
    store.delete_shards(_patches(ws), [0])
    res = CliRunner().invoke(app, ["verify", "-w", str(ws), "--sample", "2"])
    assert res.exit_code == 1
    assert "1 problem(s)" in res.output
    assert "store: patches/c/0/0/0 is missing;" in res.output and "[rule: store]" in res.output
