"""`bfsdata verify`: does every manifest row point at the data it claims, and nothing more?

Checks, cheapest first: manifests readable and cross-referenced (patches name known
acquisitions with the same strip, run and label; splits name ingested strips and keep defective
strips out of training); the provenance chain (every input digest that patches, splits, runs
and reports recorded matches that input now); every row inside its array and its shard
written; array shapes and dtypes as the manifests say; then a recomputation, bit for bit, of
the rank images and all patches of a sample of acquisitions (or of every one) from their
frames; and orphans, shards the store holds for no manifest row. Each problem is one line:
what, where, how many.

Patches are recomputed with the cut recipe recorded in the patches manifest's provenance
(bfsdata.imaging.cut, the one patch and infer cut with), each window placed as its manifest row
says (box, offset, angle).

A missing chunk reads back as the fill value 0, so a missing shard is found by listing the
store, and a missing chunk inside a written shard by the recomputation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import zarr

from bfsdata.config.pipeline import kind_rank
from bfsdata.imaging.cut import CutRecipe, RecipeError, Windows, cut
from bfsdata.imaging.rank import rank_images
from bfsdata.store import arrays as store_io
from bfsdata.store import location as store
from bfsdata.workspace import manifest, provenance
from bfsdata.workspace.parallel import progress_bar

log = logging.getLogger(__name__)


class VerifyError(ValueError):
    """Nothing to verify: the folder is not a workspace."""


@dataclass
class VerifyReport:
    workspace: Path
    acquisitions: int = 0  # rows in acquisitions.parquet
    patches: int = 0  # rows in patches.parquet
    strips_split: int = 0  # rows in splits.parquet
    ranks_recomputed: int = 0  # acquisitions whose rank images were recomputed
    patches_recomputed: int = 0
    orphans: int = 0  # shards holding no manifest row
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(workspace: Path, *, sample: int | None = 32, seed: int = 0) -> VerifyReport:
    """Check the workspace; recompute `sample` acquisitions drawn with `seed` (None: all).

    Never raises for what it finds: the report lists it.
    """
    ws = Path(workspace)
    if not store.holds_data(ws):
        raise VerifyError(f"{ws}: no store and no manifests here; is this a workspace?")
    rep = VerifyReport(workspace=ws)
    acqs = _read(ws, manifest.ACQUISITIONS, rep)
    patches = _read(ws, manifest.PATCHES, rep)
    splits = _read(ws, manifest.SPLITS_SCHEMA, rep)
    rep.acquisitions, rep.patches, rep.strips_split = len(acqs), len(patches), len(splits)
    _cross_check(acqs, patches, splits, rep)
    rep.problems += provenance.chain_problems(ws)
    if not store.exists(ws):
        if len(acqs) or len(patches):
            rep.problems.append(f"{store.store_url(ws)}: missing, but the manifests list data")
        return rep
    root = store.open_root(ws, mode="r")
    partials = [p for p in store.partials(ws) if p.endswith(".partial")]
    if partials:
        rep.problems.append(f"store: {len(partials)} *.partial file(s) left by a killed write")

    bad_acq = _check_acquisitions(root, acqs, rep)
    bad_patch = _check_patches(root, patches, rep)
    chosen = _sample(acqs[~acqs["acq"].isin(bad_acq)], sample, seed)
    usable = patches[~patches["patch"].isin(bad_patch)]
    rows_of = usable.groupby("acq").indices  # acq -> positions: one pass, not one per acq
    # tensorstore: faster random reads than zarr-python (docs/performance.md, Store reads and
    # writes); handles opened now, after every resize.
    src = {
        n: store_io.ts_array(store.store_url(ws), n)
        for n in ("frames", "rank", "patches")
        if n in root
    }
    recipe = _recipe(ws, root, rep) if len(chosen) and len(usable) else None
    ranks = [int(r) for r in root.attrs.get("ranks", [])]
    with progress_bar("verify (acquisitions recomputed)", len(chosen)) as advance:
        for acq in chosen["acq"]:
            mine = usable.iloc[rows_of.get(acq, [])]
            _recompute(src, recipe, ranks, int(acq), mine, rep)
            advance(1)
    return rep


def _recipe(ws: Path, root: zarr.Group, rep: VerifyReport) -> CutRecipe | None:
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


def _read(ws: Path, schema: manifest.Schema, rep: VerifyReport) -> pd.DataFrame:
    try:
        return manifest.read(ws, schema)
    except manifest.ManifestError as e:
        rep.problems.append(str(e))
        return schema.empty()


def _cross_check(
    acqs: pd.DataFrame, patches: pd.DataFrame, splits: pd.DataFrame, rep: VerifyReport
) -> None:
    """Rows that name things the other manifests do not hold."""
    dup = acqs["acq"].duplicated()
    if dup.any():
        _problem(rep, "acquisitions.parquet", "rows share an acq index", acqs.loc[dup, "acq"])
    ref = acqs.drop_duplicates("acq").set_index("acq")[["strip", "run", "label"]]
    unknown = ~patches["acq"].isin(ref.index)
    if unknown.any():
        _problem(rep, "patches.parquet", "rows name unknown acquisitions", patches["acq"][unknown])
    known = patches[~unknown]
    want = ref.loc[known["acq"]].reset_index(drop=True)
    got = known[["strip", "run", "label"]].reset_index(drop=True)
    differ = (want != got).any(axis=1).to_numpy()
    if differ.any():
        _problem(
            rep,
            "patches.parquet",
            "rows disagree with their acquisition's strip, run or label",
            known["patch"][differ],
        )
    dup = patches["patch"].duplicated()
    if dup.any():
        _problem(rep, "patches.parquet", "rows share a patch index", patches["patch"][dup])
    labels = acqs.drop_duplicates("strip").set_index("strip")["label"]
    missing = ~splits["strip"].isin(labels.index)
    if missing.any():
        _problem(rep, "splits.parquet", "rows name strips not ingested", splits["strip"][missing])
    lab = splits["strip"].map(labels)
    wrong = (lab == "defect") & splits["split"].isin(("train", "val"))
    wrong |= lab == "unknown"
    if wrong.any():
        _problem(
            rep,
            "splits.parquet",
            "defective or unlabelled strips in a split they must not be in",
            splits["strip"][wrong],
        )


def _check_acquisitions(root: zarr.Group, acqs: pd.DataFrame, rep: VerifyReport) -> set[int]:
    """Shapes, dtypes, row ranges and shards of frames and rank; the acq rows found wrong."""
    if acqs.empty:
        for name in ("frames", "rank"):
            if name in root:
                _orphans(root[name], np.array([], dtype=np.int64), rep)
        return set()
    bad: set[int] = set()
    n_ranks = len(root.attrs.get("ranks", []))
    # Image folders store frames and masks, no rank images, each image at the top left of
    # frames sized to the largest (bfsdata.folder_image): their rows may be smaller.
    images = "masks" in root
    for name in ("frames", "masks") if images else ("frames", "rank"):
        if name not in root:
            rep.problems.append(f"store: array {name!r} missing; acquisitions.parquet lists data")
            return set(acqs["acq"])
        arr = root[name]
        if name == "frames":
            shape = acqs["n_frames"] == arr.shape[1]
        elif name == "rank":
            shape = pd.Series(n_ranks == arr.shape[1], index=acqs.index)
        else:
            shape = pd.Series(True, index=acqs.index)
        h, w = arr.shape[-2:]
        if images:
            shape &= (acqs["height"] <= h) & (acqs["width"] <= w)
        else:
            shape &= (acqs["height"] == h) & (acqs["width"] == w)
        if name != "masks":
            shape &= acqs["dtype"] == str(arr.dtype)
        if not shape.all():
            _problem(
                rep,
                f"{name} ({_dtype_shape(arr)})",
                "acquisition rows of another shape or dtype",
                acqs["acq"][~shape],
            )
            bad |= set(acqs["acq"][~shape])
        if name != "masks":  # a clean image's mask is all fill value: zarr writes no shard
            bad |= _check_rows(arr, acqs["acq"], f"acquisitions.parquet -> {name}", rep)
        _orphans(arr, acqs["acq"].to_numpy(), rep)
    return bad


def _check_patches(root: zarr.Group, patches: pd.DataFrame, rep: VerifyReport) -> set[int]:
    if "patches" not in root:
        if len(patches):
            rep.problems.append("store: array 'patches' missing; patches.parquet lists data")
        return set(patches["patch"])
    arr = root["patches"]
    bad: set[int] = set()
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[1] != arr.shape[2]:
        rep.problems.append(f"patches: {_dtype_shape(arr)}, expected uint8 square patches")
        bad = set(patches["patch"])
    if "settings" not in arr.attrs:
        rep.problems.append("patches: attribute 'settings' missing; patches cannot be recomputed")
        bad = set(patches["patch"])
    frame = patches["frame"]
    odd = (patches["kind"] == "frame") != (frame >= 0)
    if "frames" in root:
        odd |= frame >= root["frames"].shape[1]
    if odd.any():
        _problem(
            rep, "patches.parquet", "rows name frames that do not exist", patches["patch"][odd]
        )
        bad |= set(patches["patch"][odd])
    outside = (patches["y0"] < 0) | (patches["x0"] < 0) | (patches["y1"] <= patches["y0"])
    outside |= patches["x1"] <= patches["x0"]
    if "frames" in root:
        outside |= (patches["y1"] > root["frames"].shape[2]) | (
            patches["x1"] > root["frames"].shape[3]
        )
    if outside.any():
        _problem(rep, "patches.parquet", "crop boxes leave the image", patches["patch"][outside])
        bad |= set(patches["patch"][outside])
    bad |= _check_rows(arr, patches["patch"], "patches.parquet -> patches", rep)
    _orphans(arr, patches["patch"].to_numpy(), rep)
    return bad


def _check_rows(arr: zarr.Array, rows: pd.Series, where: str, rep: VerifyReport) -> set[int]:
    """Rows past the array's end or in a shard that is not in the store."""
    past = (rows >= arr.shape[0]) | (rows < 0)
    if past.any():
        _problem(rep, where, f"rows point outside the array's {arr.shape[0]} rows", rows[past])
    shard = rows // store.shard_rows(arr)
    lost = ~past & ~shard.isin(store.written_shards(arr))
    if lost.any():
        n = shard[lost].nunique()
        _problem(rep, where, f"rows point into {n} shard(s) missing from the store", rows[lost])
    return set(rows[past | lost])


def _orphans(arr: zarr.Array, used: np.ndarray, rep: VerifyReport) -> None:
    per = store.shard_rows(arr)
    extra = sorted(store.written_shards(arr) - set((used // per).tolist()))
    if extra:
        rep.orphans += len(extra)
        _problem(
            rep,
            arr.name.lstrip("/"),
            "shards hold no manifest row (orphans; the next ingest/patch run removes them)",
            pd.Series(extra),
        )


def _sample(acqs: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    if n is None or n >= len(acqs):
        return acqs
    return acqs.sample(n=n, random_state=seed).sort_values("acq")


def _recompute(
    src: dict,
    recipe: CutRecipe | None,
    ranks: list[int],
    acq: int,
    mine: pd.DataFrame,
    rep: VerifyReport,
) -> None:
    """Rank images and patches (`mine`, its manifest rows) of one acquisition, recomputed from
    its frames and compared bit for bit."""
    frames = src["frames"][acq].read().result()  # (F, H, W)
    stored = None
    if "rank" in src:  # image folders have none
        stored = src["rank"][acq].read().result()  # (R, H, W)
        if not np.array_equal(rank_images(frames, ranks), stored):
            rep.problems.append(f"rank: acquisition {acq} differs from its recomputed rank images")
        rep.ranks_recomputed += 1
    if mine.empty or recipe is None:
        return
    mine = mine.sort_values("patch")
    have = src["patches"][mine["patch"].to_numpy()].read().result()  # (n, P, P)
    differ = []
    for (kind, frame), group in mine.groupby(["kind", "frame"], sort=False):
        rank = kind_rank(kind, len(frames))
        if kind == "frame":
            image = frames[int(frame)]
        elif stored is not None and rank in ranks:
            image = stored[ranks.index(rank)]
        else:
            rep.problems.append(f"rank: {kind} patches of acquisition {acq}, but no rank {rank}")
            continue
        windows = Windows(
            group[["y0", "x0", "y1", "x1"]].to_numpy(),
            group[["dy", "dx"]].to_numpy(),
            float(group["angle"].iloc[0]),
        )
        want = cut([image], windows, recipe)
        same = (want == have[mine.index.get_indexer(group.index)]).all(axis=(1, 2))
        differ.extend(group["patch"][~same].tolist())
    rep.patches_recomputed += len(mine)
    if differ:
        _problem(
            rep,
            f"patches (acquisition {acq})",
            "patches differ from their recomputation",
            pd.Series(differ),
        )


def _problem(rep: VerifyReport, where: str, what: str, items: pd.Series) -> None:
    shown = ", ".join(map(str, items.head(5).tolist()))
    more = ", ..." if len(items) > 5 else ""
    rep.problems.append(f"{where}: {len(items)} {what} (e.g. {shown}{more})")
    log.debug("verify: %s", rep.problems[-1])


def _dtype_shape(arr: zarr.Array) -> str:
    return f"{arr.dtype} {'x'.join(map(str, arr.shape))}"
