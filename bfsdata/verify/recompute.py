"""verify's recomputation: the rank images and patches of one acquisition recomputed from its
frames (bfsdata.patch.recut, with the recorded cut recipe) and compared bit for bit; a shard
that does not decode or holds other bytes is named as damaged, once."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import zarr

from bfsdata.imaging.cut import CutRecipe, RecipeError
from bfsdata.imaging.rank import rank_images
from bfsdata.patch.recut import RecutError, recut
from bfsdata.store import location as store
from bfsdata.workspace import damage, manifest, provenance
from bfsdata.workspace.damage import Damage

if TYPE_CHECKING:
    from bfsdata.verify.stage import VerifyReport


@dataclass
class Sources:
    """What the recomputation reads, and how it names a damaged shard."""

    rep: VerifyReport
    root: zarr.Group
    acqs: pd.DataFrame
    patches: pd.DataFrame
    ranks: list[int]  # the ranks of the store's rank images
    arrays: dict = field(default_factory=dict)  # name -> tensorstore handle
    recipe: CutRecipe | None = None

    def add(self, found: Damage) -> None:
        """One line per shard, whatever found it first."""
        if found.shard not in self.shards(found.array):
            self.rep.damage.append(found)
            self.rep.problems.append(str(found))

    def damaged(self, name: str, shard: int, what: str) -> None:
        self.add(damage.of(self.root[name], shard, what, self.acqs, self.patches))

    def shards(self, name: str) -> set[int]:
        return {d.shard for d in self.rep.damage if d.array == name}


def recipe_of(ws: Path, root: zarr.Group, rep: VerifyReport) -> CutRecipe | None:
    """The recipe the patches were cut with, or None (and a problem) when none can be used."""
    where = f"{manifest.PATCHES.name}.parquet"
    try:
        recipe = provenance.patch_recipe(ws)
    except (RecipeError, manifest.ManifestError) as e:
        rep.problems.append(f"{e}; patches not recomputed")
        return None
    if recipe is None:
        rep.problems.append(
            f"{where}: no cut recipe recorded (patched by an older bfsdata, or the manifest was "
            "rewritten); patches not recomputed: run `bfsdata patch` again, which records it "
            "and cuts nothing"
        )
        return None
    size = root["patches"].shape[1]
    if recipe.size != size:
        rep.problems.append(
            f"{where}: the recorded recipe cuts {recipe.size} px patches, the store holds "
            f"{size} px ones; patches not recomputed"
        )
        return None
    return recipe


def recompute(src: Sources, acq: int, mine: pd.DataFrame, rep: VerifyReport) -> None:
    """Rank images and patches (`mine`, its manifest rows) of one acquisition, recomputed from
    its frames and compared bit for bit; a shard that does not decode, or holds other bytes, is
    damaged."""
    images = {}  # frames (F, H, W), rank (R, H, W)
    for name in ("frames", "rank"):  # image folders have no rank
        if name in src.arrays:
            try:
                images[name] = src.arrays[name][acq].read().result()
            except (ValueError, RuntimeError, OSError) as e:
                src.damaged(name, acq, f"damaged (does not decode: {e})")
                return
    frames, stored = images["frames"], images.get("rank")
    if stored is not None:
        if not np.array_equal(rank_images(frames, src.ranks), stored):
            why = "its rank images differ from those its frames give; or its frames' shard is"
            src.damaged("rank", acq, f"damaged ({why})")
            return
        rep.ranks_recomputed += 1
    if mine.empty or src.recipe is None:
        return
    per = store.shard_rows(src.root["patches"])
    for shard, rows in mine.sort_values("patch").groupby(mine["patch"] // per):
        try:
            have = src.arrays["patches"][rows["patch"].to_numpy()].read().result()  # (n, P, P)
            want = recut(rows, frames, stored, src.ranks, src.recipe)
        except RecutError as e:
            rep.problems.append(str(e))
            continue
        except (ValueError, RuntimeError, OSError) as e:
            src.damaged("patches", int(shard), f"damaged (does not decode: {e})")
            continue
        rep.patches_recomputed += len(rows)
        differ = rows["patch"][~(want == have).all(axis=(1, 2))]
        if len(differ):
            eg = ", ".join(map(str, differ.head(5)))
            why = f"{len(differ)} patches differ from their recomputation, e.g. {eg}"
            src.damaged("patches", int(shard), f"damaged ({why})")
