"""The workspace's zarr v3 store: array layout, shard ownership and clean-up.

Layout (DESIGN.md section 2):
    frames  (A, F, H, W)  one shard per acquisition, one chunk per frame
    rank    (A, R, H, W)  one shard per acquisition, one chunk per rank image
    patches (N, P, P)     shards of `patch_shard` patches, one chunk per patch

Why these chunks: the patch stage reads one acquisition at a time, all of its frames (or only the
test frames), and cuts crops spread over the whole image, so a whole frame is the natural read
unit; one chunk per frame lets `--frames 0,7,15` skip decoding the others. One shard per
acquisition gives one file per acquisition (7,820 files for the paper's data, not 125,000), and
makes every ingest task the only writer of its shard, so parallel writers never share a file.
Patches are read at random by the trainer, so each patch is its own chunk; shards bundle 256 of
them into one file (DESIGN.md section 6).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import tensorstore as ts
import zarr
from zarr.codecs import BloscCodec
from zarr.core.sync import sync

from bfsdata.config import StoreConfig

log = logging.getLogger(__name__)

STORE_NAME = "bfsdata.zarr"


class StoreError(ValueError):
    """The store cannot take this data; the message says what it holds and what came."""


def store_path(workspace: Path) -> Path:
    return Path(workspace) / STORE_NAME


def open_root(workspace: Path, mode: str = "a") -> zarr.Group:
    path = store_path(workspace)
    if mode == "r" and not path.exists():
        raise StoreError(f"{path}: no store here; run `bfsdata ingest RAW` in this workspace first")
    return zarr.open_group(str(path), mode=mode, zarr_format=3)


def codec(cfg: StoreConfig) -> BloscCodec:
    return BloscCodec(cname=cfg.cname, clevel=cfg.clevel, shuffle=cfg.shuffle)


def require_acquisition_arrays(
    root: zarr.Group,
    n_frames: int,
    n_ranks: int,
    height: int,
    width: int,
    dtype: str,
    cfg: StoreConfig,
) -> tuple[zarr.Array, zarr.Array]:
    """Open `frames` and `rank`, creating them on first ingest; refuse data of another shape."""
    specs = {
        "frames": ((n_frames, height, width), ("acq", "frame", "y", "x")),
        "rank": ((n_ranks, height, width), ("acq", "rank", "y", "x")),
    }
    out = []
    for name, (inner, dims) in specs.items():
        if name in root:
            arr = root[name]
            if tuple(arr.shape[1:]) != inner or str(arr.dtype) != dtype:
                raise StoreError(
                    f"{root.store_path}/{name} holds {dtype_shape(arr)} per acquisition; "
                    f"this data is {dtype} {'x'.join(map(str, inner))}. One store takes one "
                    "camera format: use a new workspace for this data."
                )
        else:
            arr = root.create_array(
                name,
                shape=(0, *inner),
                shards=(1, *inner),
                chunks=(1, 1, height, width),
                dtype=dtype,
                compressors=codec(cfg),
                fill_value=0,
                dimension_names=dims,
            )
        out.append(arr)
    return out[0], out[1]


def require_patches(root: zarr.Group, size: int, cfg: StoreConfig) -> zarr.Array:
    if "patches" in root:
        arr = root["patches"]
        if tuple(arr.shape[1:]) != (size, size) or arr.shards[0] != cfg.patch_shard:
            raise StoreError(
                f"{root.store_path}/patches holds {dtype_shape(arr)} patches in shards of "
                f"{arr.shards[0]}; the pipeline asks for {size}x{size} in shards of "
                f"{cfg.patch_shard}. Use a new workspace or the original pipeline."
            )
        return arr
    return root.create_array(
        "patches",
        shape=(0, size, size),
        shards=(cfg.patch_shard, size, size),
        chunks=(1, size, size),
        dtype="uint8",
        compressors=codec(cfg),
        fill_value=0,
        dimension_names=("patch", "y", "x"),
    )


def dtype_shape(arr: zarr.Array) -> str:
    return f"{arr.dtype} {'x'.join(map(str, arr.shape[1:]))}"


def grow(arr: zarr.Array, rows: int) -> None:
    """Make room for `rows` rows along axis 0 (never shrinks)."""
    if arr.shape[0] < rows:
        arr.resize((rows, *arr.shape[1:]))


def shard_key(arr: zarr.Array, shard: int) -> str:
    """Store key of the shard holding rows [shard * S, (shard + 1) * S) along axis 0."""
    zeros = "/".join("0" for _ in arr.shape[1:])
    return f"{arr.store_path.path}/c/{shard}/{zeros}"


def delete_shards(arr: zarr.Array, shards: Iterable[int]) -> None:
    """Remove whole shards; a task does this before it writes, so a half-written shard of a
    killed run is never read or partially rewritten (DESIGN.md section 6)."""
    store = arr.store_path.store
    for s in shards:
        sync(store.delete(shard_key(arr, s)))


def written_shards(arr: zarr.Array) -> set[int]:
    """Indices along axis 0 of the shards that exist in the store."""
    store = arr.store_path.store
    prefix = f"{arr.store_path.path}/c/"

    async def collect() -> list[str]:
        return [k async for k in store.list_prefix(prefix)]

    out = set()
    for key in sync(collect()):
        head = key[len(prefix) :].split("/", 1)[0]
        if head.isdigit():
            out.add(int(head))
    return out


def shard_rows(arr: zarr.Array) -> int:
    return int(arr.shards[0])


def remove_orphans(arr: zarr.Array, used_rows: np.ndarray) -> int:
    """Delete shards holding no manifest row (debris of a killed or failed run)."""
    per = shard_rows(arr)
    used = set(np.unique(np.asarray(used_rows, dtype=np.int64) // per).tolist())
    orphans = sorted(written_shards(arr) - used)
    delete_shards(arr, orphans)
    if orphans:
        log.info("removed %d orphan shard(s) from %s", len(orphans), arr.name)
    return len(orphans)


def ts_array(workspace_store: Path, name: str) -> ts.TensorStore:
    """A tensorstore handle on one array of the store, opened once per process.

    zarr-python encodes a shard's 256 inner chunks one by one (about 1,200 patches/s here);
    tensorstore writes the same zarr v3 bytes from C++ threads (about 4,800 patches/s on 2 cores)
    and reads 4x faster. Open it inside the task that uses it (never before a fork, and after
    any resize: a handle keeps the shape it was opened with); the thread pools behind it are
    shared per process.
    """
    spec = {"driver": "zarr3", "kvstore": {"driver": "file", "path": f"{workspace_store}/{name}"}}
    return ts.open(spec, open=True, context=_ts_context(os.getpid())).result()


@functools.lru_cache(maxsize=2)
def _ts_context(pid: int) -> ts.Context:
    return ts.Context()


def clean_partials(workspace: Path) -> int:
    """Writers leave temp files behind a kill: LocalStore `*.partial`, tensorstore `*.__lock`."""
    n = 0
    for pattern in ("*.partial", "*.__lock"):
        for p in store_path(workspace).rglob(pattern):
            p.unlink(missing_ok=True)
            n += 1
    return n
