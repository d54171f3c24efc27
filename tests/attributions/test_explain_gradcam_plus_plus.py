"""Grad-CAM++ against a hand computation, pytorch-grad-cam, and inside the explain probe."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from stresslab.attributions import ATTRIBUTIONS, GradCam, GradCamPlusPlus
from stresslab.attributions.gradcam import layer_activations_and_gradients
from stresslab.probes.explain.probe import ExplainProbe
from tests.attributions.test_explain_methods import TinyCNN
from tests.probes.test_explain_probe import FAST, _ctx, _split

torch.set_num_threads(1)


def test_registered_under_its_name() -> None:
    assert "gradcam_plus_plus" in ATTRIBUTIONS.names()
    assert ATTRIBUTIONS.get("gradcam_plus_plus") is GradCamPlusPlus
    assert GradCamPlusPlus.label == "Grad-CAM++"


def test_matches_hand_computation_on_linear_head() -> None:
    # conv -> global average pool -> linear: g_k = d y_c / d A^k_ij = W[c, k] / (h w) at every
    # pixel, so alpha_k = g^2 / (2 g^2 + S_k g^3) with S_k the sum of A^k, and
    # w_k = h w alpha_k ReLU(g_k); the map is ReLU(sum_k w_k A^k).
    torch.manual_seed(5)  # maps with positive and negative sums: the final ReLU matters
    conv = nn.Conv2d(1, 3, 3, padding=1)
    head = nn.Linear(3, 2)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.5, -0.5, 0.8], [-1.0, 0.7, 0.3]]))
    model = nn.Sequential(conv, nn.AdaptiveAvgPool2d(1), nn.Flatten(), head).eval()
    x = torch.rand(2, 1, 6, 6)
    target = torch.tensor([0, 1])
    maps = GradCamPlusPlus("0").attribute(model, x, target)
    acts = F.conv2d(F.pad(x, (1, 1, 1, 1)), conv.weight, conv.bias).detach().double()
    weight = head.weight.detach().double()
    for i in range(2):
        expected = torch.zeros(6, 6, dtype=torch.float64)
        for k in range(3):
            g = float(weight[target[i], k]) / 36.0
            s = float(acts[i, k].sum())
            alpha = g * g / (2 * g * g + s * g**3 + 1e-6)
            expected += 36.0 * alpha * max(g, 0.0) * acts[i, k]
        assert (expected > 0).any() and (expected < 0).any()
        expected = expected.clamp(min=0)
        torch.testing.assert_close(maps[i].double(), expected, atol=1e-6, rtol=1e-5)
    # Not Grad-CAM under another name: the weights differ.
    cam = GradCam("0").attribute(model, x, target)
    assert not torch.allclose(
        maps / maps.amax(dim=(1, 2), keepdim=True), cam / cam.amax(dim=(1, 2), keepdim=True)
    )


def _pair(channels: int) -> tuple[TinyCNN, TinyCNN]:
    torch.manual_seed(4)
    a = TinyCNN(channels).eval()
    b = TinyCNN(channels).eval()
    b.load_state_dict(a.state_dict())
    return a, b


@pytest.mark.parametrize("channels", [1, 3])
def test_channel_weights_match_pytorch_grad_cam(channels: int) -> None:
    pgc = pytest.importorskip("pytorch_grad_cam")
    model, _ = _pair(channels)
    x = torch.rand(4, channels, 8, 8)
    target = torch.tensor([0, 1, 2, 1])
    act, grad = layer_activations_and_gradients(model, "conv2", x, target)
    assert (grad == 0).any() and (grad != 0).any()  # the ReLU after conv2 zeroes some gradients
    ref_cam = pgc.GradCAMPlusPlus(model=model, target_layers=[model.conv2])
    try:
        ref = ref_cam.get_cam_weights(x, [model.conv2], None, act.numpy(), grad.numpy())
    finally:
        ref_cam.activations_and_grads.release()
    ours = GradCamPlusPlus().channel_weights(act, grad)[:, :, 0, 0]
    torch.testing.assert_close(ours, torch.from_numpy(ref).float(), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("channels", [1, 3])
def test_maps_match_pytorch_grad_cam_up_to_its_min_max_scaling(channels: int) -> None:
    pgc = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    ours_model, ref_model = _pair(channels)
    x = torch.rand(6, channels, 8, 8)
    target = torch.tensor([0, 1, 2, 1, 0, 2])
    ours = GradCamPlusPlus().attribute(ours_model, x, target)
    cam = pgc.GradCAMPlusPlus(model=ref_model, target_layers=[ref_model.conv2])
    try:
        ref = torch.from_numpy(cam(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in target]))
    finally:
        cam.activations_and_grads.release()
    assert ref.shape == ours.shape == (6, 8, 8)
    lo, hi = ours.amin(dim=(1, 2), keepdim=True), ours.amax(dim=(1, 2), keepdim=True)
    varied = (hi > lo).flatten()
    assert varied.sum() >= 4
    scaled = (ours - lo) / (hi - lo).clamp(min=1e-30)
    torch.testing.assert_close(scaled[varied], ref[varied].float(), atol=1e-5, rtol=0)
    assert (ref[~varied] == 0).all()


def test_runs_in_the_probe_with_its_true_class_map() -> None:
    res = ExplainProbe(
        methods={"gradcam_plus_plus": {"layer": "body.2"}, "gradcam": {}},
        n_high_confidence=2,
        n_uncertain=1,
        min_error_confidence=0.0,
        **FAST,
    ).run(_ctx(_split()))
    for key in ("deletion_auc", "insertion_auc", "faithful", "sanity_pass", "background_share_errors"):
        assert f"gradcam_plus_plus.{key}" in res.metrics
    assert all(math.isfinite(v) for v in res.metrics.values())
    assert res.tables[0].rows[0][0] == "Grad-CAM++"
    assert res.data["settings"]["method_settings"]["gradcam_plus_plus"] == {"layer": "body.2"}
    # Predicted and true class for each CAM method: image + 2 + 2 columns.
    fig = res.figures["cases_01"]
    assert len(fig.axes) == 5 * min(FAST["cases_per_figure"], len(res.data["cases"]))
    titles = [ax.get_title() for ax in fig.axes[1:5]]
    assert titles[0].startswith("Grad-CAM++ (pred)") and titles[1].startswith("Grad-CAM++ (true)")
    # The first CAM method listed heads the background summary.
    assert any(s.startswith("With Grad-CAM++,") for s in res.summary)
