"""bfsdata.store.shard_read.damage judges a shard file by its size and index alone: whole,
missing, cut short, index changed, index pointing outside the file."""

from __future__ import annotations

from pathlib import Path

import google_crc32c
import numpy as np
import pytest
from shard_arrays import sharded_array

from bfsdata.store import shard_read
from bfsdata.store import shard_write as shard_file


@pytest.fixture
def shard(tmp_path: Path) -> tuple[Path, shard_file.Layout]:
    folder = tmp_path / "frames"
    sharded_array(folder, (2, 3, 8, 8), (1, 3, 8, 8), (1, 1, 8, 8), "uint8")
    data = np.random.default_rng(0).integers(0, 255, (1, 3, 8, 8)).astype(np.uint8)
    assert shard_file.write(folder, 0, data)
    lay = shard_file.layout(folder)
    return shard_file.shard_path(folder, lay, 0), lay


def test_a_whole_shard_has_no_damage(shard) -> None:
    assert shard_read.damage(*shard) is None


def test_a_missing_shard_is_missing(shard) -> None:
    path, lay = shard
    path.unlink()
    assert shard_read.damage(path, lay) == "missing"


@pytest.mark.parametrize("keep", [0, 10, 60, -1])
def test_a_shard_cut_short_is_damaged(shard, keep: int) -> None:
    path, lay = shard
    path.write_bytes(path.read_bytes()[:keep])
    assert shard_read.damage(path, lay).startswith("damaged (")


def test_a_changed_index_fails_its_checksum(shard) -> None:
    path, lay = shard
    raw = bytearray(path.read_bytes())
    raw[-10] ^= 1
    path.write_bytes(bytes(raw))
    assert shard_read.damage(path, lay) == "damaged (its index does not match its checksum)"


def test_an_index_pointing_past_the_file_is_damaged(shard) -> None:
    """An index whose checksum holds but that names more bytes than the file has."""
    path, lay = shard
    raw = path.read_bytes()
    n = shard_file.index_size(lay)
    index = np.frombuffer(raw[-n:-4], dtype="<u8").copy()
    index[1] += 10_000  # chunk 0 claims more bytes than there are
    body = index.tobytes()
    crc = np.uint32(google_crc32c.value(body)).astype("<u4").tobytes()
    path.write_bytes(raw[:-n] + body + crc)
    assert shard_read.damage(path, lay) == "damaged (its index points outside the file)"


def test_chunk_data_is_not_judged(shard) -> None:
    """Flipped chunk bytes keep the index whole: only decoding (verify) finds them."""
    path, lay = shard
    raw = bytearray(path.read_bytes())
    raw[20] ^= 0xFF
    path.write_bytes(bytes(raw))
    assert shard_read.damage(path, lay) is None
