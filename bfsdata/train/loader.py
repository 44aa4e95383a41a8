"""tf.data input pipelines over the patch store: an endless training stream and a finite scan.

Training order is a pure function of (seed, step), so a run resumed at step k sees exactly the
batches the uninterrupted run saw from step k on:

    position g = step * batch + i      (i = 0 .. batch - 1)
    pass p = g // n, offset o = g % n  (n = len(patch_rows))
    row(g) = patch_rows[perm_p[o]],    perm_p = numpy.random.default_rng([seed, p]).permutation(n)

Batches are consecutive slices of the concatenated pass permutations, so a batch may straddle
two passes (and then may hold one patch twice). Inside a batch the rows are sorted ascending
before the read, and the batch is delivered in that sorted order (not the drawn order): shard
access is sequential and the content of a step is the same either way.

Batches are uint8, as stored: the consumer turns them into floats where it needs them (`to_float`
in the augmentation map of training, or on the accelerator inside a model), so host buffers and
transfers stay 4x smaller, and less CPU is spent per patch (benchmarks/loader.py;
docs/performance.md, Training).

Reads are tensorstore batch reads of the sorted rows, much faster than zarr-python's
(docs/performance.md, Store reads and writes).
The handle is opened lazily inside the reading function, once per process, never at dataset
construction (the dataset may be forked or pickled). Memory is O(batch * prefetch) patches
plus the cached permutation of the current pass (8 bytes per training patch).
"""

from __future__ import annotations

import functools
import json
import os
import threading
from pathlib import Path

import numpy as np
import tensorflow as tf

from bfsdata.store import arrays as store_io
from bfsdata.store import location as store_mod

_ARRAY = "patches"


class LoaderError(ValueError):
    """The store or the requested rows cannot be read; the message says what to do."""


def train_dataset(
    store: Path, patch_rows: np.ndarray, *, batch: int, seed: int, start_step: int = 0
) -> tf.data.Dataset:
    """Endless (x, step) batches for steps start_step, start_step + 1, ...

    x: (batch, P, P, 1) uint8; step: int64 scalar, the global step of the batch.
    store: the `bfsdata.zarr` folder (`bfsdata.store.location.store_path(workspace)`);
    patch_rows: the `patch` column of the training patches. See the module docstring for the order.
    """
    rows, size = _check(store, patch_rows, batch)
    if seed < 0 or start_step < 0:
        raise LoaderError(f"seed and start_step must be >= 0, got seed={seed}, start={start_step}")
    order = _Order(rows, seed, batch)
    reader = _Reader(str(store))  # a path or a URL (`--store`)

    def load(step: np.int64) -> np.ndarray:
        return reader.read(order.rows(int(step)))  # (batch, P, P) uint8, rows ascending

    def read(step: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        x = tf.numpy_function(load, [step], tf.uint8, stateful=False)
        return tf.ensure_shape(x, (batch, size, size))[..., None], step

    ds = tf.data.Dataset.counter(start=start_step, dtype=tf.int64)
    ds = ds.map(read, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def eval_dataset(store: Path, patch_rows: np.ndarray, *, batch: int) -> tf.data.Dataset:
    """Finite (x, patch) batches of patch_rows in the given order; the last may be smaller.

    x: (b, P, P, 1) uint8; patch: (b,) int64, the store row of each patch.
    """
    rows, size = _check(store, patch_rows, batch)
    reader = _Reader(str(store))  # a path or a URL (`--store`)

    def load(i: np.int64) -> tuple[np.ndarray, np.ndarray]:
        want = rows[int(i) * batch : (int(i) + 1) * batch]
        uniq, back = np.unique(want, return_inverse=True)  # sorted read, then given order
        return reader.read(uniq)[back.reshape(-1)], want

    def read(i: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        x, r = tf.numpy_function(load, [i], (tf.uint8, tf.int64), stateful=False)
        return tf.ensure_shape(x, (None, size, size))[..., None], tf.ensure_shape(r, (None,))

    n_batches = -(-len(rows) // batch)
    ds = tf.data.Dataset.range(n_batches)
    ds = ds.map(read, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


@tf.function(jit_compile=True)
def to_float(x: tf.Tensor) -> tf.Tensor:
    """uint8 patches -> float32 in [0, 1], same shape, one fused pass (less CPU than the
    unfused cast and divide: docs/performance.md, Training). Equal to x / 255 within 1 ulp (XLA
    multiplies by 1 / 255)."""
    return tf.cast(x, tf.float32) / 255.0


def _check(store: Path, patch_rows: np.ndarray, batch: int) -> tuple[np.ndarray, int]:
    """Validate the request against the array's metadata, without opening a handle."""
    fs, meta_file = store_mod.filesystem(f"{store}/{_ARRAY}/zarr.json")
    if not fs.isfile(meta_file):
        raise LoaderError(
            f"{store}: no patch array here ({meta_file} missing); pass the workspace's "
            "bfsdata.zarr folder (bfsdata.store.store_path) after `bfsdata patch`"
        )
    shape = json.loads(fs.cat_file(meta_file))["shape"]
    rows = np.asarray(patch_rows)
    if rows.ndim != 1 or len(rows) == 0 or not np.issubdtype(rows.dtype, np.integer):
        raise LoaderError(
            f"patch_rows must be a non-empty 1-D integer array, got {rows.dtype} {rows.shape}"
        )
    rows = rows.astype(np.int64)
    bad = int(((rows < 0) | (rows >= shape[0])).sum())
    if bad:
        raise LoaderError(
            f"{bad} of {len(rows)} patch rows are outside the store's 0..{shape[0] - 1}; "
            "take them from the patches manifest of this workspace"
        )
    if batch < 1:
        raise LoaderError(f"batch must be >= 1, got {batch}")
    return rows, int(shape[1])


class _Order:
    """Rows of each training step; permutations cached per pass (computed at most twice)."""

    def __init__(self, rows: np.ndarray, seed: int, batch: int) -> None:
        self.rows_all, self.seed, self.batch = rows, seed, batch
        self._perm = functools.lru_cache(maxsize=2)(self._permutation)

    def _permutation(self, p: int) -> np.ndarray:
        return np.random.default_rng([self.seed, p]).permutation(len(self.rows_all))

    def rows(self, step: int) -> np.ndarray:
        """(batch,) sorted store rows of `step`."""
        n = len(self.rows_all)
        g = step * self.batch + np.arange(self.batch, dtype=np.int64)  # global positions
        passes, offsets = np.divmod(g, n)
        out = np.empty(self.batch, np.int64)
        for p in np.unique(passes):
            sel = passes == p
            out[sel] = self.rows_all[self._perm(int(p))[offsets[sel]]]
        return np.sort(out)


class _Reader:
    """Batch reads of sorted rows; the tensorstore handle opens on first use in each process."""

    def __init__(self, store: Path) -> None:
        self.store = store
        self._arr = None
        self._pid = -1
        self._lock = threading.Lock()

    def read(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows), P, P) uint8 for ascending `rows` (duplicates allowed)."""
        return self._array()[rows].read().result()

    def _array(self):
        if self._pid != os.getpid():  # first use, or a forked child: open our own handle
            with self._lock:
                if self._pid != os.getpid():
                    self._arr = store_io.ts_array(self.store, _ARRAY)
                    self._pid = os.getpid()
        return self._arr

    def __getstate__(self) -> dict:
        return {"store": self.store}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["store"])
