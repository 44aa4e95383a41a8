"""The workspace's zarr v3 store: array layout, shard ownership and clean-up.

Layout (docs/design.md, The workspace):
    frames  (A, F, H, W)  one shard per acquisition, one chunk per frame
    rank    (A, R, H, W)  one shard per acquisition, one chunk per rank image
    patches (N, P, P)     shards of `patch_shard` patches, one chunk per patch

Why these chunks: the patch stage reads one acquisition at a time, all of its frames (or only the
test frames), and cuts crops spread over the whole image, so a whole frame is the natural read
unit; one chunk per frame lets `--frames 0,7,15` skip decoding the others. One shard per
acquisition gives one file per acquisition (7,820 files for the paper's data, not 125,000), and
makes every ingest task the only writer of its shard, so parallel writers never share a file.
Patches are read at random by the trainer, so each patch is its own chunk; shards bundle 256 of
them into one file (docs/design.md, The store).

Where the data lives (`--store URL`): by default the store and the manifests are in the
workspace (`<ws>/bfsdata.zarr`, `<ws>/manifests/`). `--store` moves both to another folder or to
an fsspec URL (s3://bucket/prefix, memory://...), which then holds `bfsdata.zarr/` and
`manifests/` as a workspace does, so workers on several machines share one store. The workspace
keeps pipeline.yaml, runs/, reports/ and previews/, and records the location once in
`<ws>/store.url`; later commands find it there. Folders (plain paths, file://) work as before:
LocalStore, tensorstore reads, whole shards written by bfsdata.store.shard_write, temp file + rename
(reading and writing the arrays: bfsdata.store.arrays). URLs go through fsspec: zarr's
FsspecStore, zarr-python instead of tensorstore (which has no fsspec backend; its own s3 driver
is not used, as nothing could test it offline), and one PUT per manifest (an object store shows
the old object or the new one, never half). memory:// lives in one process: threads only.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import fsspec
import numpy as np
import zarr
from zarr.codecs import BloscCodec
from zarr.core.sync import sync

from bfsdata.config.pipeline import StoreConfig

log = logging.getLogger(__name__)

STORE_NAME = "bfsdata.zarr"
RECORD = "store.url"  # in the workspace: the folder or URL holding its store and manifests
MANIFESTS = "manifests"


class StoreError(ValueError):
    """The store cannot take this data; the message says what it holds and what came."""


def data_root(workspace: Path) -> Path | str:
    """Where bfsdata.zarr and manifests/ live: a local folder (Path) or a URL (str)."""
    record = Path(workspace) / RECORD
    return location(record.read_text().strip()) if record.is_file() else Path(workspace)


def location(url: str) -> Path | str:
    """Plain paths and file:// URLs are local folders; any other URL stays a URL."""
    url = url.removeprefix("file://")
    return url.rstrip("/") if "://" in url else Path(url)


def _canonical(loc: Path | str) -> str:
    return os.path.abspath(loc) if isinstance(loc, Path) else loc


def join(root: Path | str, *parts: str) -> Path | str:
    return root.joinpath(*parts) if isinstance(root, Path) else "/".join([root, *parts])


def store_url(workspace: Path) -> str:
    """The store as tasks name it: a URL, or an absolute path (valid in any worker's folder)."""
    return f"{_canonical(data_root(workspace))}/{STORE_NAME}"


def check_reachable(workspace: Path, scheduler: str | None) -> None:
    """Refuse a cluster for a store its workers cannot see (memory:// lives in this process)."""
    url = store_url(workspace)
    if scheduler and url.startswith("memory://"):
        raise StoreError(
            f"{url}: a memory:// store lives in this process, where the workers of a cluster "
            "cannot write; run without --workers/--scheduler, or use a folder or s3:// store"
        )


def store_path(workspace: Path) -> Path:
    """The store's local folder, for code that needs files (tests, benchmarks)."""
    root = data_root(workspace)
    if not isinstance(root, Path):
        raise StoreError(f"{workspace}: the store is at {root}, not in a local folder")
    return root / STORE_NAME


def filesystem(location: Path | str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem holding a path or URL, and the path inside it."""
    try:
        return fsspec.core.url_to_fs(str(location))
    except ImportError as e:
        raise StoreError(
            f"{location}: this kind of URL needs a package that is not installed ({e}); "
            "for s3:// run `pip install 'bfsdata[s3]'`"
        ) from None
    except ValueError as e:
        raise StoreError(f"{location}: not a folder or a URL that fsspec knows ({e})") from None


def present(location: Path | str) -> bool:
    fs, path = filesystem(location)
    return fs.exists(path)


def exists(workspace: Path) -> bool:
    return present(store_url(workspace))


def holds_data(workspace: Path) -> bool:
    """The store or the manifests are there, where this workspace keeps them."""
    root = data_root(workspace)
    return present(join(root, STORE_NAME)) or present(join(root, MANIFESTS))


def attach(workspace: Path, url: str) -> bool:
    """Record `url` as the workspace's store location; True if the record was written now.

    Refused when the workspace keeps data elsewhere already: one workspace, one store.
    """
    ws = Path(workspace)
    loc = _canonical(location(url))
    filesystem(loc)  # an unknown protocol or a missing package fails now, not mid-run
    current = _canonical(data_root(ws))
    if current == loc:
        return False
    if (ws / RECORD).is_file() or holds_data(ws):
        raise StoreError(
            f"{ws} keeps its store and manifests at {current}; --store {url} names another "
            "place. One workspace has one store: use a new workspace for this one."
        )
    ws.mkdir(parents=True, exist_ok=True)
    tmp = ws / f".{RECORD}.{os.getpid()}.tmp"
    tmp.write_text(f"{loc}\n")
    os.replace(tmp, ws / RECORD)
    return True


@contextmanager
def attached(workspace: Path, url: str | None) -> Iterator[None]:
    """`--store URL` for one command: recorded first, so the command (and every later one)
    finds the data through the record; taken back if the command fails before it stored
    anything there, so a refused first run leaves no trace."""
    new = url is not None and attach(workspace, url)
    try:
        yield
    except BaseException:
        if new and not holds_data(workspace):
            (Path(workspace) / RECORD).unlink(missing_ok=True)
        raise


def open_root(workspace: Path, mode: str = "a") -> zarr.Group:
    url = store_url(workspace)
    if mode == "r" and not exists(workspace):
        raise StoreError(f"{url}: no store here; run `bfsdata ingest RAW` in this workspace first")
    return open_store(url, mode)


def open_store(url: str, mode: str = "a") -> zarr.Group:
    """The root group at `url` (from `store_url`), e.g. inside a task on a worker."""
    return zarr.open_group(str(location(url)), mode=mode, zarr_format=3)


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
        # not y, x: those are the frames' (another size), and xarray needs one size per name
        dimension_names=("patch", "patch_y", "patch_x"),
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
    killed run is never read or partially rewritten (docs/design.md, The store)."""
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


def stored_bytes(workspace: Path, *parts: str) -> int:
    """Bytes of every file (object) under the store, or under `parts` inside it."""
    fs, path = filesystem(join(location(store_url(workspace)), *parts))
    return int(fs.du(path, total=True)) if fs.exists(path) else 0


def partials(workspace: Path) -> list[str]:
    """Temp files writers leave behind a kill: LocalStore `*.partial`, tensorstore `*.__lock`.
    An object store has none: a PUT lands whole or not at all."""
    root = location(store_url(workspace))
    if not isinstance(root, Path) or not root.exists():
        return []
    return [str(p) for pattern in ("*.partial", "*.__lock") for p in root.rglob(pattern)]


def clean_partials(workspace: Path) -> int:
    found = partials(workspace)
    for p in found:
        Path(p).unlink(missing_ok=True)
    return len(found)
