"""The error of a pipeline file that cannot be used, and the one rule that raises it.

Its own module so that config.py and train_config.py (the training sections) share it without
importing each other.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A pipeline file that cannot be used; the message names the file and the key."""


def check(ok: bool, key: str, msg: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {msg}")
