"""Training callbacks: checkpoints, preview grids, throughput, progress, divergence."""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path

import cv2
import keras
import numpy as np

from bfsdata.model import checkpoint
from bfsdata.workspace.parallel import progress_bar
from bfsdata.workspace.writes import png_bytes, write_atomic

log = logging.getLogger(__name__)


class Checkpoints(keras.callbacks.Callback):
    """A checkpoint at every epoch end and, optionally, every `every` steps."""

    def __init__(self, run_dir: Path, steps_per_epoch: int, every: int = 0) -> None:
        super().__init__()
        self.run_dir, self.spe, self.every = Path(run_dir), steps_per_epoch, every
        self.epoch = 0

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        step = self.epoch * self.spe + batch + 1
        if self.every and step % self.every == 0 and batch + 1 < self.spe:
            checkpoint.save(self.model, self.run_dir, epoch=self.epoch, step=step)

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        checkpoint.save(self.model, self.run_dir, epoch=epoch + 1, step=(epoch + 1) * self.spe)


class Diverged(RuntimeError):
    """A loss left the range training can come back from (raised by `Divergence`)."""

    def __init__(self, loss: str, step: int, value: float, since: int, what: str) -> None:
        super().__init__(f"loss {loss} was {value:.4g} at step {step}: {what}")
        self.loss, self.step, self.value, self.since = loss, step, value, since


class Divergence(keras.callbacks.Callback):
    """Stop training (raise `Diverged`) when a loss is not a finite number, or when the total
    loss has stayed over `factor` times its running median (over the last `window` steps that
    were not) for `patience` steps in a row.

    Only the total is judged by its median: a part that explodes carries the weighted total
    with it, while a small part may grow many times over in a sound run without moving it. A
    spiky batch is ordinary in GAN training; a run of them is a learning rate too high, and
    every further step only spends time on a useless model. The median counts from the first
    step, since a run given far too high a rate diverges within its first steps, and the first
    steps' loss is a run's highest. The message names the part that rose most.

    Keras hands the callbacks each tracker's mean over the epoch so far; the step's own value
    is recovered from two consecutive means: v_k = (k + 1) m_k - k m_(k-1). Put it before
    `Checkpoints`, so that a step that diverged is never saved.
    """

    def __init__(
        self,
        total: str,
        parts: Sequence[str],
        steps_per_epoch: int,
        factor: float = 100.0,
        patience: int = 10,  # steps in a row over factor x the median
        window: int = 200,  # steps the running median is taken over
    ) -> None:
        super().__init__()
        self.total, self.parts, self.spe = total, tuple(parts), steps_per_epoch
        self.factor, self.patience = factor, patience
        self.history = {n: deque(maxlen=window) for n in (total, *parts)}
        self.over = 0  # steps in a row over the limit
        self.means: dict[str, float] = {}
        self.epoch = 0

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self.epoch, self.means = epoch, {}

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        values = {}
        for name in self.history:
            if logs is not None and name in logs:
                mean = float(logs[name])
                step_value = (batch + 1) * mean - batch * self.means.get(name, 0.0)
                values[name] = step_value if math.isfinite(mean) else mean
                self.means[name] = mean
        self.check(self.epoch * self.spe + batch + 1, values)

    def check(self, step: int, values: dict[str, float]) -> None:
        """Judge one step's values {loss: value}; raise Diverged when the run diverges."""
        for name, value in values.items():
            if not math.isfinite(value):
                raise Diverged(name, step, value, step, "not a finite number")
        total, median = values.get(self.total), self._median(self.total)
        if total is not None and median > 0 and total > self.factor * median:
            self.over += 1
            if self.over >= self.patience:
                since = step - self.patience + 1
                what = f"over {self.factor:g}x its running median {median:.3g} since step {since}"
                raise Diverged(self.total, step, total, since, what + self._most(values))
            return
        self.over = 0
        for name, value in values.items():
            self.history[name].append(value)

    def _median(self, name: str) -> float:
        past = self.history[name]
        return statistics.median(past) if past else math.nan

    def _most(self, values: dict[str, float]) -> str:
        """The part that rose most against its own running median, as the message says it."""
        ratios = {
            n: values[n] / self._median(n)
            for n in self.parts
            if n in values and self._median(n) > 0
        }
        if not ratios:
            return ""
        n = max(ratios, key=ratios.get)
        median = self._median(n)
        return f"; the part that rose most: {n}, {values[n]:.4g} against its median {median:.3g}"


class Throughput(keras.callbacks.Callback):
    """Patches per second of each epoch, into the logs (and so the CSV and TensorBoard)."""

    def __init__(self, batch: int) -> None:
        super().__init__()
        self.batch = batch

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self.t0, self.steps = time.perf_counter(), 0

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        self.steps += 1

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        if logs is not None:
            logs["patches_per_s"] = self.steps * self.batch / (time.perf_counter() - self.t0)


class EpochProgress(keras.callbacks.Callback):
    """A step bar within each epoch on a terminal (the shared `progress_bar`), and one log line
    per epoch with its losses: the only lines in a log file, where a bar would be noise.

    Put it after `Throughput`, whose patches/s it reports from the same logs. `close()` takes
    the bar down when `fit` raises, since Keras then skips `on_train_end`.
    """

    def __init__(self, epochs: int, steps_per_epoch: int) -> None:
        super().__init__()
        self.epochs, self.spe = epochs, steps_per_epoch
        self._bar: progress_bar | None = None

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self.close()
        self._bar = progress_bar(f"epoch {epoch + 1}/{self.epochs}", self.spe, log_lines=False)
        self._advance = self._bar.__enter__()
        self.t0 = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        if self._bar is not None:
            self._advance(1)

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        self.close()
        seconds = time.perf_counter() - self.t0
        values = ", ".join(f"{k} {v:.4g}" for k, v in (logs or {}).items())
        log.info(
            "epoch %d/%d (%d steps, %.1f s): %s", epoch + 1, self.epochs, self.spe, seconds, values
        )

    def on_train_end(self, logs=None) -> None:
        self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None


class Preview(keras.callbacks.Callback):
    """PNG grid per epoch: rows X, X_n, M, X^ for a fixed batch, so a person sees the data."""

    def __init__(self, batch: dict[str, np.ndarray], out_dir: Path, n: int = 8) -> None:
        super().__init__()
        self.batch = {k: np.asarray(v)[:n] for k, v in batch.items()}
        self.out_dir = Path(out_dir)

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        write_preview(self.model, self.batch, self.out_dir / f"epoch-{epoch + 1:03d}.png")


def write_preview(model: keras.Model, batch: dict[str, np.ndarray], path: Path) -> Path:
    x_hat = np.asarray(model(batch["x_noisy"], training=False))
    rows = [batch["x"], batch["x_noisy"], batch["mask"], x_hat]  # each (n, P, P, 1) in [0, 1]
    grid = np.concatenate([np.concatenate(list(r[..., 0]), axis=1) for r in rows], axis=0)
    img = (np.clip(grid, 0, 1) * 255).round().astype(np.uint8)
    if img.shape[0] < 512:  # small profiles: enlarge so a person can see something
        f = max(1, 512 // img.shape[0])
        img = cv2.resize(img, None, fx=f, fy=f, interpolation=cv2.INTER_NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, png_bytes(img, path))
    return path
