from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bfsdata.cli.common import (
    PipelineOpt,
    WorkspaceOpt,
    comma_list,
    handle_errors,
    print_block,
)
from bfsdata.train.stage import TrainSummary, train
from bfsdata.workspace.default_pipeline import pipeline_for


@handle_errors
def command(
    workspace: WorkspaceOpt = Path("."),
    pipeline: PipelineOpt = None,
    name: Annotated[str, typer.Option(help="Run name: outputs go to runs/<name>/.")] = "default",
    model: Annotated[
        str | None,
        typer.Option(
            help="gan (GRD-Net) or variation (ideal and tolerance band per position, CPU, "
            "seconds; pipeline: train.method)."
        ),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from the newest checkpoint of the run.")
    ] = False,
    epochs: Annotated[int | None, typer.Option(help="Epochs (pipeline: train.optim).")] = None,
    steps: Annotated[
        int | None, typer.Option(help="Steps per epoch; 0 = one pass over the train split.")
    ] = None,
    batch: Annotated[int | None, typer.Option(help="Patches per step.")] = None,
    kinds: Annotated[
        str | None, typer.Option(help="Train on these kinds: frame,rank_min,rank_max.")
    ] = None,
    preview: Annotated[
        bool, typer.Option("--preview/--no-preview", help="PNG grids of X, X_n, M, X^ per epoch.")
    ] = True,
) -> None:
    """Train the GAN (residual autoencoder + critic) on the train split, streaming patches;
    or, with --model variation, the variation model (docs/model.md).

    Example: bfsdata train -w ws/ --name first --epochs 10
    """
    given = {
        "train.method": model,
        "train.optim.epochs": epochs,
        "train.optim.steps_per_epoch": steps,
        "train.optim.batch": batch,
        "train.kinds": comma_list(kinds, "--kinds"),
    }
    pipe = pipeline_for(workspace, pipeline, given)
    print_summary(train(workspace, pipe, name=name, resume=resume, preview=preview))


def print_summary(s: TrainSummary) -> None:
    start = f" (resumed at step {s.start_step})" if s.start_step else ""
    rows = [
        ("patches", f"{s.train_patches} train, {s.val_patches} val"),
        ("steps", f"{s.steps}{start}"),
    ]
    if not s.history.empty:
        last = s.history.iloc[-1]
        cols = [c for c in ("g_loss", "con", "ssim", "val_con", "val_ssim") if c in last]
        rows.append(("last epoch", ", ".join(f"{c} {last[c]:.4f}" for c in cols)))
        if "patches_per_s" in last:
            rows.append(("throughput", f"{last['patches_per_s']:.0f} patches/s"))
    rows += [("exported", s.export), ("time", f"{s.seconds:.0f} s")]
    print_block(f"train {s.run_dir}", rows)
