"""The one layer finder (record_layers) and the checked choice of the Grad-CAM layer."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from stresslab.attributions.gradcam import GradCam
from stresslab.attributions.occlusion import Occlusion
from stresslab.models.layers import (
    cam_nonconstant,
    choose_cam_layer,
    constant_maps,
    record_layers,
)


class Flatten(nn.Module):
    """Replaces each channel by its spatial mean, broadcast back: a map with no spatial
    variation, so any CAM of it is constant."""

    def forward(self, x: Tensor) -> Tensor:
        return x.mean(dim=(2, 3), keepdim=True).expand_as(x).contiguous()


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),  # "1": varies in space
        nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), Flatten()),  # "2": constant in space
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    )


def test_record_layers_sees_calls_and_outputs_in_order_and_leaves_no_hooks() -> None:
    net = _net().train()
    x = torch.rand(2, 1, 6, 6)
    events = record_layers(net, x)
    assert [(e.kind, e.name) for e in events[:4]] == [
        ("call", "0"),
        ("done", "0"),
        ("call", "1"),
        ("done", "1"),
    ]
    first = events[0]
    assert first.reads_input and first.shape == (2, 1, 6, 6)
    assert not any(e.reads_input for e in events[1:])
    # The block finishes after its children; the pool's output is 1x1, not a spatial map.
    done = [e.name for e in events if e.kind == "done"]
    assert done.index("2.1") < done.index("2")
    assert [e.name for e in events if e.is_spatial_map] == ["0", "1", "2.0", "2.1", "2"]
    only = record_layers(net, x, lambda _, m: isinstance(m, nn.Conv2d))
    assert {e.name for e in only} == {"0", "2.0"}
    assert net.training
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in net.modules())


def test_constant_maps_by_hand() -> None:
    maps = torch.tensor([[[0.0, 0.0], [0.0, 0.0]], [[2.0, 2.0], [2.0, 2.0 + 1e-9]], [[0.0, 1.0], [0.0, 0.0]]])
    assert constant_maps(maps).tolist() == [True, True, False]


def test_the_deepest_layer_with_nonconstant_maps_is_chosen() -> None:
    net = _net()
    x = torch.rand(10, 1, 6, 6)
    choice = choose_cam_layer(net, x)
    # Deepest first: the block (constant), then its inner modules are not candidates, then the ReLU.
    assert [t.layer for t in choice.tried] == ["2", "1"]
    assert choice.tried[0].share == 0.0
    assert choice.layer == "1" and choice.size == (6, 6) and choice.share == 1.0
    assert "deepest" in choice.reason and "2 0%" in choice.reason
    # The count agrees with Grad-CAM itself (tested against Captum) on each layer.
    pred = net(x).argmax(1)
    for layer in ("1", "2"):
        maps = GradCam(layer).attribute(net, x, pred)
        assert cam_nonconstant(net, [layer], x)[layer] == int((~constant_maps(maps)).sum())
    # A declared layer that passes is kept, even when it is not the deepest candidate.
    declared = choose_cam_layer(net, x, prefer="0")
    assert declared.layer == "0" and "declared" in declared.reason
    # One that fails is not: the search goes on.
    assert choose_cam_layer(net, x, prefer="2").layer == "1"
    assert not any(m._forward_hooks for m in net.modules())


def test_no_layer_when_every_candidate_is_constant() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), Flatten()),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2, 2),
    )
    choice = choose_cam_layer(net, torch.rand(4, 1, 5, 5))
    assert choice.layer == "" and "no candidate layer" in choice.reason and "(best: 0, 0%)" in choice.reason


@pytest.mark.parametrize(("side", "window", "stride"), [(28, 8, 2), (8, 2, 1), (224, 64, 16), (2, 1, 1)])
def test_occlusion_window_and_stride_are_shares_of_the_image(side: int, window: int, stride: int) -> None:
    assert Occlusion.default_sizes(side, side) == (window, stride)
    assert Occlusion().sizes(side, side + 5) == (window, stride)
    assert Occlusion(stride=3).sizes(side, side) == (window, min(3, window))


def test_default_occlusion_maps_on_8x8_images_are_not_constant() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 64, 3))
    x = torch.rand(5, 1, 8, 8)
    maps = Occlusion().attribute(net, x, net(x).argmax(1))
    assert not constant_maps(maps).any()
    # The old fixed window (8 px) covers the whole 8x8 image: one position, a constant map.
    assert constant_maps(Occlusion(8, 2).attribute(net, x, net(x).argmax(1))).all()
