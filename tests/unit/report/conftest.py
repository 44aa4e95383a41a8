"""The report every test of this folder that only reads it shares (`done`), written once per
test session (package scope)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.unit.report.scores import (
    annotations,
    fake_gallery,
    make_scores,
    run_report,
    strip_image,
)


@pytest.fixture(scope="package")
def done(tmp_path_factory: pytest.TempPathFactory):
    """One full report (calib + test, manual Knapp file, defect types, a model for the gallery)."""
    out = tmp_path_factory.mktemp("report")
    df = make_scores()
    strips = sorted(df["strip"].unique())
    manual = pd.DataFrame({"strip": strips, "rejections": 3, "inspections": 30})
    manual.loc[manual["strip"].str.startswith("D"), "rejections"] = 24  # FQV 8: reject zone
    calls: list = []
    summary = run_report(
        out,
        df,
        manual=manual,
        annotations=annotations(),
        gallery=fake_gallery(calls),
        strip_image=strip_image,
        patch_size=16,
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
