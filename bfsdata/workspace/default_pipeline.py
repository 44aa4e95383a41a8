"""The pipeline a workspace runs with: the one named, else its own pipeline.yaml, else bfs-5vial.

The first pipeline a writing stage (ingest, patch) succeeds with is copied to
`<ws>/pipeline.yaml`, so later commands need no --pipeline: a workspace's store is cut for one
layout, and its default should be the pipeline that cut it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bfsdata.config.files import load_pipeline
from bfsdata.config.overrides import with_overrides
from bfsdata.config.pipeline import Pipeline
from bfsdata.workspace import paths
from bfsdata.workspace.writes import write_atomic

FALLBACK = "bfs-5vial"


def pipeline_for(
    workspace: Path,
    name: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    fallback: str = FALLBACK,
) -> Pipeline:
    """The named pipeline (name or YAML path), else the workspace's, else `fallback`; with
    `overrides` {dotted key: value or None} applied (bfsdata.config.overrides)."""
    saved = paths.pipeline_file(workspace)
    if name is None:
        name = str(saved) if saved.exists() else fallback
    return with_overrides(load_pipeline(name), overrides or {})


def remember_pipeline(workspace: Path, pipe: Pipeline) -> None:
    """After a stage succeeded: the first pipeline used becomes the workspace's default. The
    file's bytes, as read (a pipeline built in code, with no file, is not recorded)."""
    saved = paths.pipeline_file(workspace)
    source = Path(pipe.source) if pipe.source else None
    if not saved.exists() and Path(workspace).is_dir() and source and source.is_file():
        write_atomic(saved, source.read_bytes())
