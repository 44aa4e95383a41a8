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

Where the data lives (`--store URL`): by default the store and the manifests are in the
workspace (`<ws>/bfsdata.zarr`, `<ws>/manifests/`). `--store` moves both to another folder or to
an fsspec URL (s3://bucket/prefix, memory://...), which then holds `bfsdata.zarr/` and
`manifests/` as a workspace does, so workers on several machines share one store. The workspace
keeps pipeline.yaml, runs/, reports/ and previews/, and records the location once in
`<ws>/store.url`; later commands find it there. Folders (plain paths, file://) work as before:
LocalStore, tensorstore reads, whole shards written by bfsdata.shard_file, temp file + rename.
URLs go through fsspec: zarr's FsspecStore, zarr-python instead of tensorstore (which has no
fsspec backend; its own s3 driver is not used, as nothing could test it offline), and one PUT
per manifest (an object store shows the old object or the new one, never half). memory://
lives in one process: threads only.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import tensorstore as ts
import zarr
from zarr.codecs import BloscCodec
from zarr.core.sync import sync

from bfsdata import shard_file
from bfsdata.config import StoreConfig

log = logging.getLogger(__name__)

STORE_NAME = "bfsdata.zarr"
RECORD = "store.url"  # in the workspace: the folder or URL holding its store and manifests
MANIFESTS = "manifests"


class StoreError(ValueError):
    """The store cannot take this data; the message says what it holds and what came."""


def data_root(workspace: Path) -> Path | str:
    """Where bfsdata.zarr and manifests/ live: a local folder (Path) or a URL (str)."""
    record = Path(workspace) / RECORD
    return _location(record.read_text().strip()) if record.is_file() else Path(workspace)


def _location(url: str) -> Path | str:
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
    loc = _canonical(_location(url))
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
    return zarr.open_group(str(_location(url)), mode=mode, zarr_format=3)


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


def ts_array(store: Path | str, name: str) -> Any:
    """A tensorstore handle on one array of the store, opened once per process.

    zarr-python encodes a shard's 256 inner chunks one by one (about 1,200 patches/s here);
    tensorstore writes the same zarr v3 bytes from C++ threads (about 4,800 patches/s on 2 cores)
    and reads 4x faster. Open it inside the task that uses it (never before a fork, and after
    any resize: a handle keeps the shape it was opened with); the thread pools behind it are
    shared per process. A store at a URL gets the same interface over zarr-python.
    """
    loc = _location(str(store))
    if not isinstance(loc, Path):
        return _ZarrArray(open_store(loc, mode="r+")[name])
    spec = {"driver": "zarr3", "kvstore": {"driver": "file", "path": f"{loc}/{name}"}}
    return ts.open(spec, open=True, context=_ts_context(os.getpid())).result()


def read_row(
    store: str, name: str, row: int, out: np.ndarray, picks: list[int] | None = None
) -> Future | None:
    """Start reading row `row` of array `name` (its entries `picks` along axis 1, default
    all) into `out` in a background thread: a Future of `out`, for a local array of the
    frames' layout (bfsdata.shard_file.read_async); None otherwise, for a tensorstore read."""
    loc = _location(store)
    return shard_file.read_async(loc / name, row, out, picks) if isinstance(loc, Path) else None


def write_shard(store: str, name: str, row: int, data: np.ndarray) -> None:
    """Write one whole shard of array `name`: rows [row, row + len(data)), `row` its first.

    A local folder gets the shard file straight from bfsdata.shard_file (no page cache: 40x less
    kernel CPU per MB here); a URL, or a layout that module does not write, goes through
    `ts_array`. Either way the shard appears whole or not at all.
    """
    loc = _location(store)
    if isinstance(loc, Path) and shard_file.write(loc / name, row, data):
        return
    ts_array(store, name)[row : row + len(data)].write(data).result()


class ShardWriter:
    """Rows [row, ...) of array `name`, added a block at a time, stored a whole shard at a time
    (DESIGN.md section 6); `row` is where the next block goes. Use it in a `with`: leaving it
    normally stores the last, partial shard and waits for every write; leaving it by an error
    stores nothing more.

    A local folder gets bfsdata.shard_file's Appender (rows encoded as they come, shards
    written in the background); a URL, or a layout that module does not write, a shard-sized
    buffer stored through `write_shard`. `written` is called after each shard is stored.
    """

    def __init__(
        self, store: str, name: str, row: int, written: Callable[[], None] | None = None
    ) -> None:
        loc = _location(store)
        local = isinstance(loc, Path)
        self._fast = shard_file.appender(loc / name, row, written) if local else None
        if self._fast is None:
            arr = open_store(store, mode="r")[name]
            self._buf = np.empty((shard_rows(arr), *arr.shape[1:]), dtype=arr.dtype)
            self._row, self._fill, self._where, self._written = row, 0, (store, name), written

    @property
    def row(self) -> int:
        return self._fast.row if self._fast is not None else self._row

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if self._fast is not None:
            if kind is None:
                self._fast.close()
            else:
                with suppress(Exception):  # the error in flight says more
                    self._fast.close(store_rest=False)
        elif kind is None and self._fill:
            self._store_buffer()

    def add(self, data: np.ndarray) -> None:
        if self._fast is not None:
            self._fast.add(data)
            return
        done = 0
        while done < len(data):
            take = min(len(self._buf) - self._fill, len(data) - done)
            self._buf[self._fill : self._fill + take] = data[done : done + take]
            self._fill, done, self._row = self._fill + take, done + take, self._row + take
            if self._fill == len(self._buf):
                self._store_buffer()

    def _store_buffer(self) -> None:
        write_shard(*self._where, self._row - self._fill, self._buf[: self._fill])
        self._fill = 0
        if self._written is not None:
            self._written()


@functools.lru_cache(maxsize=2)
def _ts_context(pid: int) -> ts.Context:
    return ts.Context()


class _ZarrArray:
    """What the stages use of a tensorstore handle, over zarr-python: `shape`,
    `a[sel].read().result()` and `a[sel].write(x).result()`, with ints, slices and integer
    arrays (orthogonal, in the order given)."""

    def __init__(self, arr: zarr.Array, selection: Any = ...) -> None:
        self._arr, self._sel, self.shape = arr, selection, arr.shape

    def __getitem__(self, selection: Any) -> _ZarrArray:
        return _ZarrArray(self._arr, selection)

    def read(self) -> Future:
        return _done(self._arr.oindex[self._sel])

    def write(self, data: np.ndarray) -> Future:
        self._arr.oindex[self._sel] = data
        return _done(None)


def _done(value: Any) -> Future:
    f: Future = Future()
    f.set_result(value)
    return f


def stored_bytes(workspace: Path, *parts: str) -> int:
    """Bytes of every file (object) under the store, or under `parts` inside it."""
    fs, path = filesystem(join(_location(store_url(workspace)), *parts))
    return int(fs.du(path, total=True)) if fs.exists(path) else 0


def partials(workspace: Path) -> list[str]:
    """Temp files writers leave behind a kill: LocalStore `*.partial`, tensorstore `*.__lock`.
    An object store has none: a PUT lands whole or not at all."""
    root = _location(store_url(workspace))
    if not isinstance(root, Path) or not root.exists():
        return []
    return [str(p) for pattern in ("*.partial", "*.__lock") for p in root.rglob(pattern)]


def clean_partials(workspace: Path) -> int:
    found = partials(workspace)
    for p in found:
        Path(p).unlink(missing_ok=True)
    return len(found)
