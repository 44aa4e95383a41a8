from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bfsdata.cli.common import handle_errors, print_block
from bfsdata.synth import SynthConfig, SynthSummary, synth


@handle_errors
def command(
    out: Annotated[
        Path, typer.Argument(help="Folder to write the raw layout into (new or empty).")
    ],
    strips: Annotated[int, typer.Option(help="Number of strips.")] = 4,
    runs: Annotated[int, typer.Option(help="Acquisitions (runs) per strip.")] = 10,
    frames: Annotated[int, typer.Option(help="Frames per acquisition.")] = 16,
    height: Annotated[int, typer.Option(help="Frame height, px.")] = 1024,
    width: Annotated[int, typer.Option(help="Frame width, px.")] = 1280,
    defect_fraction: Annotated[float, typer.Option(help="Share of strips with defects.")] = 0.5,
    bit_depth: Annotated[int, typer.Option(help="8 or 16-bit PNGs.")] = 8,
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same bytes.")] = 0,
    workers: Annotated[int, typer.Option(help="Writer threads.")] = 2,
    severity: Annotated[
        str,
        typer.Option(help="Share lo,hi of each defect range drawn from: 0,1 all, 0.5,1 visible."),
    ] = "0,1",
) -> None:
    """Write synthetic BFS strip acquisitions (raw layout, labels.csv with defect locations).

    Example: bfsdata synth raw/ --strips 8 --runs 10 --height 256 --width 320
    """
    cfg = SynthConfig(
        strips=strips,
        runs=runs,
        frames=frames,
        height=height,
        width=width,
        defect_fraction=defect_fraction,
        bit_depth=bit_depth,
        seed=seed,
        workers=workers,
        severity=_range(severity),
    )
    print_summary(synth(out, cfg))


def _range(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--severity {text!r}: expected two numbers lo,hi, e.g. 0.5,1") from None
    return lo, hi


def print_summary(s: SynthSummary) -> None:
    n = s.strips * s.runs * s.frames
    rows = [
        ("strips", f"{s.strips} ({s.defective} with defects)"),
        ("acquisitions", f"{s.strips * s.runs} ({s.frames} frames each)"),
        ("time", f"{s.seconds:.1f} s ({n / max(s.seconds, 1e-9):.0f} frames/s)"),
    ]
    print_block(f"synth {s.out}", rows)
