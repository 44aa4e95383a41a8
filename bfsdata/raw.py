"""Discover acquisitions in a raw folder and read their labels (DESIGN.md section 1).

Only names and headers are looked at here; pixels are decoded once, later, by ingest. Every
broken rule becomes a `Problem` that names the file and the rule, so ingest can refuse the whole
folder before writing anything or, with `--skip-bad`, skip just what is broken.
"""

from __future__ import annotations

import csv
import errno
import io
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

# ASCII only, anchored with \Z (`$` also matches before a trailing newline): `\d` would take
# "run_\u0662" (an Arabic-Indic 2) for run 2, and an unbounded index could not be read by int().
STRIP_RE = re.compile(r"^[A-Za-z0-9_-]+\Z")
RUN_RE = re.compile(r"^run_([0-9]{1,9})\Z")
FRAME_RE = re.compile(r"^frame_([0-9]{1,9})\.(png|tif|tiff)\Z", re.IGNORECASE | re.ASCII)
LABEL_DIRS = ("good", "defect")
VIALS, REGIONS = 5, 4  # annotation ranges of the BFS layout (vial 1..5, region 0..3)
LABEL_COLUMNS = ("strip", "label", "defect", "vial", "region")  # of labels.csv


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

    def __post_init__(self) -> None:
        for name in ("source", "message", "strip"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, printable(getattr(self, name)))

    def __str__(self) -> str:
        return f"{self.source}: {self.message} [rule: {self.rule}]"


def printable(text: str) -> str:
    """Text as one line that a terminal and parquet take: undecodable bytes and control
    characters as \\xNN.

    File names are bytes on Linux; those that are not UTF-8 reach Python as lone surrogates
    (PEP 383), which printing or writing to parquet refuses with a traceback, and a newline in
    a name would break the one-line message.
    """
    try:
        data = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate no file name decodes to
        data = text.encode("utf-8", "backslashreplace")
    return data.decode("utf-8", "backslashreplace").translate(_CONTROL)


_CONTROL = {c: f"\\x{c:02x}" for c in (*range(32), 127)}


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
    entries = _entries(raw, scan, fatal=True) or []
    kinds = {p: _kind(p, scan) for p in entries}
    labels_csv = raw / "labels.csv"
    labels = None
    if kinds.get(labels_csv) == "file":
        scan.label_source = "labels.csv"
        labels = read_labels_csv(labels_csv, scan)
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
                    for s in _entries(p, scan) or []
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


def _entries(
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
    entries = _entries(strip_dir, scan, strip)
    for run_dir in entries or []:
        m = RUN_RE.match(run_dir.name)
        run = int(m.group(1)) if m else None
        kind = _kind(run_dir, scan, strip, run) if m else "file"
        if kind is None:
            continue
        if kind != "dir":
            scan.problems.append(
                Problem(
                    str(run_dir),
                    "raw-layout",
                    "unexpected entry in a strip folder (expected run_<n> folders)",
                    strip,
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
    entries = _entries(run_dir, scan, strip, run)
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


def read_labels_csv(path: Path, scan: RawScan) -> pd.DataFrame | None:
    """Rows of labels.csv as strip,label,defect,vial,region; problems go into `scan`.

    A broken file (unreadable, not UTF-8, not CSV, a bad header) is fatal: no label can be
    trusted. A broken row is a problem of its strip only.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        scan.problems.append(
            Problem(str(path), "labels-csv", f"cannot be read ({e.strerror})", fatal=True)
        )
        return None
    except UnicodeDecodeError as e:
        scan.problems.append(
            Problem(
                str(path),
                "labels-csv",
                f"is not UTF-8 text (byte {e.start}: {e.reason}); save it as UTF-8 CSV",
                fatal=True,
            )
        )
        return None
    reader = csv.reader(io.StringIO(text, newline=""))
    rows = []
    try:
        header = [h.strip() for h in next(reader, [])]
        wrong = _header_problem(header)
        if wrong:
            scan.problems.append(Problem(str(path), "labels-csv", wrong, fatal=True))
            return None
        for fields in reader:
            where = f"{path}:{reader.line_num}"
            if not any(f.strip() for f in fields):
                continue  # a blank line, or one of empty cells as spreadsheets write them
            if len(fields) > len(header):
                scan.problems.append(
                    Problem(
                        where,
                        "labels-csv",
                        f"has {len(fields)} fields; the header names {len(header)}",
                    )
                )
                continue
            cells = dict(zip(header, (f.strip() for f in fields), strict=False))  # short: empty
            row = _label_row(cells, where, scan)
            if row is not None:
                rows.append(row)
    except csv.Error as e:
        scan.problems.append(
            Problem(
                f"{path}:{reader.line_num}", "labels-csv", f"is not valid CSV ({e})", fatal=True
            )
        )
        return None
    return pd.DataFrame(rows, columns=list(LABEL_COLUMNS))


def _header_problem(header: list[str]) -> str | None:
    missing = [c for c in ("strip", "label") if c not in header]
    unknown = [c for c in header if c not in LABEL_COLUMNS]
    repeated = sorted({c for c in header if header.count(c) > 1})
    if missing:
        return (
            f"missing column(s) {', '.join(missing)}; "
            "expected header strip,label[,defect,vial,region]"
        )
    if unknown:
        return (
            f"unknown column(s) {', '.join(c or '(no name)' for c in unknown)}; "
            "known: strip,label,defect,vial,region"
        )
    if repeated:
        return f"column(s) {', '.join(repeated)} appear more than once in the header"
    return None


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
        # isascii: "²" and "٢" are digits to str.isdigit; int() reads the second, not the first
        if not (v.isascii() and v.isdigit() and len(v) < 10) or not lo <= int(v) <= hi:
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
    # A strip whose labels are refused keeps no annotation: --skip-bad ingests none of it.
    refused = {p.strip for p in scan.problems if p.rule == "labels-csv" and p.strip}
    scan.annotations = labels[~labels["strip"].isin(refused)].reset_index(drop=True)
