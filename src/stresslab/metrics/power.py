"""The smallest difference a study can detect: from the seeds' spread (a paired t-test over
seeds) and from the churn between seeds (the pooled per-image test)."""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize, stats


def detectable_difference(sd: float | None, n: int, alpha: float = 0.05, power: float = 0.8) -> float | None:
    """Minimum detectable difference of a two-sided paired t-test at level ``alpha`` with
    ``power``: the true mean difference ``delta`` at which ``n`` seed pairs whose differences
    have standard deviation ``sd`` reject ``delta = 0`` with probability ``power``.

    Exact power from the noncentral t (noncentrality ``delta sqrt(n) / sd``, ``n - 1`` degrees
    of freedom), solved for ``delta``; in the units of ``sd``. ``None`` for ``n < 2`` or an
    unknown ``sd``; 0 when ``sd`` is 0. For unpaired seeds pass
    ``sd = sqrt(s_a^2 + s_b^2)`` (one seed of each arm per "pair").
    """
    if sd is None or not math.isfinite(sd) or n < 2:
        return None
    if not 0.0 < alpha < 1.0 or not 0.0 < power < 1.0:
        raise ValueError(f"alpha and power must be in (0, 1); got {alpha}, {power}")
    if sd == 0.0:
        return 0.0
    df = n - 1
    crit = float(stats.t.ppf(1 - alpha / 2, df))

    def gap(nc: float) -> float:
        return _t_test_power(crit, df, nc) - power

    hi = 1.0
    while gap(hi) < 0:
        hi *= 2.0
    nc = float(optimize.brentq(gap, 0.0, hi, xtol=1e-10))
    return nc * sd / math.sqrt(n)


_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(400)
_U = (_NODES + 1.0) / 2.0  # Gauss-Legendre nodes on (0, 1) for the chi-square quantile


def _t_test_power(crit: float, df: int, nc: float) -> float:
    """``P(|T| > crit)`` for ``T = (Z + nc) / sqrt(V / df)``, ``V ~ chi2(df)``: the noncentral
    t's two tails averaged over the quantiles of ``V`` (400-point Gauss-Legendre; scipy's
    ``nct`` returns NaN for 1 degree of freedom and a large ``nc``)."""
    s = crit * np.sqrt(stats.chi2.ppf(_U, df) / df)
    tails = stats.norm.sf(s - nc) + stats.norm.cdf(-s - nc)
    return float(np.sum(_WEIGHTS * tails) / 2.0)


def detectable_flip_difference(
    discordant_rate: float, n_images: int, n_pairs: int, alpha: float = 0.05, power: float = 0.8
) -> float | None:
    """Minimum detectable accuracy difference (a fraction) of the pooled per-image test
    (:func:`stresslab.metrics.differences.pooled_mcnemar`) over ``n_pairs`` seed pairs of
    ``n_images`` test images each, when a share ``discordant_rate`` of images changes
    correctness between two runs (the churn between seeds, as a fraction).

    With ``D = discordant_rate * n_images * n_pairs`` discordant images of which a share ``q``
    are fixes, the accuracy difference is ``discordant_rate * (2q - 1)``. ``q`` is solved from
    the normal approximation to the binomial test at ``p = 1/2``:
    ``D (q - 1/2) = z_{1-alpha/2} sqrt(D)/2 + z_power sqrt(D q (1 - q))``. ``None`` when
    nothing is discordant. This treats images as independent, so it is what the test images
    can resolve given these runs, not a statement about other seeds.
    """
    if not 0.0 <= discordant_rate <= 1.0:
        raise ValueError(f"discordant_rate must be in [0, 1], got {discordant_rate}")
    d = discordant_rate * n_images * n_pairs
    if d <= 0:
        return None
    za, zb = float(stats.norm.ppf(1 - alpha / 2)), float(stats.norm.ppf(power))

    def gap(q: float) -> float:
        return d * (q - 0.5) - za * math.sqrt(d) / 2 - zb * math.sqrt(d * q * (1 - q))

    if gap(1.0) < 0:  # even all fixes would not reach the power
        return None
    q = float(optimize.brentq(gap, 0.5, 1.0, xtol=1e-12))
    return discordant_rate * (2 * q - 1)
