from __future__ import annotations

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
)
from bfsdata.workspace.default_pipeline import pipeline_for

if TYPE_CHECKING:
    from bfsdata.report.compare_stage import Comparison
    from bfsdata.report.write import ReportSummary


@handle_errors
def command(
    workspace: WorkspaceOpt = Path("."),
    pipeline: PipelineOpt = None,
    run: Annotated[
        list[str] | None,
        typer.Option(
            help="Training run to evaluate (runs/<run>/); repeat it to compare runs and fuse "
            "them (reject when any rejects) in reports/<name>/."
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            help="Report name: reports/<name>/ (default: the run name; runs joined by '_')."
        ),
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
    Compare and fuse: bfsdata report -w ws/ --run gan1 --run var1
    """
    pipe = pipeline_for(workspace, pipeline, {"report.policy": policy})
    # Here, not at the top: evaluate pulls in matplotlib and scipy (1.4 s), which every other
    # command would pay at start-up through the CLI's imports.
    from bfsdata.report import report

    opts = {"processes": workers, "scheduler": scheduler, "store": store}
    runs = run or ["default"]
    if len(runs) == 1:
        print_summary(report(workspace, pipe, run=runs[0], name=name, manual=manual, **opts))
        return
    from bfsdata.report.compare_stage import compare_runs

    print_summary(compare_runs(workspace, pipe, runs, name=name, manual=manual, **opts))


def print_summary(s: ReportSummary | Comparison) -> None:
    for line in s.lines():
        console.print(line)
