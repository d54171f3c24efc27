"""Shared checks for models built from timm and torchvision names."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from captum.attr import LayerGradCam
from torch import nn

from stresslab.attributions import GradCam
from stresslab.data.base import DatasetInfo
from stresslab.models import get_layer
from stresslab.models.base import Classifier


def make_info(channels: int, size: int, classes: int = 10) -> DatasetInfo:
    return DatasetInfo(
        name="tiny",
        class_names=tuple(f"c{i}" for i in range(classes)),
        channels=channels,
        height=size,
        width=size,
        mean=(0.3,) * channels,
        std=(0.25,) * channels,
    )


def check_hub_contract(model: Classifier, info: DatasetInfo) -> torch.Tensor:
    """Logits, features and head agree; one SGD step changes the weights and lowers nothing to
    NaN; Grad-CAM on the found layer equals Captum's LayerGradCam there. Returns the maps."""
    torch.manual_seed(0)
    k = info.num_classes
    x = torch.rand(4, info.channels, info.height, info.width)
    y = torch.arange(4) % k

    model.eval()
    with torch.no_grad():
        logits = model(x)
        assert logits.shape == (4, k)
        feats = model.features(x)
        assert feats.ndim == 2 and feats.shape[0] == 4
        torch.testing.assert_close(model.head(feats), logits, atol=1e-4, rtol=1e-3)
    head = model.head
    assert isinstance(head, (nn.Linear, nn.Conv2d))
    assert (head.out_features if isinstance(head, nn.Linear) else head.out_channels) == k

    # One training step.
    model.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = F.cross_entropy(model(x), y)
    assert torch.isfinite(loss)
    opt.zero_grad()
    loss.backward()
    opt.step()
    changed = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert any(n.startswith("body.") for n in changed)
    assert all(torch.isfinite(p).all() for p in model.parameters())

    # Grad-CAM maps on the layer found automatically, checked against Captum.
    model.eval()
    method, notes = GradCam().prepare(model, info)
    assert method.layer == model.cam_layer and not notes  # type: ignore[attr-defined]
    maps = method.attribute(model, x, y)
    assert maps.shape == (4, info.height, info.width) and torch.isfinite(maps).all()
    ref = LayerGradCam(model, get_layer(model, model.cam_layer)).attribute(
        x, target=y, relu_attributions=True
    )
    ref = F.interpolate(ref.detach(), size=(info.height, info.width), mode="bilinear", align_corners=False)
    torch.testing.assert_close(maps, ref[:, 0], atol=1e-5, rtol=1e-4)
    return maps
