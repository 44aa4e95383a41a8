"""Pipeline files (`pipelines/*.yaml`): find them by name, read them into a typed `Pipeline`.

Unknown keys and values of the wrong type are errors naming the file and the key; values are
range-checked by the dataclasses in `bfsdata.config.pipeline` as they are built.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from bfsdata.config.pipeline import ConfigError, Pipeline
from bfsdata.config.regular_files import InputFileError, read_regular

PIPELINES_DIR = Path(__file__).resolve().parents[2] / "pipelines"
MAX_PIPELINE_BYTES = 2**20  # a pipeline is a few KiB of YAML


def resolve_pipeline_path(name_or_path: str | Path) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        return p
    return PIPELINES_DIR / f"{name_or_path}.yaml"


def load_pipeline(name_or_path: str | Path) -> Pipeline:
    """Read a pipeline by name (`bfs-5vial`, `demo`) or path; unknown keys are errors."""
    path = resolve_pipeline_path(name_or_path)
    if not os.path.lexists(path):
        known = ", ".join(sorted(p.stem for p in PIPELINES_DIR.glob("*.yaml")))
        raise ConfigError(f"{path}: no such pipeline file (known names: {known})")
    try:
        raw = read_regular(path, MAX_PIPELINE_BYTES)
    except InputFileError as e:
        raise ConfigError(str(e)) from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot be read ({e.strerror})") from None
    data = _parse(path, raw)
    try:
        if not isinstance(data, dict):
            raise ConfigError("top level must be a mapping of sections")
        data.pop("source", None)
        data.pop("sha256", None)
        pipe = _build(Pipeline, data, "")
        try:
            pipe.model  # noqa: B018 (built to be checked: its patch size is patch.size)
        except ConfigError as e:
            raise ConfigError(
                f"patch.size {pipe.patch.size} does not fit train.model: {e}"
            ) from None
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    return dataclasses.replace(pipe, source=str(path), sha256=hashlib.sha256(raw).hexdigest())


def _parse(path: Path, raw: bytes) -> Any:
    """The YAML document ({} for an empty file); any failure is one line naming the file."""
    try:
        data = yaml.load(raw, Loader=_UniqueKeyLoader)  # a SafeLoader: builds no objects
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = "; ".join(str(m) for m in (e.context, e.problem) if m)
        raise ConfigError(f"{path}: not valid YAML{at} ({_one_line(what)})") from None
    # ValueError: a value PyYAML cannot build (an integer too long, a date like 2024-13-01);
    # RecursionError: nesting deeper than the parser's recursion.
    except (yaml.YAMLError, ValueError, RecursionError) as e:
        raise ConfigError(f"{path}: not valid YAML ({_one_line(str(e))})") from None
    return {} if data is None else data


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last one
    silently: a pipeline with `lr:` twice would train with whichever came second)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} given twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def pipeline_to_dict(pipe: Pipeline) -> dict[str, Any]:
    """Plain dict (lists, not tuples) for YAML/JSON provenance records."""
    return _plain(dataclasses.asdict(pipe))


def _plain(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    return v


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    """Dataclass from a YAML mapping: unknown keys and wrong types are errors."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names, key=str)  # YAML keys may be numbers or null too
    if unknown:
        raise ConfigError(
            f"unknown key {where}{unknown[0]!r}; known keys: {', '.join(sorted(names))}"
        )
    kwargs = {}
    for key, value in data.items():
        kwargs[key] = coerce(hints[key], value, f"{where}{key}")
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise ConfigError(str(e)) from None


def coerce(hint: Any, value: Any, key: str) -> Any:
    """`value` as the type `hint` of pipeline key `key` takes it (YAML lists become tuples);
    ConfigError naming the key if it does not fit. Also checks command-line overrides."""
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: must be a mapping, got {type(value).__name__}")
        return _build(hint, value, f"{key}.")
    origin = typing.get_origin(hint)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: must be a list, got {_short(value)}")
        args = typing.get_args(hint)
        inner = args[0] if args[-1] is Ellipsis else None
        if inner is None and len(args) != len(value):
            raise ConfigError(f"{key}: must have {len(args)} items, got {len(value)}")
        return tuple(
            coerce(inner if inner is not None else args[i], v, key) for i, v in enumerate(value)
        )
    if origin in (typing.Union, types.UnionType):
        return value
    if hint is float:
        if type(value) not in (int, float):
            raise ConfigError(f"{key}: must be a number, got {_short(value)}")
        # False for .nan, .inf and integers too large for a float: .nan would pass the range
        # checks of bfsdata.config (all its comparisons are False), .inf some of them.
        if not abs(value) <= sys.float_info.max:
            raise ConfigError(f"{key}: must be a finite number, got {_short(value)}")
        return float(value)
    # `type(...) is` on purpose: YAML `true` must not pass for an int.
    if hint in (int, str, bool) and type(value) is not hint:
        raise ConfigError(f"{key}: must be {hint.__name__}, got {_short(value)}")
    return value


def _short(value: Any) -> str:
    """A YAML value for a one-line message."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."
