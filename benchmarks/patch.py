"""Patch throughput end to end, and against the same work on arrays already in memory.

End to end: read frames and rank images from the store, register, crop, resize, compress and
write patches. In memory: register, crop and resize on numpy arrays read beforehand, on the same
threads or processes, no store. Targets on 2 cores: >= 5,000 patches/s, and end to end within
2x of in memory.

Six strips (60 acquisitions, 21,600 patches) by default: with two, the run is so short that
the work of starting (each thread's buffers, tensorstore's pools, the window maps)
and the last task weigh on the figure as they do not in a run of hours.

`--processes`: as `bfsdata patch --workers N` runs, on a local cluster of N worker processes;
the cluster's start (once per command; docs/performance.md) is reported on its own and left out of
the rate, as a run of hours leaves it out.

    python benchmarks/patch.py [--strips 6] [--workers 2] [--whole-pixel] [--processes]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import logging
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import zarr
from common import OUT, raw_folder, timer
from distributed import Client, Event, Queue

from bfsdata.config.files import load_pipeline
from bfsdata.config.pipeline import Pipeline
from bfsdata.imaging.crop import cut_patches
from bfsdata.imaging.registration import register, scale_layout
from bfsdata.ingest import ingest
from bfsdata.patch.stage import patch
from bfsdata.workspace import manifest
from bfsdata.workspace.parallel import cluster


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--strips", type=int, default=6)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--whole-pixel", action="store_true", help="patch.subpixel off")
    ap.add_argument("--processes", action="store_true", help="worker processes (--workers N)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    pipe = load_pipeline("bfs-5vial")
    if args.whole_pixel:
        pipe = dataclasses.replace(pipe, patch=dataclasses.replace(pipe.patch, subpixel=False))

    ws = OUT / f"ws-patch-{args.strips}"
    if not (ws / "manifests" / "acquisitions.parquet").exists():
        shutil.rmtree(ws, ignore_errors=True)
        ingest(raw_folder(args.strips), ws, pipe, workers=args.workers)
    root = zarr.open_group(str(ws / "bfsdata.zarr"), mode="a")
    if "patches" in root:
        del root["patches"]
    manifest.path_of(ws, manifest.PATCHES).unlink(missing_ok=True)

    t0 = time.perf_counter()
    with (
        cluster(args.workers if args.processes else None) as address,
        Client(address) if address else contextlib.nullcontext() as client,
    ):
        if client:
            client.run(_import_patch)  # the workers' imports: part of the start
        started = time.perf_counter() - t0
        with timer() as t_e2e:
            s = patch(ws, pipe, workers=args.workers, scheduler=address)
        n_mem, t_mem = _in_memory(str(ws / "bfsdata.zarr"), s.acquisitions, pipe, args, client)
    assert n_mem == s.patches

    e2e, mem = s.patches / t_e2e.seconds, n_mem / t_mem
    kind = "worker processes" if args.processes else "threads"
    print(f"acquisitions: {s.patched}, patches: {s.patches}, {args.workers} {kind}")
    if args.processes:
        print(f"cluster start (once per command): {started:.1f} s, not in the rate")
    print(f"end to end (store -> store): {e2e:8.0f} patches/s (target >= 5,000)")
    print(f"same work in memory:         {mem:8.0f} patches/s")
    print(f"end to end takes {mem / e2e:.2f}x the in-memory time (target <= 2x)")


def _in_memory(
    store: str, n_acq: int, pipe: Pipeline, args: argparse.Namespace, client: Client | None
) -> tuple[int, float]:
    """The patches cut in memory and the seconds it took, on the same threads or worker
    processes as end to end: each takes every n-th acquisition, reads it into memory, waits
    for the others, then registers and cuts."""
    shares = [list(range(i, n_acq, args.workers)) for i in range(args.workers)]
    if client is None:
        ready = threading.Barrier(args.workers)
        with ThreadPoolExecutor(args.workers) as pool:
            done = list(pool.map(lambda a: _cut_share(store, a, pipe, ready.wait), shares))
    else:
        workers = list(client.scheduler_info()["workers"])
        queue, go = Queue("loaded", client=client), Event("go", client=client)
        futures = [
            client.submit(_cut_share, store, a, pipe, _barrier, workers=[w], pure=False)
            for a, w in zip(shares, workers, strict=True)
        ]
        for _ in futures:
            queue.get(timeout=600)  # a worker that failed never says it is loaded
        go.set()
        done = client.gather(futures)
    return sum(n for n, _, _ in done), max(e for _, _, e in done) - min(b for _, b, _ in done)


def _cut_share(
    store: str, acqs: list[int], pipe: Pipeline, wait: Callable[[], object]
) -> tuple[int, float, float]:
    """Read acquisitions `acqs` into memory, `wait`, then register and cut them all:
    (patches, start, end), wall clock."""
    root = zarr.open_group(store, mode="r")
    # one acquisition at a time: zarr's oindex with a list reads sharded arrays very slowly
    frames = np.stack([root["frames"][a] for a in acqs])  # (A, F, H, W)
    rank = np.stack([root["rank"][a] for a in acqs])  # (A, 2, H, W)
    geo = scale_layout(pipe.layout, frames.shape[2], frames.shape[3])
    cv2.setNumThreads(1)  # as patch's tasks run: the tasks are the parallelism
    wait()
    start, n = time.time(), 0
    for a in range(len(acqs)):
        reg = register(rank[a, 1], geo, pipe.patch.rotation)
        boxes, warp = reg.boxes.reshape(-1, 4), reg.warp(pipe.patch.subpixel)
        for img in (*frames[a], *rank[a]):
            n += len(cut_patches(img, boxes, pipe.patch.size, pipe.patch.resize, **warp))
    return n, start, time.time()


def _barrier() -> None:
    """In a worker process: say the data is loaded, then wait for the others'."""
    Queue("loaded").put(1)
    Event("go").wait()


def _import_patch() -> None:
    importlib.import_module("bfsdata.patch.stage")


if __name__ == "__main__":
    main()
