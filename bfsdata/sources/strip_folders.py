"""Discover acquisitions in a raw folder and apply their labels (docs/design.md, Raw input).

Only names and headers are looked at here; pixels are decoded once, later, by ingest. Every
broken rule becomes a `Problem` that names the file and the rule, so ingest can refuse the whole
folder before writing anything or, with `--skip-bad`, skip just what is broken.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bfsdata.sources.labels_csv import STRIP_RE, case_twins, read_labels_csv
from bfsdata.workspace.problems import Problem

LABEL_DIRS = ("good", "defect")
# ASCII only, anchored with \Z (`$` also matches before a trailing newline): `\d` would take
# "run_\u0662" (an Arabic-Indic 2) for run 2, and an unbounded index could not be read by int().
RUN_RE = re.compile(r"^run_([0-9]{1,9})\Z")
FRAME_RE = re.compile(r"^frame_([0-9]{1,9})\.(png|tif|tiff)\Z", re.IGNORECASE | re.ASCII)


@dataclass(frozen=True)
class Acquisition:
    strip: str
    run: int
    label: str
    folder: Path
    frames: tuple[Path, ...]  # in frame-index order


@dataclass
class RawScan:
    acquisitions: list[Acquisition] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    annotations: pd.DataFrame = field(
        default_factory=pd.DataFrame
    )  # strip,label,defect,vial,region
    label_source: str = "unknown"
    strips: set[str] = field(default_factory=set)  # strip folders found, valid or not


def scan_raw(raw: Path, n_frames: int) -> RawScan:
    """Acquisitions, labels and problems of a raw folder; reads no pixels."""
    raw = Path(raw)
    scan = RawScan()
    if not raw.is_dir():
        scan.problems.append(Problem(str(raw), "raw-folder", "is not a folder", fatal=True))
        return scan
    where = str(raw.resolve())
    if not _is_utf8(where):  # the names below it are ASCII, by the rules
        scan.problems.append(
            Problem(
                where,
                "raw-folder",
                "has a path that is not UTF-8 text, which the manifests cannot record; rename it",
                fatal=True,
            )
        )
        return scan
    strip_dirs, labels = _top_level(raw, scan)
    scan.problems += case_twins({p: p.name for p, _ in strip_dirs})
    seen: dict[tuple[str, int], Path] = {}
    for strip_dir, folder_label in strip_dirs:
        scan.strips.add(strip_dir.name)
        for acq in _scan_strip(strip_dir, folder_label, n_frames, scan):
            key = (acq.strip, acq.run)
            if key in seen:
                scan.problems.append(
                    Problem(
                        str(acq.folder),
                        "unique-acquisition",
                        f"strip {acq.strip} run {acq.run} is also at {seen[key]}",
                        acq.strip,
                        acq.run,
                    )
                )
                continue
            seen[key] = acq.folder
            scan.acquisitions.append(acq)
    if labels is not None:
        _apply_labels_csv(raw / "labels.csv", labels, scan)
    elif scan.label_source == "folders":
        scan.annotations = pd.DataFrame(
            [
                {"strip": a.strip, "label": a.label, "defect": None, "vial": None, "region": None}
                for a in scan.acquisitions
            ]
        ).drop_duplicates("strip")
    scan.acquisitions.sort(key=lambda a: (a.strip, a.run))
    return scan


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _top_level(raw: Path, scan: RawScan) -> tuple[list[tuple[Path, str]], pd.DataFrame | None]:
    entries = list_folder(raw, scan, fatal=True) or []
    kinds = {p: _kind(p, scan) for p in entries}
    labels_csv = raw / "labels.csv"
    labels = None
    if kinds.get(labels_csv) == "file":
        scan.label_source = "labels.csv"
        labels = read_labels_csv(labels_csv, scan.problems)
    elif any(kinds.get(raw / d) == "dir" for d in LABEL_DIRS):
        scan.label_source = "folders"
    strip_dirs: list[tuple[Path, str]] = []
    for p, kind in kinds.items():
        if kind is None or (p == labels_csv and kind == "file"):
            continue
        if p == labels_csv:
            scan.problems.append(
                Problem(str(p), "labels-csv", "is a folder; expected the labels file", fatal=True)
            )
        elif kind != "dir":
            scan.problems.append(
                Problem(
                    str(p),
                    "raw-layout",
                    "unexpected file at the top of the raw folder "
                    "(expected labels.csv and strip folders)",
                )
            )
        elif scan.label_source == "folders":
            if p.name in LABEL_DIRS:
                strip_dirs += [
                    (s, p.name)
                    for s in list_folder(p, scan) or []
                    if _is_strip_dir(s, _kind(s, scan), scan)
                ]
            else:
                scan.problems.append(
                    Problem(
                        str(p),
                        "raw-layout",
                        "strip folder outside good/ and defect/ "
                        "(with label folders, every strip must be inside one)",
                    )
                )
        elif _is_strip_dir(p, kind, scan):
            strip_dirs.append((p, "unknown"))
    return strip_dirs, labels


def list_folder(
    folder: Path,
    scan: RawScan,
    strip: str | None = None,
    run: int | None = None,
    fatal: bool = False,
) -> list[Path] | None:
    """Folder contents, sorted; hidden files (.DS_Store, ...) are ignored. None: unlistable."""
    try:
        return sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    except OSError as e:
        scan.problems.append(
            Problem(str(folder), "readable", f"cannot be listed ({e.strerror})", strip, run, fatal)
        )
        return None


def _kind(p: Path, scan: RawScan, strip: str | None = None, run: int | None = None) -> str | None:
    """ "dir" or "file"; None, with a problem, for an entry the scan cannot follow.

    The scan goes a fixed depth, so a symbolic link back to a parent folder cannot make it walk
    for ever; it is refused all the same, as it would list the parent's entries a second time
    as if they were this folder's.
    """
    try:
        mode = p.stat().st_mode  # follows links
    except OSError as e:
        if e.errno == errno.ELOOP:
            rule, msg = "symlink-loop", "is a symbolic link loop: it never reaches a file or folder"
        elif p.is_symlink():
            rule, msg = "readable", f"is a symbolic link to {os.readlink(p)}, which does not exist"
        else:
            rule, msg = "readable", f"cannot be opened ({e.strerror})"
        scan.problems.append(Problem(str(p), rule, msg, strip, run))
        return None
    if not stat.S_ISDIR(mode):
        return "file"
    if p.is_symlink() and _links_back(p):
        scan.problems.append(
            Problem(
                str(p),
                "symlink-loop",
                f"is a symbolic link to {os.readlink(p)}, a folder that holds the link itself",
                strip,
                run,
            )
        )
        return None
    return "dir"


def _links_back(link: Path) -> bool:
    here = link.parent.resolve()
    return link.resolve() in (here, *here.parents)


def _is_strip_dir(p: Path, kind: str | None, scan: RawScan) -> bool:
    if kind is None:  # a problem is recorded already
        return False
    if kind != "dir":
        scan.problems.append(
            Problem(str(p), "raw-layout", "unexpected file; expected a strip folder")
        )
        return False
    if not STRIP_RE.match(p.name):
        scan.problems.append(
            Problem(str(p), "strip-id", f"strip folder name '{p.name}' must match [A-Za-z0-9_-]+")
        )
        return False
    return True


def _scan_strip(strip_dir: Path, label: str, n_frames: int, scan: RawScan) -> list[Acquisition]:
    strip = strip_dir.name
    out = []
    entries = list_folder(strip_dir, scan, strip)
    for run_dir in entries or []:
        m = RUN_RE.match(run_dir.name)
        run = int(m.group(1)) if m else None
        kind = _kind(run_dir, scan, strip, run) if m else "file"
        if kind is None:
            continue
        if kind != "dir":
            # Refuses this entry only (no strip): the strip's runs are valid all the same.
            scan.problems.append(
                Problem(
                    str(run_dir),
                    "raw-layout",
                    "unexpected entry in a strip folder (expected run_<n> folders)",
                )
            )
            continue
        frames = _scan_run(run_dir, strip, run, n_frames, scan)
        if frames is not None:
            out.append(Acquisition(strip, run, label, run_dir, frames))
    if entries is not None and not out and not any(p.strip == strip for p in scan.problems):
        scan.problems.append(Problem(str(strip_dir), "raw-layout", "has no run_<n> folders", strip))
    return out


def _scan_run(run_dir: Path, strip: str, run: int, n_frames: int, scan: RawScan):
    entries = list_folder(run_dir, scan, strip, run)
    if entries is None:
        return None
    by_index: dict[int, Path] = {}
    bad = False
    for f in entries:
        m = FRAME_RE.match(f.name)
        if not m:
            scan.problems.append(
                Problem(
                    str(f),
                    "raw-layout",
                    "unexpected entry in a run folder (expected frame_<i>.png or frame_<i>.tif)",
                    strip,
                    run,
                )
            )
            bad = True
            continue
        i = int(m.group(1))
        if i in by_index:
            scan.problems.append(
                Problem(
                    str(f),
                    "unique-frame",
                    f"frame index {i} also at {by_index[i].name}",
                    strip,
                    run,
                )
            )
            bad = True
        by_index[i] = f
    if not by_index:
        scan.problems.append(Problem(str(run_dir), "frame-count", "has no frames", strip, run))
        return None
    expected = set(range(n_frames))
    if set(by_index) != expected:
        missing = sorted(expected - set(by_index))
        extra = sorted(set(by_index) - expected)
        detail = "; ".join(
            s
            for s in (
                f"missing {_ranges(missing)}" if missing else "",
                f"unexpected {_ranges(extra)}" if extra else "",
            )
            if s
        )
        scan.problems.append(
            Problem(
                str(run_dir),
                "frame-count",
                f"expected frames 0..{n_frames - 1} ({n_frames} frames), "
                f"found {len(by_index)}: {detail}",
                strip,
                run,
            )
        )
        return None
    return None if bad else tuple(by_index[i] for i in range(n_frames))


def _ranges(idx: list[int]) -> str:
    return ", ".join(map(str, idx[:8])) + (" ..." if len(idx) > 8 else "")


def _apply_labels_csv(path: Path, labels: pd.DataFrame, scan: RawScan) -> None:
    dup = labels.duplicated(keep="first")
    for strip in labels.loc[dup, "strip"]:
        scan.problems.append(
            Problem(str(path), "labels-csv", f"duplicate row for strip {strip}", strip)
        )
    labels = labels[~dup]
    per_strip = labels.groupby("strip")["label"].nunique()
    for strip in per_strip[per_strip > 1].index:
        scan.problems.append(
            Problem(
                str(path), "labels-csv", f"strip {strip} is labelled both good and defect", strip
            )
        )
    for strip in sorted(set(labels["strip"]) - scan.strips):
        scan.problems.append(
            Problem(
                str(path),
                "labels-csv",
                f"names strip {strip}, which has no folder in the raw root",
                strip,
            )
        )
    label_of = labels.drop_duplicates("strip").set_index("strip")["label"].to_dict()
    scan.acquisitions = [
        Acquisition(a.strip, a.run, label_of.get(a.strip, "unknown"), a.folder, a.frames)
        for a in scan.acquisitions
    ]
    # A strip whose labels are refused keeps no annotation: --skip-bad ingests none of it.
    refused = {p.strip for p in scan.problems if p.rule == "labels-csv" and p.strip}
    scan.annotations = labels[~labels["strip"].isin(refused)].reset_index(drop=True)
