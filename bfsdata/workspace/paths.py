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

The raw folder is input only: neither the workspace nor the store may be it or lie inside it,
and it may not lie inside a folder bfsdata fills (`check_apart`).
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
MODEL = "export/saved_model"  # the GAN's model, which `report` and `infer` score with
VARIATION_MODEL = "export/variation.npz"  # the variation model's, in its place
RESIDUAL_STATS = "export/residual.npz"  # beside the GAN's: good-residual statistics per position
MODEL_INFO = "export/model.json"  # patch size, score, cut recipe and provenance of either
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


def check_apart(raw: Path, workspace: Path, store_url: str | None = None) -> None:
    """Refuse to write into the raw folder: the workspace or the store (`store_url`, as given to
    --store, else where the workspace keeps it) being the raw folder or inside it, or the raw
    folder inside a folder they fill. Paths are compared resolved, links followed, so a link
    into the raw folder or a file:// URL is caught like the plain path."""
    raw_at = Path(raw).resolve()
    data = store.data_root(workspace) if store_url is None else store.location(store_url)
    places = [("the workspace", Path(workspace), (MANIFESTS, RUNS, REPORTS, INFER, PREVIEWS))]
    if isinstance(data, Path):  # a URL (s3://, memory://) is no folder of this machine
        places.append(("the store", data, (STORE_NAME, MANIFESTS)))
    for what, place, filled in places:
        at = place.resolve()
        seen = f" (links followed: {at} and {raw_at})" if at != place.absolute() else ""
        if at == raw_at or raw_at in at.parents:
            where = "is" if at == raw_at else "is inside"
            raise ValueError(
                f"{place}: {what} {where} the raw folder {raw}{seen}, which is input only: "
                f"bfsdata would write among its files; put {what} outside it [rule: raw-apart]"
            )
        for name in filled:
            if at / name == raw_at or at / name in raw_at.parents:
                raise ValueError(
                    f"{raw}: the raw folder is inside {place / name}, which {what} {place} fills"
                    f"{seen}; move the raw folder or choose another place [rule: raw-apart]"
                )


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


def model_path(run_dir: Path) -> Path:
    """The model `report` and `infer` score with: the variation model's file when the run has
    one (`bfsdata train --model variation`), else the GAN's SavedModel folder."""
    variation = Path(run_dir) / VARIATION_MODEL
    return variation if variation.is_file() else Path(run_dir) / MODEL


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
