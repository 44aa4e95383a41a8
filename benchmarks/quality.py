"""Detection quality across synthetic looks: the whole chain, one profile, every look.

Issue #20: detection must hold on products the profile was not tuned to. For each look of
`bfsdata.synth.looks` (docs/synth-looks.md) and each seed this renders the demo's strips in that
look and runs the demo's chain on them (`bfsdata.demo.chain`: synth -> ingest -> patch -> split
-> train -> report) with ONE profile, `pipelines/demo.yaml`. The only change per look is the
layout of the look's geometry (`layout_for`), and for 12-bit frames `patch.input_bits: 12`,
which nothing can infer (a 16-bit frame is read as full range); the output says so. A seed is
the synthetic data's seed, as `bfsdata demo --seed`.

Each look x seed is judged with five models on the same workspace and test half (MODELS): the
profile's GAN (1 - SSIM, worst share), the same weights scored on the normalised residual
(`train.loss.score: residual`, bfsdata.imaging.residual), the variation model
(`train.method: variation`), and each GAN fused with the variation model (reject when either
rejects, thresholds fitted jointly on calib; `report --run A --run B`).

Every figure is the report's: on the TEST half, thresholds fitted on calib. Per look, a table
per model with a column per seed: strip-wise and run-wise accuracy with 95 % Clopper-Pearson
intervals, false reject and escape rates, the patch AUROC per region, and each defect type's
strip-wise recall (metrics.json `defect_types`); then one summary table over looks.

A look x seed whose report is already in --out (with the same settings and profile file) is
read back, not rerun: stop it any time and start it again. After a change to the code, give a
new --out. Workspaces are deleted after their report is kept
(--keep keeps them). At demo scale a look x seed takes about the demo's time on 2 cores.

    python benchmarks/quality.py                          # default looks x seeds 0,1
    python benchmarks/quality.py --quick --looks default,bright-bubbles
    python benchmarks/quality.py --markdown > table.md    # tables for docs/performance.md
    python benchmarks/quality.py --quick --keep --out A --set "train.kinds=[rank_min,rank_max]"
    python benchmarks/quality.py --quick --from A --out B  # the same workspaces, trained again
    python benchmarks/quality.py --quick --from A --rejudge --out C  # the same models, reported
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from common import OUT, arguments

from bfsdata.config.files import load_pipeline
from bfsdata.config.overrides import with_overrides
from bfsdata.config.pipeline import Pipeline
from bfsdata.demo import RUN, STRIPS, chain, fresh_workspace, synth_config
from bfsdata.synth import LOOKS, SynthConfig, layout_for
from bfsdata.workspace import paths

# One look per axis of docs/synth-looks.md: the reference, bubble rim polarity, clutter
# amount, flag geometry, separate vials, margins, light and noise, bit depth.
DEFAULT_LOOKS = (
    "default",
    "bright-bubbles",
    "bubbly",
    "narrow-flag",
    "separate-vials",
    "wide-margins",
    "dim-gradient-noisy",
    "12bit",
)
QUICK_STRIPS = 32
# --quick: a smaller test kit (4 + 4 good strips) so 32 strips leave good ones to train on,
# and one short cosine of training. Settings of the whole run, never of one look.
QUICK = {
    "split.test_good": 8,
    "train.optim.epochs": 1,
    "train.optim.steps_per_epoch": 300,
    "train.optim.first_decay_steps": 300,
}
KEPT = ("metrics.json", "thresholds.json", "report.html")  # of the GAN's report, in --out
# Rows per look: the profile's GAN (1 - SSIM), the same weights on the normalised residual
# (train.loss.score residual), the variation model, each fused with the variation model.
MODELS = ("gan", "gan-residual", "variation", "fused", "fused-residual")


@dataclasses.dataclass(frozen=True)
class Case:
    look: str
    seed: int
    cfg: SynthConfig
    overrides: dict[str, Any]  # on pipelines/demo.yaml
    exception: str | None  # a setting beyond the layout, and why

    @property
    def name(self) -> str:
        return f"{self.look}/seed{self.seed}"

    def setup(self, quick: bool) -> dict[str, Any]:
        """What the figures depend on: a kept report is reused only when this is equal."""
        return {
            "look": self.look,
            "knobs": LOOKS[self.look],
            "seed": self.seed,
            "strips": self.cfg.strips,
            "quick": quick,
            "overrides": self.overrides,
            "models": list(MODELS),
            "pipeline_sha256": pipeline(self).sha256,  # the profile file as it is now
        }


def case(
    look: str, seed: int, strips: int, quick: bool, workers: int, settings: dict[str, Any]
) -> Case:
    pipe = load_pipeline("demo")
    base = synth_config(pipe, strips, seed, workers)
    cfg = dataclasses.replace(base, **LOOKS[look])
    run_wide = (QUICK if quick else {}) | settings  # the same for every look
    overrides: dict[str, Any] = {"layout": layout_for(cfg)} | run_wide
    exception = None
    if cfg.bit_depth == 12:
        overrides["patch.input_bits"] = 12
        exception = (
            "patch.input_bits: 12 (12 significant bits in 16-bit PNGs; nothing in the chain "
            "infers it, a 16-bit frame is read as full range)"
        )
    return Case(look, seed, cfg, overrides, exception)


def pipeline(c: Case) -> Pipeline:
    return with_overrides(load_pipeline("demo"), c.overrides)


def run_case(
    c: Case,
    out: Path,
    quick: bool,
    keep: bool,
    source: Path | None = None,
    rejudge: bool = False,
) -> dict[str, Any]:
    """The metrics of one look x seed: read back when kept with the same setup, else run.
    source: an earlier --out run with --keep, whose workspace (the same strips, patches and
    split) is copied and only trained and judged again, e.g. with other kinds."""
    where = out / c.look / (f"seed{c.seed}" + ("-quick" if quick else ""))
    setup = c.setup(quick) | {"from": None if source is None else str(source), "rejudge": rejudge}
    setup = json.loads(json.dumps(setup))  # as read back: a look's tuple knobs become lists
    done = where / "result.json"
    if done.exists():
        result = json.loads(done.read_text())
        if result["setup"] == setup:
            print(f"{c.name}: read back from {where}", file=sys.stderr)
            return result
        print(f"{c.name}: kept report has other settings; running again", file=sys.stderr)
    t0 = time.perf_counter()

    def on_stage(stage: str, summary: Any) -> None:
        print(f"{c.name}: {stage} done at {time.perf_counter() - t0:.0f} s", file=sys.stderr)

    pipe = pipeline(c)
    if source is None:
        ws = fresh_workspace(where / "ws")
        gan_report = chain(ws, pipe, c.cfg, None, on_stage).report_html.parent
    else:
        ws = copied_workspace(source / c.look / where.name / "ws", where / "ws", rejudge)
        gan_report = judged(ws, pipe, on_stage)
    seconds = time.perf_counter() - t0
    models = {MODELS[0]: json.loads((gan_report / "metrics.json").read_text())}
    models |= other_models(ws, pipe)
    on_stage("other models", None)
    report_dir = where / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    for name in KEPT:
        shutil.copyfile(gan_report / name, report_dir / name)
    result = {"setup": setup, "seconds": seconds, "exception": c.exception, "models": models}
    done.write_text(json.dumps(result, indent=1))  # last: its presence means complete
    if not keep:
        shutil.rmtree(ws)
    return result


def copied_workspace(src: Path, dst: Path, models: bool) -> Path:
    """A copy of a kept workspace, with its trained models and scores (`models`) or without."""
    if not src.is_dir():
        raise SystemExit(f"{src}: no kept workspace (run the source with --keep)")
    if dst.exists():
        shutil.rmtree(dst)
    skip = shutil.ignore_patterns() if models else shutil.ignore_patterns("runs", "reports")
    return Path(shutil.copytree(src, dst, ignore=skip))  # copy2: mtimes kept, scores reused


def judged(ws: Path, pipe: Pipeline, on_stage: Any) -> Path:
    """The chain's last two stages on a copied workspace; the GAN's report folder."""
    from bfsdata.report.stage import report
    from bfsdata.train.stage import train

    if not paths.model_path(paths.run_dir(ws, RUN, "--run")).exists():  # else --rejudge
        on_stage("train", train(ws, pipe, name=RUN))
    rep = report(ws, pipe, run=RUN)
    on_stage("report", rep)
    return rep.out_dir


def other_models(ws: Path, pipe: Pipeline) -> dict[str, dict[str, Any]]:
    """Metrics of the other rows of MODELS on the chain's workspace and test half: the GAN's
    weights judged on the normalised residual (a copy of the run whose model.json names that
    score: the same weights, so only the score differs), the variation model, and the fused
    decisions (reject when either rejects, thresholds fitted jointly on calib)."""
    from bfsdata.report.compare_stage import compare_runs
    from bfsdata.report.stage import report
    from bfsdata.train.stage import train

    gan = paths.run_dir(ws, RUN, "--run")
    residual = paths.run_dir(ws, "gan-residual", "--run")
    if not residual.exists():  # (--rejudge: the runs are there, only the report is redone)
        shutil.copytree(gan, residual)
        info = residual / paths.MODEL_INFO
        info.write_text(json.dumps(json.loads(info.read_text()) | {"score": "residual"}, indent=2))
    if not paths.run_dir(ws, "variation", "--run").exists():
        train(ws, with_overrides(pipe, {"train.method": "variation"}), name="variation")
    out = {}
    for run in ("gan-residual", "variation"):
        out[run] = json.loads((report(ws, pipe, run=run).out_dir / "metrics.json").read_text())
    for name, runs in (
        ("fused", [RUN, "variation"]),
        ("fused-residual", ["gan-residual", "variation"]),
    ):
        m = compare_runs(ws, pipe, runs).metrics
        out[name] = {**m["fused"], **{k: m[k] for k in ("fitted_on", "evaluated_on")}}
    return out


def rate(r: dict[str, float] | None) -> str:
    return "–" if r is None else f"{r['value']:.2f} [{r['lo']:.2f}, {r['hi']:.2f}]"


def look_table(results: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Rows of figures per model, a column per seed. A fused decision has no one score, so no
    AUROC and no per-type recall."""
    head = ["", *(f"seed {r['setup']['seed']}" for r in results)]
    rows = []
    for model in MODELS:
        ms = [r["models"].get(model) for r in results]
        if not any(ms):
            continue

        def row(label: str, get: Any, ms: list = ms, model: str = model) -> None:
            rows.append([f"{model}: {label}", *("–" if m is None else get(m) for m in ms)])

        row("strip-wise accuracy", lambda m: rate(m["strip_wise"]["accuracy"]))
        row("run-wise accuracy", lambda m: rate((m["run_wise"] or {}).get("accuracy")))
        row("strip-wise FRR", lambda m: rate(m["strip_wise"]["false_reject_rate"]))
        row("strip-wise escape rate", lambda m: rate(m["strip_wise"]["escape_rate"]))
        have = [m for m in ms if m and "region_wise" in m]
        regions = sorted({r for m in have for r in m["region_wise"]["regions"]}, key=int)
        for reg in regions:
            name = next(
                m["region_wise"]["regions"][reg]["name"]
                for m in have
                if reg in m["region_wise"]["regions"]
            )
            row(
                f"AUROC {name}",
                lambda m, reg=reg: _num((m["region_wise"]["regions"].get(reg) or {}).get("auroc")),
            )
        types = sorted({t for m in have for t in m["defect_types"]["types"]})
        for t in types:
            row(f"recall {t}", lambda m, t=t: _recall(m["defect_types"]["types"].get(t)))
    rows.append(["minutes (chain, GAN)", *(f"{r['seconds'] / 60:.1f}" for r in results)])
    first = [r["models"][MODELS[0]] for r in results]
    rows.append(["thresholds fitted on / judged on", *(_where(m) for m in first)])
    return head, rows


def summary_table(by_look: dict[str, list[dict[str, Any]]]) -> tuple[list[str], list[list[str]]]:
    """Strip-wise accuracy of each model per look x seed, and the GAN's weakest defect type."""
    head = ["look", "seed", *MODELS, "best >= 0.95", "GAN's lowest recall"]
    rows = []
    for look, results in by_look.items():
        for r in results:
            accs = [
                (r["models"].get(m) or {}).get("strip_wise", {}).get("accuracy") for m in MODELS
            ]
            types = r["models"][MODELS[0]]["defect_types"]["types"]
            worst = min(types, key=lambda t: _value(types[t]["recall"]), default=None)
            low = "–" if worst is None else f"{worst} {_recall(types[worst])}"
            best = max((a["value"] for a in accs if a), default=0.0)
            ok = "yes" if best >= 0.95 else "NO"
            rows.append([look, str(r["setup"]["seed"]), *(rate(a) for a in accs), ok, low])
    return head, rows


def _num(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f}"


def _value(r: dict[str, float] | None) -> float:
    return float("inf") if r is None else r["value"]


def _recall(t: dict[str, Any] | None) -> str:
    if t is None:
        return "–"
    return f"{rate(t['recall'])} {t['rejected']}/{t['acquisitions']}"


def _where(m: dict[str, Any]) -> str:
    return f"{m['fitted_on']} / {m['evaluated_on']}"


def render(head: list[str], rows: list[list[str]], markdown: bool) -> str:
    if markdown:  # a defect name may hold the column separator
        lines = [head, ["---"] * len(head), *([c.replace("|", "\\|") for c in r] for r in rows)]
        return "\n".join("| " + " | ".join(r) + " |" for r in lines)
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def line(r: list[str]) -> str:
        cells = [c.rjust(w) for c, w in zip(r, widths, strict=True)]
        return "  ".join([r[0].ljust(widths[0]), *cells[1:]])

    return "\n".join(line(r) for r in [head, *rows])


def main() -> None:
    ap = arguments(__doc__, strips=STRIPS)
    ap.set_defaults(strips=None)
    ap.add_argument("--looks", default=",".join(DEFAULT_LOOKS), help="looks, comma-separated")
    ap.add_argument("--seeds", default="0,1", help="synthetic data seeds, comma-separated")
    ap.add_argument(
        "--quick", action="store_true", help=f"{QUICK_STRIPS} strips, one seed, short training"
    )
    ap.add_argument(
        "--out", type=Path, default=OUT / "quality", help="results, one folder per look"
    )
    ap.add_argument("--markdown", action="store_true", help="tables as markdown")
    ap.add_argument("--keep", action="store_true", help="keep each look's workspace")
    ap.add_argument(
        "--from",
        dest="source",
        type=Path,
        default=None,
        help="an earlier --out run with --keep: copy its workspaces and only train and judge "
        "(settings of train, acquisition.test_kinds and report may differ)",
    )
    ap.add_argument(
        "--rejudge",
        action="store_true",
        help="with --from: copy its trained models and scores too and only report again "
        "(for report settings only)",
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting of the profile for every look (YAML value), e.g. "
        "train.kinds=[rank_min,rank_max]; repeatable",
    )
    args = ap.parse_args()
    settings = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            ap.error(f"--set {item!r}: expected KEY=VALUE")
        settings[key.strip()] = yaml.safe_load(value)
    looks = [s.strip() for s in args.looks.split(",") if s.strip()]
    unknown = [look for look in looks if look not in LOOKS]
    if unknown:
        ap.error(f"unknown looks {', '.join(unknown)}; known: {', '.join(LOOKS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.quick:
        seeds = seeds[:1]
    strips = args.strips or (QUICK_STRIPS if args.quick else STRIPS)
    by_look: dict[str, list[dict[str, Any]]] = {}
    exceptions = {}
    for look in looks:
        for seed in seeds:
            c = case(look, seed, strips, args.quick, args.workers, settings)
            result = run_case(c, args.out, args.quick, args.keep, args.source, args.rejudge)
            by_look.setdefault(look, []).append(result)
            if c.exception:
                exceptions[look] = c.exception
    run_wide = (QUICK if args.quick else {}) | settings
    mode = ", ".join(f"{k} {v}" for k, v in run_wide.items()) or "as it is"
    print(
        f"Profile pipelines/demo.yaml ({mode}), {strips} strips x 10 runs per look and seed; "
        "per look only the layout of its geometry changes"
        + "".join(f"; one exception, look {k}: {v}" for k, v in exceptions.items())
        + ". Test half, thresholds fitted on calib, 95 % Clopper-Pearson intervals; recall "
        "per defect type is strip-wise (rejected / acquisitions)."
    )
    for look, results in by_look.items():
        knobs = ", ".join(f"{k} {v}" for k, v in LOOKS[look].items()) or "reference"
        print(f"\n{'### ' if args.markdown else ''}{look} ({knobs})\n")
        print(render(*look_table(results), args.markdown))
    print(f"\n{'### ' if args.markdown else ''}Summary\n")
    print(render(*summary_table(by_look), args.markdown))


if __name__ == "__main__":
    main()
