"""`bfsdata.report.write.write_report` on synthetic scores: thresholds fitted on calib and judged
on test, the paper's three tables, the gallery, the Knapp efficiency, the terminal summary,
in-sample runs, re-runs and refusals.

The synthetic scores are made in scores.py, the shared report `done` in conftest.py."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from bfsdata.config.pipeline import ReportConfig
from bfsdata.judging.decisions import knapp, reject_items, runwise, runwise_decider
from bfsdata.judging.metrics import rates
from bfsdata.judging.thresholds import fit_region_thresholds, tune_thresholds
from tests.unit.report.scores import (
    THRESHOLD_KEYS,
    TIMING,
    acquisitions,
    by_region,
    fake_gallery,
    labelled,
    make_scores,
    run_report,
    strip_image,
)


def test_thresholds_json_is_the_calib_fit(done) -> None:
    df, th = done["df"], done["thresholds"]
    assert set(th) == THRESHOLD_KEYS
    assert (th["policy"], th["min_agree"], th["fitted_on"], th["model_run"]) == (
        "accuracy", 7, "calib", "r1"
    )  # fmt: skip
    assert (th["regions"], th["vials"], th["frames"], th["kinds"], th["patch_size"]) == (
        [0, 1, 2, 3], 5, [0, 7, 15], ["frame"], 16
    )  # fmt: skip
    calib = df[df["split"] == "calib"]
    patch = fit_region_thresholds(labelled(calib), "accuracy")
    assert by_region(th["patch"]) == patch
    items, M, d = acquisitions(calib)
    strip = tune_thresholds(M, d, patch, "accuracy")
    assert by_region(th["strip"]) == strip
    decide = runwise_decider(items["strip"].to_numpy(), d, min_agree=7)
    assert by_region(th["run"]) == tune_thresholds(M, None, strip, "accuracy", decide=decide)
    assert done["metrics"]["thresholds"] == {k: th[k] for k in ("patch", "strip", "run")}


def test_tables_equal_a_direct_computation_on_test(done) -> None:
    df, m, th = done["df"], done["metrics"], done["thresholds"]
    test = df[df["split"] == "test"]
    assert not m["in_sample"] and m["evaluated_on"] == "test"
    # Table 1, region R3: patches of the annotated strips only
    lab = labelled(test)
    g = lab[lab["region"] == 3]
    r3 = rates(g["is_defect"], g["score"] > th["patch"]["3"])
    assert {k: m["region_wise"]["regions"]["3"][k] for k in r3} == r3
    assert m["region_wise"]["left_out"] == {"patches": 600, "strips": 1}  # D5, 10 x 60
    # Table 2: acquisitions with the strip thresholds
    items, M, d = acquisitions(test)
    t2 = rates(d, reject_items(M, by_region(th["strip"])))
    assert {k: m["strip_wise"][k] for k in t2} == t2
    assert m["strip_wise"]["ms_per_strip"] == 40.0  # batch of 60 = one acquisition
    # Table 3: strips over their runs with the run thresholds, 7 of 10
    table = runwise(items["strip"], reject_items(M, by_region(th["run"])), d, min_agree=7)
    t3 = rates(table["is_defect"], table["rejected"])
    assert {k: m["run_wise"][k] for k in t3} == t3
    assert m["headline"]["run-wise accuracy"] == t3["accuracy"]
    wrong = table.loc[~table["correct"], "strip"].tolist()
    assert [r["strip"] for r in m["misclassified"]["strips"]] == wrong
    # val: good strips never used for thresholds give an extra false-reject estimate
    assert m["val"]["strip"]["n_good"] == 20 and m["val"]["strip"]["n_defect"] == 0
    assert m["counts"]["test"] == {
        "patches": 3600, "acquisitions": 60, "good_strips": 3, "defect_strips": 3
    }  # fmt: skip


def test_gallery_shows_the_most_anomalous_and_every_misjudged_strip(done) -> None:
    m, df = done["metrics"], done["df"]
    picks = m["gallery"]
    (rows,) = done["calls"]  # the model is asked once, for exactly the picked store rows
    assert rows.tolist() == [p["patch"] for p in picks]
    wrong = [r["strip"] for r in m["misclassified"]["strips"]]
    assert wrong and [p["strip"] for p in picks[: len(wrong)]] == wrong  # misjudged first
    assert {p["reason"] for p in picks[len(wrong) :]} == {"most anomalous"}
    assert len({p["strip"] for p in picks}) == len(picks) == 6  # one per test strip, n = 12
    for p in picks:
        if p["reason"].startswith("escape") and p["strip"] != "D5":  # the annotated patch
            assert df.loc[p["patch"], "defect_here"]
    files = sorted(f.name for f in (done["dir"] / "heatmaps").glob("*.png"))
    assert files == sorted({Path(p["file"]).name for p in picks})
    png = cv2.imread(str(done["dir"] / picks[0]["file"]))
    assert png is not None and png.shape[1] > png.shape[0]  # a row of panels


def test_manual_knapp_efficiency_through_the_report(done) -> None:
    m, th = done["metrics"], done["thresholds"]
    test = done["df"][done["df"]["split"] == "test"]
    items, M, d = acquisitions(test)
    table = runwise(items["strip"], reject_items(M, by_region(th["run"])), d, min_agree=7)
    manual = done["manual"][done["manual"]["strip"].isin(table["strip"])]
    want = knapp(table, manual)
    assert m["knapp"]["efficiency"] == want["efficiency"] and m["knapp"]["pass"] == want["pass"]
    assert m["knapp"]["manual_rows_outside_kit"] == 8  # calib and val strips
    bad = (table["zone"] == "reject") & ~table["is_defect"]
    assert m["knapp"]["good_in_reject_zone"] == int(bad.sum()) == 1  # G5, noisy
    assert "sit in the machine's reject zone" in done["html"]
    assert done["summary"].knapp_efficiency == want["efficiency"]
    assert any("Knapp efficiency" in line for line in done["summary"].lines())


def test_summary_lines(done) -> None:
    s = done["summary"]
    lines = s.lines()
    assert "fitted on calib" in lines[0]
    assert any(line.strip().startswith("strip-wise: accuracy") for line in lines)
    assert any(line.strip().startswith("run-wise: accuracy") for line in lines)
    assert s.headline["strip-wise accuracy"] == done["metrics"]["strip_wise"]["accuracy"]
    assert s.left_out_patches == 600 and not s.in_sample
    assert set(s.paths) == {"metrics", "thresholds", "html", "heatmaps"}


def test_without_calib_everything_says_in_sample(tmp_path: Path) -> None:
    df = make_scores(calib=False)
    s = run_report(tmp_path, df)
    m = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    th = json.loads((tmp_path / "rep" / "thresholds.json").read_text())
    assert s.in_sample and m["in_sample"] and th["fitted_on"] == "test (in-sample)"
    for key in ("region_wise", "strip_wise", "run_wise", "knapp"):
        assert m[key]["in_sample"] and m[key]["judged_on"] == "test (in-sample)"
    assert by_region(th["patch"]) == fit_region_thresholds(
        labelled(df[df["split"] == "test"]), "accuracy"
    )
    html = (tmp_path / "rep" / "report.html").read_text()
    assert 'class="banner">IN-SAMPLE' in html and html.count("(in-sample)</span>") == 11
    assert "Images unavailable" in html and not list((tmp_path / "rep").rglob("*.png"))
    assert "IN-SAMPLE" in s.lines()[0] and any("IN-SAMPLE" in n for n in m["notes"])


def test_the_score_is_named_where_a_reader_meets_it(tmp_path: Path) -> None:
    """The exported model's score share reaches metrics.json, thresholds.json and the HTML."""
    from bfsdata.score import score_label

    export = tmp_path / "runs" / "r1" / "export"
    export.mkdir(parents=True)
    (export / "model.json").write_text(json.dumps({"patch_size": 16}))  # before score_share
    assert score_label(export.parent) == "1 - SSIM"
    (export / "model.json").write_text(json.dumps({"patch_size": 16, "score_share": 0.01}))
    name = score_label(export.parent)
    assert name == "1 - SSIM, worst 1% of the map"
    run_report(tmp_path, make_scores(), score_name=name)
    m = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    th = json.loads((tmp_path / "rep" / "thresholds.json").read_text())
    assert m["score"] == name and f"score ({name}) >" in th["rule"]
    assert f"score {name}," in (tmp_path / "rep" / "report.html").read_text()


def test_rerun_is_atomic_and_drops_stale_panels(tmp_path: Path) -> None:
    df = make_scores()
    run_report(tmp_path, df, gallery=fake_gallery([]))
    assert list((tmp_path / "rep" / "heatmaps").glob("*.png"))
    untimed = {**TIMING, "per_batch_ms": dict.fromkeys(("mean", "p50", "p99"))}  # no batch timed
    s = run_report(tmp_path, df, cfg=ReportConfig(policy="escape:0", gallery=0), timing=untimed)
    assert not list((tmp_path / "rep" / "heatmaps").glob("*.png"))  # no model, no panels
    assert not [p for p in (tmp_path / "rep").rglob("*") if p.name.endswith(".tmp")]
    m = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert m["policy"] == "escape:0" and m["knapp"]["efficiency"] is None
    assert m["timing"]["fits_slot"] is None and s.ms_per_strip is None
    assert any("no inference time" in n for n in s.notes)
    assert "was not measured" in (tmp_path / "rep" / "report.html").read_text()


def _bad(df: pd.DataFrame, what: str) -> pd.DataFrame:
    df = df.copy()
    if what == "column":
        return df.drop(columns="score")
    if what == "kind":
        df.loc[0, "kind"] = "mask"
    elif what == "label":
        df.loc[0, "label"] = "unknown"
    elif what == "nan":
        df.loc[0, "score"] = np.nan
    elif what == "good_defect":
        df.loc[df["strip"] == "G0", "defect_here"] = True
    elif what == "no_test":
        df = df[df["split"] != "test"]
    return df


def test_rank_images_are_test_images_like_frames(tmp_path: Path) -> None:
    """acquisition.test_kinds [frame, rank_max] pooled (report.kind_choice pooled): the rank
    image's patches are one more image of each acquisition; every table takes them in,
    thresholds.json names both kinds. Thresholds per kind: tests/unit/report/test_kinds.py."""
    df = make_scores()
    rank = df[df["frame"] == 0].assign(kind="rank_max", frame=-1)
    rank["score"] += 0.002  # differs from frame 0's, so a table that drops it shows
    df = pd.concat([df, rank.assign(patch=rank["patch"] + len(df))], ignore_index=True)
    cfg = ReportConfig(kind_choice="pooled")
    kw = {"gallery": fake_gallery([]), "strip_image": strip_image, "patch_size": 16}
    run_report(tmp_path, df, cfg, **kw)
    th = json.loads((tmp_path / "rep" / "thresholds.json").read_text())
    m = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert (th["frames"], th["kinds"]) == ([0, 7, 15], ["frame", "rank_max"])
    assert th["thresholds_by"] == "region" and th["kind_choice"]["regions"] == {}
    _, M, d = acquisitions(df[df["split"] == "test"])
    t2 = rates(d, reject_items(M, by_region(th["strip"])))
    assert {k: m["strip_wise"][k] for k in t2} == t2
    vials = m["region_wise"]["vial"]
    assert vials["n"] == 5 * 10 * 4 * 5  # 5 annotated test strips x 10 runs x 4 images x 5 vials
    assert any(p["kind"] == "rank_max" for p in m["gallery"])
    html = (tmp_path / "rep" / "report.html").read_text()
    assert "rank_max, vial" in html


@pytest.mark.parametrize(
    "what, match",
    [
        ("column", r"scores lack columns \['score'\]"),
        ("kind", "rows of column 'kind' are not frame|rank_min|rank_max"),
        ("label", "rows of column 'label' are not good|defect"),
        ("nan", "rows of column 'score' are NaN"),
        ("good_defect", "patches of good strips have defect_here True"),
        ("no_test", "scores have no test rows"),
    ],
)
def test_bad_scores_are_refused(tmp_path: Path, what: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        run_report(tmp_path, _bad(make_scores(), what))
    assert not (tmp_path / "rep").exists()  # nothing half-written


def test_bad_config_and_gallery(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown threshold policy"):
        ReportConfig(policy="best")
    with pytest.raises(ValueError, match=r"min_agree: must be 6\.\.10"):
        ReportConfig(min_agree=5)
    with pytest.raises(ValueError, match="alpha"):
        dataclasses.replace(ReportConfig(), alpha=1.5)

    def broken(rows: np.ndarray) -> dict[str, np.ndarray]:
        return {"x": np.zeros((rows.size, 8, 8)), "reconstruction": np.zeros((1, 8, 8))}

    with pytest.raises(ValueError, match="gallery must return 'reconstruction'"):
        run_report(tmp_path, make_scores(), gallery=broken)
    assert not (tmp_path / "rep").exists()
