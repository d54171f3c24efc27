"""Verdicts on each method's maps: faithful (beats random pixel orders, Wilcoxon
signed-rank), sane (the model-parameter randomization test) and the background-share
comparison of errors with correct predictions (Mann-Whitney U).

An undefined number is ``None`` here, never a stand-in like 0 or 1, and carries the
reason it is undefined where one can be given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from stresslab.probes.explain.compute import Curves, Explained
from stresslab.probes.explain.settings import ExplainSettings


def finite_mean(values: Tensor) -> float | None:
    """Mean of the finite entries of ``values``; ``None`` when there are none."""
    v = values[torch.isfinite(values)]
    return float(v.double().mean()) if len(v) else None


@dataclass(frozen=True)
class Faithfulness:
    """Per image, gain = (random - method) deletion AUC + (method - random) insertion AUC.

    ``wins``: images with a positive gain out of ``n`` with a finite one. ``p_value``: the
    one-sided Wilcoxon signed-rank p-value that the gain is positive, ``None`` when the
    test is undefined (``why``). ``faithful``: ``p_value < alpha``. A verdict from the
    mean AUCs alone would call a difference of 0.01 on a handful of images "faithful".
    ``gain``: the mean gain (the effect size, in AUC units: 0 = no better than random, up
    to 2), with ``ci``, its 95% BCa bootstrap confidence interval (``None`` when undefined).
    """

    wins: int
    n: int
    p_value: float | None
    faithful: bool
    why: str = ""
    gain: float | None = None
    ci: tuple[float, float] | None = None


@dataclass(frozen=True)
class Sanity:
    """Randomization test: ``spearman`` is the mean rank correlation over the images whose
    maps are not constant (``None`` if every one is: ``n_undefined`` counts them, and
    ``n_constant_trained`` those constant on the trained model itself, the rest being
    constant on the randomized copy only); ``passed`` when it is defined and below the
    threshold."""

    spearman: float | None
    passed: bool
    n_undefined: int
    n_constant_trained: int = 0


@dataclass(frozen=True)
class Shares:
    """Mean over error cases and over correct cases (``None`` where there is none)."""

    errors: float | None
    correct: float | None


@dataclass(frozen=True)
class MethodChecks:
    """One method's mean AUCs, verdicts, and background shares (``None`` without a background)."""

    deletion_auc: float | None
    insertion_auc: float | None
    faithfulness: Faithfulness
    sanity: Sanity
    background: Shares | None

    @property
    def passed(self) -> bool:
        return self.faithfulness.faithful and self.sanity.passed


@dataclass(frozen=True)
class BackgroundTest:
    """Background share of errors vs correct predictions for method ``method``, the
    background's share of those images (``area``), and the two-sided Mann-Whitney U
    p-value that they differ (``None`` unless both shares are defined)."""

    method: str
    shares: Shares
    area: Shares
    p_value: float | None
    significant: bool


@dataclass(frozen=True)
class Checks:
    """Every verdict of the explain probe, by method name in the configured order."""

    random_deletion_auc: float | None
    random_insertion_auc: float | None
    methods: dict[str, MethodChecks]
    background: BackgroundTest | None

    @property
    def ranking(self) -> list[str]:
        """Method names, most faithful first: faithful ones before the others, then by mean
        gain over random (undefined last); ties keep the configured order."""

        def key(name: str) -> tuple[bool, float]:
            f = self.methods[name].faithfulness
            return (not f.faithful, -(f.gain if f.gain is not None else -math.inf))

        return sorted(self.methods, key=key)


def mean_ci(values: Tensor, level: float = 0.95, resamples: int = 2000) -> tuple[float, float] | None:
    """The ``level`` BCa bootstrap confidence interval of the mean of ``values`` (n,) (finite
    entries; scipy's ``bootstrap``, seeded, so reproducible); ``None`` with fewer than 3
    values or when every value is equal (no spread to resample)."""
    from scipy.stats import bootstrap

    v = values[torch.isfinite(values)].double().numpy()
    if len(v) < 3 or float(v.max() - v.min()) == 0.0:
        return None
    res = bootstrap(
        (v,), np.mean, confidence_level=level, n_resamples=resamples, method="BCa", random_state=0
    )
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return (lo, hi) if math.isfinite(lo) and math.isfinite(hi) else None


def faithfulness_test(curves: Curves, random: Curves, alpha: float) -> Faithfulness:
    """The paired gain test of ``curves`` against ``random`` (see :class:`Faithfulness`)."""
    from scipy.stats import wilcoxon

    gain = (random.deletion_auc - curves.deletion_auc) + (curves.insertion_auc - random.insertion_auc)
    gain = gain[torch.isfinite(gain)]
    wins = int((gain > 0).sum())
    if len(gain) == 0:
        return Faithfulness(wins, 0, None, False, "no image has a finite gain over random maps")
    mean, ci = float(gain.double().mean()), mean_ci(gain)
    if not bool((gain != 0).any()):
        why = "every image's gain over random maps is zero"
        return Faithfulness(wins, len(gain), None, False, why, mean, ci)
    p = float(wilcoxon(gain.double().numpy(), alternative="greater").pvalue)
    if not math.isfinite(p):
        return Faithfulness(wins, len(gain), None, False, "the signed-rank test is undefined", mean, ci)
    return Faithfulness(wins, len(gain), p, p < alpha, "", mean, ci)


def sanity_check(spearman: Tensor, threshold: float, maps: Tensor | None = None) -> Sanity:
    """The randomization verdict from per-image correlations (N,) (NaN where undefined);
    ``maps`` (N, H, W), the trained model's maps, to count those constant on it."""
    rho = finite_mean(spearman)
    constant = 0
    if maps is not None and len(maps):
        flat = maps.flatten(1)
        constant = int((flat.amax(dim=1) == flat.amin(dim=1)).sum())
    undefined = int((~torch.isfinite(spearman)).sum())
    return Sanity(rho, rho is not None and rho < threshold, undefined, min(constant, undefined))


def difference_p(a: Tensor, b: Tensor) -> float | None:
    """Two-sided Mann-Whitney U p-value that samples ``a`` and ``b`` differ (finite entries
    only); ``None`` when either is empty or the test is undefined."""
    from scipy.stats import mannwhitneyu

    a, b = a[torch.isfinite(a)], b[torch.isfinite(b)]
    if len(a) == 0 or len(b) == 0:
        return None
    p = float(mannwhitneyu(a.double().numpy(), b.double().numpy(), alternative="two-sided").pvalue)
    return p if math.isfinite(p) else None


def split_mean(values: Tensor, is_error: Tensor) -> Shares:
    """Mean of ``values`` (N,) over the error cases and over the correct ones."""
    return Shares(finite_mean(values[is_error]), finite_mean(values[~is_error]))


def background_method(explained: Explained) -> str:
    """The method whose background share heads the report: the first CAM method (a conv
    layer's regions, not single pixels), else the first method."""
    cams = [name for name, r in explained.methods.items() if r.method.needs_conv_layer]
    return cams[0] if cams else next(iter(explained.methods))


def run_checks(explained: Explained, settings: ExplainSettings) -> Checks:
    """Faithfulness, sanity and background verdicts for every method of ``explained``."""
    is_err = explained.is_error
    methods: dict[str, MethodChecks] = {}
    for name, r in explained.methods.items():
        methods[name] = MethodChecks(
            deletion_auc=finite_mean(r.curves.deletion_auc),
            insertion_auc=finite_mean(r.curves.insertion_auc),
            faithfulness=faithfulness_test(r.curves, explained.random, settings.faithfulness_alpha),
            sanity=sanity_check(r.spearman, settings.randomization_threshold, r.maps),
            background=None if r.background_share is None else split_mean(r.background_share, is_err),
        )
    background = None
    if explained.background_area is not None:
        head = background_method(explained)
        share = explained.methods[head].background_share
        assert share is not None
        shares = split_mean(share, is_err)
        p = None
        if shares.errors is not None and shares.correct is not None:
            p = difference_p(share[is_err], share[~is_err])
        background = BackgroundTest(
            head,
            shares,
            split_mean(explained.background_area, is_err),
            p,
            p is not None and p < settings.faithfulness_alpha,
        )
    return Checks(
        finite_mean(explained.random.deletion_auc),
        finite_mean(explained.random.insertion_auc),
        methods,
        background,
    )
