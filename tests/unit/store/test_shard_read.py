"""bfsdata.store.shard_read decodes rows of shard files, written by zarr-python or bfsdata, into the
caller's buffers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from shard_arrays import sharded_array

from bfsdata.store import shard_read
from bfsdata.store import shard_write as shard_file


@pytest.mark.parametrize(
    ("dtype", "codec"),
    [("uint8", {}), ("uint16", {"cname": "zstd", "clevel": 3, "shuffle": "shuffle"})],
)
def test_read_async_decodes_a_row_into_the_callers_buffer(tmp_path: Path, dtype, codec) -> None:
    folder = tmp_path / "frames"
    arr = sharded_array(folder, (3, 5, 24, 40), (1, 5, 24, 40), (1, 1, 24, 40), dtype, **codec)
    data = np.random.default_rng(1).integers(0, 200, (3, 5, 24, 40)).astype(dtype)
    arr[:] = data  # written by zarr-python: the reader takes the standard bytes
    out = np.zeros((5, 24, 40), dtype)
    assert shard_read.read_async(folder, 1, out).result() is out
    np.testing.assert_array_equal(out, data[1])
    picked = np.zeros((2, 24, 40), dtype)
    shard_read.read_async(folder, 2, picked, [4, 0]).result()
    np.testing.assert_array_equal(picked, data[2, [4, 0]])


def test_read_async_reads_a_missing_shard_as_the_fill_value(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    sharded_array(folder, (2, 3, 8, 8), (1, 3, 8, 8), (1, 1, 8, 8), "uint8")
    out = np.full((3, 8, 8), 9, np.uint8)
    shard_read.read_async(folder, 1, out).result()
    np.testing.assert_array_equal(out, 0)


def test_read_async_refuses_a_damaged_shard_by_name(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    sharded_array(folder, (2, 3, 8, 8), (1, 3, 8, 8), (1, 1, 8, 8), "uint8")
    assert shard_file.write(folder, 0, np.ones((1, 3, 8, 8), np.uint8))
    path = folder / "c" / "0" / "0" / "0" / "0"
    raw = bytearray(path.read_bytes())
    raw[-10] ^= 0xFF  # a bit of the index flipped
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"c/0/0/0/0: damaged shard"):
        shard_read.read_async(folder, 0, np.empty((3, 8, 8), np.uint8)).result()


def test_read_async_hands_out_each_entry_as_it_is_decoded(tmp_path: Path) -> None:
    """Entries decode in the order picked: one before a damaged chunk is served, the damaged
    one and the whole read raise an error naming the file and the chunk."""
    folder = tmp_path / "frames"
    sharded_array(folder, (1, 3, 8, 8), (1, 3, 8, 8), (1, 1, 8, 8), "uint8")
    data = np.arange(3 * 64, dtype=np.uint8).reshape(1, 3, 8, 8)
    assert shard_file.write(folder, 0, data)
    path = folder / "c" / "0" / "0" / "0" / "0"
    raw = bytearray(path.read_bytes())
    start = int.from_bytes(raw[-4 - 16 * 3 + 16 : -4 - 16 * 3 + 24], "little")  # chunk 1
    raw[start : start + 16] = bytes(16)  # its blosc header zeroed; the index stays intact
    path.write_bytes(bytes(raw))
    read = shard_read.read_async(folder, 0, np.zeros((3, 8, 8), np.uint8), [2, 0, 1])
    np.testing.assert_array_equal(read.entry(0), data[0, 2])
    np.testing.assert_array_equal(read.entry(1), data[0, 0])
    with pytest.raises(ValueError, match=r"c/0/0/0/0: damaged shard: chunk 1: .*blosc"):
        read.entry(2)
    with pytest.raises(ValueError, match="chunk 1"):
        read.result()


def test_read_async_leaves_other_layouts_to_the_caller(tmp_path: Path) -> None:
    folder = tmp_path / "patches"
    sharded_array(folder, (8, 4, 4), (4, 4, 4), (1, 4, 4), "uint8")  # shards of several rows
    assert shard_read.read_async(folder, 0, np.empty((4, 4), np.uint8)) is None
