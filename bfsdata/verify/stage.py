"""`bfsdata verify`: does every manifest row point at the data it claims, and nothing more?

Checks, cheapest first: manifests readable and cross-referenced (patches name known
acquisitions with the same strip, run and label; splits name ingested strips and keep defective
strips out of training); the provenance chain (every input digest that patches, splits, runs
and reports recorded matches that input now); every row inside its array and its shard
written; array shapes and dtypes as the manifests say; every shard a row points into present
and whole by its size and index (bfsdata.workspace.damage); then a recomputation, bit for bit,
of the rank images and all patches of a sample of acquisitions (or of every one) from their
frames (bfsdata.patch.recut, with the cut recipe the patches manifest records); and orphans,
shards the store holds for no manifest row. Each problem is one line: what, where, how many.

A damaged or missing shard is one line of its own, naming the rows that point into it
(`VerifyReport.damage`: what `bfsdata repair` rebuilds), whether its file is cut short, its
chunks do not decode, or what they hold differs from the recomputation. A missing chunk
reads back as the fill value 0, so a chunk lost inside a whole shard shows in the
recomputation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import zarr

from bfsdata.store import arrays as store_io
from bfsdata.store import location as store
from bfsdata.verify.recompute import Sources, recipe_of, recompute
from bfsdata.workspace import damage, manifest, provenance
from bfsdata.workspace.damage import Damage
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
    damage: list[Damage] = field(default_factory=list)  # missing or damaged shards, one each

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
    src = Sources(rep, root, acqs, patches, [int(r) for r in root.attrs.get("ranks", [])])
    for found in damage.find(ws, acqs, patches, root):
        src.add(found)
    bad_acq |= src.shards("frames") | src.shards("rank")
    if "patches" in root:
        in_damaged = patches["patch"] // store.shard_rows(root["patches"])
        bad_patch |= set(patches["patch"][in_damaged.isin(src.shards("patches"))])
    chosen = _sample(acqs[~acqs["acq"].isin(bad_acq)], sample, seed)
    usable = patches[~patches["patch"].isin(bad_patch)]
    rows_of = usable.groupby("acq").indices  # acq -> positions: one pass, not one per acq
    # tensorstore: faster random reads than zarr-python (docs/performance.md, Store reads and
    # writes); handles opened now, after every resize.
    src.arrays = {
        n: store_io.ts_array(store.store_url(ws), n)
        for n in ("frames", "rank", "patches")
        if n in root
    }
    src.recipe = recipe_of(ws, root, rep) if len(chosen) and len(usable) else None
    with progress_bar("verify (acquisitions recomputed)", len(chosen)) as advance:
        for acq in chosen["acq"]:
            recompute(src, int(acq), usable.iloc[rows_of.get(acq, [])], rep)
            advance(1)
    return rep


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
    # frames sized to the largest (bfsdata.sources.image_decode): their rows may be smaller.
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
    """Rows past the array's end (rows in a missing shard: `damage.find`)."""
    past = (rows >= arr.shape[0]) | (rows < 0)
    if past.any():
        _problem(rep, where, f"rows point outside the array's {arr.shape[0]} rows", rows[past])
    return set(rows[past])


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


def _problem(rep: VerifyReport, where: str, what: str, items: pd.Series) -> None:
    shown = ", ".join(map(str, items.head(5).tolist()))
    more = ", ..." if len(items) > 5 else ""
    rep.problems.append(f"{where}: {len(items)} {what} (e.g. {shown}{more})")
    log.debug("verify: %s", rep.problems[-1])


def _dtype_shape(arr: zarr.Array) -> str:
    return f"{arr.dtype} {'x'.join(map(str, arr.shape))}"
