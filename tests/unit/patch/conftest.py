"""Workspaces shared by the `bfsdata.patch.stage.patch` tests of this folder: built once per
test session (package scope) and copied for every test that changes one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bfsdata.ingest import ingest
from bfsdata.patch.stage import patch
from tests.unit.patch.stage_helpers import patch_pipe, synth_raw


@pytest.fixture(scope="package")
def raw(tmp_path_factory: pytest.TempPathFactory):
    """2 strips (S0000 good, S0001 defect) x 2 runs; returns (folder, synth summary)."""
    out = tmp_path_factory.mktemp("raw") / "raw"
    return out, synth_raw(out)


@pytest.fixture(scope="package")
def ingested(raw, tmp_path_factory: pytest.TempPathFactory) -> Path:
    ws = tmp_path_factory.mktemp("ingested") / "ws"
    ingest(raw[0], ws, patch_pipe(), workers=2)
    return ws


@pytest.fixture(scope="package")
def patched(ingested: Path, tmp_path_factory: pytest.TempPathFactory):
    """(workspace, summary) of a default patch run; do not change it (use `done`)."""
    ws = Path(shutil.copytree(ingested, tmp_path_factory.mktemp("patched") / "ws"))
    return ws, patch(ws, patch_pipe(), workers=2)


@pytest.fixture
def fresh(ingested: Path, tmp_path: Path) -> Path:
    """A private copy of the ingested, unpatched workspace."""
    return Path(shutil.copytree(ingested, tmp_path / "ws"))


@pytest.fixture
def done(patched, tmp_path: Path) -> Path:
    """A private copy of the patched workspace."""
    return Path(shutil.copytree(patched[0], tmp_path / "ws"))
