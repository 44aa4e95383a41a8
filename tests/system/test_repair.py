"""Damage in the store is found, named and rebuilt (issue 22): a frames shard cut short, a rank
shard deleted and a patches shard with flipped bytes are all listed by `verify --all`, and
`bfsdata repair` rebuilds them from the raw data into a store equal, byte for byte, to the
undamaged one. Raw data that is gone or changed is never used: its acquisitions leave the
manifests, with rejected.parquet rows. Re-runs of ingest and patch name a damaged shard and
suggest the repair instead of saying there is nothing to do.

What "equal" compares: every file under bfsdata.zarr (shards and zarr.json) and every manifest
file, byte for byte: a repair that rebuilds everything rewrites no manifest, so even their
timestamps and provenance records are the undamaged workspace's.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from cli_helpers import invoke, ok, refused
from workspace_fixtures import build_workspace, tiny_pipeline, write_raw

from bfsdata.ingest import ingest
from bfsdata.patch.stage import PatchError, patch
from bfsdata.repair import repair
from bfsdata.store import location as store
from bfsdata.verify import verify
from bfsdata.workspace import manifest


def build(ws: Path) -> Path:
    """raw (in ws/raw) -> ingest -> patch -> split, with ws/pipeline.yaml for the commands."""
    build_workspace(ws)
    return ws


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("built") / "ws")


@pytest.fixture
def ws(built: Path, tmp_path: Path) -> Path:
    """A copy to damage; its manifests name the raw folder of `built`."""
    return Path(shutil.copytree(built, tmp_path / "ws"))


def acq_of(ws: Path, strip: str, run: int) -> int:
    acqs = manifest.read(ws, manifest.ACQUISITIONS)
    return int(acqs.loc[(acqs["strip"] == strip) & (acqs["run"] == run), "acq"].iloc[0])


def shard_file(ws: Path, name: str, row: int) -> tuple[str, Path]:
    """(key inside the store, file) of the shard of array `name` holding `row`."""
    arr = store.open_root(ws, mode="r")[name]
    key = store.shard_key(arr, row // store.shard_rows(arr))
    return key, store.store_path(ws) / key


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip(path: Path) -> None:
    """Flip 64 bytes in the middle of the file: chunk data, not the index at its end."""
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 64] = bytes(b ^ 0x5A for b in data[mid : mid + 64])
    path.write_bytes(bytes(data))


def damage_three(ws: Path) -> dict[str, int]:
    """A frames shard cut short, a rank shard deleted, a patches shard with flipped bytes (of
    acquisitions whose frames are whole); {store key: acquisition}."""
    out = {}
    a = acq_of(ws, "G1", 1)
    key, path = shard_file(ws, "frames", a)
    truncate(path)
    out[key] = a
    a = acq_of(ws, "G2", 2)
    key, path = shard_file(ws, "rank", a)
    path.unlink()
    out[key] = a
    a = acq_of(ws, "G3", 1)
    rows = manifest.read(ws, manifest.PATCHES)
    key, path = shard_file(ws, "patches", int(rows.loc[rows["acq"] == a, "patch"].min()))
    flip(path)
    out[key] = a
    return out


def files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_verify_lists_every_damaged_shard_and_repair_rebuilds_them_byte_for_byte(
    built: Path, ws: Path
) -> None:
    damaged = damage_three(ws)
    res = invoke("verify", "-w", ws, "--all")
    assert res.exit_code == 1, res.output
    assert "3 problem(s)" in res.output
    lines = [ln for ln in res.output.splitlines() if "[rule: store]" in ln]
    assert len(lines) == 3
    for key, acq in damaged.items():
        (line,) = [ln for ln in lines if f"store: {key} is " in ln]
        assert f"acquisition {acq}" in line or f"acquisition(s) {acq}" in line, line
    assert "is damaged (" in res.output and "is missing" in res.output

    out = ok(invoke("repair", "-w", ws))
    assert "damaged shards found  3" in out and "2 acquisitions (frames, rank), 1 patch" in out
    ok(invoke("verify", "-w", ws, "--all"))
    zarr = store.STORE_NAME
    assert files(ws / zarr) == files(built / zarr)
    assert files(ws / "manifests") == files(built / "manifests")


def test_repair_removes_what_the_raw_data_cannot_rebuild(tmp_path: Path) -> None:
    ws = build(tmp_path / "ws")
    before = {
        s.name: manifest.read(ws, s)
        for s in (manifest.ACQUISITIONS, manifest.PATCHES, manifest.SPLITS_SCHEMA)
    }
    raw = ws / "raw"
    gone, changed = acq_of(ws, "G1", 1), acq_of(ws, "G2", 2)
    strip_gone = [acq_of(ws, "G3", 1), acq_of(ws, "G3", 2)]
    shutil.rmtree(raw / "G1" / "run_1")  # raw folder gone, frames shard cut short
    truncate(shard_file(ws, "frames", gone)[1])
    with open(raw / "G2" / "run_2" / "frame_1.png", "ab") as fh:  # decodes, another digest
        fh.write(b"changed")
    shard_file(ws, "rank", changed)[1].unlink()
    shutil.rmtree(raw / "G3")  # a whole strip gone, its frames deleted
    for a in strip_gone:
        shard_file(ws, "frames", a)[1].unlink()
    rows = before["patches"]  # the shard holding G1 run 1's patches also holds other rows
    path = shard_file(ws, "patches", int(rows.loc[rows["acq"] == gone, "patch"].min()))[1]
    truncate(path)
    assert len(verify(ws, sample=None).damage) == 5

    s = repair(ws)
    assert (s.found, s.acquisitions, s.removed, s.left) == (5, 0, 4, ())
    assert verify(ws, sample=None).ok
    removed = {gone, changed, *strip_gone}
    rejected = manifest.read(ws, manifest.REJECTED)
    assert len(rejected) == 4
    assert set(rejected["rule"]) == {"readable", "unchanged-raw"}
    assert rejected["message"].str.contains("removed from the manifests by `bfsdata repair`").all()
    changed_row = rejected[rejected["rule"] == "unchanged-raw"].iloc[0]
    assert (changed_row["strip"], changed_row["run"]) == ("G2", 2)
    for name in ("acquisitions", "patches"):
        now = manifest.read(ws, getattr(manifest, name.upper()))
        kept = before[name][~before[name]["acq"].isin(removed)].reset_index(drop=True)
        pd.testing.assert_frame_equal(now.reset_index(drop=True), kept)
    assert set(manifest.read(ws, manifest.SPLITS_SCHEMA)["strip"]) == {"D1", "G1", "G2"}
    for a in removed:  # their shards went as orphans
        assert not shard_file(ws, "frames", a)[1].exists()
        assert not shard_file(ws, "rank", a)[1].exists()


def test_reruns_of_ingest_and_patch_name_a_damaged_shard(built: Path, ws: Path) -> None:
    frames_key, path = shard_file(ws, "frames", acq_of(ws, "D1", 2))
    truncate(path)
    msg = refused(invoke("ingest", built / "raw", "-w", ws))
    assert f"store: {frames_key} is damaged (" in msg and "[rule: store]" in msg
    assert f"bfsdata repair -w {ws}" in msg and "nothing to do" not in msg
    patches_key, path = shard_file(ws, "patches", 0)
    path.unlink()
    msg = refused(invoke("patch", "-w", ws))
    assert f"store: {frames_key} is damaged" in msg and f"store: {patches_key} is missing" in msg
    assert "registration" not in msg and "bfsdata repair" in msg
    ok(invoke("repair", "-w", ws))
    assert "nothing to do" in ok(invoke("patch", "-w", ws))


def test_a_frames_chunk_that_does_not_decode_is_a_store_problem(tmp_path: Path) -> None:
    """Its index is whole, so only reading it finds it: patch names the rule `store` and the
    repair, not the layout; the repair rebuilds it and patch goes on."""
    ws, pipe = tmp_path / "ws", tiny_pipeline()
    ingest(write_raw(tmp_path / "raw"), ws, pipe)
    path = shard_file(ws, "frames", 0)[1]
    data = bytearray(path.read_bytes())
    data[:16] = bytes(16)  # the first chunk's blosc header
    path.write_bytes(bytes(data))
    with pytest.raises(PatchError) as caught:
        patch(ws, pipe)
    msg = str(caught.value)
    assert "damaged shard: chunk 0" in msg and "[rule: store]" in msg
    assert "[rule: registration]" not in msg and f"bfsdata repair -w {ws}" in msg
    assert repair(ws).acquisitions == 1
    patch(ws, pipe)
    assert verify(ws, sample=None).ok
