"""Provenance records and the traceability chain, from a report back to the raw frame files.

The first half works on a workspace ingested, patched and split here (seconds); the second on
the tiny trained and reported workspace every training test shares (`shared_run`, paid once per
pytest process).
"""

from __future__ import annotations

import os

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # CPU only: tests must not depend on a GPU
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from workspace_fixtures import SharedRun, build_workspace, draw_run, shared_run

from bfsdata.infer import infer
from bfsdata.ingest import ingest
from bfsdata.patch.stage import patch
from bfsdata.split import split
from bfsdata.store import location as store
from bfsdata.verify import verify
from bfsdata.workspace import manifest, provenance

ACQ, ANN = "manifests/acquisitions.parquet", "manifests/annotations.parquet"
PATCHES, SPLITS = "manifests/patches.parquet", "manifests/splits.parquet"


def _now(ws: Path, *keys: str) -> dict[str, str]:
    """Digests of the named manifests as the workspace holds them now."""
    schemas = {provenance.manifest_key(s): s for s in manifest.ALL}
    return {k: manifest.digest(manifest.read(ws, schemas[k]), schemas[k]) for k in keys}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- digests ------------------------------------------------------------------------------


def test_manifest_digest_follows_its_documented_definition() -> None:
    df = pd.DataFrame({"strip": ["A1", "B2"], "split": ["train", "test"], "seed": [7, 7]})
    by_hand = hashlib.sha256(
        b"strip\0A1\0B2\0"
        + b"split\0train\0test\0"
        + b"seed\0"
        + np.array([7, 7], dtype="<i8").tobytes()
    ).hexdigest()
    assert manifest.digest(df, manifest.SPLITS_SCHEMA) == by_hand


def test_manifest_digest_is_of_the_rows_not_of_when_they_were_written() -> None:
    rows = {
        "source": ["raw/A1", "raw/B2"],
        "strip": ["A1", None],
        "run": pd.array([1, None], dtype="Int32"),
        "rule": ["frame-count", "valid-image"],
        "message": ["m1", "m2"],
        "rejected_at": pd.Timestamp("2024-01-01", tz="UTC"),
    }
    df = pd.DataFrame(rows)
    d = manifest.digest(df, manifest.REJECTED)
    later = df.assign(rejected_at=pd.Timestamp("2031-06-30", tz="UTC"))
    assert manifest.digest(later, manifest.REJECTED) == d
    as_objects = df.astype({"strip": object, "source": "string"})
    assert manifest.digest(as_objects, manifest.REJECTED) == d
    for column, value in (("run", 3), ("strip", "B2"), ("message", "m3")):
        changed = df.copy()
        changed.loc[1, column] = value
        assert manifest.digest(changed, manifest.REJECTED) != d, column
    null_run = df.copy()
    null_run.loc[0, "run"] = pd.NA  # a null is not a 0
    zero_run = df.copy()
    zero_run.loc[0, "run"] = 0
    assert len({d, *(manifest.digest(x, manifest.REJECTED) for x in (null_run, zero_run))}) == 3


def test_manifest_digest_refuses_rows_that_break_the_schema() -> None:
    df = pd.DataFrame({"strip": ["A1"], "split": ["holdout"], "seed": [0]})
    with pytest.raises(manifest.ManifestError, match="'split' has 1 rows outside"):
        manifest.digest(df, manifest.SPLITS_SCHEMA)


# --- ingest, patch, split -----------------------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ws = tmp_path_factory.mktemp("prov") / "ws"
    build_workspace(ws)
    return ws


@pytest.fixture
def ws(built: Path, tmp_path: Path) -> Path:
    """A private copy that a test may change (raw folder included)."""
    return Path(shutil.copytree(built, tmp_path / "ws"))


def _pipe(ws: Path):
    from bfsdata.config.files import load_pipeline

    return load_pipeline(ws / "pipeline.yaml")


def test_each_stage_records_what_it_read(built: Path) -> None:
    sha = _pipe(built).sha256
    acq = manifest.read_provenance(built, manifest.ACQUISITIONS)
    labels = (built / "raw" / "labels.csv").resolve()
    assert acq == {
        "version": acq["version"],
        "stage": "ingest",
        "pipeline": "tiny",
        "pipeline_sha256": sha,
        "inputs": {str(labels): _sha(labels.read_bytes())},
    }
    assert manifest.read_provenance(built, manifest.ANNOTATIONS) == acq
    pat = manifest.read_provenance(built, manifest.PATCHES)
    assert (pat["stage"], pat["pipeline_sha256"]) == ("patch", sha)
    assert pat["inputs"] == _now(built, ACQ, ANN)
    spl = manifest.read_provenance(built, manifest.SPLITS_SCHEMA)
    assert (spl["stage"], spl["seed"], spl["inputs"]) == ("split", 0, _now(built, ACQ, ANN))
    attrs = store.open_root(built, mode="r")
    assert attrs.attrs["bfsdata"] == {k: acq[k] for k in ("version", "stage", "pipeline")} | {
        "pipeline_sha256": sha
    }
    assert attrs["patches"].attrs["bfsdata"]["stage"] == "patch"
    assert provenance.chain_problems(built) == []


def test_verify_finds_a_stale_chain_and_a_rerun_mends_it(ws: Path) -> None:
    pipe = _pipe(ws)
    draw_run(ws / "raw" / "G1" / "run_3", (9, 3))  # a new run of a strip the split knows
    ingest(ws / "raw", ws, pipe, workers=2)
    problems = verify(ws, sample=0).problems
    assert len(problems) == 2, problems
    patches, splits = sorted(problems)
    assert patches.startswith(f"{PATCHES}: made from {ACQ} ")
    assert patches.endswith("it no longer describes this workspace: run `bfsdata patch` again")
    assert splits.startswith(f"{SPLITS}: made from {ACQ} ") and "`bfsdata split`" in splits

    patch(ws, pipe, workers=2)
    s = split(ws, pipe.split)
    assert s.new == 0 and s.written  # same assignments, record brought up to date
    assert verify(ws, sample=0).problems == []


def test_a_rerun_with_nothing_new_rewrites_nothing(ws: Path, snapshot) -> None:
    pipe = _pipe(ws)
    before = snapshot(ws / "manifests")
    ingest(ws / "raw", ws, pipe, workers=2)
    patch(ws, pipe, workers=2)
    assert not split(ws, pipe.split).written
    assert snapshot(ws / "manifests") == before


def test_a_manifest_rewritten_without_its_record_is_reported(ws: Path) -> None:
    rows = manifest.read(ws, manifest.SPLITS_SCHEMA)
    manifest.write(ws, manifest.SPLITS_SCHEMA, rows)  # by hand: same rows, no record
    assert verify(ws, sample=0).problems == [
        f"{SPLITS}: no readable provenance record (written by hand or by an older bfsdata); "
        "its inputs cannot be traced"
    ]


# --- train, report, infer: the chain from a report back to the raw frames -----------------


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> SharedRun:
    return shared_run(tmp_path_factory)


def _metrics(run: SharedRun) -> dict:
    return json.loads((run.report_dir / "metrics.json").read_text())


def test_train_records_manifests_pipeline_and_seed(run: SharedRun) -> None:
    rec = yaml.safe_load((run.run_dir / "config.yaml").read_text())["provenance"]
    assert rec["stage"] == "train" and rec["seed"] == run.pipe.train.seed
    assert rec["pipeline_sha256"] == run.pipe.sha256
    assert rec["inputs"] == _now(run.ws, PATCHES, SPLITS)
    model = json.loads((run.run_dir / "export" / "model.json").read_text())
    assert model["inputs"] == rec["inputs"] and model["seed"] == rec["seed"]


def test_report_records_model_manifests_and_thresholds(run: SharedRun) -> None:
    rec = _metrics(run)["provenance"]
    model_key = f"runs/{run.name}/export/saved_model"
    assert (rec["stage"], rec["model_run"]) == ("report", run.name)
    assert rec["inputs"] == _now(run.ws, PATCHES, SPLITS, ANN) | {
        model_key: provenance.tree_sha256(run.ws / model_key)
    }
    th = (run.report_dir / "thresholds.json").read_bytes()
    assert rec["thresholds_sha256"] == _sha(th)
    html = (run.report_dir / "report.html").read_text()
    footer = html[html.index("<footer") :]
    for digest in (*rec["inputs"].values(), rec["thresholds_sha256"]):
        assert digest[:12] in footer and digest in html  # short in the footer, whole above
    meta = pq.read_schema(run.report_dir / "scores.parquet").metadata
    scores_rec = json.loads(meta[manifest.PROVENANCE_KEY])
    assert scores_rec == {k: v for k, v in rec.items() if k != "thresholds_sha256"}


def test_infer_records_model_thresholds_and_the_raw_digest(run: SharedRun, tmp_path: Path) -> None:
    thresholds = run.report_dir / "thresholds.json"
    infer([run.ws / "raw" / "G3" / "run_1"], run.run_dir, thresholds, run.pipe, tmp_path)
    rec = json.loads((tmp_path / "summary.json").read_text())["provenance"]
    assert rec["inputs"][str(thresholds)] == _metrics(run)["provenance"]["thresholds_sha256"]
    assert (
        rec["inputs"][str(run.run_dir / "export" / "saved_model")]
        == (_metrics(run)["provenance"]["inputs"][f"runs/{run.name}/export/saved_model"])
    )
    decided = json.loads((tmp_path / "G3_run1.json").read_text())
    acqs = manifest.read(run.ws, manifest.ACQUISITIONS).set_index(["strip", "run"])
    assert decided["sha256"] == acqs.loc[("G3", 1), "sha256"]


def test_a_report_traces_back_to_its_raw_frame_files(run: SharedRun) -> None:
    """The walk of manifests/README.md (Traceability), step by step."""
    ws = run.ws
    assert provenance.chain_problems(ws) == []
    # 1. the report names the manifests it scored; they are unchanged since
    inputs = _metrics(run)["provenance"]["inputs"]
    assert inputs[PATCHES] == _now(ws, PATCHES)[PATCHES]
    # 2. the patches manifest names the acquisitions manifest it was cut from
    assert manifest.read_provenance(ws, manifest.PATCHES)["inputs"][ACQ] == _now(ws, ACQ)[ACQ]
    # 3. a scored patch -> its acquisition -> that acquisition's frame files, by their bytes
    scores = pd.read_parquet(run.report_dir / "scores.parquet")
    patches = manifest.read(ws, manifest.PATCHES).set_index("patch")
    acqs = manifest.read(ws, manifest.ACQUISITIONS).set_index("acq")
    for acq in patches.loc[scores["patch"], "acq"].unique():
        row = acqs.loc[acq]
        files = [Path(row["source"]) / f"frame_{i}.png" for i in range(row["n_frames"])]
        parts = b"".join(hashlib.sha256(f.read_bytes()).digest() for f in files)
        assert _sha(parts) == row["sha256"], (row["strip"], row["run"])
