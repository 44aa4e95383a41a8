from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bfsdata.cli.common import handle_errors, print_block
from bfsdata.synth import SynthSummary, synth
from bfsdata.synth.looks import LOOKS, look_config


def _knob(help: str) -> typer.models.OptionInfo:
    """A look knob's option: not given (None) keeps the look's value."""
    return typer.Option(help=f"{help} (default: the look's)")


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
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same bytes.")] = 0,
    workers: Annotated[int, typer.Option(help="Writer threads.")] = 2,
    look: Annotated[
        str, typer.Option(help=f"Named set of the knobs below: {', '.join(LOOKS)}.")
    ] = "default",
    bit_depth: Annotated[int | None, _knob("8, 12 (12 bits in 16-bit PNGs) or 16 bits.")] = None,
    severity: Annotated[
        str | None,
        _knob("Share lo,hi of each defect range drawn from: 0,1 all, 0.5,1 visible."),
    ] = None,
    defect_size: Annotated[
        str | None, _knob("Share lo,hi of each defect size range; none: --severity.")
    ] = None,
    rims: Annotated[
        str | None, _knob("Rims of moving bubbles and drops: dark, bright or both.")
    ] = None,
    clutter: Annotated[float | None, _knob("Factor on moving bubbles and drops.")] = None,
    body_width: Annotated[float | None, _knob("Body width, share of the vial pitch.")] = None,
    flag_width: Annotated[float | None, _knob("Flag width, share of the vial pitch.")] = None,
    vial_gap: Annotated[float | None, _knob("Px between separate vials; 0 joined.")] = None,
    neck_length: Annotated[float | None, _knob("Neck length, px.")] = None,
    strip_scale: Annotated[float | None, _knob("Strip size in the image (< 1: margins).")] = None,
    gradient: Annotated[float | None, _knob("Share of light lost at the dim side.")] = None,
    gradient_deg: Annotated[float | None, _knob("Degrees the light grows to: 0 right.")] = None,
    noise_sigma: Annotated[float | None, _knob("Sensor noise, grey levels (8-bit).")] = None,
    gain: Annotated[str | None, _knob("Re-grip illumination gain range lo,hi.")] = None,
) -> None:
    """Write synthetic BFS strip acquisitions (raw layout, labels.csv with defect locations).

    A look (bfsdata.synth.looks, docs/synth-looks.md) sets the knobs; an option given here
    overrides the look's value. The knobs are SynthConfig's fields, units in its docstring.

    Example: bfsdata synth raw/ --strips 8 --runs 10 --height 256 --width 320 --look bubbly
    """
    knobs = {
        "bit_depth": bit_depth,
        "severity": _range(severity, "--severity"),
        "defect_size": _range(defect_size, "--defect-size"),
        "rims": rims,
        "clutter": clutter,
        "body_width": body_width,
        "flag_width": flag_width,
        "vial_gap": vial_gap,
        "neck_length": neck_length,
        "strip_scale": strip_scale,
        "gradient": gradient,
        "gradient_deg": gradient_deg,
        "noise_sigma": noise_sigma,
        "gain": _range(gain, "--gain"),
    }
    cfg = look_config(
        look,
        strips=strips,
        runs=runs,
        frames=frames,
        height=height,
        width=width,
        defect_fraction=defect_fraction,
        seed=seed,
        workers=workers,
        **{k: v for k, v in knobs.items() if v is not None},
    )
    print_summary(synth(out, cfg))


def _range(text: str | None, option: str) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"{option} {text!r}: expected two numbers lo,hi, e.g. 0.5,1") from None
    return lo, hi


def print_summary(s: SynthSummary) -> None:
    n = s.strips * s.runs * s.frames
    rows = [
        ("strips", f"{s.strips} ({s.defective} with defects)"),
        ("acquisitions", f"{s.strips * s.runs} ({s.frames} frames each)"),
        ("time", f"{s.seconds:.1f} s ({n / max(s.seconds, 1e-9):.0f} frames/s)"),
    ]
    print_block(f"synth {s.out}", rows)
