"""report.html from the metrics dict: string templating, inline CSS, PNGs embedded as base64.

The page opens from disk with no network and no JavaScript. Every table shows the paper's row
names (true positive ratio = good accepted, true negative ratio = defect rejected) beside the
pharma ones (false reject rate, escape rate); a rate reads "0.9593 [0.9301, 0.9790]", the
value and its Clopper-Pearson interval.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from bfsdata.config.pipeline import image_name
from bfsdata.report import kinds
from bfsdata.report.defect_types import section_html
from bfsdata.report.html_blocks import (
    CSS,
    MAX_ROWS,
    SECTIONS,
    fmt_rate,
    img,
    num,
    rate_rows,
    table,
)
from bfsdata.report.tables import LEVEL, region_name


def _region_wise(m: Mapping[str, Any]) -> str:
    rw = m["region_wise"]
    regs = list(rw["regions"].values())
    cols = [*regs, rw["vial"], rw["patches"]]
    images = _item(m) == "image"
    head = ["", *(escape(r["name"]) for r in regs), "Tile column" if images else "Vial"]
    head.append("All patches")
    rows = [["Threshold", *(f"{r['threshold']:.6f}" for r in regs), "–", "–"]]
    rows += rate_rows(cols)
    ms = m["timing"]["ms_per_patch"]["mean"]
    rows.append(["Mean inference time (ms per patch)", *[num(ms)] * len(regs), "–", "–"])
    left = rw["left_out"]
    vial_cols = list(rw["by_vial"].values())
    return (
        table(head, rows)
        + f'<p class="note">Patch labels come from the defect annotation. {left["patches"]} '
        f"patches of {left['strips']} defective strip(s) without annotation are left out of the "
        "patch and vial figures (they count at strip and run level). "
        + (
            "Tile column: the tiles of one column of an image"
            if images
            else "Vial: the 4 regions of one vial in one image"
        )
        + ", rejected if any exceeds its region threshold; its AUROC is on the margin "
        "max(score - threshold).</p>"
        + (
            "<h3>Tile column level by column</h3>"
            if images
            else "<h3>Vial level by vial position</h3>"
        )
        + table(
            ["", *(f"{'column' if images else 'vial'} {v}" for v in rw["by_vial"])],
            rate_rows(vial_cols)[:-2],
        )
    )


def _item(m: Mapping[str, Any]) -> str:
    """What one acquisition is: "strip", or "image" for image folders."""
    return m.get("item", "strip")


def _level(m: Mapping[str, Any], key: str, extra: list[list[str]]) -> str:
    t = m[key]
    names = {r: region_name(int(r), _item(m)) for r in t["thresholds"]}
    rows = [[f"Threshold {names[r]}", f"{v:.6f}"] for r, v in t["thresholds"].items()]
    rows += [r for r in rate_rows([t]) if r[0] != "AUROC" or t.get("auroc") is not None]
    return table(["", "Score"], rows + extra)


def _confusion(name: str, r: Mapping[str, Any]) -> str:
    rows = [
        ["actual good", r["good_accepted"], r["good_rejected"]],
        ["actual defect", r["defect_accepted"], r["defect_rejected"]],
    ]
    return f"<div><h3>{escape(name)}</h3>{table(['', 'accepted', 'rejected'], rows)}</div>"


def _knapp(k: Mapping[str, Any], chart: bytes) -> str:
    z = k["zones"]
    out = [
        f"<p>FQA = rejections / runs x 10 per strip. Zones: accept 0-3 ({z['accept']} strips), "
        f"grey 4-6 ({z['grey']}), reject 7-10 ({z['reject']}). "
        f"Sum of FQA over the reject zone FQA(7-10) = <b>{k['fqa_7_10']:.2f}</b>.</p>"
    ]
    if k["fqv_7_10"] is None:
        out.append(
            '<p class="note">No manual inspection file given (--manual FILE): the '
            "machine-vs-manual efficiency is not computed.</p>"
        )
    elif k["efficiency"] is None:
        out.append(
            f"<p>FQV(7-10) = {k['fqv_7_10']:.2f}: no strip in the manual reject zone, "
            "so the Knapp efficiency says nothing.</p>"
        )
    else:
        verdict = (
            '<span class="pass">PASS</span>' if k["pass"] else '<span class="fail">FAIL</span>'
        )
        out.append(
            f"<p>Efficiency FQA(7-10) / FQV(7-10) = {k['fqa_7_10']:.2f} / "
            f"{k['fqv_7_10']:.2f} = <b>{100 * k['efficiency']:.1f}%</b> (required &ge; 100%): "
            f"{verdict}. Over the strips the manual inspection puts in 7-10 only: "
            f"{100 * k['efficiency_manual_zone']:.1f}%.</p>"
        )
    if k["good_in_reject_zone"]:
        out.append(
            f'<p class="fail">{k["good_in_reject_zone"]} good strip(s) sit in the machine\'s '
            "reject zone and add to FQA(7-10): read the efficiency with the false reject rate "
            "and the manual-zone efficiency above.</p>"
        )
    out.append(img(chart, "Knapp FQA per strip"))
    cols = ["strip", "label", "runs", "rejections", "fqa", "zone", "decision", "correct"]
    cols += [
        c
        for c in ("manual_rejections", "inspections", "fqv", "manual_zone")
        if k["table"] and c in k["table"][0]
    ]
    labelled = [{**r, "label": "defect" if r["is_defect"] else "good"} for r in k["table"]]
    rows = [
        [escape(str(r[c])) if not isinstance(r[c], float) else f"{r[c]:.1f}" for c in cols]
        for r in labelled[:MAX_ROWS]
    ]
    return "".join(out) + table([c.replace("_", " ") for c in cols], rows)


def _timing(t: Mapping[str, Any], chart: bytes | None, item: str = "strip") -> str:
    pp, ps = t["ms_per_patch"], t["ms_per_strip"]
    rows = [
        ["ms per patch", *(num(pp[k]) for k in ("mean", "p50", "p99"))],
        [f"ms per {item}", *(num(ps[k], ".3f") for k in ("mean", "p50", "p99"))],
    ]
    fits = {
        True: '<span class="pass">fits</span>',
        False: '<span class="fail">does not fit</span>',
        None: '<span class="fail">was not measured</span>',
    }[t["fits_slot"]]
    return (
        table(["", "mean", "p50", "p99"], rows)
        + f"<p>Strip time: {escape(t['strip_basis'])}. Acquisition slot {t['slot_ms']:g} ms; "
        f"margin {num(t['margin_ms'], '.1f')} ms (mean), {num(t['margin_p99_ms'], '.1f')} ms "
        f"(p99): the p99 {fits}. Device {escape(str(t.get('device', '?')))}, batch {t['batch']}, "
        f"{t.get('warmup_batches', '?')} warm-up batches left out.</p>"
        + (img(chart, "timing against the slot") if chart else "")
    )


def _gallery(
    items: Sequence[Mapping[str, Any]], have_images: bool, wrong: list, item: str = "strip"
) -> str:
    out = []
    if not have_images:
        out.append(
            '<p class="note">Images unavailable: no model was given to reconstruct the '
            "patches, so the gallery lists scores only.</p>"
        )
    for g in items:
        where = (
            f"image {escape(str(g['strip']))}, tile column {g['vial']}"
            if item == "image"
            else f"strip {escape(str(g['strip']))}, run {g['run']}, "
            f"{image_name(g['kind'], g['frame'])}, vial {g['vial']}"
        )
        head = (
            f"<b>{escape(g['reason'])}</b> — {where}, {escape(region_name(g['region'], item))}: "
            f"score {g['score']:.5f} vs threshold {g['threshold']:.5f}"
        )
        pic = img(g["png"], f"patch {g['patch']}") if g.get("png") else ""
        out.append(f'<div class="item">{head}<br>{pic}</div>')
    cols = ["strip", "run", "label", "image", "vial", "region", "score", "margin"]
    fmt = {"score": ".5f", "margin": "+.5f"}
    rows = [
        [format(r[c], fmt[c]) if c in fmt else escape(str(r[c])) for c in cols]
        for r in ({**r, "image": image_name(r["kind"], r["frame"])} for r in wrong[:MAX_ROWS])
    ]
    more = f" (first {MAX_ROWS} of {len(wrong)})" if len(wrong) > MAX_ROWS else ""
    return (
        "".join(out)
        + f"<h3>Misclassified acquisitions, {LEVEL[item]}{more}</h3>"
        + table(cols, rows)
    )


BANNER = (
    '<div class="banner">IN-SAMPLE: no calib strips, so the thresholds were fitted on the test '
    "strips they are judged on. Every figure below is optimistic: it does not validate the "
    "machine.</div>"
)
PROVENANCE = ("bfsdata_version", "created_at", "model_run", "workspace", "policy", "alpha")


def _strip_wise(m: Mapping[str, Any]) -> str:
    tm, val, item = m["timing"], m.get("val"), _item(m)
    out = _level(
        m,
        "strip_wise",
        [[f"Mean inference time (ms per {item})", num(m["strip_wise"]["ms_per_strip"], ".3f")]],
    )
    what = "one image" if item == "image" else "one acquisition (strip, run)"
    out += (
        f'<p class="note">Item: {what}; rejected if any patch exceeds its region threshold '
        f"(eq. 13: the max over its patches). {item.capitalize()} time: "
        f"{escape(tm['strip_basis'])}.</p>"
    )
    if val is not None:
        rows = [[lv, fmt_rate(v["false_reject_rate"]), v["n_good"]] for lv, v in val.items()]
        out += (
            "<h3>Extra false-reject estimate on val (good strips, each level its thresholds)</h3>"
        )
        out += table(["level", "false reject rate", "good items"], rows)
    return out


def _run_wise(m: Mapping[str, Any]) -> str:
    r3 = m["run_wise"]
    decisions = ", ".join(f"{k} {v}" for k, v in sorted(r3["decisions"].items()))
    return _level(m, "run_wise", [["Decisions", escape(decisions)]]) + (
        '<p class="note">Item: one strip over its runs; correct when its label is confirmed in '
        f"at least {r3['min_agree']} of 10 runs. Undecided strips count as errors.</p>"
    )


def _confusions(m: Mapping[str, Any]) -> str:
    levels = [
        ("patches (all regions)", m["region_wise"]["patches"]),
        ("tile columns" if _item(m) == "image" else "vials", m["region_wise"]["vial"]),
        (LEVEL[_item(m)], m["strip_wise"]),
        ("run-wise", m["run_wise"]),
    ]
    levels = [(n, r) for n, r in levels if r is not None]
    return "<div class='cards'>" + "".join(_confusion(n, r) for n, r in levels) + "</div>"


def _provenance(m: Mapping[str, Any]) -> str:
    rows = [[k, escape(str(m[k]))] for k in PROVENANCE]
    rows += [
        ["thresholds fitted on", escape(m["fitted_on"])],
        ["judged on", escape(m["evaluated_on"])],
    ]
    rec = m.get("provenance") or {}
    if rec:
        rows.append(
            ["pipeline", escape(f"{rec.get('pipeline')} sha256 {rec.get('pipeline_sha256')}")]
        )
        rows += [[escape(k), f"sha256 <code>{escape(v)}</code>"] for k, v in rec["inputs"].items()]
        rows.append(["thresholds.json", f"sha256 <code>{escape(rec['thresholds_sha256'])}</code>"])
    return table(["field", "value"], rows) + "".join(
        f'<p class="note">{escape(n)}</p>' for n in m["notes"]
    )


def render(m: Mapping[str, Any], images: Mapping[str, bytes], gallery: Sequence[Mapping]) -> str:
    """The page. images: "region:<r>", "knapp", "timing" PNGs; gallery: picked items with
    an optional "png" panel each."""
    cards = "".join(
        f'<div class="card">{escape(k)}<b>{fmt_rate(v)}</b></div>' for k, v in m["headline"].items()
    )
    have_images = any(g.get("png") for g in gallery)
    item, once = _item(m), m.get("single_run")
    left_out = f'<p class="note">{escape(once[0].upper() + once[1:])}.</p>' if once else ""
    sections = {
        "summary": f"<div class='cards'>{cards}</div>{left_out}",
        "kinds": kinds.section_html(m["kind_choice"]) if m.get("kind_choice") else "",
        "region-wise": _region_wise(m),
        "strip-wise": _strip_wise(m),
        "run-wise": "" if once else _run_wise(m),
        "defect-types": section_html(m["defect_types"]) if m.get("defect_types") else "",
        "confusion": _confusions(m),
        "knapp": "" if once else _knapp(m["knapp"], images["knapp"]),
        "regions": "".join(img(v, k) for k, v in images.items() if k.startswith("region:")),
        "timing": _timing(m["timing"], images.get("timing"), item),
        "gallery": _gallery(gallery, have_images, m["misclassified"]["acquisitions"], item),
        "provenance": _provenance(m),
    }
    shown = [
        (k, f"Table 2 {LEVEL[item]}" if k == "strip-wise" else t)
        for k, t in SECTIONS
        if not (once and k in ("run-wise", "knapp"))
        and (k not in ("defect-types", "kinds") or sections[k])
    ]
    nav = "".join(f'<a href="#{k}">{t}</a>' for k, t in shown)
    mark = ' <span class="fail">(in-sample)</span>' if m["in_sample"] else ""
    body = "".join(
        f'<section id="{k}"><h2>{t}{mark if k != "provenance" else ""}</h2>{sections[k]}</section>'
        for k, t in shown
    )
    title = escape(m["model_run"])
    meta = (
        f"score {escape(m['score'])}, "
        f"policy {escape(m['policy'])}, thresholds fitted on {escape(m['fitted_on'])}, judged on "
        f"{escape(m['evaluated_on'])}, {100 * (1 - m['alpha']):g}% Clopper-Pearson intervals, "
        f"bfsdata {escape(m['bfsdata_version'])}, {escape(m['created_at'])}"
    )
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>bfsdata validation '
        f"report: {title}</title><style>{CSS}</style></head><body><h1>Validation report: "
        f"{title}</h1><p class='meta'>{meta}</p>{BANNER if m['in_sample'] else ''}"
        f"<nav>{nav}</nav>{body}{_footer(m)}</body></html>\n"
    )


def _footer(m: Mapping[str, Any]) -> str:
    """Traceability on every printout: what the figures were made from, digests shortened."""
    rec = m.get("provenance")
    if not rec:
        return ""
    sha = (rec.get("pipeline_sha256") or "(no file)")[:12]
    parts = [f"bfsdata {rec['version']}", f"pipeline {rec.get('pipeline')} {sha}"]
    parts += [f"{k} {v[:12]}" for k, v in rec["inputs"].items()]
    parts.append(f"thresholds.json {rec['thresholds_sha256'][:12]}")
    return (
        f'<footer class="meta"><hr>Made from (sha256): {escape(", ".join(parts))}. Full digests: '
        "Provenance above and metrics.json; manifests/README.md (Traceability) leads from them "
        "to the raw frames.</footer>"
    )
