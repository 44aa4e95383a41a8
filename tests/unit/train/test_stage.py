"""`bfsdata train` on a tiny real workspace: the loss falls, the run folder is complete, a resumed
run ends with the weights of an uninterrupted one, two devices train under MirroredStrategy.

The shared run (`workspace_fixtures.shared_run`: 3 epochs x 10 steps of 8 patches, 32 px) is
trained in this process; runs whose result must be bit-exact (op determinism) or that need two
logical CPUs are trained in fresh interpreters, because both settings must precede TF's first op.
"""

from __future__ import annotations

import os

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # CPU only: tests must not depend on a GPU
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import dataclasses
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import h5py
import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner
from workspace_fixtures import (
    EPOCHS,
    FRAMES,
    SIZE,
    STEPS,
    SharedRun,
    build_workspace,
    shared_run,
    tiny_pipeline,
    train_subprocess,
)

from bfsdata.cli import app
from bfsdata.config.files import pipeline_to_dict
from bfsdata.config.pipeline import PatchConfig, SplitConfig
from bfsdata.model.gan import TRACKED
from bfsdata.train.stage import TrainError, train

RESUME_STEPS = 3  # steps per epoch of the resume and MirroredStrategy runs


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> SharedRun:
    return shared_run(tmp_path_factory)


@pytest.fixture(scope="module")
def fresh_ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace without runs and without a val split (no validation pass: faster runs)."""
    ws = tmp_path_factory.mktemp("fresh") / "ws"
    pipe = tiny_pipeline(steps_per_epoch=RESUME_STEPS)
    build_workspace(ws, dataclasses.replace(pipe, split=SplitConfig(val=0.0, calib=0.0)))
    return ws


def _h5_leaves(path: Path) -> dict[str, np.ndarray]:
    """{dataset path: array} of every dataset in a .weights.h5 file."""
    out: dict[str, np.ndarray] = {}

    def keep(name: str, obj: object) -> None:  # returning non-None would stop the visit
        if isinstance(obj, h5py.Dataset):
            out[name] = obj[()]

    with h5py.File(path, "r") as f:
        f.visititems(keep)
    return out


def _ckpt(ws: Path, name: str, step: int) -> Path:
    return ws / "runs" / name / "checkpoints" / f"ckpt-{step:09d}"


# --- the shared run -----------------------------------------------------------------------


def test_training_lowers_the_contextual_loss(run: SharedRun) -> None:
    h = run.summary.history
    assert list(h["epoch"]) == list(range(EPOCHS))
    # L_con of the (augmented) training batches, epoch means, and of the fixed clean val sample.
    assert h["con"].iloc[-1] < 0.6 * h["con"].iloc[0], h["con"].tolist()
    assert h["val_con"].iloc[-1] < h["val_con"].iloc[0], h["val_con"].tolist()
    assert h["ssim"].iloc[-1] > h["ssim"].iloc[0]


def test_summary_counts_steps_and_patches(run: SharedRun) -> None:
    s = run.summary
    # G1 is the train strip and G2 the val strip (split val 0.5): 2 runs x 6 images x 20 cells.
    per_strip = 2 * (FRAMES + 2) * 20
    assert (s.train_patches, s.val_patches) == (per_strip, per_strip)
    assert (s.start_step, s.steps) == (0, EPOCHS * STEPS)
    assert s.run_dir == run.run_dir and s.export == run.run_dir / "export" / "saved_model"
    state = json.loads((_ckpt(run.ws, "tiny", EPOCHS * STEPS) / "state.json").read_text())
    assert state == {"epoch": EPOCHS, "step": EPOCHS * STEPS}
    ckpts = sorted(p.name for p in (run.run_dir / "checkpoints").iterdir())
    assert ckpts == [f"ckpt-{(e + 1) * STEPS:09d}" for e in range(EPOCHS)]  # keep 3, no tmp


def test_previews_are_written_per_epoch(run: SharedRun) -> None:
    files = sorted((run.run_dir / "previews").glob("*.png"))
    assert [p.name for p in files] == [f"epoch-{e + 1:03d}.png" for e in range(EPOCHS)]
    img = cv2.imread(str(files[0]), cv2.IMREAD_UNCHANGED)
    assert img is not None and img.dtype == np.uint8
    # rows X, X_n, M, X^ of 8 patches, enlarged by an integer factor to >= 512 px high.
    f = img.shape[0] // (4 * SIZE)
    assert f >= 1 and img.shape == (4 * SIZE * f, 8 * SIZE * f)


def test_losses_csv_has_losses_and_throughput(run: SharedRun) -> None:
    h = pd.read_csv(run.run_dir / "losses.csv")
    want = {"epoch", "patches_per_s", *TRACKED, *(f"val_{k}" for k in TRACKED)}
    assert want <= set(h.columns), sorted(want - set(h.columns))
    assert len(h) == EPOCHS
    assert (h["patches_per_s"] > 0).all()
    assert np.isfinite(h[list(TRACKED)].to_numpy()).all()
    pd.testing.assert_frame_equal(h, run.summary.history)
    assert any((run.run_dir / "logs").rglob("events.out.tfevents.*"))  # TensorBoard


def test_config_yaml_holds_the_resolved_pipeline(run: SharedRun) -> None:
    doc = yaml.safe_load((run.run_dir / "config.yaml").read_text())
    prov = doc.pop("provenance")
    assert prov["pipeline_sha256"] == run.pipe.sha256 and prov["pipeline"] == "tiny"
    assert doc == pipeline_to_dict(run.pipe)
    assert doc["patch"]["size"] == SIZE and doc["train"]["optim"]["steps_per_epoch"] == STEPS


# --- refusals -----------------------------------------------------------------------------


def test_training_into_a_run_with_checkpoints_needs_resume(run: SharedRun) -> None:
    before = sorted(p.name for p in (run.run_dir / "checkpoints").iterdir())
    res = CliRunner().invoke(app, ["train", "-w", str(run.ws), "--name", "tiny"])
    assert res.exit_code == 1
    assert "already has checkpoints; pass --resume, or another --name" in res.output
    assert sorted(p.name for p in (run.run_dir / "checkpoints").iterdir()) == before


def test_resume_without_checkpoints_is_refused(run: SharedRun) -> None:
    res = CliRunner().invoke(app, ["train", "-w", str(run.ws), "--name", "none", "--resume"])
    assert res.exit_code == 1
    assert "nothing to resume (no checkpoints); run without --resume" in res.output
    assert not (run.ws / "runs" / "none").exists()  # refused before anything was written


def test_a_pipeline_with_another_patch_size_is_refused(run: SharedRun) -> None:
    pipe = dataclasses.replace(run.pipe, patch=PatchConfig(size=64))
    with pytest.raises(TrainError, match="the store's patches are 32 px; the pipeline's patch"):
        train(run.ws, pipe, name="p64")


def test_train_help_shows_an_example() -> None:
    res = CliRunner().invoke(app, ["train", "--help"])
    assert res.exit_code == 0
    assert "Example: bfsdata train -w ws/ --name first --epochs 10" in " ".join(res.output.split())


def test_train_without_splits_exits_1(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["train", "-w", str(tmp_path)])
    assert res.exit_code == 1
    assert f"{tmp_path}: no splits.parquet; run `bfsdata split -w {tmp_path}` first" in res.output


# --- resume and devices (fresh interpreters) ----------------------------------------------


def test_resume_gives_the_weights_of_an_uninterrupted_run(fresh_ws: Path) -> None:
    """A: epochs 1-2 in one go. B: epoch 1, stop, then --resume to epoch 2. Same bits."""
    end = 2 * RESUME_STEPS
    with ThreadPoolExecutor(2) as pool:  # two processes: faster when the second core is free
        fa = pool.submit(train_subprocess, fresh_ws, "A", epochs=2, skip_export=True)
        fb = pool.submit(train_subprocess, fresh_ws, "B", epochs=1, skip_export=True)
        a, b1 = fa.result(), fb.result()
    assert (b1["start_step"], b1["steps"]) == (0, RESUME_STEPS)
    assert not _ckpt(fresh_ws, "B", end).exists()
    b2 = train_subprocess(fresh_ws, "B", epochs=2, resume=True, skip_export=True)
    assert (a["start_step"], a["steps"]) == (0, end)
    assert (b2["start_step"], b2["steps"]) == (RESUME_STEPS, end)

    # Generator, critic and both optimizers' variables (weights.weights.h5 holds them all).
    wa = _h5_leaves(_ckpt(fresh_ws, "A", end) / "weights.weights.h5")
    wb = _h5_leaves(_ckpt(fresh_ws, "B", end) / "weights.weights.h5")
    assert sorted(wa) == sorted(wb)
    assert any(k.startswith("generator/") for k in wa)
    assert any(k.startswith("discriminator/") for k in wa)
    for k in wa:
        np.testing.assert_allclose(wb[k], wa[k], rtol=0, atol=1e-6, err_msg=k)
    # ... and the run did train between the two checkpoints (not a vacuous comparison).
    w1 = _h5_leaves(_ckpt(fresh_ws, "A", RESUME_STEPS) / "weights.weights.h5")
    gen = [k for k in wa if k.startswith("generator/")]
    assert max(float(np.abs(wa[k] - w1[k]).max()) for k in gen) > 0

    with (
        np.load(_ckpt(fresh_ws, "A", end) / "optimizers.npz") as oa,
        np.load(_ckpt(fresh_ws, "B", end) / "optimizers.npz") as ob,
    ):
        assert sorted(oa.files) == sorted(ob.files)
        for k in oa.files:
            np.testing.assert_allclose(ob[k], oa[k], rtol=0, atol=1e-6, err_msg=k)
        # Keras optimizers' first variable is the iteration counter.
        assert int(oa["g/0"]) == int(ob["g/0"]) == end
        assert int(oa["d/0"]) == int(ob["d/0"]) == end
    assert json.loads((_ckpt(fresh_ws, "B", end) / "state.json").read_text()) == {
        "epoch": 2,
        "step": end,
    }

    # B's losses.csv: epoch 1 from the first process, epoch 2 appended by the resumed one.
    ha = pd.DataFrame(a["history"])
    hb = pd.read_csv(fresh_ws / "runs" / "B" / "losses.csv")
    assert list(hb["epoch"]) == [0, 1]
    for col in TRACKED:
        np.testing.assert_allclose(hb[col], ha[col], rtol=1e-6, err_msg=col)


@pytest.mark.slow  # ~70 s here: a fresh interpreter, tracing for two replicas, the export
def test_mirrored_strategy_on_two_logical_cpus_runs_steps(fresh_ws: Path) -> None:
    devices = ["/cpu:0", "/cpu:1"]
    out = train_subprocess(fresh_ws, "mirrored", epochs=1, logical_cpus=2, devices=devices)
    assert (out["start_step"], out["steps"]) == (0, RESUME_STEPS)
    h = pd.DataFrame(out["history"])
    assert len(h) == 1
    assert np.isfinite(h[list(TRACKED)].to_numpy()).all(), h[list(TRACKED)]
    assert _ckpt(fresh_ws, "mirrored", RESUME_STEPS).is_dir()
    assert (fresh_ws / "runs" / "mirrored" / "export" / "saved_model" / "saved_model.pb").is_file()
