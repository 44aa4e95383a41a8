"""The fused decision of two models on hand-made scores with a known answer: model A sees only
the defects of even strips (D0, D2, D4), model B only those of odd ones (D1, D3, D5); each alone
misses a test defect, and "reject when either rejects" with joint thresholds catches all."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bfsdata.config.pipeline import ReportConfig
from bfsdata.report import fuse
from bfsdata.report import tables as rt
from bfsdata.report.compare import write_comparison
from tests.unit.report.scores import make_scores, run_report
from tests.unit.report.test_kinds import two_kinds

CFG = ReportConfig()


def model_scores(sees_even: bool) -> pd.DataFrame:
    """make_scores' patches with plain scores: 0.1 + 0.01 * region, and + 1 at the defect's
    cell of the strips this model sees (every run)."""
    df = make_scores()
    i = df["strip"].str[1].astype(int)
    hit = (
        df["strip"].str.startswith("D")
        & (df["vial"] == 1 + i % 5)
        & (df["region"] == i % 4)
        & ((i % 2 == 0) == sees_even)
    )
    return df.assign(score=0.1 + 0.01 * df["region"] + hit.astype(float))


@pytest.fixture(scope="module")
def scored() -> dict[str, pd.DataFrame]:
    return {"a": model_scores(True), "b": model_scores(False)}


def caught(kit: rt.Kit, ts: dict[str, rt.Thresholds]) -> set[str]:
    _, _, acq, _ = rt.strip_wise(kit.test, ts, kit.regions, CFG.alpha, CFG.min_agree)
    return set(acq.loc[acq["rejected"], "strip"])


def test_each_model_alone_misses_what_the_other_sees(scored) -> None:
    seen = {}
    for name, df in scored.items():
        kit = rt.prepare(df)
        seen[name] = caught(kit, rt.fit_thresholds(kit.fit, kit.regions, CFG.policy, 7))
    assert seen == {"a": {"D4"}, "b": {"D3", "D5"}}  # test half: D3, D4, D5


def test_fused_thresholds_catch_every_test_defect_and_no_good_strip(scored) -> None:
    kit, ts = fuse.fit_fused(scored, CFG.policy, CFG.min_agree)
    assert kit.regions == [0, 1, 2, 3, 1000, 1001, 1002, 1003]  # (run, region) columns
    assert caught(kit, ts) == {"D3", "D4", "D5"}
    judged = fuse.judge_fused(kit, ts, CFG.alpha, CFG.min_agree, "strip")
    assert judged["strip_wise"]["accuracy"]["value"] == 1.0
    assert judged["run_wise"]["escape_rate"]["value"] == 0.0
    keyed = fuse.split_keyed(ts["strip"], ["a", "b"])
    assert set(keyed) == {"a", "b"} and set(keyed["a"]) == {"0", "1", "2", "3"}
    # the columns a model's calib defects rise in: threshold between good and defect scores
    assert 0.1 < keyed["a"]["0"] < 1.1 and 0.11 < keyed["b"]["1"] < 1.11


def test_fused_thresholds_are_fitted_on_calib_only(scored) -> None:
    _, ts = fuse.fit_fused(scored, CFG.policy, CFG.min_agree)
    moved = {}
    for name, df in scored.items():
        test = (df["split"] == "test").to_numpy()
        noise = np.random.default_rng(3).uniform(0, 5, len(df)) * test
        moved[name] = df.assign(score=df["score"] + noise)
    assert fuse.fit_fused(moved, CFG.policy, CFG.min_agree)[1] == ts


def test_runs_scored_on_other_patches_or_splits_are_refused(scored) -> None:
    other = scored["b"].assign(split=scored["b"]["split"].replace({"calib": "test"}))
    with pytest.raises(ValueError, match="same calib/test split"):
        fuse.fuse_scores({"a": scored["a"], "b": other})
    with pytest.raises(ValueError, match="two runs or more"):
        fuse.fuse_scores({"a": scored["a"]})


def test_comparison_writes_the_table_and_fused_thresholds(scored, tmp_path: Path) -> None:
    metrics, thresholds = {}, {}
    cut = {"recipe": 1}
    for name, df in scored.items():
        s = run_report(tmp_path / name, df, cut=cut)
        metrics[name] = json.loads(s.paths["metrics"].read_text())
        thresholds[name] = json.loads(s.paths["thresholds"].read_text())
    out = write_comparison(tmp_path / "cmp", scored, metrics, thresholds, CFG)
    rows = {r["model"]: r for r in out["comparison"]}
    assert list(rows) == ["a", "b", "fused"]
    assert rows["fused"]["strip-wise accuracy"]["value"] == 1.0
    assert rows["a"]["strip-wise accuracy"]["value"] < 1.0
    assert rows["a"]["region_auroc"] == {
        r: v["auroc"] for r, v in metrics["a"]["region_wise"]["regions"].items()
    }
    th = json.loads((tmp_path / "cmp" / "thresholds.json").read_text())
    assert th["fused"] == ["a", "b"] and th["cut"] == cut
    assert th["strip"] == out["fused"]["thresholds"]["strip"]
    html = (tmp_path / "cmp" / "report.html").read_text()
    assert "Comparison: a, b" in html and "<td>fused</td>" in html
    thresholds["b"]["cut"] = {"recipe": 2}
    with pytest.raises(ValueError, match="cut differ"):
        write_comparison(tmp_path / "cmp2", scored, metrics, thresholds, CFG)
    assert not (tmp_path / "cmp2").exists()


def test_fused_decisions_cover_every_scored_acquisition(scored) -> None:
    kit, ts = fuse.fit_fused(scored, CFG.policy, CFG.min_agree)
    got = pd.DataFrame(fuse.decisions(kit, ts))
    assert len(got) == scored["a"].groupby(["strip", "run"]).ngroups
    rejected = set(got.loc[got["rejected"], "strip"])
    assert rejected == {f"D{i}" for i in range(6)}  # calib and test defects, no good or val strip
    assert set(got.loc[got["strip"] == "V0", "split"]) == {"val"}


def test_fused_runs_keep_the_kinds_their_own_reports_chose(tmp_path: Path) -> None:
    """Two runs scored on rank_min and rank_max, rank_max blind in R2: each run's report drops
    it there, and the fused thresholds judge each run by the same (kind, region)s."""
    scored = {"a": two_kinds(0), "b": two_kinds(1)}
    metrics, thresholds = {}, {}
    for name, df in scored.items():
        s = run_report(tmp_path / name, df, ReportConfig(kind_choice="auto"))
        metrics[name] = json.loads(s.paths["metrics"].read_text())
        thresholds[name] = json.loads(s.paths["thresholds"].read_text())
        assert thresholds[name]["kind_choice"]["regions"]["2"]["dropped"] == ["rank_max"]
    out = write_comparison(tmp_path / "cmp", scored, metrics, thresholds, CFG)
    th = json.loads((tmp_path / "cmp" / "thresholds.json").read_text())
    assert th["thresholds_by"] == "kind"
    for run in ("a", "b"):
        assert set(th["strip"][run]) == {"rank_min", "rank_max"}
        assert set(th["strip"][run]["rank_min"]) == {"0", "1", "2", "3"}
        assert set(th["strip"][run]["rank_max"]) == {"0", "1", "3"}  # dropped in R2, as alone
    kinds = out["fused"]["strip_wise"]["accuracy"]["value"]
    # pooled, each run's R2 threshold is set by rank_max's random scores: defects there escape
    kit, ts = fuse.fit_fused(scored, CFG.policy, CFG.min_agree)
    pooled = fuse.judge_fused(kit, ts, CFG.alpha, CFG.min_agree, "strip")
    assert kinds >= 0.95 and kinds > pooled["strip_wise"]["accuracy"]["value"] + 0.1
