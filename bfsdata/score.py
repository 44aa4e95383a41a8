"""Score patches with an exported model, streamed, resumable: phi = 1 - SSIM(X, X^) per patch
with the GAN, the band test's score with the variation model (`train.method`; `load_scorer`).

Test acquisitions are scored as the machine sees them: the pipeline's test images only (paper:
first, eighth and last frame, 3 x 5 vials x 4 regions = 60 patches per acquisition;
`acquisition.test_kinds` may add the max rank image or score it instead), one acquisition per
batch by default, so the per-batch time is the time per strip inspection.
Scores are written in parts (`.parts/part-<n>.parquet`, each after its data was scored), so an
interrupted run resumes with the parts that are missing; `scores.parquet` joins them at the end.

On a dask.distributed cluster each part is one task: a worker process loads the exported model
once (cached per process, keyed by the model files) and returns the part's scores and batch
times; the driver writes the part files. Without a cluster the parts are scored in this process.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bfsdata.config.pipeline import Pipeline, image_name
from bfsdata.imaging.residual import ResidualNorm
from bfsdata.imaging.variation import VariationModel
from bfsdata.store import arrays as store_io
from bfsdata.store import location as store
from bfsdata.workspace import manifest, paths
from bfsdata.workspace.parallel import progress_bar, run_tasks

log = logging.getLogger(__name__)

PART = 64  # batches per part file: the unit of resuming
WARMUP = 2  # batches left out of the timing (graph tracing, allocation)


class ScoreError(ValueError):
    """Nothing to score, or no model to score with; the message says what to do."""


def scoring_rows(workspace: Path, pipe: Pipeline) -> pd.DataFrame:
    """Patch rows of the val, calib and test splits at the test images, with their split."""
    ws = Path(workspace)
    splits = manifest.read(ws, manifest.SPLITS_SCHEMA)
    if splits.empty:
        raise ScoreError(f"{ws}: no splits.parquet; run `bfsdata split -w {ws}` first")
    patches = manifest.read(ws, manifest.PATCHES)
    images = pipe.acquisition.test_images()
    wanted = pd.MultiIndex.from_tuples(images, names=["kind", "frame"])
    rows = patches[pd.MultiIndex.from_frame(patches[["kind", "frame"]]).isin(wanted)]
    rows = rows.merge(splits[["strip", "split"]], on="strip", how="inner")
    rows = rows[rows["split"].isin(["val", "calib", "test"])]
    if rows.empty:
        raise ScoreError(
            f"{ws}: no patches of the test images ({', '.join(image_name(*i) for i in images)}) "
            "in the val/calib/test splits; were they patched (`bfsdata patch --frames --kinds`) "
            "and split?"
        )
    # One acquisition after another, in store order inside each: sequential shard reads.
    return rows.sort_values(["acq", "patch"]).reset_index(drop=True)


# (B, P, P) uint8 patches, and each one's (kind, vial, region) -> {"score": (B,),
# "heatmap": (B, P, P, 1), "reconstruction": (B, P, P, 1)}. The GAN needs no keys.
Scorer = Callable[..., dict[str, np.ndarray]]


def load_scorer(run_dir: Path) -> Scorer:
    """The run's exported model as `serve(x, where)`: the GAN's SavedModel `serve` endpoint, or
    the variation model (bfsdata.imaging.variation). `where`, the patches' keys, is needed by
    the variation model and by a GAN scored on its normalised residual (model.json `score`)."""
    path = _model_path(run_dir)
    if path.name == Path(paths.VARIATION_MODEL).name:
        with np.load(path) as arrays:
            model = VariationModel.from_arrays(arrays)
        return _needs_where(path, model)
    serve = _saved_model_serve(path)
    if json.loads((Path(run_dir) / paths.MODEL_INFO).read_text()).get("score") != "residual":
        return serve
    stats = Path(run_dir) / paths.RESIDUAL_STATS
    if not stats.is_file():
        raise ScoreError(f"{stats}: missing; the model's score is its normalised residual")
    with np.load(stats) as arrays:
        norm = ResidualNorm.from_arrays(arrays)

    def residual(x: np.ndarray, where: list) -> dict[str, np.ndarray]:
        out = serve(x)
        recon = out["reconstruction"]
        return {"reconstruction": recon, **norm(x, recon[..., 0], where)}

    return _needs_where(stats, residual)


def _needs_where(path: Path, model: Callable[..., dict[str, np.ndarray]]) -> Scorer:
    def serve(x: np.ndarray, where: list | None = None) -> dict[str, np.ndarray]:
        if where is None:
            raise ScoreError(
                f"{path}: this model scores each patch at its position; "
                "pass the patches' (kind, vial, region)"
            )
        return model(x[..., 0] if x.ndim == 4 else x, where)

    return serve


def _saved_model_serve(path: Path) -> Scorer:
    """The GAN's SavedModel `serve` endpoint on (B, P, P) uint8 patches, outputs as numpy."""
    import tensorflow as tf

    saved = tf.saved_model.load(str(path))

    def serve(x: np.ndarray, where: list | None = None) -> dict[str, np.ndarray]:
        out = saved.serve(tf.constant(x[..., None] if x.ndim == 3 else x))
        return {k: v.numpy() for k, v in out.items()}

    return serve


def score_label(run_dir: Path) -> str:
    """What the exported model's score is, in words (`train.loss.score_share` of the GAN,
    `train.variation.score` of the variation model)."""
    meta = json.loads((Path(run_dir) / paths.MODEL_INFO).read_text())
    if meta.get("model") == "variation":
        if meta["score"] == "area":
            return "variation model: largest out-of-band area, px"
        return f"variation model: worst {meta['score_share']:.0%} of |x - m| / max(a, k v)"
    share = float(meta.get("score_share", 1.0))  # older exports: the paper's mean
    if meta.get("score") == "residual":
        what = "residual normalised per pixel by good patches"
        return what if share >= 1.0 else f"{what}, worst {share:.0%} of the map"
    what = "1 - SSIM" + (" at the patch's range" if meta.get("score_range") == "patch" else "")
    return what if share >= 1.0 else f"{what}, worst {share:.0%} of the map"


def _model_path(run_dir: Path) -> Path:
    path = paths.model_path(run_dir)
    if not path.exists():
        raise ScoreError(f"{path}: no exported model; run `bfsdata train` to the end first")
    return path


def patch_keys(rows: pd.DataFrame) -> list[tuple[str, int, int]]:
    """(kind, vial, region) of each row: where a variation model compares the patch."""
    cols = [rows[c].to_numpy() for c in ("kind", "vial", "region")]
    return [(str(k), int(v), int(r)) for k, v, r in zip(*cols, strict=True)]


@dataclass(frozen=True)
class _Part:
    """One part file's worth of patches to score; small, so it ships to cluster workers."""

    index: int
    patch_rows: np.ndarray  # (n,) int64 store rows, in scoring order
    where: list  # (kind, vial, region) of each row
    store: str  # the zarr store (store.store_url)
    run_dir: str
    model_stamp: str  # what the exported model's files were when the part was planned
    batch: int


def score(
    workspace: Path,
    run_dir: Path,
    rows: pd.DataFrame,
    out_dir: Path,
    *,
    batch: int = 60,
    scheduler: str | None = None,
) -> tuple[pd.DataFrame, dict]:
    """Score `rows` (store rows in column `patch`); returns rows + `score`, and the timing.

    scheduler: a dask.distributed scheduler address to score on its workers; None scores here.
    """
    store.check_reachable(workspace, scheduler)
    out_dir = Path(out_dir)
    parts_dir = out_dir / ".parts"
    stamp = _model_stamp(_model_path(run_dir))
    _reset_if_stale(parts_dir, _key(rows, stamp, batch))
    per_part = PART * batch
    n_parts = -(-len(rows) // per_part)
    patch_rows = rows["patch"].to_numpy(np.int64)
    where = patch_keys(rows)
    todo = [
        _Part(
            i,
            patch_rows[i * per_part : (i + 1) * per_part],
            where[i * per_part : (i + 1) * per_part],
            store.store_url(workspace),
            os.path.abspath(run_dir),  # a worker's working folder is not ours
            stamp,
            batch,
        )
        for i in range(n_parts)
        if not (parts_dir / f"part-{i:05d}.parquet").exists()
    ]

    def on_result(res: tuple[int, np.ndarray, np.ndarray]) -> None:
        i, scores, times = res
        # The part's batch times go beside it, so a resumed or repeated report keeps them.
        np.save(parts_dir / f"times-{i:05d}.npy", times)
        tmp = parts_dir / f".part-{i:05d}.tmp"
        rows.iloc[i * per_part : (i + 1) * per_part].assign(score=scores).to_parquet(
            tmp, index=False
        )
        tmp.replace(parts_dir / f"part-{i:05d}.parquet")

    if scheduler:
        run_tasks(
            _score_part,
            todo,
            on_result,
            scheduler=scheduler,
            label="score (patches)",
            weight=lambda p: len(p.patch_rows),
        )
    elif todo:
        serve = load_scorer(run_dir)
        with progress_bar("score (patches)", len(todo) * per_part) as advance:
            for part in todo:
                on_result(_score_part(part, serve, advance))
    frames = [pd.read_parquet(parts_dir / f"part-{i:05d}.parquet") for i in range(n_parts)]
    times = [t for i in range(n_parts) for t in np.load(parts_dir / f"times-{i:05d}.npy")]
    return pd.concat(frames, ignore_index=True), _timing(times, batch, _device(run_dir))


def _score_part(
    part: _Part,
    serve: Callable[[np.ndarray], dict[str, np.ndarray]] | None = None,
    advance: Callable[[int], None] = lambda n: None,
) -> tuple[int, np.ndarray, np.ndarray]:
    """(index, scores (n,) float32, batch times in s) of one part. Runs on a worker."""
    serve = serve or _worker_scorer(part.run_dir, part.model_stamp)
    arr = store_io.ts_array(part.store, "patches")
    scores = np.empty(len(part.patch_rows), dtype=np.float32)
    times = []
    for j in range(0, len(part.patch_rows), part.batch):
        idx = part.patch_rows[j : j + part.batch]
        x = arr[idx].read().result()  # (b, P, P) uint8
        t0 = time.perf_counter()
        scores[j : j + part.batch] = serve(x, part.where[j : j + part.batch])["score"]
        times.append(time.perf_counter() - t0)
        advance(len(idx))
    return part.index, scores, np.asarray(times)


@functools.lru_cache(maxsize=1)
def _worker_scorer(run_dir: str, model_stamp: str) -> Scorer:
    """One model per worker process, loaded by its first part (seconds) and kept for the rest;
    the stamp makes a re-exported model load anew in a long-lived cluster."""
    return load_scorer(Path(run_dir))


def _model_stamp(model: Path) -> str:
    """The exported model's files by name, size and mtime: changes when it is re-exported."""
    h = hashlib.sha256()
    model = Path(model)
    for f in [model] if model.is_file() else sorted(model.rglob("*")):
        if f.is_file():
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


def _key(rows: pd.DataFrame, model_stamp: str, batch: int) -> str:
    """What the parts were scored from: the rows, the exported model and the batch size."""
    h = hashlib.sha256(np.ascontiguousarray(rows["patch"].to_numpy(np.int64)).tobytes())
    h.update(model_stamp.encode())
    h.update(str(batch).encode())
    return h.hexdigest()


def _reset_if_stale(parts_dir: Path, key: str) -> None:
    """Parts of other rows or another model are thrown away, never mixed in."""
    stamp = parts_dir / "key"
    if parts_dir.exists() and (not stamp.exists() or stamp.read_text() != key):
        shutil.rmtree(parts_dir)
    parts_dir.mkdir(parents=True, exist_ok=True)
    stamp.write_text(key)


def _device(run_dir: Path) -> str:
    """What scored: the variation model runs on the CPU; the GAN on TensorFlow's first GPU."""
    if paths.model_path(run_dir).is_file():
        return "CPU"
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    return gpus[0].name if gpus else "CPU"


def _timing(times: list[float], batch: int, device: str) -> dict:
    """Inference time per batch and per patch, warm-up left out (ms)."""
    t = np.asarray(times[WARMUP:] if len(times) > WARMUP else times) * 1e3

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
        "device": device,
        "patches": int(len(times) * batch),
    }


def reconstruct(workspace: Path, run_dir: Path) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """A gallery function: store rows -> x, reconstruction, heatmap, each (N, P, P) in [0, 1].
    The variation model's reconstruction is the ideal patch, its heatmap the out-of-band map."""
    serve = load_scorer(run_dir)
    arr = store_io.ts_array(store.store_url(workspace), "patches")
    keys = manifest.read(workspace, manifest.PATCHES).set_index("patch")[["kind", "vial", "region"]]

    def images(patch_rows: np.ndarray) -> dict[str, np.ndarray]:
        order = np.argsort(patch_rows)
        x = np.empty((len(patch_rows), *arr.shape[1:]), dtype=np.uint8)
        x[order] = arr[np.asarray(patch_rows)[order]].read().result()
        out = serve(x, patch_keys(keys.loc[np.asarray(patch_rows)]))
        return {
            "x": x.astype(np.float32) / 255.0,
            "reconstruction": out["reconstruction"][..., 0],
            "heatmap": out["heatmap"][..., 0],
        }

    return images
