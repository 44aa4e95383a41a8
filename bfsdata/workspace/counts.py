"""Counts over the manifests per split and label: what `split` and `stats` print."""

from __future__ import annotations

import pandas as pd

from bfsdata.workspace import manifest

UNSPLIT = "-"  # split column of strips that splits.parquet does not list


def strip_table(acqs: pd.DataFrame, patches: pd.DataFrame, splits: pd.DataFrame) -> pd.DataFrame:
    """Strips, acquisitions and patches per split x label (split `-` where none is assigned)."""
    n_patches = patches.groupby("acq").size()
    rows = acqs.assign(
        split=_split_of(acqs["strip"], splits),
        patches=acqs["acq"].map(n_patches).fillna(0).astype(int),
    )
    table = rows.groupby(["split", "label"]).agg(
        strips=("strip", "nunique"), acquisitions=("acq", "size"), patches=("patches", "sum")
    )
    return in_split_order(table.reset_index())


def _split_of(strips: pd.Series, splits: pd.DataFrame) -> pd.Series:
    # object first: with no split assigned the map is all-NaN float, which a str cannot fill
    split = strips.map(splits.set_index("strip")["split"]).astype(object)
    return split.fillna(UNSPLIT)


def patch_table(patches: pd.DataFrame, splits: pd.DataFrame, by: tuple[str, ...]) -> pd.DataFrame:
    """Patch counts grouped by `by`, any of split, label, region, kind."""
    rows = patches.assign(
        split=_split_of(patches["strip"], splits), region=patches["region"].astype(int)
    )
    return in_split_order(rows.groupby(list(by)).size().rename("patches").reset_index())


def in_split_order(df: pd.DataFrame) -> pd.DataFrame:
    """Rows in pipeline order: train, val, calib, test, unsplit; then label, region, kind."""
    order = {s: i for i, s in enumerate((*manifest.SPLITS, UNSPLIT))}
    by = [c for c in ("split", "label", "region", "kind") if c in df.columns]

    def key(col: pd.Series) -> pd.Series:
        return col.map(order) if col.name == "split" else col

    return df.sort_values(by, key=key).reset_index(drop=True)
