from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bfsdata.cli.common import PipelineOpt, WorkspaceOpt, console, handle_errors
from bfsdata.workspace import paths
from bfsdata.workspace.default_pipeline import pipeline_for


@handle_errors
def command(
    acquisitions: Annotated[
        list[Path], typer.Argument(help="Run folders (frame_<i>.png) or strip folders.")
    ],
    workspace: WorkspaceOpt = Path("."),
    pipeline: PipelineOpt = None,
    run: Annotated[str, typer.Option(help="Trained model: runs/<run>/export.")] = "default",
    report: Annotated[
        str | None,
        typer.Option(
            help="Thresholds from reports/<report>/ (default: the run); a comparison report "
            "applies its fused decision with each of its runs' models."
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default infer/<run>/).")] = None,
) -> None:
    """Decide new acquisitions: patch scores, vial and strip decisions, heatmap overlays.

    Example: bfsdata infer raw/S0042 -w ws/ --run first
    """
    pipe = pipeline_for(workspace, pipeline)
    run_dir = paths.run_dir(workspace, run, "--run")
    if report is None:
        thresholds = paths.thresholds_file(workspace, run, "--run")
    else:
        thresholds = paths.thresholds_file(workspace, report, "--report")
    from bfsdata.infer import infer  # heavy (scipy): see cli/report.py
    from bfsdata.infer.fused import infer_fused, is_fused

    if report is not None and is_fused(thresholds):  # a comparison report: its runs, fused
        where = out or paths.infer_dir(workspace, report, "--report")
        s = infer_fused(acquisitions, workspace, thresholds, pipe, where)
    else:
        s = infer(acquisitions, run_dir, thresholds, pipe, out or paths.infer_dir(workspace, run))
    console.print(f"[bold]infer[/] {len(s.acquisitions)} acquisition(s) -> {s.out_dir}")
    for r in s.acquisitions.itertuples(index=False):
        vials = ", ".join(map(str, r.rejected_vials)) or "-"
        verdict = "REJECT" if r.rejected else "accept"
        console.print(f"  {r.strip} run {r.run:<3d} {verdict:7s} vials {vials:12s} {r.ms:7.1f} ms")
    for r in s.strips.itertuples(index=False) if not s.strips.empty else ():
        console.print(f"  {r.strip}: {r.rejections}/{r.runs} runs rejected -> {r.decision}")
