"""Discover acquisitions in a raw folder and read their labels (DESIGN.md section 1).

Only names and headers are looked at here; pixels are decoded once, later, by ingest. Every
broken rule becomes a `Problem` that names the file and the rule, so ingest can refuse the whole
folder before writing anything or, with `--skip-bad`, skip just what is broken.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

STRIP_RE = re.compile(r"^[A-Za-z0-9_-]+$")
RUN_RE = re.compile(r"^run_(\d+)$")
FRAME_RE = re.compile(r"^frame_(\d+)\.(png|tif|tiff)$", re.IGNORECASE)
LABEL_DIRS = ("good", "defect")
VIALS, REGIONS = 5, 4  # annotation ranges of the BFS layout (vial 1..5, region 0..3)


@dataclass(frozen=True)
class Acquisition:
    strip: str
    run: int
    label: str
    folder: Path
    frames: tuple[Path, ...]  # in frame-index order


@dataclass(frozen=True)
class Problem:
    source: str  # file or folder
    rule: str
    message: str
    strip: str | None = None
    run: int | None = None
    fatal: bool = False  # nothing can be ingested, even with --skip-bad

    def __str__(self) -> str:
        return f"{self.source}: {self.message} [rule: {self.rule}]"


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
    strip_dirs, labels = _top_level(raw, scan)
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


def _top_level(raw: Path, scan: RawScan) -> tuple[list[tuple[Path, str]], pd.DataFrame | None]:
    entries = _entries(raw, scan)
    labels = None
    if (raw / "labels.csv").is_file():
        scan.label_source = "labels.csv"
        labels = read_labels_csv(raw / "labels.csv", scan)
    elif any((raw / d).is_dir() for d in LABEL_DIRS):
        scan.label_source = "folders"
    strip_dirs: list[tuple[Path, str]] = []
    for p in entries:
        if p.name == "labels.csv":
            continue
        if not p.is_dir():
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
                strip_dirs += [(s, p.name) for s in _entries(p, scan) if _is_strip_dir(s, scan)]
            else:
                scan.problems.append(
                    Problem(
                        str(p),
                        "raw-layout",
                        "strip folder outside good/ and defect/ "
                        "(with label folders, every strip must be inside one)",
                    )
                )
        elif _is_strip_dir(p, scan):
            strip_dirs.append((p, "unknown"))
    return strip_dirs, labels


def _entries(folder: Path, scan: RawScan) -> list[Path]:
    """Folder contents, sorted; hidden files (.DS_Store, ...) are ignored."""
    try:
        return sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    except OSError as e:
        scan.problems.append(Problem(str(folder), "readable", f"cannot be listed ({e.strerror})"))
        return []


def _is_strip_dir(p: Path, scan: RawScan) -> bool:
    try:
        is_dir = p.is_dir()
    except OSError as e:  # e.g. a symlink loop
        scan.problems.append(Problem(str(p), "readable", f"cannot be opened ({e.strerror})"))
        return False
    if not is_dir:
        scan.problems.append(
            Problem(str(p), "raw-layout", "unexpected file; expected a strip folder")
        )
        return False
    if not STRIP_RE.match(p.name):
        scan.problems.append(
            Problem(
                str(p),
                "strip-id",
                f"strip folder name {p.name!r} must match [A-Za-z0-9_-]+",
                strip=None,
            )
        )
        return False
    return True


def _scan_strip(strip_dir: Path, label: str, n_frames: int, scan: RawScan) -> list[Acquisition]:
    strip = strip_dir.name
    out = []
    for run_dir in _entries(strip_dir, scan):
        m = RUN_RE.match(run_dir.name)
        if not m or not run_dir.is_dir():
            scan.problems.append(
                Problem(
                    str(run_dir),
                    "raw-layout",
                    "unexpected entry in a strip folder (expected run_<n> folders)",
                    strip,
                )
            )
            continue
        run = int(m.group(1))
        frames = _scan_run(run_dir, strip, run, n_frames, scan)
        if frames is not None:
            out.append(Acquisition(strip, run, label, run_dir, frames))
    if not out and not any(p.strip == strip for p in scan.problems):
        scan.problems.append(Problem(str(strip_dir), "raw-layout", "has no run_<n> folders", strip))
    return out


def _scan_run(run_dir: Path, strip: str, run: int, n_frames: int, scan: RawScan):
    by_index: dict[int, Path] = {}
    bad = False
    for f in _entries(run_dir, scan):
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


def read_labels_csv(path: Path, scan: RawScan) -> pd.DataFrame | None:
    """Rows of labels.csv as strip,label,defect,vial,region; problems go into `scan`."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        scan.problems.append(Problem(str(path), "labels-csv", f"cannot be read ({e})", fatal=True))
        return None
    reader = csv.DictReader(text.splitlines())
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in ("strip", "label") if c not in header]
    if missing:
        scan.problems.append(
            Problem(
                str(path),
                "labels-csv",
                f"missing column(s) {', '.join(missing)}; "
                "expected header strip,label[,defect,vial,region]",
                fatal=True,
            )
        )
        return None
    unknown = [c for c in header if c not in ("strip", "label", "defect", "vial", "region")]
    if unknown:
        scan.problems.append(
            Problem(
                str(path),
                "labels-csv",
                f"unknown column(s) {', '.join(unknown)}; known: strip,label,defect,vial,region",
                fatal=True,
            )
        )
        return None
    rows = []
    for n, rec in enumerate(reader, start=2):  # line 1 is the header
        rec = {k.strip(): (v or "").strip() for k, v in rec.items() if k is not None}
        row = _label_row(rec, f"{path}:{n}", scan)
        if row is not None:
            rows.append(row)
    return pd.DataFrame(rows, columns=["strip", "label", "defect", "vial", "region"])


def _label_row(rec: dict[str, str], where: str, scan: RawScan) -> dict | None:
    strip, label = rec.get("strip", ""), rec.get("label", "")
    if not STRIP_RE.match(strip):
        scan.problems.append(
            Problem(where, "labels-csv", f"strip {strip!r} must match [A-Za-z0-9_-]+")
        )
        return None
    if label not in ("good", "defect"):
        scan.problems.append(
            Problem(where, "labels-csv", f"label {label!r} must be good or defect", strip)
        )
        return None
    row = {
        "strip": strip,
        "label": label,
        "defect": rec.get("defect") or None,
        "vial": None,
        "region": None,
    }
    for col, hi, lo in (("vial", VIALS, 1), ("region", REGIONS - 1, 0)):
        v = rec.get(col, "")
        if not v:
            continue
        if not v.isdigit() or not lo <= int(v) <= hi:
            scan.problems.append(
                Problem(where, "labels-csv", f"{col} {v!r} must be {lo}..{hi}", strip)
            )
            return None
        row[col] = int(v)
    if label == "good" and (row["defect"] or row["vial"] is not None or row["region"] is not None):
        scan.problems.append(
            Problem(where, "labels-csv", "a good strip cannot carry a defect/vial/region", strip)
        )
        return None
    return row


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
    scan.annotations = labels.reset_index(drop=True)
