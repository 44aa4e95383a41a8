"""The synth stage: plan the dataset, then write its PNGs and labels.csv atomically."""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from bfsdata.synth.camera import Scene, light_field, render_run
from bfsdata.synth.config import SynthConfig, SynthSummary
from bfsdata.synth.plan import RunPlan, StripPlan, labels_frame, plan_dataset, transforms_frame
from bfsdata.synth.product import render_product

log = logging.getLogger(__name__)

# Level 1 with Huffman-only coding: the sensor noise defeats LZ matching anyway, so this is
# faster than level 1's default and a little smaller (docs/performance.md, Synthetic data).
PNG_PARAMS = [
    cv2.IMWRITE_PNG_COMPRESSION,
    1,
    cv2.IMWRITE_PNG_STRATEGY,
    cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY,
]
STRIPS_IN_FLIGHT = 2  # rendered products held at once: bounds memory, keeps threads busy


def synth(out: Path, cfg: SynthConfig | None = None) -> SynthSummary:
    """Write synthetic raw acquisitions of BFS strips to `out` (docs/design.md, Raw input).

    out/labels.csv and out/<strip>/run_<r>/frame_<f>.png. Refuses a folder that already holds a
    dataset. The same cfg always gives byte-identical files.
    """
    cfg = cfg or SynthConfig()
    out = Path(out)
    _check_out(out)
    start = time.perf_counter()
    geom = cfg.geometry()
    scene = Scene(geom, cfg.clutter, cfg.rims, light_field(geom, cfg.gradient, cfg.gradient_deg))
    plans = plan_dataset(cfg)
    out.mkdir(parents=True, exist_ok=True)
    log.info(
        "synth: %d strips x %d runs x %d frames of %dx%d (%d-bit) into %s",
        cfg.strips, cfg.runs, cfg.frames, cfg.height, cfg.width, cfg.bit_depth, out,
    )  # fmt: skip
    with ThreadPoolExecutor(cfg.workers, thread_name_prefix="synth") as pool:
        pending: deque[list[Future[None]]] = deque()
        for plan in plans:
            texture = np.random.default_rng(plan.texture_seed)
            product = render_product(geom, plan.defects, texture, cfg.rims)
            pending.append(
                [pool.submit(_write_run, out, plan, run, product, cfg, scene) for run in plan.runs]
            )
            while len(pending) >= STRIPS_IN_FLIGHT:
                _finish(pending.popleft())
            log.debug("synth: %s (%s) queued", plan.strip, plan.label)
        while pending:
            _finish(pending.popleft())
    labels = labels_frame(plans)
    _write_atomic(out / "labels.csv", labels.to_csv(index=False).encode())
    seconds = time.perf_counter() - start
    defective = sum(1 for p in plans if p.defects)
    log.info("synth: wrote %d strips (%d defective) in %.1f s", len(plans), defective, seconds)
    return SynthSummary(
        out, len(plans), cfg.runs, cfg.frames, defective, seconds, transforms_frame(plans)
    )


def _check_out(out: Path) -> None:
    """Refuse to mix two datasets in one folder."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"synth output {out} is a file; give a folder (new or empty)")
    if not out.is_dir():
        return
    labels = out / "labels.csv"
    if labels.is_file() and labels.stat().st_size > 0:
        raise ValueError(
            f"synth output {out} already holds a dataset (labels.csv); "
            "delete it or choose a new, empty folder"
        )
    folders = sorted(p.name for p in out.iterdir() if p.is_dir() and not p.name.startswith("."))
    if folders:
        raise ValueError(
            f"synth output {out} already holds folders ({', '.join(folders[:3])}"
            f"{', ...' if len(folders) > 3 else ''}), maybe a partly written dataset; "
            "delete them or choose a new, empty folder"
        )


def _write_run(
    out: Path,
    plan: StripPlan,
    run: RunPlan,
    product: np.ndarray,
    cfg: SynthConfig,
    scene: Scene,
) -> None:
    folder = out / plan.strip / f"run_{run.run}"
    folder.mkdir(parents=True, exist_ok=True)
    rng, rim_rng = np.random.default_rng(run.seed), np.random.default_rng(run.rim_seed)
    frames = render_run(
        product, run.grip, rng, cfg.frames, cfg.noise_sigma, cfg.bit_depth, scene, rim_rng
    )
    for f, frame in enumerate(frames):
        ok, buf = cv2.imencode(".png", frame, PNG_PARAMS)
        assert ok, "cv2 failed to encode a PNG"
        _write_atomic(folder / f"frame_{f}.png", buf.tobytes())


def _finish(futures: list[Future[None]]) -> None:
    for fut in futures:
        fut.result()  # re-raises a worker's error here, in the caller's thread


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
