"""Patch throughput end to end, and against the same work on arrays already in memory.

End to end: read frames and rank images from the store, register, crop, resize, compress and
write patches. In memory: register, crop and resize on numpy arrays, same threads, no store.
Targets on 2 cores: >= 5,000 patches/s, and end to end within 2x of in memory.

Six strips (60 acquisitions, 21,600 patches) by default: with two, the run lasts about two
seconds and the work of starting (each thread's buffers, tensorstore's pools, the window maps)
and the last task weigh on the figure as they do not in a run of hours.

    python benchmarks/patch.py [--strips 6] [--workers 2] [--whole-pixel]
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import shutil
from concurrent.futures import ThreadPoolExecutor

import cv2
import zarr
from common import OUT, raw_folder, timer

from bfsdata import manifest
from bfsdata.crop import cut_patches
from bfsdata.ingest import ingest
from bfsdata.layout import register, scale_layout
from bfsdata.patch import patch
from bfsdata.pipeline_file import load_pipeline


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--strips", type=int, default=6)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--whole-pixel", action="store_true", help="patch.subpixel off")
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

    with timer() as t_e2e:
        s = patch(ws, pipe, workers=args.workers)

    frames, rank = root["frames"][:], root["rank"][:]  # (A, F, H, W), (A, 2, H, W)
    geo = scale_layout(pipe.layout, frames.shape[2], frames.shape[3])

    def in_memory(a: int) -> int:
        reg = register(rank[a, 1], geo, pipe.patch.rotation)
        boxes, warp = reg.boxes.reshape(-1, 4), reg.warp(pipe.patch.subpixel)
        n = 0
        for img in (*frames[a], *rank[a]):
            n += len(cut_patches(img, boxes, pipe.patch.size, pipe.patch.resize, **warp))
        return n

    cv2.setNumThreads(1)  # as patch's tasks run: the threads are the parallelism
    with timer() as t_mem, ThreadPoolExecutor(args.workers) as pool:
        n_mem = sum(pool.map(in_memory, range(len(frames))))
    assert n_mem == s.patches

    e2e, mem = s.patches / t_e2e.seconds, n_mem / t_mem.seconds
    print(f"acquisitions: {s.patched}, patches: {s.patches}, workers: {args.workers}")
    print(f"end to end (store -> store): {e2e:8.0f} patches/s (target >= 5,000)")
    print(f"same work in memory:         {mem:8.0f} patches/s")
    print(f"end to end takes {mem / e2e:.2f}x the in-memory time (target <= 2x)")


if __name__ == "__main__":
    main()
