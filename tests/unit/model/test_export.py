"""The exported generator: the SavedModel's `serve` / `serve_float` give the Keras generator's
reconstruction, score = 1 - SSIM(X, X^) and a heatmap in [0, 1]; model.json says what it is."""

from __future__ import annotations

import os

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # CPU only: tests must not depend on a GPU
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from workspace_fixtures import EPOCHS, SIZE, STEPS, SharedRun, shared_run

from bfsdata.model import losses
from bfsdata.score import load_scorer
from bfsdata.store import arrays as store_io
from bfsdata.store import location as store
from bfsdata.workspace import manifest


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> SharedRun:
    return shared_run(tmp_path_factory)


@pytest.fixture(scope="module")
def patches(run: SharedRun) -> np.ndarray:
    """12 store patches of the test strips, frames and rank images, (12, P, P, 1) uint8."""
    rows = manifest.read(run.ws, manifest.PATCHES)
    rows = rows[rows["strip"].isin(["D1", "G3"])]["patch"].to_numpy()
    pick = np.sort(np.random.default_rng(0).choice(rows, 12, replace=False))
    x = store_io.ts_array(store.store_path(run.ws), "patches")[pick].read().result()
    return x[..., None]


@pytest.fixture(scope="module")
def saved(run: SharedRun):
    return tf.saved_model.load(str(run.run_dir / "export" / "saved_model"))


@pytest.fixture(scope="module")
def generator(run: SharedRun) -> keras.Model:
    return keras.saving.load_model(run.run_dir / "export" / "generator.keras")


def test_export_writes_the_three_artefacts(run: SharedRun) -> None:
    export = run.run_dir / "export"
    assert (export / "saved_model" / "saved_model.pb").is_file()
    assert (export / "generator.keras").is_file()
    meta = json.loads((export / "model.json").read_text())
    assert meta["patch_size"] == SIZE
    assert meta["steps"] == EPOCHS * STEPS
    assert meta["pipeline"] == "tiny" and meta["pipeline_sha256"] == run.pipe.sha256


def test_serve_matches_the_keras_generator(saved, generator, patches: np.ndarray) -> None:
    x = patches.astype(np.float32) / 255.0  # (B, P, P, 1) in [0, 1]
    want = np.asarray(generator(x, training=False)["x_hat"])
    out_u8 = {k: v.numpy() for k, v in saved.serve(tf.constant(patches)).items()}
    out_f = {k: v.numpy() for k, v in saved.serve_float(tf.constant(x)).items()}
    assert set(out_u8) == set(out_f) == {"reconstruction", "score", "heatmap"}
    for out in (out_u8, out_f):
        assert out["reconstruction"].shape == x.shape and out["reconstruction"].dtype == np.float32
        np.testing.assert_allclose(out["reconstruction"], want, atol=1e-5)
        # score = 1 - SSIM(X, X^) of the same reconstruction, (B,)
        ssim = np.asarray(losses.ssim(x, out["reconstruction"]))
        assert out["score"].shape == (len(x),)
        np.testing.assert_allclose(out["score"], 1.0 - ssim, atol=1e-5)
        heat = out["heatmap"]
        assert heat.shape == x.shape
        assert heat.min() >= 0.0 and heat.max() <= 1.0
        np.testing.assert_allclose(heat.max(axis=(1, 2, 3)), 1.0, atol=1e-6)  # min-max per patch
        np.testing.assert_allclose(heat, np.asarray(losses.heatmap(x, want)), atol=1e-4)
    # uint8 in: the serving graph's x / 255 may be rewritten as x * (1 / 255) and round the last
    # bit the other way; SSIM's ratios of sums carry that to ~1e-6 (measured 1.01e-6 once)
    np.testing.assert_allclose(out_u8["score"], out_f["score"], atol=1e-5)


def test_endpoints_are_signatures_for_the_cpp_api(saved, patches: np.ndarray) -> None:
    # LoadSavedModel in C++ sees signatures only, called by input name.
    assert {"serve", "serve_float"} <= set(saved.signatures)
    by_sig = saved.signatures["serve"](patches=tf.constant(patches))
    direct = saved.serve(tf.constant(patches))
    assert set(by_sig) == {"reconstruction", "score", "heatmap"}
    np.testing.assert_allclose(by_sig["score"].numpy(), direct["score"].numpy(), atol=1e-6)


def test_serve_accepts_any_batch_size(saved, patches: np.ndarray) -> None:
    one = saved.serve(tf.constant(patches[:1]))["score"].numpy()
    many = saved.serve(tf.constant(patches))["score"].numpy()
    assert one.shape == (1,)
    np.testing.assert_allclose(one, many[:1], atol=1e-5)  # inference: no batch statistics


def test_serve_refuses_another_patch_size(saved) -> None:
    with pytest.raises((ValueError, TypeError)):
        saved.serve(tf.zeros((1, 2 * SIZE, 2 * SIZE, 1), tf.uint8))


def test_load_scorer_serves_uint8_store_patches(run: SharedRun, saved, patches) -> None:
    serve = load_scorer(run.run_dir)
    got = serve(patches[..., 0])  # (B, P, P) as read from the store: the channel is added
    want = saved.serve(tf.constant(patches))["score"].numpy()
    np.testing.assert_allclose(got["score"], want, atol=1e-6)


def test_a_score_at_the_patch_range_is_exported_and_recorded(
    generator, patches: np.ndarray, tmp_path
) -> None:
    """train.loss.score_range patch: the SavedModel's score takes the SSIM constants of each
    patch's own span (losses.patch_range), and model.json and the report's label say so."""
    from bfsdata.config.training import LossConfig
    from bfsdata.model.export import export
    from bfsdata.score import score_label

    cfg = LossConfig(score_share=0.01, score_range="patch")
    saved = tf.saved_model.load(str(export(generator, tmp_path / "export", cfg, {})))
    x = patches.astype(np.float32) / 255.0
    out = saved.serve_float(tf.constant(x))
    want = losses.anomaly_score(x, out["reconstruction"].numpy(), cfg)
    np.testing.assert_allclose(out["score"].numpy(), np.asarray(want), atol=1e-5)
    assert json.loads((tmp_path / "export" / "model.json").read_text())["score_range"] == "patch"
    assert score_label(tmp_path) == "1 - SSIM at the patch's range, worst 1% of the map"
