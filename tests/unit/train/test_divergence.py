"""`bfsdata train` stops a run whose losses explode (model.callbacks.Divergence), on a tiny real
workspace and the tiny model of workspace_fixtures: with `lr: 10` its total loss goes from ~50 to
millions at the second step. One message names the loss and the step and suggests a lower rate;
nothing is exported, and only checkpoints saved before the run diverged are kept.
"""

from __future__ import annotations

import os

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # CPU only: tests must not depend on a GPU
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import time
from pathlib import Path

import pytest
from typer.testing import CliRunner
from workspace_fixtures import build_workspace, tiny_pipeline, write_pipeline

from bfsdata.cli import app
from bfsdata.train.stage import TrainError, train

STEPS = 4  # per epoch: a checkpoint every 4 steps


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ws = tmp_path_factory.mktemp("diverge") / "ws"
    build_workspace(ws, tiny_pipeline(steps_per_epoch=STEPS))
    return ws


def test_a_diverging_run_stops_at_once_with_one_message(ws: Path) -> None:
    t0 = time.perf_counter()
    with pytest.raises(TrainError) as caught:
        train(
            ws, tiny_pipeline(lr=10.0, epochs=25, steps_per_epoch=STEPS), name="hot", preview=False
        )
    msg = str(caught.value)
    # The total loss leaves 100x its first step's at step 2; ten steps in a row stop the run.
    assert "training diverged" in msg and "loss g_loss was" in msg and "at step 11" in msg
    assert "since step 2" in msg and "the part that rose most" in msg
    assert "train.optim.lr in the pipeline (now 10; try 1)" in msg
    assert "no checkpoint was kept" in msg
    run = ws / "runs" / "hot"
    assert not (run / "export").exists()
    assert not list((run / "checkpoints").glob("ckpt-*"))  # steps 4 and 8 had diverged
    assert time.perf_counter() - t0 < 120  # not 100 steps of a useless model


def test_the_last_good_checkpoint_is_kept_and_named(
    ws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bfsdata.model.export

    # The sound first epoch's export is not what is tested here, and costs most of its time.
    monkeypatch.setattr(bfsdata.model.export, "export", lambda g, out_dir, *a: out_dir)
    train(ws, tiny_pipeline(epochs=1, steps_per_epoch=STEPS), name="warm", preview=False)
    write_pipeline(ws / "hot.yaml", tiny_pipeline(lr=10.0, epochs=6, steps_per_epoch=STEPS))
    args = ["train", "-w", str(ws), "-p", str(ws / "hot.yaml"), "--name", "warm", "--resume"]
    res = CliRunner().invoke(app, [*args, "--no-preview"])
    assert res.exit_code == 1
    out = " ".join(res.output.split())
    assert out.count("training diverged") == 1 and "since step 6" in out
    assert "the last good checkpoint, ckpt-000000004, is kept (--resume continues from it)" in out
    kept = [p.name for p in (ws / "runs" / "warm" / "checkpoints").glob("ckpt-*")]
    assert kept == ["ckpt-000000004"]
