"""`bfsdata demo`: the whole chain on synthetic data in a fresh workspace (pipeline `demo`).

synth -> ingest -> patch -> a contact sheet -> split -> train -> report, each stage called as a
Python caller would call it, each holding the workspace as it does alone
(bfsdata.workspace.session). The workspace is wiped first, but only one the demo made: it
holds the file `.bfsdata-demo`.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bfsdata.config.files import load_pipeline
from bfsdata.config.pipeline import Pipeline
from bfsdata.ingest import ingest
from bfsdata.patch.stage import patch
from bfsdata.show import write_contact_sheet
from bfsdata.split import split
from bfsdata.synth import SynthConfig, synth
from bfsdata.train.stage import train
from bfsdata.workspace import paths

# 60: a test kit of 8 good and ~10 defective strips (190 acquisitions), so the accuracy's
# interval is narrow enough to say something, and 20 good strips to train on.
STRIPS = 60
MARKER = ".bfsdata-demo"  # a folder holding this file may be wiped and rebuilt by `demo`
RAW = "raw"  # in the demo workspace: the synthetic acquisitions
RUN = "demo"  # the training run and its report
# What `on_stage` is called with, in this order: (stage, its summary; a Path for the preview)
STAGES = ("synth", "ingest", "patch", "preview", "split", "train", "report")


@dataclass(frozen=True)
class DemoSummary:
    workspace: Path
    report_html: Path


def demo(
    workspace: Path,
    *,
    strips: int = STRIPS,
    seed: int = 0,
    workers: int | None = None,
    on_stage: Callable[[str, Any], None] = lambda stage, summary: None,
) -> DemoSummary:
    """Run the chain in `workspace` (new, empty, or an earlier demo's, which is wiped).

    workers: worker processes for ingest and patch (None: threads). `on_stage(stage, summary)`
    is called as each stage ends, e.g. to print its summary.
    """
    ws = fresh_workspace(workspace)
    pipe = load_pipeline("demo")
    return chain(ws, pipe, synth_config(pipe, strips, seed, workers), workers, on_stage)


def chain(
    ws: Path,
    pipe: Pipeline,
    cfg: SynthConfig,
    workers: int | None = None,
    on_stage: Callable[[str, Any], None] = lambda stage, summary: None,
) -> DemoSummary:
    """The demo's stages in workspace `ws` (fresh_workspace): strips drawn by `cfg`, every
    stage with `pipe`. benchmarks/quality.py runs it per synthetic look."""
    raw = ws / RAW
    on_stage("synth", synth(raw, cfg))
    on_stage("ingest", ingest(raw, ws, pipe, processes=workers))
    on_stage("patch", patch(ws, pipe, processes=workers))
    on_stage("preview", write_contact_sheet(ws, paths.preview_file(ws, 0), acq=0))
    on_stage("split", split(ws, pipe.split))
    on_stage("train", train(ws, pipe, name=RUN))
    from bfsdata.report import report  # heavy (matplotlib, scipy): only when it is reached

    rep = report(ws, pipe, run=RUN)
    on_stage("report", rep)
    return DemoSummary(workspace=ws, report_html=rep.paths["html"])


def synth_config(pipe: Pipeline, strips: int, seed: int, workers: int | None) -> SynthConfig:
    """Strips at 1/4 of the pipeline's reference size, 10 runs each, a third defective."""
    ref_h, ref_w = pipe.layout.reference_size
    return SynthConfig(
        strips=strips,
        runs=10,
        frames=pipe.acquisition.frames,
        height=ref_h // 4,
        width=ref_w // 4,
        defect_fraction=0.35,
        # At 1/4 scale the smaller half of each defect range is under a pixel or a few grey
        # levels: no camera at this resolution would see it. The demo draws the visible end.
        severity=(0.85, 1.0),
        seed=seed,
        workers=workers or 2,
    )


def fresh_workspace(workspace: Path) -> Path:
    """`workspace`, created empty; refused if it holds anything but an earlier demo."""
    ws = Path(workspace)
    if ws.exists() and any(ws.iterdir()):
        if not (ws / MARKER).exists():
            raise ValueError(
                f"{ws} exists and is not a demo workspace; give --workspace a new folder"
            )
        shutil.rmtree(ws)
    ws.mkdir(parents=True, exist_ok=True)
    (ws / MARKER).write_text("made by `bfsdata demo`; the next demo run deletes this folder\n")
    return ws
