"""`bfsdata report --run A --run B`: each run reported as alone, then compared and fused.

Every run is scored and reported into its own reports/<run>/ (`stage.report`, the format of a
one-run report); the comparison report reads back their scores.parquet, metrics.json and
thresholds.json and writes reports/<name>/ (`compare.write_comparison`). Reading the files back
rather than keeping them in memory compares exactly what each report shows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from bfsdata.config.pipeline import Pipeline
from bfsdata.report.compare import write_comparison
from bfsdata.report.stage import report
from bfsdata.report.write import ReportSummary
from bfsdata.workspace import paths


@dataclass(frozen=True)
class Comparison:
    out_dir: Path
    reports: tuple[ReportSummary, ...]  # one per run, in order
    metrics: dict[str, Any]  # the comparison's metrics.json

    def lines(self) -> list[str]:
        out = [line for s in self.reports for line in s.lines()]
        out.append(f"comparison {self.out_dir}: fused = reject when any run rejects")
        for row in self.metrics["comparison"]:
            figs = [
                f"{k} {v['value']:.4f}"
                for k, v in row.items()
                if k not in ("model", "region_auroc") and v is not None
            ]
            out.append(f"  {row['model']}: {', '.join(figs)}")
        return out


def default_name(runs: list[str]) -> str:
    """The comparison's report name: the runs joined by '_' ('+' is no plain name)."""
    return "_".join(runs)


def compare_runs(
    workspace: Path, pipe: Pipeline, runs: list[str], *, name: str | None = None, **opts: Any
) -> Comparison:
    """Report each run into reports/<run>/, then compare and fuse them into reports/<name>/.

    opts: as for `stage.report` (manual, processes, scheduler, store, cfg).
    """
    ws = Path(workspace)
    if len(runs) < 2 or len(set(runs)) != len(runs):
        raise ValueError(f"--run: comparing needs two different runs or more, got {runs}")
    for r in runs:
        paths.run_dir(ws, r, "--run")  # refuse a bad name before anything is scored
    out_dir = paths.report_dir(ws, name or default_name(runs), "--name")
    if out_dir.name in runs:
        raise ValueError(f"--name {out_dir.name!r} is the report of one of the runs compared")
    summaries = tuple(report(ws, pipe, run=r, **opts) for r in runs)
    scored, metrics, thresholds = {}, {}, {}
    for r, s in zip(runs, summaries, strict=True):
        scored[r] = pd.read_parquet(s.out_dir / "scores.parquet")
        metrics[r] = json.loads((s.out_dir / paths.METRICS).read_text())
        thresholds[r] = json.loads((s.out_dir / paths.THRESHOLDS).read_text())
    cfg = opts.get("cfg") or pipe.report
    item = summaries[0].item
    m = write_comparison(out_dir, scored, metrics, thresholds, cfg, item=item)
    return Comparison(out_dir, summaries, m)
