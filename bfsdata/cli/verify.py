from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from bfsdata.cli.common import WorkspaceOpt, console, handle_errors
from bfsdata.verify import VerifyReport, verify


@handle_errors
def command(
    workspace: WorkspaceOpt = Path("."),
    sample: Annotated[
        int, typer.Option(help="Acquisitions whose rank images and patches are recomputed.")
    ] = 32,
    all_: Annotated[bool, typer.Option("--all", help="Recompute every acquisition.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the sample.")] = 0,
) -> None:
    """Check that manifests and store agree, recomputing a sample; exit 1 on any problem.

    Example: bfsdata verify -w ws/ --all
    """
    report = verify(workspace, sample=None if all_ else sample, seed=seed)
    print_summary(report)
    if not report.ok:
        raise typer.Exit(1)


def print_summary(r: VerifyReport) -> None:
    console.print(f"[bold]verify[/] {r.workspace}")
    console.print(
        f"  manifest rows         {r.acquisitions} acquisitions, {r.patches} patches, "
        f"{r.strips_split} split strips"
    )
    console.print(
        f"  recomputed            {r.ranks_recomputed} acquisitions' rank images, "
        f"{r.patches_recomputed} patches"
    )
    if r.ok:
        console.print("  [green]ok[/]: every row points at its data, and nothing else is stored")
        return
    console.print(f"  [red]{len(r.problems)} problem(s)[/]:")
    for p in r.problems:
        console.print(f"  - {escape(p)}", soft_wrap=True)  # `[rule: store]` is no markup
