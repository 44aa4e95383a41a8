from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from bfsdata import store
from bfsdata.cli.common import PipelineOpt, WorkspaceOpt, console, handle_errors, workspace_pipeline
from bfsdata.crop import to_uint8
from bfsdata.report import report
from bfsdata.score import reconstruct, score, scoring_rows


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
) -> None:
    """Score calib/test/val patches, fit thresholds, write metrics, thresholds and report.html.

    Example: bfsdata report -w ws/ --run first --policy accuracy --manual knapp_manual.csv
    """
    pipe = workspace_pipeline(workspace, pipeline)
    cfg = pipe.report if policy is None else dataclasses.replace(pipe.report, policy=policy)
    ws = Path(workspace)
    run_dir = ws / "runs" / run
    out_dir = ws / "reports" / (name or run)
    manual_df = _read_manual(manual) if manual else None
    scored, timing = score(ws, run_dir, scoring_rows(ws, pipe), out_dir, batch=cfg.batch)
    root = store.open_root(ws, mode="r")
    summary = report(
        ws,
        run,
        scored,
        timing,
        cfg,
        out_dir=out_dir,
        manual=manual_df,
        gallery=reconstruct(ws, run_dir),
        strip_image=lambda acq, frame: to_uint8(root["frames"][acq, frame]),
        patch_size=pipe.patch.size,
    )
    tmp = out_dir / ".scores.parquet.tmp"
    scored.to_parquet(tmp, index=False)
    tmp.replace(out_dir / "scores.parquet")
    for line in summary.lines():
        console.print(line)


def _read_manual(path: Path) -> pd.DataFrame:
    try:
        df = pd.read_csv(path)
    except (OSError, pd.errors.ParserError) as e:
        raise ValueError(f"{path}: cannot read the manual Knapp file ({e})") from None
    missing = {"strip", "rejections", "inspections"} - set(df.columns)
    if missing:
        raise ValueError(
            f"{path}: missing column(s) {', '.join(sorted(missing))}; "
            "expected strip,rejections,inspections"
        )
    return df
