"""`bfsdata train --model variation`: an ideal and a variation patch per (kind, vial, region).

One streaming pass over the good patches of the train split (the rows the GAN trains on,
`training_rows`), in store order, a batch (`train.variation.batch`) at a time: each batch is
split by position and added to that position's accumulator (bfsdata.imaging.variation: mean and
variance, or with `robust` a bounded, seeded sample for the median and MAD), while the next batch
is being read. Memory is one batch plus two float64 images per position (and `sample` patches
per position when robust), whatever the size of the split. No TensorFlow.

Outputs in `<ws>/runs/<name>/`, like the GAN's: config.yaml (resolved pipeline + provenance,
with `cut`, the recipe the patches were cut with), previews/region-<r>.png (per kind, the ideal
patches of every vial over their variation images) and export/: variation.npz (keys, ideal and
variation images, a, k, score; bfsdata.imaging.variation.VariationModel) and model.json (patch
size, score, cut recipe and provenance), which `report` and `infer` load (bfsdata.score).
"""

from __future__ import annotations

import io
import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bfsdata.config.pipeline import Pipeline
from bfsdata.config.training import VariationConfig
from bfsdata.imaging.variation import Key, Moments, Reservoir, VariationModel, smooth
from bfsdata.store import arrays as store_io
from bfsdata.store import location as store
from bfsdata.train.stage import TrainError, TrainSummary, training_rows, write_config
from bfsdata.workspace import manifest, paths, provenance
from bfsdata.workspace.writes import png_bytes, write_atomic

log = logging.getLogger(__name__)

GAP = 2  # px between the tiles of a preview


def train_variation(
    workspace: Path,
    pipe: Pipeline,
    *,
    name: str = "default",
    resume: bool = False,
    preview: bool = True,
) -> TrainSummary:
    """Learn runs/<name>'s variation model from the train split; see the module docstring."""
    t0 = time.perf_counter()
    ws = Path(workspace)
    run_dir = paths.run_dir(ws, name, "--name")
    if resume:
        raise TrainError(
            f"{run_dir}: --resume continues a GAN's training; a variation model is trained in "
            "one pass, so there is nothing to resume: run without --resume"
        )
    cfg = pipe.train.variation
    rows, keys = _rows_and_keys(ws, pipe)
    root = store.open_root(ws, mode="r")
    size = pipe.patch.size
    if tuple(root["patches"].shape[1:]) != (size, size):
        raise TrainError(
            f"the store's patches are {root['patches'].shape[1]} px; the pipeline's patch.size "
            f"is {size}: use the pipeline the workspace was patched with"
        )
    for done in (paths.model_path(run_dir), run_dir / "checkpoints"):
        if done.exists():
            raise TrainError(
                f"{run_dir} already holds a trained model ({done.relative_to(run_dir)}); "
                "choose another --name"
            )
    run_dir.mkdir(parents=True, exist_ok=True)
    inputs = provenance.manifest_digests(ws, manifest.SPLITS_SCHEMA, manifest.PATCHES)
    recipe = provenance.patch_recipe(ws)  # how the training patches were cut: to model.json
    cut = {} if recipe is None else {"cut": recipe.to_dict()}
    rec = provenance.record(pipe, "train", inputs, seed=pipe.train.seed, model="variation", **cut)
    write_config(run_dir, pipe, rec)

    key_list, codes = np.unique(keys, return_inverse=True)  # sorted keys; each row's key index
    stats = _accumulate(store.store_url(ws), rows, codes, len(key_list), cfg, pipe.train.seed)
    model = _model([(str(k), int(v), int(r)) for k, v, r in key_list], stats, cfg)
    export = run_dir / paths.VARIATION_MODEL
    export.parent.mkdir(parents=True, exist_ok=True)
    info = {
        "model": "variation",
        "patch_size": size,
        "score": cfg.score,
        "score_share": cfg.score_share,
        "abs_threshold": cfg.abs_threshold,
        "var_threshold": cfg.var_threshold,
        "sigma": cfg.sigma,
        "match_mean": cfg.match_mean,
        "robust": cfg.robust,
        "sample": cfg.sample if cfg.robust else None,
        "patches": len(rows),
        "positions": len(key_list),
        **rec,
    }
    write_atomic(run_dir / paths.MODEL_INFO, json.dumps(info, indent=2).encode())
    buf = io.BytesIO()
    np.savez(buf, **model.to_arrays())
    write_atomic(export, buf.getvalue())  # last: its presence marks a finished run
    if preview:
        _previews(run_dir / paths.PREVIEWS, model)
    return TrainSummary(
        run_dir=run_dir,
        train_patches=len(rows),
        val_patches=0,  # the variation model has no validation loss
        start_step=0,
        steps=-(-len(rows) // cfg.batch),  # batches read
        seconds=time.perf_counter() - t0,
        history=pd.DataFrame(),
        export=export,
    )


def _rows_and_keys(ws: Path, pipe: Pipeline) -> tuple[np.ndarray, np.ndarray]:
    """The train rows, ascending, and each row's (kind, vial, region) as a record array."""
    rows, _ = training_rows(ws, pipe)
    patches = manifest.read(ws, manifest.PATCHES).set_index("patch").loc[rows]
    keys = np.rec.fromarrays(
        [
            patches["kind"].to_numpy(str),
            patches["vial"].to_numpy(np.int64),
            patches["region"].to_numpy(np.int64),
        ],
        names=("kind", "vial", "region"),
    )
    return rows, keys


def _accumulate(
    store_url: str,
    rows: np.ndarray,
    codes: np.ndarray,
    n_keys: int,
    cfg: VariationConfig,
    seed: int,
) -> list[tuple[Moments | Reservoir, Moments]]:
    """Per key, the pixel statistics (Moments, or a Reservoir when robust; of the patches less
    their mean when match_mean) and the Moments of the patches' mean grey levels, in one pass."""
    arr = store_io.ts_array(store_url, "patches")
    shape = tuple(arr.shape[1:])
    acc = [
        (Reservoir(cfg.sample, seed) if cfg.robust else Moments(shape), Moments(()))
        for _ in range(n_keys)
    ]
    pending = arr[rows[: cfg.batch]].read() if len(rows) else None
    for start in range(0, len(rows), cfg.batch):
        x = pending.result()  # (b, P, P) uint8
        nxt = start + cfg.batch
        if nxt < len(rows):  # read the next batch while this one is added
            pending = arr[rows[nxt : nxt + cfg.batch]].read()
        here, ids = codes[start:nxt], rows[start:nxt]
        levels = x.mean(axis=(1, 2))  # (b,) float64
        for c in np.unique(here):
            sel = here == c
            pixels, level = acc[c]
            level.update(levels[sel])
            if cfg.robust:  # the sample keeps the patches as stored; median_mad centres them
                pixels.update(x[sel], ids[sel])
            elif cfg.match_mean:
                pixels.update(x[sel] - levels[sel, None, None])
            else:
                pixels.update(x[sel])
    return acc


def _model(
    keys: list[Key], stats: list[tuple[Moments | Reservoir, Moments]], cfg: VariationConfig
) -> VariationModel:
    """Ideal and (smoothed) variation image per key from the filled accumulators. With
    match_mean the ideal is the centred statistic put back at the key's mean grey level."""
    ideal, variation = [], []
    for pixels, level in stats:
        if isinstance(pixels, Reservoir):
            m, v = pixels.median_mad(cfg.match_mean)
        else:
            m, v = pixels.mean, pixels.std()
        ideal.append(m + level.mean if cfg.match_mean else m)
        variation.append(smooth(v, cfg.sigma))
    return VariationModel(
        tuple(keys),
        np.asarray(ideal, np.float32),
        np.asarray(variation, np.float32),
        cfg.abs_threshold,
        cfg.var_threshold,
        cfg.score,
        cfg.score_share,
        cfg.match_mean,
    )


def _previews(out: Path, model: VariationModel) -> None:
    """previews/region-<r>.png: per kind, a row of ideal patches (vials left to right) over a
    row of variation images (black 0, white the region's largest variation)."""
    out.mkdir(parents=True, exist_ok=True)
    p = model.ideal.shape[1]
    for region in sorted({k[2] for k in model.keys}):
        slots = [i for i, k in enumerate(model.keys) if k[2] == region]
        kinds = sorted({model.keys[i][0] for i in slots})
        vials = sorted({model.keys[i][1] for i in slots})
        top = max(float(model.variation[slots].max()), 1e-6)
        img = np.zeros((2 * len(kinds) * (p + GAP), len(vials) * (p + GAP)), np.uint8)
        for i in slots:
            kind, vial, _ = model.keys[i]
            y = 2 * kinds.index(kind) * (p + GAP)
            x = vials.index(vial) * (p + GAP)
            img[y : y + p, x : x + p] = np.clip(np.rint(model.ideal[i]), 0, 255)
            y += p + GAP
            img[y : y + p, x : x + p] = np.rint(255 * model.variation[i] / top)
        path = out / f"region-{region}.png"
        write_atomic(path, png_bytes(img, path))
