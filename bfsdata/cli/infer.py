from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bfsdata.cli.common import PipelineOpt, WorkspaceOpt, console, handle_errors, workspace_pipeline


@handle_errors
def command(
    acquisitions: Annotated[
        list[Path], typer.Argument(help="Run folders (frame_<i>.png) or strip folders.")
    ],
    workspace: WorkspaceOpt = Path("."),
    pipeline: PipelineOpt = None,
    run: Annotated[str, typer.Option(help="Trained model: runs/<run>/export.")] = "default",
    report: Annotated[
        str | None, typer.Option(help="Thresholds from reports/<report>/ (default: the run).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default infer/<run>/).")] = None,
) -> None:
    """Decide new acquisitions: patch scores, vial and strip decisions, heatmap overlays.

    Example: bfsdata infer raw/S0042 -w ws/ --run first
    """
    pipe = workspace_pipeline(workspace, pipeline)
    ws = Path(workspace)
    thresholds = ws / "reports" / (report or run) / "thresholds.json"
    from bfsdata.infer import infer  # heavy (scipy): see cli/report.py

    s = infer(acquisitions, ws / "runs" / run, thresholds, pipe, out or ws / "infer" / run)
    console.print(f"[bold]infer[/] {len(s.acquisitions)} acquisition(s) -> {s.out_dir}")
    for r in s.acquisitions.itertuples(index=False):
        vials = ", ".join(map(str, r.rejected_vials)) or "-"
        verdict = "REJECT" if r.rejected else "accept"
        console.print(f"  {r.strip} run {r.run:<3d} {verdict:7s} vials {vials:12s} {r.ms:7.1f} ms")
    for r in s.strips.itertuples(index=False) if not s.strips.empty else ():
        console.print(f"  {r.strip}: {r.rejections}/{r.runs} runs rejected -> {r.decision}")
