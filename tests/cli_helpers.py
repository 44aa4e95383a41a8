"""Running `bfsdata` commands in-process for tests (typer's CliRunner) and judging the result."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from bfsdata.cli import app

runner = CliRunner()


def invoke(*args: str | Path):
    return runner.invoke(app, [str(a) for a in args])


def ok(result) -> str:
    """Exit code 0; the output."""
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    return result.output


def refused(result) -> str:
    """Exit code 1, one message for a person, no traceback; the message."""
    assert result.exit_code == 1, f"{result.output}\n{result.exception!r}"
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    assert "error: " in result.stderr
    return result.stderr
