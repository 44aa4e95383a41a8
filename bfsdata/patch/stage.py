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

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bfsdata.config.pipeline import Pipeline
from bfsdata.patch import task
from bfsdata.patch.plan import PatchError, check_settings, make_plan
from bfsdata.show import write_first_preview
from bfsdata.store import location as store
from bfsdata.workspace import damage, manifest, paths, provenance
from bfsdata.workspace.default_pipeline import remember_pipeline
from bfsdata.workspace.parallel import run_tasks
from bfsdata.workspace.problems import Problem
from bfsdata.workspace.session import session
from bfsdata.workspace.writes import Committer, record_rejections

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
    # A re-run first finds the shards its rows point at whole.
    damage.check(ws, acqs, manifest.read(ws, manifest.PATCHES))
    root = store.open_root(ws)
    plan = make_plan(ws, pipe, root, acqs)
    arr = store.require_patches(root, plan.size, pipe.store)
    check_settings(arr, plan, pipe)

    done = manifest.read(ws, manifest.PATCHES)
    store.clean_partials(ws)
    store.remove_orphans(arr, done["patch"].to_numpy())
    pending = acqs[~acqs["acq"].isin(done["acq"].unique())].sort_values("acq")
    ann = manifest.read(ws, manifest.ANNOTATIONS)
    jobs = task.jobs(pending, ann)
    read = {"acquisitions": acqs, "annotations": ann}
    inputs = provenance.manifest_digests(ws, manifest.ACQUISITIONS, manifest.ANNOTATIONS, read=read)
    rec = provenance.record(pipe, "patch", inputs, cut=plan.recipe.to_dict())
    units = task.units(
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
        task.patch_unit,
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
        what = "Check the layout with `bfsdata show`"
        if any(p.rule == "store" for p in problems):
            what = f"Rebuild damaged shards with `bfsdata repair -w {ws}`"
        raise PatchError(
            f"{len(problems)} acquisition(s) could not be patched (the other {written[0]} were):\n"
            f"{lines}\n{what}, or pass --skip-bad to record them "
            f"in {paths.manifest_key(paths.REJECTED)} and go on."
        )
    return summary
