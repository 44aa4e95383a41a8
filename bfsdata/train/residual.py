"""Good-residual statistics of a trained GAN, per position, from the val split.

After the GAN is exported, the val split's good patches of the scored images
(`acquisition.test_kinds` at `test_frames`, the rows `report` scores) are reconstructed once as
the exported model does it; their blurred residual maps (bfsdata.imaging.residual) are
accumulated per position (kind, vial, region) into a per-pixel mean and standard deviation
(Welford/Chan, mergeable) and written to export/residual.npz. A model whose
`train.loss.score` is `residual` is scored with them; any GAN gets them, so the same weights
can be judged on either score (benchmarks/quality.py). Val strips are good and never calib or
test: no threshold data leaks.

At most `PER_POSITION` patches per position are used, a seeded sample by patch id
(bfsdata.imaging.variation.priority), so the pass costs the same whatever the size of the split.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bfsdata.config.pipeline import Pipeline
from bfsdata.imaging.residual import ResidualNorm, residual_maps
from bfsdata.imaging.variation import Moments, priority
from bfsdata.score import patch_keys, scoring_rows
from bfsdata.store import arrays as store_io
from bfsdata.store import location as store
from bfsdata.workspace import paths
from bfsdata.workspace.writes import write_atomic

log = logging.getLogger(__name__)

# Patches per position: the std of a pixel from a few hundred good residuals is steady; more only
# costs inference time on large val splits.
PER_POSITION = 256
BATCH = 64  # patches per model call


def fit_residual_norm(
    workspace: Path,
    run_dir: Path,
    pipe: Pipeline,
    reconstruct: Callable[[np.ndarray], np.ndarray],
) -> Path | None:
    """Write run_dir/export/residual.npz; None (and a warning) when val has no scored patch.
    reconstruct: (B, P, P) uint8 patches -> (B, P, P) reconstructions in [0, 1], as the
    exported model computes them (bfsdata.model.export.reconstructor)."""
    ws = Path(workspace)
    rows = scoring_rows(ws, pipe)
    rows = rows[(rows["split"] == "val") & (rows["label"] == "good")]
    if rows.empty:
        log.warning("%s: no good val patches of the scored images; no residual statistics", ws)
        return None
    rank = priority(rows["patch"].to_numpy(np.int64), pipe.train.seed)
    rows = rows.assign(_rank=rank).sort_values("_rank", kind="stable")
    rows = rows.groupby(["kind", "vial", "region"], sort=False).head(PER_POSITION)
    rows = rows.sort_values("patch")  # store order: sequential shard reads
    keys = patch_keys(rows)
    key_list = sorted(set(keys))
    code = {k: i for i, k in enumerate(key_list)}
    codes = np.array([code[k] for k in keys], np.intp)
    loss = pipe.train.loss
    size = pipe.patch.size
    moments = [Moments((size, size)) for _ in key_list]
    arr = store_io.ts_array(store.store_url(ws), "patches")
    patch_rows = rows["patch"].to_numpy(np.int64)
    for j in range(0, len(patch_rows), BATCH):
        x = arr[patch_rows[j : j + BATCH]].read().result()  # (b, P, P) uint8
        r = residual_maps(x, reconstruct(x), loss.residual_sigma)
        c = codes[j : j + BATCH]
        for k in np.unique(c):
            moments[k].update(r[c == k])
    norm = ResidualNorm(
        tuple(key_list),
        np.stack([m.mean for m in moments]).astype(np.float32),
        np.stack([m.std() for m in moments]).astype(np.float32),
        loss.residual_sigma,
        loss.residual_floor,
        loss.score_share,
    )
    out = Path(run_dir) / paths.RESIDUAL_STATS
    out.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez(buf, **norm.to_arrays())
    write_atomic(out, buf.getvalue())
    return out
