"""The building blocks of report.html: its style sheet, section list, and how rates, numbers,
images and tables are written as HTML (values escaped by the caller or formatted here)."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

MAX_ROWS = 300  # longest per-item table shown; metrics.json has them all
CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2330;
 max-width:1200px;margin:0 auto;padding:1.5em 2em;background:#fff}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:2px solid #dde3ec;padding-bottom:.2em;
 margin-top:2em}h3{font-size:1.05em;margin-top:1.4em}
.meta{color:#5a6475;font-size:.9em}.note{color:#5a6475;font-size:.88em;max-width:60em}
table{border-collapse:collapse;margin:.6em 0;font-variant-numeric:tabular-nums;font-size:.9em}
th,td{border:1px solid #d4dae3;padding:.3em .6em;text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left}thead th{background:#f1f4f8}
.pharma{color:#5a6475;font-weight:normal}.wide{overflow-x:auto}
.ci{display:block;color:#5a6475;font-size:.85em}
.banner{background:#fff3cd;border:2px solid #e0a800;padding:.8em 1em;font-weight:600;margin:1em 0}
.pass{color:#1e7b34;font-weight:700}.fail{color:#b00020;font-weight:700}
.cards{display:flex;flex-wrap:wrap;gap:.8em}.card{border:1px solid #d4dae3;border-radius:6px;
 padding:.6em .9em;min-width:15em}.card b{display:block;font-size:1.25em}
img{max-width:100%;height:auto}.item{margin:1em 0;padding-bottom:.6em;border-bottom:1px solid #eee}
nav a{margin-right:1em;color:#2a5db0;text-decoration:none}
"""
SECTIONS = [
    ("summary", "Summary"),
    ("kinds", "Kinds per region"),
    ("region-wise", "Table 1 region-wise"),
    ("strip-wise", "Table 2 strip-wise"),
    ("run-wise", "Table 3 run-wise"),
    ("defect-types", "Per defect type"),
    ("confusion", "Confusion matrices"),
    ("knapp", "Knapp"),
    ("regions", "ROC and scores"),
    ("timing", "Timing"),
    ("gallery", "Gallery"),
    ("provenance", "Provenance"),
]
RATE_ROWS = [  # (key, paper name, pharma name)
    ("accuracy", "Accuracy", ""),
    ("good_accepted_ratio", "True positive ratio", "good accepted"),
    ("defect_rejected_ratio", "True negative ratio", "defect rejected"),
    ("false_reject_rate", "False reject rate", "good rejected"),
    ("escape_rate", "Escape rate", "defect accepted"),
]


def fmt_rate(r: Mapping[str, float] | None) -> str:
    return "–" if r is None else f"{r['value']:.4f} [{r['lo']:.4f}, {r['hi']:.4f}]"


def cell(r: Mapping[str, float] | None) -> str:
    """A rate in a table cell: the interval on its own line, the text still "v [lo, hi]"."""
    return (
        "–"
        if r is None
        else f'{r["value"]:.4f} <span class="ci">[{r["lo"]:.4f}, {r["hi"]:.4f}]</span>'
    )


def num(v: Any, spec: str = ".4f") -> str:
    return "–" if v is None else format(v, spec)


def img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{data}">'


def table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    th = "".join(f"<th>{h}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return (
        f'<div class="wide"><table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table></div>'
    )


def label(paper: str, pharma: str) -> str:
    return paper + (f' <span class="pharma">({pharma})</span>' if pharma else "")


def rate_rows(cols: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    rows = [[label(p, q), *(cell(c.get(k)) for c in cols)] for k, p, q in RATE_ROWS]
    rows.append(["AUROC", *(num(c.get("auroc")) for c in cols)])
    rows.append(["Good / defective items", *(f"{c['n_good']} / {c['n_defect']}" for c in cols)])
    return rows
