"""`Divergence` on hand-made loss sequences: known answers for when it stops, and that it does not
stop a sound run. Keras is not needed to drive it: `on_train_batch_end` gets the running means a
tracker would report, as Keras hands them over."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bfsdata.model.callbacks import Diverged, Divergence


def feed(cb: Divergence, per_step: dict[str, list[float]], steps_per_epoch: int) -> int:
    """Hand `cb` the epoch means of `per_step` values step by step, as Keras would; the
    number of steps fed."""
    n = len(next(iter(per_step.values())))
    for step in range(n):
        epoch, batch = divmod(step, steps_per_epoch)
        if batch == 0:
            cb.on_epoch_begin(epoch)
        first = epoch * steps_per_epoch
        logs = {k: float(np.mean(v[first : step + 1])) for k, v in per_step.items()}
        cb.on_train_batch_end(batch, logs)
    return n


def divergence(**kw: object) -> Divergence:
    return Divergence("g_loss", ["enc", "con"], steps_per_epoch=5, **kw)


def sound(n: int, seed: int = 0) -> dict[str, list[float]]:
    """A falling, noisy run with spikes of one step (up to 300x), as GAN losses go."""
    rng = np.random.default_rng(seed)
    g = 50 * np.exp(-np.arange(n) / 20) + 5 + rng.normal(0, 0.5, n)
    g[7::9] *= 300  # single-step spikes
    return {"g_loss": g.tolist(), "enc": (g / 100).tolist(), "con": (g / 10).tolist()}


def test_a_sound_run_with_single_spikes_is_not_stopped() -> None:
    assert feed(divergence(), sound(120), 5) == 120


def test_an_exploding_total_stops_after_patience_steps_naming_the_step() -> None:
    run = sound(30)
    for k in range(20, 30):  # from step 21 on: enc explodes, and g_loss with it
        run["enc"][k] = 2287.0
        run["g_loss"][k] = 9000.0 + k
    with pytest.raises(Diverged) as caught:
        feed(divergence(patience=4), run, 5)
    e = caught.value
    assert (e.loss, e.step, e.since) == ("g_loss", 24, 21)
    assert e.value == pytest.approx(9023.0, rel=1e-4)  # recovered from two epoch means
    assert "over 100x its running median" in str(e) and "at step 24" in str(e)
    assert "the part that rose most: enc, 2287" in str(e)


def test_a_run_that_explodes_at_its_second_step_is_stopped() -> None:
    """The median counts from the first step (what a far too high rate does: lr 10)."""
    run = {"g_loss": [51.2] + [6e6 * (k + 1) for k in range(15)]}
    with pytest.raises(Diverged) as caught:
        feed(Divergence("g_loss", [], steps_per_epoch=10), run, 10)
    assert (caught.value.step, caught.value.since) == (11, 2)


def test_a_streak_broken_by_one_sound_step_starts_again() -> None:
    g = [10.0] * 10 + [5000.0] * 9 + [10.0] + [5000.0] * 9 + [10.0] * 5
    assert feed(Divergence("g_loss", [], steps_per_epoch=7), {"g_loss": g}, 7) == len(g)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_loss_that_is_not_finite_stops_at_once_naming_it(bad: float) -> None:
    run = sound(12)
    run["con"][9] = bad
    with pytest.raises(Diverged, match=r"loss con was (nan|inf) at step 10: not a finite"):
        feed(divergence(), run, 5)


def test_the_step_count_follows_the_epochs() -> None:
    cb = divergence()
    cb.on_epoch_begin(3)
    with pytest.raises(Diverged) as caught:
        cb.on_train_batch_end(2, {"g_loss": math.nan})
    assert caught.value.step == 3 * 5 + 3
