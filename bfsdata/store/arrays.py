"""Reading and writing the store's arrays: tensorstore handles, whole shards, and rows read
or written in the background (docs/design.md, The store: every writer owns whole shards).

A folder store goes through tensorstore for reads at random, bfsdata.store.shard_write for what
bfsdata writes and bfsdata.shard_read for the frames the patch stage reads; a store at a URL
through zarr-python behind the same interface (see bfsdata.store for where a store lives).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import suppress
from pathlib import Path
from typing import Any

import numpy as np
import tensorstore as ts
import zarr

from bfsdata.store import shard_read
from bfsdata.store import shard_write as shard_file
from bfsdata.store.location import location, open_store, shard_rows


def ts_array(store: Path | str, name: str) -> Any:
    """A tensorstore handle on one array of the store, opened once per process.

    zarr-python encodes a shard's 256 inner chunks one by one; tensorstore writes the same zarr
    v3 bytes from C++ threads, several times faster, and reads faster too (docs/performance.md,
    Store reads and writes). Open it inside the task that uses it (never before a fork, and after
    any resize: a handle keeps the shape it was opened with); the thread pools behind it are
    shared per process. A store at a URL gets the same interface over zarr-python.
    """
    loc = location(str(store))
    if not isinstance(loc, Path):
        return _ZarrArray(open_store(loc, mode="r+")[name])
    spec = {"driver": "zarr3", "kvstore": {"driver": "file", "path": f"{loc}/{name}"}}
    return ts.open(spec, open=True, context=_ts_context(os.getpid())).result()


def read_row(
    store: str, name: str, row: int, out: np.ndarray, picks: list[int] | None = None
) -> shard_read.RowRead | None:
    """Start reading row `row` of array `name` (its entries `picks` along axis 1, default
    all) into `out` in a background thread, entry by entry (`shard_read.RowRead`), for a local
    array of the frames' layout; None otherwise, for a tensorstore read."""
    loc = location(store)
    return shard_read.read_async(loc / name, row, out, picks) if isinstance(loc, Path) else None


def write_shard(store: str, name: str, row: int, data: np.ndarray) -> None:
    """Write one whole shard of array `name`: rows [row, row + len(data)), `row` its first.

    A local folder gets the shard file straight from bfsdata.store.shard_write (no page cache:
    far less kernel CPU per MB; docs/performance.md, Ingest and codecs); a URL, or a layout that
    module does not write, goes through `ts_array`. Either way the shard appears whole or not at
    all.
    """
    loc = location(store)
    if isinstance(loc, Path) and shard_file.write(loc / name, row, data):
        return
    ts_array(store, name)[row : row + len(data)].write(data).result()


class ShardWriter:
    """Rows [row, ...) of array `name`, added a block at a time, stored a whole shard at a time
    (docs/design.md, The store); `row` is where the next block goes. Use it in a `with`: leaving it
    normally stores the last, partial shard and waits for every write; leaving it by an error
    stores nothing more.

    A local folder gets bfsdata.store.shard_write's Appender (rows encoded as they come, shards
    written in the background); a URL, or a layout that module does not write, a shard-sized
    buffer stored through `write_shard`. `written` is called after each shard is stored.
    """

    def __init__(
        self, store: str, name: str, row: int, written: Callable[[], None] | None = None
    ) -> None:
        loc = location(store)
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
