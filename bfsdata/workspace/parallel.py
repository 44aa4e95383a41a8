"""Run independent tasks on threads or a dask cluster; hand each result back as it is done.

Stages commit their manifests from these callbacks, so a killed run keeps everything that
finished. Tasks write their own data and return small records, never arrays: the driver's
memory does not grow with the dataset.

Where tasks run: threads of this process by default (`workers` threads), or the workers of a
`dask.distributed` scheduler (`scheduler` address), which `cluster` starts locally for a
command when asked for worker processes. Tasks and their results are pickled for a cluster, so
they are plain dataclasses and module-level functions that open their own store handles.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from typing import TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)


@contextmanager
def cluster(processes: int | None = None, scheduler: str | None = None) -> Iterator[str | None]:
    """The scheduler address a command runs its tasks on, for the duration of the `with`.

    `scheduler`: an existing dask.distributed scheduler, used as it is. `processes`: a
    LocalCluster of that many single-threaded worker processes, started here and closed on
    exit. Neither: None, which `run_tasks` reads as threads of this process.
    """
    if processes is not None and scheduler:
        raise ValueError(
            f"--workers {processes} starts a local cluster and --scheduler {scheduler} names "
            "another one; give one of the two"
        )
    if processes is not None and processes < 1:
        raise ValueError(f"--workers must be >= 1, got {processes}")
    if processes is None:
        yield scheduler
        return
    import dask
    from distributed import LocalCluster

    settings = {
        # dask sets MALLOC_TRIM_THRESHOLD_ in its workers, which also fixes glibc's mmap
        # threshold: every buffer over 128 KiB (a frame, a float window, a shard) is then mapped
        # and faulted in anew, and patch in worker processes ran far slower than in threads,
        # its CPU spent in page faults (docs/performance.md, Worker processes). Freed memory
        # stays with the worker instead.
        "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
        # The dashboard's watchers: a profiler sampling every thread's stack each 10 ms (holding
        # the GIL), an event-loop tick check each 20 ms, a system monitor each 0.5 s. Nobody
        # watches a command's own cluster, and the scheduler's and workers' own threads took a
        # visible share of a patch run's CPU (docs/performance.md, Worker processes).
        "distributed.worker.profile.enabled": False,
        "distributed.admin.tick.interval": "1s",
        "distributed.admin.system-monitor.interval": "5s",
        "distributed.worker.memory.monitor-interval": "1s",
    }
    with (
        dask.config.set(settings),
        LocalCluster(
            n_workers=processes,
            processes=True,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address=":0",  # a free port: 8787 may be another cluster's on a shared host
            silence_logs=logging.WARNING,
        ) as local,
    ):
        yield local.scheduler_address


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

    Local runs use `workers` threads of this process; `scheduler` is the address of a
    `dask.distributed` scheduler. `weight` sizes the progress bar (e.g. frames per task).
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
    # A plain thread pool, not dask.compute: compute keeps every task's result until the last
    # one ends, so the driver would hold a second copy of the whole manifest; here each result
    # is handed on and dropped as it arrives, in completion order, in this thread.
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending = {pool.submit(fn, item): item for item in items}
        try:
            for fut in as_completed(pending):
                item = pending.pop(fut)
                on_result(fut.result())
                advance(weight(item))
        except BaseException:
            for fut in pending:  # not started yet: never start; running ones finish first
                fut.cancel()
            raise


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
    """A rich progress bar on a terminal; a few log lines elsewhere (CI, files), none with
    `log_lines=False` for a caller that logs its own line when the work is done."""

    def __init__(self, label: str, total: int, *, log_lines: bool = True) -> None:
        self.label, self.total, self.done, self._last_logged = label, total, 0, 0
        self.log_lines = log_lines
        self._progress: Progress | None = None

    def __enter__(self) -> Callable[[int], None]:
        if sys.stderr.isatty():
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),  # the stream asked isatty; stdout keeps the summary
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task(self.label, total=self.total)
        return self.advance

    def advance(self, n: int) -> None:
        self.done += n
        if self._progress is not None:
            self._progress.update(self._task, completed=self.done)
        elif self.log_lines and (
            self.done - self._last_logged >= max(1, self.total // 10) or self.done == self.total
        ):
            self._last_logged = self.done
            log.info("%s: %d/%d", self.label, self.done, self.total)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
