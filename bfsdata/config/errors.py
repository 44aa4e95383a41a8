"""The error of a pipeline file that cannot be used, and the rules that raise it.

Its own module so that config.py and train_config.py (the training sections) share it without
importing each other.
"""

from __future__ import annotations

import numbers


class ConfigError(ValueError):
    """A pipeline file that cannot be used; the message names the file and the key."""


def check(ok: bool, key: str, msg: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {msg}")


def check_int(value: object, key: str, lo: int, hi: int, why: str = "") -> None:
    """`value` is a whole number in lo..hi. Every size a pipeline sets has an upper bound: a
    file saying `patch.size: 20000` must fail here, naming the key, not later in an
    allocation. `why` tells what the upper bound protects."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{key}: must be a whole number, got {value!r}")
    check(value >= lo, key, f"must be >= {lo}, got {value}")
    check(value <= hi, key, f"must be <= {hi}{f' ({why})' if why else ''}, got {value}")
