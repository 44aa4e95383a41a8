"""Export the trained generator for inference: a TensorFlow SavedModel and a `.keras` file.

The SavedModel has two endpoints, both (B, P, P, 1) patches in, a dict out:
    serve        uint8 patches (0..255), as cut by `bfsdata patch`
    serve_float  float32 patches in [0, 1]
    -> reconstruction (B, P, P, 1) float32 in [0, 1]
       score          (B,)  1 - SSIM(X, X^), the anomaly score (paper eq. 9; over the worst
                            `train.loss.score_share` of the SSIM map when that is < 1)
       heatmap        (B, P, P, 1) |X - X^| min-max normalised per patch (eqs. 10-11)
It loads with `tf.saved_model.load(path).serve(x)` in Python and through the TensorFlow C++ API
(`LoadSavedModel`, signature `serve`), as the paper's machine does.
model.json: patch_size, the score (`train.loss.score`, `score_share`) and the training
provenance (`meta`), which includes `cut`, the recipe the training patches were cut with
(bfsdata.imaging.cut); infer checks it against the recipe of the thresholds it applies.
With score `residual` the SavedModel's score is not used: report and infer normalise the
reconstruction's residual with export/residual.npz (bfsdata.train.residual).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import keras
import tensorflow as tf

from bfsdata.config.training import LossConfig
from bfsdata.model import losses


def export(generator: keras.Model, out_dir: Path, loss_cfg: LossConfig, meta: dict) -> Path:
    """Write `out_dir/saved_model/`, `out_dir/generator.keras` and `out_dir/model.json`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    p = int(generator.input_shape[1])
    reconstruct = reconstructor(generator)

    def score(x: tf.Tensor) -> dict[str, tf.Tensor]:  # (B, P, P, 1) float32 in [0, 1]
        x_hat = reconstruct(x)
        s = losses.anomaly_score(x, x_hat, loss_cfg)
        return {"reconstruction": x_hat, "score": s, "heatmap": losses.heatmap(x, x_hat)}

    archive = keras.export.ExportArchive()
    archive.track(generator)
    archive.add_endpoint(
        name="serve_float",
        fn=score,
        input_signature=[tf.TensorSpec((None, p, p, 1), tf.float32, name="patches")],
    )
    archive.add_endpoint(
        name="serve",
        fn=lambda x: score(tf.cast(x, tf.float32) / 255.0),
        input_signature=[tf.TensorSpec((None, p, p, 1), tf.uint8, name="patches")],
    )
    archive.write_out(str(out_dir / "saved_model"), verbose=False)
    generator.save(out_dir / "generator.keras")
    (out_dir / "model.json").write_text(
        json.dumps({"patch_size": p, **_score(loss_cfg), **meta}, indent=2)
    )
    return out_dir / "saved_model"


def reconstructor(generator: keras.Model) -> Callable[[tf.Tensor], tf.Tensor]:
    """X -> X^ as inference computes it, (B, P, P, 1) float32 in [0, 1]: encoder -> decoder,
    without the second encoder (a third of G)."""
    encoder, decoder = generator.get_layer("encoder"), generator.get_layer("decoder")
    return lambda x: decoder(encoder(x, training=False), training=False)


def _score(loss_cfg: LossConfig) -> dict:
    """How the output becomes the anomaly score: with `residual`, report and infer take it from
    the reconstruction and export/residual.npz (bfsdata.imaging.residual), which holds its
    settings."""
    return {
        "score": loss_cfg.score,
        "score_share": loss_cfg.score_share,
        "score_range": loss_cfg.score_range,
    }
