from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bfsdata.cli.common import (
    PipelineOpt,
    SchedulerOpt,
    StoreOpt,
    WorkersOpt,
    WorkspaceOpt,
    comma_list,
    handle_errors,
    print_block,
)
from bfsdata.config.pipeline import KINDS
from bfsdata.patch.stage import PatchSummary, patch
from bfsdata.workspace import paths
from bfsdata.workspace.default_pipeline import pipeline_for


@handle_errors
def command(
    workspace: WorkspaceOpt = Path("."),
    pipeline: PipelineOpt = None,
    regions: Annotated[int | None, typer.Option(help="Regions per vial (pipeline: 4).")] = None,
    vials: Annotated[int | None, typer.Option(help="Vials per strip (pipeline: 5).")] = None,
    layout: Annotated[
        str | None, typer.Option(help="fixed or auto (strips), grid or resize (image folders).")
    ] = None,
    frames: Annotated[
        str | None, typer.Option(help="all | first-eighth-last | comma list such as 0,7,15.")
    ] = None,
    kinds: Annotated[str | None, typer.Option(help=f"Comma list of {', '.join(KINDS)}.")] = None,
    preview: Annotated[
        bool, typer.Option("--preview", help="Also write previews/acq-0.png (contact sheet).")
    ] = False,
    skip_bad: Annotated[
        bool, typer.Option("--skip-bad", help="Go on past acquisitions that fail to register.")
    ] = False,
    workers: WorkersOpt = None,
    scheduler: SchedulerOpt = None,
    store: StoreOpt = None,
) -> None:
    """Cut vials x regions of every frame and rank image into 256x256 patches.

    Example: bfsdata patch --regions 4 -w ws/
    """
    given = {
        "layout.vials": vials,
        "layout.regions": regions,
        "layout.mode": layout,
        "patch.frames": frames,
        "patch.kinds": comma_list(kinds, "--kinds"),
    }
    pipe = pipeline_for(workspace, pipeline, given)
    opts = {"processes": workers, "scheduler": scheduler, "store": store}
    print_summary(patch(workspace, pipe, skip_bad=skip_bad, preview=preview, **opts))


def print_summary(s: PatchSummary) -> None:
    rate = s.patches / s.seconds if s.seconds else 0.0
    rows = [
        ("acquisitions", f"{s.acquisitions} ({s.already} patched before)"),
        ("patched now", f"{s.patched} x {s.per_acquisition} = {s.patches} patches"),
    ]
    if s.rejected:
        rows.append(("refused", f"{s.rejected} (see {paths.manifest_key(paths.REJECTED)})"))
    rows += [
        ("patches in workspace", s.total),
        ("time", f"{s.seconds:.1f} s ({rate:.0f} patches/s)"),
    ]
    idle = s.patched == 0 and not s.rejected
    notes = ["nothing to do: every acquisition is already patched"] if idle else []
    if s.preview is not None:
        rows.append(("preview", s.preview))
    print_block(f"patch {s.workspace}", rows, notes)
