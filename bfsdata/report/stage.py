"""`bfsdata report` as one stage: score the model on the store, then write the report.

Scoring (bfsdata.score) streams the val/calib/test patches through the exported model; the
report (bfsdata.report) fits thresholds on calib and judges on test. Both live apart so the
report's tables can be tested on hand-made scores, and this joins them.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bfsdata.config.pipeline import IMAGE_LAYOUTS, Pipeline, ReportConfig
from bfsdata.report.write import ReportSummary, write_report
from bfsdata.score import reconstruct, score, score_label, scoring_rows
from bfsdata.show import source_image
from bfsdata.store import location as store
from bfsdata.workspace import manifest, provenance


def report(
    workspace: Path,
    pipe: Pipeline,
    *,
    run: str = "default",
    name: str | None = None,
    cfg: ReportConfig | None = None,
    manual: pd.DataFrame | None = None,
    scheduler: str | None = None,
) -> ReportSummary:
    """Score runs/<run>'s model and write reports/<name or run>/ (scores, metrics, html).

    scheduler: a dask.distributed scheduler address to score on (None: in this process).
    """
    ws = Path(workspace)
    cfg = cfg or pipe.report
    run_dir = ws / "runs" / run
    out_dir = ws / "reports" / (name or run)
    rows = scoring_rows(ws, pipe)
    inputs = provenance.manifest_digests(ws, manifest.PATCHES, manifest.SPLITS_SCHEMA)
    inputs |= provenance.model_input(ws, run)
    rec = provenance.record(pipe, "report", inputs, model_run=run)
    scored, timing = score(ws, run_dir, rows, out_dir, batch=cfg.batch, scheduler=scheduler)
    root = store.open_root(ws, mode="r")
    summary = write_report(
        ws,
        run,
        scored,
        timing,
        cfg,
        out_dir=out_dir,
        manual=manual,
        gallery=reconstruct(ws, run_dir),
        strip_image=lambda acq, kind, frame: source_image(root, acq, kind, frame),
        patch_size=pipe.patch.size,
        item="image" if pipe.layout.mode in IMAGE_LAYOUTS else "strip",
        provenance=rec,
        score_name=score_label(run_dir),
    )
    tmp = out_dir / ".scores.parquet.tmp"
    table = pa.Table.from_pandas(scored, preserve_index=False)
    pq.write_table(manifest.with_provenance(table, rec), tmp)
    tmp.replace(out_dir / "scores.parquet")
    return summary


def read_manual(path: Path) -> pd.DataFrame:
    """The client's manual Knapp results: strip, rejections, inspections."""
    try:
        df = pd.read_csv(path)
    except (OSError, pd.errors.ParserError) as e:
        raise ValueError(f"{path}: cannot read the manual Knapp file ({e})") from None
    missing = {"strip", "rejections", "inspections"} - set(df.columns)
    if missing:
        raise ValueError(
            f"{path}: missing column(s) {', '.join(sorted(missing))}; "
            "expected strip,rejections,inspections"
        )
    return df
