"""Manifest schemas: validation messages, atomic writes, typed reads."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bfsdata.workspace import manifest
from bfsdata.workspace.manifest import ACQUISITIONS, ALL, ANNOTATIONS, REJECTED, ManifestError


def _acq_rows(n: int = 3) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "acq": range(n),
            "strip": [f"S{i}" for i in range(n)],
            "run": [1] * n,
            "label": ["good"] * n,
            "n_frames": [16] * n,
            "height": [32] * n,
            "width": [40] * n,
            "dtype": ["uint8"] * n,
            "source": [f"S{i}/run_1" for i in range(n)],
            "sha256": ["0" * 64] * n,
            "ingested_at": [pd.Timestamp("2025-01-01", tz="UTC")] * n,
        }
    )


def test_write_then_read_round_trip_with_schema_dtypes(tmp_path: Path) -> None:
    df = _acq_rows().iloc[::-1]
    path = manifest.write(tmp_path, ACQUISITIONS, df, sort=("acq",))
    assert path == tmp_path / "manifests" / "acquisitions.parquet"
    assert sorted(p.name for p in path.parent.iterdir()) == ["acquisitions.parquet"]  # no temp
    back = manifest.read(tmp_path, ACQUISITIONS)
    assert list(back.columns) == ACQUISITIONS.names
    assert back["acq"].tolist() == [0, 1, 2]  # sorted on write
    assert str(back["acq"].dtype) == "int64"
    for c in ("run", "n_frames", "height", "width"):
        assert str(back[c].dtype) == "int32", c
    for c in ("strip", "label", "dtype", "source", "sha256"):
        assert pd.api.types.is_string_dtype(back[c]), c
    assert str(back["ingested_at"].dtype) == "datetime64[us, UTC]"
    assert pq.read_schema(path).equals(ACQUISITIONS.arrow, check_metadata=False)
    pd.testing.assert_frame_equal(back, _acq_rows(), check_dtype=False, check_index_type=False)


def test_rewrite_replaces_and_leaves_no_temp_file(tmp_path: Path) -> None:
    manifest.write(tmp_path, ACQUISITIONS, _acq_rows(2))
    manifest.write(tmp_path, ACQUISITIONS, _acq_rows(5))
    assert len(manifest.read(tmp_path, ACQUISITIONS)) == 5
    assert [p.name for p in (tmp_path / "manifests").iterdir()] == ["acquisitions.parquet"]


def test_missing_manifest_reads_as_empty_with_columns(tmp_path: Path) -> None:
    for schema in ALL:
        df = manifest.read(tmp_path, schema)
        assert df.empty and list(df.columns) == schema.names
        manifest.write(tmp_path, schema, df)  # an empty manifest is valid
        assert manifest.read(tmp_path, schema).empty


def test_missing_column_is_named(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="missing: label, sha256"):
        manifest.write(tmp_path, ACQUISITIONS, _acq_rows().drop(columns=["label", "sha256"]))
    assert not (tmp_path / "manifests" / "acquisitions.parquet").exists()


def test_unexpected_column_is_named(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="unexpected: colour"):
        manifest.validate(_acq_rows().assign(colour="red"), ACQUISITIONS, "here")


def test_nulls_in_non_nullable_column_name_column_and_count() -> None:
    df = _acq_rows(4)
    df.loc[[1, 3], "strip"] = None
    with pytest.raises(ManifestError, match=r"^here: column 'strip' has 2 null rows$"):
        manifest.validate(df, ACQUISITIONS, "here")


def test_nulls_allowed_in_nullable_column() -> None:
    df = pd.DataFrame(
        {
            "source": ["raw/x", "raw/y"],
            "strip": [None, "A1"],
            "run": pd.array([None, 2], dtype="Int32"),
            "rule": ["raw-layout", "frame-count"],
            "message": ["m", "m"],
            "rejected_at": [pd.Timestamp.now(tz="UTC")] * 2,
        }
    )
    table = manifest.validate(df, REJECTED, "here")
    assert table.column("strip").null_count == 1 and table.column("run").null_count == 1


def test_value_outside_vocabulary_names_column_count_and_example() -> None:
    df = _acq_rows(4)
    df.loc[[0, 2], "label"] = "bad"
    with pytest.raises(
        ManifestError,
        match=r"column 'label' has 2 rows outside good\|defect\|unknown \(e\.g\. bad\)",
    ):
        manifest.validate(df, ACQUISITIONS, "here")


def test_duplicate_keys_name_key_and_count() -> None:
    df = _acq_rows(4)
    df["strip"] = ["A1", "A1", "A1", "B2"]
    with pytest.raises(ManifestError, match=r"2 duplicate rows on key \(strip, run\)"):
        manifest.validate(df, ACQUISITIONS, "here")


def test_value_that_does_not_fit_the_dtype() -> None:
    df = _acq_rows().astype({"acq": object})
    df.loc[1, "acq"] = "one"
    with pytest.raises(ManifestError, match="values do not fit the acquisitions dtypes"):
        manifest.validate(df, ACQUISITIONS, "here")


def test_failed_write_keeps_the_old_manifest(tmp_path: Path) -> None:
    manifest.write(tmp_path, ACQUISITIONS, _acq_rows(2))
    before = (tmp_path / "manifests" / "acquisitions.parquet").read_bytes()
    bad = _acq_rows(3)
    bad.loc[0, "label"] = "bad"
    with pytest.raises(ManifestError):
        manifest.write(tmp_path, ACQUISITIONS, bad)
    assert (tmp_path / "manifests" / "acquisitions.parquet").read_bytes() == before


def test_write_that_fails_midway_leaves_no_temp_file(tmp_path: Path, monkeypatch) -> None:
    manifest.write(tmp_path, ACQUISITIONS, _acq_rows(2))
    before = (tmp_path / "manifests" / "acquisitions.parquet").read_bytes()

    def half_write(table, where, **kw):  # a full disk: some bytes, then an error
        Path(where).write_bytes(b"PAR1 half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(manifest.pq, "write_table", half_write)
    with pytest.raises(OSError):
        manifest.write(tmp_path, ACQUISITIONS, _acq_rows(3))
    assert (tmp_path / "manifests" / "acquisitions.parquet").read_bytes() == before
    assert [p.name for p in (tmp_path / "manifests").iterdir()] == ["acquisitions.parquet"]


@pytest.mark.parametrize("content", [b"", b"strip,run\nA1,1\n", b"PAR1garbagePAR1"])
def test_read_of_a_non_parquet_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "manifests" / "acquisitions.parquet"
    path.parent.mkdir()
    path.write_bytes(content)
    with pytest.raises(ManifestError, match="not a readable parquet file"):
        manifest.read(tmp_path, ACQUISITIONS)


def test_read_validates_what_it_reads(tmp_path: Path) -> None:
    path = tmp_path / "manifests" / "acquisitions.parquet"
    path.parent.mkdir()
    df = _acq_rows()
    df.loc[0, "label"] = "maybe"
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path)
    with pytest.raises(ManifestError, match=r"acquisitions\.parquet: column 'label' has 1 rows"):
        manifest.read(tmp_path, ACQUISITIONS)


def test_nullable_integer_columns_read_back_as_integers(tmp_path: Path) -> None:
    df = pd.DataFrame(
        {
            "strip": ["A1", "B2"],
            "label": ["good", "defect"],
            "defect": [None, "scratch"],
            "vial": [None, 2],  # float64 with NaN, as raw.read_labels_csv builds it
            "region": [None, 1],
        }
    )
    assert str(df["vial"].dtype) == "float64"
    manifest.write(tmp_path, ANNOTATIONS, df)
    back = manifest.read(tmp_path, ANNOTATIONS)
    assert pd.api.types.is_integer_dtype(back["vial"]), back["vial"].dtype
    assert pd.api.types.is_integer_dtype(back["region"]), back["region"].dtype


def test_nullable_integer_written_as_pandas_integer_reads_back_as_integer(tmp_path: Path) -> None:
    df = pd.DataFrame(
        {
            "source": ["a", "b"],
            "strip": ["A1", None],
            "run": pd.array([2, None], dtype="Int32"),
            "rule": ["r", "r"],
            "message": ["m", "m"],
            "rejected_at": [pd.Timestamp.now(tz="UTC")] * 2,
        }
    )
    manifest.write(tmp_path, REJECTED, df)
    back = manifest.read(tmp_path, REJECTED)
    assert back["run"].tolist()[0] == 2 and pd.isna(back["run"].tolist()[1])


def test_a_column_with_a_default_is_filled_when_an_older_file_lacks_it(tmp_path: Path) -> None:
    """Patch manifests written before strips were rotation-registered have no `angle`: they read
    with 0 (what those crops assumed); a write always needs it."""
    row = {c.name: [0] for c in manifest.PATCHES.columns}
    row.update(strip=["S0"], kind=["frame"], label=["good"], defect_here=[False])
    df = pd.DataFrame(row)
    path = tmp_path / "manifests" / "patches.parquet"
    path.parent.mkdir()
    pq.write_table(pa.Table.from_pandas(df.drop(columns=["angle"]), preserve_index=False), path)
    back = manifest.read(tmp_path, manifest.PATCHES)
    assert list(back.columns) == manifest.PATCHES.names
    assert back["angle"].tolist() == [0.0] and str(back["angle"].dtype) == "float32"
    with pytest.raises(ManifestError, match="missing: angle"):
        manifest.write(tmp_path, manifest.PATCHES, df.drop(columns=["angle"]))
