from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from bfsdata.cli.common import (
    PipelineOpt,
    SchedulerOpt,
    StoreOpt,
    WorkersOpt,
    WorkspaceOpt,
    console,
    handle_errors,
    print_block,
    remember_pipeline,
    workspace_pipeline,
)
from bfsdata.config.pipeline import KINDS
from bfsdata.patch.stage import PatchSummary, patch
from bfsdata.show import write_contact_sheet
from bfsdata.store.location import attached
from bfsdata.workspace import manifest
from bfsdata.workspace.lock import workspace_lock
from bfsdata.workspace.parallel import cluster


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
    pipe = workspace_pipeline(workspace, pipeline)
    lay = pipe.layout.with_counts(vials, regions)
    if layout is not None:
        lay = dataclasses.replace(lay, mode=layout)
    pc = pipe.patch
    if frames is not None:
        pc = dataclasses.replace(pc, frames=frames)
    if kinds is not None:
        pc = dataclasses.replace(pc, kinds=tuple(k.strip() for k in kinds.split(",") if k.strip()))
    pipe = dataclasses.replace(pipe, layout=lay, patch=pc)
    with workspace_lock(workspace, "patch"):
        with attached(workspace, store), cluster(workers, scheduler) as address:
            s = patch(workspace, pipe, skip_bad=skip_bad, scheduler=address)
        remember_pipeline(workspace, pipe)
    print_summary(s)
    if preview:
        first = manifest.read(Path(workspace), manifest.PATCHES).iloc[0]  # something that was cut
        out = write_contact_sheet(
            workspace,
            Path(workspace) / "previews" / f"acq-{first.acq}.png",
            acq=int(first.acq),
            kind=str(first.kind),
            frame=int(max(first.frame, 0)),
        )
        console.print(f"  preview               {out}")


def print_summary(s: PatchSummary) -> None:
    rate = s.patches / s.seconds if s.seconds else 0.0
    rows = [
        ("acquisitions", f"{s.acquisitions} ({s.already} patched before)"),
        ("patched now", f"{s.patched} x {s.per_acquisition} = {s.patches} patches"),
    ]
    if s.rejected:
        rows.append(("refused", f"{s.rejected} (see manifests/rejected.parquet)"))
    rows += [
        ("patches in workspace", s.total),
        ("time", f"{s.seconds:.1f} s ({rate:.0f} patches/s)"),
    ]
    idle = s.patched == 0 and not s.rejected
    notes = ["nothing to do: every acquisition is already patched"] if idle else []
    print_block(f"patch {s.workspace}", rows, notes)
