"""`bfsdata ingest RAW`: decode every acquisition once into the store, with its rank images.

Decide, then act: the raw folder is scanned and every frame header checked before anything is
written, so bad input is refused with nothing changed. Then each acquisition is one task that
decodes its frames, computes the rank images and writes its own shard of `frames` and `rank`.
The manifest is committed from the results as they arrive; it lists only acquisitions whose
data is fully written, so a killed run leaves a valid workspace and the next run does the rest.
Image folders (`raw_format="images"`, bfsdata.sources.image_folders) go the same way: each
image is one acquisition, written as one frame and its mask's label image, with no rank images.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bfsdata.config.pipeline import Pipeline
from bfsdata.imaging.rank import rank_images
from bfsdata.sources import acquisition_checks as checks
from bfsdata.sources import image_decode as folder_image
from bfsdata.sources import image_folders as folder
from bfsdata.sources.image_file import FrameError, FrameHeader, decode, read_bytes
from bfsdata.sources.strip_folders import Acquisition, Problem, scan_raw
from bfsdata.store import arrays as store_io
from bfsdata.store import location as store
from bfsdata.workspace import damage, manifest, paths, provenance
from bfsdata.workspace.default_pipeline import remember_pipeline
from bfsdata.workspace.faults import crash_point
from bfsdata.workspace.parallel import default_workers, run_tasks
from bfsdata.workspace.session import session
from bfsdata.workspace.writes import Committer, record_rejections, write_annotations

log = logging.getLogger(__name__)

RAW_FORMATS = ("strips", "images")


class IngestError(ValueError):
    """Input that breaks the raw layout rules; the message lists every problem found."""

    def __init__(self, problems: list[Problem], done: int = 0) -> None:
        tail = "fix or remove it and run again, or pass --skip-bad to ingest the rest"
        if done:
            tail = f"{done} acquisition(s) were ingested, the rest not; " + tail
        if len(problems) == 1:
            # One problem, one line: the file, the rule and what to do.
            super().__init__(f"{problems[0]} ({tail})")
        else:
            lines = [str(p) for p in problems[:20]]
            if len(problems) > 20:
                lines.append(f"... and {len(problems) - 20} more")
            head = f"{len(problems)} problems in the raw input ({tail.replace('it', 'them', 1)}):"
            super().__init__("\n".join([head, *lines]))
        self.problems = problems


@dataclass(frozen=True)
class IngestSummary:
    raw: Path
    workspace: Path
    found: int  # acquisitions in the raw folder
    already: int  # of those, already in the workspace before this run
    ingested: int  # written by this run
    rejected: int  # refused by this run (with --skip-bad)
    frames: int  # frames decoded by this run
    bytes_read: int  # encoded bytes read by this run
    seconds: float
    label_source: str
    total: int  # acquisitions in the workspace after this run


@dataclass(frozen=True)
class _Task:
    acq: Acquisition
    row: int
    header: FrameHeader
    ranks: tuple[int, ...]
    store: str  # store.store_url
    sha256: str | None = None  # repair: the digest the files must still have, or nothing is written


def ingest(
    raw_dir: Path,
    workspace: Path,
    pipe: Pipeline,
    *,
    skip_bad: bool = False,
    raw_format: str = "strips",
    workers: int | None = None,
    processes: int | None = None,
    scheduler: str | None = None,
    store: str | None = None,
) -> IngestSummary:
    """Ingest `raw_dir` into `workspace`, holding its lock (bfsdata.workspace.session).

    raw_format: `strips` (docs/design.md, Raw input) or `images` (an image folder,
    sources.image_folders).
    workers: threads of this process; processes: a local cluster of that many worker processes
    instead; scheduler: an existing dask.distributed cluster's address; store: a folder or URL
    to keep the store and manifests in (recorded in the workspace). The first pipeline that
    succeeds becomes the workspace's own (pipeline.yaml).
    """
    if raw_format not in RAW_FORMATS:
        raise ValueError(f"--format {raw_format!r}: expected {' or '.join(RAW_FORMATS)}")
    paths.check_apart(raw_dir, workspace, store)
    opts = {"store": store, "processes": processes, "scheduler": scheduler}
    with session(workspace, "ingest", **opts) as address:
        ws = Path(workspace)
        summary = _ingest(Path(raw_dir), ws, pipe, skip_bad, workers, address, raw_format)
        remember_pipeline(ws, pipe)
    return summary


def _ingest(
    raw_dir: Path,
    ws: Path,
    pipe: Pipeline,
    skip_bad: bool,
    workers: int | None,
    scheduler: str | None,
    raw_format: str,
) -> IngestSummary:
    t0 = time.perf_counter()
    store.check_reachable(ws, scheduler)
    images = raw_format == "images"
    if images:
        folder.check_workspace(ws, pipe.layout, pipe.source)
        scan = folder.scan_images(Path(raw_dir))
    else:
        scan = scan_raw(Path(raw_dir), pipe.acquisition.frames)
    existing = manifest.read(ws, manifest.ACQUISITIONS)
    damage.check(ws, existing)  # a re-run first finds the shards its rows point at whole
    done = set(zip(existing["strip"], existing["run"].astype(int), strict=True))
    todo = [a for a in scan.acquisitions if (a.strip, a.run) not in done]
    already = len(scan.acquisitions) - len(todo)
    problems = list(scan.problems)
    check = folder.check_headers if images else checks.check_headers
    headers = check(todo, _store_format(ws, existing), problems, pipe.acquisition.max_pixels)

    if any(p.fatal for p in problems) or (problems and not skip_bad):
        raise IngestError(problems)
    todo, dropped = checks.drop_refused(todo, problems)
    record_rejections(ws, [*problems, *dropped])
    rec = _record(pipe, Path(raw_dir))
    write_annotations(ws, scan.annotations, rec)

    failures: list[Problem] = []
    new_rows: list[dict] = []
    if todo:
        new_rows, failures = _write_acquisitions(
            ws, pipe, todo, headers, existing, workers, scheduler, rec, images
        )
        record_rejections(ws, failures)
    if images:
        folder.write_test_kit(ws, scan)
    summary = IngestSummary(
        raw=raw_dir,
        workspace=ws,
        found=len(scan.acquisitions),
        already=already,
        ingested=len(new_rows),
        rejected=len(problems) + len(failures),
        frames=sum(r["n_frames"] for r in new_rows),
        bytes_read=sum(r.pop("_bytes") for r in new_rows),
        seconds=time.perf_counter() - t0,
        label_source=scan.label_source,
        total=len(existing) + len(new_rows),
    )
    if failures and not skip_bad:
        raise IngestError(failures, done=len(new_rows))
    return summary


def _store_format(ws: Path, existing: pd.DataFrame) -> tuple[int, int, str] | None:
    """(H, W, dtype) the workspace holds: from the store, which may exist before any row does."""
    if store.exists(ws):
        root = store.open_root(ws, mode="r")
        if "frames" in root:
            arr = root["frames"]
            return int(arr.shape[2]), int(arr.shape[3]), str(arr.dtype)
    if existing.empty:
        return None
    first = existing.iloc[0]
    return int(first["height"]), int(first["width"]), str(first["dtype"])


def _write_acquisitions(ws, pipe, todo, headers, existing, workers, scheduler, rec, images):
    todo, failures = checks.first_that_decodes(ws, todo, headers, images)
    if not todo:
        return [], failures
    n_frames, ranks = pipe.acquisition.frames, pipe.acquisition.ranks
    h = headers[(todo[0].strip, todo[0].run)]
    store.clean_partials(ws)
    root = store.open_root(ws)
    if images:  # frames and masks, no rank images
        heads = [headers[(a.strip, a.run)] for a in todo]
        arrays, ranks = folder_image.require_arrays(root, heads, pipe.store), ()
    else:
        arrays = store.require_acquisition_arrays(
            root, n_frames, len(ranks), h.height, h.width, h.dtype, pipe.store
        )
    frames = arrays[0]
    root.attrs.update({"bfsdata": provenance.record(pipe, "ingest"), "ranks": list(ranks)})
    # Fill rows left free by failed or killed runs first; each task rewrites its shard whole.
    used = set(existing["acq"].astype(int))
    free = [r for r in range(frames.shape[0]) if r not in used]
    free += range(frames.shape[0], frames.shape[0] + len(todo) - len(free))
    rows = free[: len(todo)]
    for arr in arrays:
        store.grow(arr, max(rows) + 1)
    tasks = [
        _Task(a, r, headers[(a.strip, a.run)], ranks, store.store_url(ws))
        for a, r in zip(todo, rows, strict=True)
    ]

    new_rows: list[dict] = []
    committer = Committer(ws, manifest.ACQUISITIONS, existing, sort=("acq",), provenance=rec)

    def on_result(res: dict | Problem) -> None:
        if isinstance(res, Problem):
            failures.append(res)
            return
        new_rows.append(res)
        committer.add([{k: v for k, v in res.items() if not k.startswith("_")}])

    run_tasks(
        _ingest_image if images else _ingest_one,
        tasks,
        on_result,
        workers=workers or default_threads(),
        scheduler=scheduler,
        label="ingest (frames)",
        weight=lambda t: len(t.acq.frames),
    )
    final = committer.flush()
    for arr in arrays:
        store.remove_orphans(arr, final["acq"].to_numpy())
    return new_rows, failures


def default_threads() -> int:
    """One thread more than cores: a task waiting on its shard write (the disk, not the CPU,
    with O_DIRECT) leaves a core to the next decode (benchmarks/ingest.py --workers 2 / 3:
    docs/performance.md, Ingest and codecs)."""
    return default_workers() + 1


def _ingest_one(task: _Task) -> dict | Problem:
    """Decode one acquisition, compute its rank images, write its shards. Runs on a worker."""
    acq, hdr = task.acq, task.header
    stack = np.empty((len(acq.frames), hdr.height, hdr.width), dtype=hdr.dtype)  # (F, H, W)
    # Hashing the bytes already read for decoding costs a small fraction of decoding them, so
    # the input digest is nearly free (docs/performance.md, Ingest and codecs).
    digests: list[bytes] = []  # sha256 per frame file, in frame order
    n_bytes = 0
    try:
        for i, path in enumerate(acq.frames):
            data = read_bytes(path, hdr)
            n_bytes += len(data)
            digests.append(hashlib.sha256(data).digest())
            stack[i] = decode(path, data, hdr)
    except FrameError as e:
        return Problem(e.path, e.rule, e.message, acq.strip, acq.run)
    sha256 = provenance.frames_sha256(digests)
    if (changed := raw_changed(acq, task.sha256, sha256)) is not None:
        return changed
    ranked = rank_images(stack, task.ranks)  # (R, H, W)
    _write_shards(task, (("frames", stack), ("rank", ranked)))
    return _row(task, sha256, n_bytes)


def _ingest_image(task: _Task) -> dict | Problem:
    """Decode one image and its mask, write its frame and label image. Runs on a worker."""
    shape = store.open_store(task.store)["frames"].shape[2:]  # (H, W) of the largest image
    try:
        frame, labels, sha256, n_bytes = folder_image.load(task.acq, task.header, shape)
    except FrameError as e:
        return Problem(e.path, e.rule, e.message, task.acq.strip, task.acq.run)
    if (changed := raw_changed(task.acq, task.sha256, sha256)) is not None:
        return changed
    _write_shards(task, (("frames", frame), ("masks", labels)))
    return _row(task, sha256, n_bytes)


def rewrite_acquisition(
    acq: Acquisition,
    row: int,
    header: FrameHeader,
    ranks: tuple[int, ...],
    store_url: str,
    sha256: str,
    *,
    images: bool = False,
) -> dict | Problem:
    """Decode one acquisition and write its shards at `row` again, as ingest first wrote them
    (`bfsdata repair`): its manifest row, or a Problem, with nothing written, when its files
    no longer have the digest `sha256` the manifest records."""
    task = _Task(acq, row, header, tuple(ranks), store_url, sha256)
    return (_ingest_image if images else _ingest_one)(task)


def raw_changed(acq: Acquisition, recorded: str | None, sha256: str) -> Problem | None:
    """The refusal to rebuild `acq` from files whose digest `sha256` is not the `recorded`
    one (None: nothing to compare with)."""
    if recorded is None or recorded == sha256:
        return None
    return Problem(
        str(acq.folder),
        "unchanged-raw",
        f"its files' sha256 is {sha256[:12]}, the manifest records {recorded[:12]}: the raw "
        "data changed since it was ingested, so it cannot rebuild the store's copy",
        acq.strip,
        acq.run,
    )


def _write_shards(task: _Task, named: tuple[tuple[str, np.ndarray], ...]) -> None:
    """Each array's shard of the task's row, deleted first, then written whole."""
    root = store.open_store(task.store)
    for name, data in named:
        store.delete_shards(root[name], [task.row])
        store_io.write_shard(task.store, name, task.row, data[None])
        crash_point(f"ingest.{name}")


def _row(task: _Task, sha256: str, n_bytes: int) -> dict:
    """The acquisitions manifest row of a written task (+ `_bytes`, read for the summary)."""
    acq, hdr = task.acq, task.header
    return {
        "acq": task.row,
        "strip": acq.strip,
        "run": acq.run,
        "label": acq.label,
        "n_frames": len(acq.frames),
        "height": hdr.height,
        "width": hdr.width,
        "dtype": hdr.dtype,
        "source": str(acq.folder.resolve()),
        "sha256": sha256,
        "ingested_at": pd.Timestamp.now(tz="UTC"),
        "_bytes": n_bytes,
    }


def _record(pipe: Pipeline, raw_dir: Path) -> dict:
    """Ingest's provenance: the labels file is its input besides the frames, which every row
    traces by its own `sha256`."""
    labels = raw_dir / "labels.csv"
    inputs = {str(labels.resolve()): provenance.file_sha256(labels)} if labels.is_file() else {}
    return provenance.record(pipe, "ingest", inputs)
