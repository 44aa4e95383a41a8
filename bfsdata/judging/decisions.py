"""From scores to decisions: items over thresholds, strips judged over runs, the Knapp table.

Each strip of the Knapp kit is acquired in several runs (the paper: 10). A strip-run is
rejected when any region of it scores over that region's threshold (paper eq. 13, max
aggregation). A strip is then judged on its runs (paper section 7.4, the client's policy):

- `reject` if rejected in at least `need` runs, `accept` if accepted in at least `need` runs,
  otherwise `undecided`; `need = ceil(min_agree * runs / 10)`, i.e. the paper's 7 of 10 kept as
  a fraction (never rounded in the strip's favour) when a strip has other than 10 runs;
- `correct` when a good strip is accepted, a defective one rejected, by that rule: an
  undecided strip is wrong whatever its label.

The Knapp quality factor of a strip is FQ = 10 * rejections / inspections (FQA for the
machine, FQV for manual inspection), and its zone is `accept` for FQ <= 3, `grey` for
3 < FQ < 7 and `reject` for FQ >= 7. With 10 inspections FQ is an integer and these are
Knapp's zones 0-3, 4-6, 7-10 exactly. A fractional FQ (other than 10 inspections) goes to grey
whenever it is strictly between 3 and 7: the reject boundary is the rounded-down FQ (6.9 is
grey) and the accept boundary the rounded-up FQ (3.1 is grey), so that with the default
min_agree = 7 a strip's zone is always its decision (accept, undecided, reject). Zone
comparisons are made on integers (10 * r vs 7 * n), never on the float FQ.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from fractions import Fraction
from typing import Any

import numpy as np
import pandas as pd

from bfsdata.judging.metrics import as_bool

KNAPP_INSPECTIONS = 10  # FQ is normalised to 10 inspections
ACCEPT_MAX = 3  # FQ <= 3: accept zone
REJECT_MIN = 7  # FQ >= 7: reject zone

# rejected vector at item level -> (is_defect, rejected) at the level whose correctness counts
Decide = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def threshold_vector(thresholds: Mapping[int, float] | Any, n_regions: int) -> np.ndarray:
    """Thresholds as a (n_regions,) float array; a mapping is read in sorted-region order."""
    if isinstance(thresholds, Mapping):
        t = np.array([thresholds[r] for r in sorted(thresholds)], dtype=float)
    else:
        t = np.asarray(thresholds, dtype=float).reshape(-1)
    if t.size != n_regions:
        raise ValueError(f"{t.size} thresholds for {n_regions} region columns")
    return t


def reject_items(M: np.ndarray, thresholds: Mapping[int, float] | Any) -> np.ndarray:
    """(n_items,) bool: any region of the item scores strictly over its threshold.

    M is (n_items, n_regions), column j the region sorted(thresholds)[j] when thresholds is a
    mapping; -inf (an item without a patch in that region) is never over a threshold.
    """
    m = np.asarray(M, dtype=float)  # (n_items, n_regions)
    if m.ndim != 2:
        raise ValueError(f"M must be (n_items, n_regions), got shape {m.shape}")
    return (m > threshold_vector(thresholds, m.shape[1])).any(axis=1)


def required(runs: np.ndarray | int, min_agree: int = 7) -> np.ndarray:
    """Runs that must agree: ceil(min_agree * runs / 10), in integers."""
    if not 5 < min_agree <= KNAPP_INSPECTIONS:
        # at 5 or below a strip could be both accepted and rejected
        raise ValueError(f"min_agree must be 6..10 (out of 10), got {min_agree}")
    runs = np.asarray(runs, dtype=np.int64)
    return -(-(min_agree * runs) // KNAPP_INSPECTIONS)


def quality_factor(rejections: Any, inspections: Any) -> np.ndarray:
    """FQ = 10 * rejections / inspections (exact when the result is an integer)."""
    return KNAPP_INSPECTIONS * np.asarray(rejections, dtype=float) / np.asarray(inspections)


def zone(rejections: Any, inspections: Any) -> np.ndarray:
    """Knapp zone of each FQ: 'accept' (FQ <= 3), 'grey' (3 < FQ < 7), 'reject' (FQ >= 7)."""
    r = np.asarray(rejections, dtype=np.int64)
    n = np.asarray(inspections, dtype=np.int64)
    fq10 = KNAPP_INSPECTIONS * r  # compare 10 r with 3 n and 7 n: no float rounding at 3.0
    return np.where(
        fq10 >= REJECT_MIN * n, "reject", np.where(fq10 <= ACCEPT_MAX * n, "accept", "grey")
    )


def _strips(
    strip_ids: Any, is_defect_runs: Any, runs: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(strip ids, code of each strip-run, is_defect per strip, runs per strip), validated."""
    ids, codes = np.unique(np.asarray(strip_ids), return_inverse=True)
    d = as_bool(is_defect_runs, "is_defect_strip")
    if d.size != codes.size:
        raise ValueError(f"{codes.size} strip ids but {d.size} is_defect_strip values")
    n_runs = np.bincount(codes, minlength=ids.size)
    n_def = np.bincount(codes, weights=d, minlength=ids.size).astype(np.int64)
    mixed = ids[(n_def > 0) & (n_def < n_runs)]
    if mixed.size:
        raise ValueError(f"strips with both labels across their runs: {list(mixed[:5])}")
    if runs is not None:
        off = ids[n_runs != runs]
        if off.size:
            raise ValueError(
                f"{off.size} strips do not have {runs} runs (e.g. {list(off[:5])}); "
                "pass runs=None to judge each strip on the runs it has"
            )
    return ids, codes, n_def > 0, n_runs


def _judge(
    is_defect: np.ndarray, rejections: np.ndarray, n_runs: np.ndarray, need: np.ndarray
) -> np.ndarray:
    """Counted as rejected: a defect rejected in >= need runs, a good strip NOT accepted in
    >= need runs. So `rejected != is_defect` is exactly "misjudged" and an undecided strip
    is a false reject if good, an escape if defective."""
    return np.where(is_defect, rejections >= need, (n_runs - rejections) < need)


def runwise(
    strip_ids: Any,
    run_rejected: Any,
    is_defect_strip: Any,
    *,
    min_agree: int = 7,
    runs: int | None = None,
) -> pd.DataFrame:
    """One row per strip (sorted by strip id) judged on its runs.

    Inputs are aligned per strip-run: the strip it belongs to, whether that run rejected it,
    and the strip's label. `runs`, when given, is the number of runs every strip must have
    (ValueError otherwise); None judges each strip on the runs it has.

    Columns: strip, is_defect, runs, rejections, need (runs that must agree), fqa, zone,
    decision (accept / undecided / reject), correct, rejected (as counted in the confusion
    table, see `_judge`: `metrics.rates(t.is_defect, t.rejected)` gives the run-wise table).
    """
    ids, codes, is_defect, n_runs = _strips(strip_ids, is_defect_strip, runs)
    rej = as_bool(run_rejected, "run_rejected")
    if rej.size != codes.size:
        raise ValueError(f"{codes.size} strip ids but {rej.size} run_rejected values")
    rejections = np.bincount(codes, weights=rej, minlength=ids.size).astype(np.int64)
    need = required(n_runs, min_agree)
    decision = np.where(
        rejections >= need, "reject", np.where(n_runs - rejections >= need, "accept", "undecided")
    )
    judged = _judge(is_defect, rejections, n_runs, need)
    return pd.DataFrame(
        {
            "strip": ids,
            "is_defect": is_defect,
            "runs": n_runs.astype(np.int64),
            "rejections": rejections,
            "need": need,
            "fqa": quality_factor(rejections, n_runs),
            "zone": zone(rejections, n_runs),
            "decision": decision,
            "correct": judged == is_defect,
            "rejected": judged,
        }
    )


def runwise_decider(
    strip_ids: Any, is_defect_strip: Any, *, min_agree: int = 7, runs: int | None = None
) -> Decide:
    """`decide` for thresholds.tune_thresholds: strip-run rejections -> (is_defect, rejected)
    per strip, by the same rule as `runwise` but without building a DataFrame (it is called
    once per candidate threshold)."""
    ids, codes, is_defect, n_runs = _strips(strip_ids, is_defect_strip, runs)
    need = required(n_runs, min_agree)

    def decide(run_rejected: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rejections = np.bincount(codes, weights=run_rejected, minlength=ids.size)
        return is_defect, _judge(is_defect, rejections, n_runs, need)

    return decide


def _fq_sum(rejections: np.ndarray, inspections: np.ndarray, mask: np.ndarray) -> Fraction:
    """Exact sum of FQ over `mask`, so that efficiency == 100% is decided without rounding."""
    return sum(
        (
            Fraction(KNAPP_INSPECTIONS * int(r), int(n))
            for r, n in zip(rejections[mask], inspections[mask], strict=True)
        ),
        Fraction(0),
    )


def _manual(manual: pd.DataFrame, strips: pd.Series) -> pd.DataFrame:
    missing = {"strip", "rejections", "inspections"} - set(manual.columns)
    if missing:
        raise ValueError(f"manual table lacks columns {sorted(missing)}")
    m = manual[["strip", "rejections", "inspections"]]
    if m["strip"].duplicated().any():
        raise ValueError(
            f"manual table repeats strips {list(m['strip'][m['strip'].duplicated()][:5])}"
        )
    bad = (m["inspections"] <= 0) | (m["rejections"] < 0) | (m["rejections"] > m["inspections"])
    if bad.any():
        raise ValueError(
            f"manual rows need 0 <= rejections <= inspections, inspections > 0: "
            f"strips {list(m['strip'][bad][:5])}"
        )
    only_m = sorted(set(m["strip"]) - set(strips))
    only_a = sorted(set(strips) - set(m["strip"]))
    if only_m or only_a:
        raise ValueError(
            "Knapp efficiency compares machine and manual on the same kit: strips only in the "
            f"manual table {only_m[:5]}, only in the machine table {only_a[:5]}"
        )
    return m.rename(columns={"rejections": "manual_rejections"})


def knapp(table: pd.DataFrame, manual: pd.DataFrame | None = None) -> dict[str, Any]:
    """Knapp qualification of the machine (FQA) against manual inspection (FQV).

    `table` has one row per strip with strip, runs and rejections (the output of `runwise`);
    `manual` one row per strip with strip, rejections, inspections (all inspectors' passes
    together). FQA_7-10 is the sum of FQA over the strips whose FQA is in the reject zone,
    FQV_7-10 the sum of FQV over the strips whose FQV is; both sums run over the same kit of
    strips (a strip missing from either table is an error), so their ratio, the efficiency,
    compares how much rejection each inspection puts in its reject zone for the same
    containers. The machine passes at efficiency >= 1.0 (100%), decided on exact fractions.

    Because each sum is taken in its own reject zone, a machine that wrongly puts good strips
    in its reject zone raises FQA_7-10: read the efficiency with the false reject rate. The
    supplementary `efficiency_manual_zone` sums FQA only over the strips whose FQV is in 7-10
    (the containers the manual inspection calls must-reject) and cannot be inflated that way.

    FQV_7-10 == 0 (no strip in the manual reject zone) leaves efficiency, efficiency_manual_zone
    and pass None: there is nothing the machine must match, so the test says nothing.

    Returns n_strips, fqa_7_10, fqv_7_10, fqa_manual_zone, efficiency, efficiency_manual_zone,
    pass (floats / bool / None), and `table`: the per-strip rows with fqa, zone and, with
    `manual`, manual_rejections, inspections, fqv, manual_zone.
    """
    missing = {"strip", "runs", "rejections"} - set(table.columns)
    if missing:
        raise ValueError(f"machine table lacks columns {sorted(missing)} (expected runwise output)")
    t = table.copy()
    r_a = t["rejections"].to_numpy(np.int64)
    n_a = t["runs"].to_numpy(np.int64)
    t["fqa"] = quality_factor(r_a, n_a)
    t["zone"] = zone(r_a, n_a)
    fqa = _fq_sum(r_a, n_a, t["zone"].to_numpy() == "reject")
    out: dict[str, Any] = {
        "n_strips": len(t),
        "fqa_7_10": float(fqa),
        "fqv_7_10": None,
        "fqa_manual_zone": None,
        "efficiency": None,
        "efficiency_manual_zone": None,
        "pass": None,
    }
    if manual is None:
        out["table"] = t
        return out
    t = t.merge(_manual(manual, t["strip"]), on="strip", how="left", validate="one_to_one")
    r_v = t["manual_rejections"].to_numpy(np.int64)
    n_v = t["inspections"].to_numpy(np.int64)
    t["fqv"] = quality_factor(r_v, n_v)
    t["manual_zone"] = zone(r_v, n_v)
    in_v = t["manual_zone"].to_numpy() == "reject"
    fqv = _fq_sum(r_v, n_v, in_v)
    fqa_v = _fq_sum(r_a, n_a, in_v)
    out |= {"fqv_7_10": float(fqv), "fqa_manual_zone": float(fqa_v), "table": t}
    if fqv > 0:
        out |= {
            "efficiency": float(fqa / fqv),
            "efficiency_manual_zone": float(fqa_v / fqv),
            "pass": bool(fqa >= fqv),
        }
    return out
