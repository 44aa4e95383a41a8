"""Which kinds judge each region (`bfsdata.judging.kinds`): known answers on small arrays."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bfsdata.judging.kinds import (
    KIND_STRIDE,
    choose_kinds,
    choose_region,
    column_kind,
    kind_column,
    kind_evidence,
)


def _ev(auroc: float | None) -> dict:
    n = 0 if auroc is None else 4
    return {
        "auroc": auroc,
        "defect_patches": n,
        "good_patches": 10,
        "good_p50": 0.1,
        "good_p99": 0.2,
    }


def test_columns_name_their_kind_and_region() -> None:
    assert kind_column("frame", 0) == KIND_STRIDE
    assert kind_column("rank_min", 2) == 2 * KIND_STRIDE + 2
    assert kind_column("rank_max", 3) == 3 * KIND_STRIDE + 3
    for kind in ("frame", "rank_min", "rank_max"):
        for r in (0, 3, KIND_STRIDE - 1):
            assert column_kind(kind_column(kind, r)) == (kind, r)
    assert column_kind(2) == (None, 2)  # a region column: one threshold over every kind
    assert column_kind(1002) == (None, 1002)  # a fused (run, region) column is no kind's
    with pytest.raises(ValueError, match=r"regions 0\.\.99"):
        kind_column("frame", KIND_STRIDE)


def test_evidence_is_the_mann_whitney_auroc_and_the_good_spread() -> None:
    # defect 0.25 beats 2 of 3 goods, 0.4 all 3: AUROC 5/6
    e = kind_evidence([0.1, 0.2, 0.3], [0.25, 0.4], np.arange(101) / 100)
    assert e["auroc"] == pytest.approx(5 / 6)
    assert (e["defect_patches"], e["good_patches"]) == (2, 3)
    assert (e["good_p50"], e["good_p99"]) == pytest.approx((0.5, 0.99))
    tie = kind_evidence([0.2, 0.2], [0.2], [])
    assert tie["auroc"] == 0.5 and tie["good_p50"] is None
    assert kind_evidence([0.1], [], [0.1])["auroc"] is None  # no defect: nothing to judge


def test_a_kind_under_the_auroc_floor_is_dropped_and_an_unjudged_one_kept() -> None:
    c = choose_region({"frame": _ev(0.9), "rank_min": _ev(0.5), "rank_max": _ev(None)}, 0.75)
    assert (c["kept"], c["dropped"]) == (["frame", "rank_max"], ["rank_min"])
    assert c["kinds"]["rank_min"]["why"] == "calib AUROC 0.500 < 0.75: blind here"
    assert c["kinds"]["frame"]["why"] == "highest calib AUROC here (0.900)"
    assert not c["kinds"]["rank_min"]["kept"] and c["kinds"]["rank_max"]["kept"]
    assert "rank_min" in c["reason"]


def test_the_best_kind_is_kept_even_under_the_floor_ties_to_the_first() -> None:
    c = choose_region({"rank_min": _ev(0.6), "rank_max": _ev(0.7)}, 0.75)
    assert (c["kept"], c["dropped"]) == (["rank_max"], ["rank_min"])
    c = choose_region({"rank_min": _ev(0.6), "rank_max": _ev(0.6)}, 0.75)
    assert (c["kept"], c["dropped"]) == (["rank_min"], ["rank_max"])
    c = choose_region({"rank_min": _ev(0.8), "rank_max": _ev(0.75)}, 0.75, margin=0.05)
    assert (c["kept"], c["dropped"]) == (["rank_min", "rank_max"], [])


def test_a_kind_further_than_the_margin_under_the_best_is_dropped() -> None:
    """Every kept kind adds false rejects: by default only the best (and a tie) judges."""
    ev = {"frame": _ev(0.9), "rank_min": _ev(0.95), "rank_max": _ev(0.95)}
    c = choose_region(ev, 0.75)
    assert (c["kept"], c["dropped"]) == (["rank_min", "rank_max"], ["frame"])
    assert "more than 0 under rank_min's" in c["kinds"]["frame"]["why"]
    c = choose_region(ev, 0.75, margin=0.05)
    assert (c["kept"], c["dropped"]) == (["frame", "rank_min", "rank_max"], [])


def test_a_region_without_labelled_defects_keeps_every_kind_and_says_so() -> None:
    c = choose_region({"rank_min": _ev(None), "rank_max": _ev(None)}, 0.75)
    assert (c["kept"], c["dropped"]) == (["rank_min", "rank_max"], [])
    assert "no labelled defect patch of this region in calib" in c["reason"]


def _patches() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Region 0: rank_min separates (defect 0.9 vs goods 0.1..0.3), rank_max does not (defect
    0.2 amid the same goods); an unannotated patch (NA) scores 5.0 and must not count. Region 1:
    good only."""
    rows = []
    for kind, defect in (("rank_min", 0.9), ("rank_max", 0.2)):
        rows += [(kind, 0, s, False) for s in (0.1, 0.3)]
        rows += [(kind, 0, defect, True), (kind, 0, 5.0, pd.NA), (kind, 1, 0.1, False)]
    calib = pd.DataFrame(rows, columns=["kind", "region", "score", "is_defect"])
    calib["is_defect"] = calib["is_defect"].astype("boolean")
    val = pd.DataFrame(
        {"kind": ["rank_min", "rank_max"], "region": [0, 0], "score": [0.2, 0.2], "split": "val"}
    )
    return calib, val


def test_choose_kinds_judges_calib_per_region_and_spreads_over_val() -> None:
    calib, val = _patches()
    out = choose_kinds(calib, val, "auto", 0.75)
    assert sorted(out) == [0, 1]
    assert (out[0]["kept"], out[0]["dropped"]) == (["rank_min"], ["rank_max"])
    ev = out[0]["kinds"]
    assert ev["rank_min"]["auroc"] == 1.0 and ev["rank_max"]["auroc"] == 0.5
    assert (ev["rank_max"]["defect_patches"], ev["rank_max"]["good_patches"]) == (1, 2)
    assert ev["rank_max"]["good_p50"] == pytest.approx(0.2)  # goods 0.1, 0.3 and val's 0.2
    assert out[1]["kept"] == ["rank_min", "rank_max"] and out[1]["dropped"] == []
    every = choose_kinds(calib, val, "all", 0.75)
    assert every[0]["kept"] == ["rank_min", "rank_max"] and every[0]["dropped"] == []
    assert every[0]["kinds"]["rank_max"]["auroc"] == 0.5  # the evidence is still recorded
    with pytest.raises(ValueError, match="expected auto or all"):
        choose_kinds(calib, val, "pooled", 0.75)
