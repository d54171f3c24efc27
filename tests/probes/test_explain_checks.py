"""The explain probe's verdicts on hand-made per-image numbers."""

from __future__ import annotations

import math

import torch
from scipy.stats import mannwhitneyu, wilcoxon

from stresslab.probes.explain.checks import difference_p, faithfulness_test, finite_mean, sanity_check
from stresslab.probes.explain.compute import Curves


def _curves(deletion_auc: list[float], insertion_auc: list[float]) -> Curves:
    """Flat curves whose trapezoid AUC is the given value per image."""
    d = torch.tensor(deletion_auc)[:, None].expand(-1, 3)
    i = torch.tensor(insertion_auc)[:, None].expand(-1, 3)
    return Curves(d.contiguous(), i.contiguous())


def test_faithfulness_is_a_one_sided_signed_rank_test_of_the_gain() -> None:
    method = _curves([0.1, 0.2, 0.5, 0.3, 0.2], [0.8, 0.6, 0.4, 0.7, 0.9])
    random = _curves([0.4, 0.4, 0.4, 0.4, 0.4], [0.5, 0.5, 0.5, 0.5, 0.5])
    f = faithfulness_test(method, random, alpha=0.05)
    gain = [0.3 + 0.3, 0.2 + 0.1, -0.1 - 0.1, 0.1 + 0.2, 0.2 + 0.4]
    assert f.wins == 4 and f.n == 5
    assert f.p_value is not None
    assert math.isclose(f.p_value, wilcoxon(gain, alternative="greater").pvalue, rel_tol=1e-6)
    assert f.faithful == (f.p_value < 0.05)


def test_undefined_faithfulness_is_none_with_a_reason() -> None:
    same = _curves([0.3, 0.3], [0.6, 0.6])
    f = faithfulness_test(same, same, alpha=0.05)
    assert f.p_value is None and not f.faithful and "zero" in f.why
    nan = _curves([math.nan, math.nan], [0.5, 0.5])
    f = faithfulness_test(nan, same, alpha=0.05)
    assert f.p_value is None and f.n == 0 and "finite" in f.why


def test_sanity_and_means_of_undefined_values() -> None:
    assert finite_mean(torch.tensor([math.nan, 1.0, 3.0])) == 2.0
    assert finite_mean(torch.tensor([math.nan])) is None
    assert finite_mean(torch.empty(0)) is None
    s = sanity_check(torch.tensor([math.nan, 0.2, 0.4], dtype=torch.float64), threshold=0.5)
    assert s.spearman is not None and math.isclose(s.spearman, 0.3) and s.passed and s.n_undefined == 1
    s = sanity_check(torch.tensor([math.nan, math.nan], dtype=torch.float64), threshold=0.5)
    assert s.spearman is None and not s.passed and s.n_undefined == 2


def test_sanity_counts_the_maps_constant_on_the_trained_model_apart() -> None:
    """Of three undefined correlations, one map is constant on the trained model itself; the
    other two are constant only on the randomized copy."""
    maps = torch.rand(4, 5, 5)
    maps[1] = 0.0
    rho = torch.tensor([math.nan, math.nan, math.nan, 0.1], dtype=torch.float64)
    s = sanity_check(rho, threshold=0.5, maps=maps)
    assert s.n_undefined == 3 and s.n_constant_trained == 1


def test_background_difference_p() -> None:
    a, b = torch.tensor([0.1, 0.5, 0.7, math.nan]), torch.tensor([0.2, 0.3])
    p = difference_p(a, b)
    assert p is not None
    assert math.isclose(p, mannwhitneyu([0.1, 0.5, 0.7], [0.2, 0.3], alternative="two-sided").pvalue)
    assert difference_p(a, torch.tensor([math.nan])) is None


def test_gain_ci_matches_the_normal_interval_on_a_large_sample() -> None:
    from stresslab.probes.explain.checks import mean_ci

    g = torch.Generator().manual_seed(0)
    values = 0.1 + 0.2 * torch.randn(400, generator=g, dtype=torch.float64)
    ci = mean_ci(values)
    assert ci is not None
    mean, half = float(values.mean()), 1.96 * float(values.std()) / 400**0.5
    # By hand: mean +- 1.96 sd / sqrt(n); the bootstrap agrees within a tenth of the width.
    assert abs(ci[0] - (mean - half)) < 0.1 * half and abs(ci[1] - (mean + half)) < 0.1 * half
    assert mean_ci(torch.zeros(10, dtype=torch.float64)) is None
    assert mean_ci(torch.tensor([1.0, 2.0])) is None


def test_methods_are_ranked_faithful_first_then_by_gain() -> None:
    from stresslab.probes.explain.checks import Checks, Faithfulness, MethodChecks, Sanity

    def method(faithful: bool, gain: float | None) -> MethodChecks:
        f = Faithfulness(1, 2, 0.01 if faithful else 0.5, faithful, "", gain, None)
        return MethodChecks(None, None, f, Sanity(0.1, True, 0), None)

    checks = Checks(
        None,
        None,
        {"a": method(False, 0.3), "b": method(True, 0.1), "c": method(False, None), "d": method(True, 0.2)},
        None,
    )
    assert checks.ranking == ["d", "b", "a", "c"]
