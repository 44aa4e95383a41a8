"""GRD-Net generator, critic and losses, backend-neutral Keras 3.

    from bfsdata.model import build_generator, build_discriminator, losses
    gen = build_generator(cfg.model)   # x -> {"x_hat", "z", "z_hat"}
    disc = build_discriminator(cfg.model)   # x -> {"logits", "features"}

The TensorFlow training model (`bfsdata.model.gan.GRDNet`) is imported from its own module so
that this package loads on a backend without TensorFlow.
"""

from bfsdata.model import losses
from bfsdata.model.networks import (
    build_decoder,
    build_discriminator,
    build_encoder,
    build_generator,
    stage_widths,
)

__all__ = [
    "build_decoder",
    "build_discriminator",
    "build_encoder",
    "build_generator",
    "losses",
    "stage_widths",
]
