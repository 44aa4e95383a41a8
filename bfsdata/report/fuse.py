"""The fused decision of several models on the same patches: reject when any model rejects.

Each model scores the same patches; the fused score table has one column of the item matrix
per (model, region), or per (model, kind, region) where the model's own report chose kinds per
region (its thresholds.json `kind_choice`: the same kinds are kept and dropped here), so the
report's threshold machinery (`tables.fit_thresholds`, coordinate ascent judged per acquisition
and over runs) fits every threshold of every model JOINTLY on calib for the policy, and
`tables.strip_wise` judges the fused decision on test, unchanged: an item is rejected when any
column is over its threshold, which is "either rejects".

A column is the fused region `model index * STRIDE + column`, the column being the region or
`judging.kinds.kind_column(kind, region)`; `split_keyed` turns fused thresholds back into
{run: {region: t}} or {run: {kind: {region: t}}}, the forms thresholds.json and infer use.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from bfsdata.config.pipeline import KINDS
from bfsdata.judging.decisions import reject_items
from bfsdata.judging.kinds import KIND_STRIDE
from bfsdata.report import tables as rt
from bfsdata.report.kinds import nested

STRIDE = 1000  # fused region = model index * STRIDE + region; more regions than this is refused
KEYS = [*rt.ACQ, "kind", "frame", "vial", "region"]  # one patch of one acquisition


def fuse_scores(
    scored: dict[str, pd.DataFrame], choices: dict[str, dict[str, Any]] | None = None
) -> pd.DataFrame:
    """One score table with a region per (run, column); refused unless every run scored the
    same patches (the same calib/test split of the same store). choices: each run's
    `kind_choice` record (its thresholds.json); without one a run has a column per region."""
    if len(scored) < 2:
        raise ValueError(f"fusing needs two runs or more, got {list(scored)}")
    names = list(scored)
    first = scored[names[0]]
    if (first["region"] >= KIND_STRIDE).any() or (first["region"] < 0).any():
        raise ValueError(f"regions must lie in 0..{KIND_STRIDE - 1} to be fused")
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
        df = _columns(df, (choices or {}).get(name))
        parts.append(df.assign(region=df["region"] + i * STRIDE))
    return pd.concat(parts, ignore_index=True)


def _columns(df: pd.DataFrame, choice: dict[str, Any] | None) -> pd.DataFrame:
    """The run's patches with `region` its threshold column: the region, or by kind
    `kind_column(kind, region)` without the (kind, region)s its report dropped."""
    region = df["region"].astype("int64")
    if not choice or choice.get("thresholds_by") != "kind":
        return df.assign(region=region)
    kept = {(k, int(r)) for r, c in choice["regions"].items() for k in c["kept"]}
    keep = [(k, r) in kept for k, r in zip(df["kind"], region, strict=True)]
    col = (df["kind"].map(KINDS.index) + 1) * KIND_STRIDE + region
    return df.assign(region=col.astype("int64"))[keep]


def fit_fused(
    scored: dict[str, pd.DataFrame],
    policy: str,
    min_agree: int,
    choices: dict[str, dict[str, Any]] | None = None,
) -> tuple[rt.Kit, dict[str, rt.Thresholds]]:
    """The fused kit and its thresholds at each level, fitted jointly on calib."""
    kit = rt.prepare(fuse_scores(scored, choices))
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


def split_keyed(ts: rt.Thresholds, runs: list[str], by: str = "region") -> dict[str, Any]:
    """Fused thresholds per run, as each run's thresholds.json holds them (`kinds.nested`)."""
    out: dict[str, rt.Thresholds] = {r: {} for r in runs}
    for fused, t in sorted(ts.items()):
        out[runs[fused // STRIDE]][fused % STRIDE] = float(t)
    return {r: nested(t, by) for r, t in out.items()}
