"""`bfsdata.patch.stage.patch`: tiny real workspaces, raw -> ingest -> patch, checked against the
frames in the store, the synthetic generator's known re-grips and each other.

Raw strips come from `bfsdata.synth` at 128x160 px (the default layout / 8: vial x region boxes
of 30x30 px, enlarged to 32 px patches with INTER_LINEAR), 4 frames per run.
"""

from __future__ import annotations

import dataclasses
import shutil
import threading
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from subpixel_crop import expected_crop, row_shift

from bfsdata.config.pipeline import (
    KINDS,
    AcquisitionConfig,
    LayoutConfig,
    PatchConfig,
    Pipeline,
)
from bfsdata.imaging.registration import boxes_at, scale_layout, window_offsets
from bfsdata.ingest import ingest
from bfsdata.patch.stage import PatchError, patch
from bfsdata.store import location as store
from bfsdata.synth import SynthConfig, synth
from bfsdata.verify import verify
from bfsdata.workspace import manifest

FRAMES, SIZE, H, W = 4, 32, 128, 160
VIALS, REGIONS = 5, 4
PER_ACQ = (FRAMES + 2) * VIALS * REGIONS  # (frames + rank min/max) x vials x regions
KEY = ["acq", "kind", "frame", "vial", "region"]


def _pipe(layout: LayoutConfig | None = None, **patch_cfg: object) -> Pipeline:
    acq = AcquisitionConfig(frames=FRAMES, ranks=(1, FRAMES), test_frames=(0, FRAMES - 1))
    return dataclasses.replace(
        Pipeline(),
        acquisition=acq,
        layout=layout or LayoutConfig(),
        patch=PatchConfig(size=SIZE, **{"acq_per_task": 8, **patch_cfg}),
    )


def _synth(out: Path, **cfg: object):
    base = {"strips": 2, "runs": 2, "frames": FRAMES, "height": H, "width": W, "seed": 0}
    return synth(out, SynthConfig(**{**base, **cfg}))


def _rows(ws: Path) -> pd.DataFrame:
    return manifest.read(ws, manifest.PATCHES)


def _by_key(ws: Path) -> dict[tuple, np.ndarray]:
    """{(acq, kind, frame, vial, region): patch} read back from the store."""
    rows = _rows(ws)
    arr = store.open_root(ws, mode="r")["patches"]
    data = arr.get_orthogonal_selection((rows["patch"].to_numpy(),))
    keys = rows[KEY].itertuples(index=False, name=None)
    return {k: p for k, p in zip(keys, data, strict=True)}


class _Sources:
    """The (H, W) image a manifest row was cut from: frames and rank images read once with
    zarr-python (tiny workspaces)."""

    def __init__(self, root) -> None:
        self.frames, self.rank = root["frames"][:], root["rank"][:]
        self.ranks = [int(r) for r in root.attrs["ranks"]]

    def __call__(self, row) -> np.ndarray:
        if row.kind == "frame":
            return self.frames[row.acq, row.frame]
        rank = 1 if row.kind == "rank_min" else self.frames.shape[1]
        return self.rank[row.acq, self.ranks.index(rank)]


def _rule(v: np.ndarray, bits: int) -> np.ndarray:
    """The documented 16-bit rule, round(v * 255 / (2**bits - 1)) clipped, in integers."""
    top = 2**bits - 1
    return np.minimum((2 * v.astype(np.int64) * 255 + top) // (2 * top), 255).astype(np.uint8)


def _snapshot_patches(ws: Path, snapshot) -> dict:
    snap = snapshot(store.store_path(ws) / "patches")
    snap["manifest"] = snapshot(ws / "manifests").get("patches.parquet")
    return snap


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory):
    """2 strips (S0000 good, S0001 defect) x 2 runs; returns (folder, synth summary)."""
    out = tmp_path_factory.mktemp("raw") / "raw"
    return out, _synth(out)


@pytest.fixture(scope="module")
def ingested(raw, tmp_path_factory: pytest.TempPathFactory) -> Path:
    ws = tmp_path_factory.mktemp("ingested") / "ws"
    ingest(raw[0], ws, _pipe(), workers=2)
    return ws


@pytest.fixture(scope="module")
def patched(ingested: Path, tmp_path_factory: pytest.TempPathFactory):
    """(workspace, summary) of a default patch run; do not change it (use `done`)."""
    ws = Path(shutil.copytree(ingested, tmp_path_factory.mktemp("patched") / "ws"))
    return ws, patch(ws, _pipe(), workers=2)


@pytest.fixture
def fresh(ingested: Path, tmp_path: Path) -> Path:
    """A private copy of the ingested, unpatched workspace."""
    return Path(shutil.copytree(ingested, tmp_path / "ws"))


@pytest.fixture
def done(patched, tmp_path: Path) -> Path:
    """A private copy of the patched workspace."""
    return Path(shutil.copytree(patched[0], tmp_path / "ws"))


# --- what is written --------------------------------------------------------------------------


def test_patch_count_is_acquisitions_x_images_x_vials_x_regions(patched) -> None:
    ws, s = patched
    rows = _rows(ws)
    n_acq = 4
    assert len(rows) == n_acq * PER_ACQ == s.total == s.patches
    assert (s.acquisitions, s.already, s.patched, s.per_acquisition, s.rejected) == (
        n_acq,
        0,
        n_acq,
        PER_ACQ,
        0,
    )
    for _, g in rows.groupby("acq"):
        images = set(zip(g["kind"], g["frame"], strict=True))
        assert images == {("frame", f) for f in range(FRAMES)} | {
            ("rank_min", -1),
            ("rank_max", -1),
        }
        assert len(g) == len(images) * VIALS * REGIONS
        assert set(g["vial"]) == {1, 2, 3, 4, 5} and set(g["region"]) == {0, 1, 2, 3}
    assert not rows.duplicated(KEY).any() and rows["patch"].is_unique


def test_every_manifest_row_points_at_a_written_patch(patched) -> None:
    ws, _ = patched
    rows = _rows(ws)
    arr = store.open_root(ws, mode="r")["patches"]
    assert arr.dtype == np.uint8 and arr.shape[1:] == (SIZE, SIZE)
    assert (rows["patch"] >= 0).all() and (rows["patch"] < arr.shape[0]).all()
    shards = store.written_shards(arr)
    assert set(rows["patch"] // store.shard_rows(arr)) == shards  # no missing, no orphan
    data = arr.get_orthogonal_selection((rows["patch"].to_numpy(),))
    assert (data.std(axis=(1, 2)) > 0).all()  # real crops of the strip, not fill values
    rep = verify(ws, sample=None)
    assert rep.ok, rep.problems
    assert rep.patches_recomputed == len(rows)


def test_rank_min_le_frames_le_rank_max(patched) -> None:
    """Per pixel the min rank image is <= every frame <= the max; resizing keeps that up to
    one grey level of rounding."""
    by_key = _by_key(patched[0])
    rows = _rows(patched[0])
    for (acq, vial, region), _ in rows.groupby(["acq", "vial", "region"]):
        lo = by_key[(acq, "rank_min", -1, vial, region)].astype(int)
        hi = by_key[(acq, "rank_max", -1, vial, region)].astype(int)
        assert (lo <= hi).all()
        for f in range(FRAMES):
            p = by_key[(acq, "frame", f, vial, region)].astype(int)
            assert (p >= lo - 1).all() and (p <= hi + 1).all(), (acq, f, vial, region)
        assert (hi - lo).max() > 0  # the liquid moved: the test is not trivial


def _close(got: np.ndarray, want: np.ndarray, tol: float = 0.6, msg: str = "") -> None:
    """uint8 patch vs the float expectation: equal to rounding (0.5) and OpenCV's fixed-point
    weights (a little more)."""
    np.testing.assert_array_less(np.abs(got - want), tol + 1e-6, err_msg=msg)


def test_patch_equals_direct_crop_and_resize_of_its_source(patched) -> None:
    """The box moved by its window offset's sub-pixel remainder and turned with the strip, then
    enlarged 30 -> 32 px."""
    ws, _ = patched
    root = store.open_root(ws, mode="r")
    arr, src = root["patches"][:], _Sources(root)
    rows = _rows(ws)
    assert (rows["y1"] - rows["y0"]).eq(30).all() and (rows["x1"] - rows["x0"]).eq(30).all()
    assert rows.drop_duplicates("acq").apply(row_shift, axis=1).map(any).all()  # shifts tested
    assert (rows.drop_duplicates("acq")["angle"].abs() > 0.01).all()  # and rotations
    for row in rows.itertuples(index=False):
        box = (row.y0, row.x0, row.y1, row.x1)
        want = expected_crop(src(row), box, SIZE, row_shift(row), row.angle)
        _close(arr[row.patch], want, msg=str(row))


def test_subpixel_off_cuts_whole_pixel_boxes(ingested, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    shutil.copytree(ingested, ws)
    patch(ws, _pipe(subpixel=False), workers=1)
    root = store.open_root(ws, mode="r")
    arr, src = root["patches"][:], _Sources(root)
    for row in _rows(ws).itertuples(index=False):
        crop = src(row)[row.y0 : row.y1, row.x0 : row.x1]
        want = cv2.resize(crop, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
        np.testing.assert_array_equal(arr[row.patch], want, err_msg=str(row))


def test_rotation_off_moves_every_window_by_the_strip_offset(ingested, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    shutil.copytree(ingested, ws)
    patch(ws, _pipe(rotation=False), workers=1)
    rows = _rows(ws)
    assert (rows["angle"] == 0).all()
    assert (rows.groupby("acq")[["dy", "dx"]].nunique() == 1).all().all()
    root = store.open_root(ws, mode="r")
    arr, src = root["patches"][:], _Sources(root)
    for row in rows.itertuples(index=False):
        box = (row.y0, row.x0, row.y1, row.x1)
        _close(arr[row.patch], expected_crop(src(row), box, SIZE, row_shift(row)), msg=str(row))


# --- registration and crop boxes --------------------------------------------------------------


def test_registration_matches_the_synthetic_regrips(patched, raw) -> None:
    rows = _rows(patched[0])
    truth = raw[1].transforms.set_index(["strip", "run"])
    per_acq = rows.drop_duplicates("acq")
    assert len(per_acq) == len(truth) == 4
    for r in per_acq.itertuples(index=False):
        t = truth.loc[(r.strip, r.run)]
        assert abs(r.dy - t.dy) < 0.5 and abs(r.dx - t.dx) < 0.5, (r, t)


def test_manifest_records_the_crop_boxes_and_offsets(patched) -> None:
    rows = _rows(patched[0])
    geo = scale_layout(LayoutConfig(), H, W)
    for acq, g in rows.groupby("acq"):
        assert g["angle"].nunique() == 1  # one strip, one rotation
        cell = g.groupby(["vial", "region"])[["dy", "dx"]]
        assert (cell.nunique() == 1).all().all()  # one window per cell for all its images
        off = cell.first().to_numpy().reshape(VIALS, REGIONS, 2)
        # A rigid motion: the window offsets less what the rotation alone moves each window by
        # are one strip offset.
        strip = off - window_offsets(geo, 0.0, 0.0, float(g["angle"].iloc[0]))
        assert np.ptp(strip, axis=(0, 1)).max() < 1e-4
        want = boxes_at(geo, off[..., 0], off[..., 1])  # (V, R, 4)
        for r in g.itertuples(index=False):
            assert (r.y0, r.x0, r.y1, r.x1) == tuple(want[r.vial - 1, r.region]), (acq, r)
    # one size per region, every acquisition (no one-pixel jitter)
    sizes = rows.assign(h=rows["y1"] - rows["y0"], w=rows["x1"] - rows["x0"])
    assert (sizes.groupby(["vial", "region"])[["h", "w"]].nunique() == 1).all().all()


def _shifted(img: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """`img` moved by whole pixels (dy down, dx right), the border repeated into the gap."""
    pad = ((max(dy, 0), max(-dy, 0)), (max(dx, 0), max(-dx, 0)))
    big = np.pad(img, pad, mode="edge")
    y, x = max(-dy, 0), max(-dx, 0)
    return big[y : y + img.shape[0], x : x + img.shape[1]]


def test_registration_follows_a_strip_shifted_by_a_known_offset(raw, read_run, tmp_path) -> None:
    """The same run written twice, once moved by (+3, -2) px: the offsets differ by exactly that,
    the boxes move with the strip and every patch comes out the same (to the registration's
    precision: the two offsets' sub-pixel remainders differ by a few hundredths of a pixel)."""
    src = read_run(raw[0] / "S0000" / "run_2")  # (F, H, W)
    for run, (dy, dx) in ((1, (0, 0)), (2, (3, -2))):
        folder = tmp_path / "raw" / "X" / f"run_{run}"
        folder.mkdir(parents=True)
        for f, img in enumerate(src):
            assert cv2.imwrite(str(folder / f"frame_{f}.png"), _shifted(img, dy, dx))
    (tmp_path / "raw" / "labels.csv").write_text("strip,label\nX,good\n")
    ws = tmp_path / "ws"
    ingest(tmp_path / "raw", ws, _pipe(), workers=1)
    patch(ws, _pipe(), workers=1)
    rows = _rows(ws)
    a, b = (rows[rows["run"] == r].sort_values(KEY[1:]) for r in (1, 2))
    assert abs((b["dy"].iloc[0] - a["dy"].iloc[0]) - 3) < 0.25
    assert abs((b["dx"].iloc[0] - a["dx"].iloc[0]) + 2) < 0.25
    moved = b[["y0", "x0", "y1", "x1"]].to_numpy() - a[["y0", "x0", "y1", "x1"]].to_numpy()
    start = moved[:, :2] + np.stack([row_shift(r) for r in b.itertuples()])
    start -= np.stack([row_shift(r) for r in a.itertuples()])
    assert np.abs(start - [3, -2]).max() < 0.25  # box origins at sub-pixel precision
    arr = store.open_root(ws, mode="r")["patches"]
    pa, pb = (arr[g["patch"].to_numpy()].astype(int) for g in (a, b))
    assert np.abs(pb - pa).max() <= 8 and np.abs(pb - pa).mean() < 0.5


# --- selections -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frames", "kinds", "images"),
    [
        ("0,3", KINDS, [("frame", 0), ("frame", 3), ("rank_min", -1), ("rank_max", -1)]),
        ("first-eighth-last", ("frame",), [("frame", 0), ("frame", 3)]),  # 4 frames: 0 and 3
        ("all", ("rank_max",), [("rank_max", -1)]),
        ("2", ("frame", "rank_min"), [("frame", 2), ("rank_min", -1)]),
    ],
)
def test_frames_and_kinds_select_the_images(fresh: Path, frames, kinds, images) -> None:
    s = patch(fresh, _pipe(frames=frames, kinds=kinds), workers=1)
    rows = _rows(fresh)
    assert s.per_acquisition == len(images) * VIALS * REGIONS
    assert len(rows) == s.total == 4 * s.per_acquisition
    for _, g in rows.groupby("acq"):
        assert sorted(set(zip(g["kind"], g["frame"], strict=True))) == sorted(images)
    # the frame column names the frame that was cut
    root = store.open_root(fresh, mode="r")
    row = rows.sort_values("patch").iloc[-1]
    box = (row.y0, row.x0, row.y1, row.x1)
    want = expected_crop(_Sources(root)(row), box, SIZE, row_shift(row), row.angle)
    _close(root["patches"][int(row.patch)], want)


def test_defect_here_marks_the_annotated_cells(raw, tmp_path: Path) -> None:
    """True exactly at annotated (vial, region) cells, False elsewhere; null where the label is
    unknown or an annotation does not say where."""
    src = raw[0]
    labels = pd.read_csv(src / "labels.csv")
    synth_cells = {
        (int(v), int(r))
        for v, r in labels.loc[labels["strip"] == "S0001", ["vial", "region"]].itertuples(
            index=False
        )
    }
    copies = {"S0000": "S0000", "S0001": "S0001", "U0": "S0000", "D0": "S0001", "D1": "S0000"}
    copies["D2"] = "S0001"
    for strip, origin in copies.items():
        shutil.copytree(src / origin / "run_1", tmp_path / "raw" / strip / "run_1")
    lines = ["strip,label,defect,vial,region", "S0000,good,,,"]
    lines += [f"S0001,defect,x,{v},{r}" for v, r in sorted(synth_cells)]
    lines += ["D0,defect,scratch,,", "D1,defect,a,1,0", "D1,defect,b,5,2"]
    lines += ["D2,defect,a,2,1", "D2,defect,b,,"]  # U0 has no row: label unknown
    (tmp_path / "raw" / "labels.csv").write_text("\n".join(lines) + "\n")
    ws = tmp_path / "ws"
    ingest(tmp_path / "raw", ws, _pipe(), workers=1)
    patch(ws, _pipe(frames="0", kinds=("frame", "rank_max")), workers=1)
    rows = _rows(ws)

    def cells(strip: str, value: object) -> set[tuple[int, int]]:
        g = rows[rows["strip"] == strip]
        hit = g["defect_here"].isna() if value is None else g["defect_here"].eq(value).fillna(False)
        return set(zip(g.loc[hit, "vial"], g.loc[hit, "region"], strict=True))

    every = {(v, r) for v in range(1, VIALS + 1) for r in range(REGIONS)}
    assert len(synth_cells) >= 1
    expected = {  # strip: (True cells, null cells); the rest False
        "S0000": (set(), set()),
        "S0001": (synth_cells, set()),
        "D1": ({(1, 0), (5, 2)}, set()),
        "U0": (set(), every),
        "D0": (set(), every),
        "D2": ({(2, 1)}, every - {(2, 1)}),
    }
    for strip, (true, null) in expected.items():
        assert cells(strip, True) == true, strip
        assert cells(strip, None) == null, strip
        assert cells(strip, False) == every - true - null, strip
    assert set(rows.loc[rows["strip"] == "U0", "label"]) == {"unknown"}


# --- 16-bit input -----------------------------------------------------------------------------


def test_16_bit_input_gives_uint8_patches_by_the_rule(tmp_path: Path) -> None:
    _synth(tmp_path / "raw", strips=1, runs=1, bit_depth=16)
    ws = tmp_path / "ws"
    # 30 -> 16 px: INTER_AREA; whole-pixel boxes, so the rule is checked exactly
    pipe = dataclasses.replace(_pipe(), patch=PatchConfig(size=16, subpixel=False))
    ingest(tmp_path / "raw", ws, pipe, workers=1)
    patch(ws, pipe, workers=1)
    assert manifest.read(ws, manifest.ACQUISITIONS)["dtype"].tolist() == ["uint16"]
    root = store.open_root(ws, mode="r")
    assert root["frames"].dtype == np.uint16 and root["patches"].dtype == np.uint8
    arr, src = root["patches"][:], _Sources(root)
    for row in _rows(ws).itertuples(index=False):
        crop = src(row)[row.y0 : row.y1, row.x0 : row.x1]
        resized = cv2.resize(crop, (16, 16), interpolation=cv2.INTER_AREA)  # uint16
        np.testing.assert_array_equal(arr[row.patch], _rule(resized, 16))


def test_12_bit_input_in_16_bit_files_uses_input_bits(raw, read_run, tmp_path: Path) -> None:
    """8-bit frames rescaled to 12 bits and patched with input_bits 12 give the 8-bit patches
    back, within one grey level."""
    for run in (1, 2):
        frames = read_run(raw[0] / "S0000" / f"run_{run}").astype(np.float64)
        folder = tmp_path / "raw" / "S0000" / f"run_{run}"
        folder.mkdir(parents=True)
        for f, img in enumerate(frames):
            v12 = np.round(img * 4095 / 255).astype(np.uint16)
            assert cv2.imwrite(str(folder / f"frame_{f}.png"), v12)
    (tmp_path / "raw" / "labels.csv").write_text("strip,label\nS0000,good\n")
    ws8, ws12 = tmp_path / "ws8", tmp_path / "ws12"
    shutil.copytree(raw[0] / "S0000", tmp_path / "raw8" / "S0000")
    ingest(tmp_path / "raw8", ws8, _pipe(), workers=1)
    patch(ws8, _pipe(subpixel=False), workers=1)  # whole-pixel boxes: the rule checked exactly
    ingest(tmp_path / "raw", ws12, _pipe(), workers=1)
    patch(ws12, _pipe(input_bits=12, subpixel=False), workers=1)

    root = store.open_root(ws12, mode="r")
    assert root["frames"].dtype == np.uint16
    arr, src = root["patches"][:], _Sources(root)
    for row in _rows(ws12).itertuples(index=False):
        crop = src(row)[row.y0 : row.y1, row.x0 : row.x1]
        resized = cv2.resize(crop, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
        np.testing.assert_array_equal(arr[row.patch], _rule(resized, 12))
    a, b = _by_key(ws8), _by_key(ws12)
    assert a.keys() == b.keys()
    for k in a:
        assert np.abs(a[k].astype(int) - b[k].astype(int)).max() <= 1, k


# --- re-runs, additions, settings -------------------------------------------------------------


def test_rerun_is_a_no_op(done: Path, snapshot) -> None:
    """Shards and manifest keep their bytes and mtimes; the array metadata keeps its bytes."""
    before = _snapshot_patches(done, snapshot)
    s = patch(done, _pipe(), workers=2)
    assert (s.already, s.patched, s.patches, s.total) == (4, 0, 0, 4 * PER_ACQ)
    after = _snapshot_patches(done, snapshot)
    assert after.keys() == before.keys()
    assert {k: v for k, v in after.items() if k != "zarr.json"} == {
        k: v for k, v in before.items() if k != "zarr.json"
    }
    assert after["zarr.json"][0] == before["zarr.json"][0]


def test_rerun_rewrites_nothing_at_all(done: Path, snapshot) -> None:
    before = _snapshot_patches(done, snapshot)
    patch(done, _pipe(), workers=2)
    assert _snapshot_patches(done, snapshot) == before


def test_new_acquisitions_are_patched_alone(done: Path, raw, tmp_path: Path, snapshot) -> None:
    more = Path(shutil.copytree(raw[0], tmp_path / "more"))
    shutil.copytree(raw[0] / "S0000", more / "S0002")
    with (more / "labels.csv").open("a") as fh:
        fh.write("S0002,good,,,\n")
    old_rows = _rows(done)
    shards = store.store_path(done) / "patches" / "c"
    old_shards = snapshot(shards)
    old = _by_key(done)

    ingest(more, done, _pipe(), workers=1)
    s = patch(done, _pipe(), workers=2)
    assert (s.acquisitions, s.already, s.patched, s.patches) == (6, 4, 2, 2 * PER_ACQ)
    rows = _rows(done)
    assert len(rows) == 6 * PER_ACQ
    new = rows[~rows["acq"].isin(old_rows["acq"])]
    assert set(new["strip"]) == {"S0002"} and len(new) == 2 * PER_ACQ
    kept = rows[rows["acq"].isin(old_rows["acq"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, old_rows.reset_index(drop=True))
    now = snapshot(shards)
    assert {k: now[k] for k in old_shards} == old_shards  # old shard files untouched
    by_key = _by_key(done)
    assert all(np.array_equal(by_key[k], v) for k, v in old.items())
    # S0002 is S0000 again: the same patches
    acqs = rows.drop_duplicates("acq")
    acq_of = dict(zip(zip(acqs["strip"], acqs["run"], strict=True), acqs["acq"], strict=True))
    for run in (1, 2):
        copy, origin = acq_of[("S0002", run)], acq_of[("S0000", run)]
        for k, v in by_key.items():
            if k[0] == copy:
                np.testing.assert_array_equal(v, by_key[(origin, *k[1:])])
    assert verify(done, sample=None).ok


@pytest.mark.parametrize(
    ("change", "what"),
    [
        ({"patch": {"frames": "0,3"}}, "frames"),
        ({"patch": {"kinds": ("frame", "rank_max")}}, "kinds"),
        ({"patch": {"input_bits": 12}}, "input_bits"),
        ({"patch": {"resize": "native"}}, "resize"),
        ({"patch": {"subpixel": False}}, "subpixel"),
        ({"patch": {"rotation": False}}, "rotation"),
        ({"layout": {"mode": "auto"}}, "layout"),
        ({"layout": {"max_shift": 40.0}}, "layout"),
        ({"regions": 3}, "layout, regions"),
    ],
)
def test_changed_settings_are_refused(done: Path, snapshot, change, what) -> None:
    pipe = _pipe()
    if "patch" in change:
        pipe = dataclasses.replace(pipe, patch=dataclasses.replace(pipe.patch, **change["patch"]))
    if "layout" in change:
        pipe = dataclasses.replace(
            pipe, layout=dataclasses.replace(pipe.layout, **change["layout"])
        )
    if "regions" in change:
        pipe = dataclasses.replace(pipe, layout=pipe.layout.with_counts(None, change["regions"]))
    before = _snapshot_patches(done, snapshot)
    with pytest.raises(PatchError, match=rf"patched with other settings \({what} differ\)"):
        patch(done, pipe, workers=1)
    assert _snapshot_patches(done, snapshot) == before


def test_another_patch_size_is_refused(done: Path) -> None:
    with pytest.raises(store.StoreError, match=r"holds uint8 32x32 patches .* asks for 16x16"):
        patch(done, dataclasses.replace(_pipe(), patch=PatchConfig(size=16)))


def test_patch_without_ingest_says_to_run_ingest(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    with pytest.raises(PatchError, match=r"no ingested acquisitions; run `bfsdata ingest RAW"):
        patch(ws, _pipe())
    assert not store.store_path(ws).exists()


# --- bad layouts and registration failures ----------------------------------------------------


def _with_blank(raw_dir: Path, dst: Path) -> Path:
    """S0000's two runs plus strip BLANK whose frames are all background (nothing to find)."""
    shutil.copytree(raw_dir / "S0000", dst / "S0000")
    folder = dst / "BLANK" / "run_1"
    folder.mkdir(parents=True)
    for f in range(FRAMES):
        assert cv2.imwrite(str(folder / f"frame_{f}.png"), np.full((H, W), 25, np.uint8))
    (dst / "labels.csv").write_text("strip,label\nBLANK,good\nS0000,good\n")
    return dst


def test_a_registration_failure_names_the_acquisition_and_the_rest_is_patched(
    raw, tmp_path: Path
) -> None:
    ws = tmp_path / "ws"
    ingest(_with_blank(raw[0], tmp_path / "raw"), ws, _pipe(), workers=1)
    acqs = manifest.read(ws, manifest.ACQUISITIONS)
    blank = int(acqs.loc[acqs["strip"] == "BLANK", "acq"].iloc[0])
    with pytest.raises(PatchError) as e:
        patch(ws, _pipe(), workers=2)
    msg = str(e.value)
    assert "1 acquisition(s) could not be patched (the other 2 were)" in msg
    assert f"acquisition {blank}" in msg and "no strip found" in msg and "--skip-bad" in msg
    rows = _rows(ws)
    assert set(rows["strip"]) == {"S0000"} and len(rows) == 2 * PER_ACQ
    assert verify(ws, sample=None).ok

    s = patch(ws, _pipe(), skip_bad=True, workers=2)
    assert (s.patched, s.rejected, s.total) == (0, 1, 2 * PER_ACQ)
    rej = manifest.read(ws, manifest.REJECTED)
    assert len(rej) == 1
    r = rej.iloc[0]
    assert (r["source"], r["strip"], int(r["run"]), r["rule"]) == (
        f"acquisition {blank}",
        "BLANK",
        1,
        "registration",
    )
    assert "no strip found" in r["message"]


def test_skip_bad_patches_the_rest_in_one_go(raw, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ingest(_with_blank(raw[0], tmp_path / "raw"), ws, _pipe(), workers=1)
    s = patch(ws, _pipe(acq_per_task=1), skip_bad=True, workers=2)
    assert (s.patched, s.rejected, s.total) == (2, 1, 2 * PER_ACQ)
    assert manifest.read(ws, manifest.REJECTED)["strip"].tolist() == ["BLANK"]
    assert verify(ws, sample=None).ok


def test_a_layout_that_does_not_fit_the_strips_is_refused(fresh: Path) -> None:
    narrow = LayoutConfig(strip_box=(32, 40, 992, 1000))  # the strips are 1200 px wide
    with pytest.raises(PatchError, match=r"4 acquisition\(s\) could not be patched") as e:
        patch(fresh, _pipe(layout=narrow), workers=1)
    assert "wide, the layout expects 120 px" in str(e.value)
    assert _rows(fresh).empty


def test_a_layout_leaving_the_image_is_refused(fresh: Path) -> None:
    bad = LayoutConfig()
    object.__setattr__(bad, "regions", ((32, 512), (512, 1100)))  # past validation
    with pytest.raises(PatchError, match="regions leave the 128x160 image"):
        patch(fresh, _pipe(layout=bad), workers=1)


@pytest.mark.parametrize(
    ("ranks", "kinds", "match"),
    [
        ((FRAMES,), KINDS, r"rank_min patches need rank 1, but ingest computed ranks \[4\]"),
        ((1,), ("frame",), r"registration needs the max rank image \(rank 4\)"),
    ],
)
def test_missing_rank_images_are_refused(raw, tmp_path: Path, ranks, kinds, match) -> None:
    acq = AcquisitionConfig(frames=FRAMES, ranks=ranks, test_frames=(0,))
    pipe = dataclasses.replace(_pipe(kinds=kinds), acquisition=acq)
    shutil.copytree(raw[0] / "S0000", tmp_path / "raw" / "S0000")
    ingest(tmp_path / "raw", tmp_path / "ws", pipe, workers=1)
    with pytest.raises(PatchError, match=match):
        patch(tmp_path / "ws", pipe)


# --- parallel writers and resume --------------------------------------------------------------


def test_several_workers_write_the_same_bytes_as_one(ingested: Path, tmp_path: Path) -> None:
    """workers=2 with one acquisition per task (4 tasks in flight) vs workers=1."""
    out = {}
    for workers in (1, 2):
        ws = Path(shutil.copytree(ingested, tmp_path / f"w{workers}"))
        patch(ws, _pipe(acq_per_task=1), workers=workers)
        out[workers] = ws
    r1, r2 = _rows(out[1]), _rows(out[2])
    pd.testing.assert_frame_equal(r1, r2)  # patch indices included
    a1 = store.open_root(out[1], mode="r")["patches"]
    a2 = store.open_root(out[2], mode="r")["patches"]
    idx = r1["patch"].to_numpy()
    np.testing.assert_array_equal(
        a1.get_orthogonal_selection((idx,)), a2.get_orthogonal_selection((idx,))
    )
    assert store.written_shards(a1) == store.written_shards(a2) == set(idx // a1.shards[0])
    shards = [store.store_path(ws) / "patches" / "c" for ws in (out[1], out[2])]
    files = [sorted(p.relative_to(d) for p in d.rglob("*") if p.is_file()) for d in shards]
    assert files[0] == files[1]
    for f in files[0]:  # the shard files themselves are byte-identical
        assert (shards[0] / f).read_bytes() == (shards[1] / f).read_bytes(), f
    for ws in out.values():
        assert verify(ws, sample=None).ok


def test_resume_after_a_crash_mid_run(
    ingested: Path, patched, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run dies in its third task after two tasks were committed, leaving a half-written
    shard and a *.partial file; the next run finishes and equals an uninterrupted run."""
    import bfsdata.patch.stage as stage
    from bfsdata.workspace.writes import Committer

    ws = Path(shutil.copytree(ingested, tmp_path / "ws"))
    pipe = _pipe(acq_per_task=1)
    real = stage._patch_unit
    calls, lock = [], threading.Lock()

    class EagerCommitter(Committer):  # commit every finished task at once
        def add(self, rows):
            super().add(rows)
            self.flush()

    def dying(unit):
        with lock:
            calls.append(unit.first_shard)
            n = len(calls)
        if n == 3:
            arr = store.open_store(unit.plan.store)["patches"]
            key = store.shard_key(arr, unit.first_shard)
            debris = store.store_path(ws).parent / key
            debris.parent.mkdir(parents=True, exist_ok=True)
            debris.write_bytes(b"half a shard")
            debris.with_name("0.partial").write_bytes(b"")
            raise RuntimeError("killed")
        return real(unit)

    monkeypatch.setattr(stage, "_patch_unit", dying)
    monkeypatch.setattr(stage, "Committer", EagerCommitter)
    with pytest.raises(RuntimeError, match="killed"):
        patch(ws, pipe, workers=1)
    assert _rows(ws)["acq"].nunique() == 2  # two tasks committed before the crash
    monkeypatch.undo()

    s = patch(ws, pipe, workers=1)
    assert (s.already, s.patched) == (2, 2)
    got, want = _by_key(ws), _by_key(patched[0])
    assert got.keys() == want.keys()
    assert all(np.array_equal(got[k], want[k]) for k in want)
    rep = verify(ws, sample=None)
    assert rep.ok and rep.orphans == 0, rep.problems
    leftovers = [*store.store_path(ws).rglob("*.partial"), *store.store_path(ws).rglob("*.__lock")]
    assert not leftovers
