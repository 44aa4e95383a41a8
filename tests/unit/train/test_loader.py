"""Loader: pass coverage, order as a function of (seed, step), resume, values, eval scan, errors.

The store is a tiny patch array laid out by `require_patches` (32x32 patches, shards of 16);
pixel (0, 0) of patch r holds r, so a batch tells which rows it holds.
"""

from __future__ import annotations

import os

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pickle
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import zarr

from bfsdata.config.pipeline import StoreConfig
from bfsdata.store.location import require_patches
from bfsdata.train.loader import LoaderError, _Reader, eval_dataset, to_float, train_dataset

N, P = 96, 32
ROWS = np.arange(3, N, 2)[:40]  # 40 training rows, not a prefix of the store


@pytest.fixture(scope="module")
def patch_store(tmp_path_factory) -> tuple[Path, np.ndarray]:
    path = tmp_path_factory.mktemp("ws") / "bfsdata.zarr"
    arr = require_patches(
        zarr.open_group(str(path), mode="a"), size=P, cfg=StoreConfig(patch_shard=16)
    )
    data = np.random.default_rng(0).integers(0, 256, (N, P, P), dtype=np.uint8)
    data[:, 0, 0] = np.arange(N)
    arr.resize((N, P, P))
    arr[:] = data
    return path, data


def _ids(x) -> np.ndarray:
    """Store rows of a batch, from pixel (0, 0)."""
    return x.numpy()[:, 0, 0, 0].astype(int)


def _steps(ds, n: int) -> list[tuple[np.ndarray, int]]:
    return [(_ids(x), int(s)) for x, s in ds.take(n)]


def test_each_pass_holds_every_row_once(patch_store):
    store, _ = patch_store
    batch = 8  # 40 rows: 5 steps per pass
    got = _steps(train_dataset(store, ROWS, batch=batch, seed=3), 10)
    assert [s for _, s in got] == list(range(10))
    pass0 = np.concatenate([r for r, _ in got[:5]])
    pass1 = np.concatenate([r for r, _ in got[5:]])
    assert sorted(pass0) == sorted(ROWS) and sorted(pass1) == sorted(ROWS)
    assert not np.array_equal(pass0, pass1)
    for rows, _ in got:
        assert (np.diff(rows) >= 0).all()  # delivered in ascending row order


def test_order_is_the_documented_function_of_seed_and_step(patch_store):
    """Batches are slices of concatenated pass permutations, crossing pass boundaries."""
    store, _ = patch_store
    batch, seed, n = 12, 5, len(ROWS)
    perms = [ROWS[np.random.default_rng([seed, p]).permutation(n)] for p in range(4)]
    flat = np.concatenate(perms)
    got = _steps(train_dataset(store, ROWS, batch=batch, seed=seed), 10)  # 120 = 3 passes
    for step, (rows, _) in enumerate(got):
        np.testing.assert_array_equal(rows, np.sort(flat[step * batch : (step + 1) * batch]))
    counts = np.bincount(np.concatenate([r for r, _ in got]), minlength=N)
    assert (counts[ROWS] == 3).all() and counts.sum() == 120


def test_seeds(patch_store):
    store, _ = patch_store
    a = _steps(train_dataset(store, ROWS, batch=8, seed=0), 5)
    b = _steps(train_dataset(store, ROWS, batch=8, seed=0), 5)
    c = _steps(train_dataset(store, ROWS, batch=8, seed=1), 5)
    flat = [np.concatenate([r for r, _ in s]) for s in (a, b, c)]
    assert np.array_equal(flat[0], flat[1])
    assert not np.array_equal(flat[0], flat[2])


def test_resume_equals_the_tail(patch_store):
    store, _ = patch_store
    full = list(train_dataset(store, ROWS, batch=12, seed=2).take(9))
    tail = list(train_dataset(store, ROWS, batch=12, seed=2, start_step=4).take(5))
    for (xa, sa), (xb, sb) in zip(full[4:], tail, strict=True):
        assert int(sa) == int(sb)
        assert np.array_equal(xa.numpy(), xb.numpy())


def test_values_are_the_stored_patches(patch_store):
    store, data = patch_store
    ds = train_dataset(store, ROWS, batch=8, seed=0)
    assert ds.element_spec[0].shape == (8, P, P, 1)
    x, _ = next(iter(ds))
    want = data[_ids(x)]
    assert x.dtype == tf.uint8
    np.testing.assert_array_equal(x.numpy()[..., 0], want)
    f = to_float(x).numpy()  # what training feeds the augmentation
    assert f.dtype == np.float32 and f.shape == x.shape
    np.testing.assert_allclose(f[..., 0], want / 255, rtol=1e-6)


def test_eval_scan_in_given_order(patch_store):
    store, data = patch_store
    rows = np.random.default_rng(1).permutation(ROWS)
    got = list(eval_dataset(store, rows, batch=7))
    assert [len(i) for _, i in got] == [7] * 5 + [5]
    idx = np.concatenate([i.numpy() for _, i in got])
    np.testing.assert_array_equal(idx, rows)
    x = np.concatenate([x.numpy() for x, _ in got])
    np.testing.assert_array_equal(x[..., 0], data[rows])


def test_eval_scan_with_repeated_rows(patch_store):
    store, data = patch_store
    rows = np.array([9, 3, 9, 5])
    ((x, idx),) = list(eval_dataset(store, rows, batch=8))
    np.testing.assert_array_equal(idx.numpy(), rows)
    np.testing.assert_array_equal(x.numpy()[..., 0], data[rows])


def test_reader_pickles_without_its_handle(patch_store):
    store, data = patch_store
    reader = _Reader(store)
    assert (reader.read(np.array([1, 2])) == data[1:3]).all()
    clone = pickle.loads(pickle.dumps(reader))
    assert clone._arr is None
    assert (clone.read(np.array([4])) == data[4:5]).all()


def test_refusals(patch_store, tmp_path):
    store, _ = patch_store
    with pytest.raises(LoaderError, match="no patch array"):
        train_dataset(tmp_path / "bfsdata.zarr", ROWS, batch=4, seed=0)
    with pytest.raises(LoaderError, match="outside the store"):
        train_dataset(store, np.array([1, N]), batch=4, seed=0)
    with pytest.raises(LoaderError, match="non-empty 1-D integer"):
        eval_dataset(store, np.array([], dtype=np.int64), batch=4)
    with pytest.raises(LoaderError, match="batch must be"):
        eval_dataset(store, ROWS, batch=0)
    with pytest.raises(LoaderError, match="seed and start_step"):
        train_dataset(store, ROWS, batch=4, seed=-1)
