"""`bfsdata.patch.stage.patch` run again: a re-run is a no-op, new acquisitions are patched alone,
changed settings are refused; several workers write the same bytes as one, and a run resumes
after a crash to the same result as an uninterrupted one.

The workspaces (`raw`, `ingested`, `patched`, `fresh`, `done`) are fixtures in this folder's
conftest.py; the helpers that read them back are in stage_helpers.py.
"""

from __future__ import annotations

import dataclasses
import shutil
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bfsdata.config.pipeline import PatchConfig
from bfsdata.ingest import ingest
from bfsdata.patch.stage import PatchError, patch
from bfsdata.store import location as store
from bfsdata.verify import verify
from tests.unit.patch.stage_helpers import (
    PER_ACQ,
    patch_pipe,
    patch_rows,
    patches_by_key,
    snapshot_patches,
)

# --- re-runs, additions, settings -------------------------------------------------------------


def test_rerun_is_a_no_op(done: Path, snapshot) -> None:
    """Shards and manifest keep their bytes and mtimes; the array metadata keeps its bytes."""
    before = snapshot_patches(done, snapshot)
    s = patch(done, patch_pipe(), workers=2)
    assert (s.already, s.patched, s.patches, s.total) == (4, 0, 0, 4 * PER_ACQ)
    after = snapshot_patches(done, snapshot)
    assert after.keys() == before.keys()
    assert {k: v for k, v in after.items() if k != "zarr.json"} == {
        k: v for k, v in before.items() if k != "zarr.json"
    }
    assert after["zarr.json"][0] == before["zarr.json"][0]


def test_rerun_rewrites_nothing_at_all(done: Path, snapshot) -> None:
    before = snapshot_patches(done, snapshot)
    patch(done, patch_pipe(), workers=2)
    assert snapshot_patches(done, snapshot) == before


def test_new_acquisitions_are_patched_alone(done: Path, raw, tmp_path: Path, snapshot) -> None:
    more = Path(shutil.copytree(raw[0], tmp_path / "more"))
    shutil.copytree(raw[0] / "S0000", more / "S0002")
    with (more / "labels.csv").open("a") as fh:
        fh.write("S0002,good,,,\n")
    old_rows = patch_rows(done)
    shards = store.store_path(done) / "patches" / "c"
    old_shards = snapshot(shards)
    old = patches_by_key(done)

    ingest(more, done, patch_pipe(), workers=1)
    s = patch(done, patch_pipe(), workers=2)
    assert (s.acquisitions, s.already, s.patched, s.patches) == (6, 4, 2, 2 * PER_ACQ)
    rows = patch_rows(done)
    assert len(rows) == 6 * PER_ACQ
    new = rows[~rows["acq"].isin(old_rows["acq"])]
    assert set(new["strip"]) == {"S0002"} and len(new) == 2 * PER_ACQ
    kept = rows[rows["acq"].isin(old_rows["acq"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, old_rows.reset_index(drop=True))
    now = snapshot(shards)
    assert {k: now[k] for k in old_shards} == old_shards  # old shard files untouched
    by_key = patches_by_key(done)
    assert all(np.array_equal(by_key[k], v) for k, v in old.items())
    # S0002 is S0000 again: the same patches
    acqs = rows.drop_duplicates("acq")
    acq_of = dict(zip(zip(acqs["strip"], acqs["run"], strict=True), acqs["acq"], strict=True))
    for run in (1, 2):
        copy, origin = acq_of[("S0002", run)], acq_of[("S0000", run)]
        for k, v in by_key.items():
            if k[0] == copy:
                np.testing.assert_array_equal(v, by_key[(origin, *k[1:])])
    assert verify(done, sample=None).ok


@pytest.mark.parametrize(
    ("change", "what"),
    [
        ({"patch": {"frames": "0,3"}}, "frames"),
        ({"patch": {"kinds": ("frame", "rank_max")}}, "kinds"),
        ({"patch": {"input_bits": 12}}, "input_bits"),
        ({"patch": {"resize": "native"}}, "resize"),
        ({"patch": {"subpixel": False}}, "subpixel"),
        ({"patch": {"rotation": False}}, "rotation"),
        ({"layout": {"mode": "auto"}}, "layout"),
        ({"layout": {"max_shift": 40.0}}, "layout"),
        ({"regions": 3}, "layout, regions"),
    ],
)
def test_changed_settings_are_refused(done: Path, snapshot, change, what) -> None:
    pipe = patch_pipe()
    if "patch" in change:
        pipe = dataclasses.replace(pipe, patch=dataclasses.replace(pipe.patch, **change["patch"]))
    if "layout" in change:
        pipe = dataclasses.replace(
            pipe, layout=dataclasses.replace(pipe.layout, **change["layout"])
        )
    if "regions" in change:
        pipe = dataclasses.replace(pipe, layout=pipe.layout.with_counts(None, change["regions"]))
    before = snapshot_patches(done, snapshot)
    with pytest.raises(PatchError, match=rf"patched with other settings \({what} differ\)"):
        patch(done, pipe, workers=1)
    assert snapshot_patches(done, snapshot) == before


def test_another_patch_size_is_refused(done: Path) -> None:
    with pytest.raises(store.StoreError, match=r"holds uint8 32x32 patches .* asks for 16x16"):
        patch(done, dataclasses.replace(patch_pipe(), patch=PatchConfig(size=16)))


def test_patch_without_ingest_says_to_run_ingest(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    with pytest.raises(PatchError, match=r"no ingested acquisitions; run `bfsdata ingest RAW"):
        patch(ws, patch_pipe())
    assert not store.store_path(ws).exists()


# --- parallel writers and resume --------------------------------------------------------------


def test_several_workers_write_the_same_bytes_as_one(ingested: Path, tmp_path: Path) -> None:
    """workers=2 with one acquisition per task (4 tasks in flight) vs workers=1."""
    out = {}
    for workers in (1, 2):
        ws = Path(shutil.copytree(ingested, tmp_path / f"w{workers}"))
        patch(ws, patch_pipe(acq_per_task=1), workers=workers)
        out[workers] = ws
    r1, r2 = patch_rows(out[1]), patch_rows(out[2])
    pd.testing.assert_frame_equal(r1, r2)  # patch indices included
    a1 = store.open_root(out[1], mode="r")["patches"]
    a2 = store.open_root(out[2], mode="r")["patches"]
    idx = r1["patch"].to_numpy()
    np.testing.assert_array_equal(
        a1.get_orthogonal_selection((idx,)), a2.get_orthogonal_selection((idx,))
    )
    assert store.written_shards(a1) == store.written_shards(a2) == set(idx // a1.shards[0])
    shards = [store.store_path(ws) / "patches" / "c" for ws in (out[1], out[2])]
    files = [sorted(p.relative_to(d) for p in d.rglob("*") if p.is_file()) for d in shards]
    assert files[0] == files[1]
    for f in files[0]:  # the shard files themselves are byte-identical
        assert (shards[0] / f).read_bytes() == (shards[1] / f).read_bytes(), f
    for ws in out.values():
        assert verify(ws, sample=None).ok


def test_resume_after_a_crash_mid_run(
    ingested: Path, patched, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run dies in its third task after two tasks were committed, leaving a half-written
    shard and a *.partial file; the next run finishes and equals an uninterrupted run."""
    import bfsdata.patch.stage as stage
    import bfsdata.patch.task as task
    from bfsdata.workspace.writes import Committer

    ws = Path(shutil.copytree(ingested, tmp_path / "ws"))
    pipe = patch_pipe(acq_per_task=1)
    real = task.patch_unit
    calls, lock = [], threading.Lock()

    class EagerCommitter(Committer):  # commit every finished task at once
        def add(self, rows):
            super().add(rows)
            self.flush()

    def dying(unit):
        with lock:
            calls.append(unit.first_shard)
            n = len(calls)
        if n == 3:
            arr = store.open_store(unit.plan.store)["patches"]
            key = store.shard_key(arr, unit.first_shard)
            debris = store.store_path(ws).parent / key
            debris.parent.mkdir(parents=True, exist_ok=True)
            debris.write_bytes(b"half a shard")
            debris.with_name("0.partial").write_bytes(b"")
            raise RuntimeError("killed")
        return real(unit)

    monkeypatch.setattr(task, "patch_unit", dying)
    monkeypatch.setattr(stage, "Committer", EagerCommitter)
    with pytest.raises(RuntimeError, match="killed"):
        patch(ws, pipe, workers=1)
    assert patch_rows(ws)["acq"].nunique() == 2  # two tasks committed before the crash
    monkeypatch.undo()

    s = patch(ws, pipe, workers=1)
    assert (s.already, s.patched) == (2, 2)
    got, want = patches_by_key(ws), patches_by_key(patched[0])
    assert got.keys() == want.keys()
    assert all(np.array_equal(got[k], want[k]) for k in want)
    rep = verify(ws, sample=None)
    assert rep.ok and rep.orphans == 0, rep.problems
    leftovers = [*store.store_path(ws).rglob("*.partial"), *store.store_path(ws).rglob("*.__lock")]
    assert not leftovers
