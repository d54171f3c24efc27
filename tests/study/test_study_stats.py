"""The study's statistics against hand computations and scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from stresslab.study.compare import (
    align,
    churn,
    describe,
    mcnemar_exact,
    pareto_front,
    t_interval,
    take,
    transitions,
    welch,
)


def test_transitions_and_mcnemar_by_hand() -> None:
    base = np.array([0, 0, 0, 1, 1, 1, 0, 1, 0, 0], bool)
    arm = np.array([1, 1, 0, 1, 0, 1, 1, 1, 1, 0], bool)
    t = transitions(base, arm)
    # fixed: wrong->right at 0, 1, 6, 8; broken: right->wrong at 4; still wrong: 2, 9
    assert t.counts == {"fixed": 4, "broken": 1, "still_wrong": 2}
    assert list(np.flatnonzero(t.fixed)) == [0, 1, 6, 8]
    # two-sided exact binomial: 2 * P(X <= 1 | n=5, 1/2) = 2 * (1 + 5) / 32 = 0.375
    assert mcnemar_exact(4, 1) == pytest.approx(0.375)
    assert mcnemar_exact(0, 0) == 1.0


@pytest.mark.parametrize("b, c", [(4, 1), (0, 7), (12, 30), (5, 5), (1, 0), (40, 61)])
def test_mcnemar_equals_scipy_binomtest(b: int, c: int) -> None:
    assert mcnemar_exact(b, c) == pytest.approx(stats.binomtest(b, b + c, 0.5).pvalue, rel=1e-12)


def test_made_up_predictions_against_scipy() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 400)
    pa = np.where(rng.random(400) < 0.7, y, rng.integers(0, 5, 400))
    pb = np.where(rng.random(400) < 0.8, y, rng.integers(0, 5, 400))
    t = transitions(pa == y, pb == y)
    b = int(((pa != y) & (pb == y)).sum())
    c = int(((pa == y) & (pb != y)).sum())
    assert t.counts["fixed"] == b and t.counts["broken"] == c
    assert t.counts["still_wrong"] == int(((pa != y) & (pb != y)).sum())
    assert mcnemar_exact(b, c) == pytest.approx(stats.binomtest(b, b + c).pvalue, rel=1e-12)


def test_t_interval_by_hand() -> None:
    iv = t_interval([0.90, 0.92, 0.94])
    # mean 0.92, s = 0.02, t_{0.975, 2} = 4.302653, half = 4.302653 * 0.02 / sqrt(3)
    half = 4.302652729911275 * 0.02 / math.sqrt(3)
    assert iv.mean == pytest.approx(0.92)
    assert iv.std == pytest.approx(0.02)
    assert iv.lo == pytest.approx(0.92 - half) and iv.hi == pytest.approx(0.92 + half)
    one = t_interval([0.5])
    assert one.n == 1 and one.std is None and one.lo is None


def test_welch_by_hand() -> None:
    a, b = [0.90, 0.92, 0.94], [0.85, 0.86, 0.87]
    va, vb = 0.0004 / 3, 0.0001 / 3
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 2)
    d = welch(a, b)
    assert d.diff == pytest.approx(0.92 - 0.86)
    assert d.df == pytest.approx(df)
    half = stats.t.ppf(0.975, df) * se
    assert d.lo == pytest.approx(d.diff - half) and d.hi == pytest.approx(d.diff + half)
    assert d.p_value == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)
    assert d.within_noise is False


def test_describe_uses_plain_words() -> None:
    assert "within seed noise" in describe(welch([0.9, 0.92, 0.91], [0.905, 0.915, 0.9]), "accuracy")
    assert "better beyond seed noise" in describe(welch([0.95, 0.96, 0.955], [0.90, 0.905, 0.9]), "accuracy")
    assert "worse" in describe(
        welch([0.05, 0.051, 0.052], [0.01, 0.011, 0.012]), "ECE", higher_is_better=False
    )
    assert "1 seed cannot bound a difference" in describe(welch([0.9], [0.8]), "accuracy")
    two = describe(welch([0.9, 0.91], [0.8, 0.82]), "accuracy")
    assert "2 seeds cannot bound a difference" in two and "[" not in two


def test_churn_align_take_pareto() -> None:
    runs = [np.array([1, 0, 0, 1], bool), np.array([1, 1, 0, 0], bool)]
    # seed0 -> seed1: fixes image 1; seed1 -> seed0: fixes image 3; mean 1
    assert churn(runs) == 1.0 and churn(runs[:1]) is None
    common = align([np.array([5, 1, 3]), np.array([3, 5, 7])])
    assert list(common) == [3, 5]
    assert list(take(np.array([5, 1, 3]), np.array([50, 10, 30]), common)) == [30, 50]
    assert pareto_front([1, 2, 3, 2], [0.5, 0.7, 0.6, 0.7]) == [True, True, False, True]
