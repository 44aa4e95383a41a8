"""The validation tables from scored patches: pure functions, DataFrames in, plain dicts out.

Four levels of items, each judged with its own thresholds (paper section 7.4):

- patch (Table 1): one patch of one test image (a frame or a rank image); its label is
  `defect_here` (a good strip's patches are all good). Patches of defective strips without
  annotation (`defect_here` null) have no patch label and are left out of the patch and vial
  figures; they are counted.
- vial (Table 1's "Vial" column): the 4 regions of one vial in one image, rejected when any
  region scores over its patch threshold, defective when any of its patches is.
- strip (Table 2): one acquisition (strip, run), all its patches (3 frames x 5 vials x 4 regions
  in the paper), rejected when any patch scores over its region's strip threshold (eq. 13).
- run (Table 3): one strip over its runs, judged by `decisions.runwise` with the run thresholds.

Image folders (`item` "image") are the same tables: an acquisition is one image, its patches are
tiles (vial = tile column, region = tile row) and the strip level is per image (the max over an
image's patches). With one run per item there is no run-wise decision and no Knapp table.

Rates are `metrics.rates` dicts; an AUROC that mixes regions is taken on the item's margin
max_r(score_r - threshold_r), the quantity whose sign decides the item.

Thresholds are per threshold column (`column`): the region, one threshold over every kind of
image, until `report.kinds.by_kind` gives each (kind, region) its own column
(`judging.kinds.kind_column`); every table below reads thresholds by column and places patches
by their `region`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bfsdata.config.pipeline import KINDS
from bfsdata.judging.decisions import (
    reject_items,
    runwise,
    runwise_decider,
    threshold_vector,
)
from bfsdata.judging.kinds import column_kind
from bfsdata.judging.metrics import auroc, rates
from bfsdata.judging.thresholds import (
    cut_points,
    fit_region_thresholds,
    item_matrix,
    objective,
    tune_thresholds,
)
from bfsdata.workspace.manifest import PATCHES

REGION_NAMES = {0: "R0 flag", 1: "R1 upper body", 2: "R2 liquid", 3: "R3 bottom"}
SPLITS = ("val", "calib", "test")
ACQ = ["strip", "run"]  # a strip-wise item: the product inspected once
VIAL = ["strip", "run", "kind", "frame", "vial"]
BOX = ["y0", "x0", "y1", "x1"]  # crop box in the source frame, px
Thresholds = dict[int, float]


LEVEL = {"strip": "strip-wise", "image": "image-wise"}  # item -> name of Table 2's level


def region_name(column: int, item: str = "strip") -> str:
    """A threshold column's name: the region's, with its kind when it has one."""
    kind, r = column_kind(column)
    name = f"tile row {r}" if item == "image" else REGION_NAMES.get(r, f"R{r}")
    return name if kind is None else f"{name}, {kind}"


def single_run(strips: pd.DataFrame, item: str = "strip") -> str | None:
    """Why the run-wise and Knapp levels are left out, when every strip has one run; else None."""
    if not (strips["runs"] == 1).all():
        return None
    return (
        f"run-wise and Knapp sections left out: every {item} was inspected once (one run each), "
        f"so there is no k-of-n runs decision and no Knapp quality factor; judge the {item}-wise "
        "figures"
    )


@dataclass(frozen=True)
class Kit:
    """Scored patches divided by role; `is_defect` (patch label, nullable), `strip_defect`
    (strip label) and `column` (threshold column, the region until `kinds.by_kind`) added.
    Without calib rows the thresholds are fitted on test (in-sample)."""

    fit: pd.DataFrame
    test: pd.DataFrame
    val: pd.DataFrame
    regions: list[int]  # the threshold columns, sorted
    in_sample: bool


def prepare(scores: pd.DataFrame) -> Kit:
    need = [*PATCHES.names, "split", "score"]
    missing = [c for c in need if c not in scores.columns]
    if missing:
        raise ValueError(
            f"scores lack columns {missing}; expected the patches manifest + split, score"
        )
    df = scores.reset_index(drop=True).copy()
    checks = [
        (~df["kind"].isin(KINDS), "kind", f"are not {'|'.join(KINDS)}"),
        (~df["label"].isin(["good", "defect"]), "label", "are not good|defect"),
        (~df["split"].isin(SPLITS), "split", f"are not {'|'.join(SPLITS)}"),
        (df["score"].isna(), "score", "are NaN (score every patch first)"),
    ]
    for bad, col, what in checks:
        if bad.any():
            seen = sorted(map(str, df.loc[bad, col].unique()))[:3]
            raise ValueError(
                f"scores: {int(bad.sum())} rows of column {col!r} {what} (e.g. {seen})"
            )
    df["strip_defect"] = df["label"].eq("defect")
    here = df["defect_here"].astype("boolean")
    if (here.fillna(False) & ~df["strip_defect"]).any():
        raise ValueError("scores: patches of good strips have defect_here True; check labels.csv")
    df["is_defect"] = here.where(df["strip_defect"], False)  # NA: defective, not annotated
    df["column"] = df["region"].astype("int64")
    regions = sorted(int(r) for r in df["region"].unique())
    calib, test = df[df["split"] == "calib"], df[df["split"] == "test"]
    if test.empty:
        raise ValueError(
            f"scores have no test rows ({len(calib)} calib rows): thresholds are judged on test; "
            "split with a test share > 0"
        )
    in_sample = calib.empty
    return Kit(calib if not in_sample else test, test, df[df["split"] == "val"], regions, in_sample)


def known(df: pd.DataFrame) -> pd.DataFrame:
    """Patches with a patch label, `is_defect` as plain bool."""
    out = df[df["is_defect"].notna()].copy()
    out["is_defect"] = out["is_defect"].astype(bool)
    return out


def acquisitions(df: pd.DataFrame, regions: list[int]) -> tuple[pd.DataFrame, np.ndarray]:
    """Strip-wise items: (strip, run, strip_defect) and M (n_acq, n_regions), eq. 13."""
    return item_matrix(df, ACQ, "column", regions=regions, label_col="strip_defect")


def fit_thresholds(
    fit: pd.DataFrame, regions: list[int], policy: str, min_agree: int
) -> dict[str, Thresholds]:
    """The policy's thresholds at each level, fitted on `fit`.

    patch: per-region optimum on labelled patches (Table 1). strip: coordinate ascent judged
    per acquisition (Table 2); run: coordinate ascent judged by the run-wise rule (Table 3).
    Coordinate ascent finds a local optimum, and a budget policy (frr:X, escape:X) started
    where the budget is broken can stay broken: 5% false rejects per patch is nearly every
    acquisition rejected, and no single region can repair that. So each level starts from the
    level below (the paper's re-tuning) and also from "accept all" and "reject all", which meet
    any frr and any escape budget, and keeps the best by the policy (the level below on ties).
    """
    lab = known(fit)
    patch = fit_region_thresholds(lab, policy, region_col="column")
    absent = [r for r in regions if r not in patch]
    if absent:
        raise ValueError(
            f"no labelled fit patches in regions {absent}: cannot fit their thresholds"
        )
    items, M = acquisitions(fit, regions)
    d = items["strip_defect"].to_numpy(bool)
    cuts = [cut_points(M[:, j]) for j in range(len(regions))]
    ends = [{r: float(c[k]) if c.size else 0.0 for r, c in zip(regions, cuts, strict=True)}
            for k in (-1, 0)]  # fmt: skip
    strip = _best_start(M, d, [patch, *ends], policy, None)
    decide = runwise_decider(items["strip"].to_numpy(), d, min_agree=min_agree)
    run = _best_start(M, None, [strip, *ends], policy, decide)
    return {"patch": patch, "strip": strip, "run": run}


def _best_start(
    M: np.ndarray, d: np.ndarray | None, starts: list[Thresholds], policy: str, decide: Any
) -> Thresholds:
    best: tuple[Any, Thresholds] | None = None
    for start in starts:
        t = tune_thresholds(M, d, start, policy, decide=decide)
        rejected = reject_items(M, t)
        key = objective(policy, *(decide(rejected) if decide else (d, rejected)))
        if best is None or key > best[0]:
            best = (key, t)
    assert best is not None
    return best[1]


def _margin(M: np.ndarray, t: Thresholds) -> np.ndarray:
    return (M - threshold_vector(t, M.shape[1])).max(axis=1)  # (n_items,), > 0: rejected


def region_wise(
    df: pd.DataFrame,
    t: Thresholds,
    regions: list[int],
    alpha: float,
    ms_per_patch: float,
    item: str = "strip",
) -> dict[str, Any]:
    """Table 1: per region, all patches pooled, the vial column and each vial position."""
    lab = known(df)
    out: dict[str, Any] = {"regions": {}}
    for r in regions:
        g = lab[lab["column"] == r]
        d, s = g["is_defect"].to_numpy(bool), g["score"].to_numpy(float)
        out["regions"][str(r)] = {
            "name": region_name(r, item),
            "threshold": t[r],
            **rates(d, s > t[r], alpha),
            "auroc": auroc(d, s),
            "ms_per_patch": ms_per_patch,
        }
    over = lab["score"].to_numpy(float) > lab["column"].map(t).to_numpy(float)
    out["patches"] = rates(lab["is_defect"].to_numpy(bool), over, alpha)
    # a vial with any unlabelled patch has no vial label: leave it out whole
    na = df["is_defect"].isna()
    whole = ~na.groupby([df[c] for c in VIAL]).transform("any")
    vials, M = item_matrix(known(df[whole]), VIAL, "column", regions=regions, label_col="is_defect")
    d, rej = vials["is_defect"].to_numpy(bool), reject_items(M, t)
    out["vial"] = {**rates(d, rej, alpha), "auroc": auroc(d, _margin(M, t)) if len(d) else None}
    pos = vials["vial"].to_numpy()
    out["by_vial"] = {str(int(v)): rates(d[pos == v], rej[pos == v], alpha) for v in np.unique(pos)}
    unl = df[df["is_defect"].isna()]
    out["left_out"] = {"patches": len(unl), "strips": int(unl["strip"].nunique())}
    return out


def strip_wise(
    df: pd.DataFrame, ts: dict[str, Thresholds], regions: list[int], alpha: float, min_agree: int
) -> tuple[dict[str, Any], dict[str, Any], pd.DataFrame, pd.DataFrame]:
    """Table 2 (acquisitions, strip thresholds) and Table 3 (strips over runs, run thresholds).

    Returns (table2, table3, acquisitions, strips): one row per acquisition with rejected and
    margin under both threshold sets and its worst patch; one row per strip (`runwise` output).
    """
    items, M = acquisitions(df, regions)
    d = items["strip_defect"].to_numpy(bool)
    items["label"] = np.where(d, "defect", "good")
    items["rejected"] = reject_items(M, ts["strip"])
    items["margin"] = _margin(M, ts["strip"])
    items["rejected_run"] = reject_items(M, ts["run"])
    t2 = {"thresholds": keyed(ts["strip"]), **rates(d, items["rejected"], alpha)}
    t2["auroc"] = auroc(d, items["margin"])
    strips = runwise(items["strip"], items["rejected_run"], d, min_agree=min_agree)
    t3 = {"thresholds": keyed(ts["run"]), "min_agree": min_agree}
    t3 |= rates(strips["is_defect"], strips["rejected"], alpha)
    t3["decisions"] = {k: int(v) for k, v in strips["decision"].value_counts().items()}
    worst = worst_patches(df, ts["strip"])
    items = items.merge(worst[[*ACQ, "acq", "kind", "frame", "vial", "region", "score"]], on=ACQ)
    return t2, t3, items, strips


def worst_patches(df: pd.DataFrame, t: Thresholds, by: list[str] = ACQ) -> pd.DataFrame:
    """The patch with the largest score - threshold of each group, with that margin."""
    g = df.assign(margin=df["score"] - df["column"].map(t)).reset_index(drop=True)
    return g.loc[g.groupby(by)["margin"].idxmax()].reset_index(drop=True)


def val_false_rejects(
    val: pd.DataFrame, ts: dict[str, Thresholds], regions: list[int], alpha: float, min_agree: int
) -> dict[str, Any] | None:
    """Extra false-reject estimate on val (good strips never used for thresholds)."""
    if val.empty:
        return None
    lab = known(val)
    over = lab["score"].to_numpy(float) > lab["column"].map(ts["patch"]).to_numpy(float)
    items, M = acquisitions(val, regions)
    d = items["strip_defect"].to_numpy(bool)
    strips = runwise(items["strip"], reject_items(M, ts["run"]), d, min_agree=min_agree)
    return {
        "patch": rates(lab["is_defect"].to_numpy(bool), over, alpha),
        "strip": rates(d, reject_items(M, ts["strip"]), alpha),
        "run": rates(strips["is_defect"], strips["rejected"], alpha),
    }


def keyed(t: Thresholds) -> dict[str, float]:
    return {str(r): float(v) for r, v in sorted(t.items())}


def records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as plain-Python dicts (numpy scalars unwrapped, NA as None)."""
    out = df.astype(object).where(df.notna(), None).to_dict(orient="records")
    return [{k: v.item() if isinstance(v, np.generic) else v for k, v in r.items()} for r in out]
