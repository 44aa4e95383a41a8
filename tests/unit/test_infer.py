"""`bfsdata report` and `bfsdata infer` on the tiny trained workspace: infer, cutting raw run
folders itself, gives each patch the score the report gave the same ingested patch."""

from __future__ import annotations

import os

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # CPU only: tests must not depend on a GPU
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import dataclasses
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner
from workspace_fixtures import (
    RUNS,
    SHAPE,
    SIZE,
    TEST_FRAMES,
    SharedRun,
    copy_workspace,
    draw_run,
    shared_run,
    tiny_pipeline,
)

from bfsdata.cli import app
from bfsdata.config.pipeline import PatchConfig
from bfsdata.infer import InferError, infer
from bfsdata.infer.inputs import load_thresholds, run_folders
from bfsdata.report import report
from bfsdata.score import ScoreError, load_scorer, score, scoring_rows

N_CELLS = 5 * 4  # vials x regions


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> SharedRun:
    return shared_run(tmp_path_factory)


@pytest.fixture(scope="module")
def inferred(run: SharedRun, tmp_path_factory: pytest.TempPathFactory):
    """infer on the defective strip's folder (both runs) and one run of the held-out good strip."""
    out = tmp_path_factory.mktemp("infer")
    raw = run.ws / "raw"
    s = infer(
        [raw / "D1", raw / "G3" / "run_1"],
        run.run_dir,
        run.report_dir / "thresholds.json",
        run.pipe,
        out,
    )
    return s


# --- report -------------------------------------------------------------------------------


def test_report_command_writes_metrics_thresholds_html_scores(run: SharedRun) -> None:
    assert run.report_exit == 0, run.report_output
    assert "strip-wise" in run.report_output and "IN-SAMPLE" in run.report_output
    d = run.report_dir
    for name in ("metrics.json", "thresholds.json", "report.html", "scores.parquet"):
        assert (d / name).is_file(), name
    metrics = json.loads((d / "metrics.json").read_text())
    assert metrics["model_run"] == "tiny" and metrics["in_sample"] is True
    th = json.loads((d / "thresholds.json").read_text())
    assert th["patch_size"] == SIZE and th["regions"] == [0, 1, 2, 3] and th["vials"] == 5
    assert th["frames"] == list(TEST_FRAMES)
    scores = pd.read_parquet(d / "scores.parquet")
    # test kit D1 + G3 and val strip G2, 2 runs each, frame patches at the test frames only
    assert set(scores["strip"]) == {"D1", "G2", "G3"}
    assert len(scores) == 3 * RUNS * len(TEST_FRAMES) * N_CELLS
    assert (scores["kind"] == "frame").all() and scores["score"].notna().all()
    assert (d / "report.html").read_text().lstrip().lower().startswith("<!doctype html")


def test_scoring_other_rows_into_a_used_report_folder_scores_them(
    run: SharedRun, tmp_path: Path
) -> None:
    out = tmp_path / "report"
    shutil.copytree(run.report_dir / ".parts", out / ".parts")  # as the first report left it
    acq = dataclasses.replace(run.pipe.acquisition, test_frames=(0, 1, 2, 3))
    rows = scoring_rows(run.ws, dataclasses.replace(run.pipe, acquisition=acq))
    scored, _ = score(run.ws, run.run_dir, rows, out)
    assert sorted(scored["patch"]) == sorted(rows["patch"])  # stale: only frames 0 and 3


# --- infer --------------------------------------------------------------------------------


def test_infer_scores_equal_the_report_scores(run: SharedRun, inferred) -> None:
    scores = pd.read_parquet(run.report_dir / "scores.parquet")
    key = ["frame", "vial", "region"]
    for strip, r in (("D1", 1), ("D1", 2), ("G3", 1)):
        rec = json.loads((inferred.out_dir / f"{strip}_run{r}.json").read_text())
        got = pd.DataFrame(rec["patches"])
        assert len(got) == len(TEST_FRAMES) * N_CELLS
        want = scores[(scores["strip"] == strip) & (scores["run"] == r)]
        both = got.merge(want, on=key, suffixes=("_infer", "_report"), validate="1:1")
        assert len(both) == len(got)
        np.testing.assert_allclose(both["score_infer"], both["score_report"], atol=1e-5)
        # the same crop boxes as ingest + patch found
        boxes = np.stack(both["box"].to_numpy())
        np.testing.assert_array_equal(boxes, both[["y0", "x0", "y1", "x1"]].to_numpy())


def test_rank_images_scored_by_report_and_infer_agree(run: SharedRun, tmp_path: Path) -> None:
    """acquisition.test_kinds [frame, rank_max]: the report scores the stored max rank patches,
    thresholds.json names the kinds, and infer computes the rank image from the raw frames
    and gives its patches the same scores."""
    ws = copy_workspace(run.ws, tmp_path / "ws")
    acq = dataclasses.replace(run.pipe.acquisition, test_kinds=("frame", "rank_max"))
    pipe = dataclasses.replace(run.pipe, acquisition=acq)
    report(ws, pipe, run="tiny", name="ranks")
    rep = ws / "reports" / "ranks"
    assert json.loads((rep / "thresholds.json").read_text())["kinds"] == ["frame", "rank_max"]
    scores = pd.read_parquet(rep / "scores.parquet")
    per_acq = (len(TEST_FRAMES) + 1) * N_CELLS
    assert len(scores) == 3 * RUNS * per_acq and (scores["kind"] == "rank_max").any()
    out = infer([ws / "raw" / "D1" / "run_2"], ws / "runs" / "tiny", rep / "thresholds.json",
                run.pipe, tmp_path / "infer")  # fmt: skip
    got = pd.DataFrame(json.loads((out.out_dir / "D1_run2.json").read_text())["patches"])
    assert len(got) == per_acq
    want = scores[(scores["strip"] == "D1") & (scores["run"] == 2)]
    both = got.merge(want, on=["kind", "frame", "vial", "region"], validate="1:1")
    assert len(both) == per_acq
    np.testing.assert_allclose(both["score_x"], both["score_y"], atol=1e-5)


def test_infer_decisions_follow_the_thresholds(run: SharedRun, inferred) -> None:
    th = json.loads((run.report_dir / "thresholds.json").read_text())
    for row in inferred.acquisitions.itertuples(index=False):
        rec = json.loads((inferred.out_dir / f"{row.strip}_run{row.run}.json").read_text())
        over = {p["vial"] for p in rec["patches"] if p["score"] > th["strip"][str(p["region"])]}
        assert sorted(over) == rec["rejected_vials"] == list(row.rejected_vials)
        assert rec["rejected"] == bool(over)
        run_over = any(p["score"] > th["run"][str(p["region"])] for p in rec["patches"])
        assert rec["run_rejected"] == run_over


def test_infer_writes_json_overlay_and_summary(inferred) -> None:
    out = inferred.out_dir
    names = {"D1_run1", "D1_run2", "G3_run1"}
    assert {p.stem for p in out.glob("*.json")} == names | {"summary"}
    for name in names:
        img = cv2.imread(str(out / f"{name}.png"))
        assert img is not None and img.shape == (*SHAPE, 3)
    summary = json.loads((out / "summary.json").read_text())
    assert [(a["strip"], a["run"]) for a in summary["acquisitions"]] == [
        ("D1", 1),
        ("D1", 2),
        ("G3", 1),
    ]
    # D1 has two runs: a run-wise decision; G3 has one run here: none.
    (d1,) = summary["strips"]
    assert d1["strip"] == "D1" and d1["runs"] == 2
    assert d1["rejections"] == sum(a["run_rejected"] for a in summary["acquisitions"][:2])
    assert d1["decision"] in ("accept", "reject", "undecided")
    assert list(inferred.strips["strip"]) == ["D1"]


def test_infer_command_prints_a_line_per_acquisition(run: SharedRun, tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    res = CliRunner().invoke(
        app,
        ["infer", str(run.ws / "raw" / "G3"), "-w", str(run.ws), "--run", "tiny", "--out", out],
    )
    assert res.exit_code == 0, res.output
    assert "2 acquisition(s)" in res.output
    assert sum(" G3 run " in line for line in res.output.splitlines()) == RUNS
    assert "G3: " in res.output  # the run-wise line
    assert (tmp_path / "out" / "summary.json").is_file()


def test_a_new_acquisition_outside_the_workspace_is_decided(run: SharedRun, tmp_path: Path) -> None:
    folder = draw_run(tmp_path / "NEW" / "run_7", (99, 7))
    s = infer([folder], run.run_dir, run.report_dir / "thresholds.json", run.pipe, tmp_path / "o")
    assert list(s.acquisitions[["strip", "run"]].itertuples(index=False, name=None)) == [("NEW", 7)]
    assert s.strips.empty


# --- refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("patch_size", 64, "fitted for patch_size = 64, but the pipeline has 32"),
        ("regions", [0, 1, 2], r"fitted for regions = \[0, 1, 2\], but the pipeline has"),
        ("vials", 4, "fitted for vials = 4, but the pipeline has 5"),
    ],
)
def test_thresholds_for_another_layout_are_refused(
    run: SharedRun, tmp_path: Path, key: str, value: object, match: str
) -> None:
    th = json.loads((run.report_dir / "thresholds.json").read_text())
    path = tmp_path / "thresholds.json"
    path.write_text(json.dumps({**th, key: value}))
    with pytest.raises(InferError, match=match):
        load_thresholds(path, run.pipe)
    with pytest.raises(InferError, match=match):
        infer([run.ws / "raw" / "G3"], run.run_dir, path, run.pipe, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_pipeline_with_another_patch_size_is_refused(run: SharedRun, tmp_path: Path) -> None:
    pipe = dataclasses.replace(run.pipe, patch=PatchConfig(size=64))
    with pytest.raises(InferError, match="patch_size = 32, but the pipeline has 64"):
        infer(
            [run.ws / "raw" / "G3"], run.run_dir, run.report_dir / "thresholds.json", pipe, tmp_path
        )


def test_missing_thresholds_and_model_are_refused(run: SharedRun, tmp_path: Path) -> None:
    with pytest.raises(InferError, match="no thresholds; run `bfsdata report`"):
        load_thresholds(tmp_path / "thresholds.json", tiny_pipeline())
    with pytest.raises(ScoreError, match="no exported model; run `bfsdata train`"):
        load_scorer(tmp_path)


def test_run_folders_accepts_run_and_strip_folders(run: SharedRun, tmp_path: Path) -> None:
    raw = run.ws / "raw"
    assert run_folders([raw / "D1", raw / "G3" / "run_2"]) == [
        raw / "D1" / "run_1",
        raw / "D1" / "run_2",
        raw / "G3" / "run_2",
    ]
    with pytest.raises(InferError, match="not a folder"):
        run_folders([raw / "labels.csv"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InferError, match="no run_<r> folders inside"):
        run_folders([tmp_path / "empty"])


def test_a_run_with_missing_frames_is_refused(run: SharedRun, tmp_path: Path) -> None:
    folder = draw_run(tmp_path / "S" / "run_1", (5, 1))
    (folder / "frame_2.png").unlink()
    with pytest.raises(InferError, match=r"expected frames 0\.\.3, found 3 frame files"):
        infer([folder], run.run_dir, run.report_dir / "thresholds.json", run.pipe, tmp_path / "o")


def test_a_gan_scored_on_its_normalised_residual_scores_alike_in_report_and_infer(
    run: SharedRun, tmp_path: Path
) -> None:
    """Training left the good-residual statistics of the val patches beside the export; a run
    whose model.json names the score `residual` is scored with them, by report and by infer."""
    ws = copy_workspace(run.ws, tmp_path / "ws")
    run_dir = ws / "runs" / "tiny"
    stats = np.load(run_dir / "export" / "residual.npz")
    assert sorted(set(stats["kind"])) == ["frame"] and len(stats["kind"]) == N_CELLS
    assert (stats["std"] > 0).any()
    info = run_dir / "export" / "model.json"
    assert json.loads(info.read_text())["score"] == "ssim"
    info.write_text(json.dumps(json.loads(info.read_text()) | {"score": "residual"}))
    rep = report(ws, run.pipe, run="tiny", name="residual")
    metrics = json.loads((rep.out_dir / "metrics.json").read_text())
    assert "normalised" in metrics["score"]
    scores = pd.read_parquet(rep.out_dir / "scores.parquet")
    ssim = pd.read_parquet(run.report_dir / "scores.parquet")
    assert not np.allclose(scores["score"].to_numpy(), ssim["score"].to_numpy())
    assert (scores["score"] >= 0).all()
    out = infer([ws / "raw" / "D1" / "run_1"], run_dir, rep.out_dir / "thresholds.json",
                run.pipe, tmp_path / "infer")  # fmt: skip
    got = pd.DataFrame(json.loads((out.out_dir / "D1_run1.json").read_text())["patches"])
    want = scores[(scores["strip"] == "D1") & (scores["run"] == 1)]
    both = got.merge(want, on=["kind", "frame", "vial", "region"], validate="1:1")
    assert len(both) == len(TEST_FRAMES) * N_CELLS
    np.testing.assert_allclose(both["score_x"], both["score_y"], rtol=1e-4, atol=1e-4)
