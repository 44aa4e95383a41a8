"""Where everything lives in a workspace, spelled once (docs/design.md, The workspace).

    <ws>/pipeline.yaml              the workspace's pipeline: the first one a stage ran with
    <ws>/.bfsdata.lock              held by the stage writing the store (workspace.lock)
    <ws>/store.url                  where the store and manifests are, once --store moved them
    <data>/bfsdata.zarr/            the zarr store         <data>: the workspace, or the folder
    <data>/manifests/<name>.parquet the manifests          or URL given to --store
    <ws>/manifests/splits.json      the arguments of the split (beside the workspace's own files)
    <ws>/manifests/test_kit.txt     the test kit of an image folder (its test/ images)
    <ws>/runs/<name>/               a training run
    <ws>/reports/<name>/            a report; its thresholds.json is what `infer` applies
    <ws>/infer/<run>/               decisions on new acquisitions
    <ws>/previews/                  contact sheets

The store's own names (bfsdata.zarr, manifests/, store.url) belong to `bfsdata.store.location`,
which lies below the workspace and must find them without it; they are taken from there.

Run and report names become folder names, so they are names, not paths: `[A-Za-z0-9._-]+`, and
not `.` or `..`. Anything else could reach outside the workspace (`../x`, `/tmp/x`).
"""

from __future__ import annotations

import re
from pathlib import Path

from bfsdata.store import location as store
from bfsdata.store.location import MANIFESTS, RECORD, STORE_NAME  # noqa: F401 (the layout, whole)

PIPELINE = "pipeline.yaml"
LOCK_NAME = ".bfsdata.lock"
RUNS = "runs"
REPORTS = "reports"
INFER = "infer"
PREVIEWS = "previews"
KIT_NAME = "test_kit.txt"  # in <ws>/manifests/: the workspace's own test kit, if it has one
SPLIT_ARGS = "splits.json"  # in <ws>/manifests/: the arguments the split was drawn with

# Manifest files, by stem: <data>/manifests/<stem>.parquet (schemas: workspace.manifest)
ACQUISITIONS = "acquisitions"
PATCHES = "patches"
SPLITS = "splits"
REJECTED = "rejected"
ANNOTATIONS = "annotations"

# Inside runs/<name>/ and reports/<name>/
RUN_CONFIG = "config.yaml"  # the resolved pipeline and the run's provenance
MODEL = "export/saved_model"  # the model `report` and `infer` score with
METRICS = "metrics.json"
THRESHOLDS = "thresholds.json"

_NAME = re.compile(r"[A-Za-z0-9._-]+")


def checked_name(name: str, option: str) -> str:
    """`name` if it is a plain name; ValueError naming `option` (e.g. `--run`) otherwise."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name in (".", ".."):
        raise ValueError(
            f"{option} {name!r}: a name is letters, digits, '.', '_' and '-' (not '.' or '..'); "
            "it becomes a folder of the workspace, so it cannot be a path"
        )
    return name


def pipeline_file(workspace: Path) -> Path:
    return Path(workspace) / PIPELINE


def lock_file(workspace: Path) -> Path:
    return Path(workspace) / LOCK_NAME


def local_manifests(workspace: Path) -> Path:
    """<ws>/manifests: the workspace's own files beside the manifests (with --store, the
    parquet files are elsewhere; see `manifest_file`)."""
    return Path(workspace) / MANIFESTS


def manifest_file(workspace: Path, stem: str) -> Path | str:
    """manifests/<stem>.parquet beside the store: a local Path, or a URL (`--store`)."""
    return store.join(store.data_root(workspace), MANIFESTS, f"{stem}.parquet")


def manifest_key(stem: str) -> str:
    """How provenance records and messages name a manifest: `manifests/<stem>.parquet`."""
    return f"{MANIFESTS}/{stem}.parquet"


def kit_file(workspace: Path) -> Path:
    return local_manifests(workspace) / KIT_NAME


def split_args_file(workspace: Path) -> Path:
    return local_manifests(workspace) / SPLIT_ARGS


def run_dir(workspace: Path, name: str, option: str = "--run") -> Path:
    return Path(workspace) / RUNS / checked_name(name, option)


def run_key(name: str, inside: str = "") -> str:
    """How provenance records name runs/<name> (or a path inside it)."""
    return "/".join(p for p in (RUNS, name, inside) if p)


def report_dir(workspace: Path, name: str, option: str = "--name") -> Path:
    return Path(workspace) / REPORTS / checked_name(name, option)


def thresholds_file(workspace: Path, report: str, option: str = "--report") -> Path:
    return report_dir(workspace, report, option) / THRESHOLDS


def infer_dir(workspace: Path, run: str, option: str = "--run") -> Path:
    return Path(workspace) / INFER / checked_name(run, option)


def preview_file(workspace: Path, acq: int, kind: str | None = None) -> Path:
    """previews/acq-<acq>.png, or acq-<acq>-<kind>.png for one kind of image."""
    return Path(workspace) / PREVIEWS / f"acq-{int(acq)}{f'-{kind}' if kind else ''}.png"
