"""`bfsdata train`: fit the GRD-Net GAN on good patches, streamed from the store (or, with
`train.method: variation`, the variation model: bfsdata.train.variation, no TensorFlow).

The train split feeds `fit`; a fixed sample of the val split gives the validation losses after
every epoch. Data order and augmentation are pure functions of (seed, global step), and
checkpoints carry the optimizers' state, so a resumed run continues at the same step and ends
with the same weights as an uninterrupted one. With `optim.checkpoint_every` N, Keras "epochs"
are N-step intervals (a checkpoint and a log row each); otherwise one pass over the train split.

Outputs in `<ws>/runs/<name>/`: config.yaml (resolved pipeline + provenance), checkpoints/,
losses.csv, logs/ (TensorBoard), previews/ (X, X_n, M, X^ per epoch) and export/ (SavedModel,
.keras, model.json). The provenance (config.yaml and model.json) includes `cut`, the recipe the
training patches were cut with (bfsdata.imaging.cut), when the workspace records it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from bfsdata.config.files import pipeline_to_dict
from bfsdata.config.pipeline import Pipeline
from bfsdata.store import location as store
from bfsdata.workspace import manifest, paths, provenance
from bfsdata.workspace.writes import write_atomic

log = logging.getLogger(__name__)


class TrainError(ValueError):
    """The workspace cannot be trained on as asked; the message says what to do."""


@dataclass(frozen=True)
class TrainSummary:
    run_dir: Path
    train_patches: int
    val_patches: int
    start_step: int  # 0, or the step a resumed run continued from
    steps: int  # total steps reached
    seconds: float
    history: pd.DataFrame  # losses.csv as written
    export: Path


def training_rows(workspace: Path, pipe: Pipeline) -> tuple[np.ndarray, np.ndarray]:
    """Store rows of the train and val patches: good strips, the configured kinds."""
    ws = Path(workspace)
    splits = manifest.read(ws, manifest.SPLITS_SCHEMA)
    if splits.empty:
        raise TrainError(f"{ws}: no splits.parquet; run `bfsdata split -w {ws}` first")
    patches = manifest.read(ws, manifest.PATCHES)
    patches = patches[patches["kind"].isin(pipe.train.kinds) & (patches["label"] == "good")]
    split_of = splits.set_index("strip")["split"]
    which = patches["strip"].map(split_of)
    train = np.sort(patches.loc[which == "train", "patch"].to_numpy())
    val = np.sort(patches.loc[which == "val", "patch"].to_numpy())
    if len(train) == 0:
        raise TrainError(
            f"{ws}: no training patches (kinds {', '.join(pipe.train.kinds)}) in the train split; "
            "check `bfsdata stats` and the split"
        )
    return train, val


def train(
    workspace: Path,
    pipe: Pipeline,
    *,
    name: str = "default",
    resume: bool = False,
    preview: bool = True,
    devices: list[str] | None = None,
) -> TrainSummary:
    run_dir = paths.run_dir(workspace, name, "--name")  # a bad name fails before TensorFlow loads
    if pipe.train.method == "variation":  # no TensorFlow: bfsdata.train.variation
        from bfsdata.train.variation import train_variation

        return train_variation(workspace, pipe, name=name, resume=resume, preview=preview)
    import keras
    import tensorflow as tf

    from bfsdata.model import checkpoint
    from bfsdata.model.callbacks import (
        Checkpoints,
        Diverged,
        Divergence,
        EpochProgress,
        Preview,
        Throughput,
    )
    from bfsdata.model.export import export, reconstructor
    from bfsdata.model.gan import TRACKED, GRDNet
    from bfsdata.train.augment import augment
    from bfsdata.train.loader import to_float, train_dataset

    t0 = time.perf_counter()
    ws = Path(workspace)
    cfg = dataclasses.replace(pipe.train, model=pipe.model)
    train_rows, val_rows = training_rows(ws, pipe)
    root = store.open_root(ws, mode="r")
    if tuple(root["patches"].shape[1:]) != (cfg.model.patch_size,) * 2:
        raise TrainError(
            f"the store's patches are {root['patches'].shape[1]} px; the pipeline's patch.size "
            f"is {cfg.model.patch_size}: use the pipeline the workspace was patched with"
        )
    ckpt = checkpoint.latest(run_dir)
    if ckpt is not None and not resume:
        raise TrainError(f"{run_dir} already has checkpoints; pass --resume, or another --name")
    if resume and ckpt is None:
        raise TrainError(f"{run_dir}: nothing to resume (no checkpoints); run without --resume")
    run_dir.mkdir(parents=True, exist_ok=True)
    inputs = provenance.manifest_digests(ws, manifest.SPLITS_SCHEMA, manifest.PATCHES)
    recipe = provenance.patch_recipe(ws)  # how the training patches were cut: to model.json
    cut = {} if recipe is None else {"cut": recipe.to_dict()}
    rec = provenance.record(pipe, "train", inputs, seed=cfg.seed, **cut)
    write_config(run_dir, pipe, rec)

    keras.utils.set_random_seed(cfg.seed)
    opt = cfg.optim
    steps_per_pass = opt.steps_per_epoch or math.ceil(len(train_rows) / opt.batch)
    interval = opt.checkpoint_every or steps_per_pass
    keras_epochs = math.ceil(opt.epochs * steps_per_pass / interval)

    strategy = _strategy(devices)
    with strategy.scope():
        model = GRDNet(cfg)
        model.compile(
            g_optimizer=_adam(keras, opt),
            d_optimizer=_adam(keras, opt),
            jit_compile=opt.jit_compile,
        )
        model.build_all()
    start_step = 0
    if ckpt is not None:
        start_step = int(checkpoint.restore(model, ckpt)["step"])
        log.info("resuming %s at step %d", run_dir, start_step)

    store_dir = store.store_url(ws)
    aug = cfg.augment

    def with_aug(x: tf.Tensor, step: tf.Tensor) -> dict[str, tf.Tensor]:
        return augment(to_float(x), step, aug, cfg.seed)

    data = (
        train_dataset(store_dir, train_rows, batch=opt.batch, seed=cfg.seed, start_step=start_step)
        .map(with_aug, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .prefetch(2)
    )
    progress = EpochProgress(keras_epochs, interval)
    callbacks = [
        Throughput(opt.batch),
        progress,  # after Throughput: its epoch line reports patches/s
        # Before Checkpoints: a diverged step is never saved. ssim is a similarity, no loss.
        Divergence("g_loss", [n for n in TRACKED if n not in ("g_loss", "ssim")], interval),
        Checkpoints(run_dir, interval),
        keras.callbacks.CSVLogger(str(run_dir / "losses.csv"), append=resume),
        keras.callbacks.TensorBoard(log_dir=str(run_dir / "logs"), write_graph=False),
    ]
    if preview:
        sample = {k: v.numpy() for k, v in next(iter(data.take(1))).items()}
        callbacks.append(Preview(sample, run_dir / "previews"))
    val = _val_data(tf, store_dir, val_rows, opt)
    try:
        model.fit(
            data,
            epochs=keras_epochs,
            initial_epoch=start_step // interval,
            steps_per_epoch=interval,
            validation_data=val,
            callbacks=callbacks,
            shuffle=False,  # the stream is already shuffled, deterministically by step
            verbose=0,  # EpochProgress shows the steps and logs each epoch
        )
    except Diverged as e:
        raise _diverged(run_dir, e, opt.lr, checkpoint.discard_from(run_dir, e.since - 1)) from None
    finally:
        progress.close()
    meta = {**rec, "steps": keras_epochs * interval}
    exported = export(model.generator, run_dir / "export", cfg.loss, meta)
    recon = reconstructor(model.generator)

    def as_served(x: np.ndarray) -> np.ndarray:  # uint8 (B, P, P) -> X^ (B, P, P), as `serve`
        return recon(tf.cast(x[..., None], tf.float32) / 255.0).numpy()[..., 0]

    _residual_stats(ws, run_dir, pipe, as_served)
    history = pd.read_csv(run_dir / "losses.csv") if (run_dir / "losses.csv").exists() else None
    return TrainSummary(
        run_dir=run_dir,
        train_patches=len(train_rows),
        val_patches=len(val_rows),
        start_step=start_step,
        steps=keras_epochs * interval,
        seconds=time.perf_counter() - t0,
        history=history if history is not None else pd.DataFrame(),
        export=exported,
    )


def _residual_stats(
    ws: Path, run_dir: Path, pipe: Pipeline, reconstruct: Callable[[np.ndarray], np.ndarray]
) -> None:
    """The good-residual statistics beside the export (bfsdata.train.residual): required when
    the score is the normalised residual, else kept so the weights can be judged on it too."""
    from bfsdata.score import ScoreError
    from bfsdata.train.residual import fit_residual_norm

    try:
        written = fit_residual_norm(ws, run_dir, pipe, reconstruct)
    except ScoreError as e:  # no val/calib/test split of the scored images yet
        written, why = None, str(e)
    else:
        why = f"{ws}: no good val patches of the scored images"
    if written is None and pipe.train.loss.score == "residual":
        raise TrainError(
            f"{run_dir}: train.loss.score is residual, but its good statistics need val patches "
            f"of the scored images: {why}"
        )


def _diverged(run_dir: Path, e: Exception, lr: float, kept: Path | None) -> TrainError:
    """The one message of a run stopped by `Divergence`: the loss, the step, what to do."""
    if kept is None:
        where = "no checkpoint was kept (none was saved before it diverged)"
    else:
        where = f"the last good checkpoint, {kept.name}, is kept (--resume continues from it)"
    return TrainError(
        f"{run_dir}: training diverged and was stopped: {e}. Nothing was exported; {where}. "
        f"Lower the learning rate, train.optim.lr in the pipeline (now {lr:g}; try {lr / 10:g}), "
        "and train again."
    )


def _adam(keras, opt):
    schedule = keras.optimizers.schedules.CosineDecayRestarts(
        initial_learning_rate=opt.lr,
        first_decay_steps=opt.first_decay_steps,
        t_mul=opt.t_mul,
        m_mul=opt.m_mul,
        alpha=opt.alpha,
    )
    return keras.optimizers.Adam(learning_rate=schedule, beta_1=opt.beta_1)


def _strategy(devices: list[str] | None):
    """MirroredStrategy when more than one GPU is visible (or devices are named)."""
    import tensorflow as tf

    if devices:
        return tf.distribute.MirroredStrategy(devices)
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        log.info("training on %d GPUs with MirroredStrategy", len(gpus))
        return tf.distribute.MirroredStrategy()
    # TensorFlow's own account of a missing GPU (the cuInit line) is hidden unless --verbose.
    log.info("training on %s", "1 GPU" if gpus else "the CPU: no GPU visible (--verbose says why)")
    return tf.distribute.get_strategy()


def _val_data(tf, store_dir: str, val_rows: np.ndarray, opt):
    """A fixed, seeded sample of val patches, clean in and clean out (no perturbation)."""
    if len(val_rows) == 0:
        return None
    from bfsdata.train.loader import eval_dataset, to_float

    rng = np.random.default_rng(0)
    rows = np.sort(rng.choice(val_rows, min(len(val_rows), opt.val_patches), replace=False))

    def clean(x, _):
        x = to_float(x)
        zeros = tf.zeros_like(x)
        return {"x": x, "x_noisy": x, "mask": zeros, "noise": zeros}

    return eval_dataset(store_dir, rows, batch=opt.batch).map(clean)


def write_config(run_dir: Path, pipe: Pipeline, rec: dict) -> None:
    """runs/<name>/config.yaml: the resolved pipeline and the run's provenance (any model)."""
    doc = {"provenance": rec, **pipeline_to_dict(pipe)}
    write_atomic(run_dir / paths.RUN_CONFIG, yaml.safe_dump(doc, sort_keys=False).encode())
