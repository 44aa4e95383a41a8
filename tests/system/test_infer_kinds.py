"""Kinds chosen from data, through the real chain: strips of a synthetic look with bright moving
clutter (bubbles whose bright rims stay in the max rank image, four times as many as the
reference strip has), scored on both rank images (acquisition.test_kinds [rank_min, rank_max])
by a variation model (no TensorFlow). The report must judge the liquid R2 by a kind that is not
blind there, chosen on calib alone, and `infer` must give every test acquisition the report's
decision with the per-(kind, region) thresholds; a thresholds.json of the older form (one
threshold per region over every kind) still means that."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bfsdata.config.files import load_pipeline
from bfsdata.config.overrides import with_overrides
from bfsdata.config.pipeline import Pipeline
from bfsdata.infer import infer
from bfsdata.ingest import ingest
from bfsdata.patch.stage import patch
from bfsdata.report import report
from bfsdata.split import split
from bfsdata.synth import layout_for, look_config
from bfsdata.synth.writer import synth
from bfsdata.train.stage import train
from bfsdata.workspace import manifest

KINDS = ["rank_min", "rank_max"]
R2 = "2"


@dataclass(frozen=True)
class Chain:
    ws: Path
    pipe: Pipeline
    rep: Path
    metrics: dict
    thresholds: dict
    test_runs: list[Path]  # raw run folders of the test split


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Chain:
    """40 strips x 4 runs at the demo's 1/4 scale, half defective; the demo profile with the
    look's layout, both rank images cut, trained on and scored, a variation model."""
    ws = tmp_path_factory.mktemp("kinds") / "ws"
    cfg = look_config(
        "bright-bubbles",
        clutter=4.0,
        strips=40,
        runs=4,
        frames=16,
        height=256,
        width=320,
        defect_fraction=0.5,
        severity=(0.85, 1.0),
        seed=0,
    )
    settings = {
        "layout": layout_for(cfg),
        "acquisition.test_kinds": KINDS,
        "patch.kinds": KINDS,
        "train.kinds": KINDS,
        "train.method": "variation",
        "split.test_good": 8,
        "report.kind_choice": "auto",
    }
    pipe = with_overrides(load_pipeline("demo"), settings)
    synth(ws / "raw", cfg)
    ingest(ws / "raw", ws, pipe, workers=2)
    patch(ws, pipe, workers=2)
    split(ws, pipe.split)
    train(ws, pipe, name="var")
    rep = report(ws, pipe, run="var").out_dir
    splits = manifest.read(ws, manifest.SPLITS_SCHEMA)
    test = sorted(splits.loc[splits["split"] == "test", "strip"])
    runs = [p for s in test for p in sorted((ws / "raw" / s).glob("run_*"))]
    read = (json.loads((rep / f).read_text()) for f in ("metrics.json", "thresholds.json"))
    return Chain(ws, pipe, rep, *read, runs)


def test_r2_is_judged_by_a_kind_that_is_not_blind(chain: Chain) -> None:
    choice = chain.thresholds["kind_choice"]
    assert chain.metrics["kind_choice"] == choice and chain.thresholds["thresholds_by"] == "kind"
    assert choice["scored"] == KINDS and choice["mode"] == "auto"
    floor = choice["min_auroc"]
    r2 = choice["regions"][R2]
    assert r2["kept"], r2
    for kind in r2["kept"]:  # every kind judging R2 separates on calib
        assert r2["kinds"][kind]["auroc"] >= floor, r2["kinds"][kind]
        assert r2["kinds"][kind]["defect_patches"] >= 5  # judged on real evidence
        assert kind in chain.thresholds["strip"] and R2 in chain.thresholds["strip"][kind]
    for kind in r2["dropped"]:  # and a dropped one was blind: no R2 threshold of its own
        assert r2["kinds"][kind]["auroc"] < floor
        assert R2 not in chain.thresholds["strip"].get(kind, {})
    # the bright rims stay in the max rank image: its good R2 scores spread far wider
    spread = {k: r2["kinds"][k]["good_p99"] for k in KINDS}
    assert spread["rank_max"] > spread["rank_min"]
    html = (chain.rep / "report.html").read_text()
    assert '<section id="kinds">' in html and "R2 liquid" in html


def test_infer_gives_the_reports_decisions(chain: Chain, tmp_path: Path) -> None:
    th_path = chain.rep / "thresholds.json"
    out = infer(chain.test_runs, chain.ws / "runs" / "var", th_path, chain.pipe, tmp_path)
    acq = out.acquisitions.set_index(["strip", "run"])
    assert len(acq) == len(chain.test_runs) == 14 * 4
    assert acq["rejected"].any() and not acq["rejected"].all()
    scores = pd.read_parquet(chain.rep / "scores.parquet")
    test = scores[scores["split"] == "test"]
    label = test.groupby(["strip", "run"])["label"].first().eq("defect")
    wrong = {(a["strip"], a["run"]) for a in chain.metrics["misclassified"]["acquisitions"]}
    for (strip, run), is_defect in label.items():  # the report's: label, unless misclassified
        assert acq.loc[(strip, run), "rejected"] == (is_defect != ((strip, run) in wrong))
    th = chain.thresholds["strip"]
    regions = chain.thresholds["kind_choice"]["regions"]
    dropped = {(k, int(r)) for r, c in regions.items() for k in c["dropped"]}
    for strip, run in list(acq.index)[:8]:  # each patch against its (kind, region) threshold
        rec = json.loads((tmp_path / f"{strip}_run{run}.json").read_text())
        got = pd.DataFrame(rec["patches"])
        assert sorted(got["kind"].unique()) == sorted(th)
        want = scores[(scores["strip"] == strip) & (scores["run"] == run)]
        both = got.merge(want, on=["kind", "frame", "vial", "region"], validate="1:1")
        judged = both["threshold"].notna()
        np.testing.assert_array_equal(both["score_x"][judged], both["score_y"][judged])
        for p in rec["patches"]:
            t = th.get(p["kind"], {}).get(str(p["region"]))
            assert p["threshold"] == t and ((p["kind"], p["region"]) in dropped) == (t is None)
            assert (p["score"] is None) == (t is None)  # a dropped (kind, region): not scored


def test_older_thresholds_keep_one_threshold_per_region(chain: Chain, tmp_path: Path) -> None:
    """A thresholds.json without `thresholds_by` (written before thresholds per kind): every
    scored kind's patches are judged by their region's one threshold, as they were."""
    old = {k: v for k, v in chain.thresholds.items() if k not in ("thresholds_by", "kind_choice")}
    for level in ("patch", "strip", "run"):
        old[level] = chain.thresholds[level]["rank_min"]  # {region: t}
    path = tmp_path / "thresholds.json"
    path.write_text(json.dumps(old))
    runs = chain.test_runs[:8]
    out = infer(runs, chain.ws / "runs" / "var", path, chain.pipe, tmp_path / "out")
    assert out.acquisitions["rejected"].any()
    for row in out.acquisitions.itertuples(index=False):
        rec = json.loads((tmp_path / "out" / f"{row.strip}_run{row.run}.json").read_text())
        assert {p["kind"] for p in rec["patches"]} == set(KINDS)  # both kinds still judged
        over = {p["vial"] for p in rec["patches"] if p["score"] > old["strip"][str(p["region"])]}
        assert sorted(over) == rec["rejected_vials"] and rec["rejected"] == bool(over)
        assert all(p["threshold"] == old["strip"][str(p["region"])] for p in rec["patches"])


def test_a_fused_comparison_keeps_each_runs_kinds_and_infer_decides_alike(
    chain: Chain, tmp_path: Path
) -> None:
    """A second variation model (the worst-share score) fused with the first: the fused
    thresholds judge each run by the (kind, region)s its own report kept, and infer with them
    gives every test acquisition the comparison's fused decision."""
    from bfsdata.infer.fused import infer_fused
    from bfsdata.report.compare_stage import compare_runs

    share = with_overrides(chain.pipe, {"train.variation.score": "share"})
    train(chain.ws, share, name="var2")
    cmp = compare_runs(chain.ws, chain.pipe, ["var", "var2"], name="var_var2")
    th = json.loads((cmp.out_dir / "thresholds.json").read_text())
    assert th["thresholds_by"] == "kind"
    for run in ("var", "var2"):
        own = json.loads((chain.ws / "reports" / run / "thresholds.json").read_text())
        kept = {k for c in own["kind_choice"]["regions"].values() for k in c["kept"]}
        assert set(th["strip"][run]) == kept
        for kind, regions in th["strip"][run].items():  # the same (kind, region)s as alone
            assert set(regions) == set(own["strip"][kind])
    out = infer_fused(chain.test_runs, chain.ws, cmp.out_dir / "thresholds.json", chain.pipe,
                      tmp_path)  # fmt: skip
    got = out.acquisitions.set_index(["strip", "run"])["rejected"]
    want = {
        (d["strip"], d["run"]): d["rejected"]
        for d in cmp.metrics["fused"]["decisions"]
        if d["split"] == "test"
    }
    assert len(want) == len(got) and all(got[k] == v for k, v in want.items())
