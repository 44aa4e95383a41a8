"""A tiny real workspace for the training, export and inference tests, and ways to train on it.

Raw strips are drawn where the default layout expects them (a bright strip on a dark background,
scaled to 128x160 px), then ingested, cut into 32 px patches and split; the pipeline is written
to `<ws>/pipeline.yaml` so the CLI commands and `load_pipeline` see the same one as the tests.

Test modules import this file (`from workspace_fixtures import ...`; pyproject's pytest
`pythonpath` puts tests/ on the path). `shared_run` trains one tiny model and writes its report
once per pytest process, so the train, export and infer tests pay for it once; tests that change
it take a copy.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from bfsdata.config.files import load_pipeline, pipeline_to_dict
from bfsdata.config.pipeline import (
    AcquisitionConfig,
    PatchConfig,
    Pipeline,
    SplitConfig,
    TrainConfig,
)
from bfsdata.config.training import AugmentConfig, ModelConfig, OptimConfig

# G1..G3 good, D1 defective (scratch in vial 2, region 1). split: G3 -> test kit (test_good 1),
# G1/G2 -> train/val (val 0.5); calib 0: the kit is all test (thresholds in-sample).
STRIPS = {"G1": "good", "G2": "good", "G3": "good", "D1": "defect"}
RUNS, FRAMES, SIZE = 2, 4, 32
SHAPE = (128, 160)  # (H, W) px: the reference layout / 8
VIALS, REGIONS = 5, 4
TEST_FRAMES = (0, FRAMES - 1)
STEPS, EPOCHS = 10, 3  # the shared run: 30 steps of 8 patches

# Every test process: CPU only, quiet TensorFlow (subprocesses inherit os.environ).
ENV = {"CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2"}


def tiny_pipeline(**optim: object) -> Pipeline:
    """The default pipeline shrunk: 4 frames, 32 px patches, a 35k-weight generator, no XLA."""
    acq = AcquisitionConfig(frames=FRAMES, ranks=(1, FRAMES), test_frames=TEST_FRAMES)
    model = ModelConfig(
        patch_size=SIZE, base_width=4, stages=2, latent=8, disc_base_width=4, disc_stages=2
    )
    opt = OptimConfig(
        lr=2e-3,  # few steps: a larger rate than the paper's
        first_decay_steps=1000,
        batch=8,
        epochs=EPOCHS,
        steps_per_epoch=STEPS,
        val_patches=16,
        jit_compile=False,  # XLA compiles take longer than these runs
    )
    opt = dataclasses.replace(opt, **optim)
    aug = AugmentConfig(perlin_max_scale=3)  # 32 px patches: at most 8 cells
    train = TrainConfig(model=model, augment=aug, optim=opt)
    return dataclasses.replace(
        Pipeline(name="tiny"),
        acquisition=acq,
        patch=PatchConfig(size=SIZE),
        split=SplitConfig(val=0.5, calib=0.0, test_good=1),
        train=train,
    )


def write_pipeline(path: Path, pipe: Pipeline) -> Pipeline:
    """Write `pipe` as YAML and read it back (with source and sha256, as the CLI would)."""
    doc = pipeline_to_dict(pipe)
    doc.pop("source"), doc.pop("sha256")
    Path(path).write_text(yaml.safe_dump(doc, sort_keys=False))
    return load_pipeline(path)


def draw_run(folder: Path, seed: tuple[int, ...], defect: bool = False) -> Path:
    """`folder/frame_<f>.png` for f < FRAMES: the layout's strip with vial seams and noise."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for f in range(FRAMES):
        img = np.full(SHAPE, 25.0)
        img[4:124, 5:155] = 170.0
        img[4:124, [34, 35, 64, 65, 94, 95, 124, 125]] = 140.0  # vial boundaries
        img[40:62:3, 40:60] = 120.0  # a fill-level pattern, so patches are not flat
        if defect:
            img[40:60, 45:48] = 60.0  # scratch: vial 2, region 1
        img += rng.normal(0, 3, SHAPE)
        cv2.imwrite(str(folder / f"frame_{f}.png"), np.clip(img, 0, 255).astype(np.uint8))
    return folder


def write_raw(root: Path) -> Path:
    lines = ["strip,label,defect,vial,region"]
    for i, (strip, label) in enumerate(STRIPS.items()):
        for run in range(1, RUNS + 1):
            draw_run(root / strip / f"run_{run}", (i, run), defect=label == "defect")
        lines.append(f"{strip},{label}," + ("scratch,2,1" if label == "defect" else ",,"))
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


def build_workspace(ws: Path, pipe: Pipeline | None = None) -> Pipeline:
    """raw -> ingest -> patch -> split in `ws`; returns the pipeline read back from the YAML."""
    from bfsdata.ingest import ingest
    from bfsdata.patch.stage import patch
    from bfsdata.split import split

    ws.mkdir(parents=True, exist_ok=True)
    pipe = write_pipeline(ws / "pipeline.yaml", pipe or tiny_pipeline())
    write_raw(ws / "raw")
    ingest(ws / "raw", ws, pipe, workers=2)
    patch(ws, pipe, workers=2)
    split(ws, pipe.split)
    return pipe


# Training in a fresh interpreter: op determinism and logical devices must be set before
# TensorFlow runs its first op, which the pytest process may already have done.
_TRAIN_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf
    args = json.loads(sys.argv[1])
    if args["logical_cpus"]:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * args["logical_cpus"]
        )
    tf.config.experimental.enable_op_determinism()
    if args["skip_export"]:  # ~20 s per process here; the checkpoints are what is compared
        import bfsdata.model.export
        bfsdata.model.export.export = lambda generator, out_dir, *a: out_dir / "saved_model"
    from bfsdata.config.files import load_pipeline
    from bfsdata.config.overrides import with_overrides
    from bfsdata.train.stage import train
    steps = {"train.optim.epochs": args["epochs"], "train.optim.steps_per_epoch": args["steps"]}
    pipe = with_overrides(load_pipeline(args["pipeline"]), steps)
    s = train(args["ws"], pipe, name=args["name"], resume=args["resume"],
              preview=False, devices=args["devices"])
    hist = s.history
    print("RESULT " + json.dumps({
        "start_step": s.start_step, "steps": s.steps,
        "history": hist.to_dict(orient="list"),
    }))
    """
)


def train_subprocess(
    ws: Path,
    name: str,
    *,
    epochs: int,
    resume: bool = False,
    logical_cpus: int = 0,
    devices: list[str] | None = None,
    steps: int | None = None,
    skip_export: bool = False,
    timeout: float = 600,
) -> dict:
    """`train` in a new Python process with op determinism on; returns start_step, steps,
    history (losses.csv as {column: values}). Fails the test with the child's stderr."""
    args = {
        "ws": str(ws),
        "pipeline": str(ws / "pipeline.yaml"),
        "name": name,
        "epochs": epochs,
        "resume": resume,
        "logical_cpus": logical_cpus,
        "devices": devices,
        "steps": steps,
        "skip_export": skip_export,
    }
    env = {**os.environ, **ENV}
    res = subprocess.run(
        [sys.executable, "-c", _TRAIN_SCRIPT, json.dumps(args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    if res.returncode != 0:
        pytest.fail(f"training subprocess failed ({res.returncode}):\n{res.stderr[-4000:]}")
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT ") :])


@dataclass(frozen=True)
class SharedRun:
    ws: Path  # the workspace: do not change it; copy it (`copy_workspace`)
    pipe: Pipeline
    name: str  # runs/<name>/ and reports/<name>/
    summary: object  # bfsdata.train.TrainSummary
    report_exit: int  # exit code of `bfsdata report`
    report_output: str

    @property
    def run_dir(self) -> Path:
        return self.ws / "runs" / self.name

    @property
    def report_dir(self) -> Path:
        return self.ws / "reports" / self.name


_shared: dict[str, SharedRun] = {}


def shared_run(tmp_path_factory: pytest.TempPathFactory) -> SharedRun:
    """One tiny model trained in-process (3 epochs x 10 steps, previews on), then reported with
    `bfsdata report`; built on first use and shared by every module of the pytest process."""
    if "run" not in _shared:
        for k, v in ENV.items():
            os.environ.setdefault(k, v)
        from typer.testing import CliRunner

        from bfsdata.cli import app
        from bfsdata.train.stage import train

        ws = tmp_path_factory.mktemp("trained") / "ws"
        pipe = build_workspace(ws)
        summary = train(ws, pipe, name="tiny")
        res = CliRunner().invoke(app, ["report", "-w", str(ws), "--run", "tiny"])
        _shared["run"] = SharedRun(ws, pipe, "tiny", summary, res.exit_code, res.output)
    return _shared["run"]


def copy_workspace(src: Path, dst: Path) -> Path:
    """A private copy of a workspace (raw, store, manifests, runs, reports)."""
    return Path(shutil.copytree(src, dst))
