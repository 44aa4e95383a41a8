"""ingest, patch and report on a dask.distributed cluster give what one thread gives.

One LocalCluster of 2 worker processes serves the module (it takes seconds to start). The
reference is the same work run single-threaded in this process; the store is compared file by
file, byte for byte, and the manifests row by row with their timestamp columns left out.
"""

from __future__ import annotations

import os

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # the workers inherit it: CPU only
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from cli_helpers import invoke, ok, refused
from distributed import Client, LocalCluster
from workspace_fixtures import shared_run, tiny_pipeline, write_pipeline, write_raw

from bfsdata.config.pipeline import Pipeline
from bfsdata.ingest import ingest
from bfsdata.patch.stage import patch
from bfsdata.store import location as store


@pytest.fixture(scope="module")
def scheduler() -> str:
    with LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0"
    ) as cluster:
        yield cluster.scheduler_address


@dataclass(frozen=True)
class Kit:
    raw: Path  # 4 strips x 2 runs of 4 frames, 128x160 px
    pipe: Pipeline  # the tiny pipeline, one acquisition per patch task: 8 tasks, a shard each
    reference: Path  # a workspace: the raw folder ingested and patched on one thread


def make_kit(tmp_path_factory: pytest.TempPathFactory) -> Kit:
    p = tiny_pipeline()
    pipe = dataclasses.replace(p, patch=dataclasses.replace(p.patch, acq_per_task=1))
    raw = write_raw(tmp_path_factory.mktemp("raw") / "raw")
    ws, p = new_workspace(tmp_path_factory.mktemp("ref") / "ws", pipe)
    ingest(raw, ws, p, workers=1)
    patch(ws, p, workers=1)
    return Kit(raw, pipe, ws)


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Kit:
    return make_kit(tmp_path_factory)


def new_workspace(root: Path, pipe: Pipeline) -> tuple[Path, Pipeline]:
    """A workspace folder with its pipeline.yaml; the pipeline as read back from it."""
    root.mkdir(parents=True)
    return root, write_pipeline(root / "pipeline.yaml", pipe)


def store_files(ws: Path) -> dict[str, bytes]:
    """Every file (object) under bfsdata.zarr, wherever the workspace keeps its store."""
    fs, root = store.filesystem(store.store_url(ws))
    return {f[len(root) :]: fs.cat_file(f) for f in fs.find(root)}


def manifests(ws: Path) -> dict[str, pd.DataFrame]:
    """Every manifest without its timestamp columns (when a row was committed)."""
    fs, root = store.filesystem(store.join(store.data_root(ws), store.MANIFESTS))
    out = {}
    for f in sorted(fs.glob(f"{root}/*.parquet")):
        with fs.open(f, "rb") as fh:
            df = pd.read_parquet(fh)
        times = [c for c in df if pd.api.types.is_datetime64_any_dtype(df[c])]
        out[f.rsplit("/", 1)[-1]] = df.drop(columns=times)
    return out


def assert_same_workspace(ws: Path, ref: Path) -> None:
    """The same store bytes and manifest rows, wherever each workspace keeps them."""
    got, want = store_files(ws), store_files(ref)
    assert sorted(got) == sorted(want)
    assert len(want) > 8 + 8 + 8  # metadata, and a shard per acquisition in every array
    differ = [k for k in want if got[k] != want[k]]
    assert not differ, f"store files differ: {differ}"
    got_m, want_m = manifests(ws), manifests(ref)
    assert (
        sorted(got_m)
        == sorted(want_m)
        == [
            "acquisitions.parquet",
            "annotations.parquet",
            "patches.parquet",
        ]
    )
    for name, df in want_m.items():
        pd.testing.assert_frame_equal(got_m[name], df, obj=name)


def test_cluster_runs_are_byte_identical_to_one_thread(
    tmp_path: Path, kit: Kit, scheduler: str
) -> None:
    ws, p = new_workspace(tmp_path / "ws", kit.pipe)
    s = ingest(kit.raw, ws, p, scheduler=scheduler)
    assert (s.ingested, s.total) == (8, 8)
    s = patch(ws, p, scheduler=scheduler)
    assert (s.patched, s.patches) == (8, 8 * 6 * 20)  # (4 frames + 2 rank images) x 5 x 4
    assert_same_workspace(ws, kit.reference)
    assert finished_on(scheduler, "ingest_one") >= 8 and finished_on(scheduler, "patch_unit") >= 8


def finished_on(scheduler: str, prefix: str) -> int:
    """Tasks of a function (dask key prefix) that the cluster computed, over its lifetime."""

    def count(dask_scheduler) -> int:
        tp = dask_scheduler.task_prefixes.get(prefix)
        return 0 if tp is None else int(tp.state_counts["memory"])

    with Client(scheduler) as client:
        return client.run_on_scheduler(count)


def test_workers_option_starts_a_local_cluster(tmp_path: Path, kit: Kit) -> None:
    ws, _ = new_workspace(tmp_path / "ws", kit.pipe)
    ok(invoke("ingest", kit.raw, "-w", ws, "--workers", "2"))
    out = ok(invoke("patch", "-w", ws, "--workers", "2"))
    assert "patched now           8 x 120 = 960 patches" in out
    assert_same_workspace(ws, kit.reference)


def test_scheduler_option_runs_on_the_given_cluster(
    tmp_path: Path, kit: Kit, scheduler: str
) -> None:
    ws, _ = new_workspace(tmp_path / "ws", kit.pipe)
    ok(invoke("ingest", kit.raw, "-w", ws, "--scheduler", scheduler))
    ok(invoke("patch", "-w", ws, "--scheduler", scheduler))
    assert_same_workspace(ws, kit.reference)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], "give one of the two"),
        (["--workers", "0"], "--workers must be >= 1, got 0"),
    ],
)
def test_workers_and_scheduler_are_checked_before_any_work(
    tmp_path: Path, kit: Kit, args: list[str], message: str
) -> None:
    ws = tmp_path / "ws"
    err = refused(invoke("ingest", kit.raw, "-w", ws, *args))
    assert message in err
    assert not store.store_path(ws).exists()


@pytest.mark.slow  # trains the shared run (minutes here) unless another module did already
def test_report_scores_on_the_cluster_equal_in_process_scores(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, scheduler: str
) -> None:
    """The shared run's report scored in this process; the same report on the cluster."""
    run = shared_run(tmp_path_factory)
    assert run.report_exit == 0, run.report_output
    ws = Path(shutil.copytree(run.ws, tmp_path / "ws"))
    ok(invoke("report", "-w", ws, "--run", run.name, "--name", "cluster", "--scheduler", scheduler))
    got = pd.read_parquet(ws / "reports" / "cluster" / "scores.parquet")
    want = pd.read_parquet(ws / "reports" / run.name / "scores.parquet")
    assert len(want) > 0
    pd.testing.assert_frame_equal(got, want, check_exact=True)  # bit for bit
