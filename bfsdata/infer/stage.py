"""`bfsdata infer`: decisions and heatmaps for new acquisitions, with a trained model.

For each run folder (frame_<i>.png): decode the frames once, compute the max rank image,
register the strip, cut the test images (the frames and rank images that thresholds.json was
fitted on, acquisition.test_kinds) into vials x regions with the cut recipe thresholds.json
records (bfsdata.imaging.cut: the recipe the scored patches were cut with, so a patch cut here
is the stored patch of the same acquisition, bit for bit), score the patches with
the exported model, and apply the report's `thresholds.json`: a vial (or the strip) is rejected
when any of its patches scores above its region's `strip` threshold (paper eq. 13), or with
thresholds per kind (`thresholds_by` kind) above its (kind, region)'s, a (kind, region) the
report dropped judging nothing. Several runs of one strip also get the run-wise decision
(`run` thresholds, k of n runs must agree).

A pipeline whose recipe differs from the recorded one is refused, naming the settings, and so
is a thresholds.json without one (written by an older `bfsdata report`: run it again), rather
than cut with the pipeline's settings unchecked.

Writes per acquisition `<strip>_run<r>.json` (patch scores, vial and strip decisions) and
`<strip>_run<r>.png` (the strip with every region's heatmap, rejected regions boxed in red),
and `summary.json` with the run-wise decisions and timings.

With an image-folder pipeline (layout.mode grid or resize) the inputs are image files, or
folders of them: each image is decoded to grayscale as at ingest, cut by the layout (its tiles
are the vials x regions above) and decided as one acquisition, run 1 of the strip id ingest
gives it (`test/<defect>/<name>.png` -> `test-<defect>-<name>`,
bfsdata.sources.image_folders.image_id).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from bfsdata.config.pipeline import IMAGE_LAYOUTS, Pipeline
from bfsdata.imaging.crop import to_uint8
from bfsdata.infer.inputs import (
    InferError,
    cut_image,
    cut_run,
    image_files,
    image_thresholds,
    load_thresholds,
    patch_order,
    run_folders,
    test_images,
    thresholds_recipe,
)
from bfsdata.judging.decisions import runwise
from bfsdata.score import Scorer, load_scorer
from bfsdata.sources.image_folders import image_id
from bfsdata.sources.strip_folders import RUN_RE
from bfsdata.workspace import paths, provenance
from bfsdata.workspace.writes import png_bytes, write_atomic


@dataclass(frozen=True)
class InferSummary:
    out_dir: Path
    acquisitions: pd.DataFrame  # strip, run, rejected, rejected_vials, ms
    strips: pd.DataFrame  # run-wise decision per strip (strips with several runs)


def infer(
    acquisitions: list[Path], run_dir: Path, thresholds_path: Path, pipe: Pipeline, out_dir: Path
) -> InferSummary:
    th = load_thresholds(thresholds_path, pipe)
    recipe = thresholds_recipe(th, thresholds_path, pipe)
    serve = load_scorer(run_dir)
    model = json.loads((Path(run_dir) / paths.MODEL_INFO).read_text())
    if model["patch_size"] != pipe.patch.size:
        raise InferError(
            f"{run_dir}: the model takes {model['patch_size']} px patches, the pipeline cuts "
            f"{pipe.patch.size} px"
        )
    if model.get("cut") not in (None, th["cut"]):  # None: exported before it was recorded
        raise InferError(
            f"{run_dir}: the model was trained on patches cut otherwise than those "
            f"{thresholds_path} was fitted on (their `cut` recipes differ); use this model's report"
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    images = pipe.layout.mode in IMAGE_LAYOUTS
    for folder in image_files(acquisitions) if images else run_folders(acquisitions):
        t0 = time.perf_counter()
        if images:
            scored, boxes, patches, meta = cut_image(folder, recipe, th)
        else:
            test = test_images(pipe, th)
            scored, boxes, patches, meta = cut_run(folder, recipe, pipe.acquisition, test)
        n_v, n_r = boxes.shape[:2]
        order = patch_order(meta["images"], n_v, n_r)
        strip_t = image_thresholds(th, "strip", meta["images"], n_r)  # (I, R)
        run_t = image_thresholds(th, "run", meta["images"], n_r)
        patch_t = np.repeat(strip_t, n_v, axis=0).reshape(-1)  # (I * V * R,) image-major as cut
        scores, heat = judged_scores(serve, patches, order, np.isfinite(patch_t))
        ms = (time.perf_counter() - t0) * 1e3
        per_image = scores.reshape(-1, n_v, n_r)  # (I, V, R); NaN (never over) where not judged
        over = (per_image > strip_t[:, None, :]).any(axis=0)  # (V, R): any image over
        # Each cell's heatmap from the image that exceeds its threshold most: the one that rejected.
        worst = np.nan_to_num(per_image - strip_t[:, None, :], nan=-np.inf).argmax(axis=0)
        if images:
            strip, run = image_id(folder), 1
        else:
            strip, run = folder.parent.name, int(RUN_RE.match(folder.name).group(1))
        rejected_vials = [v + 1 for v in range(n_v) if over[v].any()]
        record = {
            "strip": strip,
            "run": run,
            "source": str(folder.resolve()),
            "rejected": bool(rejected_vials),
            "rejected_vials": rejected_vials,
            "run_rejected": bool((per_image > run_t[:, None, :]).any()),
            "ms": ms,
            **meta,
            "patches": [
                {
                    "kind": k,
                    "frame": f,
                    "vial": v + 1,
                    "region": r,
                    "score": float(s) if np.isfinite(s) else None,  # None: not judged
                    "threshold": float(t) if np.isfinite(t) else None,  # None: not judged
                    "box": [int(b) for b in boxes[v, r]],
                }
                for (k, f, v, r), s, t in zip(order, scores, patch_t, strict=True)
            ],
        }
        name = f"{strip}_run{run}"
        _write_json(out_dir / f"{name}.json", record)
        cells = (worst * n_v + np.arange(n_v)[:, None]) * n_r + np.arange(n_r)  # (V, R) rows
        _overlay(scored[0], boxes, over, heat[cells], out_dir / f"{name}.png")
        rows.append(
            {
                k: record[k]
                for k in ("strip", "run", "rejected", "rejected_vials", "run_rejected", "ms")
            }
        )
    acq = pd.DataFrame(rows)
    strips = strip_decisions(acq, th.get("min_agree", 7))
    summary = {
        "acquisitions": acq.to_dict(orient="records"),
        "strips": strip_records(strips),
        "thresholds": str(thresholds_path),
        "model": str(run_dir),
        "provenance": _record(pipe, Path(run_dir), Path(thresholds_path)),
    }
    _write_json(out_dir / "summary.json", summary)
    return InferSummary(out_dir=out_dir, acquisitions=acq, strips=strips)


def judged_scores(
    serve: Scorer, patches: np.ndarray, order: list, judged: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Score only the patches whose (kind, region) judges the item (the report dropped the
    others): scores (N,) NaN where not judged, heatmaps (N, P, P) zero there. The slot time is
    then the time of what the machine has to compute."""
    scores = np.full(len(patches), np.nan, np.float32)
    heat = np.zeros(patches.shape[:3], np.float32)
    sel = np.flatnonzero(judged)
    if len(sel):
        keys = [(order[i][0], order[i][2] + 1, order[i][3]) for i in sel]  # (kind, vial, region)
        out = serve(patches[sel], keys)
        scores[sel] = out["score"]
        heat[sel] = out["heatmap"][..., 0]
    return scores, heat


def _record(pipe: Pipeline, run_dir: Path, thresholds: Path) -> dict:
    """The model and thresholds applied, by digest: the report's metrics.json records the same
    thresholds.json digest, so a decision leads back to the report and its data."""
    model = paths.model_path(run_dir)
    inputs = {
        str(model): provenance.model_sha256(model),
        str(thresholds): provenance.file_sha256(thresholds),
    }
    return provenance.record(pipe, "infer", inputs)


def _overlay(
    image: np.ndarray, boxes: np.ndarray, rejected: np.ndarray, heat: np.ndarray, path: Path
) -> None:
    """The strip with the heatmaps (V, R, P, P) of rejected regions blended in, boxes red or
    green."""
    img = cv2.cvtColor(to_uint8(image), cv2.COLOR_GRAY2BGR)
    n_v, n_r = boxes.shape[:2]
    for v in range(n_v):
        for r in range(n_r):
            y0, x0, y1, x1 = (int(b) for b in boxes[v, r])
            if rejected[v, r]:
                h = heat[v, r]
                h = cv2.resize((h * 255).astype(np.uint8), (x1 - x0, y1 - y0))
                colour = cv2.applyColorMap(h, cv2.COLORMAP_JET)
                img[y0:y1, x0:x1] = cv2.addWeighted(img[y0:y1, x0:x1], 0.5, colour, 0.5, 0)
            cv2.rectangle(
                img,
                (x0, y0),
                (x1 - 1, y1 - 1),
                (0, 0, 255) if rejected[v, r] else (0, 160, 0),
                2 if rejected[v, r] else 1,
            )
    write_atomic(path, png_bytes(img, path))


def _write_json(path: Path, doc: dict) -> None:
    write_atomic(path, json.dumps(doc, indent=2, default=_plain).encode())


def _plain(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    raise TypeError(f"cannot write {type(v).__name__} to JSON")


def strip_decisions(acq: pd.DataFrame, min_agree: int) -> pd.DataFrame:
    """The run-wise decision of every strip with several runs among `acq` (strip, run_rejected),
    k of n runs agreeing (decisions.runwise); empty when no strip has more than one run."""
    multi = acq.groupby("strip").filter(lambda g: len(g) > 1)
    if multi.empty:
        return pd.DataFrame()
    not_known = np.zeros(len(multi), bool)  # new product: its label is what is being decided
    return runwise(
        multi["strip"].to_numpy(), multi["run_rejected"].to_numpy(), not_known, min_agree=min_agree
    )


def strip_records(strips: pd.DataFrame) -> list[dict]:
    """Strip decisions as summary.json rows (without the label columns a new product lacks)."""
    return strips.drop(columns=["is_defect", "correct"], errors="ignore").to_dict("records")
