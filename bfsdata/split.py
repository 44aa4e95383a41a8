"""`bfsdata split`: put every labelled strip in train, val, calib or test.

Splits are made per strip, never per patch, so no physical product is on both sides. Good
strips go to train/val (the paper's 90/10). The test kit is every defective strip plus the good
strips held out of training (`test_good` drawn at random, or named in a file); it is divided into
`calib` (thresholds are fitted there) and `test` (they are judged there), stratified by label and
defect type. `calib = 0` puts the whole kit in `test`: thresholds are then fitted in-sample, as in
the paper, and the report has to say so.

Every random choice orders strips by a hash of (seed, strip id), not by a global shuffle, so a
strip's place does not depend on which other strips exist. The arguments are recorded in
`manifests/splits.json`; re-running with the same arguments keeps every existing assignment and
assigns only strips that arrived since.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from bfsdata.config.pipeline import SplitConfig
from bfsdata.config.regular_files import InputFileError, read_regular
from bfsdata.workspace import manifest, paths, provenance
from bfsdata.workspace.counts import UNSPLIT, patch_table, strip_table
from bfsdata.workspace.writes import write_atomic

log = logging.getLogger(__name__)

KIT = ("calib", "test")


class SplitError(ValueError):
    """A split that cannot be made as asked; the message says why and what to do."""


@dataclass(frozen=True)
class SplitSummary:
    workspace: Path
    args: dict[str, Any]  # as recorded in manifests/splits.json
    assigned: int  # strips in a split after this run
    new: int  # strips assigned by this run
    kept: int  # strips whose split was kept from before
    unknown: int  # strips labelled unknown: in no split
    written: bool  # splits.parquet was (re)written
    strips: pd.DataFrame  # split, label, strips, acquisitions, patches
    regions: pd.DataFrame  # split, region, patches (empty without patches)
    notes: tuple[str, ...]


def split(
    workspace: Path,
    cfg: SplitConfig,
    *,
    test_strips: list[str] | Path | None = None,
    force: bool = False,
) -> SplitSummary:
    """Assign new strips (all of them the first time) and write manifests/splits.parquet.

    `test_strips` names the good strips held out for the test kit (defective strips are always
    in it, named or not), or is a file naming them (`read_strip_list`); without it the
    workspace's manifests/test_kit.txt names them (written by an image-folder ingest), else
    `cfg.test_good` good strips are drawn. `force` redraws every assignment when the arguments
    differ from those recorded.
    """
    ws = Path(workspace)
    notes: list[str] = []
    if isinstance(test_strips, Path):
        test_strips = read_strip_list(test_strips)
    own_kit = paths.kit_file(ws)
    if test_strips is None and own_kit.exists():
        test_strips = read_strip_list(own_kit)
        notes.append(f"test kit: the strips named in {own_kit} (the image folder's test/)")
    acqs = manifest.read(ws, manifest.ACQUISITIONS)
    strips = _strip_labels(ws, acqs)
    labelled = strips[strips["label"] != "unknown"].copy()
    kit_names = _check_test_strips(strips, test_strips, notes)
    args = _args(cfg, kit_names)
    old = _previous(ws, args, force)

    _check_good(ws, labelled, cfg, kit_names)
    labelled["stratum"] = _strata(ws, labelled)
    kept, dropped = _kept(old, labelled, kit_names, notes)
    new = labelled[~labelled["strip"].isin(kept["strip"])]
    assigned = _assign(new, kept, cfg, kit_names)
    out = pd.concat([kept[["strip", "split"]], assigned], ignore_index=True)

    inputs = provenance.manifest_digests(
        ws, manifest.ACQUISITIONS, manifest.ANNOTATIONS, read={"acquisitions": acqs}
    )
    rec = provenance.record(None, "split", inputs, seed=cfg.seed)
    # Same strips but changed inputs (e.g. new runs of known strips): rewritten, so that the
    # record names the manifests the split stands on now.
    stale = manifest.read_provenance(ws, manifest.SPLITS_SCHEMA) != rec
    written = not new.empty or dropped or old.empty or stale
    if written:
        out["seed"] = cfg.seed
        manifest.write(ws, manifest.SPLITS_SCHEMA, out, sort=("strip",), provenance=rec)
        _write_args(ws, args)  # after the parquet: a crash between the two makes a refusal
        log.info("split: %d new strip(s) assigned, %d kept", len(new), len(kept))

    unknown = int((strips["label"] == "unknown").sum())
    patches = manifest.read(ws, manifest.PATCHES)
    table = strip_table(acqs, patches, out)
    table = table[table["split"] != UNSPLIT].reset_index(drop=True)
    notes += _notes(table, cfg, unknown, patches.empty)
    return SplitSummary(
        workspace=ws,
        args=args,
        assigned=len(out),
        new=len(new),
        kept=len(kept),
        unknown=unknown,
        written=written,
        strips=table,
        regions=patch_table(patches, out, ("split", "region")),
        notes=tuple(notes),
    )


def read_strip_list(path: Path) -> list[str]:
    """Strip ids from a file: one per line (`#` comments allowed), or a CSV with a strip column."""
    path = Path(path)
    if not path.exists():
        raise SplitError(f"{path}: no such test-strip file")
    if path.is_dir():
        raise SplitError(
            f"{path}: is a folder; --test-strips takes a file naming the test strips, one per "
            "line (or a CSV with a 'strip' column)"
        )
    try:
        text = read_regular(path, 2**24).decode("utf-8-sig")  # 16 MiB: millions of strip ids
    except InputFileError as e:
        raise SplitError(str(e)) from None
    except (OSError, UnicodeDecodeError) as e:
        raise SplitError(f"{path}: cannot be read as a text file ({e})") from None
    lines = [s.strip() for s in text.splitlines()]
    lines = [s for s in lines if s and not s.startswith("#")]
    if lines and "," in lines[0]:
        df = pd.read_csv(io.StringIO(text), dtype=str, comment="#")
        if "strip" not in df.columns:
            raise SplitError(
                f"{path}: a CSV test-strip file needs a 'strip' column; found "
                f"{', '.join(map(str, df.columns))}"
            )
        ids = [s.strip() for s in df["strip"].dropna()]
    else:
        ids = lines[1:] if lines and lines[0] == "strip" else lines
    if not ids:
        raise SplitError(f"{path}: names no strips; write one strip id per line")
    return ids


def _strip_labels(ws: Path, acqs: pd.DataFrame) -> pd.DataFrame:
    """One row per ingested strip: strip, label."""
    if acqs.empty:
        raise SplitError(f"{ws}: no ingested acquisitions; run `bfsdata ingest RAW -w {ws}` first")
    per = acqs.groupby("strip")["label"].agg(["nunique", "first"])
    mixed = per.index[per["nunique"] > 1].tolist()
    if mixed:
        raise SplitError(
            f"{manifest.path_of(ws, manifest.ACQUISITIONS)}: {len(mixed)} strip(s) carry two "
            f"labels across runs (e.g. {mixed[0]}); one strip is one product with one label"
        )
    return pd.DataFrame({"strip": per.index, "label": per["first"].to_numpy()})


def _check_test_strips(
    strips: pd.DataFrame, names: list[str] | None, notes: list[str]
) -> frozenset[str] | None:
    """The good strips named for the test kit; refuse names the workspace does not hold."""
    if names is None:
        return None
    label = dict(zip(strips["strip"], strips["label"], strict=True))
    missing = sorted({s for s in names if s not in label})
    if missing:
        raise SplitError(
            f"the test-strip list names {len(missing)} strip(s) that are not ingested "
            f"(e.g. {', '.join(missing[:5])}); fix the list or ingest them first"
        )
    unlabelled = sorted({s for s in names if label[s] == "unknown"})
    if unlabelled:
        raise SplitError(
            f"the test-strip list names {len(unlabelled)} strip(s) labelled unknown "
            f"(e.g. {', '.join(unlabelled[:5])}); a test strip needs a good or defect label"
        )
    named = set(names)
    extra = [s for s, lab in label.items() if lab == "defect" and s not in named]
    if extra:
        notes.append(
            f"{len(extra)} defective strip(s) not in the test-strip list join the test kit "
            "anyway (defective strips never train)"
        )
    return frozenset(s for s in named if label[s] == "good")


def _check_good(
    ws: Path, labelled: pd.DataFrame, cfg: SplitConfig, kit: frozenset[str] | None
) -> None:
    n_good = int((labelled["label"] == "good").sum())
    if n_good == 0:
        raise SplitError(
            f"{manifest.path_of(ws, manifest.ACQUISITIONS)}: no good strips; the GAN learns from "
            "good strips only. Label some strips good (raw/labels.csv or a good/ folder) and "
            "ingest them."
        )
    held = len(kit) if kit is not None else cfg.test_good
    if held >= n_good:
        how = "the test-strip list names" if kit is not None else f"--test-good {held} holds out"
        raise SplitError(
            f"{how} every good strip (the workspace has {n_good}); leave at least one for training"
        )


def _args(cfg: SplitConfig, kit: frozenset[str] | None) -> dict[str, Any]:
    return {
        "seed": cfg.seed,
        "val": cfg.val,
        "calib": cfg.calib,
        "test_good": cfg.test_good if kit is None else None,
        "test_strips": sorted(kit) if kit is not None else None,
    }


def _previous(ws: Path, args: dict[str, Any], force: bool) -> pd.DataFrame:
    """Existing assignments when they were made with these arguments; refuse otherwise."""
    old = manifest.read(ws, manifest.SPLITS_SCHEMA)
    if old.empty:
        return old
    path = paths.split_args_file(ws)
    try:
        recorded = json.loads(path.read_text())["args"] if path.exists() else None
    except (ValueError, KeyError):
        raise SplitError(f"{path}: unreadable; delete it and run again with --force") from None
    if recorded == args:
        return old
    if recorded is None:
        why = f"{path} is missing, so the arguments of the existing split are unknown"
    else:
        changed = [k for k in args if recorded.get(k) != args[k]]
        why = "; ".join(f"{k} was {_show(recorded.get(k))}, now {_show(args[k])}" for k in changed)
    if not force:
        raise SplitError(
            f"{manifest.path_of(ws, manifest.SPLITS_SCHEMA)} was made with other arguments "
            f"({why}). Run again with the recorded arguments to keep it, or pass --force to "
            "redraw every strip (a model trained on the old split is then no longer comparable)."
        )
    log.warning("split: redrawing every strip (--force): %s", why)
    return manifest.SPLITS_SCHEMA.empty()


def _show(v: Any) -> str:
    if isinstance(v, list):
        return f"a list of {len(v)} strips"
    return "unset" if v is None else str(v)


def _strata(ws: Path, labelled: pd.DataFrame) -> pd.Series:
    """(label, defect type) per strip: `good/none`, or `defect/<first annotated defect>`."""
    ann = manifest.read(ws, manifest.ANNOTATIONS).dropna(subset=["defect"])
    first = ann.drop_duplicates("strip").set_index("strip")["defect"]
    kind = labelled["strip"].map(first).astype(object).fillna("unspecified")
    kind = kind.where(labelled["label"] == "defect", "none")
    return labelled["label"] + "/" + kind


def _kept(
    old: pd.DataFrame, labelled: pd.DataFrame, kit: frozenset[str] | None, notes: list[str]
) -> tuple[pd.DataFrame, bool]:
    """Old assignments still valid for the strips as they are now; (kept rows, any dropped)."""
    if old.empty:
        return labelled.iloc[:0].assign(split=pd.Series(dtype=str)), False
    merged = old[["strip", "split"]].merge(labelled, on="strip", how="inner")
    in_kit = merged["split"].isin(KIT)
    valid = (merged["label"] == "good") | in_kit
    if kit is not None:
        valid &= (merged["label"] == "defect") | (merged["strip"].isin(kit) == in_kit)
    gone = len(old) - len(merged)
    if gone:
        notes.append(f"{gone} strip(s) no longer labelled or ingested were removed from the split")
    if (~valid).any():
        notes.append(f"{int((~valid).sum())} strip(s) whose label changed were assigned again")
    return merged[valid].reset_index(drop=True), bool(gone or (~valid).any())


def _assign(
    new: pd.DataFrame, kept: pd.DataFrame, cfg: SplitConfig, kit: frozenset[str] | None
) -> pd.DataFrame:
    """Splits of the new strips, given the kept ones, keeping every share as near as possible."""
    new = new.assign(key=[_key(cfg.seed, s) for s in new["strip"]]).sort_values("key")
    good = new[new["label"] == "good"]
    if kit is not None:
        held = good[good["strip"].isin(kit)]
    else:
        kept_held = int(((kept["label"] == "good") & kept["split"].isin(KIT)).sum())
        held = good.iloc[: max(0, cfg.test_good - kept_held)]
    pool = good[~good["strip"].isin(held["strip"])]
    kit_new = pd.concat([held, new[new["label"] == "defect"]]).sort_values("key")

    out: dict[str, str] = {}
    kept_pool = kept[kept["split"].isin(("train", "val"))]
    n_val = _val_count(cfg.val, len(kept_pool) + len(pool)) - int((kept["split"] == "val").sum())
    for i, strip in enumerate(pool["strip"]):
        out[strip] = "val" if i < n_val else "train"
    for stratum, group in kit_new.groupby("stratum", sort=True):
        before = kept[kept["stratum"] == stratum]
        target = _calib_count(cfg, stratum, len(before) + len(group))
        n_calib = target - int((before["split"] == "calib").sum())
        for i, strip in enumerate(group["strip"]):
            out[strip] = "calib" if i < n_calib else "test"
    return pd.DataFrame({"strip": list(out), "split": list(out.values())})


def _key(seed: int, strip: str) -> str:
    """A strip's place in every random order: independent of which other strips exist."""
    return hashlib.sha256(f"{seed}:{strip}".encode()).hexdigest()


def _val_count(val: float, n: int) -> int:
    """round(val * n), at least 1 when val > 0 and n >= 2, never all of them."""
    if val == 0 or n == 0:
        return 0
    k = math.floor(val * n + 0.5)
    return min(max(k, 1 if n >= 2 else 0), n - 1)


def _calib_count(cfg: SplitConfig, stratum: str, n: int) -> int:
    """calib * n rounded at random (seeded per stratum): small strata of one strip each then
    split between calib and test in the right proportion overall, not all one way."""
    u = int(_key(cfg.seed, f"stratum:{stratum}")[:8], 16) / 16**8  # in [0, 1)
    return math.floor(cfg.calib * n + u)


def _write_args(ws: Path, args: dict[str, Any]) -> None:
    path = paths.split_args_file(ws)
    doc = {"args": args, "written_at": pd.Timestamp.now(tz="UTC").isoformat()}
    path.parent.mkdir(parents=True, exist_ok=True)  # with --store the parquet files are elsewhere
    write_atomic(path, (json.dumps(doc, indent=2) + "\n").encode())


def _notes(table: pd.DataFrame, cfg: SplitConfig, unknown: int, no_patches: bool) -> list[str]:
    """What the person should know, above all what the report will lack for honest figures."""
    notes = []
    if unknown:
        notes.append(f"{unknown} strip(s) labelled unknown are in no split (inference only)")
    if no_patches:
        notes.append("no patches yet (run `bfsdata patch`): patch counts are 0")
    if cfg.calib == 0:
        notes.append(
            "calib 0: the whole test kit is in test and thresholds will be fitted on it "
            "(in-sample, as in the paper); the report's figures are optimistic"
        )
    defect = table[table["label"] == "defect"].set_index("split")["strips"]
    if defect.sum() == 0:
        notes.append("no defective strips: the report can measure false rejects only")
    else:
        if cfg.calib > 0 and defect.get("calib", 0) == 0:
            notes.append("calib holds no defective strip: thresholds see no defects")
        if defect.get("test", 0) == 0:
            notes.append("test holds no defective strip: escapes cannot be measured")
    return notes
