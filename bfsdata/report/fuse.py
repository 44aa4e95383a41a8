"""The fused decision of several models on the same patches: reject when any model rejects.

Each model scores the same patches; the fused score table has one column of the item matrix
per (model, region), so the report's threshold machinery (`tables.fit_thresholds`, coordinate
ascent judged per acquisition and over runs) fits every threshold of every model JOINTLY on calib
for the policy, and `tables.strip_wise` judges the fused decision on test, unchanged: an item is
rejected when any (model, region) column is over its threshold, which is "either rejects".

A (model, region) column is the fused region `model index * STRIDE + region`; `split_keyed`
turns fused thresholds back into {run: {region: t}}, the form thresholds.json and infer use.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from bfsdata.judging.decisions import reject_items
from bfsdata.report import tables as rt

STRIDE = 1000  # fused region = model index * STRIDE + region; more regions than this is refused
KEYS = [*rt.ACQ, "kind", "frame", "vial", "region"]  # one patch of one acquisition


def fuse_scores(scored: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One score table with a region per (run, region); refused unless every run scored the
    same patches (the same calib/test split of the same store)."""
    if len(scored) < 2:
        raise ValueError(f"fusing needs two runs or more, got {list(scored)}")
    names = list(scored)
    first = scored[names[0]]
    if (first["region"] >= STRIDE).any() or (first["region"] < 0).any():
        raise ValueError(f"regions must lie in 0..{STRIDE - 1} to be fused")
    want = first[[*KEYS, "split"]].sort_values(KEYS).reset_index(drop=True)
    parts = []
    for i, name in enumerate(names):
        df = scored[name]
        got = df[[*KEYS, "split"]].sort_values(KEYS).reset_index(drop=True)
        if not got.equals(want):
            raise ValueError(
                f"runs {names[0]!r} and {name!r} were not scored on the same patches and splits; "
                "a fused decision needs both judged on the same calib/test split"
            )
        parts.append(df.assign(region=df["region"].astype("int64") + i * STRIDE))
    return pd.concat(parts, ignore_index=True)


def fit_fused(
    scored: dict[str, pd.DataFrame], policy: str, min_agree: int
) -> tuple[rt.Kit, dict[str, rt.Thresholds]]:
    """The fused kit and its thresholds at each level, fitted jointly on calib."""
    kit = rt.prepare(fuse_scores(scored))
    return kit, rt.fit_thresholds(kit.fit, kit.regions, policy, min_agree)


def judge_fused(
    kit: rt.Kit, ts: dict[str, rt.Thresholds], alpha: float, min_agree: int, item: str
) -> dict[str, Any]:
    """The fused decision judged on test: strip-wise (or image-wise) and run-wise rates, the
    latter None with one run per item."""
    t2, t3, _, strips = rt.strip_wise(kit.test, ts, kit.regions, alpha, min_agree)
    once = rt.single_run(strips, item)
    return {"strip_wise": t2, "run_wise": None if once else t3, "single_run": once}


def decisions(kit: rt.Kit, ts: dict[str, rt.Thresholds]) -> list[dict[str, Any]]:
    """The fused strip-level decision of every scored acquisition (val, calib and test), the
    decision `infer` with the fused thresholds gives the same acquisition."""
    rows = pd.concat([kit.val, kit.test, kit.fit])
    rows = rows[~rows.index.duplicated()]  # in-sample, fit is test
    items, M = rt.acquisitions(rows, kit.regions)
    split = rows.groupby(rt.ACQ)["split"].first()
    items["split"] = split.reindex(pd.MultiIndex.from_frame(items[rt.ACQ])).to_numpy()
    items["rejected"] = reject_items(M, ts["strip"])
    return rt.records(items[[*rt.ACQ, "split", "rejected"]])


def split_keyed(ts: rt.Thresholds, runs: list[str]) -> dict[str, dict[str, float]]:
    """Fused thresholds as {run: {region: t}} (region keys are strings, as JSON needs)."""
    out: dict[str, dict[str, float]] = {r: {} for r in runs}
    for fused, t in sorted(ts.items()):
        out[runs[fused // STRIDE]][str(fused % STRIDE)] = float(t)
    return out
