"""rank_images: HALCON rank over the frame axis, exact in the input dtype."""

from __future__ import annotations

import numpy as np
import pytest

from bfsdata.imaging.rank import rank_images


def _stack(dtype: type, shape: tuple[int, int, int] = (16, 24, 20), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, np.iinfo(dtype).max, size=shape, dtype=dtype, endpoint=True)  # (F, H, W)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_min_max_equal_numpy(dtype: type) -> None:
    stack = _stack(dtype)
    out = rank_images(stack, (1, 16))
    assert out.shape == (2, 24, 20)
    assert out.dtype == stack.dtype
    np.testing.assert_array_equal(out[0], stack.min(axis=0))
    np.testing.assert_array_equal(out[1], stack.max(axis=0))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("ranks", [(8,), (2, 15), (16, 5, 1, 9), (3, 3)])
def test_any_rank_equals_sorted_stack(dtype: type, ranks: tuple[int, ...]) -> None:
    stack = _stack(dtype, seed=sum(ranks))
    ordered = np.sort(stack, axis=0)
    out = rank_images(stack, ranks)
    assert out.dtype == stack.dtype
    for i, r in enumerate(ranks):
        np.testing.assert_array_equal(out[i], ordered[r - 1], err_msg=f"rank {r}")


def test_extreme_values_and_ties() -> None:
    # Full-range values and many ties: the kernel must not overflow or lose a tie.
    stack = np.zeros((5, 3, 3), np.uint16)
    stack[2] = 65535
    stack[3, 0, 0] = 1
    out = rank_images(stack, (1, 3, 4, 5))
    np.testing.assert_array_equal(out[0], np.zeros((3, 3)))
    assert out[1, 0, 0] == 0 and out[2, 0, 0] == 1 and out[3, 0, 0] == 65535
    np.testing.assert_array_equal(out[3], np.full((3, 3), 65535))


def test_input_is_not_modified() -> None:
    stack = _stack(np.uint8)
    before = stack.copy()
    rank_images(stack, (1, 7, 16))
    np.testing.assert_array_equal(stack, before)


def test_single_frame_is_its_own_min_and_max() -> None:
    stack = _stack(np.uint8, shape=(1, 4, 5))
    out = rank_images(stack, (1,))
    np.testing.assert_array_equal(out[0], stack[0])


@pytest.mark.parametrize("bad", [0, 17, -1])
def test_rank_outside_stack_is_refused(bad: int) -> None:
    with pytest.raises(ValueError, match=rf"rank {bad} is outside 1\.\.16"):
        rank_images(_stack(np.uint8), (1, bad))


@pytest.mark.parametrize("shape", [(4, 5), (2, 4, 5, 1), (7,)])
def test_stack_must_be_three_dimensional(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"expects a \(F, H, W\) stack"):
        rank_images(np.zeros(shape, np.uint8), (1,))
