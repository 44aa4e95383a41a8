"""What `bfsdata infer` reads and cuts: run folders or image files, the report's thresholds.json
and the cut recipe it records, and the patches of one acquisition cut by that recipe
(`bfsdata.imaging.cut`), in the order the model scores them."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np

from bfsdata.config.pipeline import IMAGE_LAYOUTS, AcquisitionConfig, Pipeline, kind_rank
from bfsdata.imaging.cut import CutRecipe, RecipeError, Windows, cut, locate
from bfsdata.imaging.rank import rank_images
from bfsdata.imaging.tiling import TilingError
from bfsdata.sources.image_decode import read_image
from bfsdata.sources.image_file import (
    FrameError,
    check_header,
    check_pixels,
    decode,
    read_bytes,
    read_header,
)
from bfsdata.sources.image_folders import IMAGE_RE, image_id
from bfsdata.sources.strip_folders import FRAME_RE, RUN_RE
from bfsdata.workspace import provenance


class InferError(ValueError):
    """Input or model/threshold pair that cannot be used; the message says which and why."""


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


def test_images(pipe: Pipeline, th: dict) -> list[tuple[str, int]]:
    """The images the thresholds were fitted on: thresholds.json's frames and kinds (files
    written before kinds were recorded scored frames), else the pipeline's test images; with
    thresholds per kind, only the kinds that judge some region."""
    acq = pipe.acquisition
    if th.get("frames") is not None:
        frames = tuple(th["frames"]) or acq.test_frames
        kinds = th.get("kinds", ["frame"])
        if thresholds_per_kind(th):
            kinds = [k for k in kinds if k in th["strip"]]
        acq = dataclasses.replace(acq, test_frames=frames, test_kinds=tuple(kinds))
    return acq.test_images()


def thresholds_per_kind(th: dict) -> bool:
    """Thresholds per (kind, region) ({kind: {region: t}} at each level); files without
    `thresholds_by` hold one threshold per region over every kind ({region: t})."""
    return th.get("thresholds_by", "region") == "kind"


def image_thresholds(th: dict, level: str, images: list, n_regions: int) -> np.ndarray:
    """(I, R) threshold of each cut image's regions at `level` (strip or run): the region's,
    or with thresholds per kind its (kind, region)'s, +inf where the report dropped that kind
    in that region (nothing of it judges the item)."""
    t = th[level]
    if thresholds_per_kind(th):
        rows = [[t.get(k, {}).get(str(r), np.inf) for r in range(n_regions)] for k, _ in images]
    else:
        rows = [[t[str(r)] for r in range(n_regions)] for _ in images]
    return np.array(rows, dtype=float).reshape(len(images), n_regions)


def cut_run(folder: Path, recipe: CutRecipe, acq: AcquisitionConfig, test: list[tuple[str, int]]):
    """Decode one run folder of `acq.frames` frames and cut its `test` images (kind, frame) as
    `recipe` says: (test images (I, H, W), boxes (V, R, 4), patches (I * V * R, P, P) uint8,
    meta). Frames are read as ingest reads them: regular files, their size checked from the
    header (acquisition.max_pixels) before anything is allocated; rank images as
    acquisition.ranks names them (kind_rank)."""
    n = acq.frames
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
        check_pixels(files[0], header, acq.max_pixels)
        data = [read_bytes(files[i], header) for i in range(n)]
        stack = np.stack([decode(files[i], d, header) for i, d in enumerate(data)])
    except FrameError as e:
        raise InferError(str(e)) from None
    geo = recipe.geometry(header.height, header.width)
    # Each rank image once: registration reads rank_max, the test images may need it too.
    kinds = sorted({"rank_max", *(k for k, _ in test if k != "frame")})
    ranked = dict(
        zip(kinds, rank_images(stack, [kind_rank(k, acq.ranks) for k in kinds]), strict=True)
    )
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


def patch_order(images: list, n_v: int, n_r: int) -> list[tuple[str, int, int, int]]:
    """(kind, frame, vial, region) of each patch, in the order they were cut."""
    return [(k, f, v, r) for k, f in images for v in range(n_v) for r in range(n_r)]
