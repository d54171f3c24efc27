"""Paired and unpaired differences over seeds, the pooled per-image test, Holm, clipping and the
minimum detectable difference: against hand computations, scipy and simulations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from stresslab.metrics.differences import (
    clip,
    holm,
    mcnemar_exact,
    paired,
    pooled_mcnemar,
    sign_flip_p,
    t_interval,
    welch,
)
from stresslab.metrics.power import detectable_difference, detectable_flip_difference
from stresslab.study.compare import seed_difference


def test_paired_interval_by_hand_and_scipy() -> None:
    a, b = [0.91, 0.93, 0.92], [0.90, 0.91, 0.915]
    # per-seed differences 0.01, 0.02, 0.005: mean 0.011667, s = 0.0076376
    d = np.array([0.01, 0.02, 0.005])
    s = math.sqrt(((d - d.mean()) ** 2).sum() / 2)
    assert s == pytest.approx(0.0076376, rel=1e-4)
    half = 4.302652729911275 * s / math.sqrt(3)
    r = paired(a, b)
    assert r.method == "paired" and r.n == 3 and r.df == 2
    assert r.diff == pytest.approx(0.0116667, rel=1e-5)
    assert r.lo == pytest.approx(r.diff - half) and r.hi == pytest.approx(r.diff + half)
    ref = stats.ttest_rel(a, b)
    assert r.p_value == pytest.approx(ref.pvalue)
    ci = ref.confidence_interval(0.95)
    assert (r.lo, r.hi) == (pytest.approx(ci.low), pytest.approx(ci.high))
    # all three differences positive: 2 of 8 sign flips reach |mean| -> 0.25
    assert r.p_permutation == pytest.approx(0.25)


def test_paired_is_sharper_than_welch_when_seeds_share_noise() -> None:
    base = [0.90, 0.92, 0.94]
    arm = [v + 0.004 + e for v, e in zip(base, [0.0005, -0.0005, 0.0], strict=True)]
    p, w = paired(arm, base), welch(arm, base)
    assert p.within_noise is False and w.within_noise is True
    assert p.hi - p.lo < (w.hi - w.lo) / 10  # type: ignore[operator]


def test_identical_arms_give_zero_width() -> None:
    vals = [0.91, 0.87, 0.93, 0.9]
    r = paired(vals, list(vals), bounds=(0.0, 1.0))
    assert r.diff == 0.0 and r.lo == 0.0 and r.hi == 0.0 and r.within_noise is True
    assert r.p_permutation == 1.0


def test_too_few_seeds_give_no_interval() -> None:
    r = paired([0.9, 0.2], [0.9, 0.2])
    assert r.lo is None and r.hi is None and r.within_noise is None
    assert "2 seeds cannot bound a difference" in r.reason


def test_sign_flip_p_by_hand_and_scipy() -> None:
    # d = (1, 2, 3): sums over the 8 sign flips are 6, 4, 2, 0, 0, -2, -4, -6; |sum| >= 6 twice
    assert sign_flip_p([1.0, 2.0, 3.0]) == pytest.approx(2 / 8)
    # d = (1, -2, 3, 0.5): |sum| >= 2.5 for 8 of the 16 flips
    d = [1.0, -2.0, 3.0, 0.5]
    flips = np.array([[1 - 2 * b for b in idx] for idx in np.ndindex(2, 2, 2, 2)], float)
    hand = float(np.mean(np.abs(flips @ np.array(d)) >= 2.5 - 1e-12))
    assert sign_flip_p(d) == pytest.approx(hand)
    ref = stats.permutation_test(
        (np.array(d),), np.mean, permutation_type="samples", n_resamples=np.inf, alternative="two-sided"
    )
    assert sign_flip_p(d) == pytest.approx(ref.pvalue)


def test_pooled_mcnemar_by_hand() -> None:
    fixed, broken = [4, 3, 5], [1, 1, 0]
    # no single seed pair is significant ...
    singles = [round(mcnemar_exact(f, b), 4) for f, b in zip(fixed, broken, strict=True)]
    assert singles == [0.375, 0.625, 0.0625]
    pooled = pooled_mcnemar(fixed, broken)
    # ... pooled: 12 fixed of 14 discordant, 2 * P(X <= 2 | 14, 1/2) = 2 * (1 + 14 + 91) / 2^14
    assert (pooled.fixed, pooled.broken, pooled.strata) == (12, 2, 3)
    assert pooled.p_value == pytest.approx(212 / 16384)
    assert pooled.odds_ratio == 6.0
    # the stratified conditional null (independent Binomial(n_k, 1/2) per stratum) convolved
    # by hand is exactly Binomial(sum n_k, 1/2): the reason the pooled test is exact
    dist = np.array([1.0])
    for f, b in zip(fixed, broken, strict=True):
        dist = np.convolve(dist, stats.binom.pmf(np.arange(f + b + 1), f + b, 0.5))
    assert dist == pytest.approx(stats.binom.pmf(np.arange(15), 14, 0.5))
    assert pooled_mcnemar([0, 0], [0, 0]).p_value == 1.0
    with pytest.raises(ValueError, match="one count per seed pair"):
        pooled_mcnemar([1], [1, 2])


def test_holm_by_hand() -> None:
    # sorted 0.005, 0.01, 0.03, 0.04 -> 4*0.005, 3*0.01, 2*0.03, max(0.06, 1*0.04)
    adj = holm([0.01, 0.04, 0.03, None, 0.005])
    assert adj[3] is None
    assert [adj[i] for i in (0, 1, 2, 4)] == [pytest.approx(v) for v in (0.03, 0.06, 0.06, 0.02)]
    assert holm([0.9, 0.8]) == [pytest.approx(1.0), pytest.approx(1.0)]


def test_intervals_stay_inside_the_possible() -> None:
    assert clip(-0.2, 1.3, (0.0, 1.0)) == (0.0, 1.0)
    iv = t_interval([0.99, 1.0, 1.0], bounds=(0.0, 1.0))
    assert iv.hi == 1.0 and iv.lo is not None and iv.lo < 1.0
    # a per-class difference whose raw interval is about +-2.9 (i.e. +-290 points)
    r = paired([1.0, 0.0, 1.0], [0.0, 1.0, 0.0], bounds=(0.0, 1.0))
    assert (r.lo, r.hi) == (-1.0, 1.0)
    w = welch([1.0, 0.0, 1.0], [0.0, 1.0, 0.0], bounds=(0.0, 1.0))
    # Welch: diff 1/3, se = sqrt(2 * (1/3) / 3), df = 4: 1/3 +- 2.776 * 0.471 -> (-0.975, cut at 1)
    assert w.lo == pytest.approx(1 / 3 - stats.t.ppf(0.975, 4) * math.sqrt(2 / 9)) and w.hi == 1.0


def test_seed_difference_pairs_unless_told_otherwise() -> None:
    arm = {0: 0.91, 1: 0.93, 2: 0.92}
    base = {0: 0.90, 1: 0.91, 2: 0.915}
    d, why = seed_difference(arm, base, (0.0, 1.0))
    assert d.method == "paired" and why.startswith("paired by seed")
    d, why = seed_difference(arm, base, (0.0, 1.0), "the arm changes data.split_seed")
    assert d.method == "welch" and "data.split_seed" in why
    d, why = seed_difference({0: 0.9, 1: 0.91, 2: 0.92}, {3: 0.9, 4: 0.91, 5: 0.9}, (0.0, 1.0))
    assert d.method == "welch" and "only 0 seeds" in why


@pytest.mark.parametrize("n, sd", [(3, 0.003), (6, 0.01)])
def test_detectable_difference_against_simulation(n: int, sd: float) -> None:
    mdd = detectable_difference(sd, n)
    assert mdd is not None and mdd > 0
    rng = np.random.default_rng(n)
    # made-up seed results: n paired differences with spread sd around a true effect
    sims = 20_000
    at_mdd = rng.normal(mdd, sd, size=(sims, n))
    power = float(np.mean(stats.ttest_1samp(at_mdd, 0.0, axis=1).pvalue < 0.05))
    assert power == pytest.approx(0.80, abs=0.015)
    null = rng.normal(0.0, sd, size=(sims, n))
    assert float(np.mean(stats.ttest_1samp(null, 0.0, axis=1).pvalue < 0.05)) == pytest.approx(0.05, abs=0.01)
    assert detectable_difference(sd, 1) is None and detectable_difference(0.0, 3) == 0.0
    # the textbook normal approximation (z_0.975 + z_0.8) sd / sqrt(n) is a lower bound
    assert mdd > (1.959964 + 0.841621) * sd / math.sqrt(n)


def test_detectable_difference_against_scipy_noncentral_t() -> None:
    n, sd = 5, 0.004
    mdd = detectable_difference(sd, n)
    assert mdd is not None
    crit, nc = stats.t.ppf(0.975, n - 1), mdd * math.sqrt(n) / sd
    assert stats.nct.sf(crit, n - 1, nc) + stats.nct.cdf(-crit, n - 1, nc) == pytest.approx(0.8, abs=1e-6)


def test_detectable_flip_difference_against_simulation() -> None:
    n_images, n_pairs, rate = 2000, 3, 0.06
    mdd = detectable_flip_difference(rate, n_images, n_pairs)
    assert mdd is not None
    q = 0.5 + mdd / (2 * rate)  # share of discordant images that are fixes at that difference
    rng = np.random.default_rng(1)
    sims = 20_000
    discordant = rng.binomial(n_images, rate, size=(sims, n_pairs)).sum(axis=1)
    fixed = rng.binomial(discordant, q)
    low = np.minimum(fixed, discordant - fixed)
    p = np.minimum(1.0, 2 * stats.binom.cdf(low, discordant, 0.5))
    assert float(np.mean(p < 0.05)) == pytest.approx(0.80, abs=0.03)
    assert detectable_flip_difference(0.0, n_images, n_pairs) is None
