"""bfsdata.store.shard_write writes zarr v3 shards that zarr-python and tensorstore read back."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
import tensorstore as ts
import zarr
from shard_arrays import sharded_array
from zarr.codecs import GzipCodec

from bfsdata.config.pipeline import StoreConfig
from bfsdata.store import arrays as store_io
from bfsdata.store import location as store
from bfsdata.store import shard_write as shard_file


def _ts_read(folder: Path, sel) -> np.ndarray:
    spec = {"driver": "zarr3", "kvstore": {"driver": "file", "path": str(folder)}}
    return ts.open(spec, open=True).result()[sel].read().result()


@pytest.mark.parametrize(
    ("dtype", "codec"),
    [
        ("uint8", {}),  # the store's default: lz4 + bit shuffle
        ("uint16", {"cname": "zstd", "clevel": 3, "shuffle": "shuffle"}),
    ],
)
def test_frames_shard_reads_back_in_zarr_and_tensorstore(tmp_path: Path, dtype, codec) -> None:
    folder = tmp_path / "frames"
    sharded_array(folder, (3, 4, 24, 40), (1, 4, 24, 40), (1, 1, 24, 40), dtype, **codec)
    rng = np.random.default_rng(0)
    data = rng.integers(0, np.iinfo(dtype).max, (1, 4, 24, 40), dtype=dtype)
    data[0, 2] = 0  # a chunk equal to the fill value is written like any other
    assert shard_file.write(folder, 1, data)
    arr = zarr.open_array(str(folder), mode="r")
    np.testing.assert_array_equal(arr[1], data[0])
    np.testing.assert_array_equal(arr[0], 0)  # other shards untouched
    np.testing.assert_array_equal(_ts_read(folder, 1), data[0])
    assert not list(folder.rglob("*.partial"))


def test_partial_last_shard_leaves_the_rest_to_the_fill_value(tmp_path: Path) -> None:
    folder = tmp_path / "patches"
    sharded_array(folder, (16, 8, 8), (8, 8, 8), (1, 8, 8), "uint8")
    data = np.arange(5 * 64, dtype=np.uint8).reshape(5, 8, 8) + 1
    assert shard_file.write(folder, 8, data)  # rows 8..12 of shard 1
    got = zarr.open_array(str(folder), mode="r")[8:16]
    np.testing.assert_array_equal(got[:5], data)
    np.testing.assert_array_equal(got[5:], 0)
    np.testing.assert_array_equal(_ts_read(folder, slice(8, 13)), data)


def test_rewrite_replaces_the_shard_whole(tmp_path: Path) -> None:
    folder = tmp_path / "patches"
    sharded_array(folder, (8, 4, 4), (4, 4, 4), (1, 4, 4), "uint8")
    shard_file.write(folder, 0, np.full((4, 4, 4), 7, np.uint8))
    shard_file.write(folder, 0, np.full((2, 4, 4), 9, np.uint8))
    got = zarr.open_array(str(folder), mode="r")[:4]
    np.testing.assert_array_equal(got[:2], 9)
    np.testing.assert_array_equal(got[2:], 0)  # no chunk of the old shard survives


def test_other_layouts_are_left_to_the_caller(tmp_path: Path) -> None:
    gzip = tmp_path / "gzip"
    zarr.create_array(
        str(gzip), shape=(2, 4, 4), shards=(1, 4, 4), chunks=(1, 4, 4), dtype="uint8",
        compressors=GzipCodec(), zarr_format=3,
    )  # fmt: skip
    plain = tmp_path / "plain"
    _ = zarr.create_array(str(plain), shape=(2, 4, 4), chunks=(1, 4, 4), dtype="uint8")
    data = np.ones((1, 4, 4), np.uint8)
    assert not shard_file.write(gzip, 0, data)
    assert not shard_file.write(plain, 0, data)
    assert not shard_file.write(tmp_path / "missing", 0, data)
    assert not list(gzip.rglob("c/*")) and not list(plain.rglob("c/*"))


def test_row_must_start_a_shard(tmp_path: Path) -> None:
    folder = tmp_path / "patches"
    sharded_array(folder, (8, 4, 4), (4, 4, 4), (1, 4, 4), "uint8")
    with pytest.raises(ValueError, match="does not start a shard"):
        shard_file.write(folder, 2, np.ones((2, 4, 4), np.uint8))


@pytest.mark.skipif(not hasattr(os, "O_DIRECT"), reason="no O_DIRECT on this platform")
def test_a_file_system_refusing_o_direct_gets_a_buffered_write(tmp_path: Path, monkeypatch) -> None:
    """tmpfs before Linux 6.6 and some FUSE file systems answer O_DIRECT with EINVAL."""
    real_open = os.open
    refused = []

    def open_refusing_direct(path, flags, *args):
        if flags & os.O_DIRECT:
            refused.append(path)
            raise OSError(errno.EINVAL, "Invalid argument", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(shard_file.os, "open", open_refusing_direct)
    folder = tmp_path / "frames"
    sharded_array(folder, (2, 4, 4), (1, 4, 4), (1, 4, 4), "uint8")
    data = np.full((1, 4, 4), 5, np.uint8)
    assert shard_file.write(folder, 1, data)
    assert refused  # the direct write was tried first
    np.testing.assert_array_equal(zarr.open_array(str(folder), mode="r")[1], data[0])
    assert not list(folder.rglob("*.partial"))


@pytest.mark.parametrize("codec", ["blosc", "gzip"], ids=["appender", "other-layout"])
def test_shard_writer_fills_whole_shards_from_blocks_of_any_size(tmp_path: Path, codec) -> None:
    """Blocks straddle shards; each shard is stored once, the last one partial. A layout
    shard_file does not write goes through the general writer and gives the same array."""
    root = tmp_path / "store.zarr"
    zarr.open_group(str(root), mode="w", zarr_format=3).create_array(
        "a", shape=(24, 4, 4), shards=(8, 4, 4), chunks=(1, 4, 4), dtype="uint8",
        compressors=GzipCodec() if codec == "gzip" else store.codec(StoreConfig()),
        fill_value=0,
    )  # fmt: skip
    data = np.arange(12 * 16, dtype=np.uint8).reshape(12, 4, 4) + 1
    stored = []
    with store_io.ShardWriter(str(root), "a", 8, lambda: stored.append(1)) as w:
        for lo, hi in ((0, 3), (3, 10), (10, 12)):
            block = data[lo:hi].copy()
            w.add(block)
            block[:] = 0  # the caller may reuse its buffer at once
        assert w.row == 20
    assert len(stored) == 2  # shard 1 full, shard 2 with its first 4 rows
    got = zarr.open_array(str(root / "a"), mode="r")[:]
    np.testing.assert_array_equal(got[8:20], data)
    np.testing.assert_array_equal(got[:8], 0)
    np.testing.assert_array_equal(got[20:], 0)
    np.testing.assert_array_equal(_ts_read(root / "a", slice(8, 20)), data)
    assert not list(root.rglob("*.partial"))


def test_shard_writer_left_by_an_error_stores_no_partial_shard(tmp_path: Path) -> None:
    folder = tmp_path / "store.zarr" / "a"
    sharded_array(folder, (16, 4, 4), (4, 4, 4), (1, 4, 4), "uint8")
    with (
        pytest.raises(RuntimeError, match="cut failed"),
        store_io.ShardWriter(str(folder.parent), "a", 0) as w,
    ):
        w.add(np.full((6, 4, 4), 3, np.uint8))
        raise RuntimeError("cut failed")
    got = zarr.open_array(str(folder), mode="r")[:]
    np.testing.assert_array_equal(got[:4], 3)  # the full shard was stored
    np.testing.assert_array_equal(got[4:], 0)  # the partial one was not
    assert not list(folder.rglob("*.partial"))


def test_a_failed_background_write_is_raised_to_the_task(tmp_path: Path) -> None:
    folder = tmp_path / "store.zarr" / "a"
    sharded_array(folder, (16, 4, 4), (4, 4, 4), (1, 4, 4), "uint8")
    (folder / "c").mkdir()
    (folder / "c" / "1").write_text("in the way")  # shard 1's folder cannot be made
    with pytest.raises(OSError), store_io.ShardWriter(str(folder.parent), "a", 4) as w:
        w.add(np.ones((4, 4, 4), np.uint8))
