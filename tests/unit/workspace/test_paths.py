"""Workspace paths (bfsdata/workspace/paths.py): one place, and run/report names that stay
names: a name that is a path (`..`, `/tmp/x`, `a/b`) is refused, naming the option, before
anything is written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cli_helpers import invoke, refused

from bfsdata.store import location as store
from bfsdata.workspace import manifest, paths
from bfsdata.workspace.lock import LOCK_NAME, workspace_lock

ESCAPES = ["..", ".", "../outside", "/tmp/elsewhere", "a/b", "a\\b", "", "run name", "ü"]


@pytest.mark.parametrize("name", ["default", "first", "run-2.v3_final", ".hidden", "a..b"])
def test_plain_names_become_folders_of_the_workspace(tmp_path: Path, name: str) -> None:
    assert paths.run_dir(tmp_path, name) == tmp_path / "runs" / name
    assert paths.report_dir(tmp_path, name) == tmp_path / "reports" / name
    assert paths.thresholds_file(tmp_path, name) == tmp_path / "reports" / name / "thresholds.json"
    assert paths.infer_dir(tmp_path, name) == tmp_path / "infer" / name


@pytest.mark.parametrize("name", ESCAPES)
@pytest.mark.parametrize(
    ("where", "option"),
    [
        (paths.run_dir, "--name"),
        (paths.report_dir, "--name"),
        (paths.thresholds_file, "--report"),
        (paths.infer_dir, "--run"),
    ],
)
def test_a_name_that_is_a_path_is_refused_naming_the_option(
    tmp_path: Path, where, option: str, name: str
) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(f"{option} {name!r}: a name is letters")):
        where(tmp_path, name, option)


def test_train_refuses_an_escaping_run_name_before_writing(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    err = refused(invoke("train", "-w", ws, "-p", "demo", "--name", "../escaped"))
    assert "--name '../escaped': a name is letters" in err
    assert sorted(tmp_path.iterdir()) == [ws] and not any(ws.iterdir())


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--run", "/tmp/abs"], "--run"),
        (["--run", "ok", "--name", ".."], "--name"),
    ],
)
def test_report_refuses_escaping_names(tmp_path: Path, args: list[str], option: str) -> None:
    err = refused(invoke("report", "-w", tmp_path, "-p", "demo", *args))
    assert f"{option} " in err and "a name is letters" in err
    assert not any(tmp_path.iterdir())


def test_infer_refuses_an_escaping_report_name(tmp_path: Path) -> None:
    err = refused(invoke("infer", tmp_path, "-w", tmp_path, "-p", "demo", "--report", "../x"))
    assert "--report '../x': a name is letters" in err


def test_manifests_follow_the_store_the_workspace_files_do_not(tmp_path: Path) -> None:
    """With --store elsewhere the parquet manifests live there; the workspace's own files
    (pipeline, lock, split arguments, test kit, runs) stay in the workspace."""
    ws, data = tmp_path / "ws", tmp_path / "data"
    assert paths.manifest_file(ws, paths.PATCHES) == ws / "manifests" / "patches.parquet"
    store.attach(ws, str(data))
    assert paths.manifest_file(ws, paths.PATCHES) == data / "manifests" / "patches.parquet"
    assert manifest.path_of(ws, manifest.PATCHES) == paths.manifest_file(ws, paths.PATCHES)
    assert store.store_path(ws) == data / paths.STORE_NAME
    assert paths.split_args_file(ws) == ws / "manifests" / "splits.json"
    assert paths.kit_file(ws) == ws / "manifests" / "test_kit.txt"
    assert paths.pipeline_file(ws) == ws / "pipeline.yaml"
    assert paths.run_dir(ws, "r") == ws / "runs" / "r"


def test_every_manifest_schema_is_named_by_paths() -> None:
    stems = {paths.ACQUISITIONS, paths.PATCHES, paths.SPLITS, paths.REJECTED, paths.ANNOTATIONS}
    assert {s.name for s in manifest.ALL} == stems
    assert paths.manifest_key(paths.REJECTED) == "manifests/rejected.parquet"


def test_the_lock_is_the_file_paths_names(tmp_path: Path) -> None:
    with workspace_lock(tmp_path, "patch"):
        assert paths.lock_file(tmp_path).is_file()
        assert paths.lock_file(tmp_path).name == LOCK_NAME
    assert not paths.lock_file(tmp_path).exists()


def test_previews_are_named_by_acquisition_and_kind(tmp_path: Path) -> None:
    assert paths.preview_file(tmp_path, 3) == tmp_path / "previews" / "acq-3.png"
    assert (
        paths.preview_file(tmp_path, 3, "rank_max") == tmp_path / "previews" / "acq-3-rank_max.png"
    )
