"""`bfsdata.report.tables.fit_thresholds`: a budget policy is kept where re-tuning alone gets
stuck.

The synthetic scores are made in scores.py."""

from __future__ import annotations

import pandas as pd

from bfsdata.judging.decisions import reject_items, runwise
from bfsdata.judging.metrics import rates
from bfsdata.judging.thresholds import tune_thresholds
from bfsdata.report.tables import fit_thresholds, prepare
from tests.unit.report.scores import acquisitions, make_scores


def test_budget_policy_is_kept_where_retuning_alone_gets_stuck() -> None:
    """frr:0.05 per patch rejects nearly every 60-patch acquisition; coordinate ascent from
    there stays over budget, so fit_thresholds also starts from accept-all / reject-all."""
    parts = [
        make_scores(seed=k).assign(strip=lambda d, k=k: d["strip"] + f"_{k}") for k in range(10)
    ]
    calib = pd.concat(parts, ignore_index=True).query("split == 'calib'")
    kit = prepare(calib.assign(split="test"))
    ts = fit_thresholds(kit.test, kit.regions, "frr:0.05", 7)
    items, M, d = acquisitions(calib)
    stuck = tune_thresholds(M, d, ts["patch"], "frr:0.05")  # the paper's re-tuning alone
    assert rates(d, reject_items(M, stuck))["false_reject_rate"]["value"] > 0.05
    kept = rates(d, reject_items(M, ts["strip"]))
    assert kept["false_reject_rate"]["value"] <= 0.05 and kept["defect_rejected"] > 0
    table = runwise(items["strip"], reject_items(M, ts["run"]), d, min_agree=7)
    assert rates(table["is_defect"], table["rejected"])["false_reject_rate"]["value"] <= 0.05
