"""Grad-CAM on vision transformers: patch tokens on the patch grid (against pytorch-grad-cam's
ViT recipe), the layer check on token layers, timm's vit_tiny through the model factory,
and the explain probe offering attention rollout on a ViT only; the maps of a ViT trained for
a few seconds on a toy task."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from stresslab.attributions import GradCam, GradCamPlusPlus
from stresslab.attributions.gradcam import layer_activations_and_gradients
from stresslab.data.base import DatasetInfo
from stresslab.models.factory import build_model
from stresslab.models.layers import choose_cam_layer
from stresslab.models.tokens import TokenGrid
from stresslab.probes.base import ProbeContext
from stresslab.probes.explain.probe import ExplainProbe
from stresslab.probes.explain.settings import with_offered
from stresslab.probes.predictions import Predictions
from tests.probes.test_explain_probe import FAST, _ctx, _split

timm = pytest.importorskip("timm")


def _tiny_vit() -> nn.Module:
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(1)
    args = {"img_size": 16, "patch_size": 4, "in_chans": 1, "embed_dim": 16, "depth": 2, "num_heads": 2}
    return VisionTransformer(num_classes=3, **args).eval()  # type: ignore[arg-type]


def _reshape_transform(tensor: torch.Tensor, height: int = 4, width: int = 4) -> torch.Tensor:
    # pytorch-grad-cam's usage_examples/vit_example.py, for a 4x4 patch grid.
    result = tensor[:, 1:, :].reshape(tensor.size(0), height, width, tensor.size(2))
    return result.transpose(2, 3).transpose(1, 2)


def test_token_maps_drop_the_class_token_and_lie_on_the_patch_grid() -> None:
    tokens = torch.arange(2 * 5 * 3, dtype=torch.float32).reshape(2, 5, 3)  # 1 prefix + 2x2 patches
    maps = TokenGrid(prefix=1, grid=(2, 2)).to_map(tokens)
    assert maps.shape == (2, 3, 2, 2)
    # Patch token 1 + (r * 2 + c) sits at (r, c).
    for r in range(2):
        for c in range(2):
            torch.testing.assert_close(maps[:, :, r, c], tokens[:, 1 + 2 * r + c])
    model = _tiny_vit()
    act, grad = layer_activations_and_gradients(
        model, "blocks.1.norm1", torch.rand(2, 1, 16, 16), torch.tensor([0, 2])
    )
    assert act.shape == grad.shape == (2, 16, 4, 4) and (grad != 0).any()
    # After the last block only the class token reaches the head: patch gradients vanish.
    _, late = layer_activations_and_gradients(
        model, "blocks.1", torch.rand(2, 1, 16, 16), torch.tensor([0, 2])
    )
    assert (late == 0).all()


@pytest.mark.parametrize(("ours", "name"), [(GradCam, "GradCAM"), (GradCamPlusPlus, "GradCAMPlusPlus")])
def test_vit_maps_match_pytorch_grad_cam_with_its_reshape_transform(ours: type[GradCam], name: str) -> None:
    pgc = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model, ref_model = _tiny_vit(), _tiny_vit()
    x = torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    target = torch.tensor([0, 1, 2, 1])
    maps = ours("blocks.1.norm1").attribute(model, x, target)
    cam = getattr(pgc, name)(
        model=ref_model, target_layers=[ref_model.blocks[-1].norm1], reshape_transform=_reshape_transform
    )
    try:
        ref = torch.from_numpy(cam(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in target]))
    finally:
        cam.activations_and_grads.release()
    assert ref.shape == maps.shape == (4, 16, 16)
    lo, hi = maps.amin(dim=(1, 2), keepdim=True), maps.amax(dim=(1, 2), keepdim=True)
    varied = (hi > lo).flatten()
    assert varied.sum() >= 3
    scaled = (maps - lo) / (hi - lo).clamp(min=1e-30)
    torch.testing.assert_close(scaled[varied], ref[varied].float(), atol=1e-4, rtol=0)


def test_the_layer_check_reads_token_layers_and_picks_the_last_blocks_norm1() -> None:
    choice = choose_cam_layer(_tiny_vit(), torch.rand(8, 1, 16, 16))
    tried = {t.layer: t.share for t in choice.tried}
    # The final norm and everything after the last attention see zero patch gradients.
    assert tried["norm"] == tried["blocks.1"] == tried["blocks.1.attn"] == 0.0
    assert choice.layer == "blocks.1.norm1" and choice.size == (4, 4) and choice.share == 1.0


def _info(channels: int, size: int) -> DatasetInfo:
    return DatasetInfo("toy", ("a", "b", "c"), channels, size, size, (0.5,) * channels, (0.25,) * channels)


def _check_maps(model: nn.Module, info: DatasetInfo) -> None:
    from stresslab.attributions import ATTRIBUTIONS

    x = torch.rand(2, info.channels, info.height, info.width, generator=torch.Generator().manual_seed(0))
    for name in ("gradcam", "attention_rollout"):
        method, _ = ATTRIBUTIONS.build(name).prepare(model, info)
        maps = method.attribute(model, x, torch.tensor([0, 1]), batch_size=2)
        assert maps.shape == (2, info.height, info.width), name
        assert (maps.flatten(1).std(dim=1) > 0).all(), name  # not constant


def test_a_small_vit_tiny_from_the_factory_explains_with_no_settings() -> None:
    info = _info(1, 32)
    model = build_model("timm:vit_tiny_patch16_224", info, {"img_size": 32, "patch_size": 8})
    assert model.cam_layer == "body.blocks.11.norm1"
    _check_maps(model, info)


def test_vit_tiny_patch16_224_at_its_own_size() -> None:
    info = _info(3, 224)
    model = build_model("timm:vit_tiny_patch16_224", info)
    assert model.cam_layer == "body.blocks.11.norm1"
    _check_maps(model, info)


QUICK = {"n_high_confidence": 2, "n_uncertain": 1, "min_error_confidence": 0.0, "quality_images": 16, **FAST}


def test_attention_rollout_is_offered_on_a_vit_only_and_skipped_elsewhere_with_the_reason() -> None:
    vit = build_model("timm:vit_tiny_patch16_224", _info(1, 12), {"img_size": 12, "patch_size": 4})
    methods = ExplainProbe().methods
    assert list(with_offered(methods, vit)) == [*methods, "attention_rollout"]
    cnn = _ctx(_split())
    assert list(with_offered(methods, cnn.model)) == list(methods)
    res = ExplainProbe(methods=["gradcam", "attention_rollout"], **QUICK).run(cnn)
    assert res.data["settings"]["methods"] == ["gradcam"]
    assert "occlusion" not in res.captions["cases_01"]  # only the columns shown are described
    skipped = "attention rollout (attention_rollout) was skipped: the model has no attention layers"
    assert any(skipped in w for w in res.warnings)
    only = ExplainProbe(methods=["attention_rollout"], **QUICK).run(cnn)
    assert "No attribution method listed can explain this model" in " ".join(only.summary)


@pytest.mark.slow
def test_the_probe_runs_its_default_methods_and_attention_rollout_on_a_vit() -> None:
    split = _split()
    model = build_model("timm:vit_tiny_patch16_224", split.info, {"img_size": 12, "patch_size": 4})
    preds = Predictions.compute(model, split.test_x, split.test_y, split.test_index)
    ctx = ProbeContext(model, split, torch.device("cpu"), 0, 32, preds, preds)
    res = ExplainProbe(**QUICK).run(ctx)
    assert "attention_rollout" in res.data["settings"]["methods"]  # ranked by faithfulness
    assert res.data["settings"]["layer"] == "body.blocks.11.norm1"
    assert "attention_rollout.deletion_auc" in res.metrics and "gradcam.deletion_auc" in res.metrics


def _patterns(n: int, size: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images (n, 1, size, size) in [0, 1]: dim noise plus one 4x4 patch-aligned square at a
    random place whose pattern is the class (0 solid, 1 horizontal stripes, 2 vertical
    stripes); labels (n,) and the squares' masks (n, size, size)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = torch.rand(n, 1, size, size, generator=g) * 0.2
    mask = torch.zeros(n, size, size)
    pattern = torch.zeros(3, 4, 4)
    pattern[0], pattern[1, ::2], pattern[2, :, ::2] = 1.0, 1.0, 1.0
    corner = torch.randint(0, size // 4, (n, 2), generator=g) * 4
    for i, (r, c) in enumerate(corner.tolist()):
        mask[i, r : r + 4, c : c + 4] = 1.0
        x[i, 0, r : r + 4, c : c + 4] = torch.maximum(x[i, 0, r : r + 4, c : c + 4], pattern[int(y[i])])
    return x, y, mask


def test_a_trained_vit_gives_non_constant_gradcam_and_rollout_maps_that_find_the_evidence() -> None:
    # A 2-block ViT on a 4x4 patch grid learns in a few seconds which pattern the square
    # holds; the maps are then read from a model that uses its attention, not from noise.
    info = _info(1, 16)
    x, y, _ = _patterns(240)
    torch.manual_seed(0)
    args = {"img_size": 16, "patch_size": 4, "embed_dim": 32, "depth": 2, "num_heads": 2, "mlp_ratio": 2}
    model = build_model("timm:vit_tiny_patch16_224", info, args)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(1)
    model.train()
    for _ in range(60):
        batch = torch.randint(0, len(x), (64,), generator=g)
        loss = torch.nn.functional.cross_entropy(model(x[batch]), y[batch])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    test_x, test_y, test_mask = _patterns(48, seed=2)
    with torch.no_grad():
        assert (model(test_x).argmax(dim=1) == test_y).float().mean() >= 0.95  # trained

    from stresslab.attributions import ATTRIBUTIONS

    choice = choose_cam_layer(model, test_x, prefer=model.cam_layer)
    assert choice.layer and choice.share >= 0.95 and choice.size == (4, 4), choice.reason
    cam = GradCam(choice.layer).attribute(model, test_x, test_y, batch_size=48)
    method, _ = ATTRIBUTIONS.build("attention_rollout").prepare(model, info)
    rolled = method.attribute(model, test_x, test_y, batch_size=48)
    assert cam.shape == rolled.shape == (48, 16, 16)
    assert (cam.flatten(1).std(dim=1) > 0).float().mean() >= 0.95
    assert (rolled.flatten(1).std(dim=1) > 0).all()
    # The class token attends to the square: rollout puts several times the square's share
    # of the image (1/16) on it, on every image.
    on_square = (rolled * test_mask).flatten(1).sum(dim=1) / rolled.flatten(1).sum(dim=1)
    assert (on_square > 2 / 16).all(), on_square.min()
