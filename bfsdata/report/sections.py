"""The report's sections beside its tables: the Knapp table, timing against the acquisition
slot, which patches the gallery shows, counts per split, and the notes a reader must see."""

from __future__ import annotations

from typing import Any

import pandas as pd

from bfsdata.judging.decisions import knapp
from bfsdata.report.tables import ACQ, BOX, Kit, Thresholds, known, records, worst_patches


def knapp_section(strips: pd.DataFrame, manual: pd.DataFrame | None) -> dict[str, Any]:
    """Knapp table of the judged kit; manual rows of strips outside it (calib) are dropped."""
    dropped = 0
    if manual is not None and "strip" in manual.columns:  # else knapp names what is missing
        manual = manual.assign(strip=manual["strip"].astype(str))  # ids read as numbers
        keep = manual["strip"].isin(strips["strip"])
        dropped, manual = int((~keep).sum()), manual[keep]
    out = knapp(strips, manual)
    table = out.pop("table")
    out["zones"] = {z: int((table["zone"] == z).sum()) for z in ("accept", "grey", "reject")}
    # good strips in the machine's reject zone inflate FQA(7-10): the reader must see them
    out["good_in_reject_zone"] = int(((table["zone"] == "reject") & ~table["is_defect"]).sum())
    out["manual_rows_outside_kit"] = dropped
    out["table"] = records(table)
    return out


def timing_section(timing: dict[str, Any], per_acq: int, slot_ms: float) -> dict[str, Any]:
    """ms per patch and per strip (one acquisition) against the acquisition slot."""
    missing = {"batch", "per_batch_ms", "per_patch_ms"} - set(timing)
    if missing:
        raise ValueError(f"timing lacks keys {sorted(missing)}; it has {sorted(timing)}")
    batch, pb, pp = int(timing["batch"]), timing["per_batch_ms"], timing["per_patch_ms"]

    def ms(d: dict, scale: int = 1) -> dict[str, float | None]:  # None: nothing was timed
        return {
            k: None if d.get(k) is None else float(d[k]) * scale for k in ("mean", "p50", "p99")
        }

    if batch == per_acq:
        strip = ms(pb)
        basis = f"measured per batch: a batch of {batch} patches is one acquisition"
    else:
        strip = ms(pp, per_acq)
        basis = f"per-patch time x {per_acq} patches per acquisition (batch was {batch})"
    timed = strip["mean"] is not None and strip["p99"] is not None
    return {
        **timing,
        "patches_per_strip": per_acq,
        "ms_per_patch": ms(pp),
        "ms_per_strip": strip,
        "strip_basis": basis,
        "slot_ms": float(slot_ms),
        "margin_ms": float(slot_ms) - strip["mean"] if timed else None,
        "margin_p99_ms": float(slot_ms) - strip["p99"] if timed else None,
        "fits_slot": bool(strip["p99"] <= slot_ms) if timed else None,  # judged on the p99
    }


def gallery_picks(
    df: pd.DataFrame, strips: pd.DataFrame, ts: dict[str, Thresholds], n: int
) -> pd.DataFrame:
    """Patches to show: the worst patch of every strip misjudged run-wise (run thresholds; for
    a defective strip its annotated patch when it has one, the one that should have fired),
    then of the n most anomalous other strips (strip thresholds). One patch per strip."""
    cols = ["patch", "acq", "strip", "run", "kind", "frame", "vial", "region", "label", "score"]
    cols += BOX
    picks = []
    for s in strips[~strips["correct"]].itertuples():
        rows = df[df["strip"] == s.strip]
        if s.is_defect and rows["is_defect"].eq(True).any():
            rows = rows[rows["is_defect"].eq(True)]
        p = worst_patches(rows, ts["run"], by=["strip"])
        what = "escape: defect" if s.is_defect else "false reject: good"
        why = f"{what} strip rejected in {s.rejections} of {s.runs} runs (needs {s.need})"
        picks.append(p.assign(reason=why, threshold=p["column"].map(ts["run"])))
    shown = strips.loc[~strips["correct"], "strip"]
    top = worst_patches(df[~df["strip"].isin(shown)], ts["strip"])
    top = top.sort_values("margin", ascending=False, kind="stable").drop_duplicates("strip")
    top = top.head(n)
    picks.append(top.assign(reason="most anomalous", threshold=top["column"].map(ts["strip"])))
    out = pd.concat(picks, ignore_index=True)
    return out[[*cols, "threshold", "margin", "reason"]]


def counts(scores: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Patches, acquisitions and strips by label in each split."""
    out = {}
    for split, g in scores.groupby("split"):
        labels = g.drop_duplicates("strip")["label"]
        out[str(split)] = {
            "patches": len(g),
            "acquisitions": len(g.drop_duplicates(ACQ)),
            "good_strips": int((labels == "good").sum()),
            "defect_strips": int((labels == "defect").sum()),
        }
    return out


def notes(kit: Kit, t1: dict, kn: dict | None, tm: dict, left_out: str | None = None) -> list[str]:
    """What a reader must know before trusting the figures."""
    out = [left_out] if left_out else []
    if kit.in_sample:
        out.append("IN-SAMPLE: no calib strips; thresholds fitted on the test strips themselves")
    if t1["left_out"]["patches"]:
        out.append(
            f"{t1['left_out']['patches']} patches of {t1['left_out']['strips']} unannotated "
            "defective strip(s) left out of the patch-level figures"
        )
    if not known(kit.fit)["is_defect"].any():
        out.append("no annotated defective patch in the fit set: patch thresholds see good only")
    if kn is not None and kn["manual_rows_outside_kit"]:
        out.append(
            f"{kn['manual_rows_outside_kit']} manual Knapp rows of strips not judged here dropped"
        )
    if tm["fits_slot"] is None:
        out.append("no inference time was measured: the slot check is missing")
    elif not tm["fits_slot"]:
        out.append(f"p99 time per strip exceeds the {tm['slot_ms']:g} ms acquisition slot")
    return out
