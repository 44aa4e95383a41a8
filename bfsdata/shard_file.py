"""Whole zarr v3 shards written straight to a local file, past the page cache.

Why: on the 2-core development VM a buffered `write()` costs 3.1 ms of kernel CPU per MB (page
allocation in the page cache), so storing one 1024x1280 frame cost more CPU than encoding it, and
ingest spent a quarter of its cores handing bytes to the kernel. The same bytes written with
O_DIRECT from an aligned buffer cost 0.08 ms per MB (benchmarks/ingest.py, README). Every bfsdata
writer already builds whole shards (DESIGN.md section 6), which is what O_DIRECT wants: one large
aligned write per file.

Only the layout bfsdata creates is written here: regular chunks inside `sharding_indexed`, inner
codecs `bytes` + `blosc`, index codecs `bytes` (little endian) + `crc32c`. The bytes are the zarr
v3 sharding format (chunks, then the index of (offset, nbytes) pairs in C order of the chunks,
then the index's crc32c); zarr-python and tensorstore read them. Any other layout falls back to
the caller's writer, a file system that refuses O_DIRECT (tmpfs before Linux 6.6, some FUSE
file systems) to a buffered write.
The shard appears by rename, whole or not at all.
"""

from __future__ import annotations

import errno
import functools
import json
import mmap
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import google_crc32c
import numpy as np
from numcodecs import Blosc

_ALIGN = 4096  # O_DIRECT wants address, length and offset aligned to the device's block size
_EMPTY = np.iinfo(np.uint64).max  # index entry of a chunk that is not stored (fill value)
_SHUFFLE = {"noshuffle": Blosc.NOSHUFFLE, "shuffle": Blosc.SHUFFLE, "bitshuffle": Blosc.BITSHUFFLE}


@dataclass(frozen=True)
class _Layout:
    shard: tuple[int, ...]  # shard shape (the outer chunk)
    chunk: tuple[int, ...]  # inner chunk shape
    dtype: np.dtype  # little endian, as the bytes codec stores it
    codec: Blosc
    index_at_end: bool


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
    if lay.chunk[0] != 1 and len(data) % lay.chunk[0]:
        return False  # a partial inner chunk would need padding with the fill value
    blob = _encode(lay, np.ascontiguousarray(data, dtype=lay.dtype))
    rest = "/".join("0" for _ in lay.shard[1:])
    _write_file(Path(array_dir) / "c" / str(row // lay.shard[0]) / rest, blob)
    return True


def _encode(lay: _Layout, data: np.ndarray) -> list[memoryview | bytes]:
    grid = tuple(s // c for s, c in zip(lay.shard, lay.chunk, strict=True))
    index = np.full((*grid, 2), _EMPTY, dtype="<u8")
    pieces: list[memoryview | bytes] = []
    offset = 0 if lay.index_at_end else index.nbytes + 4
    for cell in np.ndindex(grid):
        lo = [i * c for i, c in zip(cell, lay.chunk, strict=True)]
        if lo[0] >= len(data):
            continue
        block = data[tuple(slice(a, a + c) for a, c in zip(lo, lay.chunk, strict=True))]
        enc = lay.codec.encode(np.ascontiguousarray(block))
        index[cell] = (offset, len(enc))
        pieces.append(enc)
        offset += len(enc)
    raw = index.tobytes()
    tail = raw + np.uint32(google_crc32c.value(raw)).astype("<u4").tobytes()
    return [*pieces, tail] if lay.index_at_end else [tail, *pieces]


_local = threading.local()


def _buffer(n: int) -> mmap.mmap:
    """A page-aligned buffer of at least n bytes, kept per thread: fresh pages cost a fault each
    on this VM, so the buffer is reused from shard to shard."""
    buf = getattr(_local, "buf", None)
    if buf is None or len(buf) < n:
        buf = _local.buf = mmap.mmap(-1, max(n, 1 << 24))
    return buf


def _write_file(path: Path, pieces: list[memoryview | bytes]) -> None:
    n = sum(len(p) for p in pieces)
    padded = -(-n // _ALIGN) * _ALIGN
    buf = _buffer(padded)
    with memoryview(buf) as view:
        pos = 0
        for p in pieces:
            view[pos : pos + len(p)] = p
            pos += len(p)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.partial")
        try:
            _write_direct(tmp, view, n, padded)
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
    if any(s % c for s, c in zip(shard, chunk, strict=True)):
        return None
    codec = Blosc(b["cname"], int(b["clevel"]), _SHUFFLE[b["shuffle"]], int(b.get("blocksize", 0)))
    return _Layout(shard, chunk, dtype, codec, cfg.get("index_location", "end") == "end")
