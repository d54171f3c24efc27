"""The random projection that bounds embedding width: seeded, distance-keeping, the same
drawn whole or by blocks, and applied by Predictions to wide features only."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from stresslab.metrics import projection as pj
from stresslab.probes.ood.scores import all_scores, fit
from stresslab.probes.predictions import Predictions


def test_a_projection_is_seeded_keeps_distances_and_is_the_same_cached_or_by_blocks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 3000, generator=g)
    proj = pj.Projection(3000, 256)
    once = proj(x)
    assert torch.equal(once, proj(x))
    assert not torch.equal(once, pj.Projection(3000, 256, seed=1)(x))
    ratio = torch.pdist(once) / torch.pdist(x)  # Johnson-Lindenstrauss: within ~3/sqrt(256)
    assert float(ratio.min()) > 0.75 and float(ratio.max()) < 1.25
    monkeypatch.setattr(pj, "CACHED_BYTES", 0)  # drawn block by block: the same matrix
    torch.testing.assert_close(proj(x), once, rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match=r"\(N, 3000\)"):
        proj(x[:, :10])
    assert pj.bounded(x[:, :100]).shape == (40, 100)  # narrow features are kept as they are


class _Wide(nn.Module):
    """features(): the flattened image (C*H*W wide); head: a fixed linear map."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.head = nn.Linear(width, 3)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def test_predictions_keep_wide_features_projected_and_the_logits_unchanged() -> None:
    torch.manual_seed(0)
    side = 48  # 3 x 48 x 48 = 6,912 > MAX_EMBEDDING_DIM
    model = _Wide(3 * side * side)
    x = torch.randint(0, 256, (20, 3, side, side), dtype=torch.uint8)
    p = Predictions.compute(model, x, torch.zeros(20), torch.arange(20), batch_size=8)
    assert p.embeddings.shape == (20, pj.MAX_EMBEDDING_DIM)
    flat = x.float().div(255).flatten(1)
    torch.testing.assert_close(p.logits, model(x.float().div(255)), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(p.embeddings, pj.Projection(flat.shape[1])(flat), rtol=1e-4, atol=1e-3)
    # An image of no class still stands out in the projected space (ood's feature scores).
    means = torch.randn(4, 3 * side * side)
    labels = torch.arange(200) % 4
    bank = pj.bounded(means[labels] + 0.1 * torch.randn(200, 3 * side * side))
    fitted = fit(bank, labels, k=5)
    test = pj.bounded(
        torch.cat([means[:3] + 0.1 * torch.randn(3, 3 * side * side), torch.randn(1, 3 * side * side)])
    )
    scores = all_scores(torch.zeros(4, 4), test, fitted)
    assert int(scores["mahalanobis"].argmax()) == 3 and int(scores["knn"].argmax()) == 3
