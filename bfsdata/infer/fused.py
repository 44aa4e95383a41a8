"""`bfsdata infer --report <comparison>`: the fused decision of several models.

The comparison report's thresholds.json names its runs (`fused`) and holds each run's region
thresholds, fitted jointly (bfsdata.report.fuse). Each run infers as alone into <out>/<run>/,
with its share of the fused thresholds (written there as its thresholds.json, so its
per-patch records show the threshold applied), and an acquisition is rejected when any run
rejects it: the fused report's rule. <out>/summary.json holds the fused decisions.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from bfsdata.config.pipeline import Pipeline
from bfsdata.infer.inputs import InferError
from bfsdata.infer.stage import InferSummary, infer, strip_decisions, strip_records
from bfsdata.workspace import paths
from bfsdata.workspace.writes import write_atomic

LEVELS = ("patch", "strip", "run")


def is_fused(thresholds_path: Path) -> bool:
    path = Path(thresholds_path)
    return path.exists() and "fused" in json.loads(path.read_text())


def infer_fused(
    acquisitions: list[Path], workspace: Path, thresholds_path: Path, pipe: Pipeline, out_dir: Path
) -> InferSummary:
    th = json.loads(Path(thresholds_path).read_text())
    runs = th["fused"]
    for level in LEVELS:
        if set(th.get(level) or {}) != set(runs):
            raise InferError(f"{thresholds_path}: `{level}` must hold thresholds for {runs}")
    out_dir = Path(out_dir)
    parts = {}
    for run in runs:
        sub = out_dir / paths.checked_name(run, "fused run")
        sub.mkdir(parents=True, exist_ok=True)
        own = {**th, **{level: th[level][run] for level in LEVELS}, "model_run": run}
        del own["fused"]
        write_atomic(sub / paths.THRESHOLDS, (json.dumps(own, indent=2) + "\n").encode())
        run_dir = paths.run_dir(workspace, run, "--run")
        parts[run] = infer(acquisitions, run_dir, sub / paths.THRESHOLDS, pipe, sub).acquisitions
    acq = _fuse(parts)
    strips = strip_decisions(acq, th.get("min_agree", 7))
    summary = {
        "fused": runs,
        "acquisitions": acq.to_dict(orient="records"),
        "strips": strip_records(strips),
        "thresholds": str(thresholds_path),
        "runs": {r: str(out_dir / r) for r in runs},
    }
    write_atomic(out_dir / "summary.json", json.dumps(summary, indent=2, default=_plain).encode())
    return InferSummary(out_dir=out_dir, acquisitions=acq, strips=strips)


def _fuse(parts: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per acquisition: rejected when any run rejects; vials rejected by any run."""
    key = ["strip", "run"]
    frames = list(parts.values())
    out = frames[0][key].copy()
    for col in ("rejected", "run_rejected"):
        out[col] = np.logical_or.reduce([f[col].to_numpy(bool) for f in frames])
    out["rejected_vials"] = [
        sorted({v for f in frames for v in f["rejected_vials"].iloc[i]}) for i in range(len(out))
    ]
    out["ms"] = np.sum([f["ms"].to_numpy(float) for f in frames], axis=0)
    for f in frames[1:]:
        if not f[key].reset_index(drop=True).equals(out[key].reset_index(drop=True)):
            raise InferError("the fused runs decided different acquisitions")
    return out[[*key, "rejected", "rejected_vials", "run_rejected", "ms"]]


def _plain(v):
    if isinstance(v, np.generic):
        return v.item()
    raise TypeError(f"cannot write {type(v).__name__} to JSON")
