"""The comparison report of several runs judged on the same calib/test split, and their fusion.

Each run has its own report (reports/<run>/, written as for one run); this writes
reports/<name>/ with metrics.json (`runs`: each run's headline figures and per-region AUROC,
`fused`: the fused decision's thresholds and rates, `comparison`: the table on top of the page),
thresholds.json for the fused model (`fused`: the run names; `patch`, `strip`, `run`:
{run: {region: t}}, or {run: {kind: {region: t}}} with `thresholds_by` kind, each run judging
a region by the kinds its own report chose; the cut recipe every run's thresholds.json has,
which must be equal) and a
self-contained report.html with the comparison table.
"""

from __future__ import annotations

import hashlib
import json
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import bfsdata
from bfsdata.config.pipeline import ReportConfig
from bfsdata.config.policy import parse_policy
from bfsdata.report import fuse
from bfsdata.report import tables as rt
from bfsdata.report.html_blocks import CSS, fmt_rate
from bfsdata.workspace.writes import write_atomic

FIGURES = {"accuracy": "accuracy", "FRR": "false_reject_rate", "escape": "escape_rate"}
# Equal across runs: the cut, and whether thresholds are per region or per (kind, region).
SHARED = ("regions", "vials", "frames", "kinds", "patch_size", "cut", "thresholds_by")


def write_comparison(
    out_dir: Path,
    scored: dict[str, pd.DataFrame],
    metrics: dict[str, dict[str, Any]],
    thresholds: dict[str, dict[str, Any]],
    cfg: ReportConfig,
    *,
    item: str = "strip",
) -> dict[str, Any]:
    """Fit the fused thresholds on calib, judge on test, write the comparison; its metrics.

    scored, metrics, thresholds: per run (in order), its scores and its own report's files.
    """
    runs = list(scored)
    first = thresholds[runs[0]]
    for run in runs[1:]:
        differ = [k for k in SHARED if thresholds[run].get(k) != first.get(k)]
        if differ:
            raise ValueError(
                f"runs {runs[0]!r} and {run!r} were reported on patches cut otherwise "
                f"({', '.join(differ)} differ in their thresholds.json); fused thresholds need "
                "one cut recipe"
            )
    choices = {r: thresholds[r].get("kind_choice") for r in runs}  # each run's kinds per region
    kit, ts = fuse.fit_fused(scored, cfg.policy, cfg.min_agree, choices)
    fused = fuse.judge_fused(kit, ts, cfg.alpha, cfg.min_agree, item)
    by = first.get("thresholds_by") or "region"
    keyed = {level: fuse.split_keyed(t, runs, by) for level, t in ts.items()}
    now = pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds")
    fitted_on = "test (in-sample)" if kit.in_sample else "calib"
    policy = str(parse_policy(cfg.policy))
    out = {
        "bfsdata_version": bfsdata.__version__,
        "created_at": now,
        "policy": policy,
        "min_agree": cfg.min_agree,
        "alpha": cfg.alpha,
        "fitted_on": fitted_on,
        "evaluated_on": "test (in-sample)" if kit.in_sample else "test",
        "item": item,
        "runs": {r: _run_figures(metrics[r]) for r in runs},
        "fused": {"runs": runs, "thresholds": keyed, **fused, "decisions": fuse.decisions(kit, ts)},
    }
    out["comparison"] = _comparison(out, item)
    th = {
        "format": 1,
        "fused": runs,
        "policy": policy,
        "min_agree": cfg.min_agree,
        **{k: first.get(k) for k in SHARED},
        **keyed,
        "rule": f"an {'image' if item == 'image' else 'acquisition'} is rejected if any run's "
        "patch score > that run's region threshold (reject when either rejects)",
        "fitted_on": fitted_on,
        "created_at": now,
        "bfsdata_version": bfsdata.__version__,
    }
    # What each run's scores came from (its own report's record) and this thresholds.json's
    # digest, which infer records: a fused decision leads back to every model and manifest.
    out["provenance"] = {
        "runs": {r: metrics[r].get("provenance") for r in runs},
        "thresholds_sha256": hashlib.sha256(_json(th)).hexdigest(),
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(out_dir / "thresholds.json", _json(th))
    write_atomic(out_dir / "metrics.json", _json(out))
    write_atomic(out_dir / "report.html", _html(out).encode())
    return out


def _run_figures(m: dict[str, Any]) -> dict[str, Any]:
    regions = m["region_wise"]["regions"]
    return {
        "score": m.get("score"),
        "strip_wise": m["strip_wise"],
        "run_wise": m["run_wise"],
        "region_auroc": {r: v["auroc"] for r, v in regions.items()},
        "region_names": {r: v["name"] for r, v in regions.items()},
    }


def _comparison(out: dict[str, Any], item: str) -> list[dict[str, Any]]:
    """One row per run and one for the fused decision: strip-wise and run-wise accuracy, FRR,
    escape (with CIs), and per-region AUROC (none for the fused decision: it has no one score)."""
    level = rt.LEVEL[item]
    rows = []
    named = [(r, out["runs"][r]) for r in out["runs"]] + [("fused", out["fused"])]
    for name, figs in named:
        row: dict[str, Any] = {"model": name}
        for lv, table in ((level, figs["strip_wise"]), ("run-wise", figs["run_wise"])):
            for label, key in FIGURES.items():
                row[f"{lv} {label}"] = None if table is None else table[key]
        row["region_auroc"] = figs.get("region_auroc")
        rows.append(row)
    return rows


def _html(out: dict[str, Any]) -> str:
    rows = out["comparison"]
    regions = sorted({r for row in rows for r in (row["region_auroc"] or {})}, key=int)
    names = next(iter(out["runs"].values()))["region_names"]
    rate_cols = [k for k in rows[0] if k not in ("model", "region_auroc")]
    head = "".join(f"<th>{escape(c)}</th>" for c in ["model", *rate_cols])
    head += "".join(f"<th>AUROC {escape(names.get(r, r))}</th>" for r in regions)
    body = []
    for row in rows:
        cells = [f"<td>{escape(row['model'])}</td>"]
        cells += [f"<td>{fmt_rate(row[c])}</td>" for c in rate_cols]
        auc = row["region_auroc"] or {}
        cells += [f"<td>{_num(auc.get(r))}</td>" for r in regions]
        body.append(f"<tr>{''.join(cells)}</tr>")
    runs = ", ".join(escape(r) for r in out["runs"])
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>bfsdata comparison</title>"
        f"<style>{CSS}</style></head><body><h1>Comparison: {runs}</h1>"
        f"<p class='meta'>policy {escape(out['policy'])}; thresholds fitted on "
        f"{escape(out['fitted_on'])}, judged on {escape(out['evaluated_on'])}; fused: an item "
        "is rejected when any run rejects it, every threshold fitted jointly</p>"
        f"<h2 id='comparison'>Comparison</h2><div class='wide'><table><thead><tr>{head}</tr>"
        f"</thead><tbody>{''.join(body)}</tbody></table></div>"
        "<p class='note'>Each run's full report is in reports/&lt;run&gt;/.</p>"
        f"<h2 id='provenance'>Provenance</h2>{_provenance(out['provenance'])}</body></html>\n"
    )


def _provenance(prov: dict[str, Any]) -> str:
    """Per run its pipeline and the digests of the manifests and the model its scores came
    from; then the digest of the fused thresholds.json."""
    rows = []
    for run, rec in prov["runs"].items():
        if not rec:
            rows.append(f"<tr><td>{escape(run)}</td><td>no record</td></tr>")
            continue
        what = [f"pipeline {rec.get('pipeline')} sha256 {rec.get('pipeline_sha256')}"]
        what += [f"{k} sha256 {v}" for k, v in rec.get("inputs", {}).items()]
        cells = "<br>".join(f"<code>{escape(w)}</code>" for w in what)
        rows.append(f"<tr><td>{escape(run)}</td><td>{cells}</td></tr>")
    rows.append(
        f"<tr><td>fused thresholds.json</td><td><code>sha256 {prov['thresholds_sha256']}"
        "</code></td></tr>"
    )
    head = "<thead><tr><th>run</th><th>from</th></tr></thead>"
    return f"<table>{head}<tbody>{''.join(rows)}</tbody></table>"


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def _json(obj: Any) -> bytes:
    def plain(o: Any) -> Any:
        if isinstance(o, np.generic):
            return o.item()
        raise TypeError(f"{type(o).__name__} is not JSON serialisable")

    return (json.dumps(obj, indent=2, allow_nan=False, default=plain) + "\n").encode()
