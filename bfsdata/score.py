"""Score patches with an exported model: phi = 1 - SSIM(X, X^) per patch, streamed, resumable.

Test acquisitions are scored as the machine sees them: the pipeline's test frames only (paper:
first, eighth and last frame, 3 x 5 vials x 4 regions = 60 patches per acquisition), one
acquisition per batch by default, so the per-batch time is the time per strip inspection.
Scores are written in parts (`.parts/part-<n>.parquet`, each after its data was scored), so an
interrupted run resumes with the parts that are missing; `scores.parquet` joins them at the end.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from bfsdata import manifest, store
from bfsdata.config import Pipeline
from bfsdata.parallel import progress_bar

log = logging.getLogger(__name__)

PART = 64  # batches per part file: the unit of resuming
WARMUP = 2  # batches left out of the timing (graph tracing, allocation)


class ScoreError(ValueError):
    """Nothing to score, or no model to score with; the message says what to do."""


def scoring_rows(workspace: Path, pipe: Pipeline) -> pd.DataFrame:
    """Patch rows of the val, calib and test splits at the test frames, with their split."""
    ws = Path(workspace)
    splits = manifest.read(ws, manifest.SPLITS_SCHEMA)
    if splits.empty:
        raise ScoreError(f"{ws}: no splits.parquet; run `bfsdata split -w {ws}` first")
    patches = manifest.read(ws, manifest.PATCHES)
    frames = list(pipe.acquisition.test_frames)
    rows = patches[(patches["kind"] == "frame") & patches["frame"].isin(frames)]
    rows = rows.merge(splits[["strip", "split"]], on="strip", how="inner")
    rows = rows[rows["split"].isin(["val", "calib", "test"])]
    if rows.empty:
        raise ScoreError(
            f"{ws}: no frame patches at test frames {frames} in the val/calib/test splits; were "
            "they patched (`bfsdata patch --frames`) and split?"
        )
    # One acquisition after another, in store order inside each: sequential shard reads.
    return rows.sort_values(["acq", "patch"]).reset_index(drop=True)


def load_scorer(run_dir: Path) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """The exported SavedModel's `serve` endpoint: (B, P, P, 1) uint8 -> score, heatmap, ..."""
    import tensorflow as tf

    path = Path(run_dir) / "export" / "saved_model"
    if not path.exists():
        raise ScoreError(f"{path}: no exported model; run `bfsdata train` to the end first")
    model = tf.saved_model.load(str(path))

    def serve(x: np.ndarray) -> dict[str, np.ndarray]:
        out = model.serve(tf.constant(x[..., None] if x.ndim == 3 else x))
        return {k: v.numpy() for k, v in out.items()}

    return serve


def score(
    workspace: Path, run_dir: Path, rows: pd.DataFrame, out_dir: Path, *, batch: int = 60
) -> tuple[pd.DataFrame, dict]:
    """Score `rows` (store rows in column `patch`); returns rows + `score`, and the timing."""
    out_dir = Path(out_dir)
    parts_dir = out_dir / ".parts"
    _reset_if_stale(parts_dir, _key(rows, run_dir, batch))
    serve = load_scorer(run_dir)
    arr = store.ts_array(store.store_path(workspace), "patches")
    per_part = PART * batch
    n_parts = -(-len(rows) // per_part)
    todo = [i for i in range(n_parts) if not (parts_dir / f"part-{i:05d}.parquet").exists()]
    with progress_bar("score (patches)", len(todo) * per_part) as advance:
        for i in todo:
            part = rows.iloc[i * per_part : (i + 1) * per_part]
            scores = np.empty(len(part), dtype=np.float32)
            times: list[float] = []
            for j in range(0, len(part), batch):
                idx = part["patch"].to_numpy()[j : j + batch]
                x = arr[idx].read().result()  # (b, P, P) uint8
                t0 = time.perf_counter()
                scores[j : j + batch] = serve(x)["score"]
                times.append(time.perf_counter() - t0)
                advance(len(idx))
            # The part's batch times go beside it, so a resumed or repeated report keeps them.
            np.save(parts_dir / f"times-{i:05d}.npy", np.asarray(times))
            tmp = parts_dir / f".part-{i:05d}.tmp"
            part.assign(score=scores).to_parquet(tmp, index=False)
            tmp.replace(parts_dir / f"part-{i:05d}.parquet")
    frames = [pd.read_parquet(parts_dir / f"part-{i:05d}.parquet") for i in range(n_parts)]
    times = [t for i in range(n_parts) for t in np.load(parts_dir / f"times-{i:05d}.npy")]
    return pd.concat(frames, ignore_index=True), _timing(times, batch)


def _key(rows: pd.DataFrame, run_dir: Path, batch: int) -> str:
    """What the parts were scored from: the rows, the exported model (by its files) and batch."""
    h = hashlib.sha256(np.ascontiguousarray(rows["patch"].to_numpy(np.int64)).tobytes())
    for f in sorted((Path(run_dir) / "export" / "saved_model").rglob("*")):
        if f.is_file():
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    h.update(str(batch).encode())
    return h.hexdigest()


def _reset_if_stale(parts_dir: Path, key: str) -> None:
    """Parts of other rows or another model are thrown away, never mixed in."""
    stamp = parts_dir / "key"
    if parts_dir.exists() and (not stamp.exists() or stamp.read_text() != key):
        shutil.rmtree(parts_dir)
    parts_dir.mkdir(parents=True, exist_ok=True)
    stamp.write_text(key)


def _timing(times: list[float], batch: int) -> dict:
    """Inference time per batch and per patch, warm-up left out (ms)."""
    import tensorflow as tf

    t = np.asarray(times[WARMUP:] if len(times) > WARMUP else times) * 1e3
    gpus = tf.config.list_logical_devices("GPU")

    def stats(v: np.ndarray) -> dict[str, float | None]:
        if len(v) == 0:
            return {"mean": None, "p50": None, "p99": None}
        return {
            k: float(f(v))
            for k, f in (
                ("mean", np.mean),
                ("p50", np.median),
                ("p99", lambda a: np.percentile(a, 99)),
            )
        }

    return {
        "batch": batch,
        "per_batch_ms": stats(t),
        "per_patch_ms": stats(t / batch),
        "warmup_batches": min(WARMUP, len(times)),
        "batches_timed": len(t),
        "device": gpus[0].name if gpus else "CPU",
        "patches": int(len(times) * batch),
    }


def reconstruct(workspace: Path, run_dir: Path) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """A gallery function: store rows -> x, reconstruction, heatmap, each (N, P, P) in [0, 1]."""
    serve = load_scorer(run_dir)
    arr = store.ts_array(store.store_path(workspace), "patches")

    def images(patch_rows: np.ndarray) -> dict[str, np.ndarray]:
        order = np.argsort(patch_rows)
        x = np.empty((len(patch_rows), *arr.shape[1:]), dtype=np.uint8)
        x[order] = arr[np.asarray(patch_rows)[order]].read().result()
        out = serve(x)
        return {
            "x": x.astype(np.float32) / 255.0,
            "reconstruction": out["reconstruction"][..., 0],
            "heatmap": out["heatmap"][..., 0],
        }

    return images
