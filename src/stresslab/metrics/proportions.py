"""Proportions: a confidence interval for one, and a test that one exceeds another."""

from __future__ import annotations

import math

from scipy.stats import fisher_exact, norm


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval (Wilson, "Probable Inference, the Law of Succession, and
    Statistical Inference", JASA 1927) for a binomial proportion ``successes / trials``.

    Returns ``(low, high)`` in [0, 1]; ``(nan, nan)`` when ``trials`` is 0. Unlike the
    normal (Wald) interval it stays inside [0, 1] and keeps its coverage near 0 and 1,
    where flip rates of a transplant test usually are. Equal to
    ``scipy.stats.binomtest(k, n).proportion_ci(confidence, method="wilson")``.
    """
    if trials < 0 or not 0 <= successes <= max(trials, 0):
        raise ValueError(f"need 0 <= successes <= trials; got {successes} of {trials}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if trials == 0:
        return math.nan, math.nan
    z = float(norm.ppf(0.5 + confidence / 2))
    p = successes / trials
    denom = 1 + z * z / trials
    center = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return max(0.0, center - half), min(1.0, center + half)


def fisher_greater(successes_a: int, trials_a: int, successes_b: int, trials_b: int) -> float:
    """One-sided Fisher exact p-value that the rate of ``a`` exceeds the rate of ``b``.

    The 2x2 table is ``[[s_a, n_a - s_a], [s_b, n_b - s_b]]``. Returns 1.0 when either
    group is empty (nothing to test).
    """
    for s, n in ((successes_a, trials_a), (successes_b, trials_b)):
        if n < 0 or not 0 <= s <= max(n, 0):
            raise ValueError(f"need 0 <= successes <= trials; got {s} of {n}")
    if trials_a == 0 or trials_b == 0:
        return 1.0
    table = [[successes_a, trials_a - successes_a], [successes_b, trials_b - successes_b]]
    p = float(fisher_exact(table, alternative="greater").pvalue)
    return p if math.isfinite(p) else 1.0
