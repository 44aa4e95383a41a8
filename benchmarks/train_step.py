"""GRD-Net speed on random data: training patches/s and inference ms per patch.

Profiles: `demo` (64 px, widths 16..64) with and without XLA, and the paper size `bfs-5vial`
(256 px, widths 128..1024, ~400M weights) timed on a small batch: inference, and one train step
when it fits in memory (`--paper-train`, on by default; refused with the reason otherwise).

Training: `GRDNet.fit` on one random batch repeated (X, X_n, M, N as the augmentation would make
them; the input pipeline is left out here, see benchmarks/loader.py), `--warmup` steps first
(tracing, XLA compile) and then `--steps` timed steps. Inference: the exported model's `serve`
computation (G, then 1 - SSIM and the heatmap) on `--batch` patches (60: one acquisition),
warm-up calls left out; ms/patch = ms per batch / batch.

`--backend-neutral-only` times only `build_generator(cfg)` forward passes with Keras and never
imports TensorFlow itself, so the paper-size generator can be timed under JAX on a GPU machine:

    python benchmarks/train_step.py [--steps 20] [--batch 60] [--paper-batch 2]
    KERAS_BACKEND=jax python benchmarks/train_step.py --backend-neutral-only [--profiles bfs-5vial]

The machine may be shared: the load average is printed before and after.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import psutil

from bfsdata.config.files import load_pipeline
from bfsdata.config.pipeline import Pipeline

PROFILES = ("demo", "bfs-5vial")
ADAM_COPIES = 4  # weights, gradients, two Adam moments: float32 copies of each weight in training


@dataclasses.dataclass
class Row:
    profile: str
    patch: int
    params_g: int
    backend: str
    xla: bool | None
    train_batch: int | None = None
    train_pps: float | None = None  # patches/s
    infer_batch: int | None = None
    infer_ms: float | None = None  # ms per patch
    note: str = ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--profiles", default=",".join(PROFILES), help="comma list of pipelines")
    ap.add_argument("--steps", type=int, default=20, help="timed train steps (demo)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps/calls first")
    ap.add_argument("--batch", type=int, default=60, help="inference batch (demo)")
    ap.add_argument("--reps", type=int, default=10, help="timed inference batches (demo)")
    ap.add_argument("--paper-batch", type=int, default=2, help="batch at paper size (1-4)")
    ap.add_argument("--paper-train", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--backend-neutral-only", action="store_true", help="keras generator only")
    args = ap.parse_args()

    import keras

    backend = keras.backend.backend()
    if not args.backend_neutral_only and backend != "tensorflow":
        sys.exit(
            f"KERAS_BACKEND is {backend}: training and the export's serve need TensorFlow; "
            "run with --backend-neutral-only to time the generator alone"
        )
    print(f"keras {keras.__version__}, backend {backend}, load average before {_load()}")
    rows: list[Row] = []
    for name in args.profiles.split(","):
        pipe = load_pipeline(name.strip())
        paper = pipe.model.patch_size >= 256
        batch = args.paper_batch if paper else args.batch
        reps = 2 if paper else args.reps
        if args.backend_neutral_only:
            rows.append(neutral_forward(pipe, batch, reps, args.warmup if not paper else 1))
            continue
        for xla in (False, True) if not paper else (False,):
            rows.append(tf_profile(pipe, xla, args, paper))
    print(f"load average after {_load()}")
    print(
        "tensorflow imported by this process: "
        + ("yes" if "tensorflow" in sys.modules else "no")
        + ("" if backend == "tensorflow" else f" (backend {backend})")
    )
    _table(rows)


# --- keras only (any backend) --------------------------------------------------------------


def neutral_forward(pipe: Pipeline, batch: int, reps: int, warmup: int) -> Row:
    """ms per patch of `build_generator(cfg)` forward passes, compiled by the backend."""
    import keras

    from bfsdata.model import build_generator

    cfg = pipe.model
    gen = build_generator(cfg)
    gen.compile(jit_compile=True if keras.backend.backend() == "jax" else "auto")
    x = _random(batch, cfg.patch_size)
    ms = _time(lambda: gen.predict_on_batch(x), warmup, reps) / batch
    return Row(
        pipe.name,
        cfg.patch_size,
        gen.count_params(),
        keras.backend.backend(),
        None,
        infer_batch=batch,
        infer_ms=ms,
        note="generator forward only",
    )


# --- TensorFlow: train step and the export's serve ----------------------------------------


def tf_profile(pipe: Pipeline, xla: bool, args: argparse.Namespace, paper: bool) -> Row:
    import keras

    cfg = dataclasses.replace(pipe.train, model=pipe.model)
    infer_batch = args.paper_batch if paper else args.batch
    reps = 2 if paper else args.reps
    warm = 1 if paper else args.warmup
    t0 = time.perf_counter()
    model = _model(cfg, xla)
    built_s = time.perf_counter() - t0
    row = Row(pipe.name, cfg.model.patch_size, model.generator.count_params(), "tensorflow", xla)
    print(
        f"{pipe.name} XLA {'on' if xla else 'off'}: G {row.params_g / 1e6:.1f}M, "
        f"C {model.discriminator.count_params() / 1e6:.1f}M weights, built in {built_s:.0f} s",
        flush=True,
    )
    row.infer_batch = infer_batch
    row.infer_ms = _serve_ms(model, cfg, infer_batch, warm, reps, xla) / infer_batch
    print(f"  inference {row.infer_ms:.2f} ms/patch (batch {infer_batch})", flush=True)

    train_batch = args.paper_batch if paper else cfg.optim.batch
    steps = 1 if paper else args.steps
    if paper and not args.paper_train:
        row.note = "train step not timed (--no-paper-train)"
    elif paper and (why := _too_big(model, train_batch)):
        row.note = f"train step not timed: {why}"
    else:
        row.train_batch = train_batch
        row.train_pps = _train_pps(keras, model, cfg, train_batch, warm, steps)
        print(f"  training {row.train_pps:.3g} patches/s (batch {train_batch})", flush=True)
        if paper:
            row.note = f"train: {warm} warm-up + {steps} timed step"
    del model
    keras.backend.clear_session()
    return row


def _model(cfg, xla: bool):
    import keras

    from bfsdata.model.gan import GRDNet

    keras.utils.set_random_seed(0)
    model = GRDNet(cfg)
    model.compile(
        g_optimizer=keras.optimizers.Adam(cfg.optim.lr, beta_1=cfg.optim.beta_1),
        d_optimizer=keras.optimizers.Adam(cfg.optim.lr, beta_1=cfg.optim.beta_1),
        jit_compile=xla,
    )
    model.build_all()
    return model


def _serve_ms(model, cfg, batch: int, warmup: int, reps: int, xla: bool) -> float:
    """ms per batch of the export's `serve_float` computation: G, 1 - SSIM, heatmap."""
    import tensorflow as tf

    from bfsdata.model import losses

    gen, loss = model.generator, cfg.loss

    @tf.function(jit_compile=xla)
    def serve(x):
        x_hat = gen(x, training=False)["x_hat"]
        s = 1.0 - losses.ssim(x, x_hat, window=loss.ssim_window, sigma=loss.ssim_sigma)
        return {"reconstruction": x_hat, "score": s, "heatmap": losses.heatmap(x, x_hat)}

    x = tf.constant(_random(batch, cfg.model.patch_size))
    return _time(lambda: {k: v.numpy() for k, v in serve(x).items()}, warmup, reps)


def _train_pps(keras, model, cfg, batch: int, warmup: int, steps: int) -> float:
    import tensorflow as tf

    x = _random(batch, cfg.model.patch_size)
    rng = np.random.default_rng(1)
    mask = (rng.random(x.shape) > 0.5).astype(np.float32)
    noise = mask * rng.random(x.shape, dtype=np.float32) * 0.5
    data = {"x": x, "x_noisy": x * (1 - 0.5 * mask) + noise, "mask": mask, "noise": noise}
    ds = tf.data.Dataset.from_tensors(data).repeat()
    model.fit(ds, epochs=1, steps_per_epoch=warmup, verbose=0)  # tracing (+ XLA compile)
    t0 = time.perf_counter()
    model.fit(ds, epochs=1, steps_per_epoch=steps, verbose=0)
    return steps * batch / (time.perf_counter() - t0)


def _too_big(model, batch: int) -> str:
    """Why a train step would not fit in the memory available now, or '' when it should."""
    weights = (model.generator.count_params() + model.discriminator.count_params()) * 4
    # Activations kept for the backward pass of G, G_E-hat and three critic passes, plus TF's
    # own: ~3.5 GB per 256 px patch (peak RSS of the paper-size step at batch 1 on CPU: 10.1 GB,
    # of which 6.4 GB weights, gradients and Adam moments).
    need = ADAM_COPIES * weights + batch * 3.5e9
    free = psutil.virtual_memory().available
    if need > 0.8 * free:
        return f"needs ~{need / 1e9:.0f} GB, {free / 1e9:.0f} GB available"
    return ""


def _random(batch: int, size: int) -> np.ndarray:
    return np.random.default_rng(0).random((batch, size, size, 1), dtype=np.float32)


def _time(fn, warmup: int, reps: int) -> float:
    """Mean ms per call after `warmup` untimed calls (each call returns host data: synced)."""
    for _ in range(warmup):
        fn()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps * 1e3


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def _table(rows: list[Row]) -> None:
    def f(v, fmt):
        return "-" if v is None else format(v, fmt)

    print()
    head = ("profile", "P", "G weights", "backend", "XLA", "train patches/s", "s/step")
    print(
        f"{head[0]:10s} {head[1]:>4s} {head[2]:>10s} {head[3]:>10s} {head[4]:>4s} "
        f"{head[5]:>22s} {head[6]:>8s} {'infer ms/patch':>20s}  note"
    )
    for r in rows:
        xla = "-" if r.xla is None else ("on" if r.xla else "off")
        train = f"{f(r.train_pps, '.3g')} (b {f(r.train_batch, 'd')})"
        step = f(r.train_batch / r.train_pps if r.train_pps else None, ".3g")
        infer = f"{f(r.infer_ms, '.2f')} (b {f(r.infer_batch, 'd')})"
        print(
            f"{r.profile:10s} {r.patch:4d} {r.params_g / 1e6:9.1f}M {r.backend:>10s} {xla:>4s} "
            f"{train:>22s} {step:>8s} {infer:>20s}  {r.note}"
        )


if __name__ == "__main__":
    main()
