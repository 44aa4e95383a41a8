"""Rates with exact confidence intervals, AUROC and the ROC curve: pure functions on arrays.

Vocabulary: docs/design.md. An item is *rejected* when its score is strictly greater than its
threshold. `is_defect` True is a defective product (the paper's "negative"), False a good
one (the paper's "positive"). Both vocabularies are reported:

- paper "true positive ratio" = `good_accepted_ratio` = good accepted / good
- paper "true negative ratio" = `defect_rejected_ratio` = defect rejected / defect
- pharma `false_reject_rate` = good rejected / good (1 - good_accepted_ratio)
- pharma `escape_rate` = defect accepted / defect (1 - defect_rejected_ratio)
- `accuracy` = (good accepted + defect rejected) / all

For the ROC the *defect* is the positive class and a higher score is more anomalous, so AUROC is
the probability that a random defective item scores above a random good one (ties count half).
"""

from __future__ import annotations

from typing import Any

import numpy as np

# scipy.special, not scipy.stats: every command loads its pipeline, which validates the threshold
# policy through this module, and scipy.stats is slow to import (docs/performance.md, Start-up).
from scipy.special import betaincinv

Rate = dict[str, float]  # {"value", "lo", "hi"}


def clopper_pearson(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Exact two-sided (1 - alpha) interval for a binomial proportion k / n.

    Exact (conservative) rather than Wald or Wilson because validation kits are small and the
    interesting rates sit at 0 or 1, where approximate intervals undercover. (nan, nan) if n == 0.
    """
    k, n = int(k), int(n)
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if n < 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return (float("nan"), float("nan"))
    # the Beta distribution's quantile function is the inverse regularised incomplete beta
    lo = 0.0 if k == 0 else float(betaincinv(k, n - k + 1, alpha / 2))
    hi = 1.0 if k == n else float(betaincinv(k + 1, n - k, 1 - alpha / 2))
    return (lo, hi)


def as_bool(x: Any, name: str) -> np.ndarray:
    """1-D bool array from bools or 0/1 numbers; anything else is a caller's mistake."""
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    if a.dtype == bool:
        return a
    if a.size and not np.isin(a, (0, 1)).all():
        raise ValueError(f"{name} must be bool (or 0/1), found values {np.unique(a)[:5]}")
    return a.astype(bool)


def _rate(k: int, n: int, alpha: float) -> Rate | None:
    if n == 0:
        return None  # a rate of an empty class is undefined, not 0
    lo, hi = clopper_pearson(k, n, alpha)
    return {"value": k / n, "lo": lo, "hi": hi}


def rates(is_defect: Any, rejected: Any, alpha: float = 0.05) -> dict[str, Any]:
    """Confusion counts and every rate with its Clopper-Pearson interval (plain Python types).

    Keys: n, n_good, n_defect, good_accepted, good_rejected, defect_rejected, defect_accepted
    (ints); accuracy, good_accepted_ratio, defect_rejected_ratio, false_reject_rate,
    escape_rate ({"value", "lo", "hi"}, or None when the class it divides by is empty); alpha.
    """
    d = as_bool(is_defect, "is_defect")
    r = as_bool(rejected, "rejected")
    if d.shape != r.shape:
        raise ValueError(f"is_defect has {d.size} items but rejected has {r.size}")
    n_defect = int(d.sum())
    n_good = int(d.size - n_defect)
    defect_rejected = int((d & r).sum())
    good_rejected = int((~d & r).sum())
    good_accepted = n_good - good_rejected
    defect_accepted = n_defect - defect_rejected
    n = n_good + n_defect
    return {
        "n": n,
        "n_good": n_good,
        "n_defect": n_defect,
        "good_accepted": good_accepted,
        "good_rejected": good_rejected,
        "defect_rejected": defect_rejected,
        "defect_accepted": defect_accepted,
        "accuracy": _rate(good_accepted + defect_rejected, n, alpha),
        "good_accepted_ratio": _rate(good_accepted, n_good, alpha),
        "defect_rejected_ratio": _rate(defect_rejected, n_defect, alpha),
        "false_reject_rate": _rate(good_rejected, n_good, alpha),
        "escape_rate": _rate(defect_accepted, n_defect, alpha),
        "alpha": float(alpha),
    }


def _labels_scores(is_defect: Any, score: Any) -> tuple[np.ndarray, np.ndarray]:
    d = as_bool(is_defect, "is_defect")
    s = np.asarray(score, dtype=float)
    if s.shape != d.shape:
        raise ValueError(f"is_defect has {d.size} items but score has shape {s.shape}")
    if np.isnan(s).any():
        raise ValueError(f"score has {int(np.isnan(s).sum())} NaN values; drop or fix them first")
    return d, s


def auroc(is_defect: Any, score: Any) -> float | None:
    """Area under the ROC curve, defect = positive; None if either class is absent.

    Computed as the Mann-Whitney U statistic from average ranks, which counts ties half and
    equals the trapezoidal area (sklearn's roc_auc_score) without building the curve.
    """
    d, s = _labels_scores(is_defect, score)
    n_pos = int(d.sum())
    n_neg = d.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = _average_ranks(s)  # a tie between classes adds 1/2
    u = ranks[d].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def _average_ranks(s: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing the mean of their ranks (scipy's rankdata default)."""
    order = np.argsort(s, kind="stable")
    v = s[order]
    starts = np.flatnonzero(np.r_[True, v[1:] != v[:-1]])
    ends = np.r_[starts[1:], v.size]
    ranks = np.empty(v.size)
    ranks[order] = np.repeat((starts + ends + 1) / 2, ends - starts)
    return ranks


def roc_curve(is_defect: Any, score: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) with defect = positive, like sklearn's drop_intermediate=False.

    thresholds are the distinct scores in decreasing order with +inf prepended; point k counts
    items with score >= thresholds[k] as flagged (sklearn's convention, not this package's
    strict `score > t`: the point at thresholds[k] is what a threshold just below it gives).
    fpr = good flagged / good, tpr = defect flagged / defect.
    """
    d, s = _labels_scores(is_defect, score)
    n_pos = int(d.sum())
    if n_pos == 0 or n_pos == d.size:
        which = "defective" if n_pos == 0 else "good"
        raise ValueError(f"roc_curve needs both good and defective items; found no {which} item")
    order = np.argsort(-s, kind="stable")
    s_desc, d_desc = s[order], d[order]
    # last index of each run of equal scores: the curve only moves between distinct scores
    last = np.r_[np.flatnonzero(s_desc[1:] != s_desc[:-1]), s_desc.size - 1]
    tps = np.cumsum(d_desc)[last]
    fps = (last + 1) - tps
    tpr = np.r_[0, tps] / n_pos
    fpr = np.r_[0, fps] / (d.size - n_pos)
    thresholds = np.r_[np.inf, s_desc[last]]
    return fpr, tpr, thresholds
