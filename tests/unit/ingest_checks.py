"""Reads an ingested workspace back and checks it against its raw PNG files, for the
`bfsdata.ingest.ingest` tests.

Every expectation is computed from the source files themselves (decoded with cv2), never from
what ingest wrote, so a bug in decode, rank or row bookkeeping cannot hide behind itself.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import zarr

from bfsdata.config.pipeline import Pipeline
from bfsdata.workspace import manifest
from bfsdata.workspace.manifest import ACQUISITIONS

STRIPS = {"A1": "good", "B2": "defect"}


# --- helpers -------------------------------------------------------------------------------


def store_arrays(ws: Path) -> tuple[zarr.Array, zarr.Array]:
    root = zarr.open_group(str(ws / "bfsdata.zarr"), mode="r", zarr_format=3)
    return root["frames"], root["rank"]


def sha_of_run(run_dir: Path, n_frames: int) -> str:
    """The manifest's definition: sha256 over the raw sha256 digests of the files, in order."""
    outer = hashlib.sha256()
    for i in range(n_frames):
        outer.update(hashlib.sha256((run_dir / f"frame_{i}.png").read_bytes()).digest())
    return outer.hexdigest()


def rows_with_shards(ws: Path, name: str) -> set[int]:
    """Rows (= shards, one acquisition per shard) that have a file in the store."""
    folder = ws / "bfsdata.zarr" / name / "c"
    if not folder.exists():
        return set()
    return {int(p.name) for p in folder.iterdir() if any(f.is_file() for f in p.rglob("*"))}


def is_shard(rel: Path) -> bool:
    """`frames/c/<row>/0/0/0`: the one file of a row's shard (4-D arrays, one shard per row)."""
    parts = rel.parts
    return len(parts) == 6 and parts[1] == "c" and parts[2].isdigit() and parts[3:] == ("0",) * 3


def check_workspace(ws: Path, raw: Path, pipe: Pipeline, read_run: Callable) -> None:
    """Every manifest row points at data equal to its decoded source files; nothing else."""
    rows = manifest.read(ws, ACQUISITIONS)
    frames, rank = store_arrays(ws)
    assert rows["acq"].is_unique
    assert rows_with_shards(ws, "frames") == set(rows["acq"]) == rows_with_shards(ws, "rank")
    for r in rows.itertuples():
        run_dir = raw / r.strip / f"run_{r.run}"
        src = read_run(run_dir)  # (F, H, W)
        assert Path(r.source).resolve() == run_dir.resolve()
        assert (r.n_frames, r.height, r.width, r.dtype) == (*src.shape, str(src.dtype))
        assert r.sha256 == sha_of_run(run_dir, r.n_frames)
        got = frames[r.acq]
        assert got.dtype == src.dtype
        np.testing.assert_array_equal(got, src, err_msg=f"frames of {r.strip}/{r.run}")
        ordered = np.sort(src, axis=0)
        want = np.stack([ordered[k - 1] for k in pipe.acquisition.ranks])
        np.testing.assert_array_equal(rank[r.acq], want, err_msg=f"rank of {r.strip}/{r.run}")
        for i, k in enumerate(pipe.acquisition.ranks):  # and plainly: rank 1 = min, F = max
            if k in (1, len(src)):
                plain = src.min(axis=0) if k == 1 else src.max(axis=0)
                np.testing.assert_array_equal(rank[r.acq][i], plain)


def store_content(ws: Path) -> dict[tuple[str, int], tuple[str, bytes, bytes]]:
    """(strip, run) -> (sha256, frames bytes, rank bytes): store content independent of rows."""
    rows = manifest.read(ws, ACQUISITIONS)
    frames, rank = store_arrays(ws)
    return {
        (r.strip, int(r.run)): (r.sha256, frames[r.acq].tobytes(), rank[r.acq].tobytes())
        for r in rows.itertuples()
    }
