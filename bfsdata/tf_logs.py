"""What TensorFlow may print: its start-up chatter is hidden unless asked for (`--verbose`).

On a machine without a GPU, TensorFlow's C++ side writes `failed call to cuInit`, `Could not
find cuda drivers` and oneDNN notices to stderr before anything of bfsdata's, which a person
reads as a failure. Two kinds of line, two switches:

- lines logged after absl's logging is set up (the `E0000 ... cuInit` line): TensorFlow's own
  threshold, TF_CPP_MIN_LOG_LEVEL; 3 is the level that drops the cuInit line (it is an ERROR).
- lines logged while TensorFlow's shared libraries load (`I0000 ... cudart_stub`, `port.cc`,
  `WARNING: All log messages before absl::InitializeLog()`): absl writes these before any
  threshold is read, so no variable removes them; `quiet_tensorflow_import` catches stderr while
  `tensorflow` is first imported and drops them, keeping every other line (Python warnings,
  errors, a failed import's whole output).

Everything here must run before TensorFlow is first imported: `bfsdata/__init__` applies the
default, the CLI's `setup_logging` the `--verbose` choice.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

VERBOSE_ENV = "BFSDATA_VERBOSE"  # 1: TensorFlow's own logs too, for the CLI and the Python API
QUIET_LEVEL = "3"  # TF_CPP_MIN_LOG_LEVEL: errors dropped too, cuInit's included
PYTHON_LOGGERS = ("tensorflow", "absl")  # their INFO lines ("Assets written to ...")

# absl's INFO and WARNING lines, `I0000 00:00:1796579198.566720    6585 cudart_stub.cc:31] ...`,
# and the lines that come with them at load time. ERROR and FATAL lines are kept.
_STARTUP_LINE = re.compile(
    r"[IW]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\] "
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|To enable the following instructions: .* rebuild TensorFlow"
)


def env_verbose() -> bool:
    """True when the environment asks for TensorFlow's logs (BFSDATA_VERBOSE=1)."""
    return os.environ.get(VERBOSE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def quiet_by_default() -> None:
    """The Python API's default: TensorFlow's C++ logs below FATAL off, unless the caller set
    TF_CPP_MIN_LOG_LEVEL or BFSDATA_VERBOSE. The load-time lines stay (see `show`)."""
    if not env_verbose():
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", QUIET_LEVEL)


def show(verbose: bool) -> None:
    """The CLI's choice, before any command imports TensorFlow: everything, or nothing.

    Quiet also drops the load-time lines, by catching stderr while TensorFlow loads; the
    Python API does not, since a library should not take over its caller's stderr.
    """
    if verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
        _uninstall()
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", QUIET_LEVEL)
        if "tensorflow" not in sys.modules and not any(
            isinstance(f, _QuietFinder) for f in sys.meta_path
        ):
            sys.meta_path.insert(0, _QuietFinder())
    for name in PYTHON_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if verbose else logging.WARNING)


def _uninstall() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _QuietFinder)]


@contextmanager
def quiet_tensorflow_import() -> Iterator[None]:
    """stderr (file descriptor 2, which C++ writes to) goes to a file for the `with`; then every
    line but absl's load-time INFO/WARNING ones is written back. All of it if the body raised."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all (a daemon): nothing to keep clean
        yield
        return
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        failed = True
        try:
            yield
            failed = False
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            lines = caught.read().decode(errors="replace").splitlines(keepends=True)
            kept = lines if failed else [ln for ln in lines if not _STARTUP_LINE.match(ln)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


class _QuietFinder(importlib.abc.MetaPathFinder):
    """On the first `import tensorflow` (directly, or through keras), hands the import machinery
    TensorFlow's own spec with a loader that runs inside `quiet_tensorflow_import`."""

    def find_spec(self, name: str, path=None, target=None) -> importlib.machinery.ModuleSpec | None:
        if name != "tensorflow":
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _QuietLoader(spec.loader)
                return spec
        return None


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader) -> None:
        self.loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        _uninstall()  # once is enough: the finder's loop is over by now
        # The module keeps the real loader (importlib.resources and pickling ask it).
        module.__loader__ = module.__spec__.loader = self.loader
        with quiet_tensorflow_import():
            self.loader.exec_module(module)
