"""Workspace helpers shared by the stages: manifest commits, atomic files, refusals,
annotations."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from bfsdata.workspace import manifest
from bfsdata.workspace.faults import crash_point
from bfsdata.workspace.problems import Problem


class Committer:
    """Collects finished rows and rewrites the manifest now and then, atomically.

    The data a row points at is written before the row reaches the committer, so a manifest on
    disk never points at missing data. Rewrites are spaced so that even a large manifest costs
    a small share of the run (at most one rewrite per `interval` seconds, and never more than
    about a tenth of the time spent).
    """

    def __init__(
        self,
        ws: Path,
        schema: manifest.Schema,
        base: pd.DataFrame,
        sort: Sequence[str] = (),
        interval: float = 5.0,
        provenance: Mapping[str, Any] | None = None,
    ) -> None:
        self.ws, self.schema, self.sort, self.interval = ws, schema, tuple(sort), interval
        self.provenance = provenance  # stored in every rewrite (bfsdata.workspace.provenance)
        self.frames = [base] if not base.empty else []
        self.pending: list[pd.DataFrame] = []
        self.last = time.monotonic()
        self.cost = 0.0

    def add(self, rows: pd.DataFrame | list[dict[str, Any]]) -> None:
        self.pending.append(rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows))
        if time.monotonic() - self.last >= max(self.interval, 10 * self.cost):
            self.flush()

    def flush(self) -> pd.DataFrame:
        t0 = time.monotonic()
        self.frames.extend(self.pending)
        self.pending = []
        df = pd.concat(self.frames, ignore_index=True) if self.frames else self.schema.empty()
        self.frames = [df]
        crash_point(f"commit.{self.schema.name}")
        manifest.write(self.ws, self.schema, df, sort=self.sort, provenance=self.provenance)
        self.last = time.monotonic()
        self.cost = self.last - t0
        return df


def write_atomic(path: Path, data: bytes) -> None:
    """Write beside the target, then rename: a reader sees the old file or the new, never half."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def png_bytes(img: np.ndarray, what: Path) -> bytes:
    """An image encoded as PNG, for `write_atomic`."""
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise ValueError(f"{what}: could not encode the PNG")
    return buf.tobytes()


def record_rejections(ws: Path, problems: Sequence[Problem]) -> None:
    """Append refusals to manifests/rejected.parquet (one row per file, rule and finding)."""
    if not problems:
        return
    now = pd.Timestamp.now(tz="UTC")
    new = pd.DataFrame(
        [
            {
                "source": p.source,
                "strip": p.strip,
                "run": p.run,
                "rule": p.rule,
                "message": p.message,
                "rejected_at": now,
            }
            for p in problems
        ]
    )
    old = manifest.read(ws, manifest.REJECTED)
    df = pd.concat([old, new], ignore_index=True) if not old.empty else new
    df = df.drop_duplicates(["source", "rule", "message"], keep="last")
    df["run"] = df["run"].astype("Int32")
    manifest.write(ws, manifest.REJECTED, df, sort=("source",))


def write_annotations(ws: Path, ann: pd.DataFrame, rec: Mapping[str, Any]) -> None:
    """Replace the annotations of the strips in `ann`; rows of other strips stay."""
    if ann.empty:
        return
    old = manifest.read(ws, manifest.ANNOTATIONS)
    keep = old[~old["strip"].isin(ann["strip"])]
    mine = old[old["strip"].isin(ann["strip"])]
    if _same_rows(mine, ann):
        return  # a re-run changes nothing, not even a file's mtime
    both = pd.concat([keep, ann], ignore_index=True)
    manifest.write(ws, manifest.ANNOTATIONS, both, sort=("strip",), provenance=rec)


def _same_rows(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    if len(a) != len(b):
        return False
    cols = ["strip", "label", "defect", "vial", "region"]
    key = [tuple(map(str, r)) for r in a[cols].itertuples(index=False)]
    other = [
        tuple(map(str, r)) for r in b[cols].astype(a[cols].dtypes.to_dict()).itertuples(index=False)
    ]
    return sorted(key) == sorted(other)
