"""Per defect type: how many of each type's defective acquisitions the strip thresholds reject,
overall and per region of the defect, and which kinds of image caught them.

A pharma client audits the machine per defect category (Knapp tests are read that way), and a
headline accuracy can hide a type that always escapes. The level is Table 2's: an acquisition
(strip, run) of the test split, rejected when any patch scores over its region's strip
threshold. The defect types are the `defect` names of the annotations manifest (labels.csv or
the image folders' test/<defect>/); a strip with several types counts once for each.

Per type, and per region the type was annotated in:

- `recall` and `escape_rate`: rejected / acquisitions and its complement, each with its
  Clopper-Pearson interval (the runs of one strip are counted as separate acquisitions, as in
  Table 2);
- `caught_by` {kind: acquisitions with a patch of that kind over its threshold}: what rejected
  them (several kinds in one acquisition each count);
- `at_defect`: of the acquisitions whose defect cell (vial, region) is known, how many had a
  patch over its threshold in that cell, and of which kinds. A rejection from elsewhere in the
  strip counts in `recall` (the strip leaves the line) but not here.

A type's cells are its annotated (vial, region); a strip of one type without a location takes
the patches its mask marks (`defect_here`, image folders).
"""

from __future__ import annotations

from html import escape
from typing import Any

import numpy as np
import pandas as pd

from bfsdata.config.pipeline import KINDS
from bfsdata.judging.metrics import rates
from bfsdata.report.html_blocks import cell, label, table
from bfsdata.report.tables import ACQ, LEVEL, Thresholds, region_name

CELL = ["strip", "vial", "region"]


def defect_types(
    test: pd.DataFrame,
    annotations: pd.DataFrame | None,
    t: Thresholds,
    alpha: float,
    item: str = "strip",
) -> dict[str, Any]:
    """metrics.json's `defect_types` from the test patches (`tables.prepare`'s columns), the
    annotations manifest (None: no type known) and the strip thresholds."""
    defect = test[test["strip_defect"]]
    acqs = defect.drop_duplicates(ACQ)[ACQ].reset_index(drop=True)
    over = defect[defect["score"].to_numpy(float) > defect["column"].map(t).to_numpy(float)]
    over = over[[*ACQ, "kind", "vial", "region"]].astype({"vial": int, "region": int})
    kinds = [k for k in KINDS if k in set(test["kind"])]
    typed, cells = _typed(annotations, defect)
    types = {}
    for name, strips in typed.groupby("defect", sort=True)["strip"]:
        mine = cells[cells["defect"] == name]
        row = _row(acqs, over, set(strips), mine, kinds, alpha)
        row["regions"] = {
            str(r): {
                "name": region_name(r, item),
                **_row(acqs, over, set(g["strip"]), g, kinds, alpha),
            }
            for r, g in mine.groupby("region", sort=True)
        }
        types[str(name)] = row
    untyped = acqs["strip"].isin(set(acqs["strip"]) - set(typed["strip"]))
    return {
        "level": LEVEL[item],
        "kinds": kinds,
        "types": types,
        "untyped": {
            "strips": int(acqs.loc[untyped, "strip"].nunique()),
            "acquisitions": int(untyped.sum()),
        },
    }


def _typed(
    annotations: pd.DataFrame | None, defect: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(strip, defect) pairs of the judged defective strips, and each pair's cells (strip,
    defect, vial, region)."""
    if annotations is None or annotations.empty:
        empty = pd.DataFrame({"strip": [], "defect": []}, dtype=object)
        return empty, empty.assign(vial=0, region=0).iloc[:0]
    ann = annotations[annotations["defect"].notna() & annotations["strip"].isin(defect["strip"])]
    typed = ann[["strip", "defect"]].drop_duplicates().reset_index(drop=True)
    placed = ann.dropna(subset=["vial", "region"])
    cells = placed[["strip", "defect", "vial", "region"]].astype({"vial": int, "region": int})
    # a single type without a location: the cells its mask marks (image folders)
    n_types = typed.groupby("strip")["defect"].transform("size")
    lone = typed[(n_types == 1) & ~typed["strip"].isin(placed["strip"])]
    marked = defect[defect["is_defect"].eq(True)][CELL].drop_duplicates()
    marked = marked.astype({"vial": int, "region": int}).merge(lone, on="strip")
    return typed, pd.concat([cells, marked], ignore_index=True).drop_duplicates()


def _row(
    acqs: pd.DataFrame,
    over: pd.DataFrame,
    strips: set,
    cells: pd.DataFrame,
    kinds: list[str],
    alpha: float,
) -> dict[str, Any]:
    """The figures of the acquisitions of `strips`; at_defect counts hits in `cells` only."""
    mine = acqs[acqs["strip"].isin(strips)]
    hits = over[over["strip"].isin(strips)]
    rejected = _has(mine, hits)
    r = rates(np.ones(len(mine), bool), rejected, alpha)
    at = hits.merge(cells[CELL].drop_duplicates(), on=CELL)
    located = mine["strip"].isin(set(cells["strip"]))
    return {
        "strips": len(strips),
        "acquisitions": len(mine),
        "rejected": r["defect_rejected"],
        "recall": r["defect_rejected_ratio"],
        "escape_rate": r["escape_rate"],
        "caught_by": {k: int(_has(mine, hits[hits["kind"] == k]).sum()) for k in kinds},
        "at_defect": {
            "located": int(located.sum()),
            "caught": int(_has(mine, at).sum()),
            "by": {k: int(_has(mine, at[at["kind"] == k]).sum()) for k in kinds},
        },
    }


def _has(acqs: pd.DataFrame, hits: pd.DataFrame) -> np.ndarray:
    """(len(acqs),) bool: the acquisition has a row in `hits`."""
    keys = pd.MultiIndex.from_frame(hits[ACQ].drop_duplicates())
    return pd.MultiIndex.from_frame(acqs[ACQ]).isin(keys)


def section_html(dt: dict[str, Any]) -> str:
    """report.html's per-defect-type section: one row per type, then one per region of it."""
    kinds = dt["kinds"]
    head = ["Defect type", "Where", "Strips", "Acquisitions", label("Recall", "defect rejected")]
    head += [label("Escape rate", "defect accepted"), *(f"caught by {k}" for k in kinds)]
    head.append("at the defect (caught / located)")
    rows = []
    for name, row in dt["types"].items():
        where = [("all regions", row)] + [(r["name"], r) for r in row["regions"].values()]
        if len(where) == 2 and _same(row, where[1][1]):  # one region holds them all: one row
            where = where[1:]
        for i, (place, r) in enumerate(where):
            at = r["at_defect"]
            rows.append(
                [
                    f"<b>{escape(name)}</b>" if i == 0 else "",
                    escape(place),
                    r["strips"],
                    r["acquisitions"],
                    cell(r["recall"]),
                    cell(r["escape_rate"]),
                    *(r["caught_by"][k] for k in kinds),
                    f"{at['caught']} / {at['located']}",
                ]
            )
    un = dt["untyped"]
    return (
        (table(head, rows) if rows else "<p>No defective test strip has a defect type.</p>")
        + f'<p class="note">Item: one acquisition of a defective test strip ({escape(dt["level"])}'
        ", thresholds fitted for that level); a strip with several defect types counts for each, "
        "in the region each was annotated in. Caught by: acquisitions with a patch of that kind "
        "over its region's threshold. At the defect: acquisitions with such a patch in the "
        "defect's own vial and region, of those whose defect location is known."
        + (
            f" {un['strips']} defective test strip(s) ({un['acquisitions']} acquisitions) have no "
            "defect type (labels.csv column <code>defect</code>) and are not in this table."
            if un["strips"]
            else ""
        )
        + "</p>"
    )


def _same(row: dict[str, Any], region: dict[str, Any]) -> bool:
    return {k: v for k, v in row.items() if k != "regions"} == {
        k: v for k, v in region.items() if k != "name"
    }
