from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bfsdata.cli import ingest as ingest_cli
from bfsdata.cli import patch as patch_cli
from bfsdata.cli import report as report_cli
from bfsdata.cli import split as split_cli
from bfsdata.cli import synth as synth_cli
from bfsdata.cli import train as train_cli
from bfsdata.cli.common import WorkersOpt, console, handle_errors
from bfsdata.demo import STRIPS, demo

# Each stage's summary as its own command prints it; the contact sheet as one line.
PRINTERS = {
    "synth": synth_cli.print_summary,
    "ingest": ingest_cli.print_summary,
    "patch": patch_cli.print_summary,
    "preview": lambda path: console.print(f"[bold]preview[/] {path}"),
    "split": split_cli.print_summary,
    "train": train_cli.print_summary,
    "report": report_cli.print_summary,
}


@handle_errors
def command(
    workspace: Annotated[
        Path, typer.Option("--workspace", "-w", help="Fresh folder for the demo workspace.")
    ] = Path("demo-workspace"),
    strips: Annotated[int, typer.Option(help="Synthetic strips.")] = STRIPS,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    workers: WorkersOpt = None,
) -> None:
    """The whole chain on synthetic data in a fresh workspace (pipeline `demo`).

    Example: bfsdata demo -w /tmp/demo
    """
    s = demo(
        workspace,
        strips=strips,
        seed=seed,
        workers=workers,
        on_stage=lambda stage, summary: PRINTERS[stage](summary),
    )
    console.print(f"[bold]open[/] {s.report_html.resolve()}")
