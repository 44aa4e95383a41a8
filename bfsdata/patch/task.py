"""One `bfsdata patch` task: acquisitions grouped into tasks that each own a run of whole
shards (`units`), and what a task does on its worker (`patch_unit`): read each acquisition's
images in the background, register it, cut its windows with the plan's recipe and hand the
patches to the shard writer."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass

import cv2
import numpy as np
import pandas as pd

from bfsdata.imaging.cut import Windows, cut, locate
from bfsdata.imaging.registration import Registration, RegistrationError
from bfsdata.patch.plan import Plan
from bfsdata.sources.image_decode import mask_cells
from bfsdata.store import arrays as store_io
from bfsdata.store import location as store
from bfsdata.store.shard_read import RowRead, ShardError
from bfsdata.workspace import manifest
from bfsdata.workspace.faults import crash_point
from bfsdata.workspace.problems import Problem


@dataclass(frozen=True)
class Job:
    acq: int
    strip: str
    run: int
    label: str
    defects: tuple[tuple[int, int], ...]  # annotated (vial, region) cells
    located: bool  # every annotation of the strip names its vial and region
    height: int = 0  # px, of the image as ingested
    width: int = 0


@dataclass(frozen=True)
class Unit:
    plan: Plan
    first_shard: int
    n_shards: int
    jobs: tuple[Job, ...]


def jobs(pending: pd.DataFrame, ann: pd.DataFrame) -> list[Job]:
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
        jobs.append(Job(int(row.acq), row.strip, int(row.run), row.label, cells, located, *size))
    return jobs


def units(plan: Plan, jobs: list[Job], used: set[int], per_task: int) -> list[Unit]:
    """Group jobs into tasks, each owning a run of whole free shards (first fit)."""
    units, cursor = [], 0
    for i in range(0, len(jobs), per_task):
        group = tuple(jobs[i : i + per_task])
        need = -(-len(group) * plan.per_acquisition // plan.shard)
        while any(s in used for s in range(cursor, cursor + need)):
            cursor += 1
        units.append(Unit(plan, cursor, need, group))
        cursor += need
    return units


def patch_unit(unit: Unit) -> tuple[pd.DataFrame, list[Problem]]:
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
                    # A shard that does not read is the store's fault, not the layout's.
                    rule = "store" if isinstance(e, ShardError) else "registration"
                    problems.append(
                        Problem(f"acquisition {job.acq}", rule, str(e), job.strip, job.run)
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


def _read(src: dict, job: Job, plan: Plan, slot: int) -> dict[str, RowRead | _Whole]:
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
        whole = (arr[job.acq] if picks is None else arr[job.acq, picks]).read()
        reads[name] = _Whole(whole, f"{name} row {job.acq}")
    return reads


class _Whole:
    """A tensorstore read as a RowRead: every entry waits for the whole. A read that fails is
    a damaged shard (ShardError), as in a RowRead."""

    def __init__(self, future: Future, where: str) -> None:
        self._future, self._where = future, where

    def entry(self, k: int) -> np.ndarray:
        return self.result()[k]

    def result(self) -> np.ndarray:
        try:
            return self._future.result()
        except (ValueError, RuntimeError, OSError) as e:
            raise ShardError(self._where, f"cannot be read ({e})") from e


def _cut_acquisition(reads: dict, job: Job, plan: Plan, out: np.ndarray) -> pd.DataFrame:
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
