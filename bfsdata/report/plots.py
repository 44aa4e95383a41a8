"""Report figures as PNG bytes: matplotlib `Figure` objects on the Agg canvas, never pyplot.

No pyplot means no global backend or figure registry: safe in threads and in a process that
also shows windows. Each function takes plain arrays or table rows and returns the PNG bytes.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from bfsdata.judging.metrics import roc_curve

GOOD, DEFECT = "#3a7dc9", "#d9622b"
LINES = {"patch": "-", "strip": "--", "run": ":"}  # threshold level -> line style
ZONES = (
    ("accept", 0, 3.5, "#dff0d8"),
    ("grey", 3.5, 6.5, "#eeeeee"),
    ("reject", 6.5, 10.5, "#f7d7d4"),
)


def to_png(fig: Figure, dpi: int = 96) -> bytes:
    buf = io.BytesIO()
    # no Software tag: the page carries no URL, not even inside an image
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()


def region_figure(
    good: np.ndarray,
    defect: np.ndarray,
    thresholds: Mapping[str, float],
    title: str,
    score_name: str,
) -> bytes:
    """ROC (defect = positive) and score histograms of one region, thresholds marked."""
    fig = Figure(figsize=(9, 3.4))
    roc, hist = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.6]})
    if len(good) and len(defect):
        scores = np.r_[good, defect]
        fpr, tpr, _ = roc_curve(
            np.r_[np.zeros(len(good), bool), np.ones(len(defect), bool)], scores
        )
        roc.plot(fpr, tpr, color=DEFECT)
        points: dict[tuple[float, float], list[str]] = {}  # operating point -> its levels
        for level, t in thresholds.items():
            points.setdefault((np.mean(good > t), np.mean(defect > t)), []).append(level)
        for (fx, fy), levels in points.items():
            roc.plot(fx, fy, "ko", mfc="none", ms=6)
            roc.annotate(
                "/".join(levels), (fx, fy), fontsize=7, xytext=(5, -10), textcoords="offset points"
            )
    else:
        roc.text(0.5, 0.5, "ROC needs good and defective patches", ha="center", fontsize=8)
    roc.plot([0, 1], [0, 1], color="#bbbbbb", lw=0.8)
    roc.set(
        xlabel="false reject rate (good rejected)",
        ylabel="defect rejected ratio",
        xlim=(-0.02, 1.02),
        ylim=(-0.02, 1.02),
        title=f"{title}: ROC",
    )
    both = np.r_[good, defect]
    bins = np.linspace(both.min(), both.max(), 50) if both.size else 10
    hist.hist(good, bins=bins, color=GOOD, alpha=0.6, label=f"good ({len(good)})", density=True)
    if len(defect):
        hist.hist(
            defect,
            bins=bins,
            color=DEFECT,
            alpha=0.6,
            label=f"defect ({len(defect)})",
            density=True,
        )
    for level, t in thresholds.items():
        hist.axvline(t, color="k", ls=LINES.get(level, "-"), lw=1, label=f"{level} threshold")
    hist.set(xlabel=f"anomaly score {score_name}", ylabel="density", title=f"{title}: scores")
    hist.legend(fontsize=7)
    return to_png(fig)


def knapp_figure(table: Sequence[Mapping[str, Any]]) -> bytes:
    """FQA bar per strip (good first, then defective, each by FQA), Knapp zones shaded;
    manual FQV as black ticks when the table has it."""
    rows = sorted(table, key=lambda r: (bool(r["is_defect"]), r["fqa"], str(r["strip"])))
    x = np.arange(len(rows))
    fig = Figure(figsize=(min(16.0, max(6.0, 0.06 * len(rows) + 2)), 3.4))
    ax = fig.subplots()
    for name, lo, hi, color in ZONES:
        ax.axhspan(lo, hi, color=color, zorder=0)
        ax.text(len(rows) - 0.5, (lo + hi) / 2, name, ha="right", va="center", fontsize=8)
    colors = [DEFECT if r["is_defect"] else GOOD for r in rows]
    ax.bar(x, [r["fqa"] for r in rows], color=colors, width=0.8, zorder=2)
    if rows and "fqv" in rows[0]:
        ax.plot(x, [r["fqv"] for r in rows], "k_", ms=8, zorder=3, label="manual FQV")
        ax.legend(fontsize=7, loc="upper left")
    ax.set(
        xlim=(-0.6, len(rows) - 0.4),
        ylim=(0, 10.5),
        ylabel="FQA (rejections / 10 runs)",
        title="Knapp: machine FQA per strip (blue good, orange defective)",
    )
    if len(rows) <= 40:
        ax.set_xticks(x, [str(r["strip"]) for r in rows], rotation=90, fontsize=7)
    else:
        ax.set_xticks([])
    return to_png(fig)


def timing_figure(timing: Mapping[str, Any]) -> bytes:
    """Mean and p99 ms per strip against the acquisition slot."""
    fig = Figure(figsize=(6, 1.9))
    ax = fig.subplots()
    ms = timing["ms_per_strip"]
    ax.barh([1, 0], [ms["mean"], ms["p99"]], color=GOOD)
    ax.axvline(timing["slot_ms"], color="#b00020", lw=2)
    ax.text(timing["slot_ms"], 1.45, f" slot {timing['slot_ms']:g} ms", color="#b00020", fontsize=8)
    ax.set_yticks([1, 0], ["mean", "p99"])
    ax.set(
        xlabel="ms per strip (one acquisition)",
        ylim=(-0.6, 1.8),
        xlim=(0, 1.1 * max(timing["slot_ms"], ms["p99"])),
    )
    return to_png(fig)


def gallery_panel(
    x: np.ndarray,
    recon: np.ndarray,
    heat: np.ndarray,
    title: str,
    strip: np.ndarray | None = None,
    box: tuple[int, int, int, int] | None = None,
) -> bytes:
    """The paper's Figures 22-23: original, reconstruction, difference, heatmap overlay, and
    the heatmap placed at its crop box (y0, x0, y1, x1) on the strip image when given.

    x, recon, heat: (P, P) in [0, 1]; strip: (H, W) uint8.
    """
    n = 5 if strip is not None else 4
    fig = Figure(figsize=(2.3 * n + (1.2 if strip is not None else 0), 2.7))
    axes = fig.subplots(1, n, gridspec_kw={"width_ratios": [1] * 4 + ([1.6] if n == 5 else [])})
    diff = np.abs(x.astype(np.float32) - recon.astype(np.float32))  # (P, P)
    axes[0].imshow(x, cmap="gray", vmin=0, vmax=1)
    axes[1].imshow(recon, cmap="gray", vmin=0, vmax=1)
    axes[2].imshow(diff, cmap="gray", vmin=0, vmax=max(float(diff.max()), 1e-6))
    axes[3].imshow(x, cmap="gray", vmin=0, vmax=1)
    axes[3].imshow(heat, cmap="jet", vmin=0, vmax=1, alpha=0.45)
    names = ["original", "reconstruction", "difference |X - X^|", "heatmap H"]
    if strip is not None and box is not None:
        y0, x0, y1, x1 = box
        axes[4].imshow(strip, cmap="gray", vmin=0, vmax=255)
        axes[4].imshow(heat, cmap="jet", vmin=0, vmax=1, alpha=0.5, extent=(x0, x1, y1, y0))
        axes[4].add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec="red", lw=1.5))
        axes[4].set(xlim=(0, strip.shape[1]), ylim=(strip.shape[0], 0))
        names.append("on the strip")
    for ax, name in zip(axes, names, strict=True):
        ax.set_title(name, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=8)
    return to_png(fig, dpi=80)
