"""Scale: time and peak memory of ingest + patch for 1x and 4x as much of the same data.

Issue #7: time grows linearly with the data (4x/1x near 4) and peak memory does not grow with
it (4x/1x <= 1.2). Every stage runs as a real `ingest` / `patch` in its own Python process on a
fresh workspace, as the command would; its peak memory is the kernel's peak resident set size
of that process (`ru_maxrss` from os.wait4, threads and all), its time the stage's own seconds
(imports left out; the process's wall time is shown too). A process that only imports the
stages gives the baseline memory every run starts from.

    python benchmarks/scale.py [--strips 2] [--runs 10] [--workers 2]   # under 5 min, 2 cores
    python benchmarks/scale.py --quick     # 2 vs 8 strips of 8 runs at 512x640

The smaller size must give every worker whole tasks (workers x patch.acq_per_task = 4
acquisitions here): with fewer, fewer tasks run at once and peak memory grows with the
parallelism reached, not with the data (the first --quick of 1 vs 4 strips of 4 runs ran one
task of 8 acquisitions at 1x and two at 4x: docs/performance.md, Memory at scale).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from common import OUT, arguments, raw_folder, timer

# One stage in a fresh interpreter: prints its import and stage seconds and the items it made.
CHILD = textwrap.dedent(
    """
    import json, sys, time
    t0 = time.perf_counter()
    from bfsdata.ingest import ingest
    from bfsdata.patch.stage import patch
    from bfsdata.config.files import load_pipeline
    stage, raw, ws, workers = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    pipe = load_pipeline("bfs-5vial")
    t1 = time.perf_counter()
    if stage == "ingest":
        items = ingest(raw, ws, pipe, workers=workers).frames
    elif stage == "patch":
        items = patch(ws, pipe, workers=workers).patches
    else:
        items = 0
    print(json.dumps({"import_s": t1 - t0, "stage_s": time.perf_counter() - t1, "items": items}))
    """
)


def measure(stage: str, raw: Path, ws: Path, workers: int) -> dict:
    """Run one stage in a child process: its JSON line plus peak RSS (MiB) and wall seconds."""
    with timer() as t:
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, stage, str(raw), str(ws), str(workers)],
            stdout=subprocess.PIPE,
            text=True,
        )
        out = proc.stdout.read()
        # wait4, not wait: it returns this child's own resource usage, peak RSS in KiB on Linux.
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{stage} failed with exit code {proc.returncode}")
    res = json.loads(out.strip().splitlines()[-1])
    return res | {"peak_mib": usage.ru_maxrss / 1024, "wall_s": t.seconds}


def run_size(strips: int, runs: int, shape: tuple[int, int], workers: int) -> dict[str, dict]:
    raw = raw_folder(strips, runs, *shape)
    ws = OUT / f"ws-scale-{strips}x{runs}-{shape[0]}x{shape[1]}"
    shutil.rmtree(ws, ignore_errors=True)
    return {stage: measure(stage, raw, ws, workers) for stage in ("ingest", "patch")}


def main() -> None:
    ap = arguments(__doc__)
    ap.add_argument("--runs", type=int, default=10, help="runs per strip")
    ap.add_argument("--quick", action="store_true", help="2 vs 8 strips of 8 runs, 512x640")
    args = ap.parse_args()
    strips, runs, shape = (
        (2, 8, (512, 640)) if args.quick else (args.strips, args.runs, (1024, 1280))
    )

    base = measure("none", Path("."), Path("."), args.workers)
    sizes = {k: run_size(n * strips, runs, shape, args.workers) for k, n in (("1x", 1), ("4x", 4))}

    print(
        f"1x = {strips} strips x {runs} runs of 16 frames, {shape[0]}x{shape[1]}; "
        f"workers {args.workers}"
    )
    print(f"baseline (imports only): peak RSS {base['peak_mib']:.0f} MiB")
    print(f"{'data':<5}{'stage':<8}{'items':>8}{'stage s':>9}{'wall s':>8}{'peak MiB':>10}")
    for name, res in sizes.items():
        for stage, r in res.items():
            print(
                f"{name:<5}{stage:<8}{r['items']:>8}{r['stage_s']:>9.1f}{r['wall_s']:>8.1f}"
                f"{r['peak_mib']:>10.0f}"
            )
    one, four = sizes["1x"], sizes["4x"]
    for stage in ("ingest", "patch"):
        t1, t4 = one[stage]["stage_s"], four[stage]["stage_s"]
        m = four[stage]["peak_mib"] / one[stage]["peak_mib"]
        # t = fixed + n * per_item through both points: what the ratio hides at small sizes
        per_item = (t4 - t1) / (four[stage]["items"] - one[stage]["items"])
        fixed = t1 - one[stage]["items"] * per_item
        print(
            f"{stage}: time 4x/1x {t4 / t1:.2f} (linear: 4; fixed {fixed:.1f} s + "
            f"{1e3 * per_item:.2f} ms per item), peak RSS 4x/1x {m:.2f} (target <= 1.2)"
        )


if __name__ == "__main__":
    main()
