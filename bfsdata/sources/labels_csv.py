"""Read `labels.csv` of a raw folder (docs/design.md, Raw input): strip,label[,defect,vial,region].

Every broken rule becomes a `Problem` naming the file (and line) and the rule `labels-csv`. The
rules for strip ids live here too (`STRIP_RE`, `case_twins`): folder names obey the same ones.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pandas as pd

from bfsdata.config.regular_files import InputFileError, read_regular
from bfsdata.workspace.problems import Problem

# ASCII only, anchored with \Z: the rule for strip ids in folder names and in labels.csv.
STRIP_RE = re.compile(r"^[A-Za-z0-9_-]+\Z")
VIALS, REGIONS = 5, 4  # annotation ranges of the BFS layout (vial 1..5, region 0..3)
LABEL_COLUMNS = ("strip", "label", "defect", "vial", "region")  # of labels.csv
MAX_LABELS_BYTES = 64 * 2**20  # a row is tens of bytes: room for a million strips
# First characters that make a spreadsheet read a cell as a formula (OWASP, CSV injection).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def read_labels_csv(path: Path, problems: list[Problem]) -> pd.DataFrame | None:
    """Rows of labels.csv as strip,label,defect,vial,region; problems are appended to `problems`.

    A broken file (unreadable, not UTF-8, not CSV, a bad header) is fatal: no label can be
    trusted. A broken row is a problem of its strip only.
    """
    try:
        text = read_regular(path, MAX_LABELS_BYTES).decode("utf-8-sig")
    except InputFileError as e:
        problems.append(Problem(str(path), e.rule, e.message, fatal=True))
        return None
    except OSError as e:
        problems.append(
            Problem(str(path), "labels-csv", f"cannot be read ({e.strerror})", fatal=True)
        )
        return None
    except UnicodeDecodeError as e:
        problems.append(
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
            problems.append(Problem(str(path), "labels-csv", wrong, fatal=True))
            return None
        for fields in reader:
            where = f"{path}:{reader.line_num}"
            if not any(f.strip() for f in fields):
                continue  # a blank line, or one of empty cells as spreadsheets write them
            if len(fields) > len(header):
                problems.append(
                    Problem(
                        where,
                        "labels-csv",
                        f"has {len(fields)} fields; the header names {len(header)}",
                    )
                )
                continue
            cells = dict(zip(header, (f.strip() for f in fields), strict=False))  # short: empty
            row = _label_row(cells, where, problems)
            if row is not None:
                rows.append(row)
    except csv.Error as e:
        problems.append(
            Problem(
                f"{path}:{reader.line_num}", "labels-csv", f"is not valid CSV ({e})", fatal=True
            )
        )
        return None
    return pd.DataFrame(rows, columns=list(LABEL_COLUMNS))


def case_twins(ids: dict[Path, str]) -> list[Problem]:
    """Strip ids that differ only by case (S0002, s0002) refuse each other: on a
    case-insensitive file system (Windows, macOS) they are one folder, so a copy of the raw
    data would merge them. `ids`: folder or file -> the strip id it holds."""
    by_key: dict[str, list[Path]] = {}
    for path, strip in ids.items():
        by_key.setdefault(strip.lower(), []).append(path)  # ids are ASCII (STRIP_RE)
    out = []
    for paths in by_key.values():
        for path in paths:
            others = ", ".join(str(p) for p in paths if ids[p] != ids[path])
            if others:  # not alone, nor the same id twice (refused run by run elsewhere)
                out.append(
                    Problem(
                        str(path),
                        "unique-strip",
                        f"strip id {ids[path]} differs only by case from {others}: one name on "
                        "a case-insensitive file system; rename one",
                        ids[path],
                    )
                )
    return out


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


def _label_row(rec: dict[str, str], where: str, problems: list[Problem]) -> dict | None:
    strip, label = rec.get("strip", ""), rec.get("label", "")
    if not STRIP_RE.match(strip):
        problems.append(Problem(where, "labels-csv", f"strip {strip!r} must match [A-Za-z0-9_-]+"))
        return None
    if label not in ("good", "defect"):
        problems.append(
            Problem(where, "labels-csv", f"label {label!r} must be good or defect", strip)
        )
        return None
    defect = rec.get("defect") or None
    if defect is not None and defect.startswith(FORMULA_START):
        # Refused here, where names enter, rather than quoted in every export: the name travels
        # to the manifests, reports and whatever tables people make of them.
        problems.append(
            Problem(
                where,
                "labels-csv",
                f"defect {defect!r} starts with {defect[0]!r}, which a spreadsheet runs as a "
                "formula; start defect names with a letter or digit",
                strip,
            )
        )
        return None
    row = {
        "strip": strip,
        "label": label,
        "defect": defect,
        "vial": None,
        "region": None,
    }
    for col, hi, lo in (("vial", VIALS, 1), ("region", REGIONS - 1, 0)):
        v = rec.get(col, "")
        if not v:
            continue
        # isascii: "²" and "٢" are digits to str.isdigit; int() reads the second, not the first
        if not (v.isascii() and v.isdigit() and len(v) < 10) or not lo <= int(v) <= hi:
            problems.append(Problem(where, "labels-csv", f"{col} {v!r} must be {lo}..{hi}", strip))
            return None
        row[col] = int(v)
    if label == "good" and (row["defect"] or row["vial"] is not None or row["region"] is not None):
        problems.append(
            Problem(where, "labels-csv", "a good strip cannot carry a defect/vial/region", strip)
        )
        return None
    return row
