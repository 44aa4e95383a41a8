from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bfsdata.cli.common import WorkspaceOpt, console, handle_errors
from bfsdata.show import write_contact_sheet


@handle_errors
def command(
    workspace: WorkspaceOpt = Path("."),
    acq: Annotated[int, typer.Option(help="Acquisition row (acquisitions.parquet: acq).")] = 0,
    kind: Annotated[str, typer.Option(help="frame | rank_min | rank_max")] = "frame",
    frame: Annotated[int, typer.Option(help="Frame index, for --kind frame.")] = 0,
    out: Annotated[
        Path | None, typer.Option(help="PNG path (default previews/acq-<n>.png).")
    ] = None,
) -> None:
    """Write a PNG contact sheet: the strip with its crop boxes and its patches, labelled.

    Example: bfsdata show -w ws/ --acq 3 --kind rank_max
    """
    path = write_contact_sheet(workspace, out, acq=acq, kind=kind, frame=frame)
    console.print(f"contact sheet: {path}")
