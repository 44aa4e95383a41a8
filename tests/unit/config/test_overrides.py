"""Command-line overrides (bfsdata/config/overrides.py): dotted keys checked as in a pipeline
file, one section built once with all its changes, and the two keys that carry what they
imply (a region count, a frame count)."""

from __future__ import annotations

import pytest

from bfsdata.config.errors import ConfigError
from bfsdata.config.overrides import with_overrides
from bfsdata.config.pipeline import Pipeline


def test_none_changes_nothing() -> None:
    pipe = Pipeline()
    assert with_overrides(pipe, {"train.optim.epochs": None, "split.val": None}) is pipe


def test_dotted_keys_reach_nested_sections_and_leave_the_rest() -> None:
    pipe = Pipeline()
    out = with_overrides(
        pipe,
        {"train.optim.epochs": 3, "train.kinds": ("frame",), "split.val": 0.2, "patch.frames": "0"},
    )
    assert out.train.optim.epochs == 3 and out.train.kinds == ("frame",)
    assert out.split.val == 0.2 and out.patch.frames == "0"
    assert out.train.optim.batch == pipe.train.optim.batch
    assert out.layout == pipe.layout and out.source == pipe.source


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"split.val": 1.5}, "split.val: must be in [0, 1)"),
        ({"train.optim.epochs": "3"}, "train.optim.epochs: must be int, got '3'"),
        ({"patch.kinds": ("frames",)}, "patch.kinds: unknown kind 'frames'"),
        ({"patch.kinds": "frame"}, "patch.kinds: must be a list"),
        ({"split.value": 0.2}, "unknown key split.value; known keys: calib, seed, test_good, val"),
        ({"report.policy": "best"}, "report.policy"),
    ],
)
def test_values_are_checked_as_in_a_pipeline_file(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        with_overrides(Pipeline(), overrides)
    assert message in str(e.value)


def test_a_region_count_draws_equal_bands_across_the_strip() -> None:
    out = with_overrides(Pipeline(), {"layout.regions": 2, "layout.vials": 4})
    y0, _, y1, _ = out.layout.strip_box
    assert out.layout.regions == ((y0, (y0 + y1) // 2), ((y0 + y1) // 2, y1))
    assert out.layout.vials == 4
    with pytest.raises(ConfigError, match=r"layout\.regions: needs at least one band"):
        with_overrides(Pipeline(), {"layout.regions": 0})


def test_a_frame_count_brings_its_ranks_and_test_frames() -> None:
    out = with_overrides(Pipeline(), {"acquisition.frames": 4})
    assert out.acquisition.ranks == (1, 4)
    assert out.acquisition.test_frames == (0,)  # 7 and 15 are past the 4 frames
    given = with_overrides(Pipeline(), {"acquisition.frames": 4, "acquisition.ranks": (1, 2, 4)})
    assert given.acquisition.ranks == (1, 2, 4)
    with pytest.raises(ConfigError, match=r"acquisition.ranks: rank 9 not in 1..4"):
        with_overrides(Pipeline(), {"acquisition.frames": 4, "acquisition.ranks": (1, 9)})
