"""`bfsdata.report.defect_types`: recall per defect type and region, the kinds that caught it
and whether the catch was at the defect, on hand-made scores with known answers."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import numpy as np
import pandas as pd

from bfsdata.judging.metrics import clopper_pearson
from bfsdata.report.defect_types import defect_types, section_html
from bfsdata.report.tables import prepare, strip_wise

T = {0: 0.5, 1: 0.5}  # strip thresholds of regions 0 and 1
KIND_FRAME = {"frame": 0, "rank_max": -1}


def _scores(hits: dict[tuple[str, int], list[tuple[str, int, int]]], runs: dict[str, int]):
    """Scores of 2 vials x 2 regions x (frame 0, rank_max) per acquisition, all 0.1 but the
    (kind, vial, region) listed for an acquisition (strip, run), which score 0.9 (over T).
    Strips starting with G are good; every strip is in test."""
    rows = []
    for strip, n in runs.items():
        for run in range(1, n + 1):
            for kind, frame in KIND_FRAME.items():
                for v in (1, 2):
                    for r in (0, 1):
                        over = (kind, v, r) in hits.get((strip, run), [])
                        rows.append((strip, run, kind, frame, v, r, 0.9 if over else 0.1))
    df = pd.DataFrame(rows, columns=["strip", "run", "kind", "frame", "vial", "region", "score"])
    df["label"] = np.where(df["strip"].str.startswith("G"), "good", "defect")
    df["defect_here"] = pd.array([pd.NA] * len(df), dtype="boolean")
    df.loc[df["label"] == "good", "defect_here"] = False
    df["acq"] = df.groupby(["strip", "run"]).ngroup()
    df["patch"] = np.arange(len(df))
    for c in ("y0", "x0", "y1", "x1", "dy", "dx", "angle"):
        df[c] = 0
    return df.assign(split="test")


def _ann(rows: list[tuple]) -> pd.DataFrame:
    ann = pd.DataFrame(rows, columns=["strip", "defect", "vial", "region"])
    return ann.assign(label="defect").astype({"vial": "Int8", "region": "Int8"})


def _kit_test(df: pd.DataFrame) -> pd.DataFrame:
    return prepare(df).test


def test_known_answers_per_type_region_and_kind() -> None:
    # A: spot at (1, 0); caught by the frame there in runs 1-3, missed in run 4.
    # B: spot at (2, 1) and scratch at (1, 1); run 1 rank_max at the spot, run 2 a frame hit
    # at (1, 0), where neither defect lies. C: defective, no type. G: good, never over.
    hits = {
        **{("A", k): [("frame", 1, 0)] for k in (1, 2, 3)},
        ("B", 1): [("rank_max", 2, 1)],
        ("B", 2): [("frame", 1, 0)],
    }
    df = _scores(hits, {"A": 4, "B": 2, "C": 1, "G": 2})
    ann = _ann([("A", "spot", 1, 0), ("B", "spot", 2, 1), ("B", "scratch", 1, 1)])
    out = defect_types(_kit_test(df), ann, T, 0.05)
    assert out["level"] == "strip-wise" and out["kinds"] == ["frame", "rank_max"]
    assert list(out["types"]) == ["scratch", "spot"]
    spot = out["types"]["spot"]
    assert (spot["strips"], spot["acquisitions"], spot["rejected"]) == (2, 6, 5)
    lo, hi = clopper_pearson(5, 6)
    assert spot["recall"] == {"value": 5 / 6, "lo": lo, "hi": hi}
    assert spot["escape_rate"]["value"] == 1 / 6
    assert spot["caught_by"] == {"frame": 4, "rank_max": 1}  # A 1-3 and B 2; B 1
    assert spot["at_defect"] == {"located": 6, "caught": 4, "by": {"frame": 3, "rank_max": 1}}
    r0, r1 = spot["regions"]["0"], spot["regions"]["1"]
    assert r0["name"] == "R0 flag" and (r0["acquisitions"], r0["rejected"]) == (4, 3)
    assert r0["at_defect"] == {"located": 4, "caught": 3, "by": {"frame": 3, "rank_max": 0}}
    assert (r1["acquisitions"], r1["rejected"], r1["caught_by"]) == (
        2, 2, {"frame": 1, "rank_max": 1}
    )  # fmt: skip
    assert r1["at_defect"] == {"located": 2, "caught": 1, "by": {"frame": 0, "rank_max": 1}}
    scratch = out["types"]["scratch"]  # same acquisitions as B, never hit at (1, 1)
    assert (scratch["acquisitions"], scratch["rejected"], list(scratch["regions"])) == (2, 2, ["1"])
    assert scratch["at_defect"]["caught"] == 0 and scratch["at_defect"]["located"] == 2
    assert out["untyped"] == {"strips": 1, "acquisitions": 1}


def test_rejections_are_table_2s() -> None:
    """An acquisition counts as rejected here exactly when strip_wise rejects it."""
    rng = np.random.default_rng(0)
    strips = {f"D{i}": 5 for i in range(6)}
    hits = {
        (s, k): [(str(rng.choice(list(KIND_FRAME))), int(rng.integers(1, 3)), int(rng.integers(2)))]
        for s in strips
        for k in range(1, 6)
        if rng.random() < 0.5
    }
    test = _kit_test(_scores(hits, strips))
    ann = _ann([(s, "t", None, None) for s in strips])
    out = defect_types(test, ann, T, 0.05)
    _, _, acq, _ = strip_wise(test, {"strip": T, "run": T}, [0, 1], 0.05, 7)
    assert out["types"]["t"]["rejected"] == int(acq["rejected"].sum()) == len(hits)
    assert out["types"]["t"]["regions"] == {}  # no location known
    assert out["types"]["t"]["at_defect"]["located"] == 0


def test_a_lone_type_without_location_takes_the_masked_cells() -> None:
    """Image folders: the annotation names the type, the mask (defect_here) the cell."""
    df = _scores({("A", 1): [("frame", 2, 1)], ("A", 2): [("frame", 1, 0)]}, {"A": 2, "G": 1})
    a = df["strip"] == "A"
    df.loc[a, "defect_here"] = (df.loc[a, "vial"] == 2) & (df.loc[a, "region"] == 1)
    out = defect_types(_kit_test(df), _ann([("A", "crack", None, None)]), T, 0.05)
    crack = out["types"]["crack"]
    assert crack["rejected"] == 2
    assert crack["at_defect"] == {"located": 2, "caught": 1, "by": {"frame": 1, "rank_max": 0}}
    assert list(crack["regions"]) == ["1"]


def test_without_annotations_every_defect_is_untyped() -> None:
    df = _scores({("A", 1): [("frame", 1, 0)]}, {"A": 2, "B": 1, "G": 1})
    for ann in (None, _ann([]), _ann([("G9", "spot", 1, 0)])):  # G9: not judged here
        out = defect_types(_kit_test(df), ann, T, 0.05)
        assert out["types"] == {} and out["untyped"] == {"strips": 2, "acquisitions": 3}
    assert "No defective test strip has a defect type" in section_html(out)


class _Cells(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_section_escapes_names_and_shows_each_region_row() -> None:
    df = _scores({("A", 1): [("frame", 1, 0)]}, {"A": 2, "B": 1, "G": 1})
    name = '<script>alert("x")</script> & burn'
    ann = _ann([("A", name, 1, 0), ("B", name, 2, 1), ("B", "dent", 1, 1)])
    html = section_html(defect_types(_kit_test(df), ann, T, 0.05))
    assert "<script>" not in html and "&lt;script&gt;" in html
    page = _Cells()
    page.feed(html)
    assert name in page.text  # read back as the client wrote it
    # the name's rows: all regions, R0 flag, R1 upper body; the dent's one region holds all
    # its acquisitions: one row
    assert page.text.count("all regions") == 1 and "R0 flag" in page.text
    assert page.text.count("R1 upper body") == 2
    assert html.count("<tr>") == 1 + 4  # the head, then 3 rows of the name and 1 of the dent
    assert "0.3333 " in page.text  # the name's recall over all regions: 1 of 3


def test_the_report_stage_takes_the_types_from_the_annotations(tmp_path_factory) -> None:
    """`bfsdata report` on a real workspace: labels.csv's D1 is a scratch in vial 2, region 1."""
    from workspace_fixtures import RUNS, shared_run

    run = shared_run(tmp_path_factory)
    assert run.report_exit == 0, run.report_output
    dt = json.loads((run.report_dir / "metrics.json").read_text())["defect_types"]
    scratch = dt["types"]["scratch"]
    assert list(dt["types"]) == ["scratch"] and list(scratch["regions"]) == ["1"]
    assert (scratch["strips"], scratch["acquisitions"], scratch["at_defect"]["located"]) == (
        1, RUNS, RUNS
    )  # fmt: skip
    assert "scratch" in (run.report_dir / "report.html").read_text()
