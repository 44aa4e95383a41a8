"""Same inputs and seed, same bytes: the store, the manifests and synthetic raw data.

ingest -> patch -> split runs three times from one raw folder into three workspaces (two with
the same worker counts, one with others), each with its own copy of the pipeline file as the
CLI keeps it (`<ws>/pipeline.yaml`). Every file of the store must be byte-identical, and the
manifests equal row for row apart from their timestamp columns, provenance records included.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest
from cli_helpers import invoke, ok
from workspace_fixtures import tiny_pipeline, write_pipeline, write_raw

from bfsdata.ingest import ingest
from bfsdata.patch.stage import patch
from bfsdata.split import split
from bfsdata.store.location import STORE_NAME
from bfsdata.workspace import manifest

WORKERS = {"a": (2, 2), "b": (2, 2), "c": (1, 3)}  # workspace: (ingest, patch) worker threads


def _build(raw: Path, ws: Path, workers: tuple[int, int]) -> Path:
    ws.mkdir()
    pipe = write_pipeline(ws / "pipeline.yaml", tiny_pipeline())
    ingest(raw, ws, pipe, workers=workers[0])
    patch(ws, pipe, workers=workers[1])
    split(ws, pipe.split)
    return ws


def _file_digests(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _rows(ws: Path, schema: manifest.Schema) -> pd.DataFrame:
    """The manifest without its timestamp columns (when a row was committed)."""
    when = [c.name for c in schema.columns if c.dtype == manifest.UTC_US]
    return manifest.read(ws, schema).drop(columns=when)


@pytest.fixture(scope="module")
def workspaces(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("determinism")
    raw = write_raw(root / "raw")
    return {name: _build(raw, root / name, w) for name, w in WORKERS.items()}


@pytest.mark.parametrize("other", ["b", "c"])
def test_store_bytes_are_identical(workspaces: dict[str, Path], other: str) -> None:
    a = _file_digests(workspaces["a"] / STORE_NAME)
    b = _file_digests(workspaces[other] / STORE_NAME)
    assert a.keys() == b.keys()
    assert any(k.startswith("patches/c/") for k in a)  # the patch shards are compared too
    assert [k for k in a if a[k] != b[k]] == []


@pytest.mark.parametrize("other", ["b", "c"])
@pytest.mark.parametrize("schema", manifest.ALL, ids=lambda s: s.name)
def test_manifests_are_equal_apart_from_timestamps(
    workspaces: dict[str, Path], other: str, schema: manifest.Schema
) -> None:
    a, b = workspaces["a"], workspaces[other]
    assert manifest.path_of(a, schema).exists() == manifest.path_of(b, schema).exists()
    pd.testing.assert_frame_equal(_rows(a, schema), _rows(b, schema))
    assert manifest.read_provenance(a, schema) == manifest.read_provenance(b, schema)


def test_the_compared_manifests_hold_rows_and_records(workspaces: dict[str, Path]) -> None:
    """The comparisons above are not of empty files: every stage wrote rows and a record."""
    ws = workspaces["a"]
    for schema in (manifest.ACQUISITIONS, manifest.PATCHES, manifest.SPLITS_SCHEMA):
        assert len(manifest.read(ws, schema)) > 0
        assert manifest.read_provenance(ws, schema)["version"]
    assert not manifest.path_of(ws, manifest.REJECTED).exists()


def test_split_arguments_are_equal_apart_from_when(workspaces: dict[str, Path]) -> None:
    docs = [
        json.loads((ws / "manifests" / "splits.json").read_text()) for ws in workspaces.values()
    ]
    assert all(d.keys() == {"args", "written_at"} for d in docs)
    assert all(d["args"] == docs[0]["args"] for d in docs)


def test_synth_same_seed_same_files_whatever_the_threads(tmp_path: Path) -> None:
    args = ["--strips", "2", "--runs", "2", "--frames", "3", "--height", "128", "--width", "160"]
    for name, threads in (("one", "1"), ("two", "2")):
        ok(invoke("synth", tmp_path / name, *args, "--seed", "5", "--workers", threads))
    one, two = _file_digests(tmp_path / "one"), _file_digests(tmp_path / "two")
    assert len(one) == 2 * 2 * 3 + 1  # frames and labels.csv
    assert one == two
