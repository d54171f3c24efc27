"""NT-Xent against a hand computation and against lightly's NTXentLoss."""

from __future__ import annotations

import math

import pytest
import torch

from stresslab.train.contrastive import ProjectionHead, nt_xent_logits, nt_xent_loss


def test_nt_xent_by_hand_on_two_pairs() -> None:
    # Views: a1 = (3, 0), b1 = (0, 2) (lengths differ on purpose: the loss normalizes),
    # a2 = (1, 0), b2 = (0, -1). Cosines: a1.a2 = 1, b1.b2 = -1, every other pair 0.
    z1 = torch.tensor([[3.0, 0.0], [0.0, 2.0]])
    z2 = torch.tensor([[1.0, 0.0], [0.0, -1.0]])
    t = 0.5
    # Anchor a1: positive a2 (cos 1), negatives b1, b2 (cos 0): -log(e^2 / (e^2 + 1 + 1)).
    la = -math.log(math.exp(1 / t) / (math.exp(1 / t) + 2.0))
    # Anchor b1: positive b2 (cos -1), negatives a1, a2 (cos 0): -log(e^-2 / (e^-2 + 1 + 1)).
    lb = -math.log(math.exp(-1 / t) / (math.exp(-1 / t) + 2.0))
    # a2 and b2 as anchors mirror a1 and b1; the loss is the mean over the 4 anchors.
    expected = (2 * la + 2 * lb) / 4
    assert nt_xent_loss(z1, z2, t).item() == pytest.approx(expected, rel=1e-6)
    logits, targets = nt_xent_logits(z1, z2, t)
    assert targets.tolist() == [2, 3, 0, 1]
    assert torch.isinf(logits.diagonal()).all()


def test_nt_xent_of_identical_projections_is_log_2n_minus_1() -> None:
    z = torch.ones(5, 3)
    assert nt_xent_loss(z, z.clone(), 0.2).item() == pytest.approx(math.log(9), rel=1e-6)


def test_nt_xent_needs_negatives_and_a_positive_temperature() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        nt_xent_loss(torch.ones(1, 3), torch.ones(1, 3))
    with pytest.raises(ValueError, match="temperature"):
        nt_xent_loss(torch.ones(2, 3), torch.ones(2, 3), 0.0)


@pytest.mark.parametrize("temperature", [0.1, 0.5, 1.0])
def test_nt_xent_equals_lightly_in_value_and_gradient(temperature: float) -> None:
    lightly_loss = pytest.importorskip("lightly.loss")
    g = torch.Generator().manual_seed(0)
    a = torch.randn(16, 8, generator=g, requires_grad=True)
    b = torch.randn(16, 8, generator=g, requires_grad=True)
    ours = nt_xent_loss(a, b, temperature)
    (ga, gb) = torch.autograd.grad(ours, (a, b))
    ref = lightly_loss.NTXentLoss(temperature=temperature)(a, b)
    (ra, rb) = torch.autograd.grad(ref, (a, b))
    assert ours.item() == pytest.approx(ref.item(), abs=1e-5)
    torch.testing.assert_close(ga, ra, atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(gb, rb, atol=1e-6, rtol=1e-4)


def test_projection_head_matches_lightly_layout() -> None:
    heads = pytest.importorskip("lightly.models.modules.heads")
    ours = ProjectionHead(12, 4)
    ref = heads.SimCLRProjectionHead(12, 12, 4)
    assert [tuple(p.shape) for p in ours.parameters()] == [tuple(p.shape) for p in ref.parameters()]
    ref.load_state_dict(dict(zip(ref.state_dict(), ours.state_dict().values(), strict=True)))
    x = torch.randn(6, 12)
    torch.testing.assert_close(ours(x), ref(x))
