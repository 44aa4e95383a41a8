"""Shared set-up for the benchmarks: a cached synthetic raw folder at camera size."""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

from bfsdata.synth import SynthConfig, synth

# The repository's bench-out/ wherever the script is started from (it is git-ignored there).
OUT = Path(
    os.environ.get("BFSDATA_BENCH_OUT", Path(__file__).resolve().parent.parent / "bench-out")
)


def raw_folder(strips: int, runs: int = 10, height: int = 1024, width: int = 1280) -> Path:
    """Synthetic raw data, made once per size and reused by later benchmark runs."""
    raw = OUT / f"raw-{strips}x{runs}-{height}x{width}"
    if not (raw / "labels.csv").exists():
        logging.info("writing %s (once)", raw)
        synth(raw, SynthConfig(strips=strips, runs=runs, height=height, width=width, seed=1))
    return raw


def arguments(doc: str, strips: int = 2, workers: int = 2) -> argparse.ArgumentParser:
    """The options every benchmark takes (--strips, --workers); add more, then parse_args.
    Logging is set to warnings, so the benchmark's own lines stand out."""
    logging.basicConfig(level=logging.WARNING)
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--strips", type=int, default=strips, help="synthetic strips")
    ap.add_argument("--workers", type=int, default=workers, help="worker threads")
    return ap


class timer:
    def __enter__(self) -> timer:
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.t0
