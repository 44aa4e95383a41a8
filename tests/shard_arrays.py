"""An empty sharded zarr v3 array of the kind bfsdata writes, for the shard file tests: import
this file (pyproject's pytest `pythonpath` puts tests/ on the path)."""

from __future__ import annotations

from pathlib import Path

import zarr
from zarr.codecs import BloscCodec

from bfsdata.config.pipeline import StoreConfig
from bfsdata.store import location as store


def sharded_array(folder: Path, shape, shards, chunks, dtype, **codec) -> zarr.Array:
    """Blosc `codec` keywords, or the store's default codec without them."""
    return zarr.create_array(
        str(folder),
        shape=shape,
        shards=shards,
        chunks=chunks,
        dtype=dtype,
        compressors=BloscCodec(**codec) if codec else store.codec(StoreConfig()),
        fill_value=0,
        zarr_format=3,
    )
