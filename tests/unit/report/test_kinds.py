"""Thresholds per (kind, region) in the report (`bfsdata.report.kinds`): two scored kinds, one
blind in R2 (its scores random for good and defective patches alike), the other separating.
`auto` drops the blind kind there, from calib alone, and the decision is the other kind's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bfsdata.config.errors import ConfigError
from bfsdata.config.pipeline import ReportConfig
from bfsdata.judging.decisions import reject_items
from bfsdata.judging.kinds import kind_column
from bfsdata.judging.metrics import rates
from bfsdata.judging.thresholds import item_matrix
from bfsdata.report import kinds as rk
from bfsdata.report import tables as rt
from tests.unit.report.scores import TIMING, run_report

R2 = 2


def two_kinds(seed: int = 0) -> pd.DataFrame:
    """8 good + 8 defective strips (halves calib/test) and 2 val strips, 4 runs, rank_min and
    rank_max, 2 vials x 4 regions. A defect (vial 1) lies in R2 (even strips) or R0 (odd) and
    raises rank_min's score there; rank_max sees R0 defects as well, but in R2 its every score
    is uniform in [0, 1], the bright rings of moving bubbles: blind."""
    rng = np.random.default_rng(seed)
    strips = [*(f"G{i}" for i in range(8)), *(f"D{i}" for i in range(8)), "V0", "V1"]
    rows = []
    for si, s in enumerate(strips):
        i, defect = int(s[1:]), s[0] == "D"
        split = "val" if s[0] == "V" else ("calib" if i < 4 else "test")
        where = (1, R2 if i % 2 == 0 else 0)
        for run in range(1, 5):
            acq = si * 10 + run
            for kind in ("rank_min", "rank_max"):
                for v in (1, 2):
                    for r in range(4):
                        hit = defect and (v, r) == where
                        score = 0.1 + rng.normal(0, 0.01) + (0.3 if hit else 0.0)
                        if kind == "rank_max" and r == R2:
                            score = rng.uniform(0, 1)
                        box = (60 * r, 50 * v, 60 * r + 60, 50 * v + 50)
                        label = "defect" if defect else "good"
                        rows.append((acq, s, run, kind, -1, v, r, label, hit, *box, split, score))
    cols = ["acq", "strip", "run", "kind", "frame", "vial", "region", "label", "defect_here"]
    df = pd.DataFrame(rows, columns=[*cols, "y0", "x0", "y1", "x1", "split", "score"])
    df["defect_here"] = df["defect_here"].astype("boolean")
    df.insert(0, "patch", np.arange(len(df), dtype=np.int64))
    return df.assign(dy=np.float32(0), dx=np.float32(0), angle=np.float32(0))


def _report(tmp_path: Path, df: pd.DataFrame, mode: str) -> tuple[dict, dict]:
    out = tmp_path / mode
    run_report(out, df, ReportConfig(kind_choice=mode), TIMING)
    read = (json.loads((out / "rep" / f).read_text()) for f in ("metrics.json", "thresholds.json"))
    return tuple(read)  # type: ignore[return-value]


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[dict, dict]]:
    tmp, df = tmp_path_factory.mktemp("kinds"), two_kinds()
    return {mode: _report(tmp, df, mode) for mode in ("auto", "pooled")} | {"df": df}


def test_the_blind_kind_is_dropped_in_r2_only(reports) -> None:
    m, th = reports["auto"]
    choice = th["kind_choice"]
    assert m["kind_choice"] == choice and th["thresholds_by"] == "kind"
    assert choice["scored"] == ["rank_min", "rank_max"] and choice["mode"] == "auto"
    r2 = choice["regions"]["2"]
    assert (r2["kept"], r2["dropped"]) == (["rank_min"], ["rank_max"])
    assert r2["kinds"]["rank_max"]["auroc"] < 0.75 <= r2["kinds"]["rank_min"]["auroc"]
    assert r2["kinds"]["rank_max"]["good_p99"] > 0.9  # the random rings: a wide good spread
    assert choice["regions"]["0"]["kept"] == ["rank_min", "rank_max"]  # both see R0 defects
    assert [n for n in m["notes"] if "dropped" in n] == [
        f"R2 liquid: rank_max dropped ({r2['kinds']['rank_max']['why']}); judged by rank_min"
    ]
    for r in ("1", "3"):  # no defect there in calib: nothing to judge a kind by
        assert choice["regions"][r]["kept"] == ["rank_min", "rank_max"]
        assert "no labelled defect patch" in choice["regions"][r]["reason"]
    assert th["kinds"] == ["rank_min", "rank_max"] and th["regions"] == [0, 1, 2, 3]
    for level in ("patch", "strip", "run"):
        assert sorted(th[level]["rank_min"]) == ["0", "1", "2", "3"]
        assert sorted(th[level]["rank_max"]) == ["0", "1", "3"]  # no R2 threshold: dropped
    names = [v["name"] for v in m["region_wise"]["regions"].values()]
    assert "R2 liquid, rank_min" in names and "R2 liquid, rank_max" not in names


def test_the_decision_is_the_kept_kinds_and_beats_pooling(reports) -> None:
    m, th = reports["auto"]
    df = reports["df"]
    test = df[df["split"] == "test"].assign(strip_defect=lambda d: d["label"] == "defect")
    col = [kind_column(k, r) for k, r in zip(test["kind"], test["region"], strict=True)]
    t = {kind_column(k, int(r)): v for k, rs in th["strip"].items() for r, v in rs.items()}
    kept = test.assign(column=col)[np.isin(col, list(t))]
    items, M = item_matrix(kept, rt.ACQ, "column", regions=sorted(t), label_col="strip_defect")
    d = items["strip_defect"].to_numpy(bool)
    want = rates(d, reject_items(M, t))
    assert {k: m["strip_wise"][k] for k in want} == want
    assert m["strip_wise"]["accuracy"]["value"] == 1.0
    # one threshold per region over both kinds: rank_max's rings set R2's, and it is blind
    pooled, pooled_th = reports["pooled"]
    assert pooled_th["thresholds_by"] == "region" and "2" in pooled_th["strip"]
    assert pooled["strip_wise"]["accuracy"]["value"] < 1.0


def test_all_keeps_every_kind_with_its_own_thresholds(tmp_path: Path) -> None:
    m, th = _report(tmp_path, two_kinds(), "all")
    assert th["thresholds_by"] == "kind" and m["kind_choice"]["mode"] == "all"
    assert sorted(th["strip"]["rank_max"]) == ["0", "1", "2", "3"]
    r2 = th["kind_choice"]["regions"]["2"]
    assert r2["dropped"] == [] and r2["kinds"]["rank_max"]["auroc"] < 0.75


def test_without_calib_every_kind_is_kept_and_the_record_says_why(tmp_path: Path) -> None:
    df = two_kinds()
    _, th = _report(tmp_path, df.assign(split=df["split"].replace("calib", "test")), "auto")
    choice = th["kind_choice"]
    assert choice["reason"] == rk.NO_CALIB and choice["thresholds_by"] == "kind"
    assert all(c["dropped"] == [] for c in choice["regions"].values())


def test_nested_thresholds_and_the_html_table(tmp_path: Path) -> None:
    t = {kind_column("rank_max", 3): 0.5, kind_column("rank_min", 0): 0.25}
    assert rk.nested(t, "kind") == {"rank_min": {"0": 0.25}, "rank_max": {"3": 0.5}}
    assert rk.nested({0: 0.1, 2: 0.3}, "region") == {"0": 0.1, "2": 0.3}
    run_report(tmp_path, two_kinds(), ReportConfig(), TIMING)
    html = (tmp_path / "rep" / "report.html").read_text()
    section = html[html.index('<section id="kinds">') :]
    section = section[: section.index("</section>")]
    assert "<td>R2 liquid</td><td>rank_min</td><td>rank_max</td>" in section
    assert "Threshold R2 liquid, rank_min" in html  # Table 2 names each (kind, region)


def test_the_kind_choice_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"report\.kind_choice: 'best' is not one of auto, all"):
        ReportConfig(kind_choice="best")
    with pytest.raises(ConfigError, match=r"report\.kind_min_auroc: must be in \[0\.5, 1\]"):
        ReportConfig(kind_min_auroc=0.3)
