"""Ingest throughput against the decode-bound limit (issue: >= 80% of it on 2 cores).

The limit: read and decode the same PNG files with OpenCV on the same number of threads, doing
nothing else. Ingest does that plus validation, rank images, compression and the store writes.

    python benchmarks/ingest.py [--strips 6] [--workers N]

The baseline runs one decode thread per core; ingest runs with its own default (one thread more
than cores, so a core is busy while a task waits on its write) unless --workers says otherwise.
Both read from the page cache. 6 strips (960 frames) keep the fixed cost of a run
(scan, header checks, manifest) and the last task's tail to a few percent.
"""

from __future__ import annotations

import argparse
import logging
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
from common import OUT, raw_folder, timer

from bfsdata.config.files import load_pipeline
from bfsdata.ingest import default_threads, ingest
from bfsdata.workspace.parallel import default_workers


def decode_only(files: list[Path], workers: int) -> int:
    def one(p: Path) -> int:
        data = p.read_bytes()
        cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        return len(data)

    with ThreadPoolExecutor(workers) as pool:
        return sum(pool.map(one, files))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--strips", type=int, default=6)
    ap.add_argument("--workers", type=int, default=None, help="ingest threads (default: its own)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    cv2.setNumThreads(1)  # one decode per thread, as in ingest

    raw = raw_folder(args.strips)
    files = sorted(raw.glob("*/run_*/frame_*.png"))
    for f in files:  # both sides read from the page cache, not the disk
        f.read_bytes()
    cores = default_workers()
    decode_only(files[:16], cores)  # warm the libraries
    with timer() as t_dec:
        n_bytes = decode_only(files, cores)

    ws = OUT / "ws-ingest"
    shutil.rmtree(ws, ignore_errors=True)
    pipe = load_pipeline("bfs-5vial")  # reading the YAML is set-up, as the baseline's warm-up
    with timer() as t_ing:
        s = ingest(raw, ws, pipe, workers=args.workers)
    assert s.frames == len(files), (s.frames, len(files))

    mb = n_bytes / 1e6
    dec_fps, ing_fps = len(files) / t_dec.seconds, len(files) / t_ing.seconds
    threads = args.workers or default_threads()
    print(f"frames: {len(files)} PNG, {mb:.0f} MB encoded; {cores} cores, ingest {threads} threads")
    print(f"decode only (OpenCV): {dec_fps:7.1f} frames/s {mb / t_dec.seconds:7.1f} MB/s")
    print(f"bfsdata ingest:       {ing_fps:7.1f} frames/s {mb / t_ing.seconds:7.1f} MB/s")
    print(f"ingest / decode limit: {ing_fps / dec_fps:.0%} (target >= 80%)")


if __name__ == "__main__":
    main()
