"""Whole zarr v3 shards written straight to a local file, past the page cache.

Why: a buffered `write()` spends kernel CPU allocating page cache for every MB, so storing a
camera frame cost more CPU than encoding it, and ingest spent a large share of its cores handing
bytes to the kernel. The same bytes written with O_DIRECT from an aligned buffer cost a small
fraction of that (benchmarks/ingest.py; docs/performance.md, Ingest and codecs). Every bfsdata
writer already builds whole shards (docs/design.md, The store), which is what O_DIRECT wants:
one large aligned write per file.

Only the layout bfsdata creates is handled here: regular chunks one row deep along axis 0 inside
`sharding_indexed`, inner codecs `bytes` + `blosc`, index codecs `bytes` (little endian) +
`crc32c`. The bytes are the zarr v3 sharding format (chunks, then the index of (offset, nbytes)
pairs in C order of the chunks, then the index's crc32c); zarr-python and tensorstore read them.
Any other layout falls back to the caller's writer, a file system that refuses O_DIRECT (tmpfs
before Linux 6.6, some FUSE file systems) to a buffered write. The shard appears by rename, whole
or not at all. `write` writes one shard and returns when it is on disk; an `Appender` takes rows
as they are made and writes full shards in the background. bfsdata.shard_read reads them back
(the layout, paths, buffers and thread pools here are shared with it).
"""

from __future__ import annotations

import errno
import functools
import json
import math
import mmap
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import google_crc32c
import numpy as np
from numcodecs import Blosc

_ALIGN = 4096  # O_DIRECT wants address, length and offset aligned to the device's block size
EMPTY = np.iinfo(np.uint64).max  # index entry of a chunk that is not stored (fill value)
_SHUFFLE = {"noshuffle": Blosc.NOSHUFFLE, "shuffle": Blosc.SHUFFLE, "bitshuffle": Blosc.BITSHUFFLE}
_local = threading.local()  # each thread's buffer for a shard file's bytes


@dataclass(frozen=True)
class Layout:
    shard: tuple[int, ...]  # shard shape (the outer chunk)
    chunk: tuple[int, ...]  # inner chunk shape
    dtype: np.dtype  # little endian, as the bytes codec stores it
    codec: Blosc
    index_at_end: bool
    fill: int | float  # what a chunk that is not stored reads as

    @functools.cached_property
    def grid(self) -> tuple[int, ...]:
        """Chunks per shard along each axis."""
        return tuple(s // c for s, c in zip(self.shard, self.chunk, strict=True))

    @functools.cached_property
    def cells(self) -> tuple[tuple[slice, ...], ...]:
        """The chunks of one row (a chunk spans one row along axis 0), in C order."""
        return tuple(
            tuple(slice(i * c, (i + 1) * c) for i, c in zip(cell, self.chunk[1:], strict=True))
            for cell in np.ndindex(self.grid[1:])
        )


def write(array_dir: Path, row: int, data: np.ndarray) -> bool:
    """Write `data` as rows [row, row + len(data)) of the array in `array_dir`, one shard whole.

    `row` starts a shard; `data` holds all of its rows, or its first ones (the last shard of a
    task), the rest left out and read as the fill value. False, with nothing written, when the
    array's layout is not one this module writes: the caller then writes another way.
    """
    lay = layout(Path(array_dir))
    if lay is None or data.shape[1:] != lay.shard[1:] or not 0 < len(data) <= lay.shard[0]:
        return False
    if row % lay.shard[0]:
        raise ValueError(f"row {row} does not start a shard of {lay.shard[0]} rows")
    shard = _Shard(lay, buffer(_largest_shard(lay)))
    for r in data:
        shard.put(r)
    n = shard.close()
    with memoryview(shard.buf) as view:
        _store(shard_path(Path(array_dir), lay, row), view, n)
    return True


class Appender:
    """Consecutive whole shards from row `row` on, filled by `add`, a block of rows at a time.

    Each row is encoded as it comes, its bytes copied into the shard's page-aligned buffer (the
    caller may reuse its own once `add` returns: small copies, where the writer used to join a
    whole shard holding the GIL that the other threads then waited for; docs/performance.md,
    Store reads and writes); a full shard is written from there by a background thread while
    the caller fills the other of its two buffers, one shard in flight per appender. Writing
    bypasses the page cache, so the writing thread waits for the disk, not the caller. `close`
    writes the last, partial shard and waits; an error of any write is raised there or by the
    next `add`. `written` is called once per shard on disk (the crash tests' point). The buffers
    are the calling thread's, kept for its next appender: one appender per thread at a time.
    """

    def __init__(
        self, array_dir: Path, lay: Layout, row: int, written: Callable[[], None] | None
    ) -> None:
        if row % lay.shard[0]:
            raise ValueError(f"row {row} does not start a shard of {lay.shard[0]} rows")
        self.row = row  # where the next `add` starts
        self._dir, self._lay, self._written = array_dir, lay, written
        self._bufs = _fill_buffers(_largest_shard(lay))
        self._shard = _Shard(lay, self._bufs[0])
        self._pending: Future | None = None

    def add(self, data: np.ndarray) -> None:
        if data.shape[1:] != self._lay.shard[1:]:
            raise ValueError(f"rows of {data.shape[1:]} for an array of {self._lay.shard[1:]}")
        full = self._lay.shard[0] * len(self._lay.cells)
        for r in data:
            self._shard.put(r)
            self.row += 1
            if len(self._shard.sizes) == full:
                self._submit()

    def close(self, store_rest: bool = True) -> None:
        """Store the last, partial shard (unless `store_rest` is False) and wait for the writes."""
        if self._shard.sizes and store_rest:
            self._submit()
        self._wait()

    def _submit(self) -> None:
        start = (self.row - 1) // self._lay.shard[0] * self._lay.shard[0]
        n = self._shard.close()
        self._wait()  # the other buffer's shard: on disk before that buffer is filled again
        path = shard_path(self._dir, self._lay, start)
        self._pending = pool("write").submit(self._write, path, self._shard.buf, n)
        self._bufs.reverse()
        self._shard = _Shard(self._lay, self._bufs[0])

    def _write(self, path: Path, buf: mmap.mmap, n: int) -> None:
        with memoryview(buf) as view:
            _store(path, view, n)
        if self._written is not None:
            self._written()

    def _wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()


def appender(
    array_dir: Path, row: int, written: Callable[[], None] | None = None
) -> Appender | None:
    """An Appender for the array in `array_dir` from `row` on; None when its layout is not one
    this module writes (the caller then writes another way)."""
    lay = layout(Path(array_dir))
    return None if lay is None else Appender(Path(array_dir), lay, row, written)


_pool: dict[str, tuple[int, ThreadPoolExecutor]] = {}
_pool_lock = threading.Lock()


def pool(kind: str) -> ThreadPoolExecutor:
    """The process's threads that read or write shards (two of each: one shard of each of two
    task threads in flight; more would only queue for the same disk). Kept for the process,
    so each thread keeps its buffer; a forked child starts its own."""
    with _pool_lock:
        pid, pool = _pool.get(kind, (None, None))
        if pool is None or pid != os.getpid():
            pool = ThreadPoolExecutor(2, thread_name_prefix=f"bfsdata-shard-{kind}")
            _pool[kind] = (os.getpid(), pool)
        return pool


def shard_path(array_dir: Path, lay: Layout, row: int) -> Path:
    rest = "/".join("0" for _ in lay.shard[1:])
    return array_dir / "c" / str(row // lay.shard[0]) / rest


def _encode_row(lay: Layout, row: np.ndarray) -> list[bytes]:
    """The chunks of one row (index 0 along axis 0), in C order."""
    data = np.ascontiguousarray(row, dtype=lay.dtype)
    if len(lay.cells) == 1:  # the row is one chunk (a patch)
        return [lay.codec.encode(data)]
    return [lay.codec.encode(np.ascontiguousarray(data[cell])) for cell in lay.cells]


class _Shard:
    """A shard being assembled in a page-aligned buffer: each row's chunks copied in as they
    are encoded, then `close` adds the index and gives the shard's length in bytes."""

    def __init__(self, lay: Layout, buf: mmap.mmap) -> None:
        self.lay, self.buf = lay, buf
        self.first = 0 if lay.index_at_end else index_size(lay)  # where the chunks start
        self.pos, self.sizes = self.first, []

    def put(self, row: np.ndarray) -> None:
        for piece in _encode_row(self.lay, row):
            end = self.pos + len(piece)
            self.buf[self.pos : end] = piece
            self.pos = end
            self.sizes.append(len(piece))

    def close(self) -> int:
        index = _index(self.lay, self.sizes, self.first)
        if self.lay.index_at_end:
            self.buf[self.pos : self.pos + len(index)] = index
            return self.pos + len(index)
        self.buf[: len(index)] = index
        return self.pos


def _index(lay: Layout, sizes: list[int], first: int) -> bytes:
    """A shard's index and its crc32c, for chunks of `sizes` bytes stored one after the other
    from byte `first` on, in C order; the shard's other chunks are not stored."""
    index = np.full((math.prod(lay.grid), 2), EMPTY, dtype="<u8")
    n = np.asarray(sizes, dtype=np.uint64)
    index[: len(n), 0] = first + np.cumsum(n) - n
    index[: len(n), 1] = n
    raw = index.tobytes()
    return raw + np.uint32(google_crc32c.value(raw)).astype("<u4").tobytes()


def index_size(lay: Layout) -> int:
    return 16 * math.prod(lay.grid) + 4


def _largest_shard(lay: Layout) -> int:
    """Bytes of a shard whose every chunk blosc stored uncompressed (16 bytes of header)."""
    chunk = math.prod(lay.chunk) * lay.dtype.itemsize
    return math.prod(lay.grid) * (chunk + 16) + index_size(lay)


def _fill_buffers(n: int) -> list[mmap.mmap]:
    """This thread's two page-aligned buffers of at least n bytes for an Appender's shards."""
    bufs = getattr(_local, "fill", None)
    if bufs is None or len(bufs[0]) < n:
        size = -(-n // _ALIGN) * _ALIGN
        bufs = _local.fill = [mmap.mmap(-1, size), mmap.mmap(-1, size)]
    return bufs


def buffer(n: int) -> mmap.mmap:
    """A page-aligned buffer (as O_DIRECT wants) of at least n bytes for a shard file's bytes,
    kept per thread: fresh pages cost a fault each on this VM, so it is reused from shard to
    shard, read or written."""
    buf = getattr(_local, "buf", None)
    if buf is None or len(buf) < n:
        buf = _local.buf = mmap.mmap(-1, -(-max(n, 1 << 24) // _ALIGN) * _ALIGN)
    return buf


def _store(path: Path, view: memoryview, n: int) -> None:
    """Write view[:n] (page-aligned, with room to pad) as the file `path`, by rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.partial")
    try:
        _write_direct(tmp, view, n, -(-n // _ALIGN) * _ALIGN)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_direct(tmp: Path, view: memoryview, n: int, padded: int) -> None:
    """Write view[:n] to `tmp`: O_DIRECT where the file system takes it, else buffered."""
    direct = getattr(os, "O_DIRECT", 0)
    if direct:
        try:
            _write_fd(tmp, direct, view[:padded])
            os.truncate(tmp, n)  # the padding past the last byte goes
            return
        except OSError as e:  # EINVAL: this file system refuses O_DIRECT (see the docstring)
            if e.errno != errno.EINVAL:
                raise
    _write_fd(tmp, 0, view[:n])


def _write_fd(path: Path, extra_flags: int, data: memoryview) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | extra_flags, 0o644)
    try:
        pos = 0
        while pos < len(data):
            pos += os.write(fd, data[pos:])
    finally:
        os.close(fd)


def layout(array_dir: Path) -> Layout | None:
    meta = array_dir / "zarr.json"
    try:
        stamp = meta.stat().st_mtime_ns
    except OSError:
        return None
    return _parse(str(meta), stamp)


@functools.lru_cache(maxsize=16)
def _parse(meta_path: str, stamp: int) -> Layout | None:
    """The layout in zarr.json if it is the one bfsdata creates, else None. `stamp` (mtime)
    keys the cache, so a store re-created at the same path is read again."""
    meta = json.loads(Path(meta_path).read_text())
    codecs = meta.get("codecs", [])
    if len(codecs) != 1 or codecs[0].get("name") != "sharding_indexed":
        return None
    cfg = codecs[0]["configuration"]
    inner, index = cfg.get("codecs", []), cfg.get("index_codecs", [])
    if [c.get("name") for c in inner] != ["bytes", "blosc"]:
        return None
    if [c.get("name") for c in index] != ["bytes", "crc32c"]:
        return None
    if index[0].get("configuration", {}).get("endian", "little") != "little":
        return None
    if inner[0].get("configuration", {}).get("endian", "little") != "little":
        return None
    b = inner[1]["configuration"]
    dtype = np.dtype(meta["data_type"]).newbyteorder("<")
    if b.get("shuffle") not in _SHUFFLE or b.get("typesize", dtype.itemsize) != dtype.itemsize:
        return None
    shard = tuple(meta["chunk_grid"]["configuration"]["chunk_shape"])
    chunk = tuple(cfg["chunk_shape"])
    if chunk[0] != 1 or any(s % c for s, c in zip(shard, chunk, strict=True)):
        return None  # bfsdata's chunks are one row deep along axis 0
    fill = meta.get("fill_value", 0)
    if isinstance(fill, bool) or not isinstance(fill, int | float):
        return None
    codec = Blosc(b["cname"], int(b["clevel"]), _SHUFFLE[b["shuffle"]], int(b.get("blocksize", 0)))
    return Layout(shard, chunk, dtype, codec, cfg.get("index_location", "end") == "end", fill)
