"""A quiet terminal: TensorFlow's start-up lines only with --verbose; steps on a terminal, one
line per epoch in a log file.

The commands run as real `bfsdata` processes (the installed console script), since what is
tested is what TensorFlow's C++ side writes to file descriptor 2 while it loads.
"""

from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from workspace_fixtures import ENV, build_workspace

from bfsdata import tf_logs

# absl's line prefix, `I0000 00:00:1796579198.566720    6585 cudart_stub.cc:31] `, any severity.
ABSL_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\] ", re.M)
STARTUP = ("cuInit", "cudart_stub", "E0000", "absl::InitializeLog")

SCRIPT = Path(sys.executable).with_name("bfsdata")


def bfsdata(*args: object, **env: str) -> subprocess.CompletedProcess[str]:
    """`bfsdata args...` with the user's default environment: CPU only, no TensorFlow level."""
    child = {**os.environ, **ENV, **env}
    for unset in ("TF_CPP_MIN_LOG_LEVEL", tf_logs.VERBOSE_ENV):
        if unset not in env:
            child.pop(unset, None)
    cmd = (
        [str(SCRIPT)]
        if SCRIPT.exists()
        else [sys.executable, "-c", "import bfsdata.cli as c; c.main()"]
    )
    return subprocess.run(
        cmd + [str(a) for a in args], capture_output=True, text=True, env=child, timeout=600
    )


@pytest.mark.slow  # a minute and more: TensorFlow's start, the GAN's graphs, the export
def test_train_on_a_cpu_prints_only_bfsdata_lines_one_per_epoch(tmp_path: Path) -> None:
    # Training runs TensorFlow's device set-up, where the cuInit error is logged; stderr is a
    # pipe here, as in a log file: one line per epoch, no bar, no Keras lines on stdout.
    ws = tmp_path / "ws"
    build_workspace(ws)
    res = bfsdata("train", "-w", ws, "--epochs", "2", "--steps", "2", "--no-preview")
    assert res.returncode == 0, res.stderr
    assert not ABSL_LINE.search(res.stderr), res.stderr
    assert not [s for s in STARTUP if s in res.stderr], res.stderr
    epochs = re.findall(
        r"^INFO bfsdata\.model\.callbacks: epoch (\d+)/2 \(2 steps", res.stderr, re.M
    )
    assert epochs == ["1", "2"], res.stderr
    assert "Epoch 1/2" not in res.stdout and "step - " not in res.stdout
    assert "exported" in res.stdout  # the summary is still there
    assert "training on the CPU: no GPU visible (--verbose says why)" in res.stderr


@pytest.mark.parametrize(
    ("flags", "env"),
    [([], {}), (["--verbose"], {}), ([], {tf_logs.VERBOSE_ENV: "1"})],
    ids=["quiet", "--verbose", "BFSDATA_VERBOSE=1"],
)
def test_verbose_lets_tensorflow_speak(tmp_path: Path, flags: list[str], env: dict) -> None:
    # `train` imports TensorFlow before it looks at the workspace; this one has no splits, so
    # the command stops there, with bfsdata's own message in every case.
    res = bfsdata(*flags, "train", "-w", tmp_path, **env)
    assert res.returncode == 1, res.stderr
    assert "error: " in res.stderr and "bfsdata split" in res.stderr
    # What TensorFlow logs while it loads on a machine without CUDA drivers (cudart_stub) or on
    # an x86 build (oneDNN's port.cc): present exactly when asked for.
    assert bool(ABSL_LINE.search(res.stderr)) == bool(flags or env), res.stderr


def test_python_api_callers_get_no_cuinit_line() -> None:
    # No CLI: only the default bfsdata/__init__ sets; TensorFlow then sets up its devices.
    code = "import bfsdata, tensorflow as tf; tf.config.list_logical_devices('GPU')"
    child = {k: v for k, v in {**os.environ, **ENV}.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=child, timeout=600
    )
    assert res.returncode == 0, res.stderr
    assert "cuInit" not in res.stderr and "E0000" not in res.stderr, res.stderr


def test_startup_lines_are_dropped_and_the_rest_kept(capfd: pytest.CaptureFixture) -> None:
    startup = (
        b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
        b"I0000 00:00:1796579198.566720    6585 cudart_stub.cc:31] Could not find cuda drivers\n"
        b"W0000 00:00:1796579198.6    6585 port.cc:153] a notice\n"
    )
    kept = b"E0000 00:00:1796579199.1    6585 graph.cc:1] a real error\n<stdin>:1: UserWarning: x\n"
    with tf_logs.quiet_tensorflow_import():
        os.write(2, startup + kept)
    err = capfd.readouterr().err
    assert err == kept.decode()


def test_a_failed_import_shows_everything(capfd: pytest.CaptureFixture) -> None:
    line = b"I0000 00:00:1796579198.566720    6585 loader.cc:31] libfoo.so: cannot open\n"
    with pytest.raises(ImportError, match="libfoo"), tf_logs.quiet_tensorflow_import():
        os.write(2, line)
        raise ImportError("libfoo")
    assert capfd.readouterr().err == line.decode()


def test_the_python_api_default_keeps_the_callers_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(tf_logs.VERBOSE_ENV, raising=False)
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "1")
    tf_logs.quiet_by_default()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "1"
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL")
    monkeypatch.setenv(tf_logs.VERBOSE_ENV, "1")
    tf_logs.quiet_by_default()
    assert "TF_CPP_MIN_LOG_LEVEL" not in os.environ
    monkeypatch.setenv(tf_logs.VERBOSE_ENV, "0")
    tf_logs.quiet_by_default()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == tf_logs.QUIET_LEVEL


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _fit(epochs: int, steps: int) -> None:
    import keras

    from bfsdata.model.callbacks import EpochProgress, Throughput

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.ones((steps * 8, 4), "float32"), np.zeros((steps * 8, 1), "float32")
    callbacks = [Throughput(8), EpochProgress(epochs, steps)]
    model.fit(x, y, batch_size=8, epochs=epochs, callbacks=callbacks, verbose=0)


@pytest.mark.parametrize("terminal", [False, True], ids=["log file", "terminal"])
def test_epoch_progress(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, terminal: bool
) -> None:
    stderr = _Terminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    with caplog.at_level(logging.INFO, logger="bfsdata"):
        _fit(epochs=3, steps=5)
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("bfsdata")]
    assert [ln.split(" (")[0] for ln in lines] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert all("(5 steps, " in ln and "loss " in ln and "patches_per_s " in ln for ln in lines)
    drawn = stderr.getvalue()
    # A terminal gets a bar counting each epoch's steps; a log file no bar (a log handler an
    # earlier test installed may still write the epoch lines themselves there).
    assert ("epoch 3/3" in drawn and "5/5" in drawn) if terminal else "5/5" not in drawn
