"""`bfsdata repair`: rebuild the shards of the store that verify finds missing or damaged.

Decide, then act: `verify --all` (bfsdata.verify) lists every missing or damaged shard. An
acquisition whose frames or rank shard is damaged is decoded again by ingest's own code from the
raw files its acquisitions row records (`source`), and written only if those files still have
the row's `sha256`: the same files give the same bytes. A damaged patches shard is cut again
from its rows (bfsdata.patch.recut, the recipe the patches manifest records) and written whole,
as patch wrote it. What cannot be rebuilt (raw files gone, changed or unreadable) is removed from
the manifests (the acquisition's row, its patches' rows, the split rows of a strip left without
acquisitions), with a record in rejected.parquet; its shards then go as orphans, and the
records of patches and splits name the manifests they stand on now. Verify runs again after
each round; damage hidden behind other damage (patches of an acquisition whose frames could not
be read) is found and rebuilt in the next round, at most `ROUNDS` rounds.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import zarr

from bfsdata.imaging.cut import CutRecipe
from bfsdata.ingest import raw_changed, rewrite_acquisition
from bfsdata.patch.recut import recut
from bfsdata.sources.image_file import FrameError, read_header
from bfsdata.sources.image_folders import ImageAcquisition
from bfsdata.sources.strip_folders import FRAME_RE, Acquisition
from bfsdata.store import arrays as store_io
from bfsdata.store import location as store
from bfsdata.verify import VerifyReport, verify
from bfsdata.workspace import manifest, provenance
from bfsdata.workspace.damage import Damage
from bfsdata.workspace.parallel import run_tasks
from bfsdata.workspace.problems import Problem
from bfsdata.workspace.session import session
from bfsdata.workspace.writes import record_rejections

ROUNDS = 3  # verify, rebuild; again while a round rebuilt something and damage remains


class RepairError(ValueError):
    """The workspace cannot be repaired; the message says why and what to do."""


@dataclass(frozen=True)
class RepairSummary:
    workspace: Path
    found: int  # missing or damaged shards verify found first
    acquisitions: int  # acquisitions whose frames and rank shards were written again
    patch_shards: int  # patches shards cut and written again
    removed: int  # acquisitions removed from the manifests: their raw data is gone or changed
    left: tuple[str, ...]  # what verify still finds (repair rebuilds shards, nothing else)
    seconds: float


@dataclass(frozen=True)
class _Acq:
    """One acquisition to decode again, from its acquisitions row."""

    row: int
    strip: str
    run: int
    label: str
    source: str
    n_frames: int
    format: tuple[int, int, str]  # (height, width, dtype) as ingested
    sha256: str
    ranks: tuple[int, ...]
    store: str  # store.store_url
    images: bool  # an image folder's image (frames and masks), not a strip run

    @classmethod
    def of(cls, r: Any, ranks: tuple[int, ...], url: str, images: bool) -> _Acq:
        """From an acquisitions row (a namedtuple of `itertuples`)."""
        fmt = (int(r.height), int(r.width), str(r.dtype))
        return cls(
            int(r.acq),
            r.strip,
            int(r.run),
            r.label,
            r.source,
            int(r.n_frames),
            fmt,
            r.sha256,
            ranks,
            url,
            images,
        )


@dataclass(frozen=True)
class _Shard:
    """One patches shard to cut again from its rows."""

    shard: int
    first: int  # its first row
    rows: pd.DataFrame  # its patches.parquet rows
    recipe: CutRecipe
    ranks: tuple[int, ...]
    store: str


def repair(workspace: Path, *, workers: int | None = None) -> RepairSummary:
    """Rebuild every missing or damaged shard of `workspace` that its raw data allows, holding
    its lock (bfsdata.workspace.session); remove from the manifests what cannot be rebuilt.

    workers: threads of this process (default: one per core).
    """
    t0 = time.perf_counter()
    ws = Path(workspace)
    counts = np.zeros(3, dtype=int)  # acquisitions, patch shards, removed
    with session(ws, "repair"):
        store.clean_partials(ws)
        rep = verify(ws, sample=None)
        found = len(rep.damage)
        for _ in range(ROUNDS):
            done = _round(ws, rep, workers) if rep.damage else (0, 0, 0)
            if not any(done):
                break
            counts += done
            rep = verify(ws, sample=None)
    return RepairSummary(
        ws, found, *map(int, counts), tuple(rep.problems), time.perf_counter() - t0
    )


def _round(ws: Path, rep: VerifyReport, workers: int | None) -> tuple[int, int, int]:
    """Rebuild what `rep` found damaged; (acquisitions, patch shards, removed)."""
    root = store.open_root(ws)
    acqs = manifest.read(ws, manifest.ACQUISITIONS)
    patches = manifest.read(ws, manifest.PATCHES)
    ranks = tuple(int(r) for r in root.attrs.get("ranks", []))
    url, images = store.store_url(ws), "masks" in root
    recipe = _recipe(ws) if any(d.array == "patches" for d in rep.damage) else None
    bad = {d.shard for d in rep.damage if d.array != "patches"}
    jobs = [_Acq.of(r, ranks, url, images) for r in acqs[acqs["acq"].isin(bad)].itertuples()]
    failed: dict[int, Problem] = {}

    def on_acq(res: tuple[int, Problem | None]) -> None:
        if res[1] is not None:
            failed[res[0]] = res[1]

    run_tasks(_rebuild, jobs, on_acq, workers=workers, label="repair (acquisitions)")
    if failed:
        acqs, patches = _remove(ws, acqs, patches, failed, rep.damage)
    shards = _shard_jobs(root, patches, rep.damage, recipe, ranks, url)
    run_tasks(_recut, shards, lambda _: None, workers=workers, label="repair (patch shards)")
    for name in ("frames", "rank", "masks"):
        if name in root:
            store.remove_orphans(root[name], acqs["acq"].to_numpy())
    if "patches" in root:
        store.remove_orphans(root["patches"], patches["patch"].to_numpy())
    return len(jobs) - len(failed), len(shards), len(failed)


def _rebuild(job: _Acq) -> tuple[int, Problem | None]:
    """Decode one acquisition from its raw files and write its shards again. Runs on a worker."""
    try:
        acq = _raw(job)
        if (changed := raw_changed(acq, job.sha256, _digest(acq))) is not None:
            return job.row, changed
        header = read_header(acq.frames[0])
    except FrameError as e:
        return job.row, Problem(str(e.path), e.rule, e.message, job.strip, job.run)
    if (header.height, header.width, header.dtype) != job.format:
        h, w, dtype = job.format
        why = f"is {header.dtype} {header.height}x{header.width}, ingested as {dtype} {h}x{w}"
        return job.row, Problem(str(acq.frames[0]), "unchanged-raw", why, job.strip, job.run)
    res = rewrite_acquisition(
        acq, job.row, header, job.ranks, job.store, job.sha256, images=job.images
    )
    return job.row, res if isinstance(res, Problem) else None


def _raw(job: _Acq) -> Acquisition:
    """The acquisition as its acquisitions row records it: the run folder's frame files, or an
    image and its mask (ground_truth/<defect>/<name>_mask.*). A wrong guess cannot write
    anything: the files must still give the row's sha256."""
    source = Path(job.source)
    if job.images:
        root, name = source.parent.parent.parent, source.stem
        near = root / "ground_truth" / source.parent.name
        masks = [p for p in sorted(near.glob(f"{name}_mask.*")) if p.is_file()]
        part = source.parent.parent.name
        return ImageAcquisition(
            job.strip, job.run, job.label, source, (source,), part, masks[0] if masks else None
        )
    try:
        found = {int(m.group(1)): p for p in source.iterdir() if (m := FRAME_RE.match(p.name))}
    except OSError as e:
        raise FrameError(source, "readable", f"cannot be listed ({e.strerror})") from None
    if sorted(found) != list(range(job.n_frames)):
        why = f"holds frames {sorted(found)[:8]}, ingested with frames 0..{job.n_frames - 1}"
        raise FrameError(source, "unchanged-raw", why)
    return Acquisition(
        job.strip, job.run, job.label, source, tuple(found[i] for i in sorted(found))
    )


def _digest(acq: Acquisition) -> str:
    """The acquisition's sha256 as ingest records it, from regular files only, before any is
    decoded: changed files are refused by name (ingest checks again as it decodes)."""
    files = [*acq.frames, *([acq.mask] if getattr(acq, "mask", None) else [])]
    for path in files:
        if not path.is_file():  # a device or FIFO would be read without end
            raise FrameError(path, "regular-file", "is not a regular file")
    return provenance.frames_sha256(hashlib.sha256(p.read_bytes()).digest() for p in files)


def _remove(
    ws: Path,
    acqs: pd.DataFrame,
    patches: pd.DataFrame,
    failed: dict[int, Problem],
    found: list[Damage],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Remove acquisitions that cannot be rebuilt from the manifests (rows first, then their
    shards as orphans: a row never points at missing data), with their rejected.parquet rows."""
    shard_of = {d.shard: d.key for d in found if d.array != "patches"}
    record_rejections(
        ws,
        [
            Problem(
                p.source,
                p.rule,
                f"{p.message}; acquisition {a} ({shard_of.get(a, 'its shards')} damaged) cannot "
                "be rebuilt and was removed from the manifests by `bfsdata repair`",
                p.strip,
                p.run,
            )
            for a, p in sorted(failed.items())
        ],
    )
    old = manifest.digest(acqs, manifest.ACQUISITIONS)
    acqs = acqs[~acqs["acq"].isin(failed)]
    patches = patches[~patches["acq"].isin(failed)]
    now = {
        provenance.manifest_key(manifest.ACQUISITIONS): manifest.digest(acqs, manifest.ACQUISITIONS)
    }
    _rewrite(ws, manifest.ACQUISITIONS, acqs, ("acq",), {}, old)
    _rewrite(ws, manifest.PATCHES, patches, ("patch",), now, old)
    if manifest.exists(ws, manifest.SPLITS_SCHEMA):
        splits = manifest.read(ws, manifest.SPLITS_SCHEMA)
        splits = splits[splits["strip"].isin(acqs["strip"])]
        _rewrite(ws, manifest.SPLITS_SCHEMA, splits, ("strip",), now, old)
    return acqs, patches


def _rewrite(
    ws: Path,
    schema: manifest.Schema,
    rows: pd.DataFrame,
    sort: tuple[str, ...],
    now: dict,
    old: str,
) -> None:
    """Write `rows` keeping the manifest's record, whose inputs now name the acquisitions
    manifest as it is (`now`) where they named it as it was (`old`)."""
    rec = manifest.read_provenance(ws, schema)
    if isinstance(rec, dict) and isinstance(rec.get("inputs"), dict):
        inputs = {k: now.get(k, v) if v == old else v for k, v in rec["inputs"].items()}
        rec = {**rec, "inputs": inputs}
    manifest.write(ws, schema, rows.reset_index(drop=True), sort=sort, provenance=rec)


def _recipe(ws: Path) -> CutRecipe:
    recipe = provenance.patch_recipe(ws)
    if recipe is None:
        raise RepairError(
            f"{manifest.path_of(ws, manifest.PATCHES)}: no cut recipe recorded, so damaged "
            f"patches cannot be cut again; run `bfsdata patch -w {ws}` (which records it and "
            "cuts nothing), then `bfsdata repair` again"
        )
    return recipe


def _shard_jobs(
    root: zarr.Group,
    patches: pd.DataFrame,
    found: list[Damage],
    recipe: CutRecipe | None,
    ranks: tuple[int, ...],
    url: str,
) -> list[_Shard]:
    """The damaged patches shards that rows still point into, each with its rows."""
    wanted = sorted({d.shard for d in found if d.array == "patches"})
    if not wanted or recipe is None:
        return []
    per = store.shard_rows(root["patches"])
    by_shard = patches.groupby(patches["patch"] // per)
    return [
        _Shard(s, s * per, by_shard.get_group(s), recipe, ranks, url)
        for s in wanted
        if s in by_shard.groups
    ]


def _recut(job: _Shard) -> None:
    """Cut one patches shard's rows again and write it whole. Runs on a worker."""
    root = store.open_store(job.store)
    src = {n: store_io.ts_array(job.store, n) for n in ("frames", "rank") if n in root}
    rows = job.rows.sort_values("patch")
    out = np.zeros((int(rows["patch"].max()) - job.first + 1, *(job.recipe.size,) * 2), np.uint8)
    for acq, mine in rows.groupby("acq"):
        frames = src["frames"][int(acq)].read().result()  # (F, H, W)
        rank = src["rank"][int(acq)].read().result() if "rank" in src else None  # (R, H, W)
        out[mine["patch"].to_numpy() - job.first] = recut(
            mine, frames, rank, list(job.ranks), job.recipe
        )
    store.delete_shards(root["patches"], [job.shard])
    store_io.write_shard(job.store, "patches", job.first, out)
