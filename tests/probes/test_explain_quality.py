"""Faithfulness curves, the randomization test and background share on models with known answers."""

from __future__ import annotations

from typing import ClassVar

import pytest
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr
from torch import Tensor, nn

from stresslab.attributions import Attribution, Saliency
from stresslab.probes.explain import (
    background_mask,
    background_share,
    curve_auc,
    deletion_insertion_curves,
    randomization_test,
    randomized_copy,
    spearman_rows,
)

torch.set_num_threads(1)


def _linear(h: int = 4, w: int = 4, seed: int = 0) -> tuple[nn.Module, Tensor]:
    """Two logits: w . x and 0, so p(class 0) = sigmoid(w . x)."""
    torch.manual_seed(seed)
    lin = nn.Linear(h * w, 2, bias=False)
    with torch.no_grad():
        lin.weight[1] = 0.0
    return nn.Sequential(nn.Flatten(), lin).eval(), lin.weight[0].detach().clone()


def test_deletion_curve_on_linear_model_matches_hand_computation() -> None:
    model, weight = _linear()
    x = torch.rand(2, 1, 4, 4)
    contrib = weight * x.flatten(1)  # (2, 16): w_i x_i
    maps = contrib.view(2, 4, 4)
    target = torch.zeros(2, dtype=torch.long)
    deletion, insertion = deletion_insertion_curves(model, x, maps, target, torch.zeros(1, 1, 1, 1), steps=16)
    for i in range(2):
        order = torch.argsort(contrib[i], descending=True)
        removed = torch.cat([torch.zeros(1), torch.cumsum(contrib[i][order], 0)])
        expected_del = torch.sigmoid(contrib[i].sum() - removed)
        expected_ins = torch.sigmoid(removed)
        torch.testing.assert_close(deletion[i], expected_del, atol=1e-6, rtol=0)
        torch.testing.assert_close(insertion[i], expected_ins, atol=1e-6, rtol=0)


def test_weight_times_input_gives_steepest_deletion() -> None:
    model, weight = _linear(seed=3)
    x = torch.rand(1, 1, 4, 4)
    oracle = (weight * x.flatten(1)).view(1, 4, 4)
    target = torch.zeros(1, dtype=torch.long)
    zero = torch.zeros(1, 1, 1, 1)
    best, _ = deletion_insertion_curves(model, x, oracle, target, zero, steps=16)
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        other, _ = deletion_insertion_curves(
            model, x, torch.rand(1, 4, 4, generator=g), target, zero, steps=16
        )
        assert (best <= other + 1e-6).all()
    worst, _ = deletion_insertion_curves(model, x, -oracle, target, zero, steps=16)
    assert curve_auc(best) < curve_auc(worst)


def test_curve_steps_round_pixel_counts_and_batching_does_not_matter() -> None:
    model, _ = _linear(5, 5)
    x = torch.rand(3, 1, 5, 5)
    maps = torch.rand(3, 5, 5)
    t = torch.zeros(3, dtype=torch.long)
    a = deletion_insertion_curves(model, x, maps, t, torch.full((1, 1, 1, 1), 0.5), steps=7, batch_size=2)
    b = deletion_insertion_curves(model, x, maps, t, torch.full((1, 1, 1, 1), 0.5), steps=7, batch_size=999)
    torch.testing.assert_close(a, b)
    # First point of deletion is the clean image, last is the baseline; insertion the reverse.
    with torch.no_grad():
        clean = torch.softmax(model(x), 1)[:, 0]
        gray = torch.softmax(model(torch.full_like(x, 0.5)), 1)[:, 0]
    torch.testing.assert_close(a[0][:, 0], clean)
    torch.testing.assert_close(a[0][:, -1], gray)
    torch.testing.assert_close(a[1][:, 0], gray)
    torch.testing.assert_close(a[1][:, -1], clean)


def test_curve_auc_trapezoid() -> None:
    curves = torch.tensor([[1.0, 0.5, 0.0], [0.0, 0.0, 1.0]])
    torch.testing.assert_close(curve_auc(curves), torch.tensor([0.5, 0.25]))


def test_spearman_rows_matches_scipy_with_ties() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 4, (3, 5, 5), generator=g).float()
    b = torch.rand(3, 5, 5, generator=g)
    rho = spearman_rows(a, b)
    for i in range(3):
        ref = spearmanr(a[i].flatten().numpy(), b[i].flatten().numpy()).statistic
        assert abs(float(rho[i]) - ref) < 1e-10
    const = spearman_rows(torch.zeros(1, 4), torch.rand(1, 4))
    assert torch.isnan(const).all()


class EdgeDetector(Attribution):
    """A 'method' that ignores the model: Sobel gradient magnitude of the image."""

    name: ClassVar[str] = "edges"
    label: ClassVar[str] = "edges"

    def _attribute(
        self, model: nn.Module, x: Tensor, target: Tensor, generator: torch.Generator | None
    ) -> Tensor:
        k = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=x.device)
        gray = x.mean(dim=1, keepdim=True)
        gx = F.conv2d(gray, k.view(1, 1, 3, 3), padding=1)
        gy = F.conv2d(gray, k.t().reshape(1, 1, 3, 3), padding=1)
        return (gx**2 + gy**2).sqrt()


def test_randomization_test_fails_a_method_that_ignores_the_model() -> None:
    model, _ = _linear(8, 8)
    x = torch.rand(4, 1, 8, 8)
    t = torch.zeros(4, dtype=torch.long)
    edges = EdgeDetector()
    result = randomization_test(edges, model, x, t, edges.attribute(model, x, t), seed=0)
    assert result.mean == pytest.approx(1.0)
    assert not result.passed


def test_randomization_test_passes_saliency_of_a_linear_model() -> None:
    # Saliency of a linear model is |w|: independent random weights give unrelated maps.
    model, _ = _linear(8, 8)
    x = torch.rand(4, 1, 8, 8)
    t = torch.zeros(4, dtype=torch.long)
    sal = Saliency()
    result = randomization_test(sal, model, x, t, sal.attribute(model, x, t), seed=1, threshold=0.5)
    assert abs(result.mean) < 0.5
    assert result.passed


def test_randomized_copy_leaves_original_alone() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, 3))
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    full = randomized_copy(model, seed=5)
    again = randomized_copy(model, seed=5)
    top = randomized_copy(model, seed=5, mode="top")
    assert model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert not torch.equal(full[0].weight, model[0].weight)
    assert torch.equal(full[0].weight, again[0].weight)
    assert torch.equal(top[0].weight, model[0].weight)
    assert not torch.equal(top[3].weight, model[3].weight)
    assert not full.training


def test_background_share_by_hand() -> None:
    x = torch.zeros(1, 1, 2, 2)
    x[0, 0, 0, 0] = 1.0
    x[0, 0, 1, 1] = 0.04  # within the tolerance: background
    mask = background_mask(x, 0.0, tolerance=0.05)
    assert mask.tolist() == [[[False, True], [True, True]]]
    maps = torch.tensor([[[3.0, 1.0], [-5.0, 0.0]]])
    torch.testing.assert_close(background_share(maps, mask), torch.tensor([0.25], dtype=torch.float64))
    assert torch.isnan(background_share(-maps.abs(), mask)).all()
