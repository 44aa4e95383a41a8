"""Fuzzing the two text inputs a person writes by hand: labels.csv and pipeline YAML (issue #7).

Whatever the bytes, the reader gives a valid result or the documented refusal: for labels.csv,
problems of `scan_raw` (what `IngestError` prints) that name the file; for a pipeline, a
`ConfigError` whose message starts with the file's path. Each is one line. Any other exception
fails the test. Examples are drawn three ways: any bytes, any text, and text shaped like the
real thing with one thing wrong (which reaches the rules behind the header and the YAML parser).
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import io
import math
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bfsdata.config.files import PIPELINES_DIR, load_pipeline, pipeline_to_dict
from bfsdata.config.pipeline import ConfigError, Pipeline
from bfsdata.ingest import IngestError
from bfsdata.sources.labels_csv import LABEL_COLUMNS, REGIONS, STRIP_RE, VIALS
from bfsdata.sources.strip_folders import scan_raw

FUZZ = settings(
    max_examples=100,
    deadline=None,
    database=None,  # nothing written into the working tree
    suppress_health_check=[HealthCheck.too_slow],
)
STRIPS = ("A1", "B2")  # folders of the fuzzed raw folder: run_1 with 2 (empty) frames each


# --- labels.csv -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Strip folders only: scan_raw reads names, never pixels, so empty frame files do."""
    root = tmp_path_factory.mktemp("fuzz") / "raw"
    for strip in STRIPS:
        run = root / strip / "run_1"
        run.mkdir(parents=True)
        for f in range(2):
            (run / f"frame_{f}.png").write_bytes(b"")
    return root


_cell = st.one_of(
    st.sampled_from(["", "A1", "B2", "Z9", "good", "defect", "scratch", "0", "1", "3", "5", "7"]),
    st.sampled_from(["-1", "2.0", "01", "\u00b2", "\u0662", " good ", "A 1", "Str\u00f6m", '"']),
    st.text(max_size=6),
)
_header = st.one_of(
    st.permutations(LABEL_COLUMNS).flatmap(lambda cols: st.integers(1, 5).map(lambda n: cols[:n])),
    st.lists(st.sampled_from([*LABEL_COLUMNS, "colour", "", "strip "]), max_size=6),
)


@st.composite
def labels_like(draw: st.DrawFn) -> bytes:
    """A CSV with a plausible header and rows, written by the csv module (quoting included)."""
    header = draw(_header)
    rows = draw(st.lists(st.lists(_cell, min_size=0, max_size=7), max_size=6))
    out = io.StringIO()
    w = csv.writer(out, lineterminator=draw(st.sampled_from(["\n", "\r\n", "\r"])))
    w.writerow(header)
    w.writerows(rows)
    bom = draw(st.sampled_from(["", "\ufeff"]))
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "latin-1"]))  # latin-1: "ö" is not UTF-8
    return (bom + out.getvalue()).encode(encoding, "replace")


def _good_labels(rows: list[str]) -> bytes:
    return ("strip,label,defect,vial,region\n" + "\n".join(rows) + "\n").encode()


@FUZZ
@given(data=st.one_of(labels_like(), st.text().map(str.encode), st.binary()))
@example(data=_good_labels(["A1,good,,,", "B2,defect,scratch,2,1", "B2,defect,burn,5,3"]))
@example(data=_good_labels(["A1,good,,,", "B2,defect,scratch,\u00b2,1"]))  # isdigit, not int
@example(data=_good_labels(["A1,good,,,", "B2,defect,scratch,9" + "9" * 5000 + ",1"]))
@example(data=_good_labels(["A1,good,,,", "B2,defect," + "x" * 200_000 + ",2,1"]))  # csv limit
@example(data=_good_labels(['A1,"go\nod",,,', "B2,defect,,,"]))  # a newline inside quotes
@example(data=_good_labels(["A1,good,,,\x00", "B2,defect,,,"]))
@example(data=_good_labels(["A1,good,,,,,,", ",,,,", "A1\x0cB2,good,,,"]))
@example(data=b"strip,label,label\nA1,good,defect\n")
@example(data="strip,label\nA1,good\n".encode("utf-16"))
def test_labels_csv_parses_or_names_the_file(raw: Path, data: bytes) -> None:
    path = raw / "labels.csv"
    path.write_bytes(data)
    scan = scan_raw(raw, 2)  # raises nothing, whatever the bytes

    for p in scan.problems:
        assert p.source == str(path) or p.source.startswith(f"{path}:"), p
        assert p.rule == "labels-csv", p
        assert "\n" not in str(p) and "\r" not in str(p), p
    if scan.problems:
        assert str(path) in str(IngestError(scan.problems))  # what the command prints
    if any(p.fatal for p in scan.problems):
        return  # nothing is ingested
    ann = scan.annotations
    assert list(ann.columns) == list(LABEL_COLUMNS)
    # A refused row leaves no trace: no annotation of a strip named in a problem.
    assert not set(ann["strip"]) & {p.strip for p in scan.problems if p.strip}
    for r in ann.itertuples(index=False):
        assert STRIP_RE.match(r.strip) and r.strip in STRIPS
        assert r.label in ("good", "defect")
        assert _missing(r.vial) or 1 <= r.vial <= VIALS
        assert _missing(r.region) or 0 <= r.region < REGIONS
        if r.label == "good":
            assert _missing(r.defect) and _missing(r.vial) and _missing(r.region)
    label_of = dict(zip(ann["strip"], ann["label"], strict=True))
    assert len(label_of) == ann["strip"].nunique()  # one label per strip
    assert [a.label for a in scan.acquisitions] == [
        label_of.get(a.strip, "unknown") for a in scan.acquisitions
    ]


def _missing(v: object) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


# --- pipeline YAML --------------------------------------------------------------------------------

DEMO = yaml.safe_load((PIPELINES_DIR / "demo.yaml").read_text())

_value = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 300),
    st.integers(),
    st.sampled_from([10**30, -(10**30), 2**64, 100_000]),
    st.floats(),  # nan and inf included
    st.text(max_size=12),
    st.sampled_from(["frr:0.5", "escape:2", "0,7,15", "first-eighth-last", "auto", "zstd"]),
    st.lists(st.integers(-5, 2000), max_size=5),
    st.lists(st.lists(st.integers(-5, 1100), max_size=3), max_size=5),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


def _leaves(d: dict, prefix: tuple = ()) -> list[tuple]:
    out = []
    for k, v in d.items():
        out += _leaves(v, (*prefix, k)) if isinstance(v, dict) else [(*prefix, k)]
    return out


@st.composite
def pipeline_like(draw: st.DrawFn) -> bytes:
    """demo.yaml with up to three keys changed, added or removed."""
    doc = copy.deepcopy(DEMO)
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(_leaves(doc) or [("name",)]))
        parent = doc
        for k in key[:-1]:
            parent = parent[k]
        action = draw(st.sampled_from(["set", "set", "add", "drop"]))
        if action == "set":
            parent[key[-1]] = draw(_value)
        elif action == "add":
            new = draw(st.one_of(st.text(max_size=8), st.integers(), st.none()))
            parent[new] = draw(_value)
        else:
            parent.pop(key[-1], None)
    return yaml.safe_dump(doc, allow_unicode=True).encode()


@FUZZ
@given(data=st.one_of(pipeline_like(), st.text().map(str.encode), st.binary()))
@example(data=b"[" * 5000)  # nesting deeper than the parser recurses
@example(data=b"acquisition:\n  frames: 1" + b"0" * 5000)  # an int too long for int()
@example(data=b"split:\n  seed: 2024-13-01\n")  # a date that does not exist
@example(data=b"train:\n  model:\n    stages: 100000\n")  # 2**stages: all memory
@example(data=b"train:\n  model:\n    stages: -100000\n")
@example(data=b"report:\n  slot_ms: .nan\n")
@example(data=b"train:\n  optim:\n    lr: 1" + b"0" * 400 + b"\n")  # an int too large for a float
@example(data=b"1: 2\nname: x\n")  # a key that is not a string, beside one that is
@example(data=b"patch:\n  size: 60\n")  # the model's 4 stages need a multiple of 16
@example(data=b"name: [demo\n")
@example(data=b"\xff\xfe")
@example(data=b"0")
def test_pipeline_yaml_loads_or_names_the_file(tmp_path_factory, data: bytes) -> None:
    path = tmp_path_factory.getbasetemp() / "fuzz pipeline.yaml"
    path.write_bytes(data)
    try:
        pipe = load_pipeline(path)
    except ConfigError as e:
        message = str(e)
        assert message.startswith(f"{path}: "), message
        assert "\n" not in message and len(message) < 1000, message
        return
    assert isinstance(pipe, Pipeline) and pipe.source == str(path)
    assert pipe.model.patch_size == pipe.patch.size  # the sections agree
    # A pipeline that loads can be written back and loads the same (runs record it that way).
    again = path.with_name("again.yaml")
    again.write_text(yaml.safe_dump(pipeline_to_dict(pipe)))
    assert _bare(load_pipeline(again)) == _bare(pipe)


def _bare(pipe: Pipeline) -> Pipeline:
    return dataclasses.replace(pipe, source="", sha256="")
