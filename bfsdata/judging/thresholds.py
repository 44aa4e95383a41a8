"""Threshold policies, one exact threshold per region, and re-tuning them at item level.

A policy says which cut is best, as a lexicographic objective where higher is better, made of
confusion counts only (integers, so comparisons are exact):

- `accuracy` (the paper's phi_t): (good accepted + defect rejected, defect rejected)
- `balanced`: ((good accepted ratio + defect rejected ratio) / 2, defect rejected); with one
  class absent, that class's ratio alone
- `frr:X`: (FRR <= X, defect rejected, -good rejected): the most defects caught within a
  false reject budget, then the fewest false rejects
- `escape:X`: (escape rate <= X, -good rejected, defect rejected): the fewest false rejects
  that keep escapes within budget; `escape:0` rejects every defective item seen

A budget is tested as the rate the report prints (good_rejected / n_good <= X), so `frr:0.1`
allows exactly 1 false reject in 10 good items. A policy always has a feasible cut (above every
score for `frr`, below every score for `escape`).

Ties. The second key already breaks accuracy/balanced ties toward catching more defects, and
any tie left goes to the lowest threshold. Both lean the same way on purpose: at equal
objective, the cut that rejects more is the one that lets fewer defects out, and an escape is
the GMP-critical error. A single-region fit never needs the last rule (distinct cuts give
distinct counts); re-tuning can, when other regions already reject the items in between.

Candidates. The cut points of a score column are the midpoints between consecutive distinct
scores, plus half the outermost gap below the minimum and above the maximum (0.5 when there is
a single distinct score). A threshold halfway between scores, never on one, is the most robust
to small score drifts; with `score > t` every partition of the sorted scores is reached.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from bfsdata.config.policy import Policy, parse_policy
from bfsdata.judging.decisions import Decide, threshold_vector
from bfsdata.judging.metrics import as_bool

log = logging.getLogger(__name__)

Key = tuple[Any, ...]  # lexicographic objective, higher is better


def policy_keys(
    policy: str | Policy, good_rejected: Any, defect_rejected: Any, n_good: int, n_defect: int
) -> tuple[np.ndarray, ...]:
    """The policy's objective for each candidate (arrays of counts), most significant first."""
    p = parse_policy(policy)
    gr = np.asarray(good_rejected, dtype=np.int64)
    dr = np.asarray(defect_rejected, dtype=np.int64)
    G, D = int(n_good), int(n_defect)
    if p.kind == "accuracy":
        return (G - gr + dr, dr)
    if p.kind == "balanced":
        # (ga/G + dr/D) / 2 scaled by 2 G D: an integer, so ties are exact
        both = D * (G - gr) + G * dr if G and D else (G - gr if G else dr)
        return (both, dr)
    if p.kind == "frr":
        ok = gr / G <= p.limit if G else np.ones_like(gr, dtype=bool)
        return (ok, dr, -gr)
    ok = (D - dr) / D <= p.limit if D else np.ones_like(dr, dtype=bool)
    return (ok, -gr, dr)


def objective(policy: str | Policy, is_defect: Any, rejected: Any) -> Key:
    """The policy's objective of one decision vector, as a comparable tuple."""
    d = as_bool(is_defect, "is_defect")
    r = as_bool(rejected, "rejected")
    keys = policy_keys(policy, (~d & r).sum(), (d & r).sum(), int((~d).sum()), int(d.sum()))
    return tuple(k.item() for k in keys)


def best_index(keys: tuple[np.ndarray, ...]) -> int:
    """Index of the lexicographically largest key; ties to the lowest index."""
    n = np.broadcast(*keys).shape[0]
    # lexsort sorts ascending by the last key first; -index makes the lowest index sort last
    order = np.lexsort((-np.arange(n), *reversed([np.broadcast_to(k, (n,)) for k in keys])))
    return int(order[-1])


def cut_points(score: Any) -> np.ndarray:
    """Sorted candidate thresholds: one per partition `score > t` of the finite scores."""
    u = np.unique(np.asarray(score, dtype=float))
    u = u[np.isfinite(u)]
    if u.size == 0:
        return u
    lo_gap = (u[1] - u[0]) / 2 if u.size > 1 else 0.5
    hi_gap = (u[-1] - u[-2]) / 2 if u.size > 1 else 0.5
    mids = u[:-1] + (u[1:] - u[:-1]) / 2
    # rounding must not push a midpoint onto the upper score (t == a still splits a | b)
    mids = np.minimum(mids, np.nextafter(u[1:], -np.inf))
    lo = min(u[0] - lo_gap, np.nextafter(u[0], -np.inf))
    return np.concatenate([[lo], mids, [u[-1] + hi_gap]])


def fit_threshold(score: Any, is_defect: Any, policy: str | Policy) -> float:
    """The policy's optimal threshold over all cut points, in O(n log n)."""
    s = np.asarray(score, dtype=float)
    d = as_bool(is_defect, "is_defect")
    if s.shape != d.shape:
        raise ValueError(f"score has shape {s.shape} but is_defect has {d.size} items")
    if s.size == 0:
        raise ValueError("cannot fit a threshold on no scores")
    if not np.isfinite(s).all():
        raise ValueError(f"score has {int((~np.isfinite(s)).sum())} NaN or infinite values")
    u, inv = np.unique(s, return_inverse=True)
    # cut j (0..k) rejects exactly the distinct scores u[j:], so counts are suffix sums
    good_at = np.bincount(inv[~d], minlength=u.size)
    defect_at = np.bincount(inv[d], minlength=u.size)
    gr = np.r_[np.cumsum(good_at[::-1])[::-1], 0]
    dr = np.r_[np.cumsum(defect_at[::-1])[::-1], 0]
    keys = policy_keys(policy, gr, dr, int(good_at.sum()), int(defect_at.sum()))
    return float(cut_points(u)[best_index(keys)])


def _need(df: pd.DataFrame, cols: list[str], what: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"{what} lacks columns {missing}; it has {list(df.columns)}")


def fit_region_thresholds(
    scores: pd.DataFrame,
    policy: str | Policy,
    *,
    region_col: str = "region",
    score_col: str = "score",
    label_col: str = "is_defect",
) -> dict[int, float]:
    """One `fit_threshold` per region (the paper's Table 1), keyed by region."""
    _need(scores, [region_col, score_col, label_col], "scores table")
    p = parse_policy(policy)
    return {
        int(r): fit_threshold(g[score_col].to_numpy(), g[label_col].to_numpy(), p)
        for r, g in scores.groupby(region_col, sort=True)
    }


def item_matrix(
    df: pd.DataFrame,
    item_cols: list[str],
    region_col: str = "region",
    score_col: str = "score",
    *,
    regions: list[int] | None = None,
    label_col: str = "is_defect",
) -> tuple[pd.DataFrame, np.ndarray]:
    """Max score of each item in each region (paper eq. 13): (items, M).

    items has one row per item (item_cols, sorted) and, when df has `label_col`, the item's
    label (defective if any of its patches is). M is (n_items, n_regions), column j the region
    regions[j] (default: df's regions sorted); -inf where an item has no patch in a region,
    which no threshold rejects.
    """
    _need(df, [*item_cols, region_col, score_col], "patch table")
    if df[score_col].isna().any():
        raise ValueError(f"{int(df[score_col].isna().sum())} patches have no {score_col}")
    if regions is None:
        regions = sorted(int(r) for r in df[region_col].unique())
    wide = df.groupby([*item_cols, region_col], sort=True)[score_col].max().unstack(region_col)
    M = np.array(wide.reindex(columns=regions), dtype=float)  # (n_items, n_regions), a copy
    M[np.isnan(M)] = -np.inf
    items = wide.index.to_frame(index=False)
    if label_col in df.columns:
        lab = df.groupby(item_cols, sort=True)[label_col].any()
        items[label_col] = lab.reindex(wide.index).to_numpy(dtype=bool)
    return items, M


def tune_thresholds(
    M: np.ndarray,
    is_defect: Any,
    init: dict[int, float],
    policy: str | Policy,
    *,
    decide: Decide | None = None,
    max_rounds: int = 20,
) -> dict[int, float]:
    """Coordinate ascent on the region thresholds, judged at item level (or by `decide`).

    M is (n_items, n_regions), column j the region sorted(init)[j]; an item is rejected when
    any M[i, j] > t[j]. Each round visits the regions in order and moves one threshold to its
    best cut point with the others fixed, only on a strict improvement; it stops after a round
    without one (or `max_rounds`). The result is never worse than `init` and no single
    threshold can then improve it, but it is a local optimum: with the OR of regions, two
    thresholds that must rise together (every item rejected by both) can trap it.

    `decide` maps the item-rejected vector to (is_defect, rejected) at the judged level (e.g.
    `decisions.runwise_decider` for strip-runs -> strips); is_defect may then be None.
    """
    p = parse_policy(policy)
    m = np.asarray(M, dtype=float)  # (n_items, n_regions)
    if m.ndim != 2:
        raise ValueError(f"M must be (n_items, n_regions), got shape {m.shape}")
    if np.isnan(m).any():
        raise ValueError("M has NaN; use -inf for an item without a patch in a region")
    t = threshold_vector(init, m.shape[1])
    d = None
    if decide is None:
        if is_defect is None:
            raise ValueError("tune_thresholds needs is_defect unless decide is given")
        d = as_bool(is_defect, "is_defect")
        if d.size != m.shape[0]:
            raise ValueError(f"M has {m.shape[0]} items but is_defect has {d.size}")

    def judge(rejected: np.ndarray) -> Key:
        return objective(p, d, rejected) if decide is None else objective(p, *decide(rejected))

    over = m > t  # (n_items, n_regions)
    current = judge(over.any(axis=1))
    for _ in range(max_rounds):
        moved = False
        for j in range(m.shape[1]):
            cands = cut_points(m[:, j])
            if cands.size == 0:
                continue  # no item has this region: its threshold cannot matter
            base = np.delete(over, j, axis=1).any(axis=1)  # rejected by the other regions
            if d is None:
                keys = _candidate_keys(m[:, j], base, cands, judge)
            else:
                keys = _candidate_counts(p, m[:, j], base, cands, d)
            k = best_index(keys)
            key = tuple(c[k].item() for c in keys)
            if key > current:
                t[j], current, moved = cands[k], key, True
                over[:, j] = m[:, j] > t[j]
        if not moved:
            break
    else:
        log.warning("threshold tuning stopped after %d rounds, still improving", max_rounds)
    return {r: float(v) for r, v in zip(sorted(init), t, strict=True)}


def _candidate_counts(
    p: Policy, col: np.ndarray, base: np.ndarray, cands: np.ndarray, d: np.ndarray
) -> tuple[np.ndarray, ...]:
    """Objective of every candidate for one region judged per item: O(n log n) from counts."""
    free_good = np.sort(col[~base & ~d])  # items the other regions do not already reject
    free_defect = np.sort(col[~base & d])
    gr = (base & ~d).sum() + free_good.size - np.searchsorted(free_good, cands, side="right")
    dr = (base & d).sum() + free_defect.size - np.searchsorted(free_defect, cands, side="right")
    return policy_keys(p, gr, dr, int((~d).sum()), int(d.sum()))


def _candidate_keys(
    col: np.ndarray, base: np.ndarray, cands: np.ndarray, judge: Callable[[np.ndarray], Key]
) -> tuple[np.ndarray, ...]:
    """Objective of every candidate for one region through `decide`; candidates that reject
    the same items (no free item's score between them) are evaluated once."""
    free = np.sort(col[~base])  # items the other regions do not already reject
    n_over = free.size - np.searchsorted(free, cands, side="right")  # free items over each cut
    _, first, back = np.unique(n_over, return_index=True, return_inverse=True)
    rows = [judge(base | (col > c)) for c in cands[first]]
    return tuple(np.array(k)[back] for k in zip(*rows, strict=True))
