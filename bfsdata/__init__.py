"""bfsdata: from raw BFS strip acquisitions to a validated anomaly detector."""

from importlib.metadata import PackageNotFoundError, version

from bfsdata import tf_logs

# Before anything of bfsdata imports TensorFlow: its C++ errors (the cuInit line of a machine
# without a GPU) stay off for Python callers too, unless they set TF_CPP_MIN_LOG_LEVEL themselves.
tf_logs.quiet_by_default()

try:
    __version__ = version("bfsdata")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
