"""`bfsdata stats`: what a workspace holds, how well it compresses, what its patches look like.

Counts come from the manifests alone (patches per split, label, region and kind; strips and
acquisitions per split and label). Compression compares the bytes on disk under each array with
the bytes its manifest rows would take uncompressed. Intensities are measured on a seeded random
sample of patches, per region, in the patches' 8-bit grey levels.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bfsdata.store import arrays as store_io
from bfsdata.store import location as store
from bfsdata.workspace import manifest
from bfsdata.workspace.counts import patch_table, strip_table

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ArrayStats:
    name: str
    shape: tuple[int, ...]
    dtype: str
    rows: int  # rows named by the manifests
    stored_bytes: int  # chunk files on disk
    raw_bytes: int  # the same rows uncompressed

    @property
    def ratio(self) -> float:
        """Compression ratio, raw / stored (0 when nothing is stored)."""
        return self.raw_bytes / self.stored_bytes if self.stored_bytes else 0.0


@dataclass(frozen=True)
class Stats:
    workspace: Path
    image: dict[str, Any]  # height, width, dtype, n_frames of the ingested frames ({} if none)
    patch_size: int  # px (0 if no patches)
    strips: pd.DataFrame  # split, label, strips, acquisitions, patches
    counts: pd.DataFrame  # split, label, region, kind, patches
    arrays: tuple[ArrayStats, ...]
    store_bytes: int  # every file under bfsdata.zarr
    intensity: pd.DataFrame  # region, patches (sampled), mean, std (grey levels 0..255)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready document for `--json`."""
        return {
            "workspace": str(self.workspace),
            "image": self.image,
            "patch_size": self.patch_size,
            "strips": self.strips.to_dict(orient="records"),
            "counts": self.counts.to_dict(orient="records"),
            "arrays": [
                {**dataclasses.asdict(a), "shape": list(a.shape), "ratio": round(a.ratio, 3)}
                for a in self.arrays
            ],
            "store_bytes": self.store_bytes,
            "intensity": self.intensity.to_dict(orient="records"),
        }


def stats(workspace: Path, *, sample: int = 2000, seed: int = 0) -> Stats:
    """Describe the workspace; `sample` patches (seeded) give the intensity statistics."""
    ws = Path(workspace)
    acqs = manifest.read(ws, manifest.ACQUISITIONS)
    if acqs.empty:
        raise ValueError(f"{ws}: no ingested acquisitions; run `bfsdata ingest RAW -w {ws}` first")
    patches = manifest.read(ws, manifest.PATCHES)
    splits = manifest.read(ws, manifest.SPLITS_SCHEMA)
    strips = strip_table(acqs, patches, splits)
    counts = patch_table(patches, splits, ("split", "label", "region", "kind"))

    root = store.open_root(ws, mode="r")
    used = {"frames": acqs["acq"], "rank": acqs["acq"], "patches": patches["patch"]}
    arrays = tuple(_array_stats(ws, root[n], rows) for n, rows in used.items() if n in root)
    first = acqs.iloc[0]
    image = {
        "height": int(first["height"]),
        "width": int(first["width"]),
        "dtype": str(first["dtype"]),
        "n_frames": int(first["n_frames"]),
    }
    has_patches = "patches" in root and not patches.empty
    return Stats(
        workspace=ws,
        image=image,
        patch_size=int(root["patches"].shape[1]) if "patches" in root else 0,
        strips=strips,
        counts=counts,
        arrays=arrays,
        store_bytes=store.stored_bytes(ws),
        intensity=_intensity(ws, patches, sample, seed) if has_patches else _empty(),
    )


def _array_stats(ws: Path, arr, rows: pd.Series) -> ArrayStats:
    n = int(rows.nunique())
    per_row = int(np.prod(arr.shape[1:])) * arr.dtype.itemsize
    name = arr.name.lstrip("/")
    return ArrayStats(
        name=name,
        shape=tuple(int(s) for s in arr.shape),
        dtype=str(arr.dtype),
        rows=n,
        stored_bytes=store.stored_bytes(ws, name, "c"),
        raw_bytes=n * per_row,
    )


def _intensity(ws: Path, patches: pd.DataFrame, sample: int, seed: int) -> pd.DataFrame:
    """Mean and standard deviation of grey levels per region over a random patch sample."""
    arr = store_io.ts_array(store.store_url(ws), "patches")  # random reads: tensorstore is faster
    rows = patches[patches["patch"] < arr.shape[0]]
    if len(rows) > sample:
        rows = rows.sample(n=sample, random_state=seed)
    rows = rows.sort_values("patch")
    data = arr[rows["patch"].to_numpy()].read().result().astype(np.float64)  # (n, P, P)
    # Per patch mean and mean square, then pooled per region: every patch has the same size.
    per = pd.DataFrame(
        {
            "region": rows["region"].astype(int).to_numpy(),
            "m": data.mean(axis=(1, 2)),
            "m2": (data**2).mean(axis=(1, 2)),
        }
    )
    g = per.groupby("region").agg(patches=("m", "size"), mean=("m", "mean"), m2=("m2", "mean"))
    g["std"] = np.sqrt(np.maximum(g["m2"] - g["mean"] ** 2, 0))
    log.debug("stats: intensity over %d sampled patches", len(rows))
    return g.drop(columns="m2").reset_index().round({"mean": 2, "std": 2})


def _empty() -> pd.DataFrame:
    return pd.DataFrame({"region": [], "patches": [], "mean": [], "std": []})
