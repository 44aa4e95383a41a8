"""The report stage: thresholds fitted on calib and judged on test, the paper's three tables, the
Knapp table, the self-contained HTML page and the terminal summary, on synthetic scores."""

from __future__ import annotations

import dataclasses
import json
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from bfsdata.config.pipeline import ReportConfig
from bfsdata.judging.decisions import knapp, reject_items, runwise, runwise_decider
from bfsdata.judging.metrics import rates
from bfsdata.judging.thresholds import fit_region_thresholds, item_matrix, tune_thresholds
from bfsdata.report.html import SECTIONS
from bfsdata.report.tables import fit_thresholds, knapp_section, prepare, timing_section
from bfsdata.report.write import write_report

TIMING = {
    "batch": 60,
    "per_batch_ms": {"mean": 40.0, "p50": 39.0, "p99": 55.0},
    "per_patch_ms": {"mean": 0.67, "p50": 0.65, "p99": 0.92},
    "warmup_batches": 3,
    "device": "cpu",
    "patches": 8400,
}
# defective strip -> chance its defect shows in a run: D2 and D4 are the hard ones (grey zone)
VISIBLE = {"D0": 1.0, "D1": 0.9, "D2": 0.5, "D3": 1.0, "D4": 0.45, "D5": 1.0}
THRESHOLD_KEYS = {
    "format", "policy", "min_agree", "regions", "vials", "frames", "kinds", "patch_size", "patch",
    "strip", "run", "rule", "model_run", "fitted_on", "created_at", "bfsdata_version",
}  # fmt: skip


def make_scores(calib: bool = True, seed: int = 0) -> pd.DataFrame:
    """6 good + 6 defective strips (halves calib/test) and 2 val strips, 10 runs x 3 frames x
    5 vials x 4 regions. A defect lies in one vial/region and raises its score in the runs it
    shows in; D5 is not annotated (defect_here null); G5 is a noisy good strip."""
    rng = np.random.default_rng(seed)
    strips = [*(f"G{i}" for i in range(6)), *VISIBLE, "V0", "V1"]
    rows = []
    for si, s in enumerate(strips):
        i, defect = int(s[1:]), s.startswith("D")
        split = "val" if s[0] == "V" else ("calib" if calib and i < 3 else "test")
        where = (1 + i % 5, i % 4)
        sd = 0.008 if s == "G5" else 0.004
        for run in range(1, 11):
            shows = defect and rng.random() < VISIBLE[s]
            for f in (0, 7, 15):
                for v in range(1, 6):
                    for r in range(4):
                        hit = defect and (v, r) == where
                        score = 0.02 + 0.01 * r + rng.normal(0, sd)
                        score += rng.uniform(0.01, 0.05) if hit and shows else 0.0
                        rows.append(
                            (si * 10 + run - 1, s, run, f, v, r, "defect" if defect else "good",
                             None if s == "D5" else hit, 60 * r, 50 * v, 60 * r + 60, 50 * v + 50,
                             split, score)
                        )  # fmt: skip
    cols = ["acq", "strip", "run", "frame", "vial", "region", "label", "defect_here"]
    df = pd.DataFrame(rows, columns=[*cols, "y0", "x0", "y1", "x1", "split", "score"])
    df["defect_here"] = df["defect_here"].astype("boolean")
    df.insert(0, "patch", np.arange(len(df), dtype=np.int64))
    return df.assign(kind="frame", dy=np.float32(0), dx=np.float32(0), angle=np.float32(0))


def labelled(df: pd.DataFrame) -> pd.DataFrame:
    """Patches with a patch label, as the report sees them."""
    out = df[df["defect_here"].notna()].copy()
    out["is_defect"] = out["defect_here"].astype(bool)
    return out


def acquisitions(df: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    d = df.assign(strip_defect=df["label"] == "defect")
    items, M = item_matrix(d, ["strip", "run"], label_col="strip_defect")
    return items, M, items["strip_defect"].to_numpy(bool)


def fake_gallery(calls: list) -> object:
    def gallery(rows: np.ndarray) -> dict[str, np.ndarray]:
        calls.append(rows)
        rng = np.random.default_rng(1)
        x = rng.random((rows.size, 16, 16), dtype=np.float32)  # (N, P, P) in [0, 1]
        rec = np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1).astype(np.float32)
        return {"x": x, "reconstruction": rec, "heatmap": np.abs(x - rec) / np.abs(x - rec).max()}

    return gallery


def strip_image(acq: int, kind: str, frame: int) -> np.ndarray:
    return np.full((300, 320), 90 + frame, np.uint8)  # (H, W): boxes lie inside it


def run_report(
    out: Path, df: pd.DataFrame, cfg: ReportConfig | None = None, timing: dict = TIMING, **kw
):
    return write_report(
        out / "ws", "r1", df, timing, cfg or ReportConfig(), out_dir=out / "rep", **kw
    )


@pytest.fixture(scope="module")
def done(tmp_path_factory: pytest.TempPathFactory):
    """One full report (calib + test, manual Knapp file, a model for the gallery)."""
    out = tmp_path_factory.mktemp("report")
    df = make_scores()
    strips = sorted(df["strip"].unique())
    manual = pd.DataFrame({"strip": strips, "rejections": 3, "inspections": 30})
    manual.loc[manual["strip"].str.startswith("D"), "rejections"] = 24  # FQV 8: reject zone
    calls: list = []
    summary = run_report(
        out, df, manual=manual, gallery=fake_gallery(calls), strip_image=strip_image, patch_size=16
    )
    rep = out / "rep"
    return {
        "df": df,
        "manual": manual,
        "summary": summary,
        "calls": calls,
        "dir": rep,
        "metrics": json.loads((rep / "metrics.json").read_text()),
        "thresholds": json.loads((rep / "thresholds.json").read_text()),
        "html": (rep / "report.html").read_text(),
    }


def _regions(t: dict[str, float]) -> dict[int, float]:
    return {int(k): v for k, v in t.items()}


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
    assert _regions(th["patch"]) == patch
    items, M, d = acquisitions(calib)
    strip = tune_thresholds(M, d, patch, "accuracy")
    assert _regions(th["strip"]) == strip
    decide = runwise_decider(items["strip"].to_numpy(), d, min_agree=7)
    assert _regions(th["run"]) == tune_thresholds(M, None, strip, "accuracy", decide=decide)
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
    t2 = rates(d, reject_items(M, _regions(th["strip"])))
    assert {k: m["strip_wise"][k] for k in t2} == t2
    assert m["strip_wise"]["ms_per_strip"] == 40.0  # batch of 60 = one acquisition
    # Table 3: strips over their runs with the run thresholds, 7 of 10
    table = runwise(items["strip"], reject_items(M, _regions(th["run"])), d, min_agree=7)
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


def test_knapp_hand_built() -> None:
    ids, rej, lab = [], [], []
    for s, k in {"d10": 10, "d8": 8, "g5": 5, "g2": 2, "g0": 0}.items():
        ids += [s] * 10
        rej += [True] * k + [False] * (10 - k)
        lab += [s[0] == "d"] * 10
    strips = runwise(ids, rej, lab, min_agree=7)
    out = knapp_section(strips, None)
    assert out["fqa_7_10"] == 18.0 and out["efficiency"] is None and out["pass"] is None
    assert out["zones"] == {"accept": 2, "grey": 1, "reject": 2}
    manual = pd.DataFrame(
        {
            "strip": ["d10", "d8", "g5", "g2", "g0", "calib1"],
            "rejections": [27, 21, 15, 0, 0, 30],  # FQV 9, 7, 5, 0, 0: FQV(7-10) = 16
            "inspections": [30] * 6,
        }
    )
    out = knapp_section(strips, manual)
    assert out["fqv_7_10"] == 16.0 and out["efficiency"] == pytest.approx(18 / 16)
    assert out["pass"] is True and out["manual_rows_outside_kit"] == 1
    assert out["good_in_reject_zone"] == 0
    row = next(r for r in out["table"] if r["strip"] == "d8")
    assert (row["fqa"], row["zone"], row["fqv"], row["manual_zone"]) == (
        8.0,
        "reject",
        7.0,
        "reject",
    )
    manual.loc[1, "rejections"] = 30  # the inspectors now reject d8 every time: 18 < 19
    assert knapp_section(strips, manual)["pass"] is False


def test_manual_knapp_efficiency_through_the_report(done) -> None:
    m, th = done["metrics"], done["thresholds"]
    test = done["df"][done["df"]["split"] == "test"]
    items, M, d = acquisitions(test)
    table = runwise(items["strip"], reject_items(M, _regions(th["run"])), d, min_agree=7)
    manual = done["manual"][done["manual"]["strip"].isin(table["strip"])]
    want = knapp(table, manual)
    assert m["knapp"]["efficiency"] == want["efficiency"] and m["knapp"]["pass"] == want["pass"]
    assert m["knapp"]["manual_rows_outside_kit"] == 8  # calib and val strips
    bad = (table["zone"] == "reject") & ~table["is_defect"]
    assert m["knapp"]["good_in_reject_zone"] == int(bad.sum()) == 1  # G5, noisy
    assert "sit in the machine's reject zone" in done["html"]
    assert done["summary"].knapp_efficiency == want["efficiency"]
    assert any("Knapp efficiency" in line for line in done["summary"].lines())


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids, self.links, self.images, self.tags = set(), [], [], []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        self.tags.append(tag)
        self.ids |= {a["id"]} if "id" in a else set()
        self.links += [v for k, v in a.items() if k in ("src", "href") and v]
        self.images += [a["src"]] if tag == "img" else []


def test_html_is_self_contained_with_every_section(done) -> None:
    page = _Page()
    page.feed(done["html"])
    assert {k for k, _ in SECTIONS} <= page.ids
    # every link is a page anchor or an embedded image: nothing to fetch
    assert all(u.startswith(("#", "data:image/png;base64,")) for u in page.links)
    assert not [u for u in page.links if u.startswith("#") and u[1:] not in page.ids]
    assert "script" not in page.tags and "link" not in page.tags
    assert all(src.startswith("data:image/png;base64,") for src in page.images)
    n_gallery = len(done["metrics"]["gallery"])
    assert len(page.images) == 4 + 2 + n_gallery  # regions, Knapp + timing, gallery panels
    html = done["html"]
    texts = ["True positive ratio", "True negative ratio", "False reject rate", "Escape rate"]
    for text in [*texts, "Threshold R3 bottom", "FQA(7-10)", "PASS", "slot 500 ms"]:
        assert text in html, text
    r = done["metrics"]["strip_wise"]["accuracy"]
    assert f'{r["value"]:.4f} <span class="ci">[{r["lo"]:.4f}, {r["hi"]:.4f}]</span>' in html
    assert "IN-SAMPLE" not in html


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
    assert _regions(th["patch"]) == fit_region_thresholds(
        labelled(df[df["split"] == "test"]), "accuracy"
    )
    html = (tmp_path / "rep" / "report.html").read_text()
    assert 'class="banner">IN-SAMPLE' in html and html.count("(in-sample)</span>") == 9
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


def test_timing_basis_and_slot() -> None:
    t = timing_section(TIMING, 60, 500.0)
    assert t["ms_per_strip"]["mean"] == 40.0 and t["strip_basis"].startswith("measured per batch")
    t = timing_section({**TIMING, "batch": 32}, 60, 30.0)
    assert t["ms_per_strip"]["p99"] == pytest.approx(0.92 * 60)
    assert "x 60 patches" in t["strip_basis"] and not t["fits_slot"]
    assert t["margin_ms"] == pytest.approx(30.0 - 0.67 * 60)
    with pytest.raises(ValueError, match="timing lacks keys"):
        timing_section({"batch": 60}, 60, 500.0)


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
    """acquisition.test_kinds [frame, rank_max]: the rank image's patches are one more image of
    each acquisition; every table takes them in, thresholds.json names both kinds."""
    df = make_scores()
    rank = df[df["frame"] == 0].assign(kind="rank_max", frame=-1)
    rank["score"] += 0.002  # differs from frame 0's, so a table that drops it shows
    df = pd.concat([df, rank.assign(patch=rank["patch"] + len(df))], ignore_index=True)
    run_report(tmp_path, df, gallery=fake_gallery([]), strip_image=strip_image, patch_size=16)
    th = json.loads((tmp_path / "rep" / "thresholds.json").read_text())
    m = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert (th["frames"], th["kinds"]) == ([0, 7, 15], ["frame", "rank_max"])
    _, M, d = acquisitions(df[df["split"] == "test"])
    t2 = rates(d, reject_items(M, _regions(th["strip"])))
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
