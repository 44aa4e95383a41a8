"""GRD-Net networks (paper sections 6.1.3 and 7.2) as backend-neutral Keras 3 functional models.

    G:  X (B, P, P, 1) in [0, 1] --G_E--> z (B, latent) --G_D--> X^ (B, P, P, 1) --G_Ê--> z^
    C:  X (B, P, P, 1) --convs--> F_C (B, P/2**s, P/2**s, c) --dense--> real/fake logit (B, 1)

Paper size (`ModelConfig()`): 4 stages of widths 128, 256, 512, 1024 take 256x256 to 16x16x1024;
z has 64 features. Stage i has width `base_width * 2**i` and ends with block C, which halves H
and W; the decoder mirrors it (widths reversed, block C' doubles H and W).
"""

from __future__ import annotations

import keras
from keras import layers

from bfsdata.config.training import ModelConfig
from bfsdata.model.blocks import norm_act, residual_stage


def stage_widths(cfg: ModelConfig) -> list[int]:
    """Filters of each encoder stage: base_width doubled per stage."""
    return [cfg.base_width * 2**i for i in range(cfg.stages)]


def build_encoder(cfg: ModelConfig, name: str = "encoder") -> keras.Model:
    """Residual encoder G_E: (B, P, P, 1) -> z (B, latent)."""
    p = cfg.patch_size
    x = keras.Input((p, p, 1), name="x")
    h = x
    for i, width in enumerate(stage_widths(cfg)):
        h = residual_stage(h, width, merge=cfg.merge, norm=cfg.norm, name=f"stage{i}")
    # (B, P/2**stages, P/2**stages, last width): 16x16x1024 at paper size. ResNet v2 blocks
    # leave their sum un-normalised, so the head normalises once before the bottleneck.
    h = norm_act(h, cfg.norm, "head")
    h = layers.Flatten(name="flatten")(h)
    z = layers.Dense(cfg.latent, name="z")(h)  # (B, latent), linear: a code, not a probability
    return keras.Model(x, z, name=name)


def build_decoder(cfg: ModelConfig, name: str = "decoder") -> keras.Model:
    """Mirror of the encoder with transposed convs: z (B, latent) -> X^ (B, P, P, 1) in [0, 1]."""
    widths = stage_widths(cfg)[::-1]
    side = cfg.patch_size // 2**cfg.stages
    z = keras.Input((cfg.latent,), name="z")
    h = layers.Dense(side * side * widths[0], name="expand")(z)
    h = layers.Reshape((side, side, widths[0]), name="unflatten")(h)  # (B, side, side, last width)
    for i, width in enumerate(widths):
        h = residual_stage(
            h, width, merge=cfg.merge, norm=cfg.norm, transpose=True, name=f"stage{i}"
        )
    h = norm_act(h, cfg.norm, "head")  # (B, P, P, base_width)
    h = layers.Conv2D(1, 3, padding="same", name="to_image")(h)
    x_hat = layers.Activation("sigmoid", name="x_hat")(h)  # (B, P, P, 1) in [0, 1], like X
    return keras.Model(z, x_hat, name=name)


def build_generator(cfg: ModelConfig) -> keras.Model:
    """G = G_E -> G_D -> G_Ê, returning {"x_hat", "z", "z_hat"}.

    The sub-models are layers named "encoder", "decoder" and "encoder_hat"; G_Ê has the
    architecture of G_E and its own weights (eq. 4 compares the two codes).
    """
    p = cfg.patch_size
    x = keras.Input((p, p, 1), name="x")  # (B, P, P, 1) in [0, 1]
    encoder = build_encoder(cfg, "encoder")
    decoder = build_decoder(cfg, "decoder")
    encoder_hat = build_encoder(cfg, "encoder_hat")
    z = encoder(x)
    x_hat = decoder(z)
    z_hat = encoder_hat(x_hat)
    return keras.Model(x, {"x_hat": x_hat, "z": z, "z_hat": z_hat}, name="generator")


def build_discriminator(cfg: ModelConfig) -> keras.Model:
    """Critic C, a DCGAN-style conv encoder with a dense head: {"logits", "features"}.

    Each of `disc_stages` 4x4 stride-2 convs halves H and W and doubles the width from
    `disc_base_width`. "features" is F_C of eq. 2, the raw output of the last conv
    (B, P/2**disc_stages, P/2**disc_stages, disc_base_width * 2**(disc_stages - 1)).
    """
    p = cfg.patch_size
    x = keras.Input((p, p, 1), name="x")
    h = x
    features = x
    for i in range(cfg.disc_stages):
        if i > 0:
            # DCGAN: the first conv's output is not normalised (it would only rescale the
            # image statistics); later ones are.
            h = norm_act(h, cfg.norm if i > 1 else "none", f"conv{i - 1}")
        features = layers.Conv2D(
            cfg.disc_base_width * 2**i, 4, strides=2, padding="same", name=f"conv{i}"
        )(h)
        h = features
    last = cfg.disc_stages - 1
    h = norm_act(h, cfg.norm if last > 0 else "none", f"conv{last}")
    h = layers.Flatten(name="flatten")(h)
    logits = layers.Dense(1, name="logits")(h)  # (B, 1), real = 1, reconstructed = 0
    return keras.Model(x, {"logits": logits, "features": features}, name="discriminator")
