from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

import typer

from bfsdata.cli import ingest as ingest_cli
from bfsdata.cli import patch as patch_cli
from bfsdata.cli import report as report_cli
from bfsdata.cli import split as split_cli
from bfsdata.cli import synth as synth_cli
from bfsdata.cli import train as train_cli
from bfsdata.cli.common import (
    WorkersOpt,
    console,
    handle_errors,
    remember_pipeline,
    workspace_pipeline,
)
from bfsdata.ingest import ingest
from bfsdata.patch.stage import patch
from bfsdata.show import write_contact_sheet
from bfsdata.split import split
from bfsdata.synth import SynthConfig, synth
from bfsdata.train.stage import train
from bfsdata.workspace.parallel import cluster

MARKER = ".bfsdata-demo"  # a folder holding this file may be wiped and rebuilt by `demo`


@handle_errors
def command(
    workspace: Annotated[
        Path, typer.Option("--workspace", "-w", help="Fresh folder for the demo workspace.")
    ] = Path("demo-workspace"),
    # 60: a test kit of 8 good and ~10 defective strips (190 acquisitions), so the accuracy's
    # interval is narrow enough to say something, and 20 good strips to train on.
    strips: Annotated[int, typer.Option(help="Synthetic strips.")] = 60,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    workers: WorkersOpt = None,
) -> None:
    """The whole chain on synthetic data in a fresh workspace (pipeline `demo`).

    Example: bfsdata demo -w /tmp/demo
    """
    ws = _fresh(workspace)
    pipe = workspace_pipeline(ws, "demo")
    remember_pipeline(ws, pipe)
    ref_h, ref_w = pipe.layout.reference_size
    cfg = SynthConfig(
        strips=strips,
        runs=10,
        frames=pipe.acquisition.frames,
        height=ref_h // 4,
        width=ref_w // 4,
        defect_fraction=0.35,
        # At 1/4 scale the smaller half of each defect range is under a pixel or a few grey
        # levels: no camera at this resolution would see it. The demo draws the visible end.
        severity=(0.85, 1.0),
        seed=seed,
        workers=workers or 2,
    )
    raw = ws / "raw"
    synth_cli.print_summary(synth(raw, cfg))
    with cluster(workers) as address:  # --workers N: N worker processes, as in ingest/patch
        ingest_cli.print_summary(raw, ingest(raw, ws, pipe, scheduler=address))
        patch_cli.print_summary(patch(ws, pipe, scheduler=address))
    sheet = write_contact_sheet(ws, ws / "previews" / "acq-0.png", acq=0)
    console.print(f"[bold]preview[/] {sheet}")
    split_cli.print_summary(split(ws, pipe.split))
    train_cli.print_summary(train(ws, pipe, name="demo"))
    from bfsdata.report import report  # heavy (matplotlib, scipy): see cli/report.py

    report_cli.print_summary(report(ws, pipe, run="demo"))
    console.print(f"[bold]open[/] {(ws / 'reports' / 'demo' / 'report.html').resolve()}")


def _fresh(workspace: Path) -> Path:
    ws = Path(workspace)
    if ws.exists() and any(ws.iterdir()):
        if not (ws / MARKER).exists():
            raise ValueError(
                f"{ws} exists and is not a demo workspace; give --workspace a new folder"
            )
        shutil.rmtree(ws)
    ws.mkdir(parents=True, exist_ok=True)
    (ws / MARKER).write_text("made by `bfsdata demo`; the next demo run deletes this folder\n")
    return ws
