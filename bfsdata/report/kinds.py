"""Thresholds per (kind, region) in the report: which kinds judge each region
(`judging.kinds.choose_kinds`, on calib and val), the kit re-keyed so each (kind, region) is a
threshold column of its own, and the choice as metrics.json, thresholds.json and report.html
show it.

With several scored kinds and `report.kind_choice` auto or all, the patches of a kind dropped in
a region leave the kit (no threshold judges them) and every other patch gets the column
`kind_column(kind, region)`; `tables.fit_thresholds` then fits one threshold per column jointly
on calib, exactly as it fits one per region, and an item is rejected when any column is over.
With one scored kind, or `pooled`, the kit is left as it is: one threshold per region.
"""

from __future__ import annotations

from html import escape
from typing import Any

import pandas as pd

from bfsdata.config.pipeline import KINDS
from bfsdata.judging.kinds import KIND_STRIDE, choose_kinds, column_kind
from bfsdata.report import tables as rt
from bfsdata.report.html_blocks import table

NO_CALIB = "no calib split: choosing on test would tune on test, so every kind is kept"


def by_kind(
    kit: rt.Kit, mode: str, min_auroc: float, item: str, margin: float = 0.0
) -> tuple[rt.Kit, dict[str, Any]]:
    """The kit with one threshold column per kept (kind, region), and the choice record
    (metrics.json and thresholds.json `kind_choice`)."""
    seen = set(kit.fit["kind"]) | set(kit.test["kind"]) | set(kit.val["kind"])
    scored = [k for k in KINDS if k in seen]
    record: dict[str, Any] = {
        "mode": mode,
        "min_auroc": min_auroc,
        "margin": margin,
        "scored": scored,
    }
    if mode == "pooled" or len(scored) == 1:
        why = (
            f"one scored kind ({scored[0]}): one threshold per region"
            if len(scored) == 1
            else "report.kind_choice pooled: one threshold per region over every kind"
        )
        return kit, {**record, "thresholds_by": "region", "reason": why, "regions": {}}
    big = [r for r in kit.regions if r >= KIND_STRIDE]
    if big:
        raise ValueError(
            f"regions {big[:3]}: thresholds per kind need regions under {KIND_STRIDE}; "
            "set report.kind_choice: pooled"
        )
    if kit.in_sample:
        chosen = {r: {"kept": scored, "dropped": [], "reason": NO_CALIB} for r in kit.regions}
    else:
        chosen = choose_kinds(kit.fit, kit.val, mode, min_auroc, margin)
    keep = {r: chosen[r]["kept"] if r in chosen else scored for r in kit.regions}
    columns = sorted((KINDS.index(k) + 1) * KIND_STRIDE + r for r, ks in keep.items() for k in ks)

    def split(df: pd.DataFrame) -> pd.DataFrame:
        col = (df["kind"].map(KINDS.index) + 1) * KIND_STRIDE + df["region"].astype("int64")
        return df.assign(column=col.astype("int64"))[col.isin(columns)]

    out = rt.Kit(split(kit.fit), split(kit.test), split(kit.val), columns, kit.in_sample)
    regions = {
        str(r): {"name": rt.region_name(r, item), **chosen.get(r, {"kept": scored, "dropped": []})}
        for r in kit.regions
    }
    dropped = sum(len(c["dropped"]) for c in regions.values())
    why = (
        NO_CALIB
        if kit.in_sample
        else f"{mode}: one threshold per (kind, region); {dropped} (kind, region) dropped"
    )
    return out, {**record, "thresholds_by": "kind", "reason": why, "regions": regions}


def nested(t: rt.Thresholds, by: str) -> dict[str, Any]:
    """Thresholds as thresholds.json holds them: {region: t}, or {kind: {region: t}} by kind."""
    if by == "region":
        return rt.keyed(t)
    out: dict[str, dict[str, float]] = {}
    for column, v in sorted(t.items()):
        kind, r = column_kind(column)
        out.setdefault(str(kind), {})[str(r)] = float(v)
    return {k: out[k] for k in KINDS if k in out}


def notes(choice: dict[str, Any]) -> list[str]:
    """The report's notes on the choice: each region judged without some scored kind."""
    out = []
    for c in choice["regions"].values():
        for k in c["dropped"]:
            why = c["kinds"][k]["why"]
            out.append(f"{c['name']}: {k} dropped ({why}); judged by {', '.join(c['kept'])}")
    return out


def section_html(choice: dict[str, Any]) -> str:
    """report.html's section: per region the kinds kept and dropped, with their evidence."""
    scored = choice["scored"]
    note = f'<p class="note">{escape(choice["reason"])}.</p>'
    if choice["thresholds_by"] == "region":
        return note
    head = ["Region", "Kept", "Dropped"]
    head += [f"{k}: calib AUROC (defect patches), good p50 / p99" for k in scored]
    rows = []
    for c in choice["regions"].values():
        ev = c.get("kinds", {})
        rows.append(
            [
                escape(c["name"]),
                escape(", ".join(c["kept"])),
                escape(", ".join(c["dropped"]) or "–"),
                *(_evidence(ev.get(k)) for k in scored),
            ]
        )
    return (
        table(head, rows)
        + note
        + '<p class="note">Each kept (kind, region) has its own threshold, fitted jointly on '
        "calib; an item is rejected when any is exceeded. A kind is dropped from a region when "
        f"its calib patch AUROC there is under {choice['min_auroc']:g} or more than "
        f"{choice.get('margin', 0):g} under the region's best (never the best itself; "
        "val and calib only, never test). Good p50 / p99: the spread of good patch scores on "
        "calib and val.</p>"
    )


def _evidence(e: dict[str, Any] | None) -> str:
    if e is None:
        return "–"
    auc = "–" if e["auroc"] is None else f"{e['auroc']:.3f}"
    spread = "–" if e["good_p50"] is None else f"{e['good_p50']:.4g} / {e['good_p99']:.4g}"
    return f"{auc} ({e['defect_patches']}), {spread}"
