"""Run independent tasks on dask and hand each result back as soon as it is done.

Stages commit their manifests from these callbacks, so a killed run keeps everything that
finished. Tasks write their own data and return small records, never arrays: the driver's
memory does not grow with the dataset.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import dask
from dask.callbacks import Callback
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)


def run_tasks(
    fn: Callable[[T], R],
    items: Sequence[T],
    on_result: Callable[[R], None],
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    label: str = "working",
    weight: Callable[[T], int] = lambda _: 1,
) -> None:
    """Run `fn(item)` for every item; call `on_result` in the calling thread-safe context.

    Local runs use dask's threaded scheduler (`workers` threads); `scheduler` is the address of
    a `dask.distributed` scheduler. `weight` sizes the progress bar (e.g. frames per task).
    """
    if not items:
        return
    total = sum(weight(i) for i in items)
    with progress_bar(label, total) as advance:
        if scheduler:
            _run_distributed(fn, items, on_result, scheduler, advance, weight)
        else:
            _run_threads(fn, items, on_result, workers or default_workers(), advance, weight)


def _run_threads(fn, items, on_result, workers, advance, weight) -> None:
    keys = {f"task-{i}": item for i, item in enumerate(items)}
    tasks = [dask.delayed(fn, pure=False)(item, dask_key_name=k) for k, item in keys.items()]

    # The threaded scheduler calls posttask in its own (single) thread: results arrive one at a
    # time, in completion order, while other tasks keep running.
    def posttask(key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
        if key in keys:
            on_result(result)
            advance(weight(keys[key]))

    with Callback(posttask=posttask):
        dask.compute(*tasks, scheduler="threads", num_workers=workers)


def _run_distributed(fn, items, on_result, address, advance, weight) -> None:
    from distributed import Client, as_completed

    with Client(address) as client:
        futures = client.map(fn, items, pure=False)
        index = {f.key: item for f, item in zip(futures, items, strict=True)}
        for fut, result in as_completed(futures, with_results=True):
            on_result(result)
            advance(weight(index[fut.key]))
            fut.release()


class progress_bar:
    """A rich progress bar on a terminal; a few log lines elsewhere (CI, files)."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self.done, self._last_logged = label, total, 0, 0
        self._progress: Progress | None = None

    def __enter__(self) -> Callable[[int], None]:
        if sys.stderr.isatty():
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task(self.label, total=self.total)
        return self.advance

    def advance(self, n: int) -> None:
        self.done += n
        if self._progress is not None:
            self._progress.update(self._task, completed=self.done)
        elif self.done - self._last_logged >= max(1, self.total // 10) or self.done == self.total:
            self._last_logged = self.done
            log.info("%s: %d/%d", self.label, self.done, self.total)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
