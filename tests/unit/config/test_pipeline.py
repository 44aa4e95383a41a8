"""Pipeline config: the shipped pipelines load; every bad value is a ConfigError naming the
file and the key."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

import pytest
import yaml

from bfsdata.config.files import PIPELINES_DIR, load_pipeline, pipeline_to_dict
from bfsdata.config.pipeline import (
    AcquisitionConfig,
    ConfigError,
    LayoutConfig,
    PatchConfig,
    Pipeline,
    StoreConfig,
    kind_rank,
    parse_frames,
)


def _strip(p: Pipeline) -> Pipeline:
    return dataclasses.replace(p, source="", sha256="")


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pipe.yaml"
    path.write_text(text)
    return path


def test_bfs_5vial_is_the_papers_setup_and_matches_the_defaults() -> None:
    pipe = load_pipeline("bfs-5vial")
    path = PIPELINES_DIR / "bfs-5vial.yaml"
    assert pipe.source == str(path)
    assert pipe.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    # The paper's geometry is both the YAML and the dataclass defaults.
    assert pipe.acquisition == AcquisitionConfig() and pipe.layout == LayoutConfig()
    assert pipe.acquisition.frames == 16 and pipe.acquisition.ranks == (1, 16)
    assert pipe.layout.vials == 5 and len(pipe.layout.regions) == 4
    assert pipe.patch.size == 256


def test_demo_loads_with_small_patches() -> None:
    pipe = load_pipeline("demo")
    assert pipe.name == "demo"
    assert pipe.patch.size < load_pipeline("bfs-5vial").patch.size
    assert pipe.acquisition.frames == 16
    assert all(isinstance(band, tuple) for band in pipe.layout.regions)


def _key_paths(tree: dict, where: str = "") -> set[str]:
    out = set()
    for key, value in tree.items():
        out.add(f"{where}{key}")
        if isinstance(value, dict):
            out |= _key_paths(value, f"{where}{key}.")
    return out


def test_images_cpu_is_a_small_image_profile_with_every_key_of_images() -> None:
    pipe, paper = load_pipeline("images-cpu"), load_pipeline("images")
    assert pipe.name == "images-cpu"
    # every key spelled out, as in images.yaml, so each choice is visible and commented
    files = [
        yaml.safe_load((PIPELINES_DIR / f"{n}.yaml").read_text()) for n in (pipe.name, "images")
    ]
    assert _key_paths(files[0]) == _key_paths(files[1])
    # an image-folder pipeline (ingest --format images refuses others), whole images as patches
    assert pipe.acquisition == paper.acquisition and pipe.train.kinds == ("frame",)
    assert pipe.layout.mode == "resize" and pipe.patch.kinds == ("frame",)
    # smaller than the paper-size model, scored on the normalised residual
    assert pipe.patch.size < paper.patch.size
    assert pipe.model.base_width < paper.model.base_width and pipe.model.norm == "none"
    assert pipe.train.loss.score == "residual" and paper.train.loss.score == "ssim"
    # a fixed number of steps, one cosine decay over exactly them
    optim = pipe.train.optim
    assert optim.steps_per_epoch > 0
    assert optim.first_decay_steps == optim.epochs * optim.steps_per_epoch


def test_load_by_path_and_round_trip_through_yaml(tmp_path: Path) -> None:
    demo = load_pipeline("demo")
    path = _write(tmp_path, yaml.safe_dump(pipeline_to_dict(demo)))  # holds source/sha256 too
    again = load_pipeline(path)
    assert again.source == str(path)
    assert _strip(again) == _strip(demo)


def test_empty_file_gives_the_defaults(tmp_path: Path) -> None:
    assert _strip(load_pipeline(_write(tmp_path, ""))) == Pipeline()


def test_partial_file_keeps_other_defaults(tmp_path: Path) -> None:
    pipe = load_pipeline(
        _write(tmp_path, "acquisition:\n  frames: 4\n  ranks: [1, 2, 4]\n  test_frames: [0, 3]\n")
    )
    assert pipe.acquisition == AcquisitionConfig(frames=4, ranks=(1, 2, 4), test_frames=(0, 3))
    assert pipe.layout == LayoutConfig()


def test_test_images_are_the_test_frames_then_the_rank_images() -> None:
    acq = AcquisitionConfig(frames=4, ranks=(1, 4), test_frames=(0, 3))
    assert acq.test_images() == [("frame", 0), ("frame", 3)]
    both = dataclasses.replace(acq, test_kinds=("rank_max", "frame"))
    assert both.test_images() == [("frame", 0), ("frame", 3), ("rank_max", -1)]
    assert dataclasses.replace(acq, test_kinds=("rank_max",)).test_images() == [("rank_max", -1)]


def test_unknown_pipeline_name_lists_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"no such pipeline file \(known names: .*bfs-5vial"):
        load_pipeline("no-such-pipeline")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        # unknown keys
        ("colour: red\n", r"unknown key 'colour'"),
        ("acquisition:\n  franes: 4\n", r"unknown key acquisition\.'franes'"),
        ("layout:\n  vials: 5\n  vial_gap: 2\n", r"unknown key layout\.'vial_gap'"),
        # wrong types
        ("acquisition:\n  frames: 4.0\n", r"acquisition\.frames: must be int, got 4\.0"),
        ("acquisition:\n  frames: true\n", r"acquisition\.frames: must be int, got True"),
        ("acquisition:\n  frames: '16'\n", r"acquisition\.frames: must be int"),
        ("acquisition:\n  ranks: 16\n", r"acquisition\.ranks: must be a list"),
        ("acquisition:\n  ranks: [1, a]\n", r"acquisition\.ranks: must be int, got 'a'"),
        ("acquisition: 16\n", r"acquisition: must be a mapping, got int"),
        ("name: 5\n", r"name: must be str, got 5"),
        ("layout:\n  reference_size: [1024]\n", r"layout\.reference_size: must have 2 items"),
        ("layout:\n  regions: [32, 272]\n", r"layout\.regions: must be a list, got 32"),
        ("patch:\n  kinds: frame\n", r"patch\.kinds: must be a list"),
        # out of range
        ("acquisition:\n  frames: 0\n", r"acquisition\.frames: must be >= 1, got 0"),
        ("acquisition:\n  ranks: [1, 17]\n", r"acquisition\.ranks: rank 17 not in 1\.\.16"),
        ("acquisition:\n  ranks: [1, 1]\n", r"acquisition\.ranks: has duplicates"),
        ("acquisition:\n  ranks: []\n", r"acquisition\.ranks: needs at least one rank"),
        ("acquisition:\n  test_frames: [0, 16]\n", r"acquisition\.test_frames: 16 not in 0\.\.15"),
        ("acquisition:\n  test_kinds: []\n", r"acquisition\.test_kinds: needs at least one"),
        ("acquisition:\n  test_kinds: [rank]\n", r"acquisition\.test_kinds: 'rank' is not one"),
        (
            "acquisition:\n  frames: 1\n  ranks: []\n  test_frames: [0]\n"
            "  test_kinds: [rank_min]\n",
            r"acquisition\.test_kinds: rank_min needs a rank image; acquisition\.ranks is empty",
        ),
        ("store:\n  clevel: 12\n", r"store\.clevel: must be 0\.\.9, got 12"),
        ("store:\n  cname: gzip\n", r"store\.cname: unknown"),
        ("store:\n  patch_shard: 0\n", r"store\.patch_shard: must be >= 1"),
        ("split:\n  val: 1.5\n", r"split\.val: must be in \[0, 1\), got 1\.5"),
        ("split:\n  calib: -0.1\n", r"split\.calib: must be in \[0, 1\)"),
        ("split:\n  test_good: -1\n", r"split\.test_good: must be >= 0"),
        ("patch:\n  size: 4\n", r"patch\.size: must be >= 8, got 4"),
        ("patch:\n  resize: cubic\n", r"patch\.resize: must be auto or native"),
        ("patch:\n  kinds: [frame, rank_median]\n", r"patch\.kinds: unknown kind 'rank_median'"),
        ("patch:\n  input_bits: 8\n", r"patch\.input_bits: 0 or 9\.\.16"),
        ("layout:\n  mode: magic\n", r"layout\.mode: must be fixed or auto"),
        ("layout:\n  background: grey\n", r"layout\.background: must be dark or bright"),
        ("layout:\n  vials: 0\n", r"layout\.vials: must be >= 1"),
        ("layout:\n  max_shift: -1\n", r"layout\.max_shift: must be >= 0"),
        ("layout:\n  max_size_error: 1.5\n", r"layout\.max_size_error: must be in \(0, 1\)"),
        ("layout:\n  reference_size: [0, 1280]\n", r"layout\.reference_size: must be positive"),
        # geometry
        (
            "layout:\n  regions: [[32, 300], [272, 512]]\n",
            r"layout\.regions: band R1 272\.\.512 "
            r"overlaps R0",
        ),
        ("layout:\n  regions: [[272, 32]]\n", r"layout\.regions: band R0 272\.\.32 is empty"),
        ("layout:\n  regions: [[32, 1100]]\n", r"layout\.regions: band R0 leaves the image"),
        ("layout:\n  regions: []\n", r"layout\.regions: needs at least one band"),
        (
            "layout:\n  strip_box: [32, 40, 992, 1300]\n",
            r"layout\.strip_box: \(32, 40, 992, 1300\) "
            r"leaves the 1024x1280 reference image",
        ),
        ("layout:\n  strip_box: [500, 40, 400, 1240]\n", r"layout\.strip_box: .* leaves"),
        # not a pipeline at all
        ("- just\n- a list\n", r"top level must be a mapping of sections"),
        ("acquisition: [\n", r"not valid YAML"),
    ],
)
def test_bad_values_name_the_file_and_the_key(tmp_path: Path, text: str, match: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match=match) as e:
        load_pipeline(path)
    assert str(e.value).startswith(f"{path}: ")


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("layout:\n  max_shift: abc\n", "layout.max_shift"),
        ("split:\n  val: ten\n", "split.val"),
        ("layout:\n  max_shift: true\n", "layout.max_shift"),
    ],
)
def test_float_key_with_wrong_type(tmp_path: Path, text: str, key: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match=rf"^{path}: {key}: "):
        load_pipeline(path)


def test_patch_frames_spec_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"pipe\.yaml: .*frames: '0,x' is not all"):
        load_pipeline(_write(tmp_path, "patch:\n  frames: '0,x'\n"))


def test_patch_frames_error_names_the_full_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"patch\.frames"):
        load_pipeline(_write(tmp_path, "patch:\n  frames: '0,x'\n"))


def test_dataclasses_validate_when_built_in_code() -> None:
    with pytest.raises(ConfigError, match=r"acquisition\.ranks: rank 5 not in 1\.\.4"):
        AcquisitionConfig(frames=4, ranks=(1, 5), test_frames=(0,))
    with pytest.raises(dataclasses.FrozenInstanceError):
        AcquisitionConfig().frames = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("spec", "n", "expected"),
    [
        ("all", 4, (0, 1, 2, 3)),
        (" all ", 2, (0, 1)),
        ("first-eighth-last", 16, (0, 7, 15)),
        ("first-eighth-last", 4, (0, 3)),
        ("first-eighth-last", 1, (0,)),
        ("0,7,15", 16, (0, 7, 15)),
        ("15, 0 ,7,7", 16, (0, 7, 15)),
        ("3,", 4, (3,)),
    ],
)
def test_parse_frames(spec: str, n: int, expected: tuple[int, ...]) -> None:
    assert parse_frames(spec, n) == expected


@pytest.mark.parametrize(
    ("spec", "n", "match"),
    [
        ("0,16", 16, r"must name frames in 0\.\.15"),
        ("-1", 16, r"must name frames in 0\.\.15"),
        ("", 16, r"must name frames"),
        (",", 16, r"must name frames"),
        ("first,last", 16, r"is not all, first-eighth-last or a comma list"),
        ("1.5", 16, r"comma list of integers"),
    ],
)
def test_parse_frames_errors(spec: str, n: int, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_frames(spec, n)


def test_with_counts() -> None:
    layout = LayoutConfig()
    assert layout.with_counts(None, None) is layout
    assert layout.with_counts(5, 4) is layout  # same counts: nothing to change
    three = layout.with_counts(3, None)
    assert three.vials == 3 and three.regions == layout.regions
    two = layout.with_counts(None, 2)
    assert two.regions == ((32, 512), (512, 992))  # equal bands across strip_box y0..y1
    assert two.vials == 5 and two.strip_box == layout.strip_box
    bands = layout.with_counts(None, 3).regions
    assert bands == ((32, 352), (352, 672), (672, 992))
    seven = layout.with_counts(2, 7)
    assert seven.vials == 2 and len(seven.regions) == 7
    assert seven.regions[0][0] == 32 and seven.regions[-1][1] == 992
    assert all(a[1] == b[0] for a, b in zip(seven.regions, seven.regions[1:], strict=False))


def test_pipeline_to_dict_is_plain() -> None:
    d = pipeline_to_dict(load_pipeline("bfs-5vial"))
    assert d["acquisition"]["ranks"] == [1, 16]
    assert d["layout"]["regions"][0] == [32, 272]
    yaml.safe_dump(d)  # plain types only


@pytest.mark.parametrize(
    ("text", "match"),
    [
        # issue 22: each passed, then failed later in an allocation that named no key
        ("patch:\n  size: 20000\n", r"patch\.size: must be <= 2048, got 20000"),
        ("patch:\n  size: 100000000000000000000\n", r"patch\.size: must be <= 2048"),
        ("acquisition:\n  frames: 100000\n", r"acquisition\.frames: must be <= 1024"),
        ("acquisition:\n  max_pixels: 4294967296\n", r"acquisition\.max_pixels: must be <= "),
        ("acquisition:\n  max_pixels: 1.0e+6\n", r"acquisition\.max_pixels: must be int"),
        ("layout:\n  mode: grid\n  tile: 100000\n  stride: 1\n", r"layout\.tile: must be <= "),
        ("layout:\n  vials: 100000\n", r"layout\.vials: must be <= 64"),
        ("store:\n  patch_shard: 1000000\n", r"store\.patch_shard: must be <= 65536"),
        ("patch:\n  size: 2048\nstore:\n  patch_shard: 1024\n", r"store\.patch_shard: 1024 .*MiB"),
        ("report:\n  batch: 10000000\n", r"report\.batch: must be <= 65536"),
        ("train:\n  optim:\n    batch: 100000\n", r"train\.optim\.batch: must be <= 4096"),
        ("train:\n  optim:\n    epochs: 0\n", r"train\.optim\.epochs: must be >= 1"),
        ("train:\n  model:\n    base_width: 100000\n", r"train\.model\.base_width: must be <="),
        ("train:\n  model:\n    base_width: 4096\n", r"train\.model\.base_width: too wide"),
        ("train:\n  augment:\n    perlin_max_scale: 64\n", r"perlin_max_scale: must be <= 12"),
        ("train:\n  loss:\n    ssim_window: -1\n", r"train\.loss\.ssim_window: must be >= 1"),
    ],
)
def test_sizes_have_upper_bounds_naming_the_key(tmp_path: Path, text: str, match: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match=match) as e:
        load_pipeline(path)
    assert str(e.value).startswith(f"{path}: ")


def test_sizes_built_in_code_must_be_whole_numbers() -> None:
    with pytest.raises(ConfigError, match=r"patch\.size: must be a whole number, got 64\.0"):
        PatchConfig(size=64.0)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"store\.patch_shard: must be a whole number, got True"):
        StoreConfig(patch_shard=True)


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _dev_zero(path: Path) -> None:
    path.symlink_to("/dev/zero")


def _folder(path: Path) -> None:
    path.mkdir()


@pytest.mark.parametrize(
    ("make", "kind"),
    [
        (_fifo, "a FIFO"),
        (_dev_zero, "a link to /dev/zero, a character device"),
        (_folder, "a folder"),
    ],
)
def test_a_pipeline_is_read_from_a_regular_file_only(tmp_path: Path, make, kind: str) -> None:
    path = tmp_path / "pipe.yaml"
    make(path)
    with pytest.raises(ConfigError, match=rf"pipe\.yaml: is {kind}.*\[rule: regular-file\]"):
        load_pipeline(path)


def test_a_huge_pipeline_file_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, "# padding\n" * 200_000)  # 2 MB of comments
    with pytest.raises(ConfigError, match=r"is 2,000,000 bytes; at most .*\[rule: file-size\]"):
        load_pipeline(path)


def test_rank_kinds_are_the_lowest_and_highest_computed_rank() -> None:
    assert [kind_rank(k, (1, 16)) for k in ("rank_min", "rank_max")] == [1, 16]
    assert [kind_rank(k, (14, 3)) for k in ("rank_min", "rank_max")] == [3, 14]
    assert kind_rank("rank_max", (1, 8, 16)) == 16
    with pytest.raises(ValueError, match="rank_min needs rank images"):
        kind_rank("rank_min", ())
