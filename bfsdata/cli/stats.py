from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.table import Table

from bfsdata.cli.common import WorkspaceOpt, console, handle_errors, human_bytes
from bfsdata.stats import Stats, stats
from bfsdata.workspace.counts import in_split_order


@handle_errors
def command(
    workspace: WorkspaceOpt = Path("."),
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
    sample: Annotated[int, typer.Option(help="Patches sampled for intensity statistics.")] = 2000,
    seed: Annotated[int, typer.Option(help="Seed of the patch sample.")] = 0,
) -> None:
    """Counts per split/label/region/kind, store size and compression, patch intensities.

    Example: bfsdata stats -w ws/ --json
    """
    s = stats(workspace, sample=sample, seed=seed)
    if as_json:
        typer.echo(json.dumps(s.to_dict(), indent=2))
    else:
        print_summary(s)


def print_summary(s: Stats) -> None:
    im = s.image
    console.print(f"[bold]stats[/] {s.workspace}")
    console.print(
        f"  frames                {im['dtype']} {im['height']}x{im['width']}, "
        f"{im['n_frames']} per acquisition"
    )
    if s.patch_size:
        console.print(f"  patches               uint8 {s.patch_size}x{s.patch_size}")
    _table(s.strips, "strips per split and label")
    if not s.counts.empty:
        wide = s.counts.pivot_table(
            index=["split", "label", "kind"], columns="region", values="patches", aggfunc="sum"
        )
        wide = wide.fillna(0).astype(int).rename(columns=lambda r: f"R{r}").reset_index()
        _table(in_split_order(wide), "patches per split, label, kind and region")
    store = Table(
        "array", "shape", "dtype", "rows", "on disk", "raw", "ratio", box=None, padding=(0, 2)
    )
    for a in s.arrays:
        store.add_row(
            a.name,
            "x".join(map(str, a.shape)),
            a.dtype,
            str(a.rows),
            human_bytes(a.stored_bytes),
            human_bytes(a.raw_bytes),
            f"{a.ratio:.2f}",
        )
    console.print(f"  store                 {human_bytes(s.store_bytes)} on disk")
    console.print(store)
    if not s.intensity.empty:
        _table(s.intensity, "grey levels per region, over sampled patches")


def _table(df: pd.DataFrame, title: str) -> None:
    t = Table(*map(str, df.columns), box=None, padding=(0, 2))
    for row in df.itertuples(index=False):
        t.add_row(*map(str, row))
    console.print(f"  {title}")
    console.print(t)
