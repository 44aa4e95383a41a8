"""Synthetic scores and a report written from them, for the report tests: 6 good + 6 defective
strips (halves calib/test) and 2 val strips, 10 runs x 3 frames x 5 vials x 4 regions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bfsdata.config.pipeline import ReportConfig
from bfsdata.judging.thresholds import item_matrix
from bfsdata.report.write import write_report

TIMING = {
    "batch": 60,
    "per_batch_ms": {"mean": 40.0, "p50": 39.0, "p99": 55.0},
    "per_patch_ms": {"mean": 0.67, "p50": 0.65, "p99": 0.92},
    "warmup_batches": 3,
    "device": "cpu",
    "patches": 8400,
}
# defective strip -> chance its defect shows in a run: D2 and D4 are the hard ones (grey zone)
VISIBLE = {"D0": 1.0, "D1": 0.9, "D2": 0.5, "D3": 1.0, "D4": 0.45, "D5": 1.0}
THRESHOLD_KEYS = {
    "format", "policy", "min_agree", "regions", "vials", "frames", "kinds", "patch_size", "patch",
    "strip", "run", "rule", "model_run", "fitted_on", "created_at", "bfsdata_version",
    "thresholds_by", "kind_choice",
}  # fmt: skip


def make_scores(calib: bool = True, seed: int = 0) -> pd.DataFrame:
    """6 good + 6 defective strips (halves calib/test) and 2 val strips, 10 runs x 3 frames x
    5 vials x 4 regions. A defect lies in one vial/region and raises its score in the runs it
    shows in; D5 is not annotated (defect_here null); G5 is a noisy good strip."""
    rng = np.random.default_rng(seed)
    strips = [*(f"G{i}" for i in range(6)), *VISIBLE, "V0", "V1"]
    rows = []
    for si, s in enumerate(strips):
        i, defect = int(s[1:]), s.startswith("D")
        split = "val" if s[0] == "V" else ("calib" if calib and i < 3 else "test")
        where = (1 + i % 5, i % 4)
        sd = 0.008 if s == "G5" else 0.004
        for run in range(1, 11):
            shows = defect and rng.random() < VISIBLE[s]
            for f in (0, 7, 15):
                for v in range(1, 6):
                    for r in range(4):
                        hit = defect and (v, r) == where
                        score = 0.02 + 0.01 * r + rng.normal(0, sd)
                        score += rng.uniform(0.01, 0.05) if hit and shows else 0.0
                        rows.append(
                            (si * 10 + run - 1, s, run, f, v, r, "defect" if defect else "good",
                             None if s == "D5" else hit, 60 * r, 50 * v, 60 * r + 60, 50 * v + 50,
                             split, score)
                        )  # fmt: skip
    cols = ["acq", "strip", "run", "frame", "vial", "region", "label", "defect_here"]
    df = pd.DataFrame(rows, columns=[*cols, "y0", "x0", "y1", "x1", "split", "score"])
    df["defect_here"] = df["defect_here"].astype("boolean")
    df.insert(0, "patch", np.arange(len(df), dtype=np.int64))
    return df.assign(kind="frame", dy=np.float32(0), dx=np.float32(0), angle=np.float32(0))


def annotations() -> pd.DataFrame:
    """The annotations manifest of make_scores' defective strips: each defect's type at the
    cell make_scores puts it in; D5's type without a location (it is not annotated)."""
    types = {"D0": "spot", "D1": "scratch", "D2": "spot", "D3": "scratch", "D4": "spot"}
    rows = [(s, "defect", t, 1 + int(s[1]) % 5, int(s[1]) % 4) for s, t in types.items()]
    rows.append(("D5", "defect", "foam", None, None))
    ann = pd.DataFrame(rows, columns=["strip", "label", "defect", "vial", "region"])
    return ann.astype({"vial": "Int8", "region": "Int8"})


def labelled(df: pd.DataFrame) -> pd.DataFrame:
    """Patches with a patch label, as the report sees them."""
    out = df[df["defect_here"].notna()].copy()
    out["is_defect"] = out["defect_here"].astype(bool)
    return out


def acquisitions(df: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    d = df.assign(strip_defect=df["label"] == "defect")
    items, M = item_matrix(d, ["strip", "run"], label_col="strip_defect")
    return items, M, items["strip_defect"].to_numpy(bool)


def fake_gallery(calls: list) -> object:
    def gallery(rows: np.ndarray) -> dict[str, np.ndarray]:
        calls.append(rows)
        rng = np.random.default_rng(1)
        x = rng.random((rows.size, 16, 16), dtype=np.float32)  # (N, P, P) in [0, 1]
        rec = np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1).astype(np.float32)
        return {"x": x, "reconstruction": rec, "heatmap": np.abs(x - rec) / np.abs(x - rec).max()}

    return gallery


def strip_image(acq: int, kind: str, frame: int) -> np.ndarray:
    return np.full((300, 320), 90 + frame, np.uint8)  # (H, W): boxes lie inside it


def run_report(
    out: Path, df: pd.DataFrame, cfg: ReportConfig | None = None, timing: dict = TIMING, **kw
):
    return write_report(
        out / "ws", "r1", df, timing, cfg or ReportConfig(), out_dir=out / "rep", **kw
    )


def by_region(t: dict[str, float]) -> dict[int, float]:
    return {int(k): v for k, v in t.items()}
