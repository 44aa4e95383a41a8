"""`bfsdata` command line: one module per command, each a thin wrapper over a stage function."""

from __future__ import annotations

import os

# TensorFlow's C++ start-up chatter (CUDA probing, XLA notices) is noise on a terminal; set
# TF_CPP_MIN_LOG_LEVEL=0 to see it again.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from typing import Annotated

import typer

from bfsdata import __version__
from bfsdata.cli import demo, ingest, patch, show, split, stats, synth, verify
from bfsdata.cli import infer as infer_cmd
from bfsdata.cli import report as report_cmd
from bfsdata.cli import train as train_cmd
from bfsdata.cli.common import setup_logging

app = typer.Typer(
    name="bfsdata",
    help="From raw BFS strip acquisitions to a validated anomaly detector.\n\n"
    "Typical chain: synth/ingest -> patch -> split -> train -> report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"bfsdata {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    setup_logging(verbose)


app.command("synth")(synth.command)
app.command("ingest")(ingest.command)
app.command("patch")(patch.command)
app.command("show")(show.command)
app.command("split")(split.command)
app.command("stats")(stats.command)
app.command("verify")(verify.command)
app.command("train")(train_cmd.command)
app.command("report")(report_cmd.command)
app.command("infer")(infer_cmd.command)
app.command("demo")(demo.command)


def main() -> None:
    app()
