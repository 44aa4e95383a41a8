"""Threshold policies: exact fits against brute force, per-region fits, coordinate ascent."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from bfsdata.judging.decisions import reject_items, runwise_decider
from bfsdata.judging.thresholds import (
    Policy,
    cut_points,
    fit_region_thresholds,
    fit_threshold,
    item_matrix,
    objective,
    parse_policy,
    tune_thresholds,
)

POLICIES = [
    "accuracy",
    "balanced",
    "frr:0",
    "frr:0.1",
    "frr:0.25",
    "frr:1",
    "escape:0",
    "escape:0.2",
]

# small cases with many ties: scores on a grid of 6 levels
scored = st.integers(1, 12).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 5), min_size=n, max_size=n),
        st.lists(st.booleans(), min_size=n, max_size=n),
    )
)


def _brute(score: np.ndarray, d: np.ndarray, policy: str) -> float:
    """Evaluate every cut point directly; the first (lowest) of equal bests wins."""
    best_t, best_key = None, None
    for c in cut_points(score):
        key = objective(policy, d, score > c)
        if best_key is None or key > best_key:
            best_t, best_key = c, key
    return float(best_t)


def test_parse_policy() -> None:
    assert parse_policy("accuracy") == Policy("accuracy")
    assert parse_policy(" frr:0.05") == Policy("frr", 0.05)
    assert parse_policy("escape:0") == Policy("escape", 0.0)
    assert str(parse_policy("frr:0.050")) == "frr:0.05"
    assert parse_policy(Policy("balanced")) == Policy("balanced")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("f1", "unknown threshold policy"),
        ("accuracy:1", "takes no ':' argument"),
        ("frr", "is not a number"),
        ("frr:abc", "is not a number"),
        ("escape:1.5", "outside"),
        ("frr:-0.1", "outside"),
    ],
)
def test_parse_policy_refuses(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_policy(text)


def test_cut_points_split_every_pair_of_scores() -> None:
    s = np.array([0.3, 0.1, 0.1, 0.7, -np.inf])
    c = cut_points(s)
    np.testing.assert_allclose(
        c, [0.0, 0.2, 0.5, 0.9], atol=1e-12
    )  # -inf ignored; ends: half the gap
    assert cut_points([0.4]).tolist() == pytest.approx([-0.1, 0.9])
    assert cut_points([-np.inf]).size == 0
    # adjacent doubles: the cut must still separate them under `score > t`
    a = 1.0
    b = np.nextafter(a, 2.0)
    lo, mid, hi = cut_points([a, b])
    assert lo < a <= mid < b <= hi


@pytest.mark.parametrize("policy", POLICIES)
@settings(max_examples=200, deadline=None)
@given(case=scored)
def test_fit_threshold_is_the_brute_force_optimum(policy: str, case) -> None:
    score = np.array(case[0], dtype=float) / 5
    d = np.array(case[1], dtype=bool)
    t = fit_threshold(score, d, policy)
    assert t == _brute(score, d, policy)
    # and independently of the objective's encoding, the primary criterion is met
    rejected = score > t
    accs = [np.mean(d == (score > c)) for c in cut_points(score)]
    p = parse_policy(policy)
    frr = (rejected & ~d).sum() / max((~d).sum(), 1)
    esc = (~rejected & d).sum() / max(d.sum(), 1)
    if p.kind == "accuracy":
        assert skm.accuracy_score(d, rejected) == pytest.approx(max(accs))
    elif p.kind == "frr":
        assert frr <= p.limit
        feasible = [c for c in cut_points(score) if ((score > c) & ~d).sum() <= frr_cap(d, p)]
        assert (rejected & d).sum() == max(((score > c) & d).sum() for c in feasible)
    elif p.kind == "escape":
        assert esc <= p.limit


def frr_cap(d: np.ndarray, p: Policy) -> float:
    """Largest number of false rejects the FRR budget allows."""
    n_good = (~d).sum()
    return np.inf if n_good == 0 else np.floor(p.limit * n_good + 1e-9)


def test_fit_threshold_hand_cases() -> None:
    s = np.array([0.1, 0.2, 0.3, 0.4])
    d = np.array([False, False, True, True])
    assert fit_threshold(s, d, "accuracy") == pytest.approx(0.25)
    # a good item above a defect: frr:0 must accept it, escape:0 must reject the defect
    s = np.array([0.1, 0.2, 0.5, 0.4])
    d = np.array([False, True, False, True])
    assert fit_threshold(s, d, "frr:0") == pytest.approx(0.55)  # no good rejected: none at all
    assert fit_threshold(s, d, "escape:0") == pytest.approx(0.15)
    # accuracy tie (0.15 and 0.45 both 3/4 right): the lower cut, which lets no defect out
    assert fit_threshold(s, d, "accuracy") == pytest.approx(0.15)


def test_fit_threshold_refuses() -> None:
    with pytest.raises(ValueError, match="no scores"):
        fit_threshold([], [], "accuracy")
    with pytest.raises(ValueError, match="NaN or infinite"):
        fit_threshold([0.1, np.nan], [True, False], "accuracy")
    with pytest.raises(ValueError, match="is_defect has 1"):
        fit_threshold([0.1, 0.2], [True], "accuracy")


def test_fit_region_thresholds_fits_each_region_alone() -> None:
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {
            "region": rng.integers(0, 3, 300),
            "score": rng.random(300),
            "is_defect": rng.random(300) < 0.3,
        }
    )
    out = fit_region_thresholds(df, "balanced")
    assert list(out) == [0, 1, 2]
    for r, g in df.groupby("region"):
        assert out[r] == fit_threshold(g["score"], g["is_defect"], "balanced")
    with pytest.raises(ValueError, match=r"lacks columns \['is_defect'\]"):
        fit_region_thresholds(df.drop(columns="is_defect"), "accuracy")


def test_item_matrix_takes_the_max_per_region() -> None:
    df = pd.DataFrame(
        {
            "strip": ["a", "a", "a", "b", "b"],
            "run": [1, 1, 1, 1, 1],
            "region": [0, 0, 1, 0, 0],
            "score": [0.2, 0.5, 0.1, 0.3, 0.4],
            "is_defect": [False, True, False, False, False],
        }
    )
    items, M = item_matrix(df, ["strip", "run"])
    assert items.to_dict("list") == {"strip": ["a", "b"], "run": [1, 1], "is_defect": [True, False]}
    np.testing.assert_array_equal(M, [[0.5, 0.1], [0.4, -np.inf]])
    _, M3 = item_matrix(df, ["strip", "run"], regions=[0, 1, 2])
    assert M3.shape == (2, 3) and np.isneginf(M3[:, 2]).all()
    with pytest.raises(ValueError, match=r"lacks columns \['score'\]"):
        item_matrix(df.drop(columns="score"), ["strip"])


def _grid_best(M: np.ndarray, d: np.ndarray, policy: str):
    """Best objective over every pair of candidate cuts (the joint optimum)."""
    cands = [cut_points(M[:, j]) for j in range(M.shape[1])]
    return max(objective(policy, d, reject_items(M, t)) for t in itertools.product(*cands))


def _local_check(M, d, t: dict, policy: str, decide=None) -> None:
    """No single threshold moved to any of its cut points improves the result."""
    judge = decide or (lambda r: (d, r))
    final = objective(policy, *judge(reject_items(M, t)))
    for j, r in enumerate(sorted(t)):
        for c in cut_points(M[:, j]):
            assert objective(policy, *judge(reject_items(M, {**t, r: c}))) <= final


tiny = st.integers(2, 8).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 4), min_size=2 * n, max_size=2 * n),
        st.lists(st.booleans(), min_size=n, max_size=n),
        st.integers(0, 10**6),
    )
)


@pytest.mark.parametrize("policy", ["accuracy", "balanced", "frr:0.2", "escape:0"])
@settings(max_examples=100, deadline=None)
@given(case=tiny)
def test_tune_never_worse_than_init_and_locally_optimal(policy: str, case) -> None:
    values, labels, seed = case
    M = np.array(values, dtype=float).reshape(-1, 2) / 4
    d = np.array(labels, dtype=bool)
    rng = np.random.default_rng(seed)
    init = {r: float(rng.choice(cut_points(M[:, j]))) for j, r in enumerate((3, 7))}
    t = tune_thresholds(M, d, init, policy)
    assert list(t) == [3, 7]
    assert objective(policy, d, reject_items(M, t)) >= objective(policy, d, reject_items(M, init))
    assert objective(policy, d, reject_items(M, t)) <= _grid_best(M, d, policy)
    _local_check(M, d, t, policy)
    # the generic `decide` path gives exactly what the counting fast path gives
    assert tune_thresholds(M, None, init, policy, decide=lambda r: (d, r)) == t


def test_tune_reaches_the_joint_optimum_from_the_patch_level_fit() -> None:
    # region 0 separates on its own, region 1 is noise: start from a too-low region-1 cut
    M = np.array([[0.1, 0.3], [0.2, 0.6], [0.8, 0.4], [0.9, 0.5]])
    d = np.array([False, False, True, True])
    t = tune_thresholds(M, d, {0: 0.5, 1: 0.2}, "accuracy")
    assert objective("accuracy", d, reject_items(M, t)) == _grid_best(M, d, "accuracy")
    assert t == {0: 0.5, 1: pytest.approx(0.65)}  # region 1 moved above all its scores


def test_tune_can_stop_at_a_local_optimum() -> None:
    # Every item is over both initial cuts, so moving either cut alone changes no decision
    # (the other region still rejects everything): the ascent cannot leave "reject all",
    # although raising both cuts together accepts the 3 good strips. This is why the ascent
    # starts from the patch-level fit, and why only local optimality is guaranteed.
    M = np.array([[0.5, 0.5], [0.5, 0.5], [0.5, 0.5], [0.9, 0.9]])
    d = np.array([False, False, False, True])
    t = tune_thresholds(M, d, {0: 0.0, 1: 0.0}, "accuracy")
    assert t == {0: 0.0, 1: 0.0}
    assert objective("accuracy", d, reject_items(M, t)) == (1, 1)
    assert _grid_best(M, d, "accuracy") == (4, 1)


def test_tune_runwise_through_decide() -> None:
    rng = np.random.default_rng(1)
    strips = np.repeat(np.arange(12), 10)  # 12 strips x 10 runs
    d_strip = np.repeat(np.arange(12) < 5, 10)
    M = rng.random((120, 2)) * 0.5 + d_strip[:, None] * rng.random((120, 1)) * 0.6
    decide = runwise_decider(strips, d_strip)
    init = {0: 0.2, 1: 0.2}
    t = tune_thresholds(M, None, init, "accuracy", decide=decide)
    judged = objective("accuracy", *decide(reject_items(M, t)))
    assert judged >= objective("accuracy", *decide(reject_items(M, init)))
    _local_check(M, None, t, "accuracy", decide=decide)


def test_tune_refuses() -> None:
    M = np.zeros((3, 2))
    with pytest.raises(ValueError, match="needs is_defect"):
        tune_thresholds(M, None, {0: 0.1, 1: 0.1}, "accuracy")
    with pytest.raises(ValueError, match="M has 3 items but is_defect has 2"):
        tune_thresholds(M, [True, False], {0: 0.1, 1: 0.1}, "accuracy")
    with pytest.raises(ValueError, match="2 thresholds for 3 region columns"):
        tune_thresholds(np.zeros((3, 3)), [True, False, True], {0: 0.1, 1: 0.1}, "accuracy")
    with pytest.raises(ValueError, match="NaN"):
        tune_thresholds(np.full((1, 2), np.nan), [True], {0: 0.1, 1: 0.1}, "accuracy")
    with pytest.raises(ValueError, match="unknown threshold policy"):
        tune_thresholds(M, [True, False, True], {0: 0.1, 1: 0.1}, "f1")
