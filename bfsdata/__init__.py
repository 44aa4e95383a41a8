"""bfsdata: from raw BFS strip acquisitions to a validated anomaly detector."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("bfsdata")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
