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
    handle_errors,
    human_bytes,
    print_block,
    remember_pipeline,
    workspace_pipeline,
)
from bfsdata.config.pipeline import AcquisitionConfig
from bfsdata.ingest import IngestSummary, ingest
from bfsdata.store.location import attached
from bfsdata.workspace.lock import workspace_lock
from bfsdata.workspace.parallel import cluster


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
    if raw_format not in ("strips", "images"):
        raise ValueError(f"--format {raw_format!r}: expected strips or images")
    images = raw_format == "images"
    if images and (frames is not None or ranks is not None):
        raise ValueError("--frames and --ranks do not apply to --format images (one frame each)")
    if images and pipeline is None and not (Path(workspace) / "pipeline.yaml").exists():
        pipeline = "images"
    pipe = workspace_pipeline(workspace, pipeline)
    acq = pipe.acquisition
    if frames is not None or ranks is not None:
        n = frames if frames is not None else acq.frames
        try:
            rk = tuple(int(r) for r in ranks.split(",")) if ranks else (1, n)
        except ValueError:
            raise ValueError(
                f"--ranks {ranks!r}: expected a comma list of ranks 1..{n}, e.g. 1,{n}"
            ) from None
        acq = AcquisitionConfig(
            frames=n, ranks=rk, test_frames=tuple(f for f in acq.test_frames if f < n)
        )
        pipe = dataclasses.replace(pipe, acquisition=acq)
    with workspace_lock(workspace, "ingest"):
        with attached(workspace, store), cluster(workers, scheduler) as address:
            s = ingest(
                raw, workspace, pipe, skip_bad=skip_bad, scheduler=address, raw_format=raw_format
            )
        remember_pipeline(workspace, pipe)
    print_summary(raw, s)


def print_summary(raw: Path, s: IngestSummary) -> None:
    rate = s.frames / s.seconds if s.seconds else 0.0
    rows = [
        ("acquisitions found", f"{s.found} (labels from {s.label_source})"),
        ("already ingested", s.already),
        ("ingested now", f"{s.ingested} ({s.frames} frames, {human_bytes(s.bytes_read)})"),
    ]
    if s.rejected:
        rows.append(("refused", f"{s.rejected} (see manifests/rejected.parquet)"))
    rows += [
        ("in workspace", f"{s.total} acquisitions"),
        ("time", f"{s.seconds:.1f} s ({rate:.0f} frames/s)"),
    ]
    idle = s.ingested == 0 and not s.rejected
    notes = ["nothing to do: every acquisition is already ingested"] if idle else []
    print_block(f"ingest {raw} -> {s.workspace}", rows, notes)
