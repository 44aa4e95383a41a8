"""The variation model through the chain with the real commands, on the tiny workspace:
`train --model variation` (without TensorFlow), `report`, then `infer`, which must give each
patch the score the report gave the same ingested patch."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from cli_helpers import invoke, ok, refused
from workspace_fixtures import RUNS, TEST_FRAMES, build_workspace

from bfsdata.config.pipeline import Pipeline
from bfsdata.store import arrays as store_io
from bfsdata.store import location as store
from bfsdata.train.stage import training_rows
from bfsdata.workspace import manifest, provenance

N_CELLS = 5 * 4  # vials x regions

# `bfsdata train --model variation` in a fresh interpreter, which then says whether TensorFlow
# or Keras was ever imported.
_TRAIN = textwrap.dedent(
    """
    import sys
    from bfsdata.cli import app
    try:
        app(["train", "-w", sys.argv[1], "--model", "variation", "--name", "var1"])
    finally:
        print("IMPORTED", sorted({m.split(".")[0] for m in sys.modules} & {"tensorflow", "keras"}))
    """
)


@dataclass(frozen=True)
class Trained:
    ws: Path
    pipe: Pipeline
    train_out: str
    report_out: str
    infer_out: Path

    @property
    def run_dir(self) -> Path:
        return self.ws / "runs" / "var1"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    ws = tmp_path_factory.mktemp("variation") / "ws"
    pipe = build_workspace(ws)
    res = subprocess.run(
        [sys.executable, "-c", _TRAIN, str(ws)], capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr[-4000:]
    report_out = ok(invoke("report", "-w", ws, "--run", "var1"))
    out = ws / "infer-out"
    raw = ws / "raw"
    ok(invoke("infer", raw / "D1", raw / "G3" / "run_1", "-w", ws, "--run", "var1", "--out", out))
    return Trained(ws, pipe, res.stdout, report_out, out)


def test_training_writes_the_run_without_tensorflow(trained: Trained) -> None:
    assert "IMPORTED []" in trained.train_out
    assert "export/variation.npz" in trained.train_out
    run = trained.run_dir
    assert sorted(p.name for p in (run / "previews").iterdir()) == [
        f"region-{r}.png" for r in range(4)
    ]
    config = yaml.safe_load((run / "config.yaml").read_text())
    rec = config["provenance"]
    assert rec["stage"] == "train" and rec["model"] == "variation"
    assert rec["cut"] == provenance.patch_recipe(trained.ws).to_dict()
    assert config["train"]["method"] == "variation"
    info = json.loads((run / "export" / "model.json").read_text())
    assert info["model"] == "variation" and info["patch_size"] == trained.pipe.patch.size
    assert info["cut"] == rec["cut"] and info["score"] == "area"


def test_the_streamed_model_equals_numpy_on_the_train_split_in_memory(trained: Trained) -> None:
    """One pass over the store in batches gives each position the mean and the standard
    deviation (ddof 1) of its train patches less their own mean, numpy's on the whole split."""
    ws, cfg = trained.ws, trained.pipe.train.variation
    assert cfg.match_mean and not cfg.robust and cfg.sigma == 0
    rows, _ = training_rows(ws, trained.pipe)
    x = store_io.ts_array(store.store_url(ws), "patches")[rows].read().result().astype(float)
    keys = manifest.read(ws, manifest.PATCHES).set_index("patch").loc[rows]
    with np.load(trained.run_dir / "export" / "variation.npz") as f:
        model = {k: f[k] for k in f.files}
    assert len(model["kind"]) == 3 * N_CELLS  # every kind trained on, every position
    split = manifest.read(ws, manifest.SPLITS_SCHEMA).set_index("strip")["split"]
    assert set(split[keys["strip"].unique()]) == {"train"}  # the train split only
    for i, (kind, vial, region) in enumerate(
        zip(model["kind"], model["vial"], model["region"], strict=True)
    ):
        sel = ((keys["kind"] == kind) & (keys["vial"] == vial) & (keys["region"] == region)).values
        level = x[sel].mean(axis=(1, 2))
        c = x[sel] - level[:, None, None]
        np.testing.assert_allclose(model["ideal"][i], c.mean(axis=0) + level.mean(), atol=1e-3)
        np.testing.assert_allclose(model["variation"][i], c.std(axis=0, ddof=1), atol=1e-3)


def test_report_judges_the_variation_model(trained: Trained) -> None:
    assert "strip-wise" in trained.report_out
    rep = trained.ws / "reports" / "var1"
    metrics = json.loads((rep / "metrics.json").read_text())
    assert metrics["model_run"] == "var1"
    assert metrics["score"] == "variation model: largest out-of-band area, px"
    assert metrics["timing"]["device"] == "CPU"
    assert "runs/var1/export/variation.npz" in metrics["provenance"]["inputs"]
    assert provenance.chain_problems(trained.ws) == []
    scores = pd.read_parquet(rep / "scores.parquet")
    assert len(scores) == 3 * RUNS * len(TEST_FRAMES) * N_CELLS
    # the scratch (vial 2, region 1 of D1) leaves the band far more than any good patch does
    scratch = scores[(scores["strip"] == "D1") & (scores["vial"] == 2) & (scores["region"] == 1)]
    good = scores[scores["label"] == "good"]
    assert scratch["score"].min() > max(good["score"].max(), 20)
    assert metrics["headline"]["strip-wise accuracy"]["value"] == 1.0


def test_infer_scores_equal_the_report_scores(trained: Trained) -> None:
    scores = pd.read_parquet(trained.ws / "reports" / "var1" / "scores.parquet")
    for strip, r in (("D1", 1), ("D1", 2), ("G3", 1)):
        rec = json.loads((trained.infer_out / f"{strip}_run{r}.json").read_text())
        got = pd.DataFrame(rec["patches"])
        assert len(got) == len(TEST_FRAMES) * N_CELLS
        want = scores[(scores["strip"] == strip) & (scores["run"] == r)]
        both = got.merge(want, on=["kind", "frame", "vial", "region"], validate="1:1")
        assert len(both) == len(got)
        np.testing.assert_array_equal(both["score_x"], both["score_y"])
        assert rec["rejected_vials"] == ([2] if strip == "D1" else [])
    summary = json.loads((trained.infer_out / "summary.json").read_text())
    assert any(k.endswith("variation.npz") for k in summary["provenance"]["inputs"])


def test_a_trained_run_is_not_trained_again(trained: Trained) -> None:
    ws = trained.ws
    err = refused(invoke("train", "-w", ws, "--model", "variation", "--name", "var1"))
    assert "already holds a trained model (export/variation.npz)" in err
    err = refused(invoke("train", "-w", ws, "--model", "variation", "--name", "v2", "--resume"))
    assert "nothing to resume" in err and not (ws / "runs" / "v2" / "export").exists()
    assert "train.method" in refused(invoke("train", "-w", ws, "--model", "svm", "--name", "v3"))
