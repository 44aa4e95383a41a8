"""`bfsdata` command line: one module per command, each a thin wrapper over a stage function."""

from __future__ import annotations

from typing import Annotated

import typer

from bfsdata import __version__, tf_logs
from bfsdata.cli import demo, ingest, patch, repair, show, split, stats, synth, verify
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
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            "-v",
            help="Debug logging, and TensorFlow's own logs (CUDA probing, oneDNN notices); "
            f"also {tf_logs.VERBOSE_ENV}=1.",
        ),
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    setup_logging(verbose or tf_logs.env_verbose())


app.command("synth")(synth.command)
app.command("ingest")(ingest.command)
app.command("patch")(patch.command)
app.command("show")(show.command)
app.command("split")(split.command)
app.command("stats")(stats.command)
app.command("verify")(verify.command)
app.command("repair")(repair.command)
app.command("train")(train_cmd.command)
app.command("report")(report_cmd.command)
app.command("infer")(infer_cmd.command)
app.command("demo")(demo.command)


def main() -> None:
    app()
