"""`bfsdata infer`: decisions and heatmaps for new acquisitions, with a trained model.

For each run folder (frame_<i>.png): decode the frames once, compute the max rank image,
register the strip, cut the test images (the frames and rank images that thresholds.json was
fitted on, acquisition.test_kinds) into vials x regions with the cut recipe thresholds.json
records (bfsdata.imaging.cut: the recipe the scored patches were cut with, so a patch cut here
is the stored patch of the same acquisition, bit for bit), score the patches with
the exported model, and apply the report's `thresholds.json`: a vial (or the strip) is rejected
when any of its patches scores above its region's `strip` threshold (paper eq. 13). Several runs
of one strip also get the run-wise decision (`run` thresholds, k of n runs must agree).

A pipeline whose recipe differs from the recorded one is refused, naming the settings, and so
is a thresholds.json without one (written by an older `bfsdata report`: run it again), rather
than cut with the pipeline's settings unchecked.

Writes per acquisition `<strip>_run<r>.json` (patch scores, vial and strip decisions) and
`<strip>_run<r>.png` (the strip with every region's heatmap, rejected regions boxed in red),
and `summary.json` with the run-wise decisions and timings.

With an image-folder pipeline (layout.mode grid or resize) the inputs are image files, or
folders of them: each image is decoded to grayscale as at ingest, cut by the layout (its tiles
are the vials x regions above) and decided as one acquisition, run 1 of the strip id ingest
gives it (`test/<defect>/<name>.png` -> `test-<defect>-<name>`, bfsdata.folder.image_id).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from bfsdata.config.pipeline import IMAGE_LAYOUTS, Pipeline, kind_rank
from bfsdata.imaging.crop import to_uint8
from bfsdata.imaging.cut import CutRecipe, RecipeError, Windows, cut, locate
from bfsdata.imaging.rank import rank_images
from bfsdata.imaging.tiling import TilingError
from bfsdata.judging.decisions import runwise
from bfsdata.score import load_scorer
from bfsdata.sources.image_decode import read_image
from bfsdata.sources.image_file import FrameError, check_header, decode, read_header
from bfsdata.sources.image_folders import IMAGE_RE, image_id
from bfsdata.sources.strip_folders import FRAME_RE, RUN_RE
from bfsdata.workspace import provenance
from bfsdata.workspace.writes import png_bytes, write_atomic


class InferError(ValueError):
    """Input or model/threshold pair that cannot be used; the message says which and why."""


@dataclass(frozen=True)
class InferSummary:
    out_dir: Path
    acquisitions: pd.DataFrame  # strip, run, rejected, rejected_vials, ms
    strips: pd.DataFrame  # run-wise decision per strip (strips with several runs)


def run_folders(paths: list[Path]) -> list[Path]:
    """Run folders named directly, or every run_<r> folder of a strip folder."""
    out = []
    for p in map(Path, paths):
        if not p.is_dir():
            raise InferError(f"{p}: not a folder; give run folders (run_<r>) or strip folders")
        if RUN_RE.match(p.name):
            out.append(p)
        else:
            runs = sorted(q for q in p.iterdir() if q.is_dir() and RUN_RE.match(q.name))
            if not runs:
                raise InferError(f"{p}: no run_<r> folders inside, and not a run folder itself")
            out += runs
    return out


def image_files(paths: list[Path]) -> list[Path]:
    """Image files named directly, or every image of a folder; their ids must differ."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(q for q in p.iterdir() if q.is_file() and IMAGE_RE.match(q.name))
        elif p.is_file() and IMAGE_RE.match(p.name):
            out.append(p)
        else:
            raise InferError(f"{p}: not an image (.png, .tif) or a folder of images")
    ids = [image_id(p) for p in out]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise InferError(f"two inputs are both image {twice[0]}; infer them separately")
    if not out:
        raise InferError(f"no images (.png, .tif) in {', '.join(map(str, paths))}")
    return out


def load_thresholds(path: Path, pipe: Pipeline) -> dict:
    """thresholds.json, refused when it was fitted for another patch layout."""
    path = Path(path)
    if not path.exists():
        raise InferError(f"{path}: no thresholds; run `bfsdata report` for this model first")
    th = json.loads(path.read_text())
    want = {
        "patch_size": pipe.patch.size,
        "regions": list(range(len(pipe.layout.regions))),
        "vials": pipe.layout.vials,
    }
    if pipe.layout.mode in IMAGE_LAYOUTS:  # tiles per image depend on its size: `_cut_image`
        del want["regions"], want["vials"]
    for key, value in want.items():
        if th.get(key) is not None and th[key] != value:
            raise InferError(
                f"{path}: fitted for {key} = {th[key]}, but the pipeline has {value}; "
                "a model and its thresholds only apply to the patch layout they were made for"
            )
    return th


def thresholds_recipe(th: dict, path: Path, pipe: Pipeline) -> CutRecipe:
    """The cut recipe thresholds.json records, refused when the pipeline's differs or none is
    recorded: infer cuts as the patches the thresholds were fitted on were cut."""
    if th.get("cut") is None:
        raise InferError(
            f"{path}: records no cut recipe (written by an older `bfsdata report`), so infer "
            "cannot check that it cuts as the model's patches were cut; run `bfsdata report` "
            "again for this model (a workspace patched by an older bfsdata first needs "
            "`bfsdata patch` again, which records the recipe and cuts nothing)"
        )
    try:
        recipe = CutRecipe.from_dict(th["cut"])
    except RecipeError as e:
        raise InferError(f"{path}: {e}") from None
    differ = recipe.differences(CutRecipe.of(pipe))
    if differ:
        listed = "; ".join(
            f"{k} {a!r} recorded, {b!r} in the pipeline" for k, (a, b) in differ.items()
        )
        raise InferError(
            f"{path}: the model's patches were cut with other settings than the pipeline's: "
            f"{listed}. Infer with the pipeline the workspace was patched with, or patch, train "
            "and report again with this one"
        )
    return recipe


def infer(
    acquisitions: list[Path], run_dir: Path, thresholds_path: Path, pipe: Pipeline, out_dir: Path
) -> InferSummary:
    th = load_thresholds(thresholds_path, pipe)
    recipe = thresholds_recipe(th, thresholds_path, pipe)
    serve = load_scorer(run_dir)
    model = json.loads((Path(run_dir) / "export" / "model.json").read_text())
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
    strip_t = np.array([th["strip"][str(r)] for r in th["regions"]])
    run_t = np.array([th["run"][str(r)] for r in th["regions"]])
    rows = []
    images = pipe.layout.mode in IMAGE_LAYOUTS
    for folder in image_files(acquisitions) if images else run_folders(acquisitions):
        t0 = time.perf_counter()
        if images:
            scored, boxes, patches, meta = cut_image(folder, recipe, th)
        else:
            test = _test_images(pipe, th)
            scored, boxes, patches, meta = cut_run(folder, recipe, pipe.acquisition.frames, test)
        out = serve(patches)
        scores = out["score"]  # (I * V * R,), image-major as cut
        ms = (time.perf_counter() - t0) * 1e3
        n_v, n_r = boxes.shape[:2]
        per_cell = scores.reshape(-1, n_v, n_r).max(axis=0)  # (V, R): max over test images
        if images:
            strip, run = image_id(folder), 1
        else:
            strip, run = folder.parent.name, int(RUN_RE.match(folder.name).group(1))
        rejected_vials = [v + 1 for v in range(n_v) if (per_cell[v] > strip_t).any()]
        record = {
            "strip": strip,
            "run": run,
            "source": str(folder.resolve()),
            "rejected": bool(rejected_vials),
            "rejected_vials": rejected_vials,
            "run_rejected": bool((per_cell > run_t).any()),
            "ms": ms,
            **meta,
            "patches": [
                {
                    "kind": k,
                    "frame": f,
                    "vial": v + 1,
                    "region": r,
                    "score": float(s),
                    "threshold": float(strip_t[r]),
                    "box": [int(b) for b in boxes[v, r]],
                }
                for (k, f, v, r), s in zip(_order(meta["images"], n_v, n_r), scores, strict=True)
            ],
        }
        name = f"{strip}_run{run}"
        _write_json(out_dir / f"{name}.json", record)
        _overlay(
            scored[0], boxes, per_cell > strip_t, out["heatmap"][..., 0], out_dir / f"{name}.png"
        )
        rows.append(
            {
                k: record[k]
                for k in ("strip", "run", "rejected", "rejected_vials", "run_rejected", "ms")
            }
        )
    acq = pd.DataFrame(rows)
    multi = acq.groupby("strip").filter(lambda g: len(g) > 1)
    strips = (
        runwise(
            multi["strip"].to_numpy(),
            multi["run_rejected"].to_numpy(),
            np.zeros(len(multi), bool),
            min_agree=th.get("min_agree", 7),
        )
        if not multi.empty
        else pd.DataFrame()
    )
    summary = {
        "acquisitions": acq.to_dict(orient="records"),
        "strips": []
        if strips.empty
        else strips.drop(columns=["is_defect", "correct"], errors="ignore").to_dict(
            orient="records"
        ),
        "thresholds": str(thresholds_path),
        "model": str(run_dir),
        "provenance": _record(pipe, Path(run_dir), Path(thresholds_path)),
    }
    _write_json(out_dir / "summary.json", summary)
    return InferSummary(out_dir=out_dir, acquisitions=acq, strips=strips)


def _record(pipe: Pipeline, run_dir: Path, thresholds: Path) -> dict:
    """The model and thresholds applied, by digest: the report's metrics.json records the same
    thresholds.json digest, so a decision leads back to the report and its data."""
    model = run_dir / provenance.MODEL
    inputs = {
        str(model): provenance.tree_sha256(model),
        str(thresholds): provenance.file_sha256(thresholds),
    }
    return provenance.record(pipe, "infer", inputs)


def _test_images(pipe: Pipeline, th: dict) -> list[tuple[str, int]]:
    """The images the thresholds were fitted on: thresholds.json's frames and kinds (files
    written before kinds were recorded scored frames), else the pipeline's test images."""
    acq = pipe.acquisition
    if th.get("frames") is not None:
        frames = tuple(th["frames"]) or acq.test_frames
        acq = dataclasses.replace(
            acq, test_frames=frames, test_kinds=tuple(th.get("kinds", ["frame"]))
        )
    return acq.test_images()


def cut_run(folder: Path, recipe: CutRecipe, n: int, test: list[tuple[str, int]]):
    """Decode one run folder of `n` frames and cut its `test` images (kind, frame) as `recipe`
    says: (test images (I, H, W), boxes (V, R, 4), patches (I * V * R, P, P) uint8, meta)."""
    files = {}
    for p in folder.iterdir():
        m = FRAME_RE.match(p.name)
        if m:
            files[int(m.group(1))] = p
    if sorted(files) != list(range(n)):
        raise InferError(f"{folder}: expected frames 0..{n - 1}, found {len(files)} frame files")
    try:
        header = read_header(files[0])
        check_header(files[0], header)
        data = [files[i].read_bytes() for i in range(n)]
        stack = np.stack([decode(files[i], d, header) for i, d in enumerate(data)])
    except FrameError as e:
        raise InferError(str(e)) from None
    geo = recipe.geometry(header.height, header.width)
    # Each rank image once: registration reads rank_max, the test images may need it too.
    kinds = sorted({"rank_max", *(k for k, _ in test if k != "frame")})
    ranked = dict(zip(kinds, rank_images(stack, [kind_rank(k, n) for k in kinds]), strict=True))
    reg = locate(ranked["rank_max"], geo, recipe)
    images = np.stack([stack[f] if k == "frame" else ranked[k] for k, f in test])
    patches = cut(images, Windows.of(reg), recipe)
    # sha256 as in acquisitions.parquet: the same run folder ingested shows the same digest.
    sha = provenance.frames_sha256(hashlib.sha256(d).digest() for d in data)
    meta = {
        "images": [[k, f] for k, f in test],  # (kind, frame) in the order cut
        "dy": reg.dy,
        "dx": reg.dx,
        "angle": reg.angle,
        "sha256": sha,
    }
    return images, reg.boxes, patches, meta


def cut_image(path: Path, recipe: CutRecipe, th: dict):
    """As `cut_run`, for one image: (image (1, H, W), boxes (V, R, 4), patches, meta)."""
    try:
        img = read_image(path)  # (H, W) grayscale
        boxes = recipe.tiling(*img.shape, f" ({path})").boxes(*img.shape)
    except (FrameError, TilingError) as e:
        raise InferError(str(e)) from None
    if boxes.shape[:2] != (th["vials"], len(th["regions"])):
        raise InferError(
            f"{path}: {img.shape[0]}x{img.shape[1]} px gives {boxes.shape[0]} x {boxes.shape[1]} "
            f"tiles, the thresholds are for {th['vials']} x {len(th['regions'])} (images of "
            "another size): resize it to the size the model was validated on"
        )
    patches = cut([img], Windows(boxes.reshape(-1, 4)), recipe)
    sha = provenance.frames_sha256([hashlib.sha256(path.read_bytes()).digest()])
    return (
        img[None],
        boxes,
        patches,
        {"images": [["frame", 0]], "dy": 0.0, "dx": 0.0, "angle": 0.0, "sha256": sha},
    )


def _order(images: list, n_v: int, n_r: int) -> list[tuple[str, int, int, int]]:
    """(kind, frame, vial, region) of each patch, in the order they were cut."""
    return [(k, f, v, r) for k, f in images for v in range(n_v) for r in range(n_r)]


def _overlay(
    image: np.ndarray, boxes: np.ndarray, rejected: np.ndarray, heat: np.ndarray | None, path: Path
) -> None:
    """The strip with the heatmaps of rejected regions blended in, boxes red or green."""
    img = cv2.cvtColor(to_uint8(image), cv2.COLOR_GRAY2BGR)
    n_v, n_r = boxes.shape[:2]
    for v in range(n_v):
        for r in range(n_r):
            y0, x0, y1, x1 = (int(b) for b in boxes[v, r])
            if rejected[v, r] and heat is not None:
                h = heat[v * n_r + r]  # first test frame's patch of this cell
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
