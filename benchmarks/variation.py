"""The variation model: training time, inference time per patch, and how its score was chosen.

(a) train: `bfsdata train --model variation` on a workspace's train split, timed end to end
    (rows, one streaming pass over the store, the model file, previews). The workspace is only
    read: the runs go to a scratch workspace under bench-out/ whose `store.url` names the given
    one, as `--store` would.
(b) infer: the model's per-patch time, (B, P, P) uint8 -> score, heatmap, reconstruction, on ONE
    CPU core (the process is pinned to one), batches of 60 patches at 256 px (the paper's size:
    3 frames x 5 vials x 4 regions) and at the workspace's patch size; both scores.
(c) --quality: the choices of the score and the band on the workspace's calib and test patches
    (the report's rows; test images as `acquisition.test_kinds`): for each, thresholds fitted on
    calib with the report's own functions, strip-wise accuracy on test and the patch AUROC per
    region. The model statistics come from one pass (mean/std, and median/MAD when --robust).

    python benchmarks/variation.py --workspace demo-workspace            # (a), (b)
    python benchmarks/variation.py --workspace demo-workspace --quality  # and (c)
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import shutil
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from common import OUT, arguments

from bfsdata.config.files import load_pipeline
from bfsdata.config.overrides import with_overrides
from bfsdata.imaging.variation import VariationModel
from bfsdata.judging.metrics import auroc
from bfsdata.report.tables import fit_thresholds, known, prepare, strip_wise
from bfsdata.score import patch_keys, scoring_rows
from bfsdata.store import arrays as store_io
from bfsdata.store import location as store
from bfsdata.train.stage import train
from bfsdata.train.variation import _accumulate, _model, _rows_and_keys
from bfsdata.workspace import paths


def scratch(ws: Path) -> Path:
    """A workspace under bench-out/ that reads `ws`'s store and manifests (store.url)."""
    out = OUT / "ws-variation"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    (out / store.RECORD).write_text(str(Path(ws).resolve()))
    shutil.copy(paths.pipeline_file(ws), paths.pipeline_file(out))
    return out


def bench_train(ws: Path, pipe, rounds: int) -> None:
    for robust in (False, True):
        p = with_overrides(pipe, {"train.method": "variation", "train.variation.robust": robust})
        wall, cpu = [], []
        for i in range(rounds):
            t0, c0 = time.perf_counter(), time.process_time()
            s = train(ws, p, name=f"bench-{int(robust)}-{i}")
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        print(
            f"train{' robust' if robust else ''}: {s.train_patches} patches "
            f"({pipe.patch.size} px), wall {statistics.median(wall):.2f} s "
            f"(runs {', '.join(f'{w:.2f}' for w in wall)}), CPU {statistics.median(cpu):.2f} s"
        )


def bench_infer(size: int, rounds: int) -> None:
    """Per-patch ms on one core, batches of 60 patches of `size` px, near-ideal patches with a
    dark blob in every third (so both the clean and the labelling paths are timed)."""
    rng = np.random.default_rng(0)
    k = 60
    keys = tuple(("frame", v, r) for v in range(1, 16) for r in range(4))
    ideal = (rng.random((k, size, size), np.float32) * 200 + 20).astype(np.float32)
    var = (rng.random((k, size, size), np.float32) * 3 + 1).astype(np.float32)
    x = np.clip(ideal + rng.normal(0, 3, ideal.shape), 0, 255).astype(np.uint8)
    x[::3, size // 3 : size // 3 + size // 10, size // 3 : size // 3 + size // 8] = 0
    for score in ("area", "share"):
        model = VariationModel(keys, ideal, var, 10.0, 3.0, score, 0.01)
        model(x, list(keys))  # warm-up
        per = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            for _ in range(5):
                model(x, list(keys))
            per.append((time.perf_counter() - t0) / (5 * k) * 1e3)
        print(f"infer {size} px, score {score}: {statistics.median(per):.3f} ms per patch "
              f"(one core; rounds {', '.join(f'{p:.3f}' for p in per)})")  # fmt: skip


def bench_quality(ws: Path, pipe, robust: bool) -> None:
    rows = scoring_rows(ws, pipe)
    rows = rows[rows["split"].isin(["calib", "test"])].reset_index(drop=True)
    arr = store_io.ts_array(store.store_url(ws), "patches")
    x = arr[np.sort(rows["patch"].to_numpy())].read().result()
    x = x[np.argsort(np.argsort(rows["patch"].to_numpy()))]  # back to row order
    where = patch_keys(rows)
    train_rows, keys = _rows_and_keys(ws, pipe)
    key_list, codes = np.unique(keys, return_inverse=True)
    key_list = [(str(k), int(v), int(r)) for k, v, r in key_list]
    cfg0 = pipe.train.variation
    for rob, match in itertools.product((False, True) if robust else (False,), (False, True)):
        cfg = dataclasses.replace(cfg0, robust=rob, match_mean=match)
        stats = _accumulate(store.store_url(ws), train_rows, codes, len(key_list), cfg, 0)
        grid = itertools.product((0.0, 1.0), (2.0, 5.0, 10.0), (3.0, 4.0, 5.0), ("area", "share"))
        for sigma, a, k, score in grid:
            c = dataclasses.replace(cfg, sigma=sigma, abs_threshold=a, var_threshold=k, score=score)
            model = _model(key_list, stats, c)
            s = np.concatenate(
                [model(x[i : i + 256], where[i : i + 256])["score"] for i in range(0, len(x), 256)]
            )
            acc, aurocs = judge(rows.assign(score=s), pipe)
            print(
                f"{'median/MAD' if rob else 'mean/std'}, match_mean {match}, sigma {sigma:g}, "
                f"a {a:g}, k {k:g}, score {score}: strip-wise accuracy {acc:.3f}, test patch "
                f"AUROC per region {' '.join(f'{v:.3f}' for v in aurocs)}",
                flush=True,
            )


def judge(scored: pd.DataFrame, pipe) -> tuple[float, list[float]]:
    """Strip-wise accuracy on test (thresholds fitted on calib) and the test AUROC per region."""
    kit = prepare(scored)
    cfg = pipe.report
    ts = fit_thresholds(kit.fit, kit.regions, cfg.policy, cfg.min_agree)
    t2, *_ = strip_wise(kit.test, ts, kit.regions, cfg.alpha, cfg.min_agree)
    lab = known(kit.test)
    aurocs = [
        auroc(g["is_defect"].to_numpy(bool), g["score"].to_numpy(float))
        for _, g in lab.groupby("region")
    ]
    return float(t2["accuracy"]["value"]), aurocs


def main() -> None:
    ap = arguments(__doc__)
    ap.add_argument("--workspace", type=Path, default=Path("demo-workspace"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quality", action="store_true", help="(c): the score and band choices")
    ap.add_argument("--robust", action="store_true", help="(c) with median/MAD too")
    args = ap.parse_args()
    ws = scratch(args.workspace)
    pipe = load_pipeline(paths.pipeline_file(ws))
    bench_train(ws, pipe, args.rounds)
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core from here on
    cv2.setNumThreads(1)
    for size in sorted({256, pipe.patch.size}, reverse=True):
        bench_infer(size, args.rounds)
    if args.quality:
        bench_quality(ws, pipe, args.robust)


if __name__ == "__main__":
    main()
