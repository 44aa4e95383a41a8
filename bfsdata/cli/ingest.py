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
    human_bytes,
    print_block,
)
from bfsdata.ingest import IngestSummary, ingest
from bfsdata.workspace import paths
from bfsdata.workspace.default_pipeline import FALLBACK, pipeline_for


@handle_errors
def command(
    raw: Annotated[Path, typer.Argument(help="Raw folder: <strip>/run_<r>/frame_<f>.png")],
    workspace: WorkspaceOpt = Path("."),
    pipeline: PipelineOpt = None,
    raw_format: Annotated[
        str,
        typer.Option(
            "--format",
            help="strips (<strip>/run_<r>/frame_<f>.png) or images (train/good, test/<defect>, "
            "ground_truth/<defect>: one image per item; default pipeline: images).",
        ),
    ] = "strips",
    frames: Annotated[
        int | None, typer.Option(help="Frames per acquisition (default: pipeline, 16).")
    ] = None,
    ranks: Annotated[
        str | None, typer.Option(help="Rank images to compute, e.g. '1,16' (min, max).")
    ] = None,
    skip_bad: Annotated[
        bool, typer.Option("--skip-bad", help="Ingest the rest; list refusals in rejected.parquet.")
    ] = False,
    workers: WorkersOpt = None,
    scheduler: SchedulerOpt = None,
    store: StoreOpt = None,
) -> None:
    """Validate RAW, decode every frame once, write frames + rank images and the manifest.

    Example: bfsdata ingest raw/ -w ws/ --pipeline demo; bfsdata ingest --format images bottle/
    """
    images = raw_format == "images"
    if images and (frames is not None or ranks is not None):
        raise ValueError("--frames and --ranks do not apply to --format images (one frame each)")
    given = {
        "acquisition.frames": frames,
        "acquisition.ranks": comma_list(ranks, "--ranks", int, example="1,16"),
    }
    pipe = pipeline_for(workspace, pipeline, given, fallback="images" if images else FALLBACK)
    opts = {"processes": workers, "scheduler": scheduler, "store": store}
    print_summary(ingest(raw, workspace, pipe, skip_bad=skip_bad, raw_format=raw_format, **opts))


def print_summary(s: IngestSummary) -> None:
    rate = s.frames / s.seconds if s.seconds else 0.0
    rows = [
        ("acquisitions found", f"{s.found} (labels from {s.label_source})"),
        ("already ingested", s.already),
        ("ingested now", f"{s.ingested} ({s.frames} frames, {human_bytes(s.bytes_read)})"),
    ]
    if s.rejected:
        rows.append(("refused", f"{s.rejected} (see {paths.manifest_key(paths.REJECTED)})"))
    rows += [
        ("in workspace", f"{s.total} acquisitions"),
        ("time", f"{s.seconds:.1f} s ({rate:.0f} frames/s)"),
    ]
    idle = s.ingested == 0 and not s.rejected
    notes = ["nothing to do: every acquisition is already ingested"] if idle else []
    print_block(f"ingest {s.raw} -> {s.workspace}", rows, notes)
