"""Pre-activation residual blocks (ResNet v2) of the GRD-Net generator, paper section 7.2.

Every conv is preceded by norm -> activation (He et al. 2016, "Identity Mappings in Deep
Residual Networks"), so the shortcut carries the un-normalised signal from block to block.

    A  3x3 conv x3            merged with a 1x1 conv shortcut         width may change
    B  3x3 conv x3            merged with the identity                shape kept
    C  3x3, 3x3/2, 3x3 conv   merged with a 2x2/2 conv shortcut       H, W halved

The decoder's A', B', C' are the same with transposed convs; C' doubles H and W.

Activation: LeakyReLU(0.2), not ReLU. The generator is trained through the critic's gradient,
which is sparse and noisy; a leaky slope keeps every unit trainable (no dead ReLUs), the choice
of GANomaly and DCGAN whose losses the paper reuses.

All functions take and return symbolic Keras tensors (functional API); layer names are given
by the caller's `name` prefix so saved weights keep stable, readable paths.
"""

from __future__ import annotations

from typing import Any

from keras import layers

LEAK = 0.2  # negative slope of LeakyReLU
MERGES = ("add", "concat")
NORMS = ("batch", "layer", "none")


def norm_act(x: Any, norm: str, name: str) -> Any:
    """Normalisation then LeakyReLU: the pre-activation of ResNet v2."""
    if norm == "batch":
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
    elif norm == "layer":
        # Normalises each sample over (H, W, C): independent of the batch, so training and
        # inference see the same statistics. Not per pixel over channels: the first block sees
        # the 1-channel image, which a per-pixel norm would turn into zeros.
        x = layers.LayerNormalization(axis=(-3, -2, -1), name=f"{name}_ln")(x)
    elif norm != "none":
        raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
    return layers.LeakyReLU(negative_slope=LEAK, name=f"{name}_act")(x)


def _conv(
    width: int, kernel: int, stride: int, transpose: bool, name: str
) -> layers.Conv2D | layers.Conv2DTranspose:
    cls = layers.Conv2DTranspose if transpose else layers.Conv2D
    return cls(width, kernel, strides=stride, padding="same", name=name)


def _merge(branch: Any, shortcut: Any, width: int, merge: str, name: str) -> Any:
    """Branch + shortcut, or concat then a 1x1 conv back to `width` channels."""
    if merge == "add":
        return layers.Add(name=f"{name}_add")([branch, shortcut])
    if merge == "concat":
        # The paper's text says the block "concatenates"; the 1x1 conv brings (B, h, w, 2*width)
        # back to `width` so stage widths stay as configured and blocks can be chained.
        x = layers.Concatenate(name=f"{name}_cat")([branch, shortcut])
        return layers.Conv2D(width, 1, name=f"{name}_fuse")(x)
    raise ValueError(f"merge must be one of {', '.join(MERGES)}, got {merge!r}")


def residual_block(
    x: Any,
    width: int,
    kind: str,
    *,
    merge: str,
    norm: str,
    transpose: bool = False,
    name: str,
) -> Any:
    """One block of kind A, B or C on x (B, h, w, c).

    A -> (B, h, w, width); B -> (B, h, w, c) with c == width; C -> (B, h/2, w/2, width), or
    (B, 2h, 2w, width) when `transpose`.
    """
    if kind not in ("A", "B", "C"):
        raise ValueError(f"block kind must be A, B or C, got {kind!r}")
    if kind == "B" and x.shape[-1] != width:
        raise ValueError(f"block B keeps the width: input has {x.shape[-1]} channels, not {width}")
    pre = norm_act(x, norm, f"{name}_pre")
    if kind == "A":
        # Projection shortcuts read the pre-activated input, as in ResNet v2.
        shortcut = _conv(width, 1, 1, transpose, f"{name}_short")(pre)
    elif kind == "B":
        shortcut = x  # identity: the un-normalised signal passes through untouched
    else:
        # 2x2 stride 2: every input pixel reaches the shortcut once (1x1 stride 2 drops 3 of 4);
        # transposed, every output pixel gets exactly one tap (no checkerboard of zeros).
        shortcut = _conv(width, 2, 2, transpose, f"{name}_short")(pre)
    h = pre
    for i in range(3):
        if i > 0:
            h = norm_act(h, norm, f"{name}_{i}")
        stride = 2 if (kind == "C" and i == 1) else 1  # C: the middle conv resizes H and W
        h = _conv(width, 3, stride, transpose, f"{name}_conv{i}")(h)
    return _merge(h, shortcut, width, merge, name)


def residual_stage(
    x: Any, width: int, *, merge: str, norm: str, transpose: bool = False, name: str
) -> Any:
    """Blocks A, B, C: (B, h, w, c) -> (B, h/2, w/2, width), or (B, 2h, 2w, width) transposed."""
    for kind in "ABC":
        x = residual_block(
            x, width, kind, merge=merge, norm=norm, transpose=transpose, name=f"{name}_{kind}"
        )
    return x
