"""`bfsdata report`: thresholds fitted on calib, judged on test, written for a person and for infer.

Input: one row per scored patch (the patches manifest columns + `split` val|calib|test +
`score` = 1 - SSIM, higher is more anomalous), rows of the test images only (frames, rank images).
Thresholds are fitted on calib and judged on test; without calib rows they are fitted on test
and every figure is marked in-sample. The levels and their tables are in `report_tables`.

Files written to `out_dir`, each beside its target then renamed:

`thresholds.json`, the artefact `infer` reads (region keys are strings, as JSON needs):
    format          1
    policy          "accuracy" | "balanced" | "frr:X" | "escape:X"
    min_agree       runs of 10 that must confirm a strip's label (run-wise rule)
    regions         [0, 1, 2, 3]; vials: vials per strip; frames: frame indices scored
    kinds           ["frame"] | ["rank_max"] | ...: which images were scored (infer cuts these,
                    with thresholds per kind those that judge some region)
    patch_size      P of the (P, P) patches, or null when not given
    cut             the recipe the scored patches were cut with (bfsdata.imaging.cut
                    CutRecipe.to_dict; infer cuts with it), when given
    thresholds_by   "region": the levels below are {region: t}, one threshold over every kind
                    (one kind scored, or report.kind_choice pooled; a file without the key);
                    "kind": {kind: {region: t}}, a (kind, region) absent judges nothing
    patch           one threshold per region (per kind) on patches (Table 1)
    strip           per acquisition: reject if any patch score > its threshold (Table 2)
    run             per acquisition, then judged over a strip's runs (Table 3)
    kind_choice     which kinds judge each region and why (report/kinds.py, by_kind): mode,
                    min_auroc, margin, scored, thresholds_by, reason, regions {r: {name, kept,
                    dropped, reason, kinds {kind: {auroc, defect_patches, good_patches,
                    good_p50, good_p99, kept, why}}}}
    rule            the decision rule in words
    model_run       name of the training run whose scores these are
    fitted_on       "calib" | "test (in-sample)"; created_at (ISO, UTC); bfsdata_version

`metrics.json`: bfsdata_version, created_at, model_run, workspace, policy, min_agree, alpha,
in_sample, fitted_on, evaluated_on, notes, counts {split: {patches, acquisitions, good_strips,
defect_strips}}, thresholds {patch, strip, run} (as in thresholds.json), kind_choice (as in
thresholds.json), headline {name: rate}, region_wise {regions
{c: {name, threshold, auroc, ms_per_patch, **rates}}, patches, vial, by_vial {v: rates},
left_out {patches, strips}} (c: a threshold column, the region or with thresholds per kind
judging.kinds.kind_column), strip_wise {thresholds, auroc, ms_per_strip, **rates}, run_wise
{thresholds, min_agree, decisions, **rates}, defect_types {level, kinds, types {name: {strips,
acquisitions, rejected, recall, escape_rate, caught_by {kind: n}, at_defect {located, caught,
by {kind: n}}, regions {r: the same with name}}}, untyped {strips, acquisitions}} (strip-wise,
report/defect_types.py), val {patch, strip, run: rates} | null, knapp
{n_strips, fqa_7_10, fqv_7_10, fqa_manual_zone, efficiency, efficiency_manual_zone, pass,
zones, manual_rows_outside_kit, table [rows]}, timing {the input + ms_per_patch, ms_per_strip
{mean, p50, p99}, strip_basis, slot_ms, margin_ms, margin_p99_ms, fits_slot}, misclassified
{acquisitions [rows], strips [rows]}, gallery [rows], item ("strip" | "image": what one
acquisition is), single_run (why run_wise and knapp are null: one run per item; else null),
provenance {version, stage, pipeline, pipeline_sha256, inputs {manifests and model: sha256},
model_run, thresholds_sha256} (when given). `**rates` are `metrics.rates` keys.

`report.html` (self-contained) and `heatmaps/*.png` (one gallery panel each, with a model).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import bfsdata
from bfsdata.config.pipeline import ReportConfig
from bfsdata.config.policy import parse_policy
from bfsdata.judging.metrics import Rate
from bfsdata.report import plots as rp
from bfsdata.report import sections
from bfsdata.report import tables as rt
from bfsdata.report.defect_types import defect_types
from bfsdata.report.gallery import GalleryFn, StripImageFn, png_name, render_panels
from bfsdata.report.html import render
from bfsdata.report.html_blocks import fmt_rate
from bfsdata.report.kinds import by_kind, nested
from bfsdata.report.kinds import notes as kind_notes
from bfsdata.workspace.writes import write_atomic

log = logging.getLogger(__name__)

# headline figure name -> metrics.rates key, for strip-wise and run-wise
HEADLINE = {
    "accuracy": "accuracy",
    "false reject rate": "false_reject_rate",
    "escape rate": "escape_rate",
}


@dataclass(frozen=True)
class ReportSummary:
    out_dir: Path
    paths: dict[str, Path]  # metrics, thresholds, html, heatmaps (folder)
    policy: str
    in_sample: bool  # thresholds fitted on the test strips themselves
    headline: dict[str, Rate | None]  # e.g. "strip-wise accuracy" -> {"value", "lo", "hi"}
    knapp_efficiency: float | None  # FQA(7-10) / FQV(7-10); None without a manual file
    knapp_pass: bool | None
    ms_per_strip: float | None  # mean, one acquisition; None when nothing was timed
    slot_ms: float
    left_out_patches: int  # unannotated defective patches, out of the patch-level figures
    notes: tuple[str, ...]
    item: str = "strip"  # strip | image (image folders): what one acquisition is
    single_run: bool = False  # one run per item: no run-wise and no Knapp level

    def lines(self) -> list[str]:
        where = (
            "IN-SAMPLE: fitted and judged on test"
            if self.in_sample
            else "fitted on calib, judged on test"
        )
        out = [f"report {self.out_dir}: policy {self.policy}, thresholds {where}"]
        levels = [rt.LEVEL[self.item]] + ([] if self.single_run else ["run-wise"])
        for level in levels:
            figs = (f"{name} {fmt_rate(self.headline[f'{level} {name}'])}" for name in HEADLINE)
            out.append(f"  {level}: {', '.join(figs)}")
        if self.single_run:
            out.append("  run-wise and Knapp: left out (one run per item)")
        elif self.knapp_efficiency is None:
            out.append("  Knapp: no manual file, efficiency not computed")
        else:
            verdict = "PASS" if self.knapp_pass else "FAIL"
            out.append(
                f"  Knapp efficiency {100 * self.knapp_efficiency:.1f}% (>= 100%): {verdict}"
            )
        if self.ms_per_strip is not None:
            out.append(f"  {self.ms_per_strip:.2f} ms per {self.item} vs {self.slot_ms:g} ms slot")
        out += [f"  note: {n}" for n in self.notes]
        out.append(f"  wrote {', '.join(p.name for k, p in self.paths.items() if k != 'heatmaps')}")
        return out


def write_report(
    workspace: Path,
    run: str,
    scores: pd.DataFrame,
    timing: dict[str, Any],
    cfg: ReportConfig,
    *,
    out_dir: Path,
    manual: pd.DataFrame | None = None,
    annotations: pd.DataFrame | None = None,
    gallery: GalleryFn | None = None,
    strip_image: StripImageFn | None = None,
    patch_size: int | None = None,
    cut: dict[str, Any] | None = None,
    provenance: dict[str, Any] | None = None,
    item: str = "strip",
    score_name: str = "1 - SSIM",
) -> ReportSummary:
    """Fit, judge and write metrics.json, thresholds.json, report.html (+ heatmaps/*.png).

    run: the training run whose scores these are. manual: the client's manual Knapp results,
    columns strip, rejections, inspections (rows of strips outside the judged kit are dropped).
    annotations: the annotations manifest (defect types and where), for `defect_types`.
    gallery: reconstructs store rows for the gallery (None: scores only, no images);
    strip_image: the image a patch was cut from, to place its heatmap on the strip.
    patch_size: P of the store's (N, P, P) patches, recorded for infer.
    cut: the cut recipe of the scored patches (CutRecipe.to_dict), recorded for infer.
    item: "strip", or "image" for image folders (an acquisition is one image): the wording.
    score_name: what the score is (score.score_label), written to metrics, thresholds and plots.
    provenance: what the scores came from (bfsdata.workspace.provenance record: manifests and model
    digests), written to metrics.json with the digest of thresholds.json added.
    Nothing is written until every figure is computed; a bad input writes nothing.
    """
    kit, choice = by_kind(
        rt.prepare(scores), cfg.kind_choice, cfg.kind_min_auroc, item, cfg.kind_margin
    )
    ts = rt.fit_thresholds(kit.fit, kit.regions, cfg.policy, cfg.min_agree)
    tables, picks = _tables(kit, ts, timing, cfg, manual, item)
    by = choice["thresholds_by"]
    tables["thresholds"] = {k: nested(v, by) for k, v in ts.items()}
    tables["kind_choice"] = choice
    tables["notes"] += kind_notes(choice)
    tables["defect_types"] = defect_types(kit.test, annotations, ts["strip"], cfg.alpha, item)
    panels = render_panels(picks, gallery, strip_image)
    now = pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds")
    about = {
        "bfsdata_version": bfsdata.__version__,
        "created_at": now,
        "model_run": run,
        "workspace": str(workspace),
        "policy": str(parse_policy(cfg.policy)),
        "min_agree": cfg.min_agree,
        "alpha": cfg.alpha,
        "in_sample": kit.in_sample,
        "fitted_on": "test (in-sample)" if kit.in_sample else "calib",
        "evaluated_on": "test (in-sample)" if kit.in_sample else "test",
        "item": item,
        "score": score_name,
    }
    gallery_rows = [
        {**r, "file": f"heatmaps/{png_name(r)}" if i in panels else None}
        for i, r in enumerate(rt.records(picks))
    ]
    metrics = {**about, **tables, "counts": sections.counts(scores), "gallery": gallery_rows}
    thresholds = {
        "format": 1,
        **{k: about[k] for k in ("policy", "min_agree")},
        "regions": sorted(int(r) for r in scores["region"].unique()),
        "vials": int(scores["vial"].nunique()),
        "frames": sorted(int(f) for f in scores["frame"].unique() if f >= 0),
        "kinds": choice["scored"],
        "thresholds_by": by,
        "patch_size": patch_size,
        **({} if cut is None else {"cut": cut}),
        **tables["thresholds"],
        "rule": f"an {'image' if item == 'image' else 'acquisition'} is rejected if any patch "
        f"score ({score_name}) > its {'(kind, region)' if by == 'kind' else 'region'} threshold"
        + (
            ""
            if tables["single_run"]
            else f"; a strip is judged by the 'run' thresholds and confirmed in >= "
            f"{cfg.min_agree} of 10 runs"
        ),
        "kind_choice": choice,
        **{k: about[k] for k in ("model_run", "fitted_on", "created_at", "bfsdata_version")},
    }
    if provenance is not None:
        # infer records this digest of the thresholds it applies: its decisions lead back here.
        th_sha = hashlib.sha256(_json(thresholds)).hexdigest()
        metrics["provenance"] = {**provenance, "thresholds_sha256": th_sha}
    shown = [{**g, "png": panels.get(i)} for i, g in enumerate(gallery_rows)]
    html = render(metrics, _figures(kit, ts, tables, item, score_name), shown)
    paths = _write(Path(out_dir), metrics, thresholds, html, picks, panels)
    log.info("report written to %s", out_dir)
    return ReportSummary(
        out_dir=Path(out_dir),
        paths=paths,
        policy=about["policy"],
        in_sample=kit.in_sample,
        headline=tables["headline"],
        knapp_efficiency=(tables["knapp"] or {}).get("efficiency"),
        knapp_pass=(tables["knapp"] or {}).get("pass"),
        ms_per_strip=tables["timing"]["ms_per_strip"]["mean"],
        slot_ms=cfg.slot_ms,
        left_out_patches=tables["region_wise"]["left_out"]["patches"],
        notes=tuple(tables["notes"]),
        item=item,
        single_run=tables["single_run"] is not None,
    )


def _tables(
    kit: rt.Kit,
    ts: dict[str, rt.Thresholds],
    timing: dict[str, Any],
    cfg: ReportConfig,
    manual: pd.DataFrame | None,
    item: str = "strip",
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Every figure judged on test, as metrics.json sections, and the gallery picks. With one
    run per item the run-wise and Knapp sections are None and `single_run` says why."""
    ev, regions, alpha = kit.test, kit.regions, cfg.alpha
    per_acq = int(ev.groupby(rt.ACQ).size().median())
    tm = sections.timing_section(timing, per_acq, cfg.slot_ms)
    t1 = rt.region_wise(ev, ts["patch"], regions, alpha, tm["ms_per_patch"]["mean"], item)
    t2, t3, acq, strips = rt.strip_wise(ev, ts, regions, alpha, cfg.min_agree)
    t2["ms_per_strip"] = tm["ms_per_strip"]["mean"]
    once = rt.single_run(strips, item)
    kn = None if once else sections.knapp_section(strips, manual)
    t3 = None if once else t3
    judged = "test (in-sample)" if kit.in_sample else "test"
    for section in (t for t in (t1, t2, t3, kn) if t is not None):
        section |= {"judged_on": judged, "in_sample": kit.in_sample}
    val = rt.val_false_rejects(kit.val, ts, regions, alpha, cfg.min_agree)
    if once and val is not None:
        val.pop("run")
    levels = [(rt.LEVEL[item], t2)] + ([] if once else [("run-wise", t3)])
    tables = {
        "notes": sections.notes(kit, t1, kn, tm, once),
        "headline": {
            f"{level} {name}": t[key] for level, t in levels for name, key in HEADLINE.items()
        },
        "region_wise": t1,
        "strip_wise": t2,
        "run_wise": t3,
        "single_run": once,
        "val": val,
        "knapp": kn,
        "timing": tm,
        "misclassified": {
            "acquisitions": rt.records(acq[acq["rejected"] != acq["strip_defect"]]),
            "strips": rt.records(strips[~strips["correct"]]),
        },
    }
    return tables, sections.gallery_picks(ev, strips, ts, cfg.gallery)


def _figures(
    kit: rt.Kit,
    ts: dict[str, rt.Thresholds],
    tables: dict,
    item: str,
    score_name: str,
) -> dict[str, bytes]:
    """PNGs: "region:<r>" (ROC + histograms on labelled test patches), "knapp", "timing"."""
    lab = rt.known(kit.test)
    out = {}
    for r in kit.regions:
        g = lab[lab["column"] == r]
        good, defect = (g.loc[g["is_defect"] == d, "score"].to_numpy() for d in (False, True))
        level_t = {k: v[r] for k, v in ts.items()}
        out[f"region:{r}"] = rp.region_figure(
            good, defect, level_t, rt.region_name(r, item), score_name
        )
    if tables["knapp"] is not None:
        out["knapp"] = rp.knapp_figure(tables["knapp"]["table"])
    if tables["timing"]["fits_slot"] is not None:  # else nothing was timed
        out["timing"] = rp.timing_figure(tables["timing"])
    return out


def _plain(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def _json(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, allow_nan=False, default=_plain) + "\n").encode()


def _write(
    out: Path, metrics: dict, thresholds: dict, html: str, picks: pd.DataFrame, panels: dict
) -> dict[str, Path]:
    """Everything was computed before; write the heatmaps, then the JSONs, the page last."""
    heat = out / "heatmaps"
    heat.mkdir(parents=True, exist_ok=True)
    names = {png_name(r): panels[i] for i, r in enumerate(rt.records(picks)) if i in panels}
    for name, png in names.items():
        write_atomic(heat / name, png)
    for stale in heat.glob("*.png"):  # panels of an earlier report that are not shown now
        if stale.name not in names:
            stale.unlink()
    paths = {
        "metrics": out / "metrics.json",
        "thresholds": out / "thresholds.json",
        "html": out / "report.html",
        "heatmaps": heat,
    }
    write_atomic(paths["metrics"], _json(metrics))
    write_atomic(paths["thresholds"], _json(thresholds))
    write_atomic(paths["html"], html.encode("utf-8"))
    return paths
