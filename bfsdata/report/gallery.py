"""The report's gallery panels: each picked patch, its reconstruction and heatmap, placed on
the image it was cut from (`sections.gallery_picks` chooses the patches)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from bfsdata.config.pipeline import image_name
from bfsdata.report import plots as rp

# store rows (N,) -> {"x", "reconstruction", "heatmap"}: each (N, P, P) float32 in [0, 1]
GalleryFn = Callable[[np.ndarray], dict[str, np.ndarray]]
# (acq, kind, frame) -> the image the patch was cut from, (H, W) uint8, crop boxes in its pixels
StripImageFn = Callable[[int, str, int], np.ndarray]


def png_name(r: dict[str, Any]) -> str:
    image = f"f{r['frame']}" if r["kind"] == "frame" else r["kind"]
    return f"{r['strip']}_run{r['run']}_{image}_v{r['vial']}_r{r['region']}.png"


def render_panels(
    picks: pd.DataFrame, gallery: GalleryFn | None, strip_image: StripImageFn | None
) -> dict[int, bytes]:
    """Gallery panel PNG per pick index; none without a model."""
    if gallery is None or picks.empty:
        return {}
    rows = picks["patch"].to_numpy(np.int64)
    imgs = gallery(rows)
    for key in ("x", "reconstruction", "heatmap"):
        a = np.asarray(imgs.get(key)) if key in imgs else None
        if a is None or a.ndim != 3 or a.shape[0] != rows.size:
            found = None if a is None else a.shape
            raise ValueError(f"gallery must return {key!r} as ({rows.size}, P, P); got {found}")
    out = {}
    for i, p in enumerate(picks.itertuples()):
        strip = (
            None if strip_image is None else np.asarray(strip_image(int(p.acq), p.kind, p.frame))
        )
        box = None if strip is None else (int(p.y0), int(p.x0), int(p.y1), int(p.x1))
        where = f"{p.strip} run {p.run} {image_name(p.kind, p.frame)} vial {p.vial} R{p.region}"
        title = f"{p.reason}: {where}, "
        title += (
            f"score {p.score:.4f} > {p.threshold:.4f}" if p.margin > 0 else f"score {p.score:.4f}"
        )
        out[i] = rp.gallery_panel(
            imgs["x"][i], imgs["reconstruction"][i], imgs["heatmap"][i], title, strip, box
        )
    return out
