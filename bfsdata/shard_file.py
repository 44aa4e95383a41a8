"""Whole zarr v3 shards written straight to a local file, past the page cache.

Why: on the 2-core development VM a buffered `write()` costs 3.1 ms of kernel CPU per MB (page
allocation in the page cache), so storing one 1024x1280 frame cost more CPU than encoding it, and
ingest spent a quarter of its cores handing bytes to the kernel. The same bytes written with
O_DIRECT from an aligned buffer cost 0.08 ms per MB (benchmarks/ingest.py, README). Every bfsdata
writer already builds whole shards (DESIGN.md section 6), which is what O_DIRECT wants: one large
aligned write per file.

Only the layout bfsdata creates is handled here: regular chunks one row deep along axis 0 inside
`sharding_indexed`, inner codecs `bytes` + `blosc`, index codecs `bytes` (little endian) +
`crc32c`. The bytes are the zarr v3 sharding format (chunks, then the index of (offset, nbytes)
pairs in C order of the chunks, then the index's crc32c); zarr-python and tensorstore read them.
Any other layout falls back to the caller's writer, a file system that refuses O_DIRECT (tmpfs
before Linux 6.6, some FUSE file systems) to a buffered write. The shard appears by rename, whole
or not at all. `write` writes one shard and returns when it is on disk; an `Appender` takes rows
as they are made and writes full shards in the background; `read_async` decodes a row of a
frames-like array into a buffer the caller keeps.
"""

from __future__ import annotations

import errno
import functools
import json
import math
import mmap
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import google_crc32c
import numpy as np
from numcodecs import Blosc

_ALIGN = 4096  # O_DIRECT wants address, length and offset aligned to the device's block size
_EMPTY = np.iinfo(np.uint64).max  # index entry of a chunk that is not stored (fill value)
_SHUFFLE = {"noshuffle": Blosc.NOSHUFFLE, "shuffle": Blosc.SHUFFLE, "bitshuffle": Blosc.BITSHUFFLE}
_local = threading.local()  # each thread's buffer for a shard file's bytes


@dataclass(frozen=True)
class _Layout:
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
    lay = _layout(Path(array_dir))
    if lay is None or data.shape[1:] != lay.shard[1:] or not 0 < len(data) <= lay.shard[0]:
        return False
    if row % lay.shard[0]:
        raise ValueError(f"row {row} does not start a shard of {lay.shard[0]} rows")
    pieces = [p for r in data for p in _encode_row(lay, r)]
    _write_file(_shard_path(Path(array_dir), lay, row), _assemble(lay, pieces))
    return True


class Appender:
    """Consecutive whole shards from row `row` on, filled by `add`, a block of rows at a time.

    Each row is encoded as it comes, its bytes copied into the shard's page-aligned buffer (the
    caller may reuse its own once `add` returns: copies of a few microseconds, where the writer
    used to join a shard, ~1 ms holding the GIL that the other threads then waited for); a full
    shard is written from there by a background thread while the caller fills the other of its
    two buffers, one shard in flight per appender. Writing bypasses the page cache, so the
    writing thread waits for the disk, not the caller. `close` writes the last, partial shard
    and waits; an error of any write is raised there or by the next `add`. `written` is called
    once per shard on disk (the crash tests' point). The buffers are the calling thread's,
    kept for its next appender: one appender per thread at a time.
    """

    def __init__(
        self, array_dir: Path, lay: _Layout, row: int, written: Callable[[], None] | None
    ) -> None:
        if row % lay.shard[0]:
            raise ValueError(f"row {row} does not start a shard of {lay.shard[0]} rows")
        self.row = row  # where the next `add` starts
        self._dir, self._lay, self._written = array_dir, lay, written
        self._bufs = _fill_buffers(_largest_shard(lay))
        self._first = 0 if lay.index_at_end else _index_size(lay)  # where the chunks start
        self._pos, self._sizes = self._first, []  # bytes and chunks in the current buffer
        self._pending: Future | None = None

    def add(self, data: np.ndarray) -> None:
        if data.shape[1:] != self._lay.shard[1:]:
            raise ValueError(f"rows of {data.shape[1:]} for an array of {self._lay.shard[1:]}")
        full = self._lay.shard[0] * len(self._lay.cells)
        for r in data:
            buf = self._bufs[0]
            for piece in _encode_row(self._lay, r):
                end = self._pos + len(piece)
                buf[self._pos : end] = piece
                self._pos = end
                self._sizes.append(len(piece))
            self.row += 1
            if len(self._sizes) == full:
                self._submit()

    def close(self, store_rest: bool = True) -> None:
        """Store the last, partial shard (unless `store_rest` is False) and wait for the writes."""
        if self._sizes and store_rest:
            self._submit()
        self._wait()

    def _submit(self) -> None:
        start = (self.row - 1) // self._lay.shard[0] * self._lay.shard[0]
        buf, index = self._bufs[0], _index(self._lay, self._sizes, self._first)
        if self._lay.index_at_end:
            buf[self._pos : self._pos + len(index)] = index
            n = self._pos + len(index)
        else:
            buf[: len(index)] = index
            n = self._pos
        self._wait()  # the other buffer's shard: on disk before that buffer is filled again
        path = _shard_path(self._dir, self._lay, start)
        self._pending = _pools("write").submit(self._write, path, buf, n)
        self._bufs.reverse()
        self._pos, self._sizes = self._first, []

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
    lay = _layout(Path(array_dir))
    return None if lay is None else Appender(Path(array_dir), lay, row, written)


def read_async(
    array_dir: Path, row: int, out: np.ndarray, picks: Sequence[int] | None = None
) -> RowRead | None:
    """Start decoding row `row` into `out`, in a background thread: the entries `picks` along
    axis 1 (default all), of an array whose shards hold one row and whose chunks one entry
    along axis 1 (frames, rank images). A RowRead of `out`; None, with nothing started, for
    any other layout (the caller then reads another way).

    Why not tensorstore: it returns each read in a new array (21 MB per acquisition), which
    another thread than the one that made it frees; glibc kept ever more of that memory, and
    the patch stage's peak grew 1.24-1.36x from 1x to 4x the data. The caller's buffers do not.
    """
    lay = _layout(Path(array_dir))
    if lay is None or len(lay.shard) < 3 or lay.shard[0] != 1 or lay.chunk[1] != 1:
        return None
    if lay.chunk[2:] != lay.shard[2:]:
        return None
    picks = range(lay.shard[1]) if picks is None else picks
    if out.shape != (len(picks), *lay.shard[2:]) or out.dtype != lay.dtype:
        raise ValueError(f"out must be {lay.dtype} {(len(picks), *lay.shard[2:])}, got {out.shape}")
    read = RowRead(out)
    _pools("read").submit(read.run, _read_into, _shard_path(Path(array_dir), lay, row), lay, picks)
    return read


class RowRead:
    """A row being decoded into `out` by a reader thread, entry after entry in the order
    picked. `entry(k)` waits for the k-th only: a patch task cuts the first frame of an
    acquisition while the others are decoded (waiting for all of a task's first acquisition
    cost 9% of the task threads' time). `result()` waits for all and returns `out`. An error
    of the read is raised by both."""

    def __init__(self, out: np.ndarray) -> None:
        self._out, self._ready, self._error = out, 0, None
        self._cond = threading.Condition()

    def entry(self, k: int) -> np.ndarray:
        with self._cond:
            self._cond.wait_for(lambda: self._ready > k or self._error is not None)
            if self._ready <= k:
                raise self._error
        return self._out[k]

    def result(self) -> np.ndarray:
        self.entry(len(self._out) - 1)
        return self._out

    def run(self, read: Callable, *args: object) -> None:
        """In the reader thread: `read(*args, out, done)`, `done(k)` after each entry."""
        try:
            read(*args, self._out, self._done)
        except BaseException as e:
            with self._cond:
                self._error = e
                self._cond.notify_all()

    def _done(self, k: int) -> None:
        with self._cond:
            self._ready = k + 1
            self._cond.notify_all()


def _read_into(
    path: Path, lay: _Layout, picks: Sequence[int], out: np.ndarray, done: Callable[[int], None]
) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:  # never written: all fill value, as zarr reads it
        out[...] = lay.fill
        done(len(picks) - 1)
        return
    try:
        size = os.fstat(fd).st_size
        raw = _buffer(size)
        got = os.readv(fd, [memoryview(raw)[:size]])
    finally:
        os.close(fd)
    n = math.prod(lay.grid)
    index_at = size - 16 * n - 4 if lay.index_at_end else 0
    if got != size or index_at < 0:
        raise ValueError(f"{path}: damaged shard: {got} bytes, too short for its index")
    index = np.frombuffer(raw, dtype="<u8", count=2 * n, offset=index_at)
    stored = int.from_bytes(raw[index_at + 16 * n : index_at + 16 * n + 4], "little")
    if google_crc32c.value(index.tobytes()) != stored:
        raise ValueError(f"{path}: damaged shard: its index does not match its checksum")
    view = memoryview(raw)
    for k, c in enumerate(picks):
        start, nbytes = int(index[2 * c]), int(index[2 * c + 1])
        if start == _EMPTY and nbytes == _EMPTY:
            out[k] = lay.fill
        else:
            try:
                lay.codec.decode(view[start : start + nbytes], out=out[k])
            except RuntimeError as e:  # numcodecs' word for a chunk that does not decode
                raise ValueError(f"{path}: damaged shard: chunk {c}: {e}") from e
        done(k)


_pool: dict[str, tuple[int, ThreadPoolExecutor]] = {}
_pool_lock = threading.Lock()


def _pools(kind: str) -> ThreadPoolExecutor:
    """The process's threads that read or write shards (two of each: one shard of each of two
    task threads in flight; more would only queue for the same disk). Kept for the process,
    so each thread keeps its buffer; a forked child starts its own."""
    with _pool_lock:
        pid, pool = _pool.get(kind, (None, None))
        if pool is None or pid != os.getpid():
            pool = ThreadPoolExecutor(2, thread_name_prefix=f"bfsdata-shard-{kind}")
            _pool[kind] = (os.getpid(), pool)
        return pool


def _shard_path(array_dir: Path, lay: _Layout, row: int) -> Path:
    rest = "/".join("0" for _ in lay.shard[1:])
    return array_dir / "c" / str(row // lay.shard[0]) / rest


def _encode_row(lay: _Layout, row: np.ndarray) -> list[bytes]:
    """The chunks of one row (index 0 along axis 0), in C order."""
    data = np.ascontiguousarray(row, dtype=lay.dtype)
    if len(lay.cells) == 1:  # the row is one chunk (a patch)
        return [lay.codec.encode(data)]
    return [lay.codec.encode(np.ascontiguousarray(data[cell])) for cell in lay.cells]


def _assemble(lay: _Layout, pieces: list[bytes]) -> list[bytes]:
    """A shard's bytes: its first len(pieces) chunks in C order, the others not stored."""
    first = 0 if lay.index_at_end else _index_size(lay)
    index = _index(lay, [len(p) for p in pieces], first)
    return [*pieces, index] if lay.index_at_end else [index, *pieces]


def _index(lay: _Layout, sizes: list[int], first: int) -> bytes:
    """A shard's index and its crc32c, for chunks of `sizes` bytes stored one after the other
    from byte `first` on, in C order; the shard's other chunks are not stored."""
    index = np.full((math.prod(lay.grid), 2), _EMPTY, dtype="<u8")
    n = np.asarray(sizes, dtype=np.uint64)
    index[: len(n), 0] = first + np.cumsum(n) - n
    index[: len(n), 1] = n
    raw = index.tobytes()
    return raw + np.uint32(google_crc32c.value(raw)).astype("<u4").tobytes()


def _index_size(lay: _Layout) -> int:
    return 16 * math.prod(lay.grid) + 4


def _largest_shard(lay: _Layout) -> int:
    """Bytes of a shard whose every chunk blosc stored uncompressed (16 bytes of header)."""
    chunk = math.prod(lay.chunk) * lay.dtype.itemsize
    return math.prod(lay.grid) * (chunk + 16) + _index_size(lay)


def _fill_buffers(n: int) -> list[mmap.mmap]:
    """This thread's two page-aligned buffers of at least n bytes for an Appender's shards."""
    bufs = getattr(_local, "fill", None)
    if bufs is None or len(bufs[0]) < n:
        size = -(-n // _ALIGN) * _ALIGN
        bufs = _local.fill = [mmap.mmap(-1, size), mmap.mmap(-1, size)]
    return bufs


def _buffer(n: int) -> mmap.mmap:
    """A page-aligned buffer (as O_DIRECT wants) of at least n bytes for a shard file's bytes,
    kept per thread: fresh pages cost a fault each on this VM, so it is reused from shard to
    shard, read or written."""
    buf = getattr(_local, "buf", None)
    if buf is None or len(buf) < n:
        buf = _local.buf = mmap.mmap(-1, max(n, 1 << 24))
    return buf


def _write_file(path: Path, pieces: list[memoryview | bytes]) -> None:
    n = sum(len(p) for p in pieces)
    buf = _buffer(-(-n // _ALIGN) * _ALIGN)
    with memoryview(buf) as view:
        pos = 0
        for p in pieces:
            view[pos : pos + len(p)] = p
            pos += len(p)
        _store(path, view, n)


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


def _layout(array_dir: Path) -> _Layout | None:
    meta = array_dir / "zarr.json"
    try:
        stamp = meta.stat().st_mtime_ns
    except OSError:
        return None
    return _parse(str(meta), stamp)


@functools.lru_cache(maxsize=16)
def _parse(meta_path: str, stamp: int) -> _Layout | None:
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
    return _Layout(shard, chunk, dtype, codec, cfg.get("index_location", "end") == "end", fill)
