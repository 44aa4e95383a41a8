"""The GRD-Net GAN as a `keras.Model`: generator and critic trained against each other.

TensorFlow-specific on purpose (the gradient tapes); the networks and losses it uses are
backend-neutral Keras 3 (`networks.py`, `losses.py`).

One step (paper section 6):
    X_n = P_q(X)                                   perturbed input, X the clean target
    X^, z, z^ = G(X_n)
    L_gen = w1 L2(F_C(X), F_C(X^)) + w2 L_con(X, X^) + w3 L1(z, z^) + w4 L1(|X_n - X^|, N)
    L_dis = BCE(C(X), real) + BCE(C(X^), fake)
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from bfsdata.config.pipeline import TrainConfig
from bfsdata.model import build_discriminator, build_generator, losses

TRACKED = ("g_loss", "d_loss", "adv", "con", "enc", "nse", "ssim")


class GRDNet(keras.Model):
    def __init__(self, cfg: TrainConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cfg = cfg
        self.generator = build_generator(cfg.model)
        self.discriminator = build_discriminator(cfg.model)
        self.trackers = {name: keras.metrics.Mean(name=name) for name in TRACKED}

    def compile(  # type: ignore[override]
        self,
        g_optimizer: keras.optimizers.Optimizer,
        d_optimizer: keras.optimizers.Optimizer,
        **kwargs: Any,
    ) -> None:
        # g_optimizer as Keras's own optimizer, so compile does not create an unused default.
        super().compile(optimizer=g_optimizer, **kwargs)
        self.g_optimizer = g_optimizer
        self.d_optimizer = d_optimizer

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        # Listed here so Keras resets them at every epoch and shows them in the progress bar.
        return list(self.trackers.values())

    def call(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        return self.generator(x, training=training)["x_hat"]

    def build_all(self) -> None:
        """Create every variable (models and optimizers) so weights can be loaded."""
        p = self.cfg.model.patch_size
        x = tf.zeros((1, p, p, 1))
        self.generator(x)
        self.discriminator(x)
        self.g_optimizer.build(self.generator.trainable_variables)
        self.d_optimizer.build(self.discriminator.trainable_variables)
        self.built = True

    def _forward(self, batch: dict[str, tf.Tensor], training: bool):
        x, x_noisy, noise = batch["x"], batch["x_noisy"], batch["noise"]  # (B, P, P, 1)
        out = self.generator(x_noisy, training=training)
        x_hat = out["x_hat"]
        real = self.discriminator(x, training=training)
        fake = self.discriminator(x_hat, training=training)
        parts = {
            "adv": losses.adversarial_loss(real["features"], fake["features"]),
            "con": losses.contextual_loss(x, x_hat, self.cfg.loss),
            "enc": losses.encoder_loss(out["z"], out["z_hat"]),
            "nse": losses.noise_loss(x_noisy, x_hat, noise, self.cfg.loss),
        }
        g_loss = losses.generator_loss(parts, self.cfg.loss)
        # The critic learns on a detached reconstruction: its loss must not move G.
        fake_d = self.discriminator(tf.stop_gradient(x_hat), training=training)
        d_loss = losses.discriminator_loss(real["logits"], fake_d["logits"])
        ssim = tf.reduce_mean(
            losses.ssim(x, x_hat, window=self.cfg.loss.ssim_window, sigma=self.cfg.loss.ssim_sigma)
        )
        return g_loss, d_loss, {**parts, "ssim": ssim}

    def train_step(self, batch: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        # Under MirroredStrategy the replicas' gradients are summed: scale each replica's mean
        # loss so the update equals that of one device on the global batch.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            g_loss, d_loss, parts = self._forward(batch, training=True)
            g_scaled, d_scaled = g_loss / replicas, d_loss / replicas
        g_vars = self.generator.trainable_variables
        d_vars = self.discriminator.trainable_variables
        self.g_optimizer.apply_gradients(
            zip(g_tape.gradient(g_scaled, g_vars), g_vars, strict=True)
        )
        self.d_optimizer.apply_gradients(
            zip(d_tape.gradient(d_scaled, d_vars), d_vars, strict=True)
        )
        return self._track(g_loss, d_loss, parts)

    def test_step(self, batch: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        g_loss, d_loss, parts = self._forward(batch, training=False)
        return self._track(g_loss, d_loss, parts)

    def _track(self, g_loss, d_loss, parts) -> dict[str, tf.Tensor]:
        values = {"g_loss": g_loss, "d_loss": d_loss, **parts}
        for name, value in values.items():
            self.trackers[name].update_state(value)
        return {name: t.result() for name, t in self.trackers.items()}
