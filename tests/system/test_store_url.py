"""`--store`: the store and manifests kept in another folder or at an fsspec URL.

Every run is compared with the module's reference workspace (ingest + patch on one thread,
store in the workspace) byte for byte. `memory://` lives in this process, so it is used with
threads only; folders (plain paths and file://) also run on a cluster of worker processes.
"""

from __future__ import annotations

import importlib.util
import uuid
from pathlib import Path

import fsspec
import numpy as np
import pytest
from cli_helpers import invoke, ok, refused
from workspace_fixtures import write_pipeline

from bfsdata.ingest import ingest
from bfsdata.patch.stage import patch
from bfsdata.store import arrays as store_io
from bfsdata.store import location as store
from bfsdata.verify import verify
from bfsdata.workspace import manifest
from tests.system.test_distributed import Kit, assert_same_workspace, make_kit, new_workspace


@pytest.fixture
def memory_url():
    """A fresh prefix of the process-wide memory filesystem, removed afterwards."""
    name = f"bucket-{uuid.uuid4().hex[:8]}"
    yield f"memory://{name}/line1"
    fs = fsspec.filesystem("memory")
    if fs.exists(f"/{name}"):
        fs.rm(f"/{name}", recursive=True)


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Kit:
    return make_kit(tmp_path_factory)


def local_files(ws: Path) -> list[str]:
    return sorted(str(p.relative_to(ws)) for p in ws.rglob("*") if p.is_file())


def test_memory_store_holds_what_a_workspace_holds(
    tmp_path: Path, kit: Kit, memory_url: str
) -> None:
    ws, p = new_workspace(tmp_path / "ws", kit.pipe)
    assert store.attach(ws, memory_url)
    ingest(kit.raw, ws, p, workers=2)
    patch(ws, p, workers=2)
    assert_same_workspace(ws, kit.reference)
    assert local_files(ws) == ["pipeline.yaml", "store.url"]  # data and manifests are remote
    assert manifest.path_of(ws, manifest.PATCHES) == f"{memory_url}/manifests/patches.parquet"
    rep = verify(ws, sample=None)
    assert rep.ok and rep.patches == 960, rep.problems
    # A second run finds everything done, through the record alone.
    assert patch(ws, p, workers=2).patched == 0


def test_url_store_reads_like_a_folder(tmp_path: Path, kit: Kit, memory_url: str) -> None:
    """`ts_array` on a URL (zarr-python underneath) answers the stages' reads as tensorstore
    does on a folder: integer rows out of order, and frames picked inside one acquisition;
    the trainer's input pipeline reads the same patches from it."""
    ws, p = new_workspace(tmp_path / "ws", kit.pipe)
    store.attach(ws, memory_url)
    ingest(kit.raw, ws, p, workers=1)
    patch(ws, p, workers=1)
    here, there = (store.store_url(w) for w in (kit.reference, ws))
    assert there.startswith("memory://")
    rows = np.array([900, 3, 257, 3, 12])
    got = store_io.ts_array(there, "patches")[rows].read().result()
    want = store_io.ts_array(here, "patches")[rows].read().result()
    np.testing.assert_array_equal(got, want)
    got = store_io.ts_array(there, "frames")[5, [3, 0]].read().result()
    want_frames = store_io.ts_array(here, "frames")[5][[3, 0]].read().result()
    assert got.shape == (2, 128, 160)
    np.testing.assert_array_equal(got, want_frames)

    from bfsdata.train.loader import eval_dataset  # TensorFlow: imported by this test only

    x = np.concatenate([b[0] for b in eval_dataset(there, rows, batch=2).as_numpy_iterator()])
    np.testing.assert_array_equal(x[..., 0], want)


def test_store_folder_is_recorded_and_found_by_later_commands(tmp_path: Path, kit: Kit) -> None:
    (ws, _), shared = new_workspace(tmp_path / "ws", kit.pipe), tmp_path / "shared"
    ok(invoke("ingest", kit.raw, "-w", ws, "--store", shared))
    ok(invoke("patch", "-w", ws))  # no --store: the workspace's record says where
    assert (ws / "store.url").read_text() == f"{shared}\n"
    assert local_files(ws) == ["pipeline.yaml", "store.url"]
    assert (shared / "bfsdata.zarr" / "zarr.json").is_file()
    assert (shared / "manifests" / "patches.parquet").is_file()
    assert_same_workspace(ws, kit.reference)
    out = ok(invoke("stats", "-w", ws))
    assert "960" in out
    ok(invoke("verify", "-w", ws))


def test_file_url_on_a_cluster(tmp_path: Path, kit: Kit) -> None:
    """file:// is the folder itself; worker processes write into it by its absolute path."""
    (ws, _), shared = new_workspace(tmp_path / "ws", kit.pipe), tmp_path / "shared"
    ok(invoke("ingest", kit.raw, "-w", ws, "--store", f"file://{shared}", "--workers", "2"))
    record = ws / "store.url"
    assert record.read_text() == f"{shared}\n"
    before = record.stat().st_mtime_ns
    # The same place named again, as a plain path: accepted, the record is not rewritten.
    ok(invoke("patch", "-w", ws, "--store", shared, "--workers", "2"))
    assert record.stat().st_mtime_ns == before
    assert_same_workspace(ws, kit.reference)


def test_another_store_for_a_workspace_is_refused(tmp_path: Path, kit: Kit) -> None:
    ws, _ = new_workspace(tmp_path / "ws", kit.pipe)
    ok(invoke("ingest", kit.raw, "-w", ws, "--store", tmp_path / "a"))
    err = refused(invoke("patch", "-w", ws, "--store", tmp_path / "b"))
    assert f"keeps its store and manifests at {tmp_path / 'a'}" in err
    assert (ws / "store.url").read_text() == f"{tmp_path / 'a'}\n"
    assert not (tmp_path / "b").exists()
    # A workspace that holds its own store cannot move it either.
    err = refused(invoke("patch", "-w", kit.reference, "--store", tmp_path / "c"))
    assert "one store" in err and not (kit.reference / "store.url").exists()


def test_unknown_url_is_refused_before_anything_is_written(tmp_path: Path, kit: Kit) -> None:
    ws = tmp_path / "ws"
    err = refused(invoke("ingest", kit.raw, "-w", ws, "--store", "nosuch://bucket/x"))
    assert "nosuch://bucket/x: not a folder or a URL that fsspec knows" in err
    assert not ws.exists()


@pytest.mark.skipif(importlib.util.find_spec("s3fs") is not None, reason="s3fs is installed")
def test_s3_without_s3fs_says_what_to_install(tmp_path: Path, kit: Kit) -> None:
    err = refused(invoke("ingest", kit.raw, "-w", tmp_path / "ws", "--store", "s3://bucket/x"))
    assert "pip install 'bfsdata[s3]'" in err
    assert not (tmp_path / "ws").exists()


def test_refused_first_ingest_leaves_no_record(tmp_path: Path, kit: Kit, memory_url: str) -> None:
    bad = tmp_path / "raw"
    for f in kit.raw.rglob("*"):
        if f.is_file():
            (bad / f.relative_to(kit.raw)).parent.mkdir(parents=True, exist_ok=True)
            (bad / f.relative_to(kit.raw)).write_bytes(f.read_bytes())
    (bad / "G1" / "run_1" / "notes.txt").write_text("not a frame")
    ws = tmp_path / "ws"
    yaml = tmp_path / "tiny.yaml"
    write_pipeline(yaml, kit.pipe)
    err = refused(invoke("ingest", bad, "-w", ws, "-p", yaml, "--store", memory_url))
    assert "notes.txt" in err
    assert not ws.exists()
    assert not store.present(memory_url)


def test_memory_store_on_a_cluster_is_refused(tmp_path: Path, kit: Kit, memory_url: str) -> None:
    """Worker processes would write into their own memory: refused before any work."""
    ws = tmp_path / "ws"
    yaml = tmp_path / "tiny.yaml"
    write_pipeline(yaml, kit.pipe)
    args = ("ingest", kit.raw, "-w", ws, "-p", yaml, "--store", memory_url)
    err = refused(invoke(*args, "--scheduler", "tcp://127.0.0.1:1"))
    assert "memory:// store lives in this process" in err
    assert not store.present(memory_url)
