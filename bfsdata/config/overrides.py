"""Command-line overrides of a pipeline: `{"train.optim.epochs": 3, "patch.kinds": ("frame",)}`.

Every command changes its pipeline this way. A value is checked as the same key in a pipeline
file would be: its type by `files.coerce`, then its range by the section's dataclass, built once
with all of that section's changes (so `acquisition.frames` and `acquisition.ranks` are checked
together). None means "option not given" and changes nothing. Two keys carry what they imply:

- `layout.regions` given as a count: that many equal bands across the strip box
  (`LayoutConfig.with_counts`), the same as regions would be drawn by hand;
- `acquisition.frames`: unless given too, the ranks become the minimum and maximum of the new
  count (1 and frames) and test frames past the count are dropped.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import Any

from bfsdata.config.errors import ConfigError
from bfsdata.config.files import coerce
from bfsdata.config.pipeline import AcquisitionConfig, LayoutConfig, Pipeline


def with_overrides(pipe: Pipeline, overrides: Mapping[str, Any]) -> Pipeline:
    """`pipe` with each dotted key of `overrides` set to its value (None: left as it is)."""
    tree: dict[str, Any] = {}
    for key, value in overrides.items():
        if value is None:
            continue
        *sections, name = key.split(".")
        node = tree
        for s in sections:
            node = node.setdefault(s, {})
        node[name] = value
    return _apply(pipe, tree, "") if tree else pipe


def _apply(obj: Any, changes: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    if isinstance(obj, LayoutConfig) and isinstance(changes.get("regions"), int):
        changes["regions"] = obj.with_counts(None, changes["regions"]).regions
    kwargs = {}
    for key, value in changes.items():
        if key not in names:
            raise ConfigError(f"unknown key {where}{key}; known keys: {', '.join(sorted(names))}")
        if isinstance(value, dict) and dataclasses.is_dataclass(hints[key]):
            kwargs[key] = _apply(getattr(obj, key), value, f"{where}{key}.")
        else:
            kwargs[key] = coerce(hints[key], value, f"{where}{key}")
    if isinstance(obj, AcquisitionConfig) and "frames" in kwargs:
        n = kwargs["frames"]
        kwargs.setdefault("ranks", tuple(sorted({1, n})))
        kwargs.setdefault("test_frames", tuple(f for f in obj.test_frames if f < n))
    return dataclasses.replace(obj, **kwargs)
