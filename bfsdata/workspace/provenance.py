"""Provenance: what each output was made from, so a report traces back to its raw frames.

One record format, kept inside the output it describes, never in a file beside it (the two are
renamed into place together, so they cannot disagree): parquet files carry it in their schema
metadata under `bfsdata.provenance` (JSON), YAML/JSON outputs under the key `provenance`, the
store in its `bfsdata` attributes. A record holds the bfsdata version, the pipeline (name and
sha256 of its YAML file), the `stage` that wrote it, `inputs` {what it read: sha256} and the
stage's own facts (seed, model run).

Digests: manifests by `manifest.digest` (their rows without timestamps: the same rows give the
same digest in any workspace), the exported model by `model_sha256`, other files by their
bytes, raw acquisitions by `frames_sha256` (the acquisitions' `sha256` column).
The patches manifest's record also holds `cut`, the recipe its patches were cut with
(bfsdata.imaging.cut); `patch_recipe` reads it for verify, train and report.
manifests/README.md ("Traceability") walks the chain from a report back to the raw files;
`chain_problems` is the check `bfsdata verify` runs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from bfsdata import __version__
from bfsdata.config.pipeline import Pipeline
from bfsdata.imaging.cut import CutRecipe, RecipeError
from bfsdata.workspace import manifest, paths


def record(
    pipe: Pipeline | None, stage: str, inputs: Mapping[str, str] | None = None, **facts: Any
) -> dict[str, Any]:
    """A provenance record. No timestamps and no machine paths of the pipeline, so that the
    same inputs give the same bytes in every workspace (tests/system/test_determinism.py)."""
    out: dict[str, Any] = {"version": __version__, "stage": stage}
    if pipe is not None:
        out |= {"pipeline": pipe.name, "pipeline_sha256": pipe.sha256}
    if inputs is not None:
        out["inputs"] = dict(sorted(inputs.items()))
    return out | facts


def manifest_key(schema: manifest.Schema) -> str:
    """How records name a manifest: its path inside the workspace."""
    return paths.manifest_key(schema.name)


def manifest_digests(
    ws: Path, *schemas: manifest.Schema, read: Mapping[str, pd.DataFrame] | None = None
) -> dict[str, str]:
    """{manifest key: digest} of the manifests a stage read. `read` holds, by schema name, the
    DataFrames the stage already has (so the digest is of what it used); the rest are read."""
    read = read or {}
    return {
        manifest_key(s): manifest.digest(
            read[s.name] if s.name in read else manifest.read(ws, s), s
        )
        for s in schemas
    }


def frames_sha256(file_digests: Iterable[bytes]) -> str:
    """sha256 over the sha256 digests (32 raw bytes each) of an acquisition's frame files, in
    frame order: `sha256sum` of each file recomputes the parts."""
    return hashlib.sha256(b"".join(file_digests)).hexdigest()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tree_sha256(folder: Path) -> str:
    """sha256 over the sorted relative paths of every file below `folder` and their sha256."""
    folder = Path(folder)
    h = hashlib.sha256()
    for p in sorted(q for q in folder.rglob("*") if q.is_file()):
        h.update(f"{p.relative_to(folder).as_posix()}\0{file_sha256(p)}\n".encode())
    return h.hexdigest()


def model_input(ws: Path, run: str) -> dict[str, str]:
    """{key: digest} of runs/<run>'s exported model (paths.model_path), as `report` records it."""
    run_dir = paths.run_dir(ws, run)
    model = paths.model_path(run_dir)
    return {paths.run_key(run, model.relative_to(run_dir).as_posix()): model_sha256(model)}


def model_sha256(model: Path) -> str:
    """The exported model's digest: a folder's (the GAN's SavedModel) or a file's."""
    return tree_sha256(model) if Path(model).is_dir() else file_sha256(model)


def patch_recipe(ws: Path) -> CutRecipe | None:
    """The cut recipe recorded with the workspace's patches by `bfsdata patch`; None when there
    are none, or they were patched by a bfsdata that did not record it (a `bfsdata patch` run
    records it and cuts nothing new). RecipeError names the manifest when it is unreadable."""
    rec = manifest.read_provenance(ws, manifest.PATCHES)
    if not isinstance(rec, dict) or rec.get("cut") is None:
        return None
    try:
        return CutRecipe.from_dict(rec["cut"])
    except RecipeError as e:
        raise RecipeError(f"{manifest.path_of(ws, manifest.PATCHES)}: {e}") from None


def chain_problems(ws: Path) -> list[str]:
    """Every recorded input digest that no longer matches the input in the workspace, and
    outputs of the chain that carry no record. Inputs outside the workspace (raw files) are
    not checked here: raw data moves to archives; see manifests/README.md."""
    ws = Path(ws)
    problems: list[str] = []
    now: dict[str, str | None] = {}
    for where, rec in _records(ws):
        if not isinstance(rec, dict) or "inputs" not in rec:
            problems.append(
                f"{where}: no readable provenance record (written by hand or by an older "
                "bfsdata); its inputs cannot be traced"
            )
            continue
        for key, want in rec["inputs"].items():
            if Path(key).is_absolute():
                continue
            if key not in now:
                now[key] = _current(ws, key)
            have = now[key]
            if have != want:
                found = "is missing or unreadable" if have is None else f"is now {have[:12]}"
                problems.append(
                    f"{where}: made from {key} {want[:12]}, which {found}; it no longer "
                    f"describes this workspace: run `bfsdata {rec.get('stage', '?')}` again"
                )
    return problems


def _records(ws: Path) -> list[tuple[str, Any]]:
    """(where, record) of every output in the chain that should carry inputs."""
    out: list[tuple[str, Any]] = []
    for schema in (manifest.PATCHES, manifest.SPLITS_SCHEMA):
        if manifest.exists(ws, schema):
            try:
                out.append((manifest_key(schema), manifest.read_provenance(ws, schema)))
            except ValueError:  # ManifestError, or a record that is not JSON
                out.append((manifest_key(schema), None))
    files = [
        *sorted(ws.glob(f"{paths.RUNS}/*/{paths.RUN_CONFIG}")),
        *sorted(ws.glob(f"{paths.REPORTS}/*/{paths.METRICS}")),
    ]
    for path in files:
        load = json.loads if path.suffix == ".json" else yaml.safe_load
        try:
            doc = load(path.read_text())
        except (OSError, ValueError, yaml.YAMLError):
            doc = None
        rec = doc.get("provenance") if isinstance(doc, dict) else None
        out.append((path.relative_to(ws).as_posix(), rec))
    return out


def _current(ws: Path, key: str) -> str | None:
    """The digest of `key` as the workspace holds it now; None if missing or unreadable."""
    path = ws / key
    if key.startswith(f"{paths.MANIFESTS}/"):
        schema = next((s for s in manifest.ALL if manifest_key(s) == key), None)
        if schema is None or not manifest.exists(ws, schema):
            return None
        try:
            return manifest.digest(manifest.read(ws, schema), schema)
        except manifest.ManifestError:
            return None
    if path.is_dir():
        return tree_sha256(path)
    return file_sha256(path) if path.is_file() else None
