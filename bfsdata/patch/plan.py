"""What `bfsdata patch` cuts, decided before any work: the plan, and the settings check.

The plan is the pipeline's patch section checked against the ingested images (the layout fits,
the selected frames exist, image folders have their masks) and reduced to what a task needs.
The cut itself (size, resize, bit depth, sub-pixel windows, rotation, layout) is the pipeline's
`CutRecipe` (bfsdata.imaging.cut), the same object verify and infer cut with. The settings check
refuses to add patches cut one way to a store holding patches cut another.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bfsdata.config.pipeline import Pipeline, images_of, kind_rank, parse_frames
from bfsdata.imaging.cut import CutRecipe
from bfsdata.imaging.registration import Geometry, RegistrationError
from bfsdata.imaging.tiling import Tiling, TilingError, plan_tiling
from bfsdata.store import location as store
from bfsdata.workspace import manifest, provenance


class PatchError(ValueError):
    """The workspace or the layout cannot be patched; the message says what to do."""


@dataclass(frozen=True)
class Plan:
    """Everything a task needs besides its acquisitions; small, so it ships to workers."""

    store: str  # store.store_url
    geo: Geometry | None  # strips; None for image folders
    frames: tuple[int, ...]  # frame indices to cut
    kinds: tuple[str, ...]
    rank_index: dict[str, int]  # kind -> index in the rank array
    recipe: CutRecipe  # how every patch is cut (bfsdata.imaging.cut)
    shard: int
    tiling: Tiling | None = None  # image folders: a grid or the whole image, no registration
    dtype: str = "uint8"  # of the ingested frames

    @property
    def size(self) -> int:
        """P of the (P, P) patches."""
        return self.recipe.size

    @property
    def cells(self) -> tuple[int, int]:
        """(vials, regions) of an acquisition; of an image folder, tile columns and rows."""
        if self.tiling is not None:
            return self.tiling.cells
        return len(self.geo.columns), len(self.geo.bands)

    @property
    def images(self) -> list[tuple[str, int]]:
        """(kind, frame) of every image cut, in row order: frames first, then rank images."""
        return images_of(self.kinds, self.frames)

    @property
    def per_acquisition(self) -> int:
        return len(self.images) * self.cells[0] * self.cells[1]


def make_plan(ws: Path, pipe: Pipeline, root, acqs: pd.DataFrame) -> Plan:
    recipe = CutRecipe.of(pipe)
    if recipe.tiles:
        return _image_plan(ws, pipe, recipe, root, acqs)
    h, w = int(acqs["height"].iloc[0]), int(acqs["width"].iloc[0])
    try:
        geo = recipe.geometry(h, w)
    except RegistrationError as e:
        raise PatchError(str(e)) from None
    ranks = [int(r) for r in root.attrs.get("ranks", [])]
    n_frames = int(acqs["n_frames"].iloc[0])
    if not ranks:
        raise PatchError(
            "registration needs a rank image (rank_max, the highest of acquisition.ranks); "
            "ingest computed none"
        )
    rank_index = {k: ranks.index(kind_rank(k, ranks)) for k in ("rank_min", "rank_max")}
    return Plan(
        store=store.store_url(ws),
        geo=geo,
        frames=parse_frames(pipe.patch.frames, n_frames),
        kinds=pipe.patch.kinds,
        rank_index=rank_index,
        recipe=recipe,
        shard=pipe.store.patch_shard,
        dtype=str(root["frames"].dtype),
    )


def _image_plan(ws: Path, pipe: Pipeline, recipe: CutRecipe, root, acqs: pd.DataFrame) -> Plan:
    """Image folders: boxes from the layout's grid (or the whole image), frames only."""
    if "masks" not in root:
        raise PatchError(
            f"layout.mode {pipe.layout.mode} cuts image folders, but {ws} holds strips; use the "
            "pipeline the workspace was ingested with"
        )
    if tuple(pipe.patch.kinds) != ("frame",):
        raise PatchError(
            f"patch.kinds {list(pipe.patch.kinds)}: image folders have no rank images; "
            "use patch.kinds [frame]"
        )
    try:
        tiling = plan_tiling(recipe.layout, acqs)
    except TilingError as e:
        raise PatchError(f"{manifest.path_of(ws, manifest.ACQUISITIONS)}: {e}") from None
    return Plan(
        store=store.store_url(ws),
        geo=None,
        frames=parse_frames(pipe.patch.frames, int(acqs["n_frames"].max())),
        kinds=("frame",),
        rank_index={},
        recipe=recipe,
        shard=pipe.store.patch_shard,
        tiling=tiling,
    )


def check_settings(arr, plan: Plan, pipe: Pipeline) -> None:
    """One workspace, one patch definition: refuse to mix patches cut in different ways.

    The store's `settings` attribute keeps the form it had before the recipe existed (size is
    the array's shape, subpixel and rotation appear only when on), so older stores still
    match; its values are the plan's recipe and selection."""
    recipe = plan.recipe.to_dict()
    settings = {
        "frames": list(plan.frames),
        "kinds": list(plan.kinds),
        "vials": plan.cells[0],
        "regions": plan.cells[1],
        "layout": recipe["layout"],  # strips: without tile and stride, as before tiles existed
        "resize": recipe["resize"],
        "input_bits": recipe["input_bits"],
    }
    settings |= {k: True for k in ("subpixel", "rotation") if recipe[k]}
    old = arr.attrs.get("settings")
    if old == settings:
        return  # a re-run rewrites nothing, not even the array's metadata
    if old is not None:
        changed = sorted(k for k in settings.keys() | old.keys() if old.get(k) != settings.get(k))
        raise PatchError(
            f"this workspace was patched with other settings ({', '.join(changed)} differ); "
            "patches of one workspace must be cut one way. Use a new workspace, or the "
            "original pipeline and options."
        )
    arr.attrs.update({"settings": settings, "bfsdata": provenance.record(pipe, "patch")})
