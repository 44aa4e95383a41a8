"""Checkpoints that resume exactly: weights, both optimizers' state, and the step reached.

A checkpoint is a folder `ckpt-<step>/` holding `weights.weights.h5` (generator and critic),
`optimizers.npz` (every optimizer variable: Adam moments and iteration counters) and
`state.json` (epoch and step). It is written beside its final name and renamed, so a folder
with that name is always complete; a killed run resumes from the newest one.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from bfsdata.model.gan import GRDNet


def save(model: GRDNet, run_dir: Path, *, epoch: int, step: int, keep: int = 3) -> Path:
    final = Path(run_dir) / "checkpoints" / f"ckpt-{step:09d}"
    if final.exists():
        return final
    tmp = final.with_name(f".{final.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_weights(tmp / "weights.weights.h5")
    opt = {
        f"{name}/{i}": np.asarray(v)
        for name, o in (("g", model.g_optimizer), ("d", model.d_optimizer))
        for i, v in enumerate(o.variables)
    }
    np.savez(tmp / "optimizers.npz", **opt)
    (tmp / "state.json").write_text(json.dumps({"epoch": epoch, "step": step}))
    tmp.rename(final)
    for old in sorted(final.parent.glob("ckpt-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest(run_dir: Path) -> Path | None:
    found = sorted((Path(run_dir) / "checkpoints").glob("ckpt-*"))
    return found[-1] if found else None


def discard_from(run_dir: Path, step: int) -> Path | None:
    """Remove the checkpoints of `step` and later (a diverged run's); the newest one left."""
    for ckpt in (Path(run_dir) / "checkpoints").glob("ckpt-*"):
        if int(ckpt.name.removeprefix("ckpt-")) >= step:
            shutil.rmtree(ckpt, ignore_errors=True)
    return latest(run_dir)


def restore(model: GRDNet, ckpt: Path) -> dict[str, int]:
    """Load a checkpoint into a compiled model; returns its {"epoch", "step"}."""
    model.build_all()
    model.load_weights(ckpt / "weights.weights.h5")
    with np.load(ckpt / "optimizers.npz") as data:
        for name, o in (("g", model.g_optimizer), ("d", model.d_optimizer)):
            for i, v in enumerate(o.variables):
                v.assign(data[f"{name}/{i}"])
    return json.loads((ckpt / "state.json").read_text())
