"""Options and error handling shared by the commands (each command is one file)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from bfsdata import tf_logs
from bfsdata.config.pipeline import ConfigError
from bfsdata.sources.image_file import FrameError
from bfsdata.store.location import StoreError
from bfsdata.workspace.manifest import ManifestError

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

F = TypeVar("F", bound=Callable[..., Any])

WorkspaceOpt = Annotated[
    Path,
    typer.Option("--workspace", "-w", help="Workspace folder (store, manifests, runs, reports)."),
]
PipelineOpt = Annotated[
    str | None,
    typer.Option(
        "--pipeline",
        "-p",
        help="Pipeline name (bfs-5vial, demo, images, images-cpu) or YAML path. Default: "
        "the workspace's pipeline.yaml, else bfs-5vial.",
    ),
]
WorkersOpt = Annotated[
    int | None,
    typer.Option(
        "--workers",
        help="Start a local dask cluster of N worker processes for this command "
        "(default: threads in this process, one per core).",
    ),
]
SchedulerOpt = Annotated[
    str | None,
    typer.Option(
        "--scheduler",
        help="Run on an existing dask.distributed cluster: its scheduler, tcp://host:8786.",
    ),
]
StoreOpt = Annotated[
    str | None,
    typer.Option(
        "--store",
        help="Keep the store and manifests in this folder or fsspec URL (s3://bucket/prefix) "
        "instead of the workspace; recorded in the workspace for later commands.",
    ),
]

# Errors a person can act on: shown as one message, exit code 1, no traceback.
USER_ERRORS = (ConfigError, ManifestError, StoreError, FrameError, FileNotFoundError, ValueError)


def handle_errors(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except USER_ERRORS as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def comma_list(
    text: str | None, option: str, cast: Callable[[str], Any] = str, example: str = ""
) -> tuple[Any, ...] | None:
    """An option's comma list (`1,16`, `frame,rank_max`) as a tuple; None if not given."""
    if text is None:
        return None
    try:
        return tuple(cast(part.strip()) for part in text.split(",") if part.strip())
    except ValueError:
        eg = f", e.g. {example}" if example else ""
        raise ValueError(f"{option} {text!r}: expected a comma list{eg}") from None


def print_block(title: str, rows: list[tuple[str, object]], notes: list[str] = ()) -> None:
    """A command's closing summary: a bold title, aligned `label  value` rows, then notes."""
    console.print(f"[bold]{title}[/]")
    for label, value in rows:
        console.print(f"  {label:<22}{value}")
    for note in notes:
        console.print(f"  {note}")


def setup_logging(verbose: bool) -> None:
    """Before any command runs (and imports TensorFlow): bfsdata's INFO lines, or DEBUG and
    TensorFlow's own with --verbose."""
    tf_logs.show(verbose)
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        force=True,
    )
    for noisy in ("distributed", "asyncio", "numcodecs", "zarr"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"
