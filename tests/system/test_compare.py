"""Two models judged side by side and fused with the real commands on the tiny workspace: the
tiny GAN of the fixtures and a variation model, `report --run tiny --run var1`, then `infer
--report tiny_var1`, whose fused decisions must be the fused report's for the same acquisitions."""

from __future__ import annotations

import os

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # CPU only: tests must not depend on a GPU
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from cli_helpers import invoke, ok, refused
from workspace_fixtures import copy_workspace, shared_run


@dataclass(frozen=True)
class Compared:
    ws: Path
    report_out: str
    infer_out: Path

    @property
    def rep(self) -> Path:
        return self.ws / "reports" / "tiny_var1"


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory) -> Compared:
    base = shared_run(tmp_path_factory)
    ws = copy_workspace(base.ws, tmp_path_factory.mktemp("compare") / "ws")
    ok(invoke("train", "-w", ws, "--model", "variation", "--name", "var1"))
    report_out = ok(invoke("report", "-w", ws, "--run", "tiny", "--run", "var1"))
    out = ws / "infer-fused"
    raw = ws / "raw"
    acqs = [raw / "D1", raw / "G3"]  # the scored strips (G1 and G2 are train and val)
    ok(invoke("infer", *acqs, "-w", ws, "--report", "tiny_var1", "--out", out))
    return Compared(ws, report_out, out)


def test_each_run_gets_its_own_report_and_the_comparison_its_table(compared: Compared) -> None:
    for run in ("tiny", "var1"):
        m = json.loads((compared.ws / "reports" / run / "metrics.json").read_text())
        assert m["model_run"] == run
    metrics = json.loads((compared.rep / "metrics.json").read_text())
    assert list(metrics["runs"]) == ["tiny", "var1"]
    rows = {r["model"]: r for r in metrics["comparison"]}
    assert list(rows) == ["tiny", "var1", "fused"]
    for name in ("tiny", "var1"):
        own = json.loads((compared.ws / "reports" / name / "metrics.json").read_text())
        assert rows[name]["strip-wise accuracy"] == own["strip_wise"]["accuracy"]
        assert set(rows[name]["region_auroc"]) == {"0", "1", "2", "3"}
    fused = rows["fused"]["strip-wise accuracy"]
    assert fused == metrics["fused"]["strip_wise"]["accuracy"] and 0 <= fused["value"] <= 1
    html = (compared.rep / "report.html").read_text()
    assert "Comparison: tiny, var1" in html and "<td>fused</td>" in html
    assert "comparison" in compared.report_out and "fused:" in compared.report_out


def test_the_comparison_leads_back_to_each_run_and_its_thresholds(compared: Compared) -> None:
    metrics = json.loads((compared.rep / "metrics.json").read_text())
    prov = metrics["provenance"]
    for run in ("tiny", "var1"):
        own = json.loads((compared.ws / "reports" / run / "metrics.json").read_text())
        assert prov["runs"][run] == own["provenance"]  # the models and manifests scored
    fused = (compared.rep / "thresholds.json").read_bytes()
    assert prov["thresholds_sha256"] == hashlib.sha256(fused).hexdigest()
    html = (compared.rep / "report.html").read_text()
    assert "Provenance" in html and prov["thresholds_sha256"] in html


def test_fused_thresholds_name_the_runs_and_the_shared_cut(compared: Compared) -> None:
    th = json.loads((compared.rep / "thresholds.json").read_text())
    own = json.loads((compared.ws / "reports" / "tiny" / "thresholds.json").read_text())
    assert th["fused"] == ["tiny", "var1"] and th["cut"] == own["cut"]
    for level in ("patch", "strip", "run"):
        assert set(th[level]) == {"tiny", "var1"}
        assert all(set(t) == {"0", "1", "2", "3"} for t in th[level].values())


def test_infer_with_the_fused_thresholds_decides_as_the_fused_report(compared: Compared) -> None:
    metrics = json.loads((compared.rep / "metrics.json").read_text())
    want = pd.DataFrame(metrics["fused"]["decisions"]).set_index(["strip", "run"])["rejected"]
    summary = json.loads((compared.infer_out / "summary.json").read_text())
    got = pd.DataFrame(summary["acquisitions"]).set_index(["strip", "run"])["rejected"]
    assert len(got) == 4  # D1 and G3, two runs each
    assert got.to_dict() == want.loc[got.index].to_dict()
    assert got[("D1", 1)]  # the scratch is rejected
    th = json.loads((compared.rep / "thresholds.json").read_text())
    for run in ("tiny", "var1"):  # each run applied its share of the fused thresholds
        rec = json.loads((compared.infer_out / run / "D1_run1.json").read_text())
        applied = {str(p["region"]): p["threshold"] for p in rec["patches"]}
        assert applied == th["strip"][run]


def test_comparing_a_run_with_itself_is_refused(compared: Compared) -> None:
    err = refused(invoke("report", "-w", compared.ws, "--run", "var1", "--run", "var1"))
    assert "two different runs" in err
