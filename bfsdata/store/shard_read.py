"""A row of a frames-like array decoded from its shard file into a buffer the caller keeps, in
a background thread, image by image (the patch stage's reads of a folder store).

Why not tensorstore: it returns each read in a new array (an acquisition's worth), which another
thread than the one that made it frees; glibc kept ever more of that memory, and the patch
stage's peak grew with the data (benchmarks/scale.py; docs/performance.md, Store reads and
writes). The caller's buffers do not. The shard's index is checked against its crc32c, each
chunk decoded by numcodecs' blosc; the layouts read are those bfsdata.store.shard_write writes.
`damage` judges a shard file by its size and index alone, decoding no chunk (verify, repair and
the re-run checks of ingest and patch).
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import google_crc32c
import numpy as np

from bfsdata.store.shard_write import EMPTY, Layout, buffer, index_size, layout, pool, shard_path


class ShardError(ValueError):
    """A shard file that is cut short or whose bytes changed; the message names the file."""

    def __init__(self, path: Path | str, why: str) -> None:
        super().__init__(f"{path}: damaged shard: {why}")
        self.why = why


def read_async(
    array_dir: Path, row: int, out: np.ndarray, picks: Sequence[int] | None = None
) -> RowRead | None:
    """Start decoding row `row` into `out`, in a background thread: the entries `picks` along
    axis 1 (default all), of an array whose shards hold one row and whose chunks one entry
    along axis 1 (frames, rank images). A RowRead of `out`; None, with nothing started, for
    any other layout (the caller then reads another way)."""
    lay = layout(Path(array_dir))
    if lay is None or len(lay.shard) < 3 or lay.shard[0] != 1 or lay.chunk[1] != 1:
        return None
    if lay.chunk[2:] != lay.shard[2:]:
        return None
    picks = range(lay.shard[1]) if picks is None else picks
    if out.shape != (len(picks), *lay.shard[2:]) or out.dtype != lay.dtype:
        raise ValueError(f"out must be {lay.dtype} {(len(picks), *lay.shard[2:])}, got {out.shape}")
    read = RowRead(out)
    pool("read").submit(read.fill, shard_path(Path(array_dir), lay, row), lay, picks)
    return read


class RowRead:
    """A row being decoded into `out` by a reader thread, entry after entry in the order
    picked. `entry(k)` waits for the k-th only: a patch task cuts the first frame of an
    acquisition while the others are decoded (waiting for all of a task's first acquisition
    cost the task threads' time: docs/performance.md, Store reads and writes). `result()` waits
    for all and returns `out`. An error of the read is raised by both."""

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

    def fill(self, path: Path, lay: Layout, picks: Sequence[int]) -> None:
        """In the reader thread: decode the picked entries of `path` into `out`, in order."""
        try:
            _read_into(path, lay, picks, self._out, self._done)
        except BaseException as e:
            with self._cond:
                self._error = e
                self._cond.notify_all()

    def _done(self, k: int) -> None:
        with self._cond:
            self._ready = k + 1
            self._cond.notify_all()


def _read_into(
    path: Path, lay: Layout, picks: Sequence[int], out: np.ndarray, done: Callable[[int], None]
) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:  # never written: all fill value, as zarr reads it
        out[...] = lay.fill
        done(len(picks) - 1)
        return
    try:
        size = os.fstat(fd).st_size
        raw = buffer(size)
        got = os.readv(fd, [memoryview(raw)[:size]])
    finally:
        os.close(fd)
    if got != size:
        raise ShardError(path, f"{got} of its {size} bytes read")
    index = _index(raw, size, lay, path)
    view = memoryview(raw)
    for k, c in enumerate(picks):
        start, nbytes = int(index[2 * c]), int(index[2 * c + 1])
        if start == EMPTY and nbytes == EMPTY:
            out[k] = lay.fill
        else:
            try:
                lay.codec.decode(view[start : start + nbytes], out=out[k])
            except RuntimeError as e:  # numcodecs' word for a chunk that does not decode
                raise ShardError(path, f"chunk {c}: {e}") from e
        done(k)


def damage(path: Path, lay: Layout) -> str | None:
    """What is wrong with the shard file `path`, judged by its size and its index (read from
    the file's end, not its chunks): "missing", "damaged: ...", or None when it looks whole."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return "missing"
    try:
        size = os.fstat(fd).st_size
        n = index_size(lay)
        raw = os.pread(fd, n, size - n if lay.index_at_end else 0) if size >= n else b""
    finally:
        os.close(fd)
    try:
        _index(raw, size, lay, path, at=0)
    except ShardError as e:
        return f"damaged ({e.why})"
    return None


def _index(raw, size: int, lay: Layout, path: Path, at: int | None = None) -> np.ndarray:
    """The (offset, nbytes) pairs of a shard of `size` bytes, from `raw` (the whole file, or
    only its index when `at` is 0), checked: present, matching its crc32c, and pointing inside
    the file."""
    n, isz = math.prod(lay.grid), index_size(lay)
    if size < isz or len(raw) < (isz if at == 0 else size):
        raise ShardError(path, f"{size} bytes, too short for its index")
    if at is None:
        at = size - isz if lay.index_at_end else 0
    index = np.frombuffer(raw, dtype="<u8", count=2 * n, offset=at)
    stored = int.from_bytes(raw[at + 16 * n : at + 16 * n + 4], "little")
    if google_crc32c.value(index.tobytes()) != stored:
        raise ShardError(path, "its index does not match its checksum")
    start, nbytes = index[0::2], index[1::2]
    empty = (start == EMPTY) & (nbytes == EMPTY)
    lo, hi = (0, size - isz) if lay.index_at_end else (isz, size)
    with np.errstate(over="ignore"):  # an EMPTY start overflows; those entries are not judged
        inside = (start >= lo) & (start <= hi) & (nbytes <= hi - start)
    if not (empty | inside).all():
        raise ShardError(path, "its index points outside the file")
    return index
