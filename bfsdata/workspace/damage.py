"""Shards of the store that manifest rows point into but that are missing or damaged, each named
with those rows: `bfsdata verify` lists them, `bfsdata repair` rebuilds them, and a re-run of
`ingest` or `patch` refuses to go on while there are any.

`find` judges a shard by what is cheap to read: that it exists and, in a folder store whose
layout bfsdata writes, that its index (at the end of the file) matches its checksum and points
inside the file, which a file cut short or overwritten fails. Damage inside a chunk shows only
when it is decoded or recomputed, which verify does. `masks` are not judged: a clean image's
mask may be stored as nothing at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import zarr

from bfsdata.store import location as store
from bfsdata.store import shard_read, shard_write

ARRAYS = ("frames", "rank", "patches")  # rows: acquisitions' `acq`, patches' `patch`
_NO_PATCHES = pd.DataFrame({"patch": pd.Series(dtype="int64"), "acq": pd.Series(dtype="int64")})


@dataclass(frozen=True)
class Damage:
    """One shard that rows point into and that cannot be read as written."""

    array: str  # frames, rank or patches
    shard: int  # along axis 0: the acquisition (frames, rank), patch row // shard size
    key: str  # the shard's file inside the store: frames/c/2/0/0/0
    what: str  # "missing", "damaged (its index does not match its checksum)", ...
    rows: str  # the manifest rows that point into it

    def __str__(self) -> str:
        return f"store: {self.key} is {self.what}; {self.rows} [rule: store]"


def find(
    ws: Path, acqs: pd.DataFrame, patches: pd.DataFrame, root: zarr.Group | None = None
) -> list[Damage]:
    """Every missing or damaged shard of frames, rank and patches that rows of `acqs` and
    `patches` point into, judged by size and index (no chunk decoded)."""
    root = store.open_root(ws, mode="r") if root is None else root
    found = []
    for name in ARRAYS:
        rows = (patches["patch"] if name == "patches" else acqs["acq"]).to_numpy()
        if name not in root or not len(rows):
            continue
        arr = root[name]
        for shard, what in _judge(ws, arr, rows).items():
            found.append(of(arr, shard, what, acqs, patches))
    return found


def of(arr: zarr.Array, shard: int, what: str, acqs: pd.DataFrame, patches: pd.DataFrame) -> Damage:
    """The Damage of `arr`'s shard `shard`, naming the rows of `acqs` / `patches` in it."""
    name = arr.name.lstrip("/")
    per = store.shard_rows(arr)
    lo, hi = shard * per, (shard + 1) * per
    key = store.shard_key(arr, shard)
    if name == "patches":
        mine = patches[(patches["patch"] >= lo) & (patches["patch"] < hi)]
        ids = sorted(set(mine["acq"].astype(int)))
        rows = (
            f"patches.parquet rows {mine['patch'].min()}-{mine['patch'].max()} "
            f"({len(mine)} patches of acquisition(s) {_some(ids)}) point into it"
            if len(mine)
            else "no patches.parquet row points into it"
        )
    else:
        mine = acqs[(acqs["acq"] >= lo) & (acqs["acq"] < hi)]
        rows = ", ".join(f"acquisition {a} (strip {s}, run {r})" for a, s, r in _acq(mine))
        rows = f"acquisitions.parquet: {rows or 'no row'} points into it"
    return Damage(name, shard, key, what, rows)


def check(ws: Path, acqs: pd.DataFrame, patches: pd.DataFrame | None = None) -> None:
    """Refuse to go on (a re-run of ingest or patch) while a shard that rows of `acqs` or
    `patches` point into is missing or damaged; say which, and what to do."""
    patches = _NO_PATCHES if patches is None else patches
    if acqs.empty and patches.empty:
        return
    if not store.exists(ws):
        raise store.StoreError(
            f"{store.store_url(ws)}: missing, but the manifests list {len(acqs)} acquisitions "
            "and their data [rule: store]; restore it from a backup, or start a new workspace"
        )
    found = find(ws, acqs, patches)
    if not found:
        return
    lines = [str(d) for d in found[:10]]
    if len(found) > 10:
        lines.append(f"... and {len(found) - 10} more (`bfsdata verify` lists them all)")
    raise store.StoreError(
        "\n".join(
            [
                f"{len(found)} shard(s) of the store that the manifests point at are missing or "
                "damaged:",
                *lines,
                f"Run `bfsdata repair -w {ws}` to rebuild them from the raw data (what cannot be "
                "rebuilt is removed from the manifests), then this command again.",
            ]
        )
    )


def _judge(ws: Path, arr: zarr.Array, rows: np.ndarray) -> dict[int, str]:
    """{shard: what is wrong} of the shards `rows` point into (rows past the array's end are
    verify's own finding)."""
    per = store.shard_rows(arr)
    rows = rows[(rows >= 0) & (rows < arr.shape[0])]
    shards = sorted(set((rows // per).tolist()))
    loc = store.location(store.store_url(ws))
    name = arr.name.lstrip("/")
    lay = shard_write.layout(loc / name) if isinstance(loc, Path) else None
    if lay is None:  # a URL, or a layout bfsdata does not write: only whether it is there
        written = store.written_shards(arr)
        return {s: "missing" for s in shards if s not in written}
    out = {}
    for s in shards:
        what = shard_read.damage(shard_write.shard_path(loc / name, lay, s * per), lay)
        if what is not None:
            out[s] = what
    return out


def _acq(rows: pd.DataFrame) -> list[tuple[int, str, int]]:
    return [
        (int(a), s, int(r)) for a, s, r in zip(rows["acq"], rows["strip"], rows["run"], strict=True)
    ]


def _some(ids: list[int]) -> str:
    return ", ".join(map(str, ids[:5])) + (", ..." if len(ids) > 5 else "")
