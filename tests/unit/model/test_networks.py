"""GRD-Net networks: shapes at paper size, a small CPU profile in every merge/norm mode."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["CUDA_VISIBLE_DEVICES"] = ""  # CPU only: tests must not depend on a GPU

import ast
import dataclasses
from pathlib import Path

import keras
import numpy as np
import pytest

from bfsdata.config.training import ModelConfig
from bfsdata.model import build_discriminator, build_generator, stage_widths
from bfsdata.model.blocks import norm_act, residual_block

SMALL = ModelConfig(
    patch_size=32, base_width=4, stages=2, latent=8, disc_base_width=4, disc_stages=2
)
MODEL_DIR = Path(__file__).resolve().parents[3] / "bfsdata" / "model"


@pytest.fixture(scope="module")
def paper_generator() -> keras.Model:
    return build_generator(ModelConfig())  # ~400M weights, ~12 s to build on 2 CPU cores


def test_paper_size_generator_shapes(paper_generator: keras.Model) -> None:
    assert stage_widths(ModelConfig()) == [128, 256, 512, 1024]
    encoder = paper_generator.get_layer("encoder")
    # The bottleneck reads the last residual stage: 256 px halved 4 times, 1024 filters.
    assert tuple(encoder.get_layer("flatten").input.shape) == (None, 16, 16, 1024)
    assert tuple(encoder.get_layer("stage3_C_add").output.shape) == (None, 16, 16, 1024)
    assert tuple(encoder.output.shape) == (None, 64)
    decoder = paper_generator.get_layer("decoder")
    assert tuple(decoder.get_layer("unflatten").output.shape) == (None, 16, 16, 1024)
    assert tuple(decoder.output.shape) == (None, 256, 256, 1)
    assert decoder.layers[-1].get_config()["activation"] == "sigmoid"
    out = paper_generator.output
    assert set(out) == {"x_hat", "z", "z_hat"}
    assert tuple(out["x_hat"].shape) == (None, 256, 256, 1)
    assert tuple(out["z"].shape) == tuple(out["z_hat"].shape) == (None, 64)


def test_second_encoder_has_own_weights(paper_generator: keras.Model) -> None:
    enc = paper_generator.get_layer("encoder")
    enc_hat = paper_generator.get_layer("encoder_hat")
    assert isinstance(enc_hat, keras.Model)
    assert enc.count_params() == enc_hat.count_params()
    ids = {id(w) for w in enc.weights}
    assert not ids & {id(w) for w in enc_hat.weights}


@pytest.mark.slow
def test_paper_size_generator_forward(paper_generator: keras.Model) -> None:
    # ~45 s for one 256x256 patch on 2 shared CPU cores (~400M weights).
    x = np.random.default_rng(0).random((1, 256, 256, 1), dtype=np.float32)
    out = paper_generator(x, training=False)
    x_hat = keras.ops.convert_to_numpy(out["x_hat"])
    assert x_hat.shape == (1, 256, 256, 1)
    assert x_hat.min() >= 0.0 and x_hat.max() <= 1.0
    assert keras.ops.convert_to_numpy(out["z_hat"]).shape == (1, 64)


def test_paper_size_discriminator_shapes() -> None:
    disc = build_discriminator(ModelConfig())
    assert tuple(disc.output["features"].shape) == (None, 16, 16, 512)
    assert tuple(disc.output["logits"].shape) == (None, 1)


@pytest.mark.parametrize("norm", ["batch", "layer", "none"])
@pytest.mark.parametrize("merge", ["add", "concat"])
def test_small_profile_runs(merge: str, norm: str) -> None:
    cfg = dataclasses.replace(SMALL, merge=merge, norm=norm)
    gen = build_generator(cfg)
    x = np.random.default_rng(1).random((2, 32, 32, 1), dtype=np.float32)
    out = {k: keras.ops.convert_to_numpy(v) for k, v in gen(x, training=True).items()}
    assert out["x_hat"].shape == (2, 32, 32, 1)
    assert out["x_hat"].min() >= 0.0 and out["x_hat"].max() <= 1.0
    assert out["z"].shape == out["z_hat"].shape == (2, 8)
    # Concat blocks fuse back to the stage width: the configured widths hold in both modes.
    enc = gen.get_layer("encoder")
    assert tuple(enc.get_layer("flatten").input.shape) == (None, 8, 8, 8)
    assert tuple(enc.get_layer("stage0_C_add" if merge == "add" else "stage0_C_fuse")
                 .output.shape) == (None, 16, 16, 4)  # fmt: skip
    disc = build_discriminator(cfg)
    d = {k: keras.ops.convert_to_numpy(v) for k, v in disc(x, training=True).items()}
    assert d["logits"].shape == (2, 1)
    assert d["features"].ndim == 4 and d["features"].shape == (2, 8, 8, 8)


def test_discriminator_features_are_the_last_conv() -> None:
    disc = build_discriminator(SMALL)
    assert disc.output["features"] is disc.get_layer("conv1").output


def test_block_errors() -> None:
    x = keras.Input((8, 8, 4))
    with pytest.raises(ValueError, match="kind must be A, B or C"):
        residual_block(x, 4, "D", merge="add", norm="none", name="b")
    with pytest.raises(ValueError, match="block B keeps the width"):
        residual_block(x, 8, "B", merge="add", norm="none", name="b")
    with pytest.raises(ValueError, match="merge must be one of add, concat"):
        residual_block(x, 4, "B", merge="sum", norm="none", name="b")
    with pytest.raises(ValueError, match="norm must be one of batch, layer, none"):
        norm_act(x, "group", "n")


def test_model_code_is_backend_neutral() -> None:
    # The networks and losses must run under KERAS_BACKEND=jax without TensorFlow installed.
    for name in ("__init__.py", "blocks.py", "networks.py", "losses.py"):
        tree = ast.parse((MODEL_DIR / name).read_text())
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not {m for m in imported if m.split(".")[0] == "tensorflow"}, name
        assert not [n for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id == "tf"], name


@pytest.mark.parametrize("norm", ["batch", "layer", "none"])
def test_reconstruction_depends_on_the_input(norm: str) -> None:
    """Regression: a per-pixel LayerNorm on the 1-channel input made X^ constant (all 0.5)."""
    gen = build_generator(dataclasses.replace(SMALL, norm=norm))
    rng = np.random.default_rng(0)
    a, b = (rng.uniform(0, 1, (2, *gen.input_shape[1:])).astype("float32") for _ in range(2))
    x_a = np.asarray(gen(a, training=True)["x_hat"])
    x_b = np.asarray(gen(b, training=True)["x_hat"])
    assert np.abs(x_a - x_b).max() > 1e-6  # exactly 0 with the bug
    assert np.std(x_a) > 1e-6
