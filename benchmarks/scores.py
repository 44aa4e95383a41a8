"""Alternatives to the GAN's anomaly score, measured on kept quality-suite workspaces (#20, item 2).

For each look kept by `benchmarks/quality.py --keep`, the trained GAN (runs/demo) reconstructs
every patch its report scored (val, calib and test; the profile's test kinds), and each score
of VARIANTS is computed from the same x and x^. Each is judged as the report judges: kinds
chosen per region on calib and val (`report.kind_choice`), thresholds fitted on calib, strip-wise
accuracy on test; and the test patch AUROC per region (both kinds pooled). Only the score
differs between rows, never the model or the kit.

The first row recomputes the exported score (1 - SSIM, worst 1 %) outside the model: it must
equal the report's figure, which says the others are computed the same way.

    python benchmarks/scores.py --from bench-out/quality-kinds
    python benchmarks/scores.py --from bench-out/quality-kinds --looks bubbly,default

Each look x seed's figures are kept in <from>/scores.json: call it again while quality.py is
still running and only the workspaces completed since are scored.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from common import arguments

from bfsdata.config.files import load_pipeline
from bfsdata.judging.metrics import auroc
from bfsdata.model.losses import patch_range, ssim_map
from bfsdata.report import tables as rt
from bfsdata.report.kinds import by_kind
from bfsdata.score import load_scorer
from bfsdata.store import arrays as store_io
from bfsdata.store import location as store
from bfsdata.workspace import paths

RUN = "demo"
SHARE = 0.01  # the demo profile's train.loss.score_share
BATCH = 256


def one_minus_ssim(x: np.ndarray, y: np.ndarray, max_val: float | str = 1.0) -> np.ndarray:
    """(B, H', W') local 1 - SSIM of (B, P, P) images in [0, 1] (the model's own kernel);
    max_val "patch": the data range of each patch (losses.patch_range)."""
    x4, y4 = x[..., None], y[..., None]
    r = patch_range(x4) if max_val == "patch" else max_val
    return 1.0 - np.asarray(ssim_map(x4, y4, max_val=r))


def worst_share(m: np.ndarray, share: float) -> np.ndarray:
    """(B,) mean of each map's worst round(share * n) values, as the exported model takes it."""
    flat = m.reshape(len(m), -1)
    k = max(1, round(share * flat.shape[1]))
    return np.sort(flat, axis=1)[:, -k:].mean(axis=1)


def blurred(m: np.ndarray, sigma: float) -> np.ndarray:
    out = np.empty_like(m)
    for i in range(len(m)):
        cv2.GaussianBlur(m[i], (0, 0), sigma, dst=out[i], borderType=cv2.BORDER_REPLICATE)
    return out


def _crop(m: np.ndarray, like: np.ndarray) -> np.ndarray:
    """m (B, P, P) centre-cropped to like's (B, H', W'): the SSIM map's valid area."""
    c = (m.shape[1] - like.shape[1]) // 2
    return m[:, c : c + like.shape[1], c : c + like.shape[2]]


# name -> score (B,) of x and x^, both (B, P, P) float32 in [0, 1].
VARIANTS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "1-SSIM worst 1 % (exported)": lambda x, y: worst_share(one_minus_ssim(x, y), SHARE),
    "1-SSIM mean (paper phi)": lambda x, y: one_minus_ssim(x, y).mean(axis=(1, 2)),
    "1-SSIM worst 5 %": lambda x, y: worst_share(one_minus_ssim(x, y), 0.05),
    "1-SSIM map blurred sigma 2, worst 1 %": lambda x, y: worst_share(
        blurred(one_minus_ssim(x, y), 2.0), SHARE
    ),
    "1-SSIM constants x9 (K x3), worst 1 %": lambda x, y: worst_share(
        one_minus_ssim(x, y, 3.0), SHARE
    ),
    "1-SSIM at the patch's range (score_range patch), worst 1 %": lambda x, y: worst_share(
        one_minus_ssim(x, y, "patch"), SHARE
    ),
    "|x - x^| blurred sigma 2, worst 1 %": lambda x, y: worst_share(
        blurred(np.abs(x - y), 2.0), SHARE
    ),
    "(1-SSIM) x |x - x^| blurred sigma 2, worst 1 %": lambda x, y: worst_share(
        (s := one_minus_ssim(x, y)) * _crop(blurred(np.abs(x - y), 2.0), s), SHARE
    ),
}


def variant_scores(ws: Path, rows: pd.DataFrame) -> dict[str, np.ndarray]:
    """Each variant's score of every row (store row in `patch`), through the run's GAN."""
    serve = load_scorer(paths.run_dir(ws, RUN, "--run"))
    arr = store_io.ts_array(store.store_url(ws), "patches")
    out: dict[str, list[np.ndarray]] = {name: [] for name in VARIANTS}
    patch_rows = rows["patch"].to_numpy(np.int64)
    for i in range(0, len(rows), BATCH):
        idx = patch_rows[i : i + BATCH]
        order = np.argsort(idx)
        x8 = np.empty((len(idx), *arr.shape[1:]), np.uint8)
        x8[order] = arr[idx[order]].read().result()
        y = serve(x8)["reconstruction"][..., 0].astype(np.float32)
        x = x8.astype(np.float32) / 255
        for name, f in VARIANTS.items():
            out[name].append(np.asarray(f(x, y), np.float32))
    return {name: np.concatenate(v) for name, v in out.items()}


def judge(scored: pd.DataFrame, cfg) -> tuple[dict[str, float], list[float]]:
    """Strip-wise accuracy on test with its 95 % interval (kinds chosen and thresholds fitted as
    the report does) and the test patch AUROC per region."""
    kit, _ = by_kind(
        rt.prepare(scored), cfg.kind_choice, cfg.kind_min_auroc, "strip", cfg.kind_margin
    )
    ts = rt.fit_thresholds(kit.fit, kit.regions, cfg.policy, cfg.min_agree)
    sw, *_ = rt.strip_wise(kit.test, ts, kit.regions, cfg.alpha, cfg.min_agree)
    lab = rt.known(rt.prepare(scored).test)
    aurocs = [
        auroc(g["is_defect"].to_numpy(bool), g["score"].to_numpy(float))
        for _, g in lab.groupby("region")
    ]
    return sw["accuracy"], aurocs


def main() -> None:
    ap = arguments(__doc__)
    ap.add_argument(
        "--from", dest="source", type=Path, required=True, help="quality.py --keep --out"
    )
    ap.add_argument("--looks", default="", help="looks, comma-separated (default: every kept one)")
    args = ap.parse_args()
    wanted = {s.strip() for s in args.looks.split(",") if s.strip()}
    cfg = load_pipeline("demo").report
    kept = args.source / "scores.json"  # per look x seed, so a later call only adds new ones
    table = json.loads(kept.read_text()) if kept.exists() else {}
    for ws in sorted(args.source.glob("*/seed*/ws")):
        look = f"{ws.parent.parent.name}/{ws.parent.name}"
        done = set(table.get(look, {})) == set(VARIANTS)
        if (wanted and ws.parent.parent.name not in wanted) or done:
            continue
        if not (ws.parent / "result.json").exists():
            print(f"{look}: not complete yet, left for a later call")
            continue
        rows = pd.read_parquet(ws / "reports" / RUN / "scores.parquet")
        reported = json.loads((ws / "reports" / RUN / "metrics.json").read_text())
        acc = reported["strip_wise"]["accuracy"]["value"]
        print(f"{look}: the report's strip-wise accuracy {acc:.3f}")
        for name, s in variant_scores(ws, rows).items():
            acc, aurocs = judge(rows.assign(score=s), cfg)
            table.setdefault(look, {})[name] = {"accuracy": acc, "auroc": aurocs}
            print(
                f"{look}: {name}: strip-wise accuracy {acc['value']:.3f}, test patch AUROC per "
                "region " + " ".join(f"{v:.3f}" for v in aurocs),
                flush=True,
            )
        kept.write_text(json.dumps(table, indent=1))
    looks = sorted(k for k in table if not wanted or k.split("/")[0] in wanted)
    print("\n| score | " + " | ".join(looks) + " | mean |")
    print("|---|" + "---|" * (len(looks) + 1))
    for name in VARIANTS:
        vals = [table[k][name]["accuracy"]["value"] for k in looks]
        cells = " | ".join(f"{v:.2f}" for v in vals)
        print(f"| {name} | {cells} | {np.mean(vals):.2f} |")


if __name__ == "__main__":
    main()
