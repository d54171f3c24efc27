"""The explain probe's case choice (indices, n_correct, the cap for many classes) and map
concentration against hand-made maps and scipy."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import spearmanr

from stresslab.errors import ConfigError
from stresslab.probes.base import ProbeContext, build_probe
from stresslab.probes.explain.cases import CORRECT, CORRECT_CAP, CaseChoice, round_robin, select_cases
from stresslab.probes.explain.concentration import map_concentration, rank_correlation
from stresslab.probes.explain.probe import ExplainProbe
from stresslab.probes.predictions import Predictions
from tests.conftest import TinyNet, make_split
from tests.probes.test_explain_probe import FAST, _ctx, _split


def _many_classes_ctx(k: int = 100, per_class: int = 3) -> ProbeContext:
    """K classes, ``per_class`` test images each, every prediction right but the first of each class."""
    split = make_split(n_train=k, n_val=k, n_test=k * per_class, classes=k, size=8)
    labels = split.test_y
    preds = labels.clone()
    preds[:k] = (preds[:k] + 1) % k  # one error per class (positions 0..k-1)
    logits = torch.nn.functional.one_hot(preds, k).float() * 3.0
    p = Predictions(logits, labels, torch.empty(len(labels), 0), split.test_index + 5000)
    return ProbeContext(TinyNet(split.info), split, torch.device("cpu"), 0, 16, p, p)


def test_indices_pick_exactly_those_cases() -> None:
    ctx = _many_classes_ctx(k=10)
    wanted = (5007, 5000, 5023, 5007)  # a repeat is kept once
    cases, _, notes = select_cases(ctx, CaseChoice(8, 4, 0.9, indices=wanted))
    assert [c.index for c in cases] == [5007, 5000, 5023]
    assert [c.position for c in cases] == [7, 0, 23]
    assert {c.kind for c in cases} == {"chosen"}
    assert not notes
    cases, _, notes = select_cases(ctx, CaseChoice(8, 4, 0.9, indices=(5001, 3, 99999)))
    assert [c.index for c in cases] == [5001]
    assert len(notes) == 1 and "probes.explain.indices: 3, 99999 not in this run's test set" in notes[0]


def test_many_classes_give_a_bounded_case_list() -> None:
    ctx = _many_classes_ctx(k=100)
    cases, _, _ = select_cases(ctx, CaseChoice(8, 4, 0.0))
    correct = [c for c in cases if c.kind == CORRECT]
    assert len(correct) == CORRECT_CAP == 20
    assert len({c.true for c in correct}) == 20  # spread: one per class in turn
    assert len(cases) <= 8 + 4 + CORRECT_CAP
    # n_correct spreads the number asked for; n_correct_per_class is honoured as given.
    cases, _, _ = select_cases(ctx, CaseChoice(0, 0, 0.9, n_correct=7))
    assert len(cases) == 7 and len({c.true for c in cases}) == 7
    cases, _, _ = select_cases(ctx, CaseChoice(0, 0, 0.9, n_correct_per_class=2))
    assert len(cases) == 200 and all(c.kind == CORRECT for c in cases)
    # Ten classes keep the old default: one correct case per class.
    small = _many_classes_ctx(k=10)
    cases, _, _ = select_cases(small, CaseChoice(0, 0, 0.9))
    assert sorted(c.true for c in cases) == list(range(10))


def test_round_robin_by_hand() -> None:
    pools = [[1, 2, 3], [], [7], [9, 10]]
    assert round_robin(pools, 5, seen={2}) == [1, 7, 9, 3, 10]
    assert round_robin(pools, 2, seen=set()) == [1, 7]
    assert round_robin(pools, 99, seen=set()) == [1, 7, 9, 2, 10, 3]


def test_case_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="not both"):
        build_probe("explain", {"n_correct": 3, "n_correct_per_class": 1})
    for bad in ([], [-1], ["a"], 7, "12"):
        with pytest.raises(ConfigError, match="indices"):
            build_probe("explain", {"indices": bad})


def test_probe_explains_the_chosen_indices() -> None:
    split = _split()  # test indices 100..159
    res = ExplainProbe(methods=["saliency"], indices=[103, 150, 7], **FAST).run(_ctx(split))  # type: ignore[arg-type]
    assert [c["index"] for c in res.data["cases"]] == [103, 150]
    assert res.data["settings"]["indices"] == [103, 150, 7]
    assert any("probes.explain.indices: 7 not in" in w for w in res.warnings)
    assert not any("high-confidence" in w or "failures probe did not run" in w for w in res.warnings)
    assert any("chosen by index (103, 150)" in s for s in res.summary)


def test_concentration_of_made_up_maps() -> None:
    uniform = torch.full((10, 10), 0.3)
    hot = torch.zeros(10, 10)
    hot[4, 7] = -2.0  # the sign does not matter: |attribution|
    half = torch.zeros(10, 10)
    half[:5] = 1.0  # 50 equal pixels: entropy log 50 / log 100, top 10 of them hold 10/50
    entropy, top = map_concentration(torch.stack([uniform, hot, half, torch.zeros(10, 10)]))
    assert entropy[:3].tolist() == pytest.approx([1.0, 0.0, math.log(50) / math.log(100)])
    assert top[:3].tolist() == pytest.approx([0.1, 1.0, 0.2])
    assert math.isnan(entropy[3]) and math.isnan(top[3])  # no attribution: undefined


def test_rank_correlation_matches_scipy_and_is_undefined_where_it_should_be() -> None:
    g = torch.Generator().manual_seed(0)
    v, u = torch.rand(12, generator=g, dtype=torch.float64), torch.rand(12, generator=g, dtype=torch.float64)
    v[3] = math.nan
    r = rank_correlation(v, u)
    keep = torch.isfinite(v)
    ref = spearmanr(v[keep].numpy(), u[keep].numpy())
    assert (r.rho, r.p_value, r.n) == (pytest.approx(ref.statistic), pytest.approx(ref.pvalue), 11)
    assert rank_correlation(v[:2], u[:2]).rho is None
    const = rank_correlation(torch.ones(5, dtype=torch.float64), u[:5])
    assert const.rho is None and "same on every case" in const.why


def test_probe_reports_concentration_per_method() -> None:
    res = ExplainProbe(
        methods={"gradcam": {}, "saliency": {}},
        n_high_confidence=3,
        n_uncertain=3,
        min_error_confidence=0.0,
        quality_images=0,  # the statistics on the explained cases themselves
        **FAST,
    ).run(_ctx(_split()))
    for m in ("gradcam", "saliency"):
        for key in (
            "concentration_entropy_spearman",
            "concentration_entropy_spearman_p",
            "concentration_top10_mean",
        ):
            assert f"{m}.{key}" in res.metrics
        # The metric is scipy's Spearman over the cases' map entropies and prediction entropies.
        cases = res.data["cases"]
        ref = spearmanr([c[m]["map_entropy"] for c in cases], [c["entropy"] for c in cases])
        assert res.metrics[f"{m}.concentration_entropy_spearman"] == pytest.approx(ref.statistic, abs=1e-3)
    assert "concentration_vs_uncertainty" in res.figures
    assert any(s.startswith("Map entropy against prediction entropy") for s in res.summary)
