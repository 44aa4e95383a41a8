"""Manifest schemas: column names, dtypes and allowed values, defined once.

Every manifest is a parquet file with one row per thing. `read` and `write` validate against
the schema on every call; errors name the file, the column and how many rows are wrong.
`manifests/README.md` documents the same columns for people.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bfsdata.config.pipeline import KINDS
from bfsdata.store import location as store
from bfsdata.workspace import paths
from bfsdata.workspace.faults import crash_point

LABELS = ("good", "defect", "unknown")
SPLITS = ("train", "val", "calib", "test")
# Parquet schema metadata key of the provenance record a file carries (bfsdata.provenance).
PROVENANCE_KEY = b"bfsdata.provenance"


@dataclass(frozen=True)
class Column:
    name: str
    dtype: pa.DataType
    doc: str
    nullable: bool = False
    allowed: tuple[str, ...] = ()  # for string columns with a closed vocabulary
    default: float | None = None  # files written before the column existed read with this value


@dataclass(frozen=True)
class Schema:
    name: str  # file stem: <workspace>/manifests/<name>.parquet
    columns: tuple[Column, ...]
    key: tuple[str, ...]  # columns that identify a row; duplicates are errors

    @property
    def arrow(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, c.dtype, nullable=c.nullable) for c in self.columns])

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def empty(self) -> pd.DataFrame:
        return self.arrow.empty_table().to_pandas()


UTC_US = pa.timestamp("us", tz="UTC")

ACQUISITIONS = Schema(
    paths.ACQUISITIONS,
    (
        Column("acq", pa.int64(), "row index in the frames and rank arrays"),
        Column("strip", pa.string(), "strip id, [A-Za-z0-9_-]+"),
        Column("run", pa.int32(), "acquisition run of the strip (usually 1..10)"),
        Column("label", pa.string(), "strip label", allowed=LABELS),
        Column("n_frames", pa.int32(), "frames in the acquisition"),
        Column("height", pa.int32(), "frame height, px"),
        Column("width", pa.int32(), "frame width, px"),
        Column("dtype", pa.string(), "frame dtype as decoded", allowed=("uint8", "uint16")),
        Column("source", pa.string(), "run folder it was read from (absolute path)"),
        Column("sha256", pa.string(), "sha256 over the sha256 of each frame file, in frame order"),
        Column("ingested_at", UTC_US, "when the row was committed"),
    ),
    key=("strip", "run"),
)

PATCHES = Schema(
    paths.PATCHES,
    (
        Column("patch", pa.int64(), "row index in the patches array"),
        Column("acq", pa.int64(), "acquisition row (acquisitions.acq)"),
        Column("strip", pa.string(), "strip id"),
        Column("run", pa.int32(), "acquisition run"),
        Column("frame", pa.int16(), "frame index 0..15, or -1 for rank images"),
        Column("kind", pa.string(), "which image was cut", allowed=KINDS),
        Column("vial", pa.int8(), "vial 1..5, left to right"),
        Column("region", pa.int8(), "region 0..3: R0 flag, R1 upper body, R2 liquid, R3 bottom"),
        Column("label", pa.string(), "strip label", allowed=LABELS),
        Column(
            "defect_here",
            pa.bool_(),
            "an annotated defect lies in this vial/region; null where unknown",
            nullable=True,
        ),
        Column("y0", pa.int32(), "crop box top in the source image, px"),
        Column("x0", pa.int32(), "crop box left, px"),
        Column("y1", pa.int32(), "crop box bottom (exclusive), px"),
        Column("x1", pa.int32(), "crop box right (exclusive), px"),
        Column("dy", pa.float32(), "registration offset of this window's centre, rows, px"),
        Column("dx", pa.float32(), "registration offset of this window's centre, columns, px"),
        Column(
            "angle",
            pa.float32(),
            "strip rotation, degrees counter-clockwise on screen; 0 unless patch.rotation",
            default=0.0,
        ),
    ),
    key=("acq", "kind", "frame", "vial", "region"),
)

SPLITS_SCHEMA = Schema(
    paths.SPLITS,
    (
        Column("strip", pa.string(), "strip id"),
        Column("split", pa.string(), "train | val | calib | test", allowed=SPLITS),
        Column("seed", pa.int64(), "seed the assignment was drawn with"),
    ),
    key=("strip",),
)

REJECTED = Schema(
    paths.REJECTED,
    (
        Column("source", pa.string(), "file or folder refused, relative to the raw root"),
        Column("strip", pa.string(), "strip id, if known", nullable=True),
        Column("run", pa.int32(), "run, if known", nullable=True),
        Column("rule", pa.string(), "the rule it broke"),
        Column("message", pa.string(), "what was found and what to do"),
        Column("rejected_at", UTC_US, "when"),
    ),
    key=("source", "rule", "message"),
)

ANNOTATIONS = Schema(
    paths.ANNOTATIONS,
    (
        Column("strip", pa.string(), "strip id"),
        Column("label", pa.string(), "strip label", allowed=("good", "defect")),
        Column("defect", pa.string(), "defect type name", nullable=True),
        Column("vial", pa.int8(), "vial 1..5 holding the defect", nullable=True),
        Column("region", pa.int8(), "region 0..3 holding the defect", nullable=True),
    ),
    key=("strip", "defect", "vial", "region"),
)

ALL = (ACQUISITIONS, PATCHES, SPLITS_SCHEMA, REJECTED, ANNOTATIONS)


class ManifestError(ValueError):
    """A manifest that does not follow its schema."""


def path_of(workspace: Path, schema: Schema) -> Path | str:
    """manifests/<name>.parquet beside the store: a local Path, or a URL (`--store`)."""
    return paths.manifest_file(workspace, schema.name)


def exists(workspace: Path, schema: Schema) -> bool:
    return store.present(path_of(workspace, schema))


def validate(df: pd.DataFrame, schema: Schema, where: str) -> pa.Table:
    """Check columns, dtypes, nulls, vocabularies and keys; return the typed arrow table."""
    missing = [c for c in schema.names if c not in df.columns]
    extra = [c for c in df.columns if c not in schema.names]
    if missing or extra:
        raise ManifestError(
            f"{where}: columns do not match the {schema.name} schema"
            + (f"; missing: {', '.join(missing)}" if missing else "")
            + (f"; unexpected: {', '.join(map(str, extra))}" if extra else "")
        )
    df = df[schema.names]
    for c in schema.columns:
        nulls = int(df[c.name].isna().sum())
        if nulls and not c.nullable:
            raise ManifestError(f"{where}: column {c.name!r} has {nulls} null rows")
        if c.allowed:
            bad = ~df[c.name].isin(c.allowed) & df[c.name].notna()
            if bad.any():
                seen = sorted(map(str, df.loc[bad, c.name].unique()))[:3]
                raise ManifestError(
                    f"{where}: column {c.name!r} has {int(bad.sum())} rows outside "
                    f"{'|'.join(c.allowed)} (e.g. {', '.join(seen)})"
                )
    dup = df.duplicated(list(schema.key))
    if dup.any():
        raise ManifestError(
            f"{where}: {int(dup.sum())} duplicate rows on key ({', '.join(schema.key)})"
        )
    try:
        return pa.Table.from_pandas(df, schema=schema.arrow, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as e:
        raise ManifestError(f"{where}: values do not fit the {schema.name} dtypes ({e})") from None


def read(workspace: Path, schema: Schema) -> pd.DataFrame:
    """The manifest as a DataFrame; an empty one with the right columns if none exists."""
    path = path_of(workspace, schema)
    fs, where = store.filesystem(path)
    if not fs.exists(where):
        return schema.empty()
    try:
        table = pq.read_table(where, filesystem=fs)
    except (pa.ArrowInvalid, OSError) as e:
        raise ManifestError(f"{path}: not a readable parquet file ({e})") from None
    # ignore_metadata: dtypes come from the schema, not from whatever pandas wrote the file.
    df = table.to_pandas(ignore_metadata=True)
    for c in schema.columns:
        if c.default is not None and c.name not in df.columns:
            df[c.name] = pd.Series(c.default, index=df.index).astype(c.dtype.to_pandas_dtype())
    validate(df, schema, str(path))
    for c in schema.columns:
        if c.nullable and pa.types.is_integer(c.dtype):
            df[c.name] = df[c.name].astype(f"Int{c.dtype.bit_width}")
    return df


def write(
    workspace: Path,
    schema: Schema,
    df: pd.DataFrame,
    sort: Sequence[str] = (),
    provenance: Mapping[str, Any] | None = None,
) -> Path | str:
    """Validate, then write beside the target and rename: readers never see half a file.

    `provenance` is stored in the file's own schema metadata, so rows and record land together.
    """
    path = path_of(workspace, schema)
    if sort:
        df = df.sort_values(list(sort), kind="stable")
    table = validate(df.reset_index(drop=True), schema, str(path))
    if provenance is not None:
        table = with_provenance(table, provenance)
    if not isinstance(path, Path):  # a URL: one PUT, which an object store applies whole
        buf = pa.BufferOutputStream()
        pq.write_table(table, buf, compression="zstd")
        fs, where = store.filesystem(path)
        fs.pipe_file(where, buf.getvalue().to_pybytes())
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        pq.write_table(table, tmp, compression="zstd")
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        crash_point(f"manifest.{schema.name}")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def with_provenance(table: pa.Table, record: Mapping[str, Any]) -> pa.Table:
    """The table with `record` in its schema metadata (kept by parquet, read by any tool)."""
    meta = dict(table.schema.metadata or {})
    meta[PROVENANCE_KEY] = json.dumps(record, sort_keys=True).encode()
    return table.replace_schema_metadata(meta)


def read_provenance(workspace: Path, schema: Schema) -> dict[str, Any] | None:
    """The provenance record a manifest carries; None if there is no file or no record."""
    path = path_of(workspace, schema)
    fs, where = store.filesystem(path)
    if not fs.exists(where):
        return None
    try:
        meta = pq.read_schema(where, filesystem=fs).metadata or {}
    except (pa.ArrowInvalid, OSError) as e:
        raise ManifestError(f"{path}: not a readable parquet file ({e})") from None
    return json.loads(meta[PROVENANCE_KEY]) if PROVENANCE_KEY in meta else None


def digest(df: pd.DataFrame, schema: Schema) -> str:
    """sha256 of what a manifest says: equal for equal rows, whenever and wherever written.

    Timestamp columns are left out (when a row was committed is not part of what it records);
    the rest, in schema order: the column name and a NUL, for a nullable column one byte per
    row (1 = null), then the values: numbers and booleans as little-endian fixed-width bytes
    (nulls as 0), strings as UTF-8 each followed by a NUL. Plain bytes, so the digest does not
    change with the pandas or pyarrow version.
    """
    table = validate(df.reset_index(drop=True), schema, schema.name)
    h = hashlib.sha256()
    for c in schema.columns:
        if pa.types.is_timestamp(c.dtype):
            continue
        col = table[c.name]
        h.update(c.name.encode() + b"\0")
        if c.nullable:
            h.update(np.asarray(col.is_null(), dtype=np.uint8).tobytes())
        if pa.types.is_string(c.dtype):
            h.update("".join(f"{v}\0" for v in col.fill_null("").to_pylist()).encode())
        else:
            values = col.fill_null(False if pa.types.is_boolean(c.dtype) else 0).to_numpy()
            h.update(values.astype(values.dtype.newbyteorder("<")).tobytes())
    return h.hexdigest()
