"""`bfsdata patch`: cut vials x regions of every frame and rank image into the patch store.

Decide, then act: the driver takes its plan from `patch.plan` (the layout checked against the
ingested image size, the settings against the store), finds the acquisitions not yet patched,
and plans tasks of a few acquisitions, each owning a range of whole shards (docs/design.md, The
store: nobody else ever writes into them). A task deletes its shards first (debris of a killed
run), registers each acquisition on its max rank image, cuts the same boxes from every selected
frame and rank image, and hands the patches to a `store.arrays.ShardWriter`, which encodes them
at once and writes each full shard in the background; meanwhile the next acquisition is read
into the thread's other buffer (`store.arrays.read_row`). Buffers are reused, so memory stays
flat however long the run. The manifest is committed from finished tasks only (a task returns
once its shards are on disk), so it never points at a patch that is not there.
Image folders (layout.mode grid or resize) take their boxes from `bfsdata.imaging.tiling`
instead of a registration, and `defect_here` from their masks.
Every patch is cut by `bfsdata.imaging.cut.cut` with the plan's `CutRecipe`, as verify and infer
cut theirs; the recipe is recorded in the patches manifest's provenance (`cut`), from where
train and report copy it into model.json and thresholds.json.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from bfsdata.config.pipeline import Pipeline
from bfsdata.imaging.cut import Windows, cut, locate
from bfsdata.imaging.registration import Registration, RegistrationError
from bfsdata.patch.plan import PatchError, Plan, check_settings, make_plan
from bfsdata.show import write_first_preview
from bfsdata.sources.image_decode import mask_cells
from bfsdata.store import arrays as store_io
from bfsdata.store import location as store
from bfsdata.store.shard_read import RowRead
from bfsdata.workspace import manifest, paths, provenance
from bfsdata.workspace.default_pipeline import remember_pipeline
from bfsdata.workspace.faults import crash_point
from bfsdata.workspace.parallel import run_tasks
from bfsdata.workspace.problems import Problem
from bfsdata.workspace.session import session
from bfsdata.workspace.writes import Committer, record_rejections

log = logging.getLogger(__name__)

__all__ = ["PatchError", "PatchSummary", "patch"]


@dataclass(frozen=True)
class PatchSummary:
    workspace: Path
    acquisitions: int  # in the workspace
    already: int  # patched before this run
    patched: int  # acquisitions patched by this run
    patches: int  # patches written by this run
    per_acquisition: int  # images x vials x regions
    rejected: int
    seconds: float
    total: int  # patches in the workspace after this run
    preview: Path | None = None  # contact sheet of the first acquisition cut, if asked for


@dataclass(frozen=True)
class _Job:
    acq: int
    strip: str
    run: int
    label: str
    defects: tuple[tuple[int, int], ...]  # annotated (vial, region) cells
    located: bool  # every annotation of the strip names its vial and region
    height: int = 0  # px, of the image as ingested
    width: int = 0


@dataclass(frozen=True)
class _Unit:
    plan: Plan
    first_shard: int
    n_shards: int
    jobs: tuple[_Job, ...]


def patch(
    workspace: Path,
    pipe: Pipeline,
    *,
    skip_bad: bool = False,
    preview: bool = False,
    workers: int | None = None,
    processes: int | None = None,
    scheduler: str | None = None,
    store: str | None = None,
) -> PatchSummary:
    """Cut every acquisition not patched yet, holding the workspace's lock (workspace.session).

    preview: also write the contact sheet of the first acquisition cut (bfsdata.show).
    workers, processes, scheduler, store: where tasks run and the store lives, as for `ingest`.
    """
    opts = {"store": store, "processes": processes, "scheduler": scheduler}
    with session(workspace, "patch", **opts) as address:
        summary = _patch(Path(workspace), pipe, skip_bad, workers, address)
        remember_pipeline(workspace, pipe)
    if preview:
        summary = dataclasses.replace(summary, preview=write_first_preview(workspace))
    return summary


def _patch(
    ws: Path, pipe: Pipeline, skip_bad: bool, workers: int | None, scheduler: str | None
) -> PatchSummary:
    t0 = time.perf_counter()
    store.check_reachable(ws, scheduler)
    acqs = manifest.read(ws, manifest.ACQUISITIONS)
    if acqs.empty:
        raise PatchError(f"{ws}: no ingested acquisitions; run `bfsdata ingest RAW -w {ws}` first")
    root = store.open_root(ws)
    plan = make_plan(ws, pipe, root, acqs)
    arr = store.require_patches(root, plan.size, pipe.store)
    check_settings(arr, plan, pipe)

    done = manifest.read(ws, manifest.PATCHES)
    store.clean_partials(ws)
    store.remove_orphans(arr, done["patch"].to_numpy())
    pending = acqs[~acqs["acq"].isin(done["acq"].unique())].sort_values("acq")
    ann = manifest.read(ws, manifest.ANNOTATIONS)
    jobs = _jobs(pending, ann)
    read = {"acquisitions": acqs, "annotations": ann}
    inputs = provenance.manifest_digests(ws, manifest.ACQUISITIONS, manifest.ANNOTATIONS, read=read)
    rec = provenance.record(pipe, "patch", inputs, cut=plan.recipe.to_dict())
    units = _units(
        plan,
        jobs,
        used=set((done["patch"] // plan.shard).tolist()),
        per_task=pipe.patch.acq_per_task,
    )
    if units:
        last = max(u.first_shard + u.n_shards for u in units)
        store.grow(arr, last * plan.shard)

    committer = Committer(ws, manifest.PATCHES, done, sort=("patch",), provenance=rec)
    problems: list[Problem] = []
    written = [0, 0]  # acquisitions, patches

    def on_result(res: tuple[pd.DataFrame, list[Problem]]) -> None:
        rows, failed = res
        problems.extend(failed)
        if not rows.empty:
            committer.add(rows)
            written[0] += rows["acq"].nunique()
            written[1] += len(rows)

    run_tasks(
        _patch_unit,
        units,
        on_result,
        workers=workers,
        scheduler=scheduler,
        label="patch (acquisitions)",
        weight=lambda u: len(u.jobs),
    )
    # Nothing to cut but inputs changed since (e.g. annotations): the record is brought up to
    # date; otherwise a re-run writes nothing.
    stale = manifest.read_provenance(ws, manifest.PATCHES) != rec
    final = committer.flush() if units or stale else done
    store.remove_orphans(arr, final["patch"].to_numpy())
    record_rejections(ws, problems)
    summary = PatchSummary(
        workspace=ws,
        acquisitions=len(acqs),
        already=len(acqs) - len(pending),
        patched=written[0],
        patches=written[1],
        per_acquisition=plan.per_acquisition,
        rejected=len(problems),
        seconds=time.perf_counter() - t0,
        total=len(final),
    )
    if problems and not skip_bad:
        lines = "\n".join(str(p) for p in problems[:20])
        raise PatchError(
            f"{len(problems)} acquisition(s) could not be patched (the other {written[0]} were):\n"
            f"{lines}\nCheck the layout with `bfsdata show`, or pass --skip-bad to record them "
            f"in {paths.manifest_key(paths.REJECTED)} and go on."
        )
    return summary


def _jobs(pending: pd.DataFrame, ann: pd.DataFrame) -> list[_Job]:
    by_strip = {s: g for s, g in ann.groupby("strip")} if not ann.empty else {}
    jobs = []
    for row in pending.itertuples(index=False):
        a = by_strip.get(row.strip)
        cells: tuple[tuple[int, int], ...] = ()
        located = row.label == "good"
        if row.label == "defect" and a is not None:
            known = a.dropna(subset=["vial", "region"])
            cells = tuple(
                sorted(
                    {(int(v), int(r)) for v, r in zip(known["vial"], known["region"], strict=True)}
                )
            )
            located = len(known) == len(a)
        size = int(row.height), int(row.width)
        jobs.append(_Job(int(row.acq), row.strip, int(row.run), row.label, cells, located, *size))
    return jobs


def _units(plan: Plan, jobs: list[_Job], used: set[int], per_task: int) -> list[_Unit]:
    """Group jobs into tasks, each owning a run of whole free shards (first fit)."""
    units, cursor = [], 0
    for i in range(0, len(jobs), per_task):
        group = tuple(jobs[i : i + per_task])
        need = -(-len(group) * plan.per_acquisition // plan.shard)
        while any(s in used for s in range(cursor, cursor + need)):
            cursor += 1
        units.append(_Unit(plan, cursor, need, group))
        cursor += need
    return units


def _patch_unit(unit: _Unit) -> tuple[pd.DataFrame, list[Problem]]:
    """Cut the unit's acquisitions into its own shards. Runs on a worker."""
    # The tasks are the parallelism; OpenCV's own threads on top of them oversubscribe the
    # cores (fewer patches/s with its default pool: benchmarks/patch.py; docs/performance.md,
    # Patch).
    cv2.setNumThreads(1)
    plan = unit.plan
    root = store.open_store(plan.store)
    store.delete_shards(root["patches"], range(unit.first_shard, unit.first_shard + unit.n_shards))
    names = ("frames", "masks") if plan.tiling is not None else ("frames", "rank")
    src = {name: store_io.ts_array(plan.store, name) for name in names}
    cut = _scratch("cut", (plan.per_acquisition, plan.size, plan.size), "uint8")
    tables, problems = [], []
    first = unit.first_shard * plan.shard
    written = functools.partial(crash_point, "patch.shard")
    jobs = unit.jobs
    after = _read(src, jobs[0], plan, 0) if jobs else {}
    try:
        with store_io.ShardWriter(plan.store, "patches", first, written) as shards:
            for k, job in enumerate(jobs):
                reads = after
                after = _read(src, jobs[k + 1], plan, (k + 1) % 2) if k + 1 < len(jobs) else {}
                try:
                    rows = _cut_acquisition(reads, job, plan, cut)
                except (RegistrationError, ValueError) as e:
                    problems.append(
                        Problem(
                            f"acquisition {job.acq}", "registration", str(e), job.strip, job.run
                        )
                    )
                    continue
                rows["patch"] = shards.row + np.arange(len(rows))
                shards.add(cut)
                tables.append(rows)
    finally:  # a read still going fills this thread's buffer, which the next task reuses
        for pending in after.values():
            with contextlib.suppress(Exception):
                pending.result()
    out = pd.concat(tables, ignore_index=True) if tables else manifest.PATCHES.empty()
    crash_point("patch.unit")
    return out, problems


_local = threading.local()


def _scratch(name: str, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """This thread's array `name`, reused from acquisition to acquisition and task to task:
    buffers of megabytes freed and allocated anew each time leave glibc holding more memory
    the longer the run (scale benchmark), and come back as fresh pages to fault in."""
    buf = getattr(_local, name, None)
    if buf is None or buf.shape != shape or buf.dtype != dtype:
        buf = np.empty(shape, dtype=dtype)
        setattr(_local, name, buf)
    return buf


def _read(src: dict, job: _Job, plan: Plan, slot: int) -> dict[str, RowRead | _Whole]:
    """Start reading what one acquisition is cut from, in background threads, so that a task
    reads the next acquisition while it cuts this one. Frames and rank images of a local store
    are decoded into this thread's buffers of `slot` (two slots: the one being cut, the one
    being read), image by image; anything else is read whole by tensorstore."""
    wanted = [("masks" if plan.tiling is not None else "rank", None)]
    if "frame" in plan.kinds:
        wanted.append(("frames", list(plan.frames)))
    reads: dict[str, RowRead | _Whole] = {}
    for name, picks in wanted:
        arr = src[name]
        if plan.tiling is None:
            rows = arr.shape[1] if picks is None else len(picks)
            buf = _scratch(f"{name}{slot}", (rows, *arr.shape[2:]), plan.dtype)
            read = store_io.read_row(plan.store, name, job.acq, buf, picks)
            if read is not None:
                reads[name] = read
                continue
        reads[name] = _Whole((arr[job.acq] if picks is None else arr[job.acq, picks]).read())
    return reads


class _Whole:
    """A tensorstore read as a RowRead: every entry waits for the whole."""

    def __init__(self, future: Future) -> None:
        self._future = future

    def entry(self, k: int) -> np.ndarray:
        return self._future.result()[k]

    def result(self) -> np.ndarray:
        return self._future.result()


def _cut_acquisition(reads: dict, job: _Job, plan: Plan, out: np.ndarray) -> pd.DataFrame:
    """All patches of one acquisition into `out` (n, P, P) uint8; their manifest rows."""
    if plan.tiling is not None:  # image folder: boxes from the layout, defects from the mask
        reg = Registration(0.0, 0.0, plan.tiling.boxes(job.height, job.width))
        labels = reads["masks"].result()  # (H, W) 0 clean, 1 defect, 2 unknown
        job = dataclasses.replace(job, **mask_cells(labels, reg.boxes))
    else:
        rank = reads["rank"]  # (R, H, W)
        reg = locate(rank.entry(plan.rank_index["rank_max"]), plan.geo, plan.recipe)
    windows = Windows.of(reg)
    boxes = windows.boxes  # (V * R, 4), vial-major
    images = plan.images
    n = len(boxes)

    def each() -> Iterator[np.ndarray]:
        for kind, f in images:
            if kind == "frame":  # waits for this frame only: the next ones are still decoding
                yield reads["frames"].entry(plan.frames.index(f))
            else:
                yield rank.entry(plan.rank_index[kind])

    cut(each(), windows, plan.recipe, out=out)

    n_vials, n_regions = reg.boxes.shape[:2]
    vial = np.tile(np.repeat(np.arange(1, n_vials + 1), n_regions), len(images))
    region = np.tile(np.arange(n_regions), n_vials * len(images))
    cell = set(job.defects)
    here = [(int(v), int(r)) in cell for v, r in zip(vial, region, strict=True)]
    defect_here = pd.array(here, dtype="boolean")
    if not job.located:
        defect_here[~np.asarray(here)] = pd.NA
    if job.label == "unknown":
        defect_here[:] = pd.NA
    tiled = np.tile(boxes, (len(images), 1))
    moved = np.tile(reg.flat_offsets, (len(images), 1))
    rows = pd.DataFrame(
        {
            "acq": job.acq,
            "strip": job.strip,
            "run": job.run,
            "frame": np.repeat([f for _, f in images], n),
            "kind": np.repeat([k for k, _ in images], n),
            "vial": vial,
            "region": region,
            "label": job.label,
            "defect_here": defect_here,
            "y0": tiled[:, 0],
            "x0": tiled[:, 1],
            "y1": tiled[:, 2],
            "x1": tiled[:, 3],
            "dy": moved[:, 0],
            "dx": moved[:, 1],
            "angle": reg.angle,
        }
    )
    return rows
