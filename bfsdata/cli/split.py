from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from bfsdata.cli.common import (
    PipelineOpt,
    WorkspaceOpt,
    console,
    handle_errors,
)
from bfsdata.split import SplitSummary, split
from bfsdata.workspace.default_pipeline import pipeline_for


@handle_errors
def command(
    workspace: WorkspaceOpt = Path("."),
    pipeline: PipelineOpt = None,
    val: Annotated[
        float | None, typer.Option(help="Share of training good strips for val (pipeline: 0.1).")
    ] = None,
    calib: Annotated[
        float | None,
        typer.Option(help="Share of the test kit for fitting thresholds; 0 = in-sample."),
    ] = None,
    test_good: Annotated[
        int | None, typer.Option(help="Good strips held out for the test kit, drawn at random.")
    ] = None,
    test_strips: Annotated[
        Path | None,
        typer.Option(help="File naming the test kit: one strip per line, or a CSV with 'strip'."),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the strip draw.")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Redraw every strip when the arguments changed.")
    ] = False,
) -> None:
    """Assign strips to train/val (good) and calib/test (the test kit); never split a strip.

    Example: bfsdata split -w ws/ --val 0.1 --test-good 10 --calib 0.5
    """
    given = {"val": val, "calib": calib, "test_good": test_good, "seed": seed}
    pipe = pipeline_for(workspace, pipeline, {f"split.{k}": v for k, v in given.items()})
    print_summary(split(workspace, pipe.split, test_strips=test_strips, force=force))


def print_summary(s: SplitSummary) -> None:
    a = s.args
    named = a["test_strips"] is not None
    kit = f"{len(a['test_strips'])} named in the list" if named else f"{a['test_good']} drawn"
    console.print(f"[bold]split[/] {s.workspace}")
    console.print(f"  arguments             seed {a['seed']}, val {a['val']}, calib {a['calib']}")
    console.print(f"  held-out good strips  {kit}")
    console.print(f"  strips in splits      {s.assigned} ({s.new} new, {s.kept} kept)")
    table = Table("split", "label", "strips", "acquisitions", "patches", box=None, padding=(0, 2))
    for r in s.strips.itertuples(index=False):
        table.add_row(r.split, r.label, str(r.strips), str(r.acquisitions), str(r.patches))
    console.print(table)
    if not s.regions.empty:
        wide = s.regions.pivot(index="split", columns="region", values="patches").fillna(0)
        wide = wide.reindex([x for x in s.strips["split"].unique() if x in wide.index])
        regions = Table("split", *[f"R{int(c)}" for c in wide.columns], box=None, padding=(0, 2))
        for split_name, counts in wide.iterrows():
            regions.add_row(str(split_name), *[str(int(v)) for v in counts])
        console.print("  patches per region")
        console.print(regions)
    for note in s.notes:
        console.print(f"  note: {note}")
    if not s.written:
        console.print("  nothing to do: every strip already has its split")
