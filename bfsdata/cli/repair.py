from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from bfsdata.cli.common import WorkspaceOpt, handle_errors, print_block
from bfsdata.repair import RepairSummary, repair
from bfsdata.workspace import paths


@handle_errors
def command(workspace: WorkspaceOpt = Path(".")) -> None:
    """Rebuild missing or damaged store shards from the raw data; exit 1 if problems remain.

    Runs `verify --all`, decodes damaged acquisitions again from the raw files their manifest
    rows record (only if those files are unchanged), cuts damaged patch shards again, and
    removes from the manifests what cannot be rebuilt (listed in rejected.parquet).

    Example: bfsdata repair -w ws/
    """
    summary = repair(workspace)
    print_summary(summary)
    if summary.left:
        raise typer.Exit(1)


def print_summary(s: RepairSummary) -> None:
    rows = [
        ("damaged shards found", s.found),
        ("rebuilt", f"{s.acquisitions} acquisitions (frames, rank), {s.patch_shards} patch shards"),
    ]
    if s.removed:
        rows.append(
            ("removed", f"{s.removed} acquisitions (see {paths.manifest_key(paths.REJECTED)})")
        )
    rows.append(("time", f"{s.seconds:.1f} s"))
    if s.left:
        notes = [f"[red]{len(s.left)} problem(s) left[/] (repair rebuilds shards, nothing else):"]
        notes += [f"- {escape(p)}" for p in s.left]
    elif s.found:
        notes = ["[green]ok[/]: `bfsdata verify --all` passes"]
    else:
        notes = ["nothing to do: `bfsdata verify --all` finds every shard whole"]
    print_block(f"repair {s.workspace}", rows, notes)
