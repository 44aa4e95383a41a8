"""`bfsdata.report.sections`: the Knapp table built by hand and the timing section's basis and
slot check."""

from __future__ import annotations

import pandas as pd
import pytest

from bfsdata.judging.decisions import runwise
from bfsdata.report.sections import knapp_section, timing_section
from tests.unit.report.scores import TIMING


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


def test_timing_basis_and_slot() -> None:
    t = timing_section(TIMING, 60, 500.0)
    assert t["ms_per_strip"]["mean"] == 40.0 and t["strip_basis"].startswith("measured per batch")
    t = timing_section({**TIMING, "batch": 32}, 60, 30.0)
    assert t["ms_per_strip"]["p99"] == pytest.approx(0.92 * 60)
    assert "x 60 patches" in t["strip_basis"] and not t["fits_slot"]
    assert t["margin_ms"] == pytest.approx(30.0 - 0.67 * 60)
    with pytest.raises(ValueError, match="timing lacks keys"):
        timing_section({"batch": 60}, 60, 500.0)
