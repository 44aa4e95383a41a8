"""Which blosc codec for frames and patches: encode/decode speed and ratio on synthetic data.

One thread (blosc's own threads off), as each ingest/patch worker encodes its own chunks.

    python benchmarks/codecs.py
"""

from __future__ import annotations

import glob
import logging

import cv2
import numcodecs
import numpy as np
from common import raw_folder, timer
from numcodecs import Blosc

from bfsdata.config.files import load_pipeline
from bfsdata.imaging.crop import cut_patches
from bfsdata.imaging.registration import register, scale_layout

CANDIDATES = [
    ("lz4", 5, Blosc.BITSHUFFLE),
    ("lz4", 5, Blosc.SHUFFLE),
    ("zstd", 1, Blosc.BITSHUFFLE),
    ("zstd", 3, Blosc.BITSHUFFLE),
    ("zstd", 3, Blosc.SHUFFLE),
]
SHUFFLE = {Blosc.NOSHUFFLE: "noshuffle", Blosc.SHUFFLE: "shuffle", Blosc.BITSHUFFLE: "bitshuffle"}


def measure(chunks: list[np.ndarray], what: str) -> None:
    raw = sum(c.nbytes for c in chunks)
    print(f"\n{what}: {len(chunks)} chunks of {chunks[0].shape}")
    print(f"{'codec':26s} {'encode MB/s':>12s} {'decode MB/s':>12s} {'ratio':>6s}")
    for cname, level, shuffle in CANDIDATES:
        codec = Blosc(cname=cname, clevel=level, shuffle=shuffle)
        with timer() as te:
            enc = [codec.encode(c) for c in chunks]
        with timer() as td:
            for e in enc:
                codec.decode(e)
        name = f"{cname}-{level} {SHUFFLE[shuffle]}"
        ratio = raw / sum(len(e) for e in enc)
        print(
            f"{name:26s} {raw / te.seconds / 1e6:12.0f} {raw / td.seconds / 1e6:12.0f} {ratio:6.2f}"
        )


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    numcodecs.blosc.set_nthreads(1)
    raw = raw_folder(2)
    files = sorted(glob.glob(str(raw / "*" / "run_1" / "frame_*.png")))
    frames = [cv2.imread(f, cv2.IMREAD_UNCHANGED) for f in files]
    measure(frames, "frames")
    pipe = load_pipeline("bfs-5vial")
    geo = scale_layout(pipe.layout, *frames[0].shape)
    boxes = register(np.max(frames[:16], axis=0), geo).boxes.reshape(-1, 4)
    patches = [p for f in frames for p in cut_patches(f, boxes, pipe.patch.size)]
    measure(patches, "patches")


if __name__ == "__main__":
    main()
