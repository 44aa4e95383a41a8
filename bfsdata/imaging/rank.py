"""Temporal rank images over a frame stack (pure kernel).

HALCON `rank_image` with the mask spanning the frame stack: per pixel, sort the F grey values
ascending and take the one at 1-based `rank`. Rank 1 is the minimum (everything that moved
during handling shows, dark drops and bubbles included); rank F is the maximum (moving things
vanish). Exact integer results in the input dtype.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def rank_images(stack: np.ndarray, ranks: Sequence[int]) -> np.ndarray:
    """(F, H, W) integer stack -> (len(ranks), H, W), same dtype."""
    if stack.ndim != 3:
        raise ValueError(f"rank_images expects a (F, H, W) stack, got shape {stack.shape}")
    n = stack.shape[0]
    out = np.empty((len(ranks), *stack.shape[1:]), dtype=stack.dtype)
    middle = [r for r in ranks if 1 < r < n]
    # np.partition copies the stack once for all middle ranks; min/max need no sort at all.
    part = np.partition(stack, [r - 1 for r in middle], axis=0) if middle else None
    for i, r in enumerate(ranks):
        if not 1 <= r <= n:
            raise ValueError(f"rank {r} is outside 1..{n} for a stack of {n} frames")
        if r == 1:
            np.min(stack, axis=0, out=out[i])
        elif r == n:
            np.max(stack, axis=0, out=out[i])
        else:
            out[i] = part[r - 1]
    return out
