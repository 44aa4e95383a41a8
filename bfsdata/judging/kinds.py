"""Which kinds of image judge each region, chosen on calib and val only, and the threshold
column of each (kind, region).

An acquisition can be scored on several kinds of image (acquisition.test_kinds: the frames,
the min and the max rank image). Each kind sees other things: on a product whose moving
bubbles have bright rims the max rank image keeps a different ring pattern in every
acquisition, so its good liquid patches score as high as defective ones, while the min rank
image removes them. Pooling the kinds under one threshold per region lets such a blind kind set
the threshold for all. So each (kind, region) gets a threshold of its own (a column of the item
matrix, `kind_column`), an item is rejected when any of them is exceeded, and `choose_kinds`
drops, per region, a kind that does not separate there:

- evidence per (kind, region), from calib only: the patch AUROC of the annotated defect patches
  against the good patches (`judging.metrics.auroc`), with the good scores' spread (median and
  99th percentile of calib and val good patches) to read it by;
- `auto` keeps the best kind of the region (highest AUROC, ties to the first in KINDS), so
  every region stays judged, and another kind whose AUROC reaches `min_auroc` (below it, the
  kind is blind there) and lies within `margin` of the best: under "reject when any exceeds"
  every kept kind adds its good patches' false rejects, so a kind that separates worse than
  the best costs more than it catches (benchmarks/quality.py; docs/performance.md, Detection
  across looks); a kind without a labelled defect patch there cannot be judged and is kept, and
  a region without any keeps every kind (the record says so);
- `all` keeps every kind (the evidence is still recorded).

Test rows never enter: the choice is part of the fit, made where the thresholds are fitted.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from bfsdata.config.pipeline import KINDS
from bfsdata.judging.metrics import auroc

# Threshold column of (kind, region) = (KINDS.index(kind) + 1) * KIND_STRIDE + region, so every
# kind column is >= KIND_STRIDE and a plain region column (one threshold over every kind) is not.
KIND_STRIDE = 100


def kind_column(kind: str, region: int) -> int:
    if not 0 <= int(region) < KIND_STRIDE:
        raise ValueError(f"region {region}: thresholds per kind need regions 0..{KIND_STRIDE - 1}")
    return (KINDS.index(kind) + 1) * KIND_STRIDE + int(region)


def column_kind(column: int) -> tuple[str | None, int]:
    """(kind, region) of a threshold column; kind None for a region column over every kind."""
    k = int(column) // KIND_STRIDE
    if 1 <= k <= len(KINDS):
        return KINDS[k - 1], int(column) % KIND_STRIDE
    return None, int(column)


def kind_evidence(good: Any, defect: Any, spread: Any) -> dict[str, Any]:
    """One (kind, region): calib AUROC of `defect` against `good` scores (None without both),
    their counts, and the median and 99th percentile of the good scores `spread`."""
    g, d = np.asarray(good, float), np.asarray(defect, float)
    s = np.asarray(spread, float)
    labels = np.r_[np.zeros(g.size, bool), np.ones(d.size, bool)]
    p50, p99 = (float(np.percentile(s, q)) if s.size else None for q in (50, 99))
    return {
        "auroc": auroc(labels, np.r_[g, d]),
        "defect_patches": int(d.size),
        "good_patches": int(g.size),
        "good_p50": p50,
        "good_p99": p99,
    }


def choose_region(
    evidence: dict[str, dict[str, Any]], min_auroc: float, margin: float = 0.0
) -> dict[str, Any]:
    """`auto` in one region: {kept, dropped, reason, kinds: evidence + kept and why per kind}.
    `evidence` maps each scored kind to its `kind_evidence`, in KINDS order."""
    judged = {k: e["auroc"] for k, e in evidence.items() if e["auroc"] is not None}
    if not judged:
        why = "no labelled defect patch here in calib: kept, nothing to judge it by"
        kinds = {k: {**e, "kept": True, "why": why} for k, e in evidence.items()}
        reason = "no labelled defect patch of this region in calib: every kind kept"
        return {"kept": list(evidence), "dropped": [], "reason": reason, "kinds": kinds}
    best = max(judged, key=lambda k: (judged[k], -KINDS.index(k)))
    kinds = {}
    for k, e in evidence.items():
        a = e["auroc"]
        if a is None:
            keep, why = True, "no labelled defect patch of this kind here in calib: kept"
        elif k == best:
            keep, why = True, f"highest calib AUROC here ({a:.3f})"
        elif a < min_auroc:
            keep, why = False, f"calib AUROC {a:.3f} < {min_auroc:g}: blind here"
        elif a < judged[best] - margin:
            keep, why = False, f"calib AUROC {a:.3f}, more than {margin:g} under {best}'s"
        else:
            keep, why = (
                True,
                f"calib AUROC {a:.3f}: >= {min_auroc:g}, within {margin:g} of the best",
            )
        kinds[k] = {**e, "kept": keep, "why": why}
    kept = [k for k in kinds if kinds[k]["kept"]]
    dropped = [k for k in kinds if not kinds[k]["kept"]]
    reason = (
        f"dropped {', '.join(dropped)} (calib AUROC under {min_auroc:g} or more than {margin:g} "
        "under the best)"
        if dropped
        else f"every kind kept (calib AUROC >= {min_auroc:g} and within {margin:g} of the best)"
    )
    return {"kept": kept, "dropped": dropped, "reason": reason, "kinds": kinds}


def choose_kinds(
    calib: pd.DataFrame, val: pd.DataFrame, mode: str, min_auroc: float, margin: float = 0.0
) -> dict[int, dict[str, Any]]:
    """Per region of `calib`: the kinds kept and why (`choose_region`; `all` keeps every one).

    calib: scored patches with kind, region, score and is_defect (True, False, or NA for a
    defective strip's unannotated patch, left out); val: good patches (kind, region, score).
    """
    if mode not in ("auto", "all"):
        raise ValueError(f"kind choice {mode!r}: expected auto or all")
    lab = calib[calib["is_defect"].notna()]
    is_defect = lab["is_defect"].astype(bool)
    cols = ["kind", "region", "score"]
    good_all = pd.concat([lab.loc[~is_defect, cols], val[cols]])
    scored = [k for k in KINDS if k in set(calib["kind"])]
    out = {}
    for r in sorted(int(r) for r in calib["region"].unique()):
        evidence = {}
        for k in scored:
            here = (lab["kind"] == k) & (lab["region"] == r)
            spread = good_all[(good_all["kind"] == k) & (good_all["region"] == r)]["score"]
            evidence[k] = kind_evidence(
                lab.loc[here & ~is_defect, "score"], lab.loc[here & is_defect, "score"], spread
            )
        if mode == "auto":
            out[r] = choose_region(evidence, min_auroc, margin)
        else:
            why = "kept: report.kind_choice is all"
            kinds = {k: {**e, "kept": True, "why": why} for k, e in evidence.items()}
            out[r] = {"kept": scored, "dropped": [], "reason": "every kind kept", "kinds": kinds}
    return out
