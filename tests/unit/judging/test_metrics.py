"""Rates, Clopper-Pearson intervals, AUROC and the ROC curve against scipy and scikit-learn."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from bfsdata.judging.metrics import auroc, clopper_pearson, rates, roc_curve


def _random(seed: int, n: int = 200, levels: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Labels and scores with many ties (scores on a coarse grid)."""
    rng = np.random.default_rng(seed)
    d = rng.random(n) < 0.4
    s = np.round(rng.random(n) * levels + d * 3) / levels  # defects score higher, with overlap
    return d, s


@pytest.mark.parametrize(("k", "n"), [(0, 1), (0, 10), (3, 10), (10, 10), (1, 120), (119, 120)])
def test_clopper_pearson_is_beta_quantiles(k: int, n: int) -> None:
    lo, hi = clopper_pearson(k, n, alpha=0.05)
    assert lo == (0.0 if k == 0 else pytest.approx(stats.beta.ppf(0.025, k, n - k + 1)))
    assert hi == (1.0 if k == n else pytest.approx(stats.beta.ppf(0.975, k + 1, n - k)))
    assert lo <= k / n <= hi


def test_clopper_pearson_closed_forms_at_the_edges() -> None:
    # k = 0: hi solves (1 - p)^n = alpha / 2; k = n: lo solves p^n = alpha / 2
    assert clopper_pearson(0, 10)[1] == pytest.approx(1 - 0.025 ** (1 / 10))
    assert clopper_pearson(10, 10)[0] == pytest.approx(0.025 ** (1 / 10))
    lo, hi = clopper_pearson(116, 120)  # paper Table 3 scale: about 96.7 % good accepted
    assert lo < 116 / 120 < hi and lo > 0.9 and hi < 0.995


def test_clopper_pearson_empty_and_errors() -> None:
    assert all(np.isnan(clopper_pearson(0, 0)))
    with pytest.raises(ValueError, match="0 <= k <= n"):
        clopper_pearson(3, 2)
    with pytest.raises(ValueError, match="alpha"):
        clopper_pearson(1, 2, alpha=1.5)


@pytest.mark.parametrize("seed", range(5))
def test_rates_match_sklearn_confusion_matrix(seed: int) -> None:
    rng = np.random.default_rng(seed)
    d = rng.random(150) < 0.45
    r = rng.random(150) < np.where(d, 0.8, 0.1)
    out = rates(d, r)
    # sklearn, defect = positive: [[tn, fp], [fn, tp]]
    (tn, fp), (fn, tp) = skm.confusion_matrix(d, r, labels=[False, True])
    assert (out["good_accepted"], out["good_rejected"]) == (tn, fp)
    assert (out["defect_accepted"], out["defect_rejected"]) == (fn, tp)
    assert out["accuracy"]["value"] == pytest.approx(skm.accuracy_score(d, r))
    assert out["defect_rejected_ratio"]["value"] == pytest.approx(skm.recall_score(d, r))
    assert out["good_accepted_ratio"]["value"] == pytest.approx(tn / (tn + fp))
    frr, esc = out["false_reject_rate"], out["escape_rate"]
    assert frr["value"] == pytest.approx(1 - out["good_accepted_ratio"]["value"])
    assert esc["value"] == pytest.approx(1 - out["defect_rejected_ratio"]["value"])
    assert (frr["lo"], frr["hi"]) == clopper_pearson(fp, tn + fp)
    json.dumps(out)  # plain Python types only


def test_rates_empty_class_is_none_and_errors() -> None:
    out = rates([False, False, False], [True, False, False])
    assert out["n_defect"] == 0 and out["defect_rejected_ratio"] is None
    assert out["escape_rate"] is None
    assert out["false_reject_rate"]["value"] == pytest.approx(1 / 3)
    assert rates([], [])["accuracy"] is None
    assert rates([0, 1], [1, 1])["defect_rejected"] == 1  # 0/1 accepted as bools
    with pytest.raises(ValueError, match="rejected has 1"):
        rates([True, False], [True])
    with pytest.raises(ValueError, match="must be bool"):
        rates([0, 2], [True, False])
    with pytest.raises(ValueError, match="1-D"):
        rates([[True]], [[True]])


@pytest.mark.parametrize("seed", range(5))
def test_auroc_equals_sklearn_with_ties(seed: int) -> None:
    d, s = _random(seed)
    assert auroc(d, s) == pytest.approx(skm.roc_auc_score(d, s), abs=1e-12)


def test_auroc_extremes_and_missing_class() -> None:
    assert auroc([False, True], [0.1, 0.9]) == 1.0
    assert auroc([False, True], [0.5, 0.5]) == 0.5  # a tie counts half
    assert auroc([True, True], [0.1, 0.2]) is None
    with pytest.raises(ValueError, match="NaN"):
        auroc([False, True], [0.1, np.nan])


@pytest.mark.parametrize("seed", range(5))
def test_roc_curve_matches_sklearn(seed: int) -> None:
    d, s = _random(seed)
    fpr, tpr, thr = roc_curve(d, s)
    fpr_s, tpr_s, thr_s = skm.roc_curve(d, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, fpr_s)
    np.testing.assert_allclose(tpr, tpr_s)
    np.testing.assert_allclose(thr[1:], thr_s[1:])
    assert thr[0] == np.inf
    assert np.trapezoid(tpr, fpr) == pytest.approx(auroc(d, s))


def test_roc_curve_needs_both_classes() -> None:
    with pytest.raises(ValueError, match="no defective"):
        roc_curve([False, False], [0.1, 0.2])
