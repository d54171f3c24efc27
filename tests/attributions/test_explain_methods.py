"""Attribution methods against hand computations and Captum on tiny models."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from captum.attr import IntegratedGradients as CaptumIG
from captum.attr import LayerGradCam, NoiseTunnel
from captum.attr import Occlusion as CaptumOcclusion
from captum.attr import Saliency as CaptumSaliency
from torch import nn

from stresslab.attributions import (
    ATTRIBUTIONS,
    AttentionRollout,
    Attribution,
    GradCam,
    GradCamPlusPlus,
    IntegratedGradients,
    Occlusion,
    Saliency,
    SmoothGrad,
    fill_value,
)
from stresslab.attributions.occlusion import window_starts
from stresslab.data.base import DatasetInfo

torch.set_num_threads(1)


class TinyCNN(nn.Module):
    """Conv -> ReLU -> conv (the Grad-CAM layer) -> ReLU -> pool -> linear."""

    cam_layer = "conv2"

    def __init__(self, channels: int = 1, classes: int = 3, inplace: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 5, 3, padding=1, stride=2)
        self.act = nn.ReLU(inplace=inplace)
        self.head = nn.Linear(5 * 4, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.conv2(torch.relu(self.conv1(x))))
        return self.head(torch.flatten(F.adaptive_avg_pool2d(h, 2), 1))


def _model(channels: int = 1, inplace: bool = False, seed: int = 0) -> TinyCNN:
    torch.manual_seed(seed)
    return TinyCNN(channels, inplace=inplace).eval()


def test_gradcam_matches_hand_computation_on_linear_head() -> None:
    # conv -> global average pool -> linear: dy_c/dA^k_ij = W[c, k] / (h w) exactly.
    torch.manual_seed(1)
    conv = nn.Conv2d(1, 3, 3, padding=1)
    model = nn.Sequential(conv, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2)).eval()
    x = torch.rand(2, 1, 6, 6)
    target = torch.tensor([0, 1])
    maps = GradCam("0").attribute(model, x, target)
    assert (maps > 0).any() and (maps == 0).any()  # both signs of the sum occur: the ReLU matters
    acts = F.conv2d(F.pad(x, (1, 1, 1, 1)), conv.weight, conv.bias)
    w = model[3].weight
    for i in range(2):
        alpha = w[target[i]] / 36.0
        expected = torch.relu((alpha[:, None, None] * acts[i]).sum(0))
        torch.testing.assert_close(maps[i], expected.detach(), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("channels", [1, 3])
def test_gradcam_matches_captum_layer_gradcam(channels: int) -> None:
    model = _model(channels)
    x = torch.rand(4, channels, 8, 8)
    target = torch.tensor([0, 1, 2, 1])
    ours = GradCam().attribute(model, x, target)
    ref = LayerGradCam(model, model.conv2).attribute(x, target=target, relu_attributions=True)
    ref = F.interpolate(ref, size=(8, 8), mode="bilinear", align_corners=False)[:, 0]
    torch.testing.assert_close(ours, ref.detach(), atol=1e-5, rtol=0)
    assert ours.shape == (4, 8, 8)


def test_gradcam_survives_inplace_relu_after_layer() -> None:
    x = torch.rand(3, 1, 8, 8)
    target = torch.tensor([2, 0, 1])
    plain = GradCam().attribute(_model(inplace=False), x, target)
    inplace = GradCam().attribute(_model(inplace=True), x, target)
    torch.testing.assert_close(plain, inplace)


@pytest.mark.parametrize("channels", [1, 3])
def test_saliency_matches_captum(channels: int) -> None:
    model = _model(channels)
    x = torch.rand(3, channels, 8, 8)
    target = torch.tensor([0, 2, 1])
    raw = Saliency()._attribute(model, x, target, None)
    ref = CaptumSaliency(model).attribute(x.clone().requires_grad_(), target=target, abs=True)
    torch.testing.assert_close(raw, ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(Saliency().attribute(model, x, target), ref.amax(dim=1), atol=1e-6, rtol=0)


def test_smoothgrad_matches_captum_noise_tunnel_with_same_noise() -> None:
    model = _model(3)
    x = torch.rand(2, 3, 8, 8)
    target = torch.tensor([1, 2])
    n, sigma = 6, 0.2
    # Captum draws its noise as torch.normal(0, stdev repeated), image by image.
    torch.manual_seed(5)
    noise = torch.normal(0, torch.tensor(sigma).repeat((2 * n, 3, 8, 8)))
    torch.manual_seed(5)
    ref = NoiseTunnel(CaptumSaliency(model)).attribute(
        x, nt_type="smoothgrad", nt_samples=n, stdevs=sigma, target=target, abs=True
    )
    ours = SmoothGrad(n, sigma).with_noise(model, x, target, noise)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


def test_smoothgrad_is_reproducible_from_generator() -> None:
    model = _model()
    x = torch.rand(2, 1, 8, 8)
    t = torch.tensor([0, 1])
    a = SmoothGrad(4).attribute(model, x, t, generator=torch.Generator().manual_seed(3))
    b = SmoothGrad(4).attribute(model, x, t, generator=torch.Generator().manual_seed(3))
    c = SmoothGrad(4).attribute(model, x, t, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_integrated_gradients_is_complete() -> None:
    # Completeness (Sundararajan et al.): attributions sum to f(x) - f(baseline).
    model = _model(3)
    x = torch.rand(2, 3, 8, 8)
    target = torch.tensor([0, 2])
    maps = IntegratedGradients(steps=64, baseline="gray").attribute(model, x, target)
    with torch.no_grad():
        gap = model(x).gather(1, target[:, None])[:, 0] - model(torch.full_like(x, 0.5))[:, target].diagonal()
    torch.testing.assert_close(maps.flatten(1).sum(1), gap, atol=2e-3, rtol=0)
    ref = CaptumIG(model).attribute(x, baselines=torch.full_like(x, 0.5), target=target, n_steps=64)
    torch.testing.assert_close(maps, ref.sum(1), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("channels", "size", "window", "stride", "fill"),
    [
        (1, (12, 12), 8, 2, "gray"),
        (3, (11, 9), 4, 3, "mean"),
        (1, (10, 10), 3, 3, "zero"),
        (3, (8, 8), 3, 1, 0.25),
    ],
)
def test_occlusion_matches_captum(
    channels: int, size: tuple[int, int], window: int, stride: int, fill: str | float
) -> None:
    model = _model(channels)
    x = torch.rand(3, channels, *size)
    target = torch.tensor([0, 1, 2])
    mean = [0.2, 0.4, 0.6][:channels]
    occ = Occlusion(window, stride, fill, mean)
    ours = occ.maps(model, x, target[:, None], batch_size=37)
    base = fill_value(fill, channels, mean).expand(3, channels, *size).contiguous()
    ref = CaptumOcclusion(lambda z: torch.softmax(model(z), dim=1)).attribute(
        x,
        sliding_window_shapes=(channels, window, window),
        strides=(channels, stride, stride),
        baselines=base,
        target=target,
        perturbations_per_eval=occ.positions(*size),
    )
    torch.testing.assert_close(ours.drop[:, 0], ref[:, 0], atol=1e-5, rtol=0)
    torch.testing.assert_close(occ.attribute(model, x, target), ref[:, 0], atol=1e-5, rtol=0)
    rows = window_starts(size[0], window, stride)
    cols = window_starts(size[1], window, stride)
    assert ours.grid.shape == (3, 1, len(rows), len(cols))
    # The grid is the true probability with the patch at (row, col): check one by hand.
    r, c = rows[-1], cols[1]
    occluded = x.clone()
    occluded[:, :, r : r + window, c : c + window] = fill_value(fill, channels, mean)[0]
    with torch.no_grad():
        p = torch.softmax(model(occluded), 1).gather(1, target[:, None])[:, 0]
    torch.testing.assert_close(ours.grid[:, 0, -1, 1], p, atol=1e-6, rtol=0)


def test_occlusion_several_targets_in_one_pass() -> None:
    model = _model()
    x = torch.rand(2, 1, 12, 12)
    both = Occlusion(4, 2).maps(model, x, torch.tensor([[0, 1], [2, 0]]))
    one = Occlusion(4, 2).maps(model, x, torch.tensor([[1], [0]]))
    torch.testing.assert_close(both.drop[:, 1], one.drop[:, 0])
    torch.testing.assert_close(both.confidence, both.base[:, :, None, None] - both.drop)


def _tiny_vit() -> nn.Module:
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    return timm.models.vision_transformer.VisionTransformer(
        img_size=8, patch_size=4, in_chans=1, embed_dim=8, depth=2, num_heads=2, num_classes=3
    )


def _state(model: nn.Module) -> tuple[bool, list[bool], list[torch.Tensor | None], int]:
    hooks = sum(
        len(m._forward_hooks) + len(m._backward_hooks) + len(m._forward_pre_hooks) for m in model.modules()
    )
    return (
        model.training,
        [p.requires_grad for p in model.parameters()],
        [p.grad for p in model.parameters()],
        hooks,
    )


class Boom(RuntimeError):
    pass


def test_hooks_removed_and_mode_restored_after_exception() -> None:
    model = _model()
    model.train()
    sentinel = torch.ones_like(model.conv1.weight)
    model.conv1.weight.grad = sentinel

    def explode(module: nn.Module, inputs: object, output: torch.Tensor) -> None:
        raise Boom("head failed")

    # The failure comes after the Grad-CAM hook fired, in the middle of the forward pass.
    handle = model.head.register_forward_hook(explode)
    with pytest.raises(Boom):
        GradCam().attribute(model, torch.rand(2, 1, 8, 8), torch.tensor([0, 1]))
    handle.remove()
    training, flags, grads, hooks = _state(model)
    assert training is True
    assert all(flags)
    assert grads[0] is sentinel and all(g is None for g in grads[1:])
    assert hooks == 0


def test_occlusion_honours_the_callers_batch_size() -> None:
    model = _model()
    sizes: list[int] = []
    handle = model.register_forward_pre_hook(lambda m, inputs: sizes.append(inputs[0].shape[0]))
    x = torch.rand(5, 1, 8, 8)
    t = torch.tensor([0, 1, 2, 0, 1])
    occ = Occlusion(4, 2)
    try:
        maps = occ.attribute(model, x, t, batch_size=4)
    finally:
        handle.remove()
    assert max(sizes) <= 4
    assert sum(sizes) == 5 * (1 + occ.positions(8, 8))  # clean images, then every patch position
    torch.testing.assert_close(maps, occ.attribute(model, x, t, batch_size=1000), atol=1e-6, rtol=0)


def test_registry_builds_every_method_and_reads_capabilities() -> None:
    expected = {
        "gradcam": GradCam,
        "gradcam_plus_plus": GradCamPlusPlus,
        "saliency": Saliency,
        "smoothgrad": SmoothGrad,
        "integrated_gradients": IntegratedGradients,
        "occlusion": Occlusion,
        "attention_rollout": AttentionRollout,
    }
    for name, cls in expected.items():
        assert ATTRIBUTIONS.get(name) is cls and cls.name == name
    for name in ATTRIBUTIONS.names():
        method = ATTRIBUTIONS.get(name)()
        assert set(method.used_settings()) == set(type(method).options)
    assert GradCam.needs_conv_layer and GradCam.has_true_class_variant
    assert GradCamPlusPlus.needs_conv_layer and GradCamPlusPlus.has_true_class_variant
    assert SmoothGrad.stochastic and not Saliency.stochastic
    assert not Occlusion.gradient_based and Occlusion.has_confidence_map
    assert not AttentionRollout.gradient_based and AttentionRollout.needs_attention
    forward_only = ("occlusion", "attention_rollout")
    assert all(ATTRIBUTIONS.get(n).gradient_based for n in ATTRIBUTIONS.names() if n not in forward_only)


def test_prepare_fits_methods_to_model_and_data() -> None:
    info = DatasetInfo("toy", ("a", "b", "c"), 3, 6, 10, (0.1, 0.2, 0.3), (1.0, 1.0, 1.0))
    model = _model(3)
    occ, notes = Occlusion(8, 3, "mean").prepare(model, info)
    assert occ.used_settings() == {"window": 1, "stride": 1, "fill": "mean"}
    assert notes == ["occlusion window 8 is larger than the 6x10 images; used 1x1 with stride 1"]
    cam, notes = GradCam().prepare(model, info)
    assert cam.used_settings() == {"layer": "conv2"} and notes == []
    ig, _ = IntegratedGradients(baseline="mean").prepare(model, info)
    torch.testing.assert_close(ig.baseline_fill(3), torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1))
    assert Saliency().baseline_fill(3) is None


@pytest.mark.parametrize("name", ATTRIBUTIONS.names())
def test_every_registered_method_leaves_model_untouched(name: str) -> None:
    small = {"smoothgrad": {"samples": 3}, "integrated_gradients": {"steps": 4}, "occlusion": {"window": 4}}
    method = ATTRIBUTIONS.get(name)(**small.get(name, {}))
    assert isinstance(method, Attribution)
    model = _model()
    if method.needs_attention:  # a method for vision transformers: on a tiny one
        assert method.unavailable(model)
        model = _tiny_vit()
    assert method.unavailable(model) == ""
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    maps = method.attribute(model, torch.rand(3, 1, 8, 8), torch.tensor([0, 1, 2]), batch_size=2)
    assert maps.shape == (3, 8, 8) and torch.isfinite(maps).all()
    training, flags, grads, hooks = _state(model)
    assert training and all(flags) and all(g is None for g in grads) and hooks == 0
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_gradient_passes_are_bounded_in_pixels_and_keep_the_maps(monkeypatch: pytest.MonkeyPatch) -> None:
    # A budget of 3 images of 8x8 per backward pass: Saliency's chunk of 5 and SmoothGrad's
    # 5 x 4 noisy copies are both split, and the maps stay the same.
    model = _model()
    x = torch.rand(5, 1, 8, 8)
    t = torch.tensor([0, 1, 2, 0, 1])
    noise = torch.randn(5 * 4, 1, 8, 8) * 0.2
    before_sal = Saliency().attribute(model, x, t, batch_size=64)
    before_sg = SmoothGrad(4, 0.2).with_noise(model, x, t, noise)
    before_draw = SmoothGrad(4).attribute(model, x, t, generator=torch.Generator().manual_seed(3))
    monkeypatch.setattr("stresslab.devices.GRADIENT_PIXELS", 3 * 8 * 8)
    sizes: list[int] = []
    handle = model.register_forward_pre_hook(lambda m, inputs: sizes.append(inputs[0].shape[0]))
    try:
        after_sal = Saliency().attribute(model, x, t, batch_size=64)
        assert max(sizes) == 3
        sizes.clear()
        after_sg = SmoothGrad(4, 0.2).with_noise(model, x, t, noise)
        assert max(sizes) == 4  # one image's copies at a time (3 // 4 images, at least 1)
        after_draw = SmoothGrad(4).attribute(model, x, t, generator=torch.Generator().manual_seed(3))
    finally:
        handle.remove()
    torch.testing.assert_close(after_sal, before_sal, atol=1e-6, rtol=0)
    torch.testing.assert_close(after_sg, before_sg, atol=1e-6, rtol=0)
    torch.testing.assert_close(after_draw, before_draw, atol=1e-6, rtol=0)  # same noise drawn
