from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bfsdata.cli.common import (
    PipelineOpt,
    SchedulerOpt,
    StoreOpt,
    WorkersOpt,
    WorkspaceOpt,
    console,
    handle_errors,
    workspace_pipeline,
)
from bfsdata.store.location import attached
from bfsdata.workspace.parallel import cluster

if TYPE_CHECKING:
    from bfsdata.report.write import ReportSummary


@handle_errors
def command(
    workspace: WorkspaceOpt = Path("."),
    pipeline: PipelineOpt = None,
    run: Annotated[str, typer.Option(help="Training run to evaluate (runs/<run>/).")] = "default",
    name: Annotated[
        str | None, typer.Option(help="Report name: reports/<name>/ (default: the run name).")
    ] = None,
    policy: Annotated[
        str | None, typer.Option(help="Threshold policy: accuracy | balanced | frr:X | escape:X.")
    ] = None,
    manual: Annotated[
        Path | None,
        typer.Option(help="CSV strip,rejections,inspections: manual Knapp results (FQV)."),
    ] = None,
    workers: WorkersOpt = None,
    scheduler: SchedulerOpt = None,
    store: StoreOpt = None,
) -> None:
    """Score calib/test/val patches, fit thresholds, write metrics, thresholds and report.html.

    Example: bfsdata report -w ws/ --run first --policy accuracy --manual knapp_manual.csv
    """
    pipe = workspace_pipeline(workspace, pipeline)
    cfg = pipe.report if policy is None else dataclasses.replace(pipe.report, policy=policy)
    # Here, not at the top: evaluate pulls in matplotlib and scipy (1.4 s), which every other
    # command would pay at start-up through the CLI's imports.
    from bfsdata.report import read_manual, report

    manual_df = read_manual(manual) if manual else None
    with attached(workspace, store), cluster(workers, scheduler) as address:
        s = report(
            workspace, pipe, run=run, name=name, cfg=cfg, manual=manual_df, scheduler=address
        )
    print_summary(s)


def print_summary(s: ReportSummary) -> None:
    for line in s.lines():
        console.print(line)
