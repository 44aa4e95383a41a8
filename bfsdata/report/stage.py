"""`bfsdata report` as one stage: score the model on the store, then write the report.

Scoring (bfsdata.score) streams the val/calib/test patches through the exported model; the
report (bfsdata.report) fits thresholds on calib and judges on test. Both live apart so the
report's tables can be tested on hand-made scores, and this joins them. The cut recipe recorded
with the patches goes into thresholds.json, so infer cuts as the scored patches were cut.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bfsdata.config.pipeline import IMAGE_LAYOUTS, Pipeline, ReportConfig
from bfsdata.report.write import ReportSummary, write_report
from bfsdata.score import ScoreError, reconstruct, score, score_label, scoring_rows
from bfsdata.show import source_image
from bfsdata.store import location as store
from bfsdata.workspace import manifest, paths, provenance
from bfsdata.workspace.session import session


def report(
    workspace: Path,
    pipe: Pipeline,
    *,
    run: str = "default",
    name: str | None = None,
    cfg: ReportConfig | None = None,
    manual: pd.DataFrame | Path | None = None,
    processes: int | None = None,
    scheduler: str | None = None,
    store: str | None = None,
) -> ReportSummary:
    """Score runs/<run>'s model and write reports/<name or run>/ (scores, metrics, html).

    manual: the client's manual Knapp results, or the CSV file holding them (`read_manual`).
    processes: score on a local cluster of that many worker processes; scheduler: on an
    existing dask.distributed cluster; neither: in this process. store: as for `ingest`.
    """
    ws = Path(workspace)
    run_dir = paths.run_dir(ws, run, "--run")
    out_dir = paths.report_dir(ws, name, "--name") if name else paths.report_dir(ws, run, "--run")
    if isinstance(manual, str | Path):
        manual = read_manual(Path(manual))
    # No lock: a report writes its own folder, never the store or the manifests.
    opts = {"store": store, "processes": processes, "scheduler": scheduler}
    with session(ws, "report", lock=False, **opts) as address:
        return _report(ws, pipe, run, run_dir, out_dir, cfg or pipe.report, manual, address)


def _report(
    ws: Path,
    pipe: Pipeline,
    run: str,
    run_dir: Path,
    out_dir: Path,
    cfg: ReportConfig,
    manual: pd.DataFrame | None,
    scheduler: str | None,
) -> ReportSummary:
    recipe = provenance.patch_recipe(ws)
    if recipe is None:
        raise ScoreError(
            f"{ws}: no cut recipe recorded with the patches (patched by an older bfsdata), and "
            f"infer needs it to cut as they were cut; run `bfsdata patch -w {ws}` again (it "
            "records the recipe and cuts nothing), then report"
        )
    rows = scoring_rows(ws, pipe)
    ann = manifest.read(ws, manifest.ANNOTATIONS)  # defect types, for the per-type table
    read = {manifest.ANNOTATIONS.name: ann}
    inputs = provenance.manifest_digests(
        ws, manifest.PATCHES, manifest.SPLITS_SCHEMA, manifest.ANNOTATIONS, read=read
    )
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
        annotations=ann,
        gallery=reconstruct(ws, run_dir),
        strip_image=lambda acq, kind, frame: source_image(root, acq, kind, frame),
        patch_size=pipe.patch.size,
        cut=recipe.to_dict(),
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
