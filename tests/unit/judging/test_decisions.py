"""Item rejection, the 7-of-10 run-wise rule, Knapp zones and the Knapp efficiency."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bfsdata.judging.decisions import knapp, reject_items, required, runwise, runwise_decider, zone
from bfsdata.judging.metrics import rates


def _runs(rejections: dict[str, tuple[int, int]], defect: set[str]) -> tuple[list, list, list]:
    """Strip-run arrays for {strip: (rejected runs, runs)}."""
    ids, rej, lab = [], [], []
    for s, (k, n) in rejections.items():
        ids += [s] * n
        rej += [True] * k + [False] * (n - k)
        lab += [s in defect] * n
    return ids, rej, lab


def test_reject_items_any_region_strictly_over() -> None:
    M = np.array([[0.2, 0.3], [0.3, 0.2], [0.1, 0.31], [0.3, -np.inf]])
    t = {2: 0.3, 1: 0.2}  # mapping: columns in sorted-region order (1, 2)
    # equal to the threshold is accepted; -inf (no patch) never rejects
    np.testing.assert_array_equal(reject_items(M, t), [False, True, True, True])
    np.testing.assert_array_equal(reject_items(M, [0.3, 0.31]), [False, False, False, False])
    with pytest.raises(ValueError, match="3 thresholds for 2 region columns"):
        reject_items(M, [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="n_items, n_regions"):
        reject_items(np.zeros(3), [0.1])


def test_runwise_seven_of_ten() -> None:
    cases = {
        "g3": (3, 10),  # good rejected 3/10: accept zone, correct
        "g5": (5, 10),  # good 5/10: grey, undecided, wrong
        "g7": (7, 10),  # good 7/10: rejected, wrong
        "d5": (5, 10),  # defect 5/10: grey, undecided, wrong
        "d6": (6, 10),  # defect 6/10: grey, wrong
        "d7": (7, 10),  # defect 7/10: reject zone, correct
        "d10": (10, 10),
    }
    t = runwise(*_runs(cases, {"d5", "d6", "d7", "d10"}), runs=10).set_index("strip")
    assert t.loc["g3", ["zone", "decision", "correct"]].tolist() == ["accept", "accept", True]
    assert t.loc["g5", ["zone", "decision", "correct"]].tolist() == ["grey", "undecided", False]
    assert t.loc["d5", ["zone", "decision", "correct"]].tolist() == ["grey", "undecided", False]
    assert t.loc["g7", ["zone", "decision", "correct"]].tolist() == ["reject", "reject", False]
    assert t.loc["d6", ["zone", "correct"]].tolist() == ["grey", False]
    assert t.loc["d7", ["zone", "decision", "correct"]].tolist() == ["reject", "reject", True]
    assert t.loc["g3", "fqa"] == 3.0 and t.loc["d7", "fqa"] == 7.0  # exact, not 3.0000000000000004
    assert (t["need"] == 7).all()
    # the counted-rejected column turns undecided strips into errors in the confusion table
    out = rates(t["is_defect"], t["rejected"])
    assert (out["good_rejected"], out["defect_accepted"]) == (2, 2)  # g5, g7 / d5, d6
    assert out["accuracy"]["value"] == pytest.approx(3 / 7) == t["correct"].mean()


def test_runwise_other_run_counts() -> None:
    # need = ceil(0.7 n): 5 runs -> 4, 3 runs -> 3, 20 runs -> 14
    t = runwise(
        *_runs({"a": (4, 5), "b": (3, 5), "c": (2, 3), "e": (7, 20), "f": (6, 20)}, {"a", "b"})
    ).set_index("strip")
    assert t["need"].to_dict() == {"a": 4, "b": 4, "c": 3, "e": 14, "f": 14}
    assert t.loc["a", ["zone", "decision", "correct"]].tolist() == ["reject", "reject", True]
    assert t.loc["b", ["fqa", "zone", "decision"]].tolist() == [6.0, "grey", "undecided"]
    assert t.loc["c", "zone"] == "grey"  # FQA 6.67: rounded down, not reject
    assert t.loc["e", ["fqa", "zone", "decision"]].tolist() == [3.5, "grey", "undecided"]
    assert t.loc["f", ["zone", "decision", "correct"]].tolist() == ["accept", "accept", True]


@pytest.mark.parametrize("n", range(1, 21))
def test_zone_is_the_decision_at_seven_of_ten(n: int) -> None:
    ids, rej, lab = [], [], []
    for k in range(n + 1):
        ids += [k] * n
        rej += [True] * k + [False] * (n - k)
        lab += [False] * n
    t = runwise(ids, rej, lab)
    expect = t["decision"].map({"accept": "accept", "undecided": "grey", "reject": "reject"})
    assert (t["zone"] == expect).all()


def test_zone_boundaries() -> None:
    assert zone([0, 3, 4, 6, 7, 10], [10] * 6).tolist() == [
        "accept",
        "accept",
        "grey",
        "grey",
        "reject",
        "reject",
    ]
    assert zone([21, 20, 9], [30, 30, 30]).tolist() == ["reject", "grey", "accept"]


def test_runwise_refuses() -> None:
    with pytest.raises(ValueError, match="do not have 10 runs"):
        runwise(*_runs({"a": (1, 9)}, set()), runs=10)
    with pytest.raises(ValueError, match="both labels"):
        runwise(["a", "a"], [True, False], [True, False])
    with pytest.raises(ValueError, match=r"min_agree must be 6\.\.10"):
        runwise(*_runs({"a": (1, 10)}, set()), min_agree=5)
    with pytest.raises(ValueError, match="2 strip ids but 1 run_rejected"):
        runwise(["a", "a"], [True], [True, True])
    assert required(10, 8).item() == 8


def test_runwise_decider_matches_runwise() -> None:
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 30, 400)
    lab = np.isin(ids, np.arange(12))
    rej = rng.random(400) < np.where(lab, 0.7, 0.3)
    t = runwise(ids, rej, lab)
    d, r = runwise_decider(ids, lab)(rej)
    np.testing.assert_array_equal(d, t["is_defect"])
    np.testing.assert_array_equal(r, t["rejected"])


def _machine(rej: dict[str, int]) -> pd.DataFrame:
    ids, r, lab = _runs({s: (k, 10) for s, k in rej.items()}, set(rej))
    return runwise(ids, r, lab)


def test_knapp_efficiency_by_hand() -> None:
    table = _machine({"A": 10, "B": 7, "C": 5, "D": 0})  # FQA 10, 7, 5, 0
    manual = pd.DataFrame(
        {"strip": ["A", "B", "C", "D"], "rejections": [45, 40, 35, 5], "inspections": [50] * 4}
    )  # FQV 9, 8, 7, 1
    out = knapp(table, manual)
    assert out["fqa_7_10"] == 17.0  # A + B
    assert out["fqv_7_10"] == 24.0  # A + B + C
    assert out["efficiency"] == pytest.approx(17 / 24)
    assert out["pass"] is False
    assert out["fqa_manual_zone"] == 22.0  # FQA over A, B, C (manual reject zone)
    assert out["efficiency_manual_zone"] == pytest.approx(22 / 24)
    rows = out["table"].set_index("strip")
    assert rows.loc["C", ["fqa", "zone", "fqv", "manual_zone"]].tolist() == [5, "grey", 7, "reject"]
    assert knapp(table)["efficiency"] is None and knapp(table)["fqa_7_10"] == 17.0


def test_knapp_pass_at_exactly_100_percent() -> None:
    table = _machine({"A": 10, "B": 7, "C": 2})  # FQA_7-10 = 17
    # FQV 29/3 + 22/3 = 17 exactly, though neither is a float-exact number
    manual = pd.DataFrame(
        {"strip": ["A", "B", "C"], "rejections": [29, 22, 0], "inspections": [30] * 3}
    )
    out = knapp(table, manual)
    assert out["efficiency"] == 1.0 and out["pass"] is True
    manual.loc[1, "rejections"] = 23  # FQV_7-10 = 52/3 > 17: just below 100 %
    out = knapp(table, manual)
    assert out["efficiency"] < 1.0 and out["pass"] is False


def test_knapp_without_manual_reject_zone_says_nothing() -> None:
    table = _machine({"A": 8, "B": 0})
    manual = pd.DataFrame({"strip": ["A", "B"], "rejections": [6, 0], "inspections": [10, 10]})
    out = knapp(table, manual)
    assert out["fqv_7_10"] == 0.0
    assert out["efficiency"] is None and out["pass"] is None


def test_knapp_refuses() -> None:
    table = _machine({"A": 8, "B": 0})
    ok = pd.DataFrame({"strip": ["A", "B"], "rejections": [6, 0], "inspections": [10, 10]})
    with pytest.raises(ValueError, match=r"only in the machine table \['B'\]"):
        knapp(table, ok.iloc[:1])
    with pytest.raises(ValueError, match=r"lacks columns \['inspections'\]"):
        knapp(table, ok.drop(columns="inspections"))
    with pytest.raises(ValueError, match="0 <= rejections <= inspections"):
        knapp(table, ok.assign(rejections=[11, 0]))
    with pytest.raises(ValueError, match="repeats strips"):
        knapp(table, pd.concat([ok, ok.iloc[:1]]))
    with pytest.raises(ValueError, match=r"lacks columns \['runs'\]"):
        knapp(table.drop(columns="runs"))
