"""Hostile input through the real `bfsdata ingest` (issue #7): one table, one way to break per row.

Every row starts from the same good raw folder (strips A1 good and B2 defect, runs 1..2, 4 frames
of 32x40 uint8 PNG), breaks it in exactly one way and runs the command three times:

- on a workspace that already holds a good ingest, and on an empty one: exit 1, one problem,
  told in one line that names the offending file and the rule, and the workspace byte for byte
  as it was (no file, no folder, no mtime changed);
- on a fresh workspace with `--skip-bad`: the acquisitions the breakage does not touch are
  ingested, and `manifests/rejected.parquet` has a row naming the file and the rule. Breakages
  that leave nothing to ingest (an unreadable labels.csv, a bad pipeline) are refused the same
  way with `--skip-bad`.

Names follow docs/design.md's raw layout: strip ids are [A-Za-z0-9_-]+ and run and frame indices
are ASCII digits, so unicode and spaces in a strip, run or frame name are refused, with the
name in the message. Unicode and spaces above the raw folder (its own path, the workspace's)
are fine, end to end.

The table (`CASES`) is in hostile_cases.py.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_helpers import invoke, ok, refused

from bfsdata.workspace import manifest
from bfsdata.workspace.manifest import ACQUISITIONS, REJECTED
from bfsdata.workspace.problems import printable
from tests.system.hostile_cases import (
    ALL,
    ARGS,
    CASES,
    FRAMES,
    RUNS,
    SHAPE,
    STRIPS,
    Case,
    write_png,
)

# --- running a case -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ingested_ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace holding a good ingest of another strip (G1), made once and copied per test."""
    root = tmp_path_factory.mktemp("ingested")
    run = root / "raw" / "G1" / "run_1"
    run.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for f in range(FRAMES):
        write_png(run / f"frame_{f}.png", rng.integers(0, 256, SHAPE, dtype=np.uint8))
    ok(invoke("ingest", root / "raw", "-w", root / "ws", *ARGS))
    return root / "ws"


def _permissions_apply(tmp_path: Path) -> bool:
    """False for root (os.geteuid() == 0), unless it runs without CAP_DAC_OVERRIDE: asked of
    the kernel rather than guessed from the user id."""
    probe = tmp_path / "probe"
    probe.write_bytes(b"x")
    probe.chmod(0)
    try:
        probe.read_bytes()
    except PermissionError:
        return True
    finally:
        probe.unlink()
    return False


def _broken_raw(tmp_path: Path, make_raw, case: Case) -> tuple[Path, Path, tuple[str, ...]]:
    if case.needs_user and not _permissions_apply(tmp_path):
        pytest.skip(f"permissions do not apply to this user (uid {os.geteuid()})")
    raw = make_raw(tmp_path / "raw", strips=STRIPS, runs=RUNS, frames=FRAMES, shape=SHAPE)
    offending = case.breaks(raw)
    extra = ("--pipeline", str(offending)) if case.pipeline else ()
    return raw, offending, extra


def _tree(ws: Path, snapshot) -> tuple[dict, list[str]]:
    """Every file's bytes and mtime, and every folder: what 'unchanged' means here."""
    dirs = (
        sorted(str(p.relative_to(ws)) for p in ws.rglob("*") if p.is_dir()) if ws.exists() else []
    )
    return snapshot(ws), dirs


def _assert_told_once(err: str, offending: Path, case: Case) -> None:
    """One problem, told in one line that names the file (its path) and the rule."""
    shown = printable(str(offending))  # a name that is not UTF-8 shows its bytes as \xNN
    lines = [line for line in err.splitlines() if shown in line]
    assert len(lines) == 1, err
    assert err.strip() == lines[0], err  # the whole refusal is that line
    assert (case.rule if case.pipeline else f"[rule: {case.rule}]") in lines[0], err


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_refused_and_nothing_changes(
    tmp_path: Path, make_raw, snapshot, ingested_ws: Path, case: Case
) -> None:
    raw, offending, extra = _broken_raw(tmp_path, make_raw, case)
    full = shutil.copytree(ingested_ws, tmp_path / "full")
    empty = tmp_path / "empty"
    empty.mkdir()
    for ws in (full, empty):
        before = _tree(ws, snapshot)
        err = refused(invoke("ingest", raw, "-w", ws, *ARGS, *extra))
        _assert_told_once(err, offending, case)
        assert _tree(ws, snapshot) == before


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_skip_bad_ingests_the_rest_and_records_the_refusal(
    tmp_path: Path, make_raw, snapshot, case: Case
) -> None:
    raw, offending, extra = _broken_raw(tmp_path, make_raw, case)
    ws = tmp_path / "ws"
    result = invoke("ingest", raw, "-w", ws, *ARGS, "--skip-bad", *extra)
    if case.fatal:
        _assert_told_once(refused(result), offending, case)
        assert not ws.exists()
        return
    ok(result)
    rows = manifest.read(ws, ACQUISITIONS)
    assert set(zip(rows["strip"], rows["run"].astype(int), strict=True)) == ALL - case.lost
    rej = manifest.read(ws, REJECTED)
    shown = printable(str(offending))
    # labels.csv:<line> names the file too
    names_it = [src == shown or src.startswith(f"{shown}:") for src in rej["source"]]
    assert list(rej["rule"][names_it]) == [case.rule], rej.to_string()
    # Every acquisition left out has its row: the offending one's, or its own when its strip
    # is refused. Other rows are those own rows, one per acquisition left out.
    runs = [int(r) if pd.notna(r) else None for r in rej["run"]]
    pairs = list(zip(rej["strip"], runs, strict=True))
    left_out = {(s, r) for s, r in case.lost if (raw / s / f"run_{r}").is_dir()}
    assert left_out <= set(pairs), rej.to_string()
    own = [pair for pair, n in zip(pairs, names_it, strict=True) if not n]
    assert sorted(own) == sorted(set(own)) and set(own) <= left_out, rej.to_string()


def test_unicode_and_spaces_above_the_raw_folder_are_fine(tmp_path: Path, make_raw) -> None:
    raw = make_raw(tmp_path / "Rohdaten für Linie 2 ✓", strips=STRIPS, runs=RUNS, frames=FRAMES)
    ws = tmp_path / "área de trabajo"
    out = ok(invoke("ingest", raw, "-w", ws, *ARGS))
    assert "refused" not in out
    rows = manifest.read(ws, ACQUISITIONS)
    assert set(zip(rows["strip"], rows["run"].astype(int), strict=True)) == ALL
    assert all(src.startswith(str(raw.resolve())) for src in rows["source"])
    assert "nothing to do" in ok(invoke("ingest", raw, "-w", ws, *ARGS))


def test_a_raw_folder_whose_path_is_not_utf8_is_refused(tmp_path: Path, make_raw) -> None:
    # The manifests record each acquisition's folder as text: a path that is not UTF-8 would
    # fail there, after the frames were written.
    raw = make_raw(tmp_path / "raw", strips=STRIPS, runs=RUNS, frames=FRAMES, shape=SHAPE)
    odd = raw.rename(tmp_path / os.fsdecode(b"Rohdaten-\xf6"))
    ws = tmp_path / "ws"
    err = refused(invoke("ingest", odd, "-w", ws, *ARGS))
    assert "Rohdaten-\\xf6: has a path that is not UTF-8" in err
    assert "[rule: raw-folder]" in err
    assert not ws.exists()


# --- the raw folder is input only ---------------------------------------------------------------


def _into_raw(tmp_path: Path, raw: Path, form: str) -> tuple[Path, str | None, str]:
    """(workspace, --store, the path the refusal names) of each way to point output at `raw`."""
    link = tmp_path / "link"
    if form == "ws-links-into-raw":
        link.symlink_to(raw / "A1")
    elif form == "store-links-to-raw":
        link.symlink_to(raw)
    ws = tmp_path / "ws"
    return {
        "ws-is-raw": (raw, None, str(raw)),
        "ws-inside-raw": (raw / "sub", None, str(raw / "sub")),
        "ws-links-into-raw": (link, None, str(link)),
        "store-is-raw": (ws, str(raw.resolve()), str(raw.resolve())),
        "store-inside-raw": (ws, str(raw / "store"), str(raw / "store")),
        "store-url-is-raw": (ws, f"file://{raw.resolve()}", str(raw.resolve())),
        "store-url-inside-raw": (ws, f"file://{raw.resolve()}/store", f"{raw.resolve()}/store"),
        "store-links-to-raw": (ws, str(link), str(link)),
    }[form]


@pytest.mark.parametrize(
    "form",
    [
        "ws-is-raw",
        "ws-inside-raw",
        "ws-links-into-raw",
        "store-is-raw",
        "store-inside-raw",
        "store-url-is-raw",
        "store-url-inside-raw",
        "store-links-to-raw",
    ],
)
def test_nothing_is_written_into_the_raw_folder(
    tmp_path: Path, make_raw, snapshot, form: str
) -> None:
    raw = make_raw(tmp_path / "raw", strips=STRIPS, runs=RUNS, frames=FRAMES, shape=SHAPE)
    ws, store, named = _into_raw(tmp_path, raw, form)
    before = _tree(raw, snapshot)
    extra = ("--store", store) if store else ()
    err = refused(invoke("ingest", raw, "-w", ws, *ARGS, *extra))
    assert "[rule: raw-apart]" in err and named in err and str(raw) in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert _tree(raw, snapshot) == before
    assert not (tmp_path / "ws").exists()


def test_a_raw_folder_inside_what_the_workspace_fills_is_refused(tmp_path: Path, make_raw) -> None:
    ws = tmp_path / "ws"
    raw = make_raw(ws / "manifests" / "raw", strips=STRIPS, runs=RUNS, frames=FRAMES, shape=SHAPE)
    err = refused(invoke("ingest", raw, "-w", ws, *ARGS))
    assert f"{raw}: the raw folder is inside {ws / 'manifests'}" in err
    assert "[rule: raw-apart]" in err


def test_a_raw_folder_beside_the_workspaces_own_files_is_fine(tmp_path: Path, make_raw) -> None:
    ws = tmp_path / "ws"  # as `bfsdata demo` lays it out: <ws>/raw
    raw = make_raw(ws / "raw", strips=STRIPS, runs=RUNS, frames=FRAMES, shape=SHAPE)
    ok(invoke("ingest", raw, "-w", ws, *ARGS))
    assert len(manifest.read(ws, ACQUISITIONS)) == len(ALL)
